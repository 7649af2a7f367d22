"""Content proof on every server: counts and checksums that belong to the dump's exact snapshot,
with the binary log off (MariaDB's default) and on, under a concurrent writer, and what a
test restore says when the proof could not be recorded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pymysql
import pytest

from conftest import TENANGDB, Env, backup_user_without_reload, unique

PREFIX = "tproof_"


def _make(server, name: str) -> None:
    server.sql(f"""
        CREATE DATABASE `{name}`; USE `{name}`;
        CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT, pad VARCHAR(200)) ENGINE=InnoDB;
        INSERT INTO t (v, pad) SELECT seq, REPEAT('p', 150) FROM seq_1_to_60000;
        CREATE TABLE log (id INT PRIMARY KEY AUTO_INCREMENT, at DATETIME(6)) ENGINE=InnoDB;
    """)


class Writer:
    """Commits small transactions on its own connection until stopped (bounded in time)."""

    def __init__(self, server, name: str) -> None:
        kwargs = {"unix_socket": server.socket} if server.socket else {"host": server.host, "port": server.port}
        self.conn = pymysql.connect(user=server.user, password=server.password, database=name, autocommit=True,
                                    **kwargs)
        self.commits = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        until = time.monotonic() + 120
        with self.conn.cursor() as cur:
            while not self.stop.is_set() and time.monotonic() < until:
                cur.execute("UPDATE t SET v = v + 1 WHERE id = 1 + FLOOR(RAND() * 60000)")
                cur.execute("INSERT INTO log (at) VALUES (NOW(6))")
                self.commits += 2

    def __enter__(self) -> "Writer":
        self.thread.start()
        while self.commits < 50:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.conn.close()


def _config(env: Env, server, name: str, **verify) -> object:
    return env.write_config({"backup": {"databases": [name], "engine": "mysqldump"},
                             "verify": {"target": "server", "database_prefix": PREFIX, **verify}},
                            database=server.config_section())


@pytest.mark.parametrize("which", ["binlog_off", "binlog_on"])
def test_a_backup_under_a_concurrent_writer_is_proven_by_its_test_restore(env, server, which, request):
    box = server if which == "binlog_off" else request.getfixturevalue("binlog_server")
    name = unique("proof")
    _make(box, name)
    try:
        cfg = _config(env, box, name)
        with Writer(box, name) as writer:
            before = writer.commits
            done = env.cli("backup", "--yes", config=cfg)
            during = writer.commits - before
        assert done.returncode == 0, done.stderr
        assert during > 10  # the writer really committed while the backup ran
        [folder] = env.backups_of(name)
        manifest = json.loads((folder / "manifest.json").read_text())
        checks = manifest["content_checks"]
        assert checks["method"] == "snapshot", checks
        assert checks["aligned"]["method"] == "backup-stage-block-commit"
        assert 0 < checks["aligned"]["held_ms"] < 2000
        assert set(checks["tables"]) == {"t", "log"}
        if which == "binlog_on":
            # Both views report the same binary log position: the lock really kept them together.
            assert manifest["binlog"]["position"] == checks["snapshot_binlog"]["position"]
        verified = env.cli("verify", "--test-restore", "-b", str(folder), config=cfg)
        assert verified.returncode == 0, verified.stderr
        assert "content proven" in verified.stdout
        record = json.loads((folder.parent / f".{folder.name}.verify.json").read_text())
        assert record["proof"] == "content proven" and record["tables_checked"] == 2
        listed = json.loads(env.cli("list", "--json", "--local", config=cfg).stdout)["backups"]
        assert [b["proof"] for b in listed] == ["content proven"]
    finally:
        box.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_without_reload_the_backup_is_made_and_the_test_restore_says_content_is_not_proven(env, server):
    name = unique("noreload")
    _make(server, name)
    try:
        with backup_user_without_reload(server, name) as section:
            cfg = env.write_config({"backup": {"databases": [name], "engine": "mysqldump"}}, database=section)
            done = env.cli("backup", "--yes", config=cfg)
            assert done.returncode == 0, done.stderr
            [folder] = env.backups_of(name)
            checks = json.loads((folder / "manifest.json").read_text())["content_checks"]
            assert checks["method"] is None and "RELOAD" in checks["reason"]
            assert "no row counts or checksums recorded" in done.stderr and "RELOAD" in done.stderr

        # The test restore (as root, who may create scratch databases) passes, saying what it showed.
        admin = _config(env, server, name)
        verified = env.cli("verify", "--test-restore", "-b", str(folder), config=admin)
        assert verified.returncode == 0, verified.stderr
        assert "loaded, objects present" in verified.stdout and "content NOT proven" in verified.stdout
        record = json.loads((folder.parent / f".{folder.name}.verify.json").read_text())
        assert record["ok"] is True and record["proof"] == "loaded, objects present"

        strict = _config(env, server, name, require_content_proof=True)
        refused = env.cli("verify", "--test-restore", "-b", str(folder), config=strict)
        assert refused.returncode == 7, refused.stderr
        assert "verify.require_content_proof" in refused.stderr.strip().splitlines()[-1]
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_commits_are_never_left_held(env, server):
    """However the backup ends, the server's commits go on: a write right after it is not blocked."""
    name = unique("held")
    _make(server, name)
    try:
        cfg = _config(env, server, name)
        assert env.cli("backup", "--yes", config=cfg).returncode == 0
        started = time.monotonic()
        server.sql(f"SET SESSION lock_wait_timeout = 5; INSERT INTO `{name}`.log (at) VALUES (NOW())")
        assert time.monotonic() - started < 2
        assert server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE '%backup lock%'"
                          ).strip() == "0"
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_a_table_named_by_a_recorded_loss_is_compared_by_row_count_only(env, server):
    """An ENUM error value restores as the '' member: the backup says so, and the test restore
    must neither fail on that table's checksum nor call it proven."""
    name = unique("lossy")
    server.sql(f"CREATE DATABASE `{name}`; USE `{name}`; "
               "CREATE TABLE e (id INT, v ENUM('', 'x')); SET SESSION sql_mode = ''; "
               "INSERT INTO e VALUES (1, 'x'), (2, 'bogus'), (3, ''); "
               "CREATE TABLE fine (id INT PRIMARY KEY); INSERT INTO fine VALUES (1), (2)")
    try:
        cfg = _config(env, server, name)
        assert env.cli("backup", "--yes", config=cfg).returncode == 0
        [folder] = env.backups_of(name)
        assert [loss["object"] for loss in json.loads((folder / "manifest.json").read_text())["losses"]] == \
            ["column `e`.`v`"]
        done = env.cli("verify", "--test-restore", "-b", str(folder), config=cfg)
        assert done.returncode == 0, done.stderr
        record = json.loads((folder.parent / f".{folder.name}.verify.json").read_text())
        assert record["proof"] == "content proven for some tables" and record["tables_checked"] == 2
        assert any("'e': its content differs from the source's, as the backup's recorded loss says" in note
                   for note in record["notes"])
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_a_lock_that_keeps_commits_from_being_held_costs_at_most_align_lock_wait(env, server):
    """Another session's LOCK TABLES ... WRITE (anywhere on the server) makes BACKUP STAGE wait.
    The backup waits verify.align_lock_wait, then goes on unproven; writers are not stalled."""
    import pymysql

    name, other = unique("waits"), unique("locked")
    _make(server, name)
    server.sql(f"CREATE DATABASE `{other}`; CREATE TABLE `{other}`.t (id INT PRIMARY KEY)")
    login = {"unix_socket": server.socket} if server.socket else {"host": server.host, "port": server.port}
    blocker = pymysql.connect(user=server.user, password=server.password or "", autocommit=True, **login)
    try:
        with blocker.cursor() as cur:
            cur.execute(f"LOCK TABLES `{other}`.t WRITE")
        cfg = _config(env, server, name, align_lock_wait="2s")
        with Writer(server, name) as writer:
            started = time.monotonic()
            done = env.cli("backup", "--yes", config=cfg)
            took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert took < 30
        checks = json.loads((env.backups_of(name)[0] / "manifest.json").read_text())["content_checks"]
        assert checks["method"] is None and "lock_wait_timeout" in checks["reason"]
        assert writer.commits > 100  # it went on while the backup waited for the lock
    finally:
        blocker.close()
        server.sql(f"DROP DATABASE IF EXISTS `{name}`; DROP DATABASE IF EXISTS `{other}`")


