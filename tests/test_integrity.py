"""`doctor`'s "integrity" check (the security guide's "verify binary integrity"): a real,
non-editable install of this project (its wheel, built by pip, installed by pip into a fresh
venv), then one of its files changed, one removed, one added and its script edited."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [built] = out.glob("tenangdb-*.whl")
    return built


def _installed(wheel: Path, where: Path) -> Path:
    """A venv holding the wheel as pip installs it; its dependencies come from ours (a .pth)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "tenangdb-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return Path(site)


def _integrity(venv: Path, cfg: Path) -> tuple[int, dict]:
    done = subprocess.run([str(venv / "bin" / "tenangdb"), "--config", str(cfg), "doctor", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=cfg.parent, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    [check] = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "integrity"]
    return done.returncode, check


def test_doctor_finds_what_changed_in_an_installed_copy(offline_env, wheel):
    env = offline_env
    cfg = env.write_config()
    venv = env.root / "venv"
    site = _installed(wheel, venv)
    _, check = _integrity(venv, cfg)
    assert check["status"] == "pass", check
    assert check["message"].startswith("all ") and f"match the SHA-256 recorded at install ({site})" in check["message"]

    with open(site / "tenangdb" / "runner.py", "a") as fh:
        fh.write("# one line more\n")
    (site / "tenangdb" / "deploy" / "kubernetes.py").unlink()
    (site / "tenangdb" / "planted.py").write_text("print('hello')\n")
    with open(venv / "bin" / "tenangdb-exporter", "a") as fh:
        fh.write("# edited\n")
    status, check = _integrity(venv, cfg)
    assert status == 1 and check["status"] == "fail"
    version = wheel.name.split("-")[1]
    assert check["message"] == (
        f"tenangdb {version} is not as installed: modified: {venv / 'bin' / 'tenangdb-exporter'}, tenangdb/runner.py; "
        "missing: tenangdb/deploy/kubernetes.py; not installed by pip: tenangdb/planted.py")
    assert "pip install --force-reinstall" in check["fix"]


def test_a_development_install_says_it_has_no_hashes(offline_env):
    env = offline_env
    done = env.cli("doctor", "--json", config=env.write_config())
    [check] = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "integrity"]
    assert check["status"] == "warn" and "development (editable) install" in check["message"]
    assert str(ROOT) in check["message"]
