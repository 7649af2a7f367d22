"""Deadline, retry and the cancellation token, without a server: attempt counts, the backoff
rule, what is not retried, and that a cancelled token ends a wait at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tenangdb.config.schema import UploadConfig
from tenangdb.control import CancelToken, Deadline, retry, seconds_text, timed_out
from tenangdb.errors import BackupFailed, Interrupted, UploadFailed
from tenangdb.remote.rclone import Rclone


class Waits(CancelToken):
    """A token that records each wait instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()


class Failing:
    """Fails `times` times with the errors made by `error`, then returns "done"."""

    def __init__(self, times: int, error=lambda n: UploadFailed(f"try {n} failed")) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error(self.calls)
        return "done"


# Token -----------------------------------------------------------------------------------

def test_token_set_is_seen_by_is_set_and_wait():
    token = CancelToken()
    assert not token.is_set()
    started = time.monotonic()
    assert token.wait(0.05) is False and time.monotonic() - started >= 0.04
    token.set()
    assert token.is_set() and token.wait(30) is True


def test_token_set_from_another_thread_ends_a_wait_at_once():
    token = CancelToken()
    threading.Timer(0.1, token.set).start()
    started = time.monotonic()
    assert token.wait(30) is True
    assert time.monotonic() - started < 5


def test_request_interrupt_sets_the_process_token():
    # In a process of its own: the token of this one must stay unset for the other tests.
    code = ("from tenangdb import control, errors\n"
            "assert not errors.interrupt_requested() and not control.CANCEL.is_set()\n"
            "errors.request_interrupt()\n"
            "assert control.CANCEL.is_set() and errors.interrupt_requested()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# Deadline --------------------------------------------------------------------------------

def test_deadline_expires_and_runs_its_action():
    fired = threading.Event()
    with Deadline(0.1, "mariadb-dump", fired.set, setting="backup.timeout") as deadline:
        assert fired.wait(10)
    assert deadline.expired
    assert deadline.message() == "mariadb-dump timed out after 0.1 s (backup.timeout)"


def test_deadline_not_reached_does_nothing():
    fired = threading.Event()
    with Deadline(0.2, "rclone copy", fired.set) as deadline:
        pass
    time.sleep(0.4)
    assert not deadline.expired and not fired.is_set()


def test_timeout_wording():
    assert timed_out("rclone copy to r:x", 300) == "rclone copy to r:x timed out after 300 s"
    assert timed_out("mydumper", 3.0, "backup.timeout") == "mydumper timed out after 3 s (backup.timeout)"
    assert seconds_text(1800.0) == "1800" and seconds_text(0.5) == "0.5" and seconds_text(2) == "2"


def test_rclone_reports_a_timeout_in_those_words(tmp_path):
    # A remote that never answers: both the command runner and the read-back hash say
    # "timed out", not an exit status of the kill.
    fake = tmp_path / "rclone"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    cfg = UploadConfig(destination="remote:bucket", rclone_path=str(fake),
                       rclone_config_path=str(tmp_path / "rclone.conf"), timeout=0.5)
    (tmp_path / "rclone.conf").write_text("")
    rc = Rclone(cfg)
    started = time.monotonic()
    with pytest.raises(UploadFailed) as cat:
        rc.cat("remote:bucket/f")
    assert str(cat.value) == "rclone read of remote:bucket/f timed out after 0.5 s (upload.timeout)"
    with pytest.raises(UploadFailed) as hashed:
        rc.sha256_of("remote:bucket/f")
    assert str(hashed.value) == "rclone read of remote:bucket/f timed out after 0.5 s (upload.timeout)"
    assert time.monotonic() - started < 20


# Retry -----------------------------------------------------------------------------------

def test_retry_returns_at_the_first_success():
    fn, token = Failing(2), Waits()
    assert retry(fn, attempts=3, delay=1, token=token) == "done"
    assert fn.calls == 3 and token.waits == [1, 2]


def test_retry_backs_off_exponentially_up_to_the_cap():
    fn, token = Failing(10), Waits()
    seen = []
    with pytest.raises(UploadFailed):
        retry(fn, attempts=6, delay=10, backoff=3, cap=500, token=token,
              on_retry=lambda exc, attempt, wait: seen.append((str(exc), attempt, wait)))
    assert token.waits == [10, 30, 90, 270, 500]
    assert seen[0] == ("try 1 failed", 1, 10) and [s[1] for s in seen] == [1, 2, 3, 4, 5]


def test_retry_gives_up_with_the_last_error_and_the_attempt_count():
    fn = Failing(5, lambda n: UploadFailed(f"try {n} failed", status=9))
    with pytest.raises(UploadFailed) as caught:
        retry(fn, attempts=3, delay=0, token=Waits())
    assert fn.calls == 3
    assert str(caught.value) == "try 3 failed (after 3 attempts)"
    assert caught.value.status == 9 and caught.value.attempts == 3  # the same error, not a copy


def test_retry_single_attempt_raises_unchanged():
    fn, token = Failing(1), Waits()
    with pytest.raises(UploadFailed) as caught:
        retry(fn, attempts=1, delay=5, token=token)
    assert str(caught.value) == "try 1 failed" and token.waits == []


def test_retry_does_not_repeat_what_another_attempt_cannot_fix():
    fn, token = Failing(5, lambda n: BackupFailed("no such database", retryable=False)), Waits()
    with pytest.raises(BackupFailed) as caught:
        retry(fn, attempts=5, delay=1, token=token)
    assert fn.calls == 1 and token.waits == [] and str(caught.value) == "no such database"


def test_retry_lets_other_errors_through_at_once():
    fn, token = Failing(5, lambda n: KeyError("bug")), Waits()
    with pytest.raises(KeyError):
        retry(fn, attempts=5, delay=1, retryable=(UploadFailed,), token=token)
    assert fn.calls == 1 and token.waits == []


def test_retry_stops_when_cancelled_before_the_next_attempt():
    token = Waits()
    token.set()
    fn = Failing(5)
    with pytest.raises(Interrupted, match="^interrupted; stop$"):
        retry(fn, attempts=5, delay=1, token=token, interrupted="interrupted; stop")
    assert fn.calls == 1 and token.waits == []


def test_retry_cancellation_ends_the_wait_at_once():
    token = CancelToken()
    fn = Failing(5)
    threading.Timer(0.2, token.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        retry(fn, attempts=5, delay=60, token=token)
    assert fn.calls == 1 and time.monotonic() - started < 10
