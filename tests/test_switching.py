"""Switching from the original TenangDB: its configs, command lines, probes and metrics file
(tests/original/deployment.yaml) run unchanged against the test server."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from conftest import TENANGDB, run_cli
from fabricate import make_backup
from test_failures import _dump_alive, _slow_dump, _wait_for
from test_metrics import families, free_port, http_get, serving, value

ORIGINAL = yaml.safe_load((Path(__file__).parent / "original" / "deployment.yaml").read_text())
EXPORTER = Path(sys.executable).with_name("tenangdb-exporter")


def original_config(env, name: str, database: str, **replace) -> dict:
    """One of the original's example configs, pointed at the test server and folders. Only the
    original's keys: what must differ from a deployment's is in `original_env`."""
    data = json.loads(json.dumps(ORIGINAL["configs"][name]))
    server = env.server
    data["database"] = {k: v for k, v in data["database"].items() if k not in ("host", "port", "username",
                                                                              "password")}
    data["database"].update(username=server.user, host=server.host, port=server.port)
    if server.password:
        data["database"]["password"] = server.password
    data["backup"]["databases"] = [database]
    if data["backup"]["directory"].startswith("/"):
        data["backup"]["directory"] = str(env.backups)
    for dotted, new in replace.items():
        *path, key = dotted.split("__")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[key] = new
    return data


def original_env(env, *, log_file: bool = True) -> dict:
    """The server's socket and a tracking folder inside the test's, as environment overrides:
    keys only this TenangDB has would make the file no longer the original's. `log_file`: the
    original's default log file (/var/log/tenangdb/tenangdb.log as root) inside the test's
    folder too, for a config that sets none."""
    extra = {"TENANGDB_BACKUP_TRACKING_DIRECTORY": str(env.root / "tracking")}
    if log_file:
        extra["TENANGDB_LOGGING_FILE_PATH"] = str(env.root / "original-default.log")
    if env.server.socket:
        extra["TENANGDB_DATABASE_SOCKET"] = env.server.socket
    return extra


def write(env, data: dict, name: str = "config.yaml") -> Path:
    path = env.root / name
    path.write_text(yaml.safe_dump(data))
    os.chmod(path, 0o600)
    return path


def argv(line: str, **values) -> list[str]:
    return shlex.split(ORIGINAL["command_lines"][line].format(**values))


@contextmanager
def exporter(args: list[str], cwd: Path):
    """tenangdb-exporter, the installed console script, with the original's flags."""
    assert EXPORTER.exists(), f"{EXPORTER} is not installed (pyproject [project.scripts])"
    port = next(a.split("=", 1)[1] if "=" in a else args[i + 1] for i, a in enumerate(args) if a.startswith("--port"))
    with serving([str(EXPORTER), *args], f"http://127.0.0.1:{port}", "/ready",
                 cwd / f"exporter-{time.monotonic_ns()}.log", cwd=cwd) as served:
        yield served


def probes_answer_as_the_original(base: str) -> None:
    for path, status, body in ORIGINAL["probes"].values():
        got_status, headers, got_body = http_get(base + path)
        assert (got_status, got_body) == (status, body), path
        assert headers["Content-Type"] == "application/json"


