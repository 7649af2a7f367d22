"""A remote backup brought home for `verify` or `restore`: downloaded into a private (0700)
temporary folder, used, and removed afterwards whatever happens."""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tenangdb import orphans
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import ConfigError, FetchFailed, UploadFailed, VerifyFailed
from tenangdb.remote.rclone import Rclone, join
from tenangdb.repository import legacy
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository.naming import BackupRef

log = logging.getLogger("tenangdb.fetch")
PREFIX = "remote:"


def is_remote_spec(path: str, loaded: LoadedConfig) -> bool:
    destination = loaded.settings.upload.destination
    return path.startswith(PREFIX) or bool(destination and path.startswith(destination))


def remote_location(rc: Rclone, spec: str) -> str:
    """The rclone path of a backup given as `remote:{db}/{YYYY-MM}/{name}`, a bare backup name,
    a path relative to upload.destination, or a full rclone path below the destination."""
    if spec.startswith(rc.destination):
        return spec.rstrip("/")
    relative = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    relative = relative.strip("/")
    if not relative or ".." in relative.split("/"):
        raise VerifyFailed(f"{spec}: not a remote backup path (expected remote:{{db}}/{{YYYY-MM}}/{{name}})")
    if "/" not in relative:
        ref = BackupRef.from_name(relative)
        if ref is None:
            raise VerifyFailed(f"{spec}: not a backup name (expected {{db}}-YYYY-MM-DD_HH-MM-SS)")
        return join(rc.destination, *ref.parts)
    return join(rc.destination, relative)


@contextmanager
def fetched(loaded: LoadedConfig, spec: str) -> Iterator[Path]:
    cfg = loaded.settings.upload
    if not cfg.destination:
        raise ConfigError("a remote backup was asked for but upload.destination is not set")
    rc = Rclone(cfg)
    location = remote_location(rc, spec)
    # mkdtemp: mode 0700. Named with its owner, so a run killed while it downloads leaves a
    # folder that the next run removes (orphans.py).
    scratch = Path(tempfile.mkdtemp(prefix=f"{orphans.REMOTE_PREFIX}{orphans.token()}-"))
    try:
        folder = scratch / location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        log.info("downloading %s to a private temporary folder", location)
        try:
            rc.download(location, folder)
        except UploadFailed as exc:
            # A backup that cannot be fetched cannot be verified: restore and verify refuse it (7).
            raise FetchFailed(f"cannot download {location}: {exc}") from None
        found = folder
        if (folder / folder.name).is_file() and legacy.by_name(folder.name, folder=False):
            found = folder / folder.name  # one of the original's file backups
        elif not (folder / manifest_mod.MANIFEST).is_file() and legacy.detect(folder) is None:
            raise VerifyFailed(f"{location}: no {manifest_mod.MANIFEST} on the remote, so this is not a "
                               "complete backup")
        try:
            yield found
        except VerifyFailed as exc:
            # Name the remote copy, not the temporary folder that is about to disappear.
            raise type(exc)(str(exc).replace(str(folder), location)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
