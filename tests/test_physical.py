"""The physical engine (backup.engine: mariabackup) against a real throwaway server: a backup of
the whole instance sealed as it streams, verified, restored into a new data directory that a
server starts on with every table of the fidelity corpus identical (CHECKSUM TABLE and the
corpus snapshot), test-restored in a sandbox, and a flipped byte in a data page caught (exit 7).
"""

from __future__ import annotations

import contextlib
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
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import TENANGDB, Env, Server, on_a_terminal
from test_failures import _wait_for
from test_restore_progress import _frames
from tenangdb.config.loader import load_config
from tenangdb.mysql.sandbox import start_sandbox
from tenangdb.stream.crypto import load_identities, load_keys
from tenangdb.stream.pipeline import seal, unseal

from fidelity.compare import diff_snapshots, qi, snapshot

CORPUS = Path(__file__).parent / "fidelity" / "corpus.sql"
INSTANCE = "_instance"


@pytest.fixture(scope="module")
def source():
    """A server of our own: a physical backup copies the whole instance, and a test restores it
    next to it. The binary log is on, so the backup point's coordinates are recorded."""
    assert shutil.which("mariabackup") and shutil.which("mbstream"), "mariadb-backup is not installed"
    parent = Path(tempfile.mkdtemp(prefix="phy-", dir="/tmp"))
    box = start_sandbox(binlog=True, parent=parent)
    try:
        box.sql("CREATE DATABASE corpus")
        with open(CORPUS, "rb") as fh:
            done = subprocess.run(box.client_argv("corpus"), stdin=fh, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        box.sql("CREATE DATABASE pages; USE pages; "
                "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB; "
                "INSERT INTO big VALUES (0, 'first');"  # not empty: no bulk insert, whose pages mariabackup re-copies
                "INSERT INTO big SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM seq_1_to_20000;")
        _checkpoint(box)
        yield box, parent
    finally:
        box.stop()
        shutil.rmtree(parent, ignore_errors=True)


def _checkpoint(box) -> None:
    """Wait until InnoDB's checkpoint is past the load. Otherwise the redo log a backup copies
    holds every page of the new tables whole, and the prepare rewrites a damaged page from it:
    the flipped byte of the corruption test would be repaired, not caught."""
    def lsns() -> tuple[int, int]:
        status = box.sql("SHOW ENGINE INNODB STATUS")
        return (int(re.search(r"Log sequence number\s+(\d+)", status)[1]),
                int(re.search(r"Last checkpoint at\s+(\d+)", status)[1]))
    loaded, _ = lsns()
    box.sql("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; SET GLOBAL innodb_max_dirty_pages_pct = 0")
    deadline = time.monotonic() + 60
    while lsns()[1] < loaded:
        assert time.monotonic() < deadline, "InnoDB did not checkpoint within 60 s"
        time.sleep(0.3)


@pytest.fixture
def penv(tmp_path, source) -> Env:
    box, _ = source
    return Env(root=tmp_path, server=Server(socket=str(box.socket_path), host="localhost", port=box.port,
                                            user="root", password="", box=box))


def _config(env: Env, parent: Path, physical: dict | None = None) -> Path:
    return env.write_config({"backup": {"engine": "mariabackup", "databases": ["corpus"],
                                        "encryption": {"enabled": True, "key_file": str(env.key())},
                                        **({"physical": physical} if physical else {})},
                             "verify": {"target": "sandbox", "sandbox": {"parent": str(parent)}}})


def _backup(env: Env, cfg: Path) -> Path:
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(INSTANCE)
    return folder


def _checksums(box, database: str) -> dict[str, str]:
    tables = [t for t in box.sql(f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{database}' "
                                 "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')").split("\n") if t]
    assert tables
    out = {}
    for table in tables:
        line = box.sql(f"CHECKSUM TABLE {qi(database)}.{qi(table)} EXTENDED")
        out[table] = line.split("\t")[-1].strip()
    return out


def test_backup_verify_restore_into_a_new_datadir(penv, source):
    box, parent = source
    cfg = _config(penv, parent)
    folder = _backup(penv, cfg)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["engine"]["name"] == "mariabackup" and manifest["engine"]["label"] == "physical"
    assert manifest["database"] == INSTANCE
    [entry] = manifest["files"]
    assert entry["name"] == "_instance.mbstream.zst.age"
    assert manifest["engine"]["lsn"]["backup_type"] == "full-backuped"
    assert manifest["engine"]["lsn"]["to_lsn"] > 0
    assert manifest["binlog"]["file"].startswith("binlog.") and manifest["binlog"]["position"] > 0
    assert manifest["binlog"]["gtid"]
    assert {"corpus", "pages", "mysql"} <= set(manifest["instance"]["databases"])
    assert any(t["name"] == "big" for t in manifest["instance"]["databases"]["pages"]["tables"])
    # Sealed as it streamed: the backup folder holds the manifest and the one sealed file.
    assert sorted(p.name for p in folder.iterdir()) == sorted(["manifest.json", entry["name"]])
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())

    done = penv.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 0, done.stderr
    done = penv.cli("list", config=cfg)
    assert done.returncode == 0 and folder.name in done.stdout, done.stdout + done.stderr

    # Into a database it cannot go: said at once, before the server or a byte of the backup.
    done = penv.cli("restore", "-b", str(folder), "-d", "somewhere", config=cfg)
    assert done.returncode == 2 and "--datadir" in done.stderr, done.stderr

    restored = penv.root / "restored"
    done = penv.cli("restore", "-b", str(folder), "--datadir", str(restored), config=cfg)
    assert done.returncode == 0, done.stderr
    assert "start a server on it: mariadbd" in done.stdout
    assert not [p for p in penv.root.iterdir() if p.name.startswith(".")], "a private folder was left behind"
    # With its grant tables (root has no password on the source): the events are loaded too.
    copy = start_sandbox(binlog=False, parent=parent, datadir=restored, skip_grants=False)
    try:
        for database in ("corpus", "pages"):
            assert _checksums(copy, database) == _checksums(box, database)
        # A bulk INSERT reserves AUTO_INCREMENT values in memory (the source shows 32); InnoDB
        # persists the last one used, so a restarted server, the source included, shows 21.
        diffs = [d for d in diff_snapshots(snapshot(box, "corpus"), snapshot(copy, "corpus"))
                 if not (d.startswith("tables.auto_inc.create:") and "AUTO_INCREMENT=32" in d
                         and "AUTO_INCREMENT=21" in d)]
        assert diffs == [], "\n".join(diffs)
    finally:
        copy.stop(graceful=False)
    assert restored.is_dir(), "stopping the server must leave the restored data directory alone"

    # Never over data: the directory just restored, and the live server's own.
    done = penv.cli("restore", "-b", str(folder), "--datadir", str(restored), config=cfg)
    assert done.returncode == 2 and "a physical restore goes into a new, empty data directory" in done.stderr
    live = box.base / "data"
    done = penv.cli("restore", "-b", str(folder), "--datadir", str(live), config=cfg)
    assert done.returncode == 2 and "holds a server's data files" in done.stderr


