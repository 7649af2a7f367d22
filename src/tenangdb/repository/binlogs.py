"""The binary-log archive: one folder per server, `binlog.directory` (default
`{backup.directory}/.binlog`, hidden so that no walker of the backup layout sees it).

Per archived file `{name}` it holds the sealed bytes `{name}{.zst}{.age}` and the record
`{name}.json`, written atomically LAST: a record's existence is the commit, and a sealed file
without one is an interrupted archiving, removed and done again. The records are the index
(time and GTID ranges, positions, hashes). `server.json` names the server the archive is of
(a different server is refused), `gaps.json` the files the server purged before they were
archived: point-in-time restore across a gap is impossible.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tenangdb.errors import TenangDBError
from tenangdb.fileio import write_atomically
from tenangdb.stream.codec import SUFFIX

RECORD_MODE = 0o640
DIR_MODE = 0o750
IDENTITY = "server.json"
GAPS = "gaps.json"
_NAME = re.compile(r"^(?P<base>[^/\x00]+)\.(?P<seq>\d+)$")


class ArchiveError(TenangDBError):
    """The archive cannot be used as it is (another server's, reset, damaged)."""

    exit_code = 4


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Record(_Model):
    """One archived binlog file: what the parser saw in it and how it is stored."""

    name: str
    size: int
    first_time: int | None = None  # unix seconds of its first and last events
    last_time: int | None = None
    first_gtid: str | None = None
    last_gtid: str | None = None
    gtid_list: list[str] = Field(default_factory=list)
    transactions: int = 0
    end_position: int
    closed_by: str | None = None  # rotate, stop, or None (the server crashed while it was open)
    stored_name: str
    stored_size: int
    stored_sha256: str
    plain_sha256: str
    compression: str
    encryption: str | None = None  # "age" or None
    archived_at: str

    @property
    def seq(self) -> int:
        return sequence(self.name)


class Identity(_Model):
    server_id: int
    hostname: str
    log_bin_basename: str


class Gap(_Model):
    """Files the server no longer had when the archiver came for them."""

    after: str | None  # the last file archived before the gap (None: the archive was empty)
    missing: list[str]  # the names that were lost (as far as their numbers tell)
    resumed_at: str  # the first file archived after the gap
    found_at: str


def sequence(name: str) -> int:
    match = _NAME.match(name)
    if not match:
        raise ArchiveError(f"{name!r} is not a binary log file name (basename.NNNNNN)")
    return int(match.group("seq"))


def base_name(name: str) -> str:
    match = _NAME.match(name)
    return match.group("base") if match else name


def name_for(base: str, seq: int, width: int = 6) -> str:
    return f"{base}.{seq:0{width}d}"


def archive_directory(settings) -> Path:
    configured = settings.binlog.directory
    return Path(configured) if configured else Path(settings.backup.directory) / ".binlog"


def stored_name(name: str, compression: str, encrypted: bool) -> str:
    return f"{name}{SUFFIX[compression]}{'.age' if encrypted else ''}"


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)


def records(directory: Path) -> list[Record]:
    """The committed files, oldest first. A record that cannot be read is an error naming it:
    the archive's index must be whole."""
    found: list[Record] = []
    if not directory.is_dir():
        return found
    for path in directory.glob("*.json"):
        if path.name in (IDENTITY, GAPS) or path.name.startswith("."):
            continue
        try:
            found.append(Record.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError, ValueError) as exc:
            raise ArchiveError(f"{path}: the archive's record cannot be read ({str(exc).splitlines()[0]})") from None
    found.sort(key=lambda r: r.seq)
    return found


def commit(directory: Path, record: Record) -> None:
    """The record, written last: from now on the file is archived."""
    write_atomically(directory / record_name(record.name), (record.model_dump_json(indent=2) + "\n").encode(),
                     RECORD_MODE)


def uncommitted(directory: Path, committed: set[str]) -> list[Path]:
    """Sealed files without a record (an archiving that was interrupted), and the temporary
    files of an interrupted record write."""
    leftovers = []
    for path in directory.iterdir() if directory.is_dir() else []:
        if path.is_dir() or path.name.endswith(".json"):
            continue
        if path.name.startswith("."):
            if path.name.endswith(".tmp"):
                leftovers.append(path)
            continue
        if sealed_of(path.name) not in committed:
            leftovers.append(path)
    return leftovers


def sealed_of(stored: str) -> str:
    """The archived file name a stored file holds: `{name}{.zst}{.age}` -> `{name}`."""
    stem = stored.removesuffix(".age")
    for suffix in SUFFIX.values():
        if suffix and stem.endswith(suffix):
            stem = stem.removesuffix(suffix)
    return stem


def record_name(name: str) -> str:
    return f"{name}.json"


def delete(directory: Path, record: Record) -> None:
    """One archived file out of the archive: its record first (the commit goes first, so an
    interrupted delete leaves a sealed file without a record, which the archiver removes as an
    interrupted archiving — never a record whose file is gone), then the sealed file. The
    caller holds the archive's lock."""
    remove(directory / record_name(record.name))
    remove(directory / record.stored_name)


def check_identity(directory: Path, seen: Identity) -> None:
    """The archive is of one server: written on first use, compared ever after."""
    known = identity(directory)
    if known is None:
        write_atomically(directory / IDENTITY, (seen.model_dump_json(indent=2) + "\n").encode(), RECORD_MODE)
        return
    if (known.server_id, known.hostname, known.log_bin_basename) != (seen.server_id, seen.hostname,
                                                                   seen.log_bin_basename):
        raise ArchiveError(
            f"the binlog archive {directory} is of server_id {known.server_id} on {known.hostname} "
            f"({known.log_bin_basename}), but the configured server is server_id {seen.server_id} on {seen.hostname} "
            f"({seen.log_bin_basename}); point binlog.directory at another folder for this server")


def gaps(directory: Path) -> list[Gap]:
    path = directory / GAPS
    if not path.exists():
        return []
    try:
        return [Gap.model_validate(item) for item in json.loads(path.read_bytes())]
    except (OSError, ValidationError, ValueError) as exc:
        raise ArchiveError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None


def add_gap(directory: Path, gap: Gap) -> None:
    found = gaps(directory) + [gap]
    write_atomically(directory / GAPS, (json.dumps([g.model_dump() for g in found], indent=2) + "\n").encode(),
                     RECORD_MODE)


def chain_from(records: list[Record], name: str) -> bool:
    """Whether the archive holds `name` and every file after it up to its newest, none missing:
    a replay can start in `name` and reach the archive's end. Pure."""
    if not records:
        return False
    have = {r.seq for r in records}
    first, last = sequence(name), records[-1].seq
    return first <= last and all(seq in have for seq in range(first, last + 1))


def window_starts(records: list[Record], bases) -> dict[str, float]:
    """The oldest point each database can be restored to: over its base backups, given as
    (database, unix time from which a restore can use it, binlog file of its position), the
    oldest whose chain to the archive's end is whole. A database with none is left out. Pure."""
    starts: dict[str, float] = {}
    for database, when, name in bases:
        if chain_from(records, name) and (database not in starts or when < starts[database]):
            starts[database] = when
    return starts


def server_label(identity: Identity) -> str:
    """How metrics and listings name the archived server."""
    return f"{identity.hostname}/{identity.server_id}"


def identity(directory: Path) -> Identity | None:
    path = directory / IDENTITY
    try:
        return Identity.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, ValueError) as exc:
        raise ArchiveError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
