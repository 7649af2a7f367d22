"""Notifications: a JSON webhook and a healthchecks.io-style ping.

A notification reports on a backup; it must never decide its outcome. Every delivery has a
timeout and a few retries, and a failure is logged (naming only the host: the URL itself is
a credential) and handed to `on_failure` so it can be counted.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from tenangdb import __version__
from tenangdb.config.schema import NotifyConfig
from tenangdb.control import retry
from tenangdb.errors import Interrupted
from tenangdb.secrets import redact

log = logging.getLogger("tenangdb.notify")

USER_AGENT = f"tenangdb/{__version__}"


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would resend the payload to wherever the endpoint points; deliver to the
    # configured URL or count a failure.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class Notifier:
    def __init__(self, cfg: NotifyConfig, on_failure: Callable[[str], None] | None = None) -> None:
        self.webhook = cfg.webhook.get_secret_value() if cfg.webhook else None
        self.ping_url = cfg.ping.get_secret_value().rstrip("/") if cfg.ping else None
        self.timeout = cfg.timeout
        self.retries = cfg.retries
        self.retry_delay = cfg.retry_delay
        self.on_failure = on_failure
        # After an endpoint has failed every retry once, later events of the same run get one
        # try each, so a dead endpoint cannot add minutes per database.
        self._given_up: set[str] = set()

    def event(self, event: str, *, database: str | None = None, status: str, error: str | None = None,
              duration: float | None = None, size: int | None = None, losses: list[dict] | None = None) -> None:
        if not self.webhook:
            return
        payload = {
            "event": event, "database": database, "status": status,
            "error": redact(error) if error else None,
            "duration": round(duration, 3) if duration is not None else None,
            "size": size, "tool": "tenangdb", "version": __version__, "time": time.time(),
            # What a backup does not hold exactly ({object, lost, why}; with `database` in backup.finish).
            "losses": losses or [],
        }
        body = json.dumps(payload).encode()
        self._deliver("webhook", self.webhook, body, "application/json")

    def ping(self, outcome: str, message: str = "") -> None:
        """outcome: "start", "success" or "fail" (healthchecks.io: /start, the URL, /fail)."""
        if not self.ping_url:
            return
        url = self.ping_url if outcome == "success" else f"{self.ping_url}/{outcome}"
        self._deliver("ping", url, redact(message).encode()[:10000], "text/plain; charset=utf-8")

    def _deliver(self, kind: str, url: str, body: bytes, content_type: str) -> bool:
        problem = ""

        def attempt() -> None:
            nonlocal problem
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": content_type, "User-Agent": USER_AGENT})
            try:
                with _opener.open(request, timeout=self.timeout) as response:
                    response.read(65536)
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                # A 4xx (but a timeout or a rate limit) says the request itself is wrong;
                # repeating it will not help.
                wrong = 400 <= exc.code < 500 and exc.code not in (408, 429)
                raise _Undelivered(retryable=not wrong) from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                problem = str(reason) or type(reason).__name__
                raise _Undelivered() from None

        try:
            retry(attempt, attempts=1 if kind in self._given_up else self.retries + 1, delay=self.retry_delay,
                  retryable=(_Undelivered,))
            return True
        except (_Undelivered, Interrupted):
            pass  # interrupted: the run is ending, the attempt made so far is all it gets
        self._given_up.add(kind)
        log.warning("%s notification to %s failed: %s", kind, _host(url), redact(problem.replace(url, _host(url))))
        if self.on_failure:
            self.on_failure(kind)
        return False


class _Undelivered(Exception):
    def __init__(self, *, retryable: bool = True) -> None:
        super().__init__()
        self.retryable = retryable
