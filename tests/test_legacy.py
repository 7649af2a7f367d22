"""Backups the original TenangDB made, in its layout and with its tools' own output: a plain
.sql, a tar.gz of one, a mydumper folder (compressed files, as its default wrote) and a tar.gz
of that. Each restores with the same CHECKSUM TABLE as its source; list shows them as legacy,
verify says what it could and could not prove, and cleanup expires them by their name's time."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import made_database, unique


@pytest.fixture
def legacy_db(server):
    yield from made_database(server, "legacy", """
        CREATE TABLE item (id INT PRIMARY KEY, label VARCHAR(40), price DECIMAL(10,2), note TEXT) ENGINE=InnoDB;
        INSERT INTO item SELECT seq, CONCAT('item ', seq), seq * 1.25, REPEAT('n', seq % 30) FROM seq_1_to_3000;
        CREATE TABLE tag (id INT PRIMARY KEY AUTO_INCREMENT, item_id INT, tag VARCHAR(20)) ENGINE=InnoDB;
        INSERT INTO tag (item_id, tag) SELECT seq, IF(seq % 2, 'odd', 'even') FROM seq_1_to_500;
    """)


def _login(server) -> list[str]:
    login = [f"--user={server.user}"]
    login += [f"--socket={server.socket}"] if server.socket else [f"--host={server.host}", f"--port={server.port}"]
    return login


def _stamp(when: datetime) -> tuple[str, str]:
    """The original's month folder and stamp: local time."""
    return when.strftime("%Y-%m"), when.strftime("%Y-%m-%d_%H-%M-%S")


def _month(env, db: str, when: datetime) -> tuple[Path, str]:
    month, stamp = _stamp(when)
    folder = env.backups / db / month
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"{db}-{stamp}"


def legacy_sql(env, server, db: str, when: datetime) -> Path:
    """mysqldump with the original's arguments, into {db}-{stamp}.sql."""
    folder, name = _month(env, db, when)
    path = folder / f"{name}.sql"
    with open(path, "wb") as out:
        subprocess.run([shutil.which("mariadb-dump"), "--no-defaults", "--single-transaction", "--skip-lock-tables",
                        "--complete-insert", "--extended-insert", "--hex-blob", "--add-drop-table", "--disable-keys",
                        *_login(server), db], stdout=out, check=True)
    return path


def legacy_mydumper(env, server, db: str, when: datetime) -> Path:
    """mydumper as the original ran it (with --compress, its default), into {db}-{stamp}/."""
    folder, name = _month(env, db, when)
    path = folder / name
    subprocess.run(["mydumper", "--routines", "--triggers", "--events", f"--outputdir={path}", f"--database={db}",
                    "--threads=2", "--chunk-filesize=100", "--no-locks", "--trx-consistency-only",
                    *_login(server), "--compress"], check=True, capture_output=True)
    return path


def archive(path: Path, suffix: str = ".tar.gz") -> Path:
    """The original's compression: tar+gzip (whatever the suffix says), the backup's own name as
    the top entry; the uncompressed original removed (keep_original: false)."""
    target = path.parent / f"{path.name}{suffix}" if path.is_dir() else path.with_name(path.name[:-4] + suffix)
    with tarfile.open(target, "w:gz") as tar:
        tar.add(path, arcname=path.name)
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return target


def checksums(server, db: str) -> str:
    return server.sql("CHECKSUM TABLE item, tag EXTENDED", db).replace(f"{db}.", "")


@pytest.mark.parametrize("form", ["sql", "sql.tar.gz", "mydumper", "mydumper.tar.zst"])
def test_a_legacy_backup_restores_with_the_same_checksums(env, server, legacy_db, form, needs_mydumper):
    when = datetime.now() - timedelta(hours=2)
    path = legacy_sql(env, server, legacy_db, when) if form.startswith("sql") \
        else legacy_mydumper(env, server, legacy_db, when)
    if form.endswith(".tar.gz") or form.endswith(".tar.zst"):
        path = archive(path, ".tar.zst" if form.endswith("zst") else ".tar.gz")
    cfg = env.write_config()
    target = unique("restored")
    try:
        done = env.cli("restore", "-b", str(path), "-d", target, config=cfg)
        assert done.returncode == 0, done.stderr
        assert "no manifest" in done.stderr and "not proven" in done.stderr
        assert checksums(server, target) == checksums(server, legacy_db)
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".tenangdb-restore")]
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_a_cut_legacy_dump_is_refused_and_its_target_dropped(env, server, legacy_db):
    path = legacy_sql(env, server, legacy_db, datetime.now())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])  # the completion comment is gone, the last INSERT whole
    cfg = env.write_config()
    target = unique("restored")
    done = env.cli("restore", "-b", str(path), "-d", target, config=cfg)
    assert done.returncode == 4, done.stderr
    assert "without mysqldump's completion comment" in done.stderr and "was dropped" in done.stderr
    assert target not in server.sql("SHOW DATABASES")
    done = env.cli("verify", "-b", str(path), config=cfg)
    assert done.returncode == 7 and "without mysqldump's completion comment" in done.stderr


def test_a_damaged_legacy_archive_fails_verification(env, server, legacy_db):
    path = archive(legacy_sql(env, server, legacy_db, datetime.now()))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    done = env.cli("verify", "-b", str(path), config=env.write_config())
    assert done.returncode == 7 and "damaged or cut short" in done.stderr, done.stderr


