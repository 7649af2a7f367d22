"""The remote copies as a catalogue that stands alone: each backup's record on the remote.

A fresh machine with only the config, the age identity and the rclone config must be able to
tell a proven remote copy from a broken one without downloading each. So every fact learnt
about a remote copy (proven at upload, checked again by `verify --from-remote` or a drill,
found damaged) is written on the remote beside the backup, and beside the local copy when
there is one, where `upload`, `list` and `cleanup` read it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from tenangdb.errors import TenangDBError
from tenangdb.remote.rclone import Rclone, join
from tenangdb.repository import records
from tenangdb.repository.naming import BackupRef

log = logging.getLogger("tenangdb.offsite")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_location(rc: Rclone, rel: str) -> str:
    return join(rc.destination, records.remote_record_rel(rel))


def put_record(rc: Rclone, rel: str, record: records.UploadRecord) -> None:
    rc.put_bytes(record.body(), record_location(rc, rel))


def read_record(rc: Rclone, rel: str) -> records.UploadRecord | None:
    """The remote record of the backup at `rel`; None when there is none or it is unreadable."""
    try:
        data = rc.cat(record_location(rc, rel))
    except TenangDBError:
        return None  # none yet (a copy uploaded by an older version), or unreachable
    try:
        return records.UploadRecord.model_validate_json(data)
    except ValidationError:
        log.warning("ignoring the unreadable remote record of %s", rel)
        return None


def record_check(rc: Rclone, root: Path, rel: str, *, ok: bool, how: str, error: str | None = None,
                 proof: str | None = None) -> None:
    """Write what a check of the remote copy at `rel` found, on the remote and beside the local
    copy's own record. A failure to write is logged: the check's own result stands."""
    stamp = now_iso()
    base = read_record(rc, rel) or records.UploadRecord(destination=rc.destination,
                                                       remote_path=join(rc.destination, rel))
    if ok:
        change = {"ok": True, "checked_at": stamp, "check": how, "verified_at": stamp, "verify": "download",
                  "proof": proof, "error": None, "failed_at": None}
    else:
        change = {"ok": False, "checked_at": stamp, "check": how, "failed_at": stamp, "error": error,
                  "proof": None}
    updated = base.model_copy(update=change)
    updated.__pydantic_fields_set__.update(change)
    try:
        put_record(rc, rel, updated)
    except TenangDBError as exc:
        log.error("could not record the check of %s on the remote: %s", rel, exc)
    ref = BackupRef.parse(rel)
    if ref is None:
        return
    local = records.read_upload(ref.path(root))
    if local is not None and local.destination == rc.destination:
        # The local record decides whether `upload` sends the copy again: a damaged remote
        # copy must be repaired by the next upload.
        mine = local.model_copy(update=change)
        mine.__pydantic_fields_set__.update(change)
        records.write(records.upload_path(ref.path(root)), mine)
