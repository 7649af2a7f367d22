"""doctor's binlog checks as plain functions over the server's variables."""

from __future__ import annotations

from tenangdb.actions.doctor import FAIL, PASS, WARN, binlog_retention, binlog_server


def test_log_bin_and_format():
    assert binlog_server({"log_bin": "OFF", "binlog_format": "ROW"}).status == FAIL
    assert binlog_server({"log_bin": "ON", "binlog_format": "ROW"}).status == PASS
    for form in ("MIXED", "STATEMENT"):
        check = binlog_server({"log_bin": "ON", "binlog_format": form})
        assert check.status == WARN and form in check.message and "binlog_format=ROW" in check.fix


def test_retention_against_max_lag():
    lag = 300
    assert binlog_retention({"binlog_expire_logs_seconds": "0", "expire_logs_days": "0.000000"}, lag).status == PASS
    assert binlog_retention({"binlog_expire_logs_seconds": "500"}, lag).status == FAIL  # under twice the lag
    assert binlog_retention({"binlog_expire_logs_seconds": "3600"}, lag).status == WARN  # under a day
    assert binlog_retention({"binlog_expire_logs_seconds": "604800"}, lag).status == PASS
    # The older variable, in days (MariaDB shows it as a decimal).
    assert binlog_retention({"binlog_expire_logs_seconds": "0", "expire_logs_days": "10.000000"}, lag).status == PASS
    assert binlog_retention({"expire_logs_days": "0.100000"}, lag).status == WARN
    # A size limit purges however young the files are.
    by_size = binlog_retention({"binlog_expire_logs_seconds": "604800", "max_binlog_total_size": "1073741824"}, lag)
    assert by_size.status == WARN and "max_binlog_total_size" in by_size.message
