"""What the backup account may do (SHOW GRANTS), what each engine needs, and the
least-privilege GRANT statements to run.

The needs follow what the engines actually execute:
- mysqldump/mariadb-dump as `mysql/mysqldump.py` runs it (`--single-transaction --routines
  --events --triggers`, plus `--master-data=2 [--gtid]` when the binlog position can be read):
  SELECT, SHOW VIEW, TRIGGER and EVENT on each database; the routines' text needs SELECT on
  mysql.proc (MariaDB before 11.3), SHOW CREATE ROUTINE (MariaDB 11.3+) or SHOW_ROUTINE (MySQL
  8.0.20+); the binlog position needs RELOAD (the brief FLUSH TABLES WITH READ LOCK) and BINLOG
  MONITOR (MariaDB 10.5+; REPLICATION CLIENT before and on MySQL). MySQL 8.0.21+ also wants
  PROCESS for the tablespace query. No LOCK TABLES: a single transaction needs none.
- mydumper (which `backup.engine: auto` picks when it is installed) cannot start without
  FLUSH TABLES WITH READ LOCK (RELOAD, measured with 0.10 on MariaDB 10.11), on MySQL 8 uses
  LOCK INSTANCE FOR BACKUP (BACKUP_ADMIN), and falls back to the streaming engine for
  databases it cannot carry, so it needs that engine's privileges too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tenangdb.mysql.connection import quote_identifier

# Privileges a backup never needs; holding them widens what a stolen password can do.
WRITE_OR_ADMIN = frozenset({
    "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "REFERENCES", "CREATE VIEW",
    "CREATE ROUTINE", "ALTER ROUTINE", "EXECUTE", "CREATE USER", "FILE", "SHUTDOWN", "CREATE TABLESPACE",
    "REPLICATION SLAVE", "REPLICATION SLAVE ADMIN", "REPLICATION MASTER ADMIN", "BINLOG ADMIN",
    "BINLOG REPLAY", "CONNECTION ADMIN", "READ_ONLY ADMIN", "FEDERATED ADMIN", "SET USER", "DELETE HISTORY",
    "SYSTEM_VARIABLES_ADMIN", "SYSTEM_USER", "ROLE_ADMIN",
})
ALIASES = {"REPLICATION CLIENT": "BINLOG MONITOR", "SLAVE MONITOR": "REPLICA MONITOR",
           "ALL": "ALL PRIVILEGES"}


@dataclass
class Grant:
    privileges: frozenset[str]
    database: str | None  # None: every database (*.*)
    table: str | None  # None: every table of the database
    grant_option: bool
    routine: bool = False  # GRANT ... ON PROCEDURE/FUNCTION


@dataclass
class Need:
    privilege: str
    scope: str  # "global", "database" (each backed-up database) or "mysql.proc"
    why: str
    required: bool = True  # False: the backup works without it but loses something


@dataclass
class GrantReport:
    user: str
    host: str
    missing: list[tuple[Need, str]] = field(default_factory=list)  # (need, where)
    excess: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    @property
    def missing_required(self) -> list[tuple[Need, str]]:
        return [(need, where) for need, where in self.missing if need.required]

    @property
    def missing_optional(self) -> list[tuple[Need, str]]:
        return [(need, where) for need, where in self.missing if not need.required]


_IDENT = r"(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|\"[^\"]*\"|[^\s.`]+)"
_GRANT = re.compile(
    rf"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?:(?P<kind>PROCEDURE|FUNCTION|PACKAGE(?: BODY)?)\s+)?"
    rf"(?P<db>{_IDENT})\.(?P<table>{_IDENT})\s+TO\s+(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_ROLE = re.compile(rf"^GRANT\s+(?P<role>{_IDENT})\s+TO\s+", re.IGNORECASE)


def _unquote(ident: str) -> str:
    if len(ident) >= 2 and ident[0] == ident[-1] and ident[0] in "`'\"":
        quote = ident[0]
        return ident[1:-1].replace(quote * 2, quote)
    return ident


def _split_privileges(text: str) -> list[str]:
    """'SELECT, INSERT (a, b), SHOW VIEW' -> ['SELECT', 'INSERT', 'SHOW VIEW'] (columns dropped)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        elif depth == 0:
            current.append(char)
    parts.append("".join(current))
    names = []
    for part in parts:
        name = " ".join(part.split()).upper()
        if name:
            names.append(ALIASES.get(name, name))
    return names


