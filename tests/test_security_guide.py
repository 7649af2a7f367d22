"""The security guide's configuration blocks, as it writes them (this test's own copy; the
database points at the test server, and its ssl_ca/ssl_cert/ssl_key paths, which name example
files, are left out): they load, and back up, verify, upload and restore."""

from __future__ import annotations

import json
import os

import yaml

from conftest import restored_rows, unique


def guide_config(env, remote, *, encryption: bool = True) -> dict:
    database = dict(env.server.config_section(), ssl_mode="PREFERRED")
    database["password"] = "${TENANGDB_DB_PASSWORD}"
    return {
        "database": database,
        "backup": {"directory": str(env.backups), "tracking_directory": str(env.root / "tracking"),
                   "compression": "gzip", "encryption": encryption,
                   **({"encryption_key": "${TENANGDB_ENCRYPTION_KEY}"} if encryption else {}),
                   "verify_backup": True, "checksum_algorithm": "sha256", "test_restore": True},
        "upload": {"enabled": True, "rclone_config_path": str(env.root / "rclone.conf"),
                   "destination": str(remote), "encryption": True, "verify_upload": True},
        "metrics": {"enabled": True, "port": 9090, "path": "/metrics", "storage_path": str(env.root / "metrics.json"),
                    "basic_auth": {"username": "prometheus", "password": "${PROMETHEUS_PASSWORD}"}},
        "verify": {"target": "server"},
    }


def _write(env, data: dict, name: str = "config.yaml"):
    path = env.root / name
    path.write_text(yaml.safe_dump(data))
    os.chmod(path, 0o600)
    (env.root / "rclone.conf").write_text("")
    return path


def _secrets(env) -> dict:
    identity = env.key().read_text().splitlines()
    return {"TENANGDB_DB_PASSWORD": env.server.password or "",
            "TENANGDB_ENCRYPTION_KEY": next(line for line in identity if line.startswith("AGE-SECRET-KEY-1")),
            "PROMETHEUS_PASSWORD": "Scrape-Pass-With-Length-42"}


def test_the_guides_blocks_back_up_verify_upload_and_restore(env, server, sample_db):
    remote = env.root / "offsite"
    data = guide_config(env, remote)
    data["backup"]["databases"] = [sample_db]
    cfg = _write(env, data)
    secrets = _secrets(env)
    done = env.cli("backup", "--yes", config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encryption"]["enabled"] and manifest["compression"]["format"] == "gzip"
    assert list(remote.glob(f"{sample_db}/*/*/manifest.json"))
    assert "passed (test-restore:server)" in done.stderr
    done = env.cli("verify", "--backup-path", str(env.backups / "latest"), config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    target = unique("restored")
    try:
        done = env.cli("restore", "--backup-path", str(env.backups / "latest" / sample_db), "-d", target,
                       config=cfg, env=secrets)
        assert done.returncode == 0, done.stderr
        assert server.sql("SELECT COUNT(*) FROM customer", target).strip() == "2003"
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_upload_encryption_refuses_an_unencrypted_backup(env, sample_db):
    remote = env.root / "offsite"
    data = guide_config(env, remote, encryption=False)
    data["backup"].update(databases=[sample_db], test_restore=False)
    cfg = _write(env, data)
    done = env.cli("backup", "--yes", config=cfg, env=_secrets(env))
    assert done.returncode == 5, done.stderr
    assert "not encrypted, so not uploaded (upload.encryption is true" in done.stderr
    assert not list(remote.rglob("*.sql*"))


def test_the_guides_passphrase_backs_up_verifies_and_restores(env, server, sample_db):
    """TENANGDB_ENCRYPTION_KEY="your-encryption-key", as the guide writes it, is a passphrase:
    age's scrypt mode (docs/SECURITY.md says what that costs; doctor calls this one weak)."""
    data = guide_config(env, env.root / "offsite")
    data["backup"]["databases"] = [sample_db]
    cfg = _write(env, data)
    secrets = dict(_secrets(env), TENANGDB_ENCRYPTION_KEY="your-encryption-key")
    done = env.cli("backup", "--yes", config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    assert "passed (test-restore:server)" in done.stderr and "your-encryption-key" not in done.stderr
    [folder] = env.backups_of(sample_db)
    assert json.loads((folder / "manifest.json").read_text())["encryption"]["mode"] == "passphrase"
    done = env.cli("verify", "--backup-path", str(env.backups / "latest"), config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    assert restored_rows(env, server, folder, cfg, secrets) == "2003"
