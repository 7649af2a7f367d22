"""`tenangdb restore`: verify first, then stream the dump into the target database (all of it, or
some of its tables: `tables`, mysql/sections.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tenangdb import orphans
from tenangdb.actions.verify import (Verified, _extraction, ancestor, chain_of, identities_for, resolve_backup_path,
                                     verify_backup)
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import InvalidInput, RestoreFailed, VerifyFailed, signals_deferred
from tenangdb.mysql import grants as grants_mod
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql import engines, sections
from tenangdb.mysql.connection import Endpoint, connect, endpoint_from, quote_identifier, translated_errors
from tenangdb.progress import Task, task
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository import legacy as legacy_mod
from tenangdb.repository import store
from tenangdb.repository.manifest import Manifest

log = logging.getLogger("tenangdb.restore")


@dataclass
class Restored:
    path: Path
    target: str
    duration: float
    plain_bytes: int


@dataclass
class TargetCheck:
    """What `check_target` found: the target may be written (the operator agreed if it had to).
    `non_empty`: it held what the restore replaces (any object; with --tables, a chosen one)."""
    target: str
    existed: bool
    non_empty: bool


def check_name(target: str, *, allow_system_schema: bool = False) -> None:
    """Refuse, before anything is read or connected, a name the server would reject and the
    server's own schemas."""
    if problem := inv_mod.database_name_problem(target):
        raise InvalidInput(f"cannot restore into {target!r}: {problem}")
    if target.lower() in inv_mod.VIRTUAL_SCHEMAS:
        raise InvalidInput(f"cannot restore into {target!r}: the server makes up its tables, nothing can be "
                           "loaded into it")
    if inv_mod.is_system_schema(target) and not allow_system_schema:
        raise InvalidInput(f"refusing to restore into the system schema {target!r}: its tables are the "
                           "server's own (accounts, grants, time zones, sys views); pass --allow-system-schema "
                           "to replace them from this backup")


def check_target(loaded: LoadedConfig, target: str, *, confirm: Callable[[str], bool],
                 allow_system_schema: bool = False, manifest: Manifest | None = None,
                 source: str | None = None, engine: engines.Engine | None = None,
                 tables: list[str] | None = None) -> TargetCheck:
    """The checks a restore can make without reading the backup: the name, the connection, the
    privileges on the target and whether it holds anything (asking before writing into it).
    `manifest` None: not known yet (a remote backup not downloaded); checked again with it.
    `tables`: only these are restored, so only they are asked about."""
    check_name(target, allow_system_schema=allow_system_schema)
    if engine is None and manifest is not None:
        engine = engines.for_manifest(manifest, loaded.settings.database)
    streaming = engine is None or engine.loads_by_client
    objects = None if manifest is None else (
        manifest.objects.as_dict() if tables is None else sections.select(manifest.objects.as_dict(), tables).objects())
    endpoint = endpoint_from(loaded.settings.database)
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            _check_privileges(conn, target, objects, streaming=streaming)
            existed = inv_mod.database_exists(conn, target)
            replaced = _replaced(conn, target, tables) if existed else []
    finally:
        conn.close()
    _ask(confirm, target, repr(manifest.database) if manifest else (source or "the backup"), replaced)
    return TargetCheck(target=target, existed=existed, non_empty=bool(replaced))


def _replaced(conn, target: str, tables: list[str] | None) -> list[str]:
    """What of `target` (which exists) a restore replaces: for a whole backup ["*"] when it holds
    any object; for some tables, those of them it holds. Empty: nothing to ask about."""
    if tables is None:
        return ["*"] if inv_mod.database_object_count(conn, target) > 0 else []
    have = inv_mod.inventory(conn, target)
    present = {t["name"] for t in have.tables} | set(have.views) | set(have.sequences)
    return [name for name in tables if name in present]


