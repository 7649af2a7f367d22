"""`tenangdb backup`: dump each database, seal it, commit it atomically, report."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tenangdb import __version__, control
from tenangdb.actions import increments
from tenangdb.config.loader import LoadedConfig
from tenangdb.config.schema import default_state_directory
from tenangdb.errors import (BackupFailed, ConfigError, ConnectionFailed, Interrupted, TenangDBError, ToolMissing,
                             interrupt_requested, request_interrupt)
from tenangdb.fileio import human_size
from tenangdb.logs import FAILED, security_event
from tenangdb.mysql import checksum, datadir, engines, fidelity
from tenangdb.mysql import exact as exact_values
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql.alignment import Alignment
from tenangdb.mysql.connection import connect, endpoint_from, reconnect, translated_errors
from tenangdb.mysql.engines import BackupJob, DumpInput, Engine
from tenangdb.mysql.mariabackup import INSTANCE
from tenangdb.mysql.tools import client_tool
from tenangdb.progress import Progress  # noqa: F401 - the display's protocol, imported from here by the cli
from tenangdb.repository import identity, store, tracking
from tenangdb.repository.lock import DirectoryLock
from tenangdb.repository.manifest import Manifest
from tenangdb.runner import kill_all_children
from tenangdb.secrets import redact
from tenangdb.stream.crypto import load_keys

log = logging.getLogger("tenangdb.backup")


@dataclass
class Result:
    database: str
    ok: bool
    path: Path | None = None
    error: str | None = None
    duration: float = 0.0
    size: int = 0
    # What the committed backup does not hold exactly (fidelity.Loss.as_manifest()). With
    # backup.fidelity: strict such a backup is kept but not ok; `path` is set either way.
    losses: list[dict] = field(default_factory=list)


@dataclass
class Plan:
    databases: list[str]  # as asked; ["all"] is resolved against the server by run()
    exclude: list[str]
    directory: Path
    engine: str
    compression: str
    level: int
    encrypted: bool
    resolved: list[str] | None = None  # the databases run() actually backs up

    @property
    def known_databases(self) -> list[str]:
        """The databases of this run as far as they are known yet."""
        return self.resolved if self.resolved is not None else (
            [] if self.databases == ["all"] else self.databases)


def plan(loaded: LoadedConfig, databases: list[str] | None) -> Plan:
    cfg = loaded.settings
    names = databases if databases else cfg.backup.databases
    engine = choose_engine(cfg)
    if engines.ENGINES[engine].whole_instance:
        # A physical backup copies the whole instance: backup.databases does not narrow it.
        names = [INSTANCE]
    if not names:
        raise ConfigError("no databases to back up: set backup.databases or pass --databases")
    if "all" in names and len(names) > 1:
        raise ConfigError("`all` cannot be combined with database names (use backup.exclude)")
    return Plan(
        databases=list(dict.fromkeys(names)),
        exclude=list(cfg.backup.exclude),
        directory=Path(cfg.backup.directory),
        engine=engine,
        compression=cfg.backup.compression.format,
        level=cfg.backup.compression.effective_level,
        encrypted=cfg.backup.encryption.enabled,
    )


def choose_engine(cfg) -> str:
    """backup.engine resolved against this machine (engines.choose)."""
    return engines.choose(cfg).name


def describe_databases(the_plan: Plan) -> str:
    if the_plan.databases == [INSTANCE]:
        return "the whole instance (a physical backup; backup.databases does not narrow it)"
    shown = "all (except information_schema, performance_schema, sys, mysql)" \
        if the_plan.databases == ["all"] else ", ".join(the_plan.databases)
    return shown + (f"; excluding {', '.join(the_plan.exclude)}" if the_plan.exclude else "")


def _resolve(conn, the_plan: Plan, include_mysql: bool) -> list[str]:
    if the_plan.databases == [INSTANCE]:
        return [INSTANCE]
    names = inv_mod.all_databases(conn, include_mysql=include_mysql) if the_plan.databases == ["all"] \
        else the_plan.databases
    kept = [n for n in names if not any(fnmatch.fnmatchcase(n, pattern) for pattern in the_plan.exclude)]
    if not kept:
        raise ConfigError("no databases left to back up after backup.exclude")
    return kept


def state_directory(loaded: LoadedConfig) -> Path:
    """Where the tracking file and the repository's recorded identity live."""
    return Path(loaded.settings.backup.tracking_directory or default_state_directory())


