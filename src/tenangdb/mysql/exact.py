"""Exact values in a streaming dump: FLOAT digits, ENUM error values, cycle counts.

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

import io
from itertools import repeat
import logging
import re
import secrets
import subprocess
from dataclasses import dataclass, field

from tenangdb.mysql.connection import client_options, quote_identifier as qi
from tenangdb.runner import spawn

log = logging.getLogger("tenangdb.exact")

MARKER = b"-- Dumping data for table `"
_ROW = re.compile(rb"\((?:'(?:[^'\\]|\\.)*'|[^'()])*\)")
_FIELD = re.compile(rb"(?:[^,']|'(?:[^'\\]|\\.)*')+")
# Lines that may sit between the data comment and the first INSERT, or after the last one
# before the table's data ends (mariadb-dump 10.11).
_PREAMBLE = (b"--", b"/*!40000 ALTER TABLE", b"LOCK TABLES", b"UNLOCK TABLES", b"set autocommit", b"commit;")


@dataclass
class TablePlan:
    table: str
    columns: list[str]  # as the dump selects them: every column that is not generated
    floats: list[int]  # positions of the FLOAT columns among `columns`
    int_key: int | None  # position of a single-column integer primary key, checked per row
    covering: bool  # a secondary index covers every dumped column
    secondary: list[str] = field(default_factory=list)
    # ENUM columns with a '' member: an error value (index 0) is printed '' like that member, and
    # is written as 0 instead, which a non-strict load stores as the error value. Sparse plans only.
    enums: list[int] = field(default_factory=list)

    @property
    def fixed(self) -> list[int]:
        return self.floats + self.enums

    @property
    def sparse(self) -> bool:
        """Only the rows that need a new value are read, matched by their integer key."""
        return self.int_key is not None and not self.covering

    def query(self, database: str) -> str:
        """Per FLOAT column the server gives the exact literal (NULL when the printed value
        already is exact); for dense reads also the value as printed, to check alignment."""
        target = f"{qi(database)}.{qi(self.table)}"
        floats = [qi(self.columns[i]) for i in self.floats]
        # The server prints a DOUBLE in full over the text protocol; `e0` is added here if needed.
        exact = [f"IF({_round_trips(c)}, NULL, CAST({c} AS DOUBLE))" for c in floats]
        if self.sparse:
            enums = [qi(self.columns[i]) for i in self.enums]
            exact += [f"IF({c} + 0 = 0, '0', NULL)" for c in enums]
            key = qi(self.columns[self.int_key])
            ignore = f" IGNORE INDEX ({', '.join(qi(i) for i in self.secondary)})" if self.secondary else ""
            # HAVING on the computed columns: each value is formatted and tested once, not again in a WHERE.
            names = [f"_x{i}" for i in range(len(exact))]
            picks = ", ".join(f"{e} AS {n}" for e, n in zip(exact, names))
            return (f"SELECT /*!40001 SQL_NO_CACHE */ {key}, {picks} FROM {target}{ignore} "
                    f"HAVING {' OR '.join(f'{n} IS NOT NULL' for n in names)}")
        printed = [f"CAST({c} AS CHAR)" for c in floats]
        if self.covering:
            # Reference every column the dump selects, so the server picks the same index scan.
            rest = [qi(c) for i, c in enumerate(self.columns) if i not in self.floats]
            return f"SELECT /*!40001 SQL_NO_CACHE */ {', '.join(printed + exact + rest)} FROM {target}"
        ignore = f" IGNORE INDEX ({', '.join(qi(i) for i in self.secondary)})" if self.secondary else ""
        return f"SELECT /*!40001 SQL_NO_CACHE */ {', '.join(printed + exact)} FROM {target}{ignore}"


def _round_trips(column: str) -> str:
    """The value as printed (6 digits) reads back as the same float; -0 prints as 0, so not it.
    NULL for NULL, which IF() takes as false: CAST(NULL AS DOUBLE) is NULL again."""
    return (f"({column} = CAST(CAST({column} AS CHAR) AS FLOAT) "
            f"AND NOT ({column} = 0 AND ATAN2({column}, -1) < 0))")


def plans(conn, database: str, tables: list[str], enums: dict[str, list[str]] | None = None) -> dict[str, TablePlan]:
    """How to read exact values for each of `tables` (those with FLOAT columns, or with ENUM
    columns that have a '' member: `enums`, table -> columns)."""
    out: dict[str, TablePlan] = {}
    enums = enums or {}
    with conn.cursor() as cur:
        for table in sorted(set(tables) | set(enums)):
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
            plan = TablePlan(table, columns, floats, int_key, covering, sorted(indexes))
            if plan.sparse:
                plan.enums = [columns.index(c) for c in enums.get(table, []) if c in columns]
            if plan.fixed:
                out[table] = plan
    return out


class Misaligned(Exception):
    pass


class ExactFloats:
    """A read view of our own (opened while commits are held) and the stream rewrite.

    The rows are read by the mariadb client in batch mode rather than PyMySQL: its C protocol
    code and a tab-separated line per row cost about a fifth of PyMySQL's per-row work, which
    is most of this feature's cost on a large FLOAT table."""

    def __init__(self, endpoint, database: str, plans_: dict[str, TablePlan], client: str) -> None:
        self.database = database
        self.plans = plans_
        # (table, why) of each rewrite that could not be done; why None: our view is not the dump's
        self.losses: list[tuple[str, str | None]] = []
        self.rewritten: dict[str, int] = {}  # table -> how many printed values were replaced
        self._token = secrets.token_hex(8).encode()
        self._carry = b""
        self._options = client_options(endpoint)
        login, fds = self._options.__enter__()
        try:
            self._child = spawn([client, *login, "--batch", "--skip-column-names", "--unbuffered",
                                 "--default-character-set=utf8mb4", "--max-allowed-packet=1G"],
                                stdin=subprocess.PIPE, pass_fds=fds)
        finally:
            self._options.__exit__(None, None, None)
        self._out = io.BufferedReader(self._child.stdout, 1 << 20)
        # A DDL waiting behind the dump's metadata lock would queue our SELECT behind it while the
        # dump waits for us to read its output: give up on that table within a minute instead.
        self._ask("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET SESSION lock_wait_timeout = 60; "
                  "/*M!100108 SET SESSION max_statement_time = 0 */")

    def _ask(self, statements: str) -> None:
        """Run statements and wait until the client has answered them all."""
        self._send(f"{statements}; SELECT '{self._token.decode()}'")
        for line in self._lines():
            pass  # statements above return nothing but the token

    def _send(self, statement: str) -> None:
        try:
            self._child.stdin.write(statement.encode() + b";\n")
            self._child.stdin.flush()
        except OSError:
            raise Misaligned(f"the mariadb client ended: {self._child.error_line()}") from None

    def _lines(self):
        """Result lines until our token; the client's own end (an error) is an error here."""
        while True:
            line = self._out.readline()
            if not line:
                raise Misaligned(f"the mariadb client ended: {self._child.error_line()}")
            line = line[:-1]
            if line == self._token:
                return
            yield line

    def begin(self) -> None:
        self._ask("START TRANSACTION WITH CONSISTENT SNAPSHOT")

    def close(self) -> None:
        try:
            self._child.stdin.close()
        except OSError:
            pass
        try:
            self._child.wait(timeout=10)
        except Exception:  # noqa: BLE001 - wait() killed it
            pass
        self._child.__exit__(None, None, None)

    def rows(self, plan: TablePlan):
        """Each row as a list of bytes (b"NULL" for NULL), in the dump's order."""
        self._send(plan.query(self.database))
        self._send(f"SELECT '{self._token.decode()}'")
        done = False
        try:
            while not done:
                block = self._out.read1(1 << 20)
                if not block:
                    raise Misaligned(f"the mariadb client ended: {self._child.error_line()}")
                lines = (self._carry + block).split(b"\n")
                self._carry = lines.pop()
                try:
                    lines = lines[:lines.index(self._token)]
                    done = True
                except ValueError:
                    pass
                yield from map(bytes.split, lines, repeat(b"\t"))
        finally:
            if not done:  # a rewrite given up: read to the end so the session stays usable
                end = b"\n" + self._token + b"\n"
                buffer = b"\n" + self._carry
                while end not in buffer:
                    more = self._out.read1(1 << 20)
                    if not more:
                        break
                    buffer = buffer[-len(end):] + more
            self._carry = b""