def parse_grants(lines: list[str]) -> tuple[list[Grant], list[str]]:
    """Grants and granted role names from SHOW GRANTS output."""
    grants: list[Grant] = []
    roles: list[str] = []
    for line in lines:
        line = line.strip()
        match = _GRANT.match(line)
        if match is None:
            role = _ROLE.match(line)
            if role and not line.upper().startswith("GRANT PROXY"):
                roles.append(_unquote(role.group("role")))
            continue
        privs = _split_privileges(match.group("privs"))
        if privs == ["PROXY"]:
            continue
        db, table = _unquote(match.group("db")), _unquote(match.group("table"))
        grants.append(Grant(
            privileges=frozenset(privs), database=None if db == "*" else db,
            table=None if table == "*" else table,
            grant_option="WITH GRANT OPTION" in match.group("rest").upper(),
            routine=bool(match.group("kind")),
        ))
    return grants, roles


def _db_pattern_matches(pattern: str, name: str) -> bool:
    """Database-level grants treat unescaped _ and % as wildcards."""
    regex, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.fullmatch("".join(regex), name, re.IGNORECASE | re.DOTALL) is not None


def _holds(grants: list[Grant], privilege: str, database: str | None, table: str | None = None) -> bool:
    for grant in grants:
        if grant.routine:
            continue
        if not (privilege in grant.privileges or "ALL PRIVILEGES" in grant.privileges):
            continue
        if grant.database is None:
            return True
        if database is None or not _db_pattern_matches(grant.database, database):
            continue
        if grant.table is None or (table is not None and grant.table.lower() == table.lower()):
            return True
    return False


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-")[0])[:3]) or (0,)


def requirements(engine: str, flavour: str, version: str, *, binlog: bool) -> list[Need]:
    """What the account needs for the engine against this server: what every dump runs, and
    what the engine adds (Engine.dump_needs). An engine with a fallback needs that one's
    privileges too; the common set is the streaming dump's."""
    ver = _version_tuple(version)
    from tenangdb.mysql import engines  # the engines name their needs with this module's Need
    if engines.ENGINES[engine].whole_instance:
        return engines.ENGINES[engine].dump_needs(flavour, ver)  # its tool copies files, it runs no dump
    needs = [
        Need("SELECT", "database", "read the tables"),
        Need("SHOW VIEW", "database", "dump view definitions"),
        Need("TRIGGER", "database", "dump triggers"),
        Need("EVENT", "database", "dump events"),
    ]
    if flavour == "mariadb":
        if ver >= (11, 3):
            needs.append(Need("SHOW CREATE ROUTINE", "database", "dump the text of stored routines"))
        else:
            needs.append(Need("SELECT", "mysql.proc", "dump the text of stored routines"))
    elif ver >= (8, 0, 20):
        needs.append(Need("SHOW_ROUTINE", "global", "dump the text of stored routines"))
    else:
        needs.append(Need("SELECT", "mysql.proc", "dump the text of stored routines"))
    if flavour == "mysql" and ver >= (8, 0, 21):
        needs.append(Need("PROCESS", "global", "the tablespace query of mysqldump 8.0.21+"))
    binlog_priv = "BINLOG MONITOR" if flavour == "mariadb" and ver >= (10, 5) else "REPLICATION CLIENT"
    needs += engines.ENGINES[engine].dump_needs(flavour, ver)
    if binlog:
        needs.append(Need(binlog_priv, "global", "record the binlog position (SHOW MASTER STATUS)",
                          required=False))
    return needs


def restore_requirements(objects: dict | None, *, streaming: bool) -> list[Need]:
    """What loading a backup into a target database needs there (`objects`: the manifest's
    inventory; None when it is not known yet, as before a remote backup is downloaded).
    Both loaders drop and recreate each table (DROP, CREATE, INSERT); mariadb-dump's output
    also holds ALTER TABLE ... DISABLE KEYS and LOCK TABLES around its INSERTs."""
    needs = [Need("CREATE", "database", "create the database and its tables"),
             Need("DROP", "database", "replace tables of the same name"),
             Need("INSERT", "database", "load the rows")]
    if streaming:
        needs += [Need("ALTER", "database", "ALTER TABLE ... DISABLE KEYS in the dump"),
                  Need("LOCK TABLES", "database", "LOCK TABLES around the dump's INSERTs")]
    if objects:
        if objects.get("views"):
            needs += [Need("CREATE VIEW", "database", "create the views"),
                      Need("SHOW VIEW", "database", "replace the views")]
        if objects.get("routines"):
            needs += [Need("CREATE ROUTINE", "database", "create the routines"),
                      Need("ALTER ROUTINE", "database", "replace the routines")]
        if objects.get("triggers"):
            needs.append(Need("TRIGGER", "database", "create the triggers"))
        if objects.get("events"):
            needs.append(Need("EVENT", "database", "create the events"))
    return needs


def _normalised(privilege: str) -> str:
    return ALIASES.get(privilege, privilege)


