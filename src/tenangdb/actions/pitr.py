"""`restore -b DB --to-time T | --to-gtid D-S-N | --to-position FILE:POS`: a base backup, then the
archived binary log replayed up to the stop point.

The stop point is found in the archive itself: for a time, the start of the first GTID event
whose timestamp is T or later (so no `--stop-datetime`, which mariadb-binlog reads in the local
time zone); for a GTID, the start of the transaction after it (inclusive). The base is the
newest complete backup of DB (verified first) whose recorded binlog position is at or before
the stop point; the archived files from its position to the stop must be there without a gap,
and the statements in them must be safe to replay into the target, or nothing is touched.

The replay: each file unsealed into `mariadb-binlog --database=SRC [--rewrite-db=SRC->TARGET]
-`, whose output goes, with the GTID session settings removed (the target assigns its own
GTIDs: replaying into the server that wrote them would otherwise repeat its own GTIDs, which
gtid_strict_mode rejects), into ONE mariadb client for all files (temporary tables and
session state survive from one file to the next). With ROW logging, the --database filter
and the rewrite follow each row event's table (its Table_map), wherever the statement ran;
statements (DDL) are filtered by the database they ran in, so a statement that names
databases explicitly is checked here first (`_check_statements`).

A physical base (backup.engine: mariabackup) is of the whole instance: `restore --datadir DIR
--to-time T` chooses the newest one before the stop, and `restore -b DB --to-time T` takes one
when it is DB's newest base. Its instance is started as a server of our own (actions/instance.py)
and every database's events are replayed into it (`replay_instance`): no filter, no rename, so
no statement needs refusing, and the source's GTIDs are kept. The plan also works out the
source's GTID position at the stop point (per domain its last GTID: the stop file's GTID_LIST,
moved on by each GTID event before the stop), which the replay records as the instance's
gtid_slave_pos.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from contextlib import contextmanager
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from tenangdb.actions import catalog, recover
from tenangdb.actions import restore as restore_action
from tenangdb.actions.binlog import binlog_tool
from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import InvalidInput, RestoreFailed, TenangDBError, VerifyFailed
from tenangdb.mysql import binlogfmt, binlogtool, engines
from tenangdb.mysql.connection import connect, endpoint_from, translated_errors
from tenangdb.mysql import inventory as inv_mod
from tenangdb.mysql.mariabackup import INSTANCE
from tenangdb.mysql.sandbox import LOAD_GRANTS
from tenangdb.mysql.tools import client_tool
from tenangdb.repository import binlogs as store
from tenangdb.repository import manifest as manifest_mod
from tenangdb.runner import spawn
from tenangdb.stream.crypto import load_identities
from tenangdb.stream.pipeline import unseal

log = logging.getLogger("tenangdb.pitr")

# mariadb-binlog's GTID session settings, one line each: left out so that the target assigns its
# own GTIDs (and server_id, which needs SUPER, is not set either).
_GTID_LINES = (b"/*M!100001 SET @@session.gtid_domain_id=", b"/*M!100001 SET @@session.server_id=",
               b"/*M!100001 SET @@session.gtid_seq_no=")


@dataclass
class Stop:
    file: str
    position: int | None  # None: the whole file
    what: str  # as the operator asked, for messages


@dataclass
class Step:
    record: store.Record
    start: int | None  # --start-position (the base's position, first file only)
    stop: int | None  # --stop-position (last file only)


@dataclass
class Plan:
    database: str  # INSTANCE with `datadir`
    target: str | None  # None with `datadir`
    base: catalog.Entry
    base_file: str
    base_position: int
    steps: list[Step]
    stop: Stop
    transactions: int = 0
    replay_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    archive: Path | None = None  # the archive read (a downloaded mirror with --from-remote)
    # restore --datadir: where the replayed instance goes.
    datadir: Path | None = None
    # The source's GTID position at the stop point (per domain its last GTID); for a physical base.
    gtid_position: str | None = None
    # A physical base: the disk its whole instance takes while it is restored (bytes).
    space_needed: int = 0
    replay_seconds: float = 0.0

    @property
    def physical(self) -> bool:
        """The base is a physical backup: the whole instance is restored and replayed."""
        return self.base.database == INSTANCE

    def lines(self) -> list[str]:
        from tenangdb.fileio import human_size

        kind = "; physical: the whole instance" if self.physical else ""
        out = [f"base backup: {self.base.name} ({self.base.location}{kind}; binlog {self.base_file}:"
               f"{self.base_position})",
               f"stop point:  {self.stop.what} -> {self.stop.file}:{self.stop.position or 'end'} (not included)",
               f"binlog files ({len(self.steps)}):"]
        for step in self.steps:
            out.append(f"  {step.record.name} from {step.start or 4} to {step.stop or step.record.end_position}")
        size = f"{self.transactions} transactions, about {self.replay_bytes} bytes of binlog"
        if self.datadir is not None:
            out.append(f"replay: {size}, of every database, into a server of our own on the restored instance, "
                       f"which then goes into the data directory {self.datadir}")
        elif self.physical:
            out.append(f"replay: {size}, of every database, into a server of our own on the restored instance; "
                       f"then database {self.database!r} is copied into {self.target!r} on the configured server")
        else:
            out.append(f"replay: {size}, into {self.target!r}"
                       + (f" (renamed from {self.database!r})" if self.target != self.database else ""))
        if self.physical:
            out.append(f"disk: about {human_size(self.space_needed)} for the whole instance while it is restored"
                       if self.space_needed else "disk: the whole instance while it is restored (known once the "
                       "remote base and its chain are downloaded, and checked then)")
            out.append(f"GTID position at the stop point: {self.gtid_position or 'none'}"
                       + (" (recorded as the restored instance's gtid_slave_pos)" if self.gtid_position else ""))
        return out


def parse_position(text: str) -> tuple[str, int]:
    name, _, pos = text.rpartition(":")
    if not name or not pos.isdigit():
        raise InvalidInput(f"{text!r}: not a binlog position (expected FILE:POS, e.g. binlog.000042:1234)")
    store.sequence(name)
    return name, int(pos)


def _identities(loaded: LoadedConfig, records: list[store.Record]):
    if not any(r.encryption for r in records):
        return None
    identities = load_identities(loaded.settings.backup.encryption)
    if not identities:
        raise VerifyFailed("the binlog archive is encrypted and no age identity is configured "
                           "(set backup.encryption.key_file, backup.encryption.key or TENANGDB_ENCRYPTION_KEY)")
    return identities


def _events(directory: Path, record: store.Record, identities, on_event, plain=None) -> None:
    """Unseal one archived file, checking its hashes, and hand its events to `on_event` (and,
    with `plain`, its bytes as well)."""
    parser = binlogfmt.Parser(on_event)

    def forward(data: bytes) -> None:
        parser.feed(data)
        if plain is not None:
            plain(data)
    result = unseal(directory / record.stored_name, compression=record.compression, identities=identities,
                    forward=forward)
    parser.close()
    if result.plain.sha256 != record.plain_sha256 or result.stored.sha256 != record.stored_sha256:
        raise VerifyFailed(f"{directory / record.stored_name}: does not match its record's SHA-256 (damaged)")


@dataclass
class ArchiveCheck:
    """What `verify --binlog` found: damage (exit 7), known gaps and notes (reported only)."""

    files: int = 0
    first: str | None = None
    last: str | None = None
    damage: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify_archive(loaded: LoadedConfig) -> ArchiveCheck:
    """Every archived file unsealed (stored and plain SHA-256, decryption, whole events) and
    compared with its record, then the chain: consecutive numbers (a hole the archiver did not
    record as a gap is damage), each file closed by a ROTATE naming the next (or a STOP: the
    server restarted), and each file's starting GTID state holding the previous file's last GTID."""
    directory = store.archive_directory(loaded.settings)
    check = ArchiveCheck()
    try:
        records = store.records(directory)
        known_gaps = {name for gap in store.gaps(directory) for name in gap.missing}
    except store.ArchiveError as exc:
        check.damage.append(str(exc))
        return check
    if not records:
        check.notes.append(f"the binlog archive {directory} holds no file yet")
        return check
    identities = _identities(loaded, records)
    check.files, check.first, check.last = len(records), records[0].name, records[-1].name
    seen: dict[str, binlogfmt.Summary] = {}
    for record in records:
        problem = _check_file(directory, record, identities, seen)
        if problem:
            check.damage.append(f"{record.name}: {problem}")
    for leftover in store.uncommitted(directory, {r.name for r in records}):
        check.notes.append(f"{leftover.name} has no record (an interrupted archiving; the next cycle removes it)")
    for before, after in zip(records, records[1:]):
        _check_link(before, after, seen.get(before.name), known_gaps, check)
    return check


def _check_file(directory: Path, record: store.Record, identities, seen: dict) -> str | None:
    path = directory / record.stored_name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"its stored file {record.stored_name} is missing"
    if size != record.stored_size:
        return f"{record.stored_name} is {size} bytes, its record says {record.stored_size} (damaged)"
    try:
        parser = binlogfmt.Parser()
        result = unseal(path, compression=record.compression, identities=identities, forward=parser.feed)
        summary = parser.close()
    except binlogfmt.BinlogFormatError as exc:
        return f"not a whole binary log ({exc})"
    except (TenangDBError, OSError) as exc:
        return f"cannot be unsealed ({exc})"
    if result.stored.sha256 != record.stored_sha256:
        return "the stored file's SHA-256 does not match its record (damaged)"
    if result.plain.sha256 != record.plain_sha256:
        return "the decoded binlog's SHA-256 does not match its record (damaged)"
    facts = {"size": (summary.size, record.size), "end position": (summary.end_position, record.end_position),
             "first GTID": (summary.first_gtid, record.first_gtid), "last GTID": (summary.last_gtid, record.last_gtid),
             "transactions": (summary.transactions, record.transactions)}
    wrong = [f"{what} {got} (record: {want})" for what, (got, want) in facts.items() if got != want]
    if wrong:
        return "its content does not match its record: " + ", ".join(wrong)
    seen[record.name] = summary
    return None


def _check_link(before: store.Record, after: store.Record, summary, known_gaps: set[str], check: ArchiveCheck) -> None:
    width = len(before.name) - len(store.base_name(before.name)) - 1
    between = [store.name_for(store.base_name(before.name), seq, width) for seq in range(before.seq + 1, after.seq)]
    if between:
        unknown = [name for name in between if name not in known_gaps]
        if unknown:
            check.damage.append(f"{', '.join(unknown)} missing between {before.name} and {after.name}, and no gap "
                                "was recorded for them (removed from the archive?)")
        else:
            check.gaps.append(f"{', '.join(between)} (purged from the server before they were archived)")
        return
    if before.closed_by == "rotate" and summary is not None and summary.next_file not in (None, after.name):
        check.damage.append(f"{before.name} rotates to {summary.next_file}, but the next archived file is {after.name}")
    elif before.closed_by is None:
        check.notes.append(f"{before.name} ends without a ROTATE or STOP (the server crashed while it was open); "
                           "its last events may have been lost with it")
    if before.last_gtid and after.gtid_list and before.last_gtid not in after.gtid_list:
        check.damage.append(f"{after.name} starts from GTID state {', '.join(after.gtid_list)}, which does not hold "
                            f"{before.last_gtid}, the last transaction of {before.name}")


def _find_stop(directory: Path, records: list[store.Record], identities, *, to_time: datetime | None,
               to_gtid: str | None, to_position: str | None) -> Stop:
    if to_position is not None:
        name, pos = parse_position(to_position)
        if name not in {r.name for r in records}:
            raise InvalidInput(f"{name} is not in the binlog archive {directory}")
        return Stop(name, pos, f"position {to_position}")
    if to_time is not None:
        when = to_time.timestamp()
        shown = to_time.strftime("%Y-%m-%d %H:%M:%S %Z")
        for record in records:
            if record.last_time is not None and record.last_time >= when:
                found: list[int] = []
                _events(directory, record, identities,
                        lambda e: found.append(e.position) if e.gtid and not found and e.timestamp >= when else None)
                return Stop(record.name, found[0] if found else None, f"time {shown}")
        last = records[-1].last_time if records else None
        reach = datetime.fromtimestamp(last).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if last else "nothing"
        raise InvalidInput(f"the binlog archive reaches only to {reach}, before {shown}; run `tenangdb binlog --once` "
                           "to archive the server's newest transactions first")
    assert to_gtid is not None
    parts = to_gtid.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"{to_gtid!r}: not a MariaDB GTID (domain-server-sequence, e.g. 0-1-42)")
    for record in records:
        if not record.transactions or not _may_hold(record, parts):
            continue
        seen: dict = {}

        def look(event, seen=seen) -> None:
            if not event.gtid:
                return
            if "hit" in seen and "stop" not in seen:
                seen["stop"] = event.position
            if event.gtid == to_gtid:
                seen["hit"] = event.position
        _events(directory, record, identities, look)
        if "hit" in seen:
            return Stop(record.name, seen.get("stop"), f"GTID {to_gtid} (included)")
    raise InvalidInput(f"GTID {to_gtid} is not in the binlog archive {directory}")


def _may_hold(record: store.Record, parts: list[str]) -> bool:
    """Whether the file's GTID range can hold the GTID (same domain and server, sequence within)."""
    try:
        first = [int(x) for x in (record.first_gtid or "").split("-")]
        last = [int(x) for x in (record.last_gtid or "").split("-")]
    except ValueError:
        return True
    domain, server, seq = (int(p) for p in parts)
    if first[:2] == last[:2] == [domain, server]:
        return first[2] <= seq <= last[2]
    return True  # several domains or servers in one file: look inside


