"""Every failure a user can cause: one clear line, the documented exit code, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import TENANGDB, unique


def only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines, stderr
    return lines[-1]


def test_wrong_password_is_exit_3(env, server, sample_db):
    user = unique("u")
    server.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-one'; "
               f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'right-one'")
    db = dict(server.config_section(), username=user, password="wrong-one-xyz")
    cfg = env.write_config({"backup": {"databases": [sample_db]}}, database=db)
    done = env.cli("backup", config=cfg)
    assert done.returncode == 3
    assert f"access denied for database user '{user}'" in only_line(done.stderr)
    assert "wrong-one-xyz" not in done.stderr + done.stdout
    assert not env.backups_of(sample_db)


def test_server_down_is_exit_3(env):
    cfg = env.write_config({"backup": {"databases": ["x"]}},
                           database={"host": "127.0.0.1", "port": 1, "username": "root", "timeout": 3})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 3 and "cannot connect to the database server at 127.0.0.1:1" in done.stderr


def test_unknown_database_is_exit_4_and_others_still_run(env, sample_db):
    cfg = env.write_config({"backup": {"databases": ["no_such_db_here", sample_db]}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4
    assert "database 'no_such_db_here' does not exist" in done.stderr
    assert "partial success: 1 succeeded, 1 failed" in done.stderr
    assert len(env.backups_of(sample_db)) == 1
    assert not env.backups_of("no_such_db_here") and not list(env.backups.rglob("*.partial"))


def test_missing_dump_tool_is_named(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}},
                           database=dict(env.server.config_section(), mysqldump_path="/nonexistent/mysqldump"))
    done = env.cli("backup", config=cfg)
    assert done.returncode == 1 and "/nonexistent/mysqldump" in only_line(done.stderr)


def test_no_databases_is_config_error(env):
    cfg = env.write_config()
    done = env.cli("backup", config=cfg)
    assert done.returncode == 2 and "no databases to back up" in done.stderr


def test_dump_tool_failure_gives_its_error_and_no_backup(env, server, sample_db, tmp_path):
    fake = tmp_path / "failing-dump"
    fake.write_text("#!/bin/sh\necho '-- partial output'\necho 'mariadb-dump: Got error: 1412: "
                    "Table definition has changed' >&2\nexit 2\n")
    fake.chmod(0o755)
    cfg = env.write_config({"backup": {"databases": [sample_db]}},
                           database=dict(server.config_section(), mysqldump_path=str(fake)))
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4
    assert "failing-dump failed (exit 2): mariadb-dump: Got error: 1412" in done.stderr
    assert not list(env.backups.rglob("manifest.json")) and not list(env.backups.rglob("*.partial"))


def test_dump_without_completion_marker_is_rejected(env, server, sample_db, tmp_path):
    fake = tmp_path / "cut-dump"
    fake.write_text("#!/bin/sh\necho 'CREATE TABLE t (id int);'\necho 'INSERT INTO t VALUES (1'\nexit 0\n")
    fake.chmod(0o755)
    cfg = env.write_config({"backup": {"databases": [sample_db]}},
                           database=dict(server.config_section(), mysqldump_path=str(fake)))
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4 and "without its completion marker" in done.stderr
    assert not env.backups_of(sample_db)


@pytest.fixture
def encrypted_backup(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db],
                                       "encryption": {"enabled": True, "key_file": str(env.key())}}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    entry = json.loads((folder / "manifest.json").read_text())["files"][0]
    return cfg, folder, folder / entry["name"]


def test_flipped_byte_is_exit_7_naming_the_file(env, encrypted_backup):
    cfg, folder, dump = encrypted_backup
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7 and str(dump) in done.stderr
    done = env.cli("restore", "-b", str(folder), "-d", unique("never"), config=cfg)
    assert done.returncode == 7 and "refusing to restore from a backup that failed verification" in done.stderr


def test_truncated_file_is_exit_7(env, encrypted_backup):
    cfg, folder, dump = encrypted_backup
    data = dump.read_bytes()
    dump.write_bytes(data[:-100])
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7 and "truncated" in done.stderr and dump.name in done.stderr


def test_wrong_or_missing_key_is_exit_7(env, encrypted_backup, server):
    cfg, folder, _ = encrypted_backup
    other = env.root / "other-key.txt"
    assert env.cli("key", "generate", "-o", str(other)).returncode == 0
    wrong = env.write_config({"backup": {"encryption": {"enabled": True, "key_file": str(other)}}}, name="w.yaml")
    done = env.cli("verify", "-b", str(folder), config=wrong)
    assert done.returncode == 7 and "wrong decryption key" in done.stderr
    none = env.write_config(name="n.yaml")
    done = env.cli("verify", "-b", str(folder), config=none)
    assert done.returncode == 7 and "no age identity is configured" in done.stderr
    target = unique("nokey")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=none)
    assert done.returncode == 7
    assert target not in server.sql("SHOW DATABASES")


def test_manifest_damage_and_extra_files(env, encrypted_backup):
    cfg, folder, _ = encrypted_backup
    (folder / "stray.sql").write_text("DROP DATABASE everything;")
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7 and "not listed in the manifest" in done.stderr
    (folder / "stray.sql").unlink()
    (folder / "manifest.json").write_text("{\"format\": 1")
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7 and "not valid JSON" in done.stderr
    done = env.cli("verify", "-b", str(env.root / "nowhere"), config=cfg)
    assert done.returncode == 7 and "no such backup" in done.stderr


def test_disk_full_is_exit_4_and_leaves_nothing(env, server, sample_db, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here to fill a disk")
    try:
        server.sql("CREATE TABLE big (b LONGBLOB); INSERT INTO big SELECT RANDOM_BYTES(1024) FROM seq_1_to_2000",
                   sample_db)
        for encryption in ({}, {"enabled": True, "key_file": str(env.key())}):
            cfg = env.write_config({"backup": {"databases": [sample_db], "directory": str(mount / "b"),
                                               "compression": "none", "encryption": encryption}})
            done = env.cli("backup", config=cfg)
            assert done.returncode == 4 and "no space left on the device" in done.stderr, done.stderr
            assert not list((mount / "b").rglob("manifest.json")) and not list((mount / "b").rglob("*.partial"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_download_without_room_is_refused_before_it_starts(env, server, sample_db, tmp_path):
    """A remote backup brought home for verify or restore goes to TMPDIR, often the system's
    disk: one that does not fit (with a margin) is refused before a byte arrives, exit 1 (the
    backup is not to blame: no verification failure), and nothing is left or changed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    rclone_config = tmp_path / "rclone.conf"
    rclone_config.write_text("")
    rclone_config.chmod(0o600)
    cfg = env.write_config({"backup": {"databases": [sample_db]},
                            "upload": {"enabled": True, "destination": str(tmp_path / "offsite"),
                                       "rclone_config_path": str(rclone_config), "retry_delay": 0}})
    target = unique("restored")
    try:
        assert env.cli("backup", config=cfg).returncode == 0
        [folder] = env.backups_of(sample_db)
        small = {"TMPDIR": str(mount)}
        for args in (["verify", "--from-remote", "-b", folder.name],
                     ["restore", "--from-remote", "-b", folder.name, "-d", target]):
            done = env.cli(*args, config=cfg, env=small)
            assert done.returncode == 1, done.stderr
            assert "of disk in" in done.stderr and "set TMPDIR to a folder with room" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr and "internal error" not in done.stderr
            assert not list(mount.iterdir())
        assert target not in server.sql("SHOW DATABASES")
        # With room, the same download goes through.
        done = env.cli("verify", "--from-remote", "-b", folder.name, config=cfg)
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def _slow_dump(tmp_path):
    """A dump tool that writes a little, records its PID and then hangs."""
    fake = tmp_path / "slow-dump"
    # The PID file appears whole (renamed into place): the tests read it as soon as it exists.
    fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'dump.pid.new'} && mv {tmp_path / 'dump.pid.new'} "
                    f"{tmp_path / 'dump.pid'}\necho '-- MariaDB dump'\n"
                    "echo 'CREATE TABLE t (id int);'\nexec sleep 60\n")
    fake.chmod(0o755)
    return fake


