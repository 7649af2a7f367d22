"""Exact row counts and content checksums of tables, and a snapshot that ties them to a dump.

Two checksums (docs/verification.md explains the choice):

`checksum-table` (the default): the server's own `CHECKSUM TABLE … EXTENDED`: a CRC32 of
every row (null bits and every column's stored bytes, invisible and generated columns
included) summed over the rows, 32 bits, order-independent, with no client-side work. It
reads inside our consistent snapshot (InnoDB). Its value depends on how the server lays out
a row, so it is only compared when the restoring server runs the same version.

`md5-sum-v1` (portable, about ten times the cost): each row serialised canonically — for
every column in ordinal order `N` for NULL or `<byte length>:<bytes>` of `CAST(col AS
BINARY)`, with the session time zone at UTC — hashed with MD5, and the two 64-bit halves
summed exactly over all rows: 128 bits, order-independent, and unlike XOR a duplicated row
does not cancel out.

The same query runs at backup time and on the restored tables, so the two can be compared.
"""

from __future__ import annotations

import logging
import re
import threading

from tenangdb.errors import Interrupted, interrupt_requested
from tenangdb.mysql.connection import connect, quote_identifier
from tenangdb.mysql.inventory import TRANSACTIONAL, binlog_file_name, binlog_position

log = logging.getLogger("tenangdb.checksum")

CHECKSUM_TABLE = "checksum-table"
MD5_SUM = "md5-sum-v1"
ALGORITHMS = {"checksum-table": CHECKSUM_TABLE, "md5": MD5_SUM}


def columns(conn, database: str, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
                    "ORDER BY ORDINAL_POSITION", (database, table))
        return [row[0] for row in cur.fetchall()]


def checksum_sql(database: str, table: str, cols: list[str]) -> str:
    parts = []
    for col in cols:
        c = quote_identifier(col)
        parts.append(f"IF({c} IS NULL,'N',CONCAT(LENGTH(CAST({c} AS BINARY)),':',CAST({c} AS BINARY)))")
    row = "CONCAT(" + ",',',".join(parts) + ")" if parts else "''"
    return ("SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(h,16),16,10) AS UNSIGNED)),0), "
            "COALESCE(SUM(CAST(CONV(RIGHT(h,16),16,10) AS UNSIGNED)),0) "
            f"FROM (SELECT MD5({row}) AS h FROM {quote_identifier(database)}.{quote_identifier(table)}) AS r")


def prepare_session(conn) -> None:
    """Settings every checksum session shares, so the same rows give the same bytes."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        # Large tables must not hit a statement timeout the server may impose by default.
        try:
            cur.execute("SET SESSION max_statement_time = 0")
        except Exception:  # noqa: BLE001 - MySQL has no such variable
            pass


def table_checksum(conn, database: str, table: str, algorithm: str = CHECKSUM_TABLE) -> dict:
    """{"rows": exact count, "checksum": "<hex>"} of one table."""
    if algorithm == MD5_SUM:
        cols = columns(conn, database, table)
        with conn.cursor() as cur:
            cur.execute(checksum_sql(database, table, cols))
            count, high, low = cur.fetchone()
        return {"rows": int(count), "checksum": f"{int(high):x}-{int(low):x}"}
    if algorithm != CHECKSUM_TABLE:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    qualified = f"{quote_identifier(database)}.{quote_identifier(table)}"
    with conn.cursor() as cur:
        counted = _scan_counts_rows(cur, database, table)
        before = _rows_read(cur) if counted else None
        cur.execute(f"CHECKSUM TABLE {qualified} EXTENDED")
        value = cur.fetchone()[1]
        count = _rows_read(cur) - before if before is not None else 0
        if count <= 0:  # not countable this way, or empty (then the count below costs nothing)
            cur.execute(f"SELECT COUNT(*) FROM {qualified}")
            (count,) = cur.fetchone()
    if value is None:
        raise ValueError(f"CHECKSUM TABLE returned no value for {database}.{table}")
    return {"rows": int(count), "checksum": f"{int(value):08x}"}


# Engines whose CHECKSUM TABLE scan reads each row exactly once through the handler (measured on
# MariaDB 10.11 against COUNT(*), deleted rows and generated columns included; tests/test_test_restore.py).
_SCAN_COUNTED_ENGINES = {"innodb", "xtradb", "myisam", "aria", "memory"}


def _scan_counts_rows(cur, database: str, table: str) -> bool:
    """Whether the rows CHECKSUM TABLE reads are the table's rows, so MariaDB's session counter
    `Rows_read` gives the exact count from the checksum's own scan and no COUNT(*) has to read
    the table a second time (a third of the cost of the checks: 0.12 s of 0.40 s per million
    sysbench rows, measured). Not so for a partitioned table (its partitions' reads are not
    counted) nor a system-versioned one (the scan also reads history rows)."""
    cur.execute("SELECT ENGINE, TABLE_TYPE, CREATE_OPTIONS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
    row = cur.fetchone()
    if row is None:
        return False
    engine, kind, options = row
    return (str(engine or "").lower() in _SCAN_COUNTED_ENGINES and kind == "BASE TABLE"
            and "partitioned" not in str(options or "").lower())


def _rows_read(cur) -> int | None:
    """The session's `Rows_read` (MariaDB; MySQL has none). Reading it reads no rows."""
    cur.execute("SHOW SESSION STATUS LIKE 'Rows_read'")
    row = cur.fetchone()
    return int(row[1]) if row else None


def server_version(conn) -> str:
    """`10.11.19-mariadb`: the release and the flavour, without build suffixes such as
    `-log` (binary log on) or a distribution's tag, which do not change a row's layout."""
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        text = str(cur.fetchone()[0])
    match = re.match(r"\d+(\.\d+)*", text)
    return (match.group(0) if match else text) + ("-mariadb" if "mariadb" in text.lower() else "-mysql")