def tracking_file(loaded: LoadedConfig) -> Path:
    return tracking.tracking_path(state_directory(loaded), loaded.settings.backup.directory)


def check_state_directory(loaded: LoadedConfig) -> None:
    """The state directory exists (or is made) and takes a file; else a configuration error."""
    folder = state_directory(loaded)
    key = "backup.tracking_directory" if loaded.settings.backup.tracking_directory else "the state directory"
    try:
        folder.mkdir(parents=True, mode=0o750, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{key} {folder} cannot hold the tracking file: {exc.strerror or exc}"
                          + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else "")
                          + "; set backup.tracking_directory to a folder this user can write") from None


def recent_backups(loaded: LoadedConfig, the_plan: Plan) -> list[tuple[str, float]]:
    """Planned databases whose last success is younger than backup.min_backup_interval: (name, age s)."""
    cfg = loaded.settings.backup
    if not cfg.check_last_backup_time or cfg.min_backup_interval <= 0:
        return []
    known = tracking.load(tracking_file(loaded))
    wanted = known if the_plan.databases == ["all"] else {n: known[n] for n in the_plan.databases if n in known}
    now = _now()
    ages = [(name, (now - when).total_seconds()) for name, when in sorted(wanted.items())]
    return [(name, age) for name, age in ages if 0 <= age < cfg.min_backup_interval]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def run(loaded: LoadedConfig, the_plan: Plan, on_result: Callable[[Result], None] | None = None,
        progress: Progress | None = None) -> list[Result]:
    """Back up each planned database; `on_result` hears of each one as soon as it is done.

    Databases go in consecutive batches of backup.batch_size, up to backup.concurrency of a
    batch at once, each on its own connection. One failing database never stops the others.
    """
    report = on_result or (lambda result: None)
    progress = progress or Progress()
    cfg = loaded.settings
    keys = load_keys(cfg.backup.encryption) if the_plan.encrypted else None
    if keys is not None and not keys.recipients:
        raise ConfigError("encryption is enabled but no recipient could be derived from the configured keys")
    chosen = _engines(cfg.database, the_plan.engine)
    endpoint = endpoint_from(cfg.database)
    root = the_plan.directory
    # Before any dump: a run that cannot record its successes afterwards, or that would
    # write to the wrong filesystem, must not start.
    state = state_directory(loaded)
    check_state_directory(loaded)
    identity.check(root, state, create=True)
    results: list[Result] = []
    with DirectoryLock(root):
        try:
            conn = connect(endpoint)
            try:
                with translated_errors(endpoint):
                    server = inv_mod.server_info(conn)
                    names = _resolve(conn, the_plan, cfg.backup.include_mysql)
            finally:
                conn.close()
            the_plan.resolved = names
            log.info("backing up %d database%s: %s", len(names), "" if len(names) == 1 else "s", ", ".join(names))

            def one(name: str) -> Result:
                job = BackupJob(database=name, endpoint=endpoint, server=server, settings=cfg,
                                directory=the_plan.directory, compression=the_plan.compression,
                                level=the_plan.level, keys=keys, progress=progress)
                result = _backup_database(job, chosen)
                progress.finished(name, result.ok)
                results.append(result)
                report(result)
                return result

            for start in range(0, len(names), cfg.backup.batch_size):
                batch = names[start:start + cfg.backup.batch_size]
                workers = min(cfg.backup.concurrency, len(batch))
                if workers == 1:
                    for name in batch:
                        one(name)
                else:
                    _run_concurrently(one, batch, workers)
        finally:
            # Only successes move the tracking: a failed run must not block the retry. A
            # tracking file that cannot be written must not hide the results of committed backups.
            try:
                tracking.record(tracking_file(loaded), {r.database: _now() for r in results if r.ok})
            except OSError as exc:
                log.error("could not record the successful backups in %s: %s", tracking_file(loaded),
                          exc.strerror or exc)
    order = {name: i for i, name in enumerate(the_plan.resolved or [])}
    return sorted(results, key=lambda r: order.get(r.database, len(order)))