def _manifest_of(entry: catalog.Entry, rc=None) -> manifest_mod.Manifest | None:
    """The entry's manifest (with `rc`, read from the remote); None when it cannot be read."""
    try:
        if rc is not None:
            import json

            from tenangdb.remote.rclone import join
            data = rc.cat(join(entry.key, manifest_mod.MANIFEST))
            return manifest_mod.parse(json.loads(data), where=entry.key)
        return manifest_mod.load(Path(entry.key))
    except (TenangDBError, ValueError):
        return None


def instance_databases(manifest: manifest_mod.Manifest) -> dict:
    """The databases a physical backup's manifest lists (`instance.databases`), with their objects."""
    return ((getattr(manifest, "instance", None) or {}).get("databases") or {})


def _base_binlog(entry: catalog.Entry, with_time: bool = False, rc=None):
    """(file, position) of the base's snapshot, with `with_time` also the unix time its backup
    ended; None when the backup recorded none. With `rc`, the entry is remote: its manifest is
    read from there."""
    manifest = _manifest_of(entry, rc)
    if manifest is None:
        return None
    if manifest.binlog is None or manifest.binlog.file is None or manifest.binlog.position is None:
        return None
    if not with_time:
        return manifest.binlog.file, manifest.binlog.position
    try:
        ended = datetime.fromisoformat(manifest.finished_at)
    except ValueError:
        return None
    ended = ended if ended.tzinfo else ended.replace(tzinfo=timezone.utc)
    return manifest.binlog.file, manifest.binlog.position, ended.timestamp()


