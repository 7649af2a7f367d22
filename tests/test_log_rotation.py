"""Log rotation as logrotate does it (rename, then a new file) under a running exporter: the
exporter writes on into the new file, and the policy `init --deploy-systemd` installs works with
the real logrotate."""

from __future__ import annotations

import shutil
import stat
import subprocess
import time

import pytest

from test_metrics import http_get, metrics_section, running_exporter
from test_security_events import GUIDE_GREP

PASSWORD = "right-Pass-1"


def _exporter_config(env, log_file):
    return env.write_config({"metrics": metrics_section(env, basic_auth={"username": "prometheus",
                                                                        "password": PASSWORD}),
                             "logging": {"file_path": str(log_file)}})


def _wait_for(path, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never showed in {path}"
        time.sleep(0.05)


def _refused_login_lands_in(base: str, log_file) -> None:
    assert http_get(base + "/metrics", auth=("prometheus", "Guessed-Pass-9"))[0] == 401
    _wait_for(log_file, "UNAUTHORIZED metrics request from 127.0.0.1 refused")
    assert [line for line in log_file.read_text().splitlines() if GUIDE_GREP.search(line)]


def test_the_exporter_reopens_its_log_once_it_is_moved_away(offline_env):
    env = offline_env
    log_file = env.root / "logs" / "tenangdb.log"
    rotated = log_file.with_name("tenangdb.log.1")
    with running_exporter(_exporter_config(env, log_file)) as base:
        _wait_for(log_file, "exporter listening on")
        log_file.rename(rotated)  # logrotate without `create`: no file at the path until we make one
        _refused_login_lands_in(base, log_file)
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o640
    assert "UNAUTHORIZED" not in rotated.read_text() and "exporter listening on" in rotated.read_text()
    assert "exporter stopped" in log_file.read_text()


@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate is not installed")
def test_the_installed_policy_rotates_under_a_running_exporter(offline_env):
    from tenangdb.deploy import logrotate

    env = offline_env
    log_file = env.root / "logs" / "tenangdb.log"
    policy = env.root / "logrotate.conf"
    # The account the service runs as; here the test's own (root, as logrotate runs).
    policy.write_text(logrotate.render(str(log_file), "root", "root"))
    policy.chmod(0o644)

    def rotate() -> None:
        done = subprocess.run(["logrotate", "-f", "-s", str(env.root / "logrotate.state"), str(policy)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr

    with running_exporter(_exporter_config(env, log_file)) as base:
        _wait_for(log_file, "exporter listening on")
        rotate()
        first = log_file.with_name("tenangdb.log.1")
        assert "exporter listening on" in first.read_text()
        assert log_file.read_text() == "" and stat.S_IMODE(log_file.stat().st_mode) == 0o640  # `create 0640`
        _refused_login_lands_in(base, log_file)
        rotate()  # the day after: yesterday's file is compressed (delaycompress), today's starts empty
        assert (log_file.with_name("tenangdb.log.2.gz")).exists()
        assert "UNAUTHORIZED" in first.read_text()
    assert "exporter stopped" in log_file.read_text()
