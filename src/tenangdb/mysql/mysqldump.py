"""The streaming engine: command lines for mysqldump/mariadb-dump and the mysql client,
and what we read back from a dump stream (completion marker, binlog coordinates)."""

from __future__ import annotations

import re
from typing import Callable

from tenangdb.mysql.connection import quote_identifier

ENGINE = "mysqldump"
COMPLETION_MARKER = b"-- Dump completed"
# Rows larger than this cannot be dumped or restored; 1 GiB is the protocol's ceiling.
MAX_PACKET = "1G"


def dump_argv(tool: str, login: list[str], database: str, *, binlog: bool, flavour: str,
              dump_history: bool) -> list[str]:
    argv = [
        tool, *login,
        "--single-transaction",  # one consistent snapshot (InnoDB) without locking writers
        "--quick",  # row by row: memory stays flat
        "--routines", "--events", "--triggers",
        "--hex-blob",  # binary columns survive any client character set
        "--default-character-set=utf8mb4",
        f"--max-allowed-packet={MAX_PACKET}",
        "--skip-dump-date",  # reproducible output; the manifest records the time
        "--comments",  # the completion marker we check is a comment
    ]
    if binlog:
        argv.append("--master-data=2")
        if flavour == "mariadb":
            argv.append("--gtid")
    if dump_history:
        argv.append("--dump-history")
    # `--` ends the options: a database called "--help" is a database.
    argv += ["--", database]
    return argv


def restore_argv(client: str, login: list[str], database: str) -> list[str]:
    return [
        client, *login,
        "--binary-mode",  # dump bytes go to the server as they are (no \r\n or \0 rewriting)
        f"--max-allowed-packet={MAX_PACKET}",
        "--batch",
        f"--database={database}",
    ]


def is_complete(tail: bytes) -> bool:
    """mysqldump writes its completion comment last; a cut-off dump lacks it."""
    return COMPLETION_MARKER in tail[-512:]


_LOG_POS = re.compile(rb"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
_GTID = re.compile(rb"SET GLOBAL gtid_slave_pos='([^']*)'")


def binlog_coordinates(head: bytes) -> dict | None:
    found: dict = {}
    if match := _LOG_POS.search(head):
        found["file"] = match.group(1).decode()
        found["position"] = int(match.group(2))
    if match := _GTID.search(head):
        found["gtid"] = match.group(1).decode()
    return found or None


class DatabaseRenamer:
    """Rewrites the few statements in which mysqldump names the dumped database itself.

    A dump of one database (no --databases) carries no USE or CREATE DATABASE, but it
    wraps routines, triggers and events in `ALTER DATABASE <name> CHARACTER SET …`
    lines when their character set differs from the database's. Left alone those
    would alter the ORIGINAL database during a restore under a new name. Such lines
    always start a line (row data never holds a raw newline), so matching on
    "\\n" + prefix is exact.
    """

    def __init__(self, source: str, target: str, forward: Callable[[bytes], None]) -> None:
        self._forward = forward
        old, new = quote_identifier(source).encode(), quote_identifier(target).encode()
        self._pairs = [
            (b"\n" + prefix + old, b"\n" + prefix + new)
            for prefix in (b"/*!50003 ALTER DATABASE ", b"ALTER DATABASE ", b"/*!40101 ALTER DATABASE ")
        ] if source != target else []
        self._keep = max((len(p) for p, _ in self._pairs), default=1) - 1
        self._carry = b"\n"  # the stream's first line counts as following a newline
        self._skip = 1  # ...but that added newline is not forwarded
        self.rewrites = 0

    def _emit(self, data: bytes) -> None:
        if self._skip and data:
            data, self._skip = data[1:], 0
        if data:
            self._forward(data)

    def write(self, data: bytes) -> None:
        if not self._pairs:
            self._forward(data)
            return
        buf = self._carry + data
        out, pos = [], 0
        while True:
            hits = [(buf.find(old, pos), old, new) for old, new in self._pairs]
            hits = [hit for hit in hits if hit[0] >= 0]
            if not hits:
                break
            at, old, new = min(hits)
            out += [buf[pos:at], new]
            pos = at + len(old)
            self.rewrites += 1
        # Keep an unscanned tail that may hold the start of a match split across chunks;
        # never keep rewritten text, so it cannot be matched twice.
        cut = max(len(buf) - self._keep, pos)
        out.append(buf[pos:cut])
        self._carry = buf[cut:]
        self._emit(b"".join(out))

    def close(self) -> None:
        self._emit(self._carry)
        self._carry = b""