@dataclass
class Window:
    """The recoverable window of the archived server: from each database's start to `end`."""

    server: str | None
    end: float | None  # the newest archived event
    starts: dict[str, float]
    gaps: int

    def as_json(self) -> dict:
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat() if t is not None else None  # noqa: E731
        return {"server": self.server, "end": iso(self.end), "gaps": self.gaps,
                "databases": {db: {"start": iso(t), "end": iso(self.end)} for db, t in sorted(self.starts.items())}}


def window(loaded: LoadedConfig) -> Window | None:
    """The window from the base backups and the archive; None without an archive. A base
    counts from the end of its backup (its snapshot lies before that, so any time from there
    finds a stop point after its position), and only where every binlog file from its position
    on is kept. The remote is not asked: the archiver works this out every cycle for the metric.

    The local bases are the complete local backups, checked against the local archive. With the
    archive mirrored off-site (binlog.upload), so are the bases whose remote copy is recorded
    proven (the upload records beside the backups, which outlive a local copy cleanup deleted,
    carry the base's position), against the mirror, which a restore --from-remote replays: it
    holds the local archive's files (a cycle behind at most) and those before them, since a
    local file is deleted only once mirrored and the mirror keeps what its kept bases need
    (retention rule 7), short of a recorded gap. With cleanup.pitr_days, a remote base older
    than the newest one at or before the window's start counts no more: rule 7 lets the
    mirror's files for it go."""
    from tenangdb.actions import binlog_offsite
    from tenangdb.actions.upload import PROVING_METHODS
    from tenangdb.repository import records as records_mod

    directory = store.archive_directory(loaded.settings)
    identity = store.identity(directory)
    if identity is None:
        return None
    records = store.records(directory)
    gaps = store.gaps(directory)
    bases = []
    for entries in recover.load_catalogue(loaded, remote=False).by_database.values():
        for entry in entries:
            if not entry.complete:
                continue
            found = _base_binlog(entry, with_time=True)
            if found is not None:
                bases.append((entry.database, found[2], found[0]))
    starts = store.window_starts(records, bases)
    settings = loaded.settings
    if records and binlog_offsite.wanted(settings):
        offsite: dict[str, list[tuple[float, int]]] = {}
        for path in records_mod.upload_records(Path(settings.backup.directory)):
            record = records_mod.read(path, records_mod.UploadRecord)
            if (record is None or record.destination != settings.upload.destination or not record.ok
                    or record.expired or record.verify not in PROVING_METHODS
                    or not isinstance(record.pitr_base, dict)):
                continue
            base = record.pitr_base
            try:
                ended = datetime.fromisoformat(base["finished_at"])
                ended = ended if ended.tzinfo else ended.replace(tzinfo=timezone.utc)
                offsite.setdefault(str(base["database"]), []).append((ended.timestamp(), store.sequence(base["file"])))
            except (KeyError, TypeError, ValueError, store.ArchiveError):
                log.warning("ignoring the unreadable base position in %s", path)
        # No replay crosses a gap: a base before the file the archive resumed at after one counts no more.
        try:
            barrier = max((store.sequence(gap.resumed_at) for gap in gaps), default=0)
        except store.ArchiveError:
            barrier = records[-1].seq + 1
        have, first, last = {r.seq for r in records}, records[0].seq, records[-1].seq
        since = time.time() - settings.cleanup.pitr_days * 86400 if settings.cleanup.pitr_days else None
        for database, found in offsite.items():
            usable = [(when, seq) for when, seq in found if barrier <= seq <= last
                      and all(n in have for n in range(max(seq, first), last + 1))]
            before = [when for when, _ in usable if since is not None and when <= since]
            usable = [(when, seq) for when, seq in usable if not before or when >= max(before)]
            if usable:
                starts[database] = min([starts.get(database, float("inf")), *(when for when, _ in usable)])
    return Window(server=store.server_label(identity), end=records[-1].last_time if records else None,
                  starts=starts, gaps=len(gaps))


