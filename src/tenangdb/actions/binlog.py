"""`tenangdb binlog`: archive the server's binary log for point-in-time restore.

Closed files only, over the replication protocol. Each cycle: if the server committed
transactions since our last FLUSH (its @@gtid_binlog_pos moved; a position would also move
for the server's own checkpoint events, and flushing for those would never end), `FLUSH
BINARY LOGS` closes the open file; then every closed file not yet archived is pulled, in
order, with `mariadb-binlog --read-from-remote-server --raw` into a FIFO in a private folder
that we read and seal as it comes: no plaintext binlog byte rests on disk. The parser
(mysql/binlogfmt.py) reads the same bytes and gives the file's record, written last. A file
is archived whole or not at all, so the archive lags the server by at most one cycle plus a
transfer: the RPO is `binlog.max_lag` (the loop runs a cycle every max_lag / 2).

Why not `--stop-never` streaming: the open file's tail would have to be committed piecewise
(partial files, hashes of a prefix), and a restore would have to trust a file that may still
change. Closed files are final: one hash each, continuity by their numbers.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import BackupFailed, ConfigError, Interrupted, interrupt_requested, signals_deferred
from tenangdb.mysql import binlogfmt, binlogtool
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql.connection import client_options, connect, endpoint_from, translated_errors
from tenangdb.mysql.tools import find_tool
from tenangdb.repository import binlogs as store
from tenangdb.repository.lock import DirectoryLock
from tenangdb.runner import spawn
from tenangdb.stream.crypto import load_keys
from tenangdb.stream.pipeline import CHUNK, seal

log = logging.getLogger("tenangdb.binlog")

STATE = ".state.json"  # what the server's GTID position was right after our last FLUSH
FIFO_PREFIX = ".fifo-"


@dataclass
class Cycle:
    archived: list[store.Record] = field(default_factory=list)
    gaps: list[store.Gap] = field(default_factory=list)
    flushed: bool = False
    server: str | None = None  # store.server_label of the archived server
    # Every transaction the server committed before this moment is archived: the moment we
    # found no new transaction since our last FLUSH, or our FLUSH, once the files it closed
    # are all archived. None when the cycle did not get that far (interrupted).
    archived_until: float | None = None
    lag_seconds: float | None = None  # how old the newest transaction not yet archived can be
    last_time: int | None = None  # the newest archived event's time
    gaps_total: int = 0  # gaps the archive has recorded, this one's included
    uploaded: list[str] = field(default_factory=list)  # files proven off-site this cycle
    upload_error: str | None = None  # why the off-site copy stopped (retried next cycle)


def binlog_tool(settings) -> str:
    return find_tool(settings.binlog.binlog_path, ("mariadb-binlog", "mysqlbinlog"), "mariadb-binlog",
                     "binlog.binlog_path")


def _server_state(conn) -> tuple[store.Identity, list[tuple[str, int]], str]:
    state = inv_mod.binlog_state(conn)
    if not state.log_bin:
        raise ConfigError("the server's binary log is off (log_bin); point-in-time recovery needs it "
                          "(log_bin=ON, binlog_format=ROW in the server's configuration)")
    identity = store.Identity(server_id=state.server_id, hostname=state.hostname,
                              log_bin_basename=state.log_bin_basename)
    return identity, state.files, state.gtid_pos


def cycle(loaded: LoadedConfig) -> Cycle:
    """One archiving cycle; see the module docstring."""
    settings = loaded.settings
    directory = store.archive_directory(settings)
    tool = binlog_tool(settings)
    endpoint = endpoint_from(settings.database)
    keys = load_keys(settings.backup.encryption) if settings.backup.encryption.enabled else None
    if keys is not None and not keys.recipients:
        raise ConfigError("encryption is enabled but no recipient could be derived from the configured keys")
    result = Cycle()
    store.ensure(directory)
    with DirectoryLock(directory):
        try:
            _cycle(result, directory, tool, endpoint, settings, keys)
        finally:
            # A SIGTERM lands between any two steps, inside mkdtemp or the rmtree of archive_one
            # too: what a transfer left is removed here, while the lock says it is ours.
            with signals_deferred():
                _remove_fifo_folders(directory)
    return result


def _cycle(result: Cycle, directory: Path, tool: str, endpoint, settings, keys) -> None:
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            complete_at = time.time()  # if nothing is new since our last FLUSH, the closed files hold it all
            identity, files, gtid_pos = _server_state(conn)
            store.check_identity(directory, identity)
            result.server = store.server_label(identity)
            if gtid_pos != _last_flush(directory):
                complete_at = time.time()
                inv_mod.flush_binary_logs(conn)
                identity, files, gtid_pos = _server_state(conn)
                _remember_flush(directory, gtid_pos)
                result.flushed = True
    finally:
        conn.close()
    records = store.records(directory)
    _remove_leftovers(directory, {r.name for r in records})
    closed = files[:-1]  # the last one is the server's open file
    todo, gap = plan(records, files)
    if gap is not None:
        store.add_gap(directory, gap)
        result.gaps.append(gap)
        log.error("binlog GAP: %s were purged from the server before they were archived (after %s); "
                  "point-in-time restore across them is impossible", ", ".join(gap.missing), gap.after)
    sizes = dict(closed)
    for name in todo:
        if interrupt_requested():
            break
        record = archive_one(endpoint, tool, directory, name, sizes[name], settings, keys)
        result.archived.append(record)
        log.info("archived %s (%d bytes, %d transactions, %s .. %s)", name, record.size, record.transactions,
                 record.first_gtid or "-", record.last_gtid or "-")
    result.gaps_total = len(store.gaps(directory))
    newest = (result.archived or records or [None])[-1]
    result.last_time = newest.last_time if newest is not None else None
    if len(result.archived) == len(todo):
        result.archived_until = complete_at
        result.lag_seconds = max(0.0, time.time() - complete_at)
    from tenangdb.actions import binlog_offsite
    if binlog_offsite.wanted(settings) and not interrupt_requested():
        sent = binlog_offsite.upload(settings, directory, store.records(directory))
        result.uploaded, result.upload_error = sent.uploaded, sent.error


def plan(records: list[store.Record], files: list[tuple[str, int]]) -> tuple[list[str], store.Gap | None]:
    """The closed files to archive, in order, and the gap before them if the server no longer
    has the next one we need. Pure: the archive's records and SHOW BINARY LOGS in, names out.
    A reset (the server's numbers went back below what we archived) is refused."""
    closed = [name for name, _ in files[:-1]]
    if not records:
        return closed, None
    last = records[-1]
    on_server = [store.sequence(name) for name, _ in files]
    if last.name not in {name for name, _ in files} and on_server and max(on_server) < last.seq:
        raise store.ArchiveError(
            f"the server's binary log was reset: it has {files[0][0]}..{files[-1][0]}, older than {last.name}, the "
            f"last archived file; refusing to mix two histories in one archive (archive the new history into "
            f"another binlog.directory, after a new base backup)")
    todo = [name for name in closed if store.sequence(name) > last.seq]
    oldest = min(on_server) if on_server else last.seq + 1
    if oldest > last.seq + 1:
        base = store.base_name(last.name)
        width = len(last.name) - len(base) - 1
        missing = [store.name_for(base, seq, width) for seq in range(last.seq + 1, oldest)]
        return todo, store.Gap(after=last.name, missing=missing, resumed_at=files[0][0], found_at=store.now_text())
    return todo, None


def _last_flush(directory: Path) -> str | None:
    try:
        return (directory / STATE).read_text().strip()
    except FileNotFoundError:
        return None


def _remember_flush(directory: Path, gtid_pos: str) -> None:
    from tenangdb.fileio import write_atomically
    write_atomically(directory / STATE, gtid_pos.encode(), store.RECORD_MODE)


def _remove_leftovers(directory: Path, committed: set[str]) -> None:
    """What an archiving killed outright left: sealed files without a record, and its FIFO
    folder. Safe: the archiver holds the archive alone (one cycle at a time, see lock)."""
    for path in store.uncommitted(directory, committed):
        log.info("removing %s, left by an interrupted archiving", path.name)
        store.remove(path)
    _remove_fifo_folders(directory)


def _remove_fifo_folders(directory: Path) -> None:
    for path in directory.glob(f"{FIFO_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def archive_one(endpoint, tool: str, directory: Path, name: str, listed_size: int, settings, keys) -> store.Record:
    """Pull one closed file through a FIFO into the sealing pipeline, check it is whole, commit."""
    compression = settings.backup.compression.format
    encrypted = keys is not None
    stored = store.stored_name(name, compression, encrypted)
    dest = directory / stored
    store.remove(dest)
    private = Path(tempfile.mkdtemp(prefix=FIFO_PREFIX, dir=directory))
    parser = binlogfmt.Parser()
    try:
        os.chmod(private, 0o700)
        fifo = private / name
        os.mkfifo(fifo, 0o600)
        # Our own reader and a writer of our own are opened first: the tool's open never blocks,
        # and our reads wait for its bytes instead of seeing an end before it has started. Our
        # writer is closed once the tool has exited, which ends the stream.
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        hold_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(read_fd, True)
        try:
            with client_options(endpoint) as (login, fds):
                argv = binlogtool.fetch_argv(tool, login, str(private), name)
                with spawn(argv, stdout=subprocess.DEVNULL, pass_fds=fds) as child:
                    waiter = threading.Thread(target=_close_when_done, args=(child, hold_fd), daemon=True)
                    waiter.start()
                    hold_fd = -1  # the waiter owns it now

                    def read(n: int = CHUNK) -> bytes:
                        data = os.read(read_fd, n)
                        if data:
                            parser.feed(data)
                        return data
                    try:
                        sealed = seal(read, dest, compression=compression,
                                      level=settings.backup.compression.effective_level,
                                      recipients=keys.recipients if keys is not None else None)
                    except binlogfmt.BinlogFormatError as exc:
                        raise BackupFailed(f"{name}: {exc}") from None
                    status = child.wait()
                    waiter.join(timeout=5)
            if status != 0:
                raise BackupFailed(f"{Path(tool).name} failed to read {name} (exit {status}): {child.error_line()}")
        finally:
            os.close(read_fd)
            if hold_fd >= 0:
                os.close(hold_fd)
        stray = [p.name for p in private.iterdir() if p.name != name or not stat.S_ISFIFO(p.lstat().st_mode)]
        if stray:
            raise BackupFailed(f"{Path(tool).name} wrote files we did not ask for ({', '.join(stray)}); removed")
        try:
            summary = parser.close()
        except binlogfmt.BinlogFormatError as exc:
            raise BackupFailed(f"{name}: {exc}") from None
        if summary.size != listed_size:
            raise BackupFailed(f"{name}: received {summary.size} bytes, the server lists {listed_size}; not archived")
        record = store.Record(
            name=name, size=summary.size, first_time=summary.first_time, last_time=summary.last_time,
            first_gtid=summary.first_gtid, last_gtid=summary.last_gtid, gtid_list=summary.gtid_list,
            transactions=summary.transactions, end_position=summary.end_position, closed_by=summary.closed_by,
            stored_name=stored, stored_size=sealed.stored.size, stored_sha256=sealed.stored.sha256,
            plain_sha256=sealed.plain.sha256, compression=compression, encryption="age" if encrypted else None,
            archived_at=store.now_text())
        store.commit(directory, record)
        return record
    except BaseException:
        store.remove(dest)
        raise
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _close_when_done(child, fd: int) -> None:
    try:
        child.popen.wait()
    finally:
        os.close(fd)


def report(loaded: LoadedConfig, done: Cycle | None, error: BaseException | None = None) -> None:
    """A cycle's outcome into the metrics (lag, newest archived event, gaps, the point-in-time
    window) and, for a new gap, a notification. Never changes the cycle's outcome."""
    from tenangdb.metrics import Recorder
    from tenangdb.notify import Notifier

    recorder = Recorder(loaded.settings.metrics)
    server = done.server if done is not None else None
    if server is None:
        try:
            known = store.identity(store.archive_directory(loaded.settings))
        except store.ArchiveError:
            known = None
        server = store.server_label(known) if known is not None else "unknown"
    if done is not None:
        recorder.binlog_cycle(server, True, last_archived=done.last_time, lag=done.lag_seconds,
                              gaps=done.gaps_total, archived_until=done.archived_until)
    else:
        recorder.binlog_cycle(server, False)
    if done is not None and done.gaps:
        notifier = Notifier(loaded.settings.notify, on_failure=recorder.notify_failed)
        missing = ", ".join(name for gap in done.gaps for name in gap.missing)
        notifier.event("binlog.gap", status="failed", error=f"binlog gap on {server}: {missing} were purged from "
                       "the server before they were archived; point-in-time restore across them is impossible "
                       "until the next base backup")
    try:
        from tenangdb.actions import pitr
        found = pitr.window(loaded)
        if found is not None:
            recorder.pitr_windows(found.starts)
    except Exception as exc:  # noqa: BLE001 - the window is reported, it never fails the archiver
        log.warning("could not compute the point-in-time window: %s", exc)
    recorder.write_textfile()


def loop(loaded: LoadedConfig, on_cycle=None) -> None:
    """Cycles every binlog.max_lag / 2 until interrupted, then returns: SIGTERM (or SIGINT)
    is how a service is stopped, not a failure, wherever it lands (a cycle's transfer is
    abandoned and removed, and done again by the next run). A failed cycle is logged and
    retried at the next tick: a server restart must not end us."""
    try:
        _loop(loaded, on_cycle)
    except (Interrupted, KeyboardInterrupt):
        pass
    log.info("binlog archiver stopped")


def _loop(loaded: LoadedConfig, on_cycle) -> None:
    interval = max(1.0, loaded.settings.binlog.max_lag / 2)
    while not interrupt_requested():
        started = time.monotonic()
        try:
            done = cycle(loaded)
            if on_cycle is not None:
                on_cycle(done, None)
        except store.ArchiveError as exc:
            if on_cycle is not None:
                on_cycle(None, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - one failed cycle is reported; the next one retries
            if interrupt_requested():
                break
            log.error("binlog cycle failed: %s", exc)
            if on_cycle is not None:
                on_cycle(None, exc)
        while not interrupt_requested() and time.monotonic() - started < interval:
            time.sleep(0.2)