def test_original_deployment_lines_back_up_clean_up_and_serve(env, sample_db):
    # tenangdb init's systemd units, with config.yaml.example.
    example = write(env, original_config(env, "example", sample_db,
                                         metrics__storage_path=str(env.root / "state" / "metrics.json")))
    done = run_cli(*argv("systemd_backup", config=example), cwd=env.root, env=original_env(env))
    assert done.returncode == 0, done.stderr
    assert "all 1 database backup succeeded" in done.stderr
    # The bare program: the original's deprecated alias of backup, with a one-line warning.
    done = run_cli(*argv("deprecated_bare", config=example), cwd=env.root, env=original_env(env))
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "deprecated" in line] == [
        "warning: tenangdb without a command is deprecated and runs `tenangdb backup`; name the command "
        "(tenangdb --help lists them)"]
    assert len(env.backups_of(sample_db)) == 2
    port = free_port()
    with exporter(argv("systemd_exporter", config=example, port=port), env.root) as (base, _):
        probes_answer_as_the_original(base)

    # example-config-with-frequency-check.yaml: relative folders, from the working directory.
    work = env.root / "work"
    work.mkdir()
    relative = write(env, original_config(env, "frequency_check", sample_db), "frequency.yaml")
    done = run_cli(*argv("cronjob_backup", config=relative), cwd=work, env=original_env(env, log_file=False))
    assert done.returncode == 0, done.stderr
    # Its `timeout: 30m` was never enforced by the original; until the review, neither here.
    assert f"backup.timeout: 30m in {relative}, a config of the original TenangDB, is not enforced" in done.stderr
    [first] = (work / "backups" / sample_db).glob("*/*")
    assert "backup" in (work / "log" / "tenangdb.log").read_text()
    done = run_cli(*argv("systemd_cleanup", config=relative), cwd=work, env=original_env(env, log_file=False))
    assert done.returncode == 0, done.stderr
    assert "cleanup runs as --dry-run until you review what now changes with `tenangdb config --migrate`" \
        in done.stderr
    assert list((work / "backups" / sample_db).glob("*/*")) == [first]  # a fresh backup is never deleted


def test_original_example_config_cleanup_line(env, sample_db):
    # Uploads off: its placeholder `remote:backup-folder` is not listed (it cannot be). Until the
    # review, cleanup (the command, and the one after each backup) only shows its plan.
    old = make_backup(env.backups, sample_db, datetime.now(timezone.utc) - timedelta(days=10))
    example = write(env, original_config(env, "example", sample_db, cleanup__enabled=True))
    done = run_cli(*argv("systemd_backup", config=example), cwd=env.root, env=original_env(env))
    assert done.returncode == 0, done.stderr
    assert "cleanup after backup: " in done.stderr and "cleanup (dry run): would delete 1" in done.stderr
    done = run_cli(*argv("systemd_cleanup", config=example), cwd=env.root, env=original_env(env))
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing will be deleted" in done.stdout and f"DELETE local  {sample_db}/" in done.stdout
    assert "tenangdb config --migrate" in done.stderr and "cannot list the remote" not in done.stderr
    assert old.is_dir() and len(env.backups_of(sample_db)) == 2

    # Reviewed and acknowledged: the backup older than max_age_days goes, the new one stays.
    done = run_cli("config", "--migrate", "--write", "--config", str(example), cwd=env.root)
    assert done.returncode == 0, done.stderr
    done = run_cli(*argv("systemd_cleanup", config=example), cwd=env.root, env=original_env(env))
    assert done.returncode == 0, done.stderr
    assert "dry run" not in done.stdout and "deleted 1 item(s)" in done.stdout
    assert not old.exists() and len(env.backups_of(sample_db)) == 1


# What `config --migrate` names for each of the original's example configs.
REVIEWED = {
    "example": {"cleanup.remote_retention_days", "cleanup.weekend_only", "cleanup.age_based_cleanup",
                "cleanup.max_age_days", "cleanup.verify_cloud_exists", "metrics.port", "backup.timeout",
                "backup.compression.enabled", "logging.file_path"},
    "frequency_check": {"backup.timeout", "backup.retry_delay", "cleanup.weekend_only", "cleanup.max_age_days",
                        "backup.compression.enabled", "database.mydumper.enabled"},
    "kubernetes": {"cleanup.remote_retention_days", "cleanup.weekend_only", "cleanup.max_age_days",
                   "cleanup.verify_cloud_exists", "metrics.port", "backup.timeout", "backup.compression.enabled",
                   "database.mydumper.enabled", "logging.file_path"},
}


