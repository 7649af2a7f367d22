"""What a run tells a progress display. Below the actions and the engines, which both report to
it; the cli draws it (cli/progress.py: a live board on a terminal, log lines elsewhere).

A backup reports one row per database (`started`, with the bytes it will stream when known,
`advanced`, `finished`). A restore, a
verification or a download is a task that goes through stages ("downloading", "verifying",
"loading", "checking objects"), each with the bytes (and tables) it will move when known:
`stage` begins one, `advanced` says how far it is, `finished` ends the task. The actions
hold a `Task` (the display and the task's name) and count bytes through a `Meter`, which
keeps the display's calls to a few per second whatever the size of the pipeline's chunks.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator


class Progress:
    """The default tells nobody. Called from worker threads."""

    def started(self, database: str, engine: str, tables: int, total: int | None = None) -> None:
        """A backup's row: `total` is the plain bytes it will stream when known beforehand (a
        physical backup's: the data directory's files), so the display can show how far it is."""

    def advanced(self, database: str, plain_bytes: int, tables_done: int | None = None) -> None: ...

    def finished(self, database: str, ok: bool) -> None: ...

    def stage(self, name: str, stage: str, total: int | None = None, tables: int | None = None) -> None:
        """Task `name` (begun by its first stage) enters `stage`, which will move `total` bytes
        and `tables` tables when known; `advanced` then counts from zero."""


class Meter:
    """The bytes (and tables) of one stage as they pass, counted from any thread. Reports at
    most every INTERVAL seconds, and once more, exact, at `close`."""

    INTERVAL = 0.25

    def __init__(self, progress: Progress, name: str, total: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._progress, self._name, self.total, self._clock = progress, name, total, clock
        self._lock = threading.Lock()
        self.done = 0
        self.tables_done: int | None = None
        self._reported = 0.0

    def add(self, size: int) -> None:
        with self._lock:
            self.done += size
            self._maybe_report()

    def set(self, done: int, tables_done: int | None = None) -> None:
        """A measured amount (a folder's size, bytes a loader read), not an increment; never
        past the total (a loader also reads things that are not the dump)."""
        with self._lock:
            self.done = done if self.total is None else min(done, self.total)
            if tables_done is not None:
                self.tables_done = tables_done
            self._maybe_report()

    def table_done(self) -> None:
        with self._lock:
            self.tables_done = (self.tables_done or 0) + 1
            self._maybe_report(force=True)  # tables come seconds apart: each is news

    def close(self) -> None:
        with self._lock:
            self._maybe_report(force=True)

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _maybe_report(self, force: bool = False) -> None:
        now = self._clock()
        if force or now - self._reported >= self.INTERVAL:
            self._reported = now
            self._progress.advanced(self._name, self.done, self.tables_done)


class Task:
    """One restore, verification or download as the actions see it: its display and its name.
    Two Tasks of the same name are one task to the display (a download and the verification
    of what it brought)."""

    def __init__(self, progress: Progress | None, name: str) -> None:
        self.progress = progress or Progress()
        self.name = name

    def stage(self, stage: str, total: int | None = None, tables: int | None = None) -> Meter:
        """Begin a stage; its Meter, closed by leaving it as a context manager (or by `close`)."""
        self.progress.stage(self.name, stage, total, tables)
        return Meter(self.progress, self.name, total)

    def step(self, stage: str, tables: int | None = None) -> None:
        """A stage that moves no bytes worth counting (checking objects, starting a sandbox)."""
        self.progress.stage(self.name, stage, None, tables)

    def done(self, ok: bool) -> None:
        self.progress.finished(self.name, ok)


def task(progress: Task | None) -> Task:
    """A function's `progress` keyword as a Task: None tells nobody."""
    return progress if progress is not None else Task(None, "")


@contextlib.contextmanager
def polling(meter: Meter, measure: Callable[[], int | None], interval: float = Meter.INTERVAL) -> Iterator[None]:
    """Set `meter` from `measure()` every `interval` seconds in a thread while the block runs
    (a download's folder size, the bytes a loading tool has read). A measurement that fails
    (None, or an OSError: the process or file went away) is skipped."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                value = measure()
            except OSError:
                continue
            if value is not None:
                meter.set(value)

    thread = threading.Thread(target=run, name="progress-poll", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def bytes_read(pid: int) -> int | None:
    """What process `pid` has read so far (files and sockets), from /proc: for a loading tool
    that reads its files itself, how far it is. None where /proc does not say."""
    with open(f"/proc/{pid}/io", "rb") as fh:
        for line in fh:
            if line.startswith(b"rchar:"):
                return int(line.split()[1])
    return None


def folder_size(folder: Path) -> int:
    """The bytes of the files below `folder` so far (a download in progress); 0 before it exists."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a partial file renamed under our feet
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def rate(done: int, seconds: float) -> float:
    """Bytes per second; 0 before there is anything to measure."""
    return done / seconds if seconds > 0 and done > 0 else 0.0


def eta(done: int, total: int | None, seconds: float) -> float | None:
    """Seconds left at the rate so far; None when it cannot be told (no total, nothing done yet)."""
    speed = rate(done, seconds)
    if total is None or speed <= 0:
        return None
    return max(total - done, 0) / speed


def duration(seconds: float) -> str:
    """A duration as an operator reads it: 42s, 3m05s, 1h02m."""
    whole = max(int(round(seconds)), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
