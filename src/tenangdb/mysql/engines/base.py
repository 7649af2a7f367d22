"""The engine interface: one way of making a backup of a database and loading it back.

An engine owns its tools, what it cannot carry (the action then uses its fallback engine),
its dump into the sealing pipeline, the files it leaves in the backup folder, their check
beyond the hashes, and the load into a target database. The actions pick an engine from the
registry (`engines/__init__.py`) by the config or by the manifest's `engine.name`, and ask it
through this interface only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from tenangdb import control
from tenangdb.errors import BackupFailed
from tenangdb.mysql import fidelity
from tenangdb.progress import Progress, Task
from tenangdb.repository.manifest import FileEntry, Manifest


@dataclass
class BackupJob:
    """One database's backup: what every step of it needs, handed down as one value."""
    database: str
    endpoint: object  # mysql.connection.Endpoint
    server: object  # mysql.inventory.ServerInfo
    settings: object  # config.schema.Settings
    directory: Path
    compression: str
    level: int
    keys: object | None  # stream.crypto keys; None: not encrypted
    progress: Progress = field(default_factory=Progress)

    @property
    def timeout(self) -> float:
        return self.settings.backup.timeout

    @property
    def recipients(self):
        return self.keys.recipients if self.keys is not None else None


@dataclass
class DumpInput:
    """What the action learned of the database before the dump, and its hooks into it."""
    staging: object  # repository.store.Staging
    inventory: object  # mysql.inventory.Inventory
    checked: fidelity.Preflight
    # Wraps the reader of the plain dump stream (exact values put back); engines that
    # rewrite values take it, others never get one.
    rewrite: Callable | None = None
    # The dump tool is done with the server (the seal may go on a while).
    on_tool_exit: Callable[[], None] = lambda: None


@dataclass
class Dumped:
    files: list[dict]
    engine: dict  # the manifest's engine record: name, program, version, options
    binlog: dict | None
    warnings: list[str]
    # What the dump found it could not carry exactly (e.g. a compensation that could not be done).
    losses: list[fidelity.Loss] = field(default_factory=list)


class Engine:
    """The interface; see the module's docstring. Instances hold resolved tool paths."""

    name: ClassVar[str]  # backup.engine's value and the manifest's engine.name
    label: ClassVar[str]  # as the log names it: "the {label} engine"
    # The engine for databases this one cannot carry (cannot_carry), by name; None: none.
    fallback: ClassVar[str | None] = None
    # The plain dump passes through exact.Rewriter: FLOAT, ENUM and sequence values put back.
    rewrites_values: ClassVar[bool] = False
    # Content checks may run while the dump does (else once the tool has left the server).
    checks_during_dump: ClassVar[bool] = True
    # Loading reads the backup unsealed into a private folder (else it streams each file).
    loads_from_folder: ClassVar[bool] = False
    # The privileges a load needs are those of the streaming client (grants.restore_requirements).
    loads_by_client: ClassVar[bool] = True
    # The content of the original TenangDB's backups this engine loads (repository/legacy.py).
    legacy_form: ClassVar[str | None] = None
    # A load may take only some tables of a backup (`load(..., tables=...)`, `restore --tables`).
    loads_tables: ClassVar[bool] = False
    # A backup of the whole instance (filed under mariabackup.INSTANCE), not of one database:
    # backup.databases does not narrow it, and it restores into a data directory, not a database.
    whole_instance: ClassVar[bool] = False

    def __init__(self, dcfg) -> None:
        self.dcfg = dcfg
        self._tools: dict[Callable, str] = {}

    def tool(self, find: Callable) -> str:
        """A tool's path, found once (mysql/tools.py: ToolMissing when it is not there)."""
        if find not in self._tools:
            self._tools[find] = find(self.dcfg)
        return self._tools[find]

    # --- choosing -------------------------------------------------------------------------
    @classmethod
    def chosen_by_auto(cls, dcfg) -> bool:
        """Whether `backup.engine: auto` takes this engine on this machine."""
        return False

    def check_chosen(self) -> None:
        """Named in backup.engine: raise ConfigError/ToolMissing if it cannot be used here."""

    # --- backup ---------------------------------------------------------------------------
    def check_backup_tools(self) -> None:
        """Raise ToolMissing/ConfigError now, before any database, when a tool is not there."""

    def tools_seen(self) -> list[str]:
        """The tools and versions a backup with this engine runs (doctor)."""
        return []

    def cannot_carry(self, conn, database: str, inventory, checked: fidelity.Preflight) -> list[str]:
        """Why this engine cannot back up this database exactly (then its fallback does)."""
        return []

    def describe_fallback(self, reasons: list[str]) -> str:
        return f"{self.name} cannot carry everything in this database ({'; '.join(reasons)})"

    def float_loss_reason(self) -> str:
        """Why FLOAT values restore rounded when no exact values were read."""
        return "the dump prints FLOAT with 6 significant digits"

    def alignment_mode(self, server) -> str:
        """How commits are held while the dump's snapshot opens (mysql/alignment.py)."""
        raise NotImplementedError

    def tool_opened(self, database: str) -> Callable[[str | None, object], bool]:
        """Tells, from a PROCESSLIST row (db, info), the dump tool's connection once its view is open."""
        raise NotImplementedError

    @classmethod
    def dump_needs(cls, flavour: str, version: tuple[int, ...]) -> list:
        """The privileges of this engine beyond those every dump needs (grants.Need)."""
        return []

    def dump(self, job: BackupJob, into: DumpInput) -> Dumped:
        raise NotImplementedError

    # --- verify and load ------------------------------------------------------------------
    def check_files(self, folder: Path, manifest: Manifest) -> list[str]:
        """What the files of a backup lack beyond what the hashes show (e.g. a file removed
        with its manifest entry); each a line naming it."""
        return []

    def load_tool(self) -> str:
        """The loading tool's path, or RestoreFailed saying why there is none (before any read)."""
        raise NotImplementedError

    def loader(self, manifest: Manifest, entry: FileEntry, endpoint, target: str):
        """A context manager yielding the callable that takes one file's plain bytes, loading
        them into `target`; None when this engine loads from a folder instead."""
        return None

    def load(self, manifest: Manifest, folder: Path, plain_dir: Path | None, endpoint, target: str, *,
             identities, plain_bytes: int, configured_login: bool = True, tables: list[str] | None = None,
             progress: Task | None = None) -> int:
        """Load a verified backup into `target` (which exists); the plain bytes loaded.
        `tables`: only these tables, views and sequences of it (with the tables' triggers; no
        routines, no events), for an engine that `loads_tables`; None: all of it. `progress`
        hears of a "loading" stage of the plain bytes and how far it is."""
        raise NotImplementedError

    def files_for(self, manifest: Manifest, tables: list[str]) -> set[str] | None:
        """For an engine that loads from a folder: the plain names of the files a load of these
        tables reads (only they need unsealing); None: every file."""
        return None

    def load_legacy(self, old, endpoint, target: str, private_folder: Callable[[], Path]) -> int:
        """Load a backup of the original TenangDB (legacy.Legacy of this engine's legacy_form)
        into `target`, refusing one its dump tool did not finish; the plain bytes loaded.
        `private_folder()` makes a 0700 folder for plaintext, removed by the caller."""
        raise NotImplementedError


