"""A physical backup's whole instance, restored and started as a server of our own, optionally
replayed to a point in time: the one primitive behind `restore --datadir DIR --to-time T` and
behind one database taken out of a physical backup.

`started` unpacks the backup's chain, each member verified while mbstream unpacks it, prepares
it (restore.unpack_prepared), starts a throwaway mariadbd on the prepared files and, given a
plan (actions/pitr.py), replays the archived binary log from the base's position to the stop
point into it through one client (pitr.replay_instance).

The server (sandbox.start_sandbox on the prepared folder) has a private folder for its socket,
log and tmpdir, its binary log and event scheduler off, replication not started, no TCP
(--skip-networking: its grant tables are skipped, so whoever reached it would be root), and
--skip-grant-tables, since the instance's accounts are the source's and their passwords are not
ours. The replay's session loads the grant tables first (FLUSH PRIVILEGES: that session keeps
the privileges it logged in with, MariaDB's documented way to reset a lost root password), so
replayed CREATE USER and GRANT work. A server that must take more connections afterwards (to
copy a database out) gets an account of ours in that session, with a random password, and is
started again with its grant tables: without them it loads no events, and its dump would
silently lack them (measured on 10.11: SHOW EVENTS and information_schema.EVENTS are empty).

GTIDs: the replay keeps the source's GTIDs, and the stop point's GTID position (the plan works it
out from the archive) is recorded as the instance's gtid_slave_pos, in mysql.gtid_slave_pos: the
restored server can go on replicating from the source, or from a replica of it, from exactly
there (CHANGE MASTER TO … MASTER_USE_GTID=slave_pos). Its gtid_binlog_pos starts empty, since
binary logs are not part of a data directory; a restored server that is to be a primary whose
replicas continue sets it from the same position (docs).

The two uses:
- `restore --datadir DIR --to-*` (restore.run_datadir with a plan): the instance is replayed in
  the private folder beside DIR, shut down cleanly (a normal shutdown logged, or the restore
  fails), and only then moved into DIR: DIR is left empty or whole, never half replayed.
- one database (`restore -b DB` whose newest base is physical, or `-b BACKUP --source-database
  DB`; `restore_database`): the instance goes into a private folder beside the backup, and the
  database is copied into the target on the configured server by a logical transfer (the
  streaming engine's dump of it, exact FLOAT/ENUM values put back, into its client load), then
  checked: every object there, every table's checksum equal to the restored instance's. It
  takes disk for the whole instance (checked first); in exchange it carries what IMPORT
  TABLESPACE cannot (tables with foreign keys, non-InnoDB tables, views, routines, triggers).

The private folders carry their owner's name (orphans.py): a killed run's is removed by the
next run (beside a backup: any command; beside DIR: the next restore there), and its server
dies with it (runner.py).

`serve` (`restore --datadir DIR --start`) is the other side: once DIR is restored, a server of
ours runs on it for the operator to look before switching, with DIR's own grant tables (so its
accounts log in with their own passwords, and nothing else does), until SIGINT or SIGTERM.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tenangdb.actions import pitr
from tenangdb.actions.binlog import binlog_tool
from tenangdb.actions import restore as restore_action
from tenangdb.actions.verify import Verified, chain_of, resolve_backup_path
from tenangdb.config.loader import LoadedConfig
from tenangdb.control import CANCEL
from tenangdb.errors import Interrupted, InvalidInput, RestoreFailed, VerifyFailed, signals_deferred
from tenangdb.fileio import human_size
from tenangdb.mysql import checksum, engines, fidelity
from tenangdb.mysql import exact as exact_values
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql.connection import Endpoint, connect, translated_errors
from tenangdb.mysql import sandbox
from tenangdb.mysql.sandbox import Sandbox, SandboxError, start_sandbox
from tenangdb.mysql.tools import client_tool
from tenangdb.progress import Task, task
from tenangdb.repository import manifest as manifest_mod
from tenangdb.secrets import redact

log = logging.getLogger("tenangdb.restore")

# Beyond the unpacked chain: the redo log the server writes (the sandbox's 256M) and room to run.
MARGIN = 512 << 20


def space_needed(loaded: LoadedConfig, backup_path) -> int:
    """The disk a restore of this physical backup's instance takes: every member of its chain
    unpacked at once (the increments are applied, then removed), and a margin. VerifyFailed
    naming a broken chain."""
    folder = resolve_backup_path(backup_path)
    chain = chain_of(loaded, folder, manifest_mod.load(folder))
    return sum(entry.plain_size for member in chain for entry in member.manifest.files) + MARGIN


def check_space(folder: Path, needed: int, what: str) -> None:
    """RestoreFailed, before anything is written, when `folder`'s filesystem lacks `needed` bytes."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise RestoreFailed(f"{what} needs about {human_size(needed)} of disk in {folder}, which has "
                            f"{human_size(free)} free; nothing was changed")


