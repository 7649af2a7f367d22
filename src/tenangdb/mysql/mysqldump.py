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
              dump_history: bool, events: bool = True) -> list[str]:
    argv = [
        tool, *login,
        "--single-transaction",  # one consistent snapshot (InnoDB) without locking writers
        "--quick",  # row by row: memory stays flat
        "--routines", "--triggers",
        # Without events only where one would hang the dump (fidelity.check records them as lost).
        "--events" if events else "--skip-events",
        "--hex-blob",  # binary columns survive any client character set
        "--default-character-set=utf8mb4",
        f"--max-allowed-packet={MAX_PACKET}",
        "--skip-dump-date",  # reproducible output; the manifest records the time
        "--comments",  # the completion marker we check is a comment
        # LOCK TABLES around inserts breaks tables whose DEFAULT calls NEXTVAL of a sequence.
        "--skip-add-locks",
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


def restore_argv(client: str, login: list[str], database: str | None) -> list[str]:
    """The client a dump or a replay is fed to; `database` None: no default database (a replay of
    a whole instance names its databases itself)."""
    return [
        client, *login,
        "--binary-mode",  # dump bytes go to the server as they are (no \r\n or \0 rewriting)
        f"--max-allowed-packet={MAX_PACKET}",
        "--batch",
    ] + ([f"--database={database}"] if database is not None else [])


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
    """Rewrites the few places where a dump of one database names that database itself.

    A dump of one database (no --databases) carries no USE or CREATE DATABASE, but:
    - it wraps routines, triggers and events in `ALTER DATABASE <name> CHARACTER SET …`
      lines when their collation differs from the database's; left alone they would
      alter the SOURCE database during a restore under a new name;
    - the server qualifies sequence defaults, `DEFAULT nextval(<name>.<seq>)`, so a
      restored table would draw numbers from the source database's sequence.
    Statement lines always start a line (row data never holds a raw newline) and column
    definitions are lines starting with two spaces and a backtick, so both are matched
    exactly; nothing inside row data is touched.
    """

    CONTEXT = 64 * 1024  # a column definition line is far shorter than this
    BATCH = 1 << 20

    def __init__(self, source: str, target: str, forward: Callable[[bytes], None]) -> None:
        self._forward = forward
        self._old, self._new = quote_identifier(source).encode(), quote_identifier(target).encode()
        self._active = source != target
        self._statement_prefixes = (b"/*!50003 ALTER DATABASE ", b"ALTER DATABASE ", b"/*!40101 ALTER DATABASE ")
        self._keep = self.CONTEXT
        self._carry = b"\n"  # the stream's first line counts as following a newline
        self._skip = 1  # ...but that added newline is not forwarded
        self.rewrites = 0
        self._pending: list[bytes] = []
        self._pending_size = 0

    def _emit(self, data: bytes) -> None:
        if self._skip and data:
            data, self._skip = data[1:], 0
        if data:
            self._forward(data)

    def _is_rewritable(self, buf: bytes, at: int) -> bool:
        """Whether the quoted name at `at` is one of the two shapes we rewrite."""
        for prefix in self._statement_prefixes:
            start = at - len(prefix)
            if start >= 1 and buf[start - 1] == 0x0A and buf.startswith(prefix, start):
                return True
        if buf.startswith(b"DEFAULT nextval(", at - 16) and buf.startswith(b".", at + len(self._old)):
            line = buf.rfind(b"\n", 0, at)
            return line >= 0 and buf.startswith(b"  `", line + 1)
        return False

    def _next_match(self, buf: bytes, pos: int) -> int | None:
        # One pass for the quoted name, then a look at its context: far cheaper than
        # searching the stream once per shape.
        at = buf.find(self._old, pos)
        while at >= 0:
            if self._is_rewritable(buf, at):
                return at
            at = buf.find(self._old, at + 1)
        return None

    def write(self, data: bytes) -> None:
        if not self._active:
            self._forward(data)
            return
        # Work on large pieces so carrying the context costs little.
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.BATCH:
            self._process()

    def _process(self, final: bool = False) -> None:
        buf = self._carry + b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        view = memoryview(buf)  # forward slices without copying them again
        pos = 0
        while (at := self._next_match(buf, pos)) is not None:
            self._emit(view[pos:at])
            self._emit(self._new)
            pos = at + len(self._old)
            self.rewrites += 1
        # Keep an unscanned tail that may hold the start of a match split across chunks
        # (and the start of its line); never keep rewritten text, so nothing is rewritten twice.
        cut = len(buf) if final else max(len(buf) - self._keep, pos)
        self._emit(view[pos:cut])
        self._carry = buf[cut:]

    def close(self) -> None:
        if self._active:
            self._process(final=True)