def test_verify_says_what_a_legacy_backup_proves(env, server, legacy_db, needs_mydumper):
    cfg = env.write_config()
    for path in (archive(legacy_sql(env, server, legacy_db, datetime.now() - timedelta(days=1))),
                 legacy_mydumper(env, server, legacy_db, datetime.now())):
        done = env.cli("verify", "-b", str(path), config=cfg)
        assert done.returncode == 0, done.stderr
        assert "no checksums (legacy backup)" in done.stdout and "no manifest" in done.stderr
        done = env.cli("verify", "-b", str(path), "--test-restore", "--target", "server", config=cfg)
        assert done.returncode == 0, done.stderr
        assert "nothing recorded to compare (legacy backup)" in done.stdout
        assert "restored 3500 rows" in done.stdout and "content NOT proven" in done.stdout
        assert not list(path.parent.glob(".*verify.json"))  # no record that would read as ours
    strict = env.write_config({"verify": {"require_content_proof": True}}, name="strict.yaml")
    done = env.cli("verify", "-b", str(path), "--test-restore", "--target", "server", config=strict)
    assert done.returncode == 7 and "require_content_proof" in done.stderr


def test_list_shows_legacy_backups_and_cleanup_expires_them_by_age(env, server, legacy_db):
    old = archive(legacy_sql(env, server, legacy_db, datetime.now() - timedelta(days=40)))
    new = legacy_sql(env, server, legacy_db, datetime.now() - timedelta(days=1))
    cfg = env.write_config({"cleanup": {"enabled": True, "max_age_days": 7, "weekend_only": False}})
    done = env.cli("list", "--json", "--local", config=cfg)
    assert done.returncode == 0, done.stderr
    shown = {Path(b["key"]).name: b for b in json.loads(done.stdout)["backups"]}
    assert set(shown) == {old.name, new.name}
    assert all(b["legacy"] and b["kind"] == "backup" and not b["verified"] and b["database"] == legacy_db
               for b in shown.values())
    table = env.cli("list", "--local", config=cfg).stdout
    assert table.count("legacy (no manifest: unverified)") == 2
    done = env.cli("cleanup", "--yes", "--force", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not old.exists() and new.exists()


def test_what_is_not_a_legacy_backup_is_named(env, server, legacy_db):
    stray = env.backups / legacy_db / "2025-01" / f"{legacy_db}-notes.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("hello")
    done = env.cli("restore", "-b", str(stray), "-d", unique("restored"), config=env.write_config())
    assert done.returncode == 7 and "no manifest.json" in done.stderr


def test_a_legacy_mydumper_folder_without_its_end_is_refused(env, server, legacy_db, needs_mydumper):
    path = legacy_mydumper(env, server, legacy_db, datetime.now())
    metadata = path / "metadata"
    metadata.write_text("".join(line for line in metadata.read_text().splitlines(keepends=True)
                                if "Finished dump at" not in line))
    cfg = env.write_config()
    done = env.cli("verify", "-b", str(path), config=cfg)
    assert done.returncode == 7 and "does not record the end of the dump" in done.stderr, done.stderr
    target = unique("restored")
    done = env.cli("restore", "-b", str(path), "-d", target, config=cfg)
    assert done.returncode == 4 and "does not record the end of the dump" in done.stderr, done.stderr
    assert "was dropped" in done.stderr and target not in server.sql("SHOW DATABASES")


def test_the_originals_uploaded_copies_are_listed_restored_and_expired_on_the_remote(env, server, legacy_db,
                                                                                       tmp_path, needs_mydumper):
    # The original's upload layout: files as {dest}/{db}/{YYYY-MM}/{file}, folders copied whole.
    offsite = tmp_path / "offsite"
    old = archive(legacy_sql(env, server, legacy_db, datetime.now() - timedelta(days=40)))
    folder = legacy_mydumper(env, server, legacy_db, datetime.now() - timedelta(days=1))
    for path in (old, folder):
        where = offsite / path.relative_to(env.backups)
        where.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, where) if path.is_dir() else shutil.copy(path, where)
    shutil.rmtree(env.backups)
    conf = tmp_path / "rclone.conf"
    conf.write_text("")
    cfg = env.write_config({"upload": {"enabled": True, "destination": str(offsite), "rclone_config_path": str(conf)},
                            "cleanup": {"enabled": True, "max_age_days": 7, "remote_retention_days": 7,
                                        "weekend_only": False}})
    done = env.cli("list", "--remote", "--json", config=cfg)
    assert done.returncode == 0, done.stderr
    shown = {b["name"]: b for b in json.loads(done.stdout)["backups"]}
    assert set(shown) == {old.name, folder.name}, shown
    assert all(b["legacy"] and b["complete"] and not b["verified"] for b in shown.values())
    # Both restore from the remote: named, or as the newest of the database.
    for spec in (f"remote:{old.relative_to(env.backups).as_posix()}", legacy_db):
        target = unique("fromremote")
        args = ["restore", "-b", spec, "--from-remote", "-d", target] + (["--latest"] if spec == legacy_db else [])
        done = env.cli(*args, config=cfg)
        assert done.returncode == 0, done.stderr
        assert checksums(server, target) == checksums(server, legacy_db)
        server.sql(f"DROP DATABASE `{target}`")
    # Retention expires the old remote copy (a single file) and keeps the new one.
    done = env.cli("cleanup", "--yes", "--force", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (offsite / old.relative_to(env.backups)).exists()
    assert (offsite / folder.relative_to(env.backups) / "metadata").exists()
