"""Find the client programs and learn their versions."""

from __future__ import annotations

import functools
import re
import shutil

from tenangdb.errors import ToolMissing
from tenangdb.runner import run

_EXTRA_PATHS = "/usr/bin:/usr/local/bin:/usr/sbin:/usr/local/sbin:/opt/homebrew/bin:/snap/bin"


def find_tool(configured: str | None, candidates: tuple[str, ...], what: str, key: str,
              package: str = "mariadb-client") -> str:
    if configured:
        found = shutil.which(configured)
        if not found:
            raise ToolMissing(f"{key} is {configured!r}, which is not an executable program")
        return found
    for name in candidates:
        found = shutil.which(name) or shutil.which(name, path=_EXTRA_PATHS)
        if found:
            return found
    raise ToolMissing(f"{what} is not installed (looked for {', '.join(candidates)}); "
                      f"install {package} or set {key}")


def dump_tool(cfg) -> str:
    return find_tool(cfg.mysqldump_path, ("mariadb-dump", "mysqldump"), "the dump tool",
                     "database.mysqldump_path")


def mydumper_tool(cfg) -> str:
    return find_tool(cfg.mydumper.binary_path, ("mydumper",), "mydumper", "database.mydumper.binary_path",
                     package="mydumper")


def myloader_tool(cfg) -> str:
    return find_tool(cfg.mydumper.myloader.binary_path, ("myloader",), "myloader",
                     "database.mydumper.myloader.binary_path", package="mydumper")


def client_tool(cfg) -> str:
    return find_tool(cfg.mysql_path, ("mariadb", "mysql"), "the mysql client", "database.mysql_path")


@functools.lru_cache(maxsize=None)
def tool_version(path: str) -> str:
    status, out, err = run([path, "--version"], timeout=20)
    # mariabackup says it on stderr: "mariabackup based on MariaDB server 10.11.19-MariaDB ...".
    text = out.decode(errors="replace").strip() or err.strip()
    if status != 0 or not text:
        return "unknown"
    match = (re.search(r"Distrib ([^\s,]+)", text) or re.search(r"Ver ([^\s,]+)", text)
             or re.search(r"based on \S+ server ([^\s,]+)", text))
    return match.group(1) if match else text.splitlines()[0][:80]