def _ask(confirm: Callable[[str], bool], target: str, what: str, replaced: list[str]) -> None:
    """Ask before replacing anything in the target; RestoreFailed when the operator says no."""
    if not replaced:
        return
    if replaced == ["*"]:
        question = (f"Database {target!r} exists and is not empty; objects in the backup will replace those of "
                    f"the same name. Restore {what} into it?")
        refusal = f"database {target!r} exists and is not empty"
    else:
        names = ", ".join(repr(name) for name in replaced)
        question = f"Database {target!r} already holds {names}; replace {'it' if len(replaced) == 1 else 'them'} " \
                   f"from {what}?"
        refusal = f"database {target!r} already holds {names}"
    if not confirm(question):
        raise RestoreFailed(f"{refusal}; restore cancelled (pass --yes to restore into it)")


def _check_privileges(conn, target: str, objects: dict | None, *, streaming: bool) -> None:
    user, host, lines = grants_mod.current_grants(conn)
    grants, roles = grants_mod.parse_grants(lines)
    if roles:
        return  # a role's privileges are not in SHOW GRANTS of the account: the load will tell
    needs = grants_mod.restore_requirements(objects, streaming=streaming)
    report = grants_mod.check(grants, roles, needs, [target], user=user, host=host)
    if missing := report.missing_required:
        names = ", ".join(dict.fromkeys(need.privilege for need, _ in missing))
        raise RestoreFailed(f"database user {user}@{host} lacks {names} on {quote_identifier(target)}.*, "
                            f"which restoring this backup needs (nothing was changed)")


def run(loaded: LoadedConfig, backup_path: str | Path, target: str, *,
        confirm: Callable[[str], bool], allow_system_schema: bool = False,
        checked: TargetCheck | None = None, tables: list[str] | None = None,
        progress: Task | None = None) -> Restored:
    """Restore a backup into `target`. `checked`: the target was checked (and the operator
    asked) already, before a download. `tables`: only these tables, views and sequences of the
    backup, with their tables' triggers (no routines, no events); the rest of the target stays.
    `progress` hears of each stage (verifying, loading, checking objects); the caller ends it."""
    check_name(target, allow_system_schema=allow_system_schema)
    if (old := legacy_mod.detect(Path(backup_path))) is not None:
        if tables is not None:
            raise InvalidInput(f"--tables needs a backup that records its tables: {old.path} is {old.describe()}, "
                               "with no manifest; restore it whole into a scratch database and copy the tables")
        return _run_legacy(loaded, old, target, confirm=confirm, allow_system_schema=allow_system_schema,
                           checked=checked, progress=progress)
    manifest = _manifest_if_readable(backup_path)
    if manifest is not None:
        # Everything that needs no backup byte comes first: a wrong password, an unknown table or
        # a non-empty target is reported at once, not after minutes of reading.
        engine = engines.for_manifest(manifest, loaded.settings.database)
        if engine.whole_instance:
            raise InvalidInput(f"{backup_path} is a physical backup of the whole instance: it restores into a new "
                               "data directory (restore -b BACKUP --datadir DIR), or one database of it into a "
                               "database (restore -b BACKUP --source-database DB -d TARGET)")
        if tables is not None:
            _select(engine, manifest, tables)
        engine.load_tool()
        asked = checked is not None and checked.non_empty
        checked = check_target(loaded, target, confirm=(lambda question: True) if asked else confirm,
                               allow_system_schema=allow_system_schema, manifest=manifest, tables=tables)
    scratch = plain_folder(loaded, backup_path)
    try:
        return _run(loaded, backup_path, target, confirm, scratch, checked, tables, progress)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def own_database(backup_path: str | Path) -> str:
    """The database a backup was made of: a restore's target when none is named."""
    if (old := legacy_mod.detect(Path(backup_path))) is not None:
        return old.database
    return manifest_mod.load(resolve_backup_path(backup_path)).database


def _manifest_if_readable(backup_path: str | Path) -> Manifest | None:
    """The manifest, shape-checked; None when it is unusable (verification says why)."""
    try:
        return manifest_mod.load(resolve_backup_path(backup_path))
    except VerifyFailed:
        return None


