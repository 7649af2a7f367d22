"""The security guide watches the service's log with `grep -E "(FAILED|ERROR|UNAUTHORIZED)"`:
a refused metrics login and a failed backup must show there, in the log file too, and a JSON
log names each event."""

from __future__ import annotations

import json
import os
import re

from test_metrics import http_get, metrics_section, running_exporter

GUIDE_GREP = re.compile(r"(FAILED|ERROR|UNAUTHORIZED)")


def _matches(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if GUIDE_GREP.search(line)]


def test_a_refused_metrics_login_is_logged_once_a_minute_per_peer(offline_env):
    env = offline_env
    log_file = env.root / "logs" / "tenangdb.log"
    cfg = env.write_config({"metrics": metrics_section(env, basic_auth={"username": "prometheus",
                                                                        "password": "right-Pass-1"}),
                            "logging": {"file_path": str(log_file)}})
    with running_exporter(cfg) as base:
        for auth in (("prometheus", "Guessed-Pass-9"), None, ("admin", "Other-Guess-7")):
            assert http_get(base + "/metrics", auth=auth)[0] == 401
        assert http_get(base + "/metrics", auth=("prometheus", "right-Pass-1"))[0] == 200
    [line] = _matches(log_file)
    assert "UNAUTHORIZED metrics request from 127.0.0.1 refused: wrong credentials" in line
    text = log_file.read_text()
    assert "Guessed-Pass-9" not in text and "Other-Guess-7" not in text and "admin" not in text


def test_a_failed_backup_is_logged_for_the_guides_grep(env):
    log_file = env.root / "tenangdb.log"
    cfg = env.write_config({"backup": {"databases": ["no_such_database_here"]},
                            "logging": {"file_path": str(log_file), "format": "json", "file_format": "json"}})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 4
    [line] = _matches(log_file)
    event = json.loads(line)
    assert event["event"] == "backup_failed" and event["level"] == "error"
    assert event["msg"].startswith("FAILED no_such_database_here: backup failed: ")


def _events(path) -> dict[str, dict]:
    """The guide's grep over a JSON log file: each matching line by its event name."""
    found = {}
    for line in _matches(path):
        event = json.loads(line)
        found.setdefault(event.get("event"), event)
    return found


def _json_logging(path) -> dict:
    return {"logging": {"file_path": str(path), "format": "json", "file_format": "json"}}


def test_a_refused_config_is_logged_without_its_secret(offline_env):
    env = offline_env
    log_file = env.root / "logs" / "tenangdb.log"
    secret = "Plain-Text-Secret-42"
    cfg = env.write_config({**_json_logging(log_file)}, mode=0o644,
                           database={"host": "127.0.0.1", "port": 9, "username": "u", "password": secret})
    done = env.cli("list", config=cfg)
    assert done.returncode == 2 and "readable by other users" in done.stderr
    event = _events(log_file)["config_refused"]
    assert event["level"] == "error"
    assert event["msg"] == (f"FAILED config file {cfg} refused: it holds a plaintext secret (database.password) "
                            "and other users can read it")
    # The journal (stderr under systemd) carries the word too; the secret is nowhere.
    assert any(GUIDE_GREP.search(line) for line in done.stderr.splitlines())
    assert secret not in log_file.read_text() and secret not in done.stderr


def test_a_refused_config_without_a_log_file_still_reaches_the_journal(offline_env):
    env = offline_env
    cfg = env.write_config(mode=0o644, database={"host": "127.0.0.1", "port": 9, "username": "u",
                                                 "password": "Another-Plain-Secret-7"})
    done = env.cli("list", config=cfg)
    assert done.returncode == 2
    [line] = [line for line in done.stderr.splitlines() if GUIDE_GREP.search(line)]
    assert f"FAILED config file {cfg} refused" in line and "Another-Plain-Secret-7" not in done.stderr
    # With --insecure the operator has said yes: nothing is refused, nothing is logged as refused.
    allowed = env.cli("--insecure", "list", config=cfg)
    assert "refused" not in allowed.stderr


def test_a_wrong_key_is_logged_with_fingerprints_only(env, sample_db):
    log_file = env.root / "tenangdb.log"
    cfg = env.write_config({"backup": {"databases": [sample_db],
                                       "encryption": {"enabled": True, "key_file": str(env.key())}}})
    assert env.cli("backup", "--yes", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    other = env.root / "other-key.txt"
    assert env.cli("key", "generate", "-o", str(other)).returncode == 0
    wrong = env.write_config({"backup": {"encryption": {"enabled": True, "key_file": str(other)}},
                              **_json_logging(log_file)}, name="wrong.yaml")
    done = env.cli("verify", "--backup-path", str(folder), config=wrong)
    assert done.returncode == 7
    events = _events(log_file)
    assert events["wrong_key"]["msg"].startswith(f"FAILED {folder}: the configured age identity (sha256:")
    text = log_file.read_text()
    for key_file in (env.key(), other):
        secret = next(line for line in key_file.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
        assert secret not in text and secret not in done.stderr


def test_a_run_refused_by_the_lock_is_logged(env, sample_db):
    from tenangdb.repository.lock import DirectoryLock

    log_file = env.root / "tenangdb.log"
    env.backups.mkdir()
    cfg = env.write_config({"backup": {"databases": [sample_db]}, **_json_logging(log_file)})
    with DirectoryLock(env.backups):
        done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 1 and "another tenangdb run" in done.stderr
    event = _events(log_file)["lock_refused"]
    assert event["msg"] == f"FAILED lock on {env.backups} refused: held by another tenangdb run (PID {os.getpid()})"
    assert env.backups_of(sample_db) == []
