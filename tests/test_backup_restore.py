"""The whole path against a real server: backup → verify → restore, layout and modes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import on_a_terminal, unique


def checksums(server, database: str) -> str:
    tables = server.sql("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=DATABASE() "
                        "AND TABLE_TYPE='BASE TABLE' ORDER BY 1", database).split()
    rows = server.sql("CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables) + " EXTENDED", database)
    return "\n".join(line.split("\t", 1)[1] for line in rows.splitlines())


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "xz", "none"])
@pytest.mark.parametrize("encrypted", [True, False])
def test_backup_verify_restore_round_trip(env, server, sample_db, fmt, encrypted):
    extra = {"backup": {"databases": [sample_db], "compression": fmt}}
    if encrypted:
        extra["backup"]["encryption"] = {"enabled": True, "key_file": str(env.key())}
    cfg = env.write_config(extra)
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    [entry] = manifest["files"]
    suffix = {"zstd": ".zst", "gzip": ".gz", "xz": ".xz", "none": ""}[fmt] + (".age" if encrypted else "")
    assert entry["name"] == f"{sample_db}.sql{suffix}"
    assert manifest["encryption"]["enabled"] is encrypted
    assert {t["name"] for t in manifest["objects"]["tables"]} == {"customer"}
    assert manifest["objects"]["views"] == ["customer_names"]
    assert manifest["objects"]["triggers"] == [{"name": "customer_bi", "table": "customer"}]
    assert manifest["binlog"] is None  # the binary log is off, as on a stock server
    assert manifest["content_checks"]["method"] == "snapshot"  # proven all the same: commits were held
    stored = (folder / entry["name"]).read_bytes()
    assert (b"INSERT INTO" in stored) is (fmt == "none" and not encrypted)

    assert env.cli("verify", "--backup-path", str(folder), config=cfg).returncode == 0
    target = unique("restored")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    assert checksums(server, target) == checksums(server, sample_db)
    assert server.sql("SHOW PROCEDURE STATUS WHERE Db = DATABASE()", target).count("count_customers") == 1
    server.sql(f"DROP DATABASE `{target}`")


def test_layout_and_modes_whatever_the_umask(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    for umask in (0o000, 0o077):
        done = subprocess.run([sys.executable, "-c", f"import os,sys; os.umask({umask}); "
                               "from tenangdb.cli.main import main; sys.argv=['tenangdb']+sys.argv[1:]; main()",
                               "--config", str(cfg), "backup", "--yes"], capture_output=True, text=True,
                              cwd=env.root)
        assert done.returncode == 0, done.stderr
    folders = env.backups_of(sample_db)
    assert len(folders) == 2  # two runs in the same second still get distinct folders
    for folder in folders:
        month = folder.parent
        assert month.parent.name == sample_db and len(month.name) == 7  # {db}/{YYYY-MM}/
        assert folder.name.startswith(f"{sample_db}-")
        for path in (month.parent, month, folder):
            assert stat.S_IMODE(path.stat().st_mode) == 0o750, path
        for path in folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    assert not list(env.backups.rglob("*.partial"))


def test_dry_run_touches_nothing(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    done = env.cli("backup", "--dry-run", "--databases", f"{sample_db},other", config=cfg)
    assert done.returncode == 0
    assert sample_db in done.stdout and "other" in done.stdout
    assert not env.backups.exists()


def test_no_tty_no_yes_still_runs_for_timers(env, sample_db):
    """Without a terminal there is nobody to ask: the backup runs (the original silently did nothing)."""
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    assert len(env.backups_of(sample_db)) == 1


def test_restore_under_new_name_leaves_original_alone(env, server):
    source = unique("orig")
    # A routine whose database collation differs makes mysqldump emit ALTER DATABASE `orig` lines.
    server.sql(f"""
        CREATE DATABASE `{source}` CHARACTER SET latin1;
        USE `{source}`;
        CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10)) CHARACTER SET utf8mb4;
        INSERT INTO t VALUES (1, 'a');
        CREATE PROCEDURE p() SELECT 1;
        ALTER DATABASE `{source}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
        CREATE FUNCTION f() RETURNS INT DETERMINISTIC RETURN 2;
    """)
    cfg = env.write_config({"backup": {"databases": [source]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(source)
    server.sql(f"ALTER DATABASE `{source}` CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    target = unique("copy")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    charset = server.sql(f"SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                         f"WHERE SCHEMA_NAME='{source}'").strip()
    assert charset == "latin1_swedish_ci"  # the restore did not alter the original database
    assert server.sql("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=DATABASE()",
                      target).strip() == "2"
    server.sql(f"DROP DATABASE `{source}`; DROP DATABASE `{target}`")


def test_restore_into_non_empty_target_needs_yes(env, server, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    target = unique("busy")
    server.sql(f"CREATE DATABASE `{target}`; CREATE TABLE `{target}`.keepme (id INT); "
               f"INSERT INTO `{target}`.keepme VALUES (42)")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    assert done.returncode == 4 and "exists and is not empty" in done.stderr and "--yes" in done.stderr
    assert server.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=DATABASE()",
                      target).strip() == "1"
    done = env.cli("restore", "-b", str(folder), "-d", target, "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert server.sql("SELECT COUNT(*) FROM customer", target).strip() == "2003"
    server.sql(f"DROP DATABASE `{target}`")


def test_verify_all(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    assert env.cli("backup", config=cfg).returncode == 0
    done = env.cli("verify", "--all", config=cfg)
    assert done.returncode == 0 and done.stdout.count("OK ") == 2


def test_restore_into_a_name_with_percent_and_a_commented_source(env, server):
    source = unique("cmt")
    server.sql(f"CREATE DATABASE `{source}` COMMENT 'quarterly 50% sale'; "
               f"CREATE TABLE `{source}`.t (id INT PRIMARY KEY); INSERT INTO `{source}`.t VALUES (1)")
    cfg = env.write_config({"backup": {"databases": [source]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(source)
    target = f"{unique('x')}_50%sale"
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    assert done.returncode == 0, done.stderr
    assert server.sql(f"SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='{target}'"
                      ).strip() == "quarterly 50% sale"
    assert server.sql("SELECT COUNT(*) FROM t", target).strip() == "1"
    server.sql(f"DROP DATABASE `{source}`; DROP DATABASE `{target}`")


def test_confirmation_on_a_terminal(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    status, screen = on_a_terminal(["--config", str(cfg), "backup"], [(b"[y/N]", b"n")], env.root)
    assert status == 0 and "backup cancelled" in screen
    assert f"databases: {sample_db}" in screen and "upload: disabled" in screen and "concurrency 3" in screen
    assert not env.backups_of(sample_db)
    status, screen = on_a_terminal(["--config", str(cfg), "backup"], [(b"[y/N]", b"y")], env.root)
    assert status == 0, screen
    assert len(env.backups_of(sample_db)) == 1


def test_tables_outside_the_snapshot_are_named_when_written_during_the_dump(env, server, tmp_path):
    name = unique("mixed")
    server.sql(f"""
        CREATE DATABASE `{name}`;
        USE `{name}`;
        CREATE TABLE orders (id INT PRIMARY KEY) ENGINE=InnoDB;
        CREATE TABLE hits (id INT PRIMARY KEY) ENGINE=Aria;
        CREATE TABLE visits (id INT PRIMARY KEY) ENGINE=MyISAM;
        INSERT INTO orders VALUES (1); INSERT INTO hits VALUES (1); INSERT INTO visits VALUES (1);
    """)
    binlog_readable = server.sql("SHOW MASTER STATUS").strip() != ""
    try:
        cfg = env.write_config({"backup": {"databases": [name]}})
        quiet = env.cli("backup", config=cfg)
        assert quiet.returncode == 0, quiet.stderr
        manifest = json.loads((env.backups_of(name)[0] / "manifest.json").read_text())
        named = [w for w in manifest["warnings"] if "gives no snapshot" in w]
        if binlog_readable:  # nothing was written: the binary log proves the dump saw one moment
            assert not named and "gives no snapshot" not in quiet.stderr
        else:
            assert named and "cannot be told" in named[0]

        # A dump tool that lets a write happen before it returns: a write during the dump.
        login = f"--socket={server.socket}" if server.socket else f"--host={server.host} --port={server.port}"
        writer = tmp_path / "dump-then-write"
        writer.write_text(
            "#!/bin/sh\n"
            f"{shutil.which('mariadb-dump') or shutil.which('mysqldump')} \"$@\" || exit $?\n"
            f"MYSQL_PWD='{server.password}' mariadb --no-defaults {login} -u{server.user} "
            f"-e 'INSERT INTO `{name}`.hits VALUES (2)' >&2 || exit 9\n")
        writer.chmod(0o755)
        cfg = env.write_config({"backup": {"databases": [name]}},
                               database=dict(server.config_section(), mysqldump_path=str(writer)))
        busy = env.cli("backup", config=cfg)
        assert busy.returncode == 0, busy.stderr
        newest = sorted(env.backups_of(name))[-1]
        named = [w for w in json.loads((newest / "manifest.json").read_text())["warnings"] if "gives no snapshot" in w]
        assert len(named) == 1 and "hits (Aria), visits (MyISAM) use an engine" in named[0]
        assert "orders" not in named[0]
        assert ("the server logged writes while the dump ran" if binlog_readable else "cannot be told") in named[0]
        assert "hits (Aria)" in busy.stderr
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_the_non_transactional_warning_says_what_it_knows():
    # The branches a server with a readable binary log never takes in the test above.
    from tenangdb.actions.backup import _non_transactional_warning

    tables = [{"name": f"t{i}", "engine": "MyISAM"} for i in range(12)]
    assert _non_transactional_warning(tables[:1], ("binlog.000001", 400), ("binlog.000001", 400)) is None
    for before, after in ((None, None), (("binlog.000001", 400), None), (None, ("binlog.000001", 400))):
        text = _non_transactional_warning(tables[:1], before, after)
        assert text.startswith("table t0 (MyISAM) uses an engine") and "cannot be told" in text
    many = _non_transactional_warning(tables, ("binlog.000001", 400), ("binlog.000002", 4))
    assert "t9 (MyISAM) and 2 more use an engine" in many and "t10" not in many
    assert "(binlog.000001:400 to binlog.000002:4)" in many