def plain_folder(loaded: LoadedConfig, backup_path: str | Path) -> Path | None:
    """For a backup whose engine loads from a folder, a private folder beside it for the plaintext.

    Such a loader (myloader) reads a whole folder, so the plaintext exists on disk for the
    length of the load: 0700, on the backup's own filesystem, removed however the restore ends.
    """
    try:
        folder = resolve_backup_path(backup_path)
        engine = engines.for_manifest(manifest_mod.load(folder), loaded.settings.database)
    except (OSError, VerifyFailed):
        return None  # verification will say what is wrong with it
    if not engine.loads_from_folder:
        return None
    return private_folder_beside(folder)


def private_folder_beside(path: Path) -> Path:
    """A 0700 folder in `path`'s own folder, named with its owner so that the next run removes
    it if this one is killed outright (orphans.py)."""
    try:
        store.remove_orphaned_restores(path.parent)
        scratch = Path(tempfile.mkdtemp(prefix=f"{store.RESTORE_PREFIX}{orphans.token()}-", dir=path.parent))
    except OSError as exc:
        raise RestoreFailed(f"cannot create a private folder beside {path}: {exc.strerror or exc}") from None
    os.chmod(scratch, 0o700)
    return scratch


def _select(engine: engines.Engine, manifest: Manifest, tables: list[str]) -> sections.Selection:
    """The objects a restore of `tables` loads; InvalidInput for a backup that cannot give single
    tables or a name it does not hold."""
    if not engine.loads_tables:
        raise InvalidInput(f"--tables needs a logical backup (one section or file per table); this one was made "
                           f"by the {engine.label} engine")
    return sections.select(manifest.objects.as_dict(), tables)


def _run(loaded: LoadedConfig, backup_path, target: str, confirm, scratch: Path | None,
         checked: TargetCheck | None, tables: list[str] | None = None, progress: Task | None = None) -> Restored:
    progress = task(progress)
    chosen = None
    if scratch is not None or tables is not None:
        listed = manifest_mod.load(resolve_backup_path(backup_path))
        engine = engines.for_manifest(listed, loaded.settings.database)
        chosen = None if tables is None else _select(engine, listed, tables)
    if scratch is not None:
        engine.load_tool()  # before reading gigabytes, not after
    try:
        # A mydumper backup is unsealed in the verifying pass itself: one read of the backup.
        if chosen is not None and scratch is not None:
            # Every file is verified; only those of the chosen tables are unsealed to disk.
            verified = verify_backup(loaded, backup_path,
                                     sink=_unsealing(engine.files_for(listed, sorted(chosen.names)), scratch),
                                     progress=progress)
        else:
            verified = verify_backup(loaded, backup_path, extract_to=scratch, progress=progress)
    except VerifyFailed as exc:
        raise type(exc)(f"refusing to restore from a backup that failed verification: {exc}") from None
    except OSError as exc:
        raise RestoreFailed(f"cannot write the unsealed dump under {scratch}: {exc.strerror or exc}") from None
    manifest, folder = verified.manifest, verified.path
    cfg = loaded.settings
    engine = engines.for_manifest(manifest, cfg.database)
    engine.load_tool()
    if chosen is not None:
        log.info("restoring only %s of %s", chosen.describe(), folder)
        if left := chosen.left_out():
            log.warning("not restored with --tables: %s", left)
    endpoint, created = _open_target(loaded, target, confirm, checked, repr(manifest.database),
                                     lambda conn: _create_target(conn, target, manifest), tables)
    started = time.monotonic()
    with _undone_on_failure(endpoint, target, created):
        total = load_verified(loaded, verified, scratch, endpoint, target, tables=tables, progress=progress)
        progress.step("checking objects")
        _check_objects(endpoint, target, manifest, chosen, only=created)
    duration = time.monotonic() - started
    log.info("restored %s into database %r in %.1fs", folder, target, duration)
    return Restored(path=folder, target=target, duration=duration, plain_bytes=total)


