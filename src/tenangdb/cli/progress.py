"""The live progress display of `tenangdb backup`, `restore` and `verify` on a terminal.

One row per database that is running or done (a backup), or per restore, verification or
download (a task: its row shows its stage, the bytes of the stage's total and the time left),
kept at the bottom of stderr by rich's live display and fitted to the terminal's width at
every redraw: a long name is shortened with an ellipsis and, on a narrow terminal, the less
telling columns give way, so a row never wraps and the redraw never tears. Log lines go
through the board's stream and print above it. Without a terminal there is no board: the log
has one line per event, and for a task one line per stage (cli/stages.py).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field, replace

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tenangdb.fileio import human_size
from tenangdb.progress import Progress, duration, eta, rate

INDENT = 2
NAME_MIN = 6  # below this a name says nothing; the optional columns give way first
# The optional columns in the order they give way last: what is left on a narrow terminal
# answers "how far along" before "how fast" and "with what".
KEPT_LONGEST = ("tables", "size", "eta", "elapsed", "rate", "engine")
SHOWN_ORDER = ("engine", "size", "rate", "elapsed", "eta", "tables")
RIGHT_ALIGNED = {"size", "rate", "elapsed", "eta"}
STATE_STYLE = {"running": "", "done": "green", "FAILED": "bold red"}


@dataclass
class _Row:
    engine: str
    tables: int
    started: float = field(default_factory=time.monotonic)
    plain_bytes: int = 0
    tables_done: int | None = None
    ended: float | None = None
    ok: bool | None = None
    # A task's current stage: what it does, since when, and the bytes it will move if known.
    stage: str | None = None
    stage_started: float | None = None
    total: int | None = None
    counting: bool = True

    @property
    def state(self) -> str:
        if self.ok is None:
            return self.stage or "running"
        return "done" if self.ok else "FAILED"

    def cells(self, now: float) -> dict[str, str]:
        elapsed = (self.ended or now) - self.started
        # A task's rate and time left are its stage's: a download and a load move at their own pace.
        in_stage = (self.ended or now) - (self.stage_started or self.started)
        speed = rate(self.plain_bytes, in_stage) if self.counting else 0.0
        left = eta(self.plain_bytes, self.total, in_stage) if self.ok is None and self.counting else None
        size = human_size(self.plain_bytes)
        if self.total:
            size += f"/{human_size(self.total)} {min(100, self.plain_bytes * 100 // self.total):3d}%"
        tables = ""
        if self.tables_done is not None and self.tables:
            tables = f"tables {self.tables_done}/{self.tables}"
        return {"engine": self.engine, "size": size,
                "rate": f"{human_size(int(speed))}/s" if speed or self.stage is None else "",
                "elapsed": f"{elapsed:.1f}s", "eta": f"ETA {duration(left)}" if left is not None else "",
                "tables": tables}


class Rows:
    """The board as a rich renderable: laid out for the width it is given, never wider."""

    def __init__(self, rows: dict[str, _Row], now: float | None = None) -> None:
        self.rows = rows
        self.now = time.monotonic() if now is None else now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = list(self.rows.items())
        if not rows:
            return
        width = options.max_width - INDENT
        # More rows than the screen holds: the finished ones are summed up in one line, so
        # the running ones stay in sight (a live display taller than the screen is cut).
        room = max(1, options.max_height - 2)
        hidden = 0
        if len(rows) > room:
            running = [r for r in rows if r[1].ok is None]
            finished = [r for r in rows if r[1].ok is not None]
            keep = max(0, room - 1 - len(running))
            hidden = len(finished) - keep
            shown = {name for name, _ in running[:room - 1] + finished[len(finished) - keep:]}
            rows = [r for r in rows if r[0] in shown]
        cells = [row.cells(self.now) for _, row in rows]
        state_width = max(len(row.state) for _, row in rows)
        used = NAME_MIN + 1 + state_width
        kept = set()
        for column in KEPT_LONGEST:
            column_width = max(len(c[column]) for c in cells)
            if not column_width:
                continue
            if used + 1 + column_width > width:
                break
            kept.add(column)
            used += 1 + column_width
        longest_name = max(len(name) for name, _ in rows)
        name_width = max(1, min(longest_name, width - (used - NAME_MIN)))

        table = Table.grid(padding=(0, 1))
        table.add_column(width=name_width, no_wrap=True, overflow="ellipsis")
        table.add_column(no_wrap=True, overflow="ellipsis")
        columns = [c for c in SHOWN_ORDER if c in kept]
        for column in columns:
            table.add_column(no_wrap=True, overflow="ellipsis",
                             justify="right" if column in RIGHT_ALIGNED else "left")
        for (name, row), row_cells in zip(rows, cells):
            table.add_row(Text(name), Text(row.state, style=STATE_STYLE.get(row.state, "")),
                          *(Text(row_cells[c]) for c in columns))
        yield Padding(table, (0, 0, 0, INDENT), expand=False)
        if hidden > 0:
            summary = Text(f"… and {hidden} more finished", no_wrap=True, overflow="ellipsis")
            summary.truncate(width, overflow="ellipsis")
            yield Padding(summary, (0, 0, 0, INDENT), expand=False)


class Board(Progress):
    """The progress protocol drawn live; also the stream the console log handler writes to
    while the board is up (see `logs.console_stream`), so each log line prints above it."""

    REFRESH = 0.5

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr, highlight=False)
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._partial = ""
        # stdout is left alone: it may be a pipe while stderr is the terminal, and what a
        # command prints there must not move to stderr.
        self._live = Live(console=self.console, get_renderable=self.render,
                          refresh_per_second=1 / self.REFRESH, redirect_stdout=False)
        # Drawn from the first row on, not from __enter__: a question asked before the work
        # begins (restore into a non-empty database?) is not drawn over.
        self._entered = self._drawn = False
        self._start_lock = threading.Lock()

    def _draw(self) -> None:
        with self._start_lock:
            if self._entered and not self._drawn:
                self._drawn = True
                self._live.start()

    @contextlib.contextmanager
    def paused(self):
        """The board off the screen while the operator is asked something, drawn again after."""
        with self._start_lock:
            drawn, self._entered, self._drawn = self._drawn, False, False
            if drawn:
                self._live.stop()
        try:
            yield
        finally:
            self._entered = True
            if drawn:
                self._draw()

    # -- Progress
    def started(self, database: str, engine: str, tables: int, total: int | None = None) -> None:
        with self._lock:
            self._rows[database] = _Row(engine, tables, total=total)
        self._draw()

    def advanced(self, database: str, plain_bytes: int, tables_done: int | None = None) -> None:
        with self._lock:
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

    def stage(self, name: str, stage: str, total: int | None = None, tables: int | None = None) -> None:
        with self._lock:
            row = self._rows.setdefault(name, _Row("", 0))
            row.stage, row.stage_started = stage, time.monotonic()
            row.counting = total is not None or bool(tables)
            if row.counting:
                row.plain_bytes, row.total, row.tables = 0, total, tables or 0
                row.tables_done = 0 if tables else None
            # else a step that counts nothing (checking objects): the bytes of the stage before
            # stay in sight, its rate and time left do not.
        self._draw()

    def render(self) -> Rows:
        with self._lock:  # a copy: the workers go on changing the rows while it is drawn
            return Rows({name: replace(row) for name, row in self._rows.items()})

    # -- a stream for the log handler
    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            # A Text, never markup: a log line is printed as it is. soft_wrap keeps it whole
            # (the terminal folds it) so it can be copied as one line.
            self.console.print(Text(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        self.console.file.flush()

    def __enter__(self) -> "Board":
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._partial:
            self.write("\n")
        with self._start_lock:
            self._entered = False
            if self._drawn:
                self._drawn = False
                self._live.stop()  # the final state stays on screen