def _dump_alive(tmp_path) -> bool:
    """Whether the fake dump still runs (a zombie counts as gone)."""
    pid = int((tmp_path / "dump.pid").read_text())
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("encrypted", [False, True])
def test_sigterm_leaves_no_partial_and_ends_the_dump(env, server, sample_db, tmp_path, encrypted):
    encryption = {"enabled": True, "key_file": str(env.key())} if encrypted else {}
    cfg = env.write_config({"backup": {"databases": [sample_db, "another_db_that_must_not_start"],
                                       "encryption": encryption, "concurrency": 1}},
                           database=dict(server.config_section(), mysqldump_path=str(_slow_dump(tmp_path))))
    proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup"], cwd=env.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: list(env.backups.rglob("*.partial")) and (tmp_path / "dump.pid").exists())
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "another_db_that_must_not_start:" not in err  # never started
    assert not list(env.backups.rglob("*.partial")) and not env.backups_of(sample_db)
    assert _wait_for(lambda: not _dump_alive(tmp_path), timeout=10)  # the dump's process group was ended


def test_sigkill_leaves_only_a_partial_that_the_next_run_removes(env, server, sample_db, tmp_path):
    slow = env.write_config({"backup": {"databases": [sample_db]}}, name="slow.yaml",
                            database=dict(server.config_section(), mysqldump_path=str(_slow_dump(tmp_path))))
    proc = subprocess.Popen([*TENANGDB, "--config", str(slow), "backup"], cwd=env.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: list(env.backups.rglob("*.partial")) and (tmp_path / "dump.pid").exists())
    proc.kill()
    proc.wait()
    # SIGKILL gives no chance to clean up, but the dump dies with us (PR_SET_PDEATHSIG).
    assert _wait_for(lambda: not _dump_alive(tmp_path), timeout=5)
    partials = list(env.backups.rglob("*.partial"))
    assert partials and not env.backups_of(sample_db)  # nothing that looks like a backup
    good = env.write_config({"backup": {"databases": [sample_db]}})
    done = env.cli("backup", config=good)
    assert done.returncode == 0 and "removed an unfinished backup" in done.stderr
    assert not list(env.backups.rglob("*.partial")) and len(env.backups_of(sample_db)) == 1


