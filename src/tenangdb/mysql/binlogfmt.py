"""The MariaDB binary log format, read as a stream: what the archiver records about each file
and where a point-in-time restore must stop.

A binlog file is the magic `\\xfebin` and then events, each a 19-byte v4 header (timestamp
u32, type u8, server_id u32, event_size u32, log_pos u32 = the event's end, flags u16) and a
body. Only the few event types we need are decoded (FORMAT_DESCRIPTION for the checksum,
GTID, GTID_LIST, ROTATE, STOP, QUERY); the rest, row events above all, are skipped by their
size without being held, so memory stays bounded whatever the file holds. Pure: bytes in,
facts out; no files, no server.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Callable

MAGIC = b"\xfebin"
HEADER = 19

QUERY = 2
STOP = 3
ROTATE = 4
XID = 16
FORMAT_DESCRIPTION = 15
GTID = 162
GTID_LIST = 163

# A statement longer than this is kept cut (and said to be): what we look for in statements
# (database names) only decides whether a restore under another name is safe.
QUERY_KEEP = 64 * 1024
_DECODED = {QUERY, STOP, ROTATE, FORMAT_DESCRIPTION, GTID, GTID_LIST, XID}
_HEADER = struct.Struct("<IBIIIH")


class BinlogFormatError(ValueError):
    """The bytes are not a binary log this parser understands (damaged or another format)."""


@dataclass
class Event:
    """One event: where it starts and ends in its file, and what we decoded of it."""

    position: int
    end: int
    type: int
    timestamp: int
    server_id: int
    gtid: str | None = None  # GTID events: domain-server-seq
    db: str | None = None  # QUERY events: the default database (USE) it ran in
    query: str | None = None  # QUERY events: the statement (cut at QUERY_KEEP)
    query_cut: bool = False
    next_file: str | None = None  # ROTATE events


@dataclass
class Summary:
    """What the archive records of one file."""

    size: int = 0
    first_time: int | None = None
    last_time: int | None = None
    first_gtid: str | None = None
    last_gtid: str | None = None
    gtid_list: list[str] = field(default_factory=list)  # the GTID state the file starts from
    transactions: int = 0
    end_position: int = 0  # the end of the last whole event
    closed_by: str | None = None  # "rotate" or "stop" (the server's last event in the file)
    next_file: str | None = None


class Parser:
    """Feed it a file's bytes in chunks (`feed`), then `close()`: each decoded event goes to
    `on_event`, and `summary` describes the file. Bounded memory: a skipped event's body is
    counted, never held."""

    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self._on_event = on_event
        self._buffer = bytearray()
        self._offset = 0  # file offset of self._buffer[0]
        self._skip = 0  # bytes of a skipped event body still to pass
        self._magic = False
        self._checksum = 0  # bytes of checksum at the end of every event after the FDE
        self.summary = Summary()

    def feed(self, data: bytes) -> None:
        self.summary.size += len(data)
        view = memoryview(data)
        if self._skip:
            take = min(self._skip, len(view))
            self._skip -= take
            self._offset += take
            view = view[take:]
        self._buffer += view
        self._drain()

    def _drain(self) -> None:
        buf = self._buffer
        at = 0
        if not self._magic:
            if len(buf) < 4:
                return
            if bytes(buf[:4]) != MAGIC:
                raise BinlogFormatError("not a binary log (no \\xfebin magic at its start)")
            self._magic, at = True, 4
        while len(buf) - at >= HEADER:
            timestamp, kind, server_id, size, log_pos, _flags = _HEADER.unpack_from(buf, at)
            if size < HEADER:
                raise BinlogFormatError(f"event at {self._offset + at} claims a size of {size} bytes")
            position = self._offset + at
            if kind not in _DECODED and len(buf) - at < size:
                # A big event we do not read: pass over its body as it streams by.
                self._emit(Event(position, position + size, kind, timestamp, server_id))
                self._skip = size - (len(buf) - at)
                self._offset += len(buf)
                del buf[:]
                return
            if len(buf) - at < size:
                break
            body = bytes(buf[at + HEADER: at + size]) if kind in _DECODED else b""
            self._emit(self._decode(Event(position, position + size, kind, timestamp, server_id), body))
            at += size
        if at:
            del buf[:at]
            self._offset += at

    def _decode(self, event: Event, body: bytes) -> Event:
        if event.type == FORMAT_DESCRIPTION:
            # The checksum algorithm is the byte before the FDE's own 4-byte checksum (MariaDB
            # always writes both); 1 = CRC32 on every following event.
            self._checksum = 4 if len(body) >= 5 and body[-5] == 1 else 0
            return event
        payload = body[: len(body) - self._checksum] if self._checksum else body
        if event.type == GTID and len(payload) >= 12:
            seq, domain = struct.unpack_from("<QI", payload)
            event.gtid = f"{domain}-{event.server_id}-{seq}"
        elif event.type == GTID_LIST and len(payload) >= 4:
            count = struct.unpack_from("<I", payload)[0] & 0x0FFFFFFF
            self.summary.gtid_list = [
                "{}-{}-{}".format(*struct.unpack_from("<IIQ", payload, 4 + 16 * i))
                for i in range(count) if 4 + 16 * (i + 1) <= len(payload)]
        elif event.type == ROTATE and len(payload) >= 8:
            event.next_file = payload[8:].decode("utf-8", "replace")
        elif event.type == QUERY and len(payload) >= 13:
            db_len = payload[8]
            status_len = struct.unpack_from("<H", payload, 11)[0]
            start = 13 + status_len
            event.db = payload[start: start + db_len].decode("utf-8", "replace")
            text = payload[start + db_len + 1:]
            event.query_cut = len(text) > QUERY_KEEP
            event.query = text[:QUERY_KEEP].decode("utf-8", "replace")
        return event

    def _emit(self, event: Event) -> None:
        s = self.summary
        s.end_position = event.end
        if event.timestamp:
            s.first_time = s.first_time or event.timestamp
            s.last_time = event.timestamp if s.last_time is None else max(s.last_time, event.timestamp)
        if event.gtid:
            s.first_gtid = s.first_gtid or event.gtid
            s.last_gtid = event.gtid
            s.transactions += 1
        if event.type == ROTATE:
            s.closed_by, s.next_file = "rotate", event.next_file
        elif event.type == STOP:
            s.closed_by = "stop"
        if self._on_event is not None:
            self._on_event(event)

    def close(self) -> Summary:
        """The file's summary; BinlogFormatError when it ends inside an event (cut short)."""
        if not self._magic:
            raise BinlogFormatError("not a binary log (shorter than its magic)")
        if self._skip or self._buffer:
            raise BinlogFormatError(f"the file ends inside an event at {self.summary.end_position} "
                                    f"({self.summary.size} bytes): it was cut short")
        return self.summary


