"""Nothing outlives a run killed with SIGKILL: its children die with it, and what it left on
disk (plaintext, downloads, sandboxes, login files) is removed by the next run, by owner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import TENANGDB, unique
from tenangdb import orphans


def _state(pid: int) -> str | None:
    """The process's state letter, None once it is gone (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    state = text[text.rfind(")") + 2]
    return None if state in "ZX" else state


def _wait_for(check, timeout: float = 30.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(step)
    return None


def _children(pid: int, name: str, *, with_arg: str = "--") -> list[int]:
    """PIDs of the processes whose parent is `pid`, whose program is `name` and whose arguments
    include `with_arg` (by default any option; pass the one a real run has, so that a short
    `--version`/`--help` probe of the same tool is not taken for it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        program = args[0].decode(errors="replace")
        if int(text[text.rfind(")") + 2:].split()[1]) == pid and os.path.basename(program) == name \
                and any(a.decode(errors="replace").startswith(with_arg) for a in args[1:]):
            found.append(int(entry))
    return found


def _start(env, cfg, *args: str, tmpdir: Path | None = None) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    if tmpdir is not None:
        full["TMPDIR"] = str(tmpdir)
    return subprocess.Popen([*TENANGDB, "--config", str(cfg), *args], cwd=env.root, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _kill9(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)
    proc.stderr.close()


def test_a_child_dies_with_its_process_not_with_the_thread_that_asked_for_it(tmp_path):
    # PR_SET_PDEATHSIG fires when the forking *thread* ends: a backup worker thread ends while
    # what it started may still run. The child must live on until the process itself dies.
    script = textwrap.dedent("""
        import sys, threading, time
        from tenangdb.runner import spawn
        box = {}
        worker = threading.Thread(target=lambda: box.update(child=spawn(["sleep", "120"])))
        worker.start(); worker.join()
        print(box["child"].pid, flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        time.sleep(1.0)
        assert _state(child) == "S", "the child died with the worker thread"
        os.kill(child, signal.SIGSTOP)  # stopped, as the sealing throttle leaves a dumper
        assert _wait_for(lambda: _state(child) == "T", timeout=5)
        proc.kill()
        proc.wait()
        assert _wait_for(lambda: _state(child) is None, timeout=5), "the child outlived its killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_owner_records_tell_a_reused_pid_from_its_owner():
    me = orphans.token()
    pid, start, boot = me.split(".")
    assert int(pid) == os.getpid()
    assert orphans.owner_gone(f"{me}-x") is None  # alive
    assert orphans.owner_gone(f"{pid}.{int(start) + 1}.{boot}-x") == os.getpid()  # same PID, later process
    assert orphans.owner_gone(f"{pid}.{start}.{'0' * 8 if boot != '0' * 8 else '1' * 8}-x") == os.getpid()
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert orphans.owner_gone(f"{dead.pid}-x") == dead.pid  # an earlier version's record: PID only
    assert orphans.owner_gone(f"{os.getpid()}-x") is None
    assert orphans.owner_gone("abcdefgh") is None and orphans.owner_gone("12345678") is None  # no owner: never


def _dead_token() -> str:
    dead = subprocess.Popen(["true"])
    dead.wait()
    return f"{dead.pid}.1.{orphans.token().split('.')[2]}"


def test_an_escaped_sandbox_server_is_killed_only_if_it_serves_that_folder(env, tmp_path):
    # A sandbox whose owner is gone, with a server still running in it (one started before its
    # servers died with their owner), one whose PID file names some unrelated process, and one
    # whose server runs on a data directory elsewhere (a restored instance) with its PID file here.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    boxes, servers = [], []
    for kind in ("serves", "other", "given datadir"):
        base = tmp / f"{orphans.SANDBOX_PREFIX}{_dead_token()}-{kind[0]}"
        (base / "data").mkdir(parents=True)
        args = {"serves": [f"--datadir={base / 'data'}"], "other": ["--datadir=/somewhere/else"],
                "given datadir": [f"--datadir={tmp_path}/restored", f"--pid-file={base / 'mysqld.pid'}"]}[kind]
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args])
        (base / "mysqld.pid").write_text(f"{server.pid}\n")
        boxes.append(base)
        servers.append(server)
    try:
        cfg = env.write_config()
        done = env.cli("doctor", "--json", config=cfg, env={"TMPDIR": str(tmp)})
        [check] = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "leftovers"]
        # Its own temp folder is looked at first, so ours lead the list whatever else is left on this machine.
        assert check["status"] == "warn" and all(str(box) in check["message"] for box in boxes), check
        assert boxes[0].exists() and _state(servers[0].pid)  # doctor only reports
        done = env.cli("cleanup", "--yes", "--force", config=cfg, env={"TMPDIR": str(tmp)})
        assert done.returncode == 0, done.stderr
        assert f"its server (PID {servers[0].pid}) was still running" in done.stdout
        assert servers[0].wait(timeout=10) == -signal.SIGKILL and not boxes[0].exists()
        assert servers[1].poll() is None and not boxes[1].exists()  # not its server: left running
        assert f"its server (PID {servers[2].pid}) was still running" in done.stdout
        assert servers[2].wait(timeout=10) == -signal.SIGKILL and not boxes[2].exists()
    finally:
        for server in servers:
            server.kill()
            server.wait()