@dataclass
class Started:
    box: Sandbox
    endpoint: Endpoint  # how to log in
    verified: Verified  # the backup's verification (plain bytes of its whole chain)
    prepared: Path  # the instance's data directory


@contextmanager
def started(loaded: LoadedConfig, backup_path, scratch: Path, the_plan: pitr.Plan | None = None, *,
            serve: bool = False, progress: Task | None = None) -> Iterator[Started]:
    """The physical backup's instance restored into `scratch` (a private folder) with a server of
    ours on it, replayed to `the_plan`'s stop point when given. Leaving the block normally shuts
    the server down cleanly (RestoreFailed if it did not log a normal shutdown), so the folder is
    a data directory any server starts on. `serve`: the block connects to the server, which
    was given an account of ours and started again with its grant tables (so that it shows its
    events); it is killed afterwards, its data thrown away."""
    engine = engines.for_manifest(manifest_mod.load(resolve_backup_path(backup_path)), loaded.settings.database)
    progress = task(progress)
    progress.step("restoring the instance")
    verified, prepared = restore_action.unpack_prepared(loaded, backup_path, engine, scratch, progress=progress)
    box: Sandbox | None = _server(loaded, prepared)
    endpoint = box.endpoint()
    try:
        user, password = "tenangdb_restore", secrets.token_urlsafe(24)
        redact.add(password)
        ours = sandbox.own_account(user, password) if serve else b""
        if the_plan is not None:
            progress.step("replaying the binlog")
            pitr.replay_instance(loaded, the_plan, endpoint, then=ours)
        elif serve:
            try:
                box.sql((sandbox.LOAD_GRANTS + ours).decode())
            except SandboxError as exc:
                raise RestoreFailed(f"cannot log in to the restored instance: {exc}") from None
        if serve:
            box = _restarted(loaded, box, prepared)
            endpoint = dataclasses.replace(box.endpoint(), user=user, password=password)
        yield Started(box, endpoint, verified, prepared)
        if not serve:
            stopping, box = box, None
            if not stopping.shutdown():
                raise RestoreFailed("the server on the restored instance did not shut down cleanly; the restore is "
                                    "not trusted")
    finally:
        if box is not None:
            with signals_deferred():
                box.stop(graceful=False)


def _server(loaded: LoadedConfig, prepared: Path, *, grants: bool = False, port: int | None = None) -> Sandbox:
    """A server of ours on `prepared`: its socket alone, or with `port` (its grant tables on) TCP
    on 127.0.0.1 at that port too."""
    scfg = loaded.settings.verify.sandbox
    try:
        # start_sandbox listens on its socket alone unless given a port: never with grants skipped.
        return start_sandbox(parent=scfg.parent, extra_args=list(scfg.options), binlog=False,
                             startup_timeout=scfg.startup_timeout, datadir=prepared, skip_grants=not grants,
                             port=port if grants else None)
    except SandboxError as exc:
        raise RestoreFailed(f"no server starts on the restored instance: {exc}") from None


def _restarted(loaded: LoadedConfig, box: Sandbox, prepared: Path) -> Sandbox:
    """The server again, with its grant tables (and so its events), which now hold our account."""
    if not box.shutdown():
        raise RestoreFailed("the server on the restored instance did not shut down cleanly")
    return _server(loaded, prepared, grants=True)


# --- a restored data directory served for a look (restore --datadir DIR --start) -----------

@dataclass
class Serving:
    """A server of ours on a restored data directory, as the operator reaches it."""
    datadir: Path
    socket: Path  # in a 0700 folder of ours
    port: int | None  # TCP on 127.0.0.1 at this port; None: the socket alone
    pid: int
    log: Path  # the server's error log, removed with its folder when it stops


@dataclass
class Served:
    by_client: bool  # shut down from a client (SHUTDOWN), not by our signal
    owner: str | None  # the user the data directory was given back to (as root)


