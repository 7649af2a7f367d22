"""`tenangdb restore`: verify first, then stream the dump into the target database."""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tenangdb.actions.verify import identities_for, verify_backup
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import RestoreFailed, VerifyFailed
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql import mysqldump
from tenangdb.mysql.connection import client_options, connect, endpoint_from
from tenangdb.mysql.tools import client_tool
from tenangdb.runner import spawn
from tenangdb.stream.pipeline import unseal

log = logging.getLogger("tenangdb.restore")


@dataclass
class Restored:
    path: Path
    target: str
    duration: float
    plain_bytes: int


def run(loaded: LoadedConfig, backup_path: str | Path, target: str, *,
        confirm: Callable[[str], bool]) -> Restored:
    if not target or "\x00" in target or len(target) > 64:
        raise RestoreFailed(f"{target!r} is not a valid database name")
    try:
        verified = verify_backup(loaded, backup_path)
    except VerifyFailed as exc:
        raise VerifyFailed(f"refusing to restore from a backup that failed verification: {exc}") from None
    manifest, folder = verified.manifest, verified.path
    cfg = loaded.settings
    client = client_tool(cfg.database)
    endpoint = endpoint_from(cfg.database)
    conn = connect(endpoint)
    try:
        if inv_mod.database_exists(conn, target) and inv_mod.database_object_count(conn, target) > 0:
            if not confirm(f"Database {target!r} exists and is not empty; objects in the backup will "
                           f"replace those of the same name. Restore {manifest['database']!r} into it?"):
                raise RestoreFailed(f"database {target!r} exists and is not empty; restore cancelled "
                                    "(pass --yes to restore into it)")
        inv_mod.create_database(conn, target, manifest.get("database_charset"), manifest.get("database_collation"),
                                manifest.get("database_comment"))
    finally:
        conn.close()
    identities = identities_for(loaded, manifest, folder)
    if target != manifest["database"] and manifest.get("qualified_references"):
        log.warning("these objects name database %r in their own SQL and will keep using it after the "
                    "restore into %r: %s", manifest["database"], target, ", ".join(manifest["qualified_references"]))
    started = time.monotonic()
    total = 0
    for entry in manifest["files"]:
        total += _load_file(folder / entry["name"], entry, manifest, client, endpoint, target, identities)
    duration = time.monotonic() - started
    log.info("restored %s into database %r in %.1fs", folder, target, duration)
    return Restored(path=folder, target=target, duration=duration, plain_bytes=total)


def _load_file(path: Path, entry: dict, manifest: dict, client: str, endpoint, target: str,
               identities) -> int:
    with client_options(endpoint) as (login, fds):
        argv = mysqldump.restore_argv(client, login, target)
        with spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=fds) as child:
            stdin = child.stdin

            def write_all(data: bytes) -> None:
                view = memoryview(data)
                while view:  # a raw pipe write may take only part of the buffer
                    view = view[stdin.write(view):]

            renamer = mysqldump.DatabaseRenamer(manifest["database"], target, write_all)
            try:
                result = unseal(path, compression=manifest["compression"]["format"], identities=identities,
                                forward=renamer.write, hash_stored=False)
                renamer.close()
                child.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                status = child.wait()
                raise RestoreFailed(f"{Path(client).name} stopped reading the dump (exit {status}): "
                                    f"{child.error_line()}") from None
            status = child.wait()
    if status != 0:
        raise RestoreFailed(f"{Path(client).name} failed to load {path.name} (exit {status}): {child.error_line()}")
    if result.plain.sha256 != entry["plain_sha256"]:
        raise RestoreFailed(f"{path}: changed while it was being restored; the target database "
                            f"{target!r} may be incomplete")
    return result.plain.size
