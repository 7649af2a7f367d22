"""The live progress display of `tenangdb backup` on a terminal.

A few lines at the bottom of stderr, one per database that is running or done, redrawn
twice a second. Log lines go through the board's stream, so they print above it instead
of tearing it. Without a terminal there is no board: the log has one line per event.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from tenangdb.actions.backup import Progress
from tenangdb.fileio import human_size


@dataclass
class _Row:
    engine: str
    tables: int
    started: float = field(default_factory=time.monotonic)
    plain_bytes: int = 0
    tables_done: int | None = None
    ended: float | None = None
    ok: bool | None = None


class Board(Progress):
    REFRESH = 0.5

    def __init__(self, stream=None) -> None:
        self._out = stream or sys.stderr
        self._rows: dict[str, _Row] = {}
        self._lock = threading.RLock()
        self._drawn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="progress")

    # -- Progress
    def started(self, database: str, engine: str, tables: int) -> None:
        with self._lock:
            self._rows[database] = _Row(engine, tables)

    def advanced(self, database: str, plain_bytes: int, tables_done: int | None = None) -> None:
        row = self._rows.get(database)
        if row is not None:
            row.plain_bytes = plain_bytes
            if tables_done is not None:
                row.tables_done = tables_done

    def finished(self, database: str, ok: bool) -> None:
        with self._lock:
            row = self._rows.get(database)
            if row is not None:
                row.ended, row.ok = time.monotonic(), ok

    # -- a stream for the log handler
    def write(self, text: str) -> int:
        with self._lock:
            self._clear()
            self._out.write(text)
            self._draw()
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def __enter__(self) -> "Board":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            self._clear()
            self._draw()  # the final state stays on screen
            self._drawn = 0
            self._out.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.REFRESH):
            with self._lock:
                self._clear()
                self._draw()

    def _clear(self) -> None:
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the board's first line, erase below
            self._drawn = 0

    def _draw(self) -> None:
        lines = [self._line(name, row) for name, row in self._rows.items()]
        if lines:
            self._out.write("\n".join(lines) + "\n")
            self._out.flush()
        self._drawn = len(lines)

    @staticmethod
    def _line(name: str, row: _Row) -> str:
        elapsed = (row.ended or time.monotonic()) - row.started
        rate = row.plain_bytes / elapsed if elapsed > 0 else 0.0
        state = "running" if row.ok is None else ("done" if row.ok else "FAILED")
        tables = f"  tables {row.tables_done}/{row.tables}" if row.tables_done is not None else ""
        return (f"  {name:<24} {state:<8} {row.engine:<9} {human_size(row.plain_bytes):>10}  "
                f"{human_size(int(rate)):>10}/s  {elapsed:6.1f}s{tables}")
