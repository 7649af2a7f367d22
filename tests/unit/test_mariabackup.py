"""The mariabackup adapter's parsers and argv, on the text mariabackup 10.11.19 really wrote."""

from __future__ import annotations

from pathlib import Path

from tenangdb.mysql import mariabackup

CHECKPOINTS = """backup_type = full-backuped
from_lsn = 0
to_lsn = 44420
last_lsn = 127108
recover_binlog_info = 0
"""

INFO = """uuid = 5d71fcf6-f153-11f1-b49c-02fc00000001
name = 
tool_name = mariabackup
binlog_pos = filename 'binlog.000001', position '15187', GTID of the last change '0-1-5'
innodb_from_lsn = 0
innodb_to_lsn = 44420
"""


def test_the_lsn_range_is_read_as_integers():
    assert mariabackup.lsn_range(CHECKPOINTS) == {"backup_type": "full-backuped", "from_lsn": 0, "to_lsn": 44420,
                                                  "last_lsn": 127108}


def test_the_binlog_coordinates_of_the_backup_point():
    assert mariabackup.binlog_coordinates(INFO) == {"file": "binlog.000001", "position": 15187, "gtid": "0-1-5"}
    without_gtid = INFO.replace(", GTID of the last change '0-1-5'", "")
    assert mariabackup.binlog_coordinates(without_gtid) == {"file": "binlog.000001", "position": 15187}
    assert mariabackup.binlog_coordinates("tool_name = mariabackup\n") is None  # the binary log is off


def test_only_a_run_that_ends_with_completed_ok_is_complete():
    assert mariabackup.is_complete("[00] 2026-12-06 08:59:37 Redo log copied.\n[00] 2026-12-06 08:59:37 completed OK!\n")
    assert not mariabackup.is_complete("[00] completed OK!\n[01] Error: cannot read page\n")
    assert not mariabackup.is_complete("")


def test_the_login_file_comes_first_and_nothing_secret_is_on_argv():
    argv = mariabackup.backup_argv("/usr/bin/mariabackup", "/dev/shm/x/client.cnf", Path("/p/lsn"), Path("/p/tmp"))
    assert argv[1] == "--defaults-extra-file=/dev/shm/x/client.cnf"
    assert "--stream=mbstream" in argv and "--extra-lsndir=/p/lsn" in argv and "--tmpdir=/p/tmp" in argv
    assert not any("password" in part for part in argv)
    prepare = mariabackup.prepare_argv("mariabackup", Path("/r"), "1G")
    assert prepare[1] == "--defaults-file=/r/backup-my.cnf" and "--use-memory=1G" in prepare


def test_mbstream_unpacks_with_two_writer_threads_into_the_folder():
    assert mariabackup.extract_argv("mbstream", Path("/r/x")) == ["mbstream", "-x", "--parallel=2", "-C", "/r/x"]
