"""`tenangdb verify`: prove every stored byte is the one written and decrypts to the dump."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tenangdb.actions import fetch
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import KeyUnavailable, VerifyFailed
from tenangdb.logs import FAILED, security_event
from tenangdb.mysql import engines
from tenangdb.progress import Meter, Progress, Task, task
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository import chains, legacy, store
from tenangdb.repository.manifest import FileEntry, Manifest
from tenangdb.repository.naming import BackupRef, folder_name, parse_backup_name
from tenangdb.stream.crypto import PASSPHRASE, RECIPIENTS, fingerprint, key_needed, load_identities
from tenangdb.stream.pipeline import unseal

log = logging.getLogger("tenangdb.verify")


@dataclass
class Verified:
    path: Path
    manifest: Manifest
    plain_bytes: int


def resolve_backup_path(path: str | Path) -> Path:
    """Accept the backup folder, its manifest or one of its files, or a `latest/{db}` link to it."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.exists():
        raise VerifyFailed(f"{path}: no such backup")
    return folder.resolve() if folder.is_symlink() else folder


def expand_backup_path(loaded: LoadedConfig, path: str | Path) -> list[Path]:
    """What a --backup-path names: one backup (its folder, a file in it, a backup of the original
    TenangDB, a `latest/{db}` link), the newest backup of each database (`{directory}/latest`,
    also before any backup made that folder), or every backup below a folder (the repository,
    a database's or a month's folder). A path that names none of these comes back alone, for
    the verification to say what is wrong with it."""
    given = Path(path)
    if legacy.detect(given) is not None or given.is_file() or (given / manifest_mod.MANIFEST).exists():
        return [given]
    if given.name == store.LATEST and (store.is_latest_folder(given) or not given.exists()):
        newest: dict[Path, Path] = {}
        for folder in store.iter_backups(given.parent):
            db = folder.parent.parent
            newest[db] = max(newest.get(db, folder), folder, key=lambda p: p.name)
        if not newest:
            raise VerifyFailed(f"{path}: no backups under {given.parent}")
        return [newest[db] for db in sorted(newest)]
    if not given.is_dir() or parse_backup_name(given.name):
        return [given]
    found = sorted(_backups_below(given))
    return found or [given]


def _backups_below(folder: Path):
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or store.is_latest_folder(entry) or entry.is_symlink():
            continue
        if legacy.detect(entry) is not None:
            yield entry
        elif entry.is_dir():
            # A backup folder, whole or damaged (verification says which), or a level of the layout.
            if parse_backup_name(entry.name):
                yield entry
            else:
                yield from _backups_below(entry)


def identities_for(loaded: LoadedConfig, manifest: Manifest, folder: Path) -> list | None:
    if not manifest.encryption.enabled:
        return None
    identities = load_identities(loaded.settings.backup.encryption)
    if not identities:
        raise KeyUnavailable(f"{folder}: the backup is encrypted and no age identity is configured "
                           "(set backup.encryption.key_file, backup.encryption.key or TENANGDB_ENCRYPTION_KEY)")
    mode = manifest.encryption.effective_mode
    wanted = manifest.encryption.fingerprints
    if key_needed(mode, wanted, identities)[1] or mode == RECIPIENTS and not wanted:
        return identities
    if mode == PASSPHRASE:
        security_event(log, "wrong_key", FAILED, "%s: the backup is encrypted with a passphrase and none is "
                       "configured", folder)
        raise KeyUnavailable(f"{folder}: wrong decryption key: the backup is encrypted with a passphrase and none "
                             "is configured (set backup.encryption.key or TENANGDB_ENCRYPTION_KEY to it)")
    have = sorted({fingerprint(str(identity.to_public())) for identity in identities if hasattr(identity, "to_public")})
    # A security event (logs.py): the wrong key where backups are read back is worth a look.
    security_event(log, "wrong_key", FAILED, "%s: the configured age identity (%s) is not one the backup was "
                   "encrypted to (%s)", folder, ", ".join(have) or "none", ", ".join(sorted(wanted)))
    raise KeyUnavailable(f"{folder}: wrong decryption key: the configured age identity is not one the backup "
                         f"was encrypted to (backup recipients: {', '.join(sorted(wanted))})")


