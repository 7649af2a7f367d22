"""SHOW GRANTS parsing, what each engine needs, the check of one against the other and the
least-privilege GRANT statements: pure functions, no server."""

from __future__ import annotations

import pytest

from tenangdb.mysql import grants


def test_parse_grants_and_find_excess():
    lines = [
        "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
        "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION",
        "GRANT SELECT, INSERT (`a`, `b`), SHOW VIEW ON `shop\\_eu`.* TO `bk`@`%`",
        "GRANT SUPER, REPLICATION CLIENT ON *.* TO `bk`@`%`",
        "GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `bk`@`%`",
        "GRANT `backup_role` TO `bk`@`%`",
    ]
    parsed, roles = grants.parse_grants(lines)
    assert roles == ["backup_role"]
    assert parsed[0].privileges == {"ALL PRIVILEGES"} and parsed[0].grant_option and parsed[0].database is None
    assert parsed[1].privileges == {"SELECT", "INSERT", "SHOW VIEW"} and parsed[1].database == "shop\\_eu"
    assert "BINLOG MONITOR" in parsed[2].privileges  # REPLICATION CLIENT is its old name
    assert parsed[3].routine
    needs = grants.requirements("mysqldump", "mariadb", "10.11.6-MariaDB", binlog=True)
    report = grants.check(parsed[1:], roles, needs, ["shop_eu", "shopXeu"], user="bk", host="%")
    missing = {(n.privilege, w) for n, w in report.missing}
    # The escaped pattern matches shop_eu only, not shopXeu.
    assert ("SHOW VIEW", "`shop_eu`.*") not in missing and ("SHOW VIEW", "`shopXeu`.*") in missing
    assert ("TRIGGER", "`shop_eu`.*") in missing and ("RELOAD", "*.*") in missing
    assert any(item.startswith("SUPER") for item in report.excess)
    assert any(item.startswith("INSERT") for item in report.excess)
    everything = grants.check(parsed[:1], [], needs, ["all"], user="root", host="localhost")
    assert not everything.missing and "ALL PRIVILEGES on *.*" in everything.excess
    assert "GRANT OPTION on *.*" in everything.excess


def test_requirements_follow_the_engine_and_server():
    def names(*args, **kw):
        return {n.privilege for n in grants.requirements(*args, **kw)}
    assert "SHOW CREATE ROUTINE" in names("mysqldump", "mariadb", "11.4.2-MariaDB", binlog=False)
    assert "SHOW_ROUTINE" in names("mysqldump", "mysql", "8.0.36", binlog=False)
    assert "PROCESS" in names("mysqldump", "mysql", "8.0.36", binlog=False)
    assert "REPLICATION CLIENT" in names("mysqldump", "mariadb", "10.4.30-MariaDB", binlog=True)
    assert {"RELOAD", "BINLOG MONITOR"} <= names("mysqldump", "mariadb", "10.11.6-MariaDB", binlog=True)
    assert not {"LOCK TABLES", "SUPER"} & names("mysqldump", "mariadb", "10.11.6-MariaDB", binlog=False)
    # RELOAD holds commits while the snapshots open: asked for, but a backup goes on without it.
    [reload] = [n for n in grants.requirements("mysqldump", "mariadb", "10.11.6-MariaDB", binlog=False)
                if n.privilege == "RELOAD"]
    assert reload.required is False and "BLOCK_COMMIT" in reload.why
    assert {"RELOAD", "BACKUP_ADMIN"} <= names("mydumper", "mysql", "8.0.36", binlog=False)
    mydumper = grants.requirements("mydumper", "mariadb", "10.11.6", binlog=False)
    assert [n.required for n in mydumper if n.privilege == "RELOAD"] == [True]
    assert "PROCESS" not in {n.privilege for n in mydumper} and "SHOW VIEW" in {n.privilege for n in mydumper}
    statements = grants.least_privilege_statements(
        grants.requirements("mysqldump", "mariadb", "10.11.6", binlog=True), ["a_b", "c"], "o'k", "%")
    assert statements[0] == "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `a\\_b`.* TO 'o''k'@'%';"
    assert "GRANT RELOAD, BINLOG MONITOR ON *.* TO 'o''k'@'%';" in statements
    assert "GRANT SELECT ON `mysql`.`proc` TO 'o''k'@'%';" in statements
    assert grants.least_privilege_statements(grants.requirements("mysqldump", "mariadb", "10.11.6", binlog=True),
                                             ["all"], "u", "h") == [
        "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, RELOAD, BINLOG MONITOR ON *.* TO 'u'@'h';"]


