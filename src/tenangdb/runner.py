"""The one place that starts external programs.

Every child runs in its own process group so a timeout or an interrupt ends the
whole group, gets an environment without our secrets, and has its stderr kept
(the tail only, redacted) for the one-line error the user sees.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Sequence

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
        popen = subprocess.Popen(
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
        done = subprocess.run(
            argv, input=input_bytes, stdin=None if input_bytes is not None else subprocess.DEVNULL,
            capture_output=True, env=child_environment(), pass_fds=tuple(pass_fds),
            timeout=timeout, start_new_session=True, check=False,
        )
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} is not installed or not executable") from None
    except subprocess.TimeoutExpired:
        raise ToolMissing(f"{' '.join(argv[:2])} did not answer within {timeout:.0f}s") from None
    return done.returncode, done.stdout, redact(done.stderr.decode("utf-8", errors="replace"))
