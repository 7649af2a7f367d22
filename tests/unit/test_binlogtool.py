"""The mariadb-binlog command lines: what a replay decodes and how a file is fetched."""

from tenangdb.mysql.binlogtool import decode_argv, fetch_argv


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
