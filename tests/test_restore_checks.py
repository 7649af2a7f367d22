"""What restore refuses before it reads a byte of the backup: names the server would reject,
the server's own schemas, a wrong password, missing privileges, a non-empty target."""

from __future__ import annotations

import json

import pytest

from conftest import unique
from test_failures import only_line


@pytest.fixture
def damaged_backup(env, sample_db):
    """A backup whose dump file has one flipped byte: reading it fails verification (exit 7), so
    any other answer proves the check came before the backup was read."""
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    entry = json.loads((folder / "manifest.json").read_text())["files"][0]
    dump = folder / entry["name"]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 7
    return cfg, folder


@pytest.mark.parametrize("name,expected", [
    ("trail ", "cannot end with a space"),
    ("x" * 65, "at most 64 characters"),
    ("emoji\U0001F600", "Basic Multilingual Plane"),
])
def test_a_name_the_server_would_refuse_is_exit_2_before_anything(offline_env, name, expected):
    # No server, no config, no backup: the name is refused first, in one line.
    done = offline_env.cli("restore", "-b", str(offline_env.root / "nothing"), "-d", name, "--yes")
    assert done.returncode == 2, done.stderr
    assert expected in only_line(done.stderr) and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["mysql", "sys", "MySQL", "performance_schema", "information_schema"])
def test_system_schemas_are_refused_as_targets(env, server, sample_db, name):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    done = env.cli("restore", "-b", str(folder), "-d", name, "--yes", config=cfg)
    assert done.returncode == 2, done.stderr
    assert "system schema" in only_line(done.stderr) or "makes up its tables" in only_line(done.stderr)
    assert server.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME='customer' "
                      "AND TABLE_SCHEMA IN ('mysql', 'sys')").strip() == "0"


def test_virtual_schemas_are_refused_even_when_system_schemas_are_allowed(offline_env):
    done = offline_env.cli("restore", "-b", "x", "-d", "performance_schema", "--allow-system-schema", "--yes")
    assert done.returncode == 2 and "nothing can be loaded into it" in done.stderr, done.stderr


def test_allow_system_schema_restores_into_sys(env, server):
    # The flag does what it says: a backup of a database restored into sys. Tables of an
    # unlikely name, dropped again, so the shared server's sys stays as it was.
    source = unique("sysrest")
    table = unique("t")
    server.sql(f"CREATE DATABASE `{source}`; CREATE TABLE `{source}`.`{table}` (id INT PRIMARY KEY); "
               f"INSERT INTO `{source}`.`{table}` VALUES (1), (2)")
    try:
        cfg = env.write_config({"backup": {"databases": [source], "engine": "mysqldump"}})
        assert env.cli("backup", config=cfg).returncode == 0
        [folder] = env.backups_of(source)
        done = env.cli("restore", "-b", str(folder), "-d", "sys", "--allow-system-schema", "--yes", config=cfg)
        assert done.returncode == 0, done.stderr
        assert server.sql(f"SELECT COUNT(*) FROM sys.`{table}`").strip() == "2"
    finally:
        server.sql(f"DROP TABLE IF EXISTS sys.`{table}`; DROP DATABASE IF EXISTS `{source}`")


def test_wrong_password_is_reported_before_the_backup_is_read(env, server, damaged_backup):
    cfg, folder = damaged_backup
    user = unique("u")
    server.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-one'; "
               f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'right-one'")
    wrong = env.write_config({}, name="wrong.yaml",
                             database=dict(server.config_section(), username=user, password="wrong-one"))
    done = env.cli("restore", "-b", str(folder), "-d", unique("target"), "--yes", config=wrong)
    assert done.returncode == 3, done.stderr
    assert f"access denied for database user '{user}'" in only_line(done.stderr)


def test_non_empty_target_is_reported_before_the_backup_is_read(env, server, sample_db, damaged_backup):
    cfg, folder = damaged_backup
    done = env.cli("restore", "-b", str(folder), "-d", sample_db, config=cfg)  # no terminal, no --yes
    assert done.returncode == 4, done.stderr
    assert "exists and is not empty; restore cancelled" in only_line(done.stderr)


def test_missing_privileges_are_reported_before_the_backup_is_read(env, server, damaged_backup):
    cfg, folder = damaged_backup
    user, target = unique("ro"), unique("target")
    server.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'pw'; CREATE USER '{user}'@'127.0.0.1' "
               f"IDENTIFIED BY 'pw'; GRANT SELECT, CREATE ON *.* TO '{user}'@'localhost'; "
               f"GRANT SELECT, CREATE ON *.* TO '{user}'@'127.0.0.1'")
    limited = env.write_config({}, name="limited.yaml",
                               database=dict(server.config_section(), username=user, password="pw"))
    done = env.cli("restore", "-b", str(folder), "-d", target, "--yes", config=limited)
    assert done.returncode == 4, done.stderr
    line = only_line(done.stderr)
    assert "lacks DROP, INSERT, ALTER, LOCK TABLES" in line and target in line, line
    assert server.sql(f"SHOW DATABASES LIKE '{target}'").strip() == ""


def test_a_restore_still_asks_and_loads_after_the_early_checks(env, server, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    target = unique("copy")
    try:
        done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
        assert done.returncode == 0, done.stderr
        assert server.sql(f"SELECT COUNT(*) FROM `{target}`.customer").strip() == "2003"
        again = env.cli("restore", "-b", str(folder), "-d", target, "--yes", config=cfg)
        assert again.returncode == 0, again.stderr
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")
