"""Time limits, retries and cancellation: one of each, shared by every adapter.

A run is cancelled through one process-wide token (`CANCEL`), set by the signal handlers. Code
that waits (a retry's backoff, a polling loop) waits on the token, so an interrupt ends the
wait at once instead of after it. A deadline kills what it guards on expiry and reports the
timeout in the same words wherever it happens; a retry follows one backoff rule everywhere.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")

RETRY_CAP = 300.0  # seconds; no wait between two attempts is longer


class CancelToken:
    """A flag that, once set, stays set, and that waits can be woken by."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as the token is (or already was) set."""
        return self._event.wait(seconds)


# The run's token. Signal handlers set it (errors.request_interrupt); nothing clears it: an
# interrupted process only tidies up and exits.
CANCEL = CancelToken()


def seconds_text(seconds: float) -> str:
    """`2` for whole seconds, `0.5` otherwise: a limit as the user wrote it."""
    return f"{seconds:.0f}" if float(seconds).is_integer() else f"{seconds:g}"


def timed_out(what: str, seconds: float, setting: str | None = None) -> str:
    """The one wording of a timeout; `setting` names the configuration key that set the limit."""
    return f"{what} timed out after {seconds_text(seconds)} s" + (f" ({setting})" if setting else "")


class Deadline:
    """A time limit on a block: on expiry `on_expiry` runs (from a timer thread; it should end
    what the block waits for, e.g. kill a child's process group) and `expired` turns true."""

    def __init__(self, seconds: float, what: str, on_expiry: Callable[[], None] | None = None, *,
                 setting: str | None = None) -> None:
        self.seconds = seconds
        self.what = what
        self.setting = setting
        self._on_expiry = on_expiry
        self._expired = threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self._expired.set()
        if self._on_expiry is not None:
            self._on_expiry()

    @property
    def expired(self) -> bool:
        return self._expired.is_set()

    def message(self) -> str:
        return timed_out(self.what, self.seconds, self.setting)

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def retry(fn: Callable[[], T], *, attempts: int, delay: float, backoff: float = 2.0, cap: float = RETRY_CAP,
          retryable: tuple[type[BaseException], ...] = (Exception,),
          on_retry: Callable[[BaseException, int, float], None] | None = None,
          token: CancelToken = CANCEL, interrupted: str = "interrupted") -> T:
    """Call `fn` until it returns, at most `attempts` times, waiting `delay`, then `delay` times
    `backoff` … (never more than `cap`) between attempts.

    Only errors of the `retryable` types are retried, and not those whose own `retryable`
    attribute is false (another attempt cannot fix them). `on_retry(error, attempt, wait)` is
    called before each wait. The last error is re-raised, its message ending with "(after N
    attempts)" when there were several. A set `token` stops it: `Interrupted(interrupted)`
    instead of another attempt, and at once during a wait.
    """
    attempt = 1
    while True:
        try:
            return fn()
        except retryable as exc:
            if token.is_set():
                raise _interrupted(interrupted) from None
            if not getattr(exc, "retryable", True) or attempt >= attempts:
                if attempt > 1:
                    # The same error object keeps its type, exit code and attributes; only its
                    # one line grows.
                    exc.args = (f"{exc} (after {attempt} attempts)",)
                    exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            wait = min(delay * backoff ** (attempt - 1), cap)
            if on_retry is not None:
                on_retry(exc, attempt, wait)
            if token.wait(wait):
                raise _interrupted(interrupted) from None
            attempt += 1


def _interrupted(message: str) -> BaseException:
    # errors builds its interrupt flag on this module's token, so it is imported only here.
    from tenangdb.errors import Interrupted

    return Interrupted(message)
