"""Logging set-up: one line per event, secrets redacted in every handler."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
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


def early_security_event(section: dict | None, logger: logging.Logger, event: str, word: str, message: str,
                         *args) -> None:
    """A security event from before logging is set up (a refused config): sent through the
    handlers the raw `logging` section asks for (console, and its file if it names one), made
    for this one line and closed again, so nothing is left attached to the logger. Once logging
    is set up, it is an ordinary security event."""
    if logging.getLogger("tenangdb").handlers:
        security_event(logger, event, word, message, *args)
        return
    section = section or {}
    record = logger.makeRecord(logger.name, logging.ERROR, "(config)", 0, f"{word} {message}", args, None,
                               extra={"event": event})
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    handlers[0].setFormatter(_Redacting(_text(section.get("format"), "clean")))
    file_path = section.get("file_path") or section.get("file")
    if isinstance(file_path, str) and file_path:
        try:
            handlers.append(_file_handler(file_path, _text(section.get("file_format"), "text")))
        except OSError:
            pass  # the console line (the journal, under systemd) still carries the event
    for handler in handlers:
        try:
            handler.handle(record)
        finally:
            handler.close()


def _text(value, default: str) -> str:
    return value if value in ("clean", "text", "json") else default


class _ReopeningFile(logging.handlers.WatchedFileHandler):
    """The log file, reopened when logrotate has moved it away (rename, then a new file): a
    long-running exporter writes on into the new file, not the rotated one. A file it has to
    make itself is made 0640, like the first one."""

    def _open(self):
        os.close(os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
        return super()._open()


def _file_handler(file_path: str, file_format: str) -> logging.Handler:
    path = Path(file_path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    handler = _ReopeningFile(path, encoding="utf-8")
    handler.setFormatter(_Redacting(file_format))
    return handler


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
        root.addHandler(_file_handler(file_path, file_format))
