"""`tenangdb verify --test-restore`: restore a backup into a scratch target and check it.

Steps: verify the files (both SHA-256, decryption), make a scratch target (a throwaway
sandbox server, or a new uniquely named database on the configured server), load the
backup with the restore code, then check that every object the manifest lists exists and
that each table's exact row count and content checksum equal those recorded while dumping
(docs/verification.md). The scratch target is removed however this ends, interrupts
included. The outcome is written beside the backup (repository/records.py).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from tenangdb.actions import restore as restore_mod
from tenangdb.actions.verify import check_layout, resolve_backup_path, verify_backup
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import (ConnectionFailed, FetchFailed, Interrupted, KeyUnavailable, RestoreFailed, TenangDBError,
                             ToolMissing, VerifyFailed, interrupt_requested, signals_deferred)
from tenangdb.mysql import checksum, engines, fidelity
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql.connection import Endpoint, connect, endpoint_from, translated_errors
from tenangdb.mysql.sandbox import SandboxError, start_sandbox
from tenangdb.progress import Meter, Task, task
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository import legacy as legacy_mod
from tenangdb.repository import records
from tenangdb.repository.manifest import ContentChecks, Manifest

log = logging.getLogger("tenangdb.verify")

# Failures that say nothing about the backup itself.
ENVIRONMENT = (KeyUnavailable, FetchFailed, ToolMissing, SandboxError, ConnectionFailed)

CONTENT = "content proven"
PARTIAL = "content proven for some tables"
ROWS = "row counts proven"
OBJECTS = "loaded, objects present"
# A backup of the original TenangDB: no manifest lists its objects or records its content.
LEGACY_LOADED = "loaded; nothing recorded to compare (legacy backup)"
# A physical backup: prepared, a server started on it without an InnoDB error, every recorded
# object there and CHECK TABLE passing on every table; no row content compared with the source.
PHYSICAL = "started clean, objects present, CHECK TABLE passed"
LEGACY_READ = "read whole, the dump tool's completion mark present; no checksums (legacy backup)"


@dataclass
class Outcome:
    """One backup's verification: what `verify` prints, its record beside the backup holds and metrics count."""

    path: Path
    database: str
    name: str
    method: str
    ok: bool = False
    duration: float = 0.0  # the whole verification
    restore_seconds: float | None = None  # the load alone: the measured recovery time
    restored_bytes: int = 0
    restored_rows: int | None = None
    tables_checked: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checksums: dict | None = None
    # What a passing test restore showed (docs/verification.md): CONTENT (every table's exact
    # count and checksum equal the dump's), PARTIAL (some tables), ROWS (counts only) or
    # OBJECTS (the load finished and every object exists: nothing about the rows).
    proof: str | None = None
    # Recorded when the backup was made; they never fail a verification, and are shown with it.
    losses: list[dict] = field(default_factory=list)
    # The failure is this machine's (no key, no sandbox, no server, no download), not the
    # backup's: nothing is to be recorded against the backup.
    environment: bool = False

    @property
    def content_proven(self) -> bool:
        return self.proof == CONTENT

    @property
    def reason(self) -> str:
        first = self.failures[0] if self.failures else "unknown failure"
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        who = "" if self.database == "unknown" else f"{self.database}: "
        return f"{who}backup {self.name}: {first}{more}"

    def record(self) -> dict:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        data = {
            "format": 1, "at": now, "verified_at": now,
            "method": self.method, "ok": self.ok, "duration_seconds": round(self.duration, 3),
            "failures": self.failures, "notes": self.notes,
        }
        if self.method.startswith("test-restore"):
            data.update(restore_seconds=None if self.restore_seconds is None else round(self.restore_seconds, 3),
                        restored_bytes=self.restored_bytes, restored_rows=self.restored_rows,
                        tables_checked=self.tables_checked, checksums=self.checksums, proof=self.proof)
        return data


def _describe(path: str | Path) -> tuple[Path, str, str, list[dict]]:
    folder = Path(path).parent if Path(path).is_file() else Path(path)
    try:
        manifest = manifest_mod.load(resolve_backup_path(path))
        return folder, manifest.database, manifest.name or folder.name, manifest.loss_records()
    except (TenangDBError, OSError, KeyError, TypeError):
        from tenangdb.repository.naming import parse_backup_name

        parsed = parse_backup_name(folder.name)
        return folder, parsed[0] if parsed else "unknown", folder.name, []


