"""The exit code of a backup run: the most serious failure decides, in the order a backup (4),
a verification (7), an upload (5), then the cleanup (6)."""

from __future__ import annotations

import pytest

from tenangdb.actions.chain import exit_code


@pytest.mark.parametrize("failed, code", [
    ("", 0),
    ("backups", 4), ("verify", 7), ("upload", 5), ("cleanup", 6),
    ("backups verify upload cleanup", 4),
    ("verify upload cleanup", 7),
    ("backups upload", 4),
    ("upload cleanup", 5),
    ("verify cleanup", 7),
])
def test_the_most_serious_failure_decides(failed, code):
    steps = failed.split()
    assert exit_code(backups_failed="backups" in steps, verify_failed="verify" in steps,
                     upload_failed="upload" in steps, cleanup_failed="cleanup" in steps) == code
