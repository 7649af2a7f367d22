"""Exact FLOAT values in a streaming dump.

The server prints a FLOAT with 6 significant digits over the text protocol, so
mariadb-dump writes 1234.5677490234375 as 1234.57 and the restore stores a different
float. The server knows the exact value: `CAST(f AS DOUBLE)` prints all of it, and that
literal stored back into the FLOAT column gives the identical float.

So while the dump streams through us, the data lines of each table with FLOAT columns are
rewritten: a connection of ours reads `CAST(f AS DOUBLE)` for the same rows, in the same
order, and each printed FLOAT is replaced by the exact literal. This is sound only because:

- our read view and the dump's saw the same committed data (opened while commits were held,
  mysql/alignment.py; without that the table is not rewritten and the loss is recorded);
- both read the table by the same plan: when a secondary index covers every column the dump
  selects, the server may scan that index, so we select the same columns; otherwise we
  ignore the secondary indexes and both scan the clustered index (tables without a key
  included: InnoDB's hidden row id gives them an order too);
- every row is checked as it goes: the field count, the printed value against ours rounded
  to 6 digits, and an integer primary key against ours; the rows must run out together. A
  mismatch stops the rewrite for the rest of that table and records the loss: a wrong value
  is never written silently, and the backup is still made.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from dataclasses import dataclass, field

import pymysql

from tenangdb.mysql.connection import connect, quote_identifier as qi

log = logging.getLogger("tenangdb.exactfloat")

MARKER = b"-- Dumping data for table `"
_ROW = re.compile(rb"\((?:'(?:[^'\\]|\\.)*'|[^'()])*\)")
_FIELD = re.compile(rb"(?:[^,']|'(?:[^'\\]|\\.)*')+")
# Lines that may sit between the data comment and the first INSERT, or after the last one
# before the table's data ends (mariadb-dump 10.11).
_PREAMBLE = (b"--", b"/*!40000 ALTER TABLE", b"LOCK TABLES", b"UNLOCK TABLES", b"set autocommit", b"commit;")
_FETCH = 2000
_FLOAT = struct.Struct("<f")


@dataclass
class TablePlan:
    table: str
    columns: list[str]  # as the dump selects them: every column that is not generated
    floats: list[int]  # positions of the FLOAT columns among `columns`
    int_key: int | None  # position of a single-column integer primary key, checked per row
    covering: bool  # a secondary index covers every dumped column
    secondary: list[str] = field(default_factory=list)

    def query(self, database: str) -> str:
        target = f"{qi(database)}.{qi(self.table)}"
        if self.covering:
            picks = [f"CAST({qi(c)} AS DOUBLE)" if i in self.floats else qi(c) for i, c in enumerate(self.columns)]
            return f"SELECT /*!40001 SQL_NO_CACHE */ {', '.join(picks)} FROM {target}"
        picks = [f"CAST({qi(self.columns[i])} AS DOUBLE)" for i in self.floats]
        if self.int_key is not None:
            picks.append(qi(self.columns[self.int_key]))
        ignore = f" IGNORE INDEX ({', '.join(qi(i) for i in self.secondary)})" if self.secondary else ""
        return f"SELECT /*!40001 SQL_NO_CACHE */ {', '.join(picks)} FROM {target}{ignore}"


def plans(conn, database: str, tables: list[str]) -> dict[str, TablePlan]:
    """How to read exact values for each of `tables` (those with FLOAT columns)."""
    out: dict[str, TablePlan] = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute("SELECT COLUMN_NAME, DATA_TYPE, IS_GENERATED, COLUMN_KEY FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (database, table))
            rows = [r for r in cur.fetchall() if r[2] == "NEVER"]
            columns = [r[0] for r in rows]
            floats = [i for i, r in enumerate(rows) if r[1] == "float"]
            cur.execute("SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s "
                        "AND TABLE_NAME=%s ORDER BY INDEX_NAME, SEQ_IN_INDEX", (database, table))
            indexes: dict[str, list[str]] = {}
            for index, column in cur.fetchall():
                indexes.setdefault(index, []).append(column)
            primary = indexes.pop("PRIMARY", [])
            int_key = None
            if len(primary) == 1 and primary[0] in columns:
                position = columns.index(primary[0])
                if rows[position][1] in ("tinyint", "smallint", "mediumint", "int", "bigint"):
                    int_key = position
            # InnoDB secondary indexes carry the primary key's columns too.
            covering = any(set(columns) <= set(cols) | set(primary) for cols in indexes.values())
            out[table] = TablePlan(table, columns, floats, int_key, covering, sorted(indexes))
    return out


def literal(value: float) -> bytes:
    """A DOUBLE literal of exactly this value (a plain decimal would be read as DECIMAL)."""
    if value == 0 and math.copysign(1.0, value) < 0:
        return b"-0e0"
    text = repr(value)
    return (text if "e" in text else text + "e0").encode()


def _printed(value: float) -> float:
    """What the server prints for a FLOAT, as a number: 6 significant digits."""
    return float("%.6g" % value)


class Misaligned(Exception):
    pass


class ExactFloats:
    """A read view of our own (opened while commits are held) and the stream rewrite."""

    def __init__(self, endpoint, database: str, plans_: dict[str, TablePlan]) -> None:
        self.database = database
        self.plans = plans_
        self.conn = connect(endpoint)
        # (table, why) of each rewrite that could not be done; why None: our view is not the dump's
        self.losses: list[tuple[str, str | None]] = []
        self.rewritten: dict[str, int] = {}  # table -> rows rewritten
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            try:
                cur.execute("SET SESSION max_statement_time = 0")
            except Exception:  # noqa: BLE001 - MySQL has no such variable
                pass

    def begin(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass

    def reader(self, read, aligned) -> "Rewriter":
        """Wrap the dump's `read`; `aligned()` says whether our view is the dump's."""
        return Rewriter(read, self, aligned)

    def rows(self, plan: TablePlan):
        cur = self.conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(plan.query(self.database))
            while batch := cur.fetchmany(_FETCH):
                yield from batch
        finally:
            cur.close()


class Rewriter:
    """Passes the dump through, rewriting the data lines of the planned tables."""

    def __init__(self, read, source: ExactFloats, aligned) -> None:
        self._read = read
        self._source = source
        self._aligned = aligned
        self._pending = b""  # input not yet emitted (at most one partial line)
        self._eof = False
        self._table: _TableRewrite | None = None

    def read(self, n: int = -1) -> bytes:  # noqa: ARG002 - returns what one input chunk gives
        while True:
            if self._eof:
                out, self._pending = self._pending, b""
                if self._table is not None:
                    self._table.finish(self._source)
                    self._table = None
                return out
            chunk = self._read(n)
            if not chunk:
                self._eof = True
                continue
            data = self._pending + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                self._pending = data
                continue
            self._pending = data[cut:]
            out = self._lines(data[:cut])
            if out:
                return out

    def _lines(self, data: bytes) -> bytes:
        if self._table is None and MARKER not in data:
            return data  # the common case: no table of ours starts here
        out = []
        start = 0
        while start < len(data):
            if self._table is None:
                found = data.find(MARKER, start)
                if found < 0 or (found and data[found - 1:found] != b"\n"):
                    if found < 0:
                        out.append(data[start:])
                        break
                    end = data.index(b"\n", found) + 1
                    out.append(data[start:end])
                    start = end
                    continue
                end = data.index(b"\n", found) + 1
                out.append(data[start:end])
                start = end
                line = data[found:end]
                name = line[len(MARKER):line.rfind(b"`")].replace(b"``", b"`").decode("utf-8", "replace")
                plan = self._source.plans.get(name)
                if plan is not None:
                    if self._aligned():
                        self._table = _TableRewrite(plan, self._source)
                    else:
                        self._source.losses.append((name, None))  # the caller knows why
                continue
            end = data.index(b"\n", start) + 1
            line = data[start:end]
            if line.startswith(b"("):  # one row per line (mariadb-dump 10.x)
                out.append(self._table.rewrite_row_line(line))
            elif line.startswith(self._table.prefix):
                out.append(self._table.rewrite(line))
            elif b"ENABLE KEYS" in line and line.startswith(b"/*!40000 ALTER TABLE"):
                out.append(line)  # the last line of the table's data
                self._table.finish(self._source)
                self._table = None
            elif line.strip() == b"" or line.startswith(_PREAMBLE):
                out.append(line)
            else:
                self._table.finish(self._source)
                self._table = None
                continue  # this line is read again outside the table
            start = end
        return b"".join(out)


class _TableRewrite:
    def __init__(self, plan: TablePlan, source: ExactFloats) -> None:
        self.plan = plan
        self.prefix = b"INSERT INTO " + qi(plan.table).encode() + b" "
        self.rows = source.rows(plan)
        self.count = 0
        self.failed: str | None = None

    def rewrite_row_line(self, line: bytes) -> bytes:
        if self.failed:
            return line
        close = line.rindex(b")")
        try:
            return b"(" + self._row(line[1:close]) + line[close:]
        except Misaligned as exc:
            self.failed = f"row {self.count}: {exc}"
            return line

    def rewrite(self, line: bytes) -> bytes:
        if self.failed:
            return line
        if line.rstrip().endswith(b"VALUES"):
            return line  # its rows follow, one per line
        head = line.index(b"VALUES (") + 7
        if line[len(self.prefix):head].strip().startswith(b"("):
            self.failed = "the dump names its columns, which this rewrite does not read"
            return line
        out = []
        try:
            for match in _ROW.finditer(line, head):
                out.append(b"(" + self._row(match.group(0)[1:-1]) + b")")
        except Misaligned as exc:
            self.failed = f"row {self.count}: {exc}"
            return line
        return line[:head] + b",".join(out) + b";\n"

    def _row(self, inner: bytes) -> bytes:
        fields = inner.split(b",") if b"'" not in inner else _FIELD.findall(inner)
        plan = self.plan
        if len(fields) != len(plan.columns):
            raise Misaligned(f"{len(fields)} values where {len(plan.columns)} columns were expected")
        ours = next(self.rows, None)
        if ours is None:
            raise Misaligned("the dump has more rows than our snapshot")
        self.count += 1
        if plan.covering:
            exact = [ours[i] for i in plan.floats]
            key = ours[plan.int_key] if plan.int_key is not None else None
        else:
            exact = ours[:len(plan.floats)]
            key = ours[-1] if plan.int_key is not None else None
        if key is not None and fields[plan.int_key] != str(key).encode():
            raise Misaligned(f"key {fields[plan.int_key]!r} in the dump, {key} in our snapshot")
        for position, value in zip(plan.floats, exact):
            printed = fields[position]
            if value is None:
                if printed != b"NULL":
                    raise Misaligned(f"{printed!r} in the dump, NULL in our snapshot")
                continue
            if printed == b"NULL" or float(printed) != _printed(value):
                raise Misaligned(f"{printed!r} in the dump, {value!r} in our snapshot")
            if _FLOAT.pack(float(printed)) != _FLOAT.pack(value):  # compares -0 and 0 too
                fields[position] = literal(value)
        return b",".join(fields)

    def finish(self, source: ExactFloats) -> None:
        if not self.failed and next(self.rows, None) is not None:
            self.failed = f"our snapshot has more rows than the dump's {self.count}"
        self.rows.close()
        if self.failed:
            source.losses.append((self.plan.table, f"the dump's rows and ours did not line up ({self.failed})"))
            log.warning("exact FLOAT values of table %s: %s", self.plan.table, self.failed)
        else:
            source.rewritten[self.plan.table] = self.count
