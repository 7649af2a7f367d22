"""Names on disk: folder names for any database name, backup names and their parsing, staging
folders and dump file names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from tenangdb.repository.naming import (backup_name, dump_file_name, folder_name, is_staging, month_folder,
                                        parse_backup_name, staging_name)


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=64))
def test_folder_names_are_safe_and_distinct(name):
    folder = folder_name(name)
    assert "/" not in folder and folder not in (".", "..") and not folder.startswith(".")
    assert "\x00" not in folder
    other = name + "x"
    assert folder_name(other) != folder


def test_backup_names_parse_back():
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert backup_name("my db", when) == "my%20db-2026-03-04_05-06-07"
    assert parse_backup_name(backup_name("a-b", when, 2)) == ("a-b", when)


@pytest.mark.parametrize("name, folder", [
    ("shop", "shop"), ("a.b-c_d", "a.b-c_d"), ("a/b", "a%2Fb"), ("..", "%2E%2E"), (".", "%2E"),
    (".hidden", "%2Ehidden"), ("", "%00"), ("café", "caf%C3%A9"), ("tab\there", "tab%09here"),
])
def test_folder_names(name, folder):
    assert folder_name(name) == folder


def test_names_are_in_utc_whatever_the_zone_of_the_time():
    jakarta = timezone(timedelta(hours=7))
    when = datetime(2026, 1, 1, 3, 0, 0, tzinfo=jakarta)  # 2025-12-31 20:00 UTC
    assert backup_name("shop", when) == "shop-2025-12-31_20-00-00"
    assert month_folder(when) == "2025-12"
    assert parse_backup_name("shop-2025-12-31_20-00-00") == ("shop", datetime(2025, 12, 31, 20, tzinfo=timezone.utc))


@pytest.mark.parametrize("name", ["shop", "shop-2026-01-01", "shop-2026-01-01_00-00-00.x",
                                  ".shop-2026-01-01_00-00-00.partial"])
def test_what_is_not_a_backup_name(name):
    assert parse_backup_name(name) is None


def test_staging_folders_are_hidden_and_recognised():
    name = backup_name("shop", datetime(2026, 3, 4, tzinfo=timezone.utc))
    assert staging_name(name) == f".{name}.partial"
    assert is_staging(staging_name(name)) and not is_staging(name) and not is_staging(".keep")


def test_dump_file_names():
    assert dump_file_name("shop", ".zst", True) == "shop.sql.zst.age"
    assert dump_file_name("a/b", "", False) == "a%2Fb.sql"


def test_a_stamp_that_is_no_date_is_no_backup_name(tmp_path):
    from tenangdb.repository import legacy
    from tenangdb.repository.naming import parse_backup_name

    assert parse_backup_name("shop-2026-13-45_00-00-00") is None
    odd = tmp_path / "shop-2026-13-45_00-00-00.sql"
    odd.write_text("-- Dump completed\n")
    assert legacy.detect(odd) is None
    fine = tmp_path / "shop-2026-12-31_23-59-59.sql"
    fine.write_text("-- Dump completed\n")
    assert legacy.detect(fine).database == "shop"
