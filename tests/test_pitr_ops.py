"""Operating point-in-time recovery on a real server with the binary log on: the archiver's
metrics and notifications, the recoverable window in `list`, doctor's binlog checks, verify of
the archive, and the archiver's loop stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import unique
from test_notify import receiver  # noqa: F401 - a fixture
from test_pitr import archived, benv, purge_to_current  # noqa: F401 - benv is a fixture
from test_upload import moto_port, s3  # noqa: F401 - fixtures


def samples(textfile: Path) -> dict:
    out = {}
    for family in text_string_to_metric_families(textfile.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def one(found: dict, name: str, **labels) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def purge_unarchived(server, db: str) -> None:
    """Close two files with writes in them and purge them before the archiver sees them."""
    server.sql(f"INSERT INTO `{db}`.t VALUES (100); FLUSH BINARY LOGS; INSERT INTO `{db}`.t VALUES (101); "
               "FLUSH BINARY LOGS")
    purge_to_current(server)


def test_metrics_window_and_gap_notification(benv, receiver):
    server = benv.server
    db = unique("obs")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1)")
    textfile = benv.root / "textfile" / "tenangdb.prom"
    config = benv.write_config({
        "metrics": {"enabled": True, "storage_path": str(benv.root / "state" / "metrics.json"),
                    "textfile": str(textfile)},
        "notify": {"webhook": f"{receiver.url}/hook/x", "retries": 0, "timeout": 5}})
    try:
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        manifest = json.loads(next(benv.backups.glob(f"{db}/*/*/manifest.json")).read_text())
        server.sql(f"INSERT INTO `{db}`.t VALUES (2)")
        before = time.time()
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0, done.stderr
        found = samples(textfile)
        label = next(dict(k[1])["server"] for k in found if k[0] == "tenangdb_binlog_lag_seconds")
        assert label.endswith("/1")  # hostname/server_id
        assert 0 <= one(found, "tenangdb_binlog_lag_seconds", server=label) < time.time() - before + 1
        assert before - 2 <= one(found, "tenangdb_binlog_last_archived_timestamp", server=label) <= time.time()
        assert one(found, "tenangdb_binlog_gaps_total", server=label) == 0
        from datetime import datetime
        ended = datetime.fromisoformat(manifest["finished_at"]).timestamp()
        assert one(found, "tenangdb_pitr_window_start_timestamp", database=db) == pytest.approx(ended, abs=1)

        listed = benv.cli("list", "--local", config=config)
        assert listed.returncode == 0, listed.stderr
        assert "point-in-time window (binlog of" in listed.stdout and db in listed.stdout.splitlines()[-1]
        as_json = json.loads(benv.cli("list", "--local", "--json", config=config).stdout)["pitr_window"]
        assert as_json["server"] == label and as_json["gaps"] == 0 and db in as_json["databases"]

        # A gap: loud in the exit code, the metric, the notification; the window that crossed it is gone.
        purge_unarchived(server, db)
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 4 and "gap" in done.stderr
        found = samples(textfile)
        assert one(found, "tenangdb_binlog_gaps_total", server=label) == 1
        assert one(found, "tenangdb_pitr_window_start_timestamp", database=db) is None
        events = [e for e in receiver.events() if e["event"] == "binlog.gap"]
        assert len(events) == 1 and events[0]["status"] == "failed" and "purged" in events[0]["error"]
        listed = benv.cli("list", "--local", config=config)
        assert "1 gap recorded" in listed.stdout and "none (no base backup" in listed.stdout
        # verify --binlog reports a recorded gap without calling the archive damaged.
        checked = benv.cli("verify", "--binlog", config=config)
        assert checked.returncode == 0 and "warning: recorded gap" in checked.stderr, checked.stdout + checked.stderr

        # A new base backup after the gap opens a new window.
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        server.sql(f"INSERT INTO `{db}`.t VALUES (3)")  # the base's file is closed (and archived) by a write
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        found = samples(textfile)
        assert (one(found, "tenangdb_pitr_window_start_timestamp", database=db) or 0) > ended
        assert len([e for e in receiver.events() if e["event"] == "binlog.gap"]) == 1  # reported once
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_the_window_counts_a_base_whose_remote_copy_is_recorded_proven(benv, tmp_path):
    """With cleanup_uploaded_files, an older base's local copy goes once its remote copy is
    proven, and with it the local binlog files only it needed (they are in the mirror). The
    window (metric and list) still starts at that base, from the upload record kept beside it,
    without the archiver asking the remote; a record that says the remote copy failed its check
    ends that."""
    server = benv.server
    db = unique("offwin")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1)")
    textfile = benv.root / "textfile" / "tenangdb.prom"
    rclone_config = tmp_path / "rclone.conf"
    rclone_config.write_text("")
    rclone_config.chmod(0o600)
    config = benv.write_config({
        "metrics": {"enabled": True, "storage_path": str(benv.root / "state" / "metrics.json"),
                    "textfile": str(textfile)},
        "upload": {"enabled": True, "destination": str(tmp_path / "offsite"),
                   "rclone_config_path": str(rclone_config), "retry_delay": 0, "timeout": 60},
        "cleanup": {"cleanup_uploaded_files": True}})

    def window_start() -> float | None:
        server.sql(f"INSERT INTO `{db}`.t SELECT MAX(id) + 1 FROM `{db}`.t")
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0, done.stderr
        return one(samples(textfile), "tenangdb_pitr_window_start_timestamp", database=db)

    def ended(folder: Path) -> float:
        return datetime.fromisoformat(json.loads((folder / "manifest.json").read_text())["finished_at"]).timestamp()

    try:
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        [first] = benv.backups_of(db)
        start = ended(first)
        record = first.parent / f".{first.name}.upload.json"
        assert json.loads(record.read_text())["pitr_base"]["database"] == db
        assert window_start() == pytest.approx(start, abs=1)
        time.sleep(1.1)  # a backup's name has the second it started
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        [second] = [f for f in benv.backups_of(db) if f != first]
        assert window_start() == pytest.approx(start, abs=1)

        done = benv.cli("cleanup", "--yes", config=config)
        assert done.returncode == 0, done.stdout + done.stderr
        assert not first.exists() and record.is_file() and second.is_dir(), done.stdout + done.stderr
        assert "deleted local .binlog/" in done.stdout + done.stderr  # the first base's binlogs: the mirror's alone
        assert window_start() == pytest.approx(start, abs=1)
        listed = json.loads(benv.cli("list", "--local", "--json", config=config).stdout)["pitr_window"]
        assert datetime.fromisoformat(listed["databases"][db]["start"]).timestamp() == pytest.approx(start, abs=1)
        # Worked out without the remote: an rclone that cannot run changes nothing.
        (tmp_path / "no-tools").mkdir()
        (tmp_path / "no-tools" / "rclone").write_text("#!/bin/sh\nexit 99\n")
        (tmp_path / "no-tools" / "rclone").chmod(0o755)
        script = ("import sys; from tenangdb.config.loader import load_config; from tenangdb.actions import pitr; "
                  "print(pitr.window(load_config(sys.argv[1])).starts[sys.argv[2]])")
        alone = subprocess.run([sys.executable, "-c", script, str(config), db], capture_output=True, text=True,
                               env={**os.environ, "PATH": f"{tmp_path / 'no-tools'}:{os.environ['PATH']}"})
        assert alone.returncode == 0 and float(alone.stdout) == pytest.approx(start, abs=1), alone.stderr

        # The remote copy found damaged by a later check: no longer a base to count on.
        data = json.loads(record.read_text())
        data.update(ok=False, failed_at="2026-01-01T00:00:00+00:00", error="damaged")
        record.write_text(json.dumps(data))
        assert window_start() == pytest.approx(ended(second), abs=1)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_doctor_checks_the_binary_log_for_the_archiver(benv):
    from test_doctor import database_section
    from test_init import PASSWORD, make_user

    def doctor(env, config, env_vars):
        done = env.cli("doctor", "--json", config=config, env=env_vars, timeout=120)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    server = benv.server
    db = unique("doc")
    server.sql(f"CREATE DATABASE `{db}`")
    user = make_user(server, [f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{db}`.* TO {{user}}",
                              "GRANT SELECT ON mysql.proc TO {user}", "GRANT BINLOG MONITOR ON *.* TO {user}"])
    secrets = {"TENANGDB_DB_PASSWORD": PASSWORD}
    config = benv.write_config({"backup": {"databases": [db]}, "binlog": {"enabled": True, "max_lag": 3600}},
                               database=database_section(server, user))
    try:
        # Without binlog.enabled there is nothing to check.
        plain = benv.write_config({"backup": {"databases": [db]}}, database=database_section(server, user),
                                  name="plain.yaml")
        _, checks = doctor(benv, plain, secrets)
        assert not {"binlog-server", "binlog-retention", "binlog-grants"} & set(checks)

        _, checks = doctor(benv, config, secrets)
        assert checks["binlog-server"]["status"] == "pass" and "ROW" in checks["binlog-server"]["message"]
        assert checks["binlog-retention"]["status"] == "pass"  # the server never purges by age
        assert checks["binlog-archive"]["status"] == "warn" and "nothing archived yet" in checks["binlog-archive"]["message"]
        grants = checks["binlog-grants"]
        assert grants["status"] == "fail" and "lacks REPLICATION SLAVE, RELOAD:" in grants["message"]
        assert "GRANT REPLICATION SLAVE, RELOAD ON *.*" in grants["fix"]

        # BINLOG ADMIN does not let the archiver close the open file (FLUSH BINARY LOGS needs RELOAD).
        server.sql(f"GRANT REPLICATION SLAVE, BINLOG ADMIN ON *.* TO '{user}'@'%'")
        _, checks = doctor(benv, config, secrets)
        assert checks["binlog-grants"]["status"] == "fail" and "lacks RELOAD:" in checks["binlog-grants"]["message"]
        refused = benv.cli("binlog", "--once", config=config, env=secrets)
        assert refused.returncode == 3 and "RELOAD" in refused.stderr, refused.stderr

        server.sql(f"GRANT RELOAD ON *.* TO '{user}'@'%'; "
                   "SET GLOBAL binlog_format = 'STATEMENT'; SET GLOBAL binlog_expire_logs_seconds = 3600")
        _, checks = doctor(benv, config, secrets)
        assert checks["binlog-grants"]["status"] == "pass", checks["binlog-grants"]
        # The archiver's own privileges are not "more than backups need".
        assert "REPLICATION SLAVE" not in checks["database-grants"]["message"], checks["database-grants"]
        assert checks["binlog-server"]["status"] == "warn" and "STATEMENT" in checks["binlog-server"]["message"]
        retention = checks["binlog-retention"]
        assert retention["status"] == "fail" and "twice binlog.max_lag" in retention["message"]

        server.sql("SET GLOBAL binlog_expire_logs_seconds = 7200")
        _, checks = doctor(benv, config, secrets)
        assert checks["binlog-retention"]["status"] == "warn" and "2h" in checks["binlog-retention"]["message"]
        server.sql("SET GLOBAL binlog_expire_logs_seconds = 0")
        assert benv.cli("binlog", "--once", config=config, env=secrets).returncode == 0
        _, checks = doctor(benv, config, secrets)
        assert checks["binlog-archive"]["status"] == "pass" and "no gap recorded" in checks["binlog-archive"]["message"]
    finally:
        server.sql("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_expire_logs_seconds = 0; "
                   f"DROP USER IF EXISTS '{user}'@'%'; DROP DATABASE IF EXISTS `{db}`")


def test_verify_binlog_checks_every_file_and_the_chain(benv):
    server = benv.server
    db = unique("ver")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    config = benv.write_config({"backup": {"encryption": {"enabled": True, "key_file": str(benv.key())}}})
    try:
        for i in range(3):
            server.sql(f"INSERT INTO `{db}`.t VALUES ({i}); FLUSH BINARY LOGS")
        server.sql(f"INSERT INTO `{db}`.t VALUES (9)")
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        folder = benv.backups / ".binlog"
        records = archived(benv)
        assert len(records) >= 4 and all(r["stored_name"].endswith(".age") for r in records)
        done = benv.cli("verify", "--binlog", config=config)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"binlog archive OK: {len(records)} files" in done.stdout and "chain continuous" in done.stdout

        # One byte changed in the middle of one archived file: found, named, exit 7.
        victim = folder / records[-2]["stored_name"]
        original = victim.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0xFF
        victim.write_bytes(bytes(damaged))
        done = benv.cli("verify", "--binlog", config=config)
        assert done.returncode == 7, done.stdout + done.stderr
        assert f"FAILED {records[-2]['name']}:" in done.stdout and "damaged" in done.stderr
        assert sum(line.startswith("FAILED") for line in done.stdout.splitlines()) == 1
        victim.write_bytes(original)

        # A file and its record removed from the middle, with no gap recorded: a broken chain.
        hidden = benv.root / "hidden"
        hidden.mkdir()
        for name in (records[1]["stored_name"], records[1]["name"] + ".json"):
            (folder / name).rename(hidden / name)
        done = benv.cli("verify", "--binlog", config=config)
        assert done.returncode == 7 and f"{records[1]['name']} missing between" in done.stdout, done.stdout
        for path in hidden.iterdir():
            path.rename(folder / path.name)

        # Without the key, nothing can be checked: a clear error, not a pass.
        plain = benv.write_config(name="nokey.yaml")
        done = benv.cli("verify", "--binlog", config=plain)
        assert done.returncode == 7 and "no age identity" in done.stderr, done.stderr
        assert benv.cli("verify", "--binlog", config=config).returncode == 0
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_init_deploys_the_archiver_when_asked(benv):
    from test_init import PASSWORD, init_argv, make_user
    server = benv.server
    db = unique("ini")
    server.sql(f"CREATE DATABASE `{db}`")
    user = make_user(server, [f"GRANT SELECT ON `{db}`.* TO {{user}}"])
    try:
        done = benv.cli(*init_argv(benv, user, db, "--deploy-systemd", "--dry-run", "--binlog"),
                        env={"TENANGDB_DB_PASSWORD": PASSWORD})
        assert done.returncode == 0, done.stderr
        unit = done.stdout.split("# --- /etc/systemd/system/tenangdb-binlog.service\n", 1)[1].split("# --- ", 1)[0]
        assert "Type=simple" in unit and "Restart=on-failure" in unit and "ProtectSystem=strict" in unit
        assert "binlog:\n  enabled: true" in done.stdout
        assert "REPLICATION SLAVE, BINLOG MONITOR and RELOAD" in done.stderr
        # Without --binlog (and no terminal to ask on) nothing of the archiver is written.
        done = benv.cli(*init_argv(benv, user, db, "--deploy-systemd", "--dry-run"),
                        env={"TENANGDB_DB_PASSWORD": PASSWORD})
        assert done.returncode == 0 and "tenangdb-binlog.service" not in done.stdout and "binlog:" not in done.stdout
    finally:
        server.sql(f"DROP USER IF EXISTS '{user}'@'%'; DROP DATABASE IF EXISTS `{db}`")


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _wait_gone(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} is still running")


def test_the_loop_archives_until_sigterm_then_stops_clean(benv):
    import os
    import signal
    import subprocess

    from conftest import TENANGDB
    server = benv.server
    db = unique("loop")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, pad MEDIUMTEXT)")
    textfile = benv.root / "textfile" / "tenangdb.prom"
    config = benv.write_config({"binlog": {"enabled": True, "max_lag": 2},
                                "metrics": {"enabled": True, "storage_path": str(benv.root / "state" / "m.json"),
                                            "textfile": str(textfile)}})
    folder = benv.backups / ".binlog"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    proc = subprocess.Popen([*TENANGDB, "--config", str(config), "binlog"], env=env, cwd=benv.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for round_ in range(2):
            current = server.sql("SHOW MASTER STATUS").split("\t")[0].strip()
            server.sql(f"INSERT INTO `{db}`.t VALUES ({round_}, REPEAT('y', 300000))")
            deadline = time.monotonic() + 60
            while not (folder / f"{current}.json").exists():
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, f"{current} was not archived by the loop"
                time.sleep(0.2)
        assert samples(textfile)  # each cycle writes the metrics
        # Mid-cycle or asleep, SIGTERM ends it: exit 0, nothing left behind.
        server.sql(f"INSERT INTO `{db}`.t VALUES (7, REPEAT('z', 3000000))")
        time.sleep(0.8)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "binlog archiver stopped" in err
        assert not _processes_naming(str(folder))  # no mariadb-binlog left reading for us
        assert not list(folder.glob(".fifo-*"))
        names = {r.name.removesuffix(".json") for r in folder.glob("*.json")}
        stored = [p for p in folder.iterdir() if not p.name.endswith(".json") and not p.name.startswith(".")]
        assert all(p.name.removesuffix(".zst") in names for p in stored), sorted(p.name for p in stored)
        # The archive's lock was released: a one-shot run follows at once and archives the rest.
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0, done.stderr
        verified = benv.cli("verify", "--binlog", config=config)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _wait_gone(proc.pid, time.monotonic() + 10)
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_a_sigterm_inside_a_transfer_leaves_no_fifo_folder(benv, monkeypatch):
    """A SIGTERM raises where it lands: inside mkdtemp, once the folder exists but before the
    transfer's own cleanup is armed. The cycle removes it (the loop test above meets this only
    by chance)."""
    from types import SimpleNamespace

    from tenangdb.actions import binlog
    from tenangdb.config.loader import load_config
    from tenangdb.errors import Interrupted

    db = unique("fifo")
    benv.server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); "
                    f"INSERT INTO `{db}`.t VALUES (1); FLUSH BINARY LOGS")
    config = benv.write_config({"binlog": {"enabled": True}})
    made = []

    def interrupted_inside(*args, **kwargs):
        made.append(Path(tempfile.mkdtemp(*args, **kwargs)))
        raise Interrupted("interrupted by SIGTERM; unfinished work was removed")
    monkeypatch.setattr(binlog, "tempfile", SimpleNamespace(mkdtemp=interrupted_inside))
    try:
        with pytest.raises(Interrupted):
            binlog.cycle(load_config(config))
        assert made and made[0].name.startswith(".fifo-")
        assert not list((benv.backups / ".binlog").glob(".fifo-*"))
    finally:
        benv.server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def test_a_server_restart_is_followed_and_replayed_across(tmp_path):
    """A clean shutdown ends the open file with a STOP event and the restarted server opens the
    next one: the archiver takes both, verify accepts the STOP link, and a restore to a moment
    after the restart replays across it."""
    import os
    import shutil
    import signal
    from datetime import datetime, timezone

    from conftest import Env, Server
    from test_pitr import checksums, pause_past_second
    from tenangdb.mysql.sandbox import start_sandbox

    first = start_sandbox(binlog=True)
    second = None
    try:
        env = Env(root=tmp_path, server=Server(socket=str(first.socket_path), host="127.0.0.1", port=first.port,
                                               user="root", password="", box=first))
        db = "restarted"
        env.server.sql(f"CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE t (id INT PRIMARY KEY, v INT); "
                       "INSERT INTO t SELECT seq, seq FROM seq_1_to_100")
        config = env.write_config()
        assert env.cli("backup", "--databases", db, config=config).returncode == 0
        assert env.cli("binlog", "--once", config=config).returncode == 0
        env.server.sql(f"UPDATE `{db}`.t SET v = v + 1000 WHERE id <= 10")  # in the file the shutdown ends
        before = env.server.sql("SHOW MASTER STATUS").split("\t")[0].strip()

        os.kill(first.pid, signal.SIGTERM)  # a clean shutdown writes STOP
        first.process.wait(timeout=120)
        second = start_sandbox(datadir=first.base / "data", binlog=False, skip_grants=False,
                               extra_args=[f"--log-bin={first.base / 'binlog'}", "--server-id=1",
                                           "--binlog-format=ROW"])
        env.server = Server(socket=str(second.socket_path), host="127.0.0.1", port=second.port, user="root",
                            password="", box=second)
        config = env.write_config()
        after = env.server.sql("SHOW MASTER STATUS").split("\t")[0].strip()
        assert after != before
        env.server.sql(f"INSERT INTO `{db}`.t VALUES (500, 5)")
        pause_past_second()
        moment = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        at_t = checksums(env.server, db)
        pause_past_second()
        env.server.sql(f"DELETE FROM `{db}`.t WHERE id > 50")

        done = env.cli("binlog", "--once", config=config)
        assert done.returncode == 0, done.stderr
        records = {r["name"]: r for r in archived(env)}
        assert records[before]["closed_by"] == "stop" and after in records
        verified = env.cli("verify", "--binlog", config=config)
        assert verified.returncode == 0, verified.stdout + verified.stderr

        done = env.cli("restore", "-b", db, "--to-time", moment, "-d", "at_t", config=config)
        assert done.returncode == 0, done.stderr
        assert checksums(env.server, "at_t") == at_t
    finally:
        if second is not None:
            second.stop(graceful=False)
        first.stop(graceful=False)  # its server has exited; this removes its folder
        shutil.rmtree(first.base, ignore_errors=True)


def test_the_archive_is_uploaded_proven_and_repaired_off_site(benv):
    from test_init import rclone_remote
    server = benv.server
    db = unique("off")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    conf, target = rclone_remote(benv.root)
    config = benv.write_config({"backup": {"encryption": {"enabled": True, "key_file": str(benv.key())}},
                                "upload": {"enabled": True, "destination": f"local:{target}",
                                           "rclone_config_path": str(conf), "encryption": True, "retry_delay": 0}})
    try:
        for i in range(2):
            server.sql(f"INSERT INTO `{db}`.t VALUES ({i}); FLUSH BINARY LOGS")
        server.sql(f"INSERT INTO `{db}`.t VALUES (9)")
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0, done.stderr
        records = archived(benv)
        assert f"uploaded {len(records)}" in done.stdout
        mirror = target / ".binlog"
        for r in records:
            assert (mirror / r["stored_name"]).read_bytes() == (benv.backups / ".binlog" / r["stored_name"]).read_bytes()
            assert json.loads((mirror / f"{r['name']}.json").read_text()) == r
        assert (mirror / "server.json").exists()
        listed = benv.cli("list", "--remote", config=config)  # the mirror is not taken for backups
        assert listed.returncode == 0 and ".binlog" not in listed.stdout + listed.stderr, listed.stderr
        checked = benv.cli("verify", "--binlog", "--from-remote", config=config)
        assert checked.returncode == 0 and f"{len(records)} files proven" in checked.stdout, checked.stderr
        # Nothing new: nothing copied again.
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0 and "uploaded" not in done.stdout

        # A damaged remote copy: found (exit 7), and the next cycle copies it again.
        victim = mirror / records[0]["stored_name"]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        checked = benv.cli("verify", "--binlog", "--from-remote", config=config)
        assert checked.returncode == 7 and records[0]["stored_name"] in checked.stdout, checked.stdout
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0 and "uploaded 1" in done.stdout, done.stdout + done.stderr
        assert benv.cli("verify", "--binlog", "--from-remote", config=config).returncode == 0

        # The remote gone: the archiving goes on, the upload failure is exit 5, then it catches up.
        hidden = benv.root / "remote-away"
        target.rename(hidden)
        target.write_text("not a folder")
        server.sql(f"INSERT INTO `{db}`.t VALUES (10)")
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 5 and "binlog upload failed" in done.stderr, done.stdout + done.stderr
        assert len(archived(benv)) == len(records) + 1
        target.unlink()
        hidden.rename(target)
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0 and "uploaded 1" in done.stdout, done.stdout + done.stderr
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")


def off_site(benv, db: str, extra: dict | None = None):
    """Encrypted backups uploaded to a local rclone remote, and a database `db` of 200 rows:
    (the remote's folder, the upload and encryption sections, the config)."""
    from test_init import rclone_remote
    conf, target = rclone_remote(benv.root)
    upload = {"enabled": True, "destination": f"local:{target}", "rclone_config_path": str(conf), "retry_delay": 0}
    encryption = {"enabled": True, "key_file": str(benv.key())}
    sections = {"backup": {"encryption": encryption}, "upload": upload}
    for section, values in (extra or {}).items():
        sections[section] = {**sections.get(section, {}), **values}
    config = benv.write_config(sections)
    benv.server.sql(f"CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE t (id INT PRIMARY KEY, v INT); "
                    "INSERT INTO t SELECT seq, seq FROM seq_1_to_200")
    return target, upload, encryption, config


def test_restore_to_time_from_the_remote_alone(benv):
    """A fresh machine (an empty backup directory) with only the remote: the base backup and the
    binlog mirror are downloaded, and the database comes back as it was at T. The base is a
    streaming (mysqldump) backup: test_pitr's are mydumper's, test_pitr_physical's mariabackup's."""
    from datetime import datetime, timezone

    from test_pitr import checksums, pause_past_second
    server = benv.server
    db = unique("far")
    _, upload, encryption, config = off_site(benv, db, {"backup": {"engine": "mysqldump"}})
    restored = unique("far_at")
    try:
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        [base] = benv.backups_of(db)
        assert json.loads((base / "manifest.json").read_text())["engine"]["name"] == "mysqldump"
        server.sql(f"UPDATE `{db}`.t SET v = v * 2 WHERE id < 50")
        pause_past_second()
        moment = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        at_t = checksums(server, db)
        pause_past_second()
        server.sql(f"DROP TABLE `{db}`.t")
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0 and "uploaded" in done.stdout, done.stdout + done.stderr

        fresh = benv.write_config({"backup": {"directory": str(benv.root / "fresh"), "encryption": encryption},
                                   "upload": upload}, name="fresh.yaml")
        args = ["restore", "-b", db, "--to-time", moment, "-d", restored]
        local = benv.cli(*args, "--dry-run", config=fresh)
        assert local.returncode == 2 and "is empty" in local.stderr, local.stderr  # nothing here without the remote
        plan = benv.cli(*args, "--from-remote", "--dry-run", config=fresh)
        assert plan.returncode == 0, plan.stderr
        assert "base backup:" in plan.stdout and "remote" in plan.stdout
        done = benv.cli(*args, "--from-remote", config=fresh)
        assert done.returncode == 0, done.stderr
        assert checksums(server, restored) == at_t
        assert not list((benv.root / "fresh").glob("**/*.zst*"))  # the downloads were private and removed
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`; DROP DATABASE IF EXISTS `{restored}`")


def test_the_archive_off_site_on_s3_is_proven_by_md5(benv, s3):
    server = benv.server
    db = unique("s3b")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1)")
    config = benv.write_config({"backup": {"encryption": {"enabled": True, "key_file": str(benv.key())}},
                                "upload": {"enabled": True, "destination": s3.destination,
                                           "rclone_config_path": str(s3.config), "retry_delay": 0}})
    try:
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0 and "uploaded" in done.stdout, done.stdout + done.stderr
        marks = json.loads((benv.backups / ".binlog" / ".uploaded.json").read_text())
        assert marks and {m["verify"] for m in marks.values()} == {"md5"}  # the backend's hash, not sizes only
        listed = s3.rclone("lsf", f"{s3.destination}/.binlog")
        assert all(f"{r['name']}.json" in listed.stdout for r in archived(benv))
        checked = benv.cli("verify", "--binlog", "--from-remote", config=config)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert s3.secret not in done.stdout + done.stderr + checked.stdout + checked.stderr
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")
