"""The backup directory on disk: staging, atomic commit, listing and stale-partial removal."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from tenangdb import orphans
from tenangdb.errors import TenangDBError
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository.naming import (backup_name, folder_name, is_staging, month_folder,
                                        parse_backup_name, staging_name)

DIR_MODE = 0o750
FILE_MODE = 0o640
STALE_AFTER = 24 * 3600


class StorageError(TenangDBError):
    exit_code = 4


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create a folder chain with our mode whatever the umask; fix folders we created."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror}") from None
        os.chmod(folder, DIR_MODE)
    if not path.is_dir():
        raise StorageError(f"{path} exists and is not a folder")


def disk_error(exc: OSError, where: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left on the device holding {where}")
    if exc.errno == errno.EDQUOT:
        return StorageError(f"disk quota exceeded on {where}")
    return StorageError(f"cannot write {where}: {exc.strerror or exc}")


@dataclass
class Staging:
    """A backup being written: `.<name>.partial` beside where it will land."""

    root: Path
    database: str
    name: str
    path: Path
    final: Path

    def commit(self, manifest: manifest_mod.Manifest) -> Path:
        """Write the manifest last, fsync everything and rename into place."""
        data = manifest.dumps()
        target = self.path / manifest_mod.MANIFEST
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        for entry in self.path.iterdir():
            if entry.is_file():
                with open(entry, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(self.path)
        if self.final.exists():
            raise StorageError(f"{self.final} already exists; refusing to replace a backup")
        os.rename(self.path, self.final)
        _fsync_dir(self.final.parent)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def scratch(self) -> Path:
        """A private (0700) folder beside the staging one, for plaintext a dump tool writes to
        disk. It is named like a staging folder (the next backup of the database removes it)
        and records its owner (orphans.py), so the next run of any command removes it once
        this process is gone."""
        path = self.final.parent / f".{self.name}.{orphans.token()}.dump.partial"
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
        return path


def begin(root: Path, database: str, when: datetime) -> Staging:
    month = root / folder_name(database) / month_folder(when)
    ensure_dir(month)
    for seq in range(0, 100):
        name = backup_name(database, when, seq)
        final = month / name
        staging = month / staging_name(name)
        if final.exists() or staging.exists():
            continue  # two runs in the same second must not share or replace a folder
        try:
            os.mkdir(staging, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(staging, DIR_MODE)
        return Staging(root=root, database=database, name=name, path=staging, final=final)
    raise StorageError(f"cannot find a free backup name under {month}")


RESTORE_PREFIX = orphans.RESTORE_PREFIX


def remove_orphaned_restores(month: Path) -> list[Path]:
    """Plaintext folders beside the backups of killed restores and dumps, once their owner is
    gone; a restore takes no lock, so a live one's folder is recognised by its owner record."""
    return [leftover.path for leftover in orphans.in_month(month) if orphans.remove(leftover)]


def remove_stale_partials(root: Path, database: str, *, older_than: float = 0.0) -> list[Path]:
    """Remove staging folders left by killed runs. Only called while no run of this
    database is active, so any staging folder found is stale."""
    removed = []
    base = root / folder_name(database)
    if not base.is_dir():
        return removed
    now = time.time()
    for month in base.iterdir():
        if not month.is_dir():
            continue
        removed += remove_orphaned_restores(month)
        for entry in month.iterdir():
            if entry.is_dir() and is_staging(entry.name) and now - entry.stat().st_mtime >= older_than:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def iter_backups(root: Path, database: str | None = None) -> Iterator[Path]:
    """Every committed backup folder (one holding a manifest) under the directory,
    or only those of one database."""
    if not root.is_dir():
        return
    if database is not None:
        db_dirs = [root / folder_name(database)] if (root / folder_name(database)).is_dir() else []
    else:
        db_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and not is_latest_folder(p))
    for db_dir in db_dirs:
        for month in sorted(p for p in db_dir.iterdir() if p.is_dir()):
            for entry in sorted(month.iterdir()):
                if entry.is_dir() and not is_staging(entry.name) and parse_backup_name(entry.name):
                    if (entry / manifest_mod.MANIFEST).exists():
                        yield entry


def count_backups(root: Path, database: str) -> int:
    """Committed backups of one database under the directory."""
    return sum(1 for _ in iter_backups(root, database))


LATEST = "latest"


def is_latest_folder(path: Path) -> bool:
    """The repository's `latest/` folder of links (not a database's folder)."""
    return path.name == LATEST and (path / LATEST_MARK).exists()


LATEST_MARK = ".tenangdb-latest"


def refresh_latest(root: Path, database: str) -> None:
    """Point `{root}/latest/{db}` at the newest committed backup of the database (or remove the
    link when there is none), atomically: a new link under a temporary name, renamed over the
    old one. The folder lets scripts written for a fixed path (`verify --backup-path
    {dir}/latest`, `ls latest/`) find tonight's backups. A database whose own folder is named
    `latest` gets no such folder: its backups keep their place."""
    folder = root / LATEST
    if folder.exists() and not is_latest_folder(folder):
        return  # a database named `latest` owns that name
    newest = max(iter_backups(root, database), key=lambda p: p.name, default=None)
    link = folder / folder_name(database)
    if newest is None:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        return
    folder.mkdir(mode=0o750, exist_ok=True)
    (folder / LATEST_MARK).touch(mode=0o640, exist_ok=True)
    temporary = folder / f".{link.name}.{os.getpid()}.new"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(os.path.relpath(newest, folder), temporary)
    os.replace(temporary, link)
    _fsync_dir(folder)