def _run_legacy(loaded: LoadedConfig, old: legacy_mod.Legacy, target: str, *, confirm: Callable[[str], bool],
                allow_system_schema: bool, checked: TargetCheck | None, progress: Task | None = None) -> Restored:
    """A backup of the original TenangDB: no manifest, so neither its bytes nor its objects can be
    checked; the dump tool's completion mark is, and the operator is told what is not."""
    engine = engines.for_legacy(legacy_mod.content_form(old), loaded.settings.database)
    engine.load_tool()
    asked = checked is not None and checked.non_empty
    checked = check_target(loaded, target, confirm=(lambda question: True) if asked else confirm,
                           allow_system_schema=allow_system_schema, source=str(old.path), engine=engine)
    log.warning("%s is %s: nothing records its checksums or its objects, so this restore can check only that "
                "the dump tool finished it", old.path, old.describe())
    endpoint, created = _open_target(loaded, target, confirm, checked, str(old.path),
                                     lambda conn: _create_target(conn, target, None))
    scratch: list[Path] = []

    def private_folder() -> Path:
        scratch.append(private_folder_beside(old.path))
        return scratch[-1]
    started = time.monotonic()
    task(progress).step("loading")  # no manifest: nothing says how much there is
    try:
        with _undone_on_failure(endpoint, target, created):
            total = engine.load_legacy(old, endpoint, target, private_folder)
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    duration = time.monotonic() - started
    log.info("restored the legacy backup %s into database %r in %.1fs (not proven: it has no manifest)", old.path,
             target, duration)
    return Restored(path=old.path, target=target, duration=duration, plain_bytes=total)


def _open_target(loaded: LoadedConfig, target: str, confirm, checked: TargetCheck | None, what: str,
                 create: Callable, tables: list[str] | None = None) -> tuple[Endpoint, bool]:
    """Connect, ask again if the target filled up since it was checked, create it if missing:
    the endpoint and whether this restore created the database."""
    endpoint = endpoint_from(loaded.settings.database)
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            # Checked before the (long) verification; ask again only if it filled up meanwhile.
            if (checked is None or not checked.non_empty) and inv_mod.database_exists(conn, target):
                _ask(confirm, target, what, _replaced(conn, target, tables))
            return endpoint, create(conn)
    finally:
        conn.close()


@contextlib.contextmanager
def _undone_on_failure(endpoint: Endpoint, target: str, created: bool):
    """A half-loaded database looks like a restored one. One this restore created holds nothing
    else, so it goes if the load fails; one that existed before is not ours to drop."""
    try:
        yield
    except BaseException as exc:
        if created:
            with signals_deferred():
                dropped = drop_created_database(endpoint, target)
            note = (f"the partly loaded database {target!r}, created by this restore, was dropped" if dropped
                    else f"the partly loaded database {target!r} could not be dropped; drop it by hand")
        else:
            note = f"database {target!r} existed before this restore and may now be partly loaded"
        if isinstance(exc, (RestoreFailed, VerifyFailed)):
            raise type(exc)(f"{exc}; {note}") from None
        log.error("restore stopped: %s", note)
        raise


def _check_objects(endpoint: Endpoint, target: str, manifest: Manifest, chosen: sections.Selection | None = None,
                   *, only: bool = False) -> None:
    """A loader's exit status is not proof (a dump cut between two rows still ends in a valid
    INSERT, and the client exits 0): every object the manifest lists must be there, or, for a
    restore of some tables (`chosen`), every chosen one; and with `only` (a target this restore
    created), nothing else either."""
    wanted = manifest.objects.as_dict() if chosen is None else chosen.objects()
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            missing = inv_mod.missing_objects(conn, target, wanted)
            extra = _unexpected(conn, target, wanted) if chosen is not None and only else []
    finally:
        conn.close()
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise RestoreFailed(f"the load into {target!r} ended without error but is incomplete: {missing[0]}{more}")
    if extra:
        raise RestoreFailed(f"the load of only {chosen.describe()} created more in {target!r}: {', '.join(extra)}")


