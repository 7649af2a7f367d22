"""The binlog archive off-site: `{upload.destination}/.binlog/`, a mirror of the local archive
through the same rclone path as backups, proven like them.

Per archived file, oldest first: the sealed file is copied, proven on the remote (the
backend's SHA-256, or its MD5/SHA-1 against the local file's, or a read-back; `upload.verify`
decides as for backups), then its record is copied and read back byte for byte: the record,
last, is the commit there as here. Only then is the file marked uploaded, in `.uploaded.json`
beside the records. `server.json` and `gaps.json` follow each pass. A file that cannot be
proven stops the pass (the mirror stays a prefix of the chain); the next cycle tries again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from tenangdb.actions.catalog import BINLOG_MIRROR
from tenangdb.control import retry
from tenangdb.errors import TenangDBError, UploadFailed
from tenangdb.fileio import write_atomically
from tenangdb.remote.rclone import Rclone, join, local_hashes
from tenangdb.repository import binlogs as store

log = logging.getLogger("tenangdb.binlog")

REMOTE_FOLDER = BINLOG_MIRROR  # the remote catalogue skips it
UPLOADED = ".uploaded.json"


@dataclass
class Pass:
    uploaded: list[str] = field(default_factory=list)
    error: str | None = None


def wanted(settings) -> bool:
    cfg = settings
    return bool(cfg.binlog.upload and cfg.upload.enabled and cfg.upload.destination)


def remote_folder(rc: Rclone) -> str:
    return join(rc.destination, REMOTE_FOLDER)


def remote_folder_of(settings) -> str:
    return join(settings.upload.destination, REMOTE_FOLDER)


def uploaded(directory: Path) -> dict[str, dict]:
    try:
        return json.loads((directory / UPLOADED).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable: every file is proven again (the copies are skipped by rclone's --checksum)


def upload(settings, directory: Path, records: list[store.Record]) -> Pass:
    """Every archived file not yet proven on the remote; the caller holds the archive's lock."""
    cfg = settings.upload
    result = Pass()
    try:
        rc = Rclone(cfg)
    except TenangDBError as exc:
        result.error = str(exc)
        log.error("binlog upload stopped: %s", exc)
        return result
    remote = remote_folder(rc)
    done = uploaded(directory)
    for record in records:
        if record.name in done:
            continue
        if cfg.encryption and not record.encryption:
            result.error = (f"{record.name} is not encrypted, so not uploaded (upload.encryption is true; set "
                            "backup.encryption)")
            break
        try:
            method = retry(lambda record=record: _one(rc, remote, directory, record, cfg.verify),
                           attempts=cfg.retry_count, delay=cfg.retry_delay, retryable=(UploadFailed,),
                           interrupted="interrupted; the local archive is untouched")
        except UploadFailed as exc:
            result.error = f"{record.name}: {exc}"
            break
        done[record.name] = {"verify": method, "uploaded_at": store.now_text()}
        write_atomically(directory / UPLOADED, (json.dumps(done, indent=1, sort_keys=True) + "\n").encode(),
                         store.RECORD_MODE)
        result.uploaded.append(record.name)
    if result.error is None:
        try:
            for name in (store.IDENTITY, store.GAPS):
                if (directory / name).exists():
                    rc.put_bytes((directory / name).read_bytes(), join(remote, name))
        except TenangDBError as exc:
            result.error = str(exc)
    if result.error:
        log.error("binlog upload stopped: %s (the next cycle tries again)", result.error)
    elif result.uploaded:
        log.info("uploaded %d binlog file(s) to %s, each proven on the remote", len(result.uploaded), remote)
    return result


def _one(rc: Rclone, remote: str, directory: Path, record: store.Record, mode: str) -> str:
    sealed = directory / record.stored_name
    target = join(remote, record.stored_name)
    rc.copy_file(sealed, target)
    method = prove(rc, target, record, mode, local=sealed)
    body = (record.model_dump_json(indent=2) + "\n").encode()
    rc.put_bytes(body, join(remote, f"{record.name}.json"))
    if mode != "off" and rc.cat(join(remote, f"{record.name}.json")) != body:
        raise UploadFailed(f"{join(remote, record.name)}.json differs from the local record")
    return method


def prove(rc: Rclone, target: str, record: store.Record, mode: str, local: Path | None = None) -> str:
    """That the remote copy is the archived file: how it was proven, or UploadFailed."""
    read_back = mode == "download" or (mode == "hash" and rc.hashing_reads)
    hash_type = rc.best_hash() if mode == "hash" and not read_back else None
    listing = rc.list(target, recursive=False, hash_type=hash_type) or []
    if not listing:
        raise UploadFailed(f"{target}: missing on the remote", retryable=True)
    found = listing[0]
    if mode == "off":
        return "off"
    if found.size != record.stored_size:
        raise UploadFailed(f"{target}: remote size is {found.size} bytes, the record says {record.stored_size}")
    if read_back:
        digest, _ = rc.sha256_of(target)
        if digest != record.stored_sha256:
            raise UploadFailed(f"{target}: SHA-256 of the remote copy (read back) does not match its record (damaged)")
        return "download" if mode == "download" else "sha256"
    have = found.hashes.get(hash_type or "", "")
    if not hash_type or not have:
        return "size"
    if hash_type == "sha256":
        want = record.stored_sha256
    elif local is not None:
        sha, want, _ = local_hashes(local, hash_type)
        if sha != record.stored_sha256:
            raise UploadFailed(f"{local}: the local archived file does not match its record (damaged); run "
                               "tenangdb verify --binlog", retryable=False)
    else:
        return "size"
    if have != want:
        raise UploadFailed(f"{target}: {hash_type.upper()} of the remote copy does not match (damaged)")
    return hash_type


def verify_remote(settings, directory: Path, records: list[store.Record]) -> tuple[int, list[str]]:
    """The remote mirror against the local records of the files marked uploaded: each file
    there and proven (as upload.verify says; `off` checks sizes), each record there byte for
    byte. A damaged file loses its mark, so the next cycle copies and proves it again.
    (checked, damage)."""
    cfg = settings.upload
    rc = Rclone(cfg)
    remote = remote_folder(rc)
    done = uploaded(directory)
    damage: list[str] = []
    damaged: list[str] = []
    checked = 0
    mode = cfg.verify if cfg.verify != "off" else "size"
    for record in records:
        if record.name not in done:
            continue
        checked += 1
        try:
            prove(rc, join(remote, record.stored_name), record, mode, local=directory / record.stored_name)
            body = (record.model_dump_json(indent=2) + "\n").encode()
            if rc.cat(join(remote, f"{record.name}.json")) != body:
                raise UploadFailed(f"{join(remote, record.name)}.json differs from the local record")
        except UploadFailed as exc:
            damage.append(str(exc))
            damaged.append(record.name)
    if damaged:
        _unmark(directory, damaged, damage)
    return checked, damage


def _unmark(directory: Path, names: list[str], damage: list[str]) -> None:
    from tenangdb.repository.lock import DirectoryLock

    try:
        with DirectoryLock(directory):  # the archiver writes the marks too
            done = uploaded(directory)
            for name in names:
                done.pop(name, None)
            write_atomically(directory / UPLOADED, (json.dumps(done, indent=1, sort_keys=True) + "\n").encode(),
                             store.RECORD_MODE)
        log.warning("the next archiver cycle uploads %s again", ", ".join(names))
    except TenangDBError as exc:
        damage.append(f"could not mark the damaged files for upload again: {exc}")
