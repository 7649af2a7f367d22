"""Configuration: schema errors, ${VAR} expansion, overrides, discovery, secret hygiene."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenangdb.config.loader import load_config
from tenangdb.config.schema import parse_duration
from tenangdb.errors import ConfigError


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_defaults_and_original_keys_load(tmp_path):
    cfg = write(tmp_path / "c.yaml", """
database:
  host: 127.0.0.1
  port: "3306"
  username: backup
  mydumper:
    enabled: true
    threads: 4
    myloader: {enabled: true, threads: 4}
backup:
  databases: [a, b]
  directory: /backups
  compression: {enabled: true, format: tar.gz, level: 6}
  timeout: 30m
  retry_delay: 10s
  min_backup_interval: 1h
logging: {level: WARN, format: clean, file_format: text}
metrics: {enabled: false, port: 8080}
cleanup: {enabled: false, max_age_days: 7, remote_retention_days: 3, weekend_only: false}
""")
    loaded = load_config(cfg, environ={})
    s = loaded.settings
    assert s.database.port == 3306
    assert s.backup.compression.format == "gzip" and s.backup.compression.effective_level == 6
    assert s.backup.retry_delay == 10 and s.backup.min_backup_interval == 3600
    assert s.logging.level == "warning"
    # The original never enforced its timeout: until the file is reviewed, neither does this.
    assert loaded.from_original and loaded.unenforced == {"backup.timeout": "30m"} and s.backup.timeout == 86400
    cfg.write_text("config_version: 2\n" + cfg.read_text())
    assert load_config(cfg, environ={}).settings.backup.timeout == 1800


@pytest.mark.parametrize("text,expected", [
    ("backup:\n  directry: /x\n", "backup.directry: unknown key (did you mean 'directory'?)"),
    ("database:\n  port: lots\n", "database.port: Input should be a valid integer"),
    ("backup:\n  compression: lz5\n", "backup.compression.format: Input should be 'zstd', 'gzip', 'xz' or 'none'"),
    ("backup:\n  engine: fastest\n", "backup.engine: Input should be 'auto', 'mysqldump', 'mydumper' or 'mariabackup'"),
    ("backup:\n  compression: {format: zstd, level: 40}\n", "level 40 is out of range for zstd (1-22)"),
    ("backup:\n  timeout: soon\n", "expected a duration such as 30s, 10m or 1h"),
    ("backup:\n  encryption: {enabled: true}\n", "encryption is enabled but no recipients"),
    ("- just\n- a list\n", "must hold a mapping of sections"),
    ("database: [unclosed\n", "is not valid YAML at line"),
    ("database:\n  mydumper: {no_data: true}\n", "database.mydumper.no_data: true would make backups that cannot"),
    ("database:\n  mydumper: {max_unsealed_mb: 1}\n", "database.mydumper.max_unsealed_mb: Input should be greater"),
    # An empty file would mean every default: the system server and /var/backups/tenangdb.
    ("", "is empty or holds only comments"),
    ("# database:\n#   host: db1\n\n", "is empty or holds only comments"),
    ("{}\n", "is empty or holds only comments"),
])
def test_bad_config_is_exit_2_with_file_and_key(offline_env, text, expected):
    cfg = write(offline_env.root / "bad.yaml", text)
    done = offline_env.cli("config", config=cfg)
    assert done.returncode == 2, done.stderr
    assert str(cfg) in done.stderr and expected in done.stderr
    assert done.stderr.count("\n") == 1  # one line


def test_env_expansion_default_and_missing(tmp_path):
    cfg = write(tmp_path / "c.yaml", "database:\n  host: ${DB_HOST:-db.internal}\n  username: ${DB_USER}\n"
                "backup:\n  directory: $${literal}\n")
    s = load_config(cfg, environ={"DB_USER": "bk"}).settings
    assert s.database.host == "db.internal" and s.database.username == "bk"
    assert s.backup.directory == "${literal}"
    with pytest.raises(ConfigError, match=r"database.username: environment variable DB_USER is not set"):
        load_config(cfg, environ={})


def test_missing_variable_via_cli_is_exit_2(offline_env):
    cfg = write(offline_env.root / "c.yaml", "database:\n  password: ${NOPE_NOT_SET}\n")
    done = offline_env.cli("config", config=cfg)
    assert done.returncode == 2 and "NOPE_NOT_SET is not set" in done.stderr


def test_env_overrides_and_aliases(tmp_path):
    cfg = write(tmp_path / "c.yaml", "database:\n  host: a\n")
    loaded = load_config(cfg, environ={
        "TENANGDB_DATABASE_HOST": "b", "TENANGDB_DB_PASSWORD": "pw-from-env",
        "TENANGDB_BACKUP_MIN_BACKUP_INTERVAL": "2h", "TENANGDB_BACKUP_COMPRESSION_FORMAT": "xz",
        "TENANGDB_ENCRYPTION_KEY": "AGE-SECRET-KEY-1XYZ", "TENANGDB_BACKUP_ENCRYPTION_ENABLED": "true",
        "TENANGDB_TEST_ANYTHING": "ignored",
    })
    s = loaded.settings
    assert s.database.host == "b" and s.database.password.get_secret_value() == "pw-from-env"
    assert s.backup.min_backup_interval == 7200 and s.backup.compression.format == "xz"
    assert s.backup.encryption.enabled and s.backup.encryption.key.get_secret_value() == "AGE-SECRET-KEY-1XYZ"
    assert loaded.source_of("database.host") == "env TENANGDB_DATABASE_HOST"
    # The original read no environment: a variable left over from elsewhere warns, never stops a run.
    loaded = load_config(cfg, environ={"TENANGDB_BACKUP_DIRCTORY": "/x"})
    assert loaded.warnings == ["environment variable TENANGDB_BACKUP_DIRCTORY does not name a key of the backup "
                               "section and is ignored (did you mean TENANGDB_BACKUP_DIRECTORY?)"]
    assert loaded.settings.backup.directory != "/x"


def test_world_readable_plaintext_secret_is_refused(offline_env):
    cfg = write(offline_env.root / "c.yaml", "database:\n  password: hunter2-secret\n", mode=0o644)
    done = offline_env.cli("config", config=cfg)
    assert done.returncode == 2
    assert "readable by other users" in done.stderr and f"chmod o-rwx {cfg}" in done.stderr
    assert "hunter2-secret" not in done.stderr
    assert offline_env.cli("--insecure", "config", config=cfg).returncode == 0
    # A reference to the environment is not a plaintext secret.
    ref = write(offline_env.root / "ref.yaml", "database:\n  password: ${PW}\n", mode=0o644)
    assert offline_env.cli("config", config=ref, env={"PW": "x"}).returncode == 0


def test_config_command_redacts_secrets_and_shows_sources(offline_env):
    cfg = write(offline_env.root / "c.yaml", "database:\n  password: ${PW}\nbackup:\n  databases: [shop]\n"
                "  encryption: {enabled: true, key: '${KEY}'}\n")
    done = offline_env.cli("config", config=cfg, env={"PW": "pa55-word-xyz", "KEY": "AGE-SECRET-KEY-1QQQ",
                                                     "TENANGDB_DATABASE_HOST": "db9"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "pa55-word-xyz" not in out and "AGE-SECRET-KEY-1QQQ" not in out
    assert f"database.password = ********    # file {cfg} via ${{PW}}" in out
    assert "database.host = db9    # env TENANGDB_DATABASE_HOST" in out
    assert "backup.databases = shop    # file" in out
    assert "database.port = 3306    # default" in out


def test_discovery_prefers_explicit_then_cwd(offline_env, tmp_path):
    write(tmp_path / "config.yaml", "backup:\n  databases: [from_cwd]\n")
    done = offline_env.cli("config", cwd=tmp_path)
    assert "backup.databases = from_cwd" in done.stdout
    other = write(tmp_path / "other.yaml", "backup:\n  databases: [explicit]\n")
    assert "backup.databases = explicit" in offline_env.cli("config", config=other, cwd=tmp_path).stdout
    done = offline_env.cli("config", config=tmp_path / "missing.yaml")
    assert done.returncode == 2 and "does not exist" in done.stderr


@pytest.mark.parametrize("value,seconds", [(90, 90), ("90", 90), ("30s", 30), ("10m", 600), ("2h30m", 9000),
                                           ("1d", 86400), ("1.5h", 5400)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "10 minutes", "-5", "5x", True])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_keys_the_original_ignored_load_with_a_warning(tmp_path):
    cfg = write(tmp_path / "c.yaml", """