def test_timeout_kills_the_dump(env, server, sample_db, tmp_path):
    cfg = env.write_config({"backup": {"databases": [sample_db], "timeout": "2s"}},
                           database=dict(server.config_section(), mysqldump_path=str(_slow_dump(tmp_path))))
    started = time.monotonic()
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4 and "timed out after 2 s (backup.timeout)" in done.stderr
    assert time.monotonic() - started < 30
    assert not list(env.backups.rglob("*.partial"))
    assert _wait_for(lambda: not _dump_alive(tmp_path), timeout=10)


def test_second_run_is_refused_while_one_holds_the_lock(env, server, sample_db, tmp_path):
    cfg = env.write_config({"backup": {"databases": [sample_db]}},
                           database=dict(server.config_section(), mysqldump_path=str(_slow_dump(tmp_path))))
    leftover = env.backups / "olddb" / "2026-11" / ".olddb-2026-11-01_00-00-00.partial"
    leftover.mkdir(parents=True)
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))  # left by a run killed an hour ago
    first = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup"], cwd=env.root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: list(env.backups.rglob("*.partial")) and (tmp_path / "dump.pid").exists())
        done = env.cli("backup", config=cfg)
        assert done.returncode == 1 and f"PID {first.pid}" in done.stderr
        # `list` works beside the run; it tells the running backup's folder from a leftover one.
        listed = env.cli("list", "--local", config=cfg)
        assert listed.returncode == 0, listed.stderr
        assert f"{sample_db}/" in listed.stderr and "in progress in a running tenangdb run" in listed.stderr
        assert "olddb/2026-11/.olddb-2026-11-01_00-00-00.partial: unfinished backup" in listed.stderr
        entries = json.loads(env.cli("list", "--json", "--local", config=cfg).stdout)["backups"]
        assert sorted((e["database"], e["in_progress"]) for e in entries if e["kind"] == "partial") == \
            [("olddb", False), (sample_db, True)]
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    assert _wait_for(lambda: not _dump_alive(tmp_path), timeout=10)


def test_sigterm_with_concurrent_databases_ends_every_dump(env, server, tmp_path):
    fake = tmp_path / "slow-dumps"
    fake.write_text(f"#!/bin/sh\necho $$ >> {tmp_path / 'dump.pids'}\necho '-- MariaDB dump'\nexec sleep 60\n")
    fake.chmod(0o755)
    names = [unique("c") for _ in range(3)]
    for name in names:
        server.sql(f"CREATE DATABASE `{name}`")
    try:
        # The fake tool never opens a snapshot, so there is nothing to hold commits for: with
        # the checks on, each database would hold its turn for verify.align_deadline first.
        cfg = env.write_config({"backup": {"databases": names, "concurrency": 3}, "verify": {"record": False}},
                               database=dict(server.config_section(), mysqldump_path=str(fake)))
        proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup"], cwd=env.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pids_file = tmp_path / "dump.pids"
        assert _wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert not list(env.backups.rglob("*.partial")) and not list(env.backups.rglob("manifest.json"))

        def all_gone() -> bool:
            for pid in pids_file.read_text().split():
                try:
                    stat = open(f"/proc/{pid}/stat").read()
                except FileNotFoundError:
                    continue
                if stat[stat.rfind(")") + 2] not in "ZX":
                    return False
            return True
        assert _wait_for(all_gone, timeout=10)
    finally:
        for name in names:
            server.sql(f"DROP DATABASE `{name}`")


