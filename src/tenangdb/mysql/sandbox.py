"""A throwaway MariaDB server in a private temporary folder.

Used by the test suite, the demo and (later) test restores: the server listens
on a unix socket inside its own folder and on a free port on 127.0.0.1, runs
with ``--no-defaults`` so no system option file can point it at real data, and
is stopped by its PID.  Nothing here touches a server it did not start.

The server dies with the process that started it, even one killed outright (runner.popen);
its folder is named with its owner (orphans.py), so the next run of tenangdb removes a
folder, and kills a server, whose owner is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tenangdb import orphans
from tenangdb.errors import TenangDBError
from tenangdb.runner import popen, run


class SandboxError(TenangDBError):
    exit_code = 1


SOCKET_PATH_MAX = 100

# A server started on a restored instance with --skip-grant-tables (its accounts are the source's,
# whose passwords are not ours) refuses CREATE USER, GRANT and the like, which a replayed binary
# log may hold. FLUSH PRIVILEGES loads the grant tables, and the session that ran it keeps the
# privileges it logged in with (all of them): MariaDB's documented way to reset a lost root
# password. New connections are then checked against the restored accounts.
LOAD_GRANTS = b"FLUSH PRIVILEGES;\n"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def own_account(user: str, password: str) -> bytes:
    """After LOAD_GRANTS, in the same session: an account of ours on a restored instance whose
    data is thrown away afterwards, for a server started on it again with its grant tables (only
    then does it load its events: without them it shows none, and a dump would lack them). The
    server has no TCP: the account is reached over its private socket only."""
    if not (_TOKEN.fullmatch(user) and _TOKEN.fullmatch(password)):
        raise ValueError("an account name and password of letters, digits, - and _ only")
    return (f"CREATE OR REPLACE USER '{user}'@'localhost' IDENTIFIED BY '{password}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'localhost' WITH GRANT OPTION;\n").encode()


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/usr/bin")
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (kill -0 lies for zombies)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


@dataclass
class Sandbox:
    """A running throwaway server; root has no password. Only its private socket reaches it,
    unless it was started with `networking` (then also TCP on 127.0.0.1, at `port`)."""

    base: Path
    socket_path: Path
    port: int | None
    pid: int
    process: subprocess.Popen = field(repr=False)
    host: str = "127.0.0.1"
    user: str = "root"
    password: str = ""
    socket_dir: Path | None = None  # a short private folder when `base` is too deep for a socket path

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def client_argv(self, *extra: str) -> list[str]:
        client = _find("mariadb", "mysql")
        if client is None:
            raise SandboxError("the mariadb client is not installed")
        return [client, "--no-defaults", f"--socket={self.socket_path}", "-uroot", "--default-character-set=utf8mb4",
                *extra]

    def sql(self, statement: str, database: str | None = None) -> str:
        argv = self.client_argv("--batch", "--skip-column-names")
        if database:
            argv.append(database)
        status, out, err = run(argv, input_bytes=statement.encode("utf-8"), timeout=3600)
        if status != 0:
            raise SandboxError(f"SQL failed on the sandbox server: {err.strip()}")
        return out.decode("utf-8")

    def endpoint(self):
        """Our own queries' and tools' way in: root over the private socket, no password (the
        grant tables of a server of ours are either fresh or skipped)."""
        from tenangdb.mysql.connection import Endpoint

        return Endpoint(host="localhost", port=self.port or 0, socket=str(self.socket_path), user="root", password=None,
                        timeout=30, defaults_file=None, ssl_mode="DISABLED", ssl_ca=None, ssl_cert=None,
                        ssl_key=None)

    def shutdown(self, timeout: float = 900.0) -> bool:
        """Stop the server cleanly and remove its folder: SIGTERM, on which InnoDB writes its
        dirty pages and a checkpoint, so the data directory needs no crash recovery. True when
        the server ended within `timeout` and logged a normal shutdown; otherwise it is killed."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            clean = not _alive(self.pid) and b"Shutdown complete" in self.log_path.read_bytes()[-4096:]
        except OSError:
            clean = False
        self.stop(graceful=False)
        return clean

    def stop(self, timeout: float = 60.0, *, graceful: bool = True) -> None:
        """Stop the server and remove its folder. `graceful=False` kills it outright: for a
        server whose data is thrown away, a clean shutdown only spends time flushing it."""
        if not graceful and _alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if _alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while _alive(self.pid) and time.monotonic() < deadline:
                try:
                    self.process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.base, ignore_errors=True)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    *,
    parent: str | os.PathLike | None = None,
    extra_args: list[str] | None = None,
    binlog: bool = True,
    startup_timeout: float = 120.0,
    datadir: str | os.PathLike | None = None,
    skip_grants: bool = True,
    networking: bool = False,
    port: int | None = None,
) -> Sandbox:
    """Initialise a data directory and start ``mariadbd`` on it; return once it answers.

    With `datadir`, start on that existing data directory instead (a prepared physical backup):
    it is not initialised, not removed by `stop`, and (`skip_grants`) the grant tables are
    skipped, since its accounts are the source server's; the server then loads no events either.

    The server listens on its socket only, in a 0700 folder: a fresh one's root has no password
    and a copy's grant tables are skipped, so whoever reached it over TCP would be root over
    the backup's data (any local user can reach 127.0.0.1). `networking` adds TCP on 127.0.0.1,
    for servers of our tests and benches that hold no backup; `port` (TCP on 127.0.0.1 at that
    port) for an operator who asked for it (restore --start --port)."""
    server = _find("mariadbd", "mysqld")
    install_db = _find("mariadb-install-db", "mysql_install_db")
    if server is None or install_db is None:
        raise SandboxError(
            "MariaDB server binaries (mariadbd, mariadb-install-db) are not installed; "
            "install the mariadb-server package"
        )
    base = Path(tempfile.mkdtemp(prefix=f"{orphans.SANDBOX_PREFIX}{orphans.token()}-", dir=parent))
    os.chmod(base, 0o700)
    try:
        if datadir is not None and skip_grants:
            extra_args = ["--skip-grant-tables", *(extra_args or [])]
        return _start(server, install_db, base, extra_args, binlog, startup_timeout,
                      Path(datadir).absolute() if datadir is not None else None, networking, port)
    except BaseException:
        # An interrupt while starting must not leave a server or its folder behind.
        shutil.rmtree(base, ignore_errors=True)
        raise


