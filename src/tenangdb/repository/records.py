"""What happened to a backup after it was sealed, kept beside it, never inside it.

A sealed backup folder holds exactly its manifest and the files the manifest lists (verify
checks that), so facts learnt later live in hidden files in the month folder:

    {dir}/{db}/{YYYY-MM}/.{backup}.upload.json   the off-site copy: where, when, how verified
    {dir}/{db}/{YYYY-MM}/.{backup}.verify.json   the latest `tenangdb verify` of the local copy

An upload record outlives the local folder (cleanup_uploaded_files deletes the folder, the
record still says the remote copy was verified) and goes with the remote copy.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from tenangdb.fileio import write_atomically

log = logging.getLogger("tenangdb.records")

FILE_MODE = 0o640
_RECORD = re.compile(r"^\.(?P<name>.+)\.(?P<kind>upload|verify)\.json$")


def upload_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.upload.json"


def verify_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.verify.json"


def upload_records(root: Path) -> list[Path]:
    """Every upload record under the backup directory `root`."""
    return sorted(root.glob("*/*/.*.upload.json"))


def parse_record_name(name: str) -> tuple[str, str] | None:
    """(backup name, kind) for a record file name, else None."""
    match = _RECORD.match(name)
    return (match.group("name"), match.group("kind")) if match else None


def read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("ignoring unreadable record %s (%s)", path, exc)
        return None
    return data if isinstance(data, dict) else None


def write(path: Path, data: dict[str, Any]) -> None:
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    write_atomically(path, body, FILE_MODE)


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def upload_for(folder: Path, destination: str) -> dict[str, Any] | None:
    """The upload record of a backup for this destination, if one says it was copied whole."""
    record = read(upload_path(folder))
    if record and record.get("destination") == destination and record.get("ok"):
        return record
    return None
