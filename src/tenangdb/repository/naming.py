"""Pure rules for names on disk: `{db}/{YYYY-MM}/{db}-{YYYY-MM-DD_HH-MM-SS}/`."""

from __future__ import annotations

import re
from datetime import datetime, timezone

STAMP = "%Y-%m-%d_%H-%M-%S"
_SAFE = re.compile(r"[A-Za-z0-9_.\-]")
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
    when = datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=timezone.utc)
    return match.group("db"), when


def dump_file_name(database: str, compression_suffix: str, encrypted: bool) -> str:
    return f"{folder_name(database)}.sql{compression_suffix}{'.age' if encrypted else ''}"
