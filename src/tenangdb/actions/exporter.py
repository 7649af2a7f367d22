"""`tenangdb exporter`: serve the metrics state over HTTP until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

from tenangdb.config.loader import LoadedConfig
from tenangdb.control import CANCEL
from tenangdb.metrics.exporter import BasicAuth, serve, tls_context
from tenangdb.metrics.state import StateFile

log = logging.getLogger("tenangdb.exporter")


def run(loaded: LoadedConfig, listen: str | None = None, port: int | None = None,
        metrics_file: str | None = None) -> None:
    cfg = loaded.settings.metrics
    listen = listen or cfg.listen
    port = port or cfg.port
    auth = None
    if cfg.basic_auth.enabled:
        auth = BasicAuth(cfg.basic_auth.username or "", cfg.basic_auth.password.get_secret_value())
    tls = tls_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert and cfg.tls_key else None
    state = StateFile(metrics_file or cfg.state_path)
    if not cfg.enabled:
        log.warning("metrics.enabled is false: runs do not record metrics, so this exporter serves "
                    "only what an earlier run left in %s", state.path)
    if metrics_file and cfg.storage_path and metrics_file != cfg.storage_path:
        log.warning("serving %s (--metrics-file), not metrics.storage_path %s where runs record", metrics_file,
                    cfg.storage_path)
    if auth is None and listen not in ("127.0.0.1", "::1", "localhost"):
        log.warning("the exporter listens on %s without metrics.basic_auth: anyone who can reach it "
                    "can read the metrics", listen)

    server = serve(state, listen, port, cfg.path, auth, tls, cfg.duration_form)

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        CANCEL.set()

    # A signal that came before these handlers were installed has set the token too: its
    # exception may have been swallowed where it landed (logging does that), but it still
    # means stop.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="exporter", daemon=True)
    worker.start()
    host, bound_port = server.server_address[:2]
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    log.info("exporter listening on %s://%s:%d%s (state: %s%s)", scheme, shown, bound_port, cfg.path,
             state.path, ", basic auth" if auth else "")
    try:
        # Waiting with a timeout keeps the main thread responsive to signals.
        while not CANCEL.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        worker.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("exporter stopped")
