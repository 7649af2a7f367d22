"""`tenangdb init` against the real server: flags only (no terminal), a pseudo-terminal session,
--deploy-systemd into a root prefix, dry runs, and the least-privilege grants it prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TENANGDB, on_a_terminal, unique

PASSWORD = 'p"w$`x\\1 !'  # everything a shell, YAML or a secrets file could trip on


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_user(server, privileges: list[str] | None = None, password: str = PASSWORD) -> str:
    name = unique("bk")
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    server.sql(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{quoted}'")
    for grant in privileges or []:
        server.sql(grant.replace("{user}", f"'{name}'@'%'"))
    return name


def connection_flags(server) -> list[str]:
    if server.socket:
        return ["--socket", server.socket]
    return ["--host", server.host, "--port", str(server.port)]


def init_argv(env, user: str, database: str, *extra: str) -> list[str]:
    root = env.root
    return ["--config", str(root / "etc" / "config.yaml"), "init", *connection_flags(env.server),
            "--db-user", user, "--databases", database, "--backup-dir", str(root / "backups"),
            "--state-dir", str(root / "state"), "--log-file", str(root / "log" / "tenangdb.log"), *extra]


def test_init_without_a_terminal_then_least_privilege_backup_and_restore(env, server, sample_db):
    user = make_user(server, ["GRANT SELECT ON *.* TO {user}"])
    done = env.cli(*init_argv(env, user, sample_db), env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    etc = env.root / "etc"
    config, secrets, key = etc / "config.yaml", etc / "secrets.env", etc / "age-identity.txt"
    assert mode(config) == 0o640 and mode(secrets) == 0o600 and mode(key) == 0o600
    for folder in ("backups", "state", "log"):
        assert mode(env.root / folder) == 0o750
    # The repository's identity is made now and recorded in the state folder the config names.
    marker = json.loads((env.root / "backups" / ".tenangdb-repository").read_text())
    [record] = (env.root / "state").glob(".tenangdb_repository_*.json")
    assert json.loads(record.read_text())["id"] == marker["id"]
    assert config.stat().st_uid == os.geteuid()
    text = config.read_text()
    assert PASSWORD not in text and "password: ${TENANGDB_DB_PASSWORD}" in text
    data = yaml.safe_load(text)
    assert data["secrets_file"] == str(secrets) and data["backup"]["databases"] == [sample_db]
    assert data["backup"]["encryption"] == {"enabled": True, "key_file": str(key)}
    # Global SELECT covers tables and routines, but views, triggers and events need more.
    assert "lacks what backups need" in done.stderr and "SHOW VIEW" in done.stderr
    statements = re.findall(r"^\s+(GRANT .*;)$", done.stderr, re.M)
    assert statements and all(f"'{user}'@'%'" in s for s in statements)
    for statement in statements:
        server.sql(statement)
    server.sql(f"REVOKE SELECT ON *.* FROM '{user}'@'%'")

    # The config works as written: the password comes from the secrets file, nowhere else.
    shown = env.cli("config", config=config)
    assert shown.returncode == 0 and PASSWORD not in shown.stdout
    assert "via ${TENANGDB_DB_PASSWORD}" in shown.stdout
    backup = env.cli("backup", "--yes", config=config)
    assert backup.returncode == 0, backup.stderr
    [folder] = env.backups_of(sample_db)
    manifest = yaml.safe_load((folder / "manifest.json").read_text())
    # RELOAD was granted: commits were held while the snapshots opened, so the content is proven.
    assert manifest["content_checks"]["method"] == "snapshot"
    assert manifest["content_checks"]["aligned"]["method"] == "backup-stage-block-commit"

    # Restore (as the administrator): the routines and triggers came through the narrow grants.
    target = unique("restored")
    admin = env.write_config({"backup": {"encryption": {"enabled": True, "key_file": str(key)}}},
                             name="admin.yaml")
    restored = env.cli("restore", "-b", str(folder), "-d", target, config=admin)
    assert restored.returncode == 0, restored.stderr
    assert server.sql("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA="
                      f"'{target}'").strip() == "1"
    assert server.sql(f"SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{target}'"
                      ).strip() == "1"
    server.sql(f"DROP DATABASE `{target}`")

    # Never overwritten without --force.
    before = config.read_bytes()
    again = env.cli(*init_argv(env, user, sample_db), env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr and "--force" in again.stderr
    assert config.read_bytes() == before
    forced = env.cli(*init_argv(env, user, sample_db, "--force", "--encryption", "none"),
                     env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert forced.returncode == 0, forced.stderr
    assert "grants of" in forced.stderr and "exactly what backups need" in forced.stderr
    assert yaml.safe_load(config.read_text())["backup"]["encryption"] == {"enabled": False}
    # Even --force never replaces an identity: backups made with it would become unreadable.
    identity = key.read_bytes()
    kept = env.cli(*init_argv(env, user, sample_db, "--force"), env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert kept.returncode == 0, kept.stderr
    assert "Keeping the existing age identity" in kept.stderr and key.read_bytes() == identity
    assert yaml.safe_load(config.read_text())["backup"]["encryption"] == {"enabled": True, "key_file": str(key)}


def test_init_without_a_terminal_never_waits(offline_env):
    done = offline_env.cli("--config", str(offline_env.root / "c.yaml"), "init", "--socket", "/nonexistent")
    assert done.returncode == 2
    assert "no terminal to ask on" in done.stderr and "--db-user" in done.stderr and "--databases" in done.stderr
    assert not (offline_env.root / "c.yaml").exists()
    bogus = offline_env.cli("--config", str(offline_env.root / "c.yaml"), "init", "--db-user", "u",
                            "--databases", "a", "--recipient", "bogus", "--socket", "/nonexistent")
    assert bogus.returncode == 2 and "not an age recipient" in bogus.stderr
    unreachable = offline_env.cli("init", "--config", str(offline_env.root / "c.yaml"), "--db-user", "u",
                                  "--databases", "a", "--socket", "/nonexistent", "--encryption", "none")
    assert unreachable.returncode == 3 and "cannot connect" in unreachable.stderr
    assert not (offline_env.root / "c.yaml").exists()


def test_init_password_from_stdin_and_bad_answers(env, server, sample_db):
    user = make_user(server)
    argv = [*TENANGDB, *init_argv(env, user, sample_db, "--password-stdin", "--encryption", "none")]
    wrong = subprocess.run(argv, input="not-the-password\n", capture_output=True, text=True, cwd=env.root,
                           env={k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}, timeout=120)
    assert wrong.returncode == 3 and "access denied" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (env.root / "etc").exists()
    both = env.cli(*init_argv(env, user, "all,x"), env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert both.returncode == 2 and "`all` cannot be combined" in both.stderr
    assert not (env.root / "etc").exists()
    good = subprocess.run(argv, input=PASSWORD + "\n", capture_output=True, text=True, cwd=env.root,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}, timeout=120)
    assert good.returncode == 0, good.stderr
    assert f"this account cannot see {sample_db}" in good.stderr  # no privileges yet
    from tenangdb.config.loader import read_secrets_file
    assert read_secrets_file(env.root / "etc" / "secrets.env") == {"TENANGDB_DB_PASSWORD": PASSWORD}


def rclone_remote(root: Path) -> tuple[Path, Path]:
    conf = root / "rclone.conf"
    conf.write_text("[local]\ntype = local\n")
    os.chmod(conf, 0o600)
    target = root / "remote"
    target.mkdir()
    return conf, target


def test_init_tests_the_upload_destination(env, server, sample_db):
    user = make_user(server)
    conf, target = rclone_remote(env.root)
    bad = env.cli(*init_argv(env, user, sample_db, "--upload", "nosuchremote:x", "--rclone-config", str(conf)),
                  env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert bad.returncode == 5 and "cannot write to nosuchremote:x" in bad.stderr
    assert not (env.root / "etc").exists()
    good = env.cli(*init_argv(env, user, sample_db, "--upload", f"local:{target}", "--rclone-config", str(conf)),
                   env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert good.returncode == 0, good.stderr
    assert "written, read back and deleted a probe" in good.stderr
    assert not list(target.rglob(".tenangdb-probe-*"))  # the probe is gone
    upload = yaml.safe_load((env.root / "etc" / "config.yaml").read_text())["upload"]
    assert upload == {"enabled": True, "destination": f"local:{target}", "rclone_config_path": str(conf)}


def units_of(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every directive; keys may repeat, as systemd allows."""
    entries, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        assert section and key, line
        entries.append((section, key, value))
    return entries


