"""Whether the next physical backup is an increment, and on which parent (backup.physical.incremental).

The parent is the newest physical backup in the local repository. An increment goes on it only
if its whole chain is sound as far as can be told without a key: every member present with
readable manifests, LSNs continuous, every stored file at its size and SHA-256. Anything else
(no parent, a broken or damaged chain, a chain due for renewal) makes a full backup, and says why.
The increment itself needs only the parent's `to_lsn` (mariabackup --incremental-lsn): no
plaintext of the parent is ever written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tenangdb.actions.verify import _sha256
from tenangdb.errors import VerifyFailed
from tenangdb.repository import chains, store
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository.chains import Link, Member


@dataclass
class Base:
    """What the next backup is: an increment on `parent` (`link`, `since_lsn`), or full (`why`)."""
    link: Link | None = None
    since_lsn: int | None = None
    why: str | None = None       # why a full backup; None: incremental backups are off
    damaged: bool = False        # the reason is a broken or damaged chain, not the schedule


def choose(root: Path, database: str, cfg, now: datetime) -> Base:
    """The base of the next backup of `database` (the instance) under `root`, by `cfg`
    (backup.physical.incremental)."""
    if not cfg.enabled:
        return Base()
    newest = max(store.iter_backups(root, database), key=lambda p: p.name, default=None)
    if newest is None:
        return Base(why="there is no earlier physical backup to base an increment on")
    try:
        chain = chains.members(newest, manifest_mod.load(newest), [root])
        for member in chain:
            _check_stored(member)
    except VerifyFailed as exc:
        return Base(why=f"the newest physical backup {newest.name} cannot be a parent: {exc}", damaged=True)
    except OSError as exc:  # unreadable: as good as damaged for a parent
        return Base(why=f"the newest physical backup {newest.name} cannot be a parent: "
                        f"{exc.filename}: {exc.strerror or exc}", damaged=True)
    full, parent = chain[0], chain[-1]
    increments = len(chain) - 1
    if cfg.max_increments is not None and increments >= cfg.max_increments:
        return Base(why=f"the chain of {full.name} holds {increments} increment{'' if increments == 1 else 's'} "
                        f"(backup.physical.incremental.max_increments: {cfg.max_increments})")
    started = _started(full)
    if cfg.full_every is not None and (started is None or (now - started).total_seconds() >= cfg.full_every):
        return Base(why=f"the chain's full backup {full.name} is older than "
                        f"backup.physical.incremental.full_every ({cfg.full_every / 86400:g} days)")
    since = chains.lsn_of(parent.manifest).get("to_lsn")
    if not isinstance(since, int):
        return Base(why=f"the newest physical backup {parent.name} records no to_lsn", damaged=True)
    return Base(link=Link(parent=parent.name, full=full.name, depth=increments + 1), since_lsn=since)


def _check_stored(member: Member) -> None:
    """Every stored file present at its size and SHA-256: what can be proven without a key."""
    member.manifest.check_folder(member.path)
    for entry in member.manifest.files:
        if _sha256(member.path / entry.name) != entry.stored_sha256:
            raise VerifyFailed(f"{member.path / entry.name}: SHA-256 of the stored bytes does not match the "
                               "manifest (damaged)")


def _started(member: Member) -> datetime | None:
    from tenangdb.actions.catalog import _manifest_time

    return _manifest_time(member.manifest)
