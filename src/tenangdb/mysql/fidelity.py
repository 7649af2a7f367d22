"""What the streaming engine cannot carry, found before the dump instead of after a restore.

mariadb-dump loses a few things silently (measured on the fidelity corpus in
tests/fidelity). For each we either compensate elsewhere (restore rewrites the
database name, the manifest records the database's attributes) or name it here as a
`Loss`. A loss never stops the backup — an operator without any copy is worse off than
one with a copy that lacks one value — but it is recorded in the manifest and shown
wherever the backup is (docs/fidelity.md); `backup.fidelity: strict` counts it as a failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tenangdb.mysql.connection import quote_identifier as qi
from tenangdb.repository.manifest import describe_loss


@dataclass(frozen=True)
class Loss:
    """Something a backup does not hold exactly. `object` names it the way the server does
    (`column `t`.`c``, `table `t``, `sequence `s``, `event `e``), `lost` says what of it a
    restore will not bring back, `why` the reason."""

    object: str
    lost: str
    why: str

    def as_manifest(self) -> dict[str, str]:
        return {"object": self.object, "lost": self.lost, "why": self.why}

    def __str__(self) -> str:
        return describe_loss(self.as_manifest())


_NAMED = re.compile(r"^(?:column|table) `((?:[^`]|``)+)`")


def tables_named(losses: list[dict]) -> set[str]:
    """The tables whose rows a recorded loss changes (its object is a column or a table)."""
    out = set()
    for loss in losses:
        if match := _NAMED.match(str(loss.get("object", ""))):
            out.add(match.group(1).replace("``", "`"))
    return out


@dataclass
class Preflight:
    losses: list[Loss] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Dump without these, which would hang or refuse the whole dump; each costs the losses above.
    skip_events: bool = False
    skip_history: bool = False
    # Objects whose own SQL names the database; they keep pointing at it after a
    # restore under another name, so restore warns about them.
    qualified_references: list[str] = field(default_factory=list)
    comment: str = ""
    # ENUM columns with a '' member (table -> columns), and how many error values each holds.
    enum_empty: dict[str, list[str]] = field(default_factory=dict)
    enum_errors: dict[str, dict[str, int]] = field(default_factory=dict)
    # Sequences that have cycled: name -> cycle count.
    cycled: dict[str, int] = field(default_factory=dict)
    # Tables with FLOAT columns, and per column whether the dump would print any value rounded.
    floats: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def lossy_floats(self) -> dict[str, dict[str, int]]:
        return {t: {c: n for c, n in cols.items() if n} for t, cols in self.floats.items() if any(cols.values())}


def enum_members(column_type: str) -> list[str]:
    """Members of `enum('a','it''s',...)` / `set(...)` as the server prints them."""
    body = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    members, i = [], 0
    while i < len(body):
        if body[i] != "'":
            i += 1
            continue
        j, value = i + 1, []
        while j < len(body):
            if body[j] == "'" and j + 1 < len(body) and body[j + 1] == "'":
                value.append("'")
                j += 2
            elif body[j] == "'":
                break
            else:
                value.append(body[j])
                j += 1
        members.append("".join(value))
        i = j + 1
    return members


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _unquote_default(literal: str) -> str | None:
    if len(literal) >= 2 and literal[0] == "'" and literal[-1] == "'":
        return literal[1:-1].replace("''", "'").replace("\\\\", "\\")
    return None


def _real_members(cur, database: str, table: str, column: str, kind: str, count: int) -> list[str] | None:
    """The members as the server stores them, read back through a private temporary copy of
    the table, since every printed definition shows '?' for 4-byte characters."""
    # Session-private, so it is invisible to others and gone with the connection.
    probe = f"{qi(database)}.`_tenangdb_probe`"
    numbers = list(range(1, count + 1)) if kind == "enum" else [1 << i for i in range(count)]
    cur.execute("SET @tenangdb_saved_mode = @@SESSION.sql_mode, SESSION sql_mode = ''")
    try:
        cur.execute(f"CREATE TEMPORARY TABLE {probe} LIKE {qi(database)}.{qi(table)}")
    except Exception:  # noqa: BLE001 - e.g. no privilege: the caller says it could not check
        cur.execute("SET SESSION sql_mode = @tenangdb_saved_mode")
        return None
    members = []
    try:
        for number in numbers:
            cur.execute(f"INSERT INTO {probe} ({qi(column)}) VALUES ({int(number)})")  # no %-formatting
            cur.execute(f"SELECT {qi(column)} FROM {probe}")
            members.append(cur.fetchone()[0])
            cur.execute(f"DELETE FROM {probe}")
        return members
    except Exception:  # noqa: BLE001 - a constraint of the copy refused the probe row
        return None
    finally:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {probe}")
        cur.execute("SET SESSION sql_mode = @tenangdb_saved_mode")


def lossy_float_count(cur, database: str, table: str, column: str) -> int:
    """How many values of a FLOAT column the dump prints with too few digits."""
    cur.execute(f"SELECT COUNT(*) FROM {qi(database)}.{qi(table)} "
                f"WHERE {qi(column)} <> CAST(CAST({qi(column)} AS CHAR) AS FLOAT)")
    return int(cur.fetchone()[0])


def cycle_count(cur, database: str, sequence: str) -> int:
    cur.execute(f"SELECT cycle_count FROM {qi(database)}.{qi(sequence)}")
    return int(cur.fetchone()[0] or 0)


def check(conn, database: str) -> Preflight:
    found = Preflight()
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (database,))
        row = cur.fetchone()
        found.comment = (row[0] if row else "") or ""

        # mariadb-dump (and mysqldump) pick an event delimiter in a loop that never
        # advances when the event's text contains ';;': the dump would never end. It cannot
        # leave out one event, so the dump leaves out all of this database's events.
        cur.execute("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA=%s AND "
                    "CONCAT_WS(' ', EVENT_NAME, DEFINER, EVENT_COMMENT, EVENT_DEFINITION) LIKE %s "
                    "ORDER BY EVENT_NAME", (database, "%;;%"))
        hanging = [name for (name,) in cur.fetchall()]
        if hanging:
            found.skip_events = True
            cur.execute("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA=%s "
                        "ORDER BY EVENT_NAME", (database,))
            culprit = f"event {qi(hanging[0])}" + (f" and {len(hanging) - 1} more" if len(hanging) > 1 else "")
            for (name,) in cur.fetchall():
                why = ("its text contains ';;', on which mariadb-dump never finishes, so the dump leaves out "
                       "this database's events" if name in hanging else
                       f"the dump leaves out this database's events because {culprit} contains ';;', on which "
                       "mariadb-dump never finishes")
                found.losses.append(Loss(f"event {qi(name)}", "the whole event (recreate it after a restore)", why))

        cur.execute("SELECT DISTINCT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                    "AND GENERATION_EXPRESSION='ROW START' AND DATA_TYPE='bigint' ORDER BY TABLE_NAME", (database,))
        precise = [table for (table,) in cur.fetchall()]
        for table in precise:
            found.losses.append(Loss(f"table {qi(table)}", "its history (the current rows are kept)",
                                     "it uses transaction-precise system versioning, whose history mariadb-dump "
                                     "cannot dump"))
        if precise:
            # --dump-history refuses the whole dump when one such table exists, so the history
            # of the timestamp-versioned tables beside it is lost too.
            found.skip_history = True
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                        "AND TABLE_TYPE='SYSTEM VERSIONED' ORDER BY TABLE_NAME", (database,))
            for (table,) in cur.fetchall():
                if table not in precise:
                    found.losses.append(Loss(
                        f"table {qi(table)}", "its history (the current rows are kept)",
                        f"mariadb-dump --dump-history refuses a database that also holds a table with "
                        f"transaction-precise history (table {qi(precise[0])}), so the dump has no history"))

        cur.execute("SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COLUMN_DEFAULT, COLUMN_COMMENT "
                    "FROM information_schema.COLUMNS c JOIN information_schema.TABLES t USING "
                    "(TABLE_SCHEMA, TABLE_NAME) WHERE TABLE_SCHEMA=%s AND t.TABLE_TYPE <> 'VIEW' "
                    "ORDER BY TABLE_NAME, ORDINAL_POSITION", (database,))
        columns = cur.fetchall()
        where = f"{qi(database)}."
        for table, column, data_type, column_type, default, comment in columns:
            ref = f"{qi(table)}.{qi(column)}"
            if data_type == "float":
                # The text protocol prints FLOAT with 6 significant digits; values that need
                # more come back changed unless the dump is given their exact digits
                # (mysql/exact.py). Counted here so a backup that cannot do that says how
                # much it lost.
                # Whether any value needs it (the first such row ends the scan); how many is counted
                # only when a loss has to say so (lossy_float_count).
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {where}{qi(table)} "
                            f"WHERE {qi(column)} <> CAST(CAST({qi(column)} AS CHAR) AS FLOAT))")
                found.floats.setdefault(table, {})[column] = int(cur.fetchone()[0])
            if data_type in ("enum", "set"):
                members = enum_members(column_type)
                if data_type == "enum" and "" in members:
                    # The dump writes an error value (index 0) and the '' member alike; the
                    # streaming engine writes the error values as 0 where it can (mysql/exact.py).
                    found.enum_empty.setdefault(table, []).append(column)
                    cur.execute(f"SELECT COUNT(*) FROM {where}{qi(table)} WHERE {qi(column)} + 0 = 0")
                    if invalid := cur.fetchone()[0]:
                        found.enum_errors.setdefault(table, {})[column] = invalid
                if "?" in "".join(members):
                    real = _real_members(cur, database, table, column, data_type, len(members))
                    if real is None:
                        found.warnings.append(f"column {ref}: could not check whether its {data_type.upper()} "
                                              "members print correctly (needs CREATE TEMPORARY TABLES)")
                    elif real != members:
                        found.losses.append(Loss(f"column {ref}", f"its {data_type.upper()} members with 4-byte "
                                                 "characters (they restore as '?', and so do the values that use "
                                                 "them)", "the server prints them as '?' in every table "
                                                 "definition"))
            if default is not None and "?" in default and (literal := _unquote_default(default)) is not None:
                cur.execute(f"SELECT DEFAULT({qi(column)}) FROM (SELECT 1) AS one "
                            f"LEFT JOIN {where}{qi(table)} ON 0")
                actual = cur.fetchone()[0]
                if actual is not None and str(actual) != literal:
                    found.losses.append(Loss(f"column {ref}", "the 4-byte characters of its DEFAULT, which "
                                             "restore as '?'", "the server prints them as '?' in every table "
                                             "definition"))
            if comment and "?" in comment:
                found.warnings.append(f"comment of column {ref} shows '?', which may stand for 4-byte "
                                      "characters the server cannot print in a table definition")

        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                    "AND TABLE_TYPE='SEQUENCE'", (database,))
        for (sequence,) in cur.fetchall():
            # The dump's SETVAL carries the next value but not the cycle count; the streaming
            # engine adds it (mysql/exact.py, Rewriter).
            if cycles := cycle_count(cur, database, sequence):
                found.cycled[sequence] = cycles

        # Both `shop`.t and shop.t; LIKE wildcards in the name are escaped.
        needles = [f"%{_like(qi(database))}.%", f"%{_like(database)}.%"]
        cur.execute("SELECT CONCAT('trigger ', TRIGGER_NAME) FROM information_schema.TRIGGERS "
                    "WHERE TRIGGER_SCHEMA=%s AND (ACTION_STATEMENT LIKE %s OR ACTION_STATEMENT LIKE %s) "
                    "UNION SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME) FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA=%s AND (ROUTINE_DEFINITION LIKE %s OR ROUTINE_DEFINITION LIKE %s) "
                    "UNION SELECT CONCAT('event ', EVENT_NAME) FROM information_schema.EVENTS "
                    "WHERE EVENT_SCHEMA=%s AND (EVENT_DEFINITION LIKE %s OR EVENT_DEFINITION LIKE %s)",
                    (database, *needles) * 3)
        found.qualified_references = [row[0] for row in cur.fetchall()]
    return found