def verify_backup(loaded: LoadedConfig, path: str | Path, *, extract_to: Path | None = None,
                  sink=None, progress: Task | None = None, chain: bool = True) -> Verified:
    """Check every file of a backup against its manifest.

    With `extract_to`, the plain bytes of each file are also written there (0600, under the
    file's plain name) in the same pass, for a loader that needs files on disk: the caller
    may use them only if this returns, that is once every file has been verified.
    With `sink(manifest, entry)`, a context manager yielding a callable, each file's plain
    bytes are handed to it as they are verified (a test restore loads a scratch target in
    the verifying pass); what it received is proven only if this returns.
    `progress` hears of the plain bytes verified, of the manifest's total.
    An increment (of a physical backup) is whole only with every backup before it: with `chain`,
    each link is checked first (present, LSNs continuous, every file as above), and a broken one
    is named. A caller that goes through the chain itself (a restore) passes chain=False.
    """
    folder = resolve_backup_path(path)
    manifest = manifest_mod.load(folder)
    proven = _proven.get()
    if chain:
        for member in chain_of(loaded, folder, manifest)[:-1]:
            if proven is None or member.path.absolute() not in proven:
                ancestor(member.name, verify_backup, loaded, member.path, chain=False)
    identities = check_layout(loaded, folder, manifest)
    files = manifest.files
    parallel = sink is None and len(files) >= 2 and VERIFY_WORKERS >= 2
    stage = "verifying and loading" if sink is not None else "verifying and unsealing" if extract_to else "verifying"
    with task(progress).stage(stage, sum(entry.plain_size for entry in files)) as meter:

        def one(entry: FileEntry) -> int:
            opened = sink(manifest, entry) if sink is not None else _extraction(extract_to, entry)
            # Files checked side by side already keep every core busy; one file alone gets a
            # second thread for decompression.
            return _verify_file(folder / entry.name, entry, manifest, identities, opened, threaded=not parallel,
                                meter=meter if progress is not None else None)

        if parallel:
            total = _in_parallel(one, files)
        else:
            total = sum(one(entry) for entry in files)  # a sink takes the files in order
    log.info("verified %s (%d file%s, %d plain bytes)", folder, len(files), "" if len(files) == 1 else "s", total)
    if proven is not None:
        proven.add(folder.absolute())
    return Verified(path=folder, manifest=manifest, plain_bytes=total)


# The backups proven whole so far in one verify_each run: a chain's full backup is read once
# there, not once more for each of its increments.
_proven: ContextVar[set[Path] | None] = ContextVar("proven", default=None)


def chain_of(loaded: LoadedConfig, folder: Path, manifest: Manifest) -> list[chains.Member]:
    """The backup's chain, full backup first (itself alone if it is no increment); a parent is
    looked for in the backup's own repository, then in backup.directory. A downloaded remote
    copy's parents only in the download (fetch.fetched brings them): a remote copy is proven
    with the remote chain, never with local backups of the same names. VerifyFailed names a
    missing parent or an LSN gap."""
    downloaded = fetch.download_root(folder)
    roots = [downloaded] if downloaded is not None else list(dict.fromkeys(
        [chains.root_of(folder), Path(loaded.settings.backup.directory).absolute()]))
    return chains.members(folder, manifest, roots)


def ancestor(name: str, check: Callable, *args, **kwargs):
    """`check(*args, **kwargs)` on an ancestor of a backup; its failure says which link broke."""
    try:
        return check(*args, **kwargs)
    except VerifyFailed as exc:
        raise type(exc)(f"the chain is broken at {name}: {exc}") from None


# A backup of many files (mydumper's) is checked two files at a time: decryption, decompression
# and hashing of one file keep about one core busy.
VERIFY_WORKERS = min(2, os.cpu_count() or 1)


def _in_parallel(one, files: list[FileEntry]) -> int:
    """Run `one` over the files with VERIFY_WORKERS threads; the first failure in manifest
    order is raised, once every started check has ended."""
    pool = ThreadPoolExecutor(max_workers=VERIFY_WORKERS, thread_name_prefix="verify")
    futures = [pool.submit(one, entry) for entry in files]
    try:
        total = 0
        for future in futures:
            total += future.result()
        return total
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _verify_file(file_path: Path, entry: FileEntry, manifest: Manifest, identities, opened, *,
                 threaded: bool = True, meter: Meter | None = None) -> int:
    try:
        with opened as forward:
            result = unseal(file_path, compression=manifest.compression.format, identities=identities,
                            forward=forward, threaded=threaded, counted=meter.add if meter else None)
    except VerifyFailed:
        # Say the most precise thing: bytes changed on disk beats "cannot decrypt".
        if _sha256(file_path) != entry.stored_sha256:
            raise VerifyFailed(f"{file_path}: SHA-256 of the stored bytes does not match the manifest "
                               "(the file was damaged or modified)") from None
        raise
    if result.stored.sha256 != entry.stored_sha256:
        raise VerifyFailed(f"{file_path}: SHA-256 of the stored bytes does not match the manifest (damaged)")
    if result.plain.size != entry.plain_size or result.plain.sha256 != entry.plain_sha256:
        raise VerifyFailed(f"{file_path}: the decrypted dump does not match the manifest's SHA-256")
    return result.plain.size