@contextmanager
def fetched_archive(loaded: LoadedConfig) -> Iterator[Path]:
    """The remote binlog mirror ({destination}/.binlog) downloaded into a private folder for the
    block's length: a fresh machine restores to a point in time from the remote alone. Each
    file is checked against its record's SHA-256 as the plan and the replay read it."""
    import shutil
    import tempfile

    from tenangdb import orphans
    from tenangdb.actions import binlog_offsite
    from tenangdb.errors import ConfigError, FetchFailed, UploadFailed
    from tenangdb.remote.rclone import Rclone

    if not loaded.settings.upload.destination:
        raise ConfigError("--from-remote: upload.destination is not set")
    rc = Rclone(loaded.settings.upload)
    scratch = Path(tempfile.mkdtemp(prefix=f"{orphans.REMOTE_PREFIX}{orphans.token()}-"))
    try:
        try:
            rc.fetch_matching(scratch, [f"/{binlog_offsite.REMOTE_FOLDER}/**"], "download of the binlog mirror")
        except UploadFailed as exc:
            raise FetchFailed(f"cannot download the binlog mirror: {exc}") from None
        folder = scratch / binlog_offsite.REMOTE_FOLDER
        folder.mkdir(exist_ok=True)
        yield folder
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def bases_of(place: recover.Catalogue, database: str) -> list[catalog.Entry]:
    """The backups that can restore `database`, newest first: its own, and the physical backups
    whose instance holds it (a remote one's manifest read from the remote, one rclone call per
    physical backup). The instance itself (restore --datadir): its physical backups."""
    if database == INSTANCE:
        return place.of(INSTANCE)
    own = place.of(database)
    holding = []
    for entry in place.of(INSTANCE):
        manifest = _manifest_of(entry, place.rc) if entry.complete else None
        if manifest is not None and database in instance_databases(manifest):
            holding.append(entry)
    return sorted(own + holding, key=lambda e: (e.time, e.name), reverse=True)


