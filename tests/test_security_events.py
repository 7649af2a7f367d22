"""The security guide watches the service's log with `grep -E "(FAILED|ERROR|UNAUTHORIZED)"`:
a refused metrics login and a failed backup must show there, in the log file too, and a JSON
log names each event."""

from __future__ import annotations

import json
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
