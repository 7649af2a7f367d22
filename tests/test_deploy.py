"""Without a server: the secrets file, and the deploy files
(Kubernetes manifests, Dockerfile, example units) parsed and kept in step with their generator."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tenangdb.config.loader import load_config, read_secrets_file, secrets_file_text
from tenangdb.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_secrets_file_round_trip_and_lookup(tmp_path):
    value = 'a"b$c`d\\e f#g'
    path = tmp_path / "secrets.env"
    path.write_text(secrets_file_text({"TENANGDB_DB_PASSWORD": value, "OTHER": "x"}, "header"))
    assert read_secrets_file(path) == {"TENANGDB_DB_PASSWORD": value, "OTHER": "x"}
    # A shell reads the same value (the units may also use it as an EnvironmentFile=).
    shell = subprocess.run(["sh", "-c", f'set -a; . "{path}"; printf %s "$TENANGDB_DB_PASSWORD"'],
                           capture_output=True, text=True)
    assert shell.stdout == value
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"secrets_file: {path}\ndatabase:\n  password: ${{TENANGDB_DB_PASSWORD}}\n"
                   "  username: ${OTHER}\n")
    loaded = load_config(cfg, environ={})
    assert loaded.settings.database.password.get_secret_value() == value
    # The environment wins over the file; TENANGDB_SECRETS_FILE names another file.
    loaded = load_config(cfg, environ={"OTHER": "from-env"})
    assert loaded.settings.database.username == "from-env"
    second = tmp_path / "second.env"
    second.write_text('TENANGDB_DB_PASSWORD="two"\nOTHER=\'three\'\n')
    loaded = load_config(cfg, environ={"TENANGDB_SECRETS_FILE": str(second)})
    assert loaded.settings.database.password.get_secret_value() == "two"
    assert loaded.settings.database.username == "three"
    bad = tmp_path / "bad.env"
    bad.write_text('TENANGDB_DB_PASSWORD="unterminated\n')
    with pytest.raises(ConfigError, match="line 1: unbalanced double quote"):
        load_config(cfg, environ={"TENANGDB_SECRETS_FILE": str(bad)})
    with pytest.raises(ConfigError, match="secrets file .*missing.env does not exist"):
        load_config(cfg, environ={"TENANGDB_SECRETS_FILE": str(tmp_path / "missing.env")})
    # Not needed when the environment already has every variable.
    loaded = load_config(cfg, environ={"TENANGDB_SECRETS_FILE": str(tmp_path / "missing.env"),
                                       "TENANGDB_DB_PASSWORD": "e", "OTHER": "o"})
    assert loaded.settings.database.username == "o"
    with pytest.raises(ConfigError, match="line break"):
        secrets_file_text({"A": "two\nlines"})


def test_kubernetes_manifests():
    from tenangdb.deploy.kubernetes import render_manifests
    text = (REPO / "deploy" / "kubernetes" / "tenangdb.yaml").read_text()
    assert text == render_manifests(), "regenerate with: python -m tenangdb.deploy deploy"
    docs = list(yaml.safe_load_all(text))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("CronJob") == 3 and {"Deployment", "PersistentVolumeClaim", "ConfigMap", "Service"} <= set(kinds)
    assert "Secret" not in kinds  # referenced, never embedded
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert config["database"]["password"] == "${TENANGDB_DB_PASSWORD}"
    args = {}
    for doc in docs:
        if doc["kind"] == "CronJob":
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
        else:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
            assert secret_refs == {"tenangdb-secrets"}
            assert not any("value" in e and "PASSWORD" in e["name"] for e in container["env"])
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
            args[doc["metadata"]["name"]] = container["args"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        if doc["metadata"]["name"] != "tenangdb-exporter":
            assert volumes["age-identity"]["secret"]["secretName"] == "tenangdb-age-identity"
        else:
            assert "age-identity" not in volumes  # the exporter never needs the key
    assert args == {"tenangdb-backup": ["backup", "--yes"], "tenangdb-verify": ["verify", "--latest"],
                    "tenangdb-drill": ["drill", "--target", "server"], "tenangdb-exporter": ["exporter"],
                    "tenangdb-binlog": ["binlog"]}
    archiver = next(d for d in docs if d["metadata"]["name"] == "tenangdb-binlog")
    assert archiver["spec"]["replicas"] == 1 and archiver["spec"]["strategy"]["type"] == "Recreate"
    assert config["binlog"]["enabled"] is True


def test_dockerfile_runs_as_non_root():
    from tenangdb.deploy.kubernetes import DOCKERFILE, UID
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert text == DOCKERFILE, "regenerate with: python -m tenangdb.deploy deploy"
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] == f"{UID}:{UID}" and not users[-1].startswith("0")
    assert instructions.index(next(i for i in instructions if i.startswith("USER "))) > max(
        n for n, i in enumerate(instructions) if i.startswith("RUN "))  # nothing runs as root after USER
    assert "mariadb-client" in text and "rclone" in text and 'ENTRYPOINT ["tenangdb-entrypoint"]' in text


def test_the_image_routes_the_original_command_lines(tmp_path):
    """The original's manifests run `/tenangdb backup ...` and `/tenangdb-exporter --port ...`, and
    its entrypoint took `tenangdb ...` or `tenangdb-exporter ...` first: the entrypoint script the
    Dockerfile writes, run with stand-ins for the two programs."""
    import re
    import subprocess

    from tenangdb.deploy.kubernetes import DOCKERFILE
    run = DOCKERFILE.split("RUN ln -s ", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    assert "ln -s /usr/local/bin/tenangdb /tenangdb " in "RUN ln -s " + run
    assert "ln -s /usr/local/bin/tenangdb-exporter /tenangdb-exporter " in run
    printf = re.search(r"(printf .*?) > /usr/local/bin/tenangdb-entrypoint", run).group(1)
    script = tmp_path / "entrypoint"
    subprocess.run(["sh", "-c", f"{printf} > {script}"], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("tenangdb", "tenangdb-exporter"):
        (bin_dir / program).write_text(f'#!/bin/sh\necho {program} "$@"\n')
        (bin_dir / program).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    for argv, ran in ((["tenangdb", "backup", "--force"], "tenangdb backup --force"),
                      (["tenangdb-exporter", "--port", "9090"], "tenangdb-exporter --port 9090"),
                      (["exporter", "--port", "9090"], "tenangdb exporter --port 9090"),
                      (["backup", "--yes"], "tenangdb backup --yes"),
                      ([], "tenangdb")):
        done = subprocess.run(["sh", str(script), *argv], capture_output=True, text=True, env=env)
        assert done.returncode == 0 and done.stdout.strip() == ran, (argv, done.stdout, done.stderr)


def test_example_units_match_and_verify():
    from tenangdb.deploy.systemd import example_units
    folder = REPO / "deploy" / "systemd"
    units = example_units()
    assert sorted(p.name for p in folder.iterdir()) == sorted(units)
    for name, text in units.items():
        assert (folder / name).read_text() == text, "regenerate with: python -m tenangdb.deploy deploy"
        assert "Requires=mysqld" not in text
    archiver = units["tenangdb-binlog.service"]
    assert "Type=simple" in archiver and "Restart=on-failure" in archiver and "ExecStart=" in archiver
    assert archiver.split("ExecStart=", 1)[1].split("\n", 1)[0].endswith(" binlog")
    # The same hardening as the backup service.
    hardening = [line for line in units["tenangdb.service"].splitlines() if line.startswith(("Protect", "Private",
                                                                                            "Restrict", "System"))]
    assert hardening and all(line in archiver.splitlines() for line in hardening)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_example_units_pass_systemd_analyze(tmp_path):
    """`verify` is clean (ExecStart pointed at a program that exists here) and the exposure score
    of every service is low ("OK" is below 4.0 on systemd's 0-10 scale)."""
    from tenangdb.deploy.systemd import UnitParams, render_units
    units = render_units(UnitParams(binary=sys.executable, config="/etc/tenangdb/config.yaml",
                                    secrets_file="/etc/tenangdb/secrets.env", key_file="/etc/tenangdb/k.txt",
                                    writable=["/var/backups/tenangdb"], exporter=True, binlog=True))
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    paths = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr
    for path in paths:
        if path.endswith(".service"):
            score = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", path],
                                   capture_output=True, text=True)
            match = re.search(r"Overall exposure level for \S+: ([\d.]+)", score.stdout)
            if match is None:
                pytest.skip("this systemd-analyze cannot score unit files offline")
            assert float(match.group(1)) < 2.5, score.stdout


def test_make_dir_never_adopts_shared_or_foreign_folders(tmp_path):
    from tenangdb.deploy.host import make_dir
    foreign = tmp_path / "backups"
    foreign.mkdir(mode=0o755)
    (foreign / "someone-elses.tar").write_text("x")
    os.chmod(foreign, 0o755)
    assert make_dir(foreign, 0o750) is False and stat.S_IMODE(foreign.stat().st_mode) == 0o755
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert make_dir(empty, 0o750) is True and stat.S_IMODE(empty.stat().st_mode) == 0o750
    named = tmp_path / "tenangdb"
    named.mkdir()
    (named / "old").mkdir()
    assert make_dir(named, 0o750) is True
    assert make_dir(Path("/etc"), 0o750, real="/etc") is False and stat.S_IMODE(Path("/etc").stat().st_mode) == 0o755
    fresh = tmp_path / "a" / "b"
    assert make_dir(fresh, 0o750) is True and stat.S_IMODE(fresh.stat().st_mode) == 0o750
