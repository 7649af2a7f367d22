"""The metrics state file: what one-shot runs leave behind for the exporter and the textfile.

Runs are separate processes, so counters live in a JSON file. Every change is a
read-modify-write under an exclusive flock on a sibling lock file (the state file itself is
replaced by rename, so it cannot carry the lock), and the new content is written to a temp
file, fsynced and renamed over the old one: readers never see half a file and two concurrent
runs never lose each other's updates.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from tenangdb.fileio import write_atomically

log = logging.getLogger("tenangdb.metrics")

FORMAT = 1
FILE_MODE = 0o640
DIR_MODE = 0o750
# The original's buckets: a backup takes from a second to an hour.
BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
LOCK_WAIT = 30.0

# section → depth of label nesting before the leaf record (a dict of numbers).
SECTIONS = {
    "backup": 1, "upload": 1, "restore": 1, "restore_test": 1, "verify": 1, "drill": 1,
    "retained": 1, "cleanup": 1, "notify": 1, "run": 0, "cleanup_run": 0,
    # The binlog archiver, per server ("hostname/server_id"), and the point-in-time window per
    # database (restores are per database and so are their base backups).
    "binlog": 1, "pitr": 1,
}
# The sections of the original TenangDB's metrics.json (it has no "format").
ORIGINAL_SECTIONS = ("system", "backups", "uploads", "restores", "cleanup")


class StateCorrupted(Exception):
    pass


def empty() -> dict[str, Any]:
    state: dict[str, Any] = {name: {} for name in SECTIONS}
    state["format"] = FORMAT
    return state


def new_histogram() -> dict[str, Any]:
    return {"buckets": [0] * len(BUCKETS), "sum": 0.0, "count": 0}


def observe(histogram: dict[str, Any], value: float) -> None:
    for i, bound in enumerate(BUCKETS):
        if value <= bound:
            histogram["buckets"][i] += 1
            break
    histogram["sum"] += value
    histogram["count"] += 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise StateCorrupted(f"{where} is not an object")
    for key, value in record.items():
        if isinstance(value, dict) and key == "duration":
            for status, hist in value.items():
                _check_histogram(hist, f"{where}.duration.{status}")
        elif not _number(value):
            raise StateCorrupted(f"{where}.{key} is not a non-negative number")


def _check_histogram(hist: Any, where: str) -> None:
    if not (isinstance(hist, dict) and isinstance(hist.get("buckets"), list)
            and len(hist["buckets"]) == len(BUCKETS) and all(_number(v) for v in hist["buckets"])
            and _number(hist.get("sum")) and _number(hist.get("count"))):
        raise StateCorrupted(f"{where} is not a histogram with {len(BUCKETS)} buckets")


def validate(data: Any) -> dict[str, Any]:
    """The state as stored, or StateCorrupted naming the first thing that is wrong."""
    if not isinstance(data, dict):
        raise StateCorrupted("the top level is not an object")
    if data.get("format") != FORMAT:
        raise StateCorrupted(f"format is {data.get('format')!r}, expected {FORMAT}")
    state = empty()
    for section, depth in SECTIONS.items():
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise StateCorrupted(f"{section} is not an object")
        if depth == 0:
            _check_record(value, section)
        else:
            for label, record in value.items():
                _check_record(record, f"{section}[{label!r}]")
        state[section] = value
    return state


def is_original(data: Any) -> bool:
    return (isinstance(data, dict) and "format" not in data and bool(data)
            and set(data) <= set(ORIGINAL_SECTIONS) and all(isinstance(v, dict) for v in data.values()))


def _time(value: Any, where: str) -> float | None:
    """Unix time from the original's RFC 3339 times; None for Go's zero time (never happened)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateCorrupted(f"{where} is not a time")
    # Go writes nanoseconds; Python reads at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip())
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise StateCorrupted(f"{where} is not an RFC 3339 time: {value!r}") from None
    if when.year <= 1:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _count_of(record: dict[str, Any], key: str, where: str) -> int | float:
    value = record.get(key, 0)
    if not _number(value):
        raise StateCorrupted(f"{where}.{key} is not a non-negative number")
    return value