def plan(loaded: LoadedConfig, database: str, target: str | None, *, to_time: datetime | None = None,
         to_gtid: str | None = None, to_position: str | None = None, archive: Path | None = None,
         from_remote: bool = False, datadir: Path | None = None) -> Plan:
    """Everything decided and checked before anything is written; raises with the reason.
    `archive`: the archive folder to read (default binlog.directory); `from_remote`: the base
    is chosen among the remote backups (see fetched_archive for the archive). `datadir`: the
    whole instance, from a physical base, into that new data directory (`database` INSTANCE)."""
    directory = archive or store.archive_directory(loaded.settings)
    records = store.records(directory)
    if not records:
        raise InvalidInput(f"the binlog archive {directory} is empty: run `tenangdb binlog` (binlog.enabled) first")
    identities = _identities(loaded, records)
    stop = _find_stop(directory, records, identities, to_time=to_time, to_gtid=to_gtid, to_position=to_position)
    stop_key = (store.sequence(stop.file), stop.position if stop.position is not None else float("inf"))
    place = recover.load_catalogue(loaded, remote=from_remote)
    candidates, blind = [], []
    for entry in recover.preference(bases_of(place, database)):
        coordinates = _base_binlog(entry, rc=place.rc)
        if coordinates is None:
            blind.append(entry.name)
        elif (store.sequence(coordinates[0]), coordinates[1]) <= stop_key:
            candidates.append((entry, coordinates))
    if not candidates:
        what = "physical backup (backup.engine: mariabackup)" if database == INSTANCE else f"backup of {database}"
        raise InvalidInput(f"no complete {place.location} {what} recorded a binary log position at or before the "
                           f"stop point ({stop.what})"
                           + (f"; {', '.join(blind[:3])}{' …' if len(blind) > 3 else ''} recorded none (the binary "
                              "log was off, or its position unreadable, when made)" if blind else "")
                           + "; a base backup needs the binary log on when it is made")
    # Newest first among the verified, then the others (recover.preference's order), by position.
    entry, (base_file, base_position) = candidates[0]
    by_seq = {r.seq: r for r in records}
    first, last = store.sequence(base_file), store.sequence(stop.file)
    missing = [store.name_for(store.base_name(base_file), seq, len(base_file) - len(store.base_name(base_file)) - 1)
               for seq in range(first, last + 1) if seq not in by_seq]
    if missing:
        raise RestoreFailed(f"the binlog archive lacks {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} "
                            f"between the base backup {entry.name} ({base_file}:{base_position}) and the stop point: "
                            "a gap (purged before it was archived); point-in-time restore across it is impossible "
                            "(nothing was changed)")
    steps = [Step(by_seq[seq], base_position if seq == first else None, stop.position if seq == last else None)
             for seq in range(first, last + 1)]
    the_plan = Plan(database=database, target=target, base=entry, base_file=base_file, base_position=base_position,
                    steps=steps, stop=stop, archive=directory, datadir=datadir)
    if the_plan.physical and entry.location == "local":
        from tenangdb.actions import instance
        # A broken chain stops here; a remote one's, once downloaded (restore.run_datadir).
        the_plan.space_needed = instance.space_needed(loaded, Path(entry.key))
    _check_statements(directory, the_plan, identities)
    if the_plan.problems:
        raise RestoreFailed(f"refusing to replay into {target!r}: {the_plan.problems[0]}"
                            + (f" (and {len(the_plan.problems) - 1} more)" if len(the_plan.problems) > 1 else "")
                            + "; nothing was changed")
    return the_plan


