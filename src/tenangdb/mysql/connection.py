"""How to reach the server: one description used both by our own queries (PyMySQL)
and by the client tools (through an option file handed over an anonymous pipe)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import ssl as ssl_lib
import tempfile
from dataclasses import dataclass
from typing import Iterator

import pymysql

from tenangdb import orphans
from tenangdb.errors import ConnectionFailed
from tenangdb.secrets import redact

# Where client libraries look for the local server when `host: localhost` has no socket.
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock",
                   "/tmp/mysql.sock")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    socket: str | None
    user: str
    password: str | None
    timeout: float
    defaults_file: str | None
    ssl_mode: str
    ssl_ca: str | None
    ssl_cert: str | None
    ssl_key: str | None

    def describe(self) -> str:
        return f"socket {self.socket}" if self.socket else f"{self.host}:{self.port}"


def endpoint_from(cfg) -> Endpoint:
    """Build the endpoint from `database` settings (a DatabaseConfig)."""
    password = cfg.password.get_secret_value() if cfg.password is not None else None
    redact.add(password)
    socket = cfg.socket
    if socket is None and cfg.host == "localhost" and not cfg.defaults_file:
        # The client tools take `localhost` to mean the local socket; do the same so
        # our own queries and the dump authenticate the same way.
        socket = next((path for path in DEFAULT_SOCKETS if os.path.exists(path)), None)
    return Endpoint(
        host=cfg.host, port=cfg.port, socket=socket,
        user=cfg.username or getpass.getuser(), password=password, timeout=cfg.timeout,
        defaults_file=cfg.defaults_file, ssl_mode=cfg.ssl_mode, ssl_ca=cfg.ssl_ca,
        ssl_cert=cfg.ssl_cert, ssl_key=cfg.ssl_key,
    )


def _option_value(value: str) -> str:
    """Quote a value for a MySQL option file (the escapes its parser understands)."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def option_file_text(ep: Endpoint) -> str:
    lines = ["[client]"]
    if ep.socket:
        lines += ["host=localhost", f"socket={_option_value(ep.socket)}"]
    else:
        lines += [f"host={_option_value(ep.host)}", f"port={ep.port}"]
    lines.append(f"user={_option_value(ep.user)}")
    if ep.password is not None:
        lines.append(f"password={_option_value(ep.password)}")
    if ep.ssl_mode == "DISABLED":
        lines.append("skip-ssl")
    else:
        if ep.ssl_mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"):
            lines.append("ssl")
        for key, value in (("ssl-ca", ep.ssl_ca), ("ssl-cert", ep.ssl_cert), ("ssl-key", ep.ssl_key)):
            if value:
                lines.append(f"{key}={_option_value(value)}")
        if ep.ssl_mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
            lines.append("ssl-verify-server-cert")
    # Only the mysql client knows connect-timeout; in [client] it would stop mysqldump.
    lines += ["[mysql]", f"connect-timeout={max(1, int(ep.timeout))}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def client_options(ep: Endpoint) -> Iterator[tuple[list[str], list[int]]]:
    """The leading argv option and the fds to pass so a client tool can log in.

    With `database.defaults_file` the tool reads that file. Otherwise the options,
    password included, travel through an anonymous pipe read as /dev/fd/N: never on
    argv, never in the child's environment, never on disk.
    """
    if ep.defaults_file:
        if not os.access(ep.defaults_file, os.R_OK):
            raise ConnectionFailed(f"database.defaults_file {ep.defaults_file} does not exist or is not readable")
        yield [f"--defaults-file={ep.defaults_file}"], []
        return
    data = option_file_text(ep).encode()
    read_fd, write_fd = os.pipe()
    try:
        # Option files are tiny; the pipe buffer (64 KiB) takes it all before the child starts.
        os.write(write_fd, data)
        os.close(write_fd)
        write_fd = -1
        os.set_inheritable(read_fd, True)
        yield [f"--defaults-extra-file=/dev/fd/{read_fd}"], [read_fd]
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)


