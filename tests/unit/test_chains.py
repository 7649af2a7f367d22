"""repository/chains.py on manifests alone: the links of a chain of physical backups, and each
way one breaks (a parent missing or unreadable, an LSN gap, a first member that is no full
backup, a loop), named. The whole path with real backups is in tests/test_physical.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenangdb.errors import VerifyFailed
from tenangdb.repository import manifest as manifest_mod
from tenangdb.repository.chains import members, parent_rel

NAMES = ["_instance-2026-12-01_02-00-00", "_instance-2026-12-02_02-00-00", "_instance-2026-12-03_02-00-00"]


def _write(root: Path, name: str, lsn: dict, chain: dict | None = None) -> Path:
    folder = root / "_instance" / "2026-12" / name
    folder.mkdir(parents=True)
    engine = {"name": "mariabackup", "lsn": lsn, **({"chain": chain} if chain else {})}
    data = {"format": 2, "tool": {"name": "tenangdb"}, "database": "_instance", "name": name, "engine": engine,
            "started_at": "2026-12-01T02:00:00+00:00", "finished_at": "2026-12-01T02:01:00+00:00",
            "compression": {"format": "zstd"}, "encryption": {"enabled": False}, "objects": {},
            "files": [{"name": "_instance.mbstream.zst", "plain_size": 1, "stored_size": 1,
                       "plain_sha256": "0" * 64, "stored_sha256": "0" * 64}]}
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def _chain(root: Path, *, gap: bool = False, first_type: str = "full-backuped") -> list[Path]:
    return [
        _write(root, NAMES[0], {"backup_type": first_type, "from_lsn": 0, "to_lsn": 100}),
        _write(root, NAMES[1], {"backup_type": "incremental", "from_lsn": 100, "to_lsn": 200},
               {"parent": NAMES[0], "full": NAMES[0], "depth": 1}),
        _write(root, NAMES[2], {"backup_type": "incremental", "from_lsn": 201 if gap else 200, "to_lsn": 300},
               {"parent": NAMES[1], "full": NAMES[0], "depth": 2}),
    ]


def _members(folder: Path):
    return members(folder, manifest_mod.load(folder))


def test_a_sound_chain_is_found_full_first(tmp_path):
    folders = _chain(tmp_path)
    assert [m.path for m in _members(folders[2])] == folders
    assert [m.path for m in _members(folders[0])] == folders[:1]
    assert parent_rel(manifest_mod.load(folders[2])) == f"_instance/2026-12/{NAMES[1]}"
    assert parent_rel(manifest_mod.load(folders[0])) is None


def test_each_broken_link_is_named(tmp_path):
    folders = _chain(tmp_path / "gap", gap=True)
    with pytest.raises(VerifyFailed, match=f"between {NAMES[1]} and {NAMES[2]}: the increment starts at LSN 201, "
                                           "its parent ends at 200"):
        _members(folders[2])

    folders = _chain(tmp_path / "missing")
    (folders[1] / "manifest.json").unlink()
    with pytest.raises(VerifyFailed, match=f"{NAMES[2]} needs its parent {NAMES[1]}, which is missing"):
        _members(folders[2])

    folders = _chain(tmp_path / "unreadable")
    (folders[0] / "manifest.json").write_text("{")
    with pytest.raises(VerifyFailed, match=f"broken at {NAMES[0]} \\(the parent of {NAMES[1]}\\)"):
        _members(folders[2])

    folders = _chain(tmp_path / "nofull", first_type="incremental")
    with pytest.raises(VerifyFailed, match=f"its first backup {NAMES[0]} is not a full backup"):
        _members(folders[2])


def test_an_increment_naming_no_parent_or_itself_is_refused(tmp_path):
    orphan = _write(tmp_path / "a", NAMES[1], {"backup_type": "incremental", "from_lsn": 100, "to_lsn": 200})
    with pytest.raises(VerifyFailed, match="names no parent"):
        _members(orphan)
    looped = _write(tmp_path / "b", NAMES[1], {"backup_type": "incremental", "from_lsn": 100, "to_lsn": 100},
                    {"parent": NAMES[1], "full": NAMES[0], "depth": 1})
    with pytest.raises(VerifyFailed, match="loops"):
        _members(looped)
