"""Off-site copies with real rclone: a local-folder remote and an S3 API on loopback (moto)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import unique
from fabricate import make_backup
from remotes import CuttingProxy, S3Remote, free_port, new_secret, s3_config
from test_backup_restore import checksums
from test_notify import TOKEN, receiver  # noqa: F401 (fixture)
from test_secrets import spy_tool


@pytest.fixture(scope="module")
def moto_port():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield port
    server.stop()


@pytest.fixture
def s3(moto_port, tmp_path, monkeypatch) -> S3Remote:
    # A CA bundle meant for real AWS endpoints makes rclone's S3 client refuse plain http.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    proxy = CuttingProxy(moto_port)
    proxy.start()
    secret = new_secret()
    folder = tmp_path / "rclone"
    folder.mkdir()
    bucket = f"tdb-{uuid.uuid4().hex[:12]}"
    remote = S3Remote(s3_config(folder, proxy.port, secret), f"moto:{bucket}/offsite", secret, proxy, bucket)
    done = remote.rclone("mkdir", f"moto:{bucket}")
    assert done.returncode == 0, done.stderr
    yield remote
    proxy.stop()


class Remote:
    """One remote for a test: where backups go, the rclone config, and how to reach a stored file."""

    def __init__(self, kind: str, destination: str, config: Path, s3: S3Remote | None = None) -> None:
        self.kind, self.destination, self.config, self.s3 = kind, destination, config, s3

    def rclone(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["rclone", "--config", str(self.config), *args], capture_output=True, text=True,
                              timeout=120)

    def files(self) -> dict[str, int]:
        done = self.rclone("lsjson", "-R", "--files-only", self.destination)
        if done.returncode != 0:
            return {}
        return {e["Path"]: e["Size"] for e in json.loads(done.stdout)}

    def read(self, rel: str) -> bytes:
        done = subprocess.run(["rclone", "--config", str(self.config), "cat", f"{self.destination}/{rel}"],
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def write(self, rel: str, data: bytes, scratch: Path) -> None:
        scratch.write_bytes(data)
        done = self.rclone("copyto", "--ignore-times", str(scratch), f"{self.destination}/{rel}")
        assert done.returncode == 0, done.stderr

    def delete(self, rel: str) -> None:
        done = self.rclone("deletefile", f"{self.destination}/{rel}")
        assert done.returncode == 0, done.stderr


@pytest.fixture(params=["local", "s3"])
def remote(request, tmp_path) -> Remote:
    if request.param == "local":
        config = tmp_path / "rclone.conf"
        config.write_text("")
        config.chmod(0o600)
        return Remote("local", str(tmp_path / "offsite"), config)
    s3 = request.getfixturevalue("s3")
    return Remote("s3", s3.destination, s3.config, s3)


def upload_config(env, remote: Remote, upload: dict | None = None, **sections) -> Path:
    extra = {"upload": {"enabled": True, "destination": remote.destination,
                        "rclone_config_path": str(remote.config), "retry_delay": 0, "timeout": 60,
                        **(upload or {})}}
    extra.update(sections)
    return env.write_config(extra)


def rel(env, folder: Path) -> str:
    return folder.relative_to(env.backups).as_posix()


def now() -> datetime:
    return datetime.now(timezone.utc)


def metrics(env) -> dict:
    return {"enabled": True, "storage_path": str(env.root / "metrics.json"), "textfile": str(env.root / "t.prom")}


def test_upload_verifies_the_remote_copy(offline_env, remote):
    env = offline_env
    cfg = upload_config(env, remote, metrics=metrics(env))
    first = make_backup(env.backups, "shop", now())
    second = make_backup(env.backups, "billing", now())
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0, done.stderr
    method = "sha256" if remote.kind == "local" else "md5"
    assert done.stdout.count(f"verified: {method}") == 2, done.stdout
    stored = remote.files()
    for folder in (first, second):
        for path in folder.iterdir():
            assert stored[f"{rel(env, folder)}/{path.name}"] == path.stat().st_size
        assert remote.read(f"{rel(env, folder)}/manifest.json") == (folder / "manifest.json").read_bytes()
        record = json.loads((folder.parent / f".{folder.name}.upload.json").read_text())
        assert record["ok"] and record["verify"] == method and record["destination"] == remote.destination
        # The sealed folder is untouched: verify still finds exactly the manifest's files.
        assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    again = env.cli("upload", config=cfg)
    assert again.returncode == 0 and "nothing to upload" in again.stdout
    prom = (env.root / "t.prom").read_text()
    assert 'tenangdb_upload_success_total{database="shop"} 1.0' in prom
    assert f'tenangdb_upload_bytes_total{{database="billing",provider="rclone"}} {float(sum(p.stat().st_size for p in second.iterdir()))}' in prom
    assert 'tenangdb_upload_duration_seconds_count{database="shop",status="success"} 1.0' in prom

    listed = env.cli("list", "--json", config=cfg)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["backups"]
    assert {(r["database"], r["location"]) for r in rows} == {("shop", "local"), ("shop", "remote"),
                                                            ("billing", "local"), ("billing", "remote")}
    assert all(r["uploaded"] == f"yes ({method})" for r in rows if r["location"] == "local")
    assert all(r["verified"] and r["complete"] for r in rows if r["location"] == "remote")
    table = env.cli("list", config=cfg)
    assert table.returncode == 0 and "UPLOADED" in table.stdout and first.name in table.stdout


def test_download_verify_is_a_read_back(offline_env, remote):
    env = offline_env
    cfg = upload_config(env, remote, {"verify": "download"})
    make_backup(env.backups, "shop", now())
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0 and "verified: download" in done.stdout, done.stdout + done.stderr


def test_corrupted_remote_file_is_detected_and_repaired(offline_env, remote, tmp_path):
    env = offline_env
    cfg = upload_config(env, remote)
    folder = make_backup(env.backups, "shop", now())
    assert env.cli("upload", config=cfg).returncode == 0
    dump = f"{rel(env, folder)}/shop.sql"
    good = remote.read(dump)
    bad = bytearray(good)
    bad[10] ^= 0xFF  # same size, one byte changed
    remote.write(dump, bytes(bad), tmp_path / "scratch")

    done = env.cli("verify", "--from-remote", "-b", f"remote:{rel(env, folder)}", config=cfg)
    assert done.returncode == 7 and "SHA-256" in done.stderr and remote.destination in done.stderr, done.stderr
    assert "tenangdb-remote-" not in done.stderr  # the message names the remote copy, not the download

    # The failed check is recorded beside the local copy too: the next upload repairs it.
    make_backup(env.backups, "shop", now())  # a newer backup, so the first is not the newest
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0 and folder.name in done.stdout, done.stdout
    assert remote.read(dump) == good

    # Damaged again, unseen: cleanup_uploaded_files re-checks the remote copy before deleting the
    # local one, refuses, and marks the backup for the next upload, which repairs it.
    remote.write(dump, bytes(bad), tmp_path / "scratch")
    cfg = upload_config(env, remote, cleanup={"cleanup_uploaded_files": True})
    done = env.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert folder.is_dir() and "failed the check" in done.stderr + done.stdout
    again = env.cli("upload", config=cfg)
    assert again.returncode == 0 and folder.name in again.stdout, again.stdout
    assert remote.read(dump) == good
    done = env.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0 and not folder.exists(), done.stdout


def test_cleanup_uploaded_files_never_deletes_without_the_remote_copy(offline_env, remote):
    env = offline_env
    cfg = upload_config(env, remote, cleanup={"cleanup_uploaded_files": True})
    missing = make_backup(env.backups, "shop", now())
    damaged = make_backup(env.backups, "shop", now())
    newest = make_backup(env.backups, "shop", now())
    assert env.cli("upload", config=cfg).returncode == 0
    remote.delete(f"{rel(env, missing)}/shop.sql")                 # remote copy missing a file
    remote.delete(f"{rel(env, damaged)}/manifest.json")            # remote folder no longer a backup
    done = env.cli("cleanup", "--dry-run", config=cfg)
    assert done.returncode == 0
    assert "DELETE" not in done.stdout, done.stdout
    done = env.cli("cleanup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    assert missing.is_dir() and damaged.is_dir() and newest.is_dir()


def test_upload_interrupted_then_completed(offline_env, s3, tmp_path):
    env = offline_env
    remote = Remote("s3", s3.destination, s3.config, s3)
    cfg = upload_config(env, remote, {"retry_count": 2}, metrics=metrics(env))
    folder = make_backup(env.backups, "shop", now(), payload=bytes(range(256)) * 12 * 1024)  # 3 MiB
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    s3.proxy.cut_after(256 * 1024)  # the remote goes away in the middle of the upload
    done = env.cli("upload", config=cfg)
    assert s3.proxy.was_cut.is_set()
    assert done.returncode == 5, done.stdout + done.stderr
    assert "FAILED" in done.stdout and "local backups are kept" in done.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    listed = json.loads(env.cli("list", "--json", "--local", config=cfg).stdout)["backups"]
    assert listed[0]["uploaded"] == "failed"
    assert 'tenangdb_upload_failed_total{database="shop"} 1.0' in (env.root / "t.prom").read_text()

    s3.proxy.cut_after(None)
    s3.proxy.start()  # the remote is back
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert folder.name in done.stdout and "verified: md5" in done.stdout
    assert remote.read(f"{rel(env, folder)}/shop.sql") == before["shop.sql"]


def test_failing_local_remote_exits_5_and_retries_next_run(offline_env, tmp_path):
    env = offline_env
    blocker = tmp_path / "offsite"
    blocker.write_text("a file where the remote folder should be")
    config = tmp_path / "rclone.conf"
    config.write_text("")
    remote = Remote("local", str(blocker), config)
    cfg = upload_config(env, remote)
    folder = make_backup(env.backups, "shop", now())
    done = env.cli("upload", config=cfg)
    assert done.returncode == 5 and "after 3 attempts" in done.stdout, done.stdout + done.stderr
    assert folder.is_dir()
    blocker.unlink()
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0 and folder.name in done.stdout


def test_bad_upload_settings_are_one_line_errors(offline_env, tmp_path):
    env = offline_env
    make_backup(env.backups, "shop", now())
    cfg = env.write_config({"upload": {"enabled": True, "destination": str(tmp_path / "r"),
                                       "rclone_config_path": str(tmp_path / "missing.conf")}})
    done = env.cli("upload", config=cfg)
    assert done.returncode == 2 and "rclone_config_path" in done.stderr
    cfg = env.write_config({"upload": {"verify": "sometimes"}})
    done = env.cli("upload", config=cfg)
    assert done.returncode == 2 and "upload.verify" in done.stderr
    cfg = env.write_config({})
    done = env.cli("upload", config=cfg)
    assert done.returncode == 5 and "upload.destination is not set" in done.stderr
    cfg = env.write_config({"upload": {"destination": str(tmp_path / "r"), "rclone_path": str(tmp_path / "nope")}})
    done = env.cli("upload", config=cfg)
    assert done.returncode == 1 and "nope" in done.stderr
    done = env.cli("upload", "-b", str(tmp_path), config=env.write_config({"upload": {"destination": "x:"}}))
    assert done.returncode == 5 and "not a backup" in done.stderr


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_backup_uploads_then_restore_from_remote(env, server, sample_db, kind, tmp_path, request):
    if kind == "s3":
        s3 = request.getfixturevalue("s3")
        remote = Remote("s3", s3.destination, s3.config, s3)
    else:
        config = tmp_path / "rclone.conf"
        config.write_text("")
        remote = Remote("local", str(tmp_path / "offsite"), config)
    cfg = upload_config(env, remote, backup={"databases": [sample_db],
                                             "encryption": {"enabled": True, "key_file": str(env.key())}})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    assert f"{rel(env, folder)}/manifest.json" in remote.files()
    shutil.rmtree(folder)  # the local disk is lost; the off-site copy is all there is
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    target = unique("restored")
    done = env.cli("restore", "--from-remote", "-b", folder.name, "-d", target, config=cfg,
                   env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    assert checksums(server, target) == checksums(server, sample_db)
    assert list(scratch.iterdir()) == []  # the download is gone
    server.sql(f"DROP DATABASE `{target}`")


def test_s3_secret_never_on_rclone_argv_or_env(offline_env, s3, tmp_path):
    env = offline_env
    wrapper, seen = spy_tool(tmp_path, shutil.which("rclone"), "spy-rclone")
    remote = Remote("s3", s3.destination, s3.config, s3)
    cfg = upload_config(env, remote, {"rclone_path": str(wrapper)}, cleanup={"max_age_days": 1})
    make_backup(env.backups, "shop", now())
    outputs = ""
    for args in (["upload"], ["list"], ["cleanup", "--yes"], ["verify", "--from-remote", "-b", "remote:x/2026-01/x"]):
        done = env.cli(*args, config=cfg)
        outputs += done.stdout + done.stderr
    text = seen.read_text()
    assert text.count("ARGV") >= 4
    for block in text.split("ARGV")[1:]:
        argv, environ = block.split("ENVIRON")[0], block.split("ENVIRON")[1].split("FDS")[0]
        assert "--config" in argv and str(s3.config) in argv
        assert s3.secret not in argv and s3.secret not in environ
        assert "TENANGDB_" not in environ
    assert s3.secret not in outputs


def test_restore_from_a_missing_remote_backup_is_refused(env, remote):
    # A reachable server: restore checks the connection and the target before it downloads.
    cfg = upload_config(env, remote)
    done = env.cli("restore", "--from-remote", "-b", "shop-2026-01-01_00-00-00", "-d", "nowhere", config=cfg)
    assert done.returncode == 7 and "shop/2026-01/shop-2026-01-01_00-00-00" in done.stderr, done.stderr
    done = env.cli("verify", "-b", "remote:../etc", config=cfg)
    assert done.returncode == 7 and "not a remote backup path" in done.stderr


def test_rclone_errors_are_summarised_and_redacted(tmp_path):
    from tenangdb.remote.rclone import is_local_path, join, register_config_secrets, summarise

    secret = new_secret()
    config = s3_config(tmp_path, 9, secret)
    register_config_secrets(str(config))
    stderr = ("2026/11/29 02:00:01 NOTICE: something harmless\n"
              f"2026/11/29 02:00:02 ERROR : shop.sql: Failed to copy: SignatureDoesNotMatch for key {secret}\n"
              "2026/11/29 02:00:02 NOTICE: done\n")
    line = summarise(stderr)
    assert line.startswith("shop.sql: Failed to copy: SignatureDoesNotMatch") and secret not in line
    assert "AKIATENANGDBTEST" in summarise("ERROR : AKIATENANGDBTEST denied")  # the key id is not a secret
    assert join("s3:bucket/x/", "db", "2026-11", "n") == "s3:bucket/x/db/2026-11/n"
    assert join("remote:", "db") == "remote:db" and join("/mnt/off", "db") == "/mnt/off/db"
    assert is_local_path("/mnt/offsite") and is_local_path("relative/dir") and not is_local_path("s3:bucket")


def test_upload_outcomes_are_notified(offline_env, tmp_path, receiver):
    env = offline_env
    config = tmp_path / "rclone.conf"
    config.write_text("")
    blocker = tmp_path / "offsite"
    blocker.write_text("not a folder")
    cfg = upload_config(env, Remote("local", str(blocker), config), {"retry_count": 1},
                        notify={"webhook": f"{receiver.url}/hook/{TOKEN}", "retries": 0})
    make_backup(env.backups, "shop", now())
    assert env.cli("upload", config=cfg).returncode == 5
    blocker.unlink()
    assert env.cli("upload", config=cfg).returncode == 0
    events = receiver.events()
    assert [(e["event"], e["database"]) for e in events] == [("upload.failure", "shop"), ("upload.success", "shop")]
    assert events[0]["error"] and events[1]["size"] > 0


def test_backup_with_a_failing_upload_exits_5_and_pings_fail(env, sample_db, tmp_path, receiver):
    config = tmp_path / "rclone.conf"
    config.write_text("")
    blocker = tmp_path / "offsite"
    blocker.write_text("not a folder")
    cfg = upload_config(env, Remote("local", str(blocker), config), {"retry_count": 1},
                        backup={"databases": [sample_db]},
                        notify={"ping": f"{receiver.url}/ping/{TOKEN}", "retries": 0})
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 5, done.stderr
    [folder] = env.backups_of(sample_db)
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0  # the backup itself is fine
    assert receiver.pings() == [f"/ping/{TOKEN}/start", f"/ping/{TOKEN}/fail"]
    blocker.unlink()
    done = env.cli("upload", config=cfg)
    assert done.returncode == 0 and folder.name in done.stdout


def test_a_broken_remote_fails_fast_and_leaves_the_rest_pending(offline_env, tmp_path):
    env = offline_env
    config = tmp_path / "rclone.conf"
    config.write_text("")
    cfg = upload_config(env, Remote("s3", "nosuchremote:bucket", config), {"retry_delay": 30})
    folders = [make_backup(env.backups, "shop", now()) for _ in range(3)]
    started = time.monotonic()
    done = env.cli("upload", config=cfg)
    assert time.monotonic() - started < 20  # a configuration error is not retried with backoff
    assert done.returncode == 5 and "didn't find section in config file" in done.stdout, done.stdout
    assert done.stdout.count("not attempted") == 2 and all(f.is_dir() for f in folders)