def check_layout(loaded: LoadedConfig, folder: Path, manifest: Manifest) -> list | None:
    """The checks that read no file's content: a usable key, exactly the listed files, each of
    its recorded size. Returns the identities to decrypt with."""
    identities = identities_for(loaded, manifest, folder)
    manifest.check_folder(folder)
    _check_inventory(loaded, folder, manifest)
    return identities


def _check_inventory(loaded: LoadedConfig, folder: Path, manifest: Manifest) -> None:
    """What the hashes cannot show: the engine checks its files against the manifest's own
    inventory of the database (a file removed together with its manifest entry)."""
    if gaps := engines.for_manifest(manifest, loaded.settings.database).check_files(folder, manifest):
        more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
        raise VerifyFailed(f"{folder}: the manifest's inventory does not match its files: {gaps[0]}{more}")


@contextlib.contextmanager
def _extraction(folder: Path | None, entry: FileEntry):
    if folder is None:
        yield None
        return
    fd = os.open(folder / entry.unsealed_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        yield out.write


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def all_backups(loaded: LoadedConfig) -> list[Path]:
    return list(store.iter_backups(Path(loaded.settings.backup.directory)))


def select_backups(loaded: LoadedConfig, *, mode: str, databases: list[str] | None = None,
                   sample: int = 0, rng=None) -> list[Path]:
    """The backups a `verify --all|--latest|--sample N` run covers, oldest database first.

    latest: the newest backup of each database; all: every backup; sample: N backups picked at
    random among those that are not the newest of their database (spot checks of older ones).
    """
    import random

    root = Path(loaded.settings.backup.directory)
    by_db: dict[str, list[Path]] = {}
    for folder in store.iter_backups(root):
        by_db.setdefault(BackupRef.from_path(folder).db, []).append(folder)
    if databases:
        wanted = {folder_name(name) for name in databases}
        if unknown := sorted(n for n in databases if folder_name(n) not in by_db):
            raise VerifyFailed(f"no backups of {', '.join(unknown)} under {root}")
        by_db = {k: v for k, v in by_db.items() if k in wanted}
    for folders in by_db.values():
        folders.sort(key=lambda p: p.name)  # names carry the UTC time: sorted is chronological
    if mode == "latest":
        return [folders[-1] for _, folders in sorted(by_db.items()) if folders]
    if mode == "all":
        return [f for _, folders in sorted(by_db.items()) for f in folders]
    older = [f for _, folders in sorted(by_db.items()) for f in folders[:-1]]
    picked = (rng or random.SystemRandom()).sample(older, min(sample, len(older)))
    return sorted(picked)


def task_name(path: str | Path) -> str:
    """A verification as a progress display names it: by the backup's name (the same before a
    download, from the remote path, as after it, from the folder it was downloaded to)."""
    return f"verify {backup_name(str(path))}"


def backup_name(path: str) -> str:
    """The last part of a local or remote (rclone) path to a backup folder or its manifest."""
    parts = [part for part in path.rstrip("/").rsplit(":", 1)[-1].split("/") if part]
    if parts and parts[-1] == manifest_mod.MANIFEST:
        parts.pop()
    return parts[-1] if parts else path


def verify_each(loaded: LoadedConfig, paths: list[Path], *, test_restore: bool, target: str | None = None,
                on_outcome: Callable[[Any], None] | None = None, log_failures: bool = True,
                progress: Progress | None = None) -> list:
    """Verify each backup in turn (with `test_restore`, restore it into a scratch target and
    check it too), counting each in the metrics; the testrestore.Outcome of each, in order.
    `on_outcome` hears of each as soon as it is done. A failure is logged as a security event
    unless `log_failures` is false (the caller reports it in its own words). `progress` shows
    each as a task named by `task_name`."""
    from tenangdb.actions import observe, testrestore  # both build on this module

    outcomes = []
    proven = _proven.set(set())
    try:
        for path in paths:
            shown, outcome = Task(progress, task_name(path)), None
            try:
                outcome = (testrestore.test_restore(loaded, path, target=target, progress=shown) if test_restore
                           else testrestore.check_files(loaded, path, progress=shown))
            finally:
                shown.done(outcome is not None and outcome.ok)
            observe.verification(loaded, outcome)
            if not outcome.ok and log_failures:
                security_event(log, "verify_failed", FAILED, "verification failed: %s", outcome.reason)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        _proven.reset(proven)
        observe.verify_done(loaded)
    return outcomes