@pytest.fixture
def big_db(server):
    """~30 MB of rows in one InnoDB table: enough for mydumper to outrun a slow sealer."""
    name = unique("big")
    server.sql(f"""
        CREATE DATABASE `{name}`; USE `{name}`;
        CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(100), b VARCHAR(100)) ENGINE=InnoDB;
        INSERT INTO t SELECT seq, MD5(seq), REPEAT(SHA1(seq), 2) FROM seq_1_to_600000;
    """)
    yield name
    server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def _open_trx(server) -> int:
    return int(server.sql("SELECT COUNT(*) FROM information_schema.innodb_trx").strip())


def _leftover_dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_dir()]


def test_kill_9_during_a_throttle_pause_leaves_no_stopped_dumper_and_no_transaction(
        env, server, big_db, needs_mydumper, tmp_path):
    # A slow sealer (zstd level 19) and the smallest backlog: mydumper gets paused (SIGSTOP). The
    # table is large enough (about 90 MB of SQL) that mydumper cannot finish between two sweeps of
    # the sealer: with a third of it, it sometimes did, and nothing was ever paused.
    cfg = env.write_config({"backup": {"databases": [big_db], "engine": "mydumper",
                                       "compression": {"format": "zstd", "level": 19}}},
                           database=dict(server.config_section(),
                                         mydumper={"chunk_filesize": 1, "max_unsealed_mb": 16, "threads": 2}))
    proc = _start(env, cfg, "backup", "--yes")
    try:
        [dumper] = _wait_for(lambda: _children(proc.pid, "mydumper", with_arg="--outputdir") or proc.poll() is not None,
                             timeout=60) or [None]
        assert proc.poll() is None, proc.stderr.read()
        assert _wait_for(lambda: _state(dumper) == "T", timeout=60, step=0.01), "the throttle never paused mydumper"
        assert _open_trx(server) > 0  # its snapshot is open while it is paused
        killed = time.monotonic()
        _kill9(proc)
        assert _wait_for(lambda: _state(dumper) is None, timeout=5), f"mydumper is left {_state(dumper)}"
        gone = time.monotonic() - killed
        assert _wait_for(lambda: _open_trx(server) == 0, timeout=5, step=0.1), "its transaction stays open"
        print(f"after kill -9: mydumper gone in {gone:.2f}s, no open transaction in {time.monotonic() - killed:.2f}s")
        server.sql("SET SESSION lock_wait_timeout = 5; ALTER TABLE t ADD COLUMN c INT", database=big_db)
    finally:
        if proc.poll() is None:
            proc.kill()
    plaintext = [p for p in _leftover_dirs(env.backups) if p.name.endswith(".dump.partial")]
    assert plaintext and any(plaintext[0].iterdir())  # what a SIGKILL leaves: mydumper's files
    done = env.cli("cleanup", "--yes", "--force", config=cfg)  # the next run of any command
    assert done.returncode == 0 and f"removed dump plaintext {plaintext[0]}" in done.stdout, done.stdout
    assert not plaintext[0].exists()
    # ...and the sealed part goes with the next backup (a fast level: the slow one was for the pause).
    quick = env.write_config({"backup": {"databases": [big_db], "engine": "mydumper"}}, name="quick.yaml")
    done = env.cli("backup", "--yes", config=quick)
    assert done.returncode == 0, done.stderr
    assert not _leftover_dirs(env.backups) and len(env.backups_of(big_db)) == 1