def _start(server: str, install_db: str, base: Path, extra_args: list[str] | None, binlog: bool,
           startup_timeout: float, given: Path | None = None, networking: bool = False,
           port: int | None = None) -> Sandbox:
    datadir = given or base / "data"
    sock = base / "mysqld.sock"
    socket_dir = None
    if len(str(sock).encode()) > SOCKET_PATH_MAX:
        # A unix socket path is limited to 107 bytes: use a short private folder instead.
        socket_dir = Path(tempfile.mkdtemp(prefix=f"{orphans.SOCKET_PREFIX}{orphans.token()}-", dir="/tmp"))
        os.chmod(socket_dir, 0o700)
        sock = socket_dir / "mysqld.sock"
    try:
        return _start_in(server, install_db if given is None else None, base, datadir, sock, socket_dir, extra_args,
                         binlog, startup_timeout, networking, port)
    except BaseException:
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise


def _start_in(server: str, install_db: str | None, base: Path, datadir: Path, sock: Path, socket_dir: Path | None,
              extra_args: list[str] | None, binlog: bool, startup_timeout: float, networking: bool,
              port: int | None = None) -> Sandbox:
    run_as = ["--user=root"] if os.geteuid() == 0 else []
    # Its own temporary folder: servers sharing /tmp can collide on temporary table names.
    tmpdir = base / "tmp"
    os.mkdir(tmpdir, 0o700)
    if install_db is not None:
        status, _, err = run(
            [install_db, "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", f"--tmpdir={tmpdir}", *run_as],
            timeout=startup_timeout,
        )
        if status != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise SandboxError("mariadb-install-db failed: " + " ".join(err.split())[-500:])
    else:
        run_as += ["--skip-slave-start"]  # a copy of a replica must not start replicating
    networking = networking or port is not None
    port = (port or _free_port()) if networking else None
    listen = [f"--port={port}", "--bind-address=127.0.0.1"] if networking else ["--skip-networking"]
    argv = [
        server, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
        *listen, f"--tmpdir={tmpdir}", f"--pid-file={base / 'mysqld.pid'}",
        f"--log-error={base / 'server.log'}", "--innodb-buffer-pool-size=256M",
        "--innodb-log-file-size=256M", "--skip-name-resolve", "--event-scheduler=OFF",
        "--max-allowed-packet=256M", "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        *run_as,
    ]
    if binlog:
        argv += [f"--log-bin={base / 'binlog'}", "--server-id=1", "--binlog-format=ROW"]
    argv += list(extra_args or [])
    proc = popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    box = Sandbox(base=base, socket_path=sock, port=port, pid=proc.pid, process=proc, socket_dir=socket_dir)
    try:
        return _wait_ready(box, proc, sock, startup_timeout)
    except BaseException:
        box.stop()
        raise


def _wait_ready(box: Sandbox, proc: subprocess.Popen, sock: Path, startup_timeout: float) -> Sandbox:
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = box.log_path.read_text(errors="replace") if box.log_path.exists() else ""
            errors = [line.split("[ERROR]", 1)[1].strip() for line in log.splitlines() if "[ERROR]" in line]
            box.stop()
            raise SandboxError("mariadbd exited during start-up: "
                               + ("; ".join(errors[-3:]) if errors else "see its error log")[-500:])
        if sock.exists():
            status, _, err = run(box.client_argv("-e", "SELECT 1"), timeout=30)
            # Refused logins answer too: a restored instance started with its grant tables.
            if status == 0 or "Access denied" in err:
                return box
        time.sleep(0.2)
    box.stop()
    raise SandboxError(f"mariadbd did not answer within {startup_timeout:.0f}s")
