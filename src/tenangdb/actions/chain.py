"""`tenangdb backup` from end to end: the backups, then checking them, shipping them off-site and
expiring old ones, and the one exit code that sums it all up.

The steps after the backups run whatever failed before them: an upload still ships what
verified, a cleanup still runs when the upload failed (the disk must not fill). Backups
committed with losses under backup.fidelity: strict count as failed but are kept, verified and
uploaded like the others: a lossy copy can still save the day.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

from tenangdb.actions import backup as backup_action
from tenangdb.actions import observe
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import EXIT_BACKUP, EXIT_CLEANUP, EXIT_OK, EXIT_UPLOAD, EXIT_VERIFY, TenangDBError
from tenangdb.fileio import human_size

# The lines a backup run has always logged, under the logger name they have always had.
log = logging.getLogger("tenangdb")


@dataclass
class Outcome:
    results: list  # backup.Result of each database
    unverified: list = field(default_factory=list)  # testrestore.Outcome of each new backup that failed
    upload_ok: bool | None = None  # None: no upload was due
    cleanup_ok: bool | None = None  # None: no cleanup was due
    exit_code: int = EXIT_OK


def exit_code(*, backups_failed: bool, verify_failed: bool, upload_failed: bool, cleanup_failed: bool) -> int:
    """The most serious failure decides: a backup (4), a verification (7), an upload (5), then
    the cleanup (6)."""
    for failed, code in ((backups_failed, EXIT_BACKUP), (verify_failed, EXIT_VERIFY),
                         (upload_failed, EXIT_UPLOAD), (cleanup_failed, EXIT_CLEANUP)):
        if failed:
            return code
    return EXIT_OK


def run(loaded: LoadedConfig, the_plan: backup_action.Plan, *,
        progress: Callable[[], ContextManager[backup_action.Progress | None]] = contextlib.nullcontext) -> Outcome:
    """Back up the planned databases, verify the new backups (backup.verify_backup /
    test_restore), upload (inside the run, so its ping reports a failed upload), then clean up.

    `progress` opens the display the backups report to, for as long as they run.
    """
    with observe.backup_run(loaded, the_plan) as observer:
        with progress() as board:
            results = backup_action.run(loaded, the_plan, on_result=observer.database_done, progress=board)
        outcome = Outcome(results)
        _report_backups(results)
        kept = [r for r in results if r.path is not None]
        outcome.unverified = verify_new(loaded, kept)
        if outcome.unverified:
            log.error("%d of %d new backup%s failed verification", len(outcome.unverified), len(kept),
                      "" if len(kept) == 1 else "s")
        if loaded.settings.upload.enabled and kept:
            outcome.upload_ok = upload_pending(loaded, sorted({r.database for r in kept}))
            if not outcome.upload_ok:
                observer.problems.append("upload to the remote failed; the local backups are kept")
    if loaded.settings.cleanup.enabled and any(r.ok for r in results):
        outcome.cleanup_ok = cleanup(loaded)
    outcome.exit_code = exit_code(backups_failed=any(not r.ok for r in results),
                                  verify_failed=bool(outcome.unverified),
                                  upload_failed=outcome.upload_ok is False,
                                  cleanup_failed=outcome.cleanup_ok is False)
    return outcome


def _report_backups(results: list) -> None:
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    if not failed:
        log.info("all %d database backup%s succeeded", len(ok), "" if len(ok) == 1 else "s")
    elif ok:
        log.warning("partial success: %d succeeded, %d failed", len(ok), len(failed))
    else:
        log.error("all %d database backup%s failed", len(failed), "" if len(failed) == 1 else "s")
    if lossy := [r for r in results if r.path is not None and r.losses]:
        listed = ", ".join(f"{r.database} ({len(r.losses)})" for r in lossy)
        if any(not r.ok for r in lossy):
            log.error("backups with recorded losses count as failed (backup.fidelity: strict) and are "
                      "kept: %s", listed)
        else:
            log.warning("backups with recorded losses (see tenangdb list, docs/fidelity.md): %s", listed)


def verify_new(loaded: LoadedConfig, results: list) -> list:
    """backup.test_restore / backup.verify_backup: check each new backup; the failures."""
    cfg = loaded.settings.backup
    if not results or not (cfg.test_restore or cfg.verify_backup):
        return []
    from tenangdb.actions import verify

    def report(outcome) -> None:
        if outcome.ok:  # a failure is logged by verify_each
            log.info("%s: %s passed (%s)", outcome.database, outcome.name, outcome.method)

    outcomes = verify.verify_each(loaded, [r.path for r in results], test_restore=cfg.test_restore,
                                  on_outcome=report)
    return [outcome for outcome in outcomes if not outcome.ok]


def upload_pending(loaded: LoadedConfig, databases: list[str]) -> bool:
    """Upload every backup of these databases not yet on the remote (earlier failures too)."""
    from tenangdb.actions import upload

    try:
        results = upload.run(loaded, databases=databases)
    except TenangDBError as exc:
        log.error("upload failed: %s", exc)
        return False
    observe.uploaded(loaded, results)
    failed = [r for r in results if not r.ok]
    if failed:
        log.error("%d of %d upload%s failed; the local backups are kept and the next run retries",
                  len(failed), len(results), "" if len(results) == 1 else "s")
        return False
    return True


def cleanup(loaded: LoadedConfig) -> bool:
    """cleanup.enabled: expire old backups by the policy, as `tenangdb cleanup --yes` would."""
    from tenangdb.actions import cleanup as action

    if loaded.from_original:
        from tenangdb.config.original import unreviewed_cleanup
        log.warning("cleanup after backup: %s", unreviewed_cleanup(loaded.path))
        try:
            the_plan = action.make_plan(loaded)
            action.check_outcome(action.Outcome(), the_plan)
        except TenangDBError as exc:
            log.error("cleanup after backup failed: %s", exc)
            return False
        log.info("cleanup (dry run): would delete %d, freeing %s", len(the_plan.deletions),
                 human_size(the_plan.freed))
        return True
    if loaded.settings.cleanup.weekend_only and not action.is_weekend():
        log.info("cleanup after backup skipped: cleanup.weekend_only and today is not Saturday or Sunday")
        return True
    try:
        started = time.monotonic()
        the_plan = action.make_plan(loaded)
        outcome = action.execute(loaded, the_plan)
        observe.cleaned(loaded, the_plan, outcome, time.monotonic() - started)
        log.info("cleanup: deleted %d, freed %s", len(outcome.deleted), human_size(outcome.freed))
        action.check_outcome(outcome, the_plan)
    except TenangDBError as exc:
        log.error("cleanup after backup failed: %s", exc)
        return False
    return True