def _check_statements(directory: Path, the_plan: Plan, identities) -> None:
    """Read the replay range once: count it, and find statements the filter cannot make safe;
    for a physical base, which replays every database unfiltered, the GTID position instead.

    A statement (QUERY event) is replayed when it ran in the source database; one that names
    another database would write there, one that ran elsewhere but names the source would be
    skipped (lost), and under a new name one that names the source would write into the
    source, which may be the live database beside the target."""
    src, rename = the_plan.database, the_plan.target != the_plan.database
    last = the_plan.steps[-1]
    state = list(last.record.gtid_list)  # the GTID state the stop file starts from
    for step in the_plan.steps:
        low, high = step.start or 0, step.stop if step.stop is not None else float("inf")

        def look(event, step=step, low=low, high=high) -> None:
            if step is last and event.gtid and event.position < high:
                state.append(event.gtid)
            if not low <= event.position < high:
                return
            the_plan.replay_bytes += event.end - event.position
            if event.gtid:
                the_plan.transactions += 1
            if the_plan.physical:
                return
            if event.type != binlogfmt.QUERY or event.query is None or binlogfmt.is_bookkeeping(event.query):
                return
            where = f"{step.record.name}:{event.position}"
            named = binlogfmt.named_databases(event.query)
            statement = " ".join(event.query.split())[:120]
            if event.query_cut:
                named.add("(a statement too long to inspect)")
            if event.db == src:
                others = sorted(n for n in named if n != src)
                if others:
                    the_plan.problems.append(f"the statement at {where} names {', '.join(others)} ({statement})")
                elif rename and src in named:
                    the_plan.problems.append(f"the statement at {where} names {src!r} itself, which a restore "
                                             f"under another name cannot rewrite ({statement}); restore into {src!r} "
                                             "on another server instead")
            elif src in named:
                the_plan.problems.append(f"the statement at {where} changes {src!r} but ran in "
                                         f"{event.db or 'no database'!r}, so the replay would skip it ({statement})")
        _events(directory, step.record, identities, look)
    if the_plan.physical:
        the_plan.gtid_position = gtid_position(state)


