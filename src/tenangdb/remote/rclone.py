"""The one place that knows rclone: builds its command lines and reads its answers.

Every call names the rclone config file explicitly (`--config`), so the credentials stay in
that file: nothing secret is ever put on argv or in rclone's environment. rclone's own retries
are turned down to one attempt; the caller retries whole steps with backoff, so a failure is
reported once, with rclone's last error line (redacted) in the message.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tenangdb.config.schema import UploadConfig
from tenangdb.control import CANCEL, Deadline
from tenangdb.errors import ConfigError, Interrupted, UploadFailed
from tenangdb.runner import spawn
from tenangdb.secrets import redact

log = logging.getLogger("tenangdb.remote")

# Hash names as rclone spells them, strongest first. The manifest holds SHA-256.
HASH_PREFERENCE = ("sha256", "md5", "sha1")
# Keys of an rclone config section whose values are credentials.
_SECRET_CONFIG_KEYS = re.compile(r"(secret|pass|password|token|key|sas_url|client_secret|credentials)", re.I)
_NOT_SECRET_KEYS = {"access_key_id", "key_file", "service_account_file", "chunk_size"}
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\s+")
NOT_FOUND_EXIT = 3  # rclone: directory not found
FILE_NOT_FOUND_EXIT = 4


@dataclass
class RemoteFile:
    path: str  # relative to the listed folder, '/'-separated
    size: int
    hashes: dict[str, str]


def join(base: str, *parts: str) -> str:
    """An rclone path below `base` (`remote:`, `remote:bucket/x`, `/mnt/x`)."""
    path = base
    for part in parts:
        part = part.strip("/")
        if not part:
            continue
        path = f"{path}{part}" if path.endswith((":", "/")) else f"{path}/{part}"
    return path


_REMOTE_PREFIX = re.compile(r"^:?[\w.+@ -]+:")


def is_local_path(path: str) -> bool:
    """A plain filesystem path rather than `remote:path` (rclone's own rule, roughly)."""
    return path.startswith(("/", "./", "../")) or not _REMOTE_PREFIX.match(path)


def register_config_secrets(config_path: str) -> None:
    """Teach the redactor the credentials in the rclone config, so an rclone message that
    quotes one (a URL with a token, an auth error) never shows it."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        with open(config_path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return  # unreadable or encrypted: rclone itself will report what is wrong
    for section in parser.sections():
        for key, value in parser.items(section):
            if _SECRET_CONFIG_KEYS.search(key) and key not in _NOT_SECRET_KEYS and len(value) >= 6:
                redact.add(value)


class Rclone:
    def __init__(self, cfg: UploadConfig, destination: str | None = None) -> None:
        dest = destination or cfg.destination
        if not dest:
            raise ConfigError("upload.destination is not set (the rclone path backups are copied to)")
        self.destination = dest
        binary = cfg.rclone_path or shutil.which("rclone")
        if not binary:
            from tenangdb.errors import ToolMissing
            raise ToolMissing("rclone is not installed (install it, or set upload.rclone_path)")
        self.binary = binary
        self.config_path = cfg.config_path
        if cfg.rclone_config_path and not os.path.isfile(self.config_path):
            raise ConfigError(f"upload.rclone_config_path: {self.config_path} does not exist")
        self.timeout = cfg.timeout
        register_config_secrets(self.config_path)
        self._hashes: list[str] | None = None
        self._local: bool | None = None
        self._buckets: bool | None = None

    # Command lines ---------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        # --retries 1: we retry whole steps ourselves, with backoff and one clear message.
        return [self.binary, "--config", self.config_path, "--retries", "1", "--low-level-retries", "3",
                *args]

    def _call(self, args: Iterable[str], what: str, *, ok_codes: tuple[int, ...] = (0,),
              timeout: float | None = None) -> tuple[int, bytes]:
        argv = self.argv(*args)
        log.debug("running %s", " ".join(argv))
        limit = timeout or self.timeout
        started = time.monotonic()
        with spawn(argv) as child, \
                Deadline(limit, f"rclone {what}", child.kill_group, setting="upload.timeout") as deadline:
            out = child.stdout.read() if child.stdout else b""
            status = child.wait()
        log.debug("rclone %s: exit %s after %.2fs", what, status, time.monotonic() - started)
        if CANCEL.is_set():
            raise Interrupted("interrupted; the local backups are untouched")
        if deadline.expired:
            raise UploadFailed(deadline.message())
        if status not in ok_codes:
            stderr = child.stderr_text()
            raise UploadFailed(f"rclone {what} failed (exit {status}): {summarise(stderr)}",
                               status=status, retryable=not permanent(status, stderr))
        return status, out

    # Operations ------------------------------------------------------------------------

    def _features(self) -> None:
        if is_local_path(self.destination):
            # A plain path: rclone's local backend, which has every hash but must read the
            # file to compute one. No need to ask.
            self._hashes, self._local, self._buckets = ["md5", "sha1", "sha256"], True, False
            return
        _, out = self._call(["backend", "features", self.destination], "backend features")
        try:
            data = json.loads(out)
            names = [str(h).lower() for h in data.get("Hashes") or []]
            local = str(data.get("String", "")).startswith("Local file system")
            buckets = bool((data.get("Features") or {}).get("BucketBased"))
        except (ValueError, AttributeError):
            names, local, buckets = [], False, False
        self._hashes, self._local, self._buckets = names, local, buckets

    def hashes(self) -> list[str]:
        """The hash types the destination's backend can report, as rclone names them."""
        if self._hashes is None:
            self._features()
        return self._hashes or []

    @property
    def has_folders(self) -> bool:
        """False for object stores, where a folder is only a prefix and vanishes with its files."""
        if self._hashes is None:
            self._features()
        return not self._buckets

    @property
    def hashing_reads(self) -> bool:
        """True when a hash of a stored file costs a full read of it (a local filesystem):
        then reading it back and hashing SHA-256 ourselves is as cheap and checks the manifest
        directly."""
        if self._hashes is None:
            self._features()
        return bool(self._local)

    def best_hash(self) -> str | None:
        have = self.hashes()
        return next((name for name in HASH_PREFERENCE if name in have), None)

    def copy_folder(self, local: Path, remote: str, *, exclude: list[str], check: bool) -> None:
        args = ["copy", str(local), remote, "--checksum", "--no-update-modtime"]
        for pattern in exclude:
            args += ["--exclude", pattern]
        if not check:
            # Our own verification (the manifest's SHA-256, or a hash we recorded from the
            # verified local file) replaces rclone's post-copy comparison.
            args.append("--ignore-checksum")
        self._call(args, f"copy to {remote}")

    def copy_file(self, local: Path, remote: str) -> None:
        self._call(["copyto", str(local), remote, "--checksum"], f"copy to {remote}")

    def list(self, remote: str, *, recursive: bool = True, hash_type: str | None = None,
             missing_ok: bool = True) -> list[RemoteFile] | None:
        """Files under `remote`; None when the folder does not exist (and missing_ok)."""
        args = ["lsjson", "--files-only", "--no-mimetype", remote]
        if recursive:
            args += ["-R", "--fast-list"]  # object stores: one listing instead of one per folder
        if hash_type:
            args += ["--hash-type", hash_type]
        codes = (0, NOT_FOUND_EXIT) if missing_ok else (0,)
        status, out = self._call(args, f"listing of {remote}", ok_codes=codes)
        if status == NOT_FOUND_EXIT:
            return None
        try:
            entries = json.loads(out or b"[]")
        except ValueError:
            raise UploadFailed(f"rclone listing of {remote}: unreadable answer") from None
        return [RemoteFile(path=e["Path"], size=int(e.get("Size", -1)),
                           hashes={k.lower(): str(v).lower() for k, v in (e.get("Hashes") or {}).items()})
                for e in entries if not e.get("IsDir")]

    def cat(self, remote: str) -> bytes:
        _, out = self._call(["cat", remote], f"read of {remote}")
        return out

    def local_path(self, remote: str) -> Path | None:
        """The filesystem path of `remote` when the destination is a plain local path (rclone's
        local backend stores names like ours, which are plain ASCII, unchanged)."""
        if is_local_path(self.destination) and (remote == self.destination
                                                 or remote.startswith(self.destination.rstrip("/") + "/")):
            return Path(remote)
        return None

    def sha256_of(self, remote: str) -> tuple[str, int]:
        """Read a stored file back and hash it: (sha256 hex, bytes)."""
        local = self.local_path(remote)
        if local is not None:
            # A local filesystem: read the stored bytes straight from disk, no pipe in between.
            try:
                digest_hex, _, size = local_hashes(local, None)
            except FileNotFoundError:
                raise UploadFailed(f"{remote}: missing on the remote") from None
            except OSError as exc:
                raise UploadFailed(f"{remote}: cannot read it back: {exc.strerror or exc}") from None
            return digest_hex, size
        digest = hashlib.sha256()
        size = 0
        argv = self.argv("cat", remote)
        with spawn(argv) as child, \
                Deadline(self.timeout, f"rclone read of {remote}", child.kill_group,
                         setting="upload.timeout") as deadline:
            assert child.stdout is not None
            while chunk := child.stdout.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            status = child.wait()
        if deadline.expired:
            raise UploadFailed(deadline.message())
        if status != 0:
            raise UploadFailed(f"rclone read of {remote} failed (exit {status}): {summarise(child.stderr_text())}")
        return digest.hexdigest(), size

    def download(self, remote: str, local: Path) -> None:
        self._call(["copy", remote, str(local)], f"download of {remote}")

    def fetch_matching(self, local: Path, patterns: list[str], what: str) -> None:
        """Copy every file below the destination that matches one of the rclone include
        patterns (anchored at the destination) in one call."""
        args = ["copy", self.destination, str(local), "--fast-list"]
        for pattern in patterns:
            args += ["--include", pattern]
        self._call(args, what, ok_codes=(0, NOT_FOUND_EXIT))

    def put_bytes(self, data: bytes, remote: str) -> None:
        """Write a small file to `remote` (through a private temporary file: rclone reads paths)."""
        with tempfile.TemporaryDirectory(prefix="tenangdb-put-") as scratch:
            path = Path(scratch) / remote.rsplit("/", 1)[-1].lstrip(".")
            path.write_bytes(data)
            self._call(["copyto", str(path), remote], f"copy to {remote}")

    def delete_file(self, remote: str) -> None:
        self._call(["deletefile", remote], f"delete of {remote}", ok_codes=(0, NOT_FOUND_EXIT, FILE_NOT_FOUND_EXIT))

    def delete_listed(self, paths: list[str]) -> None:
        """Delete these files (paths relative to the destination) in one call."""
        if not paths:
            return
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="tenangdb-delete-", suffix=".txt") as fh:
            fh.write("".join(f"{path}\n" for path in paths))
            fh.flush()
            self._call(["delete", self.destination, "--files-from-raw", fh.name, "--fast-list"],
                       f"delete of {len(paths)} file(s) under {self.destination}", ok_codes=(0, NOT_FOUND_EXIT))

    def remove_empty_folders(self, remote: str) -> None:
        """Remove `remote` and the folders below it that are empty (object stores have none)."""
        self._call(["rmdirs", remote], f"removal of empty folders under {remote}",
                   ok_codes=(0, NOT_FOUND_EXIT))

    def purge(self, remote: str) -> None:
        """Delete a remote folder and everything in it (a missing folder is already gone)."""
        self._call(["purge", remote], f"delete of {remote}", ok_codes=(0, NOT_FOUND_EXIT))


FATAL_EXIT = 7  # rclone: fatal error, retries will not help
_PERMANENT = re.compile(r"didn't find section in config file|unknown flag|unknown command|unknown backend|"
                        r"config file .*not found|couldn't decrypt config|Failed to load config", re.I)


def permanent(status: int, stderr: str) -> bool:
    """A failure another attempt cannot fix: rclone says fatal, or the configuration is wrong."""
    return status == FATAL_EXIT or bool(_PERMANENT.search(stderr))


def summarise(stderr: str) -> str:
    """rclone's last error line without its timestamp, or its last line."""
    lines = [_LOG_PREFIX.sub("", line.strip()) for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "Failed", "CRITICAL")) or "error" in line.lower()]
    chosen = (errors or lines or ["(no error output)"])[-1]
    chosen = re.sub(r"^(ERROR|CRITICAL|NOTICE)\s*:\s*", "", chosen)
    return redact(chosen)[:400]


def local_hashes(path: Path, extra: str | None) -> tuple[str, str | None, int]:
    """One read of a local file: (sha256, the extra hash the remote reports, size)."""
    sha = hashlib.sha256()
    other = hashlib.new(extra) if extra and extra != "sha256" else None
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            if other is not None:
                other.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), other.hexdigest() if other else None, size



