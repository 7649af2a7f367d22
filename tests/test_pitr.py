"""Point-in-time recovery on a real server with the binary log on: the archiver (`binlog --once`)
and `restore --to-time/--to-gtid` (base backup + replay), checked by CHECKSUM TABLE against a
snapshot taken at the chosen moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone

import pytest

from conftest import TENANGDB, Env, unique

TABLES = ("account", "ledger")


@pytest.fixture
def benv(tmp_path, binlog_server) -> Env:
    return Env(root=tmp_path, server=binlog_server)


def checksums(server, database: str) -> dict:
    tables = server.sql("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'", database).split("\n")
    names = sorted(line.split("\t")[0] for line in tables if line.strip())
    out = {}
    for name in names:
        line = server.sql(f"CHECKSUM TABLE `{name}`", database).strip()
        out[name] = line.split("\t")[-1]
    return out


def archived(benv: Env) -> list[dict]:
    folder = benv.backups / ".binlog"
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")
                   if p.name not in ("server.json", "gaps.json") and not p.name.startswith(".")),
                  key=lambda r: r["name"])


def assert_refused_untouched(benv: Env, config, args: list[str], target: str, reason: str) -> None:
    """A point-in-time restore that must refuse (exit 4) with `reason`, before creating the target."""
    done = benv.cli("restore", *args, "-d", target, config=config)
    assert done.returncode == 4, done.stderr
    assert reason in done.stderr and "nothing was changed" in done.stderr
    assert benv.server.sql(f"SHOW DATABASES LIKE '{target}'").strip() == ""


def pause_past_second() -> None:
    time.sleep(1.2)  # binlog timestamps have one-second resolution


def purge_to_current(server) -> None:
    """PURGE BINARY LOGS up to the current file. The server keeps a file it still counts as in
    use, with only a note (seen now and then right after an archiver cycle): try again a while."""
    current = server.sql("SHOW MASTER STATUS").split()[0]
    deadline = time.monotonic() + 15
    while server.sql(f"PURGE BINARY LOGS TO '{current}'; SHOW BINARY LOGS").split()[0] != current:
        assert time.monotonic() < deadline, "the older binlog files could not be purged"
        time.sleep(0.3)


def a_moment(server, db: str) -> tuple[datetime, str, dict]:
    """A moment T alone in its second of the binlog: T, the GTID position then and `db`'s checksums."""
    pause_past_second()
    moment = datetime.now(timezone.utc).replace(microsecond=0)
    gtid = server.sql("SELECT @@gtid_binlog_pos").strip()
    at_t = checksums(server, db)
    pause_past_second()
    return moment, gtid, at_t


@pytest.fixture
def history(benv, needs_mydumper):
    """A database with a base backup, writes, a moment T (with its GTID and checksums), then more
    writes and a DROP TABLE, all archived."""
    server = benv.server
    db = unique("pitr")
    server.sql(f"""CREATE DATABASE `{db}`; USE `{db}`;
        CREATE TABLE account (id INT PRIMARY KEY, owner VARCHAR(40), balance DECIMAL(12,2));
        INSERT INTO account SELECT seq, CONCAT('o', seq), seq * 10 FROM seq_1_to_500;""")
    # A mydumper base (the parallel engine: a folder of files per table, loaded by myloader);
    # test_pitr_ops has a mysqldump base, test_pitr_physical a mariabackup one.
    config = benv.write_config({"backup": {"engine": "mydumper"}})
    done = benv.cli("backup", "--databases", db, config=config)
    assert done.returncode == 0, done.stderr
    [base] = benv.backups_of(db)
    assert json.loads((base / "manifest.json").read_text())["engine"]["name"] == "mydumper"
    server.sql(f"""USE `{db}`;
        UPDATE account SET balance = balance + 1 WHERE id % 3 = 0;
        CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, account INT, amount DECIMAL(12,2));
        INSERT INTO ledger (account, amount) SELECT seq, seq / 7 FROM seq_1_to_300;
        DELETE FROM account WHERE id > 480;""")
    # A transaction of the same moment in another database: never replayed into ours.
    other = unique("other")
    server.sql(f"CREATE DATABASE `{other}`; CREATE TABLE `{other}`.o (id INT PRIMARY KEY); "
               f"INSERT INTO `{other}`.o VALUES (1)")
    moment, gtid, at_t = a_moment(server, db)
    server.sql(f"""USE `{db}`;
        UPDATE account SET balance = 0;
        INSERT INTO ledger (account, amount) VALUES (1, 99);
        DROP TABLE ledger;""")
    done = benv.cli("binlog", "--once", config=config)
    assert done.returncode == 0, done.stderr
    yield db, config, moment, gtid, at_t
    server.sql(f"DROP DATABASE IF EXISTS `{db}`; DROP DATABASE IF EXISTS `{other}`")


