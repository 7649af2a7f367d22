"""The binlog archive's part of `tenangdb cleanup`: list the archived files (the local archive
and its remote mirror `{destination}/.binlog/`), ask `retention.plan_binlogs` which the kept
base backups of each place still need, and delete the rest.

Each place is decided by its own bases: a local restore uses the local backups and archive,
`restore --from-remote` the remote backups and the mirror. A file goes with its record first
(the record is the commit, here as in the archiver): an interrupted cleanup leaves at worst a
sealed file without a record, which the archiver (locally) or the next cleanup (remotely)
removes, never a record that promises a file which is gone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from tenangdb.actions import binlog_offsite, catalog
from tenangdb.errors import TenangDBError
from tenangdb.fileio import write_atomically
from tenangdb.remote.rclone import Rclone, join
from tenangdb.repository import binlogs as store
from tenangdb.repository.lock import DirectoryLock, LockUnavailable
from tenangdb.retention import BACKUP, BINLOG, LOCAL, REMOTE, Decision, Item, binlog_bases, plan_binlogs

log = logging.getLogger("tenangdb.cleanup")


@dataclass
class Archive:
    """What the plan found of the archive: per binlog item key, the files that are it (the
    record first), local paths or paths relative to the remote destination."""

    directory: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, store.Record] = field(default_factory=dict)  # the local items' records
    error: str | None = None  # the mirror could not be listed: nothing of it is deleted, cleanup exits 6


def plan(loaded, decisions: list[Decision], entries: dict[str, catalog.Entry], rc: Rclone | None,
         remote_ok: bool, now: datetime) -> tuple[list[Decision], Archive]:
    """The binlog decisions of both places (none when there is no archive)."""
    settings = loaded.settings
    archive = Archive(store.archive_directory(settings))
    out: list[Decision] = []
    records = store.records(archive.directory) if store.identity(archive.directory) is not None else []
    if records:
        items, not_offsite = _local_items(settings, archive, records)
        bases = binlog_bases(decisions, _positions(decisions, entries, LOCAL, None))
        out += _collapsed(plan_binlogs(items, bases, settings.cleanup.pitr_days, now, not_offsite))
    # The mirror is listed only where binlogs are archived: every other cleanup spares the call.
    if rc is not None and remote_ok and (records or settings.binlog.enabled):
        try:
            items, orphans = _remote_items(rc, archive)
        except TenangDBError as exc:
            archive.error, items, orphans = f"cannot list the binlog mirror: {exc}", [], []
            log.error("%s; its cleanup is skipped", archive.error)
        if items:
            bases = binlog_bases(decisions, _positions(decisions, entries, REMOTE, rc))
            out += _collapsed(plan_binlogs(items, bases, settings.cleanup.pitr_days, now)) + orphans
    return out, archive


def _collapsed(decisions: list[Decision]) -> list[Decision]:
    """Kept files in a row for the same reason as one line of the plan (an archive holds a file
    per few minutes: thousands); each deletion stays its own."""
    out: list[Decision] = []
    run: list[Decision] = []
    for decision in sorted(decisions, key=lambda d: d.item.seq):
        if run and (decision.delete or decision.reason != run[0].reason):
            out.append(_one_line(run))
            run = []
        if decision.delete:
            out.append(decision)
        else:
            run.append(decision)
    if run:
        out.append(_one_line(run))
    return out


def _one_line(run: list[Decision]) -> Decision:
    first, last = run[0].item, run[-1].item
    if len(run) == 1:
        return run[0]
    rel = f"{first.rel} .. {last.rel.rsplit('/', 1)[-1]} ({len(run)} files)"
    return Decision(replace(first, rel=rel, size=sum(d.item.size for d in run)), False, run[0].reason)


def _local_items(settings, archive: Archive, records: list[store.Record]) -> tuple[list[Item], frozenset[str]]:
    """The archive's committed files, and the keys of those not yet proven in the mirror while
    it is kept up (they stay until they are off-site)."""
    items = []
    for record in records:
        key = str(archive.directory / store.record_name(record.name))
        archive.records[key] = record
        items.append(_item(key, LOCAL, record.name, record.stored_size))
    if not binlog_offsite.wanted(settings):
        return items, frozenset()
    sent = binlog_offsite.uploaded(archive.directory)
    return items, frozenset(key for key, record in archive.records.items() if record.name not in sent)


def _item(key: str, location: str, name: str, size: int) -> Item:
    return Item(key=key, database="", location=location, rel=f"{binlog_offsite.REMOTE_FOLDER}/{name}", kind=BINLOG,
                size=size, seq=store.sequence(name))


def _remote_items(rc: Rclone, archive: Archive) -> tuple[list[Item], list[Decision]]:
    """The mirror's committed files (a record and its sealed files), from one listing, and the
    decisions on the leftovers of an interrupted delete."""
    listed = rc.list(binlog_offsite.remote_folder(rc), recursive=False) or []
    sealed: dict[str, list] = {}
    recorded = []
    for found in listed:
        if found.path.endswith(".json"):
            name = found.path.removesuffix(".json")
            if _is_binlog(name):
                recorded.append(name)
        elif not found.path.startswith("."):
            sealed.setdefault(store.sealed_of(found.path), []).append(found)
    prefix, items, orphans = binlog_offsite.REMOTE_FOLDER, [], []
    for name in recorded:
        key = join(binlog_offsite.remote_folder(rc), store.record_name(name))
        archive.files[key] = [f"{prefix}/{store.record_name(name)}"] + [f"{prefix}/{f.path}" for f in sealed.get(name, [])]
        items.append(_item(key, REMOTE, name, sum(f.size for f in sealed.get(name, []))))
    # Sealed files older than every record are what an interrupted delete left (an upload in
    # progress is always of a file after the recorded ones, so it is never taken for one).
    oldest = min((store.sequence(name) for name in recorded), default=None)
    for name, found in sealed.items():
        if oldest is not None and name not in recorded and _is_binlog(name) and store.sequence(name) < oldest:
            for one in found:
                key = join(binlog_offsite.remote_folder(rc), one.path)
                archive.files[key] = [f"{prefix}/{one.path}"]
                orphans.append(Decision(_item(key, REMOTE, name, one.size), True,
                                        "a sealed file without its record, older than the mirror (an interrupted "
                                        "delete)"))
    return items, orphans


def _is_binlog(name: str) -> bool:
    try:
        store.sequence(name)
    except store.ArchiveError:
        return False
    return True


def _positions(decisions: list[Decision], entries: dict[str, catalog.Entry], location: str,
               rc: Rclone | None) -> dict[str, tuple[int, datetime]]:
    """Per kept backup of `location`: the number of the binlog file of its recorded position
    and the end of the backup. A remote backup's manifest is read from its local twin when
    there is one (the same file), from the remote otherwise."""
    from tenangdb.actions.pitr import _base_binlog

    local_by_rel = {e.rel: e for e in entries.values() if e.location == LOCAL and e.kind == BACKUP}
    out = {}
    for decision in decisions:
        item = decision.item
        if decision.delete or item.kind != BACKUP or item.location != location or not item.complete:
            continue
        entry = entries[item.key]
        twin = local_by_rel.get(entry.rel) if location == REMOTE else None
        try:
            found = _base_binlog(twin or entry, with_time=True, rc=None if location == LOCAL or twin else rc)
        except TenangDBError as exc:
            log.warning("cannot read the binlog position of %s: %s", item.key, exc)
            continue
        if found is not None and _is_binlog(found[0]):
            out[item.key] = (store.sequence(found[0]), datetime.fromtimestamp(found[2], tz=timezone.utc))
    return out


def execute(rc: Rclone | None, archive: Archive, deletions: list[Decision], outcome) -> None:
    """Remote mirror first (its files are the copies a lost machine relies on least), then
    the local archive under the archiver's lock."""
    remote = [d for d in deletions if d.item.kind == BINLOG and d.item.location == REMOTE]
    if remote and rc is not None:
        try:
            rc.delete_listed([archive.files[d.item.key][0] for d in remote])  # the records first (or a lone file)
            rc.delete_listed([p for d in remote for p in archive.files[d.item.key][1:]])
            outcome.deleted += remote
            log.info("deleted %d binlog file(s) from the remote mirror", len(remote))
        except TenangDBError as exc:
            outcome.failed += [(d, str(exc)) for d in remote]
            log.error("could not delete the expired binlog files of the remote mirror: %s", exc)
    local = [d for d in deletions if d.item.kind == BINLOG and d.item.location == LOCAL]
    if not local:
        return
    try:
        with DirectoryLock(archive.directory):
            _delete_local(archive, local, outcome)
    except LockUnavailable as exc:
        # The archiver is in a cycle: the files stay for the next cleanup; nothing is wrong.
        outcome.kept_back += [(d, f"the binlog archive is busy ({exc})") for d in local]


def _delete_local(archive: Archive, doomed: list[Decision], outcome) -> None:
    gone = []
    for decision in doomed:
        record = archive.records[decision.item.key]
        try:
            store.delete(archive.directory, record)
        except OSError as exc:
            outcome.failed.append((decision, exc.strerror or str(exc)))
            log.error("could not delete %s: %s", decision.item.key, exc.strerror or exc)
            continue
        gone.append(record.name)
        outcome.deleted.append(decision)
        log.info("deleted local %s (%s)", decision.item.rel, decision.reason)
    sent = binlog_offsite.uploaded(archive.directory)
    if gone and any(name in sent for name in gone):
        # The mirror's bookkeeping forgets the names that no longer exist here.
        kept = {name: how for name, how in sent.items() if name not in gone}
        write_atomically(archive.directory / binlog_offsite.UPLOADED,
                         (json.dumps(kept, indent=1, sort_keys=True) + "\n").encode(), store.RECORD_MODE)
