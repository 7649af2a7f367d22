"""A physical backup restored into a new data directory from the remote alone (a local-folder
rclone remote): an increment with its remote chain, the newest good one (`-b _instance --latest`,
a damaged remote copy passed over), a damaged remote parent refused (exit 7) with nothing left
behind, a killed run's download removed by the next command, and a point-in-time restore of
the whole instance from the remote base and the remote binlog mirror."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import TENANGDB, Env, unique
from test_failures import _wait_for
from test_init import rclone_remote
from test_physical import INSTANCE, _backup_one_more, _checksums, _manifest, penv, source  # noqa: F401
from test_pitr import checksums
from test_pitr_physical import _no_private_folders, history  # noqa: F401
from tenangdb.mysql.sandbox import start_sandbox


def _off_site(env: Env, parent: Path, root: Path) -> tuple[Path, Path, Path]:
    """Encrypted physical backups (full + increments) uploaded as they are made to a local-folder
    remote; a config for a fresh machine that has only the remote and the key. Returns the
    remote's folder, the config that makes the backups and the fresh one."""
    conf, offsite = rclone_remote(root)
    upload = {"enabled": True, "destination": f"local:{offsite}", "rclone_config_path": str(conf), "retry_delay": 0,
              "timeout": 60}
    encryption = {"enabled": True, "key_file": str(env.key())}
    sandbox = {"sandbox": {"parent": str(parent)}}
    cfg = env.write_config({"backup": {"engine": "mariabackup", "databases": ["corpus"], "encryption": encryption,
                                       "physical": {"incremental": {"enabled": True, "full_every": "90d"}}},
                            "upload": upload, "verify": sandbox})
    fresh = env.write_config({"backup": {"directory": str(root / "fresh"), "engine": "mariabackup",
                                         "encryption": encryption},
                              "upload": upload, "verify": sandbox}, name="fresh.yaml")
    return offsite, cfg, fresh


def _restored(parent: Path, datadir: Path, database: str) -> dict[str, str]:
    copy = start_sandbox(binlog=False, parent=parent, datadir=datadir, skip_grants=False)
    try:
        return _checksums(copy, database)
    finally:
        copy.stop(graceful=False)


def _flip(path: Path) -> bytes:
    good = path.read_bytes()
    middle = len(good) // 2
    path.write_bytes(good[:middle] + bytes([good[middle] ^ 1]) + good[middle + 1:])
    return good


def test_a_remote_increment_restores_into_a_datadir_with_its_remote_chain(penv, source, tmp_path):
    box, parent = source
    offsite, cfg, fresh = _off_site(penv, parent, tmp_path)
    box.sql("CREATE DATABASE IF NOT EXISTS far; USE far; CREATE OR REPLACE TABLE far.t (id INT PRIMARY KEY, v INT) "
            "ENGINE=InnoDB; INSERT INTO far.t SELECT seq, seq FROM seq_1_to_1000")
    try:
        full = _backup_one_more(penv, cfg)
        at_full = _checksums(box, "far")
        box.sql("UPDATE far.t SET v = -v WHERE id % 3 = 0; INSERT INTO far.t VALUES (5000, 5)")
        increment = _backup_one_more(penv, cfg)
        at_increment = _checksums(box, "far")
    finally:
        box.sql("DROP DATABASE IF EXISTS far")
    assert _manifest(increment)["engine"]["chain"]["parent"] == full.name
    rels = [f.relative_to(penv.backups).as_posix() for f in (full, increment)]
    assert all((offsite / rel / "manifest.json").is_file() for rel in rels)
    # The downloads go to the temporary folder: a private one per test, to see them go.
    temp = tmp_path / "tmp"
    temp.mkdir()
    quiet = {"TMPDIR": str(temp)}

    # By name, from the remote alone (the fresh machine has no backup): the chain comes too.
    one = tmp_path / "one"
    done = penv.cli("restore", "-b", increment.name, "--from-remote", "--datadir", str(one), config=fresh, env=quiet)
    assert done.returncode == 0, done.stderr
    assert f"OK {increment.name} -> data directory {one}" in done.stdout, done.stdout
    assert f"downloading local:{offsite / rels[0]}, which" in done.stderr, done.stderr
    assert _restored(parent, one, "far") == at_increment
    assert list(temp.iterdir()) == [] and not list(tmp_path.glob(".tenangdb-restore-*")), "a private folder was left"

    # The newest remote copy damaged: --latest passes it over for the one before it.
    stored = offsite / rels[1] / _manifest(increment)["files"][0]["name"]
    good = _flip(stored)
    latest = tmp_path / "latest"
    done = penv.cli("restore", "-b", INSTANCE, "--latest", "--from-remote", "--datadir", str(latest), config=fresh,
                    env=quiet)
    assert done.returncode == 0, done.stderr
    assert f"remote {increment.name} failed verification, so the one before it is used ({full.name})" in done.stderr
    assert f"OK {full.name} -> data directory {latest}" in done.stdout, done.stdout
    assert _restored(parent, latest, "far") == at_full
    stored.write_bytes(good)

    # A remote parent damaged (the local copy whole): refused, exit 7, nothing restored or left.
    stored = offsite / rels[0] / _manifest(full)["files"][0]["name"]
    good = _flip(stored)
    broken = tmp_path / "broken"
    done = penv.cli("restore", "-b", f"remote:{rels[1]}", "--datadir", str(broken), config=fresh, env=quiet)
    assert done.returncode == 7, done.stderr
    assert f"the chain is broken at {full.name}" in done.stderr, done.stderr
    assert f"local:{offsite / rels[0]}" in done.stderr, done.stderr
    assert "tenangdb-remote-" not in done.stderr  # the remote copy is named, not the download
    assert not broken.exists() or not any(broken.iterdir())
    assert list(temp.iterdir()) == [] and not list(tmp_path.glob(".tenangdb-restore-*"))
    stored.write_bytes(good)

    # Without --from-remote, a database name, or --latest with a backup's name: said at once.
    for args, said in ((["-b", INSTANCE, "--latest"], f"no backups of {INSTANCE} here"),
                       (["-b", "corpus", "--latest", "--from-remote"], "--datadir restores the whole instance"),
                       (["-b", increment.name, "--latest", "--from-remote"], "--latest and --before choose")):
        done = penv.cli("restore", *args, "--datadir", str(tmp_path / "never"), config=fresh, env=quiet)
        assert done.returncode == 2 and said in done.stderr, (args, done.stderr)
    assert not (tmp_path / "never").exists()


