"""Describe a MariaDB database object by object, to compare a source with its restore.

``snapshot(target, database)`` returns a plain dict (strings, ints, nested
dicts) so two databases compare with ``==``; ``diff_snapshots(a, b)`` turns
the differences into one readable line each.

What is captured:

* ``database``: default character set, collation and comment.
* ``tables`` (base and system-versioned tables): SHOW CREATE TABLE with the
  database name removed (AUTO_INCREMENT counters kept), exact row count,
  ``CHECKSUM TABLE ... EXTENDED`` and, independent of the definition, a
  digest of the current rows per column (so a diff can say *which* column
  changed).  For system-versioned tables also ``history``: count and digest
  of ``FOR SYSTEM_TIME ALL`` rows including the row start/end values.
* ``views``: SHOW CREATE VIEW (database name removed, definer kept) and its
  character set / collation.
* ``routines``: procedures, functions, packages and package bodies: SHOW
  CREATE text, sql_mode, security type, comment, determinism, data access,
  definer, character sets and database collation.
* ``triggers``: name, timing, event, table, statement, sql_mode, order,
  definer, character sets and database collation.
* ``events``: SHOW CREATE EVENT plus schedule, status, on-completion,
  time zone, sql_mode, comment, definer (not the originator server id nor
  the created/altered/executed times).
* ``sequences``: SHOW CREATE SEQUENCE plus the row of ``SELECT * FROM seq``
  (which reads the state without advancing it).

Database-name normalisation: every server-produced or user-written text has
references to the snapshotted database (```db`.`` and, for plain names,
``db.``) removed, because inside the database an unqualified name means the
same thing.  A restore under a new name that still points at the *old*
name therefore shows up as a difference.

CHECKSUM TABLE depends on the physical row format, so two checksums are only
comparable when the two SHOW CREATE TABLE texts are identical; the diff
says so when they are not.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from typing import Any, Mapping

import pymysql
from pymysql.converters import conversions

# Encoders only: every value comes back exactly as the server's text
# protocol sends it (str for character columns, bytes for binary ones).
_TEXT_ONLY_CONV = {k: v for k, v in conversions.items() if not isinstance(k, int)}

_FLOAT_TYPES = {"float"}
_ENUM_SET_TYPES = {"enum", "set"}


def qi(name: str) -> str:
    """Quote an identifier with backticks."""
    return "`" + name.replace("`", "``") + "`"


def connect(target: Any, database: str | None = None) -> pymysql.connections.Connection:
    """Connect to a Sandbox (anything with ``socket_path``) or with PyMySQL keyword arguments."""
    if hasattr(target, "socket_path"):
        params: dict[str, Any] = {
            "unix_socket": str(target.socket_path),
            "user": getattr(target, "user", "root"),
            "password": getattr(target, "password", ""),
        }
    elif isinstance(target, Mapping):
        params = dict(target)
    else:
        raise TypeError(f"cannot connect to {target!r}")
    params.setdefault("charset", "utf8mb4")
    params["conv"] = _TEXT_ONLY_CONV
    params["autocommit"] = True
    if database is not None:
        params["database"] = database
    conn = pymysql.connect(**params)
    with conn.cursor() as cur:
        # Fixed session settings so SHOW CREATE output and TIMESTAMP values
        # do not depend on the server's or the client's defaults.
        cur.execute("SET time_zone = '+00:00', sql_mode = 'NO_ENGINE_SUBSTITUTION', "
                    "max_statement_time = 0, group_concat_max_len = 1073741824")
    return conn


def _rows(conn, sql: str, args: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _dict_rows(conn, sql: str, args: Any = None) -> list[dict]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(value).hex()
    return value


def _strip_db(text: Any, database: str) -> Any:
    if not isinstance(text, str):
        return text
    text = text.replace(qi(database) + ".", "")
    if re.fullmatch(r"[A-Za-z0-9_$]+", database) and not database.isdigit():
        text = re.sub(r"(?<![\w$`.])" + re.escape(database) + r"\.(?=[`A-Za-z_$])", "", text)
    return text


def _encode(value: Any) -> bytes:
    if value is None:
        return b"\xffNULL"
    if isinstance(value, (bytes, bytearray)):
        return b"b" + bytes(value)
    return b"s" + str(value).encode("utf-8", "surrogateescape")


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()[:32]


def _columns(conn, database: str, table: str) -> list[dict]:
    return _dict_rows(
        conn,
        "SELECT COLUMN_NAME AS name, DATA_TYPE AS data_type, IFNULL(GENERATION_EXPRESSION, '') AS gen, "
        "EXTRA AS extra, COLUMN_DEFAULT AS `default` FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (database, table),
    )


def _primary_key(conn, database: str, table: str) -> list[str]:
    rows = _rows(
        conn,
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        (database, table),
    )
    return [_text(r[0]) for r in rows]


def _select_list(columns: list[dict]) -> tuple[list[str], list[str]]:
    """Expressions that render each column losslessly, and their labels."""
    exprs, labels = [], []
    for col in columns:
        name, dtype = col["name"], col["data_type"].lower()
        if dtype in _FLOAT_TYPES:
            # FLOAT prints with 6 significant digits; as DOUBLE it is exact.
            exprs.append(f"{qi(name)} * 1e0")
        elif dtype in _ENUM_SET_TYPES:
            # '' can be the error value (index 0) or a real member.
            exprs.append(f"CONCAT({qi(name)}, '#', {qi(name)} + 0)")
        else:
            exprs.append(qi(name))
        labels.append(name)
    return exprs, labels


def _table_entry(conn, database: str, table: str, versioned: bool) -> dict:
    q = qi(table)
    create = _rows(conn, f"SHOW CREATE TABLE {q}")[0][1]
    entry: dict[str, Any] = {"create": _strip_db(_text(create), database)}
    entry["rows"] = int(_rows(conn, f"SELECT COUNT(*) FROM {q}")[0][0])
    entry["checksum"] = _text(_rows(conn, f"CHECKSUM TABLE {q} EXTENDED")[0][1])

    columns = _columns(conn, database, table)
    period = [c for c in columns if c["gen"] in ("ROW START", "ROW END")]
    data_cols = [c for c in columns if c not in period]
    exprs, labels = _select_list(data_cols)
    pk = _primary_key(conn, database, table)
    order = " ORDER BY " + ", ".join(qi(c) for c in pk) if pk else ""
    rows = _rows(conn, f"SELECT {', '.join(exprs)} FROM {q}{order}")
    if not pk:
        rows.sort(key=lambda r: [_encode(v) for v in r])
    entry["columns"] = {
        label: _digest([_encode(r[i]) for r in rows]) for i, label in enumerate(labels)
    }

    # Literal string defaults, as the server evaluates them: SHOW CREATE TABLE
    # and information_schema print 4-byte characters in them as '?'.
    if entry["rows"]:
        literal = [c["name"] for c in columns
                   if str(_text(c["default"]) or "").startswith("'") and not c["gen"]]
        if literal:
            row = _rows(conn, f"SELECT {', '.join(f'DEFAULT({qi(n)})' for n in literal)} FROM {q} LIMIT 1")[0]
            entry["defaults"] = {n: _text(v) for n, v in zip(literal, row)}

    if versioned:
        if period:
            start, end = (qi(c["name"]) for c in sorted(period, key=lambda c: c["gen"] != "ROW START"))
        else:
            start, end = "ROW_START", "ROW_END"
        all_rows = _rows(
            conn, f"SELECT {', '.join(exprs)}, {start}, {end} FROM {q} FOR SYSTEM_TIME ALL"
        )
        encoded = sorted(b"".join(_encode(v) + b"\x00" for v in r) for r in all_rows)
        history_only = _rows(
            conn, f"SELECT COUNT(*) FROM {q} FOR SYSTEM_TIME ALL WHERE {end} < (SELECT MAX({end}) "
                  f"FROM {q} FOR SYSTEM_TIME ALL)"
        )
        entry["history"] = {
            "rows_all": len(all_rows),
            "rows_history": int(history_only[0][0]),
            "digest": _digest(encoded),
        }
    return entry


def snapshot(target: Any, database: str) -> dict:
    """Describe ``database`` on ``target`` (a Sandbox or PyMySQL connect kwargs)."""
    conn = connect(target, database)
    try:
        return _snapshot(conn, database)
    finally:
        conn.close()


def _snapshot(conn, db: str) -> dict:
    snap: dict[str, Any] = {}
    schema = _dict_rows(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME AS charset, DEFAULT_COLLATION_NAME AS collation, "
        "SCHEMA_COMMENT AS comment FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (db,),
    )
    if not schema:
        raise LookupError(f"database {db!r} does not exist")
    snap["database"] = {k: _text(v) for k, v in schema[0].items()}

    objects = _rows(
        conn,
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (db,),
    )
    tables, views, sequences = {}, {}, {}
    for name, ttype in sorted((_text(n), _text(t)) for n, t in objects):
        if ttype in ("BASE TABLE", "SYSTEM VERSIONED"):
            tables[name] = _table_entry(conn, db, name, versioned=(ttype == "SYSTEM VERSIONED"))
        elif ttype == "VIEW":
            row = _rows(conn, f"SHOW CREATE VIEW {qi(name)}")[0]
            views[name] = {
                "create": _strip_db(_text(row[1]), db),
                "character_set_client": _text(row[2]),
                "collation_connection": _text(row[3]),
            }
        elif ttype == "SEQUENCE":
            create = _text(_rows(conn, f"SHOW CREATE SEQUENCE {qi(name)}")[0][1])
            state = _dict_rows(conn, f"SELECT * FROM {qi(name)}")[0]
            sequences[name] = {
                "create": _strip_db(create, db),
                "state": {k: _text(v) for k, v in state.items()},
            }
        else:  # pragma: no cover - e.g. TEMPORARY
            tables[name] = {"unexpected_type": ttype}
    snap["tables"] = tables
    snap["views"] = views
    snap["sequences"] = sequences

    routines = {}
    for r in _dict_rows(
        conn,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME, SECURITY_TYPE, ROUTINE_COMMENT, IS_DETERMINISTIC, "
        "SQL_DATA_ACCESS, DEFINER, SQL_MODE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, "
        "DATABASE_COLLATION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
        (db,),
    ):
        r = {k: _text(v) for k, v in r.items()}
        rtype, rname = r.pop("ROUTINE_TYPE"), r.pop("ROUTINE_NAME")
        show = _rows(conn, f"SHOW CREATE {rtype} {qi(rname)}")[0]
        entry = {k.lower(): _strip_db(v, db) for k, v in r.items()}
        entry["create"] = _strip_db(_text(show[2]), db)
        routines[f"{rtype} {rname}"] = dict(sorted(entry.items()))
    snap["routines"] = dict(sorted(routines.items()))

    triggers = {}
    for t in _dict_rows(
        conn,
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, "
        "ACTION_ORIENTATION, ACTION_STATEMENT, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT, "
        "COLLATION_CONNECTION, DATABASE_COLLATION FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = %s",
        (db,),
    ):
        t = {k.lower(): _strip_db(_text(v), db) for k, v in t.items()}
        t["action_order"] = int(t["action_order"])
        triggers[t.pop("trigger_name")] = t
    snap["triggers"] = dict(sorted(triggers.items()))

    events = {}
    for e in _dict_rows(
        conn,
        "SELECT EVENT_NAME, DEFINER, TIME_ZONE, EVENT_BODY, EVENT_DEFINITION, EVENT_TYPE, "
        "EXECUTE_AT, INTERVAL_VALUE, INTERVAL_FIELD, SQL_MODE, STARTS, ENDS, STATUS, "
        "ON_COMPLETION, EVENT_COMMENT, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, "
        "DATABASE_COLLATION FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
        (db,),
    ):
        e = {k.lower(): _strip_db(_text(v), db) for k, v in e.items()}
        name = e.pop("event_name")
        e["create"] = _strip_db(_text(_rows(conn, f"SHOW CREATE EVENT {qi(name)}")[0][3]), db)
        events[name] = dict(sorted(e.items()))
    snap["events"] = dict(sorted(events.items()))
    return snap


# ---------------------------------------------------------------------------
# Differences
# ---------------------------------------------------------------------------

def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_delta(a: str, b: str) -> str:
    """The changed lines of two (multi-line) texts, compactly."""
    al, bl = a.splitlines(), b.splitlines()
    if len(al) <= 1 and len(bl) <= 1:
        sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag != "equal":
                lo = max(0, i1 - 30)
                return (f"at char {i1}: …{a[lo:i2 + 30]!r}… != …{b[max(0, j1 - 30):j2 + 30]!r}…")
        return "(equal)"
    changes = [
        line[:2] + line[2:].strip()
        for line in difflib.ndiff(al, bl)
        if line.startswith(("- ", "+ "))
    ]
    joined = " | ".join(changes)
    return joined if len(joined) <= 400 else joined[:399] + "…"


def _walk(a: Any, b: Any, path: str, out: list[str], ctx: dict) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            label = str(key) if re.fullmatch(r"[\w ]+", str(key)) else qi(str(key))
            sub = f"{path}.{label}" if path else label
            if key not in b:
                out.append(f"{sub}: only in A")
            elif key not in a:
                out.append(f"{sub}: only in B")
            else:
                _walk(a[key], b[key], sub, out, ctx)
        return
    note = ""
    if path.endswith(".checksum") and ctx.get(path.rsplit(".", 1)[0]):
        note = " (definitions differ, checksums not comparable)"
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 80:
        out.append(f"{path}: {_text_delta(a, b)}{note}")
    else:
        out.append(f"{path}: {_short(a)} != {_short(b)}{note}")


def diff_snapshots(a: dict, b: dict) -> list[str]:
    """One readable line per difference between two snapshots (A = expected, B = actual)."""
    ctx = {}
    for name, ta in a.get("tables", {}).items():
        tb = b.get("tables", {}).get(name)
        if tb is not None and ta.get("create") != tb.get("create"):
            label = name if re.fullmatch(r"[\w ]+", name) else qi(name)
            ctx[f"tables.{label}"] = True
    out: list[str] = []
    _walk(a, b, "", out, ctx)
    return out