def resolve_target(loaded: LoadedConfig) -> str:
    wanted = loaded.settings.verify.target
    if wanted != "auto":
        return wanted
    from tenangdb.mysql.sandbox import _find

    return "sandbox" if _find("mariadbd", "mysqld") and _find("mariadb-install-db", "mysql_install_db") else "server"


def check_files(loaded: LoadedConfig, path: str | Path, *, progress: Task | None = None) -> Outcome:
    """The plain verification (manifest, file set, sizes, both SHA-256, decryption) as an Outcome."""
    if (old := legacy_mod.detect(Path(path))) is not None:
        return _check_legacy(old)
    folder, database, name, losses = _describe(path)
    outcome = Outcome(path=folder, database=database, name=name, method="checksums", losses=losses)
    started = time.monotonic()
    try:
        verified = verify_backup(loaded, path, progress=progress)
        outcome.restored_bytes = verified.plain_bytes
        outcome.ok = True
    except VerifyFailed as exc:
        outcome.failures.append(str(exc))
        outcome.environment = isinstance(exc, ENVIRONMENT)
    outcome.duration = time.monotonic() - started
    _save(outcome)
    return outcome


def test_restore(loaded: LoadedConfig, path: str | Path, *, target: str | None = None,
                 progress: Task | None = None) -> Outcome:
    """Verify, restore into a scratch target, check; never raises for what it finds (see Outcome.ok).
    `progress` hears of each stage; the caller ends the task."""
    kind = target or resolve_target(loaded)
    old = legacy_mod.detect(Path(path))
    if old is not None:
        outcome = Outcome(path=old.path, database=old.database, name=old.path.name, method=f"test-restore:{kind}")
    else:
        folder, database, name, losses = _describe(path)
        outcome = Outcome(path=folder, database=database, name=name, method=f"test-restore:{kind}", losses=losses)
    started = time.monotonic()
    try:
        if old is not None:
            _test_restore_legacy(loaded, old, kind, outcome, task(progress))
        else:
            _test_restore(loaded, path, kind, outcome, task(progress))
    except Interrupted:
        raise
    except (VerifyFailed, RestoreFailed, ToolMissing, SandboxError, ConnectionFailed) as exc:
        if interrupt_requested():
            raise Interrupted("interrupted; the scratch target was removed") from None
        outcome.failures.append(str(exc))
        outcome.environment = isinstance(exc, ENVIRONMENT)
    finally:
        outcome.duration = time.monotonic() - started
    if (not outcome.failures and outcome.proof not in (CONTENT, None)
            and loaded.settings.verify.require_content_proof):
        outcome.failures.append(f"only {outcome.proof!r} could be shown, and verify.require_content_proof is set"
                                + (f": {outcome.notes[0]}" if outcome.notes else ""))
    outcome.ok = not outcome.failures
    _save(outcome)
    return outcome


def _save(outcome: Outcome) -> None:
    if not outcome.path.is_dir() or outcome.proof in (LEGACY_LOADED, LEGACY_READ):
        return  # nothing to record beside, or a legacy backup: its records would read as ours
    try:
        records.write(records.verify_path(outcome.path), records.VerifyRecord(**outcome.record()))
    except OSError as exc:
        log.warning("could not record the verification beside %s: %s", outcome.path, exc.strerror or exc)


def _test_restore(loaded: LoadedConfig, path, kind: str, outcome: Outcome, progress: Task) -> None:
    folder = resolve_backup_path(path)
    manifest = manifest_mod.load(folder)
    check_layout(loaded, folder, manifest)  # a wrong key or a cut file fails before any target exists
    engine = engines.for_manifest(manifest, loaded.settings.database)
    engine.load_tool()  # before reading the backup, not after
    if engine.whole_instance:
        _test_restore_instance(loaded, path, engine, outcome)
        return
    if engine.loads_from_folder:
        _test_restore_from_folder(loaded, path, kind, outcome, progress)
        return
    progress.step(_preparing(kind))
    with _scratch(loaded, kind, manifest) as (endpoint, target):
        started = time.monotonic()
        # One pass: the files are verified while the scratch target loads them. What was
        # loaded counts only if verification passes; the target is thrown away regardless.
        try:
            verified = verify_backup(loaded, path, sink=lambda m, entry: engine.loader(m, entry, endpoint, target),
                                     progress=progress)
        except RestoreFailed as exc:
            if interrupt_requested():
                raise Interrupted("interrupted; the scratch target was removed") from None
            verify_backup(loaded, path)  # damaged files explain a failed load best: say so if they are
            raise VerifyFailed(f"the restore did not finish: {exc}") from None
        outcome.restored_bytes = verified.plain_bytes
        outcome.restore_seconds = time.monotonic() - started
        _checking(outcome, kind, target)
        _check(endpoint, target, verified.manifest, outcome, progress)


