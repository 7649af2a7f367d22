"""Hold commits still for the few milliseconds in which the dump and our own snapshots open.

Our content checks (and the exact FLOAT values) are read in read views of our own. They
describe the dump only if no write committed between the opening of those views and the
opening of the dump tool's. MariaDB reports a snapshot's binary log position, which proves
that after the fact when the binary log is on; with it off (MariaDB's default) nothing does.
So we make it true instead: one connection stops commits server-wide, our views open, the dump
tool starts and opens its own, and the lock goes the moment the tool's connection shows that it
has (or the tool has ended). Every view opened in that window saw the same committed data.

- streaming engine: `BACKUP STAGE START` + `BACKUP STAGE BLOCK_COMMIT` (MariaDB 10.4+). It
  blocks commits only: no table flush, no wait for long SELECTs, readers go on. mariadb-dump
  switches to the database (`Init DB`) only after its `START TRANSACTION WITH CONSISTENT
  SNAPSHOT` (seen in the general log of 10.11), so a new connection whose DB is ours means its
  view is open.
- mydumper: it takes `FLUSH TABLES WITH READ LOCK` itself, which waits behind BACKUP STAGE, so
  we take FTWRL too (two FTWRLs coexist, measured on 10.11). mydumper 0.10 queues table jobs only
  after every worker has opened its snapshot, so a new connection running a query on one of
  our tables means all of its views are open.
- MySQL: FTWRL for both.

The lock needs RELOAD. Without it, or when it cannot be had within `lock_wait_timeout`, or
when the tool has not opened its view within `deadline`, nothing is held (or it is let go) and
`aligned` stays False with the reason: the backup goes on, only the proof is missing.
"""

from __future__ import annotations

import logging
import threading
import time

from tenangdb.mysql.connection import connect, quote_identifier

log = logging.getLogger("tenangdb.alignment")

BLOCK_COMMIT = "backup-stage-block-commit"
FTWRL = "flush-tables-with-read-lock"
POLL = 0.001
_one_at_a_time = threading.Lock()


class Alignment:
    def __init__(self, endpoint, database: str, *, mode: str, lock_wait: float = 5.0, deadline: float = 2.0) -> None:
        self.database = database
        self.mode = mode
        self.deadline = deadline
        self.aligned = False
        self.reason: str | None = None
        self.held_seconds: float | None = None
        self._conn = None
        self._turn = False  # holds _one_at_a_time
        self._held_since: float | None = None
        self._known: set[int] = set()
        self._mutex = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            self._conn = connect(endpoint)
            # BACKUP STAGE is one per server: databases backed up concurrently take turns here
            # rather than spend their lock_wait_timeout queueing on the server for each other.
            _one_at_a_time.acquire()
            self._turn = True
            with self._conn.cursor() as cur:
                cur.execute(f"SET SESSION lock_wait_timeout = {max(1, int(lock_wait))}")
                started = time.monotonic()
                if mode == BLOCK_COMMIT:
                    cur.execute("BACKUP STAGE START")
                    cur.execute("BACKUP STAGE BLOCK_COMMIT")
                else:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
                self._held_since = time.monotonic()
                log.debug("%s: commits held (%s) after %.1f ms", database, mode,
                          (self._held_since - started) * 1000)
        except Exception as exc:  # noqa: BLE001 - no privilege, a lock wait timeout: no proof, still a backup
            self.reason = _why(exc)
            self._close()
        except BaseException:
            self._close()
            raise

    @property
    def held(self) -> bool:
        return self._held_since is not None

    def arm(self, is_the_tool) -> None:
        """Call right before the dump tool starts: connections that exist now are not the tool's.
        `is_the_tool(db, info)` says whether a new connection shows the tool's view is open."""
        if not self.held:
            return
        with self._conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST")
            self._known = {row[0] for row in cur.fetchall()}
        self._watcher = threading.Thread(target=self._watch, args=(is_the_tool,), daemon=True, name="alignment")
        self._watcher.start()

    def _watch(self, is_the_tool) -> None:
        until = time.monotonic() + self.deadline
        try:
            while not self._stop.is_set():
                with self._conn.cursor() as cur:
                    cur.execute("SELECT ID, DB, INFO FROM information_schema.PROCESSLIST")
                    rows = cur.fetchall()
                if any(ident not in self._known and is_the_tool(db, info) for ident, db, info in rows):
                    self._release(aligned=True)
                    return
                if time.monotonic() >= until:
                    self._release(aligned=False, reason=f"the dump tool had not opened its snapshot after "
                                                        f"{self.deadline:.0f}s of holding commits, so the lock "
                                                        "was let go")
                    return
                self._stop.wait(POLL)
        except Exception as exc:  # noqa: BLE001 - the lock connection broke: whatever it held is gone
            self._release(aligned=False, reason=f"the lock connection failed: {_why(exc)}")

    def finish(self) -> None:
        """The dump tool has ended. Still holding means every view it opened opened while held."""
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        self._release(aligned=True)

    def _release(self, *, aligned: bool, reason: str | None = None) -> None:
        with self._mutex:
            if self._held_since is None:
                return
            self.held_seconds = time.monotonic() - self._held_since
            self._held_since = None
            self.aligned = aligned
            self.reason = reason
            try:
                with self._conn.cursor() as cur:
                    cur.execute("BACKUP STAGE END" if self.mode == BLOCK_COMMIT else "UNLOCK TABLES")
            except Exception:  # noqa: BLE001 - closing the connection below releases it as well
                pass
            self._close()
        log.debug("%s: commits held %.1f ms (%s)", self.database, self.held_seconds * 1000,
                  "aligned" if aligned else reason)

    def close(self) -> None:
        """Let go whatever happens; an interrupted backup must not leave the server's commits held."""
        self._stop.set()
        with self._mutex:
            if self._held_since is not None:
                self.held_seconds = time.monotonic() - self._held_since
                self._held_since = None
                self.aligned = False
                self.reason = self.reason or "the backup ended before the dump opened its snapshot"
            self._close()

    def _close(self) -> None:
        if self._turn:
            self._turn = False
            _one_at_a_time.release()
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - a dead connection holds nothing
                pass
            self._conn = None

    def describe(self) -> dict:
        out: dict = {"method": self.mode}
        if self.held_seconds is not None:
            out["held_ms"] = round(self.held_seconds * 1000, 1)
        return out


# What mariadb-dump sends once it is in the database (10.11's general log): an idle session, or
# one of these. Another session of the same account whose statement runs a trigger or routine of
# the database also shows that DB while it runs, so the statement is checked as well.
_DUMP_STATEMENTS = ("SAVEPOINT", "SHOW ", "show ", "SELECT", "select", "SET ", "set ", "ROLLBACK TO", "RELEASE")


def streaming_tool_opened(database: str):
    """mariadb-dump: `Init DB <database>` comes after its START TRANSACTION WITH CONSISTENT SNAPSHOT."""
    return lambda db, info: db == database and (info is None or str(info).startswith(_DUMP_STATEMENTS))


def mydumper_opened(database: str):
    """mydumper: a job query naming one of our tables comes after every worker's snapshot."""
    needle = f"{quote_identifier(database)}."
    return lambda db, info: bool(info) and needle in str(info)


def _why(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        code, message = args[0], str(args[1])
        if code in (1227, 1045, 1142):
            return "the backup account lacks the RELOAD privilege needed to hold commits while snapshots open"
        if code == 1205:
            return "commits could not be held within lock_wait_timeout (a long commit or DDL was running)"
        return f"{message} ({code})"
    return str(exc) or type(exc).__name__
