"""The security guide's paths: `{directory}/latest` (the newest backup of each database, as
links each backup keeps), `--backup-path {directory}/` (every backup below), and restore
without a target (the backup's own database)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import TENANGDB, made_database


def _guide_check(env, cfg: Path) -> int:
    """The guide's nightly check, as it writes it (with our config and folder)."""
    script = (f'{" ".join(TENANGDB)} --config {cfg} verify --backup-path {env.backups}/latest\n'
              'if [ $? -ne 0 ]; then echo "Backup verification failed"; exit 1; fi\n')
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=environ,
                          cwd=env.root).returncode


def test_latest_names_the_newest_backup_of_each_database(env, server, sample_db):
    other = made_database(server, "other", "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
    second = next(other)
    try:
        cfg = env.write_config({"backup": {"databases": [sample_db, second]}})
        for _ in range(2):
            done = env.cli("backup", "--yes", "--force", config=cfg)
            assert done.returncode == 0, done.stderr
        latest = env.backups / "latest"
        links = sorted(p.name for p in latest.iterdir() if not p.name.startswith("."))
        assert links == sorted([sample_db, second])
        for name in links:
            assert (latest / name).is_symlink()
            assert (latest / name).resolve() == env.backups_of(name)[-1].resolve()
        assert _guide_check(env, cfg) == 0
        done = env.cli("verify", "--backup-path", str(latest), config=cfg)
        assert done.returncode == 0 and done.stdout.count("OK ") == 2, done.stdout + done.stderr
        # `list` does not take latest/ for a database, and records stay beside the real folders.
        listed = env.cli("list", "--local", config=cfg)
        assert "latest" not in listed.stdout + listed.stderr
        assert not [p for p in latest.iterdir() if p.name.endswith(".json")]
        # Every backup below the repository (the guide's incident response).
        done = env.cli("verify", "--backup-path", f"{env.backups}/", config=cfg)
        assert done.returncode == 0 and done.stdout.count("OK ") == 4, done.stdout + done.stderr
        # A damaged newest backup fails the nightly check.
        newest = env.backups_of(sample_db)[-1]
        dump = next(p for p in newest.iterdir() if p.name != "manifest.json")
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        assert _guide_check(env, cfg) != 0
        done = env.cli("verify", "--backup-path", f"{env.backups}/", config=cfg)
        assert done.returncode == 7 and "1 of 4 backups failed verification" in done.stderr
    finally:
        next(other, None)


def test_restore_without_a_target_goes_to_the_backups_own_database(env, server, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", "--yes", config=cfg).returncode == 0
    server.sql("DELETE FROM customer WHERE id > 10", sample_db)
    link = env.backups / "latest" / sample_db
    done = env.cli("restore", "--backup-path", str(link), config=cfg)
    assert done.returncode == 4 and "pass --yes" in done.stderr, done.stderr  # its own, non-empty
    assert server.sql("SELECT COUNT(*) FROM customer", sample_db).strip() == "10"
    done = env.cli("restore", "--backup-path", str(link), "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert server.sql("SELECT COUNT(*) FROM customer", sample_db).strip() == "2003"


def test_restore_from_a_folder_of_several_backups_asks_which(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    for _ in range(2):
        assert env.cli("backup", "--yes", "--force", config=cfg).returncode == 0
    done = env.cli("restore", "--backup-path", str(env.backups / sample_db), "-d", "x_restored", config=cfg)
    assert done.returncode == 2 and "holds 2 backups" in done.stderr and "name one with --backup-path" in done.stderr