def _unexpected(conn, target: str, wanted: dict) -> list[str]:
    """The objects of `target` that are not in `wanted` (a manifest's inventory shape), named."""
    have = inv_mod.inventory(conn, target)
    expected = {(kind, name) for kind, name in _named(wanted)}
    return [f"{kind} {name!r}" for kind, name in _named(have.as_manifest()) if (kind, name) not in expected]


def _named(objects: dict) -> list[tuple[str, str]]:
    return [("table", t["name"]) for t in objects.get("tables") or []] + \
        [("view", v) for v in objects.get("views") or []] + \
        [("sequence", s) for s in objects.get("sequences") or []] + \
        [("routine", f"{r['type']} {r['name']}") for r in objects.get("routines") or []] + \
        [("trigger", t["name"]) for t in objects.get("triggers") or []] + \
        [("event", e) for e in objects.get("events") or []]


def _create_target(conn, target: str, manifest: Manifest | None) -> bool:
    """Create the target unless it exists, with the source's character set when the manifest
    says it; True only when this call created it."""
    return create_target(conn, target, manifest.database_charset if manifest else None,
                         manifest.database_collation if manifest else None,
                         manifest.database_comment if manifest else None)


def create_target(conn, target: str, charset: str | None, collation: str | None, comment: str | None) -> bool:
    """Create the target unless it exists; True only when this call created it (the name was
    free at CREATE DATABASE time, so the database is ours to drop again)."""
    if inv_mod.database_exists(conn, target):
        return False
    try:
        inv_mod.create_new_database(conn, target, charset, collation, comment)
    except inv_mod.DatabaseExists:
        return False  # somebody else's, created a moment ago
    return True


def drop_created_database(endpoint: Endpoint, name: str) -> bool:
    """Drop a database this run created, on a fresh connection (the old one may be the
    reason we are here); one retry. False, logged, when it could not be dropped."""
    last: Exception | None = None
    for _ in range(2):
        try:
            conn = connect(endpoint)
            try:
                inv_mod.drop_database(conn, name)
            finally:
                conn.close()
            log.debug("dropped database %r", name)
            return True
        except Exception as exc:  # noqa: BLE001 - retried once on a fresh connection, then reported
            last = exc
    log.error("could not drop database %r: %s; drop it by hand", name, last)
    return False


def load_verified(loaded: LoadedConfig, verified: Verified, scratch: Path | None, endpoint: Endpoint, target: str,
                  *, configured_login: bool = True, tables: list[str] | None = None,
                  progress: Task | None = None) -> int:
    """Load a verified backup into `target` (which exists) at `endpoint`; the plain bytes loaded.

    No questions asked: the caller decided the target may be written. `configured_login`
    false ignores the loader's own configured login file (a sandbox is not that server).
    """
    manifest, folder = verified.manifest, verified.path
    engine = engines.for_manifest(manifest, loaded.settings.database)
    references = manifest.qualified_references
    if tables is not None:
        references = [r for r in references if sections.select(manifest.objects.as_dict(), tables).includes(r)]
    if target != manifest.database and references:
        log.warning("these objects name database %r in their own SQL and will keep using it after the "
                    "restore into %r: %s", manifest.database, target, ", ".join(references))
    return engine.load(manifest, folder, scratch, endpoint, target, identities=identities_for(loaded, manifest, folder),
                       plain_bytes=verified.plain_bytes, configured_login=configured_login, tables=tables,
                       progress=progress)


def _unsealing(wanted: set[str] | None, scratch: Path):
    """A verifying pass's sink that writes the plain bytes of the files named in `wanted` (None:
    all) into `scratch`, as the pass's own extraction does, and only checks the others."""
    return lambda manifest, entry: _extraction(scratch if wanted is None or entry.unsealed_name in wanted else None,
                                               entry)



