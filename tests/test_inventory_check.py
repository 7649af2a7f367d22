"""verify cross-checks a mydumper backup's files against the manifest's own inventory, so a data
file removed together with its manifest entry is caught although every hash still matches."""

from __future__ import annotations

import json

import pytest

from conftest import unique
from test_failures import only_line
from test_mydumper import plain_db  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("needs_mydumper")


def _drop_file(folder, plain_name: str) -> None:
    """Remove one file and its manifest entry, as a careless hand or a bad sync would."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    [entry] = [f for f in manifest["files"] if f["plain_name"] == plain_name]
    manifest["files"].remove(entry)
    (folder / entry["name"]).unlink()
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_a_table_file_removed_with_its_entry_fails_verify_and_restore(env, server, plain_db):  # noqa: F811
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    _drop_file(folder, f"{plain_db}.tags.sql")
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7, done.stderr
    assert "table 'tags' has 2 row(s) in the manifest but no data file" in only_line(done.stderr)
    target = unique("tagless")
    done = env.cli("restore", "-b", str(folder), "-d", target, "--yes", config=cfg)
    assert done.returncode == 7 and "'tags'" in only_line(done.stderr), done.stderr
    assert server.sql(f"SHOW DATABASES LIKE '{target}'").strip() == ""


def test_a_chunk_removed_with_its_entry_fails_verify(env, plain_db):  # noqa: F811
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"},
                            "database": {**env.server.config_section(), "mydumper": {"chunk_filesize": 1}}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    chunks = sorted(f["plain_name"] for f in json.loads((folder / "manifest.json").read_text())["files"]
                    if f["plain_name"].startswith(f"{plain_db}.orders.0"))
    assert len(chunks) >= 2, chunks
    _drop_file(folder, chunks[0])
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7, done.stderr
    assert f"table 'orders' lacks data file {chunks[0]}" in only_line(done.stderr)


def test_the_last_chunk_removed_with_its_entry_fails_verify(env, plain_db):  # noqa: F811
    """Removing the last chunk leaves no gap in the numbering: the count written at backup time tells."""
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"},
                            "database": {**env.server.config_section(), "mydumper": {"chunk_filesize": 1}}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    chunks = sorted(f["plain_name"] for f in manifest["files"] if f["plain_name"].startswith(f"{plain_db}.orders.0"))
    [orders] = [t for t in manifest["objects"]["tables"] if t["name"] == "orders"]
    assert orders["data_files"] == len(chunks) >= 2
    _drop_file(folder, chunks[-1])
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 7, done.stderr
    assert f"table 'orders' has {len(chunks) - 1} data file(s), {len(chunks)} were written" in only_line(done.stderr)


def test_an_empty_table_needs_no_data_file(env, server, plain_db):  # noqa: F811
    server.sql(f"CREATE TABLE `{plain_db}`.nothing (id INT) ENGINE=InnoDB")
    cfg = env.write_config({"backup": {"databases": [plain_db], "engine": "mydumper"}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(plain_db)
    names = {f["plain_name"] for f in json.loads((folder / "manifest.json").read_text())["files"]}
    assert f"{plain_db}.nothing-schema.sql" in names and not any(".nothing." in n for n in names)
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
