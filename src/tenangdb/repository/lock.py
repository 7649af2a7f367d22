"""One run per backup directory: an flock that dies with its holder, so it is never stale."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tenangdb.errors import TenangDBError
from tenangdb.logs import FAILED, security_event

LOCK_NAME = ".tenangdb.lock"
log = logging.getLogger("tenangdb.lock")


class LockHeld(TenangDBError):
    exit_code = 1


class LockUnavailable(TenangDBError):
    """The lock file cannot be opened (another user's directory, a read-only filesystem):
    this account cannot use the directory, a setup problem like a wrong path."""

    exit_code = 2


class DirectoryLock:
    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._fd: int | None = None

    # `holder()` (tenangdb list) holds a shared lock for microseconds: a run starting in that
    # instant must wait it out, not fail. Measured without the wait: 125 of 2000 starts
    # against a probe in a loop were refused.
    PATIENCE = 1.0

    def __enter__(self) -> "DirectoryLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o640)
        except OSError as exc:
            raise LockUnavailable(f"cannot take the lock {self.path}: {exc.strerror or exc}"
                                  + ("; run tenangdb as the account that owns the backup directory"
                                     if isinstance(exc, PermissionError) else "")) from None
        deadline = time.monotonic() + self.PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                # A security event (logs.py): a run that overlaps another is a schedule gone
                # wrong, or someone else at work in the backup directory.
                security_event(log, "lock_refused", FAILED, "lock on %s refused: held by another tenangdb run "
                               "(PID %s)", self.path.parent, holder)
                raise LockHeld(f"another tenangdb run (PID {holder}) is using {self.path.parent}; "
                               "try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class Holder:
    pid: str
    since: float  # the lock file's mtime: the holder rewrote it when it took the lock


def holder(root: Path) -> Holder | None:
    """The run that holds `root`'s lock now, or None when no run does (or the filesystem cannot
    tell). Takes a shared lock for an instant and never waits; a run starting in that instant
    waits it out (DirectoryLock.PATIENCE)."""
    try:
        fd = os.open(root / LOCK_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            return Holder(pid, os.fstat(fd).st_mtime)
        except OSError:  # a filesystem without flock
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
