"""The one place that starts external programs.

Every child runs in its own process group so a timeout or an interrupt ends the
whole group, gets an environment without our secrets, has its stderr kept
(the tail only, redacted) for the one-line error the user sees, and dies with us
even when we are killed outright (see _SPAWNER).
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Sequence

from tenangdb import orphans
from tenangdb.errors import ToolMissing
from tenangdb.secrets import redact

# Variables a child must never inherit: ours hold secrets, MYSQL_PWD is one.
_SECRET_ENV_PREFIXES = ("TENANGDB_",)
_SECRET_ENV_NAMES = {"MYSQL_PWD", "MYSQL_PASSWORD", "MARIADB_PASSWORD", "AGE_IDENTITY"}
_STDERR_KEEP = 64 * 1024


def child_environment() -> dict[str, str]:
    """Our environment minus anything secret: our own variables, the client's password
    variables, and any variable that carries a secret the configuration referenced."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in _SECRET_ENV_NAMES and not name.startswith(_SECRET_ENV_PREFIXES)
        and not redact.contains_secret(value)
    }



# A child must not outlive us, even when we are killed outright (SIGKILL, the OOM killer, a
# timeout wrapper): an orphaned dump tool would go on writing plaintext, or sit stopped by the
# sealing throttle holding a transaction open on the server for ever. PR_SET_PDEATHSIG makes
# the kernel SIGKILL the child when its parent dies; SIGKILL ends a stopped process too, and
# with it every thread and server connection it had. It has to be set in the child between
# fork and exec. subprocess's preexec_fn can do that but runs Python in a child forked from a
# threaded process (compression threads hold malloc's locks at any moment: it can deadlock)
# and rules out posix_spawn, so the child instead execs this tiny wrapper, which sets the
# signal and execs the tool: same PID, same process group, same file descriptors. The
# wrapper also closes the race where we die between fork and prctl (getppid then no longer
# is us). Measured: 11 ms per start (python -I -S), against 0.9 ms for a bare fork+exec
# and 1.8 ms for util-linux's `setpriv --pdeathsig`, which lacks that check and is missing
# from older distributions. The signal is sent when the *thread* that forked the child ends,
# not the process: so children are forked by one long-lived thread (_Spawner), never by the
# backup's worker threads, which end while what they started may still be draining.
_DEATHSIG_WRAPPER = (
    "import ctypes,os,sys\n"
    "if ctypes.CDLL(None,use_errno=True).prctl(1,9,0,0,0)!=0 or os.getppid()!=int(sys.argv[1]):\n"
    " os._exit(125)\n"  # PR_SET_PDEATHSIG=1, SIGKILL=9; the parent already gone: never start
    "try:\n os.execv(sys.argv[2],sys.argv[2:])\n"
    "except OSError as e:\n"
    " sys.stderr.write(f'cannot run {sys.argv[2]}: {e.strerror}\\n');os._exit(127)\n"
)
_LINUX = sys.platform.startswith("linux")


def _resolve(program: str) -> str:
    """The executable `program` names, as Popen would find it; ToolMissing when there is none."""
    if os.sep in program:
        if not os.path.isfile(program):
            raise ToolMissing(f"{program} is not installed or not executable")
        if not os.access(program, os.X_OK):
            raise ToolMissing(f"{program} is not executable by this user")
        return program
    found = shutil.which(program)
    if found is None:
        raise ToolMissing(f"{program} is not installed or not executable")
    return found


def _dies_with_us(argv: list[str]) -> list[str]:
    if not _LINUX:
        return argv
    return [sys.executable, "-I", "-S", "-c", _DEATHSIG_WRAPPER, str(os.getpid()), _resolve(argv[0]), *argv[1:]]


class _Spawner:
    """The one thread that forks every child (see _DEATHSIG_WRAPPER): it lives as long as the
    process, so a child's death signal fires when we die and not when the thread that asked
    for the child ends."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _serve(self) -> None:
        while True:
            argv, kwargs, box, done = self._jobs.get()
            try:
                box["popen"] = subprocess.Popen(argv, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            done.set()

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._serve, name="tenangdb-spawner", daemon=True)
                self._thread.start()
                self._pid = os.getpid()
        box: dict = {}
        done = threading.Event()
        self._jobs.put((_dies_with_us(argv), kwargs, box, done))
        try:
            done.wait()
        except BaseException:
            # Interrupted while the child was being started: let the start finish, then end it.
            done.wait()
            if "popen" in box:
                _end_group(box["popen"])
            raise
        if "error" in box:
            raise box["error"]
        if kwargs.get("start_new_session"):
            orphans.record_session(box["popen"].pid)
        return box["popen"]


_SPAWNER = _Spawner()


def popen(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen for a child that dies with us (in its own session, our environment
    minus secrets). For children that are not driven through `spawn`, e.g. a sandbox server."""
    kwargs.setdefault("env", child_environment())
    kwargs.setdefault("start_new_session", True)
    return _SPAWNER.popen([str(part) for part in argv], **kwargs)


