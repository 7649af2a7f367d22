"""Metrics against the real CLI: state file, exporter over HTTP(S), textfile, dashboards and rules."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import TENANGDB, unique

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metrics_section(env, **extra) -> dict:
    section = {"enabled": True, "storage_path": str(env.root / "state" / "metrics.json"),
               "textfile": str(env.root / "textfile" / "tenangdb.prom")}
    section.update(extra)
    return section


def http_get(url: str, *, auth: tuple[str, str] | None = None, context: ssl.SSLContext | None = None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@contextmanager
def running_exporter(config: Path, *, scheme: str = "http", context: ssl.SSLContext | None = None):
    port = free_port()
    with serving([*TENANGDB, "--config", str(config), "exporter", "--port", str(port)],
                 f"{scheme}://127.0.0.1:{port}", "/healthz", config.parent / f"exporter-{port}.log",
                 context=context) as (base, _):
        yield base


@contextmanager
def serving(argv: list[str], base: str, probe: str, log_path: Path, *, cwd: Path | None = None,
            context: ssl.SSLContext | None = None):
    """Run an exporter until `probe` answers; on leaving, SIGTERM must end it with exit 0 and no
    traceback. Yields the base URL and its open log."""
    log = open(log_path, "w+")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                            env={k: v for k, v in os.environ.items() if not k.startswith("TENANGDB_")})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                http_get(base + probe, context=context)
                break
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"{Path(argv[0]).name} did not answer: {log.read()}")
                time.sleep(0.05)
        yield base, log
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=10)
        log.seek(0)
        output = log.read()
        log.close()
        assert "Traceback" not in output, output
        assert code == 0, output


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(fams: dict, family: str, sample: str | None = None, **labels) -> float | None:
    for s in fams[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def scrape(base: str, **kwargs) -> dict:
    status, _, body = http_get(base + "/metrics", **kwargs)
    assert status == 200, body
    return families(body)


def test_success_failure_and_partial_runs_through_the_exporter(env, sample_db):
    missing = unique("missing")
    cfg = env.write_config({"backup": {"databases": [sample_db]}, "metrics": metrics_section(env)})
    with running_exporter(cfg) as base:
        fams = scrape(base)  # nothing recorded yet: families are described, without samples
        assert fams["tenangdb_backup_success"].type == "counter"
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total") is None
        assert value(fams, "tenangdb_backup_process_running") == 0

        before = time.time()
        done = env.cli("backup", config=cfg)
        assert done.returncode == 0, done.stderr
        [folder] = env.backups_of(sample_db)
        size = sum(p.stat().st_size for p in folder.iterdir())
        fams = scrape(base)
        assert {fams[n].type for n in ("tenangdb_backup_success", "tenangdb_backup_failed",
                                       "tenangdb_upload_bytes", "tenangdb_verify_failed",
                                       "tenangdb_cleanup_deleted")} == {"counter"}
        assert fams["tenangdb_backup_duration_seconds"].type == "histogram"
        for gauge in ("tenangdb_backup_size_bytes", "tenangdb_backup_last_timestamp",
                      "tenangdb_backup_last_success_timestamp", "tenangdb_backup_process_running",
                      "tenangdb_total_databases", "tenangdb_backups_retained",
                      "tenangdb_verify_last_success_timestamp", "tenangdb_restore_test_duration_seconds"):
            assert fams[gauge].type == "gauge", gauge
        # *_total appears only on counters.
        assert all(not s.name.endswith("_total") for f in fams.values() if f.type != "counter" for s in f.samples)
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database=sample_db) == 1
        assert value(fams, "tenangdb_backup_failed", "tenangdb_backup_failed_total", database=sample_db) is None
        assert value(fams, "tenangdb_backup_size_bytes", database=sample_db) == size
        first_success = value(fams, "tenangdb_backup_last_success_timestamp", database=sample_db)
        assert before <= first_success <= time.time()
        assert value(fams, "tenangdb_backup_duration_seconds", "tenangdb_backup_duration_seconds_count",
                     database=sample_db, status="success") == 1
        assert value(fams, "tenangdb_backup_duration_seconds", "tenangdb_backup_duration_seconds_bucket",
                     database=sample_db, status="success", le="+Inf") == 1
        assert value(fams, "tenangdb_total_databases") == 1
        assert value(fams, "tenangdb_backups_retained", database=sample_db, location="local") == 1
        assert value(fams, "tenangdb_backup_process_running") == 0

        done = env.cli("backup", "--databases", missing, config=cfg)
        assert done.returncode == 4
        fams = scrape(base)
        assert value(fams, "tenangdb_backup_failed", "tenangdb_backup_failed_total", database=missing) == 1
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database=missing) is None
        assert value(fams, "tenangdb_backup_last_timestamp", database=missing) >= first_success
        assert value(fams, "tenangdb_backup_last_success_timestamp", database=missing) is None
        assert value(fams, "tenangdb_backup_size_bytes", database=missing) is None
        assert value(fams, "tenangdb_backup_duration_seconds", "tenangdb_backup_duration_seconds_count",
                     database=missing, status="failed") == 1

        done = env.cli("backup", "--databases", f"{sample_db},{missing}", config=cfg)
        assert done.returncode == 4 and "partial success" in done.stderr
        fams = scrape(base)
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database=sample_db) == 2
        assert value(fams, "tenangdb_backup_failed", "tenangdb_backup_failed_total", database=missing) == 2
        assert value(fams, "tenangdb_backup_last_success_timestamp", database=sample_db) >= first_success
        assert value(fams, "tenangdb_total_databases") == 2
        assert value(fams, "tenangdb_backups_retained", database=sample_db, location="local") == 2
        exported = fams

    state = Path(metrics_section(env)["storage_path"])
    assert stat.S_IMODE(state.stat().st_mode) == 0o640
    textfile = Path(metrics_section(env)["textfile"])
    from_file = families(textfile.read_text())
    for name in ("tenangdb_backup_success", "tenangdb_backup_failed", "tenangdb_backup_size_bytes"):
        assert from_file[name].samples == exported[name].samples
    assert not list(textfile.parent.glob(".*.tmp"))


def test_verify_and_restore_metrics(env, server, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}, "metrics": metrics_section(env)})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    textfile = Path(metrics_section(env)["textfile"])

    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    fams = families(textfile.read_text())
    assert value(fams, "tenangdb_verify_success", "tenangdb_verify_success_total", database=sample_db) == 1
    verified_at = value(fams, "tenangdb_verify_last_success_timestamp", database=sample_db)
    assert verified_at > 0

    target = unique("restored")
    assert env.cli("restore", "-b", str(folder), "-d", target, config=cfg).returncode == 0
    fams = families(textfile.read_text())
    assert value(fams, "tenangdb_restore_success", "tenangdb_restore_success_total", database=sample_db) == 1
    assert value(fams, "tenangdb_restore_duration_seconds", "tenangdb_restore_duration_seconds_count",
                 database=sample_db, status="success") == 1
    server.sql(f"DROP DATABASE `{target}`")

    dump = next(p for p in folder.iterdir() if p.name != "manifest.json")
    os.chmod(dump, 0o640)
    with open(dump, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\x00\xff")
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 7
    fams = families(textfile.read_text())
    assert value(fams, "tenangdb_verify_failed", "tenangdb_verify_failed_total", database=sample_db) == 1
    assert value(fams, "tenangdb_verify_last_success_timestamp", database=sample_db) == verified_at
    assert value(fams, "tenangdb_verify_last_timestamp", database=sample_db) >= verified_at
    assert env.cli("restore", "-b", str(folder), "-d", unique("never"), config=cfg).returncode == 7
    fams = families(textfile.read_text())
    assert value(fams, "tenangdb_restore_failed", "tenangdb_restore_failed_total", database=sample_db) == 1


def test_metrics_disabled_records_nothing(env, sample_db):
    section = metrics_section(env, enabled=False)
    cfg = env.write_config({"backup": {"databases": [sample_db]}, "metrics": section})
    assert env.cli("backup", config=cfg).returncode == 0
    assert not Path(section["storage_path"]).parent.exists()
    assert not Path(section["textfile"]).exists()


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("form", ["plain", "sha256", "bcrypt+tls"])
def test_exporter_basic_auth_and_tls(offline_env, form):
    env = offline_env
    password = "s3cret-Scrape-pass"
    stored = {"plain": password, "sha256": "sha256:" + hashlib.sha256(password.encode()).hexdigest()}.get(form)
    if form == "bcrypt+tls":
        import bcrypt
        stored = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    section = metrics_section(env, basic_auth={"username": "prometheus", "password": stored})
    context, scheme = None, "http"
    if "tls" in form:
        cert, key = _certificate(env.root)
        section.update(tls_cert=str(cert), tls_key=str(key))
        context, scheme = ssl.create_default_context(cafile=str(cert)), "https"
    cfg = env.write_config({"metrics": section})
    with running_exporter(cfg, scheme=scheme, context=context) as base:
        for auth in (None, ("prometheus", "wrong"), ("someone", password), ("prometheus", password + "x"),
                     ("prometheus", "")):
            status, headers, _ = http_get(base + "/metrics", auth=auth, context=context)
            assert status == 401, auth
            assert headers["WWW-Authenticate"].startswith("Basic ")
        status, _, body = http_get(base + "/metrics", auth=("prometheus", password), context=context)
        assert status == 200 and "tenangdb_backup_success_total" in body
        assert http_get(base + "/healthz", context=context)[0] == 200  # for liveness probes, no auth
        assert http_get(base + "/other", auth=("prometheus", password), context=context)[0] == 404
        if context is not None:
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                http_get(base.replace("https", "http") + "/healthz")


def test_exporter_busy_port_is_one_line_error(offline_env):
    cfg = offline_env.write_config({"metrics": metrics_section(offline_env)})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = offline_env.cli("exporter", "--port", str(port), config=cfg, timeout=20)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another exporter? set metrics.port or --port)")


def test_process_running_follows_a_live_run_and_never_sticks(offline_env):
    env = offline_env
    section = metrics_section(env)
    cfg = env.write_config({"metrics": section})
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from tenangdb.metrics.state import StateFile\n"
                               "with StateFile(sys.argv[1]).running():\n"
                               "    print('held', flush=True); time.sleep(60)\n", section["storage_path"]],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with running_exporter(cfg) as base:
            assert value(scrape(base), "tenangdb_backup_process_running") == 1
            holder.kill()  # a crashed run: its lock dies with it
            holder.wait(timeout=10)
            assert value(scrape(base), "tenangdb_backup_process_running") == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_concurrent_runs_are_all_counted(env, sample_db):
    section = metrics_section(env)
    procs = []
    for i in range(3):
        # Each run has its own backup directory (a directory admits one run at a time) and all
        # share one state file.
        cfg = env.write_config({"backup": {"databases": [sample_db], "directory": str(env.root / f"b{i}")},
                                "metrics": section}, name=f"c{i}.yaml")
        procs.append(subprocess.Popen([*TENANGDB, "--config", str(cfg), "backup"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Traceback" not in err, err
    state = json.loads(Path(section["storage_path"]).read_text())
    assert state["backup"][sample_db]["success_total"] == 3
    assert state["backup"][sample_db]["duration"]["success"]["count"] == 3

    # Many more writers than a backup has, hammering the same file.
    script = ("import sys\nfrom tenangdb.metrics.state import StateFile\n"
              "def bump(s):\n    r = s['notify'].setdefault('x', {}); r['failed_total'] = r.get('failed_total', 0) + 1\n"
              "for _ in range(40):\n    StateFile(sys.argv[1]).update(bump)\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, section["storage_path"]]) for _ in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    state = json.loads(Path(section["storage_path"]).read_text())
    assert state["notify"]["x"]["failed_total"] == 160
    assert state["backup"][sample_db]["success_total"] == 3


def test_corrupted_state_is_reported_and_rebuilt(env, sample_db):
    section = metrics_section(env)
    state = Path(section["storage_path"])
    state.parent.mkdir()
    state.write_text('{"format": 1, "backup": {"x": {"success_total": "many"')
    cfg = env.write_config({"backup": {"databases": [sample_db]}, "metrics": section})
    with running_exporter(cfg) as base:
        status, _, body = http_get(base + "/healthz")
        assert status == 503 and "cannot be read" in body
        # The original's probes answer as it did: liveness fails, readiness does not.
        assert http_get(base + "/health")[::2] == (503, "UNHEALTHY: Cannot load metrics")
        assert http_get(base + "/ready")[0] == 200
        fams = scrape(base)  # still a valid scrape, saying the state is unreadable
        assert value(fams, "tenangdb_metrics_state_readable") == 0

        done = env.cli("backup", config=cfg)
        assert done.returncode == 0, done.stderr
        assert "metrics state file" in done.stderr and "corrupted" in done.stderr
        assert state.with_name("metrics.json.corrupt").exists()
        assert json.loads(state.read_text())["backup"][sample_db]["success_total"] == 1
        assert http_get(base + "/healthz")[0] == 200 and http_get(base + "/health")[0] == 200
        fams = scrape(base)
        assert value(fams, "tenangdb_metrics_state_readable") == 1
        assert value(fams, "tenangdb_backup_success", "tenangdb_backup_success_total", database=sample_db) == 1


def test_metrics_config_is_checked(offline_env):
    env = offline_env
    cases = [({"basic_auth": {"username": "p"}}, "basic_auth needs both"),
             ({"tls_cert": "/x.pem"}, "tls_cert and tls_key go together"),
             ({"basic_auth": {"username": "p", "password": "sha256:abc"}}, "64 hex digits"),
             ({"path": "metrics"}, "absolute URL path"),
             ({"listn": "0.0.0.0"}, "did you mean 'listen'")]
    for section, message in cases:
        cfg = env.write_config({"metrics": section})
        done = env.cli("config", config=cfg)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    cfg = env.write_config({"metrics": {"basic_auth": {"username": "p", "password": "plain-pass"}}}, mode=0o644)
    done = env.cli("config", config=cfg)
    assert done.returncode == 2 and "metrics.basic_auth.password" in done.stderr
    assert "plain-pass" not in done.stderr
    cfg = env.write_config({"metrics": {"basic_auth": {"username": "p", "password": "plain-pass"}}})
    done = env.cli("config", config=cfg)
    assert done.returncode == 0 and "plain-pass" not in done.stdout
    assert "metrics.basic_auth.password = ********" in done.stdout


# Deployment artefacts -------------------------------------------------------------------------

def _exported_names() -> set[str]:
    from tenangdb.metrics.exposition import render
    from tenangdb.metrics.state import empty
    names = set()
    for family in text_string_to_metric_families(render(empty(), running=False).decode()):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def _metric_names_in(expr: str) -> set[str]:
    import re
    return set(re.findall(r"\btenangdb_[a-z_]+\b", expr))


def test_alert_rules_are_valid():
    path = ROOT / "deploy" / "prometheus" / "tenangdb-alerts.yml"
    rules = yaml.safe_load(path.read_text())
    exported = _exported_names()
    seen = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            seen.add(rule["alert"])
            expr = rule["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), expr
            assert _metric_names_in(expr) and _metric_names_in(expr) <= exported, expr
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
    assert {"TenangDBNoRecentBackup", "TenangDBVerifyFailing", "TenangDBUploadFailing",
            "TenangDBBackupHasLosses", "TenangDBBinlogLagging", "TenangDBBinlogGap"} <= seen
    promtool = shutil.which("promtool") or os.environ.get("PROMTOOL")
    if promtool:
        done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_dashboard_uses_exported_metrics(tmp_path):
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tenangdb-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["schemaVersion"] >= 30 and dashboard["uid"]
    exported = _exported_names()
    used = set()
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert {"type", "title", "gridPos", "targets", "datasource"} <= set(panel), panel.get("title")
        for target in panel["targets"]:
            names = _metric_names_in(target["expr"])
            assert names and names <= exported, target["expr"]
            used |= names
    assert {"tenangdb_backup_last_success_timestamp", "tenangdb_backup_failed_total", "tenangdb_backup_size_bytes",
            "tenangdb_backup_duration_seconds_bucket", "tenangdb_verify_last_success_timestamp",
            "tenangdb_backup_fidelity_losses", "tenangdb_binlog_lag_seconds", "tenangdb_binlog_gaps_total",
            "tenangdb_pitr_window_start_timestamp"} <= used
    promtool = shutil.which("promtool") or os.environ.get("PROMTOOL")
    if promtool:  # promtool parses every query when it is handed them as recording rules
        exprs = [t["expr"].replace("$database", ".*") for p in dashboard["panels"] for t in p["targets"]]
        rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"tenangdb:panel{i}", "expr": e}
                                                             for i, e in enumerate(exprs)]}]}
        path = tmp_path / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump(rules))
        done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
