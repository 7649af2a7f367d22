"""Point-in-time recovery from a physical base (backup.engine: mariabackup) on the server with the
binary log on: `restore --datadir NEW --to-time T | --to-gtid G` gives an instance whose tables
all match a snapshot taken at T (CHECKSUM TABLE), with its accounts and its GTID position; one
database of the physical base is restored to T under a new name on the configured server; and a
base made with the binary log off is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TENANGDB, Env, unique
from test_failures import _wait_for
from test_pitr import a_moment, archived, checksums, purge_to_current
from tenangdb.mysql.sandbox import start_sandbox

INSTANCE = "_instance"


@pytest.fixture(scope="module")
def history(tmp_path_factory, binlog_server):
    """A physical backup of the binlog server, then writes (rows in InnoDB and MyISAM tables, a new
    table with a foreign key, an account), a moment T with its GTID position and the database's
    checksums, then more writes, a DROP TABLE and a DROP USER, all archived."""
    assert shutil.which("mariabackup"), "mariadb-backup is not installed"
    server = binlog_server
    root = tmp_path_factory.mktemp("pitrphys")
    env = Env(root=root, server=server)
    db, user = unique("phys"), unique("acct")
    server.sql(f"""CREATE DATABASE `{db}`; USE `{db}`;
        CREATE TABLE owner (id INT PRIMARY KEY, name VARCHAR(40)) ENGINE=InnoDB;
        CREATE TABLE account (id INT PRIMARY KEY, owner INT, balance DECIMAL(12,2), rate FLOAT,
                              FOREIGN KEY (owner) REFERENCES owner (id)) ENGINE=InnoDB;
        CREATE TABLE note (id INT PRIMARY KEY, body VARCHAR(100)) ENGINE=MyISAM;
        INSERT INTO owner SELECT seq, CONCAT('o', seq) FROM seq_1_to_50;
        INSERT INTO account SELECT seq, 1 + seq % 50, seq * 10, seq / 7 FROM seq_1_to_400;
        INSERT INTO note VALUES (1, 'first');
        CREATE VIEW rich AS SELECT id FROM account WHERE balance > 1000;
        CREATE EVENT tidy ON SCHEDULE EVERY 1 DAY DO DELETE FROM note WHERE id > 1000;""")
    config = env.write_config({"backup": {"engine": "mariabackup"},
                               "verify": {"sandbox": {"parent": str(root)}}})
    done = env.cli("backup", "--yes", config=config)
    assert done.returncode == 0, done.stderr
    at_backup = checksums(server, db)
    server.sql(f"""USE `{db}`;
        UPDATE account SET balance = balance + 1, rate = rate * 3 WHERE id % 3 = 0;
        INSERT INTO note VALUES (2, 'second');
        CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, account INT,
                             FOREIGN KEY (account) REFERENCES account (id)) ENGINE=InnoDB;
        INSERT INTO ledger (account) SELECT seq FROM seq_1_to_300;
        DELETE FROM account WHERE id > 390;
        CREATE USER '{user}'@'localhost' IDENTIFIED BY 'pw-{user}';
        GRANT SELECT ON `{db}`.* TO '{user}'@'localhost';""")
    moment, gtid, at_t = a_moment(server, db)
    server.sql(f"""USE `{db}`;
        UPDATE account SET balance = 0; INSERT INTO note VALUES (3, 'late');
        DROP TABLE ledger; DROP USER '{user}'@'localhost';""")
    done = env.cli("binlog", "--once", config=config)
    assert done.returncode == 0, done.stderr
    yield env, config, db, user, moment, gtid, at_t, at_backup
    server.sql(f"DROP DATABASE IF EXISTS `{db}`; DROP USER IF EXISTS '{user}'@'localhost'")


def _no_private_folders(env: Env) -> None:
    left = [p for p in env.root.rglob(".tenangdb-restore-*")] + list(env.root.glob("tenangdb-sandbox-*"))
    assert not left, f"left behind: {left}"


def test_datadir_to_time_and_to_gtid_match_the_snapshot(history):
    env, config, db, user, moment, gtid, at_t, _ = history
    for option, value in (("--to-time", moment.strftime("%Y-%m-%d %H:%M:%S")), ("--to-gtid", gtid)):
        new = env.root / f"new{option}"
        plan = env.cli("restore", "--datadir", str(new), option, value, "--dry-run", config=config)
        assert plan.returncode == 0, plan.stderr
        assert "physical: the whole instance" in plan.stdout, plan.stdout
        assert f"GTID position at the stop point: {gtid}" in plan.stdout, plan.stdout
        assert not new.exists(), "a dry run changes nothing"
        done = env.cli("restore", "--datadir", str(new), option, value, config=config)
        assert done.returncode == 0, done.stderr
        assert "start a server on it: mariadbd" in done.stdout and gtid in done.stdout, done.stdout
        _no_private_folders(env)
        # Its own grant tables (root has no password on the source), and its binary log on.
        copy = start_sandbox(binlog=True, parent=env.root, datadir=new, skip_grants=False)
        try:
            assert checksums(copy, db) == at_t, option
            # The account created before T by a replayed statement, dropped after T.
            assert copy.sql(f"SELECT COUNT(*) FROM mysql.user WHERE User = '{user}'").strip() == "1"
            assert copy.sql("SELECT @@gtid_slave_pos").strip() == gtid
            # As the README says for a new primary: its binlog state from the same position.
            copy.sql(f"RESET MASTER; SET GLOBAL gtid_binlog_state = '{gtid}'")
            assert copy.sql("SELECT @@gtid_binlog_pos").strip() == gtid
        finally:
            copy.stop(graceful=False)
    # Never over data: the directory just restored.
    done = env.cli("restore", "--datadir", str(new), "--to-gtid", gtid, config=config)
    assert done.returncode == 2 and "a physical restore goes into a new, empty data directory" in done.stderr


def test_one_database_of_the_physical_base_to_a_time_and_at_the_backup(history):
    env, config, db, _, moment, _, at_t, at_backup = history
    server = env.server
    source_now = checksums(server, db)
    target = unique("phys_at_t")
    try:
        # The database has no backup of its own: its base is the physical backup holding it.
        done = env.cli("restore", "-b", db, "--to-time", moment.strftime("%Y-%m-%d %H:%M:%S"), "-d", target,
                       config=config)
        assert done.returncode == 0, done.stderr
        assert "physical: the whole instance" in done.stdout, done.stdout
        assert "restoring the whole instance" in done.stderr, done.stderr
        assert checksums(server, target) == at_t
        assert checksums(server, db) == source_now  # the source beside it is not touched
        _no_private_folders(env)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")
    [backup] = env.backups_of(INSTANCE)
    target = unique("phys_at_b")
    try:
        # Its newest backup, which is the physical one (--source-database names it explicitly).
        done = env.cli("restore", "-b", db, "--latest", "-d", target, config=config)
        assert done.returncode == 0, done.stderr
        assert backup.name in done.stderr, done.stderr
        assert checksums(server, target) == at_backup
        assert server.sql(f"SHOW FULL TABLES FROM `{target}` WHERE Table_type = 'VIEW'").split("\t")[0] == "rich"
        # Its events too: a server without its grant tables would show none to the dump.
        assert server.sql(f"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{target}'"
                          ).strip() == "tidy"
        # A database the backup does not hold: said before anything is restored.
        done = env.cli("restore", "-b", str(backup), "--source-database", "nosuchdb", "-d", unique("x"),
                       config=config)
        assert done.returncode == 2 and "holds no database 'nosuchdb'" in done.stderr, done.stderr
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_a_physical_base_made_with_the_binary_log_off_is_refused(history, server):
    """A physical backup of a server whose binary log is off records no position: no base."""
    env, _, _, _, moment, _, _, _ = history
    off = Env(root=env.root / "off", server=server)
    off.root.mkdir()
    config = off.write_config({"backup": {"engine": "mariabackup"},
                               "binlog": {"directory": str(env.backups / ".binlog")}})
    done = off.cli("backup", "--yes", config=config)
    assert done.returncode == 0, done.stderr
    [backup] = off.backups_of(INSTANCE)
    assert json.loads((backup / "manifest.json").read_text())["binlog"] is None
    new = off.root / "new"
    done = off.cli("restore", "--datadir", str(new), "--to-time", moment.strftime("%Y-%m-%d %H:%M:%S"),
                   config=config)
    assert done.returncode == 2, done.stderr
    assert f"{backup.name} recorded none (the binary log was off" in done.stderr, done.stderr
    assert not new.exists()


def test_a_killed_restore_leaves_no_server_and_the_next_run_removes_its_folder(history):
    """SIGKILL while the whole instance is up in the private folder beside the backup: its server
    dies with the run, and the next command removes the folder."""
    env, config, db, _, moment, _, _, _ = history
    target = unique("killed")
    cmd = [*TENANGDB, "--config", str(config), "restore", "-b", db, "--to-time",
           moment.strftime("%Y-%m-%d %H:%M:%S"), "-d", target]
    proc = subprocess.Popen(cmd, cwd=env.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _servers_in(env.backups), timeout=60), "no server was started on the instance"
    finally:
        proc.kill()
        proc.wait()
    assert _wait_for(lambda: not _servers_in(env.backups), timeout=10), "the server outlived the run"
    assert list(env.backups.glob(f"{INSTANCE}/*/.tenangdb-restore-*"))  # no chance to clean up: the next run does
    done = env.cli("list", config=config)
    assert done.returncode == 0, done.stderr
    assert "removed restore plaintext" in done.stderr, done.stderr
    _no_private_folders(env)
    assert env.server.sql(f"SHOW DATABASES LIKE '{target}'").strip() == ""


def test_a_gap_after_the_physical_base_refuses_before_anything_is_touched(history):
    """Binlogs purged before they were archived: a restore across the gap is refused (exit 4, the
    logical path's message) before the data directory is made. Last here: it leaves the gap."""
    env, config, db, _, _, _, _, _ = history
    server = env.server
    server.sql(f"INSERT INTO `{db}`.note VALUES (100, 'lost'); FLUSH BINARY LOGS; "
               f"INSERT INTO `{db}`.note VALUES (101, 'lost'); FLUSH BINARY LOGS")
    purge_to_current(server)
    assert env.cli("binlog", "--once", config=config).returncode == 4  # the gap, recorded
    server.sql(f"INSERT INTO `{db}`.note VALUES (102, 'after')")
    assert env.cli("binlog", "--once", config=config).returncode == 0
    new = env.root / "across"
    last = archived(env)[-1]
    done = env.cli("restore", "--datadir", str(new), "--to-position", f"{last['name']}:{last['end_position']}",
                   config=config)
    assert done.returncode == 4, done.stderr
    assert "a gap" in done.stderr and "nothing was changed" in done.stderr, done.stderr
    assert not new.exists()


def _servers_in(folder: Path) -> list[int]:
    """mariadbd processes whose data directory is under `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if argv and argv[0].endswith(b"mariadbd") and any(
                a.startswith(b"--datadir=" + str(folder).encode()) for a in argv):
            found.append(int(proc.name))
    return found