def _preparing(kind: str) -> str:
    return "starting a sandbox" if kind == "sandbox" else "creating a scratch database"


def _checking(outcome: Outcome, kind: str, target: str) -> None:
    log.info("%s: restored %s into the %s in %.1fs; checking it", outcome.database, outcome.name,
             "sandbox" if kind == "sandbox" else f"scratch database {target!r}", outcome.restore_seconds)


def _test_restore_from_folder(loaded: LoadedConfig, path, kind: str, outcome: Outcome, progress: Task) -> None:
    """A loader that reads a folder: the verifying pass unseals into a private one first."""
    plain_dir = restore_mod.plain_folder(loaded, path)
    try:
        try:
            verified = verify_backup(loaded, path, extract_to=plain_dir, progress=progress)
        except OSError as exc:
            raise RestoreFailed(f"cannot write the unsealed dump under {plain_dir}: {exc.strerror or exc}") from None
        progress.step(_preparing(kind))
        with _scratch(loaded, kind, verified.manifest) as (endpoint, target):
            started = time.monotonic()
            try:
                outcome.restored_bytes = restore_mod.load_verified(
                    loaded, verified, plain_dir, endpoint, target, configured_login=(kind == "server"),
                    progress=progress)
            except RestoreFailed as exc:
                raise VerifyFailed(f"the restore did not finish: {exc}") from None
            outcome.restore_seconds = time.monotonic() - started
            _checking(outcome, kind, target)
            _check(endpoint, target, verified.manifest, outcome, progress)
    finally:
        if plain_dir is not None:
            shutil.rmtree(plain_dir, ignore_errors=True)


def _test_restore_instance(loaded: LoadedConfig, path, engine, outcome: Outcome) -> None:
    """A physical backup: unpacked in the verifying pass into a private folder beside it,
    prepared, and a sandbox server started on the prepared files (docs/verification.md)."""
    from tenangdb.mysql.sandbox import _find

    if _find("mariadbd", "mysqld") is None:
        raise SandboxError("a test restore of a physical backup starts a server on it, and mariadbd is not installed")
    scfg = loaded.settings.verify.sandbox
    scratch = restore_mod.private_folder_beside(resolve_backup_path(path))
    box = None
    try:
        started = time.monotonic()
        verified, prepared = restore_mod.unpack_prepared(loaded, path, engine, scratch)
        outcome.restored_bytes = verified.plain_bytes
        try:
            box = start_sandbox(parent=scfg.parent, extra_args=list(scfg.options), binlog=False,
                                startup_timeout=scfg.startup_timeout, datadir=prepared)
        except SandboxError as exc:
            raise VerifyFailed(f"no server starts on the prepared backup: {exc}") from None
        outcome.restore_seconds = time.monotonic() - started
        log.info("%s: prepared %s and started a sandbox on it in %.1fs; checking it", outcome.database, outcome.name,
                 outcome.restore_seconds)
        _check_instance(box, verified.manifest, outcome)
    finally:
        with signals_deferred():
            if box is not None:
                box.stop(graceful=False)
            shutil.rmtree(scratch, ignore_errors=True)


def _check_instance(box, manifest: Manifest, outcome: Outcome) -> None:
    """InnoDB started without an error, every object recorded at backup time is there, and
    CHECK TABLE passes on every table. A server that dies meanwhile fails the backup, not the machine."""
    if errors := [line for line in box.log_path.read_text(errors="replace").splitlines()
                  if "[ERROR]" in line or "corrupt" in line.lower()]:
        outcome.failures.append(f"the server started on the backup logged: {errors[0].strip()[:300]}")
        return
    databases = (getattr(manifest, "instance", None) or {}).get("databases") or {}
    endpoint = box.endpoint()
    try:
        conn = connect(endpoint)
        try:
            with translated_errors(endpoint):
                for name, objects in sorted(databases.items()):
                    # The grant tables are skipped, and with them the events: mysql.event is asked instead.
                    outcome.failures += [f"{name}: {line}" for line in
                                         inv_mod.missing_objects(conn, name, {**objects, "events": []})]
                    outcome.failures += [f"{name}: event {event!r} is listed in the manifest but missing"
                                         for event in inv_mod.missing_events(conn, name, objects.get("events") or [])]
                    for table in objects.get("tables") or []:
                        if problem := inv_mod.check_table(conn, name, table["name"]):
                            outcome.failures.append(problem)
                        else:
                            outcome.tables_checked += 1
        finally:
            conn.close()
    except ConnectionFailed as exc:
        outcome.failures.append(f"the server started on the backup stopped answering while it was checked: {exc}")
        return
    if not outcome.failures:
        outcome.proof = PHYSICAL
        outcome.notes.append("a physical backup is checked by the server's own page checksums (CHECK TABLE), "
                             "not against row counts and checksums of the source")