@pytest.mark.parametrize("name", sorted(ORIGINAL["configs"]))
def test_config_migrate_reviews_each_original_config(offline_env, name):
    env = offline_env
    text = "# the operator's own comment\n" + yaml.safe_dump(ORIGINAL["configs"][name], sort_keys=False)
    cfg = env.root / "config.yaml"
    cfg.write_text(text)
    os.chmod(cfg, 0o640)
    done = env.cli("config", "--migrate", config=cfg)
    assert done.returncode == 0, done.stderr
    changes = [line for line in done.stdout.splitlines() if " — " in line]
    assert {line.split(":")[0] for line in changes} == REVIEWED[name], done.stdout
    assert "acknowledge it with `tenangdb config --migrate --write`" in done.stdout
    said = "\n".join(changes)
    if name == "example":
        assert ("cleanup.remote_retention_days: 3 — the original never deleted remote copies; TenangDB will "
                "delete remote copies older than 3 days") in said
        assert "cleanup.weekend_only: false — the original ran cleanup only on Saturday and Sunday" in said
        assert "metrics.port: 8080 — the original served metrics on it only while `tenangdb backup` ran" in said
    if name == "frequency_check":
        assert "backup.timeout: 30m — the original never enforced it; TenangDB kills a dump that runs longer" in said
    assert cfg.read_text() == text  # a review changes nothing
    assert review_check(env, cfg)["status"] == "warn"

    done = env.cli("config", "--migrate", "--write", config=cfg)
    assert done.returncode == 0, done.stderr
    kept = env.root / "config.yaml.original"
    assert kept.read_text() == text and kept.stat().st_mode & 0o777 == 0o640
    new = cfg.read_text()
    assert new.startswith("# Reviewed with `tenangdb config --migrate`")
    assert new.endswith("\nconfig_version: 2\n" + text)
    assert cfg.stat().st_mode & 0o777 == 0o640
    done = env.cli("config", "--migrate", config=cfg)
    assert done.returncode == 0 and "nothing to review" in done.stdout and "config_version: 2" in done.stdout
    assert review_check(env, cfg) is None


def review_check(env, cfg):
    """doctor's check of a config of the original not yet reviewed, or None."""
    done = env.cli("doctor", "--json", config=cfg, timeout=120)
    found = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "config-review"]
    return found[0] if found else None


def test_config_migrate_on_a_config_of_this_tenangdb(offline_env):
    env = offline_env
    cfg = env.write_config()  # sets backup.tracking_directory, which the original never had
    done = env.cli("config", "--migrate", "--write", config=cfg)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"nothing to review: {cfg} is not a config of the original TenangDB (it sets "
                           "backup.tracking_directory, which only this TenangDB has)\n")
    assert not (env.root / "config.yaml.original").exists()
    assert env.cli("config", "--write", config=cfg).returncode == 2


def test_config_migrate_write_refuses_what_it_cannot_write(offline_env):
    env = offline_env
    cfg = env.root / "config.yaml"
    cfg.write_text("backup:\n  databases: [shop]\n")
    os.chmod(cfg, 0o600)
    (env.root / "config.yaml.original").mkdir()  # where the old file's copy must go
    done = env.cli("config", "--migrate", "--write", config=cfg)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"error: cannot write {cfg}.original: Is a directory; {cfg} is unchanged" in done.stderr
    assert cfg.read_text() == "backup:\n  databases: [shop]\n"
    # A flow mapping cannot take a line at the top: refused, unchanged.
    (env.root / "config.yaml.original").rmdir()
    cfg.write_text("{backup: {databases: [shop]}}\n")
    done = env.cli("config", "--migrate", "--write", config=cfg)
    assert done.returncode == 2 and "add the line at the top by hand" in done.stderr
    assert cfg.read_text() == "{backup: {databases: [shop]}}\n"
    assert not (env.root / "config.yaml.original").exists()


