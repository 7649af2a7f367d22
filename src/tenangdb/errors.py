"""One error hierarchy: every failure a user can meet maps to one line and one exit code.

Exit codes (documented in the README):
0 success · 1 general error · 2 configuration error · 3 database connection error ·
4 backup/restore failed (also partial success) · 5 upload failed · 6 cleanup failed ·
7 verification failed · 130 interrupted.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from tenangdb.control import CANCEL

EXIT_OK = 0
EXIT_GENERAL = 1
EXIT_CONFIG = 2
EXIT_CONNECTION = 3
EXIT_BACKUP = 4
EXIT_UPLOAD = 5
EXIT_CLEANUP = 6
EXIT_VERIFY = 7
EXIT_INTERRUPTED = 130


class TenangDBError(Exception):
    """Base of every error we expect; ``str(err)`` is the one line the user sees."""

    exit_code = EXIT_GENERAL


class ConfigError(TenangDBError):
    exit_code = EXIT_CONFIG


class InvalidInput(TenangDBError):
    """A command-line value we refuse before doing anything (a database name the server
    would reject, a system schema as a restore target): exit 2, like click's usage errors."""

    exit_code = EXIT_CONFIG


class ConnectionFailed(TenangDBError):
    exit_code = EXIT_CONNECTION


class BackupFailed(TenangDBError):
    exit_code = EXIT_BACKUP

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        # A failure that another attempt cannot fix (a missing database, a loss the dump
        # tool would make) is reported at once instead of being retried.
        self.retryable = retryable


class RestoreFailed(TenangDBError):
    exit_code = EXIT_BACKUP


class VerifyFailed(TenangDBError):
    exit_code = EXIT_VERIFY


class KeyUnavailable(VerifyFailed):
    """The configured age identity cannot open the backup: a fact about this machine's keys,
    not about the backup, which must not be recorded as damaged."""


class FetchFailed(VerifyFailed):
    """A remote backup could not be downloaded: nothing was learnt about the copy itself."""


class NoSpace(TenangDBError):
    """Not enough disk for what a command must write first (a download): nothing was changed,
    and the backup is not to blame (not a verification failure)."""

    exit_code = EXIT_GENERAL


class UploadFailed(TenangDBError):
    """An off-site copy could not be made or proved whole."""

    exit_code = EXIT_UPLOAD

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status  # rclone's exit status, when rclone said no
        self.retryable = retryable


class CleanupFailed(TenangDBError):
    exit_code = EXIT_CLEANUP


class ToolMissing(TenangDBError):
    """An external program we drive is not installed."""

    exit_code = EXIT_GENERAL


class Interrupted(TenangDBError):
    exit_code = EXIT_INTERRUPTED


def request_interrupt() -> None:
    """Called by the signal handlers. An interrupt raised inside a callback of a native
    library (pyrage) reaches us disguised as that library's error; the token tells the
    truth so the run stops instead of counting one more failed database, and ends every
    wait on it (control.CANCEL)."""
    CANCEL.set()


def interrupt_requested() -> bool:
    return CANCEL.is_set()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """For cleanup that must finish: a SIGTERM/SIGINT arriving meanwhile waits until it has."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