# The security guide's block, as an operator who followed it has it.
GUIDE_LOGROTATE = """/var/log/tenangdb/*.log {
    daily
    rotate 30
    compress
    delaycompress
    missingok
    notifempty
    create 640 tenangdb tenangdb
}
"""


def prefix_root(base: Path) -> Path:
    root = base / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).write_text("")
        os.chmod(root / "etc" / name, 0o600)
    return root


HARDENING = {"NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
             "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
             "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "ProtectHostname": "yes", "ProtectClock": "yes",
             "LimitNOFILE": "65536", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
             "CapabilityBoundingSet": ""}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="needs root and useradd")
def test_init_deploy_systemd_into_a_root_prefix(env, server, sample_db):
    user = make_user(server)
    root = prefix_root(env.root)
    host_passwd = Path("/etc/passwd").read_text()
    (root / "etc" / "logrotate.d").mkdir()
    (root / "etc" / "logrotate.d" / "tenangdb").write_text(GUIDE_LOGROTATE)
    done = env.cli("init", "--deploy-systemd", "--systemd-user", "tdbsvc", "--root", str(root),
                   *connection_flags(server), "--db-user", user, "--databases", sample_db, "--metrics",
                   "--metrics-listen", "0.0.0.0", env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert Path("/etc/passwd").read_text() == host_passwd  # the machine's own users are untouched
    entry = next(line for line in (root / "etc" / "passwd").read_text().splitlines() if line.startswith("tdbsvc:"))
    _, _, uid, gid, _, home, shell = entry.split(":")
    uid, gid = int(uid), int(gid)
    assert home == "/var/lib/tenangdb" and shell == "/usr/sbin/nologin" and uid < 1000
    assert "Created the system user tdbsvc" in done.stderr
    assert (root / "etc" / "logrotate.d" / "tenangdb").read_text() == GUIDE_LOGROTATE
    assert "left the existing /etc/logrotate.d/tenangdb as it is" in done.stderr

    etc = root / "etc" / "tenangdb"
    def owner(p: Path) -> tuple[int, int, int]:
        st = p.stat()
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
    assert owner(etc) == (0, gid, 0o750)
    assert owner(etc / "config.yaml") == (0, gid, 0o640)
    assert owner(etc / "secrets.env") == (0, 0, 0o600)
    assert owner(etc / "age-identity.txt") == (0, 0, 0o600)
    # A package tree gets no repository identity: every host installed from it would share it.
    assert not (root / "var" / "backups" / "tenangdb" / ".tenangdb-repository").exists()
    for folder in ("var/backups/tenangdb", "var/lib/tenangdb", "var/log/tenangdb"):
        assert owner(root / folder) == (uid, gid, 0o750), folder
    config_text = (etc / "config.yaml").read_text()
    assert PASSWORD not in config_text
    metrics_password = re.search(r'TENANGDB_METRICS_BASIC_AUTH_PASSWORD="([^"]+)"',
                                 (etc / "secrets.env").read_text()).group(1)
    assert len(metrics_password) >= 24 and metrics_password not in config_text

    unit_dir = root / "etc" / "systemd" / "system"
    names = sorted(p.name for p in unit_dir.iterdir())
    assert names == ["tenangdb-cleanup.service", "tenangdb-cleanup.timer", "tenangdb-exporter.service",
                     "tenangdb-verify.service", "tenangdb-verify.timer", "tenangdb.service", "tenangdb.timer"]
    commands = {}
    for name in names:
        entries = units_of((unit_dir / name).read_text())
        keys = {(s, k) for s, k, _ in entries}
        assert ("Unit", "Requires") not in keys
        if name.endswith(".timer"):
            assert ("Timer", "OnCalendar") in keys and ("Install", "WantedBy") in keys
            continue
        service = {k: v for s, k, v in entries if s == "Service"}
        for key, value in HARDENING.items():
            assert service.get(key) == value, (name, key)
        assert service["User"] == "tdbsvc" and service["Group"] == "tdbsvc"
        assert "/var/backups/tenangdb" in service["ReadWritePaths"]
        credentials = [v for s, k, v in entries if k == "LoadCredential"]
        assert "secrets.env:/etc/tenangdb/secrets.env" in credentials
        assert all(PASSWORD not in v and metrics_password not in v for _, _, v in entries)
        commands[name] = service["ExecStart"].split("--config /etc/tenangdb/config.yaml ", 1)[1]
    assert commands == {"tenangdb.service": "backup --yes", "tenangdb-verify.service": "verify --latest",
                        "tenangdb-cleanup.service": "cleanup --yes", "tenangdb-exporter.service": "exporter"}
    if shutil.which("systemd-analyze"):
        assert "the units are clean" in done.stderr
        check = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, sorted(unit_dir.iterdir()))],
                               capture_output=True, text=True)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stderr


