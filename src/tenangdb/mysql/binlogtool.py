"""The command lines of mariadb-binlog (mysqlbinlog): fetching a closed binary log file from the
server in its raw form, and decoding an archived one into SQL for a replay."""

from __future__ import annotations


def fetch_argv(tool: str, login: list[str], folder: str, name: str) -> list[str]:
    """Copy the server's closed binary log `name`, raw, to `{folder}/{name}` (a FIFO we read)."""
    return [tool, *login, "--read-from-remote-server", "--raw", f"--result-file={folder}/", name]


def decode_argv(tool: str, database: str, target: str, *, start: int | None, stop: int | None) -> list[str]:
    """Decode a binary log read from stdin into the SQL of `database`'s events only, renamed to
    `target`, from byte `start` up to (not including) the event at `stop`."""
    argv = [tool, "--no-defaults", f"--database={database}"]
    if target != database:
        argv.append(f"--rewrite-db={database}->{target}")
    if start:
        argv.append(f"--start-position={start}")
    if stop is not None:
        argv.append(f"--stop-position={stop}")
    argv.append("-")
    return argv