def _end_group(popen: subprocess.Popen) -> None:
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    popen.wait()


@dataclass(eq=False)  # identity: children live in a set
class Child:
    argv: list[str]
    popen: subprocess.Popen
    _stderr: bytearray = field(default_factory=bytearray)
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.popen.stdin

    def _drain(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: stream.read(8192), b""):
            self._stderr += chunk
            if len(self._stderr) > 2 * _STDERR_KEEP:
                del self._stderr[: len(self._stderr) - _STDERR_KEEP]
        stream.close()

    def stderr_text(self) -> str:
        if self._reader is not None:
            self._reader.join(timeout=5)
        return redact(bytes(self._stderr[-_STDERR_KEEP:]).decode("utf-8", errors="replace"))

    def error_line(self) -> str:
        """The tool's own last meaningful stderr line, for a one-line error message."""
        lines = [line.strip() for line in self.stderr_text().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        chosen = (errors or lines or ["(no error output)"])[-1]
        return chosen[:500]

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise

    def kill_group(self, grace: float = 5.0) -> None:
        """End the child's whole process group: SIGTERM, then SIGKILL after a grace period."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            os.killpg(self.popen.pid, signal.SIGCONT)  # a group paused for backpressure must see it
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while self.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        # Leaving the block early (error, interrupt) must not leave the tool running.
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if exc[0] is not None:
            self.kill_group()
        else:
            self.popen.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        with _live_lock:
            _live.discard(self)


# Every running child, so an interrupt in one thread can end the tools other threads drive.
_live: set[Child] = set()
_live_lock = threading.Lock()


def kill_all_children() -> None:
    with _live_lock:
        children = list(_live)
    for child in children:
        child.kill_group()


_F_SETPIPE_SZ = 1031  # Linux; a wide pipe lets the tool run ahead while we hash and compress
PIPE_SIZE = 1 << 20  # also the stdout buffer a dump tool gets (spawn stdout_buffer)


def _widen_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default pipe still works


def _with_stdout_buffer(argv: list[str], size: int) -> list[str]:
    """`argv` run under coreutils' stdbuf with a `size`-byte stdout buffer, when stdbuf exists.

    mysqldump and mariadb-dump write their output through stdio, which gives a pipe a
    4 KiB buffer: 392,378 write() calls (strace -c) for bench/backup_vs_raw's 1.5 GB dump.
    mariadb-dump > file took 10.75 s of which 5.04 s in the kernel; with a 1 MiB buffer
    7.66 s and 2.00 s. stdbuf execs the tool itself, so its PID, process group and file
    descriptors are the tool's.
    """
    stdbuf = shutil.which("stdbuf")
    if stdbuf is None:
        return argv
    return [stdbuf, f"--output={size}", "--", *argv]


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
    umask: int = -1,
    stdout_buffer: int = 0,
) -> Child:
    """Start `argv` in its own process group. `stdout_buffer` > 0 widens a stdio-buffered
    tool's output buffer to that many bytes (see _with_stdout_buffer)."""
    argv = [str(part) for part in argv]
    if stdout_buffer > 0 and shutil.which(argv[0]) is None:
        # stdbuf would report the missing tool itself, as its own exit status 127.
        raise ToolMissing(f"{argv[0]} is not installed or not executable")
    try:
        popen = _SPAWNER.popen(
            _with_stdout_buffer(argv, stdout_buffer) if stdout_buffer > 0 else argv,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
            env=child_environment(),
            cwd=cwd,
            start_new_session=True,
            bufsize=0,
            umask=umask,
        )
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} is not installed or not executable") from None
    except PermissionError:
        raise ToolMissing(f"{argv[0]} is not executable by this user") from None
    for stream in (popen.stdout, popen.stdin):
        if stream is not None:
            _widen_pipe(stream.fileno())
    child = Child(argv=argv, popen=popen)
    with _live_lock:
        _live.add(child)
    child._reader = threading.Thread(target=child._drain, args=(popen.stderr,), daemon=True)
    child._reader.start()
    return child


def run(argv: Sequence[str], *, timeout: float = 60.0, input_bytes: bytes | None = None,
        pass_fds: Sequence[int] = ()) -> tuple[int, bytes, str]:
    """Run a short command to completion: (exit status, stdout, redacted stderr)."""
    argv = [str(part) for part in argv]
    try:
        proc = popen(argv, stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=tuple(pass_fds))
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} is not installed or not executable") from None
    try:
        out, err = proc.communicate(input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(proc)
        raise ToolMissing(f"{' '.join(argv[:2])} did not answer within {timeout:.0f}s") from None
    except BaseException:
        _end_group(proc)
        raise
    return proc.returncode, out, redact(err.decode("utf-8", errors="replace"))