def _run_concurrently(one: Callable[[str], Result], batch: list[str], workers: int) -> None:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup")
    try:
        futures = [pool.submit(one, name) for name in batch]
        for future in futures:
            future.result()  # an interrupt in a worker surfaces here
    except BaseException:
        # Stop everything: end every running dump so each worker fails fast and removes
        # its unfinished folder, then wait for them before the interrupt goes on.
        request_interrupt()
        kill_all_children()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _backup_database(job: BackupJob, chosen: "_Engines") -> Result:
    """One database, start to end, on a connection of its own; failures become a Result."""
    name = job.database
    for stale in store.remove_stale_partials(job.directory, name):
        log.warning("removed an unfinished backup left by an earlier run: %s", stale)
    started = time.monotonic()
    log.info("%s: backup started", name)
    conn = None
    try:
        (path, losses), conn = _with_retries(job, chosen)
    except Interrupted:
        raise
    except TenangDBError as exc:
        if interrupt_requested():
            raise Interrupted("interrupted; unfinished work was removed") from None
        security_event(log, "backup_failed", FAILED, "%s: backup failed: %s", name, exc)
        return Result(name, False, error=str(exc), duration=time.monotonic() - started)
    finally:
        if conn is not None:
            conn.close()
    size = sum(f.stat().st_size for f in path.iterdir())
    duration = time.monotonic() - started
    try:
        store.refresh_latest(job.directory, name)
    except OSError as exc:  # a convenience for scripts: never the reason a backup fails
        log.warning("%s: could not update %s: %s", name, job.directory / store.LATEST, exc.strerror or exc)
    recorded = [loss.as_manifest() for loss in losses]
    if losses:
        log.warning("%s: the backup does not hold %d thing%s exactly (recorded in its manifest): %s", name,
                    len(losses), "" if len(losses) == 1 else "s", "; ".join(map(str, losses)))
    if losses and job.settings.backup.fidelity == "strict":
        error = (f"backup kept at {path}, but it does not hold {len(losses)} thing{'' if len(losses) == 1 else 's'} "
                 f"exactly (backup.fidelity: strict): {'; '.join(map(str, losses))}")
        security_event(log, "backup_failed", FAILED, "%s: backup failed: %s", name, error)
        return Result(name, False, path=path, error=error, duration=duration, size=size, losses=recorded)
    log.info("%s: backup completed in %.1fs (%s) → %s", name, duration, human_size(size), path)
    return Result(name, True, path=path, duration=duration, size=size, losses=recorded)


def _with_retries(job: BackupJob, chosen: "_Engines"):
    """Back up one database, retrying transient failures with exponential backoff; the
    committed folder with its losses, and the connection (for the caller to close)."""
    cfg = job.settings.backup
    conn = None

    def attempt():
        nonlocal conn
        conn = reconnect(conn, job.endpoint) if conn is not None else connect(job.endpoint)
        with translated_errors(job.endpoint):
            return _backup_one(conn, job, chosen)

    def retrying(exc: BaseException, attempt: int, wait: float) -> None:
        log.warning("%s: attempt %d of %d failed (%s); retrying in %.0fs", job.database, attempt,
                    cfg.retry_count, exc, wait)
    try:
        return control.retry(attempt, attempts=cfg.retry_count, delay=cfg.retry_delay,
                             retryable=(BackupFailed, ConnectionFailed), on_retry=retrying,
                             interrupted="interrupted; unfinished work was removed"), conn
    except (BackupFailed, ConnectionFailed) as exc:
        if conn is not None:
            conn.close()
        if interrupt_requested():
            raise Interrupted("interrupted; unfinished work was removed") from None
        if getattr(exc, "attempts", 1) > 1 and not isinstance(exc, BackupFailed):
            raise BackupFailed(str(exc)) from None  # a connection that kept failing failed this backup
        raise