@contextlib.contextmanager
def private_defaults_file(ep: Endpoint) -> Iterator[str]:
    """An option file for tools that read it once per connection (mydumper, myloader).

    A pipe serves one reader only, so these tools get a real file: 0600 inside a fresh 0700
    folder, in shared memory where there is one (it never reaches a disk), removed when the
    tool is done. With `database.defaults_file` the operator's own file is used as it is.
    """
    if ep.defaults_file:
        if not os.access(ep.defaults_file, os.R_OK):
            raise ConnectionFailed(f"database.defaults_file {ep.defaults_file} does not exist or is not readable")
        yield ep.defaults_file
        return
    parent = orphans.login_parent()
    _remove_orphaned_logins(parent)
    folder = tempfile.mkdtemp(prefix=f"{_LOGIN_PREFIX}{orphans.token()}-", dir=parent)
    try:
        os.chmod(folder, 0o700)
        path = os.path.join(folder, "client.cnf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(option_file_text(ep))
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_LOGIN_PREFIX = orphans.LOGIN_PREFIX


def _remove_orphaned_logins(parent: str) -> None:
    """A run killed outright (SIGKILL, power loss on a disk-backed /tmp) cannot remove its
    option file; the next run does, once the process that made it is gone (orphans.py)."""
    for leftover in orphans.logins(parent):
        orphans.remove(leftover)


def _ssl_context(ep: Endpoint) -> dict | None:
    if ep.ssl_mode == "DISABLED" or (ep.ssl_mode == "PREFERRED" and not ep.ssl_ca):
        return None
    ctx = ssl_lib.create_default_context(cafile=ep.ssl_ca) if ep.ssl_ca else ssl_lib.create_default_context()
    if ep.ssl_mode in ("REQUIRED", "PREFERRED") and not ep.ssl_ca:
        ctx.check_hostname = False
        ctx.verify_mode = ssl_lib.CERT_NONE
    elif ep.ssl_mode == "VERIFY_CA":
        ctx.check_hostname = False
    if ep.ssl_cert:
        ctx.load_cert_chain(ep.ssl_cert, ep.ssl_key)
    return {"ssl": ctx}


def connect(ep: Endpoint, database: str | None = None, *, use_unicode: bool = True) -> pymysql.connections.Connection:
    # Bytes, so a non-Latin-1 password is sent as UTF-8 like the client tools send it.
    kwargs: dict = dict(user=ep.user, password=(ep.password or "").encode("utf-8"), connect_timeout=ep.timeout,
                        charset="utf8mb4", autocommit=True, database=database, use_unicode=use_unicode)
    if ep.defaults_file:
        kwargs.update(read_default_file=ep.defaults_file, read_default_group="client")
        kwargs.pop("user")
        if ep.password is None:
            kwargs.pop("password")
    if ep.socket:
        kwargs["unix_socket"] = ep.socket
    else:
        kwargs.update(host=ep.host, port=ep.port)
    ssl = _ssl_context(ep)
    if ssl:
        kwargs.update(ssl)
    try:
        return pymysql.connect(**kwargs)
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        text = redact(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        if code == 1045:
            raise ConnectionFailed(
                f"access denied for database user {ep.user!r} at {ep.describe()} "
                "(check database.username and database.password)") from None
        if code == 1049:
            raise ConnectionFailed(f"unknown database {database!r} at {ep.describe()}") from None
        if code in (2002, 2003, 2005, 2006, 2013):
            raise ConnectionFailed(f"cannot connect to the database server at {ep.describe()}: {text}") from None
        raise ConnectionFailed(f"database error at {ep.describe()}: {text}") from None
    except (OSError, pymysql.err.Error) as exc:
        raise ConnectionFailed(f"cannot connect to the database server at {ep.describe()}: {redact(str(exc))}") from None


def tls_cipher(conn) -> str:
    """The cipher this connection is encrypted with; empty when it is not encrypted."""
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
    return row[1] if row and row[1] else ""


def reconnect(conn, ep: Endpoint):
    """The same connection if it still answers, else a new one (after a server restart)."""
    try:
        conn.ping(reconnect=False)
        return conn
    except pymysql.err.Error:
        try:
            conn.close()
        except pymysql.err.Error:
            pass
        return connect(ep)


@contextlib.contextmanager
def translated_errors(ep: Endpoint) -> Iterator[None]:
    """Our own queries failing mid-run (connection lost, a privilege missing) become one line."""
    try:
        yield
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        text = redact(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        raise ConnectionFailed(f"database error at {ep.describe()} ({code}): {text}") from None
    except pymysql.err.Error as exc:
        raise ConnectionFailed(f"database error at {ep.describe()}: {redact(str(exc))}") from None


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
