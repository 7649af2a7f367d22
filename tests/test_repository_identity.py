"""The backup directory is a repository with an identity: an unmounted disk's empty mount point,
a missing directory or another repository is refused instead of being written to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import TENANGDB
from test_failures import only_line

MARKER = ".tenangdb-repository"


def _backup(env, cfg, *extra):
    return env.cli("backup", "--force", *extra, config=cfg)


def _record(env) -> dict:
    [record] = (env.root / "tracking").glob(".tenangdb_repository_*.json")
    return json.loads(record.read_text())


def test_the_first_backup_makes_the_repository_and_the_next_finds_it(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert not env.backups.exists()
    assert _backup(env, cfg).returncode == 0
    ident = json.loads((env.backups / MARKER).read_text())["id"]
    assert _record(env) == {**_record(env), "id": ident, "directory": str(env.backups)}
    assert _backup(env, cfg).returncode == 0
    assert len(env.backups_of(sample_db)) == 2
    listed = env.cli("list", "--local", config=cfg)
    assert listed.returncode == 0 and "not a backup" not in listed.stderr, listed.stderr


def test_an_empty_mount_point_is_refused_and_left_empty(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert _backup(env, cfg).returncode == 0
    # The disk is unmounted: the path is an empty folder on the filesystem below.
    env.backups.rename(env.root / "disk")
    env.backups.mkdir()
    for command in (["backup", "--force"], ["cleanup", "--yes", "--force"], ["cleanup", "--dry-run"]):
        done = env.cli(*command, config=cfg)
        assert done.returncode == 2, (command, done.stderr)
        line = only_line(done.stderr)
        assert f"{env.backups} is not the repository this host backs up to" in line and "mounted" in line, line
    assert list(env.backups.iterdir()) == []
    done = env.cli("doctor", "--json", config=cfg)
    [check] = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "repository"]
    assert check["status"] == "fail" and "holds no .tenangdb-repository" in check["message"], check
    # The disk is back: everything works again.
    env.backups.rmdir()
    (env.root / "disk").rename(env.backups)
    assert _backup(env, cfg).returncode == 0


def test_a_known_repository_that_is_missing_is_not_created_again(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert _backup(env, cfg).returncode == 0
    shutil.rmtree(env.backups)
    done = _backup(env, cfg)
    assert done.returncode == 2, done.stderr
    assert f"{env.backups} does not exist, but this host has backed up to it" in only_line(done.stderr)
    assert not env.backups.exists()


def test_another_repository_in_its_place_is_refused(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert _backup(env, cfg).returncode == 0
    (env.backups / MARKER).write_text(json.dumps({"id": "0123456789abcdef0123456789abcdef"}))
    done = _backup(env, cfg)
    assert done.returncode == 2, done.stderr
    assert "holds repository 0123456789ab, not" in only_line(done.stderr)
    assert len(env.backups_of(sample_db)) == 1


def test_a_directory_made_before_identities_is_adopted(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert _backup(env, cfg).returncode == 0
    (env.backups / MARKER).unlink()
    shutil.rmtree(env.root / "tracking")  # an older version kept no identity
    assert _backup(env, cfg).returncode == 0
    assert (env.backups / MARKER).is_file() and len(env.backups_of(sample_db)) == 2


def test_a_mount_point_of_fstab_with_nothing_mounted_is_found(tmp_path):
    from tenangdb.repository.identity import unmounted_mount_point

    fstab = tmp_path / "fstab"
    fstab.write_text("# comment\nUUID=1 / ext4 defaults 0 1\nUUID=2 /mnt/back\\040up ext4 noauto 0 2\n"
                     "UUID=3 none swap sw 0 0\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
    assert unmounted_mount_point(Path("/mnt/back up/tenangdb/x"), fstab, mountinfo) == "/mnt/back up"
    assert unmounted_mount_point(Path("/srv/backups"), fstab, mountinfo) is None
    mountinfo.write_text(mountinfo.read_text() + "40 22 8:17 / /mnt/back\\040up rw - ext4 /dev/sdb1 rw\n")
    assert unmounted_mount_point(Path("/mnt/back up/tenangdb"), fstab, mountinfo) is None


def test_a_state_directory_under_a_file_is_refused_before_the_backup(env, sample_db):
    blocker = env.root / "not-a-folder"
    blocker.write_text("")
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump",
                                       "tracking_directory": str(blocker / "state")}})
    done = _backup(env, cfg)
    assert done.returncode == 2, done.stderr
    line = only_line(done.stderr)
    assert f"backup.tracking_directory {blocker / 'state'} cannot hold the tracking file" in line, line
    assert not env.backups_of(sample_db)


def test_another_users_backup_directory_is_a_clear_error(env, server, sample_db):
    if os.geteuid() != 0:
        pytest.skip("needs root to run as nobody")
    base = Path(tempfile.mkdtemp(prefix="tenangdb-perm-"))  # searchable by nobody, unlike pytest's
    try:
        os.chmod(base, 0o755)
        backups, state = base / "backups", base / "state"
        backups.mkdir(mode=0o755)  # root's
        state.mkdir()
        shutil.chown(state, "nobody")
        cfg = base / "config.yaml"
        cfg.write_text(yaml.safe_dump({"database": server.config_section(), "backup": {
            "databases": [sample_db], "directory": str(backups), "tracking_directory": str(state)}}))
        os.chmod(cfg, 0o644)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
        environ["HOME"] = str(state)
        done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *TENANGDB,
                               "--config", str(cfg), "backup", "--yes"], capture_output=True, text=True,
                              cwd=base, env=environ, timeout=120)
        assert "Traceback" not in done.stderr and done.returncode == 2, done.stderr
        line = only_line(done.stderr)
        assert f"may not write into {backups} (the backup directory belongs to root)" in line, line
        assert list(backups.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