def test_restore_client_failure_is_exit_4_with_its_error(env, server, sample_db, tmp_path):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    fake = tmp_path / "failing-client"
    fake.write_text("#!/bin/sh\nhead -c 100 >/dev/null\n"
                    "echo 'ERROR 1064 (42000) at line 1: You have an error in your SQL syntax' >&2\nexit 1\n")
    fake.chmod(0o755)
    broken = env.write_config({"backup": {"databases": [sample_db]}}, name="broken.yaml",
                              database=dict(server.config_section(), mysql_path=str(fake)))
    target = unique("half")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=broken)
    assert done.returncode == 4, done.stderr
    assert "failing-client" in done.stderr and "ERROR 1064" in done.stderr
    assert f"the partly loaded database '{target}', created by this restore, was dropped" in done.stderr
    assert not _database_exists(server, target)
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0  # the backup is untouched
    server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def _database_exists(server, name: str) -> bool:
    return bool(server.sql(f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'").strip())


def _real_client() -> str:
    import shutil

    found = shutil.which("mariadb") or shutil.which("mysql")
    assert found, "the MariaDB client is needed"
    return found


def _backup_and_a_client_that_gets_only(env, server, sample_db, tmp_path, after_first_row: int):
    """A plain backup of sample_db, and a config whose client is the real one fed only the dump
    up to `after_first_row` bytes past the end of the first row of the first INSERT (the rest
    is read and thrown away, so tenangdb sees every byte taken)."""
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump",
                                       "compression": {"format": "none"}}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    data = next(p for p in folder.iterdir() if p.name.endswith(".sql")).read_bytes()
    cut = data.index(b"),\n", data.index(b"INSERT INTO")) + 1 + after_first_row
    wrapper = tmp_path / "cutting-client"
    wrapper.write_text(f"#!/bin/sh\nhead -c {cut} | {_real_client()} \"$@\"\nstatus=$?\ncat >/dev/null\nexit $status\n")
    wrapper.chmod(0o755)
    return folder, env.write_config({"backup": {"databases": [sample_db]}}, name="cutting.yaml",
                                    database=dict(server.config_section(), mysql_path=str(wrapper)))


def test_a_half_loaded_restore_drops_only_a_database_it_created(env, server, sample_db, tmp_path):
    # Cut after the first row and its comma: the real client creates the table, runs the
    # unfinished INSERT at end of input and fails. A database that looks restored but is not.
    folder, cutting = _backup_and_a_client_that_gets_only(env, server, sample_db, tmp_path, after_first_row=2)
    target = unique("half")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cutting)
    assert done.returncode == 4, done.stderr
    assert "ERROR" in done.stderr and "was dropped" in done.stderr, done.stderr
    assert not _database_exists(server, target)

    # A database that existed before is somebody's: it stays, and the message says what it may hold.
    server.sql(f"CREATE DATABASE `{target}`")
    try:
        done = env.cli("restore", "-b", str(folder), "-d", target, config=cutting)
        assert done.returncode == 4, done.stderr
        assert f"database '{target}' existed before this restore and may now be partly loaded" in done.stderr
        assert _database_exists(server, target)
        assert server.sql(f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{target}'").strip() != "0"
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_a_load_that_exits_0_but_lost_statements_is_not_a_restore(env, server, sample_db, tmp_path):
    # Cut right after the first row: the real client runs what it got as a complete INSERT
    # and exits 0. The table exists with one row; the view, routine and trigger do not.
    folder, cutting = _backup_and_a_client_that_gets_only(env, server, sample_db, tmp_path, after_first_row=0)
    target = unique("quiet")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cutting)
    assert done.returncode == 4, done.stderr
    line = only_line(done.stderr)
    assert f"the load into '{target}' ended without error but is incomplete" in line, line
    assert "missing after the restore" in line and "was dropped" in line, line
    assert not _database_exists(server, target)


