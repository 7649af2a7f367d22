"""The parallel engine's pure parts: the mydumper and myloader command lines, and what is read
back from its output folder (completion, binlog coordinates, fatal lines, files per table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenangdb.mysql import mydumper

OLD_HELP = "  --trx-consistency-only   Transactional consistency only\n"
NEW_HELP = "  --trx-tables   ...\n  --sync-thread-lock-mode   AUTO, FTWRL, ...\n"


@pytest.fixture
def help_text(monkeypatch):
    """What `mydumper --help` says, without running it."""
    said = {"text": OLD_HELP}
    monkeypatch.setattr(mydumper, "_help", lambda binary: said["text"])
    return said


def test_dump_argv(help_text):
    argv = mydumper.dump_argv("/usr/bin/mydumper", "/dev/shm/x/client.cnf", "shop", Path("/tmp/out"), threads=4,
                              chunk_filesize=64, build_empty_files=False)
    assert argv[:2] == ["/usr/bin/mydumper", "--defaults-file=/dev/shm/x/client.cnf"]
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--database"] == "shop" and pairs["--outputdir"] == "/tmp/out"
    assert pairs["--threads"] == "4" and pairs["--chunk-filesize"] == "64" and pairs["--verbose"] == "2"
    assert {"--triggers", "--events", "--routines", "--trx-consistency-only"} <= set(argv)
    assert "--build-empty-files" not in argv
    argv = mydumper.dump_argv("mydumper", "f", "shop", Path("o"), threads=1, chunk_filesize=1, build_empty_files=True)
    assert argv[-1] == "--build-empty-files"


def test_the_snapshot_flags_follow_what_the_release_offers(help_text):
    assert mydumper.consistency_flags("mydumper") == ["--trx-consistency-only"]
    help_text["text"] = NEW_HELP
    assert mydumper.consistency_flags("mydumper") == ["--sync-thread-lock-mode=AUTO", "--trx-tables"]


def test_load_argv_loads_the_source_database_into_the_target():
    argv = mydumper.load_argv("myloader", "/dev/shm/x/client.cnf", Path("/tmp/dump"), source="shop",
                              target="shop_copy", threads=2)
    assert argv[:2] == ["myloader", "--defaults-file=/dev/shm/x/client.cnf"]
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--directory"] == "/tmp/dump" and pairs["--source-db"] == "shop"
    assert pairs["--database"] == "shop_copy" and pairs["--threads"] == "2"
    assert "--overwrite-tables" in argv


METADATA = """Started dump at: 2026-11-29 02:00:00
SHOW MASTER STATUS:
\tLog: mariadb-bin.000007
\tPos: 1234
\tGTID:0-1-99

SHOW SLAVE STATUS:
\tHost: primary
\tLog: primary-bin.000100
\tPos: 999
\tGTID:0-2-5

Finished dump at: 2026-11-29 02:00:03
"""


def test_metadata_completion_and_binlog_coordinates():
    assert mydumper.is_complete(METADATA)
    assert not mydumper.is_complete(METADATA.split("Finished")[0])
    # The server's own position, never the position it replicates from.
    assert mydumper.binlog_coordinates(METADATA) == {"file": "mariadb-bin.000007", "position": 1234,
                                                     "gtid": "0-1-99"}
    assert mydumper.binlog_coordinates("Started dump at: x\nFinished dump at: y\n") is None
    replica_only = "Started dump at: x\nSHOW SLAVE STATUS:\n\tLog: primary-bin.000100\n\tPos: 999\n"
    assert mydumper.binlog_coordinates(replica_only) is None


def test_fatal_lines_are_the_ones_that_lose_an_object():
    stderr = ("** Message: 02:00:00.000: Thread 1 dumping data for `shop`.`t`\n"
              "** (mydumper:42): CRITICAL **: 02:00:01.000: Error dumping table (shop.t) data: lost\n"
              "** (mydumper:42): WARNING **: Broken table detected, please review: shop.u\n"
              "  Could not read data from shop.v  \n"
              "** (myloader:7): WARNING **: some harmless warning\n")
    assert mydumper.fatal_lines(stderr) == [
        "** (mydumper:42): CRITICAL **: 02:00:01.000: Error dumping table (shop.t) data: lost",
        "** (mydumper:42): WARNING **: Broken table detected, please review: shop.u",
        "Could not read data from shop.v",
    ]
    assert mydumper.fatal_lines("") == []


@pytest.mark.parametrize("file_name, table", [
    ("shop.orders.sql", "orders"), ("shop.orders.00003.sql", "orders"), ("shop.orders-schema.sql", "orders"),
    ("shop.v-schema-view.sql", "v"), ("shop-schema-create.sql", None), ("metadata", None),
    ("other.orders.sql", None), ("shop.orders.sql.zst", None),
])
def test_table_of(file_name, table):
    assert mydumper.table_of(file_name, "shop") == table


class Inventory:
    tables = [{"name": "orders"}, {"name": "empty"}]
    views = ["v"]


def test_expected_schema_files_and_data_files_per_table():
    assert mydumper.expected_schema_files("shop", Inventory) == {
        "shop.orders-schema.sql", "shop.empty-schema.sql", "shop.v-schema-view.sql"}
    names = {"shop.orders-schema.sql", "shop.orders.00001.sql", "shop.orders.00002.sql", "shop.empty-schema.sql",
             "shop.small.sql", "shop.v-schema-view.sql", "metadata", "other.orders.sql"}
    assert mydumper.data_files_per_table(names, "shop") == {"orders": 2, "small": 1}


def test_inventory_gaps_name_each_missing_file():
    objects = {"tables": [{"name": "orders", "data_files": 3}, {"name": "empty"}, {"name": "lost"},
                          {"name": "holes"}, {"name": "rows"}],
               "views": ["v", "gone"]}
    names = {"shop.orders-schema.sql", "shop.orders.00001.sql", "shop.orders.00002.sql",
             "shop.empty-schema.sql", "shop.holes-schema.sql", "shop.holes.00001.sql", "shop.holes.00003.sql",
             "shop.rows-schema.sql", "shop.v-schema-view.sql"}
    gaps = mydumper.inventory_gaps("shop", objects, names, {"orders": 10, "empty": 0, "holes": 5, "rows": 7})
    assert gaps == [
        "table 'orders' has 2 data file(s), 3 were written while dumping",
        "table 'lost' has no schema file (shop.lost-schema.sql)",
        "table 'holes' lacks data file shop.holes.00002.sql (its other chunks are there)",
        "table 'rows' has 7 row(s) in the manifest but no data file",
        "view 'gone' has no schema file (shop.gone-schema-view.sql)",
    ]
    whole = names | {"shop.orders.00003.sql", "shop.holes.00002.sql", "shop.rows.sql", "shop.lost-schema.sql",
                     "shop.gone-schema-view.sql"}
    assert mydumper.inventory_gaps("shop", objects, whole, {"orders": 10, "holes": 5, "rows": 7}) == []
