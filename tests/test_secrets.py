"""Secrets never reach argv, a child's environment, logs, errors or the backup folder."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import unique

# Quotes, backslash, hash (a comment in option files), spaces and a 4-byte character.
PASSWORD = 'Pa"ss\'w#rd \\ x;y 😀 $HOME'


@pytest.fixture
def secret_user(server, sample_db):
    user = unique("bk")
    escaped = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    for host in ("localhost", "127.0.0.1"):
        server.sql(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{escaped}'; "
                   f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, BINLOG MONITOR, SUPER "
                   f"ON *.* TO '{user}'@'{host}'; GRANT ALL ON `restored_%`.* TO '{user}'@'{host}'")
    yield user
    for host in ("localhost", "127.0.0.1"):
        server.sql(f"DROP USER '{user}'@'{host}'")


def spy_tool(tmp_path, real: str, name: str):
    """A wrapper that records what the real tool receives, then becomes it (same PID)."""
    log = tmp_path / f"{name}.seen"
    wrapper = tmp_path / name
    wrapper.write_text(f"""#!/bin/sh
{{
  echo "ARGV"; tr '\\0' '\\n' < /proc/$$/cmdline
  echo "ENVIRON"; tr '\\0' '\\n' < /proc/$$/environ
  echo "FDS"; ls -l /proc/$$/fd/
}} >> {log}
exec {real} "$@"
""")
    wrapper.chmod(0o755)
    return wrapper, log


def test_password_never_in_argv_env_logs_or_backup(env, server, sample_db, secret_user, tmp_path):
    dump, dump_seen = spy_tool(tmp_path, shutil.which("mariadb-dump"), "spy-dump")
    client, client_seen = spy_tool(tmp_path, shutil.which("mariadb"), "spy-client")
    database = dict(server.config_section(), username=secret_user, password="${BACKUP_PW}",
                    mysqldump_path=str(dump), mysql_path=str(client))
    log_file = env.root / "logs" / "tenangdb.log"
    cfg = env.write_config({"backup": {"databases": [sample_db], "compression": "none"},
                            "logging": {"file_path": str(log_file), "level": "debug"}}, database=database)
    run_env = {"BACKUP_PW": PASSWORD, "TENANGDB_ENCRYPTION_KEY": "AGE-SECRET-KEY-1NOTUSEDBUTSECRET"}
    done = env.cli("backup", config=cfg, env=run_env)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    target = unique("restored")
    done2 = env.cli("restore", "-b", str(folder), "-d", target, config=cfg, env=run_env)
    assert done2.returncode == 0, done2.stderr

    for seen in (dump_seen, client_seen):
        text = seen.read_text()
        argv = text.split("ENVIRON")[0]
        environ = text.split("ENVIRON")[1].split("FDS")[0]
        assert "--defaults-extra-file=/dev/fd/" in argv  # credentials came through a pipe
        assert "pipe:" in text.split("FDS")[1]
        for secret in (PASSWORD, "Pa\"ss", "AGE-SECRET-KEY"):
            assert secret not in argv and secret not in environ, seen
        assert "BACKUP_PW" not in environ and "TENANGDB_" not in environ and "MYSQL_PWD" not in environ
    if shutil.which("stdbuf"):  # the dump tool writes through a 1 MiB stdio buffer (runner)
        assert "_STDBUF_O=1048576" in dump_seen.read_text().split("ENVIRON")[1]

    outputs = done.stdout + done.stderr + done2.stdout + done2.stderr + log_file.read_text()
    assert "Pa\"ss" not in outputs and "NOTUSEDBUTSECRET" not in outputs
    for path in env.backups.rglob("*"):
        if path.is_file():
            assert b"Pa\"ss" not in path.read_bytes(), path
    assert oct(log_file.stat().st_mode & 0o777) == "0o640"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert secret_user not in json.dumps(manifest["engine"])  # no login options recorded
    # Nothing of the credentials was left on disk by the run.
    leftovers = [p for p in env.root.rglob("*") if p.is_file() and p.suffix in (".cnf", ".my")]
    assert not leftovers
    server.sql(f"DROP DATABASE `{target}`")


def test_encryption_key_not_in_errors(env, sample_db, server):
    bad_key = "AGE-SECRET-KEY-1THISISNOTAVALIDKEYATALL"
    cfg = env.write_config({"backup": {"databases": [sample_db], "encryption": {"enabled": True}}})
    done = env.cli("backup", config=cfg, env={"TENANGDB_ENCRYPTION_KEY": bad_key})
    assert done.returncode == 2 and "backup.encryption.key" in done.stderr
    assert bad_key not in done.stderr + done.stdout


def test_key_generate_writes_0600_and_refuses_overwrite(offline_env):
    path = offline_env.root / "keys" / "id.txt"
    done = offline_env.cli("key", "generate", "-o", str(path))
    assert done.returncode == 0 and done.stdout.startswith("age1")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "AGE-SECRET-KEY-1" in path.read_text() and "AGE-SECRET-KEY" not in done.stdout + done.stderr
    before = path.read_text()
    again = offline_env.cli("key", "generate", "-o", str(path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert path.read_text() == before
