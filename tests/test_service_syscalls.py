"""The system calls the services make, against the filter their systemd units set.

The units (deploy/systemd.py) allow `@system-service` less `@privileged`, and a refused call
fails with EPERM: a call outside the set would not kill the service but break it, on the
operator's machine only. Without systemd running here, the check is made the other way round:
every command a unit runs is traced (strace -f: tenangdb and every tool it starts, mysqldump,
mydumper, mariabackup, mariadb-binlog, rclone, the sandbox's mariadbd) and each call it made
must be in the set systemd-analyze expands from the unit's own filter lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

import pytest

from conftest import TENANGDB, Env, unique
from test_init import rclone_remote
from tenangdb.deploy.systemd import UnitParams, _hardening

pytestmark = pytest.mark.skipif(not (shutil.which("strace") and shutil.which("systemd-analyze")),
                                reason="strace and systemd-analyze (systemd) are needed to compare the calls")

_CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")


@cache
def _group(name: str) -> frozenset[str]:
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                         check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            calls |= _group(line) if line.startswith("@") else {line}
    return frozenset(calls)


def allowed_calls() -> set[str]:
    """What the units' SystemCallFilter= lines allow: the first line's set, less each `~` line's."""
    lines = [line.split("=", 1)[1] for line in _hardening(UnitParams(binary="/usr/bin/tenangdb", config="/c"))
             if line.startswith("SystemCallFilter=")]
    allowed: set[str] = set()
    for spec in lines:
        deny = spec.startswith("~")
        calls = set().union(*(_group(g) if g.startswith("@") else {g} for g in spec.lstrip("~").split()))
        allowed = allowed - calls if deny else allowed | calls
    assert len(allowed) > 100, lines  # the expansion worked
    return allowed


def traced(env: Env, config, *args: str) -> set[str]:
    trace = env.root / "trace.txt"
    done = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), *TENANGDB, "--config", str(config), *args],
                          capture_output=True, text=True, cwd=env.root, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, (args, done.stderr[-2000:])
    lines = trace.read_text(errors="replace").splitlines()
    trace.unlink()
    # Run as root (as the suite is), the sandbox's mariadb-install-db is given --user=root and
    # runs chown on its folder; the service runs as its own user, which starts it without.
    chown = {line.split()[0] for line in lines if re.match(r'^\d+\s+execve\("[^"]*/chown"', line)}
    return {m[1] for line in lines if (m := _CALL.match(line)) and line.split()[0] not in chown}


def test_every_call_the_services_make_is_one_their_units_allow(tmp_path, binlog_server, needs_mydumper):
    env = Env(root=tmp_path, server=binlog_server)
    allowed = allowed_calls()
    db = unique("sc")
    conf, target = rclone_remote(env.root)
    binlog_server.sql(f"CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE t (id INT PRIMARY KEY, v INT); "
                      "INSERT INTO t SELECT seq, seq FROM seq_1_to_500")
    try:
        base = {"backup": {"databases": [db], "encryption": {"enabled": True, "key_file": str(env.key())}},
                "upload": {"enabled": True, "destination": f"local:{target}", "rclone_config_path": str(conf)},
                "metrics": {"enabled": True, "storage_path": str(env.root / "metrics.json")}}
        seen: dict[str, set[str]] = {}
        for engine in ("mysqldump", "mydumper", "mariabackup"):
            config = env.write_config({**base, "backup": {**base["backup"], "engine": engine}})
            seen[f"backup ({engine})"] = traced(env, config, "backup", "--yes")
        config = env.write_config(base)
        binlog_server.sql(f"UPDATE `{db}`.t SET v = v + 1")
        seen["binlog --once"] = traced(env, config, "binlog", "--once")
        seen["verify --test-restore"] = traced(env, config, "verify", "--all", "--test-restore")
        seen["cleanup"] = traced(env, config, "cleanup", "--yes")
        assert "mknodat" in seen["binlog --once"] or "mknod" in seen["binlog --once"]  # the archiver's FIFO
        assert {"execve", "clone3", "clone"} & seen["backup (mariabackup)"]  # the children were traced too
        refused = {command: sorted(calls - allowed) for command, calls in seen.items() if calls - allowed}
        assert not refused, f"calls the units' SystemCallFilter refuses with EPERM: {refused}"
    finally:
        binlog_server.sql(f"DROP DATABASE IF EXISTS `{db}`")