def _check_legacy(old: legacy_mod.Legacy) -> Outcome:
    """A legacy backup has no checksums: read it whole and check the dump tool finished it."""
    outcome = Outcome(path=old.path, database=old.database, name=old.path.name, method="legacy-read")
    started = time.monotonic()
    try:
        checked = legacy_mod.check(old)
        outcome.restored_bytes = checked.plain_bytes
        outcome.proof = LEGACY_READ
        outcome.notes.append(checked.summary())
    except VerifyFailed as exc:
        outcome.failures.append(str(exc))
    outcome.duration = time.monotonic() - started
    outcome.ok = not outcome.failures
    return outcome


@dataclass
class _Source:
    """What a scratch target is created from when there is no manifest."""
    database: str
    database_charset: str | None = None
    database_collation: str | None = None
    database_comment: str | None = None


def _test_restore_legacy(loaded: LoadedConfig, old: legacy_mod.Legacy, kind: str, outcome: Outcome,
                         progress: Task) -> None:
    engine = engines.for_legacy(legacy_mod.content_form(old), loaded.settings.database)
    engine.load_tool()
    scratch: list[Path] = []

    def private_folder() -> Path:
        scratch.append(restore_mod.private_folder_beside(old.path))
        return scratch[-1]
    try:
        progress.step(_preparing(kind))
        with _scratch(loaded, kind, _Source(old.database)) as (endpoint, target):
            started = time.monotonic()
            progress.step("loading")  # no manifest: nothing says how much there is
            try:
                outcome.restored_bytes = engine.load_legacy(old, endpoint, target, private_folder)
            except RestoreFailed as exc:
                raise VerifyFailed(f"the restore did not finish: {exc}") from None
            outcome.restore_seconds = time.monotonic() - started
            _checking(outcome, kind, target)
            conn = connect(endpoint)
            try:
                with translated_errors(endpoint):
                    checksum.prepare_session(conn)
                    tables = [t["name"] for t in inv_mod.inventory(conn, target).tables]
                    outcome.restored_rows = sum(checksum.table_checksum(conn, target, name, checksum.CHECKSUM_TABLE)
                                                ["rows"] for name in tables)
            finally:
                conn.close()
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    outcome.proof = LEGACY_LOADED
    outcome.notes.append(f"{old.describe()}: the load finished ({len(tables)} tables, {outcome.restored_rows} rows), "
                         "but no manifest lists its objects or records their counts and checksums, so nothing "
                         "shows the restore complete")


@contextlib.contextmanager
def _scratch(loaded: LoadedConfig, kind: str, manifest: Manifest | _Source) -> Iterator[tuple[Endpoint, str]]:
    if kind == "sandbox":
        with _sandbox(loaded, manifest) as found:
            yield found
    else:
        with _scratch_database(loaded, manifest) as found:
            yield found


@contextlib.contextmanager
def _sandbox(loaded: LoadedConfig, manifest: Manifest) -> Iterator[tuple[Endpoint, str]]:
    scfg = loaded.settings.verify.sandbox
    box = None
    try:
        box = start_sandbox(parent=scfg.parent, extra_args=list(scfg.options), binlog=False,
                            startup_timeout=scfg.startup_timeout)
        endpoint = box.endpoint()
        # The sandbox is empty: the backup goes back under its own name.
        target = manifest.database
        conn = connect(endpoint)
        try:
            with translated_errors(endpoint):
                inv_mod.create_new_database(conn, target, manifest.database_charset,
                                            manifest.database_collation, manifest.database_comment)
        finally:
            conn.close()
        yield endpoint, target
    finally:
        if box is not None:
            with signals_deferred():
                box.stop(graceful=False)  # its data is thrown away: no point flushing it
            log.debug("stopped and removed the sandbox %s", box.base)


