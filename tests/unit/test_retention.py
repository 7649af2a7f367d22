"""The retention policy on its own, a pure function: worked examples and the keep_* rules.
Its invariants over generated histories are in tests/test_retention_properties.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from tenangdb.retention import (BINLOG, FOREIGN, LOCAL, PARTIAL, UPLOADED_REASON, Base, Item, Keep, Policy, plan,
                                plan_binlogs)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.lists(st.floats(0, 400, allow_nan=False), min_size=1, max_size=30, unique=True))
def test_keep_last_keeps_the_newest_n(n, ages):
    things = [Item(key=str(i), database="shop", location=LOCAL, time=NOW - timedelta(days=age))
              for i, age in enumerate(ages)]
    decisions = plan(things, Policy(local_max_age_days=1, local_keep=Keep(last=n)), NOW)
    kept = {d.item.key for d in decisions if not d.delete}
    newest_n = {i.key for i in sorted(things, key=lambda i: i.time, reverse=True)[:n]}
    assert newest_n <= kept
    young = {i.key for i in things if (NOW - i.time) < timedelta(days=1)}
    assert kept == newest_n | young


def test_gfs_on_a_daily_history():
    things = [Item(key=str(n), database="shop", location=LOCAL, rel=str(n),
                   time=NOW.replace(hour=2) - timedelta(days=n)) for n in range(400)]
    policy = Policy(local_max_age_days=3, local_keep=Keep(daily=7, weekly=4, monthly=12, yearly=2))
    kept = {d.item.time.date().isoformat() for d in plan(things, policy, NOW) if not d.delete}
    assert kept == EXPECTED_GFS


# NOW is Sunday 2026-11-29; one backup a day at 02:00 back to 2025-10-26. Written out by hand.
EXPECTED_GFS = {
    # younger than 3 days, and keep_daily 7
    "2026-11-29", "2026-11-28", "2026-11-27", "2026-11-26", "2026-11-25", "2026-11-24", "2026-11-23",
    # keep_weekly 4: the newest of ISO weeks 48, 47, 46, 45 (Sundays)
    "2026-11-22", "2026-11-15", "2026-11-08",
    # keep_monthly 12: the last day of each month back to 2025-12
    "2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31", "2026-06-30", "2026-05-31", "2026-04-30",
    "2026-03-31", "2026-02-28", "2026-01-31", "2025-12-31",
    # keep_yearly 2: 2026 (already kept) and 2025's newest, 2025-12-31 (already kept)
}


def test_reasons_read_well():
    old = Item(key="a", database="shop", location=LOCAL, time=NOW - timedelta(days=30))
    new = Item(key="b", database="shop", location=LOCAL, time=NOW - timedelta(days=1))
    partial = Item(key="c", database="shop", location=LOCAL, kind=PARTIAL, time=NOW - timedelta(days=2))
    junk = Item(key="d", database="shop", location=LOCAL, kind=FOREIGN)
    by_key = {d.item.key: d for d in plan([old, new, partial, junk], Policy(local_max_age_days=7), NOW)}
    assert by_key["a"].delete and by_key["a"].reason == "older than 7 days"
    assert not by_key["b"].delete and by_key["b"].reason == "newest complete backup of shop (local)"
    assert by_key["c"].delete and "unfinished" in by_key["c"].reason
    assert not by_key["d"].delete and "not a backup" in by_key["d"].reason


def test_local_copy_waits_for_a_verified_remote_copy():
    old = Item(key="a", database="shop", location=LOCAL, time=NOW - timedelta(days=30))
    new = Item(key="b", database="shop", location=LOCAL, time=NOW - timedelta(days=1))
    [first, _] = plan([old, new], Policy(local_max_age_days=7, require_remote=True), NOW)
    assert not first.delete and "not verified" in first.reason
    uploaded = Item(key="a", database="shop", location=LOCAL, time=NOW - timedelta(days=2), remote_verified=True)
    [first, _] = plan([uploaded, new], Policy(local_max_age_days=7, cleanup_uploaded=True), NOW)
    assert first.delete and first.reason.startswith(UPLOADED_REASON)


def test_require_verified_fills_keep_slots_with_verified_backups_only():
    # Ten daily backups; only every third one passed verification.
    history = [Item(key=f"b{d}", database="shop", location=LOCAL, rel=f"shop/x/{d}", time=NOW - timedelta(days=d),
                    verified=d % 3 == 0) for d in range(10)]
    rules = Policy(local_max_age_days=None, local_keep=Keep(last=3))
    assert [d.item.key for d in plan(history, rules, NOW) if not d.delete] == ["b0", "b1", "b2"]
    strict = Policy(local_max_age_days=None, local_keep=Keep(last=3), require_verified=True)
    kept = {d.item.key: d.reason for d in plan(history, strict, NOW) if not d.delete}
    assert set(kept) == {"b0", "b3", "b6"}  # b0 is also the newest complete; b1, b2 no longer count
    assert kept["b3"] == "keep_last 3 (verified)"


def test_a_chain_expires_as_a_whole_and_a_kept_increment_keeps_its_ancestors():
    """Two chains of a full backup and two increments, 40 and 20 days old, then a full backup
    today: the old chain goes whole; the middle chain is kept by its young last increment."""
    def chain(first_day: int, ages: list[float]) -> list[Item]:
        out, parent = [], None
        for n, age in enumerate(ages):
            rel = f"_instance/2026-11/_instance-{first_day + n}"
            out.append(Item(key=rel, database="_instance", location=LOCAL, rel=rel,
                            time=NOW - timedelta(days=age), parent=parent))
            parent = rel
        return out

    old, middle = chain(1, [40, 39, 38]), chain(10, [20, 19, 2])
    today = Item(key="today", database="_instance", location=LOCAL, rel="_instance/2026-11/_instance-29",
                 time=NOW)
    decisions = {d.item.key: d for d in plan([*old, *middle, today], Policy(local_max_age_days=7), NOW)}
    assert all(decisions[i.key].delete for i in old)
    assert [decisions[i.key].delete for i in middle] == [False, False, False]
    assert decisions[middle[0].key].reason == "needed by the kept increment _instance-11 (its chain)"
    assert decisions[middle[1].key].reason == "needed by the kept increment _instance-12 (its chain)"
    assert decisions[middle[2].key].reason == "younger than 7 days"


def test_an_increment_whose_parent_is_gone_is_not_the_newest_complete_backup():
    """Its chain broken, the newest increment cannot be restored: the full backup before it is
    the one kept as the newest complete backup, and the orphan expires by age like any other."""
    full = Item(key="full", database="_instance", location=LOCAL, rel="_instance/2026-10/a",
                time=NOW - timedelta(days=40))
    orphan = Item(key="orphan", database="_instance", location=LOCAL, rel="_instance/2026-10/c",
                  time=NOW - timedelta(days=30), parent="_instance/2026-10/b")
    decisions = {d.item.key: d for d in plan([full, orphan], Policy(local_max_age_days=7), NOW)}
    assert decisions["full"].reason == "newest complete backup of _instance (local)"
    assert decisions["orphan"].delete


def _binlogs(*seqs):
    return [Item(key=f"bin.{s:06d}", database="", location=LOCAL, rel=f".binlog/bin.{s:06d}", kind=BINLOG, seq=s)
            for s in seqs]


def test_binlogs_before_the_window_go_and_the_base_before_its_start_keeps_its_own():
    bases = [Base("shop", NOW - timedelta(days=d), seq, name=f"b{d}") for d, seq in ((10, 2), (5, 4), (1, 7))]
    decisions = plan_binlogs(_binlogs(*range(1, 10)), bases, 3, NOW)
    # The window starts 3 days ago: the base of 5 days ago serves its start, so file 4 on stay.
    assert [d.item.seq for d in decisions if d.delete] == [1, 2, 3]
    assert "b5" in next(d.reason for d in decisions if d.item.seq == 4)
    # Without pitr_days every kept base holds its binlogs.
    assert [d.item.seq for d in plan_binlogs(_binlogs(*range(1, 10)), bases, None, NOW) if d.delete] == [1]


def test_binlogs_a_verified_older_base_holds_its_files_as_a_restore_prefers_it():
    bases = [Base("shop", NOW - timedelta(days=9), 2, verified=True), Base("shop", NOW - timedelta(days=5), 4)]
    assert [d.item.seq for d in plan_binlogs(_binlogs(*range(1, 6)), bases, 3, NOW) if d.delete] == [1]


def test_binlogs_without_a_base_nothing_goes_and_unsent_files_stay():
    assert not any(d.delete for d in plan_binlogs(_binlogs(1, 2, 3), [], 1, NOW))
    bases = [Base("shop", NOW - timedelta(hours=1), 3)]
    decisions = plan_binlogs(_binlogs(1, 2, 3), bases, 1, NOW, not_offsite=frozenset({"bin.000002"}))
    assert [d.item.seq for d in decisions if d.delete] == [1]
    assert "remote binlog mirror" in decisions[1].reason