def test_unreviewed_original_timeout_does_not_kill_a_dump(env, sample_db, tmp_path):
    slow = _slow_dump(tmp_path)
    cfg = write(env, original_config(env, "frequency_check", sample_db, backup__timeout="1s",
                                     # the file's 10 s between retries would only make the test wait
                                     backup__retry_delay="1s",
                                     database__mysqldump_path=str(slow), database__mydumper__enabled=False))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")}
    proc = subprocess.Popen([*TENANGDB, *argv("cronjob_backup", config=cfg)], cwd=env.root, text=True,
                            env={**environ, **original_env(env)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: list(env.backups.rglob("*.partial")) and (tmp_path / "dump.pid").exists())
        time.sleep(3)  # three times the timeout the file sets
        assert proc.poll() is None and _dump_alive(tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"backup.timeout: 1s in {cfg}, a config of the original TenangDB, is not enforced" in err
    assert "timed out" not in err
    assert _wait_for(lambda: not _dump_alive(tmp_path), timeout=10)

    # Reviewed: the timeout it sets is the one enforced.
    assert run_cli("config", "--migrate", "--write", "--config", str(cfg), cwd=env.root).returncode == 0
    done = run_cli(*argv("cronjob_backup", config=cfg), cwd=env.root, env=original_env(env))
    assert done.returncode == 4 and "timed out after 1 s (backup.timeout)" in done.stderr


def test_original_kubernetes_cronjob_and_exporter(env, sample_db):
    (env.root / "rclone.conf").write_text("")
    metrics_file = env.root / "data" / "metrics" / "metrics.json"
    remote = env.root / "remote"
    data = original_config(env, "kubernetes", sample_db, upload__destination=str(remote),
                           upload__rclone_config_path=str(env.root / "rclone.conf"),
                           metrics__storage_path=str(metrics_file))
    config = write(env, data)
    done = run_cli(*argv("cronjob_backup", config=config), cwd=env.root, env=original_env(env))
    assert done.returncode == 0, done.stderr
    assert "frequency: ignored, as the original TenangDB ignored it" in done.stderr
    assert list(remote.glob(f"{sample_db}/*/*/manifest.json"))

    port = free_port()
    with exporter(argv("deployment_exporter", port=port, metrics_file=metrics_file), env.root) as (base, log):
        probes_answer_as_the_original(base)
        fams = families(http_get(base + "/metrics")[2])
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database=sample_db) == 1
        assert value(fams, "tenangdb_upload_success", "tenangdb_upload_success_total", database=sample_db) == 1
        # The original's names its dashboards query, served as deprecated with truthful values.
        assert value(fams, "tenangdb_backup_process_active") == 0
        assert value(fams, "tenangdb_system_health") == 1
        assert time.time() - 600 < value(fams, "tenangdb_last_process_timestamp") <= time.time()
        assert "Deprecated" in fams["tenangdb_system_health"].documentation
        # The Deployment is scraped through a Service: the original listened on every interface.
        log.seek(0)
        assert "listening on http://0.0.0.0:" in log.read()


def test_original_metrics_json_is_imported_and_served(env, sample_db):
    state = env.root / "state" / "metrics.json"
    state.parent.mkdir()
    original = json.dumps(ORIGINAL["metrics_json"], indent=2)
    state.write_text(original)
    # Its placeholder upload destination left out: the cleanup below must reach its end.
    cfg = write(env, original_config(env, "example", sample_db, metrics__enabled=True,
                                     metrics__storage_path=str(state), upload__destination=None))
    port = free_port()
    with exporter(["--config", str(cfg), "--port", str(port)], env.root) as (base, log):
        probes_answer_as_the_original(base)
        assert http_get(base + "/healthz")[0] == 200
        fams = families(http_get(base + "/metrics")[2])
        assert value(fams, "tenangdb_metrics_state_readable") == 1
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database="app_db") == 41
        assert value(fams, "tenangdb_backup_failed", "tenangdb_backup_failed_total", database="app_db") == 2
        assert value(fams, "tenangdb_backup_failed", "tenangdb_backup_failed_total", database="old_db") == 5
        assert value(fams, "tenangdb_backup_size_bytes", database="app_db") == 1048576
        assert value(fams, "tenangdb_backup_size_bytes", database="old_db") is None  # 0 meant "failed"
        last = datetime.fromisoformat("2025-08-01T02:00:40.5+07:00").timestamp()
        assert value(fams, "tenangdb_backup_last_success_timestamp", database="app_db") == last
        assert value(fams, "tenangdb_backup_last_success_timestamp", database="old_db") is None
        assert value(fams, "tenangdb_upload_success", "tenangdb_upload_success_total", database="app_db") == 40
        assert value(fams, "tenangdb_total_databases") == 2
        assert value(fams, "tenangdb_cleanup_success", "tenangdb_cleanup_success_total") == 4
        assert value(fams, "tenangdb_last_process_timestamp") == datetime.fromisoformat(
            "2025-08-01T02:00:41.123456+07:00").timestamp()
        assert value(fams, "tenangdb_backup_process_active") == 0  # its stuck `true` is not believed
        # The original never read metrics.port in its exporter: 9090 unless --port, so no warning here.
        log.seek(0)
        assert "metrics.port" not in log.read()

        done = run_cli("backup", "--config", str(cfg), "--yes", cwd=env.root, env=original_env(env))
        assert done.returncode == 0, done.stderr
        assert "is the original TenangDB's; its counts and times are imported" in done.stderr
        assert state.with_name("metrics.json.original").read_text() == original
        assert json.loads(state.read_text())["format"] == 1
        # Reviewed, so that the cleanup below is a real one and counted.
        assert run_cli("config", "--migrate", "--write", "--config", str(cfg), cwd=env.root).returncode == 0
        done = run_cli("cleanup", "--yes", "--config", str(cfg), cwd=env.root, env=original_env(env))
        assert done.returncode == 0, done.stderr
        fams = families(http_get(base + "/metrics")[2])
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database="app_db") == 41
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database=sample_db) == 1
        assert value(fams, "tenangdb_cleanup_success", "tenangdb_cleanup_success_total") == 5
        assert value(fams, "tenangdb_cleanup_files_removed", "tenangdb_cleanup_files_removed_total") == 0
        assert time.time() - 600 < value(fams, "tenangdb_cleanup_last_timestamp") <= time.time()
        assert value(fams, "tenangdb_last_process_timestamp") > last


