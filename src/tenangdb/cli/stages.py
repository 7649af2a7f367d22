"""A restore's, verification's or download's progress without a terminal: log lines, no board.
Apart from cli/progress.py so that a run under a timer does not import rich to draw nothing."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from tenangdb.fileio import human_size
from tenangdb.progress import Progress, duration, eta, rate


@dataclass
class _Stages:
    started: float
    stage: str = ""
    stage_started: float = 0.0
    total: int | None = None
    tables: int | None = None
    logged: float = 0.0


class StageLog(Progress):
    """A task's progress without a terminal (a timer, a pipe): one log line per stage, and
    through a long stage a line every EVERY seconds, so that an hour's restore under systemd
    is not an hour of silence. A backup's rows are not logged here (it logs its own events)."""

    EVERY = 30.0

    def __init__(self, logger: logging.Logger | None = None, clock=time.monotonic) -> None:
        self.log = logger or logging.getLogger("tenangdb.progress")
        self._clock = clock
        self._tasks: dict[str, _Stages] = {}
        self._lock = threading.Lock()

    def stage(self, name: str, stage: str, total: int | None = None, tables: int | None = None) -> None:
        now = self._clock()
        with self._lock:
            task = self._tasks.setdefault(name, _Stages(started=now))
            task.stage, task.stage_started, task.total, task.tables, task.logged = stage, now, total, tables, now
        what = [human_size(total)] if total is not None else []
        if tables:
            what.append(f"{tables} table{'' if tables == 1 else 's'}")
        self.log.info("%s: %s%s", name, stage, f" {', '.join(what)}" if what else "")

    def advanced(self, name: str, plain_bytes: int, tables_done: int | None = None) -> None:
        now = self._clock()
        with self._lock:
            task = self._tasks.get(name)
            if task is None or now - task.logged < self.EVERY:
                return
            task.logged = now
        self.log.info("%s: %s", name, stage_line(task.stage, plain_bytes, task.total, now - task.stage_started,
                                                 tables_done, task.tables))

    def finished(self, name: str, ok: bool) -> None:
        with self._lock:
            task = self._tasks.pop(name, None)
        if task is not None:
            took = duration(self._clock() - task.started)
            # Not "FAILED": the failure has its own error line, which a log watch counts once.
            self.log.info("%s: %s %s", name, "done in" if ok else "stopped after", took)


def stage_line(stage: str, done: int, total: int | None, seconds: float, tables_done: int | None = None,
               tables: int | None = None) -> str:
    """How far a stage is, in words: `verifying 1.2 GiB of 4.0 GiB (30%), 25.0 MiB/s, 2m10s left`."""
    parts = [f"{stage} {human_size(done)}" + (f" of {human_size(total)} ({min(100, done * 100 // total)}%)"
                                              if total else "")]
    if tables and tables_done is not None:
        parts.append(f"{tables_done} of {tables} tables")
    if speed := rate(done, seconds):
        parts.append(f"{human_size(int(speed))}/s")
    if (left := eta(done, total, seconds)) is not None:
        parts.append(f"{duration(left)} left")
    return ", ".join(parts)