def serve(loaded: LoadedConfig, datadir: Path, *, port: int | None = None,
          ready: Callable[[Serving], None]) -> Served:
    """A server of ours on the restored `datadir` with its own grant tables, so that the backup's
    accounts log in as they did on the source, until SIGINT or SIGTERM: then it is shut down
    cleanly (RestoreFailed unless its log says so), and `datadir` is left as a data directory
    any server starts on. `ready` hears how to reach it once it answers.

    It listens on its socket alone (in a private folder), or with `port` on 127.0.0.1 too: its
    accounts are the source's, whatever they allow from elsewhere. Replication is not started
    and the event scheduler is off (sandbox.start_sandbox), so nothing writes before the
    operator does. End of input is no reason to stop (it runs under a terminal, or under a
    supervisor with none). Killed outright, we take the server with us (runner.popen): the
    directory is then as after a crash, which InnoDB recovers on the next start."""
    datadir = Path(datadir).absolute()

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        CANCEL.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    box: Sandbox | None = None
    try:
        # A signal before our handlers has set the token too (its exception may have been
        # swallowed where it landed): no server, then.
        if CANCEL.is_set():
            raise Interrupted(f"interrupted; {datadir} is restored, no server was started on it")
        try:
            box = _server(loaded, datadir, grants=True, port=port)
        except RestoreFailed as exc:
            raise RestoreFailed(f"{datadir} is restored, but {exc}") from None
        ready(Serving(datadir=datadir, socket=box.socket_path, port=port, pid=box.pid, log=box.log_path))
        while not CANCEL.wait(0.5) and not _ended(box.pid):
            pass
        by_client = _ended(box.pid)
        errors = _logged_errors(box.log_path) if by_client else []
        stopping, box = box, None
        clean = stopping.shutdown()
    finally:
        if box is not None:
            with signals_deferred():
                box.stop(graceful=False)
        owner = restore_action.give_to_server_user(datadir)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        said = f" (its log: {'; '.join(errors)})" if errors else ""
        raise RestoreFailed(f"the server on {datadir} {'ended' if by_client else 'did not shut down'} without a clean "
                            f"shutdown{said}; InnoDB recovers the directory when a server starts on it next")
    return Served(by_client=by_client, owner=owner)


