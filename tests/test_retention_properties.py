"""The retention policy's invariants over generated histories of many databases and places.

A broad property search (seconds of generation), so it runs with the full suite; the unit
tier (tests/unit/test_retention.py) holds the worked examples and the keep_* rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from tenangdb.repository import binlogs
from tenangdb.retention import (BACKUP, BINLOG, DAY, FOREIGN, LOCAL, PARTIAL, REMOTE, UPLOADED_REASON, Base, Item,
                                Keep, Policy, plan, plan_binlogs)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@st.composite
def items(draw):
    count = draw(st.integers(0, 40))
    out = []
    for n in range(count):
        database = draw(st.sampled_from(["shop", "billing", "crm"]))
        location = draw(st.sampled_from([LOCAL, REMOTE]))
        kind = draw(st.sampled_from([BACKUP] * 6 + [PARTIAL, FOREIGN]))
        age = draw(st.floats(0, 500 * DAY, allow_nan=False))
        when = NOW - timedelta(seconds=age)
        rel = f"{database}/{when:%Y-%m}/{database}-{draw(st.integers(0, 25))}"
        # Any earlier item of the database may be named as the parent, even a newer one, a
        # partial or the item itself: the policy must hold (and end) whatever manifests say.
        known = [i.rel for i in out if i.database == database] + [rel]
        parent = draw(st.one_of(st.none(), st.sampled_from(known)))
        out.append(Item(key=f"{location}:{n}", database=database, location=location, rel=rel, kind=kind,
                        time=when, size=draw(st.integers(0, 10**9)), complete=draw(st.booleans()),
                        verified=draw(st.booleans()), remote_verified=draw(st.booleans()), parent=parent))
    return out


@st.composite
def chains(draw):
    """Physical backups of one instance, oldest first, each a full backup or an increment on the
    one before it, with a copy in one place or both."""
    out, previous = [], None
    for n in range(draw(st.integers(1, 30))):
        when = NOW - timedelta(days=60 - 2 * n, hours=draw(st.integers(0, 40)))
        rel = f"_instance/{when:%Y-%m}/_instance-{n:02d}"
        parent = previous if previous is not None and draw(st.integers(0, 3)) else None
        for location in draw(st.sampled_from([[LOCAL], [REMOTE], [LOCAL, REMOTE]])):
            out.append(Item(key=f"{location}:{n}", database="_instance", location=location, rel=rel, time=when,
                            complete=draw(st.booleans()), verified=draw(st.booleans()),
                            remote_verified=draw(st.booleans()), parent=parent))
        previous = rel
    return out


def assert_no_kept_backup_loses_an_ancestor(decisions) -> None:
    by_rel: dict = {}
    for d in decisions:
        if d.item.kind == BACKUP:
            by_rel.setdefault((d.item.location, d.item.rel), []).append(d)
    for decision in decisions:
        if decision.delete or decision.item.kind != BACKUP:
            continue
        todo, seen = [decision.item], set()
        while todo:
            child = todo.pop()
            for up in by_rel.get((child.location, child.parent), []):
                assert not up.delete, f"{up.item.key} deleted though the kept {decision.item.key} needs it"
                if up.item.key not in seen:
                    seen.add(up.item.key)
                    todo.append(up.item)


def keeps():
    small = st.integers(0, 6)
    return st.builds(Keep, small, small, small, small, small)


policies = st.builds(
    Policy,
    local_max_age_days=st.one_of(st.none(), st.integers(1, 60)),
    remote_max_age_days=st.one_of(st.none(), st.integers(1, 90)),
    local_keep=keeps(), remote_keep=keeps(),
    cleanup_uploaded=st.booleans(), require_remote=st.booleans(), require_verified=st.booleans(),
    databases=st.one_of(st.none(), st.frozensets(st.sampled_from(["shop", "billing", "crm"]), min_size=1)),
)


def restorable(item, members) -> bool:
    """Complete, and so is every ancestor (the first listed of a rel), in the same place; no loop."""
    seen = {item.key}
    while item.complete and item.parent:
        parents = [p for p in members if p.rel == item.parent and p.complete]
        if not parents or parents[0].key in seen:
            return False
        item = parents[0]
        seen.add(item.key)
    return item.complete


def newest(members):
    return max(members, key=lambda i: (i.time, i.key))


@settings(max_examples=400, deadline=None)
@given(items(), policies)
def test_invariants(things, policy):
    decisions = plan(things, policy, NOW)
    assert [d.item for d in decisions] == things  # one decision per item, in order
    assert_no_kept_backup_loses_an_ancestor(decisions)
    assert all(d.reason for d in decisions)
    deleted = {d.item.key: d for d in decisions if d.delete}

    groups: dict[tuple[str, str], list[Item]] = {}
    for item in things:
        if item.kind == BACKUP:
            groups.setdefault((item.database, item.location), []).append(item)
    for members in groups.values():
        # Never the newest verified backup, nor the newest complete one, of a database and place.
        whole = [i for i in members if restorable(i, members)]
        verified = [i for i in whole if i.verified]
        if verified:
            assert newest(verified).key not in deleted
        if whole:
            assert newest(whole).key not in deleted

    for item in things:
        decision = deleted.get(item.key)
        if item.kind == FOREIGN:
            assert decision is None  # not a backup: never removed
        selected = policy.databases is None or item.database in policy.databases
        if item.kind == PARTIAL:
            assert (decision is not None) == (selected and (NOW - item.time).total_seconds() > DAY)
        if item.kind == BACKUP and policy.databases is not None and item.database not in policy.databases:
            assert decision is None
        if decision is None or item.kind != BACKUP:
            continue
        if item.location == LOCAL and (policy.require_remote or decision.reason.startswith(UPLOADED_REASON)):
            assert item.remote_verified, decision  # never the only good copy
        max_age = policy.local_max_age_days if item.location == LOCAL else policy.remote_max_age_days
        if max_age is not None and (NOW - item.time).total_seconds() < max_age * DAY:
            assert decision.reason.startswith(UPLOADED_REASON), decision  # young ones go only when safe off-site
        rules = policy.local_keep if item.location == LOCAL else policy.remote_keep
        if max_age is None and not rules.any:
            assert decision.reason.startswith(UPLOADED_REASON)

    # With require_verified, nothing unverified is kept because of a keep_* rule.
    if policy.require_verified:
        for decision in decisions:
            if decision.reason.startswith("keep_"):
                assert decision.item.verified, decision

    # A backup deleted locally because it is safe off-site keeps that remote copy.
    remote_gone = {d.item.rel for d in deleted.values() if d.item.location == REMOTE and d.item.kind == BACKUP}
    for decision in deleted.values():
        if decision.item.location == LOCAL and decision.reason.startswith(UPLOADED_REASON):
            assert decision.item.rel not in remote_gone


@settings(max_examples=400, deadline=None)
@given(chains(), policies)
def test_a_kept_backup_keeps_its_whole_chain_and_chains_expire_whole(things, policy):
    decisions = plan(things, replace(policy, databases=None), NOW)
    assert_no_kept_backup_loses_an_ancestor(decisions)
    # Whole: a member is kept for its chain only when a kept descendant needs it.
    kept = {(d.item.location, d.item.rel) for d in decisions if not d.delete}
    for decision in decisions:
        if decision.reason.startswith("needed by the kept increment"):
            assert any(d.item.parent == decision.item.rel and (d.item.location, d.item.rel) in kept
                       for d in decisions if d.item.location == decision.item.location)


# The binlog archive (rule 7): a history of binlog files (some lost to gaps) and base backups of
# a few databases, each base's position in the file open at its time.

HOUR = 3600.0


@st.composite
def pitr_histories(draw):
    count = draw(st.integers(1, 30))
    # Whole seconds: a base's time survives the round trip through datetime exactly.
    lengths = draw(st.lists(st.integers(int(0.1 * HOUR), int(3 * DAY)), min_size=count, max_size=count))
    starts, clock = [], int(NOW.timestamp()) - sum(lengths)
    for length in lengths:
        starts.append(clock)
        clock += length
    present = [seq for seq in range(1, count + 1) if seq == count or draw(st.integers(0, 9))]  # ~1 in 10 lost
    files = [Item(key=f"local:bin.{seq:06d}", database="", location=LOCAL, rel=f".binlog/bin.{seq:06d}",
                  kind=BINLOG, seq=seq, size=seq) for seq in present]
    bases = []
    for n in range(draw(st.integers(0, 12))):
        when = draw(st.integers(starts[0], int(NOW.timestamp())))
        seq = max(i + 1 for i, start in enumerate(starts) if start <= when)
        bases.append(Base(draw(st.sampled_from(["shop", "crm"])), datetime.fromtimestamp(when, timezone.utc), seq,
                          draw(st.booleans()), f"b{n}"))
    return files, bases, starts


def restorable_at(t: float, database: str, bases, kept: set[int], starts) -> bool:
    """What `restore --to-time t` does: the newest verified base at or before t, else the newest
    other one; then every file from its position's to the one open at t must be archived."""
    usable = sorted((b for b in bases if b.database == database and b.time.timestamp() <= t),
                    key=lambda b: b.time, reverse=True)
    usable = [b for b in usable if b.verified] + [b for b in usable if not b.verified]
    if not usable:
        return False
    last = max(i + 1 for i, start in enumerate(starts) if start <= t)
    return all(seq in kept for seq in range(usable[0].seq, last + 1))