def test_a_full_backup_on_a_terminal_shows_the_bytes_copied_of_the_data_directory(penv, source):
    """The row of `_instance` has a total: the files of the server's data directory that
    mariabackup copies (its redo log and temporary tablespace left out), close to what it streams."""
    box, parent = source
    cfg = _config(penv, parent)
    status, screen = on_a_terminal(["--config", str(cfg), "backup", "--yes"], [], penv.root)
    assert status == 0, screen
    [folder] = penv.backups_of(INSTANCE)
    streamed = _manifest(folder)["files"][0]["plain_size"]
    said = re.search(r"_instance: copying the data directory \(about ([\d.]+) MiB\)", screen)
    assert said, screen
    total = float(said[1]) * 2**20
    assert 0.8 * total <= streamed <= 1.25 * total, (streamed, total)
    rows = [line for line in _frames(screen) if line.startswith(INSTANCE)]
    assert any(re.search(r"\d+\.\d MiB/\d+\.\d MiB +\d+%", row) for row in rows), rows
    assert "done" in rows[-1] and "/" in rows[-1], rows[-1]


def test_test_restore_passes_and_a_flipped_byte_in_a_data_page_fails(penv, source):
    box, parent = source
    cfg = _config(penv, parent)
    folder = _backup(penv, cfg)
    done = penv.cli("verify", "--test-restore", "-b", str(folder), config=cfg)
    assert done.returncode == 0, done.stderr
    assert "CHECK TABLE" in done.stdout

    _flip_byte_in_page(cfg, folder, "pages/big.ibd")
    done = penv.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 0, "the reseal must leave hashes that match: only the test restore can tell"
    done = penv.cli("verify", "--test-restore", "-b", str(folder), config=cfg)
    assert done.returncode == 7, done.stdout + done.stderr
    assert "big" in done.stdout + done.stderr
    assert [p for p in parent.glob("tenangdb-sandbox-*") if p != box.base] == [], "the sandbox was left behind"
    print(done.stdout + done.stderr)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tenangdb-restore")]