class Snapshot:
    """A read view opened before the dump starts, to count and checksum what the dump saw.

    It describes the dump when no write committed between its opening and the dump's: either
    commits were held meanwhile (mysql/alignment.py), or MariaDB reports the same binary log
    position (`binlog_snapshot_file/position`) for both views.
    """

    def __init__(self, endpoint, database: str, algorithm: str = CHECKSUM_TABLE) -> None:
        """Connects and prepares the session; `begin()` opens the read view (while commits are
        held, so connecting is kept out of that window)."""
        self.database = database
        self.algorithm = algorithm
        self.conn = connect(endpoint)
        self.position: tuple[str, int] | None = None
        self.unavailable: str | None = None
        self._measuring: threading.Thread | None = None
        self._measured: tuple | BaseException | None = None
        try:
            prepare_session(self.conn)
            with self.conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        except BaseException:
            self.close()
            raise

    def begin(self) -> "Snapshot":
        try:
            with self.conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {name.lower(): value for name, value in cur.fetchall()}
        except BaseException:
            self.close()
            raise
        if "binlog_snapshot_file" not in status:
            self.unavailable = "the server does not report the binary log position of a snapshot " \
                               "(binlog_snapshot_file is a MariaDB status variable)"
        elif not status.get("binlog_snapshot_file"):
            self.unavailable = "the binary log is off on the server, so the dump's snapshot cannot be matched"
        else:
            self.position = (binlog_file_name(status["binlog_snapshot_file"]), int(status["binlog_snapshot_position"]))
        return self

    def start(self, tables: list[dict]) -> None:
        """Count and checksum in a thread while the backup goes on (the read view is fixed, so
        when the work happens does not change what it sees); `record` waits for it."""
        if self._measuring is not None:
            return
        self._measuring = threading.Thread(target=self._measure_into, args=(tables,), daemon=True,
                                           name="content-checks")
        self._measuring.start()

    def _measure_into(self, tables: list[dict]) -> None:
        try:
            self._measured = self._measure(tables)
        except BaseException as exc:  # handed to record()
            self._measured = exc

    def _measure(self, tables: list[dict]) -> tuple[dict, tuple[str, int] | None]:
        out = {table["name"]: table_checksum(self.conn, self.database, table["name"], self.algorithm)
               for table in tables}
        return out, binlog_position(self.conn)

    def record(self, dump_binlog: dict | None, tables: list[dict], alignment=None) -> dict:
        """What goes into the manifest's content_checks: counts and checksums, or why there are none.

        Proven when commits were held while this view and the dump's opened (`alignment`), or
        when both views report the same binary log position."""
        measured = None
        if self._measuring is not None:
            while self._measuring.is_alive():
                self._measuring.join(0.5)
                if interrupt_requested():  # close() then breaks the connection under the query
                    raise Interrupted("interrupted; unfinished work was removed")
            if isinstance(self._measured, BaseException):
                raise self._measured
            measured = self._measured
        result: dict = {"algorithm": self.algorithm, "server_version": server_version(self.conn)}
        snapshot = {"file": self.position[0], "position": self.position[1]} if self.position else None
        if snapshot:
            result["snapshot_binlog"] = snapshot
        dump_position = ((binlog_file_name(dump_binlog.get("file", "")), dump_binlog["position"])
                         if dump_binlog and "position" in dump_binlog else None)
        aligned = alignment is not None and alignment.aligned
        if aligned:
            result["aligned"] = alignment.describe()
            if self.position and dump_position and dump_position != self.position:
                # Cannot happen while commits were held; if it does, the proof is not trusted.
                return {**result, "method": None,
                        "reason": f"commits were held, yet the dump's snapshot ({dump_binlog.get('file')}:"
                                  f"{dump_binlog['position']}) is not ours ({snapshot['file']}:"
                                  f"{snapshot['position']})"}
        elif self.position is None:
            why = alignment.reason if alignment is not None and alignment.reason else self.unavailable
            return {**result, "method": None, "reason": why or "the dump's snapshot could not be matched"}
        elif dump_position is None:
            return {**result, "method": None,
                    "reason": "the dump recorded no binary log position (the user lacks RELOAD or binlog "
                              "access), so the dump's snapshot cannot be matched"}
        elif dump_position != self.position:
            return {**result, "method": None,
                    "reason": f"the server committed writes between our snapshot ({snapshot['file']}:"
                              f"{snapshot['position']}) and the dump's ({dump_binlog.get('file')}:"
                              f"{dump_binlog['position']}), so counts taken here would not describe the dump"}
        skipped: list[str] = []
        non_transactional = [t["name"] for t in tables
                             if str(t.get("engine") or "").lower() not in TRANSACTIONAL]
        out, position_after = measured if measured is not None else self._measure(tables)
        if non_transactional and (self.position is None or position_after != self.position):
            # A snapshot does not cover MyISAM/Aria: trust those only if the binary log shows that
            # nothing at all was written (without it, nothing can show that).
            for name in non_transactional:
                out.pop(name, None)
                skipped.append(name)
        result.update(method="snapshot", tables=out)
        if skipped:
            why = ("non-transactional table written to while it was being read" if self.position is not None
                   else "non-transactional table, and without the binary log nothing shows it was not "
                        "written while it was being read")
            result["skipped"] = {name: why for name in skipped}
        return result

    def close(self) -> None:
        if self._measuring is not None and self._measuring.is_alive():
            # Ending the connection under a running query makes the thread fail fast.
            sock = getattr(self.conn, "_sock", None)
            try:
                if sock is not None:
                    sock.shutdown(2)
            except OSError:
                pass
            self._measuring.join(timeout=10)
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass
