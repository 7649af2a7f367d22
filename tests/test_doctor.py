"""`tenangdb doctor`: every check has a passing and a failing case, through the real CLI."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from conftest import run_cli, unique
from test_init import PASSWORD, make_user, rclone_remote


def doctor(env, config: Path, *extra: str) -> tuple[int, dict[str, dict]]:
    done = env.cli("doctor", "--json", *extra, config=config, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0)
    return done.returncode, {c["name"]: c for c in report["checks"]}


def secrets_file(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    from tenangdb.config.loader import secrets_file_text
    path.write_text(secrets_file_text(values))
    os.chmod(path, mode)
    return path


def database_section(server, user: str) -> dict:
    section = {"username": user, "password": "${TENANGDB_DB_PASSWORD}", "timeout": 5}
    if server.socket:
        section["socket"] = server.socket
    else:
        section.update(host=server.host, port=server.port)
    return section


def test_doctor_all_good(env, server, sample_db):
    user = make_user(server, [f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{sample_db}`.* TO {{user}}",
                              "GRANT RELOAD, BINLOG MONITOR ON *.* TO {user}",
                              "GRANT SELECT ON mysql.proc TO {user}"])
    conf, target = rclone_remote(env.root)
    secrets = secrets_file(env.root / "secrets.env", {"TENANGDB_DB_PASSWORD": PASSWORD})
    env.backups.mkdir(mode=0o750)
    cfg = env.write_config({
        "backup": {"databases": [sample_db], "encryption": {"enabled": True, "key_file": str(env.key())}},
        "upload": {"enabled": True, "destination": f"local:{target}", "rclone_config_path": str(conf)},
        "metrics": {"enabled": True, "listen": "127.0.0.1", "storage_path": str(env.root / "state" / "m.json")},
        "logging": {"file_path": str(env.root / "logs" / "tenangdb.log")},
    }, database=database_section(server, user), mode=0o640)
    data = yaml.safe_load(cfg.read_text())
    data["secrets_file"] = str(secrets)
    cfg.write_text(yaml.safe_dump(data))
    assert env.cli("backup", "--yes", config=cfg).returncode == 0
    status, checks = doctor(env, cfg)
    assert status == 0, checks
    for name in ("config-file", "plaintext-secrets", "secrets-file", "key-file", "backup-dir", "state-dir", "log-dir",
                 "tools", "database-grants", "database-tls", "encryption", "rclone-config", "upload", "metrics",
                 "free-space", "last-backup", "repository"):
        assert checks[name]["status"] == "pass", checks[name]
    assert "written, read back and deleted" in checks["upload"]["message"]
    assert not list(target.rglob(".tenangdb-probe-*"))  # the upload probe left nothing behind
    human = env.cli("doctor", config=cfg)
    assert human.returncode == 0 and "PASS  database-grants" in human.stdout and " 0 failed" in human.stdout


def test_doctor_finds_every_problem(env, server, sample_db):
    """The failing side of each check, all in one badly set-up installation."""
    user = make_user(server, ["GRANT SELECT ON *.* TO {user}"], password="plain-secret-pw")
    conf, _ = rclone_remote(env.root)
    key = env.key()
    os.chmod(key, 0o640)
    other = env.root / "other-identity.txt"
    public = run_cli("key", "generate", "-o", str(other)).stdout.strip()
    secrets = secrets_file(env.root / "secrets.env", {"UNUSED": "x"}, mode=0o644)
    env.backups.mkdir(mode=0o755)
    # A backup whose stored size (a sparse file) is more than the free space.
    folder = env.backups / sample_db / "2026-11" / f"{sample_db}-2026-11-01_00-00-00"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    with open(folder / f"{sample_db}.sql.zst.age", "wb") as fh:
        fs = os.statvfs(env.backups)
        fh.truncate(fs.f_bavail * fs.f_frsize + (1 << 30))
    from tenangdb.repository import tracking
    tracking.record(tracking.tracking_path(env.root / "tracking", str(env.backups)),
                    {sample_db: datetime.now(timezone.utc) - timedelta(days=3)})
    os.chmod(env.root / "tracking", 0o755)
    os.chmod(conf, 0o644)  # the rclone config holds cloud credentials
    (env.root / "logs").mkdir(mode=0o777)
    os.chmod(env.root / "logs", 0o777)
    defaults = env.root / "my.cnf"
    defaults.write_text(f"[client]\nuser={user}\npassword=plain-secret-pw\n")
    os.chmod(defaults, 0o644)
    section = database_section(server, user)
    section["password"] = "plain-secret-pw"
    section["mysqldump_path"] = "/nonexistent/mariadb-dump"
    section["defaults_file"] = str(defaults)
    cfg = env.write_config({
        "backup": {"databases": [sample_db],
                   "encryption": {"enabled": True, "key_file": str(key), "recipients": [public]}},
        "upload": {"enabled": True, "destination": "nosuchremote:x", "rclone_config_path": str(conf)},
        "metrics": {"enabled": True, "listen": "0.0.0.0"},
        "logging": {"file_path": str(env.root / "logs" / "tenangdb.log")},
    }, database=section, mode=0o660)
    data = yaml.safe_load(cfg.read_text())
    data["secrets_file"] = str(secrets)
    cfg.write_text(yaml.safe_dump(data))
    os.chmod(cfg, 0o660)
    status, checks = doctor(env, cfg)
    assert status == 1
    expected = {
        "config-file": "others can change", "plaintext-secrets": "database.password",
        "secrets-file": "beyond its owner", "key-file": "beyond its owner", "backup-dir": "other users can get in",
        "tools": "/nonexistent/mariadb-dump", "database-grants": "lacks SHOW VIEW",
        "encryption": "cannot be decrypted with the identity", "upload": "cannot write to nosuchremote:x",
        "metrics": "without authentication", "free-space": "will not fit", "last-backup": "older than 26h",
        "state-dir": "other users can get in", "log-dir": "other users can get in",
        "rclone-config": "beyond its owner and group", "defaults-file": "beyond its owner and group",
    }
    for name, text in expected.items():
        assert checks[name]["status"] == "fail", checks[name]
        assert text in checks[name]["message"], checks[name]
        assert checks[name]["fix"], checks[name]
    assert checks["config-file"]["fix"] == f"chmod 0640 {cfg.resolve()}"
    assert "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON" in checks["database-grants"]["fix"]
    assert "plain-secret-pw" not in json.dumps(checks)
    human = env.cli("doctor", config=cfg)
    assert human.returncode == 1 and "FAIL  metrics" in human.stdout and "fix: set metrics.listen" in human.stdout


def test_doctor_excess_privileges_and_remote_tls(env, server, sample_db):
    # root holds ALL PRIVILEGES WITH GRANT OPTION: works, but far more than a backup needs.
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    _, checks = doctor(env, cfg)
    grants = checks["database-grants"]
    assert grants["status"] == "warn" and "ALL PRIVILEGES" in grants["message"] and "GRANT OPTION" in grants["message"]
    assert checks["encryption"]["status"] == "warn"  # off
    assert checks["upload"]["status"] == "warn"  # off
    assert checks["last-backup"]["status"] == "warn"  # never
    # Metrics on every address behind a password, but without TLS: a warning.
    secrets = secrets_file(env.root / "m.env", {"MPW": "metrics-pw"})
    exposed = env.write_config({"backup": {"databases": [sample_db]},
                                "metrics": {"enabled": True, "listen": "0.0.0.0",
                                            "basic_auth": {"username": "p", "password": "${MPW}"}}},
                               name="exposed.yaml")
    data = yaml.safe_load(exposed.read_text())
    data["secrets_file"] = str(secrets)
    exposed.write_text(yaml.safe_dump(data))
    _, checks = doctor(env, exposed)
    assert checks["metrics"]["status"] == "warn" and "in clear" in checks["metrics"]["message"]
    # A remote server without required TLS fails, whether or not it answers.
    remote = env.write_config({"backup": {"databases": [sample_db]}}, name="remote.yaml",
                              database={"host": "192.0.2.1", "port": 3306, "username": "x", "timeout": 1})
    status, checks = doctor(env, remote)
    assert status == 1
    assert checks["database-tls"]["status"] == "fail" and "ssl_mode is PREFERRED" in checks["database-tls"]["message"]
    assert "VERIFY_IDENTITY" in checks["database-tls"]["fix"]
    assert checks["database-grants"]["status"] == "fail"


def test_doctor_binary_check(tmp_path):
    from tenangdb.actions import doctor as action

    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    os.chmod(safe, 0o755)
    exe = safe / "tenangdb"
    exe.write_text("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    os.chmod(tmp_path, 0o755)
    assert action.binary([exe]).status == "pass"
    os.chmod(exe, 0o777)
    check = action.binary([exe])
    assert check.status == "fail" and "writable by others" in check.message and check.fix
    os.chmod(exe, 0o755)
    os.chmod(safe, 0o775)
    assert action.binary([exe]).status == "fail"


def test_doctor_bad_max_age_is_a_usage_error(offline_env):
    cfg = offline_env.write_config()
    done = offline_env.cli("doctor", "--max-age", "soon", config=cfg)
    assert done.returncode == 2 and "--max-age" in done.stderr


def test_doctor_checks_the_installed_service_unit(offline_env, tmp_path):
    from tenangdb.actions import doctor as action
    from tenangdb.deploy.systemd import example_units

    units = tmp_path / "units"
    units.mkdir()
    text = example_units()["tenangdb.service"].replace("User=tenangdb", "User=nobody")
    (units / "tenangdb.service").write_text(text)
    assert action.service_unit(str(units)).status == "pass"
    (units / "tenangdb.service").write_text(text.replace("User=nobody", "User=root"))
    check = action.service_unit(str(units))
    assert check.status == "fail" and "as root" in check.message and "User=tenangdb" in check.fix
    (units / "tenangdb.service").write_text(text.replace("ProtectSystem=strict", "ProtectSystem=full"))
    assert action.service_unit(str(units)).status == "fail"
    (units / "tenangdb.service").write_text(text.replace("ProtectHome=yes\n", "") + "Requires=mysqld.service\n")
    check = action.service_unit(str(units))
    assert check.status == "warn" and "ProtectHome" in check.message and "Requires=mysqld" in check.message
    assert action.service_unit(str(tmp_path / "none")) is None  # not deployed with systemd: no check
    (units / "tenangdb.service").write_text(text.replace("User=nobody", "User=nosuchuser_x"))
    check = action.service_unit(str(units))
    assert check.status == "fail" and "does not exist" in check.message
    # Through the CLI, with a relative secrets_file (read beside the config).
    (offline_env.root / "s.env").write_text('TENANGDB_DB_PASSWORD="pw"\n')
    os.chmod(offline_env.root / "s.env", 0o640)
    cfg = offline_env.write_config({"database": {"password": "${TENANGDB_DB_PASSWORD}", "timeout": 1}})
    data = yaml.safe_load(cfg.read_text())
    data["secrets_file"] = "s.env"
    cfg.write_text(yaml.safe_dump(data))
    done = offline_env.cli("doctor", "--json", "--unit-dir", str(units), "--config", str(cfg), cwd=tmp_path)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 1
    assert checks["service-unit"]["status"] == "fail" and "nosuchuser_x does not exist" in checks["service-unit"]["message"]
    assert checks["secrets-file"]["status"] == "fail" and str(offline_env.root / "s.env") in checks["secrets-file"]["message"]


def test_doctor_counts_the_default_role(env, server, sample_db):
    """Privileges granted to the account's default role are active when it logs in, so they count."""
    role = unique("role")
    server.sql(f"CREATE ROLE {role}")
    server.sql(f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{sample_db}`.* TO {role}")
    server.sql(f"GRANT RELOAD, BINLOG MONITOR ON *.* TO {role}")
    server.sql(f"GRANT SELECT ON mysql.proc TO {role}")
    user = make_user(server, [f"GRANT {role} TO {{user}}"])
    server.sql(f"SET DEFAULT ROLE {role} FOR '{user}'@'%'")
    secrets = secrets_file(env.root / "secrets.env", {"TENANGDB_DB_PASSWORD": PASSWORD})
    cfg = env.write_config({"backup": {"databases": [sample_db]}}, database=database_section(server, user))
    data = yaml.safe_load(cfg.read_text())
    data["secrets_file"] = str(secrets)
    cfg.write_text(yaml.safe_dump(data))
    _, checks = doctor(env, cfg)
    assert checks["database-grants"]["status"] == "pass", checks["database-grants"]


def test_doctor_service_account_must_read_the_config(tmp_path):
    """A unit running as `nobody` with a root-only config: every timer run would fail."""
    import pwd
    import shutil
    import tempfile

    from tenangdb.actions import doctor as action
    from tenangdb.config.loader import load_config
    from tenangdb.deploy.systemd import example_units

    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to hand files to nobody")
    nobody = pwd.getpwnam("nobody")
    units = tmp_path / "units"
    units.mkdir()
    (units / "tenangdb.service").write_text(example_units()["tenangdb.service"].replace("=tenangdb\n", "=nobody\n"))
    base = Path(tempfile.mkdtemp(prefix="tenangdb-doctor-"))  # searchable by nobody, unlike pytest's
    try:
        os.chmod(base, 0o755)
        backups = base / "backups"
        backups.mkdir(mode=0o750)
        os.chown(backups, nobody.pw_uid, nobody.pw_gid)
        cfg = base / "config.yaml"
        cfg.write_text(yaml.safe_dump({"backup": {"directory": str(backups)}}))
        os.chmod(cfg, 0o640)
        check = action.service_unit(str(units), load_config(cfg))
        assert check.status == "fail" and "nobody cannot read" in check.message
        os.chown(cfg, 0, nobody.pw_gid)
        check = action.service_unit(str(units), load_config(cfg))
        assert check.status == "pass", check
        os.chown(backups, 0, 0)
        check = action.service_unit(str(units), load_config(cfg))
        assert check.status == "fail" and "cannot write into" in check.message
    finally:
        shutil.rmtree(base)


def test_doctor_world_readable_config_without_secrets_is_a_warning(offline_env):
    from tenangdb.actions import doctor as action
    from tenangdb.config.loader import load_config

    cfg = offline_env.write_config(mode=0o644)
    check = action.config_file(load_config(cfg))
    assert check.status == "warn" and "every user can read it" in check.message
    assert check.fix == f"chmod 0640 {cfg.resolve()}"