def gtid_position(state: list[str]) -> str | None:
    """Per domain its last GTID, as gtid_binlog_pos shows it, from a GTID state in binlog order:
    a GTID_LIST names every (domain, server) pair with each domain's newest last
    (rpl_binlog_state::get_gtid_list), and each later GTID event moves its domain on."""
    last: dict[int, str] = {}
    for gtid in state:
        last[int(gtid.split("-", 1)[0])] = gtid
    return ",".join(last[domain] for domain in sorted(last)) or None


def run(loaded: LoadedConfig, the_plan: Plan, *, confirm, allow_system_schema: bool = False) -> float:
    """Restore the base, then replay; the seconds the replay took. A physical base: the whole
    instance restored and replayed in a server of our own, then the database copied out of it."""
    if the_plan.physical:
        from tenangdb.actions import fetch, instance
        with (contextlib.nullcontext(Path(the_plan.base.key)) if the_plan.base.location == "local"
              else fetch.fetched(loaded, the_plan.base.key)) as folder:
            instance.restore_database(loaded, folder, the_plan.database, the_plan.target, confirm=confirm,
                                      allow_system_schema=allow_system_schema, the_plan=the_plan)
        return the_plan.replay_seconds
    cfg = loaded.settings
    client_tool(cfg.database)  # before the base is restored, not after
    tool = binlog_tool(cfg)
    endpoint = endpoint_from(cfg.database)
    conn = connect(endpoint)
    try:
        with translated_errors(endpoint):
            existed = inv_mod.database_exists(conn, the_plan.target)
    finally:
        conn.close()
    if the_plan.base.location == "local":
        restore_action.run(loaded, Path(the_plan.base.key), the_plan.target, confirm=confirm,
                           allow_system_schema=allow_system_schema)
    else:
        from tenangdb.actions import fetch
        with fetch.fetched(loaded, the_plan.base.key) as folder:  # downloaded, verified, restored, removed
            restore_action.run(loaded, folder, the_plan.target, confirm=confirm,
                               allow_system_schema=allow_system_schema)
    started = time.monotonic()
    try:
        _replay(loaded, the_plan, tool, endpoint)
    except BaseException as exc:
        note = (f"database {the_plan.target!r} existed before and now holds the base backup and part of the replay"
                if existed else None)
        if not existed:
            dropped = restore_action.drop_created_database(endpoint, the_plan.target)
            note = (f"the partly replayed database {the_plan.target!r}, created by this restore, was dropped"
                    if dropped else f"the partly replayed database {the_plan.target!r} could not be dropped")
        if isinstance(exc, (RestoreFailed, VerifyFailed)):
            raise type(exc)(f"{exc}; {note}") from None
        log.error("point-in-time restore stopped: %s", note)
        raise
    seconds = time.monotonic() - started
    log.info("replayed %d binlog files (%d transactions) into %r up to %s in %.1fs", len(the_plan.steps),
             the_plan.transactions, the_plan.target, the_plan.stop.what, seconds)
    return seconds


