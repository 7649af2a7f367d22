"""`tenangdb cleanup` end to end: a 400-day history, a GFS policy, local and remote copies."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fabricate import make_backup
from test_upload import Remote, moto_port, rel, remote, s3, upload_config  # noqa: F401 (fixtures)

POLICY = {"max_age_days": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2,
          "remote_retention_days": 10, "remote": {"keep_weekly": 8, "keep_monthly": 24},
          "databases": ["shop"]}


def expected(times: list[datetime], now: datetime, max_age: int, daily: int, weekly: int, monthly: int,
             yearly: int) -> set[datetime]:
    """The GFS rules written the plain way: group by period, take the newest of the N newest periods."""
    keep = {t for t in times if now - t < timedelta(days=max_age)} | {max(times)}
    for count, key in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                       (monthly, lambda t: (t.year, t.month)), (yearly, lambda t: t.year)):
        groups = defaultdict(list)
        for t in times:
            groups[key(t)].append(t)
        keep |= {max(groups[k]) for k in sorted(groups, reverse=True)[:count]}
    return keep


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def populate(env, remote: Remote, folders: list[Path]) -> None:
    """Put the history on the remote in one rclone call and record each copy as verified, as
    `tenangdb upload` would (uploading 400 backups one by one would only slow the test)."""
    done = remote.rclone("copy", str(env.backups), remote.destination, "--exclude", ".*", "--transfers", "16")
    assert done.returncode == 0, done.stderr
    for folder in folders:
        files = {p.name: {"size": p.stat().st_size, "md5": md5(p)} for p in folder.iterdir() if p.name != "manifest.json"}
        record = {"format": 1, "ok": True, "destination": remote.destination,
                  "remote_path": f"{remote.destination}/{rel(env, folder)}", "uploaded_at": "2026-01-01T00:00:00+00:00",
                  "verified_at": "2026-01-01T00:00:00+00:00", "verify": "sha256" if remote.kind == "local" else "md5",
                  "bytes": 1, "files": files if remote.kind == "s3" else {}}
        (folder.parent / f".{folder.name}.upload.json").write_text(json.dumps(record))


def remote_times(remote: Remote, env, database: str) -> set[str]:
    return {path.split("/")[2] for path in remote.files() if path.startswith(f"{database}/")
            and path.endswith("/manifest.json")}


def test_gfs_on_400_days_locally_and_remotely(offline_env, remote, monkeypatch):
    env = offline_env
    now = datetime.now(timezone.utc)
    base = now - timedelta(hours=1)
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)  # fabricating 420 backups need not wait for the disk
        shop = [make_backup(env.backups, "shop", base - timedelta(days=n), payload=f"shop {n}\n".encode())
                for n in range(400)]
        crm = [make_backup(env.backups, "crm", base - timedelta(days=n), payload=f"crm {n}\n".encode())
               for n in range(20)]
    populate(env, remote, shop + crm)
    # Things that are not backups: reported, never removed — except a stale unfinished one.
    month = shop[0].parent
    notes = month / "notes"
    notes.mkdir()
    (notes / "keep-me.txt").write_text("operator's notes")
    stale = month / ".shop-2020-01-01_00-00-00.partial"
    stale.mkdir()
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    fresh = month / ".shop-2020-01-02_00-00-00.partial"
    fresh.mkdir()
    cfg = upload_config(env, remote, cleanup=POLICY)

    if remote.kind == "local":  # (each listing of 800 objects through moto costs seconds)
        dry = env.cli("cleanup", "--dry-run", config=cfg, timeout=600)
        assert dry.returncode == 0, dry.stderr
        assert "dry run" in dry.stdout and dry.stdout.count("DELETE") > 700
        assert all(f.is_dir() for f in shop) and stale.exists()
        done = env.cli("cleanup", config=cfg)  # no terminal and no --yes: refuses, deletes nothing
        assert done.returncode == 6 and "--yes" in done.stderr
        assert all(f.is_dir() for f in shop)

    times = {f.name: datetime.fromisoformat(json.loads((f / "manifest.json").read_text())["started_at"])
             for f in shop}
    done = env.cli("cleanup", "--yes", config=cfg, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    by_time = {t: name for name, t in times.items()}
    want_local = {by_time[t] for t in expected(list(times.values()), now, 3, 7, 4, 12, 2)}
    want_remote = {by_time[t] for t in expected(list(times.values()), now, 10, 7, 8, 24, 2)}
    assert {f.name for f in shop if f.exists()} == want_local
    assert remote_times(remote, env, "shop") == want_remote
    assert 15 <= len(want_local) < 40 and 25 <= len(want_remote) < 60
    # Not selected: untouched in both places.
    assert all(f.is_dir() for f in crm) and len(remote_times(remote, env, "crm")) == 20
    assert notes.is_dir() and (notes / "keep-me.txt").exists() and fresh.exists() and not stale.exists()
    # Records follow their remote copies: gone with them, kept for copies that remain.
    records = {p.name for p in env.backups.glob("shop/*/.*.upload.json")}
    assert records == {f".{name}.upload.json" for name in want_remote}
    # Everything kept is still a good backup.
    newest = max(shop, key=lambda f: f.name)
    assert env.cli("verify", "-b", str(newest), config=cfg).returncode == 0

    if remote.kind == "local":
        again = env.cli("cleanup", "--yes", config=cfg, timeout=600)
        assert again.returncode == 0 and "to delete: 0 item(s)" in again.stdout, again.stdout[-2000:]


def test_cleanup_respects_weekend_only_and_flags(offline_env, tmp_path):
    env = offline_env
    now = datetime.now(timezone.utc)
    folders = [make_backup(env.backups, "shop", now - timedelta(days=n)) for n in (0, 10, 20)]
    cfg = env.write_config({"cleanup": {"weekend_only": True, "max_age_days": 15},
                            "metrics": {"enabled": True, "storage_path": str(env.root / "m.json"),
                                        "textfile": str(env.root / "t.prom")}})
    weekend = datetime.now().astimezone().weekday() >= 5
    done = env.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0
    if not weekend:
        assert "weekend" in done.stderr and all(f.exists() for f in folders)
    done = env.cli("cleanup", "--yes", "--force", config=cfg)
    assert done.returncode == 0, done.stderr
    assert [f.exists() for f in folders] == [True, True, False]
    done = env.cli("cleanup", "--yes", "--force", "--max-age-days", "5", config=cfg)
    assert done.returncode == 0, done.stderr
    assert [f.exists() for f in folders] == [True, False, False]
    assert "older than 5 days" in done.stdout
    prom = (env.root / "t.prom").read_text()
    assert 'tenangdb_cleanup_deleted_total{database="shop",location="local"} 2.0' in prom
    assert 'tenangdb_backups_retained{database="shop",location="local"} 1.0' in prom
    bad = env.cli("cleanup", "--max-age-days", "0", config=cfg)
    assert bad.returncode == 2 and "max-age-days" in bad.stderr
    bad = env.cli("cleanup", config=env.write_config({"cleanup": {"keep_daily": -1}}))
    assert bad.returncode == 2 and "cleanup.keep_daily" in bad.stderr


def test_cleanup_after_backup(env, sample_db):
    old = make_backup(env.backups, sample_db, datetime.now(timezone.utc) - timedelta(days=30))
    cfg = env.write_config({"backup": {"databases": [sample_db]}, "cleanup": {"enabled": True, "max_age_days": 7}})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert not old.exists() and len(env.backups_of(sample_db)) == 1


def test_failed_deletion_exits_6(offline_env):
    env = offline_env
    now = datetime.now(timezone.utc)
    old = make_backup(env.backups, "shop", now - timedelta(days=30))
    make_backup(env.backups, "shop", now)
    cfg = env.write_config({"cleanup": {"max_age_days": 7}})
    os.chmod(old.parent, 0o500)  # the month folder cannot be changed
    try:
        if os.geteuid() == 0:
            # root ignores modes: make the folder immutable another way, or skip.
            done = subprocess.run(["chattr", "+i", str(old)], capture_output=True)
            if done.returncode != 0:
                pytest.skip("cannot make a folder undeletable as root here")
        done = env.cli("cleanup", "--yes", config=cfg)
        assert done.returncode == 6 and "deletion(s) failed" in done.stderr, done.stdout + done.stderr
        assert (old / "manifest.json").is_file()  # nothing half-deleted
    finally:
        subprocess.run(["chattr", "-i", str(old)], capture_output=True)
        os.chmod(old.parent, 0o750)


def test_a_remote_copy_expired_by_retention_is_not_uploaded_again(offline_env, tmp_path):
    env = offline_env
    local_remote = tmp_path / "remote"
    local_remote.mkdir()
    now = datetime.now(timezone.utc)
    folders = [make_backup(env.backups, "shop", now - timedelta(days=n, hours=1), payload=f"shop {n}\n".encode())
               for n in range(6)]
    # Local copies live longer than remote ones: the older backups stay here, their remote copies go.
    cfg = env.write_config({"upload": {"enabled": True, "destination": str(local_remote)},
                            "cleanup": {"max_age_days": 30, "remote_retention_days": 2}})
    assert env.cli("upload", config=cfg).returncode == 0
    done = env.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr + done.stdout
    assert all(f.is_dir() for f in folders)
    expired = [f for f in folders if not (local_remote / f.relative_to(env.backups)).exists()]
    assert len(expired) == 4  # older than 2 days
    for folder in expired:
        record = json.loads((folder.parent / f".{folder.name}.upload.json").read_text())
        assert record["expired"] is True and record["ok"] is False
    # The remote's own records went with their copies, and stay with the copies that remain.
    on_remote = {p.name for p in local_remote.rglob(".*.upload.json")}
    assert on_remote == {f".{f.name}.upload.json" for f in folders if f not in expired}
    again = env.cli("upload", config=cfg)  # nothing to send: they expired on purpose
    assert again.returncode == 0 and not any((local_remote / f.relative_to(env.backups)).exists() for f in expired)
    listed = json.loads(env.cli("list", "--json", "--local", config=cfg).stdout)["backups"]
    assert [b["uploaded"] for b in listed].count("expired") == 4


def test_cleanup_databases_limits_which_stale_partials_go(offline_env):
    # `--databases crm` must not touch another database's folders, unfinished ones included
    # (that other database may have a backup running under another directory lock).
    env = offline_env
    now = datetime.now(timezone.utc)
    partials = {}
    for name in ("shop", "crm"):
        month = make_backup(env.backups, name, now).parent
        partials[name] = month / f".{name}-2020-01-01_00-00-00.partial"
        partials[name].mkdir()
        old = time.time() - 2 * 86400
        os.utime(partials[name], (old, old))
    cfg = env.write_config({"cleanup": {"max_age_days": 30}})
    done = env.cli("cleanup", "--yes", "--databases", "crm", config=cfg)
    assert done.returncode == 0, done.stderr
    assert not partials["crm"].exists() and partials["shop"].exists()
    done = env.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert not partials["shop"].exists()


def test_a_folder_that_vanishes_while_listed_is_left_out(offline_env, monkeypatch):
    # The races of `list` with a backup committing (its staging folder renamed) and with a
    # cleanup (an emptied month removed) between being listed and being looked at: such
    # entries must be left out, not reported as foreign folders, and nothing may crash.
    from tenangdb.actions import catalog

    db = offline_env.backups / "shop"
    month = db / "2026-11"
    month.mkdir(parents=True)
    gone = {month: [month / ".shop-2026-11-30_01-00-00.partial", month / "shop-2026-11-30_01-00-00"],
            db: [db / "2026-09"]}
    real_children = catalog._children
    monkeypatch.setattr(catalog, "_children", lambda folder: real_children(folder) + gone.get(folder, []))
    assert catalog.local_entries(offline_env.backups, None) == []


def test_a_run_waits_out_the_lock_probe_of_list(tmp_path):
    # `list` probes the directory lock with a shared flock held for an instant; a backup,
    # upload or cleanup starting in that instant must wait it out, not be refused.
    import fcntl
    import threading

    from tenangdb.repository import lock

    probe = os.open(tmp_path / lock.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.flock(probe, fcntl.LOCK_SH)
    release = threading.Timer(0.3, lambda: (fcntl.flock(probe, fcntl.LOCK_UN), os.close(probe)))
    release.start()
    started = time.monotonic()
    with lock.DirectoryLock(tmp_path):
        waited = time.monotonic() - started
        held = lock.holder(tmp_path)
        assert held is not None and held.pid == str(os.getpid())
    release.join()
    assert 0.2 < waited < lock.DirectoryLock.PATIENCE
    assert lock.holder(tmp_path) is None
