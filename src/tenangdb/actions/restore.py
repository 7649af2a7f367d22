"""`tenangdb restore`: verify first, then stream the dump into the target database."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tenangdb.actions.verify import identities_for, verify_backup
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import RestoreFailed, ToolMissing, VerifyFailed
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql import mydumper, mysqldump
from tenangdb.mysql.connection import client_options, connect, endpoint_from, private_defaults_file
from tenangdb.mysql.tools import client_tool, myloader_tool
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
    if manifest["engine"].get("name") == mydumper.ENGINE:
        client = _loader(cfg.database)
    else:
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
    if manifest["engine"].get("name") == mydumper.ENGINE:
        total = _load_mydumper(loaded, folder, manifest, endpoint, target, identities)
    else:
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


def _loader(dcfg) -> str:
    if not dcfg.mydumper.myloader.enabled:
        raise RestoreFailed("this backup was made by mydumper and restoring it needs myloader, but "
                            "database.mydumper.myloader.enabled is false")
    try:
        return myloader_tool(dcfg)
    except ToolMissing as exc:
        raise RestoreFailed(f"this backup was made by mydumper and restoring it needs myloader: {exc}") from None


def _load_mydumper(loaded: LoadedConfig, folder: Path, manifest: dict, endpoint, target: str, identities) -> int:
    """Unseal every file into a private folder beside the backup, then myloader it.

    myloader reads a whole folder, so the plaintext exists on disk for the length of the
    load: in a 0700 folder on the backup's own filesystem, removed however the load ends.
    """
    dcfg = loaded.settings.database
    binary = _loader(dcfg)
    scratch = Path(tempfile.mkdtemp(prefix=".tenangdb-restore-", dir=folder.parent))
    total = 0
    try:
        os.chmod(scratch, 0o700)
        plain_dir = scratch / "dump"
        plain_dir.mkdir(mode=0o700)
        for entry in manifest["files"]:
            plain_name = entry.get("plain_name") or entry["name"]
            fd = os.open(plain_dir / plain_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                try:
                    result = unseal(folder / entry["name"], compression=manifest["compression"]["format"],
                                    identities=identities, forward=out.write, hash_stored=False)
                except OSError as exc:
                    raise RestoreFailed(f"cannot write the unsealed dump under {scratch}: {exc.strerror or exc}") \
                        from None
            if result.plain.sha256 != entry["plain_sha256"]:
                raise RestoreFailed(f"{folder / entry['name']}: changed while it was being restored")
            total += result.plain.size
        mcfg = dcfg.mydumper.myloader
        login = contextlib.nullcontext(mcfg.defaults_file) if mcfg.defaults_file else private_defaults_file(endpoint)
        with login as defaults:
            argv = mydumper.load_argv(binary, defaults, plain_dir, source=manifest["database"], target=target,
                                      threads=mcfg.threads)
            with spawn(argv, stdout=subprocess.DEVNULL) as child:
                status = child.wait()
        program = Path(binary).name
        if status != 0:
            raise RestoreFailed(f"{program} failed to load the backup (exit {status}): {child.error_line()}")
        if fatal := mydumper.fatal_lines(child.stderr_text()):
            raise RestoreFailed(f"{program} reported errors; the target database {target!r} may be incomplete: "
                                f"{fatal[0][:300]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return total
