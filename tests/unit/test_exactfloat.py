"""The FLOAT rewrite of a dump stream, on synthetic dumps: exact literals, lines of other
tables untouched, and a misaligned row stops the rewrite and is reported, never written."""

from __future__ import annotations

import struct

import pytest

from tenangdb.mysql.exactfloat import Rewriter, TablePlan, literal

F = struct.Struct("<f")


def as_float32(x: float) -> float:
    return F.unpack(F.pack(x))[0]


@pytest.mark.parametrize("value", [as_float32(v) for v in (1234.5678, 3.1415927, 16777217.0, 3.4028234663852886e38,
                                                           1.1754943508222875e-38, 1.401298464324817e-45, -0.0,
                                                           0.1, 123456789.0)])
def test_literal_is_a_double_literal_of_exactly_the_value(value):
    text = literal(value)
    assert b"e" in text  # a DOUBLE literal: never read as DECIMAL
    assert F.pack(float(text)) == F.pack(value)


class Source:
    """What the rewriter asks of ExactFloats: the plans, and the rows in the dump's order."""

    def __init__(self, plans, rows):
        self.plans = plans
        self._rows = rows
        self.losses = []
        self.rewritten = {}

    def rows(self, plan):
        yield from self._rows[plan.table]


PLAN = TablePlan("t", ["id", "note", "f"], floats=[2], int_key=0, covering=False)
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
    exact = as_float32(1234.5678)
    source = Source({"t": PLAN}, {"t": [(exact, 1), (1.5, 2), (None, 3)]})
    out = run(source)
    assert b"(1,'a, (b)'," + literal(exact) + b"),\n" in out
    assert b"(2,'it\\'s',1.5),\n" in out  # round-trips as printed: left alone
    assert b"(3,NULL,NULL);\n" in out
    assert b"INSERT INTO `other` VALUES\n(1,1234.57);\n" in out
    assert b"(9,'later lines are not table data',1234.57);" in out
    assert out.replace(literal(exact), b"1234.57") == DUMP
    assert source.rewritten == {"t": 3} and source.losses == []


@pytest.mark.parametrize("rows, why", [
    ([(1.5, 2), (as_float32(1234.5678), 1), (None, 3)], "key b'1' in the dump, 2 in our snapshot"),
    ([(as_float32(1234.5678), 1), (1.5, 2)], "the dump has more rows than our snapshot"),
    ([(as_float32(1234.5678), 1), (1.5, 2), (None, 3), (2.5, 4)], "our snapshot has more rows"),
    ([(as_float32(1234.5), 1), (1.5, 2), (None, 3)], "in the dump"),
])
def test_a_row_that_does_not_line_up_is_reported_and_left_as_printed(rows, why):
    source = Source({"t": PLAN}, {"t": rows})
    out = run(source)
    [(table, reason)] = source.losses
    assert table == "t" and why in reason
    assert source.rewritten == {}
    if "more rows than our snapshot" not in why and "our snapshot has more" not in why:
        assert out == DUMP  # nothing rewritten from the first bad row on


def test_without_the_dumps_snapshot_nothing_is_rewritten():
    source = Source({"t": PLAN}, {"t": []})
    assert run(source, aligned=False) == DUMP
    assert source.losses == [("t", None)]


def test_single_line_inserts_are_rewritten_too():
    dump = (b"-- Dumping data for table `t`\n--\n\n"
            b"INSERT INTO `t` VALUES (1,'x),(y',1234.57),(2,'',1.5);\n-- Dump completed\n")
    exact = as_float32(1234.5678)
    source = Source({"t": PLAN}, {"t": [(exact, 1), (1.5, 2)]})
    out = run(source, dump, piece=5)
    assert out == dump.replace(b"1234.57", literal(exact))
