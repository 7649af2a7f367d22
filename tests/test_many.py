"""Many databases: `all` with exclusions, retries with backoff, and the tracking file."""

from __future__ import annotations

import json
import shutil

from conftest import Env, Server, unique
from tenangdb.mysql.sandbox import start_sandbox


def test_all_databases_skips_system_schemas_and_exclusions(tmp_path):
    # A server of its own, so `all` means exactly the databases made here.
    box = start_sandbox()
    try:
        box.sql("CREATE DATABASE app_one; CREATE DATABASE app_two; CREATE DATABASE scratch_tmp;"
                "CREATE TABLE app_one.t (id INT PRIMARY KEY); INSERT INTO app_one.t VALUES (1)")
        env = Env(root=tmp_path, server=Server(socket=str(box.socket_path), host="127.0.0.1", port=box.port,
                                               user="root", password=""))
        cfg = env.write_config({"backup": {"databases": "all", "exclude": ["scratch_*"]}})
        dry = env.cli("backup", "--dry-run", config=cfg)
        assert "all (except information_schema, performance_schema, sys, mysql); excluding scratch_*" in dry.stdout
        done = env.cli("backup", config=cfg)
        assert done.returncode == 0, done.stderr
        assert "backing up 2 databases: app_one, app_two" in done.stderr
        backed_up = sorted(p.name for p in env.backups.iterdir() if p.is_dir() and p.name != "latest")
        assert backed_up == ["app_one", "app_two"]
        with_mysql = env.write_config({"backup": {"databases": ["all"], "exclude": ["app_*", "scratch_*"],
                                                  "include_mysql": True}}, name="m.yaml")
        done = env.cli("backup", "--force", config=with_mysql)
        assert done.returncode == 0 and "backing up 1 database: mysql" in done.stderr, done.stderr
    finally:
        box.stop()


def test_all_cannot_be_mixed_with_names(offline_env):
    cfg = offline_env.write_config({"backup": {"databases": ["all", "shop"]}})
    done = offline_env.cli("backup", config=cfg)
    assert done.returncode == 2 and "`all` cannot be combined with database names" in done.stderr


def test_transient_failure_is_retried(env, server, sample_db, tmp_path):
    # Fails on the first attempt, then behaves as the real dump tool.
    flaky = tmp_path / "flaky-dump"
    flaky.write_text(f"""#!/bin/sh
if [ ! -e {tmp_path}/failed-once ]; then
  touch {tmp_path}/failed-once
  echo "mariadb-dump: Got error: 2013: Lost connection to server during query" >&2
  exit 2
fi
exec {shutil.which("mariadb-dump")} "$@"
""")
    flaky.chmod(0o755)
    cfg = env.write_config({"backup": {"databases": [sample_db]}},
                           database=dict(server.config_section(), mysqldump_path=str(flaky)))
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert f"{sample_db}: attempt 1 of 3 failed" in done.stderr and "Lost connection" in done.stderr
    assert len(env.backups_of(sample_db)) == 1
    assert not list(env.backups.rglob("*.partial"))


def test_permanent_failure_is_not_retried(env):
    cfg = env.write_config({"backup": {"databases": ["no_such_database_at_all"]}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4
    assert "attempt 1 of" not in done.stderr and "after" not in done.stderr


def test_tracking_records_only_successes_and_warns_without_a_tty(env, sample_db):
    missing = unique("missing")
    cfg = env.write_config({"backup": {"databases": [sample_db, missing], "min_backup_interval": "1h"}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4
    [tracking] = list((env.root / "tracking").glob(".tenangdb_backup_tracking_*.json"))
    recorded = json.loads(tracking.read_text())
    assert set(recorded["databases"]) == {sample_db}
    assert oct(tracking.stat().st_mode & 0o777) == "0o640"

    again = env.write_config({"backup": {"databases": [sample_db], "min_backup_interval": "1h"}}, name="again.yaml")
    done = env.cli("backup", config=again)
    assert done.returncode == 0
    assert "backing up again although the last backup is younger than" in done.stderr
    done = env.cli("backup", "--force", config=again)
    assert done.returncode == 0 and "backing up again" not in done.stderr
    assert len(env.backups_of(sample_db)) == 3


def test_twenty_one_databases_three_at_a_time_one_failing(env, server, tmp_path):
    names = [unique(f"m{i:02d}") for i in range(21)]
    bad = names[7]
    for name in names:
        server.sql(f"CREATE DATABASE `{name}`; CREATE TABLE `{name}`.t (id INT PRIMARY KEY, v TEXT);"
                   f"INSERT INTO `{name}`.t SELECT seq, REPEAT('x', 200) FROM `{name}`.seq_1_to_3000")
    # A view over a table that is gone: the dump tool fails on this database only.
    server.sql(f"CREATE TABLE `{bad}`.gone (id INT); CREATE VIEW `{bad}`.broken AS SELECT id FROM `{bad}`.gone;"
               f"DROP TABLE `{bad}`.gone")
    timing = tmp_path / "timing"
    wrapper = tmp_path / "timed-dump"
    wrapper.write_text(f"""#!/bin/sh
[ "$1" = --version ] && exec {shutil.which("mariadb-dump")} --version
start=$(date +%s.%N)
{shutil.which("mariadb-dump")} "$@"
rc=$?
# These dumps take milliseconds, about as long as the commit hold that opens each one's
# snapshot (one database at a time, mysql/alignment.py): a dump tool that lingers shows
# whether the databases themselves run side by side.
sleep 0.5
echo "$start $(date +%s.%N)" >> {timing}
exit $rc
""")
    wrapper.chmod(0o755)
    try:
        cfg = env.write_config({"backup": {"databases": names, "concurrency": 3, "batch_size": 25,
                                           "retry_count": 1}},
                               database=dict(server.config_section(), mysqldump_path=str(wrapper)))
        done = env.cli("backup", config=cfg)
        assert done.returncode == 4, done.stderr
        assert "partial success: 20 succeeded, 1 failed" in done.stderr
        assert f"{bad}: backup failed" in done.stderr and "broken" in done.stderr
        assert sorted(p.parent.parent.parent.name for p in env.backups.glob("*/*/*/manifest.json")) == \
            sorted(n for n in names if n != bad)
        [tracking] = list((env.root / "tracking").glob(".tenangdb_backup_tracking_*.json"))
        assert set(json.loads(tracking.read_text())["databases"]) == set(names) - {bad}
        spans = [tuple(map(float, line.split())) for line in timing.read_text().splitlines()]
        assert len(spans) == 21
        overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert 2 <= overlap <= 3  # ran concurrently, never more than backup.concurrency
    finally:
        for name in names:
            server.sql(f"DROP DATABASE IF EXISTS `{name}`")
