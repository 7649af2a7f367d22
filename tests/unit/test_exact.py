"""The FLOAT rewrite of a dump stream, on synthetic dumps: exact literals, lines of other
tables untouched, and a misaligned row stops the rewrite and is reported, never written."""

from __future__ import annotations

import pytest

from tenangdb.mysql.exact import Rewriter, TablePlan


class Source:
    """What the rewriter asks of ExactFloats: the plans, and the rows in the dump's order."""

    def __init__(self, plans, rows):
        self.plans = plans
        self._rows = rows
        self.losses = []
        self.rewritten = {}

    def rows(self, plan):
        yield from self._rows[plan.table]


# Sparse: rows come as (key, exact) for the rows that need a new value, matched by key.
PLAN = TablePlan("t", ["id", "note", "f"], floats=[2], int_key=0, covering=False)
# Dense (no integer key): every row as (printed, exact), checked against the dump's print.
KEYLESS = TablePlan("t", ["id", "note", "f"], floats=[2], int_key=None, covering=False)
EXACT = b"1234.5677490234375"
DUMP = (b"-- MariaDB dump\n"
        b"--\n-- Dumping data for table `other`\n--\n\n"
        b"INSERT INTO `other` VALUES\n(1,1234.57);\n"
        b"--\n-- Dumping data for table `t`\n--\n\n"
        b"/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n"
        b"INSERT INTO `t` VALUES\n"
        b"(1,'a, (b)',1234.57),\n"
        b"(2,'it\\'s',1.5),\n"
        b"(3,NULL,NULL);\n"
        b"/*!40000 ALTER TABLE `t` ENABLE KEYS */;\n"
        b"INSERT INTO `t` VALUES (9,'later lines are not table data',1234.57);\n"
        b"-- Dump completed\n")


def run(source, dump=DUMP, piece=7, aligned=True) -> bytes:
    chunks = [dump[i:i + piece] for i in range(0, len(dump), piece)] + [b""]
    feed = iter(chunks)
    rewriter = Rewriter(lambda n=-1: next(feed), source, lambda: aligned)
    out = []
    while chunk := rewriter.read(1 << 20):
        out.append(chunk)
    return b"".join(out)


def test_exact_values_replace_the_rounded_ones_and_nothing_else():
    source = Source({"t": PLAN}, {"t": [(b"1", EXACT)]})
    out = run(source)
    assert b"(1,'a, (b)'," + EXACT + b"e0),\n" in out
    assert b"(2,'it\\'s',1.5),\n" in out  # round-trips as printed: left alone
    assert b"(3,NULL,NULL);\n" in out
    assert b"INSERT INTO `other` VALUES\n(1,1234.57);\n" in out
    assert b"(9,'later lines are not table data',1234.57);" in out
    assert out.replace(EXACT + b"e0", b"1234.57") == DUMP
    assert source.rewritten == {"t": 1} and source.losses == []


def test_without_a_key_every_row_is_checked_and_rewritten_in_order():
    source = Source({"t": KEYLESS}, {"t": [(b"1234.57", EXACT), (b"1.5", b"NULL"), (b"NULL", b"NULL")]})
    out = run(source)
    assert out == DUMP.replace(b"'a, (b)',1234.57", b"'a, (b)'," + EXACT + b"e0")
    assert source.rewritten == {"t": 1}


@pytest.mark.parametrize("plan, rows, why", [
    (PLAN, [(b"4", EXACT)], "the row with key 4 was not found in the dump"),
    (PLAN, [(b"2", EXACT), (b"1", EXACT)], "the row with key 1 was not found"),
    (KEYLESS, [(b"1.5", b"NULL"), (b"1234.57", EXACT), (b"NULL", b"NULL")], "b'1234.57' in the dump, b'1.5' in our snapshot"),
    (KEYLESS, [(b"1234.57", EXACT), (b"1.5", b"NULL")], "the dump has more rows than our snapshot"),
    (KEYLESS, [(b"1234.57", EXACT), (b"1.5", b"NULL"), (b"NULL", b"NULL"), (b"2", b"NULL")], "our snapshot has more rows"),
    (TablePlan("t", ["id", "f"], floats=[1], int_key=0, covering=False), [(b"1", EXACT)],
     "3 values where 2 columns were expected"),
])
def test_a_row_that_does_not_line_up_is_reported(plan, rows, why):
    source = Source({"t": plan}, {"t": rows})
    out = run(source)
    [(table, reason)] = source.losses
    assert table == "t" and why in reason, reason
    assert source.rewritten == {}
    if plan is KEYLESS and "more rows" not in why:
        assert out == DUMP  # nothing written from the first bad row on


def test_without_the_dumps_snapshot_nothing_is_rewritten():
    source = Source({"t": PLAN}, {"t": []})
    assert run(source, aligned=False) == DUMP
    assert source.losses == [("t", None)]


def test_single_line_inserts_are_rewritten_too():
    dump = (b"-- Dumping data for table `t`\n--\n\n"
            b"INSERT INTO `t` VALUES (1,'x),(y',1234.57),(2,'',1.5);\n-- Dump completed\n")
    source = Source({"t": PLAN}, {"t": [(b"1", EXACT)]})
    out = run(source, dump, piece=5)
    assert out == dump.replace(b"1234.57", EXACT + b"e0")


def test_a_cycled_sequence_gets_its_cycle_count_and_no_other_line_changes():
    dump = (b"CREATE SEQUENCE `s` start with 1 minvalue 1 maxvalue 3 increment by 1 nocache cycle ENGINE=InnoDB;\n"
            b"DO SETVAL(`s`, 2, 0);\n"
            b"DO SETVAL(`we``ird`, 1001, 0);\n"
            b"INSERT INTO `t` VALUES\n(1,'DO SETVAL(`s`, 2, 0);');\n")
    chunks = iter([dump[:30], dump[30:], b""])
    rewriter = Rewriter(lambda n=-1: next(chunks), None, cycled={"s": 3, "never dumped": 1})
    out = b""
    while chunk := rewriter.read():
        out += chunk
    assert out == dump.replace(b"DO SETVAL(`s`, 2, 0);\n", b"DO SETVAL(`s`, 2, 0, 3);\n", 1)
    assert rewriter.cycles_written == {"s"}
