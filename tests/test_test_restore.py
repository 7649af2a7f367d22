"""verify --test-restore against a real server: good backups pass in both target modes, damaged
ones (each made by really editing a real backup) fail with exit 7 and a precise reason, and
the scratch database or sandbox is gone afterwards in every case, SIGTERM included."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import TENANGDB, unique
from tenangdb.config.loader import load_config
from tenangdb.mysql import checksum
from tenangdb.mysql.connection import connect, endpoint_from
from tenangdb.stream.crypto import load_keys, load_identities
from tenangdb.stream.pipeline import seal, unseal

PREFIX = "tvfy_"


@pytest.fixture(autouse=True)
def sandboxes(env):
    """A short private parent for sandboxes (a socket path must stay under 108 bytes)."""
    parent = Path(tempfile.mkdtemp(prefix="tv-", dir="/tmp"))
    env.sandboxes = parent
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def _config(env, sample_db, *, encrypted=True, target="server", extra_verify=None):
    backup = {"databases": [sample_db], "compression": "zstd"}
    if encrypted:
        backup["encryption"] = {"enabled": True, "key_file": str(env.key())}
    verify = {"target": target, "database_prefix": PREFIX,
              "sandbox": {"parent": str(env.sandboxes)}}
    verify.update(extra_verify or {})
    return env.write_config({"backup": backup, "verify": verify})


def _backup(env, cfg, database):
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    return env.backups_of(database)[-1]


def _scratch_databases(server) -> list[str]:
    return [n for n in server.sql("SHOW DATABASES").split() if n.startswith(PREFIX)]


def _left_behind(env, server) -> list[str]:
    """Scratch databases, sandbox folders and sandbox servers still around."""
    leftovers = _scratch_databases(server)
    leftovers += [str(p) for p in env.sandboxes.iterdir()]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(env.sandboxes).encode() in cmdline:
                leftovers.append(f"process {proc.name}")
    return leftovers


def _sidecar(folder: Path) -> dict:
    path = folder.parent / f".{folder.name}.verify.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    return json.loads(path.read_text())


def _rewrite_dump(cfg_path: Path, folder: Path, edit) -> None:
    """Decrypt and decompress the dump with tenangdb's own stream code, edit the SQL, seal it
    again to the same key, and rewrite the manifest's sizes and hashes to match, so that only
    the content checks of a test restore can tell."""
    loaded = load_config(str(cfg_path))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [entry] = manifest["files"]
    path = folder / entry["name"]
    identities = load_identities(loaded.settings.backup.encryption) if manifest["encryption"]["enabled"] else None
    plain = io.BytesIO()
    unseal(path, compression=manifest["compression"]["format"], identities=identities, forward=plain.write)
    sql = plain.getvalue().decode("utf-8")
    edited = edit(sql)
    assert edited != sql, "the edit changed nothing"
    data = io.BytesIO(edited.encode("utf-8"))
    path.unlink()
    keys = load_keys(loaded.settings.backup.encryption) if manifest["encryption"]["enabled"] else None
    sealed = seal(data.read, path, compression=manifest["compression"]["format"],
                  level=manifest["compression"]["level"], recipients=keys.recipients if keys else None)
    entry.update(plain_size=sealed.plain.size, plain_sha256=sealed.plain.sha256,
                 stored_size=sealed.stored.size, stored_sha256=sealed.stored.sha256)
    manifest_path.write_text(json.dumps(manifest, indent=2))


def _verify(env, cfg, folder, *extra):
    return env.cli("verify", "--test-restore", "-b", str(folder), *extra, config=cfg)


@pytest.mark.parametrize("target, algorithm", [("sandbox", "checksum-table"), ("server", "md5")])
def test_good_backup_passes_and_matches_the_source(env, server, sample_db, target, algorithm):
    cfg = _config(env, sample_db, target=target, extra_verify={"checksum": algorithm})
    textfile = env.root / "tenangdb.prom"
    cfg = env.write_config({**yaml.safe_load(cfg.read_text()),
                            "metrics": {"enabled": True, "storage_path": str(env.root / "metrics.json"),
                                        "textfile": str(textfile)}})
    folder = _backup(env, cfg, sample_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    recorded = manifest["content_checks"]
    assert recorded["method"] == "snapshot" and recorded["algorithm"] == checksum.ALGORITHMS[algorithm]
    assert recorded["tables"]["customer"]["rows"] == 2003  # exact, not an estimate

    # A quiet database: the recorded checksum is the source's own.
    loaded = load_config(str(cfg))
    conn = connect(endpoint_from(loaded.settings.database))
    try:
        checksum.prepare_session(conn)
        assert checksum.table_checksum(conn, sample_db, "customer", recorded["algorithm"]) == \
            recorded["tables"]["customer"]
    finally:
        conn.close()

    done = _verify(env, cfg, folder)
    assert done.returncode == 0, done.stderr
    assert f"test-restore:{target}" in done.stdout and "1 tables matched" in done.stdout
    record = _sidecar(folder)
    assert record["ok"] is True and record["method"] == f"test-restore:{target}"
    assert record["restored_rows"] == 2003 and record["tables_checked"] == 1
    assert record["checksums"]["tables"]["customer"] == recorded["tables"]["customer"]
    assert record["restore_seconds"] > 0 and record["failures"] == []
    # Metrics: the outcome and the measured restore time (RTO).
    metrics = textfile.read_text()
    rto = re.search(rf'^tenangdb_restore_test_duration_seconds{{database="{sample_db}"}} (\S+)$', metrics, re.M)
    assert rto and float(rto.group(1)) == pytest.approx(record["restore_seconds"], abs=0.01)
    assert f'tenangdb_restore_test_success_total{{database="{sample_db}"}} 1.0' in metrics
    assert f'tenangdb_verify_last_success_timestamp{{database="{sample_db}"}}' in metrics
    # The sealed folder is untouched: plain verification still passes.
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    assert _left_behind(env, server) == []


def test_two_targets_give_identical_checksums(env, server, sample_db):
    cfg = _config(env, sample_db, encrypted=False)
    folder = _backup(env, cfg, sample_db)
    seen = []
    for target in ("server", "sandbox"):
        done = _verify(env, cfg, folder, "--target", target)
        assert done.returncode == 0, done.stderr
        seen.append(_sidecar(folder)["checksums"])
    assert seen[0] == seen[1]
    assert _left_behind(env, server) == []


def _sql_without_trigger(sql: str) -> str:
    # mariadb-dump writes a trigger as DELIMITER ;; … CREATE … TRIGGER `customer_bi` … ;; DELIMITER ;
    return re.sub(r"DELIMITER ;;\n[^\n]*TRIGGER `?customer_bi`?.*?\nDELIMITER ;\n", "", sql, flags=re.S)


def _sql_without_rows(sql: str) -> str:
    # Drop the row of 'Budi' from the extended INSERT.
    return re.sub(r"\(2,'Budi',NULL\),", "", sql, count=1)


def _sql_with_changed_byte(sql: str) -> str:
    return sql.replace("'Citra'", "'Citrb'", 1)


@pytest.mark.parametrize("damage, reason", [
    ("truncate", r"size is \d+ bytes, the manifest says \d+ \(truncated or damaged\)"),
    ("flip", r"SHA-256 of the stored bytes does not match the manifest"),
    ("wrong_key", r"wrong decryption key"),
    ("trigger", r"trigger 'customer_bi' is listed in the manifest but missing after the restore"),
    ("rows", r"table 'customer' has 2002 rows after the restore, 2003 were recorded while dumping"),
    ("byte", r"table 'customer': content checksum \(checksum-table\) after the restore differs"),
    ("bad_sql", r"the restore did not finish: mariadb failed to load .*\(exit 1\): .*syntax"),
])
def test_damage_is_caught_with_exit_7(env, server, sample_db, damage, reason):
    target = "sandbox" if damage in ("trigger", "byte") else "server"
    cfg = _config(env, sample_db, target=target)
    folder = _backup(env, cfg, sample_db)
    [dump] = [p for p in folder.iterdir() if p.name != "manifest.json"]
    if damage == "truncate":
        os.truncate(dump, dump.stat().st_size - 100)
    elif damage == "flip":
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0x01
        dump.write_bytes(bytes(data))
    elif damage == "wrong_key":
        other = env.root / "other-key.txt"
        assert env.cli("key", "generate", "-o", str(other)).returncode == 0
        cfg = env.write_config({"backup": {"databases": [sample_db], "encryption": {"enabled": True,
                                                                                  "key_file": str(other)}},
                                "verify": {"target": target, "database_prefix": PREFIX}}, name="other.yaml")
    else:
        edit = {"trigger": _sql_without_trigger, "rows": _sql_without_rows, "byte": _sql_with_changed_byte,
                "bad_sql": lambda sql: sql.replace("INSERT INTO `customer`", "INSERT INTO INTO `customer`", 1)}[damage]
        _rewrite_dump(cfg, folder, edit)
        # The tampering is invisible to the file checks: only the restore can tell.
        assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0

    done = _verify(env, cfg, folder)
    assert done.returncode == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: FAILED {sample_db}: backup {folder.name}: "), lines
    assert re.search(reason, lines[-1]), lines[-1]
    record = _sidecar(folder)
    assert record["ok"] is False and re.search(reason, record["failures"][0])
    assert _left_behind(env, server) == []


def _sleeper(tag: str):
    def edit(sql: str) -> str:
        # A valid dump that keeps the loader busy: SIGTERM lands in the middle of the restore.
        head, marker, rest = sql.partition("INSERT INTO `customer`")
        return head + f"SELECT SLEEP(60) AS `{tag}`;\n" + marker + rest
    return edit


@pytest.mark.parametrize("target", ["server", "sandbox"])
def test_sigterm_during_the_restore_leaves_nothing(env, server, sample_db, target):
    cfg = _config(env, sample_db, target=target, encrypted=False)
    folder = _backup(env, cfg, sample_db)
    tag = unique("sleep")
    _rewrite_dump(cfg, folder, _sleeper(tag))
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "verify", "--test-restore", "-b", str(folder)],
                            cwd=env.root, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the loader is inside the SLEEP
            if tag in server.sql("SELECT INFO FROM information_schema.PROCESSLIST") or (
                    target == "sandbox" and _sandbox_sleeping(env, tag)):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the restore never reached the SLEEP")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed early: let tenangdb clean up before it dies
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    assert _left_behind(env, server) == []
    assert tag not in server.sql("SELECT INFO FROM information_schema.PROCESSLIST")  # the load was ended


def _sandbox_sleeping(env, tag: str) -> bool:
    for sock in env.sandboxes.glob("*/mysqld.sock"):
        done = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-N", "-e",
                               "SELECT INFO FROM information_schema.PROCESSLIST"], capture_output=True, text=True)
        if tag in done.stdout:
            return True
    return False


def test_mydumper_backup_test_restore(env, server, needs_mydumper):
    name = unique("plain")
    server.sql(f"""
        CREATE DATABASE `{name}`; USE `{name}`;
        CREATE TABLE item (id INT PRIMARY KEY, label VARCHAR(20) CHARACTER SET latin1, price DECIMAL(8,2),
                           seen TIMESTAMP NULL, raw VARBINARY(8)) ENGINE=InnoDB;
        INSERT INTO item SELECT seq, CONCAT('caf', CHAR(233 USING latin1)), seq / 7, FROM_UNIXTIME(1700000000 + seq),
                                UNHEX(HEX(seq)) FROM seq_1_to_3000;
        CREATE TABLE empty_one (id INT PRIMARY KEY) ENGINE=InnoDB;
        CREATE VIEW cheap AS SELECT id FROM item WHERE price < 10;
    """)
    try:
        cfg = env.write_config({"backup": {"databases": [name], "engine": "mydumper"},
                                "verify": {"database_prefix": PREFIX, "sandbox": {"parent": str(env.sandboxes)}}})
        folder = _backup(env, cfg, name)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["engine"]["name"] == "mydumper"
        assert manifest["content_checks"]["tables"]["item"]["rows"] == 3000
        assert manifest["content_checks"]["tables"]["empty_one"]["rows"] == 0
        for target in ("sandbox", "server"):
            done = _verify(env, cfg, folder, "--target", target)
            assert done.returncode == 0, done.stderr
            assert "2 tables matched" in done.stdout
        assert _left_behind(env, server) == []
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_backup_runs_the_test_restore_and_a_failing_one_exits_7(env, server, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "test_restore": True},
                            "verify": {"target": "server", "database_prefix": PREFIX}})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    assert _sidecar(folder)["method"] == "test-restore:server" and _sidecar(folder)["ok"] is True
    listed = json.loads(env.cli("list", "--json", "--local", config=cfg).stdout)["backups"]
    assert [(b["verified"], b["verified_how"]) for b in listed] == [(True, "test-restore:server")]

    # backup.verify_backup alone: the file checks, recorded the same way.
    cfg = env.write_config({"backup": {"databases": [sample_db], "verify_backup": True, "min_backup_interval": 0}})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    record = _sidecar(env.backups_of(sample_db)[-1])
    assert record["method"] == "checksums" and record["ok"] is True

    # A sandbox that cannot start: the backup is kept, the run says it is unproven.
    cfg = env.write_config({"backup": {"databases": [sample_db], "test_restore": True, "min_backup_interval": 0},
                            "verify": {"target": "sandbox", "sandbox": {"parent": str(env.sandboxes),
                                                                        "options": ["--no-such-option"]}}})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 7, done.stderr
    assert "verification failed:" in done.stderr and "mariadbd exited during start-up" in done.stderr
    assert len(env.backups_of(sample_db)) == 3
    assert _left_behind(env, server) == []


def test_latest_sample_and_bad_input(env, server, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "min_backup_interval": 0}})
    for _ in range(3):
        assert env.cli("backup", "--yes", config=cfg).returncode == 0
    folders = env.backups_of(sample_db)
    done = env.cli("verify", "--latest", "--databases", sample_db, config=cfg)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OK", str(folders[-1])]
    done = env.cli("verify", "--sample", "5", config=cfg)
    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[1] for line in done.stdout.splitlines()) == [str(f) for f in folders[:-1]]
    # One damaged backup among several: exit 7, the others still verified.
    os.truncate(next(p for p in folders[0].iterdir() if p.name != "manifest.json"), 10)
    done = env.cli("verify", "--all", config=cfg)
    assert done.returncode == 7
    assert done.stdout.count("OK ") == 2 and f"FAILED {sample_db}: backup {folders[0].name}: " in done.stdout
    assert "1 of 3 backups failed verification" in done.stderr
    for args, code, said in ((["--latest", "--all"], 2, "Error: give exactly one of"),
                             (["--target", "server", "--latest"], 2, "Error: --target needs --test-restore"),
                             (["--latest", "--databases", "nope"], 7, "error: no backups of nope under")):
        done = env.cli("verify", *args, config=cfg)
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1].startswith(said), done.stderr


def test_writes_between_the_snapshots_mean_no_recorded_counts(env, server, sample_db):
    """A dump tool that commits a write before dumping: commits are held, so the write waits; once
    verify.align_deadline lets them go, our snapshot and the dump's differ, so nothing is
    recorded, the reason is, and a test restore says what it could not compare."""
    wrapper = env.root / "busy-dump"
    client = shutil.which("mariadb")
    login = f"--socket={server.socket}" if server.socket else f"--host={server.host} --port={server.port}"
    wrapper.write_text(f"#!/bin/sh\n{client} --no-defaults {login} -u{server.user} "
                       f"-e 'INSERT INTO `{sample_db}`.customer (name) VALUES (\"late\")' || exit 9\n"
                       f"exec {shutil.which('mariadb-dump')} \"$@\"\n")
    wrapper.chmod(0o755)
    cfg = env.write_config({"backup": {"databases": [sample_db]},
                            "database": {**server.config_section(), "mysqldump_path": str(wrapper)},
                            "verify": {"target": "server", "database_prefix": PREFIX, "align_deadline": "1s"}})
    started = time.monotonic()
    folder = _backup(env, cfg, sample_db)
    assert time.monotonic() - started < 30
    recorded = json.loads((folder / "manifest.json").read_text())["content_checks"]
    assert recorded["method"] is None and "had not opened its snapshot after 1s" in recorded["reason"]
    done = _verify(env, cfg, folder)
    assert done.returncode == 0, done.stderr
    assert "no row counts or checksums were recorded at backup time" in done.stderr
    record = _sidecar(folder)
    assert record["ok"] is True and record["tables_checked"] == 0 and record["restored_rows"] == 2004
    assert _left_behind(env, server) == []


def test_sigterm_during_a_mydumper_test_restore_leaves_nothing(env, server, needs_mydumper, tmp_path):
    name = unique("plain")
    server.sql(f"CREATE DATABASE `{name}`; USE `{name}`; CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB; "
               "INSERT INTO t SELECT seq FROM seq_1_to_100")
    started = tmp_path / "loader-started"
    # A myloader that hangs: the plaintext folder and the scratch database exist when the signal lands.
    loader = tmp_path / "hanging-myloader"
    loader.write_text(f"#!/bin/sh\ncase \"$*\" in *--directory*) touch {started}; exec sleep 120;; esac\n"
                      f"exec {shutil.which('myloader')} \"$@\"\n")
    loader.chmod(0o755)
    try:
        cfg = env.write_config({"backup": {"databases": [name], "engine": "mydumper"},
                                "verify": {"target": "server", "database_prefix": PREFIX}},
                               database=dict(server.config_section(), mydumper={"myloader": {"binary_path": str(loader)}}))
        folder = _backup(env, cfg, name)
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
        proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "verify", "--test-restore", "-b", str(folder)],
                                cwd=env.root, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not started.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert started.exists(), "myloader was never started"
            assert [p for p in folder.parent.iterdir() if p.name.startswith(".tenangdb-restore-")]  # plaintext exists
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err
        assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tenangdb-restore-")]
        assert _left_behind(env, server) == []
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_row_counts_come_from_the_checksum_scan_where_it_reads_each_row_once(env, server):
    name = unique("kinds")
    server.sql(f"""
        CREATE DATABASE `{name}`;
        USE `{name}`;
        CREATE TABLE inno (id INT PRIMARY KEY, y INT AS (id * 2) VIRTUAL, z INT AS (id * 3) STORED, KEY (y));
        INSERT INTO inno (id) SELECT seq FROM seq_1_to_2500; DELETE FROM inno WHERE id % 7 = 0;
        CREATE TABLE my (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM;
        INSERT INTO my SELECT seq, seq FROM seq_1_to_500; DELETE FROM my WHERE id % 3 = 0;
        CREATE TABLE ar (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=Aria;
        INSERT INTO ar SELECT seq, seq FROM seq_1_to_500; DELETE FROM ar WHERE id % 3 = 0;
        CREATE TABLE mem (id INT PRIMARY KEY) ENGINE=MEMORY; INSERT INTO mem SELECT seq FROM seq_1_to_77;
        CREATE TABLE empty_one (id INT PRIMARY KEY);
        CREATE TABLE parts (id INT PRIMARY KEY) PARTITION BY HASH (id) PARTITIONS 4;
        INSERT INTO parts SELECT seq FROM seq_1_to_1000;
        CREATE TABLE versioned (id INT PRIMARY KEY, x INT) WITH SYSTEM VERSIONING;
        INSERT INTO versioned SELECT seq, seq FROM seq_1_to_100;
        UPDATE versioned SET x = x + 1 WHERE id <= 30; DELETE FROM versioned WHERE id > 90;
    """)
    conn = connect(endpoint_from(load_config(str(env.write_config())).settings.database))
    try:
        checksum.prepare_session(conn)

        def rows_read() -> int:
            with conn.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Rows_read'")
                return int(cur.fetchone()[1])
        for table, one_scan in [("inno", True), ("my", True), ("ar", True), ("mem", True), ("empty_one", True),
                                ("parts", False), ("versioned", False)]:
            exact = int(server.sql(f"SELECT COUNT(*) FROM `{name}`.`{table}`"))
            before = rows_read()
            got = checksum.table_checksum(conn, name, table)
            assert got["rows"] == exact, table
            if one_scan:  # the checksum's own scan was counted: no second scan of the table
                assert rows_read() - before == exact, table
            want = server.sql(f"CHECKSUM TABLE `{name}`.`{table}` EXTENDED").split("\t")[1].strip()
            assert got["checksum"] == f"{int(want):08x}", table
    finally:
        conn.close()
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def test_the_sandbox_is_reachable_by_its_private_socket_only():
    """A test restore's server holds the backup's data with a root that has no password: any
    local user could log in over 127.0.0.1, so it does not listen on TCP at all."""
    from tenangdb.mysql.sandbox import start_sandbox
    with start_sandbox(binlog=False) as box:
        assert box.port is None
        assert box.sql("SELECT @@skip_networking").strip() == "1"
        cmdline = open(f"/proc/{box.pid}/cmdline", "rb").read().split(b"\0")
        assert b"--skip-networking" in cmdline and not any(a.startswith(b"--port=") for a in cmdline)
