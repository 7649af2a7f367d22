"""After-the-fact reporting for the actions: metrics and notifications.

The cli wraps an action in one of these; the action itself only hands over its results.
Nothing here may change an action's outcome: the adapters log and count their own failures.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from tenangdb.config.loader import LoadedConfig
from tenangdb.metrics import Recorder
from tenangdb.notify import Notifier
from tenangdb.repository import store
from tenangdb.repository.naming import parse_backup_name

if TYPE_CHECKING:  # the upload and cleanup hooks need not load the backup engine
    from tenangdb.actions.backup import Plan, Result


class BackupObserver:
    def __init__(self, loaded: LoadedConfig, plan: Plan) -> None:
        self.plan = plan
        self.metrics = Recorder(loaded.settings.metrics)
        self.notify = Notifier(loaded.settings.notify, on_failure=self.metrics.notify_failed)
        self.results: list[Result] = []
        self.problems: list[str] = []  # failures after the backups (uploads): the ping says fail

    def database_done(self, result: Result) -> None:
        self.results.append(result)
        self.metrics.backup(result.database, result.ok, result.duration, result.size)
        if result.path is not None:  # committed, even when backup.fidelity: strict failed it
            self.metrics.retained(result.database, "local", store.count_backups(self.plan.directory, result.database))
            self.metrics.fidelity_losses(result.database, len(result.losses))
        self.notify.event("backup.success" if result.ok else "backup.failure", database=result.database,
                          status="success" if result.ok else "failed", error=result.error,
                          duration=result.duration, size=result.size if result.path is not None else None,
                          losses=result.losses)

    def run_failed(self, error: str) -> None:
        """The run stopped early: every database it did not report on has no backup."""
        from tenangdb.actions.backup import Result

        reported = {r.database for r in self.results}
        for name in self.plan.known_databases:
            if name not in reported:
                self.database_done(Result(name, False, error=error))


@contextmanager
def backup_run(loaded: LoadedConfig, plan: Plan) -> Iterator[BackupObserver]:
    observer = BackupObserver(loaded, plan)
    started = time.monotonic()
    with observer.metrics.run():
        observer.metrics.run_started(len(plan.known_databases))
        observer.notify.ping("start")
        observer.notify.event("backup.start", status="running")
        try:
            yield observer
        except BaseException as exc:
            observer.run_failed(str(exc) or type(exc).__name__)
            raise
        finally:
            if plan.resolved is not None and plan.databases == ["all"]:
                observer.metrics.run_started(len(plan.resolved))  # now the count is known
            failed = [r for r in observer.results if not r.ok]
            status = "failed" if failed and len(failed) == len(observer.results) else (
                "partial" if failed else "success")
            summary = "; ".join(f"{r.database}: {r.error}" for r in failed)
            lossy = [r for r in observer.results if r.ok and r.losses]
            observer.notify.event("backup.finish", status=status, error=summary or None,
                                  duration=time.monotonic() - started,
                                  size=sum(r.size for r in observer.results if r.path is not None),
                                  losses=[{"database": r.database, **loss} for r in observer.results
                                          for loss in r.losses])
            noted = ("with recorded losses: " + ", ".join(f"{r.database} ({len(r.losses)})" for r in lossy)
                     if lossy else None)
            parts = [part for part in (summary, *observer.problems, noted) if part]
            if not failed:
                parts.insert(0, f"{len(observer.results)} database backup(s) succeeded")
            observer.notify.ping("fail" if failed or observer.problems else "success", "; ".join(parts))


def database_of(path: str | Path) -> str:
    """The database a backup folder belongs to, from its manifest or else its name."""
    from tenangdb.actions.verify import resolve_backup_path
    from tenangdb.repository import manifest as manifest_mod

    folder = Path(path).parent if Path(path).is_file() else Path(path)
    try:
        return manifest_mod.load(resolve_backup_path(path)).database
    except Exception:  # noqa: BLE001 - a damaged backup still needs a label
        parsed = parse_backup_name(folder.name)
        return parsed[0] if parsed else "unknown"


def verified(loaded: LoadedConfig, path: str | Path, ok: bool) -> None:
    recorder = Recorder(loaded.settings.metrics)
    recorder.verify(database_of(path), ok)


def verification(loaded: LoadedConfig, outcome) -> None:
    """Count one backup's verification (an actions.testrestore.Outcome) and, for a test
    restore, its result and measured restore time."""
    recorder = Recorder(loaded.settings.metrics)
    recorder.verify(outcome.database, outcome.ok)
    if outcome.method.startswith("test-restore"):
        recorder.restore_test(outcome.database, outcome.ok, outcome.restore_seconds,
                              content_proven=outcome.ok and outcome.content_proven)


def verify_done(loaded: LoadedConfig) -> None:
    Recorder(loaded.settings.metrics).write_textfile()


@contextmanager
def restore_run(loaded: LoadedConfig, database: str) -> Iterator[None]:
    recorder = Recorder(loaded.settings.metrics)
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        recorder.restore(database, ok, time.monotonic() - started)
        recorder.write_textfile()


def uploaded(loaded: LoadedConfig, results) -> None:
    """Upload outcomes into the metrics (never changing the upload's own outcome)."""
    if not results:
        return
    recorder = Recorder(loaded.settings.metrics)
    notifier = Notifier(loaded.settings.notify, on_failure=recorder.notify_failed)
    for result in results:
        recorder.upload(result.database, result.ok, result.duration, result.size if result.ok else 0)
        notifier.event("upload.success" if result.ok else "upload.failure", database=result.database,
                       status="success" if result.ok else "failed", error=result.error,
                       duration=result.duration, size=result.size if result.ok else None)
    recorder.write_textfile()


def cleaned(loaded: LoadedConfig, the_plan, outcome, duration: float | None = None) -> None:
    """Deleted and still-kept backups per database and place, and the cleanup as a whole."""
    recorder = Recorder(loaded.settings.metrics)
    recorder.cleanup_run(not outcome.failed and not the_plan.remote_error, duration, len(outcome.deleted),
                         outcome.freed)
    deleted: dict[tuple[str, str], int] = {}
    for decision in outcome.deleted:
        if decision.item.kind == "backup":
            key = (decision.item.database, decision.item.location)
            deleted[key] = deleted.get(key, 0) + 1
    for (database, location), count in sorted(deleted.items()):
        recorder.cleanup_deleted(database, location, count)
    kept: dict[tuple[str, str], int] = {}
    gone = {d.item.key for d in outcome.deleted}
    for decision in the_plan.decisions:
        item = decision.item
        if item.kind == "backup" and item.key not in gone:
            kept[(item.database, item.location)] = kept.get((item.database, item.location), 0) + 1
    for (database, location), count in sorted(kept.items()):
        recorder.retained(database, location, count)
    recorder.write_textfile()
