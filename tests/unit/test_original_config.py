"""Telling a config of the original TenangDB (config/original.py): its keys, the mark that
acknowledges the review, the review itself and what the loader does for such a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tenangdb.config import original
from tenangdb.config.loader import IGNORED_KEYS, load_config, normalize_keys
from tenangdb.config.schema import field_of

DEPLOYMENT = yaml.safe_load((Path(__file__).parents[1] / "original" / "deployment.yaml").read_text())


def from_original(data: dict) -> bool:
    raw, _ = normalize_keys(data)
    return original.is_from_original(raw)


def test_every_key_of_the_original_is_a_key_here():
    for key in original.ORIGINAL_KEYS:
        field_of(key)  # KeyError when the schema lost one
    # The keys it carried but never read are dropped by the loader before this looks.
    assert not set(IGNORED_KEYS) & original.ORIGINAL_KEYS


@pytest.mark.parametrize("name", sorted(DEPLOYMENT["configs"]))
def test_the_originals_example_configs_are_the_originals(name):
    assert from_original(DEPLOYMENT["configs"][name])


@pytest.mark.parametrize("data", [
    {"database": {"Host": "db", "MYDUMPER": {"Enabled": True}}},  # case variants, as the original read them
    {"frequency": {"enabled": True, "interval": "24h"}, "backup": {"databases": ["a"]}},  # a key it ignored
    {"database": {"type": "mysql"}, "upload": {"encryption": True}},
    {"cleanup": None, "backup": {"compression": {"enabled": True, "format": "tar.zst"}}},
])
def test_what_the_original_read_is_the_originals(data):
    assert from_original(data)


@pytest.mark.parametrize("data,why", [
    ({"backup": {"databases": ["a"], "tracking_directory": "/x"}},
     "it sets backup.tracking_directory, which only this TenangDB has"),
    ({"config_version": 2, "backup": {"databases": ["a"]}}, "it carries config_version: 2"),
    ({"database": {"socket": "/run/mysqld.sock"}}, "it sets database.socket, which only this TenangDB has"),
    ({"logging": {"file": "/var/log/t.log"}}, "it sets logging.file, which only this TenangDB has"),
    ({"backup": {"compression": "gzip"}}, "it sets backup.compression, which only this TenangDB has"),
    ({"cleanup": {"keep_daily": 7}}, "it sets cleanup.keep_daily, which only this TenangDB has"),
    ({"notify": {"timeout": 5}}, "it sets notify.timeout, which only this TenangDB has"),
])
def test_a_key_only_this_tenangdb_has_makes_it_this_ones(data, why):
    raw, _ = normalize_keys(data)
    assert original.not_original_because(raw) == why


def keys_of(lines: list[str]) -> set[str]:
    return {line.split(":")[0] for line in lines}


def test_review_names_each_change_once_with_what_was_and_what_is():
    lines = original.review(DEPLOYMENT["configs"]["example"])
    assert all(line.count(" — ") == 1 for line in lines)
    assert len(keys_of(lines)) == len(lines)
    assert "cleanup.max_age_days: 7 — the original deleted whole top-level folders" in "\n".join(lines)


@pytest.mark.parametrize("data,line", [
    ({"cleanup": {"enabled": True}}, "cleanup.enabled: true — the original ignored it"),
    ({"cleanup": {"cleanup_uploaded_files": True}}, "cleanup.cleanup_uploaded_files: true — the original never "
     "deleted a local copy for being uploaded"),
    ({"cleanup": {"databases": ["shop"]}}, "cleanup.databases: shop — with this filter the original's real "
     "cleanup deleted nothing"),
    ({"cleanup": {"max_age_days": 0}}, "cleanup.max_age_days: 0 — the original's real cleanup read 0 as 7 days"),
    ({"cleanup": {"age_based_cleanup": False}}, "cleanup.age_based_cleanup: false — the original's real cleanup "
     "deleted by age anyway; TenangDB never deletes a local backup for its age"),
    ({"database": {"mydumper": {"no_schemas": True}}}, "database.mydumper.no_schemas: true — the original dumped "
     "without schemas; TenangDB refuses it"),
    ({"database": {"mydumper": {"no_data": True}}}, "database.mydumper.no_data: true — the original dumped "
     "without data; TenangDB refuses it"),
    ({"backup": {"compression": {"enabled": True, "format": "tar.zst"}}}, "backup.compression.format: tar.zst — "
     "the original wrote a .tar.zst archive that held gzip data whatever its name; TenangDB compresses each dump "
     "file with zstd"),
    ({"backup": {"compression": {"enabled": True, "keep_original": True}}}, "backup.compression.keep_original: "
     "true — the original kept the uncompressed dump beside its archive"),
    ({"database": {"host": "localhost"}}, "database.host: localhost — the original connected over TCP"),
    ({}, "database.host: localhost (default) — the original connected over TCP"),
    ({"database": {"mydumper": {"compress_method": "gzip"}}}, "database.mydumper.compress_method: gzip — the "
     "original had mydumper compress its files"),
])
def test_review_lines(data, line):
    assert any(said.startswith(line) for said in original.review(data)), original.review(data)


@pytest.mark.parametrize("data,absent", [
    ({"cleanup": {"weekend_only": True}}, "cleanup.weekend_only"),  # as the original, weekends only
    ({"cleanup": {"enabled": False}}, "cleanup.enabled"),  # no cleanup after a backup, as before
    ({"backup": {"compression": {"enabled": False, "format": "tar.gz"}}}, "backup.compression"),
    ({"database": {"host": "127.0.0.1", "mydumper": {"enabled": False}}}, "database"),
    ({"logging": {"file_path": "/var/log/t.log"}}, "logging.file_path"),
    ({}, "cleanup.remote_retention_days"),  # no uploads: no remote to expire
])
def test_review_leaves_out_what_does_not_change(data, absent):
    assert not [line for line in original.review(data) if line.startswith(absent)]


@pytest.mark.parametrize("text,expected", [
    ("backup:\n  databases: [a]\n", f"{original.COMMENT}\nconfig_version: 2\nbackup:\n  databases: [a]\n"),
    ("# mine\n\n# more\nbackup: {databases: [a]}  # inline\n",
     f"{original.COMMENT}\nconfig_version: 2\n# mine\n\n# more\nbackup: {{databases: [a]}}  # inline\n"),
    ("%YAML 1.1\n---\nbackup: {}\n", f"%YAML 1.1\n---\n{original.COMMENT}\nconfig_version: 2\nbackup: {{}}\n"),
    ("backup: {}\r\n", f"{original.COMMENT}\r\nconfig_version: 2\r\nbackup: {{}}\r\n"),
])
def test_the_mark_goes_at_the_top_and_leaves_the_rest(text, expected):
    assert original.marked_text(text) == expected


def test_write_mark_keeps_the_old_file_and_its_mode(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("# mine\nbackup:\n  databases: [a]\n")
    os.chmod(cfg, 0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(cfg)
    copy = original.write_mark(link)
    assert copy == tmp_path / "config.yaml.original" and link.is_symlink()
    assert copy.read_text() == "# mine\nbackup:\n  databases: [a]\n"
    assert yaml.safe_load(cfg.read_text()) == {"config_version": 2, "backup": {"databases": ["a"]}}
    assert cfg.stat().st_mode & 0o777 == 0o640 and copy.stat().st_mode & 0o777 == 0o640


def test_loader_does_not_enforce_the_originals_timeout_until_marked(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"backup": {"databases": ["a"], "timeout": "30m"}}))
    loaded = load_config(cfg, environ={})
    assert loaded.from_original and loaded.unenforced == {"backup.timeout": "30m"}
    assert loaded.settings.backup.timeout == 86400
    assert loaded.source_of("backup.timeout").startswith("default; ")
    # Given by the environment, it is not the file's: enforced.
    loaded = load_config(cfg, environ={"TENANGDB_BACKUP_TIMEOUT": "45m"})
    assert loaded.from_original and loaded.unenforced == {} and loaded.settings.backup.timeout == 2700
    original.write_mark(cfg)
    loaded = load_config(cfg, environ={})
    assert not loaded.from_original and loaded.unenforced == {} and loaded.settings.backup.timeout == 1800


def test_the_originals_default_log_file_until_marked(tmp_path, monkeypatch):
    monkeypatch.setattr("tenangdb.config.loader.default_log_file", lambda: str(tmp_path / "var-log" / "t.log"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"backup": {"databases": ["a"]}}))
    loaded = load_config(cfg, environ={})
    assert loaded.original_log_file == str(tmp_path / "var-log" / "t.log")
    assert loaded.settings.logging.file_path is None  # the other commands log as configured
    # Set in the file or the environment: that one, and no default of the original's.
    loaded = load_config(cfg, environ={"TENANGDB_LOGGING_FILE_PATH": str(tmp_path / "mine.log")})
    assert loaded.original_log_file is None and loaded.settings.logging.file_path == str(tmp_path / "mine.log")
    original.write_mark(cfg)
    assert load_config(cfg, environ={}).original_log_file is None


def test_config_version_is_2_or_absent(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("config_version: 3\n")
    with pytest.raises(Exception, match="config_version: 2 is the only config version"):
        load_config(cfg, environ={})
