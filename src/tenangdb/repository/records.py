"""What happened to a backup after it was sealed, kept beside it, never inside it.

A sealed backup folder holds exactly its manifest and the files the manifest lists (verify
checks that), so facts learnt later live in hidden files in the month folder:

    {dir}/{db}/{YYYY-MM}/.{backup}.upload.json   the off-site copy: where, when, how verified
    {dir}/{db}/{YYYY-MM}/.{backup}.verify.json   the latest `tenangdb verify` of the local copy

An upload record outlives the local folder (cleanup_uploaded_files deletes the folder, the
record still says the remote copy was verified) and goes with the remote copy.

The remote holds the same record at the same place (`{db}/{YYYY-MM}/.{backup}.upload.json`
beside the backup there, written after the backup's own files): a machine that has nothing
but the config, the key and the rclone config reads from it whether each remote copy was
proven, how and when, and whether a later check found it damaged.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tenangdb.fileio import write_atomically

log = logging.getLogger("tenangdb.records")

FILE_MODE = 0o640
_RECORD = re.compile(r"^\.(?P<name>.+)\.(?P<kind>upload|verify)\.json$")


def upload_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.upload.json"


def verify_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.verify.json"


def remote_record_rel(rel: str) -> str:
    """Where a backup's record lives on the remote, relative to the destination, for the
    backup at `{db}/{YYYY-MM}/{name}`."""
    month, name = rel.rsplit("/", 1)
    return f"{month}/.{name}.upload.json"


def upload_records(root: Path) -> list[Path]:
    """Every upload record under the backup directory `root`."""
    return sorted(root.glob("*/*/.*.upload.json"))


def parse_record_name(name: str) -> tuple[str, str] | None:
    """(backup name, kind) for a record file name, else None."""
    match = _RECORD.match(name)
    return (match.group("name"), match.group("kind")) if match else None


class Record(BaseModel):
    """A record beside a backup. Only the keys given when it was made (or found when it was
    read) are written, so each kind of record keeps its own set of keys; unknown keys stay."""

    model_config = ConfigDict(extra="allow")

    format: int = 1
    ok: bool = False

    def model_post_init(self, context: Any, /) -> None:
        self.__pydantic_fields_set__.update({"format", "ok"})

    def body(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2, sort_keys=True)
                + "\n").encode()


class UploadRecord(Record):
    """The off-site copy of a backup: where it went and how it was proven, or why it was not."""

    destination: str | None = None
    remote_path: str | None = None
    uploaded_at: str | None = None
    verified_at: str | None = None
    verify: str | None = None  # what proved the remote copy: sha256/md5/sha1/download/size/off
    bytes: int | None = None
    # file name -> {"size": …, hash type: hash} for hashes other than the manifest's SHA-256
    files: dict[str, dict[str, Any]] = Field(default_factory=dict)
    attempted_at: str | None = None
    error: str | None = None
    expired: bool = False  # cleanup deleted the remote copy on purpose
    expired_at: str | None = None
    # The latest check of the remote copy after its upload (verify --from-remote, a drill):
    # how, when, and what a passing test restore proved. A failed check sets ok false and
    # error, so that the next upload repairs the copy and retention does not lean on it.
    checked_at: str | None = None
    check: str | None = None
    proof: str | None = None
    failed_at: str | None = None
    # The backup as a base for point-in-time restores, copied from its manifest at upload:
    # {"database", "file", "position", "finished_at"}. The recoverable window counts the remote
    # copy with it after the local copy is gone, without asking the remote (actions/pitr.window).
    pitr_base: dict[str, Any] | None = None


class VerifyRecord(Record):
    """The latest check of the local copy (checksums or a test restore)."""

    at: str | None = None
    verified_at: str | None = None
    method: str = "verify"
    duration_seconds: float | None = None
    failures: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    proof: str | None = None  # a passing test restore: "content proven", …


R = TypeVar("R", bound=Record)


def read(path: Path, kind: type[R]) -> R | None:
    try:
        return kind.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("ignoring unreadable record %s (%s)", path, " ".join(str(exc).split())[:300])
        return None


def read_upload(folder: Path) -> UploadRecord | None:
    return read(upload_path(folder), UploadRecord)


def read_verify(folder: Path) -> VerifyRecord | None:
    return read(verify_path(folder), VerifyRecord)


def write(path: Path, record: Record) -> None:
    write_atomically(path, record.body(), FILE_MODE)


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def upload_for(folder: Path, destination: str) -> UploadRecord | None:
    """The upload record of a backup for this destination, if one says it was copied whole."""
    record = read_upload(folder)
    if record and record.destination == destination and record.ok:
        return record
    return None