@dataclass
class _Engines:
    primary: Engine
    fallback: Engine | None  # for databases the primary cannot carry
    fallback_missing: str | None = None  # why there is no fallback


def _engines(dcfg, name: str) -> _Engines:
    primary = engines.by_name(name, dcfg)
    primary.check_backup_tools()
    if primary.fallback is None:
        return _Engines(primary, None)
    fallback = engines.by_name(primary.fallback, dcfg)
    # Only needed for databases the primary cannot carry: missing, it fails those alone.
    return _Engines(primary, fallback, fallback.check_fallback_tools())


def _backup_one(conn, job: BackupJob, chosen: _Engines) -> tuple[Path, list[fidelity.Loss]]:
    """Dump, seal and commit one database; the committed folder and what it does not hold exactly."""
    name, endpoint, settings = job.database, job.endpoint, job.settings
    if chosen.primary.whole_instance:
        return _backup_instance(conn, job, chosen.primary), []
    if not inv_mod.database_exists(conn, name):
        raise BackupFailed(f"database {name!r} does not exist on the server", retryable=False)
    when = _now()
    staging = store.begin(job.directory, name, when)
    try:
        inventory = inv_mod.inventory(conn, name)
        checked = fidelity.check(conn, name)
        for warning in checked.warnings:
            log.warning("%s: %s", name, warning)
        engine, fallback = chosen.primary, None
        if reasons := engine.cannot_carry(conn, name, inventory, checked):
            fallback = f"{engine.describe_fallback(reasons)}; used the {chosen.fallback.label} engine"
            log.warning("%s: %s", name, fallback)
            if chosen.fallback_missing:
                raise BackupFailed(f"{fallback}, but {chosen.fallback_missing}", retryable=False)
            engine = chosen.fallback
        if checked.skip_events:
            # Not in the dump, so not promised by the manifest: restore and test restore check the
            # objects it lists, and the losses name these. (Cleared after the engine is chosen: a
            # database with events always goes to the streaming engine, which skips them.)
            inventory.events = []
        job.progress.started(name, engine.name, len(inventory.tables))
        # Opened before the dump's own snapshot, with commits held until the dump's is open too
        # (mysql/alignment.py); see _content_checks.
        vcfg = settings.verify
        snapshot = alignment = exact = exact_unavailable = None
        loose = inventory.non_transactional
        position_before = inv_mod.binlog_position(conn) if loose else None
        measuring = False
        rewriter = None
        try:
            if vcfg.record:
                snapshot = checksum.Snapshot(endpoint, name, checksum.ALGORITHMS[vcfg.checksum])
            plans = exact_values.plans(conn, name, list(checked.floats), checked.enum_empty) \
                if engine.rewrites_values and (checked.floats or checked.enum_empty) else {}
            if plans:
                try:
                    exact = exact_values.ExactFloats(endpoint, name, plans, client_tool(settings.database))
                except (ToolMissing, exact_values.Misaligned) as exc:
                    exact_unavailable = str(exc)
            if snapshot is not None or exact is not None:
                alignment = Alignment(endpoint, name, mode=engine.alignment_mode(job.server),
                                      lock_wait=vcfg.align_lock_wait, deadline=vcfg.align_deadline)
                if snapshot is not None:
                    snapshot.begin()
                if exact is not None and alignment.held:
                    try:
                        exact.begin()
                    except exact_values.Misaligned as exc:  # its client died: no rewrite, the losses say why
                        exact.close()
                        exact, exact_unavailable = None, str(exc)
            provable = snapshot is not None and (alignment.held or snapshot.position is not None)

            def measure() -> None:
                # The counts and checksums overlap the backup: from the start, or for an engine
                # that keeps the server busy, once its tool is done with it (sealing goes on).
                nonlocal measuring
                if alignment is not None:
                    alignment.finish()
                if provable and not measuring:
                    measuring = True
                    snapshot.start(inventory.tables)
            if alignment is not None:
                alignment.arm(engine.tool_opened(name))
            if engine.checks_during_dump and provable:
                measuring = True
                snapshot.start(inventory.tables)
            rewrite = None
            if engine.rewrites_values and (exact is not None or checked.cycled):
                def rewrite(read):
                    nonlocal rewriter
                    # Our view is the dump's while commits are still held, or once they were let
                    # go after the dump's view opened.
                    rewriter = exact_values.Rewriter(
                        read, exact, (lambda: alignment.held or alignment.aligned) if exact else lambda: False,
                        cycled=checked.cycled)
                    return rewriter.read
            dumped = engine.dump(job, DumpInput(staging=staging, inventory=inventory, checked=checked,
                                                rewrite=rewrite, on_tool_exit=measure))
            content_checks = _content_checks(snapshot, name, dumped.binlog, inventory.tables, alignment)
            dumped.losses.extend(_float_losses(conn, endpoint, name, checked, exact, alignment, engine,
                                               exact_unavailable))
            dumped.losses.extend(_enum_losses(checked, exact, alignment, exact_unavailable))
            if checked.cycled:
                dumped.losses.extend(_cycle_losses(conn, endpoint, name, checked.cycled,
                                                   rewriter.cycles_written if rewriter is not None else set()))
        finally:
            if alignment is not None:
                alignment.close()
            if snapshot is not None:
                snapshot.close()
            if exact is not None:
                exact.close()
        consistency = _non_transactional_warning(loose, position_before, _position_after(conn, endpoint)) \
            if loose else None
        if consistency:
            log.warning("%s: %s", name, consistency)
        if fallback:
            dumped.engine["fallback_reason"] = fallback
        # Every loss of this backup, from the preflight and from the dump: the one list the
        # manifest, the log, `list`, verify, doctor, metrics and notifications all show.
        losses = checked.losses + dumped.losses
        finished = _now()
        manifest = Manifest(
            tool={"name": "tenangdb", "version": __version__},
            database=name,
            name=staging.name,
            server={"version": job.server.version, "flavour": job.server.flavour},
            engine=dumped.engine,
            started_at=when.isoformat(),
            finished_at=finished.isoformat(),
            binlog=dumped.binlog,
            compression={"format": job.compression, "level": job.level},
            encryption={"enabled": job.keys is not None, "method": "age" if job.keys else None,
                        "mode": job.keys.mode if job.keys else None,
                        "recipients": job.keys.fingerprints() if job.keys else []},
            database_charset=inventory.charset,
            database_collation=inventory.collation,
            database_comment=checked.comment,
            qualified_references=checked.qualified_references,
            files=dumped.files,
            objects=inventory.as_manifest(),
            content_checks=content_checks,
            exact_floats={"replaced_values": exact.rewritten} if exact is not None else None,
            warnings=[redact(w) for w in (checked.warnings + dumped.warnings)[-20:]]
                     + ([consistency] if consistency else []),
            losses=[loss.as_manifest() for loss in losses],
        )
        try:
            return staging.commit(manifest), losses
        except OSError as exc:
            raise store.disk_error(exc, staging.path) from None
    except BaseException:
        staging.discard()
        raise