# What the binlog archiver (`tenangdb binlog`) needs beyond a backup and the grants list as
# write or admin: it reads the binary log over the replication protocol (its FLUSH BINARY LOGS
# needs RELOAD, which a backup holds anyway). Not excess on an account that runs it.
ARCHIVER = frozenset({"REPLICATION SLAVE"})


def check(grants: list[Grant], roles: list[str], needs: list[Need], databases: list[str],
          *, user: str, host: str, allowed: frozenset[str] = frozenset()) -> GrantReport:
    """Compare the grants with the needs for the databases (`["all"]`: every database);
    `allowed`: write or admin privileges the account needs for something else (ARCHIVER)."""
    report = GrantReport(user=user, host=host, roles=roles)
    every = databases == ["all"] or not databases
    for need in needs:
        priv = _normalised(need.privilege)
        if need.scope == "global":
            if not _holds(grants, priv, None):
                report.missing.append((need, "*.*"))
        elif need.scope == "mysql.proc":
            if not _holds(grants, priv, "mysql", "proc"):
                report.missing.append((need, "mysql.proc"))
        elif every:
            if not _holds(grants, priv, None):
                report.missing.append((need, "*.*"))
        else:
            for name in databases:
                if not _holds(grants, priv, name):
                    report.missing.append((need, f"{quote_identifier(name)}.*"))
    for grant in grants:
        where = "*.*" if grant.database is None else (
            f"{quote_identifier(grant.database)}.{'*' if grant.table is None else quote_identifier(grant.table)}")
        if "ALL PRIVILEGES" in grant.privileges:
            report.excess.append(f"ALL PRIVILEGES on {where}")
        if "SUPER" in grant.privileges:
            report.excess.append(f"SUPER on {where} (no engine here needs it)")
        if grant.grant_option:
            report.excess.append(f"GRANT OPTION on {where}")
        extra = sorted(grant.privileges & (WRITE_OR_ADMIN - allowed))
        if extra:
            report.excess.append(f"{', '.join(extra)} on {where} (a backup only reads)")
    return report


def _account(user: str, host: str) -> str:
    return f"'{user.replace(chr(39), chr(39) * 2)}'@'{host.replace(chr(39), chr(39) * 2)}'"


def least_privilege_statements(needs: list[Need], databases: list[str], user: str, host: str) -> list[str]:
    """GRANT statements giving exactly what the needs list, for the databases."""
    account = _account(user, host)
    per_db = [n.privilege for n in needs if n.scope == "database"]
    global_ = [n.privilege for n in needs if n.scope == "global"]
    proc = [n.privilege for n in needs if n.scope == "mysql.proc"]
    statements = []
    every = databases == ["all"] or not databases
    if every:
        global_ = per_db + global_
        if "SELECT" in per_db:
            proc = [p for p in proc if p != "SELECT"]  # a global SELECT covers mysql.proc
    else:
        for name in databases:
            # A database-level grant reads _ and % as wildcards: escape them.
            escaped = name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
            statements.append(f"GRANT {', '.join(dict.fromkeys(per_db))} ON {quote_identifier(escaped)}.* "
                              f"TO {account};")
    if global_:
        statements.append(f"GRANT {', '.join(dict.fromkeys(global_))} ON *.* TO {account};")
    if proc:
        statements.append(f"GRANT {', '.join(dict.fromkeys(proc))} ON `mysql`.`proc` TO {account};")
    return statements


def current_grants(conn) -> tuple[str, str, list[str]]:
    """(user, host, SHOW GRANTS lines) of the connected account. Password hashes are cut off:
    the lines are shown to people."""
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        user, _, host = cur.fetchone()[0].rpartition("@")
        cur.execute("SHOW GRANTS")
        lines = [row[0] for row in cur.fetchall()]
    cleaned = [re.sub(r"\s+IDENTIFIED\s+(BY|VIA|WITH)\b.*?(?=\s+WITH\s+GRANT\s+OPTION|$)", "", line,
                      flags=re.IGNORECASE | re.DOTALL) for line in lines]
    return user, host, cleaned


def current_account(conn) -> str:
    """`user@host` of the session's own account, as the server matched it."""
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        return cur.fetchone()[0]


def set_own_password(conn, password: str) -> str:
    """Set the session's own account's password; the statement kind used. ALTER USER first
    (MySQL, and MariaDB for an account holding CREATE USER); a least-privileged MariaDB
    account may change its own password only with SET PASSWORD."""
    import pymysql
    with conn.cursor() as cur:
        try:
            cur.execute("ALTER USER CURRENT_USER() IDENTIFIED BY %s", (password,))
            return "ALTER USER"
        except pymysql.err.OperationalError as exc:
            if not exc.args or exc.args[0] not in (1227, 1044, 1142):
                raise
        cur.execute("SET PASSWORD = PASSWORD(%s)", (password,))
        return "SET PASSWORD"
