"""Choosing the backup to restore or check, here or on the remote, the way the worst day needs.

`restore -b shop --latest` means "the newest good backup of shop": the newest that passed
verification, else the newest complete one, and if it turns out damaged when read, the one
before it, with a warning naming why. `restore --all` restores the newest backup of every
database. `verify --from-remote --latest|--all|--sample` and `drill` check remote copies and
record what they found on the remote (actions/offsite.py).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from tenangdb.actions import catalog, fetch, offsite
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import ConfigError, FetchFailed, InvalidInput, KeyUnavailable, VerifyFailed
from tenangdb.progress import Progress, Task
from tenangdb.remote.rclone import Rclone
from tenangdb.repository.naming import BackupRef, folder_name
from tenangdb.retention import BACKUP, REMOTE

log = logging.getLogger("tenangdb.recover")

T = TypeVar("T")


def parse_time(text: str) -> datetime:
    """`YYYY-MM-DD HH:MM[:SS]` (or ISO 8601), in UTC unless the text gives a zone."""
    value = text.strip()
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise InvalidInput(f"{text!r}: not a time (expected 'YYYY-MM-DD HH:MM:SS', UTC unless a zone such as "
                           "+02:00 is given)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass
class Catalogue:
    """The backups of one place (local or remote), per database, newest first."""

    location: str
    rc: Rclone | None = None
    by_database: dict[str, list[catalog.Entry]] = field(default_factory=dict)

    def of(self, database: str) -> list[catalog.Entry]:
        found = self.by_database.get(database)
        if found is None:
            # The folder name stands for the database when its own name is not a safe path.
            found = next((entries for entries in self.by_database.values()
                          if entries and entries[0].ref and entries[0].ref.db == folder_name(database)), [])
        return found


def load_catalogue(loaded: LoadedConfig, *, remote: bool, listed: bool = True) -> Catalogue:
    """The backups of one place; `listed` false: only the means to reach the remote."""
    root = Path(loaded.settings.backup.directory)
    if remote:
        if not loaded.settings.upload.destination:
            raise ConfigError("a remote backup was asked for but upload.destination is not set")
        rc = Rclone(loaded.settings.upload)
        entries, place = catalog.remote_entries(rc, root) if listed else [], Catalogue(REMOTE, rc)
    else:
        entries, place = catalog.local_entries(root, loaded.settings.upload.destination), Catalogue("local")
    for entry in entries:
        if entry.kind == BACKUP and entry.time is not None:
            place.by_database.setdefault(entry.database, []).append(entry)
    for found in place.by_database.values():
        found.sort(key=lambda e: (e.time, e.name), reverse=True)
    return place


def preference(entries: list[catalog.Entry], *, before: datetime | None = None) -> list[catalog.Entry]:
    """The complete backups in the order a restore should try them: the verified ones newest
    first, then the others newest first; with `before`, only those taken before it."""
    usable = [e for e in entries if e.complete and (before is None or e.time < before)]
    return [e for e in usable if e.verified] + [e for e in usable if not e.verified]


def why_chosen(choice: catalog.Entry, entries: list[catalog.Entry], before: datetime | None) -> str:
    """One line saying which backup and why: what an operator reads before a long restore."""
    newer = [e for e in entries if e.time > choice.time and (before is None or e.time < before)]
    when = choice.time.strftime("%Y-%m-%d %H:%M:%S UTC")
    if choice.verified:
        what = f"the newest verified backup ({choice.verified_how or 'verified'}"
        what += f"; {choice.proof})" if choice.proof else ")"
    else:
        what = "the newest complete backup (none is recorded as verified; it is verified now, before loading)"
    line = f"{choice.location} {choice.name} ({when}): {what}"
    if before is not None:
        line += f", taken before {before.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    if newer:
        reasons = sorted({("damaged" if e.problem else "not verified") for e in newer})
        line += f"; {len(newer)} newer backup{'s' if len(newer) > 1 else ''} passed over ({', '.join(reasons)})"
    return line


def describe(entries: list[catalog.Entry], limit: int = 6) -> str:
    shown = ", ".join(f"{e.name} ({'verified' if e.verified else 'damaged' if e.problem else 'not verified'})"
                      for e in entries[:limit])
    return shown + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


@contextmanager
def opened(loaded: LoadedConfig, entry: catalog.Entry, progress: Task | None = None) -> Iterator[Path]:
    """The backup's folder: the local one, or a private download of the remote copy."""
    if entry.location == REMOTE:
        with fetch.fetched(loaded, entry.key, progress=progress) as folder:
            yield folder
    else:
        yield Path(entry.key)