def test_one_database_out_of_a_remote_physical_chain(penv, source, tmp_path):
    """From a machine with only the remote and the key: a database whose backups are physical
    (the instance's) comes out of the newest remote chain, or out of a named remote copy."""
    box, parent = source
    offsite, cfg, fresh = _off_site(penv, parent, tmp_path)
    box.sql("CREATE DATABASE IF NOT EXISTS away; USE away; CREATE OR REPLACE TABLE away.t (id INT PRIMARY KEY, v INT) "
            "ENGINE=InnoDB; INSERT INTO away.t SELECT seq, seq FROM seq_1_to_500")
    targets = [unique("away_latest"), unique("away_full")]
    try:
        full = _backup_one_more(penv, cfg)
        at_full = _checksums(box, "away")
        box.sql("UPDATE away.t SET v = -v WHERE id % 7 = 0; INSERT INTO away.t VALUES (900, 9)")
        increment = _backup_one_more(penv, cfg)
        at_increment = _checksums(box, "away")
        temp = tmp_path / "tmp"
        temp.mkdir()
        quiet = {"TMPDIR": str(temp)}
        # By the database's name: its newest remote backup is the increment, whose chain comes too.
        done = penv.cli("restore", "-b", "away", "--latest", "--from-remote", "-d", targets[0], "--yes",
                        config=fresh, env=quiet)
        assert done.returncode == 0, done.stderr
        assert increment.name in done.stderr and "restoring the whole instance" in done.stderr, done.stderr
        assert _checksums(box, targets[0]) == at_increment
        # A remote copy by name, the database named with --source-database.
        done = penv.cli("restore", "-b", full.name, "--source-database", "away", "--from-remote", "-d", targets[1],
                        "--yes", config=fresh, env=quiet)
        assert done.returncode == 0, done.stderr
        assert f"OK {full.name}: 'away' -> {targets[1]!r}" in done.stdout, done.stdout
        assert _checksums(box, targets[1]) == at_full
        assert list(temp.iterdir()) == [], "a download or a private folder was left"
    finally:
        box.sql("DROP DATABASE IF EXISTS away; " + "; ".join(f"DROP DATABASE IF EXISTS `{t}`" for t in targets))


