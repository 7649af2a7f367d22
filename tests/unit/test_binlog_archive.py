"""The archiver's pure decisions: which files to archive, gaps and resets; and the replay's
GTID filter."""

from __future__ import annotations

import io

import pytest

from tenangdb.actions.binlog import plan
from tenangdb.actions.pitr import _GtidFilter, parse_position
from tenangdb.errors import InvalidInput
from tenangdb.repository.binlogs import ArchiveError, Record


def rec(name: str) -> Record:
    return Record(name=name, size=10, end_position=10, stored_name=name + ".zst", stored_size=1, stored_sha256="0",
                  plain_sha256="0", compression="zstd", archived_at="now")


def test_first_run_archives_every_closed_file():
    assert plan([], [("b.000001", 5), ("b.000002", 5), ("b.000003", 5)]) == (["b.000001", "b.000002"], None)


def test_only_files_after_the_last_archived_and_never_the_open_one():
    todo, gap = plan([rec("b.000001"), rec("b.000002")], [("b.000002", 5), ("b.000003", 5), ("b.000004", 5)])
    assert (todo, gap) == (["b.000003"], None)


def test_purged_before_archived_is_a_gap_and_the_rest_is_archived():
    todo, gap = plan([rec("b.000002")], [("b.000005", 5), ("b.000006", 5), ("b.000007", 5)])
    assert todo == ["b.000005", "b.000006"]
    assert gap.after == "b.000002" and gap.missing == ["b.000003", "b.000004"] and gap.resumed_at == "b.000005"


def test_a_reset_is_refused():
    with pytest.raises(ArchiveError, match="reset"):
        plan([rec("b.000009")], [("b.000001", 5), ("b.000002", 5)])


def test_gtid_filter_drops_only_the_gtid_session_lines_across_chunks():
    out = io.BytesIO()
    text = (b"# at 4\n/*M!100001 SET @@session.gtid_domain_id=0*//*!*/;\n/*M!100001 SET @@session.server_id=1*//*!*/;\n"
            b"/*M!100001 SET @@session.gtid_seq_no=7*//*!*/;\nSET TIMESTAMP=1/*!*/;\ninsert into t values (1)\n/*!*/;")
    f = _GtidFilter(out.write)
    for at in range(0, len(text), 5):
        f.write(text[at: at + 5])
    f.close()
    assert out.getvalue() == b"# at 4\nSET TIMESTAMP=1/*!*/;\ninsert into t values (1)\n/*!*/;"


def test_parse_position():
    assert parse_position("binlog.000042:1234") == ("binlog.000042", 1234)
    with pytest.raises(InvalidInput):
        parse_position("binlog.000042")


def test_window_starts_at_the_oldest_base_whose_chain_is_whole():
    from tenangdb.repository.binlogs import chain_from, window_starts
    records = [rec(f"binlog.{n:06d}") for n in (1, 2, 4, 5, 6)]  # 3 is a gap
    assert chain_from(records, "binlog.000004") and chain_from(records, "binlog.000006")
    assert not chain_from(records, "binlog.000002")  # crosses the gap
    assert not chain_from(records, "binlog.000007")  # not archived yet (the open file)
    assert not chain_from([], "binlog.000001")
    bases = [("a", 100.0, "binlog.000001"), ("a", 400.0, "binlog.000004"), ("a", 500.0, "binlog.000005"),
             ("b", 200.0, "binlog.000002"), ("c", 700.0, "binlog.000007")]
    assert window_starts(records, bases) == {"a": 400.0}


def test_a_delete_goes_record_first_so_an_interrupted_one_leaves_a_leftover_not_a_promise(tmp_path):
    from tenangdb.repository import binlogs as store
    kept, doomed = rec("b.000002"), rec("b.000001")
    for record in (doomed, kept):
        store.commit(tmp_path, record)
        (tmp_path / record.stored_name).write_bytes(b"x")
    # Killed between the two steps: the record is gone, its sealed file is what the archiver
    # removes as an interrupted archiving; the index never names a missing file.
    (tmp_path / "b.000001.json").unlink()
    assert [r.name for r in store.records(tmp_path)] == ["b.000002"]
    assert store.uncommitted(tmp_path, {"b.000002"}) == [tmp_path / "b.000001.zst"]
    store.commit(tmp_path, doomed)
    store.delete(tmp_path, doomed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.000002.json", "b.000002.zst"]
    assert store.sealed_of("b.000003.zst.age") == "b.000003" and store.sealed_of("b.000003") == "b.000003"
