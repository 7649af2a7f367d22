"""What is in a database, read through our own connection (never through argv)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tenangdb.mysql.connection import quote_identifier

# Engines whose reads inside START TRANSACTION WITH CONSISTENT SNAPSHOT see the snapshot.
TRANSACTIONAL = frozenset({"innodb", "xtradb", "rocksdb", "tokudb"})
# Engines that keep no rows, so there is nothing for a snapshot to miss.
DATALESS = frozenset({"blackhole"})


@dataclass
class ServerInfo:
    version: str
    flavour: str
    log_bin: bool
    can_read_binlog_position: bool


@dataclass
class Inventory:
    charset: str
    collation: str
    tables: list[dict] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    routines: list[dict] = field(default_factory=list)
    triggers: list[dict] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def system_versioned(self) -> list[str]:
        return [t["name"] for t in self.tables if t.get("system_versioned")]

    @property
    def non_transactional(self) -> list[dict]:
        """Tables a dump's transaction gives no snapshot (MyISAM, Aria, MEMORY...): a write while
        the dump runs may be half in it, and nothing ties them to the other tables' moment."""
        return [t for t in self.tables
                if str(t.get("engine") or "").lower() not in TRANSACTIONAL | DATALESS]

    def as_manifest(self) -> dict:
        return {
            "tables": self.tables, "views": self.views, "sequences": self.sequences,
            "routines": self.routines, "triggers": self.triggers, "events": self.events,
        }


def server_info(conn) -> ServerInfo:
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@version_comment, @@log_bin")
        version, comment, log_bin = cur.fetchone()
        flavour = "mariadb" if "mariadb" in f"{version} {comment}".lower() else "mysql"
        can_read = False
        if log_bin:
            # Recording the binlog position needs RELOAD (a brief FLUSH TABLES WITH READ LOCK)
            # and the right to read the binlog status; without them we record none.
            try:
                cur.execute("SHOW MASTER STATUS")
                has_status = cur.fetchone() is not None
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE='RELOAD' "
                    "AND GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
                    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')")
                can_read = has_status and cur.fetchone()[0] > 0
            except Exception:  # noqa: BLE001 - missing privilege means "not available"
                can_read = False
    return ServerInfo(version=version, flavour=flavour, log_bin=bool(log_bin), can_read_binlog_position=can_read)


# The server's own schemas: never part of `databases: all` (mysql only when asked).
SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "sys")


# Virtual schemas: the server makes their tables up, nothing can be loaded into them.
VIRTUAL_SCHEMAS = ("information_schema", "performance_schema")


def database_name_problem(name: str) -> str | None:
    """Why the server would refuse `name` as a database name (ER_WRONG_DB_NAME), or None."""
    if not name:
        return "a database name cannot be empty"
    if len(name) > 64:
        return f"a database name has at most 64 characters, {len(name)} given"
    if name != name.rstrip(" "):
        return "a database name cannot end with a space"
    if "\x00" in name:
        return "a database name cannot hold a NUL character"
    if any(ord(char) > 0xFFFF for char in name):
        return "a database name cannot hold characters outside the Basic Multilingual Plane (e.g. emoji)"
    return None


def is_system_schema(name: str) -> bool:
    """The server's own schemas; compared without case, as lower_case_table_names may fold it."""
    return name.lower() in ("mysql", *SYSTEM_SCHEMAS)


def all_databases(conn, *, include_mysql: bool) -> list[str]:
    skip = set(SYSTEM_SCHEMAS) | (set() if include_mysql else {"mysql"})
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
        return [name for (name,) in cur.fetchall() if name not in skip]


