"""`tenangdb upload`: copy committed backups off-site with rclone and prove the copy whole.

Per backup: check the local folder against its manifest, copy the listed files, verify them on
the remote (sizes always; the backend's hash where it has one, or a read-back), then copy the
manifest last and check it too. Only then is the backup recorded as uploaded, beside the local
folder. A failed step is retried with backoff; a backup that still fails stays local, untouched,
and the next run (or `tenangdb upload`) tries again.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tenangdb.actions import offsite
from tenangdb.actions.offsite import now_iso
from tenangdb.actions.backup import state_directory
from tenangdb.config.loader import LoadedConfig
from tenangdb.control import retry
from tenangdb.errors import TenangDBError, UploadFailed, VerifyFailed
from tenangdb.remote.rclone import Rclone, join, local_hashes
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository import identity, records, store
from tenangdb.repository.lock import DirectoryLock
from tenangdb.repository.manifest import Manifest
from tenangdb.repository.naming import BackupRef

log = logging.getLogger("tenangdb.upload")

# Verification methods strong enough to let cleanup delete the local copy.
PROVING_METHODS = ("sha256", "md5", "sha1", "download")


@dataclass
class UploadResult:
    database: str
    path: Path
    remote: str
    ok: bool
    size: int = 0
    duration: float = 0.0
    method: str = ""
    error: str | None = None
    remote_failed: bool = False  # the remote side failed (not this backup's local copy)


@dataclass
class RemoteCheck:
    method: str  # what proved it: sha256/md5/sha1 (backend hash), download, size, off
    bad_files: list[str] = field(default_factory=list)


def remote_path(rc: Rclone, root: Path, folder: Path) -> str:
    """`{destination}/{db}/{YYYY-MM}/{backup}` for a local backup folder."""
    return join(rc.destination, *BackupRef.from_path(folder.relative_to(root)).parts)


def check_local(folder: Path) -> Manifest:
    """The manifest, after checking the folder holds exactly its files at their sizes."""
    manifest = manifest_mod.load(folder)
    manifest.check_folder(folder)
    return manifest


def verify_remote(rc: Rclone, rpath: str, manifest: Manifest, mode: str, known: dict[str, dict[str, str]],
                  *, manifest_bytes: bytes | None = None, with_manifest: bool = True) -> RemoteCheck:
    """Compare the remote folder with the manifest; UploadFailed names the first difference.

    `known` holds hashes other than SHA-256 that were computed from the verified local files
    (e.g. MD5 for S3), keyed by file name then hash type. `manifest_bytes`, when given, is
    compared with the stored manifest byte for byte.
    """
    read_back = mode == "download" or (mode == "hash" and rc.hashing_reads)
    hash_type = rc.best_hash() if mode == "hash" and not read_back else None
    listing = rc.list(rpath, hash_type=hash_type)
    if listing is None:
        raise UploadFailed(f"{rpath}: the remote copy is missing", retryable=True)
    remote = {f.path: f for f in listing}
    expected = {entry.name: entry for entry in manifest.files}
    found = manifest.compare({name: f.size for name, f in remote.items() if name != manifest_mod.MANIFEST})
    if with_manifest and manifest_mod.MANIFEST not in remote:
        found.missing = sorted([*found.missing, manifest_mod.MANIFEST])
    if found.missing:
        raise UploadFailed(f"{join(rpath, found.missing[0])}: missing on the remote")
    if found.unexpected:
        raise UploadFailed(f"{join(rpath, found.unexpected[0])}: on the remote but not in the manifest")
    if mode == "off":
        return RemoteCheck("off")
    check = RemoteCheck("size")
    if found.wrong_size:
        name, size, listed = found.wrong_size[0]
        check.bad_files.append(name)
        raise _bad(check, f"{join(rpath, name)}: remote size is {size} bytes, the manifest says {listed}")
    if manifest_bytes is not None and with_manifest and remote[manifest_mod.MANIFEST].size != len(manifest_bytes):
        check.bad_files.append(manifest_mod.MANIFEST)
        raise _bad(check, f"{join(rpath, manifest_mod.MANIFEST)}: remote size differs from the local manifest")
    if read_back:
        for name, entry in expected.items():
            digest, _ = rc.sha256_of(join(rpath, name))
            if digest != entry.stored_sha256:
                check.bad_files.append(name)
                raise _bad(check, f"{join(rpath, name)}: SHA-256 of the remote copy (read back) does not "
                                  "match the manifest (damaged)")
        # On a local filesystem "hash" is a read-back too, and says which hash it compared.
        check.method = "download" if mode == "download" else "sha256"
    elif hash_type:
        proven = True
        for name, entry in expected.items():
            have = remote[name].hashes.get(hash_type, "")
            want = entry.stored_sha256 if hash_type == "sha256" else known.get(name, {}).get(hash_type)
            if not have or not want:
                proven = False  # e.g. a multipart object without a stored MD5: sizes only
                continue
            if have != want:
                check.bad_files.append(name)
                raise _bad(check, f"{join(rpath, name)}: {hash_type.upper()} of the remote copy does not "
                                  "match the backup (damaged)")
        check.method = hash_type if proven else "size"
    if manifest_bytes is not None and with_manifest:
        if rc.cat(join(rpath, manifest_mod.MANIFEST)) != manifest_bytes:
            check.bad_files.append(manifest_mod.MANIFEST)
            raise _bad(check, f"{join(rpath, manifest_mod.MANIFEST)}: differs from the local manifest")
    return check


def _bad(check: RemoteCheck, message: str) -> UploadFailed:
    exc = UploadFailed(message)
    exc.bad_files = list(check.bad_files)  # type: ignore[attr-defined]
    return exc


def upload_backup(loaded: LoadedConfig, rc: Rclone, root: Path, folder: Path) -> UploadResult:
    cfg = loaded.settings.upload
    rpath = remote_path(rc, root, folder)
    rel = str(BackupRef.from_path(folder.relative_to(root)))
    started = time.monotonic()
    database = BackupRef.from_path(folder).db
    try:
        manifest = check_local(folder)
        database = manifest.database
    except VerifyFailed as exc:
        return _failed(folder, rpath, database, started, f"local copy is damaged, not uploaded: {exc}")
    if cfg.encryption and not manifest.encryption.enabled:
        return _failed(folder, rpath, database, started, "not encrypted, so not uploaded (upload.encryption is "
                       "true; set backup.encryption for new backups)")
    manifest_bytes = (folder / manifest_mod.MANIFEST).read_bytes()
    size = manifest.stored_bytes() + len(manifest_bytes)
    known: dict[str, dict[str, str]] = {}

    def attempt() -> RemoteCheck:
        mode = cfg.verify
        hash_type = rc.best_hash() if mode == "hash" and not rc.hashing_reads else None
        log.info("%s: uploading %s to %s", database, folder.name, rpath)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The remote reports e.g. MD5 and the manifest holds SHA-256: hash the local
            # files once, proving them against the manifest while taking the MD5 — on
            # another core while rclone copies.
            hashing = pool.submit(_local_hashes, folder, manifest, hash_type) \
                if hash_type and hash_type != "sha256" and not known else None
            rc.copy_folder(folder, rpath, exclude=[f"/{manifest_mod.MANIFEST}"],
                           check=mode in ("off", "size"))
            if hashing is not None:
                known.update(hashing.result())
        check = verify_remote(rc, rpath, manifest, mode, known, with_manifest=False)
        rc.copy_file(folder / manifest_mod.MANIFEST, join(rpath, manifest_mod.MANIFEST))  # last
        # The data files are proven and nothing else was copied since: the manifest is
        # checked byte for byte (no second hashing of the dump).
        if mode != "off" and rc.cat(join(rpath, manifest_mod.MANIFEST)) != manifest_bytes:
            raise UploadFailed(f"{join(rpath, manifest_mod.MANIFEST)}: differs from the local manifest")
        # Last: what a machine without this one's records needs to trust the copy.
        offsite.put_record(rc, rel, proven(check))
        return check

    def proven(check: RemoteCheck) -> records.UploadRecord:
        stamp = now_iso()
        sizes = {entry.name: entry.stored_size for entry in manifest.files}
        base = manifest.binlog
        pitr = {"pitr_base": {"database": manifest.database, "file": base.file, "position": base.position,
                              "finished_at": manifest.finished_at}} \
            if base is not None and base.file is not None and base.position is not None else {}
        return records.UploadRecord(
            ok=True, destination=rc.destination, remote_path=rpath, uploaded_at=stamp, verified_at=stamp,
            verify=check.method, bytes=size,
            files={name: {"size": sizes[name], **hashes} for name, hashes in known.items()}, **pitr)

    def before_retry(exc: BaseException, attempt_no: int, delay: float) -> None:
        bad = list(getattr(exc, "bad_files", []))
        if bad:
            # A damaged remote file must be copied again, whatever its size and time; and a
            # manifest left by an earlier attempt goes too, so the folder is not taken for a
            # backup until its files are proven again.
            bad.append(manifest_mod.MANIFEST)
        for name in dict.fromkeys(bad):
            try:
                rc.delete_file(join(rpath, name))
            except TenangDBError:
                pass
        log.warning("%s: upload attempt %d of %d failed (%s); retrying in %.0fs", database, attempt_no,
                    cfg.retry_count, exc, delay)

    try:
        check = retry(attempt, attempts=cfg.retry_count, delay=cfg.retry_delay, retryable=(UploadFailed,),
                      on_retry=before_retry, interrupted="interrupted; the local backups are untouched")
    except UploadFailed as exc:
        local_fault = getattr(exc, "local", False)
        return _failed(folder, rpath, database, started, str(exc), rc.destination, remote=not local_fault)
    duration = time.monotonic() - started
    records.write(records.upload_path(folder), proven(check))
    log.info("%s: uploaded %s in %.1fs, remote copy verified (%s)", database, folder.name, duration, check.method)
    return UploadResult(database, folder, rpath, True, size=size, duration=duration, method=check.method)


def _local_hashes(folder: Path, manifest: Manifest, hash_type: str) -> dict[str, dict[str, str]]:
    known = {}
    for entry in manifest.files:
        try:
            sha, other, _ = local_hashes(folder / entry.name, hash_type)
        except OSError as exc:
            exc2 = UploadFailed(f"{folder / entry.name}: cannot read it: {exc.strerror or exc}", retryable=False)
            exc2.local = True  # type: ignore[attr-defined]
            raise exc2 from None
        if sha != entry.stored_sha256:
            damaged = UploadFailed(f"{folder / entry.name}: local copy does not match its manifest "
                                   "(damaged); not uploaded — run tenangdb verify", retryable=False)
            damaged.local = True  # type: ignore[attr-defined]
            raise damaged
        known[entry.name] = {hash_type: other or ""}
    return known


def _failed(folder: Path, rpath: str, database: str, started: float, message: str,
            destination: str | None = None, remote: bool = False) -> UploadResult:
    log.error("%s: upload of %s failed: %s", database, folder.name, message)
    if destination is not None:
        records.write(records.upload_path(folder), records.UploadRecord(
            ok=False, destination=destination, remote_path=rpath, attempted_at=now_iso(), error=message))
    return UploadResult(database, folder, rpath, False, duration=time.monotonic() - started, error=message,
                        remote_failed=remote)


def _expired_remotely(folder: Path, destination: str) -> bool:
    """Cleanup deleted this backup's remote copy by the retention policy: not to be sent again."""
    record = records.read_upload(folder)
    return bool(record and record.expired and record.destination == destination)