def _backup_instance(conn, job: BackupJob, engine: Engine) -> Path:
    """A physical backup: the whole instance in one sealed stream, filed under INSTANCE. The
    manifest lists every database's objects (`instance.databases`) for restores to find again."""
    when = _now()
    staging = store.begin(job.directory, job.database, when)
    try:
        base = increments.choose(Path(job.directory), job.database, job.settings.backup.physical.incremental, when)
        if base.why:
            (log.warning if base.damaged else log.info)("%s: a full backup: %s", job.database, base.why)
        databases = engine.instance_objects(conn)
        # A full backup streams about the data directory's files: the row's total. An increment
        # streams only the pages changed since its parent, which nothing tells beforehand.
        total = datadir.copied_size(datadir.locate(conn)) if base.since_lsn is None else None
        if total is not None:
            log.info("%s: copying the data directory (about %s)", job.database, human_size(total))
        job.progress.started(job.database, engine.name, sum(len(o["tables"]) for o in databases.values()), total)
        dumped = engine.dump(job, DumpInput(staging=staging, inventory=databases, checked=None),
                             since_lsn=base.since_lsn)
        if base.link is not None:
            dumped.engine["chain"] = base.link.as_manifest()
            log.info("%s: increment %d on %s (chain of %s)", job.database, base.link.depth, base.link.parent,
                     base.link.full)
        manifest = Manifest(
            tool={"name": "tenangdb", "version": __version__}, database=job.database, name=staging.name,
            server={"version": job.server.version, "flavour": job.server.flavour}, engine=dumped.engine,
            started_at=when.isoformat(), finished_at=_now().isoformat(), binlog=dumped.binlog,
            compression={"format": job.compression, "level": job.level},
            encryption={"enabled": job.keys is not None, "method": "age" if job.keys else None,
                        "recipients": job.keys.fingerprints() if job.keys else []},
            files=dumped.files, objects={},
            content_checks={"method": None, "reason": "a physical backup is proven by a test restore's CHECK TABLE"},
            instance={"databases": databases}, warnings=[redact(w) for w in dumped.warnings[-20:]])
        try:
            return staging.commit(manifest)
        except OSError as exc:
            raise store.disk_error(exc, staging.path) from None
    except BaseException:
        staging.discard()
        raise


