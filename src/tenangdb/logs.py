"""Logging set-up: one line per event, secrets redacted in every handler."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from tenangdb.secrets import redact


class _Redacting(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if self.style_name == "json":
            line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                    "level": record.levelname.lower(), "logger": record.name, "msg": message}
            if event := getattr(record, "event", None):
                line["event"] = event
            return json.dumps(line)
        if self.style_name == "text":
            stamp = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")
            return f"{stamp} {record.levelname.lower():7} {message}"
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return prefix + message


# Security events start with the word the security guide's watch greps for
# (`journalctl -u tenangdb.service | grep -E "(FAILED|ERROR|UNAUTHORIZED)"`), in every format,
# and carry a stable name for machines (`event` in JSON logs).
FAILED, UNAUTHORIZED = "FAILED", "UNAUTHORIZED"


def security_event(logger: logging.Logger, event: str, word: str, message: str, *args,
                   level: int = logging.ERROR) -> None:
    logger.log(level, f"{word} {message}", *args, extra={"event": event})


@contextlib.contextmanager
def console_stream(stream):
    """Send the console log lines through `stream` for a while (the live progress board)."""
    handlers = [h for h in logging.getLogger("tenangdb").handlers
                if type(h) is logging.StreamHandler]
    previous = [h.setStream(stream) for h in handlers]
    try:
        yield stream
    finally:
        for handler, old in zip(handlers, previous):
            handler.setStream(old)


def setup(level: str, fmt: str = "clean", file_path: str | None = None, file_format: str = "text") -> None:
    root = logging.getLogger("tenangdb")
    root.handlers.clear()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    console = logging.StreamHandler()
    console.setFormatter(_Redacting(fmt))
    root.addHandler(console)
    if file_path:
        path = Path(file_path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.close(fd)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(_Redacting(file_format))
        root.addHandler(handler)