def pending(root: Path, destination: str, databases: list[str] | None = None) -> list[Path]:
    """Committed local backups with no successful upload to this destination, oldest first."""
    found: list[Path] = []
    for name in databases or [None]:  # type: ignore[list-item]
        for folder in store.iter_backups(root, name):
            if records.upload_for(folder, destination) is None and not _expired_remotely(folder, destination):
                found.append(folder)
    return sorted(found, key=lambda p: p.name)


def run(loaded: LoadedConfig, *, databases: list[str] | None = None, paths: list[Path] | None = None,
        on_result: Callable[[UploadResult], None] | None = None, locked: bool = False) -> list[UploadResult]:
    """Upload the given backup folders, or every backup not yet uploaded."""
    cfg = loaded.settings
    if not cfg.upload.destination:
        raise UploadFailed("upload.destination is not set: nowhere to upload to", retryable=False)
    root = Path(cfg.backup.directory)
    if not locked:
        identity.check(root, state_directory(loaded), create=False)
    rc = Rclone(cfg.upload)
    report = on_result or (lambda result: None)
    results: list[UploadResult] = []

    def body() -> None:
        todo = paths if paths is not None else pending(root, rc.destination, databases)
        if not todo:
            log.info("nothing to upload: every backup under %s is already on %s", root, rc.destination)
        stopped: str | None = None
        for folder in todo:
            if stopped is not None:
                # The remote failed after every retry: the rest would wait out the same
                # retries for the same reason. They stay local and pending for the next run.
                result = UploadResult(BackupRef.from_path(folder).db, folder, remote_path(rc, root, folder), False,
                                      error=f"not attempted: {stopped}", remote_failed=True)
                log.error("%s: upload of %s not attempted: the remote failed for an earlier backup",
                          result.database, folder.name)
            else:
                result = upload_backup(loaded, rc, root, folder)
                if not result.ok and result.remote_failed:
                    stopped = result.error
            results.append(result)
            report(result)

    if locked:
        body()
    else:
        store.ensure_dir(root)
        with DirectoryLock(root):
            body()
    return results


def resolve_local(root: Path, path: str) -> Path:
    """A backup folder given as a path (or its manifest), which must live under the directory."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    try:
        relative = folder.resolve().relative_to(root.resolve())
    except ValueError:
        raise UploadFailed(f"{path}: not a backup under {root}", retryable=False) from None
    if BackupRef.parse(relative.as_posix()) is None or not (folder / manifest_mod.MANIFEST).is_file():
        raise UploadFailed(f"{path}: not a committed backup folder ({{db}}/{{YYYY-MM}}/{{name}} with a manifest)",
                           retryable=False)
    return root / relative