def _ended(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (Sandbox.shutdown does, and reads
    its log): its PID cannot be another process's meanwhile."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _logged_errors(path: Path) -> list[str]:
    """The last [ERROR] lines of a server's log, for a server that ended by itself."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.split("[ERROR]", 1)[1].strip()[:200] for line in lines if "[ERROR]" in line][-3:]


# --- one database out of a physical backup -------------------------------------------------

def restore_database(loaded: LoadedConfig, backup_path, database: str, target: str, *,
                     confirm: Callable[[str], bool], allow_system_schema: bool = False,
                     the_plan: pitr.Plan | None = None, progress: Task | None = None) -> restore_action.Restored:
    """Database `database` of a physical backup's instance (replayed to `the_plan`'s stop point
    when given) into `target` on the configured server, by way of a server of ours on the whole
    instance restored into a private folder beside the backup."""
    restore_action.check_name(target, allow_system_schema=allow_system_schema)
    folder = resolve_backup_path(backup_path)
    manifest = manifest_mod.load(folder)
    dcfg = loaded.settings.database
    engine = engines.for_manifest(manifest, dcfg)
    if not engine.whole_instance:
        raise InvalidInput(f"{folder} is a backup of one database, made by the {engine.label} engine: restore it "
                           "with -b alone (--source-database takes a database out of a physical backup)")
    held = pitr.instance_databases(manifest)
    if database not in held:
        raise InvalidInput(f"{folder.name} holds no database {database!r}; it holds "
                           f"{', '.join(sorted(held)) or 'none that its manifest lists'}")
    # Every tool and the target first: a wrong password or a missing tool is said before the
    # whole instance is restored, not after.
    engine.load_tool()
    copier = engines.sql_client(dcfg)
    copier.load_tool()
    copier.check_backup_tools()
    if the_plan is not None:
        binlog_tool(loaded.settings)
    checked = restore_action.check_target(loaded, target, confirm=confirm, allow_system_schema=allow_system_schema,
                                          source=f"{database!r} of {folder.name}", engine=copier)
    needed = the_plan.space_needed if the_plan is not None and the_plan.space_needed else \
        space_needed(loaded, folder)
    check_space(folder.parent, needed, f"restoring the whole instance of {folder.name} to take {database!r} out of it")
    log.info("restoring the whole instance of %s (about %s of disk) into a private folder beside it, to take "
             "database %r out of it%s", folder.name, human_size(needed), database,
             f" as of {the_plan.stop.what}" if the_plan is not None else "")
    progress = task(progress)
    began = time.monotonic()
    scratch = restore_action.private_folder_beside(folder)
    try:
        try:
            with started(loaded, folder, scratch, the_plan, serve=True, progress=progress) as instance:
                progress.step("copying the database")
                copied = _copy(loaded, instance.endpoint, database, target, confirm, checked, progress)
        except VerifyFailed as exc:
            raise type(exc)(f"refusing to restore from a backup that failed verification: {exc}") from None
    finally:
        with signals_deferred():
            shutil.rmtree(scratch, ignore_errors=True)
    duration = time.monotonic() - began
    log.info("restored database %r of %s into %r in %.1fs (the copy: %s)", database, folder.name, target, duration,
             human_size(copied))
    return restore_action.Restored(path=folder, target=target, duration=duration, plain_bytes=copied)


def _copy(loaded: LoadedConfig, source: Endpoint, database: str, target: str, confirm,
          checked: restore_action.TargetCheck, progress: Task) -> int:
    """The logical transfer: the database's objects and rows from the server of ours into
    `target`, then checked against it. Nothing else writes to our server, so a second view of
    ours (the exact FLOAT values) sees what the dump sees without holding any commit."""
    dcfg = loaded.settings.database
    conn = connect(source)
    try:
        with translated_errors(source):
            if not inv_mod.database_exists(conn, database):
                raise RestoreFailed(f"the restored instance holds no database {database!r}")
            found = inv_mod.inventory(conn, database)
            preflight = fidelity.check(conn, database)
            plans = exact_values.plans(conn, database, list(preflight.floats), preflight.enum_empty) \
                if preflight.floats or preflight.enum_empty else {}
            flavour = inv_mod.server_info(conn).flavour
            version = checksum.server_version(conn)
    finally:
        conn.close()
    for warning in preflight.warnings:
        log.warning("%s: %s", database, warning)
    if target != database and preflight.qualified_references:
        log.warning("these objects name database %r in their own SQL and will keep using it after the copy into "
                    "%r: %s", database, target, ", ".join(preflight.qualified_references))
    if preflight.skip_events:
        found.events = []  # not in the dump (preflight.losses names them): not looked for either
    copier = engines.sql_client(dcfg)
    exact = None
    try:
        exact = exact_values.ExactFloats(source, database, plans, client_tool(dcfg)) if plans else None
        endpoint, created = restore_action._open_target(
            loaded, target, confirm, checked, repr(database),
            lambda conn: restore_action.create_target(conn, target, found.charset, found.collation,
                                                      preflight.comment))
        with restore_action._undone_on_failure(endpoint, target, created):
            wrap = None
            if exact is not None or preflight.cycled:
                if exact is not None:
                    exact.begin()
                wrap = lambda read: exact_values.Rewriter(read, exact, lambda: True,  # noqa: E731
                                                          cycled=preflight.cycled).read
            with copier.client_load(database, f"the copy of {database!r}", endpoint, target) as forward:
                copied = copier.copy(source, database, forward, flavour=flavour, events=not preflight.skip_events,
                                     history=bool(found.system_versioned) and not preflight.skip_history, wrap=wrap)
            progress.step("checking the copy")
            _check_copy(source, endpoint, database, target, found, preflight, exact, version)
    finally:
        if exact is not None:
            exact.close()
    return copied


def _check_copy(source: Endpoint, endpoint: Endpoint, database: str, target: str, found: inv_mod.Inventory,
                preflight: fidelity.Preflight, exact, version: str) -> None:
    """Every object of the database is in `target`, and every table has its rows and checksum;
    a table whose values a recorded loss changes may differ (a warning names it)."""
    losses = [loss.as_manifest() for loss in preflight.losses]
    if exact is not None:
        losses += [{"object": f"table `{table.replace('`', '``')}`", "lost": "exact values",
                    "why": why or "not rewritten"}
                   for table, why in exact.losses]
    for loss in losses:
        log.warning("%s: %s", database, manifest_mod.describe_loss(loss))
    lossy = fidelity.tables_named(losses)
    theirs = connect(endpoint)
    ours = connect(source)
    try:
        with translated_errors(endpoint):
            if missing := inv_mod.missing_objects(theirs, target, found.as_manifest()):
                raise RestoreFailed(f"the copy into {target!r} ended without error but is incomplete: {missing[0]}"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            # CHECKSUM TABLE depends on the server's row format: across versions, the portable sum.
            same = checksum.server_version(theirs) == version
            algorithm = checksum.CHECKSUM_TABLE if same else checksum.MD5_SUM
            for conn in (theirs, ours):
                checksum.prepare_session(conn)
            for table in (t["name"] for t in found.tables):
                want = checksum.table_checksum(ours, database, table, algorithm)
                got = checksum.table_checksum(theirs, target, table, algorithm)
                if got == want:
                    continue
                problem = (f"table {table!r} of {target!r} holds {got['rows']} rows (checksum {got['checksum']}), "
                           f"the restored instance {want['rows']} ({want['checksum']})")
                if table not in lossy:
                    raise RestoreFailed(f"the copy is not the restored database: {problem}")
                log.warning("%s (a recorded loss)", problem)
    finally:
        theirs.close()
        ours.close()