def records_of(seqs) -> list:
    return [binlogs.Record.model_construct(name=f"bin.{seq:06d}") for seq in sorted(seqs)]


@settings(max_examples=400, deadline=None)
@given(pitr_histories(), st.one_of(st.none(), st.floats(0.2, 40, allow_nan=False)),
       st.lists(st.floats(0, 1, allow_nan=False), max_size=20), st.sets(st.integers(1, 30), max_size=5))
def test_binlog_retention_keeps_the_promised_window(history, pitr_days, fractions, unsent):
    files, bases, starts = history
    not_offsite = frozenset(f.key for f in files if f.seq in unsent)
    decisions = plan_binlogs(files, bases, pitr_days, NOW, not_offsite)
    assert not any(d.delete for d in decisions if d.item.key in not_offsite)  # not yet off-site: stays
    # Nothing but the listed archive files is decided on, one decision each, in order.
    assert [d.item for d in decisions] == files and all(d.reason for d in decisions)
    before = {f.seq for f in files}
    kept = {d.item.seq for d in decisions if not d.delete}
    assert max(before) in kept  # the archiver resumes after the newest file
    if not bases:
        assert kept == before
        return
    assert {seq for seq in before if seq >= max(b.seq for b in bases)} <= kept
    # Every point of the window (after the database's oldest base) restorable before cleanup
    # still is after it, from the same choice of base.
    window = NOW.timestamp() - pitr_days * DAY if pitr_days is not None else float("-inf")
    for database in {b.database for b in bases}:
        oldest = min(b.time.timestamp() for b in bases if b.database == database)
        first = max(window, oldest)
        points = {first, NOW.timestamp()} | {b.time.timestamp() for b in bases} | set(starts)
        points |= {first + f * (NOW.timestamp() - first) for f in fractions}
        for t in sorted(p for p in points if first <= p <= NOW.timestamp()):
            if restorable_at(t, database, bases, before, starts):
                assert restorable_at(t, database, bases, kept, starts), (database, t, sorted(kept))
    # The window metric after cleanup starts no later than the promise (nor than before it).
    triples = [(b.database, b.time.timestamp(), f"bin.{b.seq:06d}") for b in bases]
    was, now = binlogs.window_starts(records_of(before), triples), binlogs.window_starts(records_of(kept), triples)
    for database, start in was.items():
        assert now[database] <= max(window, start)
        if pitr_days is None:
            assert now[database] == start
