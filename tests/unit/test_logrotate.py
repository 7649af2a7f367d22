"""The logrotate policy `init --deploy-systemd` installs: one block for the log file it configured."""

from __future__ import annotations

import pytest

from tenangdb.deploy import logrotate
from tenangdb.deploy.host import DeployError


def test_a_plain_path_is_written_bare_and_rotated_as_the_service_account():
    text = logrotate.render("/var/log/tenangdb/tenangdb.log", "svc", "svcgrp")
    body = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert body == ["/var/log/tenangdb/tenangdb.log {", "su svc svcgrp", "daily", "rotate 30", "compress",
                    "delaycompress", "missingok", "notifempty", "create 0640 svc svcgrp", "}"]
    assert "copytruncate" not in body


def test_a_path_with_a_space_is_quoted():
    assert '"/srv/my logs/tenangdb.log" {' in logrotate.render("/srv/my logs/tenangdb.log", "svc", "svc")


@pytest.mark.parametrize("path", ["logs/tenangdb.log", '/var/log/"x".log', "/var/log/{x}.log", "/var/log/a\nb"])
def test_a_path_logrotate_cannot_carry_is_refused(path):
    with pytest.raises(DeployError):
        logrotate.render(path, "svc", "svc")


def test_a_log_file_right_in_var_log_is_rotated_as_root():
    text = logrotate.render("/var/log/tenangdb.log", "svc", "svc")
    assert "su " not in text and "create 0640 svc svc" in text