_SETVAL = re.compile(rb"^DO SETVAL\((`(?:[^`]|``)+`), (-?\d+), ([01])\);$", re.M)


class Rewriter:
    """Passes the dump through, rewriting the data lines of the planned tables, and giving
    the `DO SETVAL(seq, next, used)` line of each sequence that has cycled its cycle count
    (SETVAL's fourth argument, `round`: on MariaDB 10.11 the restored sequence then has the
    source's cycle_count and next value)."""

    def __init__(self, read, source: ExactFloats | None, aligned=lambda: False,
                 cycled: dict[str, int] | None = None) -> None:
        self._read = read
        self._source = source
        self._aligned = aligned
        self._cycled = {qi(name).encode(): count for name, count in (cycled or {}).items()}
        self.cycles_written: set[str] = set()
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
        if self._cycled and self._table is None and b"DO SETVAL(" in data:
            data = _SETVAL.sub(self._with_round, data)
        if self._table is None and (self._source is None or MARKER not in data):
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
                plan = self._source.plans.get(name) if self._source is not None else None
                if plan is not None:
                    if self._aligned():
                        self._table = _TableRewrite(plan, self._source)
                    else:
                        self._source.losses.append((name, None))  # the caller knows why
                continue
            start = self._table_lines(data, start, out)
        return b"".join(out)

    def _with_round(self, match: re.Match) -> bytes:
        count = self._cycled.get(match.group(1))
        if count is None:
            return match.group(0)
        self.cycles_written.add(match.group(1).decode()[1:-1].replace("``", "`"))
        return b"DO SETVAL(%s, %s, %s, %d);" % (match.group(1), match.group(2), match.group(3), count)

    def _table_lines(self, data: bytes, start: int, out: list) -> int:
        """Lines of the current table's data from `start`; returns where they end: the end of
        `data`, or the first line that is no longer the table's (read again outside it)."""
        table = self._table
        lines = data[start:].split(b"\n")
        lines.pop()  # data ends with a newline
        done = []
        row = table.rewrite_row_line
        position = start
        for line in lines:
            if line[:1] == b"(":  # one row per line (mariadb-dump 10.x): the hot path
                done.append(row(line))
            elif line.startswith(table.prefix):
                done.append(table.rewrite(line))
            elif line.startswith(b"/*!40000 ALTER TABLE") and b"ENABLE KEYS" in line:
                done.append(line)  # the last line of the table's data
                position += len(line) + 1
                table.finish(self._source)
                self._table = None
                break
            elif not line.strip() or line.startswith(_PREAMBLE):
                done.append(line)
            else:
                table.finish(self._source)
                self._table = None
                break
            position += len(line) + 1
        if done:
            out.append(b"\n".join(done) + b"\n")
        return position


