"""The repository's identity: which filesystem the backups belong on.

An unmounted backup disk leaves an empty mount point, and a missing backup directory was
simply created: backups then filled the root filesystem and were lost at the next mount. So
the backup directory carries a small file with a random id (`.tenangdb-repository`), made
by the first backup, and the state directory records the id per backup directory. A run
that finds the directory missing, without the file, or with another id refuses to write.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tenangdb.errors import EXIT_CONFIG, TenangDBError
from tenangdb.fileio import write_atomically

MARKER = ".tenangdb-repository"
FSTAB = Path("/etc/fstab")
MOUNTINFO = Path("/proc/self/mountinfo")


class RepositoryUnavailable(TenangDBError):
    """The backup directory is not the repository this host writes to, or cannot be used."""

    exit_code = EXIT_CONFIG


def state_file(state_directory: Path, directory: str) -> Path:
    digest = hashlib.md5(directory.encode(), usedforsecurity=False).hexdigest()[:8]
    return state_directory / f".tenangdb_repository_{digest}.json"


@dataclass
class Status:
    """What is known of a backup directory; `problem` is why it may not be written."""

    root: Path
    record: Path
    found: str | None  # the id in the directory
    known: str | None  # the id the state directory recorded
    problem: str | None = None
    unmounted: str | None = None  # a mount point of /etc/fstab with nothing mounted on it


def _read_marker(root: Path) -> str | None:
    ident = _read_id(root / MARKER, "run as the account that owns the backup directory", "restore it from a copy")
    if ident == "":
        raise RepositoryUnavailable(f"{root / MARKER} holds no repository id; restore it from a copy")
    return ident


def _read_record(record: Path) -> str | None:
    return _read_id(record, "run as the account that runs backups",
                    f"remove it only if {MARKER} in the backup directory is the right one") or None


def _read_id(path: Path, unreadable_by_us: str, damaged: str) -> str | None:
    """The id in `path`; None when there is no such file, "" when it holds none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise RepositoryUnavailable(f"{path} is not readable by this user; {unreadable_by_us}") from None
    except (OSError, ValueError) as exc:
        raise RepositoryUnavailable(f"{path} is unreadable ({exc}); {damaged}") from None
    ident = data.get("id") if isinstance(data, dict) else None
    return ident if isinstance(ident, str) and ident else ""


def _unescape(field: str) -> str:
    """fstab and mountinfo write a space in a path as \\040."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def unmounted_mount_point(path: Path, fstab: Path = FSTAB, mountinfo: Path = MOUNTINFO) -> str | None:
    """The folder on `path` (or above it) that /etc/fstab mounts but nothing is mounted on now."""
    try:
        wanted = set()
        for line in fstab.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith("#") and fields[1].startswith("/"):
                wanted.add(os.path.normpath(_unescape(fields[1])))
        mounted = {os.path.normpath(_unescape(line.split()[4]))
                   for line in mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
                   if len(line.split()) > 4}
    except OSError:
        return None  # no fstab (a container): nothing to compare with
    probe = Path(os.path.abspath(path))
    for folder in (probe, *probe.parents):
        if str(folder) in wanted and str(folder) not in mounted:
            return str(folder)
    return None


def status(root: Path, state_directory: Path, directory: str | None = None) -> Status:
    """Examine `root` against the state directory's record, changing nothing."""
    record = state_file(state_directory, directory or str(root))
    known = _read_record(record)
    found = _read_marker(root) if root.is_dir() else None
    st = Status(root=root, record=record, found=found, known=known, unmounted=unmounted_mount_point(root))
    if st.unmounted:
        st.problem = (f"{st.unmounted} is a mount point in {FSTAB} but nothing is mounted on it, so {root} would "
                      "be on the filesystem below; mount it first")
    elif known and not root.exists():
        st.problem = (f"{root} does not exist, but this host has backed up to it (repository {known[:12]}, "
                      f"recorded in {record}); is its disk mounted?")
    elif root.exists() and not root.is_dir():
        st.problem = f"{root} is not a directory"
    elif known and found is None:
        st.problem = (f"{root} is not the repository this host backs up to: it holds no {MARKER} (expected "
                      f"repository {known[:12]}, recorded in {record}); is the backup disk mounted? If the "
                      f"backups moved here, copy {MARKER} from the old directory")
    elif known and found != known:
        st.problem = (f"{root} holds repository {found[:12]}, not {known[:12]} that this host backs up to "
                      f"(recorded in {record}); is another disk mounted there? If this is the right one, "
                      f"remove {record}")
    return st


def check(root: Path, state_directory: Path, *, create: bool) -> Status:
    """Refuse a directory that is not this host's repository. With `create` (a backup), a first
    run makes the directory and its identity, and an existing directory without one (made
    before repositories had an identity) gets one; both are recorded in the state directory."""
    st = status(root, state_directory)
    if st.problem:
        raise RepositoryUnavailable(f"refusing to use the backup directory: {st.problem}")
    if not create:
        return st
    from tenangdb.repository import store

    try:
        store.ensure_dir(root)
        if st.found is None:
            st.found = _create_marker(root)
        if st.known != st.found:
            st.record.parent.mkdir(parents=True, exist_ok=True)
            body = {"directory": str(root), "id": st.found, "recorded_at": _now()}
            write_atomically(st.record, (json.dumps(body, indent=2) + "\n").encode(), 0o640)
            st.known = st.found
    except PermissionError as exc:
        raise RepositoryUnavailable(_permission_message(root, exc)) from None
    except store.StorageError as exc:
        raise RepositoryUnavailable(str(exc)) from None
    except OSError as exc:
        raise RepositoryUnavailable(f"cannot record the repository identity of {root}: "
                                    f"{exc.strerror or exc}") from None
    return st


def _permission_message(root: Path, exc: OSError) -> str:
    # A temp file's name in the error says less than the folder it was meant for.
    where = root if not exc.filename or Path(str(exc.filename)).parent == root else exc.filename
    try:
        import pwd

        owner = pwd.getpwuid(root.stat().st_uid).pw_name
        whose = f" (the backup directory belongs to {owner})"
    except (OSError, KeyError):
        whose = ""
    return (f"this user may not write into {where}{whose}; run tenangdb as the account that owns the backup "
            "directory, e.g. through the systemd units")


def _create_marker(root: Path) -> str:
    ident = secrets.token_hex(16)
    body = {"id": ident, "created_at": _now(),
            "note": "TenangDB repository identity: keep this file with the backups"}
    write_atomically(root / MARKER, (json.dumps(body, indent=2) + "\n").encode(), 0o640)
    return ident


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