# --- a physical backup into a new data directory ---------------------------------------------

@dataclass
class RestoredDatadir:
    path: Path
    datadir: Path
    duration: float
    plain_bytes: int
    owner: str | None  # the user the files were given to (as root), else None
    start_command: str


def check_datadir(datadir: Path) -> None:
    """A physical restore writes only into a new, empty data directory: never over data, and
    never under a running server. InvalidInput (exit 2) before anything is read."""
    if datadir.exists() and not datadir.is_dir():
        raise InvalidInput(f"--datadir {datadir}: not a directory")
    if datadir.is_dir():
        entries = sorted(p.name for p in datadir.iterdir())
        if entries:
            live = {"ibdata1", "aria_log_control", "mysql", "ib_logfile0"} & set(entries)
            what = "holds a server's data files" if live else "is not empty"
            raise InvalidInput(f"--datadir {datadir} {what} ({', '.join(entries[:3])}"
                               f"{', …' if len(entries) > 3 else ''}); a physical restore goes into a new, "
                               "empty data directory only (stop nothing: give a new path)")
    elif not datadir.parent.is_dir():
        raise InvalidInput(f"--datadir {datadir}: its parent folder {datadir.parent} does not exist")
    if (running := _server_on(datadir)) is not None:
        raise InvalidInput(f"--datadir {datadir} is the data directory of a running server (pid {running})")


def _server_on(datadir: Path) -> int | None:
    """The pid of a running mariadbd/mysqld whose --datadir is `datadir` (as far as this user can see)."""
    wanted = os.path.realpath(datadir)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or Path(argv[0].decode(errors="replace")).name not in ("mariadbd", "mysqld"):
            continue
        for arg in argv:
            if arg.startswith(b"--datadir=") and os.path.realpath(arg[10:].decode(errors="replace")) == wanted:
                return int(proc.name)
    return None


def run_datadir(loaded: LoadedConfig, backup_path: str | Path, datadir: str | Path, the_plan=None, *,
                progress: Task | None = None) -> RestoredDatadir:
    """Verify a physical backup, unpack it (mbstream) into a private folder beside `datadir` in
    the verifying pass, prepare it, and move it into `datadir` (new and empty), owned by the
    server's user when run as root. `the_plan` (actions/pitr.py): replayed to its stop point in
    a server of our own before it is moved (actions/instance.py). `backup_path` may be a
    download of a remote copy (fetch.fetched, which brings its chain): its disk is reckoned
    from the downloaded manifests. `progress` hears of each stage; the caller ends it."""
    from tenangdb.actions import instance

    datadir = Path(datadir).absolute()
    check_datadir(datadir)
    listed = manifest_mod.load(resolve_backup_path(backup_path))
    engine = engines.for_manifest(listed, loaded.settings.database)
    if not engine.whole_instance:
        raise InvalidInput(f"--datadir restores a physical backup (backup.engine: mariabackup); this one was made by "
                           f"the {engine.label} engine: restore it into a database with -d")
    engine.load_tool()  # before reading gigabytes, not after
    if the_plan is not None:
        from tenangdb.actions.binlog import binlog_tool
        binlog_tool(loaded.settings)
        engines.sql_client(loaded.settings.database).load_tool()
    # A remote base's plan could not know its chain's size before the download.
    needed = the_plan.space_needed if the_plan is not None and the_plan.space_needed else \
        instance.space_needed(loaded, backup_path)
    instance.check_space(datadir.parent, needed, f"restoring {Path(backup_path).name}")
    if datadir.is_dir() and os.stat(datadir).st_dev != os.stat(datadir.parent).st_dev:
        instance.check_space(datadir, needed, f"moving {Path(backup_path).name} into {datadir}")
    progress = task(progress)
    started = time.monotonic()
    scratch = private_folder_beside(datadir)
    try:
        if the_plan is None:
            verified, prepared = unpack_prepared(loaded, backup_path, engine, scratch, progress=progress)
        else:
            with instance.started(loaded, backup_path, scratch, the_plan, progress=progress) as done:
                verified, prepared = done.verified, done.prepared
        progress.step("moving into the data directory")
        engine.move_back(prepared, datadir)
    except VerifyFailed as exc:
        raise type(exc)(f"refusing to restore from a backup that failed verification: {exc}") from None
    finally:
        with signals_deferred():
            shutil.rmtree(scratch, ignore_errors=True)
    owner = give_to_server_user(datadir)
    duration = time.monotonic() - started
    command = (f"mariadbd --no-defaults --datadir={datadir} --socket={datadir}/mysqld.sock --port=3307"
               + (f" --user={owner}" if owner else ""))
    log.info("restored %s into the data directory %s in %.1fs", verified.path, datadir, duration)
    return RestoredDatadir(path=verified.path, datadir=datadir, duration=duration, plain_bytes=verified.plain_bytes,
                           owner=owner, start_command=command)