def _replay(loaded: LoadedConfig, the_plan: Plan, tool: str, endpoint) -> None:
    """All files through one client: the SQL-client engine's loader, fed the decoded binlog (its
    database renamer stays idle: mariadb-binlog already rewrote the names)."""
    directory = the_plan.archive or store.archive_directory(loaded.settings)
    identities = _identities(loaded, [step.record for step in the_plan.steps])
    loader = engines.sql_client(loaded.settings.database)
    with loader.client_load(the_plan.target, "the binlog replay", endpoint, the_plan.target) as forward:
        sink = _GtidFilter(forward)
        for step in the_plan.steps:
            _replay_file(directory, step, the_plan.database, the_plan.target, tool, identities, sink.write)
        sink.close()


def replay_instance(loaded: LoadedConfig, the_plan: Plan, endpoint, then: bytes = b"") -> None:
    """A physical base's replay into a server of our own on its restored instance (started
    without its grant tables, whose accounts are the source's): every database's events, as
    they are, through one client with no default database. The same session first loads the
    grant tables, so that replayed account statements work, and last records the stop point's
    GTID position as gtid_slave_pos, then runs `then`. The source's GTIDs are kept: the
    server's binary log is off, so they name nothing new."""
    tool = binlog_tool(loaded.settings)
    directory = the_plan.archive or store.archive_directory(loaded.settings)
    identities = _identities(loaded, [step.record for step in the_plan.steps])
    loader = engines.sql_client(loaded.settings.database)
    started = time.monotonic()
    with loader.client_load(None, "the binlog replay", endpoint, None) as forward:
        forward(LOAD_GRANTS)
        for step in the_plan.steps:
            _replay_file(directory, step, None, None, tool, identities, forward)
        if the_plan.gtid_position:
            forward(binlogtool.set_slave_position(the_plan.gtid_position))
        if then:
            forward(then)
    the_plan.replay_seconds = time.monotonic() - started
    log.info("replayed %d binlog files (%d transactions) into the restored instance up to %s in %.1fs",
             len(the_plan.steps), the_plan.transactions, the_plan.stop.what, the_plan.replay_seconds)


def _replay_file(directory: Path, step: Step, database: str | None, target: str | None, tool: str, identities,
                 write) -> None:
    argv = binlogtool.decode_argv(tool, database, target, start=step.start, stop=step.stop)
    with spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as decoder:
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                _events(directory, step.record, identities, None, _writer(decoder.stdin))
            except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
                failure.append(exc)
            finally:
                try:
                    decoder.stdin.close()
                except OSError:
                    pass
        feeder = threading.Thread(target=feed, daemon=True, name="binlog-feed")
        feeder.start()
        for chunk in iter(lambda: decoder.stdout.read(1 << 16), b""):
            write(chunk)
        feeder.join()
        status = decoder.wait()
    if failure and not isinstance(failure[0], BrokenPipeError):
        raise failure[0]
    if status != 0:
        raise RestoreFailed(f"{Path(tool).name} failed to decode {step.record.name} (exit {status}): "
                            f"{decoder.error_line()}")


def _writer(stream):
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:  # a raw pipe write may take only part of the buffer
            view = view[stream.write(view):]
    return write


class _GtidFilter:
    """Passes mariadb-binlog's output on, leaving out its GTID session settings (whole lines)."""

    def __init__(self, forward) -> None:
        self._out = forward
        self._carry = b""

    def write(self, data: bytes) -> None:
        data = self._carry + data
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        kept = [line for line in data[:cut].splitlines(keepends=True) if not line.startswith(_GTID_LINES)]
        if kept:
            self._out(b"".join(kept))

    def close(self) -> None:
        if self._carry and not self._carry.startswith(_GTID_LINES):
            self._out(self._carry)
        self._carry = b""
