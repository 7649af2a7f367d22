"""The mariadb-binlog command lines: what a replay decodes and how a file is fetched; the SQL
around a whole instance's replay, and the GTID position it records."""

import pytest

from tenangdb.actions.pitr import gtid_position
from tenangdb.mysql.binlogtool import decode_argv, fetch_argv, set_slave_position


def test_decode_filters_renames_and_bounds_only_when_asked():
    assert decode_argv("mb", "shop", "shop", start=None, stop=None) == ["mb", "--no-defaults", "--database=shop", "-"]
    assert decode_argv("mb", "shop", "shop_r", start=4, stop=900) == [
        "mb", "--no-defaults", "--database=shop", "--rewrite-db=shop->shop_r", "--start-position=4",
        "--stop-position=900", "-"]
    assert "--stop-position=0" in decode_argv("mb", "a", "a", start=0, stop=0)


def test_fetch_writes_raw_into_the_folder_and_never_carries_a_password():
    argv = fetch_argv("mb", ["--defaults-extra-file=/dev/fd/7"], "/run/x", "binlog.000003")
    assert argv == ["mb", "--defaults-extra-file=/dev/fd/7", "--read-from-remote-server", "--raw",
                    "--result-file=/run/x/", "binlog.000003"]
    assert not any("password" in part for part in argv)


def test_a_whole_instance_is_decoded_without_a_filter():
    assert decode_argv("mb", None, None, start=4, stop=None) == ["mb", "--no-defaults", "--start-position=4", "-"]


def test_the_slave_position_statement_takes_only_a_gtid_position():
    assert set_slave_position("0-1-42,2-7-9") == b"SET GLOBAL gtid_slave_pos = '0-1-42,2-7-9';\n"
    for bad in ("", "0-1", "0-1-2'; DROP DATABASE x; --", "0-1-2,"):
        with pytest.raises(ValueError):
            set_slave_position(bad)


def test_the_position_at_the_stop_is_each_domains_last_gtid():
    # A GTID_LIST names each domain's newest (domain, server) pair last; later events move it on.
    assert gtid_position(["0-2-90", "0-1-100", "1-5-7"]) == "0-1-100,1-5-7"
    assert gtid_position(["0-1-100", "1-5-7", "0-3-101", "10-1-1", "1-5-8"]) == "0-3-101,1-5-8,10-1-1"
    assert gtid_position([]) is None
