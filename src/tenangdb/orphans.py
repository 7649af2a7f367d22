"""Who owns the private folders a run makes, and reaping what dead runs left behind.

A run killed outright (SIGKILL, the OOM killer, power loss) cannot remove what it made: the
plaintext a dump tool or a restore writes to disk, a download from the remote, a test
restore's sandbox server and its folder, the option file holding the login. Its children die
with it (runner.py), so what stays is on disk, plus at most a sandbox server that escaped.

Each such folder carries its owner in its name, given at mkdir, so it never exists without
one: `{pid}.{starttime}.{boot}` — the PID, the process's start time in clock ticks since boot
(/proc/PID/stat field 22) and the first 8 hex digits of the kernel's boot id. A PID alone is
not proof of anything: PIDs are reused, and a backup disk or /tmp outlives a reboot. The next
run of any command finds folders whose owner is gone, by that record and never by name alone
(a folder whose name records no owner is left alone), and removes them; a sandbox server
whose owner is gone is killed first, by the PID its folder records, once /proc/PID/cmdline
shows it serves that folder. `cleanup` reports what it removed, `doctor` what it would.

Only the child we start gets the death signal; what it starts in turn (a wrapper script's
tool, a tool's helpers) stays in the child's session. So every child's session is recorded
(`record_session`, a file `{pid}.{starttime}` in the run's own `tenangdb-run-{owner}-…`
folder), and the next run kills, stopped or running, what is still in the session of a dead
run's child. The kernel never hands out a PID that is still a session id, so a process in
session S belongs to the session we started unless S's leader is a different, later process.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("tenangdb.orphans")

RESTORE_PREFIX = ".tenangdb-restore-"  # beside a backup, in the backup directory
REMOTE_PREFIX = "tenangdb-remote-"  # in the temp folder
SANDBOX_PREFIX = "tenangdb-sandbox-"  # in the temp folder or verify.sandbox.parent
SOCKET_PREFIX = "tdb-"  # in /tmp, when a sandbox folder is too deep for a socket path
LOGIN_PREFIX = "tenangdb-login-"  # in /dev/shm, else the temp folder
RUN_PREFIX = "tenangdb-run-"  # the sessions of a run's children; beside the login files
SHM = "/dev/shm"

# What follows a prefix: the owner, then "-" and mkdtemp's random part (which has no "-").
# A bare PID is what earlier versions recorded; it is trusted only as "that PID is gone".
_OWNER = re.compile(r"^(\d+)(?:\.(\d+)\.([0-9a-f]{8}))?-")
_DUMP = re.compile(r"^\..+\.(\d+\.\d+\.[0-9a-f]{8})\.dump\.partial$")


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


_token: tuple[int, str] | None = None


def token() -> str:
    """This process's owner record, for the name of a folder it makes."""
    global _token
    pid = os.getpid()
    if _token is None or _token[0] != pid:
        fields = _stat_fields(pid)
        start = int(fields[19]) if fields and len(fields) > 19 else 0
        _token = (pid, f"{pid}.{start}.{_boot_id()}")
    return _token[1]


def alive(pid: int, start: int | None = None) -> bool:
    """True while process `pid` exists and is not a zombie (kill -0 answers for a zombie),
    and, given `start`, is the process that started then (not a later one with its PID)."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return False
    return start is None or (len(fields) > 19 and int(fields[19]) == start)


def owner_gone(text: str) -> int | None:
    """The owner's PID when `text` starts with an owner record whose process is gone; None
    when it is alive or `text` records no owner."""
    match = _OWNER.match(text)
    if not match:
        return None
    return _gone(match.group(1), match.group(2), match.group(3))


def _gone(pid_text: str, start: str | None, boot: str | None) -> int | None:
    pid = int(pid_text)
    if start is None:
        return None if alive(pid) else pid
    if boot != _boot_id():
        return pid  # made before this machine last booted
    return None if alive(pid, int(start)) else pid


_run: tuple[int, str] | None = None
_run_lock = threading.Lock()


def _run_folder() -> str:
    global _run
    with _run_lock:
        if _run is None or _run[0] != os.getpid():
            path = tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{token()}-", dir=login_parent())
            atexit.register(shutil.rmtree, path, True)  # a run that ends normally has ended its children
            _run = (os.getpid(), path)
        return _run[1]


def record_session(pid: int) -> None:
    """Note child `pid`, the leader of a session of its own, so that what it started can be
    found and ended by the next run if we are killed outright."""
    fields = _stat_fields(pid)
    if not fields or len(fields) <= 19:
        return  # already gone
    try:
        with open(os.path.join(_run_folder(), f"{pid}.{int(fields[19])}"), "x"):
            pass
    except OSError:
        pass  # best effort: the child itself still dies with us


def session_members(sid: int, start: int) -> list[int]:
    """Live processes of ours in the session that process `sid`, started at `start`, began."""
    leader = _stat_fields(sid)
    if leader and len(leader) > 19 and int(leader[19]) != start:
        return []  # that PID is a later process's now: not the session we started
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        try:
            if (fields and len(fields) > 19 and int(fields[3]) == sid and fields[0] not in (b"Z", b"X")
                    and int(fields[19]) >= start and os.stat(f"/proc/{entry}").st_uid == os.getuid()):
                members.append(int(entry))
        except OSError:
            continue
    return members


def _sessions(folder: Path) -> list[int]:
    found: list[int] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        match = re.fullmatch(r"(\d+)\.(\d+)", name)
        if match:
            found += session_members(int(match.group(1)), int(match.group(2)))
    return found


@dataclass
class Leftover:
    kind: str
    path: Path
    owner: int  # the dead run's PID
    server: int | None = None  # a sandbox server still running in it
    error: str | None = None  # why it could not be removed
    processes: list[int] = field(default_factory=list)  # still running (or stopped) in a dead run's sessions

    def describe(self) -> str:
        server = f"; its server (PID {self.server}) was still running" if self.server else ""
        if self.processes:
            server += f"; {len(self.processes)} process(es) of its children were left: " + \
                ", ".join(f"PID {pid}" for pid in self.processes)
        return f"{self.kind} {self.path} left by a dead run (PID {self.owner}){server}"


def _ours(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid()
    except OSError:
        return False


def _scan(parent: str | Path, prefix: str, kind: str) -> list[Leftover]:
    found = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(prefix) and _ours(entry):
            owner = owner_gone(entry.name[len(prefix):])
            if owner is not None:
                found.append(Leftover(kind, Path(entry.path), owner))
    return found


def in_month(month: str | Path) -> list[Leftover]:
    """Plaintext of dead runs beside the backups of one month folder: a restore's unsealed
    copy and a dump tool's output folder."""
    found = _scan(month, RESTORE_PREFIX, "restore plaintext")
    try:
        entries = list(os.scandir(month))
    except OSError:
        return found
    for entry in entries:
        match = _DUMP.match(entry.name)
        if match and _ours(entry):
            owner = _gone(*match.group(1).split("."))
            if owner is not None:
                found.append(Leftover("dump plaintext", Path(entry.path), owner))
    return found


