"""The parallel engine: mydumper writes one file per table chunk into a private folder, each
sealed as soon as it is complete; myloader loads the folder back, unsealed into a private
folder first. What mydumper cannot carry goes to the streaming engine (`cannot_carry`)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from pathlib import Path

from tenangdb.errors import BackupFailed, ConfigError, RestoreFailed, ToolMissing
from tenangdb.mysql import mydumper
from tenangdb.mysql.alignment import FTWRL, mydumper_opened
from tenangdb.mysql.connection import private_defaults_file
from tenangdb.mysql.engines.base import (BackupJob, DumpInput, Dumped, Engine, check_exit, dump_deadline, file_entry,
                                         options_of)
from tenangdb.mysql.tools import myloader_tool, mydumper_tool
from tenangdb.progress import Meter, Task, bytes_read, polling, task
from tenangdb.repository import legacy, store
from tenangdb.repository.manifest import Manifest
from tenangdb.runner import spawn
from tenangdb.stream.codec import SUFFIX
from tenangdb.stream.folder import FolderSealer

log = logging.getLogger("tenangdb.backup")


class Parallel(Engine):
    label = "parallel"  # as the log names it
    name = mydumper.ENGINE
    fallback = "mysqldump"
    # The counts and checksums wait until mydumper is done with the server: its threads
    # already compete for it, and the sealing goes on for a while after.
    checks_during_dump = False
    loads_from_folder = True
    loads_by_client = False
    legacy_form = legacy.FOLDER
    loads_tables = True

    @classmethod
    def chosen_by_auto(cls, dcfg) -> bool:
        if not dcfg.mydumper.enabled:
            return False
        try:
            mydumper_tool(dcfg)
        except ToolMissing:
            if dcfg.mydumper.binary_path:
                raise  # the operator pointed at a mydumper that is not there: say so
            return False
        return True

    @property
    def dump_tool(self) -> str:
        return self.tool(mydumper_tool)

    def check_chosen(self) -> None:
        self.check_backup_tools()

    def check_backup_tools(self) -> None:
        if not self.dcfg.mydumper.enabled:
            raise ConfigError("backup.engine is mydumper but database.mydumper.enabled is false")
        self.dump_tool  # noqa: B018 - resolving it is the check; a clear ToolMissing now, not per database

    def tools_seen(self) -> list[str]:
        return [f"{self.dump_tool} and {myloader_tool(self.dcfg)} (the mydumper engine)"]

    def cannot_carry(self, conn, database: str, inventory, checked) -> list[str]:
        reasons = mydumper.unsupported(conn, database, inventory, checked.qualified_references)
        if checked.lossy_floats:
            reasons.append("FLOAT values that need more than 6 digits, which only the streaming dump is given exactly")
        if checked.enum_errors:
            reasons.append("ENUM error values, which only the streaming dump writes apart from ''")
        return reasons

    def describe_fallback(self, reasons: list[str]) -> str:
        return (f"mydumper {'.'.join(map(str, mydumper.version(self.dump_tool)))} cannot carry everything in this "
                f"database ({'; '.join(reasons)})")

    def float_loss_reason(self) -> str:
        return "the mydumper engine prints FLOAT with 6 significant digits"

    def alignment_mode(self, server) -> str:
        # mydumper takes FLUSH TABLES WITH READ LOCK itself, which waits behind BACKUP STAGE.
        return FTWRL

    def tool_opened(self, database: str):
        return mydumper_opened(database)

    @classmethod
    def dump_needs(cls, flavour: str, version: tuple[int, ...]) -> list:
        from tenangdb.mysql.grants import Need
        # Measured with mydumper 0.10 on MariaDB 10.11: without RELOAD it stops ("Couldn't
        # acquire global lock"); PROCESS is not needed.
        needs = [Need("RELOAD", "global", "FLUSH TABLES WITH READ LOCK for mydumper's consistent start")]
        if flavour == "mysql" and version >= (8, 0):
            needs.append(Need("BACKUP_ADMIN", "global", "LOCK INSTANCE FOR BACKUP"))
        return needs

    def dump(self, job: BackupJob, into: DumpInput) -> Dumped:
        mcfg = self.dcfg.mydumper
        tool, name, inventory, staging = self.dump_tool, job.database, into.inventory, into.staging
        program = Path(tool).name
        suffix = SUFFIX[job.compression] + (".age" if job.keys is not None else "")
        scratch = staging.scratch()
        outdir = scratch / "dump"
        try:
            login = contextlib.nullcontext(mcfg.defaults_file) if mcfg.defaults_file \
                else private_defaults_file(job.endpoint)
            with login as defaults:
                argv = mydumper.dump_argv(tool, defaults, name, outdir, threads=mcfg.threads,
                                          chunk_filesize=mcfg.chunk_filesize,
                                          build_empty_files=mcfg.build_empty_files)
                log.debug("running %s", " ".join(argv))
                sealer = FolderSealer(outdir, staging.path, compression=job.compression, level=job.level,
                                      recipients=job.recipients, suffix=suffix,
                                      max_unsealed=mcfg.max_unsealed_mb << 20,
                                      hold_until_end=frozenset({mydumper.METADATA}))
                tables_seen: set[str] = set()
                table_names = {t["name"] for t in inventory.tables}

                def on_sealed(plain_name: str) -> None:
                    if (table := mydumper.table_of(plain_name, name)) in table_names:
                        tables_seen.add(table)
                    job.progress.advanced(name, sealer.plain_bytes, len(tables_seen))
                sealer.on_sealed = on_sealed
                sealer.on_child_exit = into.on_tool_exit
                # umask 077: the plaintext files are the operator's data, readable by us alone.
                with spawn(argv, stdout=subprocess.DEVNULL, umask=0o077) as child, \
                        dump_deadline(child, job, program) as deadline:
                    try:
                        sealed = sealer.run(child, stop=lambda: deadline.expired)
                    except OSError as exc:
                        raise store.disk_error(exc, staging.path) from None
                    status = child.wait()
            check_exit(program, child, status, deadline)
            stderr = child.stderr_text()
            if fatal := mydumper.fatal_lines(stderr):
                raise BackupFailed(f"{program} reported errors, so the dump is incomplete: {fatal[0][:300]}")
            by_name = {f.plain_name: f for f in sealed}
            meta = by_name.get(mydumper.METADATA)
            metadata_text = meta.result.head.decode("utf-8", errors="replace") if meta else ""
            if not mydumper.is_complete(metadata_text):
                raise BackupFailed(f"{program} did not record the end of the dump; the dump is incomplete")
            if missing := sorted(mydumper.expected_schema_files(name, inventory) - set(by_name)):
                raise BackupFailed(f"{program} wrote no {missing[0]}; the dump is incomplete")
            # Recorded in the inventory, so verify can tell a last chunk removed with its file entry.
            written = mydumper.data_files_per_table(by_name, name)
            for table in inventory.tables:
                table["data_files"] = written.get(table["name"], 0)
            if sealer.paused_seconds:
                log.info("%s: %s was paused %.1fs so that unsealed plaintext stayed under %d MiB", name, program,
                         sealer.paused_seconds, mcfg.max_unsealed_mb)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return Dumped(
            files=[file_entry(f.name, "mydumper", f.result, plain_name=f.plain_name) for f in sealed],
            engine={"name": self.name, "program": program, "version": ".".join(map(str, mydumper.version(tool))),
                    "options": options_of(argv, ("--defaults-file", "--outputdir"))},
            binlog=mydumper.binlog_coordinates(metadata_text) if job.server.can_read_binlog_position else None,
            warnings=[line.strip() for line in stderr.splitlines()
                      if line.strip() and "binlog coordinates will not be accurate" not in line],
        )

    def check_files(self, folder: Path, manifest: Manifest) -> list[str]:
        """A file removed together with its manifest entry passes every hash: the manifest's own
        inventory of the database still lists what it held."""
        checks = manifest.content_checks
        exact = (checks.tables if checks is not None and checks.method else None) or {}
        rows = {}
        for table in manifest.objects.tables:
            counted = exact.get(table.get("name"))
            counted = counted.get("rows") if isinstance(counted, dict) else None
            rows[table.get("name")] = counted if isinstance(counted, int) else (table.get("rows_estimate") or 0)
        plain_names = {entry.unsealed_name for entry in manifest.files}
        return mydumper.inventory_gaps(manifest.database, manifest.objects.as_dict(), plain_names, rows)

    def load_tool(self) -> str:
        if not self.dcfg.mydumper.myloader.enabled:
            raise RestoreFailed("this backup was made by mydumper and restoring it needs myloader, but "
                                "database.mydumper.myloader.enabled is false")
        try:
            return myloader_tool(self.dcfg)
        except ToolMissing as exc:
            raise RestoreFailed(f"this backup was made by mydumper and restoring it needs myloader: {exc}") from None

    def load(self, manifest: Manifest, folder: Path, plain_dir: Path | None, endpoint, target: str, *,
             identities, plain_bytes: int, configured_login: bool = True, tables: list[str] | None = None,
             progress: Task | None = None) -> int:
        if plain_dir is None:
            raise RestoreFailed(f"{folder}: the backup changed while it was being restored")
        if tables is not None:
            # myloader loads every file of its folder: the chosen ones alone must be there.
            wanted = self.files_for(manifest, tables)
            present = {p.name for p in plain_dir.iterdir()}
            if missing := sorted(wanted - present - {mydumper.METADATA}):
                raise RestoreFailed(f"{plain_dir}: {missing[0]} was not unsealed for the load")
            for name in present - wanted:
                (plain_dir / name).unlink()
            plain_bytes = sum(e.plain_size for e in manifest.files if e.unsealed_name in wanted)
        with task(progress).stage("loading", plain_bytes) as meter:
            self.load_folder(plain_dir, manifest.database, endpoint, target, configured_login=configured_login,
                             meter=meter if progress is not None else None)
            meter.set(plain_bytes)  # what myloader read is an estimate; once it is done, all of it is loaded
        return plain_bytes

    def files_for(self, manifest: Manifest, tables: list[str]) -> set[str]:
        """The files of these tables and views (schema, data chunks, triggers; a view's stand-in
        and definition) and the metadata, which myloader reads first."""
        chosen = set(tables)
        return {entry.unsealed_name for entry in manifest.files
                if entry.unsealed_name == mydumper.METADATA
                or mydumper.table_of(entry.unsealed_name, manifest.database) in chosen}

    def load_folder(self, plain_dir: Path, source: str, endpoint, target: str, *,
                    configured_login: bool = True, meter: Meter | None = None) -> None:
        """myloader: the mydumper folder `plain_dir`, a dump of database `source`, into `target`.
        `meter` is set from the bytes myloader has read (its files, nearly all of it)."""
        binary = self.load_tool()
        mcfg = self.dcfg.mydumper.myloader
        # A sandbox is not the server database.mydumper.myloader.defaults_file logs into.
        login = contextlib.nullcontext(mcfg.defaults_file) if mcfg.defaults_file and configured_login \
            else private_defaults_file(endpoint)
        with login as defaults:
            argv = mydumper.load_argv(binary, defaults, plain_dir, source=source, target=target,
                                      threads=mcfg.threads)
            with spawn(argv, stdout=subprocess.DEVNULL) as child, \
                    (polling(meter, lambda: bytes_read(child.pid)) if meter else contextlib.nullcontext()):
                status = child.wait()
        program = Path(binary).name
        if status != 0:
            raise RestoreFailed(f"{program} failed to load the backup (exit {status}): {child.error_line()}")
        if fatal := mydumper.fatal_lines(child.stderr_text()):
            raise RestoreFailed(f"{program} reported errors; the target database {target!r} may be incomplete: "
                                f"{fatal[0][:300]}")

    def load_legacy(self, old, endpoint, target: str, private_folder) -> int:
        folder = old.path if old.form == legacy.FOLDER else legacy.extract_folder(old, private_folder())
        metadata = folder / mydumper.METADATA
        if not metadata.is_file() or not mydumper.is_complete(metadata.read_text(encoding="utf-8", errors="replace")):
            raise RestoreFailed(f"{old.path}: mydumper's metadata does not record the end of the dump, so it is "
                                "incomplete")
        self.load_folder(folder, old.database, endpoint, target)
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
