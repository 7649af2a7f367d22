"""`restore --tables`: only the chosen tables (with their triggers), views and sequences of a
logical backup come back, identical, and nothing else is created or replaced."""

from __future__ import annotations

from datetime import datetime

import pytest

from conftest import made_database, unique
from fidelity.compare import qi
from fidelity.test_corpus_tenangdb import corpus_db  # noqa: F401 - the fixture: the corpus, loaded once for this module
from test_legacy import legacy_sql

TRIGGERS_OF_TRIG_TARGET = {"trg_bi", "trg_bi_first", "trg_bi_second", "trg `x` 'y' \"z\""}


def checksum(server, database: str, table: str) -> str:
    return server.sql(f"CHECKSUM TABLE {qi(database)}.{qi(table)} EXTENDED").split("\t")[-1].strip()


def objects(server, database: str) -> set[tuple[str, str]]:
    """Every object of a database: (kind, name)."""
    found = server.sql(
        "SELECT IF(TABLE_TYPE='VIEW','view',IF(TABLE_TYPE='SEQUENCE','sequence','table')), TABLE_NAME "
        f"FROM information_schema.TABLES WHERE TABLE_SCHEMA='{database}' "
        f"UNION ALL SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{database}' "
        f"UNION ALL SELECT 'routine', ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{database}' "
        f"UNION ALL SELECT 'event', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA='{database}'")
    return {tuple(line.split("\t", 1)) for line in found.splitlines() if line}


def exists(server, database: str) -> bool:
    return server.sql(f"SHOW DATABASES LIKE '{database}'").strip() == database


@pytest.fixture
def corpus_backup(env, corpus_db):
    cfg = env.write_config({"backup": {"databases": [corpus_db], "engine": "mysqldump"}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(corpus_db)
    return cfg, folder


@pytest.fixture
def target(server):
    name = unique("rt")
    yield name
    server.sql(f"DROP DATABASE IF EXISTS {qi(name)}")


def test_one_table_of_the_fidelity_corpus_comes_back_identical_with_its_triggers_and_nothing_else(
        env, server, corpus_db, corpus_backup, target):
    cfg, folder = corpus_backup
    weird = 'we`ird "name"'  # its trigger trg_ansi was made under ANSI_QUOTES
    done = env.cli("restore", "-b", str(folder), "--tables", f"trig_target,{weird}", "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    for table in ("trig_target", weird):
        assert checksum(server, target, table) == checksum(server, corpus_db, table), table
    assert objects(server, target) == {("table", "trig_target"), ("table", weird), ("trigger", "trg_ansi"),
                                       *(("trigger", name) for name in TRIGGERS_OF_TRIG_TARGET)}
    # The triggers work as they did: trg_bi_first, trg_bi and trg_bi_second in their order.
    for database in (corpus_db, target):
        server.sql("INSERT INTO trig_target (id, note, counter) VALUES (100, 'n', 3)", database)
    row = "SELECT * FROM trig_target WHERE id = 100"
    assert server.sql(row, target) == server.sql(row, corpus_db) and "31" in server.sql(row, target)
    assert "routines (" in done.stderr and "procedure proc `p` 'q' \"r\"" in done.stderr  # named as left out
    assert "trigger trg_qualified" not in done.stderr  # not restored, so not warned about


def test_a_view_over_tables_not_restored_is_named_and_the_new_target_dropped(env, server, corpus_backup, target):
    cfg, folder = corpus_backup
    done = env.cli("restore", "-b", str(folder), "--tables", "ints,v_base", "-d", target, config=cfg)
    assert done.returncode == 4
    assert "while creating view 'v_base'" in done.stderr and "generated" in done.stderr
    assert not exists(server, target)
    # With the table it reads, the view comes back.
    done = env.cli("restore", "-b", str(folder), "--tables", "generated,v_base", "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    assert objects(server, target) == {("table", "generated"), ("view", "v_base")}


def test_unknown_names_are_refused_before_anything_is_touched(env, server, corpus_backup, target):
    cfg, folder = corpus_backup
    done = env.cli("restore", "-b", str(folder), "--tables", "ints,no_such_table,f_double", "-d", target,
                   config=cfg)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: the backup holds no table, view or sequence named 'no_such_table', 'f_double' (it holds 35 "
        "tables, 8 views, 6 sequences: see `tenangdb list --json`)")
    assert "verified" not in done.stderr  # refused before reading the backup
    assert not exists(server, target)
    done = env.cli("restore", "-b", str(folder), "--tables", ",", "-d", target, config=cfg)
    assert done.returncode == 2 and "--tables" in done.stderr


@pytest.fixture
def shop(server):
    yield from made_database(server, "tshop", """
        CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20));
        INSERT INTO a SELECT seq, CONCAT('v', seq) FROM seq_1_to_3000;
        CREATE TABLE b (x INT);
        INSERT INTO b VALUES (1), (2);
        CREATE VIEW va AS SELECT id FROM a;
    """)


@pytest.mark.parametrize("engine", ["mysqldump", "mydumper"])
def test_only_the_chosen_tables_are_replaced_in_a_target_with_others(env, server, shop, target, engine,
                                                                     needs_mydumper):
    cfg = env.write_config({"backup": {"databases": [shop], "engine": engine}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(shop)
    server.sql(f"CREATE DATABASE {qi(target)}; USE {qi(target)}; CREATE TABLE mine (m INT); "
               "INSERT INTO mine VALUES (7); CREATE TABLE b (changed INT)")
    done = env.cli("restore", "-b", str(folder), "--tables", "a,va", "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr  # neither a nor va was there: nothing to ask
    assert checksum(server, target, "a") == checksum(server, shop, "a")
    assert objects(server, target) == {("table", "a"), ("view", "va"), ("table", "mine"), ("table", "b")}
    assert server.sql("SELECT m FROM mine", target).strip() == "7"
    assert server.sql("SHOW COLUMNS FROM b", target).startswith("changed")  # not the backup's b
    # b is there: replacing it needs a yes.
    done = env.cli("restore", "-b", str(folder), "--tables", "b", "-d", target, config=cfg)
    assert done.returncode == 4
    assert f"database '{target}' already holds 'b'; restore cancelled" in done.stderr
    done = env.cli("restore", "-b", str(folder), "--tables", "b", "-d", target, "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert checksum(server, target, "b") == checksum(server, shop, "b")
    assert server.sql("SELECT m FROM mine", target).strip() == "7"


def test_mydumper_restores_one_table_into_a_new_target_and_creates_nothing_else(env, server, shop, target,
                                                                               needs_mydumper):
    cfg = env.write_config({"backup": {"databases": [shop], "engine": "mydumper"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(shop)
    done = env.cli("restore", "-b", str(folder), "--tables", "b", "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    assert objects(server, target) == {("table", "b")}
    assert checksum(server, target, "b") == checksum(server, shop, "b")


def test_a_legacy_backup_cannot_give_single_tables(env, server, shop, target):
    path = legacy_sql(env, server, shop, datetime.now())
    cfg = env.write_config()
    done = env.cli("restore", "-b", str(path), "--tables", "a", "-d", target, config=cfg)
    assert done.returncode == 2
    assert "--tables needs a backup that records its tables" in done.stderr
    assert not exists(server, target)
