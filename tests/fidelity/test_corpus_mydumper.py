"""The fidelity corpus through the mydumper engine.

mydumper 0.10 cannot carry everything in the corpus; for such a database tenangdb must say
why and use the streaming engine, still giving an identical copy. With what mydumper can
carry left in the corpus, mydumper itself must make an identical copy.
"""

from __future__ import annotations

import json

import pytest

from conftest import unique

from .compare import diff_snapshots, qi, snapshot
from .test_corpus_tenangdb import CORPUS, STREAMING_ONLY_REPAIR, REPAIR, load, target_of

pytestmark = pytest.mark.usefixtures("needs_mydumper")

# Every kind of object mydumper.unsupported() names, removed from the corpus: what is left
# is what the engine claims to carry.
ONLY_WHAT_MYDUMPER_CARRIES = r"""
DROP TABLE `select`, `we``ird "name"`, `tábla ünïcödé 表`, `a.b/c\d`, sv_implicit, sv_explicit, sv_parted,
           seq_user, net_ids;
DROP VIEW `view "v" 'w' ``x```, `select view`, v_history, v_func, v_qualified;
DROP SEQUENCE seq_plain, seq_cached, `seq "s" ``t```, seq_setval, seq_cycled, seq_default;
DROP FUNCTION `select`; DROP FUNCTION f_ansi; DROP FUNCTION f_double;
DROP PROCEDURE `proc ``p`` 'q' "r"`;
DROP TRIGGER trg_bi; DROP TRIGGER trg_bi_first; DROP TRIGGER trg_bi_second; DROP TRIGGER trg_qualified;
DROP TRIGGER `trg ``x`` 'y' "z"`;
DROP EVENT `ev ``e`` 'f' "g"`; DROP EVENT ev_ansi; DROP EVENT ev_at; DROP EVENT ev_disabled;
DROP EVENT ev_quarter; DROP EVENT ev_tz;
SET sql_mode = ORACLE;
DROP PACKAGE BODY pkg_util;
DROP PACKAGE pkg_util;
"""

FALLBACK_REASONS = ["table or view name(s) need quoting", "sequence(s)", "system-versioned table(s)",
                    "trigger(s)", "routine(s)", "event(s)", "INET4/INET6/UUID"]


@pytest.fixture(scope="module")
def repaired_corpus(server):
    name = unique("fidmd")
    load(server, name, CORPUS)
    server.sql(REPAIR, name)
    yield name, snapshot(target_of(server), name)
    server.sql(f"DROP DATABASE IF EXISTS {qi(name)}")


@pytest.fixture(scope="module")
def plain_corpus(server):
    name = unique("fidplain")
    load(server, name, CORPUS)
    server.sql(REPAIR, name)
    server.sql(STREAMING_ONLY_REPAIR, name)
    server.sql(ONLY_WHAT_MYDUMPER_CARRIES, name)
    yield name, snapshot(target_of(server), name)
    server.sql(f"DROP DATABASE IF EXISTS {qi(name)}")


def _round_trip(env, server, source: str, before: dict, extra: dict) -> dict:
    cfg = env.write_config(extra)
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    backup_stderr = done.stderr
    [folder] = env.backups_of(source)
    manifest = json.loads((folder / "manifest.json").read_text())
    target = unique("fidmdcopy")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    try:
        assert done.returncode == 0, done.stderr
        diffs = [d for d in diff_snapshots(before, snapshot(target_of(server), target))
                 if not d.startswith("triggers.trg_qualified.action_statement")]
        assert diffs == [], "\n".join(diffs)
        assert snapshot(target_of(server), source) == before
    finally:
        server.sql(f"DROP DATABASE IF EXISTS {qi(target)}")
    manifest["_backup_stderr"] = backup_stderr
    return manifest


def test_what_mydumper_cannot_carry_falls_back_to_streaming(env, server, repaired_corpus):
    source, before = repaired_corpus
    manifest = _round_trip(env, server, source, before,
                           {"backup": {"databases": [source], "engine": "mydumper"}})
    assert "cannot carry everything in this database" in manifest["_backup_stderr"]
    for reason in FALLBACK_REASONS:
        assert reason in manifest["_backup_stderr"], reason
    assert manifest["engine"]["name"] == "mysqldump"
    assert "cannot carry" in manifest["engine"]["fallback_reason"]


@pytest.mark.parametrize("fmt,encrypted", [("zstd", True), ("none", False)])
def test_mydumper_carries_the_rest_identically(env, server, plain_corpus, fmt, encrypted):
    source, before = plain_corpus
    extra = {"backup": {"databases": [source], "engine": "mydumper", "compression": fmt},
             "database": dict(server.config_section(), mydumper={"threads": 2, "chunk_filesize": 1})}
    if encrypted:
        extra["backup"]["encryption"] = {"enabled": True, "key_file": str(env.key())}
    manifest = _round_trip(env, server, source, before, extra)
    assert manifest["engine"]["name"] == "mydumper" and "fallback_reason" not in manifest["engine"]
    assert len(manifest["files"]) > 20 and all(f["kind"] == "mydumper" for f in manifest["files"])
