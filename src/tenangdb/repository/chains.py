"""Chains of physical backups: a full backup and the increments taken on it, one after another.

An increment's manifest names its parent (the backup just before it) and the chain's full
backup in `engine.chain`, and records in `engine.lsn` the LSN range it copied: its `from_lsn`
is its parent's `to_lsn`. An increment restores only with every backup before it, so a chain is
only as good as each link: `members` finds them all (in the same repository) and says which link
is broken. This module reads manifests only, never a stored file's content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tenangdb.errors import VerifyFailed
from tenangdb.mysql.mariabackup import FULL, INCREMENTAL
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository.manifest import Manifest
from tenangdb.repository.naming import BackupRef

# More increments than any schedule makes: a chain this long is taken for a loop.
LONGEST = 10_000


@dataclass(frozen=True)
class Link:
    parent: str  # the parent backup's name
    full: str    # the name of the chain's full backup
    depth: int   # which increment of the chain this is (1: the first after the full backup)

    def as_manifest(self) -> dict:
        return {"parent": self.parent, "full": self.full, "depth": self.depth}


@dataclass
class Member:
    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.name


def link_of(manifest: Manifest) -> Link | None:
    """The link to its parent an increment's manifest records; None for any other backup."""
    data = getattr(manifest.engine, "chain", None)
    if not isinstance(data, dict) or not isinstance(data.get("parent"), str) or not data["parent"]:
        return None
    depth = data.get("depth")
    return Link(data["parent"], str(data.get("full") or ""), depth if isinstance(depth, int) else 0)


def lsn_of(manifest: Manifest) -> dict:
    value = getattr(manifest.engine, "lsn", None)
    return value if isinstance(value, dict) else {}


def parent_rel(manifest: Manifest) -> str | None:
    """Where the parent of an increment lives in a repository (`{db}/{YYYY-MM}/{name}`), else None."""
    link = link_of(manifest)
    ref = BackupRef.from_name(link.parent) if link is not None else None
    return str(ref) if ref is not None else None


def root_of(folder: Path) -> Path:
    """The repository a backup folder `{root}/{db}/{YYYY-MM}/{name}` is in."""
    return folder.absolute().parent.parent.parent


def find(name: str, roots: list[Path]) -> Path | None:
    ref = BackupRef.from_name(name)
    if ref is None:
        return None
    for root in roots:
        if (ref.path(root) / manifest_mod.MANIFEST).is_file():
            return ref.path(root)
    return None


def members(folder: Path, manifest: Manifest, roots: list[Path] | None = None) -> list[Member]:
    """The chain up to this backup, full backup first, this one last (alone for a backup that is
    no increment). Each parent is looked for in `roots` (default: this backup's repository).
    VerifyFailed naming the broken link: a parent missing or unreadable, an LSN gap between a
    parent and its child, a chain that does not start with the full backup it names."""
    roots = roots or [root_of(folder)]
    chain = [Member(folder, manifest)]
    top = chain[0].name
    if lsn_of(manifest).get("backup_type") == INCREMENTAL and link_of(manifest) is None:
        raise VerifyFailed(f"{top} is an increment whose manifest names no parent: it cannot be restored")
    while (link := link_of(chain[0].manifest)) is not None:
        child = chain[0]
        if len(chain) > LONGEST or any(member.name == link.parent for member in chain):
            raise VerifyFailed(f"the chain of {top} loops: {child.name} names {link.parent} as its parent")
        path = find(link.parent, roots)
        if path is None:
            raise VerifyFailed(f"the chain of {top} is broken: {child.name} needs its parent {link.parent}, "
                               "which is missing")
        try:
            parent = Member(path, manifest_mod.load(path))
        except VerifyFailed as exc:
            raise VerifyFailed(f"the chain of {top} is broken at {link.parent} (the parent of {child.name}): "
                               f"{exc}") from None
        starts, ends = lsn_of(child.manifest).get("from_lsn"), lsn_of(parent.manifest).get("to_lsn")
        if starts is None or starts != ends:
            raise VerifyFailed(f"the chain of {top} is broken between {parent.name} and {child.name}: the "
                               f"increment starts at LSN {starts}, its parent ends at {ends}")
        chain.insert(0, parent)
    if len(chain) > 1:
        first, wanted = chain[0], link_of(manifest).full
        if lsn_of(first.manifest).get("backup_type") != FULL:
            raise VerifyFailed(f"the chain of {top} is broken: its first backup {first.name} is not a full backup")
        if wanted and wanted != first.name:
            raise VerifyFailed(f"the chain of {top} is broken: it names {wanted} as its full backup, but its "
                               f"parents lead to {first.name}")
    return chain
