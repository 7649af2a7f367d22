"""The physical engine: mariabackup copies the whole instance's files as one mbstream, sealed as
it streams (one stored file, `_instance.mbstream.zst.age`); a restore unpacks it with mbstream
into a private folder, prepares it (applies the redo log) and moves it into a new, empty data
directory. It is a backup of the instance, not of a database: backup.databases does not narrow
it, and it is filed under the pseudo-database `_instance` (mariabackup.INSTANCE).

With backup.physical.incremental, a backup between two full ones is an increment: only the pages
changed since its parent's `to_lsn` (actions/increments.py picks the parent; repository/chains.py
follows the links). A chain restores by preparing the full backup and applying each increment
in order into the full's folder.

Nothing of the data directory touches the disk in plain text while backing up, except the redo
log mariabackup spools into its --tmpdir (a 0700 folder of ours, removed however the run ends,
and by the next run when this one is killed outright: store.Staging.scratch)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from tenangdb.errors import BackupFailed, RestoreFailed, ToolMissing, VerifyFailed
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql import mariabackup
from tenangdb.mysql.connection import private_defaults_file
from tenangdb.mysql.engines.base import (BackupJob, DumpInput, Dumped, Engine, check_exit, dump_deadline, file_entry,
                                         options_of, pipe_writer, seal_stdout)
from tenangdb.mysql.tools import tool_version
from tenangdb.repository.manifest import Manifest
from tenangdb.runner import spawn
from tenangdb.stream.codec import SUFFIX

log = logging.getLogger("tenangdb.backup")


class Physical(Engine):
    label = "physical"  # as the log names it
    name = mariabackup.ENGINE
    whole_instance = True
    loads_from_folder = True
    loads_by_client = False
    checks_during_dump = False

    @property
    def dump_tool(self) -> str:
        return self.tool(mariabackup.backup_tool)

    def check_chosen(self) -> None:
        self.check_backup_tools()

    def check_backup_tools(self) -> None:
        self.dump_tool  # noqa: B018 - resolving it is the check

    def tools_seen(self) -> list[str]:
        return [f"{self.dump_tool} {tool_version(self.dump_tool)} (the physical engine: the whole instance)"]

    @classmethod
    def dump_needs(cls, flavour: str, version: tuple[int, ...]) -> list:
        from tenangdb.mysql.grants import Need
        needs = [Need("RELOAD", "global", "mariabackup's BACKUP STAGE and FLUSH TABLES"),
                 Need("PROCESS", "global", "mariabackup reads the InnoDB status and the server's variables"),
                 Need("LOCK TABLES", "global", "mariabackup locks the non-InnoDB tables while it copies them")]
        if flavour == "mariadb" and version >= (10, 5):
            needs.append(Need("BINLOG MONITOR", "global", "mariabackup records the binary log position of the "
                              "backup point"))
        else:
            needs.append(Need("REPLICATION CLIENT", "global", "mariabackup records the binary log position"))
        # information_schema shows an account only the objects it holds a privilege on.
        needs.append(Need("SELECT", "global", "list every database's objects in the manifest, for restores and "
                          "test restores to find again", required=False))
        return needs

    def instance_objects(self, conn) -> dict:
        """Every database of the instance with its objects (the inventory's shape), recorded in
        the manifest: what a restore or a test restore must find again."""
        return {name: inv_mod.inventory(conn, name).as_manifest()
                for name in inv_mod.all_databases(conn, include_mysql=True)}

    def dump(self, job: BackupJob, into: DumpInput, *, since_lsn: int | None = None) -> Dumped:
        """A full backup, or with `since_lsn` (the parent's to_lsn) an increment."""
        tool, staging = self.dump_tool, into.staging
        program = Path(tool).name
        file_name = f"{mariabackup.INSTANCE}.mbstream{SUFFIX[job.compression]}" + (".age" if job.keys else "")
        scratch = staging.scratch()
        lsndir, tmpdir = scratch / "lsn", scratch / "tmp"
        try:
            for folder in (lsndir, tmpdir):
                os.mkdir(folder, 0o700)
            with private_defaults_file(job.endpoint) as defaults:
                argv = mariabackup.backup_argv(tool, defaults, lsndir, tmpdir, since_lsn)
                log.debug("running %s", " ".join(argv))
                # umask 077: what mariabackup writes beside the stream is the operator's data.
                with spawn(argv, umask=0o077) as child, \
                        dump_deadline(child, job, program) as deadline:
                    sealed = seal_stdout(child, job, staging.path / file_name)
                    status = child.wait()
            check_exit(program, child, status, deadline)
            stderr = child.stderr_text()
            if not mariabackup.is_complete(stderr):
                raise BackupFailed(f"{program} did not report {mariabackup.COMPLETED!r}; the backup is incomplete: "
                                   f"{child.error_line()}")
            checkpoints = _read(lsndir / mariabackup.CHECKPOINTS, program)
            info = _read(lsndir / mariabackup.INFO, program)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        into.on_tool_exit()
        lsn = mariabackup.lsn_range(checkpoints)
        wanted = mariabackup.FULL if since_lsn is None else mariabackup.INCREMENTAL
        if lsn.get("backup_type") != wanted or "to_lsn" not in lsn:
            raise BackupFailed(f"{program} wrote no usable {mariabackup.CHECKPOINTS}; the backup is incomplete")
        if since_lsn is not None and lsn.get("from_lsn") != since_lsn:
            # The chain's continuity is what a restore relies on: never commit a gap.
            raise BackupFailed(f"{program} made an increment from LSN {lsn.get('from_lsn')}, not from its "
                               f"parent's {since_lsn}")
        return Dumped(
            files=[file_entry(file_name, "mbstream", sealed)],
            engine={"name": self.name, "label": self.label, "program": program, "version": tool_version(tool),
                    "options": options_of(argv, ("--defaults", "--extra-lsndir", "--target-dir", "--tmpdir")),
                    "lsn": lsn},
            binlog=mariabackup.binlog_coordinates(info),
            warnings=[],
        )

    # --- verify and load ------------------------------------------------------------------
    def load_tool(self) -> str:
        try:
            self.tool(mariabackup.mbstream_tool)
            return self.dump_tool
        except ToolMissing as exc:
            raise RestoreFailed(f"this backup was made by mariabackup and restoring it needs mariabackup and "
                                f"mbstream: {exc}") from None

    @contextlib.contextmanager
    def unpacker(self, into: Path):
        """mbstream -x into `into` (a private folder); yields the callable that takes the plain
        stream. Leaving the block normally checks mbstream's exit; with an error, kills it."""
        tool = self.tool(mariabackup.mbstream_tool)
        with spawn(mariabackup.extract_argv(tool, into), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                   umask=0o077) as child:
            try:
                yield pipe_writer(child.stdin)
                child.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                status = child.wait()
                raise RestoreFailed(f"mbstream stopped reading the backup (exit {status}): {child.error_line()}") \
                    from None
            status = child.wait()
        if status != 0:
            raise VerifyFailed(f"mbstream could not unpack the backup (exit {status}): {child.error_line()}")

    def prepare(self, folder: Path, use_memory: str, increment: Path | None = None) -> None:
        """Apply the redo log copied with the files, so that they are a consistent data directory;
        with `increment` (an unpacked increment), apply it to the full backup prepared in `folder`."""
        what = f"apply the increment {increment.name}" if increment is not None else "prepare the backup"
        self._run(mariabackup.prepare_argv(self.load_tool(), folder, use_memory, increment), what, VerifyFailed)

    def move_back(self, folder: Path, datadir: Path) -> None:
        self._run(mariabackup.move_back_argv(self.load_tool(), folder, datadir), f"move the files into {datadir}",
                  RestoreFailed)

    def _run(self, argv: list[str], what: str, error: type) -> None:
        log.debug("running %s", " ".join(argv))
        with spawn(argv, stdout=subprocess.DEVNULL, umask=0o077) as child:
            status = child.wait()
        stderr = child.stderr_text()
        if status != 0 or not mariabackup.is_complete(stderr):
            log.debug("mariabackup's output:\n%s", "\n".join(stderr.splitlines()[-40:]))
            why = mariabackup.first_error(stderr) or child.error_line()
            raise error(f"mariabackup could not {what} (exit {status}): {why}")

    def load(self, manifest: Manifest, folder: Path, plain_dir: Path | None, endpoint, target: str, *,
             identities, plain_bytes: int, configured_login: bool = True, tables: list[str] | None = None) -> int:
        raise RestoreFailed("a physical backup is of the whole instance and restores into a new data directory: "
                            "restore it with --datadir DIR")


def _read(path: Path, program: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise BackupFailed(f"{program} did not write {path.name}; the backup is incomplete") from None