def test_kill_9_of_a_mydumper_restore_leaves_nothing_the_next_run_keeps(env, server, big_db, needs_mydumper):
    cfg = env.write_config({"backup": {"databases": [big_db], "engine": "mydumper"}},
                           database=dict(server.config_section(), mydumper={"chunk_filesize": 1}))
    assert env.cli("backup", "--yes", config=cfg).returncode == 0
    [folder] = env.backups_of(big_db)
    target = unique("restored")
    proc = _start(env, cfg, "restore", "-b", str(folder), "-d", target, "--yes")
    try:
        [loader] = _wait_for(lambda: _children(proc.pid, "myloader", with_arg="--directory") or proc.poll() is not None,
                             timeout=120, step=0.01) or [None]
        assert proc.poll() is None, proc.stderr.read()
        assert loader, "myloader never started"
        _kill9(proc)
        assert _wait_for(lambda: _state(loader) is None, timeout=5), "myloader outlived the restore"
        plaintext = [p for p in _leftover_dirs(folder.parent) if p.name.startswith(orphans.RESTORE_PREFIX)]
        assert plaintext
        done = env.cli("cleanup", "--dry-run", config=cfg)
        assert f"would remove restore plaintext {plaintext[0]}" in done.stdout and plaintext[0].exists()
        assert env.cli("list", "--local", config=cfg).returncode == 0  # the next run of any command
        assert not plaintext[0].exists() and not _leftover_dirs(folder.parent)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_kill_9_of_a_test_restore_leaves_no_sandbox(env, server, sample_db, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", "--yes", config=cfg).returncode == 0
    proc = _start(env, cfg, "verify", "--latest", "--test-restore", "--target", "sandbox", tmpdir=tmp)
    try:
        [box] = _wait_for(lambda: [p for p in tmp.iterdir() if (p / "mysqld.pid").exists()], timeout=120) or [None]
        assert box, "the sandbox server never started"
        server_pid = int((box / "mysqld.pid").read_text())
        _kill9(proc)
        assert _wait_for(lambda: _state(server_pid) is None, timeout=10), "the sandbox server outlived its run"
        assert box.exists()
        done = env.cli("verify", "--latest", config=cfg, env={"TMPDIR": str(tmp)})  # the next run
        assert done.returncode == 0, done.stderr
        assert "removed sandbox" in done.stderr and list(tmp.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_9_of_a_remote_download_leaves_nothing_the_next_run_keeps(env, server, sample_db, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # rclone itself, except that a download hangs once it has copied the files (a slow remote).
    hanging = tmp_path / "hanging-rclone"
    hanging.write_text(f"#!/bin/sh\n{shutil.which('rclone')} \"$@\" || exit $?\n"
                       f"case \" $* \" in *\" copy \"*) echo $$ > {tmp_path / 'rclone.pid'}; exec sleep 120;; esac\n")
    hanging.chmod(0o755)
    upload = {"enabled": True, "destination": str(tmp_path / "remote"), "verify": "size"}
    cfg = env.write_config({"backup": {"databases": [sample_db]}, "upload": upload})
    assert env.cli("backup", "--yes", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    slow = env.write_config({"backup": {"databases": [sample_db]},
                             "upload": dict(upload, rclone_path=str(hanging))}, name="slow.yaml")
    proc = _start(env, slow, "verify", "--from-remote", "--backup-path", folder.name, tmpdir=tmp)
    try:
        assert _wait_for(lambda: (tmp_path / "rclone.pid").exists() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.stderr.read()
        rclone = int((tmp_path / "rclone.pid").read_text())
        [download] = [p for p in tmp.iterdir() if p.name.startswith(orphans.REMOTE_PREFIX)]
        assert any(download.rglob("manifest.json"))
        _kill9(proc)
        assert _wait_for(lambda: _state(rclone) is None, timeout=5), "rclone outlived the download"
        assert download.exists()
        done = env.cli("verify", "--from-remote", "--backup-path", folder.name, config=cfg, env={"TMPDIR": str(tmp)})
        assert done.returncode == 0, done.stderr
        assert f"removed download {download}" in done.stderr and list(tmp.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_login_file_of_a_dead_run_is_reported_and_removed(env, tmp_path):
    login = Path(orphans.login_parent()) / f"{orphans.LOGIN_PREFIX}{_dead_token()}-t1"
    login.mkdir(mode=0o700)
    (login / "client.cnf").write_text("[client]\npassword=secret\n")
    live = Path(orphans.login_parent()) / f"{orphans.LOGIN_PREFIX}{orphans.token()}-t2"  # this run's: kept
    live.mkdir(mode=0o700)
    try:
        cfg = env.write_config()
        done = env.cli("doctor", "--json", config=cfg)
        [check] = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "leftovers"]
        assert check["status"] == "warn" and login.exists()
        done = env.cli("cleanup", "--dry-run", config=cfg)
        assert f"would remove login file {login}" in done.stdout and str(live) not in done.stdout
        assert login.exists()
        done = env.cli("cleanup", "--yes", "--force", config=cfg)
        assert f"removed login file {login}" in done.stdout and not login.exists() and live.exists()
    finally:
        shutil.rmtree(login, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


def test_what_a_child_started_itself_is_ended_by_the_next_run(env, server, sample_db, tmp_path):
    # A dump tool behind a wrapper script that does not exec it: the death signal reaches the
    # script only, its own child lives on (here stopped, as the sealing throttle leaves one).
    wrapper = tmp_path / "wrapped-dump"
    wrapper.write_text(f"#!/bin/sh\nsleep 120 &\necho $! > {tmp_path / 'tool.pid'}\necho '-- MariaDB dump'\nwait\n")
    wrapper.chmod(0o755)
    cfg = env.write_config({"backup": {"databases": [sample_db]}},
                           database=dict(server.config_section(), mysqldump_path=str(wrapper)))
    proc = _start(env, cfg, "backup", "--yes")
    try:
        # The shell creates the file before `echo` writes the PID into it: wait for the PID.
        pid_file = tmp_path / "tool.pid"
        assert _wait_for(lambda: (pid_file.exists() and pid_file.read_text().strip()) or proc.poll() is not None,
                         timeout=60)
        assert proc.poll() is None, proc.stderr.read()
        tool = int(pid_file.read_text())
        record = [p for p in Path(orphans.login_parent()).iterdir() if p.name.startswith(f"{orphans.RUN_PREFIX}{proc.pid}.")]
        assert len(record) == 1
        _kill9(proc)
        os.kill(tool, signal.SIGSTOP)
        assert _wait_for(lambda: _state(tool) == "T", timeout=5)
        time.sleep(0.5)
        assert _state(tool) == "T"  # out of the death signal's reach
        done = env.cli("list", "--local", config=cfg)  # the next run of any command
        assert done.returncode == 0 and f"PID {tool}" in done.stderr, done.stderr
        assert _wait_for(lambda: _state(tool) is None, timeout=5) and not record[0].exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        if (tmp_path / "tool.pid").exists() and _state(int((tmp_path / "tool.pid").read_text())):
            os.kill(int((tmp_path / "tool.pid").read_text()), signal.SIGKILL)
