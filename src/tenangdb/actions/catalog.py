"""What backups exist, locally and on the remote, and what is known about each.

Used by `list` (to show) and `cleanup` (to decide). Times come from each manifest's
`started_at`; a folder without a valid manifest is reported as not a backup, never guessed.
"""

from __future__ import annotations

import logging
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tenangdb import orphans
from tenangdb.actions.upload import PROVING_METHODS, check_local
from tenangdb.errors import VerifyFailed
from tenangdb.remote.rclone import Rclone, join
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository import chains, legacy, lock, records, store
from tenangdb.repository.manifest import Manifest
from tenangdb.repository.naming import BackupRef, is_month, is_staging, parse_backup_name
from tenangdb.retention import BACKUP, FOREIGN, LOCAL, PARTIAL, REMOTE, Item
from tenangdb.stream.crypto import key_needed

log = logging.getLogger("tenangdb.catalog")
BINLOG_MIRROR = ".binlog"  # {destination}/.binlog/: the binlog archive off-site


@dataclass
class Entry:
    database: str
    location: str
    rel: str                 # {db}/{YYYY-MM}/{name}
    key: str                 # local path or rclone path
    kind: str = BACKUP
    time: datetime | None = None
    size: int = 0
    encrypted: bool | None = None
    complete: bool = False
    verified: bool = False
    verified_how: str | None = None   # local: checksums or test-restore:sandbox|server; remote: sha256/md5/sha1/download/size
    verified_at: str | None = None
    proof: str | None = None  # a passing test restore: "content proven", "loaded, objects present", ...
    uploaded: str | None = None       # local: "yes (sha256)", "failed", or None
    remote_verified: bool = False
    problem: str | None = None
    in_progress: bool = False  # local partials: a run holds the directory lock, so it is being written
    files: list[str] = field(default_factory=list)  # remote: the stored files, relative to the folder
    record: str | None = None  # remote: the backup's record, relative to the destination
    losses: list[dict] = field(default_factory=list)  # what the backup does not hold exactly (manifest)
    # Made by the original TenangDB (repository/legacy.py): no manifest, so nothing is proven
    # of it; its time is the local time in its name.
    legacy: bool = False
    # Encrypted backups: "passphrase" or the recipients' fingerprints (comma-separated), and
    # whether the configured keys include one that decrypts it (set by mark_keys).
    needs_key: str | None = None
    key_available: bool | None = None
    key_mode: str | None = field(default=None, repr=False)
    key_fingerprints: list[str] = field(default_factory=list, repr=False)
    # An increment of a physical backup: the rel of its parent, which it restores only with
    # (repository/chains.py); retention keeps it as long as this backup is kept.
    parent: str | None = None

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def ref(self) -> BackupRef | None:
        return BackupRef.parse(self.rel)

    def item(self) -> Item:
        return Item(key=self.key, database=self.database, location=self.location, rel=self.rel, kind=self.kind,
                    time=self.time, size=self.size, complete=self.complete, verified=self.verified,
                    remote_verified=self.remote_verified, parent=self.parent)

    def as_json(self) -> dict:
        data = asdict(self)
        for internal in ("files", "record", "key_mode", "key_fingerprints"):
            data.pop(internal)
        data["name"] = self.name
        data["time"] = self.time.isoformat() if self.time else None
        return data


def _manifest_time(manifest: Manifest) -> datetime | None:
    try:
        when = datetime.fromisoformat(manifest.started_at)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def _size(path: Path) -> int:
    # A running backup deletes files under us (mydumper's sealed plaintext): gone counts as 0.
    def size_of(p: Path) -> int:
        try:
            return p.stat().st_size if p.is_file() and not p.is_symlink() else 0
        except FileNotFoundError:
            return 0
    if path.is_file():
        return size_of(path)
    return sum(size_of(p) for p in path.rglob("*"))


