"""The command lines of mariadb-binlog (mysqlbinlog): fetching a closed binary log file from the
server in its raw form, and decoding an archived one into SQL for a replay; and the SQL a replay
of a whole instance adds around that output."""

from __future__ import annotations

import re


def fetch_argv(tool: str, login: list[str], folder: str, name: str) -> list[str]:
    """Copy the server's closed binary log `name`, raw, to `{folder}/{name}` (a FIFO we read)."""
    return [tool, *login, "--read-from-remote-server", "--raw", f"--result-file={folder}/", name]


def decode_argv(tool: str, database: str | None, target: str | None, *, start: int | None,
                stop: int | None) -> list[str]:
    """Decode a binary log read from stdin into the SQL of `database`'s events only, renamed to
    `target` (`database` None: every database's, as they are), from byte `start` up to (not
    including) the event at `stop`."""
    argv = [tool, "--no-defaults"]
    if database is not None:
        argv.append(f"--database={database}")
        if target != database:
            argv.append(f"--rewrite-db={database}->{target}")
    if start:
        argv.append(f"--start-position={start}")
    if stop is not None:
        argv.append(f"--stop-position={stop}")
    argv.append("-")
    return argv


_POSITION = re.compile(r"\d+-\d+-\d+(,\d+-\d+-\d+)*")


def set_slave_position(position: str) -> bytes:
    """The statement that records `position` (per domain its last GTID, `D-S-N,...`) as the
    instance's gtid_slave_pos: kept in mysql.gtid_slave_pos, so it survives the restart."""
    if not _POSITION.fullmatch(position):
        raise ValueError(f"not a GTID position: {position!r}")
    return f"SET GLOBAL gtid_slave_pos = '{position}';\n".encode()
