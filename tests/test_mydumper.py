"""The mydumper engine end to end: engine choice, round trip, interrupts, timeouts, secrets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TENANGDB, unique
from test_secrets import PASSWORD, spy_tool

pytestmark = pytest.mark.usefixtures("needs_mydumper")
KEPT = (".tenangdb.lock", ".tenangdb-repository")  # the directory's own files, not a backup's


@pytest.fixture
def plain_db(server):
    """Tables and a view only: everything mydumper 0.10 carries."""
    name = unique("plain")
    server.sql(f"""
        CREATE DATABASE `{name}`; USE `{name}`;
        CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer VARCHAR(50), total DECIMAL(10,2),
                             note TEXT, placed DATETIME(6)) ENGINE=InnoDB;
        INSERT INTO orders (customer, total, note, placed)
          SELECT CONCAT('c', seq), seq * 1.25, REPEAT('note ', seq % 40), '2026-01-01' + INTERVAL seq SECOND
          FROM seq_1_to_20000;
        CREATE TABLE tags (id INT PRIMARY KEY, tag VARCHAR(20)) ENGINE=Aria;
        INSERT INTO tags VALUES (1, 'a'), (2, 'b\\'q"');
        CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
    """)
    yield name
    server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def checksums(server, database: str) -> str:
    return server.sql(f"CHECKSUM TABLE `{database}`.orders, `{database}`.tags EXTENDED").replace(database, "X")


def _scratch_left(folder) -> list:
    """Plaintext folders of a dump or a restore beside the backup (records like .x.verify.json are fine)."""
    return [p for p in folder.parent.iterdir() if p.is_dir() and p.name.startswith(".")]


def manifest_of(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_auto_picks_mydumper_and_round_trips(env, server, plain_db):
    cfg = env.write_config({"backup": {"databases": [plain_db],
                                       "encryption": {"enabled": True, "key_file": str(env.key())}}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(plain_db)
    manifest = manifest_of(folder)
    assert manifest["engine"]["name"] == "mydumper"
    assert {f"{plain_db}.orders-schema.sql", f"{plain_db}.big_orders-schema-view.sql", "metadata"} <= \
        {f["plain_name"] for f in manifest["files"]}
    assert all(f["name"].endswith(".sql.zst.age") or f["name"] == "metadata.zst.age" for f in manifest["files"])
    assert manifest["binlog"] is None  # the binary log is off; the snapshot was lined up by holding commits
    assert manifest["content_checks"]["aligned"]["method"] == "flush-tables-with-read-lock"
    assert not _scratch_left(folder)
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    target = unique("plaincopy")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    try:
        assert done.returncode == 0, done.stderr
        assert checksums(server, target) == checksums(server, plain_db)
        assert server.sql(f"SELECT COUNT(*) FROM `{target}`.big_orders").strip() == \
            server.sql(f"SELECT COUNT(*) FROM `{plain_db}`.big_orders").strip()
        assert not _scratch_left(folder)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_disabled_mydumper_means_streaming(env, plain_db, server):
    cfg = env.write_config({"backup": {"databases": [plain_db]}},
                           database=dict(server.config_section(), mydumper={"enabled": False}))
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    assert manifest_of(folder)["engine"]["name"] == "mysqldump"


def test_engine_mydumper_when_disabled_is_a_config_error(env, plain_db, server):
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}},
                           database=dict(server.config_section(), mydumper={"enabled": False}))
    done = env.cli("backup", config=cfg)
    assert done.returncode == 2 and "database.mydumper.enabled is false" in done.stderr
    assert not env.backups.exists()


def test_configured_mydumper_that_is_missing_is_named(env, plain_db, server):
    cfg = env.write_config({"backup": {"databases": [plain_db]}},
                           database=dict(server.config_section(), mydumper={"binary_path": "/nowhere/mydumper"}))
    done = env.cli("backup", config=cfg)
    assert done.returncode == 1 and "/nowhere/mydumper" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_database_mydumper_cannot_carry_falls_back_with_reason(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mydumper"}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "1 trigger(s)" in done.stderr and "used the streaming engine" in done.stderr
    [folder] = env.backups_of(sample_db)
    assert "1 routine(s)" in manifest_of(folder)["engine"]["fallback_reason"]


def test_restore_without_myloader_is_a_clear_error(env, server, plain_db):
    cfg = env.write_config({"backup": {"databases": [plain_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    for setting, expected in (({"myloader": {"binary_path": "/nowhere/myloader"}}, "/nowhere/myloader"),
                              ({"myloader": {"enabled": False}}, "myloader.enabled is false")):
        broken = env.write_config({"backup": {"databases": [plain_db]}}, name="broken.yaml",
                                  database=dict(server.config_section(), mydumper=setting))
        done = env.cli("restore", "-b", str(folder), "-d", unique("never"), config=broken)
        assert done.returncode == 4 and "restoring it needs myloader" in done.stderr and expected in done.stderr


def test_a_failed_myloader_run_drops_the_database_the_restore_created(env, server, plain_db, tmp_path):
    cfg = env.write_config({"backup": {"databases": [plain_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    # The real myloader loads everything, then the run fails: the tables are there, the restore is not done.
    loader = tmp_path / "failing-myloader"
    loader.write_text(f"#!/bin/sh\ncase \"$*\" in *--directory*) {shutil.which('myloader')} \"$@\"\n"
                      "  echo 'lost connection to the server during the load' >&2; exit 1;;\n"
                      f"*) exec {shutil.which('myloader')} \"$@\";;\nesac\n")
    loader.chmod(0o755)
    failing = env.write_config({"backup": {"databases": [plain_db]}}, name="failing.yaml",
                               database=dict(server.config_section(), mydumper={"myloader": {"binary_path": str(loader)}}))
    target = unique("halfload")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=failing)
    try:
        assert done.returncode == 4, done.stderr
        assert "lost connection" in done.stderr and f"database '{target}', created by this restore, was dropped" \
            in done.stderr, done.stderr
        assert not server.sql(f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{target}'").strip()
        assert not _scratch_left(folder)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def _lingering_mydumper(tmp_path):
    """Real mydumper, after which the process group lingers: its metadata stays unsealed."""
    wrapper = tmp_path / "lingering-mydumper"
    wrapper.write_text(f"#!/bin/sh\n{shutil.which('mydumper')} \"$@\"\n"
                       f"case \"$*\" in *--outputdir*) echo $$ > {tmp_path / 'group'}; exec sleep 120;; esac\n")
    wrapper.chmod(0o755)
    return wrapper


def _alive(pid: int) -> bool:
    try:
        text = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return text[text.rfind(")") + 2] not in "ZX"


def _wait_for(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_mid_backup_leaves_no_plaintext_and_no_backup(env, server, plain_db, tmp_path):
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}},
                           database=dict(server.config_section(),
                                         mydumper={"binary_path": str(_lingering_mydumper(tmp_path))}))
    proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup"], cwd=env.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Plaintext exists on disk (the metadata file mydumper keeps until the end) ...
        assert _wait_for(lambda: any(p.name == "metadata" for p in env.backups.rglob("*")))
        group = int((tmp_path / "group").read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    # ... and none after the interrupt: no scratch, no staging, nothing that looks complete.
    assert [p for p in env.backups.rglob("*") if p.is_file() and p.name not in KEPT] == []
    assert not list(env.backups.rglob("*.partial"))
    assert _wait_for(lambda: not _alive(group), timeout=10)


def test_timeout_kills_mydumper_and_its_group(env, server, plain_db, tmp_path):
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper", "timeout": "3s"}},
                           database=dict(server.config_section(),
                                         mydumper={"binary_path": str(_lingering_mydumper(tmp_path))}))
    started = time.monotonic()
    done = env.cli("backup", config=cfg, timeout=60)
    assert done.returncode == 4, done.stderr
    assert "timed out after 3 s (backup.timeout)" in done.stderr
    assert time.monotonic() - started < 30
    assert [p for p in env.backups.rglob("*") if p.is_file() and p.name not in KEPT] == []
    assert _wait_for(lambda: not _alive(int((tmp_path / "group").read_text())), timeout=10)


def test_mydumper_login_never_in_argv_env_or_left_behind(env, server, plain_db, tmp_path):
    user = unique("mdbk")
    escaped = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    for host in ("localhost", "127.0.0.1"):
        server.sql(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{escaped}'; "
                   f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, BINLOG MONITOR, PROCESS, SUPER "
                   f"ON *.* TO '{user}'@'{host}'; GRANT ALL ON `restored_%`.* TO '{user}'@'{host}'")
    try:
        dumper, dumper_seen = spy_tool(tmp_path, shutil.which("mydumper"), "spy-mydumper")
        loader, loader_seen = spy_tool(tmp_path, shutil.which("myloader"), "spy-myloader")
        # The spies also record the option file's mode and its folder's, while it exists.
        for spy, seen in ((dumper, dumper_seen), (loader, loader_seen)):
            text = spy.read_text().replace(
                "} >>", '  echo "MODES"; for a in "$@"; do case "$a" in --defaults-file=*) f=${a#*=}; '
                'stat -c "%a %U" "$f" "$(dirname "$f")";; esac; done\n} >>')
            spy.write_text(text)
        database = dict(server.config_section(), username=user, password="${BACKUP_PW}",
                        mydumper={"binary_path": str(dumper), "myloader": {"binary_path": str(loader)}})
        cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}}, database=database)
        run_env = {"BACKUP_PW": PASSWORD}
        done = env.cli("backup", config=cfg, env=run_env)
        assert done.returncode == 0, done.stderr
        [folder] = env.backups_of(plain_db)
        target = unique("restored")
        done2 = env.cli("restore", "-b", str(folder), "-d", target, config=cfg, env=run_env)
        assert done2.returncode == 0, done2.stderr
        for seen in (dumper_seen, loader_seen):
            runs = [block for block in seen.read_text().split("ARGV")[1:] if "--defaults-file=" in block]
            assert runs, seen  # the dump or the load itself, besides --version/--help probes
            for block in seen.read_text().split("ARGV")[1:]:
                argv, rest = block.split("ENVIRON")
                environ = rest.split("FDS")[0]
                for secret in (PASSWORD, "Pa\"ss"):
                    assert secret not in argv and secret not in environ
                assert "BACKUP_PW" not in environ
            for block in runs:
                modes = block.split("MODES")[1].split()
                assert modes[:4] == ["600", "root", "700", "root"], modes
                option_file = next(a.split("=", 1)[1] for a in block.splitlines() if a.startswith("--defaults-file="))
                assert not os.path.exists(option_file)  # removed once the tool was done
        for path in env.backups.rglob("*"):
            if path.is_file():
                assert b"Pa\"ss" not in path.read_bytes()
                assert stat.S_IMODE(path.stat().st_mode) == 0o640
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")
    finally:
        for host in ("localhost", "127.0.0.1"):
            server.sql(f"DROP USER '{user}'@'{host}'")


def test_live_progress_on_a_terminal_and_event_lines_without(env, plain_db):
    from conftest import on_a_terminal

    cfg = env.write_config({"backup": {"databases": [plain_db], "skip_confirmation": True}})
    status, screen = on_a_terminal(["--config", str(cfg), "backup"], [], env.root)  # nothing to answer
    assert status == 0, screen
    board = [line for line in screen.splitlines() if plain_db in line and "mydumper" in line]
    assert any("done" in line and "tables 2/2" in line and "/s" in line for line in board), screen
    assert "\x1b[" in screen  # redrawn in place
    done = env.cli("backup", "--force", config=cfg)  # no terminal: no board, one line per event
    assert done.returncode == 0 and "\x1b[" not in done.stderr and "tables 2/2" not in done.stderr
    assert f"{plain_db}: backup started" in done.stderr and f"{plain_db}: backup completed" in done.stderr


def test_an_option_file_left_by_a_killed_run_is_removed_by_the_next(env, server, plain_db):
    # What a run killed with SIGKILL leaves: its login folder, named after its (now dead) PID.
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = Path("/dev/shm") / f"tenangdb-login-{dead.pid}-x1"
    orphan.mkdir(mode=0o700)
    (orphan / "client.cnf").write_text("[client]\npassword=secret\n")
    alive = Path("/dev/shm") / f"tenangdb-login-{os.getpid()}-x2"  # a live run's: left alone
    alive.mkdir(mode=0o700)
    try:
        cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}})
        assert env.cli("backup", config=cfg).returncode == 0
        assert not orphan.exists() and alive.exists()
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


def test_plaintext_left_by_a_killed_restore_is_removed_by_the_next_run(env, server, plain_db):
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = folder.parent / f".tenangdb-restore-{dead.pid}-x1"  # what a SIGKILLed restore leaves
    (orphan / "dump").mkdir(parents=True)
    (orphan / "dump" / "metadata").write_text("plaintext")
    live = folder.parent / f".tenangdb-restore-{os.getpid()}-x2"  # a restore still running: left alone
    live.mkdir()
    assert env.cli("backup", "--force", config=cfg).returncode == 0
    assert not orphan.exists() and live.exists()
    live.rmdir()


def test_damage_in_one_of_many_files_is_named(env, plain_db):
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    files = manifest_of(folder)["files"]
    assert len(files) > 3  # checked two at a time: the failure must still name its file
    victim = folder / files[len(files) // 2]["name"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7 and victim.name in done.stderr, done.stderr
    # One error line (the stage lines a run without a terminal logs are not errors).
    assert len([line for line in done.stderr.splitlines() if victim.name in line]) == 1
