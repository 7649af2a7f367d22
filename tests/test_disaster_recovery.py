"""The worst day, played as docs/disaster-recovery.md tells it: the database host is gone, a
fresh machine has only the config, the age identity and the rclone config."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import Env, unique
from test_backup_restore import checksums
from test_upload import Remote, moto_port, remote, s3  # noqa: F401 (fixtures)


def config(env: Env, remote: Remote, database: str, key: Path) -> Path:
    return env.write_config({
        "backup": {"databases": [database], "encryption": {"enabled": True, "key_file": str(key)},
                   "min_backup_interval": "0s"},
        "upload": {"enabled": True, "destination": remote.destination, "rclone_config_path": str(remote.config),
                   "retry_delay": 0, "timeout": 60},
        "metrics": {"enabled": True, "storage_path": str(env.root / "metrics.json"),
                    "textfile": str(env.root / "tenangdb.prom")},
    })


def remote_rows(env: Env, cfg: Path, database: str) -> list[dict]:
    done = env.cli("list", "--remote", "--json", config=cfg)
    assert done.returncode == 0, done.stderr
    return [b for b in json.loads(done.stdout)["backups"] if b["database"] == database and b["location"] == "remote"]


def flip_a_byte(remote: Remote, rel: str, scratch: Path) -> None:
    """Damage a stored file on the remote, keeping its size (the listing cannot tell)."""
    data = bytearray(remote.read(rel))
    data[len(data) // 2] ^= 0xFF
    remote.write(rel, bytes(data), scratch)


def test_a_fresh_machine_restores_the_newest_good_backup_from_the_remote(tmp_path, server, sample_db, remote):
    # The lost host: two nightly backups, each uploaded and proven by the run that made it.
    old = Env(root=tmp_path / "old-host", server=server)
    old.root.mkdir()
    key = old.key()
    old_cfg = config(old, remote, sample_db, key)
    assert (done := old.cli("backup", "--yes", config=old_cfg)).returncode == 0, done.stderr
    time.sleep(1.1)  # backup names have one-second resolution
    server.sql("INSERT INTO customer (name) VALUES ('after the first backup')", sample_db)
    assert (done := old.cli("backup", "--yes", config=old_cfg)).returncode == 0, done.stderr
    newest_sums = checksums(server, sample_db)
    first, second = old.backups_of(sample_db)
    assert all(f".{f.name}.upload.json" in {p.name for p in f.parent.iterdir()} for f in (first, second))

    # Step 2: the fresh machine. Only the three files came along; directories and state are new.
    new = Env(root=tmp_path / "new-host", server=server)
    new.root.mkdir()
    shutil.copy(key, new.root / "age-identity.txt")
    os.chmod(new.root / "age-identity.txt", 0o600)
    cfg = config(new, remote, sample_db, new.root / "age-identity.txt")
    shutil.rmtree(old.backups)  # the old host is gone: nothing of it may be read by accident

    # Step 3: the remote's own records say both copies were proven.
    rows = remote_rows(new, cfg, sample_db)
    assert [r["name"] for r in rows] == [first.name, second.name]
    assert all(r["verified"] and r["complete"] and r["verified_how"] in ("sha256", "md5") for r in rows), rows
    table = new.cli("list", "--remote", config=cfg)
    assert table.returncode == 0 and table.stdout.count("yes (") == 2, table.stdout
    assert (done := new.cli("verify", "--from-remote", "--latest", config=cfg)).returncode == 0, done.stderr
    assert "OK" in done.stdout and second.name in done.stdout

    # Step 4: restore the newest good backup of the database, named by the database alone.
    target = unique("dr")
    done = new.cli("restore", "-b", sample_db, "--latest", "--from-remote", "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    assert second.name in done.stderr and "newest verified backup" in done.stderr
    assert checksums(server, target) == newest_sums
    server.sql(f"DROP DATABASE `{target}`")

    # The newest remote copy is damaged (same size): it is skipped for the one before it, with
    # a warning naming why, and recorded as damaged on the remote for every machine to see.
    newest = f"{sample_db}/{second.parent.name}/{second.name}"
    [stored] = json.loads(remote.read(f"{newest}/manifest.json"))["files"]
    flip_a_byte(remote, f"{newest}/{stored['name']}", tmp_path / "scratch")
    target = unique("dr")
    done = new.cli("restore", "-b", sample_db, "--latest", "--from-remote", "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    assert f"{second.name} failed verification, so the one before it is used ({first.name})" in done.stderr
    assert "SHA-256" in done.stderr
    assert server.sql("SELECT COUNT(*) FROM customer WHERE name = 'after the first backup'", target).strip() == "0"
    server.sql(f"DROP DATABASE `{target}`")
    rows = remote_rows(new, cfg, sample_db)
    assert [(r["name"], r["verified"], r["complete"]) for r in rows] == [(first.name, True, True),
                                                                          (second.name, False, False)]
    assert "failed verification" in rows[1]["problem"]
    table = new.cli("list", "--remote", config=cfg)
    assert "DAMAGED" in table.stdout
    done = new.cli("verify", "--from-remote", "--latest", config=cfg)
    assert done.returncode == 7 and "FAILED" in done.stderr

    # A drill without a terminal finds it too.
    done = new.cli("drill", config=cfg)
    assert done.returncode == 7 and f"FAILED {sample_db}" in done.stdout, done.stdout + done.stderr


def test_the_repairing_upload_and_the_drill(tmp_path, server, sample_db, remote):
    env = Env(root=tmp_path, server=server)
    cfg = config(env, remote, sample_db, env.key())
    assert (done := env.cli("backup", "--yes", config=cfg)).returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    rel = f"{sample_db}/{folder.parent.name}/{folder.name}"

    # The drill: no terminal, passes, timed and recorded.
    done = env.cli("drill", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"OK     {sample_db}: {folder.name} recovered in" in done.stdout
    prom = (env.root / "tenangdb.prom").read_text()
    assert f'tenangdb_drill_last_success_timestamp{{database="{sample_db}"}}' in prom
    assert f'tenangdb_drill_duration_seconds{{database="{sample_db}"}}' in prom
    record = json.loads(remote.read(f"{sample_db}/{folder.parent.name}/.{folder.name}.upload.json"))
    assert record["ok"] and record["check"] == "drill" and record["proof"] == "content proven"

    # A damaged remote copy: verify --from-remote catches it (7) and records it; `upload` no
    # longer says "nothing to upload" but repairs it; afterwards it verifies again.
    [stored] = json.loads((folder / "manifest.json").read_text())["files"]
    flip_a_byte(remote, f"{rel}/{stored['name']}", tmp_path / "scratch")
    done = env.cli("verify", "--from-remote", "-b", folder.name, config=cfg)
    assert done.returncode == 7 and "FAILED" in done.stderr
    local = json.loads((folder.parent / f".{folder.name}.upload.json").read_text())
    assert not local["ok"] and local["check"] == "checksums" and "SHA-256" in local["error"]
    listed = env.cli("list", "--json", config=cfg)
    [mine] = [b for b in json.loads(listed.stdout)["backups"] if b["location"] == "local"]
    assert mine["uploaded"] == "failed"
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0 and f"OK     {rel}" in done.stdout, done.stdout + done.stderr
    assert (done := env.cli("verify", "--from-remote", "--all", config=cfg)).returncode == 0, done.stderr
    record = json.loads(remote.read(f"{sample_db}/{folder.parent.name}/.{folder.name}.upload.json"))
    assert record["ok"] and record["check"] == "checksums" and record["verify"] == "download"


@pytest.mark.parametrize("bad", ["--before", "-d"])
def test_restore_choices_that_cannot_be_made(env, sample_db, bad):
    cfg = env.write_config({"backup": {"databases": [sample_db], "min_backup_interval": "0s"}})
    for _ in range(2):
        assert (done := env.cli("backup", "--yes", config=cfg)).returncode == 0, done.stderr
        time.sleep(1.1)
    # Two backups and no way to choose: an error listing them, nothing touched.
    done = env.cli("restore", "-b", sample_db, "-d", unique("x"), config=cfg)
    assert done.returncode == 2 and "has 2 backups here" in done.stderr
    if bad == "--before":
        done = env.cli("restore", "-b", sample_db, "--before", "2001-01-01 00:00:00", "-d", unique("x"), config=cfg)
        assert done.returncode == 2 and f"no complete backup of {sample_db} taken before 2001-01-01" in done.stderr
        done = env.cli("restore", "-b", sample_db, "--before", "yesterday", config=cfg)
        assert done.returncode == 2 and "not a time" in done.stderr
    else:
        done = env.cli("restore", "--all", "-d", "x", config=cfg)
        assert done.returncode == 2 and "--all restores the newest good backup" in done.stderr
        done = env.cli("restore", "-b", "nosuchdb", "--latest", config=cfg)
        assert done.returncode == 2 and "no backups of nosuchdb here" in done.stderr


def test_restore_latest_and_all_locally(env, server, sample_db):
    other = unique("crm")
    server.sql(f"CREATE DATABASE `{other}`; CREATE TABLE `{other}`.t (id INT PRIMARY KEY); "
               f"INSERT INTO `{other}`.t VALUES (1),(2)")
    try:
        cfg = env.write_config({"backup": {"databases": [sample_db, other], "min_backup_interval": "0s"}})
        assert (done := env.cli("backup", "--yes", config=cfg)).returncode == 0, done.stderr
        time.sleep(1.1)
        server.sql("INSERT INTO customer (name) VALUES ('second')", sample_db)
        assert (done := env.cli("backup", "--yes", config=cfg)).returncode == 0, done.stderr
        first, second = env.backups_of(sample_db)
        # --before picks the older one.
        target = unique("before")
        when = json.loads((second / "manifest.json").read_text())["started_at"]
        done = env.cli("restore", "-b", sample_db, "--before", when, "-d", target, config=cfg)
        assert done.returncode == 0 and first.name in done.stderr, done.stderr
        assert server.sql("SELECT COUNT(*) FROM customer WHERE name='second'", target).strip() == "0"
        server.sql(f"DROP DATABASE `{target}`")
        # --all with a suffix: every database side by side, one line each.
        done = env.cli("restore", "--all", "--suffix", "_r", config=cfg)
        assert done.returncode == 0, done.stderr
        assert f"OK     {sample_db} -> {sample_db}_r ({second.name}" in done.stdout
        assert f"OK     {other} -> {other}_r" in done.stdout and "restored 2 databases" in done.stdout
        assert checksums(server, f"{sample_db}_r") == checksums(server, sample_db)
        # Again without --yes and no terminal: the non-empty targets are refused, exit 4.
        done = env.cli("restore", "--all", "--suffix", "_r", config=cfg)
        assert done.returncode == 4 and "error: 2 of 2 restores failed" in done.stderr
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{other}`; DROP DATABASE IF EXISTS `{other}_r`; "
                   f"DROP DATABASE IF EXISTS `{sample_db}_r`")


def test_restore_all_of_a_twenty_database_set_side_by_side(env, server):
    names = [unique(f"set{n:02d}") for n in range(20)]
    server.sql("".join(f"CREATE DATABASE `{n}`; CREATE TABLE `{n}`.t (id INT PRIMARY KEY, v VARCHAR(20)); "
                       f"INSERT INTO `{n}`.t SELECT seq, CONCAT('{i}-', seq) FROM seq.seq_1_to_{50 + i};"
                       for i, n in enumerate(names)))
    try:
        cfg = env.write_config({"backup": {"databases": names, "min_backup_interval": "0s"}})
        assert (done := env.cli("backup", "--yes", config=cfg)).returncode == 0, done.stderr
        done = env.cli("restore", "--all", "--suffix", "_r", config=cfg, timeout=600)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("OK     ") == 20 and "restored 20 databases" in done.stdout
        for name in names:
            assert checksums(server, f"{name}_r") == checksums(server, name)
        # Only some of them, before any backup was taken: nothing to restore, exit 2, nothing made.
        done = env.cli("restore", "--all", "--databases", ",".join(names[:3]), "--before", "2001-01-01",
                       "--prefix", "old_", config=cfg)
        assert done.returncode == 2 and "no complete backup of" in done.stderr
        assert not server.sql(f"SHOW DATABASES LIKE 'old\\_%'").strip()
    finally:
        server.sql("".join(f"DROP DATABASE IF EXISTS `{n}`; DROP DATABASE IF EXISTS `{n}_r`;" for n in names))
