"""verify --test-restore against a real server: good backups pass in both target modes, damaged
ones (each made by really editing a real backup) fail with exit 7 and a precise reason, and
the scratch database or sandbox is gone afterwards in every case, SIGTERM included."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import TENANGDB, unique
from tenangdb.config.loader import load_config
from tenangdb.mysql import checksum
from tenangdb.mysql.connection import connect, endpoint_from
from tenangdb.stream.crypto import load_keys, load_identities
from tenangdb.stream.pipeline import seal, unseal

PREFIX = "tvfy_"


@pytest.fixture(autouse=True)
def sandboxes(env):
    """A short private parent for sandboxes (a socket path must stay under 108 bytes)."""
    parent = Path(tempfile.mkdtemp(prefix="tv-", dir="/tmp"))
    env.sandboxes = parent
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def _config(env, sample_db, *, encrypted=True, target="server", extra_verify=None):
    backup = {"databases": [sample_db], "compression": "zstd"}
    if encrypted:
        backup["encryption"] = {"enabled": True, "key_file": str(env.key())}
    verify = {"target": target, "database_prefix": PREFIX,
              "sandbox": {"parent": str(env.sandboxes)}}
    verify.update(extra_verify or {})
    return env.write_config({"backup": backup, "verify": verify})


def _backup(env, cfg, database):
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    return env.backups_of(database)[-1]


def _scratch_databases(server) -> list[str]:
    return [n for n in server.sql("SHOW DATABASES").split() if n.startswith(PREFIX)]


def _left_behind(env, server) -> list[str]:
    """Scratch databases, sandbox folders and sandbox servers still around."""
    leftovers = _scratch_databases(server)
    leftovers += [str(p) for p in env.sandboxes.iterdir()]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(env.sandboxes).encode() in cmdline:
                leftovers.append(f"process {proc.name}")
    return leftovers


def _sidecar(folder: Path) -> dict:
    path = folder.parent / f".{folder.name}.verify.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    return json.loads(path.read_text())


def _rewrite_dump(cfg_path: Path, folder: Path, edit) -> None:
    """Decrypt and decompress the dump with tenangdb's own stream code, edit the SQL, seal it
    again to the same key, and rewrite the manifest's sizes and hashes to match, so that only
    the content checks of a test restore can tell."""
    loaded = load_config(str(cfg_path))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [entry] = manifest["files"]
    path = folder / entry["name"]
    identities = load_identities(loaded.settings.backup.encryption) if manifest["encryption"]["enabled"] else None
    plain = io.BytesIO()
    unseal(path, compression=manifest["compression"]["format"], identities=identities, forward=plain.write)
    sql = plain.getvalue().decode("utf-8")
    edited = edit(sql)
    assert edited != sql, "the edit changed nothing"
    data = io.BytesIO(edited.encode("utf-8"))
    path.unlink()
    keys = load_keys(loaded.settings.backup.encryption) if manifest["encryption"]["enabled"] else None
    sealed = seal(data.read, path, compression=manifest["compression"]["format"],
                  level=manifest["compression"]["level"], recipients=keys.recipients if keys else None)
    entry.update(plain_size=sealed.plain.size, plain_sha256=sealed.plain.sha256,
                 stored_size=sealed.stored.size, stored_sha256=sealed.stored.sha256)
    manifest_path.write_text(json.dumps(manifest, indent=2))


def _verify(env, cfg, folder, *extra):
    return env.cli("verify", "--test-restore", "-b", str(folder), *extra, config=cfg)


@pytest.mark.parametrize("target", ["sandbox", "server"])
def test_good_backup_passes_and_matches_the_source(env, server, sample_db, target):
    cfg = _config(env, sample_db, target=target)
    folder = _backup(env, cfg, sample_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    recorded = manifest["content_checks"]
    assert recorded["method"] == "snapshot" and recorded["algorithm"] == checksum.ALGORITHM
    assert recorded["tables"]["customer"]["rows"] == 2003  # exact, not an estimate

    # A quiet database: the recorded checksum is the source's own.
    loaded = load_config(str(cfg))
    conn = connect(endpoint_from(loaded.settings.database))
    try:
        checksum.prepare_session(conn)
        assert checksum.table_checksum(conn, sample_db, "customer") == recorded["tables"]["customer"]
    finally:
        conn.close()

    done = _verify(env, cfg, folder)
    assert done.returncode == 0, done.stderr
    assert f"test-restore:{target}" in done.stdout and "1 tables matched" in done.stdout
    record = _sidecar(folder)
    assert record["ok"] is True and record["method"] == f"test-restore:{target}"
    assert record["restored_rows"] == 2003 and record["tables_checked"] == 1
    assert record["checksums"]["customer"] == recorded["tables"]["customer"]
    assert record["restore_seconds"] > 0 and record["failures"] == []
    # The sealed folder is untouched: plain verification still passes.
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    assert _left_behind(env, server) == []


def test_two_targets_give_identical_checksums(env, server, sample_db):
    cfg = _config(env, sample_db, encrypted=False)
    folder = _backup(env, cfg, sample_db)
    seen = []
    for target in ("server", "sandbox"):
        done = _verify(env, cfg, folder, "--target", target)
        assert done.returncode == 0, done.stderr
        seen.append(_sidecar(folder)["checksums"])
    assert seen[0] == seen[1]
    assert _left_behind(env, server) == []


def _sql_without_trigger(sql: str) -> str:
    # mariadb-dump writes a trigger as DELIMITER ;; … CREATE … TRIGGER `customer_bi` … ;; DELIMITER ;
    return re.sub(r"DELIMITER ;;\n[^\n]*TRIGGER `?customer_bi`?.*?\nDELIMITER ;\n", "", sql, flags=re.S)


def _sql_without_rows(sql: str) -> str:
    # Drop the row of 'Budi' from the extended INSERT.
    return re.sub(r"\(2,'Budi',NULL\),", "", sql, count=1)


def _sql_with_changed_byte(sql: str) -> str:
    return sql.replace("'Citra'", "'Citrb'", 1)


@pytest.mark.parametrize("damage, reason", [
    ("truncate", r"size is \d+ bytes, the manifest says \d+ \(truncated or damaged\)"),
    ("flip", r"SHA-256 of the stored bytes does not match the manifest"),
    ("wrong_key", r"wrong decryption key"),
    ("trigger", r"trigger 'customer_bi' is listed in the manifest but missing after the restore"),
    ("rows", r"table 'customer' has 2002 rows after the restore, 2003 were recorded while dumping"),
    ("byte", r"table 'customer': content checksum after the restore differs"),
])
def test_damage_is_caught_with_exit_7(env, server, sample_db, damage, reason):
    target = "sandbox" if damage in ("trigger", "byte") else "server"
    cfg = _config(env, sample_db, target=target)
    folder = _backup(env, cfg, sample_db)
    [dump] = [p for p in folder.iterdir() if p.name != "manifest.json"]
    if damage == "truncate":
        os.truncate(dump, dump.stat().st_size - 100)
    elif damage == "flip":
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0x01
        dump.write_bytes(bytes(data))
    elif damage == "wrong_key":
        other = env.root / "other-key.txt"
        assert env.cli("key", "generate", "-o", str(other)).returncode == 0
        cfg = env.write_config({"backup": {"databases": [sample_db], "encryption": {"enabled": True,
                                                                                  "key_file": str(other)}},
                                "verify": {"target": target, "database_prefix": PREFIX}}, name="other.yaml")
    else:
        edit = {"trigger": _sql_without_trigger, "rows": _sql_without_rows, "byte": _sql_with_changed_byte}[damage]
        _rewrite_dump(cfg, folder, edit)
        # The tampering is invisible to the file checks: only the restore can tell.
        assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0

    done = _verify(env, cfg, folder)
    assert done.returncode == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {sample_db}: backup {folder.name}: "), lines
    assert re.search(reason, lines[-1]), lines[-1]
    record = _sidecar(folder)
    assert record["ok"] is False and re.search(reason, record["failures"][0])
    assert _left_behind(env, server) == []


def _sleeper(tag: str):
    def edit(sql: str) -> str:
        # A valid dump that keeps the loader busy: SIGTERM lands in the middle of the restore.
        head, marker, rest = sql.partition("INSERT INTO `customer`")
        return head + f"SELECT SLEEP(60) AS `{tag}`;\n" + marker + rest
    return edit


@pytest.mark.parametrize("target", ["server", "sandbox"])
def test_sigterm_during_the_restore_leaves_nothing(env, server, sample_db, target):
    cfg = _config(env, sample_db, target=target, encrypted=False)
    folder = _backup(env, cfg, sample_db)
    tag = unique("sleep")
    _rewrite_dump(cfg, folder, _sleeper(tag))
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "verify", "--test-restore", "-b", str(folder)],
                            cwd=env.root, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the loader is inside the SLEEP
            if tag in server.sql("SELECT INFO FROM information_schema.PROCESSLIST") or (
                    target == "sandbox" and _sandbox_sleeping(env, tag)):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the restore never reached the SLEEP")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    assert _left_behind(env, server) == []
    assert tag not in server.sql("SELECT INFO FROM information_schema.PROCESSLIST")  # the load was ended


def _sandbox_sleeping(env, tag: str) -> bool:
    for sock in env.sandboxes.glob("*/mysqld.sock"):
        done = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-N", "-e",
                               "SELECT INFO FROM information_schema.PROCESSLIST"], capture_output=True, text=True)
        if tag in done.stdout:
            return True
    return False
