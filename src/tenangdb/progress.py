"""What a backup run tells a progress display. Below the actions and the engines, which both
report to it; the cli draws it."""

from __future__ import annotations


class Progress:
    """The default tells nobody. Called from worker threads."""

    def started(self, database: str, engine: str, tables: int) -> None: ...

    def advanced(self, database: str, plain_bytes: int, tables_done: int | None = None) -> None: ...

    def finished(self, database: str, ok: bool) -> None: ...