def found_damaged(loaded: LoadedConfig, place: Catalogue, entry: catalog.Entry, exc: VerifyFailed, how: str) -> None:
    """Remember on the remote that a remote copy failed when read (not for a missing key or a
    failed download, which say nothing about the copy)."""
    if place.rc is not None and not isinstance(exc, (KeyUnavailable, FetchFailed)):
        offsite.record_check(place.rc, Path(loaded.settings.backup.directory), entry.rel, ok=False, how=how,
                             error=str(exc))


def first_good(loaded: LoadedConfig, place: Catalogue, entries: list[catalog.Entry],
               use: Callable[[Path, catalog.Entry], T], *, how: str, progress: Task | None = None) -> T:
    """`use` the first backup in `entries` that proves whole when read. One that fails its
    verification is skipped for the next with a warning naming why (and, remote, recorded);
    a missing key is not the backup's fault and stops at once."""
    for index, entry in enumerate(entries):
        try:
            with opened(loaded, entry, progress) as folder:
                return use(folder, entry)
        except VerifyFailed as exc:
            found_damaged(loaded, place, entry, exc, how)
            if isinstance(exc, KeyUnavailable) or index == len(entries) - 1:
                raise
            following = entries[index + 1]
            log.warning("%s %s failed verification, so the one before it is used (%s): %s", entry.location,
                        entry.name, following.name, exc)
    raise VerifyFailed("no backup to try")  # entries was empty: callers check first


def pick(place: Catalogue, database: str, *, latest: bool, before: datetime | None,
         choose: Callable[[list[catalog.Entry]], catalog.Entry] | None = None) -> list[catalog.Entry]:
    """The backups of `database` a restore tries, in order. Without --latest/--before, one
    backup must be meant: the only one, or the operator's `choose` (on a terminal);
    otherwise an error lists the candidates."""
    entries = place.of(database)
    where = "on the remote" if place.location == REMOTE else "here"
    if not entries:
        raise InvalidInput(f"no backups of {database} {where}" + (
            "" if place.location == REMOTE else " (for the off-site copies, add --from-remote)"))
    if latest or before is not None:
        ordered = preference(entries, before=before)
        if not ordered:
            when = f" taken before {before.isoformat(sep=' ')}" if before is not None else ""
            raise InvalidInput(f"no complete backup of {database}{when} {where}: {describe(entries)}")
        log.info("restoring %s", why_chosen(ordered[0], entries, before))
        return ordered
    complete = [e for e in entries if e.complete]
    if len(complete) == 1:
        return complete
    if choose is not None and complete:
        return [choose(complete)]
    raise InvalidInput(f"{database} has {len(entries)} backups {where}; name one with -b, or pass --latest "
                       f"or --before TIME: {describe(entries)}")


def newest_set(place: Catalogue, databases: list[str] | None, before: datetime | None) -> dict[str, list[catalog.Entry]]:
    """For `restore --all`: per database, its backups in the order a restore tries them."""
    names = databases or sorted(place.by_database)
    unknown = [name for name in names if not place.of(name)]
    if unknown:
        raise InvalidInput(f"no backups of {', '.join(unknown)}"
                           f"{' on the remote' if place.location == REMOTE else ' here'}")
    chosen = {name: preference(place.of(name), before=before) for name in names}
    if empty := [name for name, entries in chosen.items() if not entries]:
        raise InvalidInput(f"no complete backup of {', '.join(empty)}"
                           + (f" taken before {before.isoformat(sep=' ')}" if before is not None else ""))
    return chosen