def test_a_killed_remote_restore_leaves_its_download_to_the_next_command(penv, source, tmp_path):
    """SIGKILL while a remote copy is being restored: the download (in the temporary folder) is
    removed by the next command, the unpacked instance beside DIR by the next restore there."""
    _, parent = source
    _, cfg, fresh = _off_site(penv, parent, tmp_path)
    folder = _backup_one_more(penv, cfg)
    temp = tmp_path / "tmp"
    temp.mkdir()
    quiet = {"TMPDIR": str(temp)}
    cmd = [*TENANGDB, "--config", str(fresh), "restore", "-b", f"remote:{folder.relative_to(penv.backups)}",
           "--datadir", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, cwd=penv.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}, **quiet})
    try:
        # Downloaded and being unpacked beside DIR.
        assert _wait_for(lambda: list(temp.glob("tenangdb-remote-*")) and list(tmp_path.glob(".tenangdb-restore-*")),
                         timeout=120), "the restore never got to unpacking"
    finally:
        proc.kill()
        proc.wait()
    assert list(temp.glob("tenangdb-remote-*")), "no chance to clean up: the next command does"
    done = penv.cli("list", config=fresh, env=quiet)
    assert done.returncode == 0, done.stderr
    assert "removed download" in done.stderr, done.stderr
    assert list(temp.iterdir()) == []
    again = tmp_path / "again"
    done = penv.cli("restore", "-b", folder.name, "--from-remote", "--datadir", str(again), config=fresh, env=quiet)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob(".tenangdb-restore-*")) and list(temp.iterdir()) == []


def test_datadir_to_a_gtid_from_the_remote_alone(history, tmp_path):
    """A fresh machine with only the remote: the physical base and the binlog mirror are
    downloaded, and the whole instance comes back as it was at the GTID."""
    env, config, db, user, _, gtid, at_t, _ = history
    conf, offsite = rclone_remote(tmp_path)
    upload = {"enabled": True, "destination": f"local:{offsite}", "rclone_config_path": str(conf), "retry_delay": 0}
    up = env.write_config({"backup": {"engine": "mariabackup"}, "upload": upload,
                           "verify": {"sandbox": {"parent": str(env.root)}}}, name="up.yaml")
    done = env.cli("upload", config=up)
    assert done.returncode == 0, done.stdout + done.stderr
    done = env.cli("binlog", "--once", config=up)
    assert done.returncode == 0 and "uploaded" in done.stdout, done.stdout + done.stderr
    fresh = env.write_config({"backup": {"directory": str(tmp_path / "fresh"), "engine": "mariabackup"},
                              "upload": upload, "verify": {"sandbox": {"parent": str(env.root)}}}, name="fresh.yaml")
    new = tmp_path / "new"
    args = ["restore", "--datadir", str(new), "--to-gtid", gtid]
    local = env.cli(*args, "--dry-run", config=fresh)
    assert local.returncode == 2 and "is empty" in local.stderr, local.stderr  # nothing here without the remote
    plan = env.cli(*args, "--from-remote", "--dry-run", config=fresh)
    assert plan.returncode == 0, plan.stderr
    assert "(remote; physical: the whole instance" in plan.stdout, plan.stdout
    assert f"GTID position at the stop point: {gtid}" in plan.stdout
    done = env.cli(*args, "--from-remote", config=fresh)
    assert done.returncode == 0, done.stderr
    assert "start a server on it: mariadbd" in done.stdout and gtid in done.stdout, done.stdout
    _no_private_folders(env)
    copy = start_sandbox(binlog=False, parent=env.root, datadir=new, skip_grants=False)
    try:
        assert checksums(copy, db) == at_t
        assert copy.sql(f"SELECT COUNT(*) FROM mysql.user WHERE User = '{user}'").strip() == "1"
        assert copy.sql("SELECT @@gtid_slave_pos").strip() == gtid
    finally:
        copy.stop(graceful=False)
    assert not list((tmp_path / "fresh").glob("**/*.mbstream*"))  # the downloads were private and removed

    # One database of it, to the same GTID, from the remote physical base (it has no backup of its own).
    target = unique("phys_remote")
    try:
        done = env.cli("restore", "-b", db, "--to-gtid", gtid, "--from-remote", "-d", target, config=fresh)
        assert done.returncode == 0, done.stderr
        assert "restoring the whole instance" in done.stderr, done.stderr
        assert checksums(env.server, target) == at_t
        _no_private_folders(env)
    finally:
        env.server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_the_instance_restores_only_into_a_data_directory(offline_env):
    done = offline_env.cli("restore", "-b", INSTANCE, "--latest", "--from-remote",
                           config=offline_env.write_config())
    assert done.returncode == 2 and "restore it into a new data directory with --datadir" in done.stderr, done.stderr
