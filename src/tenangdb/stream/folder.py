"""Sealing a folder that another program is still filling (mydumper's output).

Each file the program has closed is streamed through the pipeline (hash → compress →
encrypt → hash) into the backup's staging folder and its plaintext deleted at once, so
sealing overlaps the dump and plaintext on disk stays bounded: when the unsealed backlog
passes `max_unsealed` bytes the program's process group is paused (SIGSTOP) until sealing
has caught up to half of it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tenangdb.errors import BackupFailed, Interrupted, interrupt_requested
from tenangdb.stream.pipeline import CHUNK, SealResult, seal

POLL = 0.1


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
                 suffix: str, max_unsealed: int, hold_until_end: frozenset[str] = frozenset()) -> None:
        self.source = source
        self.dest = dest
        self.compression = compression
        self.level = level
        self.recipients = recipients
        self.suffix = suffix
        self.max_unsealed = max_unsealed
        # Files the program rewrites until it exits (mydumper's metadata).
        self.hold_until_end = hold_until_end
        self.sealed: dict[str, SealedFile] = {}
        self.plain_bytes = 0
        self.paused_seconds = 0.0
        self.pauses = 0
        self._paused_at: float | None = None
        self._group: int | None = None
        self.on_sealed = lambda plain_name: None

    def run(self, child, stop=lambda: False) -> list[SealedFile]:
        """Seal while `child` runs, then what is left once it has exited normally.

        `stop()` true (a deadline passed and the child was killed) ends sealing at once.
        """
        self._group = child.pid
        try:
            while child.popen.poll() is None:
                if interrupt_requested():
                    raise Interrupted("interrupted; unfinished work was removed")
                if stop():
                    return []
                if not self._sweep(child.pid, final=False):
                    time.sleep(POLL)
            self._resume()
            if stop() or child.popen.returncode != 0:
                return []  # the caller reports the failure; nothing here is worth sealing
            self._sweep(None, final=True)
        finally:
            self._resume()
        return sorted(self.sealed.values(), key=lambda f: f.plain_name)

    def _sweep(self, pid: int | None, *, final: bool) -> bool:
        """Seal every finished file; True when something was sealed."""
        if not self.source.exists():
            return False  # the program has not created its output folder yet
        entries = {entry.name: entry for entry in os.scandir(self.source)}
        busy = open_files(pid) if pid is not None else set()
        ready = []
        for name, entry in sorted(entries.items()):
            if not entry.is_file(follow_symlinks=False):
                raise BackupFailed(f"unexpected non-file {name!r} in the dump folder")
            if entry.path in busy or (not final and name in self.hold_until_end):
                continue
            ready.append(entry)
        # Only closed files count: the ones still open are bounded by threads × chunk size,
        # and pausing the program while they are open would wait forever.
        backlog = sum(entry.stat().st_size for entry in ready)
        self._throttle(backlog)
        for entry in ready:
            if interrupt_requested():
                raise Interrupted("interrupted; unfinished work was removed")
            self._seal_one(Path(entry.path), pid)
            backlog -= self.sealed[entry.name].result.plain.size
            self._throttle(backlog)
        return bool(ready)

    def _seal_one(self, path: Path, pid: int | None) -> None:
        name = path.name
        if name in self.sealed:
            raise BackupFailed(f"the dump tool wrote {name} again after closing it; the backup would be incomplete")
        target = self.dest / (name + self.suffix)
        with open(path, "rb", buffering=0) as fh:
            result = seal(lambda n=CHUNK: fh.read(n), target, compression=self.compression, level=self.level,
                          recipients=self.recipients)
            size_now = os.fstat(fh.fileno()).st_size
        # A file reopened while we sealed it would lose what was appended: refuse it.
        if size_now != result.plain.size or (pid is not None and str(path) in open_files(pid)):
            raise BackupFailed(f"the dump tool was still writing {name} while it was sealed")
        os.unlink(path)
        self.sealed[name] = SealedFile(plain_name=name, name=target.name, result=result)
        self.plain_bytes += result.plain.size
        self.on_sealed(name)

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