def _cycle_losses(conn, endpoint, name: str, cycled: dict[str, int], written: set[str]) -> list[fidelity.Loss]:
    """Sequences whose dumped SETVAL did not get the cycle count, or whose count moved while
    the dump ran (then the one written may not be the dump's)."""
    losses = []
    with _fresh(conn, endpoint) as live, live.cursor() as cur:
        for sequence, before in sorted(cycled.items()):
            after = fidelity.cycle_count(cur, name, sequence)
            if sequence in written and after == before:
                continue
            why = ("it cycled again while the dump ran" if sequence in written else
                   "the dump's SETVAL carries the next value but not the cycle count")
            losses.append(fidelity.Loss(f"sequence {fidelity.qi(sequence)}",
                                        f"its cycle count ({before}; it restores as "
                                        f"{before if sequence in written else 0})", why))
    return losses


@contextlib.contextmanager
def _fresh(conn, endpoint):
    """`conn` if it still answers (a long dump may have outlived its idle timeout), else a new one."""
    try:
        conn.ping(reconnect=False)
        alive = True
    except Exception:  # noqa: BLE001 - a lost connection is replaced
        alive = False
    if alive:
        yield conn
        return
    fresh = connect(endpoint)
    try:
        yield fresh
    finally:
        fresh.close()


def _enum_losses(checked, exact, alignment, unavailable: str | None) -> list[fidelity.Loss]:
    """ENUM error values that restore as the '' member: those the rewrite could not write as 0."""
    failed = dict(exact.losses) if exact is not None else {}
    losses = []
    for table, columns in sorted(checked.enum_errors.items()):
        plan = exact.plans.get(table) if exact is not None else None
        if plan is not None and plan.enums and table not in failed:
            continue
        if exact is None:
            why = f"exact values could not be read: {unavailable}" if unavailable else "the dump writes both as ''"
        elif plan is None or not plan.enums:
            why = "the dump writes both as '', and the table has no integer primary key to put them right by"
        else:
            why = failed[table] or ("the rows must be read in the dump's own snapshot, and "
                                    + (alignment.reason if alignment is not None and alignment.reason
                                       else "it could not be had"))
        for column, count in sorted(columns.items()):
            losses.append(fidelity.Loss(f"column {fidelity.qi(table)}.{fidelity.qi(column)}",
                                        f"{count} ENUM error value(s) (index 0), which restore as the '' member",
                                        why))
    return losses


