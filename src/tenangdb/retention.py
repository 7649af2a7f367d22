"""Which backups to keep and which to delete, and why. Pure: no files, no clock, no rclone.

The caller lists what exists (local folders and remote copies, with the time each backup was
taken as its manifest says) and what is known about each; `plan` returns one decision with a
reason for every item. The rules, in order:

1. Folders that are not backups (no valid manifest) are reported and kept. Unfinished staging
   folders (`.name.partial`) are deleted once older than a day, kept before that.
2. Databases outside the selection are kept.
3. Per database and place (local, remote), the newest verified backup and the newest complete
   backup are always kept (complete: with an increment, every ancestor present and complete).
4. A backup younger than the age window (local: max_age_days, remote: remote_retention_days)
   is kept, as is one picked by keep_last / keep_daily / keep_weekly / keep_monthly /
   keep_yearly (the newest backup of each of the N most recent days, weeks, ...).
   With require_verified, the keep_* rules count only verified backups.
   Local copies whose remote copy is verified are deleted when cleanup_uploaded_files is on,
   unless a keep_* rule or rule 3 keeps them.
5. Everything else is deleted — except a local copy whose remote copy is not verified while
   uploads are on and verify_cloud_exists is set: it stays until it is safely off-site.
6. A chain is never broken: an increment (a physical backup with a `parent`) restores only
   with every backup before it, so a kept backup keeps all its ancestors in the same place.
   A chain thus expires as a whole: its members go only once no kept member needs them.

The archived binary log (`plan_binlogs`, one place at a time, after `plan` has decided the
backups) follows the base backups that stay: a restore to a point in time replays from the
binlog file of a kept base's recorded position onward, so
7. a file at or after the binlog file of any kept base the promised window may use is kept:
   with `pitr_days`, the window is the last pitr_days (a base taken at or before its start
   holds binlogs only when a restore to the start itself would use it: the newest such base,
   and the newest verified one, which a restore prefers); without it, every kept base.
   Files before all of those are deleted. The files after the newest base are thus never
   deleted (a restore to now needs them), nor the newest archived file (the archiver resumes
   after it), nor a file not yet in the remote mirror while the mirror is kept up.
   Without a kept base that records a binlog position nothing is deleted: nothing says what
   a restore would need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

LOCAL, REMOTE = "local", "remote"
BACKUP, PARTIAL, FOREIGN, BINLOG = "backup", "partial", "foreign", "binlog"
DAY = 86400.0
UPLOADED_REASON = "its remote copy is verified"


@dataclass(frozen=True)
class Item:
    key: str                 # a path or remote path: unique among the items
    database: str
    location: str            # LOCAL or REMOTE
    rel: str = ""            # {db}/{YYYY-MM}/{name}: the same backup in both places shares it
    kind: str = BACKUP       # BACKUP, PARTIAL or FOREIGN
    time: datetime | None = None   # backups: when it was taken (manifest); partials: last change
    size: int = 0
    complete: bool = True    # every listed file present at its size
    verified: bool = False   # proven whole: a passed verify, or a remote copy checked by hash/read-back
    remote_verified: bool = False  # local backups: the remote copy is verified
    parent: str | None = None  # an increment: the rel of the backup it goes on (same place)
    seq: int | None = None     # BINLOG: the binary log file's number


@dataclass(frozen=True)
class Base:
    """A kept, complete base backup that recorded a binary-log position."""

    database: str
    time: datetime   # from when a restore can use it: the end of the backup (as the window metric counts)
    seq: int         # the number of the binlog file its position is in
    verified: bool = False
    name: str = ""


@dataclass(frozen=True)
class Keep:
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    @property
    def any(self) -> bool:
        return any((self.last, self.daily, self.weekly, self.monthly, self.yearly))


@dataclass(frozen=True)
class Policy:
    local_max_age_days: float | None = 7     # None: local backups never expire by age
    remote_max_age_days: float | None = 30
    local_keep: Keep = field(default_factory=Keep)
    remote_keep: Keep = field(default_factory=Keep)
    cleanup_uploaded: bool = False
    require_remote: bool = False   # a local copy is deleted only once its remote copy is verified
    require_verified: bool = False  # keep_* rules count only verified backups
    databases: frozenset[str] | None = None
    partial_after: float = DAY


@dataclass(frozen=True)
class Decision:
    item: Item
    delete: bool
    reason: str


_PERIODS = (
    ("daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", lambda t: "%d-W%02d" % t.isocalendar()[:2]),
    ("monthly", lambda t: t.strftime("%Y-%m")),
    ("yearly", lambda t: t.strftime("%Y")),
)


def _days(value: float) -> str:
    return f"{value:g} day{'' if value == 1 else 's'}"


def plan(items: Iterable[Item], policy: Policy, now: datetime) -> list[Decision]:
    items = list(items)
    decisions: dict[str, Decision] = {}
    groups: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        if item.kind == FOREIGN:
            decisions[item.key] = Decision(item, False, "not a backup (no valid manifest): left alone")
        elif policy.databases is not None and item.database not in policy.databases:
            decisions[item.key] = Decision(item, False, "database not selected for cleanup")
        elif item.kind == PARTIAL:
            age = (now - item.time).total_seconds() if item.time else 0.0
            if age > policy.partial_after:
                decisions[item.key] = Decision(item, True, "unfinished backup left by a stopped run, "
                                                           "older than a day")
            else:
                decisions[item.key] = Decision(item, False, "unfinished backup less than a day old "
                                                            "(a run may still be writing it)")
        else:
            groups.setdefault((item.database, item.location), []).append(item)
    for (database, location), members in groups.items():
        for decision in _plan_group(database, location, members, policy, now):
            decisions[decision.item.key] = decision
    # A local copy deleted because it is safe off-site must not lose that remote copy in the
    # same cleanup: then it stays local until its own age says otherwise.
    remote_deleted = {d.item.rel for d in decisions.values()
                      if d.delete and d.item.location == REMOTE and d.item.kind == BACKUP and d.item.rel}
    for key, decision in list(decisions.items()):
        item = decision.item
        if (decision.delete and item.location == LOCAL and item.kind == BACKUP and item.rel in remote_deleted
                and decision.reason.startswith(UPLOADED_REASON)):
            decisions[key] = Decision(item, False, "its remote copy expires in this cleanup, so the local "
                                                   "copy stays")
    _keep_ancestors(decisions)  # last: every rule above only ever adds kept backups
    return [decisions[item.key] for item in items]


def _keep_ancestors(decisions: dict[str, Decision]) -> None:
    """Rule 6: every ancestor of a kept backup is kept (in the same place). Each backup is walked
    up from once; a rel listed twice in one place (it should not be) keeps both."""
    by_rel: dict[tuple[str, str], list[str]] = {}
    for key, decision in decisions.items():
        if decision.item.kind == BACKUP and decision.item.rel:
            by_rel.setdefault((decision.item.location, decision.item.rel), []).append(key)
    walked: set[str] = set()
    pending = [key for key, d in decisions.items() if not d.delete and d.item.kind == BACKUP]
    while pending:
        key = pending.pop()
        if key in walked:
            continue
        walked.add(key)
        child = decisions[key].item
        for parent_key in by_rel.get((child.location, child.parent or ""), []):
            parent = decisions[parent_key]
            if parent.delete:
                decisions[parent_key] = Decision(parent.item, False, f"needed by the kept increment "
                                                                     f"{child.rel.rsplit('/', 1)[-1]} (its chain)")
            pending.append(parent_key)


def _restorable(members: list[Item]) -> set[str]:
    """The keys of the complete backups whose every ancestor (by `parent`) is among `members`
    and complete; a chain that loops is not restorable."""
    by_rel: dict[str, list[Item]] = {}
    for item in members:
        by_rel.setdefault(item.rel, []).append(item)
    out = set()
    for item in members:
        current, seen, ok = item, {item.key}, item.complete
        while ok and current.parent:
            parents = [p for p in by_rel.get(current.parent, []) if p.complete]
            ok = bool(parents) and parents[0].key not in seen
            if ok:
                current = parents[0]
                seen.add(current.key)
        if ok:
            out.add(item.key)
    return out


def _newest_first(members: list[Item]) -> list[Item]:
    return sorted(members, key=lambda i: (i.time or datetime.min, i.key), reverse=True)


def _plan_group(database: str, location: str, members: list[Item], policy: Policy,
                now: datetime) -> list[Decision]:
    local = location == LOCAL
    max_age = policy.local_max_age_days if local else policy.remote_max_age_days
    rules = policy.local_keep if local else policy.remote_keep
    ordered = _newest_first(members)
    # An increment with a missing or incomplete ancestor cannot be restored: it is no
    # "newest complete backup" to guard, nor one of the backups the keep_* rules count.
    whole = _restorable(members)
    complete = [i for i in ordered if i.key in whole]
    guarded: dict[str, str] = {}
    verified = [i for i in complete if i.verified]
    if verified:
        guarded[verified[0].key] = f"newest verified backup of {database} ({location})"
    if complete and complete[0].key not in guarded:
        guarded[complete[0].key] = f"newest complete backup of {database} ({location})"

    # With require_verified an unverified backup never fills one of the kept slots: a week
    # of backups nobody restored does not count as a week of backups.
    candidates = verified if policy.require_verified else complete
    which = "verified " if policy.require_verified else ""
    kept_by_rule: dict[str, str] = {}
    for item in candidates[:rules.last]:
        kept_by_rule.setdefault(item.key, f"keep_last {rules.last}{' (verified)' if which else ''}")
    for name, bucket_of in _PERIODS:
        wanted = getattr(rules, name)
        if not wanted:
            continue
        last_bucket, count = None, 0
        for item in candidates:
            bucket = bucket_of(item.time)
            if bucket == last_bucket:
                continue
            last_bucket = bucket
            if count >= wanted:
                break
            count += 1
            kept_by_rule.setdefault(item.key, f"keep_{name} {wanted} (newest {which}of {bucket})")

    out: list[Decision] = []
    for item in ordered:
        age = (now - item.time).total_seconds() if item.time else 0.0
        if item.key in guarded:
            out.append(Decision(item, False, guarded[item.key]))
            continue
        if item.key in kept_by_rule:
            out.append(Decision(item, False, kept_by_rule[item.key]))
            continue
        young = max_age is not None and age < max_age * DAY
        if local and policy.cleanup_uploaded and item.remote_verified and item.complete:
            out.append(Decision(item, True, f"{UPLOADED_REASON} (cleanup_uploaded_files)"))
            continue
        if young:
            out.append(Decision(item, False, f"younger than {_days(max_age)}"))
            continue
        if max_age is None and not rules.any:
            out.append(Decision(item, False, "no retention rule applies"))
            continue
        if local and policy.require_remote and not item.remote_verified:
            out.append(Decision(item, False, "would expire, but its remote copy is not verified "
                                             "(verify_cloud_exists)"))
            continue
        why = f"older than {_days(max_age)}" if max_age is not None else "older than the keep_* rules cover"
        if rules.any:
            why += " and not kept by a keep_* rule"
        if not item.complete:
            why += " (incomplete backup)"
        out.append(Decision(item, True, why))
    return out


def explain_keep(rules: Keep) -> str:
    parts = [f"{name} {getattr(rules, name)}" for name in ("last", "daily", "weekly", "monthly", "yearly")
             if getattr(rules, name)]
    return ", ".join(f"keep_{p}" for p in parts) or "no keep_* rules"




def binlog_bases(decisions: Iterable[Decision], positions: dict[str, tuple[int, datetime]]) -> list[Base]:
    """The bases that hold binlogs: the kept, complete backups in `decisions` whose key has a
    recorded position in `positions` (key -> (binlog file number, end of the backup))."""
    out = []
    for d in decisions:
        item = d.item
        if not d.delete and item.kind == BACKUP and item.complete and item.key in positions:
            seq, when = positions[item.key]
            out.append(Base(item.database, when, seq, item.verified, item.rel.rsplit("/", 1)[-1]))
    return out


def _needed_from(bases: list[Base], pitr_days: float | None, now: datetime) -> tuple[int, str] | None:
    """The lowest file number a restore within the window may start from, and why."""
    start = now.timestamp() - pitr_days * DAY if pitr_days is not None else None
    needed: list[tuple[int, str]] = []
    for database in sorted({b.database for b in bases}):
        mine = sorted((b for b in bases if b.database == database), key=lambda b: (b.time, b.seq))
        before = [b for b in mine if start is not None and b.time.timestamp() <= start]
        # A restore to the window's start uses the newest base before it, or the newest
        # verified one if that is not it (a restore prefers verified bases); every base inside
        # the window is used by some point after it.
        users = [b for b in mine if b not in before]
        if before:
            users.append(before[-1])
            verified = [b for b in before if b.verified]
            if verified:
                users.append(verified[-1])
        for base in users:
            when = base.time.strftime("%Y-%m-%d %H:%M:%S UTC")
            why = (f"the start of the {_days(pitr_days)} window" if base in before
                   else "a kept base backup")
            needed.append((base.seq, f"a restore of {database} from {base.name or 'its base'} ({when}, {why}) "
                                     f"replays from here on"))
    return min(needed) if needed else None


def plan_binlogs(files: Iterable[Item], bases: Iterable[Base], pitr_days: float | None, now: datetime,
                 not_offsite: frozenset[str] = frozenset()) -> list[Decision]:
    """Rule 7 for the archived binlog files of one place (items of kind BINLOG with `seq`),
    given the kept bases of that place; `not_offsite`: keys of files not yet in the remote
    mirror when one is kept. One decision per file, in the order given."""
    files, bases = list(files), list(bases)
    if not files:
        return []
    newest_file = max(f.seq for f in files)
    needed = _needed_from(bases, pitr_days, now)
    out = []
    for item in files:
        if needed is None:
            why = "no kept base backup records a binary log position: nothing says what a restore needs"
        elif item.seq >= max(b.seq for b in bases):
            why = "at or after the binlog of the newest base backup (a restore to now replays it)"
        elif item.seq >= needed[0]:
            why = f"needed: {needed[1]}"
        elif item.seq == newest_file:
            why = "the newest archived file (the archiver resumes after it)"
        elif item.key in not_offsite:
            why = "not yet in the remote binlog mirror"
        else:
            scope = f"a restore within the last {_days(pitr_days)}" if pitr_days is not None else "a kept base backup"
            out.append(Decision(item, True, f"before every binlog file {scope} needs"))
            continue
        out.append(Decision(item, False, why))
    return out
