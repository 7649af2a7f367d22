"""The binlog parser on real bytes captured from a MariaDB 10.11 server (--raw), whole and
in every chunking, and cut short."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenangdb.mysql import binlogfmt as fmt

DATA = Path(__file__).parent / "fixtures" / "binlog"
FIRST = (DATA / "first.000001").read_bytes()  # CREATE DATABASE src, CREATE TABLE src.t, INSERT, UPDATE
MIXED = (DATA / "mixed.000003").read_bytes()  # rows in src and other, a transaction touching both


def test_summary_of_a_closed_file():
    summary, events = fmt.parse(FIRST)
    assert summary.size == summary.end_position == len(FIRST)
    assert (summary.first_gtid, summary.last_gtid, summary.transactions) == ("0-1-1", "0-1-4", 4)
    assert summary.closed_by == "rotate" and summary.next_file == "binlog.000002"
    assert summary.first_time <= summary.last_time
    gtids = [(e.position, e.gtid) for e in events if e.type == fmt.GTID]
    assert gtids == [(325, "0-1-1"), (452, "0-1-2"), (619, "0-1-3"), (848, "0-1-4")]
    queries = [(e.db, e.query) for e in events if e.type == fmt.QUERY]
    assert queries == [("src", "create database src"), ("", "create table src.t(id int primary key, v varchar(20))")]


def test_gtid_list_is_the_state_the_file_starts_from():
    summary, _ = fmt.parse(MIXED)
    assert summary.gtid_list == ["0-1-4"]
    assert (summary.first_gtid, summary.last_gtid) == ("0-1-5", "0-1-9")


@pytest.mark.parametrize("chunk", [1, 7, 19, 20, 64, 333, 4096])
def test_any_chunking_gives_the_same_events(chunk):
    whole = fmt.parse(MIXED)
    events: list = []
    parser = fmt.Parser(events.append)
    for at in range(0, len(MIXED), chunk):
        parser.feed(MIXED[at: at + chunk])
    assert parser.close() == whole[0]
    assert [(e.position, e.end, e.type, e.gtid, e.query) for e in events] == \
        [(e.position, e.end, e.type, e.gtid, e.query) for e in whole[1]]


def test_events_chain_end_to_start():
    _, events = fmt.parse(MIXED)
    assert events[0].position == 4
    for before, after in zip(events, events[1:]):
        assert before.end == after.position


def test_a_file_cut_short_is_refused():
    with pytest.raises(fmt.BinlogFormatError, match="cut short"):
        fmt.parse(MIXED[:-10])
    with pytest.raises(fmt.BinlogFormatError, match="magic"):
        fmt.parse(b"\x00" * 40)


def test_big_skipped_events_are_not_held():
    # A row event of 5 MiB: fed in small chunks, the parser never holds more than a header's worth.
    fde_end = next(e.end for e in fmt.parse(FIRST)[1] if e.type == fmt.FORMAT_DESCRIPTION)
    size = 5 << 20
    import struct
    big = struct.pack("<IBIIIH", 1, 30, 1, size, fde_end + size, 0) + b"\x00" * (size - 19)
    parser = fmt.Parser()
    data = FIRST[:fde_end] + big
    peak = 0
    for at in range(0, len(data), 65536):
        parser.feed(data[at: at + 65536])
        peak = max(peak, len(parser._buffer))
    assert parser.close().end_position == len(data)
    assert peak < 65536 + 19


@pytest.mark.parametrize("statement, names", [
    ("create table src.t(id int)", {"src"}),
    ("ALTER TABLE `my db`.`t` ADD c INT", {"my db"}),
    ("insert into t values (1.5, 'a.b', \"x.y\")", set()),
    ("CREATE DATABASE IF NOT EXISTS shop", {"shop"}),
    ("drop schema `x`", {"x"}),
    ("update t set v = 2 /* other.t */", set()),
    ("create table t (d decimal(5,2) default 1.25)", set()),
    ("rename table a.t to b.t", {"a", "b"}),
])
def test_named_databases(statement, names):
    assert fmt.named_databases(statement) == names