def parse(data: bytes) -> tuple[Summary, list[Event]]:
    """A whole file at once (tests, small files)."""
    events: list[Event] = []
    parser = Parser(events.append)
    parser.feed(data)
    return parser.close(), events


# -- What a statement names -------------------------------------------------------------------

_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"", re.S)
_COMMENT = re.compile(r"/\*(?!!|M!).*?\*/|--[ \t][^\n]*|#[^\n]*", re.S)
_IDENT = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_$\u0080-\uffff]+)"
_QUALIFIED = re.compile(rf"({_IDENT})\s*\.\s*(?:`|[A-Za-z_$\u0080-\uffff])")
_DATABASE_STMT = re.compile(rf"\b(?:CREATE|DROP|ALTER)\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_IDENT})",
                            re.I)
_BOOKKEEPING = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|XA\s|SAVEPOINT|RELEASE\s+SAVEPOINT)", re.I)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def named_databases(statement: str) -> set[str]:
    """The databases a statement names explicitly: qualified names (`db`.`t`, db.t) and the
    database of CREATE/ALTER/DROP DATABASE. String literals and comments are ignored; numbers
    such as 1.5 are not names. Conservative: a name that looks qualified counts."""
    text = _COMMENT.sub(" ", _STRING.sub("''", statement))
    found = {_unquote(m.group(1)) for m in _QUALIFIED.finditer(text) if not m.group(1).isdigit()}
    found |= {_unquote(m.group(1)) for m in _DATABASE_STMT.finditer(text)}
    return found


def is_bookkeeping(statement: str) -> bool:
    """BEGIN/COMMIT and the like: QUERY events that change no data by themselves."""
    return bool(_BOOKKEEPING.match(statement))