def test_the_originals_duration_panels_keep_their_series_as_gauges(env, sample_db):
    """Its Grafana panels read tenangdb_*_duration_seconds as gauges (the latest run's time);
    metrics.duration_form: gauge serves them so, imported values and new runs alike."""
    state = env.root / "state" / "metrics.json"
    state.parent.mkdir()
    state.write_text(json.dumps(ORIGINAL["metrics_json"]))
    cfg = write(env, original_config(env, "example", sample_db, metrics__enabled=True,
                                     metrics__storage_path=str(state), upload__destination=None,
                                     metrics__duration_form="gauge"))
    port = free_port()
    with exporter(["--config", str(cfg), "--port", str(port)], env.root) as (base, _):
        fams = families(http_get(base + "/metrics")[2])
        assert fams["tenangdb_backup_duration_seconds"].type == "gauge"
        assert value(fams, "tenangdb_backup_duration_seconds", database="app_db") == 12.5
        assert value(fams, "tenangdb_upload_duration_seconds", database="app_db") == 14
        done = run_cli("backup", "--config", str(cfg), "--yes", cwd=env.root, env=original_env(env))
        assert done.returncode == 0, done.stderr
        fams = families(http_get(base + "/metrics")[2])
        assert 0 < value(fams, "tenangdb_backup_duration_seconds", database=sample_db) < 120


