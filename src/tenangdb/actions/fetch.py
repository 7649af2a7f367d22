"""A remote backup brought home for `verify` or `restore`: downloaded into a private (0700)
temporary folder, used, and removed afterwards whatever happens.

The download keeps the repository's layout (`{scratch}/{db}/{YYYY-MM}/{name}`), and an increment
of a physical backup brings its chain with it: its parent, the parent's parent, down to the full
backup, each from the remote. A remote copy is only as good as the remote chain it restores
with, so verify and restore look for the parents of a downloaded backup in the download alone
(`download_root`), never in the local repository: a link missing on the remote is named missing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tenangdb import orphans
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import ConfigError, FetchFailed, NoSpace, UploadFailed, VerifyFailed
from tenangdb.fileio import human_size
from tenangdb.progress import Task, folder_size, polling
from tenangdb.remote.rclone import Rclone, join
from tenangdb.repository import chains, legacy
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository.naming import BackupRef

log = logging.getLogger("tenangdb.fetch")
PREFIX = "remote:"


def is_remote_spec(path: str, loaded: LoadedConfig) -> bool:
    destination = loaded.settings.upload.destination
    return path.startswith(PREFIX) or bool(destination and path.startswith(destination))


def remote_location(rc: Rclone, spec: str) -> str:
    """The rclone path of a backup given as `remote:{db}/{YYYY-MM}/{name}`, a bare backup name,
    a path relative to upload.destination, or a full rclone path below the destination."""
    if spec.startswith(rc.destination):
        return spec.rstrip("/")
    relative = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    relative = relative.strip("/")
    if not relative or ".." in relative.split("/"):
        raise VerifyFailed(f"{spec}: not a remote backup path (expected remote:{{db}}/{{YYYY-MM}}/{{name}})")
    if "/" not in relative:
        ref = BackupRef.from_name(relative)
        if ref is None:
            raise VerifyFailed(f"{spec}: not a backup name (expected {{db}}-YYYY-MM-DD_HH-MM-SS)")
        return join(rc.destination, *ref.parts)
    return join(rc.destination, relative)


# The downloads in progress in this process: their root folder -> the remote destination.
_ROOTS: dict[Path, str] = {}
_ROOTS_LOCK = threading.Lock()


def download_root(folder: Path) -> Path | None:
    """The root of the download `folder` is in (the remote repository's stand-in), or None for a
    folder that was not downloaded by `fetched`."""
    folder = folder.absolute()
    with _ROOTS_LOCK:
        return next((root for root in _ROOTS if folder == root or root in folder.parents), None)


def as_remote(text: str, folder: Path) -> str:
    """`text` (a message about a downloaded backup) naming the remote copies instead of the
    temporary folder they were downloaded to."""
    root = download_root(folder)
    if root is None:
        return text
    with _ROOTS_LOCK:
        destination = _ROOTS.get(root)
    return text.replace(str(root), destination.rstrip("/")) if destination else text


@contextmanager
def fetched(loaded: LoadedConfig, spec: str, *, progress: Task | None = None) -> Iterator[Path]:
    """The remote backup `spec` downloaded into a private folder, for the block's length, with
    the chain it restores with if it is an increment. `progress` hears of a "downloading" stage
    of the remote files' total, and one more for each parent."""
    cfg = loaded.settings.upload
    if not cfg.destination:
        raise ConfigError("a remote backup was asked for but upload.destination is not set")
    rc = Rclone(cfg)
    location = remote_location(rc, spec)
    # mkdtemp: mode 0700. Named with its owner, so a run killed while it downloads leaves a
    # folder that the next run removes (orphans.py).
    scratch = Path(tempfile.mkdtemp(prefix=f"{orphans.REMOTE_PREFIX}{orphans.token()}-")).absolute()
    try:
        ref = BackupRef.parse(location[len(rc.destination):].strip("/")) if location.startswith(rc.destination) \
            else None
        folder = ref.path(scratch) if ref is not None else \
            scratch / location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        log.info("downloading %s to a private temporary folder", location)
        _fetch(rc, location, folder, progress)
        found = folder
        if (folder / folder.name).is_file() and legacy.by_name(folder.name, folder=False):
            found = folder / folder.name  # one of the original's file backups
        elif not (folder / manifest_mod.MANIFEST).is_file() and legacy.detect(folder) is None:
            raise VerifyFailed(f"{location}: no {manifest_mod.MANIFEST} on the remote, so this is not a "
                               "complete backup")
        elif ref is not None:
            _fetch_chain(rc, scratch, folder, progress)
        with _ROOTS_LOCK:
            _ROOTS[scratch] = rc.destination if ref is not None else ""
        try:
            yield found
        except VerifyFailed as exc:
            # Name the remote copies, not the temporary folder that is about to disappear.
            raise type(exc)(as_remote(str(exc), folder).replace(str(folder), location)) from None
        finally:
            with _ROOTS_LOCK:
                _ROOTS.pop(scratch, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch(rc: Rclone, location: str, folder: Path, progress: Task | None, stage: str = "downloading",
           listed: list | None = None) -> None:
    try:
        _download(rc, location, folder, progress, stage, listed)
    except UploadFailed as exc:
        # A backup that cannot be fetched cannot be verified: restore and verify refuse it (7).
        raise FetchFailed(f"cannot download {location}: {exc}") from None


def _fetch_chain(rc: Rclone, scratch: Path, folder: Path, progress: Task | None) -> None:
    """The parents of the increment in `folder`, each from the remote into its place below
    `scratch`, down to the full backup. One missing on the remote (or a manifest that cannot be
    read) ends the walk: the chain's check (repository/chains.py) names that link."""
    seen: set[str] = set()
    depth = None
    for count in range(1, chains.LONGEST):
        try:
            manifest = manifest_mod.load(folder)
        except VerifyFailed:
            return
        if depth is None:
            link = chains.link_of(manifest)
            depth = link.depth if link is not None and link.depth > 0 else None
        rel = chains.parent_rel(manifest)
        ref = BackupRef.parse(rel) if rel is not None else None
        if ref is None or rel in seen:
            return
        seen.add(rel)
        location = join(rc.destination, rel)
        try:
            listed = rc.list(location)
        except UploadFailed as exc:
            raise FetchFailed(f"cannot list {location}: {exc}") from None
        if not listed:
            log.info("%s, which the increment needs, is not on the remote", location)
            return
        log.info("downloading %s, which %s needs (its chain)", location, manifest.name or folder.name)
        folder = ref.path(scratch)
        _fetch(rc, location, folder, progress, f"downloading parent {count}" + (f"/{depth}" if depth else ""), listed)


# Left free beside a download: the disk of TMPDIR is often the system's (and the database
# server's), which must not be filled to its last byte by a restore drill.
DOWNLOAD_MARGIN = 64 << 20


def check_room(folder: Path, total: int, location: str) -> None:
    """NoSpace, before a byte is downloaded, when the filesystem `folder` will be on lacks room
    for `total` bytes and the margin."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    needed = total + DOWNLOAD_MARGIN
    if free < needed:
        raise NoSpace(f"downloading {location} needs about {human_size(needed)} of disk in {existing}, which has "
                      f"{human_size(free)} free; set TMPDIR to a folder with room (nothing was changed)")


def _download(rc: Rclone, location: str, folder: Path, progress: Task | None, stage: str = "downloading",
              listed: list | None = None) -> None:
    # The remote listing gives the total: checked against the free disk first, then (when
    # somebody watches) the stage's size; how far it is, the size of what has arrived,
    # measured from a thread.
    listed = listed if listed is not None else rc.list(location) or []
    sizes = [entry.size for entry in listed]
    total = sum(sizes) if sizes and min(sizes) >= 0 else None
    if total is not None:
        check_room(folder, total, location)
    if progress is None:
        rc.download(location, folder)
        return
    with progress.stage(stage, total) as meter, polling(meter, lambda: folder_size(folder)):
        rc.download(location, folder)
        meter.set(folder_size(folder))
