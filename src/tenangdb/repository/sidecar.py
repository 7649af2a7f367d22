"""Records kept beside a sealed backup folder, never inside it.

A backup folder is sealed: its manifest lists every file and `verify` rejects any other.
What is learnt about a backup later (its verification, its upload) goes into a small JSON
file next to it in the month folder: `.{backup name}.{kind}.json` (0640), replaced
atomically (temporary file, fsync, rename) so a reader sees the old record or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FILE_MODE = 0o640
VERIFY = "verify"


def path_for(folder: Path, kind: str) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.{kind}.json"


def read(folder: Path, kind: str) -> dict[str, Any] | None:
    """The record, or None when there is none or it cannot be read as a JSON object."""
    try:
        data = json.loads(path_for(folder, kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write(folder: Path, kind: str, record: dict[str, Any]) -> Path:
    target = path_for(folder, kind)
    data = (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def verified(folder: Path) -> bool:
    """True when the latest verification recorded beside the backup passed (for retention)."""
    record = read(folder, VERIFY)
    return bool(record and record.get("ok") is True)
