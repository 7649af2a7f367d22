"""Exact row counts and content checksums of tables, and a snapshot that ties them to a dump.

The checksum of a table (algorithm `md5-sum-v1`, docs/verification.md):
- each row is serialised canonically: for every column of the table in ordinal order
  (invisible and generated ones included), `N` for NULL or `<byte length>:<bytes>` where the
  bytes are `CAST(col AS BINARY)` (the stored bytes in the column's own character set;
  numbers and dates as the server prints them, with the session time zone set to UTC so a
  TIMESTAMP reads the same everywhere); length prefixes make the serialisation unambiguous;
- the row's digest is MD5 of that serialisation, split into two 64-bit halves;
- the table's checksum is the two SUMs of those halves over all rows (exact DECIMAL sums),
  with the exact row count beside it. A sum does not depend on row order, so no sort is
  needed, and unlike XOR it does not cancel a duplicated row.
The same query runs at backup time and on the restored tables, so the two can be compared.
"""

from __future__ import annotations

import logging
import os

from tenangdb.mysql.connection import connect, quote_identifier

log = logging.getLogger("tenangdb.checksum")

ALGORITHM = "md5-sum-v1"
# Engines whose reads inside START TRANSACTION WITH CONSISTENT SNAPSHOT see the snapshot.
TRANSACTIONAL = {"innodb", "xtradb", "rocksdb", "tokudb"}


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


def table_checksum(conn, database: str, table: str) -> dict:
    """{"rows": exact count, "checksum": "<hex>-<hex>"} of one table."""
    cols = columns(conn, database, table)
    with conn.cursor() as cur:
        cur.execute(checksum_sql(database, table, cols))
        count, high, low = cur.fetchone()
    return {"rows": int(count), "checksum": f"{int(high):x}-{int(low):x}"}


def _binlog_name(value: str) -> str:
    return os.path.basename(value or "")


class Snapshot:
    """A read view opened before the dump starts, to count and checksum what the dump saw.

    MariaDB reports the binary log position of a consistent snapshot
    (`binlog_snapshot_file/position`). When the dump's own recorded coordinates are the same
    position, no logged write committed between the two snapshots, so both saw the same
    data and the counts and checksums taken here describe the dump exactly.
    """

    def __init__(self, endpoint, database: str) -> None:
        self.database = database
        self.conn = connect(endpoint)
        self.position: tuple[str, int] | None = None
        self.unavailable: str | None = None
        try:
            prepare_session(self.conn)
            with self.conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
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
            self.position = (_binlog_name(status["binlog_snapshot_file"]), int(status["binlog_snapshot_position"]))

    def record(self, dump_binlog: dict | None, tables: list[dict]) -> dict:
        """What goes into manifest["content_checks"]: counts and checksums, or why there are none."""
        result: dict = {"algorithm": ALGORITHM}
        if self.position is None:
            return {**result, "method": None, "reason": self.unavailable}
        snapshot = {"file": self.position[0], "position": self.position[1]}
        result["snapshot_binlog"] = snapshot
        if not dump_binlog or "position" not in dump_binlog:
            return {**result, "method": None,
                    "reason": "the dump recorded no binary log position (the user lacks RELOAD or binlog "
                              "access), so the dump's snapshot cannot be matched"}
        if (_binlog_name(dump_binlog.get("file", "")), dump_binlog["position"]) != self.position:
            return {**result, "method": None,
                    "reason": f"the server committed writes between our snapshot ({snapshot['file']}:"
                              f"{snapshot['position']}) and the dump's ({dump_binlog.get('file')}:"
                              f"{dump_binlog['position']}), so counts taken here would not describe the dump"}
        out: dict = {}
        skipped: list[str] = []
        non_transactional = [t["name"] for t in tables
                             if str(t.get("engine") or "").lower() not in TRANSACTIONAL]
        for table in tables:
            out[table["name"]] = table_checksum(self.conn, self.database, table["name"])
        if non_transactional and self._current_position() != self.position:
            # A snapshot does not cover MyISAM/Aria: trust those only if nothing was written at all.
            for name in non_transactional:
                out.pop(name, None)
                skipped.append(name)
        result.update(method="snapshot", tables=out)
        if skipped:
            result["skipped"] = {name: "non-transactional table written to while it was being read"
                                 for name in skipped}
        return result

    def _current_position(self) -> tuple[str, int] | None:
        try:
            with self.conn.cursor() as cur:
                cur.execute("SHOW MASTER STATUS")
                row = cur.fetchone()
        except Exception:  # noqa: BLE001 - without the privilege we cannot tell: assume written
            return None
        return (_binlog_name(row[0]), int(row[1])) if row else None

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass
