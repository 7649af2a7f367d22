"""The section filter of `restore --tables` on a real mariadb-dump output (fixtures/
mariadb-dump-shop.sql: table `customer` with trigger customer_bi, view customer_names over it,
table `other`, procedure count_customers), and the choice of objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenangdb.errors import InvalidInput
from tenangdb.mysql import sections

DUMP = (Path(__file__).parent / "fixtures" / "mariadb-dump-shop.sql").read_bytes()


def filtered(names: set[str], data: bytes = DUMP, piece: int = 1 << 16) -> tuple[bytes, sections.SectionFilter]:
    out: list[bytes] = []
    chosen = sections.SectionFilter(names, out.append)
    for at in range(0, len(data), piece):
        chosen.write(data[at:at + piece])
    chosen.close()
    return b"".join(out), chosen


def statements(sql: bytes) -> list[bytes]:
    """The lines that are SQL (not comments, not blank)."""
    return [line for line in sql.splitlines() if line.strip() and not line.startswith(b"--")]


def test_one_table_keeps_its_sections_its_trigger_and_the_session_settings():
    out, chosen = filtered({"customer"})
    sql = statements(out)
    assert b"CREATE TABLE `customer` (" in sql and b"(1,'Ana','first');" in sql
    assert any(b"TRIGGER customer_bi BEFORE INSERT ON customer" in line for line in sql)
    # Nothing of the other table, the view or the procedure.
    assert not any(word in out for word in (b"`other`", b"customer_names", b"count_customers"))
    # The header's settings and the footer's restoring of them, in full.
    header = DUMP[:DUMP.index(b"\n--\n-- Table structure")]
    footer = DUMP[DUMP.index(b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;"):]
    assert out.startswith(header) and out.endswith(footer)
    assert b"FOREIGN_KEY_CHECKS=0" in header and b"-- Dump completed" in footer
    assert chosen.found == {"customer"} and chosen.missing == []


@pytest.mark.parametrize("piece", [1, 2, 7, 100, 4095, 4097, len(DUMP)])
def test_the_output_does_not_depend_on_how_the_stream_is_cut(piece):
    assert filtered({"customer", "customer_names"}, piece=piece)[0] == filtered({"customer", "customer_names"})[0]


def test_a_view_comes_with_its_stand_in_and_its_definition_only():
    out, chosen = filtered({"customer_names"})
    assert out.count(b"CREATE VIEW `customer_names` AS SELECT") == 1  # the stand-in
    assert b"VIEW `customer_names` AS select `customer`.`name`" in out  # the definition
    assert b"CREATE TABLE" not in out and b"TRIGGER" not in out
    assert [(kind, name) for _, kind, name in chosen.sections] == [("view", "customer_names")] * 2


def test_everything_chosen_is_the_dump_less_its_routines():
    out, _ = filtered({"customer", "customer_names", "other"})
    assert b"count_customers" not in out
    routines = DUMP[DUMP.index(b"\n--\n-- Dumping events"):DUMP.index(b"\n--\n-- Final view structure") + 1]
    assert out == DUMP.replace(routines, b"\n")


def test_a_name_without_a_section_is_reported_missing():
    _, chosen = filtered({"customer", "gone"})
    assert chosen.missing == ["gone"]


def test_a_section_comment_inside_a_routine_body_starts_no_section():
    body = (b"--\n-- Dumping routines for database 'shop'\n--\nDELIMITER ;;\nCREATE PROCEDURE p()\nBEGIN\n"
            b"--\n-- Table structure for table `customer`\n--\nSELECT 1;\nEND ;;\nDELIMITER ;\n")
    data = DUMP.replace(b"--\n-- Dumping routines for database 'shop'\n--\n", body)
    out, chosen = filtered({"customer"}, data)
    assert b"CREATE PROCEDURE p()" not in out and b"SELECT 1;" not in out
    assert out == filtered({"customer"})[0]


def test_a_failing_line_is_told_as_the_object_it_was_loading():
    out, chosen = filtered({"customer", "customer_names"})
    lines = out.split(b"\n")
    view_line = next(n for n, line in enumerate(lines, 1) if line.startswith(b"/*!50001 VIEW `customer_names`"))
    table_line = next(n for n, line in enumerate(lines, 1) if line.startswith(b"INSERT INTO `customer`"))
    said = sections.failed_section(chosen, f"ERROR 1146 (42S02) at line {view_line}: Table 'x.customer' doesn't exist")
    assert said.startswith("while creating view 'customer_names'")
    assert sections.failed_section(chosen, f"ERROR 1062 at line {table_line}: dup") == "while loading table 'customer'"
    assert sections.failed_section(chosen, "ERROR 2013: lost connection") is None
    assert sections.failed_section(chosen, "ERROR 1 at line 3: in the header") is None


@pytest.mark.parametrize("comment, opened", [
    ("Table structure for table `we``ird \"name\"`", ("table", 'we`ird "name"')),
    ("Dumping data for table `a.b/c\\d`", ("table", "a.b/c\\d")),
    ("Sequence structure for `seq_plain`", ("sequence", "seq_plain")),
    ("Temporary table structure for view `select view`", ("view", "select view")),
    ("Final view structure for view `v`", ("view", "v")),
    ("Dumping routines for database 'shop'", ("routines", None)),
    ("Dumping events for database 'shop'", ("events", None)),
    ("Position to start replication or point-in-time recovery from", None),
])
def test_section_comments_are_read_as_the_dump_tool_quotes_names(comment, opened):
    assert sections.section_of(comment) == opened


OBJECTS = {
    "tables": [{"name": "customer"}, {"name": "other"}], "views": ["customer_names"], "sequences": ["seq"],
    "routines": [{"name": "count_customers", "type": "procedure"}],
    "triggers": [{"name": "customer_bi", "table": "customer"}, {"name": "other_ai", "table": "other"}],
    "events": ["nightly"],
}


def test_the_chosen_tables_bring_their_triggers_and_what_is_left_is_named():
    chosen = sections.select(OBJECTS, ["customer", "seq", "customer"])
    assert (chosen.tables, chosen.views, chosen.sequences, chosen.triggers) == (["customer"], [], ["seq"],
                                                                                ["customer_bi"])
    assert chosen.names == {"customer", "seq"}
    assert chosen.left_out() == ("routines (procedure count_customers); events (nightly); "
                                 "triggers of other tables (other_ai)")
    assert chosen.includes("trigger customer_bi") and not chosen.includes("trigger other_ai")
    assert chosen.objects()["triggers"] == [{"name": "customer_bi"}] and chosen.objects()["routines"] == []


def test_names_the_backup_does_not_hold_are_refused_by_name():
    with pytest.raises(InvalidInput, match=r"no table, view or sequence named 'nope', 'count_customers'"):
        sections.select(OBJECTS, ["customer", "nope", "count_customers"])
