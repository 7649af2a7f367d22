"""`tenangdb restore`: verify first, then stream the dump into the target database."""

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
from tenangdb.actions.verify import Verified, identities_for, resolve_backup_path, verify_backup
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import InvalidInput, RestoreFailed, VerifyFailed, signals_deferred
from tenangdb.mysql import grants as grants_mod
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql import engines
from tenangdb.mysql.connection import Endpoint, connect, endpoint_from, quote_identifier, translated_errors
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
    """What `check_target` found: the target may be written (the operator agreed if it had to)."""
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
                 source: str | None = None, engine: engines.Engine | None = None) -> TargetCheck:
    """The checks a restore can make without reading the backup: the name, the connection, the
    privileges on the target and whether it holds anything (asking before writing into it).
    `manifest` None: not known yet (a remote backup not downloaded); checked again with it."""
    check_name(target, allow_system_schema=allow_system_schema)
    if engine is None and manifest is not None:
        engine = engines.for_manifest(manifest, loaded.settings.database)
    streaming = engine is None or engine.loads_by_client
    endpoint = endpoint_from(loaded.settings.database)
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            _check_privileges(conn, target, manifest, streaming=streaming)
            existed = inv_mod.database_exists(conn, target)
            non_empty = existed and inv_mod.database_object_count(conn, target) > 0
    finally:
        conn.close()
    if non_empty:
        what = repr(manifest.database) if manifest else (source or "the backup")
        if not confirm(f"Database {target!r} exists and is not empty; objects in the backup will "
                       f"replace those of the same name. Restore {what} into it?"):
            raise RestoreFailed(f"database {target!r} exists and is not empty; restore cancelled "
                                "(pass --yes to restore into it)")
    return TargetCheck(target=target, existed=existed, non_empty=non_empty)


def _check_privileges(conn, target: str, manifest: Manifest | None, *, streaming: bool) -> None:
    user, host, lines = grants_mod.current_grants(conn)
    grants, roles = grants_mod.parse_grants(lines)
    if roles:
        return  # a role's privileges are not in SHOW GRANTS of the account: the load will tell
    needs = grants_mod.restore_requirements(manifest.objects.as_dict() if manifest else None, streaming=streaming)
    report = grants_mod.check(grants, roles, needs, [target], user=user, host=host)
    if missing := report.missing_required:
        names = ", ".join(dict.fromkeys(need.privilege for need, _ in missing))
        raise RestoreFailed(f"database user {user}@{host} lacks {names} on {quote_identifier(target)}.*, "
                            f"which restoring this backup needs (nothing was changed)")


def run(loaded: LoadedConfig, backup_path: str | Path, target: str, *,
        confirm: Callable[[str], bool], allow_system_schema: bool = False,
        checked: TargetCheck | None = None) -> Restored:
    """Restore a backup into `target`. `checked`: the target was checked (and the operator
    asked) already, before a download."""
    check_name(target, allow_system_schema=allow_system_schema)
    if (old := legacy_mod.detect(Path(backup_path))) is not None:
        return _run_legacy(loaded, old, target, confirm=confirm, allow_system_schema=allow_system_schema,
                           checked=checked)
    manifest = _manifest_if_readable(backup_path)
    if manifest is not None:
        # Everything that needs no backup byte comes first: a wrong password or a non-empty
        # target is reported at once, not after minutes of reading.
        engines.for_manifest(manifest, loaded.settings.database).load_tool()
        asked = checked is not None and checked.non_empty
        checked = check_target(loaded, target, confirm=(lambda question: True) if asked else confirm,
                               allow_system_schema=allow_system_schema, manifest=manifest)
    scratch = plain_folder(loaded, backup_path)
    try:
        return _run(loaded, backup_path, target, confirm, scratch, checked)
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


