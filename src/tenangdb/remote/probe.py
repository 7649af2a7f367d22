"""Is an rclone destination reachable and writable? Put a small probe object, read it back,
delete it. rclone always gets `--config` explicitly, so the answer is about the file the
backups will use, not whatever the current user's default happens to be."""

from __future__ import annotations

import os
import secrets as pysecrets
import shutil

from tenangdb.errors import EXIT_UPLOAD, TenangDBError
from tenangdb.runner import run


class RemoteUnusable(TenangDBError):
    exit_code = EXIT_UPLOAD


def find_rclone(configured: str | None = None) -> str | None:
    if configured:
        return shutil.which(configured)
    return shutil.which("rclone") or shutil.which("rclone", path="/usr/bin:/usr/local/bin:/snap/bin")


def _join(destination: str, name: str) -> str:
    return destination + name if destination.endswith((":", "/")) else f"{destination}/{name}"


def _last_line(err: str, status: int) -> str:
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit status {status}"


def probe(destination: str, config: str, rclone: str | None = None, timeout: float = 60.0) -> str:
    """Raise RemoteUnusable unless a probe object can be written, read back and deleted;
    return the rclone version line."""
    tool = find_rclone(rclone)
    if tool is None:
        raise RemoteUnusable("rclone is not installed (install the rclone package or set upload.rclone_path)")
    if not os.path.isfile(config):
        raise RemoteUnusable(f"rclone config {config} does not exist")
    from tenangdb.remote.rclone import register_config_secrets
    register_config_secrets(config)  # rclone's error lines never show a credential from it
    base = [tool, "--config", config, "--low-level-retries", "1", "--retries", "1",
            "--contimeout", "15s", "--timeout", "30s"]
    status, out, err = run([tool, "version"], timeout=timeout)
    version = out.decode(errors="replace").splitlines()[0] if status == 0 and out else "rclone"
    payload = pysecrets.token_bytes(32)
    target = _join(destination, f".tenangdb-probe-{pysecrets.token_hex(6)}")
    status, _, err = run([*base, "rcat", target], input_bytes=payload, timeout=timeout)
    if status != 0:
        raise RemoteUnusable(f"cannot write to {destination}: {_last_line(err, status)}")
    try:
        status, out, err = run([*base, "cat", target], timeout=timeout)
        if status != 0:
            raise RemoteUnusable(f"cannot read back from {destination}: {_last_line(err, status)}")
        if out != payload:
            raise RemoteUnusable(f"{destination} returned different bytes than were written")
    finally:
        status, _, err = run([*base, "deletefile", target], timeout=timeout)
    if status != 0:
        raise RemoteUnusable(f"cannot delete from {destination} (the probe {target} is left behind): "
                             f"{_last_line(err, status)}")
    return version
