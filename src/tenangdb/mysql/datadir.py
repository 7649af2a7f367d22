"""The server's data directory as a physical backup sees it: where the server keeps it, how much
of it mariabackup copies (a backup's progress total), and what an account must be able to read
(mariabackup reads the server's files itself, so whoever runs the backup must: doctor and init
check it).

The size is the files' own (what mariabackup reads and streams), not the server's estimate of
its tables (information_schema's data_length leaves out free pages, the system tablespace, the
undo logs and the other engines' files, all of which are copied). Left out, as mariabackup leaves
them: the redo log (only its tail from the checkpoint is copied), the temporary tablespace, and
the binary and relay logs when they live inside the data directory.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tenangdb.progress import folder_size


@dataclass(frozen=True)
class Datadir:
    path: Path
    # The binary and relay logs' basenames (full paths): their files are no part of a physical backup.
    log_bases: tuple[str, ...] = ()


def locate(conn) -> Datadir:
    """Where the server keeps its data, as it says."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir, @@log_bin_basename, @@relay_log_basename")
        datadir, binlog, relay = cur.fetchone()
    return Datadir(Path(datadir), tuple(str(base) for base in (binlog, relay) if base))


# Files in the data directory that mariabackup does not copy (or copies only a tail of).
_NOT_COPIED = re.compile(r"^(ib_logfile\d+|ibtmp\d+|#.*|.*\.pid|.*\.err|.*\.sock)$")


def copied_size(datadir: Datadir) -> int | None:
    """The bytes of the files a full physical backup copies; None when the folder cannot be read
    here (then there is no total to show, and the backup itself says why it fails)."""
    top = datadir.path
    try:
        listing = os.scandir(top)
    except OSError:
        return None
    total = 0
    with listing:
        for entry in listing:
            if _NOT_COPIED.match(entry.name) or _is_log(str(top / entry.name), datadir.log_bases):
                continue
            with contextlib.suppress(OSError):  # a table dropped while we looked
                if entry.is_dir(follow_symlinks=True):
                    total += folder_size(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=True).st_size
    return total


def _is_log(path: str, bases: tuple[str, ...]) -> bool:
    """`base.000042`, `base.index` and `base.state` of a binary or relay log."""
    return any(path.startswith(base + ".") for base in bases)


def to_read(datadir: Path) -> list[Path]:
    """What a backup's account must be able to read for mariabackup to copy the instance: the
    folder, the system tablespace, each database's folder (the server makes them 0700 unless
    its UMASK_DIR says otherwise) and one table file in each (0660 unless UMASK says so)."""
    paths = [datadir / "ibdata1"]
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(datadir), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=True) and not entry.name.startswith(("#", ".")) \
                    and entry.name != "lost+found":  # a file system's, where the datadir is a mount
                folder = Path(entry.path)
                paths.append(folder)
                with contextlib.suppress(OSError):
                    first = next((f for f in sorted(os.scandir(folder), key=lambda e: e.name) if f.is_file()), None)
                    if first is not None:
                        paths.append(Path(first.path))
    return [datadir] + [p for p in paths if p.exists()]