def test_restore_to_time_and_to_gtid_match_the_snapshot(benv, history):
    db, config, moment, gtid, at_t = history
    server = benv.server
    source_now = checksums(server, db)
    assert "ledger" not in source_now
    for option, value in (("--to-time", moment.strftime("%Y-%m-%d %H:%M:%S")), ("--to-gtid", gtid)):
        target = unique("at_t")
        try:
            plan = benv.cli("restore", "-b", db, option, value, "-d", target, "--dry-run", config=config)
            assert plan.returncode == 0, plan.stderr
            assert "stop point:" in plan.stdout and "base backup:" in plan.stdout
            assert server.sql(f"SHOW DATABASES LIKE '{target}'").strip() == ""  # a dry run changes nothing
            done = benv.cli("restore", "-b", db, option, value, "-d", target, config=config)
            assert done.returncode == 0, done.stderr
            assert checksums(server, target) == at_t, option
            # The source, live beside the target, was not touched by the replay.
            assert checksums(server, db) == source_now
        finally:
            server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_a_time_beyond_the_archive_is_refused(benv, history):
    db, config, *_ = history
    done = benv.cli("restore", "-b", db, "--to-time", "2999-01-01 00:00:00", "-d", unique("x"), config=config)
    assert done.returncode == 2, done.stderr
    assert "reaches only to" in done.stderr


def test_a_statement_naming_the_source_refuses_a_rename(benv):
    server = benv.server
    db = unique("named")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1)")
    config = benv.write_config()
    try:
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        # Run outside the database, naming it: with a rename it would write into the source.
        server.sql(f"CREATE TABLE `{db}`.t2 (id INT PRIMARY KEY)")
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        last = archived(benv)[-1]
        assert_refused_untouched(benv, config, ["-b", db, "--to-position", f"{last['name']}:{last['end_position']}"],
                                 unique("renamed"), "the replay would skip it")
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_a_purged_binlog_is_a_gap_and_restore_across_it_refuses(benv):
    server = benv.server
    db = unique("gap")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1)")
    config = benv.write_config()
    try:
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        server.sql(f"INSERT INTO `{db}`.t VALUES (2); FLUSH BINARY LOGS; INSERT INTO `{db}`.t VALUES (3); "
                   "FLUSH BINARY LOGS")
        purge_to_current(server)
        server.sql(f"INSERT INTO `{db}`.t VALUES (4)")
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 4, done.stdout + done.stderr
        assert "gap" in done.stderr.lower()
        gaps = json.loads((benv.backups / ".binlog" / "gaps.json").read_text())
        assert gaps and gaps[0]["missing"]
        # The rest was archived after the gap; a restore across it refuses before touching anything.
        assert benv.cli("binlog", "--once", config=config).returncode == 0  # reported once, archiving goes on
        target = unique("acrossgap")
        pause_past_second()
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        server.sql(f"INSERT INTO `{db}`.t VALUES (5)")
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        assert_refused_untouched(benv, config, ["-b", db, "--to-time", when], target, "a gap")
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_killed_archiver_leaves_no_gap_and_no_duplicate(benv):
    server = benv.server
    db = unique("kill")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, pad MEDIUMTEXT)")
    for i in range(12):
        server.sql(f"INSERT INTO `{db}`.t VALUES ({i}, REPEAT('x', 200000)); FLUSH BINARY LOGS")
    config = benv.write_config()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    try:
        for delay in (0.9, 1.4):
            proc = subprocess.Popen([*TENANGDB, "--config", str(config), "binlog", "--once"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=benv.root)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0, done.stderr
        records = archived(benv)
        names = [r["name"] for r in records]
        on_server = [line.split("\t")[0] for line in server.sql("SHOW BINARY LOGS").splitlines() if line.strip()]
        assert names == on_server[: len(names)] and names == on_server[:-1]  # every closed file, once, in order
        folder = benv.backups / ".binlog"
        stored = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".json") and not p.name.startswith("."))
        assert stored == sorted(r["stored_name"] for r in records)
        assert not list(folder.glob(".fifo-*"))
        for r in records:
            assert (folder / r["stored_name"]).stat().st_size == r["stored_size"]
            assert oct((folder / r["stored_name"]).stat().st_mode & 0o777) == "0o640"
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")
