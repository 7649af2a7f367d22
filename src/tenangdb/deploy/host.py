"""The host side of a deployment: the service account, files written with their owner and mode
in one step, and systemd's own checks. Everything takes a `root` prefix so a package build (or
a test) can write a whole installation into a folder without touching the machine."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tenangdb.errors import TenangDBError
from tenangdb.runner import run


class DeployError(TenangDBError):
    pass


def under(root: Path, path: str | os.PathLike) -> Path:
    """`path` (absolute, as the running system sees it) inside the prefix `root`."""
    path = Path(path)
    if str(root) in ("/", ""):
        return path
    return root / path.relative_to(path.anchor) if path.is_absolute() else root / path


@dataclass
class Account:
    name: str
    uid: int
    gid: int


def _lookup(root: Path, database: str, name: str) -> list[str] | None:
    try:
        text = under(root, f"/etc/{database}").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split(":")
        if fields and fields[0] == name:
            return fields
    return None


def find_account(name: str, root: Path = Path("/")) -> Account | None:
    if str(root) == "/":
        import pwd
        try:
            entry = pwd.getpwnam(name)
            return Account(name, entry.pw_uid, entry.pw_gid)
        except KeyError:
            return None
    fields = _lookup(root, "passwd", name)
    if not fields or len(fields) < 4:
        return None
    return Account(name, int(fields[2]), int(fields[3]))


def find_group(name: str, root: Path = Path("/")) -> int | None:
    if str(root) == "/":
        import grp
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None
    fields = _lookup(root, "group", name)
    return int(fields[2]) if fields and len(fields) >= 3 else None


def ensure_account(name: str, home: str, root: Path = Path("/")) -> tuple[Account, bool]:
    """The system account `name` (created with its own group and no login shell if missing);
    True when it was created now."""
    found = find_account(name, root)
    if found:
        return found, False
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if not useradd:
        raise DeployError(f"the system user {name!r} does not exist and useradd is not installed; "
                          f"create it, then run init again")
    argv = [useradd, "--system", "--user-group", "--shell", "/usr/sbin/nologin", "--home-dir", home,
            "--no-create-home", "--comment", "TenangDB backups"]
    if str(root) != "/":
        argv += ["--prefix", str(root)]
    status, _, err = run([*argv, "--", name], timeout=60)
    if status != 0:
        raise DeployError(f"useradd could not create the system user {name!r}: "
                          f"{err.strip().splitlines()[-1] if err.strip() else f'exit status {status}'}")
    found = find_account(name, root)
    if not found:
        raise DeployError(f"useradd reported success but the user {name!r} is not there")
    return found, True


# Shared system folders: never re-owned or re-moded, whatever path a user types.
SHARED = frozenset({"/", "/etc", "/var", "/usr", "/usr/local", "/home", "/root", "/tmp", "/var/tmp", "/opt",
                    "/srv", "/var/lib", "/var/log", "/var/backups", "/mnt", "/media", "/run"})


def make_dir(path: Path, mode: int, uid: int = -1, gid: int = -1, *, real: str | None = None) -> bool:
    """Create the folder (missing parents get the default mode) and set its owner and mode.

    An existing folder is adopted only when it is empty or named for tenangdb; anything else
    (a shared folder such as /var/backups, someone's data) is left alone: False is returned."""
    if path.is_symlink():
        raise DeployError(f"{path} is a symbolic link; refusing to change its owner or mode")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, mode)
    elif not path.is_dir():
        raise DeployError(f"{path} exists and is not a folder")
    elif os.path.normpath(real or str(path)) in SHARED or not (
            "tenangdb" in path.name.lower() or not any(path.iterdir())):
        return False
    if uid >= 0 or gid >= 0:
        os.chown(path, uid, gid)
    os.chmod(path, mode)
    return True


def write_file(path: Path, data: bytes, mode: int, uid: int = -1, gid: int = -1, *, force: bool = False) -> None:
    """Write a file with its owner and mode already set before a byte lands in it, then rename
    it into place; an existing file is replaced only with `force`."""
    if path.exists() or path.is_symlink():
        if not force:
            raise DeployError(f"{path} already exists; refusing to overwrite it (use --force)")
        if path.is_symlink() or not path.is_file():
            raise DeployError(f"{path} is not a regular file; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if uid >= 0 or gid >= 0:
            os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze")


def verify_units(paths: list[Path]) -> list[str]:
    """`systemd-analyze verify` on the unit files: its complaints, one per line (empty: clean).
    It reports some problems (an unknown key, a bad value) only as warnings with exit status 0,
    so every line it prints counts."""
    tool = systemd_analyze()
    if tool is None or not paths:
        return []
    status, out, err = run([tool, "verify", "--man=no", *map(str, paths)], timeout=120)
    lines = [line.strip() for line in (out.decode(errors="replace") + "\n" + err).splitlines() if line.strip()]
    if status != 0 and not lines:
        lines = [f"systemd-analyze verify failed with exit status {status}"]
    return lines


def systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def systemctl(*args: str) -> tuple[int, str]:
    status, _, err = run([shutil.which("systemctl") or "systemctl", *args], timeout=120)
    return status, err.strip()
