"""The manifest model without a server: what loads, what is refused (and the one line that
says why), byte-stable round trips, and manifests written before the model (format 1)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from tenangdb.errors import VerifyFailed
from tenangdb.repository import records
from tenangdb.repository.manifest import FORMAT, MANIFEST, FileEntry, Manifest, load
from tenangdb.repository.naming import BackupRef

FIXTURES = Path(__file__).parent / "fixtures"
# Written by a real backup of the previous version (format 1): a streaming dump that fell back
# from mydumper and records a loss, and a mydumper dump of several files.
FORMAT1 = ("format1-mysqldump.json", "format1-mydumper.json")


def _folder(tmp_path: Path, data) -> Path:
    folder = tmp_path / "db" / "2024-05" / "db-2024-05-01_02-00-00"
    folder.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data)
    (folder / MANIFEST).write_text(text, encoding="utf-8")
    return folder


def _raw(name: str = FORMAT1[0]) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", FORMAT1)
def test_a_format_1_manifest_loads_and_saves_byte_for_byte(tmp_path, name):
    folder = _folder(tmp_path, (FIXTURES / name).read_text(encoding="utf-8"))
    manifest = load(folder)
    assert manifest.format == 1
    assert manifest.dumps() == (FIXTURES / name).read_bytes()


def test_format_1_fields_read_as_attributes(tmp_path):
    manifest = load(_folder(tmp_path, _raw()))
    raw = _raw()
    assert manifest.database == raw["database"] and manifest.name == raw["name"]
    assert manifest.engine.name == "mysqldump" and "streaming engine" in manifest.engine.fallback_reason
    assert manifest.compression.format == "zstd" and manifest.compression.level == 3
    assert manifest.encryption.enabled is False and manifest.encryption.recipients == []
    assert manifest.content_checks.proven_tables == raw["content_checks"]["tables"]
    assert manifest.objects.tables[0]["name"] == "shirt"
    assert manifest.loss_records() == raw["losses"]
    assert str(manifest.losses[0]) == "column `shirt`.`size`: " + raw["losses"][0]["lost"] + " (the dump writes both as '')"
    [entry] = manifest.files
    assert entry.unsealed_name == entry.name and entry.plain_name is None


def test_mydumper_entries_keep_their_plain_names(tmp_path):
    manifest = load(_folder(tmp_path, _raw(FORMAT1[1])))
    assert {e.unsealed_name for e in manifest.files} >= {"metadata"}
    assert all("plain_name" in e for e in json.loads(manifest.dumps())["files"])


def test_a_new_manifest_is_format_2_with_every_format_1_key(tmp_path):
    raw = _raw()
    del raw["format"]
    manifest = Manifest(**raw)
    written = json.loads(manifest.dumps())
    assert manifest.format == FORMAT == 2 and written["format"] == 2
    assert {k: v for k, v in written.items() if k != "format"} == raw
    assert load(_folder(tmp_path, written)) == manifest


def test_absent_optional_keys_stay_absent():
    raw = _raw()
    raw["binlog"] = {"file": "mysql-bin.000003", "position": 1234}  # no GTID reported
    manifest = Manifest.model_validate(raw)
    written = json.loads(manifest.dumps())
    assert written["binlog"] == {"file": "mysql-bin.000003", "position": 1234}
    assert "plain_name" not in written["files"][0] and "reason" not in written["content_checks"]


def test_unknown_keys_are_kept():
    raw = _raw()
    raw["future"] = {"x": 1}
    raw["files"][0]["extra"] = "kept"
    written = json.loads(Manifest.model_validate(raw).dumps())
    assert written["future"] == {"x": 1} and written["files"][0]["extra"] == "kept"


def test_a_manifest_without_the_later_keys_loads(tmp_path):
    raw = _raw()
    for key in ("losses", "content_checks", "exact_floats", "qualified_references", "name", "server"):
        del raw[key]
    manifest = load(_folder(tmp_path, raw))
    assert manifest.losses == [] and manifest.content_checks is None and manifest.name is None


def _mutated(change) -> dict:
    raw = copy.deepcopy(_raw())
    change(raw)
    return raw


BAD = [
    ("not json", "{", "not valid JSON"),
    ("a list", "[]", "not a manifest object"),
    ("no files key", _mutated(lambda m: m.pop("files")), "incomplete manifest, missing files"),
    ("two keys missing", _mutated(lambda m: (m.pop("tool"), m.pop("objects"))),
     "incomplete manifest, missing tool, objects"),
    ("future format", _mutated(lambda m: m.update(format=3)), "manifest format 3 is not supported by this version"),
    ("format true", _mutated(lambda m: m.update(format=True)), "manifest format True is not supported"),
    ("unknown compression", _mutated(lambda m: m["compression"].update(format="lz4")),
     "the manifest names no known compression"),
    ("compression not an object", _mutated(lambda m: m.update(compression="zstd")),
     "the manifest names no known compression"),
    ("encryption a list", _mutated(lambda m: m.update(encryption=[])), "the manifest's encryption entry is malformed"),
    ("no files", _mutated(lambda m: m.update(files=[])), "the manifest lists no files"),
    ("files not a list", _mutated(lambda m: m.update(files={})), "the manifest lists no files"),
    ("entry not an object", _mutated(lambda m: m.update(files=["x"])), "a file entry is malformed"),
    ("entry without a name", _mutated(lambda m: m["files"][0].pop("name")), "a file entry is malformed"),
    ("size a bool", _mutated(lambda m: m["files"][0].update(stored_size=True)),
     "has no valid stored_size"),
    ("size negative", _mutated(lambda m: m["files"][0].update(plain_size=-1)), "has no valid plain_size"),
    ("size a string", _mutated(lambda m: m["files"][0].update(plain_size="12")), "has no valid plain_size"),
    ("short sha", _mutated(lambda m: m["files"][0].update(stored_sha256="abc")),
     "has a missing or malformed SHA-256"),
    ("upper-case sha", _mutated(lambda m: m["files"][0].update(plain_sha256="A" * 64)),
     "has a missing or malformed SHA-256"),
    ("a path", _mutated(lambda m: m["files"][0].update(name="../x.sql")), "'../x.sql' is not a plain file name"),
    ("the manifest itself", _mutated(lambda m: m["files"][0].update(name=MANIFEST)), "is not a plain file name"),
    ("plain_name a path", _mutated(lambda m: m["files"][0].update(plain_name="a/b")), "has an unusable plain_name"),
    ("listed twice", _mutated(lambda m: m["files"].append(dict(m["files"][0]))), "is listed twice"),
    ("losses not a list", _mutated(lambda m: m.update(losses={})), "the manifest's losses entry is malformed"),
    ("loss without why", _mutated(lambda m: m["losses"][0].pop("why")), "the manifest's losses entry is malformed"),
]


@pytest.mark.parametrize("data, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_manifest_is_refused_in_one_line(tmp_path, data, message):
    folder = _folder(tmp_path, data)
    with pytest.raises(VerifyFailed) as caught:
        load(folder)
    text = str(caught.value)
    assert message in text and text.startswith(str(folder / MANIFEST)) and "\n" not in text


def test_sizes_are_checked_before_the_name(tmp_path):
    bad = _mutated(lambda m: m["files"][0].update(name="a/b", stored_sha256="x", stored_size=-1))
    with pytest.raises(VerifyFailed, match="has no valid stored_size"):
        load(_folder(tmp_path, bad))


def test_no_manifest_is_not_a_backup(tmp_path):
    with pytest.raises(VerifyFailed, match="no manifest.json, so this is not a complete backup"):
        load(tmp_path)


def test_compare_names_missing_unexpected_and_wrong_sizes():
    manifest = Manifest.model_validate(_raw(FORMAT1[1]))
    sizes = {e.name: e.stored_size for e in manifest.files}
    assert not manifest.compare(sizes)
    first, second, *_ = sizes
    found = manifest.compare({**{k: v for k, v in sizes.items() if k != first}, "stray": 1, second: 0})
    assert found.missing == [first] and found.unexpected == ["stray"]
    assert found.wrong_size == [(second, 0, sizes[second])]
    assert not manifest.compare(dict.fromkeys(sizes))  # sizes unknown: names only


def test_check_folder(tmp_path):
    payload = b"-- dump\n"
    digest = hashlib.sha256(payload).hexdigest()
    raw = _raw()
    raw["files"] = [FileEntry(name="db.sql", kind="sql", plain_size=len(payload), stored_size=len(payload),
                              plain_sha256=digest, stored_sha256=digest).model_dump()]
    folder = _folder(tmp_path, raw)
    manifest = load(folder)
    with pytest.raises(VerifyFailed, match=r"db\.sql: listed in the manifest but missing"):
        manifest.check_folder(folder)
    (folder / "db.sql").write_bytes(payload[:-1])
    with pytest.raises(VerifyFailed, match=r"size is 7 bytes, the manifest says 8 \(truncated or damaged\)"):
        manifest.check_folder(folder)
    (folder / "db.sql").write_bytes(payload)
    manifest.check_folder(folder)
    (folder / "notes.txt").write_text("x")
    with pytest.raises(VerifyFailed, match=r"notes\.txt: not listed in the manifest"):
        manifest.check_folder(folder)


def test_backup_ref():
    ref = BackupRef.parse("shop/2024-05/shop-2024-05-01_02-00-00")
    assert ref == BackupRef("shop", "2024-05", "shop-2024-05-01_02-00-00")
    assert str(ref) == "shop/2024-05/shop-2024-05-01_02-00-00"
    assert ref.path(Path("/b")) == Path("/b/shop/2024-05/shop-2024-05-01_02-00-00")
    assert BackupRef.from_path(Path("/b/shop/2024-05/shop-2024-05-01_02-00-00")) == ref
    assert BackupRef.from_name("shop-2024-05-01_02-00-00.1") == BackupRef("shop", "2024-05", "shop-2024-05-01_02-00-00.1")
    assert BackupRef.from_name("shop") is None
    for bad in ("shop/2024-05", "a/b/c/d", "shop//x", ""):
        assert BackupRef.parse(bad) is None


def test_records_round_trip_and_write_only_their_keys(tmp_path):
    folder = tmp_path / "db" / "2024-05" / "db-2024-05-01_02-00-00"
    folder.parent.mkdir(parents=True)
    failed = records.UploadRecord(ok=False, destination="r:b", remote_path="r:b/x", attempted_at="t", error="e")
    records.write(records.upload_path(folder), failed)
    assert json.loads(records.upload_path(folder).read_text()) == {
        "format": 1, "ok": False, "destination": "r:b", "remote_path": "r:b/x", "attempted_at": "t", "error": "e"}
    back = records.read_upload(folder)
    assert back == failed and records.upload_for(folder, "r:b") is None
    expired = back.model_copy(update={"expired": True, "expired_at": "t2"})
    records.write(records.upload_path(folder), expired)
    assert json.loads(records.upload_path(folder).read_text())["expired"] is True
    done = records.UploadRecord(ok=True, destination="r:b", verify="sha256", files={"x": {"size": 1, "md5": "m"}})
    records.write(records.upload_path(folder), done)
    assert records.upload_for(folder, "r:b") == done and records.upload_for(folder, "other:") is None


def test_a_verify_record_of_the_previous_version_reads(tmp_path):
    folder = tmp_path / "db" / "2024-05" / "db-2024-05-01_02-00-00"
    folder.parent.mkdir(parents=True)
    records.verify_path(folder).write_bytes((FIXTURES / "verify-record.json").read_bytes())
    checked = records.read_verify(folder)
    assert checked.ok and checked.method == "checksums" and checked.at == "2026-12-06T06:05:01+00:00"
    records.write(records.verify_path(folder), checked)
    assert records.verify_path(folder).read_bytes() == (FIXTURES / "verify-record.json").read_bytes()


def test_an_unreadable_record_is_ignored(tmp_path):
    folder = tmp_path / "db" / "2024-05" / "db-2024-05-01_02-00-00"
    folder.parent.mkdir(parents=True)
    records.upload_path(folder).write_text("[1, 2]")
    assert records.read_upload(folder) is None
    records.upload_path(folder).write_text("{")
    assert records.read_upload(folder) is None