def import_original(data: dict[str, Any]) -> dict[str, Any]:
    """The original's metrics.json in this format, keeping what it can state truthfully: counts,
    last times, sizes and totals. Its durations were the last run's only: no histogram can be
    made of them, so they serve the gauge form (metrics.duration_form); upload bytes were the
    last upload's and are left out."""
    state = empty()
    for section, ours, when_key in (("backups", "backup", "last_backup"), ("uploads", "upload", "last_upload"),
                                    ("restores", "restore", "last_restore")):
        records = data.get(section, {})
        for database, record in records.items():
            where = f"{section}[{database!r}]"
            if not isinstance(record, dict):
                raise StateCorrupted(f"{where} is not an object")
            converted: dict[str, Any] = {
                "success_total": _count_of(record, "success_count", where),
                "failed_total": _count_of(record, "failure_count", where),
            }
            when = _time(record.get(when_key), f"{where}.{when_key}")
            if when is not None:
                converted["last_timestamp"] = when
                if record.get("status") == "success":
                    converted["last_success_timestamp"] = when
                    if section == "backups" and _number(record.get("size_bytes")):
                        converted["size_bytes"] = record["size_bytes"]
                if _number(record.get("duration_seconds")):
                    converted["last_duration_seconds"] = record["duration_seconds"]  # duration_form: gauge
            state[ours][str(database)] = converted
    system = data.get("system", {})
    if _number(system.get("total_databases")):
        state["run"]["total_databases"] = system["total_databases"]
    when = _time(system.get("last_backup_process"), "system.last_backup_process")
    if when is not None:
        state["run"]["last_finished_timestamp"] = when
    cleanup = data.get("cleanup", {})
    if cleanup:
        run = state["cleanup_run"]
        run["success_total"] = _count_of(cleanup, "success_count", "cleanup")
        run["failed_total"] = _count_of(cleanup, "failure_count", "cleanup")
        when = _time(cleanup.get("last_cleanup"), "cleanup.last_cleanup")
        if when is not None:
            run["last_timestamp"] = when
            if _number(cleanup.get("duration_seconds")):
                run["duration_seconds"] = cleanup["duration_seconds"]
    return validate(state)


class StateFile:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.running_path = self.path.with_name(self.path.name + ".running")

    # Reading ----------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        """The current state without taking the lock (rename makes every read whole).
        A missing file is an empty state; the original TenangDB's file is imported; a damaged
        one raises StateCorrupted."""
        return self._read()[0]

    def _read(self) -> tuple[dict[str, Any], bool]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty(), False
        except UnicodeDecodeError:
            raise StateCorrupted("not UTF-8 text") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateCorrupted(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if is_original(data):
            return import_original(data), True
        return validate(data), False

    # Writing ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        _ensure_dir(self.path.parent)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.lock_path} stayed locked for {LOCK_WAIT:.0f}s") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply `change` to the stored state under the lock and store the result."""
        with self._locked():
            try:
                state, original = self._read()
                if original:
                    # Replaced by this format below; the original's file stays beside it.
                    kept = self.path.with_name(self.path.name + ".original")
                    log.warning("metrics state file %s is the original TenangDB's; its counts and times are "
                                "imported (the file is kept as %s)", self.path, kept.name)
                    if not kept.exists():
                        shutil.copy2(self.path, kept)
            except StateCorrupted as exc:
                kept = self.path.with_name(self.path.name + ".corrupt")
                log.warning("metrics state file %s is corrupted (%s); starting a new one "
                            "(the damaged copy is kept as %s)", self.path, exc, kept.name)
                try:
                    os.replace(self.path, kept)
                except OSError:
                    pass
                state = empty()
            new = copy.deepcopy(state)
            change(new)
            validate(new)
            write_atomically(self.path, (json.dumps(new, indent=1, sort_keys=True) + "\n").encode(), FILE_MODE)
            return new

    # Is a run in progress? ------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[None]:
        """Hold a shared flock while a run is in progress; it dies with the process, so
        `process_running` can never stay stuck at 1 after a crash."""
        _ensure_dir(self.path.parent)
        fd = os.open(self.running_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def is_running(self) -> bool:
        try:
            fd = os.open(self.running_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)
        return False



def _ensure_dir(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)


