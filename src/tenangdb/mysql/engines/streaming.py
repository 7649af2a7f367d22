"""The streaming engine: mariadb-dump (or mysqldump) into one sealed SQL file; the mariadb
client loads it back. It carries everything the server can print, and it is the one whose
stream exact values are put back into (mysql/exact.py)."""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from pathlib import Path

from tenangdb.errors import BackupFailed, RestoreFailed, ToolMissing
from tenangdb.mysql import mysqldump, sections
from tenangdb.mysql.alignment import BLOCK_COMMIT, FTWRL, streaming_tool_opened
from tenangdb.mysql.connection import client_options
from tenangdb.mysql.engines.base import (BackupJob, DumpInput, Dumped, Engine, check_exit, dump_deadline, file_entry,
                                         options_of, pipe_writer, seal_stdout)
from tenangdb.mysql.tools import client_tool, dump_tool, tool_version
from tenangdb.progress import Task, task
from tenangdb.repository import legacy
from tenangdb.repository.manifest import FileEntry, Manifest
from tenangdb.repository.naming import dump_file_name
from tenangdb.runner import PIPE_SIZE, spawn
from tenangdb.stream.codec import SUFFIX
from tenangdb.stream.pipeline import unseal

log = logging.getLogger("tenangdb.backup")


class Streaming(Engine):
    label = "streaming"  # as the log names it
    name = mysqldump.ENGINE
    rewrites_values = True
    legacy_form = legacy.SQL
    loads_tables = True

    @property
    def dump_tool(self) -> str:
        return self.tool(dump_tool)

    def check_backup_tools(self) -> None:
        self.dump_tool  # noqa: B018 - resolving it is the check

    def check_fallback_tools(self) -> str | None:
        """As a fallback: why the tool is missing (None: it is there). A path the operator set
        and got wrong is worth stopping for at once."""
        try:
            self.check_backup_tools()
        except ToolMissing as exc:
            if self.dcfg.mysqldump_path:
                raise
            return str(exc)
        return None

    def tools_seen(self) -> list[str]:
        return [f"{self.dump_tool} {tool_version(self.dump_tool)}"]

    def float_loss_reason(self) -> str:
        return "the dump prints FLOAT with 6 significant digits, and no table key lets the exact values be put back"

    def alignment_mode(self, server) -> str:
        release = tuple(int(part) for part in re.findall(r"\d+", server.version)[:3])
        # BACKUP STAGE blocks commits only (no table flush); MariaDB 10.4.1 and later.
        return BLOCK_COMMIT if server.flavour == "mariadb" and release >= (10, 4, 1) else FTWRL

    def tool_opened(self, database: str):
        return streaming_tool_opened(database)

    @classmethod
    def dump_needs(cls, flavour: str, version: tuple[int, ...]) -> list:
        from tenangdb.mysql.grants import Need
        # Not needed to dump; without it the backup goes on, unproven (mysql/alignment.py).
        return [Need("RELOAD", "global", "hold commits for a few milliseconds while the dump and the content "
                     "checks open their snapshots (BACKUP STAGE BLOCK_COMMIT): the proof that a test restore's "
                     "rows and checksums match the dump", required=False)]

    def dump(self, job: BackupJob, into: DumpInput) -> Dumped:
        tool = self.dump_tool
        name = job.database
        file_name = dump_file_name(name, SUFFIX[job.compression], job.keys is not None)
        binlog = job.server.can_read_binlog_position
        program = Path(tool).name
        checked, staging = into.checked, into.staging
        with client_options(job.endpoint) as (login, fds):
            argv = mysqldump.dump_argv(tool, login, name, binlog=binlog, flavour=job.server.flavour,
                                       dump_history=bool(into.inventory.system_versioned) and not checked.skip_history,
                                       events=not checked.skip_events)
            log.debug("running %s", " ".join(argv))
            with spawn(argv, pass_fds=fds, stdout_buffer=PIPE_SIZE) as child, \
                    dump_deadline(child, job, program) as deadline:
                sealed = seal_stdout(child, job, staging.path / file_name, into.rewrite)
                status = child.wait()
        check_exit(program, child, status, deadline)
        if not mysqldump.is_complete(sealed.tail):
            raise BackupFailed(f"{program} output ends without its completion marker; the dump is incomplete")
        into.on_tool_exit()
        return Dumped(
            files=[file_entry(file_name, "sql", sealed)],
            engine={"name": self.name, "program": program, "version": tool_version(tool),
                    "options": options_of(argv, ("--defaults",))},
            binlog=mysqldump.binlog_coordinates(sealed.head + sealed.tail) if binlog else None,  # GTID: near the end
            warnings=[line for line in child.stderr_text().splitlines() if line.strip()],
        )

    def load_tool(self) -> str:
        return client_tool(self.dcfg)

    def loader(self, manifest: Manifest, entry: FileEntry, endpoint, target: str):
        return self.client_load(manifest.database, entry.unsealed_name, endpoint, target)

    @contextlib.contextmanager
    def client_load(self, source: str | None, label: str, endpoint, target: str | None):
        """A mariadb client loading a dump of database `source` into `target`; yields the
        callable that takes the plain dump. `label` names the dump in errors. `target` None:
        SQL that names its databases itself (a whole instance's binlog replay), passed as it is.

        Leaving the block normally ends the input and checks the client's exit status; leaving
        it with an error kills the client.
        """
        client = self.load_tool()
        with client_options(endpoint) as (login, fds):
            argv = mysqldump.restore_argv(client, login, target)
            with spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=fds) as child:
                write = pipe_writer(child.stdin)
                renamer = mysqldump.DatabaseRenamer(source, target, write) if target is not None else None
                try:
                    yield renamer.write if renamer is not None else write
                    if renamer is not None:
                        renamer.close()
                    child.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    status = child.wait()
                    raise RestoreFailed(f"{Path(client).name} stopped reading the dump (exit {status}): "
                                        f"{child.error_line()}") from None
                status = child.wait()
        if status != 0:
            raise RestoreFailed(f"{Path(client).name} failed to load {label} (exit {status}): {child.error_line()}")

    def copy(self, endpoint, database: str, forward, *, flavour: str, history: bool, events: bool,
             wrap=None) -> int:
        """A dump of `database` at `endpoint` streamed into `forward` (a client_load's writer),
        through `wrap` (exact values put back) when given: a logical copy from a server nobody
        else writes to (a restored instance of our own), so no snapshot alignment is needed.
        The plain bytes copied; RestoreFailed when the dump fails or ends incomplete."""
        from tenangdb.stream.pipeline import ReadAhead

        tool = self.dump_tool
        program = Path(tool).name
        total, tail = 0, b""
        with client_options(endpoint) as (login, fds):
            argv = mysqldump.dump_argv(tool, login, database, binlog=False, flavour=flavour, dump_history=history,
                                       events=events)
            log.debug("running %s", " ".join(argv))
            with spawn(argv, pass_fds=fds, stdout_buffer=PIPE_SIZE) as child:
                reader = ReadAhead(child.stdout)
                try:
                    read = wrap(reader.read) if wrap is not None else reader.read
                    while chunk := read(-1):
                        forward(chunk)
                        total += len(chunk)
                        tail = (tail + chunk)[-4096:]
                finally:
                    reader.close()
                status = child.wait()
        if status != 0:
            raise RestoreFailed(f"{program} failed to dump {database!r} (exit {status}): {child.error_line()}")
        if not mysqldump.is_complete(tail):
            raise RestoreFailed(f"the dump of {database!r} ends without {program}'s completion marker: it is "
                                "incomplete")
        return total

    def load(self, manifest: Manifest, folder: Path, plain_dir: Path | None, endpoint, target: str, *,
             identities, plain_bytes: int, configured_login: bool = True, tables: list[str] | None = None,
             progress: Task | None = None) -> int:
        total = 0
        meter = task(progress).stage("loading", plain_bytes)
        for entry in manifest.files:
            path = folder / entry.name
            chosen = None
            try:
                with self.loader(manifest, entry, endpoint, target) as forward:
                    if tables is not None:
                        # Only the chosen objects' sections reach the client, filtered as they stream.
                        chosen = sections.SectionFilter(set(tables), forward)
                        forward = chosen.write
                    result = unseal(path, compression=manifest.compression.format, identities=identities,
                                    forward=forward, hash_stored=False, counted=meter.add if progress else None)
                    if chosen is not None:
                        chosen.close()
            except RestoreFailed as exc:
                if chosen is not None and (where := sections.failed_section(chosen, str(exc))):
                    raise RestoreFailed(f"{exc} ({where})") from None
                raise
            if chosen is not None and chosen.missing:
                raise RestoreFailed(f"{path}: the dump holds no section for {', '.join(map(repr, chosen.missing))}, "
                                    f"which the manifest lists; the target database {target!r} may be incomplete")
            if result.plain.sha256 != entry.plain_sha256:
                raise RestoreFailed(f"{path}: changed while it was being restored; the target database "
                                    f"{target!r} may be incomplete")
            total += result.plain.size
        meter.close()
        return total

    def load_legacy(self, old, endpoint, target: str, private_folder) -> int:
        total, tail = 0, b""
        with legacy.sql_stream(old) as read, self.client_load(old.database, old.path.name, endpoint, target) as forward:
            while chunk := read(legacy.CHUNK):
                forward(chunk)
                total += len(chunk)
                tail = (tail + chunk)[-4096:]
            if not mysqldump.is_complete(tail):
                raise RestoreFailed(f"{old.path}: the dump ends without mysqldump's completion comment, so it is "
                                    "incomplete")
        return total