@contextlib.contextmanager
def _scratch_database(loaded: LoadedConfig, manifest: Manifest) -> Iterator[tuple[Endpoint, str]]:
    endpoint = endpoint_from(loaded.settings.database)
    prefix = loaded.settings.verify.database_prefix
    conn = connect(endpoint)
    created = None
    try:
        with translated_errors(endpoint):
            for _ in range(20):
                name = f"{prefix}{secrets.token_hex(6)}"
                try:
                    inv_mod.create_new_database(conn, name, manifest.database_charset,
                                                manifest.database_collation, manifest.database_comment)
                except inv_mod.DatabaseExists:
                    continue  # never a name that exists: that database is not ours
                created = name
                break
            else:
                raise VerifyFailed(f"could not find a free scratch database name with prefix {prefix!r}")
        log.debug("created scratch database %r", created)
        yield endpoint, created
    finally:
        if created is not None:
            with signals_deferred():
                restore_mod.drop_created_database(endpoint, created)
        conn.close()


def _check(endpoint: Endpoint, target: str, manifest: Manifest, outcome: Outcome, progress: Task) -> None:
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            checksum.prepare_session(conn)
            progress.step("checking objects")
            outcome.failures += inv_mod.missing_objects(conn, target, manifest.objects.as_dict())
            with progress.stage("checking", tables=len(manifest.objects.tables)) as meter:
                _check_tables(conn, target, manifest, outcome, meter)
    finally:
        conn.close()


def _check_tables(conn, target: str, manifest: Manifest, outcome: Outcome, meter: Meter) -> None:
    recorded = manifest.content_checks or ContentChecks()
    tables = recorded.proven_tables
    algorithm = recorded.algorithm or checksum.CHECKSUM_TABLE
    compare_checksums = True
    if algorithm not in checksum.ALGORITHMS.values():
        tables = None
        outcome.notes.append(f"checksums recorded with {algorithm!r}, which this version cannot recompute; "
                             "row counts and checksums were not compared")
        algorithm = checksum.CHECKSUM_TABLE
    elif tables is None:
        outcome.notes.append("no row counts or checksums were recorded at backup time ("
                             + (recorded.reason or "a backup made before they were recorded")
                             + "); only the load and the object list were checked")
    elif algorithm == checksum.CHECKSUM_TABLE and recorded.server_version != checksum.server_version(conn):
        compare_checksums = False
        outcome.notes.append(f"the restoring server ({checksum.server_version(conn)}) is not the version that "
                             f"recorded the CHECKSUM TABLE values ({recorded.server_version}); only exact "
                             "row counts were compared (verify.checksum: md5 is portable across versions)")
    for name, why in (recorded.skipped or {}).items():
        outcome.notes.append(f"table {name!r} was not compared: {why}")
    present = {t["name"] for t in inv_mod.inventory(conn, target).tables}
    restored: dict[str, dict] = {}
    listed = [entry["name"] for entry in manifest.objects.tables]
    # A recorded loss changes its table's content on purpose: only its row count can match.
    lossy = fidelity.tables_named(manifest.loss_records())
    counted_only = 0
    for name in listed:
        if name not in present:
            continue  # already reported as missing
        restored[name] = got = checksum.table_checksum(conn, target, name, algorithm)
        meter.table_done()
        if tables is None or name not in tables:
            continue
        want = tables[name]
        outcome.tables_checked += 1
        if got["rows"] != want["rows"]:
            outcome.failures.append(f"table {name!r} has {got['rows']} rows after the restore, "
                                    f"{want['rows']} were recorded while dumping")
        elif name in lossy:
            counted_only += 1
            if compare_checksums and got["checksum"] != want["checksum"]:
                outcome.notes.append(f"table {name!r}: its content differs from the source's, as the backup's "
                                     "recorded loss says; its row count matched")
        elif compare_checksums and got["checksum"] != want["checksum"]:
            outcome.failures.append(f"table {name!r}: content checksum ({algorithm}) after the restore differs from "
                                    f"the one recorded while dumping (same row count {got['rows']}, different data)")
    outcome.checksums = {"algorithm": algorithm, "tables": restored}
    if not listed:
        outcome.proof = CONTENT  # no table: the objects are the whole content
    elif not outcome.tables_checked:
        outcome.proof = OBJECTS
    elif not compare_checksums:
        outcome.proof = ROWS
    else:
        outcome.proof = CONTENT if outcome.tables_checked == len(listed) and not counted_only else PARTIAL
    outcome.restored_rows = sum(t["rows"] for t in restored.values())