database:
  type: mysql
  Host: db1
  mysql: {single_transaction: true}
Backup:
  Databases: [shop]
frequency:
  enabled: true
  interval: 24h
upload:
  verify_upload: true
""")
    loaded = load_config(cfg, environ={})
    s = loaded.settings
    assert s.database.host == "db1" and s.backup.databases == ["shop"] and s.upload.verify == "hash"
    notes = [w.removeprefix(f"{cfg}: ") for w in loaded.warnings]
    assert notes == [
        "database.type: ignored, as the original TenangDB ignored it (only MySQL and MariaDB are supported)",
        "database.Host: read as database.host (keys are lower case)",
        "database.mysql: ignored, as the original TenangDB ignored it (the dump options are chosen by "
        "backup.engine)",
        "Backup: read as backup (keys are lower case)",
        "backup.Databases: read as backup.databases (keys are lower case)",
        "frequency: ignored, as the original TenangDB ignored it (schedule backups with the systemd timer or "
        "the CronJob; backup.min_backup_interval is the minimum time between runs)",
    ]
    # The security guide's spelling of upload.verify: false switches the check off, and
    # upload.verify wins when both are given.
    for given, expected in (("verify_upload: false", "off"), ("{verify_upload: false, verify: download}", "download")):
        body = f"upload: {given}\n" if given.startswith("{") else f"upload:\n  {given}\n"
        assert load_config(write(tmp_path / "v.yaml", body), environ={}).settings.upload.verify == expected


def test_warnings_are_logged_and_typos_stay_errors(offline_env):
    cfg = write(offline_env.root / "c.yaml", "frequency: {enabled: true}\nbackup:\n  databases: [shop]\n")
    done = offline_env.cli("config", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "warning: " in done.stderr and "frequency: ignored" in done.stderr
    # A misspelt real key still fails, with its did-you-mean; so does a key written twice.
    for text, expected in (("backup:\n  databases: [a]\n  directroy: /x\n", "did you mean 'directory'"),
                           ("frequncy: {enabled: true}\n", "frequncy: unknown key"),
                           ("backup:\n  directory: /x\n  Directory: /y\n",
                            "backup.Directory and backup.directory are the same key written twice")):
        bad = write(offline_env.root / "bad.yaml", text)
        done = offline_env.cli("config", config=bad)
        assert done.returncode == 2 and expected in done.stderr and str(bad) in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1


def test_case_variant_of_a_secret_is_still_a_secret(offline_env):
    cfg = write(offline_env.root / "c.yaml", "Database:\n  Password: hunter2-secret\n", mode=0o644)
    done = offline_env.cli("config", config=cfg)
    assert done.returncode == 2 and "readable by other users" in done.stderr
    assert "hunter2-secret" not in done.stderr


def test_tenangdb_yaml_in_the_working_directory_is_found(offline_env, tmp_path):
    write(tmp_path / "tenangdb.yaml", "backup:\n  databases: [from_tenangdb_yaml]\n")
    done = offline_env.cli("config", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "backup.databases = from_tenangdb_yaml" in done.stdout
    write(tmp_path / "config.yaml", "backup:\n  databases: [from_config_yaml]\n")
    assert "backup.databases = from_config_yaml" in offline_env.cli("config", cwd=tmp_path).stdout


def test_default_backup_timeout_spares_long_dumps(tmp_path):
    # The original's 30m default was never enforced; a long dump must not be killed by ours.
    s = load_config(write(tmp_path / "c.yaml", "backup:\n  databases: [a]\n"), environ={}).settings
    assert s.backup.timeout == 24 * 3600
