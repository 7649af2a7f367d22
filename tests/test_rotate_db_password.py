"""`tenangdb init --rotate-db-password` on a real server, with an account holding only the
security guide's backup privileges: after it a backup works with the secrets file as it
is now, and the old password is refused."""

from __future__ import annotations

import os
import stat

import pymysql
import pytest
import yaml

from conftest import unique
from tenangdb.config.loader import read_secrets_file


@pytest.fixture
def account(server):
    user = unique("bk")
    password = "Old-Pass-" + user
    server.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; "
               f"GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER, RELOAD ON *.* TO '{user}'@'%'")
    yield user, password
    server.sql(f"DROP USER IF EXISTS '{user}'@'%'")


def _setup(env, server, user: str, password: str):
    secrets = env.root / "secrets.env"
    secrets.write_text(f'# kept by hand\nOTHER="untouched"\nTENANGDB_DB_PASSWORD="{password}"\n')
    os.chmod(secrets, 0o600)
    cfg = env.write_config({"backup": {"encryption": False}},
                           database={"host": server.host, "port": server.port, "username": user,
                                     "password": "${TENANGDB_DB_PASSWORD}"})
    data = yaml.safe_load(cfg.read_text())
    data["secrets_file"] = str(secrets)
    cfg.write_text(yaml.safe_dump(data))
    return cfg, secrets


def _logs_in(server, user: str, password: str) -> bool:
    try:
        pymysql.connect(host=server.host, port=server.port, user=user, password=password).close()
        return True
    except pymysql.err.OperationalError as exc:
        assert exc.args[0] == 1045
        return False


def test_rotation_leaves_backups_working_and_the_old_password_refused(env, server, account, sample_db):
    user, old = account
    cfg, secrets = _setup(env, server, user, old)
    done = env.cli("init", "--rotate-db-password", config=cfg)
    assert done.returncode == 0, done.stderr
    values = read_secrets_file(secrets)
    new = values["TENANGDB_DB_PASSWORD"]
    assert new != old and len(new) >= 32 and values["OTHER"] == "untouched"
    assert "# kept by hand" in secrets.read_text()
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert not list(env.root.glob("secrets.env.rotating*")) and not list(env.root.glob(".secrets.env*"))
    assert new not in done.stderr + done.stdout and "SET PASSWORD" in done.stderr
    assert not _logs_in(server, user, old)
    assert _logs_in(server, user, new)
    done = env.cli("backup", "--yes", "--databases", sample_db, config=cfg)
    assert done.returncode == 0, done.stderr
    assert len(env.backups_of(sample_db)) == 1


def test_an_interrupted_rotation_is_finished_by_the_next_one(env, server, account):
    """Killed after the server took the new password, before the rename: the pending file
    holds the only password that works, and the next run puts it in place."""
    user, old = account
    cfg, secrets = _setup(env, server, user, old)
    pending = env.root / "secrets.env.rotating"
    pending.write_text('OTHER="untouched"\nTENANGDB_DB_PASSWORD="Pending-Pass-123456789"\n')
    os.chmod(pending, 0o600)
    server.sql(f"SET PASSWORD FOR '{user}'@'%' = PASSWORD('Pending-Pass-123456789')")
    done = env.cli("init", "--rotate-db-password", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "finished an interrupted rotation" in done.stderr
    assert read_secrets_file(secrets)["TENANGDB_DB_PASSWORD"] == "Pending-Pass-123456789"
    assert not pending.exists()


def test_a_password_from_the_environment_is_not_rotated(env, server, account):
    user, old = account
    cfg, secrets = _setup(env, server, user, old)
    before = secrets.read_text()
    done = env.cli("init", "--rotate-db-password", config=cfg, env={"TENANGDB_DB_PASSWORD": old})
    assert done.returncode == 2, done.stderr
    assert "environment" in done.stderr and old not in done.stderr
    assert secrets.read_text() == before and _logs_in(server, user, old)


def test_a_wrong_current_password_changes_nothing(env, server, account):
    user, old = account
    cfg, secrets = _setup(env, server, user, "not-the-password")
    done = env.cli("init", "--rotate-db-password", config=cfg)
    assert done.returncode == 3, done.stderr
    assert "access denied" in done.stderr
    assert read_secrets_file(secrets)["TENANGDB_DB_PASSWORD"] == "not-the-password"
    assert _logs_in(server, user, old)