def remote_selection(place: Catalogue, *, mode: str, databases: list[str] | None = None, sample: int = 0,
                     rng: random.Random | None = None) -> list[catalog.Entry]:
    """The remote copies a `verify --from-remote --latest|--all|--sample N` checks, whatever
    their recorded state (a damaged one may have been repaired since)."""
    names = databases or sorted(place.by_database)
    if unknown := [name for name in names if not place.of(name)]:
        raise VerifyFailed(f"no remote backups of {', '.join(unknown)}")
    per_db = [place.of(name) for name in names]
    if mode == "latest":
        return [entries[0] for entries in per_db]
    if mode == "all":
        return [e for entries in per_db for e in reversed(entries)]
    older = [e for entries in per_db for e in entries[1:]]
    return sorted((rng or random.SystemRandom()).sample(older, min(sample, len(older))), key=lambda e: e.rel)


def checked(loaded: LoadedConfig, place: Catalogue, rel: str, outcome, how: str) -> None:
    """Record a finished check of a remote copy on the remote (a failure of this machine,
    such as a missing key or sandbox, says nothing about the copy and is not recorded)."""
    if place.rc is None:
        return
    root = Path(loaded.settings.backup.directory)
    if outcome.ok:
        offsite.record_check(place.rc, root, rel, ok=True, how=how, proof=outcome.proof)
    elif not outcome.environment:
        offsite.record_check(place.rc, root, rel, ok=False, how=how, error=outcome.reason)


def check_remote(loaded: LoadedConfig, place: Catalogue, rel: str, key: str, *, test_restore: bool,
                 target: str | None = None, how: str | None = None, progress: Progress | None = None):
    """Download one remote copy into a private folder, verify it (and with `test_restore`
    restore it into a scratch target and check it), record the result on the remote, and
    return the testrestore.Outcome, naming the remote copy rather than the download."""
    from tenangdb.actions import observe, testrestore, verify
    from tenangdb.logs import FAILED, security_event

    method = "test-restore" if test_restore else "checksums"
    # One task on the display: the download, then the verification of what it brought.
    shown = Task(progress, verify.task_name(key))
    try:
        with fetch.fetched(loaded, key, progress=shown) as folder:
            [outcome] = verify.verify_each(loaded, [folder], test_restore=test_restore, target=target,
                                           log_failures=False, progress=progress)
            # The remote copies named, not the download (an increment's parents are in it too).
            outcome.failures = [fetch.as_remote(text, folder).replace(str(folder), key) for text in outcome.failures]
            outcome.notes = [fetch.as_remote(text, folder).replace(str(folder), key) for text in outcome.notes]
    except VerifyFailed as exc:  # not downloaded, or no manifest there
        ref = BackupRef.parse(rel)
        outcome = testrestore.Outcome(path=Path(key), database=ref.db if ref else "unknown",
                                      name=ref.name if ref else rel, method=method, failures=[str(exc)],
                                      environment=isinstance(exc, testrestore.ENVIRONMENT))
        observe.verification(loaded, outcome)
        shown.done(False)
    outcome.path = Path(key)
    checked(loaded, place, rel, outcome, how or method)
    if not outcome.ok:
        security_event(log, "verify_failed", FAILED, "verification of the remote copy failed: %s", outcome.reason)
    return outcome


@dataclass
class Drilled:
    database: str
    outcome: object  # testrestore.Outcome
    duration: float  # download + verification + load + checks


def drill(loaded: LoadedConfig, *, databases: list[str] | None = None, target: str | None = None,
          on_result: Callable[[Drilled], None] | None = None, progress: Progress | None = None) -> list[Drilled]:
    """The worst day rehearsed: the newest off-site copy of each database downloaded, verified
    and test-restored, the whole recovery timed and recorded (metrics and the remote)."""
    import time

    from tenangdb.actions import observe
    from tenangdb.metrics import Recorder

    place = load_catalogue(loaded, remote=True)
    if not place.by_database:
        raise VerifyFailed(f"no backups on {loaded.settings.upload.destination} to drill")
    recorder = Recorder(loaded.settings.metrics)
    results = []
    try:
        for entry in remote_selection(place, mode="latest", databases=databases):
            started = time.monotonic()
            outcome = check_remote(loaded, place, entry.rel, entry.key, test_restore=True, target=target,
                                   how="drill", progress=progress)
            result = Drilled(entry.database, outcome, time.monotonic() - started)
            recorder.drill(entry.database, outcome.ok, result.duration)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        observe.verify_done(loaded)
    return results
