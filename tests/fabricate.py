"""Real, valid backup folders without a database: the repository's own staging and commit,
a plain (uncompressed, unencrypted) dump file and a manifest that `verify` accepts."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tenangdb.repository import store
from tenangdb.repository.manifest import FileEntry, Manifest
from tenangdb.repository.naming import dump_file_name


def make_backup(root: Path, database: str, when: datetime, payload: bytes | None = None) -> Path:
    payload = payload if payload is not None else (
        f"-- dump of {database} at {when.isoformat()}\n".encode() + os.urandom(2048).hex().encode())
    staging = store.begin(root, database, when)
    name = dump_file_name(database, "", False)
    path = staging.path / name
    path.write_bytes(payload)
    os.chmod(path, 0o640)
    digest = hashlib.sha256(payload).hexdigest()
    finished = when + timedelta(seconds=5)
    manifest = Manifest(
        tool={"name": "tenangdb", "version": "test"}, database=database,
        name=staging.name, server={"version": "test", "flavour": "mariadb"},
        engine={"name": "mysqldump", "program": "fabricated", "version": "0", "options": []},
        started_at=when.isoformat(), finished_at=finished.isoformat(), binlog=None,
        compression={"format": "none", "level": 0},
        encryption={"enabled": False, "method": None, "recipients": []},
        files=[FileEntry(name=name, kind="sql", plain_size=len(payload), plain_sha256=digest,
                         stored_size=len(payload), stored_sha256=digest)],
        objects={"tables": [], "views": [], "routines": [], "triggers": [], "events": []},
        warnings=[],
    )
    return staging.commit(manifest)


def history(root: Path, database: str, days: int, end: datetime, hour: int = 2) -> list[Path]:
    """One backup a day for `days` days up to `end` (UTC), oldest first."""
    start = end.replace(hour=hour, minute=0, second=0, microsecond=0)
    return [make_backup(root, database, start - timedelta(days=n), payload=f"{database} day {n}\n".encode())
            for n in reversed(range(days))]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)