def local_entries(root: Path, destination: str | None) -> list[Entry]:
    """Every entry of the layout `{db}/{YYYY-MM}/{entry}` under the backup directory."""
    found: list[Entry] = []
    if not root.is_dir():
        return found
    running = lock.holder(root)
    for db_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and not store.is_latest_folder(p)):
        for month in sorted(_children(db_dir)):
            if not month.is_dir() or not is_month(month.name):
                if not month.exists():
                    continue  # an emptied month removed by a cleanup while we looked
                found.append(Entry(db_dir.name, LOCAL, f"{db_dir.name}/{month.name}", str(month), kind=FOREIGN,
                                   problem="not a month folder"))
                continue
            for entry in sorted(_children(month)):
                if entry.is_file() and records.parse_record_name(entry.name):
                    continue  # our own records, shown through their backups
                try:
                    item = _local_entry(root, db_dir.name, entry, destination)
                except FileNotFoundError:
                    # A backup committing (its staging folder renamed) or a cleanup deleting while
                    # we looked: it is not there now, and a committed one shows on the next look.
                    continue
                # Only what the running run made: a leftover of an earlier, killed run is older
                # than the lock the current one took.
                item.in_progress = (item.kind == PARTIAL and running is not None and item.time is not None
                                    and item.time.timestamp() >= running.since)
                found.append(item)
    return found


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:  # removed while we looked (a cleanup of an emptied month)
        return []


def _local_entry(root: Path, db_folder: str, path: Path, destination: str | None) -> Entry:
    rel = path.relative_to(root).as_posix()
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        if not path.is_symlink():
            raise  # gone while we looked
        is_dir = False  # a dangling link: shown, as not a backup
    if is_dir and is_staging(path.name):
        return Entry(db_folder, LOCAL, rel, str(path), kind=PARTIAL, time=_mtime(path), size=_size(path))
    if (old := legacy.detect(path)) is not None:
        # Kept and expired by the same rules as ours; never counted as verified.
        return Entry(old.database, LOCAL, rel, str(path), time=old.time, size=_size(path), complete=True,
                     legacy=True)
    if not is_dir or not parse_backup_name(path.name):
        return Entry(db_folder, LOCAL, rel, str(path), kind=FOREIGN, size=_size(path),
                     problem="not a backup folder name")
    try:
        manifest = manifest_mod.load(path)
    except VerifyFailed as exc:
        if not path.exists():
            raise FileNotFoundError(str(path)) from None  # deleted by a cleanup while we looked
        return Entry(db_folder, LOCAL, rel, str(path), kind=FOREIGN, size=_size(path), problem=str(exc))
    entry = Entry(manifest.database, LOCAL, rel, str(path), time=_manifest_time(manifest),
                  size=_size(path), encrypted=manifest.encryption.enabled, losses=manifest.loss_records(),
                  key_mode=manifest.encryption.effective_mode, key_fingerprints=manifest.encryption.fingerprints,
                  parent=chains.parent_rel(manifest))
    if entry.time is None:
        return Entry(db_folder, LOCAL, rel, str(path), kind=FOREIGN, size=entry.size,
                     problem="manifest has no valid started_at")
    try:
        check_local(path)
        entry.complete = True
    except (VerifyFailed, OSError) as exc:
        entry.problem = str(exc)
    checked = records.read_verify(path)
    if checked and entry.complete:
        entry.verified = checked.ok
        entry.verified_how = checked.method if checked.ok else f"{checked.method} failed"
        if checked.ok:
            entry.proof = checked.proof
        entry.verified_at = checked.at
    if destination:
        upload = records.read_upload(path)
        if upload and upload.destination == destination:
            if upload.ok:
                entry.uploaded = f"yes ({upload.verify})"
                entry.remote_verified = upload.verify in PROVING_METHODS
            else:
                entry.uploaded = "expired" if upload.expired else "failed"
    return entry