def _run(loaded: LoadedConfig, backup_path, target: str, confirm, scratch: Path | None,
         checked: TargetCheck | None) -> Restored:
    if scratch is not None:
        _engine_of(loaded, backup_path).load_tool()  # before reading gigabytes, not after
    try:
        # A mydumper backup is unsealed in the verifying pass itself: one read of the backup.
        verified = verify_backup(loaded, backup_path, extract_to=scratch)
    except VerifyFailed as exc:
        raise type(exc)(f"refusing to restore from a backup that failed verification: {exc}") from None
    except OSError as exc:
        raise RestoreFailed(f"cannot write the unsealed dump under {scratch}: {exc.strerror or exc}") from None
    manifest, folder = verified.manifest, verified.path
    cfg = loaded.settings
    engine = engines.for_manifest(manifest, cfg.database)
    engine.load_tool()
    endpoint, created = _open_target(loaded, target, confirm, checked, repr(manifest.database),
                                     lambda conn: _create_target(conn, target, manifest))
    started = time.monotonic()
    with _undone_on_failure(endpoint, target, created):
        total = load_verified(loaded, verified, scratch, endpoint, target)
        _check_objects(endpoint, target, manifest)
    duration = time.monotonic() - started
    log.info("restored %s into database %r in %.1fs", folder, target, duration)
    return Restored(path=folder, target=target, duration=duration, plain_bytes=total)


def _run_legacy(loaded: LoadedConfig, old: legacy_mod.Legacy, target: str, *, confirm: Callable[[str], bool],
                allow_system_schema: bool, checked: TargetCheck | None) -> Restored:
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
                 create: Callable) -> tuple[Endpoint, bool]:
    """Connect, ask again if the target filled up since it was checked, create it if missing:
    the endpoint and whether this restore created the database."""
    endpoint = endpoint_from(loaded.settings.database)
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            # Checked before the (long) verification; ask again only if it filled up meanwhile.
            if (checked is None or not checked.non_empty) and inv_mod.database_exists(conn, target) \
                    and inv_mod.database_object_count(conn, target) > 0:
                if not confirm(f"Database {target!r} exists and is not empty; objects in the backup will "
                               f"replace those of the same name. Restore {what} into it?"):
                    raise RestoreFailed(f"database {target!r} exists and is not empty; restore cancelled "
                                        "(pass --yes to restore into it)")
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


def _check_objects(endpoint: Endpoint, target: str, manifest: Manifest) -> None:
    """A loader's exit status is not proof (a dump cut between two rows still ends in a valid
    INSERT, and the client exits 0): every object the manifest lists must be there."""
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            missing = inv_mod.missing_objects(conn, target, manifest.objects.as_dict())
    finally:
        conn.close()
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise RestoreFailed(f"the load into {target!r} ended without error but is incomplete: {missing[0]}{more}")


def _create_target(conn, target: str, manifest: Manifest | None) -> bool:
    """Create the target unless it exists, with the source's character set when the manifest
    says it; True only when this call created it (the name was free at CREATE DATABASE time,
    so the database is ours to drop again)."""
    if inv_mod.database_exists(conn, target):
        return False
    try:
        inv_mod.create_new_database(conn, target, manifest.database_charset if manifest else None,
                                    manifest.database_collation if manifest else None,
                                    manifest.database_comment if manifest else None)
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
                  *, configured_login: bool = True) -> int:
    """Load a verified backup into `target` (which exists) at `endpoint`; the plain bytes loaded.

    No questions asked: the caller decided the target may be written. `configured_login`
    false ignores the loader's own configured login file (a sandbox is not that server).
    """
    manifest, folder = verified.manifest, verified.path
    engine = engines.for_manifest(manifest, loaded.settings.database)
    if target != manifest.database and manifest.qualified_references:
        log.warning("these objects name database %r in their own SQL and will keep using it after the "
                    "restore into %r: %s", manifest.database, target, ", ".join(manifest.qualified_references))
    return engine.load(manifest, folder, scratch, endpoint, target, identities=identities_for(loaded, manifest, folder),
                       plain_bytes=verified.plain_bytes, configured_login=configured_login)


def _engine_of(loaded: LoadedConfig, backup_path: str | Path) -> engines.Engine:
    return engines.for_manifest(manifest_mod.load(resolve_backup_path(backup_path)), loaded.settings.database)