class _TableRewrite:
    def __init__(self, plan: TablePlan, source: ExactFloats) -> None:
        self.plan = plan
        self.prefix = b"INSERT INTO " + qi(plan.table).encode() + b" "
        self.rows = source.rows(plan)
        self.count = 0  # rows of the dump seen
        self.changed = 0
        self.failed: str | None = None
        self.last = max(plan.fixed + ([plan.int_key] if plan.int_key is not None else []))
        self.fast_key = plan.int_key == 0
        self._float_positions = frozenset(plan.floats)
        self._row = self._sparse_row if plan.sparse else self._dense_row
        self.pending = self._next() if plan.sparse else None

    def _next(self):
        row = next(self.rows, None)
        if row is not None and self.plan.sparse:
            return (row[0], row[1:])
        return row

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
        return line[:head] + b",".join(out) + b";"

    def _split(self, inner: bytes) -> list[bytes]:
        """The fields up to the last one we touch, then the rest of the row as one piece.
        The first row of a table is split whole, to check it has one value per column."""
        last = self.last
        if self.count == 1:
            fields = inner.split(b",") if b"'" not in inner else _FIELD.findall(inner)
            if len(fields) != len(self.plan.columns):
                raise Misaligned(f"{len(fields)} values where {len(self.plan.columns)} columns were expected")
            return fields[:last + 1] + ([b",".join(fields[last + 1:])] if len(fields) > last + 1 else [])
        parts = inner.split(b",", last + 1)
        quote = inner.find(b"'")
        if quote >= 0 and quote < len(inner) - (len(parts[-1]) if len(parts) > last + 1 else 0):
            fields = _FIELD.findall(inner)
            parts = fields[:last + 1] + ([b",".join(fields[last + 1:])] if len(fields) > last + 1 else [])
        if len(parts) <= last:
            raise Misaligned(f"{len(parts)} values where {len(self.plan.columns)} columns were expected")
        return parts

    def _sparse_row(self, inner: bytes) -> bytes:
        self.count += 1
        pending = self.pending
        if pending is None or (self.fast_key and self.count > 1 and inner[:inner.find(b",")] != pending[0]):
            return inner  # a row that needs nothing
        fields = self._split(inner)
        if fields[self.plan.int_key] != pending[0]:
            return inner
        self._replace(fields, pending[1])
        self.pending = self._next()
        return b",".join(fields)

    def _dense_row(self, inner: bytes) -> bytes:
        self.count += 1
        fields = self._split(inner)
        ours = self._next()
        if ours is None:
            raise Misaligned("the dump has more rows than our snapshot")
        n = len(self.plan.floats)
        for position, printed in zip(self.plan.floats, ours[:n]):
            if fields[position] != printed:
                raise Misaligned(f"{fields[position]!r} in the dump, {printed!r} in our snapshot")
        self._replace(fields, ours[n:2 * n])
        return b",".join(fields)

    def _replace(self, fields: list[bytes], exact) -> None:
        for position, value in zip(self.plan.fixed, exact):
            if value != b"NULL":
                # A DOUBLE literal needs an exponent, or the server reads it as DECIMAL.
                fields[position] = value if b"e" in value or position not in self._float_positions else value + b"e0"
                self.changed += 1

    def finish(self, source: ExactFloats) -> None:
        if not self.failed:
            if self.plan.sparse and self.pending is not None:
                self.failed = f"the row with key {self.pending[0].decode()} was not found in the dump"
            elif not self.plan.sparse and self._next() is not None:
                self.failed = f"our snapshot has more rows than the dump's {self.count}"
        self.rows.close()
        if self.failed:
            source.losses.append((self.plan.table, f"the dump's rows and ours did not line up ({self.failed})"))
            log.warning("exact FLOAT values of table %s: %s", self.plan.table, self.failed)
        else:
            source.rewritten[self.plan.table] = self.changed