def remote_entries(rc: Rclone, root: Path) -> list[Entry]:
    """The backups under the destination, read from one listing and one download of the manifests."""
    listing = rc.list(rc.destination) or []
    folders: dict[BackupRef, dict[str, int]] = {}
    found: list[Entry] = []
    record_names: set[str] = set()
    for remote_file in listing:
        parts = remote_file.path.split("/")
        if parts[0] == BINLOG_MIRROR:
            continue  # the binlog archive's mirror (actions/binlog_offsite.py): not backups, never cleaned up here
        if len(parts) == 3 and records.parse_record_name(parts[2]):
            record_names.add(remote_file.path)  # a backup's record, read with its backup
            continue
        if len(parts) == 3 and (old := legacy.by_name(parts[2], folder=False)):
            # The original uploaded its file backups as `{db}/{YYYY-MM}/{file}`.
            found.append(Entry(old[0], REMOTE, remote_file.path, join(rc.destination, remote_file.path),
                               time=old[1], size=remote_file.size, complete=True, legacy=True))
            continue
        if len(parts) < 4:
            found.append(Entry(parts[0] if len(parts) > 1 else "", REMOTE, remote_file.path,
                               join(rc.destination, remote_file.path), kind=FOREIGN, size=remote_file.size,
                               problem="a file outside any backup folder"))
            continue
        folders.setdefault(BackupRef(*parts[:3]), {})["/".join(parts[3:])] = remote_file.size
    if not folders:
        return found
    # The manifests name every object and its row counts: named like a download, so that the
    # next run removes what a run killed here leaves (orphans.py).
    scratch = Path(tempfile.mkdtemp(prefix=f"{orphans.REMOTE_PREFIX}{orphans.token()}-"))
    try:
        rc.fetch_matching(scratch, [f"/*/*/*/{manifest_mod.MANIFEST}", "/*/*/.*.upload.json"],
                          "download of the remote manifests and records")
        for ref, files in sorted(folders.items(), key=lambda item: str(item[0])):
            entry = _remote_entry(rc, root, scratch, ref, files)
            if records.remote_record_rel(str(ref)) in record_names:
                entry.record = records.remote_record_rel(str(ref))
            found.append(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return found


def _remote_entry(rc: Rclone, root: Path, scratch: Path, ref: BackupRef, files: dict[str, int]) -> Entry:
    rel, db_folder = str(ref), ref.db
    key = join(rc.destination, rel)
    size = sum(files.values())
    if manifest_mod.MANIFEST not in files:
        if old := legacy.by_name(ref.name, folder=True, files=list(files)):
            # A mydumper folder the original uploaded: kept and expired by the same rules, never
            # counted as verified (nothing records its checksums).
            return Entry(old[0], REMOTE, rel, key, time=old[1], size=size, complete=True, legacy=True,
                         files=sorted(files))
        return Entry(db_folder, REMOTE, rel, key, kind=FOREIGN, size=size,
                     problem="no manifest: an unfinished upload or not a backup")
    try:
        manifest = manifest_mod.load(ref.path(scratch))
    except VerifyFailed as exc:
        return Entry(db_folder, REMOTE, rel, key, kind=FOREIGN, size=size, problem=str(exc))
    when = _manifest_time(manifest)
    if when is None:
        return Entry(db_folder, REMOTE, rel, key, kind=FOREIGN, size=size, problem="manifest has no valid started_at")
    entry = Entry(manifest.database, REMOTE, rel, key, time=when, size=size,
                  encrypted=manifest.encryption.enabled, files=sorted(files), losses=manifest.loss_records(),
                  key_mode=manifest.encryption.effective_mode, key_fingerprints=manifest.encryption.fingerprints,
                  parent=chains.parent_rel(manifest))
    found = manifest.compare({name: sz for name, sz in files.items() if name != manifest_mod.MANIFEST})
    if not found:
        entry.complete = True
    else:
        wrong = sorted(found.missing + found.unexpected) or sorted(name for name, _, _ in found.wrong_size)
        entry.problem = f"{wrong[0]}: missing, unexpected or of the wrong size"
    # The record on the remote is the one every machine shares; this machine's own record
    # stands in for copies uploaded before records were kept there.
    # (The one on the remote is about that copy whatever name this machine's rclone config
    # gives the remote.)
    upload = records.read(scratch / records.remote_record_rel(rel), records.UploadRecord)
    if upload is None:
        upload = records.read_upload(ref.path(root))
        if upload is None or upload.destination != rc.destination:
            return entry
    if upload.ok:
        entry.verified_how = upload.check or upload.verify
        entry.verified_at = upload.checked_at or upload.verified_at
        entry.proof = upload.proof
        entry.verified = entry.complete and upload.verify in PROVING_METHODS
    elif upload.failed_at and entry.complete:
        # A later check found the copy damaged: not a backup to restore from or to keep in
        # place of a good one, until an upload repairs it.
        entry.complete = False
        entry.verified_how = f"{upload.check or 'check'} failed"
        entry.verified_at = upload.failed_at
        entry.problem = f"failed verification at {upload.failed_at}: {upload.error}"
    return entry


def mark_keys(entries: list[Entry], identities: list) -> None:
    """Say for each encrypted backup which key it needs and whether `identities` (the
    configured age identities and passphrase) hold it."""
    for entry in entries:
        if entry.encrypted and entry.key_mode:
            entry.needs_key, entry.key_available = key_needed(entry.key_mode, entry.key_fingerprints, identities)
