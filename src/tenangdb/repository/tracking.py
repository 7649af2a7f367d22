"""When each database last had a successful backup, per backup directory.

The file name follows the original (`.tenangdb_backup_tracking_<8 hex of MD5 of the
directory>.json`) so both tools keep separate tracking per directory. Unlike the original it
is updated only for databases whose backup succeeded, and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path

from tenangdb.fileio import write_atomically

log = logging.getLogger("tenangdb.tracking")


def tracking_path(state_directory: Path, backup_directory: str) -> Path:
    digest = hashlib.md5(backup_directory.encode(), usedforsecurity=False).hexdigest()[:8]
    return state_directory / f".tenangdb_backup_tracking_{digest}.json"


def load(path: Path) -> dict[str, datetime]:
    """Last success per database; an unreadable file counts as no history (and says so)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: datetime.fromisoformat(stamp) for name, stamp in data.get("databases", {}).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        log.warning("ignoring unreadable tracking file %s (%s)", path, exc)
        return {}


def record(path: Path, successes: dict[str, datetime]) -> None:
    if not successes:
        return
    known = load(path)
    known.update(successes)
    latest = max(known.values())
    body = json.dumps({"last_backup_time": latest.isoformat(),
                       "databases": {name: when.isoformat() for name, when in sorted(known.items())}},
                      indent=2) + "\n"
    write_atomically(path, body.encode("utf-8"), 0o640)
