"""Notifications against a real HTTP server on loopback, started by the test."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import unique

TOKEN = "T0k3n-in-the-url-7f3a"


class Receiver:
    """Records every request; /broken answers 500, /slow answers after the client gave up."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "body": body.decode(),
                                          "type": self.headers.get("Content-Type")})
                if self.path.startswith("/slow"):
                    time.sleep(2)
                try:
                    self.send_response(500 if self.path.startswith("/broken") else 200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the slow path's client has already timed out, as intended

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if r["path"].startswith("/hook")]

    def pings(self) -> list[str]:
        return [r["path"] for r in self.requests if r["path"].startswith("/ping")]


@pytest.fixture
def receiver():
    rx = Receiver()
    rx.thread.start()
    yield rx
    rx.server.shutdown()
    rx.server.server_close()


def test_webhook_and_ping_report_every_outcome(env, sample_db, receiver):
    missing = unique("missing")
    cfg = env.write_config({"backup": {"databases": [sample_db]},
                            "notify": {"webhook": f"{receiver.url}/hook/{TOKEN}",
                                       "ping": f"{receiver.url}/ping/{TOKEN}"}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert receiver.pings() == [f"/ping/{TOKEN}/start", f"/ping/{TOKEN}"]
    start, result, finish = receiver.events()
    assert start["event"] == "backup.start" and start["status"] == "running"
    [folder] = env.backups_of(sample_db)
    assert result["event"] == "backup.success" and result["database"] == sample_db
    assert result["status"] == "success" and result["error"] is None
    assert result["size"] == sum(p.stat().st_size for p in folder.iterdir()) and result["duration"] > 0
    assert finish["event"] == "backup.finish" and finish["status"] == "success"
    assert all(r["type"] == "application/json" for r in receiver.requests if r["path"].startswith("/hook"))

    receiver.requests.clear()
    done = env.cli("backup", "--databases", f"{sample_db},{missing}", config=cfg)
    assert done.returncode == 4
    assert receiver.pings() == [f"/ping/{TOKEN}/start", f"/ping/{TOKEN}/fail"]
    events = receiver.events()
    # Databases run concurrently, so their two events may come in either order.
    assert events[0]["event"] == "backup.start" and events[-1]["event"] == "backup.finish"
    assert sorted(e["event"] for e in events[1:3]) == ["backup.failure", "backup.success"]
    failure = next(e for e in events if e["event"] == "backup.failure")
    assert failure["database"] == missing and failure["status"] == "failed" and failure["size"] is None
    assert "does not exist" in failure["error"]
    assert events[3]["status"] == "partial"
    fail_ping = next(r for r in receiver.requests if r["path"].endswith("/fail"))
    assert missing in fail_ping["body"]
    # The URLs are credentials: never in a payload, never in the output.
    assert all(TOKEN not in r["body"] for r in receiver.requests)
    assert TOKEN not in done.stderr + done.stdout

    receiver.requests.clear()
    done = env.cli("backup", "--databases", missing, config=cfg)
    assert done.returncode == 4
    assert receiver.pings()[-1] == f"/ping/{TOKEN}/fail"
    assert receiver.events()[-1]["status"] == "failed"


def test_a_failing_endpoint_never_fails_the_backup(env, sample_db, receiver):
    state = env.root / "state" / "metrics.json"
    textfile = env.root / "tenangdb.prom"
    cfg = env.write_config({
        "backup": {"databases": [sample_db]},
        "notify": {"webhook": f"{receiver.url}/broken/{TOKEN}", "ping": f"{receiver.url}/slow/{TOKEN}",
                   "timeout": "0.5s", "retries": 1, "retry_delay": 0},
        "metrics": {"enabled": True, "storage_path": str(state), "textfile": str(textfile)}})
    started = time.monotonic()
    done = env.cli("backup", config=cfg)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert len(env.backups_of(sample_db)) == 1
    assert f"webhook notification to {receiver.url} failed: HTTP 500" in done.stderr
    assert f"ping notification to {receiver.url} failed" in done.stderr
    assert TOKEN not in done.stderr + done.stdout
    # The first delivery is retried; once an endpoint has failed, the run tries it once per event.
    hooks = [r for r in receiver.requests if r["path"].startswith("/broken")]
    assert len(hooks) == 2 + 1 + 1
    assert elapsed < 20
    samples = {(s.name, s.labels.get("kind") or s.labels.get("database")): s.value
               for f in text_string_to_metric_families(textfile.read_text()) for s in f.samples}
    assert samples[("tenangdb_notify_failed_total", "webhook")] == 3
    assert samples[("tenangdb_notify_failed_total", "ping")] == 2
    assert samples[("tenangdb_backup_success_total", sample_db)] == 1


def test_unreachable_endpoint_and_bad_urls(offline_env):
    env = offline_env
    cfg = env.write_config({"notify": {"webhook": "ftp://example.invalid/x"}})
    done = env.cli("config", config=cfg)
    assert done.returncode == 2 and "notify.webhook: must be an http:// or https:// URL" in done.stderr
    assert "example.invalid" not in done.stderr
    cfg = env.write_config({"notify": {"ping": f"https://hc.example/ping/{TOKEN}"}}, mode=0o644)
    done = env.cli("config", config=cfg)
    assert done.returncode == 2 and "notify.ping" in done.stderr and TOKEN not in done.stderr
    cfg = env.write_config({"notify": {"ping": "${PING_URL}"}}, mode=0o644)
    done = env.cli("config", config=cfg, env={"PING_URL": f"https://hc.example/ping/{TOKEN}"})
    assert done.returncode == 0 and "notify.ping = ********" in done.stdout and TOKEN not in done.stdout


def test_notifier_gives_up_on_a_closed_port_quickly(offline_env):
    """No server listens: the delivery fails fast, is counted, and does not raise."""
    import socket

    from tenangdb.config.schema import NotifyConfig
    from tenangdb.notify import Notifier

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    failures = []
    notifier = Notifier(NotifyConfig(webhook=f"http://127.0.0.1:{port}/hook", timeout=1, retries=2, retry_delay=0),
                        on_failure=failures.append)
    started = time.monotonic()
    notifier.event("backup.start", status="running")
    notifier.event("backup.finish", status="success")
    assert failures == ["webhook", "webhook"]
    assert time.monotonic() - started < 5