def _flip_byte_in_page(cfg: Path, folder: Path, member: str) -> None:
    """Unseal the stream, unpack it, flip one byte in the middle of a data page of `member`,
    stream it again with mbstream -c, seal it to the same key and fix the manifest's hashes."""
    loaded = load_config(str(cfg))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [entry] = manifest["files"]
    path = folder / entry["name"]
    plain = io.BytesIO()
    unseal(path, compression="zstd", identities=load_identities(loaded.settings.backup.encryption),
           forward=plain.write)
    with tempfile.TemporaryDirectory(dir=folder.parent.parent) as work:
        subprocess.run(["mbstream", "-x", "-C", work], input=plain.getvalue(), check=True)
        target = Path(work) / member
        if not target.exists():
            # A table bulk-loaded shortly before the backup (INSERT … SELECT into an empty table
            # skips the undo log) is copied again at the end as `.new`; the prepare renames it.
            target = target.with_suffix(".new")
        data = bytearray(target.read_bytes())
        page = 16384
        assert len(data) > 5 * page
        data[4 * page + page // 2] ^= 0xFF  # a leaf page of the clustered index, in the middle of its records
        target.write_bytes(bytes(data))
        names = sorted(str(p.relative_to(work)) for p in Path(work).rglob("*") if p.is_file())
        stream = subprocess.run(["mbstream", "-c", *names], cwd=work, capture_output=True, check=True).stdout
    path.unlink()
    keys = load_keys(loaded.settings.backup.encryption)
    sealed = seal(io.BytesIO(stream).read, path, compression="zstd", level=manifest["compression"]["level"],
                  recipients=keys.recipients)
    entry.update(plain_size=sealed.plain.size, plain_sha256=sealed.plain.sha256,
                 stored_size=sealed.stored.size, stored_sha256=sealed.stored.sha256)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    os.chmod(manifest_path, 0o640)


@contextlib.contextmanager
def _held(box):
    """A long write into a MyISAM table: mariabackup copies InnoDB (streamed and sealed as it
    goes), then waits at BACKUP STAGE BLOCK_DDL for the statement to end: a backup caught midway."""
    box.sql("USE pages; CREATE TABLE IF NOT EXISTS held (id INT) ENGINE=MyISAM; "
            # Incompressible rows: sealed bytes reach the disk before mariabackup waits.
            "CREATE TABLE IF NOT EXISTS pages.noise (id INT PRIMARY KEY, b BLOB) ENGINE=InnoDB; "
            "INSERT IGNORE INTO pages.noise SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_4000")
    holder = subprocess.Popen(box.client_argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
    holder.stdin.write("INSERT INTO pages.held SELECT SLEEP(120);\n")
    holder.stdin.flush()
    try:
        yield
    finally:
        holder.kill()
        holder.wait()
        for query in box.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                             "'INSERT INTO pages.held%'").split():
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                box.sql(f"KILL QUERY {query}")


def _mariabackups(where: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(where).encode() in (proc / "cmdline").read_bytes() \
                    and b"mariabackup" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _sealed_midway(env: Env, box) -> bool:
    """mariabackup waits for the held lock, with sealed bytes already written."""
    waiting = box.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'BACKUP STAGE%' "
                      "AND STATE LIKE '%lock%'").strip() != "0"
    return waiting and any(p.stat().st_size > 0 for p in env.backups.rglob("*.partial/_instance.mbstream.zst.age"))


def _only_sealed_bytes(env: Env) -> None:
    """Whatever is left under the instance's folder is age-encrypted: no plaintext of the datadir."""
    for path in (env.backups / INSTANCE).rglob("*"):
        if path.is_file() and path.stat().st_size:
            assert path.read_bytes()[:21] == b"age-encryption.org/v1", f"plaintext left behind: {path}"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_an_interrupted_backup_leaves_no_backup_and_no_plaintext(penv, source, how):
    box, parent = source
    cfg = _config(penv, parent)
    with _held(box):
        proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup", "--yes"], cwd=penv.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert _wait_for(lambda: _sealed_midway(penv, box), timeout=30), "the backup never got midway"
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert _wait_for(lambda: not _mariabackups(penv.backups), timeout=10), "mariabackup outlived the run"
    assert not penv.backups_of(INSTANCE), "a complete-looking backup was left"
    _only_sealed_bytes(penv)
    if how == "SIGTERM":
        assert proc.returncode == 130, err
        assert not list(penv.backups.rglob("*.partial")), "the unfinished backup was not removed"
        return
    assert list(penv.backups.rglob("*.partial"))  # no chance to clean up: the next run does
    done = penv.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "removed an unfinished backup" in done.stderr
    assert not list(penv.backups.rglob("*.partial")) and len(penv.backups_of(INSTANCE)) == 1


def test_doctor_checks_the_datadir_and_says_the_whole_instance_is_backed_up(penv, source):
    box, parent = source
    cfg = _config(penv, parent)
    done = penv.cli("doctor", "--json", config=cfg)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    physical = checks["physical"]
    assert physical["status"] == "pass", physical
    assert str(box.base / "data") in physical["message"]
    assert "backup.databases (corpus) does not narrow it" in physical["message"]
    done = penv.cli("backup", "--dry-run", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "databases: the whole instance (a physical backup; backup.databases does not narrow it)" in done.stdout
    assert "engine: mariabackup" in done.stdout
    grants = checks["database-grants"]
    assert "SELECT on" not in grants["message"] or grants["status"] != "fail", grants


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_a_chain_of_two_increments_restores_to_the_last_and_a_broken_link_is_caught(penv, source):
    """Full + 2 increments with writes between them: verify follows every link, a restore and a
    test restore apply the increments in order and give the state after the last one; a
    corrupted or missing increment fails verify and restore (exit 7) before anything is
    restored, and the next backup is a full one, saying why."""
    box, parent = source
    cfg = _config(penv, parent, {"incremental": {"enabled": True, "max_increments": 4}})
    box.sql("CREATE DATABASE IF NOT EXISTS chain; USE chain; "
            "CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; "
            "INSERT INTO t SELECT seq, seq FROM seq_1_to_30000; "
            "CREATE TABLE m (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=MyISAM; INSERT INTO m VALUES (1, 'one')")
    folders = [_backup_one_more(penv, cfg)]
    box.sql("USE chain; UPDATE t SET v = v * 2 WHERE id <= 500; INSERT INTO m VALUES (2, 'two'); "
            "CREATE TABLE later (x INT) ENGINE=InnoDB; INSERT INTO later VALUES (7)")
    folders.append(_backup_one_more(penv, cfg))
    box.sql("USE chain; DELETE FROM t WHERE id > 29500; UPDATE t SET v = -v WHERE id % 7 = 0; "
            "UPDATE m SET v = 'deux' WHERE id = 2; INSERT INTO later VALUES (8)")
    # The changed pages on disk, not only in the redo log, so the increment carries them as
    # pages (the corruption below flips a byte in one), whatever the machine's load.
    _checkpoint(box)
    folders.append(_backup_one_more(penv, cfg))
    want = _checksums(box, "chain")

    full, first, last = (_manifest(f) for f in folders)
    assert "chain" not in full["engine"] and full["engine"]["lsn"]["backup_type"] == "full-backuped"
    assert first["engine"]["chain"] == {"parent": full["name"], "full": full["name"], "depth": 1}
    assert last["engine"]["chain"] == {"parent": first["name"], "full": full["name"], "depth": 2}
    for parent_m, child in ((full, first), (first, last)):
        assert child["engine"]["lsn"]["backup_type"] == "incremental"
        assert child["engine"]["lsn"]["from_lsn"] == parent_m["engine"]["lsn"]["to_lsn"]
    # An increment is smaller than the full backup it goes on.
    assert last["files"][0]["plain_size"] < full["files"][0]["plain_size"]

    done = penv.cli("verify", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 0, done.stderr
    # Every backup once: the full one is read once, not again for each increment.
    done = penv.cli("--log-level", "debug", "verify", "--all", config=cfg)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"verified {folders[0]} ") == 1, done.stderr
    restored = penv.root / "restored"
    done = penv.cli("restore", "-b", str(folders[2]), "--datadir", str(restored), config=cfg)
    assert done.returncode == 0, done.stderr
    copy = start_sandbox(binlog=False, parent=parent, datadir=restored)
    try:
        assert _checksums(copy, "chain") == want
        assert copy.sql("SELECT GROUP_CONCAT(x ORDER BY x) FROM chain.later").strip() == "7,8"
    finally:
        copy.stop(graceful=False)
    done = penv.cli("verify", "--test-restore", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr

    # A flipped byte in a changed page the last increment carries (re-sealed, hashes fixed):
    # the hashes cannot tell, the test restore of the chain does.
    _flip_byte_in_page(cfg, folders[2], "chain/t.ibd.delta")
    done = penv.cli("verify", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 0, done.stderr
    done = penv.cli("verify", "--test-restore", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 7, done.stdout + done.stderr
    # Named either by mariabackup's prepare (its own reason, not the clean-up noise it ends
    # with) or, when the damaged page is applied cleanly, by CHECK TABLE in the sandbox.
    assert ("corrupted page" in done.stderr and "chain/t.ibd" in done.stderr) \
        or "CHECK TABLE chain.t: Corrupt" in done.stderr, done.stderr

    # A corrupted link: one stored byte of the first increment.
    stored = folders[1] / first["files"][0]["name"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    done = penv.cli("verify", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 7, done.stdout + done.stderr
    assert f"the chain is broken at {first['name']}" in done.stdout + done.stderr
    fresh = penv.root / "fresh"
    done = penv.cli("restore", "-b", str(folders[2]), "--datadir", str(fresh), config=cfg)
    assert done.returncode == 7 and first["name"] in done.stderr, done.stderr
    assert not fresh.exists() or not any(fresh.iterdir()), "something was restored from a broken chain"
    done = penv.cli("verify", "--test-restore", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 7 and first["name"] in done.stdout + done.stderr, done.stdout + done.stderr

    # A missing link: the first increment gone.
    shutil.move(str(folders[1]), str(penv.root / "away"))
    done = penv.cli("verify", "-b", str(folders[2]), config=cfg)
    assert done.returncode == 7, done.stdout + done.stderr
    assert f"needs its parent {first['name']}, which is missing" in done.stdout + done.stderr
    done = penv.cli("restore", "-b", str(folders[2]), "--datadir", str(fresh), config=cfg)
    assert done.returncode == 7 and "missing" in done.stderr, done.stderr
    assert not fresh.exists() or not any(fresh.iterdir())

    # The next backup cannot go on a broken chain: a full one, and the log says why.
    done = penv.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "a full backup: the newest physical backup" in done.stderr and "missing" in done.stderr, done.stderr
    newest = max(penv.backups_of(INSTANCE), key=lambda p: p.name)
    assert "chain" not in _manifest(newest)["engine"]


def _backup_one_more(env: Env, cfg: Path) -> Path:
    before = set(env.backups_of(INSTANCE))
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = set(env.backups_of(INSTANCE)) - before
    return folder


def _age(folder: Path, days: int) -> None:
    """The backup in `folder` (here or in a local-folder remote) made `days` ago, for retention."""
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["started_at"] = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    path.write_text(json.dumps(data, indent=2))


def test_cleanup_keeps_the_chain_a_kept_increment_needs(penv, source):
    """A full backup and its first increment 30 days old, the second increment new: cleanup
    (max_age_days 7) keeps all three, since the kept increment restores only with its chain;
    once nothing kept needs the old chain, it goes whole."""
    box, parent = source
    cfg = _config(penv, parent, {"incremental": {"enabled": True, "full_every": "90d"}})
    folders = [_backup_one_more(penv, cfg) for _ in range(3)]
    assert _manifest(folders[2])["engine"]["chain"]["depth"] == 2

    for folder in folders[:2]:
        _age(folder, 30)
    done = penv.cli("list", "--json", config=cfg)
    assert done.returncode == 0, done.stderr
    done = penv.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(f.is_dir() for f in folders), done.stdout + done.stderr
    assert "needed by the kept increment" in done.stdout + done.stderr

    # A new full backup (full_every passed for the chain's full), and the old chain ages out whole.
    _age(folders[2], 30)
    cfg = _config(penv, parent, {"incremental": {"enabled": True, "full_every": "7d"}})
    newest = _backup_one_more(penv, cfg)
    assert "chain" not in _manifest(newest)["engine"]
    done = penv.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [f.is_dir() for f in folders] == [False, False, False] and newest.is_dir()


def test_a_remote_increment_is_checked_and_restored_with_its_remote_chain_which_cleanup_keeps(penv, source,
                                                                                               tmp_path):
    """verify --from-remote of an increment downloads its parents from the remote too, and a
    link missing or damaged there fails it (7) although the local copies are whole; its test
    restore applies the remote chain; remote retention keeps the parents of a kept remote
    increment, and expires the chain as a whole once nothing kept needs it."""
    box, parent = source
    offsite, rclone_config = tmp_path / "offsite", tmp_path / "rclone.conf"
    rclone_config.write_text("")
    rclone_config.chmod(0o600)
    cfg = penv.write_config({
        "backup": {"engine": "mariabackup", "databases": ["corpus"],
                   "encryption": {"enabled": True, "key_file": str(penv.key())},
                   "physical": {"incremental": {"enabled": True, "full_every": "90d", "max_increments": 2}}},
        "upload": {"enabled": True, "destination": str(offsite), "rclone_config_path": str(rclone_config),
                   "retry_delay": 0, "timeout": 60},
        "verify": {"target": "sandbox", "sandbox": {"parent": str(parent)}}})
    box.sql("CREATE DATABASE IF NOT EXISTS remote_chain; CREATE TABLE IF NOT EXISTS remote_chain.t "
            "(id INT PRIMARY KEY, v INT) ENGINE=InnoDB; DELETE FROM remote_chain.t; "
            "INSERT INTO remote_chain.t VALUES (1, 1)")
    folders = []
    for value in (2, 3, None):
        folders.append(_backup_one_more(penv, cfg))
        if value is not None:
            box.sql(f"INSERT INTO remote_chain.t VALUES ({value}, {value})")
    rels = [f.relative_to(penv.backups).as_posix() for f in folders]
    names = [f.name for f in folders]
    assert [(offsite / rel / "manifest.json").is_file() for rel in rels] == [True] * 3
    assert _manifest(folders[2])["engine"]["chain"]["depth"] == 2

    def verify_remote() -> subprocess.CompletedProcess:
        return penv.cli("verify", "--from-remote", "-b", f"remote:{rels[2]}", config=cfg)

    done = verify_remote()
    assert done.returncode == 0, done.stderr
    for rel in rels[:2]:
        assert f"downloading {offsite / rel}, which" in done.stderr, done.stderr

    # The remote's first increment gone, the local one still here: the remote chain is broken.
    shutil.move(str(offsite / rels[1]), str(tmp_path / "aside"))
    done = verify_remote()
    assert done.returncode == 7, done.stderr
    assert f"needs its parent {names[1]}, which is missing" in done.stderr, done.stderr
    assert "tenangdb-remote-" not in done.stderr  # the remote copy is named, not the download
    shutil.move(str(tmp_path / "aside"), str(offsite / rels[1]))

    # A stored byte of the remote full backup flipped (the local one whole): caught in the chain.
    stored = offsite / rels[0] / _manifest(folders[0])["files"][0]["name"]
    good = stored.read_bytes()
    stored.write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 1]) + good[len(good) // 2 + 1:])
    done = verify_remote()
    assert done.returncode == 7, done.stderr
    assert f"the chain is broken at {names[0]}" in done.stderr and str(offsite / rels[0]) in done.stderr, done.stderr
    stored.write_bytes(good)
    done = verify_remote()  # proven again: the remote record says so for the listing and cleanup
    assert done.returncode == 0, done.stderr

    # The test restore prepares the remote full backup and applies both remote increments.
    done = penv.cli("verify", "--from-remote", "--test-restore", "-b", f"remote:{rels[2]}", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr

    # Full and first increment past remote_retention_days (30) on the remote, the second new:
    # all three stay there, the old two for the kept one.
    for rel in rels[:2]:
        _age(offsite / rel, 40)
    done = penv.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all((offsite / rel / "manifest.json").is_file() for rel in rels), done.stdout + done.stderr
    assert f"needed by the kept increment {names[2]} (its chain)" in done.stdout + done.stderr
    # A new full backup (max_increments reached) and the old chain aged: it goes from the
    # remote as a whole (the local copies are young and stay).
    newest = _backup_one_more(penv, cfg)
    assert "chain" not in _manifest(newest)["engine"]
    _age(offsite / rels[2], 40)
    done = penv.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(offsite / rel).exists() for rel in rels] == [False] * 3, done.stdout + done.stderr
    assert (offsite / newest.relative_to(penv.backups) / "manifest.json").is_file()
    assert all(folder.is_dir() for folder in folders)
    box.sql("DROP DATABASE remote_chain")


@contextlib.contextmanager
def _modes_restored(paths: list[Path]):
    """Put back the owner group and mode of every path below `paths` (the sandbox's own data
    directory, opened up by a test for a service user to read)."""
    saved = {}
    for top in paths:
        for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
            st = path.lstat()
            saved[path] = (st.st_gid, stat.S_IMODE(st.st_mode))
    try:
        yield
    finally:
        for path, (gid, mode) in saved.items():
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, -1, gid, follow_symlinks=False)
                os.chmod(path, mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="changes the group of the sandbox's files")
def test_init_for_mariabackup_checks_the_data_directory_as_the_unit_will_read_it(penv, source, tmp_path):
    """`init --engine mariabackup --deploy-systemd` says what doctor says of the data directory,
    for the service user with the unit's groups, and the backup unit binds it in read-only
    (it lives under /tmp here, which PrivateTmp hides), with the directory's group."""
    import grp

    from test_init import init_argv, units_of

    box, _ = source
    data = box.base / "data"
    grp.getgrnam("mysql")  # the server package's group, which the unit is given
    before = data.stat().st_gid
    argv = init_argv(penv, "root", "corpus", "--engine", "mariabackup", "--deploy-systemd", "--systemd-user",
                     "tdbsvc", "--dry-run")

    def init() -> tuple[str, dict[str, list[str]]]:
        done = penv.cli(*argv)
        assert done.returncode == 0, done.stderr
        assert "engine: mariabackup" in done.stdout  # written to the config
        unit = done.stdout.split("# --- /etc/systemd/system/tenangdb.service\n", 1)[1].split("# --- ", 1)[0]
        service: dict[str, list[str]] = {}
        for section, key, value in units_of(unit):
            if section == "Service":
                service.setdefault(key, []).append(value)
        verify = done.stdout.split("# --- /etc/systemd/system/tenangdb-verify.service\n", 1)[1].split("# --- ", 1)[0]
        assert "BindReadOnlyPaths" not in verify and "SupplementaryGroups" not in verify  # the backup unit's alone
        return done.stderr, service

    # As the sandbox made it: root's group, folders 0700: the service user cannot read it.
    said, service = init()
    assert f"note: mariabackup reads the server's data directory {data}" in said, said
    assert "backup.databases (corpus) does not narrow it" in said
    assert re.search(r"warning: the service user tdbsvc cannot (read|reach) .*which mariabackup copies", said), said
    assert "fix: give the data directory a group the backup user is in" in said
    assert service["BindReadOnlyPaths"] == [str(data)] and "SupplementaryGroups" not in service, service

    opened = [data, *data.parents][:3]  # the data directory and the sandbox's private folders above it
    with _modes_restored(opened):
        for folder in opened[1:]:
            os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | 0o011)
        subprocess.run(["chgrp", "-R", "mysql", str(data)], check=True)
        subprocess.run(["chmod", "-R", "g+rX", str(data)], check=True)
        said, service = init()
        assert "tenangdb.service reads it read-only, as a member of its group mysql" in said, said
        assert "cannot read" not in said, said
        assert service["SupplementaryGroups"] == ["mysql"] and service["BindReadOnlyPaths"] == [str(data)]

        # A database folder made 0700 (the server's default for new ones): named, and the fix
        # keeps the databases made later readable too.
        os.chmod(data / "corpus", 0o700)
        said, _ = init()
        assert f"the service user tdbsvc cannot read {data / 'corpus'}, in the server's data directory" in said, said
        assert "fix: give its group mysql read access (chmod -R g+rX" in said and "UMASK_DIR=0750" in said

        # doctor judges the installed unit the same way: its user with SupplementaryGroups=, and
        # whether its sandboxing hides the folder.
        units = tmp_path / "units"
        units.mkdir()
        cfg = _config(penv, source[1])
        base = "\n".join(["[Service]", "User=nobody", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                          "SupplementaryGroups=mysql"])

        def doctor(unit: str) -> dict:
            (units / "tenangdb.service").write_text(unit + "\n")
            done = penv.cli("doctor", "--json", "--unit-dir", str(units), config=cfg)
            return {c["name"]: c for c in json.loads(done.stdout)["checks"]}["physical"]

        found = doctor(f"{base}\nBindReadOnlyPaths={data}")
        assert found["status"] == "fail" and "the service user nobody (tenangdb.service) cannot read" in \
            found["message"] and "corpus" in found["message"], found
        os.chmod(data / "corpus", 0o750)
        assert doctor(f"{base}\nBindReadOnlyPaths={data}")["status"] == "pass"
        found = doctor(base)
        assert found["status"] == "fail" and "PrivateTmp=yes hides the server's data directory" in found["message"]
        found = doctor(base.replace("SupplementaryGroups=mysql", "") + f"\nBindReadOnlyPaths={data}")
        assert found["status"] == "fail" and "nobody" in found["message"], found
    assert data.stat().st_gid == before  # the sandbox's folders as they were


@contextlib.contextmanager
def _looker(box):
    """An account of the source (over the socket and over TCP on loopback) that may read `pages`
    alone: a restored instance started with its own grant tables lets it in, and no further."""
    box.sql("".join(f"CREATE OR REPLACE USER 'looker'@'{host}' IDENTIFIED BY 'pw-look'; "
                    f"GRANT SELECT ON pages.* TO 'looker'@'{host}'; " for host in ("localhost", "127.0.0.1")))
    try:
        yield "looker", "pw-look"
    finally:
        box.sql("DROP USER IF EXISTS 'looker'@'localhost'; DROP USER IF EXISTS 'looker'@'127.0.0.1'")


@contextlib.contextmanager
def _serving(env: Env, cfg: Path, *args: str):
    """`restore ... --start` in the background, its input at end of file from the start (no
    terminal): the process and what it printed up to the line saying how to connect. Killed
    on leaving the block if it still runs."""
    log = open(env.root / "serving.err", "w")  # noqa: SIM115 - the child writes it until it ends
    proc = subprocess.Popen([*TENANGDB, "--config", str(cfg), "restore", *args, "--start"], cwd=env.root,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")})
    log.close()
    try:
        said = ""
        for line in proc.stdout:
            said += line
            if line.startswith("Ctrl-C"):
                break
        else:
            proc.wait(timeout=60)
            raise AssertionError(f"restore --start ended ({proc.returncode}) without serving: {said}"
                                 + (env.root / "serving.err").read_text())
        yield proc, said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ended_cleanly(env: Env, proc: subprocess.Popen, datadir: Path, how: str, out: str) -> None:
    assert proc.returncode == 0, (env.root / "serving.err").read_text()
    assert f"the server on {datadir} was {how}; start a server on it: mariadbd" in out, out


def _client(argv: list[str], user: str, password: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mariadb", "--no-defaults", *argv, "-u", user, *([f"-p{password}"] if password else []),
                           "-N", "-B", "-e", sql], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_restore_start_serves_the_instance_with_its_own_accounts_until_sigterm(penv, source):
    """`restore --datadir DIR --start`: a server on DIR with the instance's own grant tables, on a
    private socket with no TCP; an account of the source logs in with its password and sees what
    it was granted; end of input does not stop it, SIGTERM shuts it down cleanly (exit 0), and DIR
    starts again, owned by the server's user as before."""
    box, parent = source
    with _looker(box) as (user, password):
        cfg = _config(penv, parent)
        folder = _backup(penv, cfg)
        want = _checksums(box, "pages")
        restored = penv.root / "restored"
        with _serving(penv, cfg, "-b", str(folder), "--datadir", str(restored)) as (proc, said):
            assert f"OK {folder} -> data directory {restored}" in said, said
            sock = Path(re.search(r"^connect: mariadb --socket=(\S+) -u USER -p$", said, re.M)[1])
            pid = int(re.search(r"\(PID (\d+)\)", said)[1])
            assert "only (no TCP)" in said and _alive(pid)
            assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
            # (In one statement with COUNT(*), MariaDB 10.11 shows @@skip_networking as 0.)
            seen = _client([f"--socket={sock}"], user, password, "SELECT COUNT(*) FROM pages.big; "
                           "SELECT @@skip_networking, @@port")
            assert seen.returncode == 0, seen.stderr
            assert seen.stdout.split() == [box.sql("SELECT COUNT(*) FROM pages.big").strip(), "1", "0"]
            # Its grant tables are on: a wrong password and an ungranted database are refused.
            wrong = _client([f"--socket={sock}"], user, "not-it", "SELECT 1")
            assert wrong.returncode != 0 and "Access denied" in wrong.stderr, wrong.stderr
            other = _client([f"--socket={sock}"], user, password, "SELECT COUNT(*) FROM mysql.user")
            assert other.returncode != 0 and "denied" in other.stderr, other.stderr
            time.sleep(1.5)
            assert proc.poll() is None, "end of input stopped it"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=300)
        _ended_cleanly(penv, proc, restored, "shut down cleanly", out)
        assert not _alive(pid) and not sock.parent.exists(), "the server or its folder outlived the run"
        if os.geteuid() == 0:  # given back to the server's user after our server, run as root, wrote in it
            owners = {p.stat().st_uid for p in [restored, *restored.rglob("*")]}
            assert owners == {restored.stat().st_uid} and restored.stat().st_uid != 0, owners
        copy = start_sandbox(binlog=False, parent=parent, datadir=restored, skip_grants=False)
        try:
            assert _checksums(copy, "pages") == want
        finally:
            copy.stop(graceful=False)


def test_restore_start_with_a_port_listens_on_loopback_and_dies_with_a_killed_run(penv, source):
    """--port N: TCP on 127.0.0.1:N alone, for the source's accounts; a kill -9 of the run takes the
    server with it, and the next command removes the server's folder."""
    from remotes import free_port

    box, parent = source
    with _looker(box) as (user, password):
        cfg = _config(penv, parent)
        folder = _backup(penv, cfg)
        port = free_port()
        with _serving(penv, cfg, "-b", str(folder), "--datadir", str(penv.root / "looked"), "--port",
                      str(port)) as (proc, said):
            pid = int(re.search(r"\(PID (\d+)\)", said)[1])
            assert f"and on 127.0.0.1:{port}" in said and f"mariadb -h 127.0.0.1 -P {port} -u USER -p" in said, said
            sock = Path(re.search(r"--socket=(\S+)", said)[1])
            seen = _client(["-h", "127.0.0.1", "-P", str(port), "--protocol=TCP"], user, password,
                           "SELECT @@bind_address, @@port, @@skip_networking")
            assert seen.returncode == 0, seen.stderr
            assert seen.stdout.split() == ["127.0.0.1", str(port), "0"]
            proc.kill()
            proc.wait()
    assert _wait_for(lambda: not _alive(pid), timeout=10), "the server outlived the killed run"
    assert sock.parent.exists()  # no chance to clean up: the next command does
    done = penv.cli("list", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "removed sandbox" in done.stderr, done.stderr
    assert not sock.parent.exists()


def test_a_shutdown_from_a_client_ends_restore_start_with_exit_0(penv, source):
    """The operator may stop the server from a client instead (SHUTDOWN): the run notices, checks
    the server's log for a clean shutdown, and ends as after Ctrl-C."""
    box, parent = source
    cfg = _config(penv, parent)
    folder = _backup(penv, cfg)
    restored = penv.root / "restored"
    with _serving(penv, cfg, "-b", str(folder), "--datadir", str(restored)) as (proc, said):
        sock = Path(re.search(r"--socket=(\S+)", said)[1])
        # root@localhost of the source has no password (its sandbox's), so of the copy too.
        done = _client([f"--socket={sock}"], "root", "", "SHUTDOWN")
        assert done.returncode == 0, done.stderr
        out, _ = proc.communicate(timeout=120)
    _ended_cleanly(penv, proc, restored, "shut down from a client", out)
    assert not sock.parent.exists()


def test_start_and_port_go_with_datadir(penv, source):
    _, parent = source
    cfg = _config(penv, parent)
    for args, said in ((["-b", "x", "--start"], "--start and --port go with --datadir"),
                       (["-b", "x", "--datadir", "d", "--port", "3307"], "--port goes with --start"),
                       (["--datadir", "d", "--to-time", "2024-01-01 00:00:00", "--dry-run", "--start"],
                        "no --start with it")):
        done = penv.cli("restore", *args, config=cfg)
        assert done.returncode == 2 and said in done.stderr, done.stderr
