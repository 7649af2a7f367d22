"""`tenangdb cleanup`: expire backups locally and remotely by a policy one can read.

Plan first (list what exists, ask `retention.plan` for a decision and a reason per item), show
it, then carry it out. Before a local copy is deleted because it is safe off-site, the remote
copy is checked again (when `cleanup.verify_cloud_exists`); a copy that fails the check keeps
the local folder and is marked for the next upload.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tenangdb.actions import catalog, cleanup_binlogs, offsite
from tenangdb.actions.backup import state_directory
from tenangdb.actions.upload import PROVING_METHODS, verify_remote
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import CleanupFailed, TenangDBError
from tenangdb.remote.rclone import Rclone, join
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository import identity, records, store
from tenangdb.repository.lock import DirectoryLock
from tenangdb.repository.naming import BackupRef
from tenangdb.retention import BACKUP, BINLOG, LOCAL, PARTIAL, REMOTE, Decision, Keep, Policy, plan

log = logging.getLogger("tenangdb.cleanup")


@dataclass
class Plan:
    decisions: list[Decision]
    entries: dict[str, catalog.Entry]
    rc: Rclone | None
    policy: Policy
    remote_error: str | None = None
    archive: cleanup_binlogs.Archive | None = None  # the binlog archive's files (kind BINLOG decisions)

    @property
    def deletions(self) -> list[Decision]:
        return [d for d in self.decisions if d.delete]

    @property
    def freed(self) -> int:
        return sum(d.item.size for d in self.deletions)


@dataclass
class Outcome:
    deleted: list[Decision] = field(default_factory=list)
    kept_back: list[tuple[Decision, str]] = field(default_factory=list)  # refused at the last check
    failed: list[tuple[Decision, str]] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(d.item.size for d in self.deleted)


def is_weekend() -> bool:
    """Saturday or Sunday where the run happens (cleanup.weekend_only)."""
    return datetime.now().astimezone().weekday() >= 5


def _keep(cfg, override=None) -> Keep:
    def pick(name: str) -> int:
        value = getattr(override, f"keep_{name}", None) if override is not None else None
        if value is None:
            value = getattr(cfg, f"keep_{name}")
        return value or 0
    return Keep(*(pick(n) for n in ("last", "daily", "weekly", "monthly", "yearly")))


def policy_from(loaded: LoadedConfig, *, databases: list[str] | None = None,
                max_age_days: int | None = None) -> Policy:
    cfg = loaded.settings.cleanup
    selected = databases if databases else (cfg.databases or None)
    local_age = max_age_days if max_age_days is not None else (cfg.max_age_days if cfg.age_based_cleanup else None)
    return Policy(
        local_max_age_days=local_age,
        remote_max_age_days=cfg.remote_retention_days,
        local_keep=_keep(cfg),
        remote_keep=_keep(cfg, cfg.remote),
        cleanup_uploaded=cfg.cleanup_uploaded_files,
        require_remote=loaded.settings.upload.enabled and cfg.verify_cloud_exists,
        require_verified=cfg.require_verified,
        databases=frozenset(selected) if selected else None,
    )


def make_plan(loaded: LoadedConfig, *, databases: list[str] | None = None, max_age_days: int | None = None,
              now: datetime | None = None) -> Plan:
    settings = loaded.settings
    root = Path(settings.backup.directory)
    # An empty mount point would read as "no local copies" in the plan.
    identity.check(root, state_directory(loaded), create=False)
    policy = policy_from(loaded, databases=databases, max_age_days=max_age_days)
    # The remote is the upload destination, whether uploads run after each backup or by hand.
    destination = settings.upload.destination
    if destination and not settings.upload.enabled and not _uploaded_to(root, destination):
        # Uploads off and nothing here ever went there: a placeholder (the original's example
        # config carries `remote:backup-folder`) is no remote to list, let alone expire.
        destination = None
    entries = catalog.local_entries(root, destination)
    rc = None
    remote_error = None
    if destination:
        rc = Rclone(settings.upload)
        try:
            entries += catalog.remote_entries(rc, root)
        except TenangDBError as exc:
            # Without a listing nothing remote is deleted, and no local copy counts as safe
            # off-site beyond what its upload record says; the failure is reported.
            remote_error = str(exc)
            log.error("cannot list the remote backups, remote cleanup skipped: %s", exc)
    by_key = {e.key: e for e in entries}
    remote_rel = {e.rel: e for e in entries if e.location == REMOTE and e.kind == BACKUP}
    items = []
    for entry in entries:
        if entry.location == LOCAL and entry.kind == BACKUP and rc is not None and remote_error is None:
            # The record says verified; the listing must agree the copy is still there, whole in size.
            twin = remote_rel.get(entry.rel)
            entry.remote_verified = entry.remote_verified and twin is not None and twin.complete
        items.append(entry.item())
    now = now or datetime.now(timezone.utc)
    decisions = plan(items, policy, now)
    # The binlog archive follows the backups that stay (retention rule 7).
    binlog_decisions, archive = cleanup_binlogs.plan(loaded, decisions, by_key, rc, remote_error is None, now)
    return Plan(decisions + binlog_decisions, by_key, rc, policy, remote_error, archive)


def _uploaded_to(root: Path, destination: str) -> bool:
    """Whether any backup under `root` was ever uploaded (or tried) to this destination."""
    return any((record := records.read(path, records.UploadRecord)) is not None and record.destination == destination
               for path in records.upload_records(root))


def _reverify(loaded: LoadedConfig, rc: Rclone, entry: catalog.Entry) -> str | None:
    """Check the remote copy of a local backup again; None when it is whole, else why not."""
    folder = Path(entry.key)
    record = records.read_upload(folder)
    if record is None or not record.remote_path:
        return "no upload record names the remote copy"
    mode = loaded.settings.upload.verify
    if mode in ("off", "size"):
        mode = "hash"  # deleting the local copy needs more than sizes
    try:
        manifest = manifest_mod.load(folder)
        known = {name: {k: v for k, v in info.items() if k != "size"} for name, info in record.files.items()}
        check = verify_remote(rc, record.remote_path, manifest, mode, known,
                              manifest_bytes=(folder / manifest_mod.MANIFEST).read_bytes())
    except TenangDBError as exc:
        return str(exc)
    if check.method not in PROVING_METHODS:
        return f"the remote copy could only be checked by size ({check.method})"
    return None


def execute(loaded: LoadedConfig, the_plan: Plan) -> Outcome:
    outcome = Outcome()
    root = Path(loaded.settings.backup.directory)
    recheck = loaded.settings.cleanup.verify_cloud_exists
    with DirectoryLock(root) if root.is_dir() else _Nothing():
        # Remote first: a local copy is never removed while its own remote deletion is pending.
        _delete_remote(the_plan, root, outcome)
        remote_gone = {d.item.rel for d in the_plan.deletions if d.item.location == REMOTE}
        # Newest first: an increment kept back below keeps the parents it needs (retention rule 6).
        needed: set[str] = set()
        for decision in sorted(the_plan.deletions, key=lambda d: d.item.time or datetime.min.replace(
                tzinfo=timezone.utc), reverse=True):
            item = decision.item
            if item.location != LOCAL or item.kind == BINLOG:
                continue
            entry = the_plan.entries[item.key]
            if item.rel in needed:
                needed.add(item.parent or "")
                outcome.kept_back.append((decision, "a kept increment needs it (its chain)"))
                log.info("kept %s: an increment kept back needs it", item.key)
                continue
            try:
                # The remote copy is what this backup will live on as: prove it again first
                # (unless it expires in this same cleanup, when nothing relies on it).
                if (item.kind == BACKUP and item.remote_verified and recheck and the_plan.rc is not None
                        and item.rel not in remote_gone):
                    why = _reverify(loaded, the_plan.rc, entry)
                    if why:
                        _mark_not_uploaded(the_plan.rc, root, item.rel, why)
                        log.warning("kept %s: its remote copy failed the check before deletion: %s", item.key, why)
                        outcome.kept_back.append((decision, why))
                        needed.add(item.parent or "")
                        continue
                _remove_local(Path(item.key), item.kind)
                log.info("deleted local %s (%s)", item.key, decision.reason)
                outcome.deleted.append(decision)
            except (OSError, TenangDBError) as exc:
                message = getattr(exc, "strerror", None) or str(exc)
                log.error("could not delete %s: %s", item.key, message)
                outcome.failed.append((decision, str(message)))
        _forget_orphan_records(root, the_plan)
        if the_plan.archive is not None:
            cleanup_binlogs.execute(the_plan.rc, the_plan.archive, the_plan.deletions, outcome)
        for database in sorted({d.item.database for d in outcome.deleted if d.item.location == LOCAL}):
            try:
                store.refresh_latest(root, database)
            except OSError as exc:
                log.warning("could not update %s: %s", root / store.LATEST, exc.strerror or exc)
    return outcome


def _delete_remote(the_plan: Plan, root: Path, outcome: Outcome) -> None:
    """All expired remote copies in three rclone calls: their manifests first (so an interrupted
    cleanup never leaves a folder that looks whole), then their other files, then the folders."""
    doomed = [d for d in the_plan.deletions if d.item.location == REMOTE and d.item.kind != BINLOG]
    if not doomed or the_plan.rc is None:
        return
    rc = the_plan.rc
    manifests, others, months = [], [], set()
    for decision in doomed:
        entry = the_plan.entries[decision.item.key]
        for name in entry.files:
            (manifests if name == manifest_mod.MANIFEST else others).append(f"{entry.rel}/{name}")
        if entry.legacy and not entry.files:
            others.append(entry.rel)  # the original's file backups are single files
        if entry.record:
            others.append(entry.record)
        months.add(entry.rel.rsplit("/", 1)[0])
    try:
        rc.delete_listed(manifests)
        rc.delete_listed(others)
        if rc.has_folders:
            for month in sorted(months):
                rc.remove_empty_folders(join(rc.destination, month))
    except TenangDBError as exc:
        for decision in doomed:
            outcome.failed.append((decision, str(exc)))
        log.error("could not delete the expired remote copies: %s", exc)
        return
    for decision in doomed:
        folder = the_plan.entries[decision.item.key].ref.path(root)
        record = records.upload_path(folder)
        if folder.is_dir():
            # The local copy stays: remember that its remote copy expired on purpose, or every
            # backup run would upload it again and the next cleanup delete it again.
            data = records.read_upload(folder) or records.UploadRecord()
            records.write(record, data.model_copy(update={
                "ok": False, "expired": True,
                "expired_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        else:
            records.remove(record)
        log.info("deleted remote %s (%s)", decision.item.key, decision.reason)
        outcome.deleted.append(decision)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _remove_local(path: Path, kind: str) -> None:
    if kind == PARTIAL:
        shutil.rmtree(path)
        return
    # Rename it to a staging name first (atomic): a delete that fails or is interrupted leaves
    # either the whole backup or an unfinished-looking `.partial` folder that a later cleanup
    # removes — never a damaged folder that still looks like a backup.
    doomed = path.parent / f".{path.name}.deleting.partial"
    os.rename(path, doomed)
    if doomed.is_dir():
        shutil.rmtree(doomed)
    else:
        doomed.unlink()  # a legacy .sql file or archive
    records.remove(records.verify_path(path))
    month = path.parent
    try:
        month.rmdir()  # an emptied month folder goes too (fails harmlessly when not empty)
    except OSError:
        pass


def _mark_not_uploaded(rc: Rclone, root: Path, rel: str, why: str) -> None:
    """The remote copy failed its check before the local one was deleted: recorded in both
    places, so the next upload repairs it and no other machine trusts it meanwhile."""
    offsite.record_check(rc, root, rel, ok=False, how="re-verification", error=why)


def _forget_orphan_records(root: Path, the_plan: Plan) -> None:
    """Upload records whose backup exists in neither place are dropped (remote known only)."""
    if the_plan.rc is None or the_plan.remote_error is not None:
        return
    remote_alive = {e.rel for e in the_plan.entries.values() if e.location == REMOTE} - {
        d.item.rel for d in the_plan.decisions if d.delete and d.item.location == REMOTE}
    for path in records.upload_records(root):
        parsed = records.parse_record_name(path.name)
        if not parsed:
            continue
        folder = path.parent / parsed[0]
        if not folder.exists() and str(BackupRef.from_path(folder)) not in remote_alive:
            records.remove(path)


def summary(the_plan: Plan) -> dict[tuple[str, str], int]:
    kept: dict[tuple[str, str], int] = {}
    for decision in the_plan.decisions:
        if not decision.delete and decision.item.kind == BACKUP:
            key = (decision.item.database, decision.item.location)
            kept[key] = kept.get(key, 0) + 1
    return kept


def check_outcome(outcome: Outcome, the_plan: Plan) -> None:
    if outcome.failed:
        first = outcome.failed[0]
        raise CleanupFailed(f"{len(outcome.failed)} deletion(s) failed; first: {first[0].item.key}: {first[1]}")
    if the_plan.remote_error:
        raise CleanupFailed(f"remote cleanup skipped: {the_plan.remote_error}")
    if the_plan.archive is not None and the_plan.archive.error:
        raise CleanupFailed(the_plan.archive.error)
