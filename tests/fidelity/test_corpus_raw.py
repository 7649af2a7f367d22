"""What a raw mariadb-dump | mariadb round trip of the fidelity corpus loses.

Loads corpus.sql into `src` on a throwaway server, copies it to `dst` with
plain mariadb-dump using the best flags found, and compares snapshots.  Every
difference the raw tool cannot avoid is listed in KNOWN_LOSSES and has its own
strict xfail test naming it; anything else that differs fails
test_raw_copy_has_no_other_differences.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

from tenangdb.mysql.sandbox import start_sandbox

from .compare import diff_snapshots, qi, snapshot

HERE = Path(__file__).parent
CORPUS = HERE / "corpus.sql"
HOSTILE_EVENT = HERE / "hostile_event_delimiter.sql"

DUMP = shutil.which("mariadb-dump") or shutil.which("mysqldump")

BASE_FLAGS = [
    "--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
    "--default-character-set=utf8mb4",
]
# Best set found: --skip-add-locks (LOCK TABLES t WRITE breaks INSERTs into a
# table whose DEFAULT calls NEXTVAL of a sequence that is not locked) and
# --dump-history (keeps timestamp-versioned history).  --dump-history refuses
# transaction-precise tables, so those are dumped again without it.
# --complete-insert changes nothing: tables with invisible, generated or
# history columns get column lists anyway.
BEST_FLAGS = [*BASE_FLAGS, "--skip-add-locks", "--dump-history"]

# diff path pattern -> why raw mariadb-dump loses it (each has an xfail below)
KNOWN_LOSSES = {
    "database.collation": "no CREATE DATABASE without --databases",
    "database.comment": "no CREATE DATABASE without --databases",
    "tables.floats.*": "FLOAT is dumped with 6 significant digits",
    "tables.floats_nokey.*": "FLOAT is dumped with 6 significant digits",
    "tables.enums_sets.*": "ENUM error value vs '' member; 4-byte ENUM/SET members print as '?'",
    "tables.emoji_meta.*": "4-byte chars in ENUM members/DEFAULTs print as '?' in SHOW CREATE TABLE",
    "tables.sv_trx.*": "transaction-precise history cannot be dumped",
    "tables.seq_user.create": "DEFAULT nextval(`src`.`seq`) keeps the source database name",
    "sequences.seq_cycled.state.cycle_count": "SETVAL in the dump has no round argument",
    "routines.*.database_collation": "ALTER DATABASE `src` lines switch the source, not dst",
    "triggers.*.database_collation": "ALTER DATABASE `src` lines switch the source, not dst",
    "events.*.database_collation": "ALTER DATABASE `src` lines switch the source, not dst",
    "triggers.trg_qualified.action_statement": "trigger body names `src` explicitly",
}


def _load(box, database: str, sql_file: Path, *, create: bool = True) -> subprocess.CompletedProcess:
    if create:
        box.sql(f"DROP DATABASE IF EXISTS {qi(database)}; CREATE DATABASE {qi(database)}")
    with open(sql_file, "rb") as fh:
        return subprocess.run(box.client_argv(database), stdin=fh, capture_output=True, timeout=120)


def _dump(box, database: str, flags: list[str], out: Path, *tables: str, timeout: float = 60):
    argv = [DUMP, "--no-defaults", f"--socket={box.socket_path}", "-uroot", *flags, database, *tables]
    with open(out, "wb") as fh:
        return subprocess.run(argv, stdout=fh, stderr=subprocess.PIPE, timeout=timeout)


def _trx_precise_tables(box, database: str) -> list[str]:
    out = box.sql(
        "SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
        f"'{database}' AND GENERATION_EXPRESSION = 'ROW START' AND DATA_TYPE = 'bigint'"
    )
    return [line for line in out.splitlines() if line]


@pytest.fixture(scope="session")
def box():
    if DUMP is None:
        pytest.skip("mariadb-dump is not installed")
    sandbox = start_sandbox()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="session")
def src(box):
    res = _load(box, "src", CORPUS)
    assert res.returncode == 0, res.stderr.decode()
    return snapshot(box, "src")


@pytest.fixture(scope="session")
def raw_copy(box, src, tmp_path_factory):
    """Copy src -> dst with raw mariadb-dump (best flags); returns (snapshot, dump text)."""
    work = tmp_path_factory.mktemp("raw")
    trx = _trx_precise_tables(box, "src")
    main = work / "main.sql"
    res = _dump(box, "src", [*BEST_FLAGS, *(f"--ignore-table=src.{t}" for t in trx)], main)
    assert res.returncode == 0, res.stderr.decode()
    res = _load(box, "dst", main)
    assert res.returncode == 0, res.stderr.decode()
    if trx:
        extra = work / "trx_precise.sql"
        res = _dump(box, "src", [*BASE_FLAGS, "--skip-add-locks", "--skip-routines",
                                 "--skip-events"], extra, *trx)
        assert res.returncode == 0, res.stderr.decode()
        res = _load(box, "dst", extra, create=False)
        assert res.returncode == 0, res.stderr.decode()
    return snapshot(box, "dst"), main.read_text(encoding="utf-8", errors="replace")


def _unexplained(diffs: list[str]) -> list[str]:
    return [d for d in diffs
            if not any(fnmatch.fnmatchcase(d.split(": ", 1)[0], pat) for pat in KNOWN_LOSSES)]


# ---------------------------------------------------------------------------
# The corpus itself
# ---------------------------------------------------------------------------

def test_corpus_snapshot_is_non_trivial(box, src):
    assert len(src["tables"]) >= 30
    assert len(src["views"]) == 8
    assert len(src["sequences"]) == 6
    assert set(src["routines"]) == {
        "FUNCTION f_ansi", "FUNCTION f_double", "FUNCTION select", "PACKAGE pkg_util",
        "PACKAGE BODY pkg_util", "PROCEDURE proc `p` 'q' \"r\"",
    }
    assert len(src["triggers"]) == 7
    assert len(src["events"]) == 6
    assert src["tables"]["bulk"]["rows"] == 5000
    for name in ("sv_implicit", "sv_explicit", "sv_parted", "sv_trx"):
        assert src["tables"][name]["history"]["rows_history"] > 0, name
    assert src["triggers"]["trg_bi_first"]["action_order"] == 1
    assert src["events"]["ev_disabled"]["status"] == "DISABLED"
    assert src["sequences"]["seq_cached"]["state"]["next_not_cached_value"] == "240"
    assert src["database"]["collation"] == "utf8mb4_unicode_520_ci"


def test_snapshot_is_stable_and_read_only(box, src):
    assert diff_snapshots(src, snapshot(box, "src")) == []


# ---------------------------------------------------------------------------
# Raw round trip with the best flags
# ---------------------------------------------------------------------------

def test_raw_copy_has_no_other_differences(src, raw_copy):
    dst, _ = raw_copy
    assert _unexplained(diff_snapshots(src, dst)) == []


@pytest.mark.xfail(strict=True, reason="raw mariadb-dump loses the items in KNOWN_LOSSES")
def test_raw_copy_is_identical(src, raw_copy):
    assert diff_snapshots(src, raw_copy[0]) == []


@pytest.mark.xfail(strict=True, reason="FLOAT values are dumped with 6 significant digits "
                   "(3.4028234e38 -> 3.40282e38, 1.1754944e-38 -> 1.17549e-38)")
def test_float_precision(src, raw_copy):
    assert src["tables"]["floats"]["columns"]["f"] == raw_copy[0]["tables"]["floats"]["columns"]["f"]


def test_double_and_decimal_survive(src, raw_copy):
    for col in ("d", "d_prec", "f72"):
        assert src["tables"]["floats"]["columns"][col] == raw_copy[0]["tables"]["floats"]["columns"][col]
    assert src["tables"]["decimals"] == raw_copy[0]["tables"]["decimals"]


@pytest.mark.xfail(strict=True, reason="ENUM error value (index 0) is dumped as '' and reloads "
                   "as the real '' member (index 1)")
def test_enum_error_value_vs_empty_member(src, raw_copy):
    col = "e_with_empty"
    assert src["tables"]["enums_sets"]["columns"][col] == raw_copy[0]["tables"]["enums_sets"]["columns"][col]


@pytest.mark.xfail(strict=True, reason="SHOW CREATE TABLE prints 4-byte characters in ENUM/SET "
                   "members, DEFAULT literals and comments as '?'; values using them reload as ''")
def test_four_byte_chars_in_column_metadata(src, raw_copy):
    dst = raw_copy[0]["tables"]
    assert src["tables"]["emoji_meta"]["defaults"] == dst["emoji_meta"]["defaults"]
    assert src["tables"]["enums_sets"]["columns"]["e_hostile"] == dst["enums_sets"]["columns"]["e_hostile"]


@pytest.mark.xfail(strict=True, reason="--dump-history refuses transaction-precise (trx id) "
                   "system-versioned tables; their history is lost")
def test_transaction_precise_history(src, raw_copy):
    assert src["tables"]["sv_trx"]["history"] == raw_copy[0]["tables"]["sv_trx"]["history"]


def test_timestamp_history_survives_with_dump_history(src, raw_copy):
    for name in ("sv_implicit", "sv_explicit", "sv_parted"):
        assert src["tables"][name] == raw_copy[0]["tables"][name], name


@pytest.mark.xfail(strict=True, reason="the dump's DO SETVAL(seq, n, 0) has no round argument: "
                   "a sequence's cycle_count resets to 0")
def test_sequence_cycle_count(src, raw_copy):
    assert src["sequences"]["seq_cycled"] == raw_copy[0]["sequences"]["seq_cycled"]


def test_sequence_next_values_survive(src, raw_copy):
    for name, seq in src["sequences"].items():
        state = raw_copy[0]["sequences"][name]["state"]
        assert seq["state"]["next_not_cached_value"] == state["next_not_cached_value"], name


@pytest.mark.xfail(strict=True, reason="database charset/collation/comment only travel with "
                   "--databases, which hard-codes CREATE DATABASE/USE `src`")
def test_database_attributes(src, raw_copy):
    assert src["database"] == raw_copy[0]["database"]


@pytest.mark.xfail(strict=True, reason="routines/triggers/events keep their creation-time "
                   "database collation only via ALTER DATABASE `src` lines, which hit the "
                   "source name instead of dst")
def test_object_database_collation(src, raw_copy):
    dst = raw_copy[0]
    for kind in ("routines", "triggers", "events"):
        for name, obj in src[kind].items():
            assert obj["database_collation"] == dst[kind][name]["database_collation"], (kind, name)


@pytest.mark.xfail(strict=True, reason="SHOW CREATE TABLE writes DEFAULT nextval(`src`.`seq`): "
                   "the copy's default draws from the source database's sequence")
def test_sequence_default_names_source_database(src, raw_copy):
    assert src["tables"]["seq_user"]["create"] == raw_copy[0]["tables"]["seq_user"]["create"]


@pytest.mark.xfail(strict=True, reason="a trigger body that names `src` explicitly is copied "
                   "verbatim and writes into the source database")
def test_qualified_trigger_body(src, raw_copy):
    assert src["triggers"]["trg_qualified"] == raw_copy[0]["triggers"]["trg_qualified"]


def test_objects_that_survive(src, raw_copy):
    dst = raw_copy[0]
    assert src["views"] == dst["views"]
    for kind in ("routines", "triggers", "events"):
        strip = lambda objs: {n: {k: v for k, v in o.items() if k != "database_collation"}
                              for n, o in objs.items() if n != "trg_qualified"}
        assert strip(src[kind]) == strip(dst[kind]), kind
    for name in ("generated", "auto_inc", "myisam_t", "texts", "binaries", "temporal",
                 "geometries", "select", "we`ird \"name\"", "bulk"):
        assert src["tables"][name] == dst["tables"][name], name


# ---------------------------------------------------------------------------
# Where the dump names the source database outside row data
# ---------------------------------------------------------------------------

def test_dump_mentions_source_database(raw_copy):
    _, text = raw_copy
    shapes = set()
    for line in text.splitlines():
        if "src" not in line or line.startswith(("INSERT INTO", "(")):
            continue
        if line.startswith("ALTER DATABASE `src` CHARACTER SET "):
            shapes.add("ALTER DATABASE `src` CHARACTER SET <cs> COLLATE <coll> ;" +
                       (";" if line.endswith(";;") else ""))
        elif "nextval(`src`." in line:
            shapes.add("<column> DEFAULT nextval(`src`.`<seq>`)")
        elif "TRIGGER" in line and "`src`." in line:
            shapes.add("/*!50003 TRIGGER ... `src`.<table> ...")
        elif line.startswith("--"):
            shapes.add("-- comment")
        else:
            shapes.add(line)
    assert shapes == {
        "ALTER DATABASE `src` CHARACTER SET <cs> COLLATE <coll> ;",
        "ALTER DATABASE `src` CHARACTER SET <cs> COLLATE <coll> ;;",
        "<column> DEFAULT nextval(`src`.`<seq>`)",
        "/*!50003 TRIGGER ... `src`.<table> ...",
        "-- comment",
    }


# ---------------------------------------------------------------------------
# Raw-tool failures that make a round trip impossible without workarounds
# ---------------------------------------------------------------------------

def test_default_add_locks_breaks_nextval_default(box, src, tmp_path):
    out = tmp_path / "locks.sql"
    res = _dump(box, "src", [*BASE_FLAGS, "--ignore-table=src.sv_trx"], out)
    assert res.returncode == 0, res.stderr.decode()
    res = _load(box, "dst_locks", out)
    assert res.returncode != 0
    assert b"was not locked with LOCK TABLES" in res.stderr


def test_dump_history_refuses_transaction_precise_tables(box, src, tmp_path):
    out = tmp_path / "hist.sql"
    res = _dump(box, "src", BEST_FLAGS, out)
    assert res.returncode != 0
    assert b"Cannot use --dump-history for table `sv_trx` with transaction-precise history" in res.stderr
    # ... after having written part of the dump, which loads without error.
    assert out.stat().st_size > 0


def test_load_on_server_without_source_database_fails(box, src, tmp_path):
    """Restoring under a new name where `src` does not exist: ALTER DATABASE `src` fails."""
    res = _load(box, "src_gone", CORPUS)
    assert res.returncode == 0, res.stderr.decode()
    out = tmp_path / "gone.sql"
    res = _dump(box, "src_gone", [*BEST_FLAGS, "--ignore-table=src_gone.sv_trx"], out)
    assert res.returncode == 0, res.stderr.decode()
    box.sql("DROP DATABASE src_gone")
    res = _load(box, "dst_gone", out)
    assert res.returncode != 0
    assert b"Can't create/write to file './src_gone/db.opt'" in res.stderr


@pytest.mark.xfail(strict=True, raises=subprocess.TimeoutExpired,
                   reason="mariadb-dump --events spins (practically) forever on an event whose "
                   "text contains ';;' (create_delimiter() increments the wrong variable)")
def test_event_with_double_semicolon_dumps(box, tmp_path):
    res = _load(box, "ev_hostile", HOSTILE_EVENT)
    assert res.returncode == 0, res.stderr.decode()
    res = _dump(box, "ev_hostile", [*BASE_FLAGS], tmp_path / "ev.sql", timeout=5)
    assert res.returncode == 0