def dump_deadline(child, job: BackupJob, program: str) -> control.Deadline:
    """backup.timeout for one dump: on expiry the tool's whole process group is killed."""
    return control.Deadline(job.timeout, program, child.kill_group, setting="backup.timeout")


def check_exit(program: str, child, status: int, deadline: control.Deadline) -> None:
    if deadline.expired:
        raise BackupFailed(deadline.message())
    if status < 0:
        raise BackupFailed(f"{program} was killed by signal {-status}")
    if status != 0:
        raise BackupFailed(f"{program} failed (exit {status}): {child.error_line()}")


def seal_stdout(child, job: BackupJob, dest: Path, wrap: Callable | None = None):
    """A dump tool's stdout, read ahead in a thread, counted for the progress display, passed
    through `wrap` (exact values put back) when given, and sealed into `dest`: its SealResult."""
    from tenangdb.repository import store
    from tenangdb.stream.pipeline import ReadAhead, seal

    reader = ReadAhead(child.stdout)
    done = 0

    def counted(n: int = -1) -> bytes:
        nonlocal done
        chunk = reader.read(n)
        done += len(chunk)
        job.progress.advanced(job.database, done)
        return chunk
    try:
        return seal(wrap(counted) if wrap else counted, dest, compression=job.compression, level=job.level,
                    recipients=job.recipients)
    except OSError as exc:
        raise store.disk_error(exc, dest.parent) from None
    finally:
        reader.close()


def pipe_writer(stdin) -> Callable[[bytes], None]:
    """Write all of each piece into a child's stdin (a raw pipe write may take only part of it)."""
    def write_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[stdin.write(view):]
    return write_all


def file_entry(name: str, kind: str, sealed, plain_name: str | None = None) -> dict:
    entry = {"name": name, "kind": kind,
             "plain_size": sealed.plain.size, "plain_sha256": sealed.plain.sha256,
             "stored_size": sealed.stored.size, "stored_sha256": sealed.stored.sha256}
    if plain_name is not None:
        entry["plain_name"] = plain_name
    return entry


def options_of(argv: list[str], skipped: tuple[str, ...]) -> list[str]:
    """The options a manifest records: long options, without logins and paths."""
    return [a for a in argv[1:] if a.startswith("--") and not a.startswith(skipped) and a != "--"]
