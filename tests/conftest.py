"""Shared fixtures: one throwaway MariaDB for the session, and a way to run the real CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tenangdb.mysql.sandbox import start_sandbox

TENANGDB = [sys.executable, "-m", "tenangdb"]


def on_a_terminal(argv: list[str], script: list[tuple[bytes, bytes]], cwd, env: dict | None = None,
                  timeout: float = 120) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal (stdin, stdout and stderr), answering each expected
    prompt in turn when it shows on the last line; (exit status, everything shown)."""
    import pty
    import select
    import time

    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    master, slave = pty.openpty()
    proc = subprocess.Popen([*TENANGDB, *argv], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    seen, step, deadline = b"", 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if step < len(script) and script[step][0] in seen.split(b"\n")[-1]:
            os.write(master, script[step][1] + b"\n")
            seen += b"\n"
            step += 1
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


@dataclass
class Server:
    socket: str | None
    host: str
    port: int
    user: str
    password: str
    box: object | None = None

    def sql(self, statement: str, database: str | None = None) -> str:
        argv = [shutil.which("mariadb") or "mysql", "--no-defaults", "--batch", "--skip-column-names",
                "--default-character-set=utf8mb4",
                f"-u{self.user}"]
        argv += [f"--socket={self.socket}"] if self.socket else [f"--host={self.host}", f"--port={self.port}"]
        if database:
            argv.append(database)
        env = dict(os.environ, MYSQL_PWD=self.password) if self.password else None
        done = subprocess.run(argv, input=statement, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"SQL failed: {done.stderr.strip()}")
        return done.stdout

    def config_section(self) -> dict:
        section = {"username": self.user}
        if self.socket:
            section["socket"] = self.socket
        else:
            section.update(host=self.host, port=self.port)
        if self.password:
            section["password"] = self.password
        return section


@pytest.fixture(scope="session")
def server():
    """The server the suite talks to: a throwaway one unless TENANGDB_TEST_MYSQL names another
    as `socket=/path` or `host:port` (user root, password from TENANGDB_TEST_MYSQL_PASSWORD)."""
    spec = os.environ.get("TENANGDB_TEST_MYSQL")
    if spec:
        password = os.environ.get("TENANGDB_TEST_MYSQL_PASSWORD", "")
        if spec.startswith("socket="):
            yield Server(socket=spec[7:], host="localhost", port=3306, user="root", password=password)
        else:
            host, _, port = spec.partition(":")
            yield Server(socket=None, host=host, port=int(port or 3306), user="root", password=password)
        return
    # MariaDB's default: the binary log is off. What needs it uses `binlog_server`.
    yield from _throwaway(binlog=False)


@pytest.fixture(scope="session")
def binlog_server():
    """A second throwaway server with the binary log on (ROW), started on first use."""
    yield from _throwaway(binlog=True)


def _throwaway(*, binlog: bool):
    box = start_sandbox(binlog=binlog, networking=True)  # some tests log in over TCP
    try:
        yield Server(socket=str(box.socket_path), host="127.0.0.1", port=box.port, user="root", password="",
                     box=box)
    finally:
        box.stop()


@contextlib.contextmanager
def backup_user_without_reload(server, database: str):
    """An account that can dump `database` but not hold commits (no RELOAD): its database
    section for a config, dropped afterwards."""
    user = unique("u")
    server.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'; "
               f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{database}`.* TO '{user}'@'%'; "
               f"GRANT SELECT ON mysql.proc TO '{user}'@'%'")
    try:
        yield {"host": server.host, "port": server.port, "username": user, "password": f"pw-{user}"}
    finally:
        server.sql(f"DROP USER IF EXISTS '{user}'@'%'")


def restored_rows(env, server, backup, config, secrets: dict | None = None, table: str = "customer") -> str:
    """Restore `backup` into a new scratch database and count `table`'s rows there (the
    database is dropped again); the restore must succeed."""
    target = unique("restored")
    try:
        done = env.cli("restore", "--backup-path", str(backup), "-d", target, config=config, env=secrets)
        assert done.returncode == 0, done.stderr
        return server.sql(f"SELECT COUNT(*) FROM `{table}`", target).strip()
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def unique(prefix: str = "db") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def made_database(server, prefix: str, statements: str):
    """A fixture body: a new database named `{prefix}_…` made by `statements` (run inside it),
    yielded by name and dropped afterwards."""
    name = unique(prefix)
    server.sql(f"CREATE DATABASE `{name}`; USE `{name}`; {statements}")
    yield name
    server.sql(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def sample_db(server):
    """A small database with a table, a view, a routine and a trigger."""
    name = unique("shop")
    server.sql(f"""
        CREATE DATABASE `{name}`;
        USE `{name}`;
        CREATE TABLE customer (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), note TEXT) ENGINE=InnoDB;
        INSERT INTO customer (name, note) VALUES ('Ana', 'first'), ('Budi', NULL), ('Citra', '');
        INSERT INTO customer (name, note) SELECT CONCAT('c', seq), REPEAT('x', seq % 50) FROM seq_1_to_2000;
        CREATE VIEW customer_names AS SELECT name FROM customer;
        CREATE PROCEDURE count_customers() SELECT COUNT(*) FROM customer;
        CREATE TRIGGER customer_bi BEFORE INSERT ON customer FOR EACH ROW SET NEW.note = COALESCE(NEW.note, '');
    """)
    yield name
    server.sql(f"DROP DATABASE IF EXISTS `{name}`")


@dataclass
class Env:
    root: Path
    server: Server

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    def write_config(self, extra: dict | None = None, *, name: str = "config.yaml", mode: int = 0o600,
                     database: dict | None = None) -> Path:
        # Retries without waiting, and tracking kept inside the test's folder.
        data = {"database": database if database is not None else self.server.config_section(),
                "backup": {"directory": str(self.backups), "retry_delay": 0,
                           "tracking_directory": str(self.root / "tracking")}}
        for section, values in (extra or {}).items():
            data.setdefault(section, {}).update(values)
        if "mysqldump_path" in data["database"]:
            # A test that swaps in its own dump tool means the streaming engine.
            data["backup"].setdefault("engine", "mysqldump")
        path = self.root / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        os.chmod(path, mode)
        return path

    def key(self) -> Path:
        path = self.root / "age-identity.txt"
        if not path.exists():
            done = run_cli("key", "generate", "-o", str(path))
            assert done.returncode == 0, done.stderr
        return path

    def cli(self, *args: str, config: Path | None = None, env: dict | None = None,
            cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = list(args)
        if config is not None:
            argv = ["--config", str(config), *argv]
        return run_cli(*argv, env=env, cwd=cwd or self.root, timeout=timeout)

    def backups_of(self, database: str) -> list[Path]:
        return sorted(p for p in self.backups.glob(f"{database}/*/*") if not p.name.startswith("."))


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    full_env.update(env or {})
    done = subprocess.run([*TENANGDB, *args], capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def env(tmp_path, server) -> Env:
    return Env(root=tmp_path, server=server)


@pytest.fixture
def offline_env(tmp_path) -> Env:
    """For tests that need no server at all."""
    return Env(root=tmp_path, server=Server(socket=None, host="127.0.0.1", port=9, user="nobody", password=""))


@pytest.fixture(scope="session")
def needs_mydumper():
    # scripts/bootstrap installs mydumper; a machine without it must fail these tests, not skip them.
    assert shutil.which("mydumper") and shutil.which("myloader"), "mydumper/myloader are not installed"
