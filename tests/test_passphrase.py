"""Passphrase encryption and key rotation through the real CLI, a real server and the real
`age` binary: what an operator following docs/SECURITY.md sees."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import time

import pytest
import yaml

from conftest import made_database, restored_rows

PASSPHRASE = "tidy otter juggles seven brass lanterns"


def _config(env, **encryption):
    return env.write_config({"backup": {"compression": {"format": "gzip"},
                                        "encryption": {"enabled": True, "passphrase_work_factor": 12,
                                                       **encryption}}})


def age_on_a_terminal(args: list[str], passphrase: str, prompts: int = 1) -> tuple[int, str]:
    """Run `age` on a pseudo-terminal, where it asks for the passphrase (never argv or env),
    answering its first `prompts` questions; (exit status, what it showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(shutil.which("age"), ["age", *args])
    seen, answered, deadline = b"", 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if answered < prompts and seen.lower().count(b"passphrase") > answered:
            os.write(fd, passphrase.encode() + b"\n")
            answered += 1
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_a_passphrase_backup_verifies_restores_and_opens_with_age(env, server, sample_db, tmp_path):
    cfg = _config(env)
    secrets = {"TENANGDB_ENCRYPTION_KEY": PASSPHRASE}
    done = env.cli("backup", "--yes", "--databases", sample_db, config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(sample_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encryption"] == {"enabled": True, "method": "age", "mode": "passphrase", "recipients": []}
    assert PASSPHRASE not in (folder / "manifest.json").read_text()
    [stored] = [p for p in folder.iterdir() if p.name != "manifest.json"]
    assert stored.read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")

    status, shown = age_on_a_terminal(["-d", "-o", str(tmp_path / "plain.gz"), str(stored)], PASSPHRASE)
    assert status == 0, shown
    import gzip
    assert b"CREATE TABLE `customer`" in gzip.decompress((tmp_path / "plain.gz").read_bytes())

    done = env.cli("verify", "--backup-path", str(folder), config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    assert restored_rows(env, server, folder, cfg, secrets) == "2003"

    done = env.cli("verify", "--backup-path", str(folder), config=cfg,
                   env={"TENANGDB_ENCRYPTION_KEY": "another long passphrase entirely"})
    assert done.returncode == 7
    assert "wrong key" in done.stderr and PASSPHRASE not in done.stderr

    done = env.cli("list", "--local", config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    assert "KEY" in done.stdout and "passphrase" in done.stdout and "(missing)" not in done.stdout
    done = env.cli("doctor", "--json", config=cfg, env=secrets)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["encryption"]["status"] == "warn" and "anyone who learns it" in checks["encryption"]["message"]
    assert checks["passphrase"]["status"] == "pass"
    assert checks["backup-keys"]["status"] == "pass"


def test_a_file_age_made_with_a_passphrase_restores_through_our_reader(env, tmp_path):
    """The other direction with the real binary: age -p writes, tenangdb's unseal reads."""
    from tenangdb.stream.passphrase import Passphrase
    from tenangdb.stream.pipeline import unseal

    plain = tmp_path / "plain.sql"
    plain.write_bytes(os.urandom(200_000))
    sealed = tmp_path / "plain.sql.age"
    status, shown = age_on_a_terminal(["-p", "-o", str(sealed), str(plain)], PASSPHRASE, prompts=2)
    assert status == 0, shown
    got = bytearray()
    result = unseal(sealed, compression="none", identities=[Passphrase(PASSPHRASE)], forward=got.extend)
    assert bytes(got) == plain.read_bytes() and result.plain.size == 200_000


def test_a_weak_passphrase_is_a_doctor_warning(offline_env):
    cfg = _config(offline_env)
    done = offline_env.cli("doctor", "--json", config=cfg, env={"TENANGDB_ENCRYPTION_KEY": "your-encryption-key"})
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["passphrase"]["status"] == "warn"
    assert "placeholder 'your-encryption-key'" in checks["passphrase"]["message"]
    assert "your-encryption-key" not in checks["encryption"]["message"]


def test_backups_before_and_after_key_rotate_both_verify_and_restore(env, server, sample_db):
    key = env.key()
    old_public = next(line.split(": ")[1] for line in key.read_text().splitlines() if "public key" in line)
    cfg = _config(env, key_file=str(key))
    done = env.cli("backup", "--yes", "--databases", sample_db, config=cfg)
    assert done.returncode == 0, done.stderr
    done = env.cli("key", "rotate", config=cfg)
    assert done.returncode == 0, done.stderr
    new_public = done.stdout.strip()
    assert new_public.startswith("age1") and new_public != old_public
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    server.sql(f"INSERT INTO `{sample_db}`.customer (name) VALUES ('after rotation')")
    time.sleep(1.1)  # backup names carry the second
    done = env.cli("backup", "--yes", "--databases", sample_db, config=cfg)
    assert done.returncode == 0, done.stderr
    before, after = env.backups_of(sample_db)
    from tenangdb.stream.crypto import fingerprint
    for folder, public in ((before, old_public), (after, new_public)):
        recipients = json.loads((folder / "manifest.json").read_text())["encryption"]["recipients"]
        assert [r["fingerprint"] for r in recipients] == [fingerprint(public)]
    for folder, rows in ((before, "2003"), (after, "2004")):
        done = env.cli("verify", "--backup-path", str(folder), config=cfg)
        assert done.returncode == 0, done.stderr
        assert restored_rows(env, server, folder, cfg) == rows

    listed = json.loads(env.cli("list", "--local", "--json", config=cfg).stdout)["backups"]
    assert [(b["needs_key"], b["key_available"]) for b in listed] == [
        (fingerprint(old_public), True), (fingerprint(new_public), True)]

    # A config holding only the new identity: the old backup's key is missing, and says so.
    only_new = env.root / "only-new.txt"
    only_new.write_text(key.read_text().split("# retired:")[0])
    os.chmod(only_new, 0o600)
    data = yaml.safe_load(cfg.read_text())
    data["backup"]["encryption"]["key_file"] = str(only_new)
    cfg.write_text(yaml.safe_dump(data))
    done = env.cli("list", "--local", config=cfg)
    assert f"{fingerprint(old_public)} (missing)" in done.stdout, done.stdout
    done = env.cli("doctor", "--json", config=cfg)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["backup-keys"]["status"] == "warn" and fingerprint(old_public) in checks["backup-keys"]["message"]
    done = env.cli("verify", "--backup-path", str(before), config=cfg)
    assert done.returncode == 7 and "wrong decryption key" in done.stderr


def test_key_rotate_refuses_a_passphrase_and_an_inline_identity(offline_env):
    cfg = _config(offline_env)
    done = offline_env.cli("key", "rotate", config=cfg, env={"TENANGDB_ENCRYPTION_KEY": PASSPHRASE})
    assert done.returncode == 2 and "is a passphrase" in done.stderr
    identity = [line for line in offline_env.key().read_text().splitlines() if line.startswith("AGE-")][0]
    done = offline_env.cli("key", "rotate", config=cfg, env={"TENANGDB_ENCRYPTION_KEY": identity})
    assert done.returncode == 2 and "given inline" in done.stderr and identity not in done.stderr


@pytest.fixture
def tables_db(server):
    """Tables only, which mydumper carries."""
    yield from made_database(server, "tables", """
        CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2)) ENGINE=InnoDB;
        INSERT INTO orders SELECT seq, seq * 1.25 FROM seq_1_to_3000;
        CREATE TABLE tags (id INT PRIMARY KEY, tag VARCHAR(20)) ENGINE=InnoDB;
        INSERT INTO tags VALUES (1, 'a'), (2, 'b');""")


def test_a_mydumper_backup_with_a_passphrase_verifies_and_restores(env, server, tables_db, needs_mydumper):
    """The parallel engine seals one file per table and more: each is its own age file, with
    its own salt, and each opens with the passphrase."""
    cfg = _config(env)
    data = yaml.safe_load(cfg.read_text())
    data["backup"]["engine"] = "mydumper"
    cfg.write_text(yaml.safe_dump(data))
    secrets = {"TENANGDB_ENCRYPTION_KEY": PASSPHRASE}
    done = env.cli("backup", "--yes", "--databases", tables_db, config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(tables_db)
    assert json.loads((folder / "manifest.json").read_text())["engine"]["name"] == "mydumper"
    stored = [p for p in folder.iterdir() if p.name != "manifest.json"]
    assert len(stored) > 2
    salts = {p.read_bytes().split(b"\n")[1] for p in stored}
    assert len(salts) == len(stored) and all(s.startswith(b"-> scrypt ") for s in salts)
    done = env.cli("verify", "--backup-path", str(folder), config=cfg, env=secrets)
    assert done.returncode == 0, done.stderr
    assert restored_rows(env, server, folder, cfg, secrets, table="orders") == "3000"