def test_sigterm_during_restore_drops_the_database_it_created(env, server, sample_db, tmp_path):
    # The streaming engine: its restore runs the client this test swaps in.
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    # The client loads everything, then the load is still "running" when SIGTERM comes.
    wrapper = tmp_path / "slow-client"
    wrapper.write_text(f"#!/bin/sh\n{_real_client()} \"$@\" || exit $?\nexec sleep 120\n")
    wrapper.chmod(0o755)
    slow = env.write_config({"backup": {"databases": [sample_db]}}, name="slow.yaml",
                            database=dict(server.config_section(), mysql_path=str(wrapper)))
    target = unique("stopped")
    proc = subprocess.Popen([*TENANGDB, "--config", str(slow), "restore", "-b", str(folder), "-d", target],
                            cwd=env.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: server.sql(f"SELECT COUNT(*) FROM information_schema.TABLES "
                                            f"WHERE TABLE_SCHEMA = '{target}'").strip() not in ("", "0"), timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert "was dropped" in err, err
        assert not _database_exists(server, target)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_sigterm_while_content_checks_wait_on_the_server(env, binlog_server):
    # The counts and checksums run on their own connection, here held by another session's
    # table lock (as a long scan would hold them): SIGTERM must end the run at once, leave
    # nothing behind, and leave no query of ours waiting on the server. The table lock also keeps
    # commits from being held (BACKUP STAGE waits for it, for verify.align_lock_wait), so the
    # checks run only where the binary log can still match the snapshots: a binlog server.
    import pymysql

    server = binlog_server
    name = unique("checks")
    server.sql(f"CREATE DATABASE `{name}`; CREATE TABLE `{name}`.t (id INT PRIMARY KEY); "
               f"INSERT INTO `{name}`.t VALUES (1), (2)")
    login = {"unix_socket": server.socket} if server.socket else {"host": server.host, "port": server.port}
    blocker = pymysql.connect(user=server.user, password=server.password or "", autocommit=True, **login)

    def ours_on_the_server() -> list[str]:
        rows = server.sql("SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                          f"'%`{name}`.`t`%' AND INFO NOT LIKE '%PROCESSLIST%'")
        return [row for row in rows.splitlines() if row.strip()]
    try:
        with blocker.cursor() as cur:
            cur.execute(f"LOCK TABLES `{name}`.t WRITE")
        cfg = env.write_config({"backup": {"databases": [name], "engine": "mysqldump"},
                                "verify": {"align_lock_wait": "1s"}}, database=server.config_section())
        proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup"], cwd=env.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert _wait_for(lambda: any("CHECKSUM TABLE" in q for q in ours_on_the_server()), timeout=60)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert time.monotonic() - started < 5  # not held by the waiting check
        assert not list(env.backups.rglob("*.partial")) and not env.backups_of(name)
        assert _wait_for(lambda: not ours_on_the_server(), timeout=5), ours_on_the_server()
    finally:
        blocker.close()
        server.sql(f"DROP DATABASE `{name}`")


def test_a_restore_that_cannot_drop_what_it_created_says_so(env, server, sample_db):
    if server.box is None:
        pytest.skip("creates a database user: only on the suite's own server")
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    # A restore user that may create the target but not drop anything in it: the dump's own
    # DROP TABLE IF EXISTS fails the load, and the clean-up DROP DATABASE fails the same way.
    # The privileges come through a role, which restore's early privilege check cannot see
    # (it would refuse a missing DROP before anything is created).
    user, password, target, role = unique("nodrop"), unique("pw"), unique("kept"), unique("role")
    hosts = ("localhost", "127.0.0.1")
    server.sql(f"CREATE ROLE {role}; GRANT ALL ON `{target}`.* TO {role}; REVOKE DROP ON `{target}`.* FROM {role};"
               + "".join(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'; GRANT {role} TO '{user}'@'{host}';"
                         f"SET DEFAULT ROLE {role} FOR '{user}'@'{host}';" for host in hosts))
    try:
        limited = env.write_config({"backup": {"databases": [sample_db]}}, name="limited.yaml",
                                   database=dict(server.config_section(), username=user, password=password))
        done = env.cli("restore", "-b", str(folder), "-d", target, config=limited)
        assert done.returncode == 4, done.stderr
        assert f"the partly loaded database '{target}' could not be dropped; drop it by hand" in done.stderr
        assert "Traceback" not in done.stderr and password not in done.stderr
        assert _database_exists(server, target)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`; DROP ROLE IF EXISTS {role};"
                   + "".join(f"DROP USER IF EXISTS '{user}'@'{host}';" for host in hosts))