def test_init_dry_run_writes_nothing(env, server, sample_db):
    user = make_user(server)
    done = env.cli(*init_argv(env, user, sample_db, "--deploy-systemd", "--dry-run", "--metrics",
                              "--metrics-listen", "0.0.0.0"), env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert not (env.root / "etc").exists() and not (env.root / "backups").exists()
    assert "# --- /etc/systemd/system/tenangdb.service" in done.stdout and "ProtectSystem=strict" in done.stdout
    rotation = done.stdout.split("# --- /etc/logrotate.d/tenangdb\n", 1)[1]
    assert rotation.startswith("# Written by") and f"{env.root / 'log' / 'tenangdb.log'} {{" in rotation
    assert "TENANGDB_DB_PASSWORD, TENANGDB_METRICS_BASIC_AUTH_PASSWORD (values not shown)" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_init_interactive_on_a_terminal(env, server, sample_db):
    user = make_user(server, [f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{sample_db}`.* TO {{user}}",
                              "GRANT RELOAD, BINLOG MONITOR ON *.* TO {user}",
                              "GRANT SELECT ON mysql.proc TO {user}"])
    where = server.socket or server.host
    script = [(b"Database host", where.encode())]
    if not server.socket:
        script.append((b"Database port", str(server.port).encode()))
    script += [
        (b"Database user", user.encode()),
        (b"Password", b"wrong-password"),
        (b"Database user", b""),  # keeps the answer given before
        (b"Password", PASSWORD.encode()),
        (b"Databases to back up", sample_db.encode()),
        (b"Backup directory", str(env.root / "backups").encode()),
        (b"Compression", b"zip"),
        (b"Compression", b"gzip"),  # asked again after the wrong answer
        (b"Encrypt backups", b"y"),
        (b"age recipients", b""),
        (b"Upload destination", b""),
        (b"Enable Prometheus metrics", b"n"),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    status, screen = on_a_terminal(["--config", str(env.root / "etc" / "config.yaml"), "init",
                             "--state-dir", str(env.root / "state"), "--log-file", ""], script, env.root, clean)
    assert status == 0, screen
    assert PASSWORD not in screen and "wrong-password" not in screen  # typed, never echoed
    assert "access denied" in screen and "try again" in screen and "choose zstd, gzip, xz or none" in screen
    assert "exactly what backups need" in screen
    data = yaml.safe_load((env.root / "etc" / "config.yaml").read_text())
    assert data["database"]["username"] == user and data["database"]["password"] == "${TENANGDB_DB_PASSWORD}"
    assert data["backup"]["compression"] == {"format": "gzip"} and data["backup"]["databases"] == [sample_db]
    assert data["backup"]["encryption"]["enabled"] is True and "logging" in data
    assert mode(env.root / "etc" / "secrets.env") == 0o600 and mode(env.root / "etc" / "config.yaml") == 0o640


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
def test_deploy_systemd_needs_root(tmp_path):
    os.chmod(tmp_path, 0o777)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *TENANGDB,
                           "--config", str(tmp_path / "c.yaml"), "init", "--deploy-systemd", "--db-user", "x",
                           "--databases", "all"], capture_output=True, text=True, cwd=tmp_path, env=clean,
                          timeout=120, stdin=subprocess.DEVNULL)
    if "Permission denied" in done.stderr or "No module named" in done.stderr:
        pytest.skip("the project is not readable by nobody here")
    assert done.returncode == 1, done.stderr
    assert "run it as root" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c.yaml").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="needs root and useradd")
def test_init_deploy_keeps_existing_units_without_force(env, server, sample_db):
    user = make_user(server)
    root = prefix_root(env.root)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / "tenangdb-exporter.service").write_text("[Service]\nExecStart=/bin/true\n")
    argv = ["init", "--deploy-systemd", "--root", str(root), *connection_flags(server), "--db-user", user,
            "--databases", sample_db]
    done = env.cli(*argv, env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert done.returncode == 1 and "tenangdb-exporter.service already exists" in done.stderr
    assert sorted(p.name for p in units.iterdir()) == ["tenangdb-exporter.service"]
    assert not (root / "etc" / "tenangdb").exists()
    (root / "etc" / "logrotate.d").mkdir()
    (root / "etc" / "logrotate.d" / "tenangdb").write_text(GUIDE_LOGROTATE)
    forced = env.cli(*argv, "--force", env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert forced.returncode == 0, forced.stderr
    assert (units / "tenangdb.service").exists()
    # The log file init configured, rotated as the guide says, by and for the service account.
    policy = root / "etc" / "logrotate.d" / "tenangdb"
    st = policy.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    lines = [line.strip() for line in policy.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["/var/log/tenangdb/tenangdb.log {", "su tenangdb tenangdb", "daily", "rotate 30", "compress",
                     "delaycompress", "missingok", "notifempty", "create 0640 tenangdb tenangdb", "}"]


@pytest.mark.skipif(not shutil.which("mydumper"), reason="mydumper is not installed")
def test_printed_grants_suffice_for_mydumper(env, server):
    """With mydumper installed `auto` picks it; the GRANTs init prints must let it run."""
    import json
    db = unique("plain")
    server.sql(f"CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v TEXT); "
               f"INSERT INTO `{db}`.t VALUES (1, 'a'), (2, 'b');")
    user = make_user(server)
    done = env.cli(*init_argv(env, user, db, "--encryption", "none"), env={"TENANGDB_DB_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    statements = re.findall(r"^\s+(GRANT .*;)$", done.stderr, re.M)
    assert any("RELOAD" in s for s in statements)
    for statement in statements:
        server.sql(statement)
    backup = env.cli("backup", "--yes", config=env.root / "etc" / "config.yaml")
    assert backup.returncode == 0, backup.stderr
    [folder] = env.backups_of(db)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["engine"]["name"] == "mydumper" and manifest["content_checks"]["method"] == "snapshot"
    server.sql(f"DROP DATABASE `{db}`")