def test_quoted_names_and_wildcards_parse_as_the_server_means_them():
    parsed, roles = grants.parse_grants([
        "GRANT SELECT ON `we``ird`.`t``1` TO 'bk'@'%'",
        "GRANT SELECT, SHOW VIEW ON 'quoted'.* TO 'bk'@'%'",
        "GRANT USAGE ON *.* TO `bk`@`%` IDENTIFIED BY PASSWORD '*hash'",
        "GRANT PROXY ON 'a'@'%' TO 'bk'@'%'",
        "GRANT ALL ON `app%`.* TO `bk`@`%`",
        "not a grant at all",
    ])
    assert roles == []
    assert [(g.database, g.table) for g in parsed] == [("we`ird", "t`1"), ("quoted", None), (None, None),
                                                        ("app%", None)]
    assert parsed[2].privileges == {"USAGE"} and not parsed[2].grant_option
    assert parsed[3].privileges == {"ALL PRIVILEGES"}  # ALL is its short name


def test_a_database_wildcard_grant_covers_the_databases_it_matches():
    parsed, _ = grants.parse_grants(["GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `app%`.* TO `bk`@`%`",
                                     "GRANT SELECT ON `mysql`.`proc` TO `bk`@`%`"])
    needs = [n for n in grants.requirements("mysqldump", "mariadb", "10.11.6", binlog=False) if n.required]
    assert not grants.check(parsed, [], needs, ["app_eu", "app"], user="bk", host="%").missing
    report = grants.check(parsed, [], needs, ["shop"], user="bk", host="%")
    assert {(n.privilege, where) for n, where in report.missing} == {
        ("SELECT", "`shop`.*"), ("SHOW VIEW", "`shop`.*"), ("TRIGGER", "`shop`.*"), ("EVENT", "`shop`.*")}
    # Every database: only a global grant will do.
    every = grants.check(parsed, [], needs, ["all"], user="bk", host="%")
    assert ("SELECT", "*.*") in {(n.privilege, where) for n, where in every.missing}
    assert not every.excess


def test_a_table_grant_or_a_routine_grant_does_not_cover_the_database():
    parsed, _ = grants.parse_grants(["GRANT SELECT ON `shop`.`t` TO `bk`@`%`",
                                     "GRANT EXECUTE, SELECT ON FUNCTION `shop`.`f` TO `bk`@`%`"])
    needs = [grants.Need("SELECT", "database", "read the tables")]
    report = grants.check(parsed, [], needs, ["shop"], user="bk", host="%")
    assert [(n.privilege, where) for n, where in report.missing] == [("SELECT", "`shop`.*")]


def test_missing_needs_split_into_required_and_optional():
    needs = grants.requirements("mysqldump", "mariadb", "10.11.6", binlog=True)
    report = grants.check([], ["backup_role"], needs, ["shop"], user="bk", host="%")
    assert report.roles == ["backup_role"]
    optional = {n.privilege for n, _ in report.missing_optional}
    assert optional == {"RELOAD", "BINLOG MONITOR"}
    assert {n.privilege for n, _ in report.missing_required} >= {"SELECT", "SHOW VIEW", "TRIGGER", "EVENT"}
    assert ("SELECT", "mysql.proc") in {(n.privilege, w) for n, w in report.missing_required}


@pytest.mark.parametrize("version, routine", [("10.6.18-MariaDB", ("SELECT", "mysql.proc")),
                                              ("11.3.2-MariaDB-log", ("SHOW CREATE ROUTINE", "database"))])
def test_routine_text_needs_follow_the_mariadb_version(version, routine):
    needs = grants.requirements("mysqldump", "mariadb", version, binlog=False)
    assert routine in {(n.privilege, n.scope) for n in needs}


def test_restore_requirements_follow_the_objects_and_the_loader():
    basic = {n.privilege for n in grants.restore_requirements(None, streaming=False)}
    assert basic == {"CREATE", "DROP", "INSERT"}
    streaming = {n.privilege for n in grants.restore_requirements({}, streaming=True)}
    assert streaming == basic | {"ALTER", "LOCK TABLES"}
    objects = {"views": ["v"], "routines": ["p"], "triggers": ["t"], "events": ["e"]}
    everything = {n.privilege for n in grants.restore_requirements(objects, streaming=False)}
    assert everything == basic | {"CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "TRIGGER", "EVENT"}
    assert all(n.scope == "database" for n in grants.restore_requirements(objects, streaming=True))


def test_least_privilege_statements_escape_wildcards_and_quotes():
    needs = [grants.Need("SELECT", "database", "read"), grants.Need("SHOW VIEW", "database", "views")]
    assert grants.least_privilege_statements(needs, ["50%_off", "a`b"], "bk", "10.0.%") == [
        "GRANT SELECT, SHOW VIEW ON `50\\%\\_off`.* TO 'bk'@'10.0.%';",
        "GRANT SELECT, SHOW VIEW ON `a``b`.* TO 'bk'@'10.0.%';",
    ]
