"""mariabackup and mbstream: the only module that knows their options and the files they write.

Measured with mariabackup 10.11.19 (Debian's mariadb-backup package): with
`--stream=mbstream --extra-lsndir=DIR` the stream holds the data directory's files plus
`xtrabackup_checkpoints`, `xtrabackup_info`, `xtrabackup_binlog_info` and `backup-my.cnf`;
DIR gets `xtrabackup_checkpoints` and `xtrabackup_info` only (the binary log position is in
the latter's `binlog_pos` line). The last stderr line of a good run is "completed OK!".

Increments (measured with the same version): `--incremental-lsn=N` (a plain decimal LSN: the
parent's `to_lsn`) needs nothing of the parent but that number, so no plaintext of it; the
stream then holds `.delta`/`.meta` files for InnoDB tablespaces, whole copies of the other
files, and checkpoints with `backup_type = incremental` and `from_lsn = N`. A chain is prepared
by `--prepare` of the full backup, then `--prepare --incremental-dir=INC` for each increment in
order, into the full's folder: MariaDB has no `--apply-log-only` step (10.2+ ignores it).
"""

from __future__ import annotations

import re
from pathlib import Path

from tenangdb.mysql.tools import find_tool

ENGINE = "mariabackup"
# The pseudo-database a backup of the whole instance is filed under: `{dir}/_instance/{YYYY-MM}/…`.
INSTANCE = "_instance"
CHECKPOINTS = "xtrabackup_checkpoints"
INFO = "xtrabackup_info"
COMPLETED = "completed OK!"
FULL, INCREMENTAL = "full-backuped", "incremental"  # xtrabackup_checkpoints' backup_type
# The configuration mariabackup writes into the backup: the InnoDB layout a prepare needs.
BACKUP_CNF = "backup-my.cnf"


def backup_tool(dcfg=None) -> str:
    return find_tool(None, ("mariabackup", "mariadb-backup", "xtrabackup"), "mariabackup",
                     "backup.engine", package="mariadb-backup")


def mbstream_tool(dcfg=None) -> str:
    return find_tool(None, ("mbstream", "xbstream"), "mbstream", "backup.engine", package="mariadb-backup")


def backup_argv(tool: str, defaults: str, lsndir: Path, tmpdir: Path, since_lsn: int | None = None) -> list[str]:
    """A backup of the instance as an mbstream on stdout: full, or with `since_lsn` the pages
    changed after that LSN (an increment on the backup whose to_lsn it is). The login comes from `defaults`
    (a 0600 file: mariabackup reads its option files more than once, so a pipe will not do);
    --defaults-extra-file must come first. `tmpdir` is private: mariabackup spools the redo log
    it copies there before it streams it."""
    return [tool, f"--defaults-extra-file={defaults}", "--backup", "--stream=mbstream",
            f"--extra-lsndir={lsndir}", f"--target-dir={tmpdir}", f"--tmpdir={tmpdir}"] \
        + ([f"--incremental-lsn={since_lsn}"] if since_lsn is not None else [])


# mbstream -x writes the files with this many threads. Measured on 2 cores, a 600 MB stream
# from a pipe: 0.56 s with 2 against 0.97 s with 1 (its default) and 1.0 s with 4; a 3-backup
# chain's restore 5.9 s against 7.0 s (medians of 4).
EXTRACT_THREADS = 2


def extract_argv(tool: str, into: Path) -> list[str]:
    return [tool, "-x", f"--parallel={EXTRACT_THREADS}", "-C", str(into)]


def prepare_argv(tool: str, folder: Path, use_memory: str, increment: Path | None = None) -> list[str]:
    """Prepare the full backup unpacked in `folder`, or (`increment`) apply an increment to it."""
    # The backup's own backup-my.cnf, not the machine's option files: the prepare must follow the
    # InnoDB layout of the server the files came from.
    return [tool, f"--defaults-file={folder / BACKUP_CNF}", "--prepare", f"--target-dir={folder}",
            f"--use-memory={use_memory}"] + ([f"--incremental-dir={increment}"] if increment is not None else [])


def move_back_argv(tool: str, folder: Path, datadir: Path) -> list[str]:
    return [tool, f"--defaults-file={folder / BACKUP_CNF}", "--move-back", f"--target-dir={folder}",
            f"--datadir={datadir}"]


def is_complete(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and lines[-1].rstrip().endswith(COMPLETED)


def first_error(stderr: str) -> str | None:
    """mariabackup's first [ERROR] line (a prepare that fails ends with clean-up noise such as
    "Error in my_thread_global_end()", which says nothing of why)."""
    for line in stderr.splitlines():
        if "[ERROR]" in line:
            return line.strip()[:500]
    return None


def key_values(text: str) -> dict[str, str]:
    """`key = value` lines (xtrabackup_checkpoints, xtrabackup_info)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def lsn_range(checkpoints: str) -> dict:
    """The manifest's record of xtrabackup_checkpoints: type and LSNs (integers)."""
    values = key_values(checkpoints)
    out: dict = {"backup_type": values.get("backup_type")}
    for key in ("from_lsn", "to_lsn", "last_lsn"):
        if (value := values.get(key, "")).isdigit():
            out[key] = int(value)
    return out


_BINLOG = re.compile(r"filename '(?P<file>[^']*)', position '(?P<position>\d+)'"
                     r"(?:, GTID of the last change '(?P<gtid>[^']*)')?")


def binlog_coordinates(info: str) -> dict | None:
    """The backup point's binary log coordinates from xtrabackup_info's binlog_pos; None when
    the binary log is off (no such line)."""
    match = _BINLOG.search(key_values(info).get("binlog_pos", ""))
    if match is None:
        return None
    coordinates = {"file": match["file"], "position": int(match["position"])}
    if match["gtid"]:
        coordinates["gtid"] = match["gtid"]
    return coordinates
