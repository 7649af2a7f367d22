"""The streaming engine's pure parts: the dump and load command lines, the completion marker,
the binlog coordinates read from a dump's head, and the database renamer."""

from __future__ import annotations

import random

import pytest

from tenangdb.mysql.mysqldump import (MAX_PACKET, DatabaseRenamer, binlog_coordinates, dump_argv, is_complete,
                                      restore_argv)

LOGIN = ["--defaults-extra-file=/dev/fd/5"]


def test_dump_argv_takes_one_snapshot_and_everything_in_the_database():
    argv = dump_argv("mariadb-dump", LOGIN, "shop", binlog=False, flavour="mariadb", dump_history=False)
    assert argv[:2] == ["mariadb-dump", *LOGIN]
    assert argv[-2:] == ["--", "shop"]  # the name after `--`: never read as an option
    for option in ("--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                   "--default-character-set=utf8mb4", f"--max-allowed-packet={MAX_PACKET}",
                   "--skip-dump-date", "--comments", "--skip-add-locks"):
        assert option in argv
    assert not {"--master-data=2", "--gtid", "--dump-history", "--skip-events"} & set(argv)


@pytest.mark.parametrize("flavour, expected", [("mariadb", ["--master-data=2", "--gtid"]),
                                               ("mysql", ["--master-data=2"])])
def test_dump_argv_asks_for_the_binlog_position_only_when_readable(flavour, expected):
    argv = dump_argv("mysqldump", LOGIN, "shop", binlog=True, flavour=flavour, dump_history=False)
    assert [a for a in argv if a in ("--master-data=2", "--gtid")] == expected


def test_dump_argv_history_and_skipped_events():
    argv = dump_argv("mariadb-dump", LOGIN, "--help", binlog=False, flavour="mariadb", dump_history=True,
                     events=False)
    assert "--dump-history" in argv and "--skip-events" in argv and "--events" not in argv
    assert argv[-2:] == ["--", "--help"]
    assert argv.index("--dump-history") < argv.index("--")


def test_restore_argv_sends_the_bytes_as_they_are_into_one_database():
    argv = restore_argv("mariadb", LOGIN, "shop copy")
    assert argv[:2] == ["mariadb", *LOGIN]
    assert {"--binary-mode", "--batch", f"--max-allowed-packet={MAX_PACKET}", "--database=shop copy"} <= set(argv)


def test_completion_marker_and_binlog():
    assert is_complete(b"...\n-- Dump completed\n")
    assert not is_complete(b"INSERT INTO t VALUES (1,")
    head = (b"-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=344;\n"
            b"-- SET GLOBAL gtid_slave_pos='0-1-2';\n")
    assert binlog_coordinates(head) == {"file": "binlog.000002", "position": 344, "gtid": "0-1-2"}


def test_the_completion_marker_counts_only_at_the_end():
    assert is_complete(b"x" * 10_000 + b"\n-- Dump completed on 2026-01-01\n")
    assert not is_complete(b"-- Dump completed\n" + b"INSERT INTO t VALUES (1);\n" * 100)


def test_binlog_coordinates_without_gtid_and_without_any():
    head = b"-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000010', MASTER_LOG_POS=4;\n"
    assert binlog_coordinates(head) == {"file": "mysql-bin.000010", "position": 4}
    assert binlog_coordinates(b"-- MariaDB dump 10.19\n") is None


def test_renamer_rewrites_only_statement_starts():
    dump = (b"/*!50003 ALTER DATABASE `shop` CHARACTER SET latin1 */ ;\n"
            b"INSERT INTO t VALUES ('\\nALTER DATABASE `shop` in data');\n"
            b"/*!50003 ALTER DATABASE `shop` CHARACTER SET utf8mb4 */ ;\n")
    for _ in range(50):
        out = bytearray()
        renamer = DatabaseRenamer("shop", "shop`2", out.extend)
        pos = 0
        while pos < len(dump):
            step = random.randint(1, 17)
            renamer.write(dump[pos:pos + step])
            pos += step
        renamer.close()
        assert bytes(out) == dump.replace(b"ATABASE `shop` CHAR", b"ATABASE `shop``2` CHAR")
        assert renamer.rewrites == 2


def test_renamer_rewrites_sequence_defaults_in_column_definitions_only():
    dump = (b"CREATE TABLE `t` (\n"
            b"  `id` bigint(20) NOT NULL DEFAULT nextval(`shop`.`seq`),\n"
            b"  `note` varchar(50) DEFAULT 'nextval(`shop`.`seq`)',\n"
            b"  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"
            b"INSERT INTO `t` VALUES (1,'DEFAULT nextval(`shop`.`seq`)');\n") * 3
    for size in (1, 7, 64, 1 << 20):
        out = bytearray()
        renamer = DatabaseRenamer("shop", "copy", out.extend)
        renamer.BATCH = size
        for i in range(0, len(dump), size):
            renamer.write(dump[i:i + size])
        renamer.close()
        expected = dump.replace(b"NOT NULL DEFAULT nextval(`shop`.", b"NOT NULL DEFAULT nextval(`copy`.")
        assert bytes(out) == expected
        assert renamer.rewrites == 3


def test_the_renamer_passes_everything_through_when_the_name_is_the_same():
    out = bytearray()
    renamer = DatabaseRenamer("shop", "shop", out.extend)
    renamer.write(b"/*!50003 ALTER DATABASE `shop` CHARACTER SET latin1 */ ;\n")
    renamer.close()
    assert bytes(out) == b"/*!50003 ALTER DATABASE `shop` CHARACTER SET latin1 */ ;\n" and renamer.rewrites == 0
