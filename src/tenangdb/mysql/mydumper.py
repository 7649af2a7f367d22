"""The parallel engine: command lines for mydumper/myloader, what mydumper cannot carry,
and what we read back from its output folder.

Tested with Debian 12's mydumper/myloader 0.10.1 (which reports itself as 0.10.0; Debian has no
newer release, and this machine reaches no other source). That release loses or
mangles several kinds of objects (measured with the fidelity corpus, docs/fidelity.md):
it crashes or writes unusable files for identifiers that need quoting, drops the
sql_mode of triggers, routines and events (so ANSI_QUOTES bodies fail to load), treats
sequences as tables, loses system-versioned history and mangles INET4/INET6/UUID
values. `unsupported()` names every one of these before a dump, and the backup action
then uses the streaming engine for that database instead. Newer releases get the same
checks: we have not measured them, and a refusal costs only speed, never data.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from tenangdb.runner import run

ENGINE = "mydumper"
METADATA = "metadata"
FINISHED_MARKER = "Finished dump at"
# Names mydumper 0.10 writes into file names and SQL without trouble.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# Column types whose values 0.10 writes in a form that does not load back as the same value.
_MANGLED_TYPES = ("inet4", "inet6", "uuid")


@functools.lru_cache(maxsize=None)
def version(binary: str) -> tuple[int, ...]:
    status, out, err = run([binary, "--version"], timeout=20)
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", (out.decode(errors="replace") + err))
    if status != 0 or not match:
        return (0,)
    return tuple(int(part) for part in match.groups())


@functools.lru_cache(maxsize=None)
def _help(binary: str) -> str:
    status, out, err = run([binary, "--help"], timeout=20)
    return out.decode(errors="replace") + err if status == 0 else ""


def consistency_flags(binary: str) -> list[str]:
    """One transactional snapshot shared by all threads, by the flags this release has.

    Releases from 0.12 on replaced --trx-consistency-only with --trx-tables and a lock mode;
    we ask the binary rather than trusting its version string.
    """
    text = _help(binary)
    if "--trx-tables" in text and "--sync-thread-lock-mode" in text:
        return ["--sync-thread-lock-mode=AUTO", "--trx-tables"]
    return ["--trx-consistency-only"]


def dump_argv(binary: str, defaults_file: str, database: str, outdir: Path, *, threads: int,
              chunk_filesize: int, build_empty_files: bool) -> list[str]:
    argv = [
        binary, f"--defaults-file={defaults_file}",
        "--database", database,
        "--outputdir", str(outdir),
        "--threads", str(threads),
        "--chunk-filesize", str(chunk_filesize),  # bounded files: sealing overlaps the dump
        "--triggers", "--events", "--routines",
        "--verbose", "2",  # warnings and errors only; we read them for the defects below
        *consistency_flags(binary),
    ]
    if build_empty_files:
        argv.append("--build-empty-files")
    return argv


def load_argv(binary: str, defaults_file: str, folder: Path, *, source: str, target: str,
              threads: int) -> list[str]:
    return [
        binary, f"--defaults-file={defaults_file}",
        "--directory", str(folder),
        "--source-db", source,
        "--database", target,
        "--threads", str(threads),
        "--overwrite-tables",  # like the streaming restore: objects in the backup replace their namesakes
        "--verbose", "2",
    ]


def unsupported(conn, database: str, inventory, qualified_references: list[str]) -> list[str]:
    """What mydumper would lose or fail on in this database; empty when it can carry all of it."""
    reasons: list[str] = []
    if not _PLAIN_NAME.match(database):
        reasons.append("the database name needs quoting")
    odd = [n for n in [t["name"] for t in inventory.tables] + inventory.views if not _PLAIN_NAME.match(n)]
    if odd:
        reasons.append(f"{len(odd)} table or view name(s) need quoting (e.g. {odd[0]!r})")
    if inventory.sequences:
        reasons.append(f"{len(inventory.sequences)} sequence(s)")
    if inventory.system_versioned:
        reasons.append(f"{len(inventory.system_versioned)} system-versioned table(s)")
    if inventory.triggers:
        reasons.append(f"{len(inventory.triggers)} trigger(s) (their sql_mode would be lost)")
    if inventory.routines:
        reasons.append(f"{len(inventory.routines)} routine(s) (their sql_mode would be lost)")
    if inventory.events:
        reasons.append(f"{len(inventory.events)} event(s) (their sql_mode would be lost)")
    if qualified_references:
        reasons.append("objects that name the database in their own SQL")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA=%s AND LOWER(DATA_TYPE) IN (" + ",".join(["%s"] * len(_MANGLED_TYPES)) + ") "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION", (database, *_MANGLED_TYPES))
        mangled = cur.fetchall()
        cur.execute("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                    "AND COLUMN_NAME NOT REGEXP '^[A-Za-z0-9_]+$'", (database,))
        (odd_columns,) = cur.fetchone()
    if mangled:
        table, column, kind = mangled[0]
        reasons.append(f"{len(mangled)} column(s) of type INET4/INET6/UUID (e.g. `{table}`.`{column}` {kind})")
    if odd_columns:
        reasons.append(f"{odd_columns} column name(s) need quoting")
    return reasons


def expected_schema_files(database: str, inventory) -> set[str]:
    """The files a complete dump must hold: one schema file per table and view."""
    names = {f"{database}.{t['name']}-schema.sql" for t in inventory.tables}
    names |= {f"{database}.{view}-schema-view.sql" for view in inventory.views}
    return names


_CHUNK = re.compile(r"^(?P<table>[^.]+)(?:\.(?P<chunk>\d+))?$")


def inventory_gaps(database: str, objects: dict, plain_names: set[str], rows: dict[str, int]) -> list[str]:
    """What the manifest's inventory lists that the backup's files do not hold, one line each.

    mydumper writes `db.table-schema.sql` for each table, `db.view-schema-view.sql` for each view
    and the rows as `db.table.sql` or numbered chunks `db.table.00001.sql`, … (none for a table
    without rows unless --build-empty-files). `rows`: each table's row count, exact where the
    backup recorded one, else the server's estimate.
    """
    prefix = database + "."
    schemas: set[str] = set()
    chunks: dict[str, list[int]] = {}
    for name in plain_names:
        if not name.startswith(prefix) or not name.endswith(".sql"):
            continue
        rest = name[len(prefix):-4]
        if "-schema" in rest:
            schemas.add(rest)
            continue
        if match := _CHUNK.match(rest):
            chunks.setdefault(match.group("table"), []).append(int(match.group("chunk") or -1))
    gaps: list[str] = []
    for table in objects.get("tables") or []:
        name = table.get("name")
        if f"{name}-schema" not in schemas:
            gaps.append(f"table {name!r} has no schema file ({database}.{name}-schema.sql)")
            continue
        numbers = sorted(n for n in chunks.get(name, []) if n >= 0)
        if rows.get(name, 0) and name not in chunks:
            gaps.append(f"table {name!r} has {rows[name]} row(s) in the manifest but no data file")
        elif numbers and (numbers[-1] - numbers[0] + 1 != len(numbers) or numbers[0] > 1):
            absent = sorted(set(range(min(numbers[0], 1), numbers[-1] + 1)) - set(numbers))
            gaps.append(f"table {name!r} lacks data file {database}.{name}.{absent[0]:05d}.sql "
                        f"(its other chunks are there)")
        elif isinstance(table.get("data_files"), int) and len(chunks.get(name, [])) != table["data_files"]:
            # The last chunk leaves no gap in the numbering; the count made while dumping tells.
            gaps.append(f"table {name!r} has {len(chunks.get(name, []))} data file(s), {table['data_files']} "
                        "were written while dumping")
    for view in objects.get("views") or []:
        if f"{view}-schema-view" not in schemas:
            gaps.append(f"view {view!r} has no schema file ({database}.{view}-schema-view.sql)")
    return gaps


def data_files_per_table(plain_names, database: str) -> dict[str, int]:
    """How many data files (not schema files) each table has among `plain_names`."""
    prefix = database + "."
    counts: dict[str, int] = {}
    for name in plain_names:
        if name.startswith(prefix) and name.endswith(".sql") and "-schema" not in name[len(prefix):]:
            if match := _CHUNK.match(name[len(prefix):-4]):
                counts[match.group("table")] = counts.get(match.group("table"), 0) + 1
    return counts


def table_of(file_name: str, database: str) -> str | None:
    """The table a data or schema file belongs to (`db.table.sql`, `db.table.00001.sql`,
    `db.table-schema.sql`); None for the database's own files and the metadata."""
    prefix = database + "."
    if not file_name.startswith(prefix) or not file_name.endswith(".sql"):
        return None
    rest = file_name[len(prefix):-4]
    rest = rest.split("-schema", 1)[0]
    return rest.split(".", 1)[0] or None


def is_complete(metadata_text: str) -> bool:
    """mydumper writes the finish time into its metadata file last."""
    return FINISHED_MARKER in metadata_text


_LOG = re.compile(r"^\s*Log:\s*(\S+)", re.M)
_POS = re.compile(r"^\s*Pos:\s*(\d+)", re.M)
_GTID = re.compile(r"^\s*GTID:\s*(\S+)", re.M)


def binlog_coordinates(metadata_text: str) -> dict | None:
    # Only the server's own position (SHOW MASTER STATUS), not a replica's source position.
    section = metadata_text.split("SHOW SLAVE STATUS")[0]
    found: dict = {}
    if match := _LOG.search(section):
        found["file"] = match.group(1)
    if match := _POS.search(section):
        found["position"] = int(match.group(1))
    if match := _GTID.search(section):
        found["gtid"] = match.group(1)
    return found or None


# mydumper reports these and still exits 0; each means an object is missing from the dump.
_FATAL_LINES = re.compile(r"CRITICAL|Broken table detected|Error (dumping|restoring)|Could not", re.I)


def fatal_lines(stderr_text: str) -> list[str]:
    return [line.strip() for line in stderr_text.splitlines() if _FATAL_LINES.search(line)]
