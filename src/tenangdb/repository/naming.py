"""Pure rules for names on disk: `{db}/{YYYY-MM}/{db}-{YYYY-MM-DD_HH-MM-SS}/`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

STAMP = "%Y-%m-%d_%H-%M-%S"
_SAFE = re.compile(r"[A-Za-z0-9_.\-]")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_NAME = re.compile(r"^(?P<db>.+)-(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})(?:\.(?P<seq>\d+))?$")


def folder_name(database: str) -> str:
    """A path component for any database name: unsafe bytes are %XX-escaped, so names
    with '/', '..', spaces or control characters cannot escape or confuse the layout."""
    out = []
    for ch in database:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    name = "".join(out)
    if name in ("", ".", ".."):
        name = name.replace(".", "%2E") or "%00"
    if name.startswith("."):
        name = "%2E" + name[1:]  # never a hidden folder (staging folders are hidden)
    return name


def backup_name(database: str, when: datetime, seq: int = 0) -> str:
    base = f"{folder_name(database)}-{when.astimezone(timezone.utc).strftime(STAMP)}"
    return base if seq == 0 else f"{base}.{seq}"


def month_folder(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m")


def staging_name(name: str) -> str:
    return f".{name}.partial"


def is_staging(name: str) -> bool:
    return name.startswith(".") and name.endswith(".partial")


def parse_backup_name(name: str) -> tuple[str, datetime] | None:
    match = _NAME.match(name)
    if not match:
        return None
    try:
        when = datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None  # shaped like a stamp, but no such time (a month 13)
    return match.group("db"), when


def dump_file_name(database: str, compression_suffix: str, encrypted: bool) -> str:
    return f"{folder_name(database)}.sql{compression_suffix}{'.age' if encrypted else ''}"


@dataclass(frozen=True, order=True)
class BackupRef:
    """Where a backup lives in a repository, local or remote: `{db}/{YYYY-MM}/{name}`.
    `db` is the database's folder name (folder_name), not necessarily the database's own name."""

    db: str
    month: str
    name: str

    def __str__(self) -> str:
        return f"{self.db}/{self.month}/{self.name}"

    @property
    def parts(self) -> tuple[str, str, str]:
        return self.db, self.month, self.name

    def path(self, root: Path) -> Path:
        return root.joinpath(*self.parts)

    @classmethod
    def from_path(cls, folder: Path) -> "BackupRef":
        """The reference of a backup folder (or where one would be) from its last three parts."""
        return cls(folder.parent.parent.name, folder.parent.name, folder.name)

    @classmethod
    def from_name(cls, name: str) -> "BackupRef | None":
        """Where the backup of this name lives (its name carries its database and time)."""
        parsed = parse_backup_name(name)
        return cls(parsed[0], month_folder(parsed[1]), name) if parsed else None

    @classmethod
    def parse(cls, rel: str) -> "BackupRef | None":
        """A reference from `{db}/{YYYY-MM}/{name}`, or None if the text is not one."""
        parts = rel.split("/")
        if len(parts) != 3 or not all(parts):
            return None
        return cls(*parts)


def is_month(name: str) -> bool:
    return bool(_MONTH.match(name))