def unpack_prepared(loaded: LoadedConfig, backup_path, engine, scratch: Path, *,
                    progress: Task | None = None) -> tuple[Verified, Path]:
    """Every backup of the chain up to this one (itself alone if it is no increment), full backup
    first, verified while unpacked into its own private folder under `scratch`; then the full
    backup is prepared and each increment applied to it in order. Returns the backup's
    verification (plain bytes of the whole chain) and the prepared folder. A broken link (a
    parent missing, an LSN gap, a damaged file) fails before anything is prepared. `progress`
    hears of each member's verifying pass and of the prepare."""
    os.chmod(scratch, 0o700)
    folder = resolve_backup_path(backup_path)
    chain = chain_of(loaded, folder, manifest_mod.load(folder))
    unpacked, plain_bytes = [], 0
    for member in chain:
        into = scratch / member.name
        os.mkdir(into, 0o700)
        if member is chain[-1]:
            verified = unpack_verified(loaded, member.path, engine, into, progress=progress)
        else:
            verified = ancestor(member.name, unpack_verified, loaded, member.path, engine, into, progress=progress)
        unpacked.append(into)
        plain_bytes += verified.plain_bytes
    use_memory = loaded.settings.backup.physical.use_memory
    full = unpacked[0]
    task(progress).step("preparing")
    engine.prepare(full, use_memory)
    for increment in unpacked[1:]:
        engine.prepare(full, use_memory, increment)
        shutil.rmtree(increment, ignore_errors=True)  # applied: its space is wanted back
    return Verified(path=verified.path, manifest=verified.manifest, plain_bytes=plain_bytes), full


def unpack_verified(loaded: LoadedConfig, backup_path, engine, into: Path, *,
                    progress: Task | None = None) -> Verified:
    """One pass: every file verified while mbstream unpacks it into `into` (0700); what was
    unpacked may be used only once this returns. The backup alone: unpack_prepared goes
    through its chain."""
    os.chmod(into, 0o700)
    try:
        return verify_backup(loaded, backup_path, sink=lambda manifest, entry: engine.unpacker(into), chain=False,
                             progress=progress)
    except RestoreFailed as exc:
        verify_backup(loaded, backup_path, chain=False)  # damaged files explain a failed unpack best
        raise VerifyFailed(f"the backup could not be unpacked: {exc}") from None


def give_to_server_user(datadir: Path) -> str | None:
    """As root, the files go to the server's user (mysql), as a server started with --user wants
    (again after a server of ours, which runs as root, has written into them)."""
    if os.geteuid() != 0:
        return None
    import pwd
    try:
        user = pwd.getpwnam("mysql")
    except KeyError:
        log.warning("no user 'mysql' on this machine: %s stays owned by root", datadir)
        return None
    for path in [datadir, *datadir.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    return user.pw_name
