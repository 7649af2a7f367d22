"""The fidelity corpus through tenangdb itself: every loss the dump tool would make is
refused by name, and everything else comes back identical for every compression, with
and without encryption."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from conftest import unique

from .compare import diff_snapshots, qi, snapshot

HERE = Path(__file__).parent
CORPUS = HERE / "corpus.sql"
HOSTILE_EVENT = HERE / "hostile_event_delimiter.sql"

# What the corpus holds that no SQL dump can carry; tenangdb must refuse, naming each.
EXPECTED_LOSSES = [
    "column `floats`.`f` (FLOAT) holds",
    "column `enums_sets`.`e_with_empty` holds",
    "column `enums_sets`.`e_hostile`: ENUM members with 4-byte characters",
    "column `enums_sets`.`s_hostile`: SET members with 4-byte characters",
    "column `emoji_meta`.`e`: ENUM members with 4-byte characters",
    "column `emoji_meta`.`c`: its DEFAULT has 4-byte characters",
    "table `sv_trx` uses transaction-precise system versioning",
    "sequence `seq_cycled` has cycled",
]

# Make the corpus carryable: change exactly the values/objects named above.
REPAIR = """
UPDATE floats SET f = CAST(CAST(f AS CHAR) AS FLOAT), fu = CAST(CAST(fu AS CHAR) AS FLOAT),
                  f72 = CAST(CAST(f72 AS CHAR) AS FLOAT);
UPDATE enums_sets SET e_with_empty = 'x' WHERE e_with_empty + 0 = 0;
DROP TABLE emoji_meta;
UPDATE enums_sets SET e_hostile = 'ü' WHERE e_hostile = '😀';
UPDATE enums_sets SET s_hostile = REPLACE(s_hostile, '😀', 'ü');
ALTER TABLE enums_sets MODIFY e_hostile ENUM('it''s', 'dq"', 'bt`', 'sp ace', 'ü', 'ñ', '1', '0'),
                       MODIFY s_hostile SET('it''s', 'ü', 'ñ', '');
DROP TABLE sv_trx;
DROP SEQUENCE seq_cycled;
CREATE SEQUENCE seq_cycled START WITH 1 MINVALUE 1 MAXVALUE 3 INCREMENT BY 1 NOCACHE CYCLE;
"""


def target_of(server) -> dict:
    params = {"user": server.user, "password": server.password}
    if server.socket:
        params["unix_socket"] = server.socket
    else:
        params.update(host=server.host, port=server.port)
    return params


def load(server, database: str, sql_file: Path) -> None:
    server.sql(f"CREATE DATABASE {qi(database)}")
    argv = ["mariadb", "--no-defaults", f"-u{server.user}", "--default-character-set=utf8mb4", database]
    argv[2:2] = [f"--socket={server.socket}"] if server.socket else [f"--host={server.host}",
                                                                      f"--port={server.port}"]
    with open(sql_file, "rb") as fh:
        done = subprocess.run(argv, stdin=fh, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()


@pytest.fixture(scope="module")
def corpus_db(server):
    name = unique("fid")
    load(server, name, CORPUS)
    yield name
    server.sql(f"DROP DATABASE IF EXISTS {qi(name)}")


def test_losses_are_refused_by_name(env, server, corpus_db):
    cfg = env.write_config({"backup": {"databases": [corpus_db]}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4, done.stderr
    assert f"cannot back up '{corpus_db}' without losing data, so no backup was made" in done.stderr
    for expected in EXPECTED_LOSSES:
        assert expected in done.stderr, expected
    assert not env.backups_of(corpus_db)


def test_event_that_hangs_the_dump_tool_fails_fast(env, server):
    name = unique("ev")
    load(server, name, HOSTILE_EVENT)
    try:
        cfg = env.write_config({"backup": {"databases": [name]}})
        started = time.monotonic()
        done = env.cli("backup", config=cfg, timeout=60)
        assert done.returncode == 4
        assert "event `ev_double_semicolon` contains ';;'" in done.stderr
        assert time.monotonic() - started < 30
    finally:
        server.sql(f"DROP DATABASE {qi(name)}")


@pytest.fixture(scope="module")
def carryable(server, corpus_db):
    """The corpus with the uncarryable items repaired, and its snapshot."""
    server.sql(REPAIR, corpus_db)
    return corpus_db, snapshot(target_of(server), corpus_db)


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "xz", "none"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_corpus_round_trips_identically(env, server, carryable, fmt, encrypted):
    source, before = carryable
    extra = {"backup": {"databases": [source], "compression": fmt}}
    if encrypted:
        extra["backup"]["encryption"] = {"enabled": True, "key_file": str(env.key())}
    cfg = env.write_config(extra)
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(source)
    target = unique("fidcopy")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    try:
        assert done.returncode == 0, done.stderr
        # The one trigger whose own SQL names the source database is reported, not rewritten.
        assert "trigger trg_qualified" in done.stderr
        after = snapshot(target_of(server), target)
        diffs = [d for d in diff_snapshots(before, after)
                 if not d.startswith("triggers.trg_qualified.action_statement")]
        assert diffs == [], "\n".join(diffs)
        assert snapshot(target_of(server), source) == before  # the source was not touched
    finally:
        server.sql(f"DROP DATABASE IF EXISTS {qi(target)}")