def database_exists(conn, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
        return cur.fetchone() is not None


def database_object_count(conn, name: str) -> int:
    """Tables, views, routines, triggers and events in a database (0 means empty)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s)"
            " + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s)"
            " + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA=%s)",
            (name, name, name))
        return int(cur.fetchone()[0])


def _create_sql(conn, name: str, charset: str | None, collation: str | None, comment: str | None) -> str:
    sql = f"CREATE DATABASE {quote_identifier(name)}"
    if charset:
        sql += f" CHARACTER SET {quote_identifier(charset)}"
    if collation:
        sql += f" COLLATE {quote_identifier(collation)}"
    if comment:
        # Escaped here, not passed as a parameter: parameters would make every '%' in the
        # database name a format directive.
        sql += f" COMMENT {conn.escape(comment)}"
    return sql


def binlog_position(conn) -> tuple[str, int] | None:
    """The server's current binary log file and position; None when the binary log is off or
    this user may not read it (then nobody can tell from it whether anything was written)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
    except Exception:  # noqa: BLE001 - no privilege or a dead connection: the same "cannot tell"
        return None
    return (binlog_file_name(row[0]), int(row[1])) if row else None


@dataclass
class BinlogState:
    """What the binary log archiver asks of the server: is the log on, whose is it, which files
    does it hold (name, size) and the GTID position of the newest transaction."""
    log_bin: bool
    server_id: int
    hostname: str
    log_bin_basename: str
    gtid_pos: str
    files: list[tuple[str, int]]


def binlog_state(conn) -> BinlogState:
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@server_id, @@hostname, @@log_bin_basename, @@gtid_binlog_pos")
        log_bin, server_id, hostname, basename, gtid_pos = cur.fetchone()
        files: list[tuple[str, int]] = []
        if log_bin:
            cur.execute("SHOW BINARY LOGS")
            files = [(row[0], int(row[1])) for row in cur.fetchall()]
    return BinlogState(bool(log_bin), int(server_id), str(hostname), str(basename), str(gtid_pos or ""), files)


def flush_binary_logs(conn) -> None:
    """Close the server's open binary log file (RELOAD)."""
    with conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")


def binlog_file_name(value: str | None) -> str:
    """A binary log file as positions are compared: without the folder some reports include."""
    return os.path.basename(value or "")


def inventory(conn, name: str) -> Inventory:
    with conn.cursor() as cur:
        cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME=%s", (name,))
        charset, collation = cur.fetchone()
        inv = Inventory(charset=charset, collation=collation)
        cur.execute("SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA=%s ORDER BY TABLE_NAME", (name,))
        for table, kind, engine, rows in cur.fetchall():
            if kind == "VIEW":
                inv.views.append(table)
            elif kind == "SEQUENCE":
                inv.sequences.append(table)
            else:
                inv.tables.append({"name": table, "engine": engine, "rows_estimate": rows,
                                   "system_versioned": kind == "SYSTEM VERSIONED"})
        cur.execute("SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s "
                    "ORDER BY ROUTINE_TYPE, ROUTINE_NAME", (name,))
        inv.routines = [{"name": r, "type": t.lower()} for r, t in cur.fetchall()]
        cur.execute("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
                    "WHERE TRIGGER_SCHEMA=%s ORDER BY TRIGGER_NAME", (name,))
        inv.triggers = [{"name": n, "table": t} for n, t in cur.fetchall()]
        cur.execute("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA=%s ORDER BY EVENT_NAME",
                    (name,))
        inv.events = [row[0] for row in cur.fetchall()]
    return inv


def missing_objects(conn, target: str, objects: dict) -> list[str]:
    """One line for each object a manifest lists (`objects`) that database `target` lacks."""
    have = inventory(conn, target)
    wanted = [
        ("table", [t["name"] for t in objects.get("tables", [])], {t["name"] for t in have.tables}),
        ("view", list(objects.get("views", [])), set(have.views)),
        ("sequence", list(objects.get("sequences", [])), set(have.sequences)),
        ("routine", [f"{r['type']} {r['name']}" for r in objects.get("routines", [])],
         {f"{r['type']} {r['name']}" for r in have.routines}),
        ("trigger", [t["name"] for t in objects.get("triggers", [])], {t["name"] for t in have.triggers}),
        ("event", list(objects.get("events", [])), set(have.events)),
    ]
    return [f"{kind} {name!r} is listed in the manifest but missing after the restore"
            for kind, names, present in wanted for name in names if name not in present]


class DatabaseExists(Exception):
    """CREATE DATABASE found the name taken: the database is not ours to use or drop."""


def create_new_database(conn, name: str, charset: str | None, collation: str | None,
                        comment: str | None = None) -> None:
    """CREATE DATABASE without IF NOT EXISTS: succeeds only for a name nobody holds, so a
    database created here is one we may drop. DatabaseExists if the name is taken."""
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute(_create_sql(conn, name, charset, collation, comment))
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == 1007:
            raise DatabaseExists(name) from None
        raise


def drop_database(conn, name: str) -> None:
    """Drop a database we created, first ending every other session using it: a loader killed
    on our side may leave its statement running on the server, holding locks DROP would wait on."""
    import pymysql

    with conn.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()", (name,))
        for (session,) in cur.fetchall():
            try:
                cur.execute(f"KILL {int(session)}")
            except pymysql.err.Error:
                pass  # gone already, or not ours to kill: DROP will wait for it, but not forever
        cur.execute("SET SESSION lock_wait_timeout = 120")
        cur.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")


def missing_events(conn, database: str, events: list[str]) -> list[str]:
    """The events of `events` the server does not have in `database`."""
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM mysql.event WHERE db = %s", (database,))
        have = {row[0] for row in cur.fetchall()}
    return [event for event in events if event not in have]


def check_table(conn, database: str, table: str) -> str | None:
    """CHECK TABLE's verdict on one table: None when it is OK, else a line saying what it said."""
    with conn.cursor() as cur:
        cur.execute(f"CHECK TABLE {quote_identifier(database)}.{quote_identifier(table)}")
        rows = cur.fetchall()
    bad = [row for row in rows if str(row[2]).lower() == "error" or
           (str(row[2]).lower() == "status" and str(row[3]).lower() not in ("ok", "table is already up to date"))]
    return f"CHECK TABLE {database}.{table}: {bad[0][3]}" if bad else None
