"""The engine registry and what each engine declares, without a server: which engine a config
picks, which one reads a manifest, how commits are held and what the account needs."""

from __future__ import annotations

import pytest

from tenangdb.config.schema import Settings
from tenangdb.errors import ConfigError, ToolMissing, VerifyFailed
from tenangdb.mysql import engines, grants
from tenangdb.mysql.alignment import BLOCK_COMMIT, FTWRL
from tenangdb.mysql.inventory import ServerInfo
from tenangdb.repository.manifest import Engine, Manifest


def settings(engine: str = "auto", **mydumper) -> Settings:
    return Settings.model_validate({"backup": {"engine": engine}, "database": {"mydumper": mydumper}})


def test_every_engine_is_registered_under_its_manifest_name():
    assert set(engines.ENGINES) == {"mysqldump", "mydumper", "mariabackup"}
    for name, engine in engines.ENGINES.items():
        assert engine.name == name and engine.label
        if engine.fallback is not None:
            assert engine.fallback in engines.ENGINES and engines.ENGINES[engine.fallback].fallback is None
    assert engines.DEFAULT in engines.ENGINES


def test_the_named_engine_is_chosen():
    assert engines.choose(settings("mysqldump")).name == "mysqldump"


def test_a_disabled_mydumper_named_explicitly_is_a_configuration_error():
    with pytest.raises(ConfigError, match="database.mydumper.enabled is false"):
        engines.choose(settings("mydumper", enabled=False))


def test_auto_takes_the_streaming_engine_when_mydumper_is_disabled():
    assert engines.choose(settings("auto", enabled=False)).name == "mysqldump"


def test_auto_stops_on_a_mydumper_path_that_is_not_there(tmp_path):
    with pytest.raises(ToolMissing):
        engines.choose(settings("auto", binary_path=str(tmp_path / "no-mydumper")))


def test_a_manifest_from_an_unknown_engine_is_refused_by_name():
    with pytest.raises(VerifyFailed, match="'physical' engine, which this version cannot read"):
        engines.for_manifest(_made_by("physical"), Settings().database)
    assert engines.for_manifest(_made_by("mydumper"), Settings().database).loads_from_folder


def _made_by(engine: str) -> Manifest:
    return Manifest.model_construct(engine=Engine(name=engine))


@pytest.mark.parametrize(("flavour", "version", "mode"), [
    ("mariadb", "10.11.6-MariaDB", BLOCK_COMMIT), ("mariadb", "10.4.1-MariaDB", BLOCK_COMMIT),
    ("mariadb", "10.3.39-MariaDB", FTWRL), ("mysql", "8.0.36", FTWRL)])
def test_commits_are_held_the_way_each_server_allows(flavour, version, mode):
    server = ServerInfo(version=version, flavour=flavour, log_bin=False, can_read_binlog_position=False)
    dcfg = Settings().database
    assert engines.by_name("mysqldump", dcfg).alignment_mode(server) == mode
    assert engines.by_name("mydumper", dcfg).alignment_mode(server) == FTWRL  # it takes FTWRL itself


def test_reload_is_required_by_mydumper_and_optional_for_the_streaming_dump():
    def reload(engine):
        return [n.required for n in grants.requirements(engine, "mariadb", "10.11.6", binlog=False)
                if n.privilege == "RELOAD"]
    assert reload("mydumper") == [True]
    assert reload("mysqldump") == [False]


def test_the_physical_engine_needs_global_privileges_only_and_no_dump_grants():
    needs = grants.requirements("mariabackup", "mariadb", "10.11.6", binlog=True)
    assert {n.privilege for n in needs if n.required} == {"RELOAD", "PROCESS", "LOCK TABLES", "BINLOG MONITOR"}
    assert all(n.scope == "global" for n in needs)
    older = grants.requirements("mariabackup", "mariadb", "10.4.30", binlog=True)
    assert "REPLICATION CLIENT" in {n.privilege for n in older} and "BINLOG MONITOR" not in {n.privilege for n in older}


def test_the_physical_engine_is_chosen_by_name_and_never_by_auto():
    assert engines.choose(settings("mariabackup")).whole_instance
    assert not engines.choose(settings("auto", enabled=False)).whole_instance