def in_backup_directory(root: str | Path) -> list[Leftover]:
    found: list[Leftover] = []
    try:
        databases = [e for e in os.scandir(root) if not e.name.startswith(".") and _ours(e)]
    except OSError:
        return found
    for database in databases:
        try:
            months = [e for e in os.scandir(database.path) if _ours(e)]
        except OSError:
            continue
        for month in months:
            found += in_month(month.path)
    return found


def logins(parent: str) -> list[Leftover]:
    return _scan(parent, LOGIN_PREFIX, "login file")


def login_parent() -> str:
    """Where option files holding a login go: shared memory, so they never reach a disk."""
    return SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK) else tempfile.gettempdir()


def find(backup_directory: str | Path | None, sandbox_parent: str | Path | None = None) -> list[Leftover]:
    """Every leftover of a dead run in the places runs use."""
    found = in_backup_directory(backup_directory) if backup_directory else []
    temps = list(dict.fromkeys([tempfile.gettempdir(), "/tmp", *([str(sandbox_parent)] if sandbox_parent else [])]))
    for temp in temps:
        found += _scan(temp, REMOTE_PREFIX, "download")
        found += _scan(temp, SANDBOX_PREFIX, "sandbox")
    found += _scan("/tmp", SOCKET_PREFIX, "sandbox socket folder")
    for parent in dict.fromkeys([SHM, tempfile.gettempdir()]):
        found += logins(parent)
        found += _scan(parent, RUN_PREFIX, "process record")
    for leftover in found:
        if leftover.kind == "sandbox":
            leftover.server = sandbox_server(leftover.path)
        elif leftover.kind == "process record":
            leftover.processes = _sessions(leftover.path)
    return found


def sandbox_server(base: Path) -> int | None:
    """The PID of the server still running in sandbox folder `base`, by the PID file it
    wrote there, only if /proc/PID/cmdline shows that server serves that folder: its data
    directory is there, or (a server on a given data directory: a restored instance) its
    PID file is."""
    try:
        pid = int((base / "mysqld.pid").read_text(encoding="ascii").strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().decode(errors="replace").split("\0")
        owner = os.stat(f"/proc/{pid}").st_uid
    except (OSError, ValueError):
        return None
    own = {"--datadir=": os.path.realpath(base / "data"), "--pid-file=": os.path.realpath(base / "mysqld.pid")}
    serves = any(a.startswith(option) and os.path.realpath(a[len(option):]) == path
                 for a in args for option, path in own.items())
    return pid if serves and owner == os.getuid() and alive(pid) else None


def remove(leftover: Leftover, *, patience: float = 10.0) -> bool:
    """Kill a leftover's processes (if any; SIGKILL ends a stopped one too) and remove the
    folder; False (and `error`) if it stays."""
    doomed = ([leftover.server] if leftover.server is not None else []) + leftover.processes
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            leftover.error = f"cannot end PID {pid}: {exc.strerror}"
            return False
    deadline = time.monotonic() + patience
    while any(alive(pid) for pid in doomed) and time.monotonic() < deadline:
        time.sleep(0.05)
    if any(alive(pid) for pid in doomed):
        leftover.error = f"PID {', '.join(str(pid) for pid in doomed if alive(pid))} did not end"
        return False
    try:
        shutil.rmtree(leftover.path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        leftover.error = exc.strerror or str(exc)
        return False
    return True


def reap(backup_directory: str | Path | None, sandbox_parent: str | Path | None = None) -> list[Leftover]:
    """Remove every leftover of a dead run (logged); returns them, each with `error` if it stayed."""
    found = find(backup_directory, sandbox_parent)
    for leftover in found:
        if remove(leftover):
            log.warning("removed %s", leftover.describe())
        else:
            log.error("could not remove %s: %s", leftover.describe(), leftover.error)
    return found


def reap_for(loaded) -> list[Leftover]:
    """reap() for the places a configuration uses."""
    settings = loaded.settings
    return reap(settings.backup.directory, settings.verify.sandbox.parent)


def find_for(loaded) -> list[Leftover]:
    settings = loaded.settings
    return find(settings.backup.directory, settings.verify.sandbox.parent)
