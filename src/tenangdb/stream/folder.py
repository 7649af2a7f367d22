"""Sealing a folder that another program is still filling (mydumper's output).

Each file the program has closed is streamed through the pipeline (hash → compress →
encrypt → hash) into the backup's staging folder and its plaintext deleted at once, so
sealing overlaps the dump and plaintext on disk stays bounded: when the unsealed backlog
passes `max_unsealed` bytes the program's process group is paused (SIGSTOP) until sealing
has caught up to half of it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tenangdb.errors import BackupFailed, Interrupted, interrupt_requested
from tenangdb.stream.pipeline import CHUNK, SealResult, seal

POLL = 0.1
_FIRST_CHUNK = re.compile(r"^(.*)\.00001\.sql$")


@dataclass
class SealedFile:
    plain_name: str
    name: str
    result: SealResult


def _group_members(group: int) -> list[int]:
    """Every process in a process group: the tool may be started through a wrapper script."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == group:
            members.append(int(entry))
    return members


def open_files(group: int) -> set[str]:
    """Paths held open by any process of the group (a process's threads share one table)."""
    found: set[str] = set()
    for pid in _group_members(group):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
    return found


class FolderSealer:
    def __init__(self, source: Path, dest: Path, *, compression: str, level: int, recipients: list | None,
                 suffix: str, max_unsealed: int, hold_until_end: frozenset[str] = frozenset(),
                 workers: int | None = None) -> None:
        # /proc/<pid>/fd shows resolved absolute paths: a symlinked or relative backup directory
        # must be compared in that form, or every open file would look closed.
        self.source = Path(os.path.realpath(source))
        self.dest = dest
        self.compression = compression
        self.level = level
        self.recipients = recipients
        self.suffix = suffix
        self.max_unsealed = max_unsealed
        # Files the program rewrites until it exits (mydumper's metadata).
        self.hold_until_end = hold_until_end
        # One file at a time by default: compression is already multi-threaded, and a second
        # sealer measured slower on two cores (bench/mydumper_vs_raw) while using more memory.
        self.workers = workers or 1
        self.sealed: dict[str, SealedFile] = {}
        self.plain_bytes = 0
        self.paused_seconds = 0.0
        self.pauses = 0
        self._paused_at: float | None = None
        self._group: int | None = None
        self._in_flight: dict[str, tuple[Future, int]] = {}
        self._lock = threading.Lock()
        self.on_sealed = lambda plain_name: None
        self.on_child_exit = lambda: None

    def run(self, child, stop=lambda: False) -> list[SealedFile]:
        """Seal while `child` runs, then what is left once it has exited normally.

        `stop()` true (a deadline passed and the child was killed) ends sealing at once.
        """
        self._group = child.pid
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="seal")
        try:
            while child.popen.poll() is None:
                if interrupt_requested():
                    raise Interrupted("interrupted; unfinished work was removed")
                if stop():
                    return []
                finished = self._collect(wait=False)
                if not self._sweep(pool, child.pid, final=False) and not finished:
                    time.sleep(POLL)
            self._resume()
            if stop() or child.popen.returncode != 0:
                return []  # the caller reports the failure; nothing here is worth sealing
            self.on_child_exit()
            self._collect(wait=True)
            self._sweep(pool, None, final=True)
            self._collect(wait=True)
        finally:
            self._resume()
            for future, _ in self._in_flight.values():
                future.cancel()
            pool.shutdown(wait=True)
        return sorted(self.sealed.values(), key=lambda f: f.plain_name)

    def _collect(self, *, wait: bool) -> bool:
        """Take in finished seals (all of them with `wait`); the first failure is raised."""
        done = [name for name, (future, _) in self._in_flight.items() if wait or future.done()]
        for name in done:
            future, _ = self._in_flight.pop(name)
            self.sealed[name] = future.result()
        if done:
            self._throttle(self._backlog_in_flight())
        return bool(done)

    def _backlog_in_flight(self) -> int:
        return sum(size for _, size in self._in_flight.values())

    def _sweep(self, pool: ThreadPoolExecutor, pid: int | None, *, final: bool) -> bool:
        """Hand every newly finished file to a sealer; True when there was one."""
        if not self.source.exists():
            return False  # the program has not created its output folder yet
        entries = {entry.name: entry for entry in os.scandir(self.source)}
        busy = open_files(pid) if pid is not None else set()
        ready = []
        for name, entry in sorted(entries.items()):
            if not entry.is_file(follow_symlinks=False):
                raise BackupFailed(f"unexpected non-file {name!r} in the dump folder")
            if name in self._in_flight:
                continue
            if name in self.sealed:
                raise BackupFailed(f"the dump tool wrote {name} again after closing it; "
                                   "the backup would be incomplete")
            if name.endswith(".partial"):
                continue  # written under a temporary name, renamed when done (mydumper's metadata)
            if entry.path in busy or (not final and (name in self.hold_until_end or self._may_be_renamed(name, entries))):
                continue
            ready.append(entry)
        for entry in ready:
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue  # renamed since the listing: it shows up under its new name next time
            self._in_flight[entry.name] = (pool.submit(self._seal_one, Path(entry.path), pid), size)
        # Only closed files count: the ones still open are bounded by threads × chunk size,
        # and pausing the program while they are open would wait forever.
        self._throttle(self._backlog_in_flight())
        return bool(ready)

    def _may_be_renamed(self, name: str, entries) -> bool:
        """mydumper writes a table's data as `t.00001.sql`, `t.00002.sql`, … and, when the whole
        table fit in the first one, renames it to `t.sql` after closing it. So a first chunk is
        final only once a second exists (or the program has exited)."""
        match = _FIRST_CHUNK.match(name)
        if not match:
            return False
        second = f"{match.group(1)}.00002.sql"
        return second not in entries and second not in self.sealed and second not in self._in_flight

    def _seal_one(self, path: Path, pid: int | None) -> SealedFile:
        if interrupt_requested():
            raise Interrupted("interrupted; unfinished work was removed")
        name = path.name
        target = self.dest / (name + self.suffix)
        try:
            fh = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise BackupFailed(f"the dump tool moved {name} away after closing it; the backup would be "
                               "incomplete") from None
        with fh:
            result = seal(lambda n=CHUNK: fh.read(n), target, compression=self.compression, level=self.level,
                          recipients=self.recipients)
            size_now = os.fstat(fh.fileno()).st_size
        # A file reopened while we sealed it would lose what was appended: refuse it.
        if size_now != result.plain.size or (pid is not None and str(path) in open_files(pid)):
            raise BackupFailed(f"the dump tool was still writing {name} while it was sealed")
        try:
            os.unlink(path)
        except FileNotFoundError:
            # Renamed while we sealed it: it would come back under its new name, twice in the backup.
            raise BackupFailed(f"the dump tool renamed {name} while it was being sealed") from None
        with self._lock:
            self.plain_bytes += result.plain.size
        self.on_sealed(name)
        return SealedFile(plain_name=name, name=target.name, result=result)

    def _throttle(self, backlog: int) -> None:
        if self._group is None:
            return
        if self._paused_at is None and backlog > self.max_unsealed:
            try:
                os.killpg(self._group, signal.SIGSTOP)
                self._paused_at = time.monotonic()
                self.pauses += 1
            except ProcessLookupError:
                pass
        elif self._paused_at is not None and backlog <= self.max_unsealed // 2:
            self._resume()

    def _resume(self) -> None:
        if self._paused_at is None or self._group is None:
            return
        try:
            os.killpg(self._group, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.paused_seconds += time.monotonic() - self._paused_at
        self._paused_at = None