def _exact_clients() -> list[int]:
    """Live exact-values clients (mysql/exact.py): mariadb in batch mode with --unbuffered."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                args = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in "ZX" and b"--unbuffered" in args and b"--skip-column-names" in args:
                found.append(int(entry))
    return found


def test_kill_9_while_commits_are_held_leaves_the_server_writable(env, server, tmp_path):
    """SIGKILL of tenangdb while it holds commits (a dump tool that is slow to open its snapshot):
    the server's commits go on at once, and the exact-values client and its transaction are gone."""
    name = unique("held9")
    server.sql(f"CREATE DATABASE `{name}`; CREATE TABLE `{name}`.f (id INT PRIMARY KEY, v FLOAT); "
               f"INSERT INTO `{name}`.f VALUES (1, 1234.5678e0); "
               f"CREATE TABLE `{name}`.w (id INT AUTO_INCREMENT PRIMARY KEY)")
    slow = tmp_path / "slow-dump"
    slow.write_text(f"#!/bin/sh\nsleep 60\nexec {shutil.which('mariadb-dump')} \"$@\"\n")
    slow.chmod(0o755)
    cfg = env.write_config({"backup": {"databases": [name]}, "verify": {"align_deadline": "60s"}},
                           database=dict(server.config_section(), mysqldump_path=str(slow)))

    def commits_held() -> bool:
        try:
            server.sql(f"SET SESSION lock_wait_timeout = 1; INSERT INTO `{name}`.w VALUES ()")
            return False
        except RuntimeError as exc:
            return "1205" in str(exc)
    proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup", "--yes"], cwd=env.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not commits_held():
            assert proc.poll() is None and time.monotonic() < deadline, "commits were never held"
        assert _exact_clients()
        proc.kill()
        proc.wait(timeout=10)
        started = time.monotonic()
        server.sql(f"SET SESSION lock_wait_timeout = 5; INSERT INTO `{name}`.w VALUES ()")
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 5
        while _exact_clients() or \
                server.sql("SELECT COUNT(*) FROM information_schema.innodb_trx").strip() != "0":
            assert time.monotonic() < deadline, "the exact-values client or its transaction outlived tenangdb"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")
