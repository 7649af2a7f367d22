"""The manifest: the contract of a backup. Written last; a folder without one is not a backup.

`Manifest` is the one place that knows its shape: load (with one-line reasons for a manifest
that cannot be trusted), dumps, and the comparison of a folder's files with the ones listed.
The JSON keeps the names and value types of format 1, so older versions and plain JSON
readers still understand a manifest written now; format 2 only says it was written through
this model. Unknown keys are kept, so loading and saving again loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError,
                      field_validator, model_serializer)

from tenangdb.errors import VerifyFailed

MANIFEST = "manifest.json"
FORMAT = 2
# Format 1: the same keys, written before the manifest had a model. Still read as it is.
READABLE_FORMATS = (1, 2)
COMPRESSIONS = ("zstd", "gzip", "xz", "none")
REQUIRED = ("format", "tool", "database", "engine", "started_at", "finished_at", "compression",
            "encryption", "files", "objects")


class Part(BaseModel):
    """A piece of a manifest. Keys this version does not know are kept; the keys named in
    `OMIT_IF_NONE` are left out rather than written as null, as they always were."""

    model_config = ConfigDict(extra="allow")
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if not (v is None and k in self.OMIT_IF_NONE)}


def _plain_name(value: str) -> bool:
    return "/" not in value and "\x00" not in value and value not in ("", ".", "..")


Size = Annotated[int, Field(strict=True, ge=0)]
Sha256 = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{64}$")]


class FileEntry(Part):
    """One stored file: its name in the folder and the size and SHA-256 of both the stored
    (compressed, maybe encrypted) bytes and the plain dump bytes they unseal to."""

    OMIT_IF_NONE = frozenset({"plain_name", "kind"})

    name: Annotated[str, Field(strict=True)]
    kind: str | None = None  # sql (one streamed dump) or mydumper (one file of its folder)
    plain_size: Size
    stored_size: Size
    plain_sha256: Sha256
    stored_sha256: Sha256
    plain_name: Annotated[str, Field(strict=True)] | None = None  # the dump tool's own file name

    @field_validator("name")
    @classmethod
    def _name_in_folder(cls, value: str) -> str:
        if not _plain_name(value) or value == MANIFEST:
            raise ValueError("not a plain file name")
        return value

    @field_validator("plain_name")
    @classmethod
    def _usable_plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _plain_name(value):
            raise ValueError("not a plain file name")
        return value

    @property
    def unsealed_name(self) -> str:
        """The name the plain bytes take when written out (the loader expects the tool's own)."""
        return self.plain_name or self.name


class Loss(Part):
    """Something the backup does not hold exactly, as an operator reads it."""

    object: Annotated[str, Field(strict=True)]
    lost: Annotated[str, Field(strict=True)]
    why: Annotated[str, Field(strict=True)]

    def __str__(self) -> str:
        return describe_loss(self.model_dump())


class Tool(Part):
    name: str | None = None
    version: str | None = None


class Server(Part):
    version: str | None = None
    flavour: str | None = None


class Engine(Part):
    """The engine that made the dump and how it was run (no login options)."""

    OMIT_IF_NONE = frozenset({"program", "version", "fallback_reason"})

    name: str
    program: str | None = None
    version: str | None = None
    options: list[str] = Field(default_factory=list)
    fallback_reason: str | None = None  # why the configured engine was not the one used


class Binlog(Part):
    """The binary log coordinates of the dump's snapshot, as far as the tool reported them."""

    OMIT_IF_NONE = frozenset({"file", "position", "gtid"})

    file: str | None = None
    position: int | None = None
    gtid: str | None = None


class Compression(Part):
    OMIT_IF_NONE = frozenset({"level"})

    format: Literal["zstd", "gzip", "xz", "none"]
    level: int | None = None


class Recipient(Part):
    recipient: str | None = None
    fingerprint: str | None = None


class Encryption(Part):
    """How the files are encrypted: `method` "age" in `mode` "recipients" (to the listed
    recipients' keys) or "passphrase" (age's scrypt mode; no recipient is listed, and nothing
    derived from the passphrase is written). A manifest without `mode` was written before
    passphrases existed: its files are encrypted to recipients."""

    OMIT_IF_NONE = frozenset({"mode"})

    enabled: bool = False
    method: str | None = None
    mode: str | None = None  # a mode a later version adds loads, and fails at decryption, naming it
    recipients: list[Recipient] = Field(default_factory=list)

    @property
    def effective_mode(self) -> str | None:
        if not self.enabled:
            return None
        return self.mode or "recipients"

    @property
    def fingerprints(self) -> list[str]:
        return [r.fingerprint for r in self.recipients if r.fingerprint]


class Objects(Part):
    """The database's inventory at backup time; the entries keep the shape the inventory gives."""

    tables: list[dict[str, Any]] = Field(default_factory=list)
    views: list[str] = Field(default_factory=list)
    sequences: list[str] = Field(default_factory=list)
    routines: list[dict[str, Any]] = Field(default_factory=list)
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The inventory as the mysql adapter takes it."""
        return self.model_dump()


class ContentChecks(Part):
    """Exact row counts and checksums taken in a snapshot proven to be the dump's, or why none
    were (`method` None and a `reason`). `tables` maps a table to its {rows, checksum}."""

    OMIT_IF_NONE = frozenset({"reason", "algorithm", "server_version", "tables", "skipped", "seconds",
                              "snapshot_binlog", "aligned"})

    method: str | None = None
    reason: str | None = None
    algorithm: str | None = None
    server_version: str | None = None
    tables: dict[str, Any] | None = None
    skipped: dict[str, str] | None = None  # table -> why it was not measured
    seconds: float | None = None
    snapshot_binlog: dict[str, Any] | None = None
    aligned: dict[str, Any] | None = None

    @property
    def proven_tables(self) -> dict[str, Any] | None:
        """The recorded counts and checksums, when there are any to compare with."""
        return self.tables if self.method == "snapshot" else None


class ExactFloats(Part):
    replaced_values: dict[str, int] = Field(default_factory=dict)  # table -> values rewritten


@dataclass
class FileComparison:
    """How a set of files differs from the ones a manifest lists: names missing and unexpected
    (sorted), and (name, size found, size listed) for each file of another size, in manifest order."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_size: list[tuple[str, int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_size)


class Manifest(Part):
    """What a backup holds and how to prove and load it."""

    format: int = FORMAT
    tool: Tool
    database: str
    name: str | None = None
    server: Server | None = None
    engine: Engine
    started_at: str
    finished_at: str
    binlog: Binlog | None = None
    compression: Compression
    encryption: Encryption
    database_charset: str | None = None
    database_collation: str | None = None
    database_comment: str | None = None
    # Objects whose own SQL names the database (they keep naming it after a renamed restore).
    qualified_references: list[str] = Field(default_factory=list)
    files: Annotated[list[FileEntry], Field(min_length=1)]
    objects: Objects
    content_checks: ContentChecks | None = None
    exact_floats: ExactFloats | None = None
    warnings: list[str] = Field(default_factory=list)
    losses: list[Loss] = Field(default_factory=list)

    @field_validator("files")
    @classmethod
    def _listed_once(cls, files: list[FileEntry]) -> list[FileEntry]:
        seen: set[str] = set()
        for entry in files:
            if entry.name in seen:
                raise ValueError(f"file {entry.name!r} is listed twice")
            seen.add(entry.name)
        return files

    def file_names(self) -> set[str]:
        return {entry.name for entry in self.files}

    def stored_bytes(self) -> int:
        return sum(entry.stored_size for entry in self.files)

    def compare(self, present: Mapping[str, int | None]) -> FileComparison:
        """The one check of "exactly the listed files": `present` maps each file found (the
        manifest itself excluded) to its size, or None where the size is not known."""
        listed = {entry.name: entry.stored_size for entry in self.files}
        return FileComparison(
            missing=sorted(set(listed) - set(present)),
            unexpected=sorted(set(present) - set(listed)),
            wrong_size=[(name, size, listed[name]) for name in listed
                        if (size := present.get(name)) is not None and size != listed[name]])

    def check_folder(self, folder: Path) -> None:
        """VerifyFailed unless the backup folder holds exactly the listed files, each of its size."""
        listed = self.file_names()
        # Only listed files are measured: anything else is refused by name, whatever it is.
        found = self.compare({p.name: p.stat().st_size if p.name in listed else None
                              for p in folder.iterdir() if p.name != MANIFEST})
        if found.missing:
            raise VerifyFailed(f"{folder / found.missing[0]}: listed in the manifest but missing")
        if found.unexpected:
            raise VerifyFailed(f"{folder / found.unexpected[0]}: not listed in the manifest "
                               "(unexpected file in a sealed backup)")
        if found.wrong_size:
            name, size, listed = found.wrong_size[0]
            raise VerifyFailed(f"{folder / name}: size is {size} bytes, the manifest says {listed} "
                               "(truncated or damaged)")

    def loss_records(self) -> list[dict[str, str]]:
        """The recorded losses as the plain {object, lost, why} records results carry."""
        return [loss.model_dump() for loss in self.losses]

    def dumps(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode("utf-8")


def load(folder: Path) -> Manifest:
    """Read and check a backup's manifest; VerifyFailed names what is wrong in one line."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifyFailed(f"{folder}: no {MANIFEST}, so this is not a complete backup") from None
    except PermissionError:
        raise VerifyFailed(f"{path}: not readable by this user") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerifyFailed(f"{path}: not valid JSON ({exc})") from None
    return parse(data, where=str(path))


def parse(data: Any, *, where: str) -> Manifest:
    """A manifest from its decoded JSON; `where` starts each error message."""
    if not isinstance(data, dict):
        raise VerifyFailed(f"{where}: not a manifest object")
    if missing := [key for key in REQUIRED if key not in data]:
        raise VerifyFailed(f"{where}: incomplete manifest, missing {', '.join(missing)}")
    if data["format"] not in READABLE_FORMATS or isinstance(data["format"], bool):
        raise VerifyFailed(f"{where}: manifest format {data['format']!r} is not supported by this version")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise VerifyFailed(f"{where}: {_problem(exc, data)}") from None


# The order in which problems are reported when a manifest has several.
_ORDER = ("compression", "encryption", "files", "losses")
_FILE_FIELDS = {"plain_size": "has no valid plain_size", "stored_size": "has no valid stored_size",
                "plain_sha256": "has a missing or malformed SHA-256",
                "stored_sha256": "has a missing or malformed SHA-256",
                "name": "is not a plain file name", "plain_name": "has an unusable plain_name"}
_FILE_ORDER = ("plain_size", "stored_size", "plain_sha256", "stored_sha256", "name", "plain_name")


def _problem(exc: ValidationError, data: dict) -> str:
    """The first thing wrong, in the words an operator reads."""
    def rank(error) -> tuple:
        loc = error["loc"]
        top = _ORDER.index(loc[0]) if loc[0] in _ORDER else len(_ORDER)
        entry = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
        inner = _FILE_ORDER.index(loc[2]) if len(loc) > 2 and loc[2] in _FILE_ORDER else -1
        return top, entry, inner
    error = min(exc.errors(), key=rank)
    loc = error["loc"]
    key = loc[0]
    if key == "compression":
        return "the manifest names no known compression"
    if key == "files":
        files = data["files"]
        if len(loc) == 1:
            duplicate = error.get("ctx", {}).get("error")
            return str(duplicate) if duplicate else "the manifest lists no files"
        entry = files[loc[1]]
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return "a file entry is malformed"
        return f"file entry {entry['name']!r} {_FILE_FIELDS.get(str(loc[2]), 'is malformed')}"
    return f"the manifest's {key} entry is malformed"


def describe_loss(loss: Mapping[str, str]) -> str:
    """One recorded loss as the line an operator reads."""
    return f"{loss['object']}: {loss['lost']} ({loss['why']})"
