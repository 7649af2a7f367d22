"""Metrics: what runs record (state file), how it is shown (exposition), where it goes
(the exporter, the node_exporter textfile).

`Recorder` is the one entry point for runs. Every method swallows and logs its own errors:
metrics describe backups, they must never be the reason one fails.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

from tenangdb.config.schema import MetricsConfig
from tenangdb.metrics.state import StateCorrupted, StateFile, new_histogram, observe, write_atomically

log = logging.getLogger("tenangdb.metrics")

TEXTFILE_MODE = 0o644  # node_exporter runs as its own user and must read it


def _record(state: dict[str, Any], section: str, label: str) -> dict[str, Any]:
    return state[section].setdefault(label, {})


def _count(record: dict[str, Any], key: str, by: float = 1) -> None:
    record[key] = record.get(key, 0) + by


def _outcome(state: dict[str, Any], section: str, database: str, ok: bool, duration: float | None,
             when: float) -> dict[str, Any]:
    """The fields every family with success/failure shares."""
    record = _record(state, section, database)
    _count(record, "success_total" if ok else "failed_total")
    record["last_timestamp"] = when
    if ok:
        record["last_success_timestamp"] = when
    if duration is not None:
        hist = record.setdefault("duration", {}).setdefault("success" if ok else "failed", new_histogram())
        observe(hist, max(duration, 0.0))
        record["last_duration_seconds"] = max(duration, 0.0)  # metrics.duration_form: gauge
    return record


class Recorder:
    def __init__(self, cfg: MetricsConfig) -> None:
        self.enabled = cfg.enabled
        self.state = StateFile(cfg.state_path)
        self.textfile = Path(cfg.textfile) if cfg.textfile else None
        self.duration_form = cfg.duration_form

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        if not self.enabled:
            return
        try:
            self.state.update(change)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            log.warning("could not update the metrics state file %s: %s", self.state.path, exc)

    @contextmanager
    def run(self) -> Iterator[None]:
        """Mark a backup run as in progress for its lifetime; write the textfile after it."""
        try:
            holder = self.state.running() if self.enabled else nullcontext()
            holder.__enter__()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not mark the run in %s: %s", self.state.running_path, exc)
            holder = nullcontext()
        try:
            yield
        finally:
            self._update(lambda state: state["run"].__setitem__("last_finished_timestamp", time.time()))
            holder.__exit__(None, None, None)
            self.write_textfile()

    def run_started(self, total_databases: int) -> None:
        def change(state: dict[str, Any]) -> None:
            state["run"]["total_databases"] = total_databases
            state["run"]["last_timestamp"] = time.time()
        self._update(change)

    def backup(self, database: str, ok: bool, duration: float, size: int) -> None:
        def change(state: dict[str, Any]) -> None:
            record = _outcome(state, "backup", database, ok, duration, time.time())
            if ok:
                record["size_bytes"] = size
        self._update(change)

    def fidelity_losses(self, database: str, count: int) -> None:
        """How many things the newest committed backup of the database does not hold exactly."""
        self._update(lambda state: _record(state, "backup", database).__setitem__("fidelity_losses", count))

    def upload(self, database: str, ok: bool, duration: float, size: int) -> None:
        def change(state: dict[str, Any]) -> None:
            record = _outcome(state, "upload", database, ok, duration, time.time())
            if ok:
                _count(record, "bytes_total", size)
        self._update(change)

    def cleanup_deleted(self, database: str, location: str, count: int) -> None:
        if count:
            self._update(lambda state: _count(_record(state, "cleanup", database), location, count))

    def cleanup_run(self, ok: bool, duration: float | None, files: int, freed: int) -> None:
        """One cleanup as a whole (the original's tenangdb_cleanup_* series)."""
        def change(state: dict[str, Any]) -> None:
            run, now = state["cleanup_run"], time.time()
            _count(run, "success_total" if ok else "failed_total")
            _count(run, "files_removed_total", files)
            _count(run, "bytes_freed_total", freed)
            run["last_timestamp"] = now
            if ok:
                run["last_success_timestamp"] = now
            if duration is not None:
                run["duration_seconds"] = max(duration, 0.0)
        self._update(change)

    def retained(self, database: str, location: str, count: int) -> None:
        self._update(lambda state: _record(state, "retained", database).__setitem__(location, count))

    def verify(self, database: str, ok: bool) -> None:
        self._update(lambda state: _outcome(state, "verify", database, ok, None, time.time()))

    def restore_test(self, database: str, ok: bool, duration: float | None, content_proven: bool = False) -> None:
        """A test restore: its outcome, and on success the measured load time (the RTO) and
        whether every table's content was proven (1) or only the load and the objects (0)."""
        def change(state: dict[str, Any]) -> None:
            record = _outcome(state, "restore_test", database, ok, None, time.time())
            if ok and duration is not None:
                record["duration_seconds"] = duration
            if ok:
                record["content_proven"] = 1 if content_proven else 0
        self._update(change)

    def drill(self, database: str, ok: bool, duration: float) -> None:
        """A recovery drill of the newest off-site copy: download, verify, load and checks,
        timed as a whole (the recovery time an operator can expect on the worst day)."""
        def change(state: dict[str, Any]) -> None:
            record = _outcome(state, "drill", database, ok, None, time.time())
            if ok:
                record["duration_seconds"] = duration
        self._update(change)

    def restore(self, database: str, ok: bool, duration: float) -> None:
        self._update(lambda state: _outcome(state, "restore", database, ok, duration, time.time()))

    def binlog_cycle(self, server: str, ok: bool, *, last_archived: float | None = None, lag: float | None = None,
                     gaps: int | None = None, archived_until: float | None = None) -> None:
        """One archiver cycle: the newest archived event's time, the lag (how old the newest
        transaction not yet archived can be), and the gaps the archive has recorded so far. A
        cycle that failed or stopped early measures the lag from the last complete one, so the
        lag keeps growing while the archiver cannot archive."""
        def change(state: dict[str, Any]) -> None:
            record, now = _record(state, "binlog", server), time.time()
            record["last_timestamp"] = now
            _count(record, "success_total" if ok else "failed_total")
            if ok:
                record["last_success_timestamp"] = now
            for key, value in (("last_archived_timestamp", last_archived), ("lag_seconds", lag),
                               ("gaps_total", gaps), ("archived_until_timestamp", archived_until)):
                if value is not None:
                    record[key] = max(value, 0)
            if lag is None and "archived_until_timestamp" in record:
                record["lag_seconds"] = max(now - record["archived_until_timestamp"], 0)
        self._update(change)

    def pitr_windows(self, starts: dict[str, float]) -> None:
        """The oldest point each database can be restored to; a database without a window any
        more (no base backup with a gap-free chain) loses its series."""
        self._update(lambda state: state.__setitem__(
            "pitr", {database: {"window_start_timestamp": when} for database, when in starts.items()}))

    def notify_failed(self, kind: str) -> None:
        self._update(lambda state: _count(_record(state, "notify", kind), "failed_total"))

    def write_textfile(self) -> None:
        if not (self.enabled and self.textfile):
            return
        from tenangdb.metrics.exposition import render
        from tenangdb.metrics.state import empty

        try:
            try:
                state, readable = self.state.read(), True
            except StateCorrupted:
                state, readable = empty(), False
            write_atomically(self.textfile, render(state, running=self.state.is_running(), state_readable=readable,
                                                      duration_form=self.duration_form),
                             TEXTFILE_MODE)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not write the metrics textfile %s: %s", self.textfile, exc)