def _float_losses(conn, endpoint, name: str, checked, exact, alignment, engine: Engine,
                  unavailable: str | None = None) -> list[fidelity.Loss]:
    """The FLOAT columns whose values restore rounded: tables the rewrite could not do."""
    why: dict[str, str] = {}
    if exact is None:
        reason = f"exact values could not be read: {unavailable}" if unavailable else engine.float_loss_reason()
        why = {table: reason for table in checked.lossy_floats}
    else:
        unaligned = ("exact values must be read in the dump's own snapshot, and "
                     + (alignment.reason if alignment is not None and alignment.reason else "it could not be had"))
        for table, reason in exact.losses:
            why[table] = reason or unaligned
    losses = []
    if not why:
        return losses
    with _fresh(conn, endpoint) as live, live.cursor() as cur:
        for table, reason in sorted(why.items()):
            for column, lossy in sorted(checked.floats.get(table, {}).items()):
                if lossy and (count := fidelity.lossy_float_count(cur, name, table, column)):
                    losses.append(fidelity.Loss(f"column {fidelity.qi(table)}.{fidelity.qi(column)}",
                                                f"the exact value of {count} FLOAT value(s)", reason))
    return losses


def _position_after(conn, endpoint) -> tuple[str, int] | None:
    """The binary log position once the dump is over; the connection may have idled out during a
    long dump, and a lost connection must not read as "cannot tell"."""
    position = inv_mod.binlog_position(conn)
    if position is None:
        with contextlib.suppress(Exception):
            fresh = connect(endpoint)
            try:
                position = inv_mod.binlog_position(fresh)
            finally:
                fresh.close()
    return position


def _non_transactional_warning(tables: list[dict], before, after) -> str | None:
    """Why tables outside the dump's snapshot may not match it, or None when the binary log shows
    that nothing at all was written while the dump ran."""
    shown = ", ".join(f"{t['name']} ({t.get('engine') or 'engine unknown'})" for t in tables[:10])
    if len(tables) > 10:
        shown += f" and {len(tables) - 10} more"
    if before is not None and before == after:
        log.debug("non-transactional tables %s: no write was logged while the dump ran", shown)
        return None
    why = (f"the server logged writes while the dump ran ({before[0]}:{before[1]} to {after[0]}:{after[1]})"
           if before is not None and after is not None else
           "whether anything was written while the dump ran cannot be told (the binary log is off or "
           "its position is not readable by this user)")
    return (f"table{'s' if len(tables) > 1 else ''} {shown} use{'' if len(tables) > 1 else 's'} an engine that "
            f"the dump's transaction gives no snapshot, and {why}: their rows may be from a later moment "
            f"than the other tables' (switch them to InnoDB, or back up while they are not written)")


def _content_checks(snapshot, name: str, dump_binlog: dict | None, tables: list[dict], alignment=None) -> dict:
    """Exact row counts and checksums of what the dump holds, or why there are none.

    Taken in our own snapshot while the dump runs, and kept only when that snapshot provably
    saw the dump's data (commits held while both opened, or the same binary log position);
    see docs/verification.md.
    """
    if snapshot is None:
        return {"method": None, "reason": "verify.record is false"}
    started = time.monotonic()
    try:
        recorded = snapshot.record(dump_binlog, tables, alignment)
    except Interrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - a checksum we cannot take never fails the backup
        if interrupt_requested():
            raise Interrupted("interrupted; unfinished work was removed") from None
        log.warning("%s: could not record row counts and checksums: %s", name, redact(str(exc)))
        return {"method": None, "algorithm": snapshot.algorithm, "reason": f"checksum failed: {redact(str(exc))}"}
    recorded["seconds"] = round(time.monotonic() - started, 3)
    if recorded.get("method") is None:
        log.warning("%s: no row counts or checksums recorded for test restores: %s", name, recorded["reason"])
    else:
        log.debug("%s: counted and checksummed %d tables in %.1fs", name, len(recorded["tables"]),
                  recorded["seconds"])
    return recorded
