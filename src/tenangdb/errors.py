"""One error hierarchy: every failure a user can meet maps to one line and one exit code.

Exit codes (documented in the README):
0 success · 1 general error · 2 configuration error · 3 database connection error ·
4 backup/restore failed (also partial success) · 5 upload failed · 6 cleanup failed ·
7 verification failed · 130 interrupted.
"""

from __future__ import annotations

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


class ConnectionFailed(TenangDBError):
    exit_code = EXIT_CONNECTION


class BackupFailed(TenangDBError):
    exit_code = EXIT_BACKUP


class RestoreFailed(TenangDBError):
    exit_code = EXIT_BACKUP


class VerifyFailed(TenangDBError):
    exit_code = EXIT_VERIFY


class ToolMissing(TenangDBError):
    """An external program we drive is not installed."""

    exit_code = EXIT_GENERAL


class Interrupted(TenangDBError):
    exit_code = EXIT_INTERRUPTED