def test_exporter_port_of_the_original_config_is_explained(offline_env):
    env = offline_env
    cfg = env.write_config({"metrics": {"port": "8080", "storage_path": str(env.root / "m.json")}})
    # No --port: the original's exporter listened on 9090 whatever metrics.port said; a test
    # cannot count on 9090 being free, so --listen narrows and the log is what is checked.
    proc = subprocess.Popen([str(EXPORTER), "--config", str(cfg), "--listen", "127.0.0.1"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")})
    lines = []
    try:
        # Until it listens (or finds 9090 taken on this machine): the warning comes before either.
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line and "metrics.port" not in line or "cannot listen" in line:
                break
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=10)
    assert "metrics.port 8080 is not used by tenangdb-exporter" in lines[0], lines
    assert "listening on 9090" in lines[0], lines


def test_original_cli_forms(offline_env):
    env = offline_env
    cfg = env.write_config({"backup": {"databases": ["shop"]}})
    other = env.write_config({"backup": {"databases": ["other"]}}, name="other.yaml")
    # Global options after the command, and there they win over those before it.
    done = env.cli("--config", str(other), "config", "--config", str(cfg), "--log-level", "warn")
    assert done.returncode == 0, done.stderr
    assert "backup.databases = shop" in done.stdout
    for level in ("trace", "WARN", "fatal"):
        assert env.cli("config", "--log-level", level, "--config", str(cfg)).returncode == 0
    done = env.cli("config", "--log-level", "loud", "--config", str(cfg))
    assert done.returncode == 2 and "'loud' is not one of" in done.stderr
    # The bare program with the original's root flags.
    done = env.cli("--config", str(cfg), "--dry-run", "--databases", "a,b")
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing will be changed" in done.stdout and "databases: a, b" in done.stdout
    assert "deprecated" in done.stderr and done.stderr.count("\n") == 1
    done = env.cli("--dry-run", "list", "--config", str(cfg))
    assert done.returncode == 2 and "belong after the command" in done.stderr
    # help and completion, as cobra had them.
    assert env.cli("help", "backup").stdout == env.cli("backup", "--help").stdout
    assert env.cli("help", "key", "generate").stdout == env.cli("key", "generate", "--help").stdout
    assert env.cli("help").stdout == env.cli("--help").stdout
    assert env.cli("help", "nope").returncode == 2
    for shell in ("bash", "zsh", "fish"):
        done = env.cli("completion", shell)
        assert done.returncode == 0 and "_TENANGDB_COMPLETE" in done.stdout, shell
    assert env.cli("completion", "powershell").returncode == 2


def test_exporter_program_surface(tmp_path):
    done = subprocess.run([str(EXPORTER), "version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("TenangDB Exporter version ")
    assert "Platform: " in done.stdout
    done = subprocess.run([str(EXPORTER), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("TenangDB Exporter version ")
    done = subprocess.run([str(EXPORTER), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--metrics-file" in done.stdout and "--port" in done.stdout
    done = subprocess.run([str(EXPORTER), "completion", "bash"], capture_output=True, text=True)
    assert done.returncode == 0 and "_TENANGDB_EXPORTER_COMPLETE" in done.stdout
    # A config named with --config that cannot be loaded is an error, as in the original.
    bad = tmp_path / "bad.yaml"
    bad.write_text("backup:\n  directry: /x\n")
    done = subprocess.run([str(EXPORTER), "--config", str(bad), "--port", str(free_port())], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 2 and "did you mean 'directory'" in done.stderr
    assert "Traceback" not in done.stderr


def test_exporter_stopped_while_starting_stops(offline_env):
    # SIGTERM as soon as the first start-up line is out: whether it lands in our code, in a
    # logging call (which swallows the exception) or in the serving loop, the exporter ends.
    env = offline_env
    cfg = env.write_config({"metrics": {"port": "8080", "storage_path": str(env.root / "m.json")}})
    for _ in range(3):
        proc = subprocess.Popen([str(EXPORTER), "--config", str(cfg), "--listen", "127.0.0.1", "--port",
                                 str(free_port())], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL,
                                env={k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")})
        proc.stderr.readline()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("tenangdb-exporter ignored a SIGTERM that came while it started")
        assert proc.returncode in (0, 130)
