"""A database with something no SQL dump can carry (here an ENUM error value beside a ''
member) is still backed up; the loss is named in the manifest, the log, `list`, `verify`,
`doctor`, the metrics and the notifications. With backup.fidelity: strict the backup counts as
failed (exit 4, tracking not advanced) but is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import unique
from test_doctor import doctor
from test_metrics import metrics_section
from test_notify import TOKEN, receiver  # noqa: F401 - a fixture

OBJECT = "column `shirt`.`size`"
LOST = "1 ENUM error value(s) (index 0)"


@pytest.fixture
def lossy_db(server):
    name = unique("lossy")
    server.sql(f"""
        CREATE DATABASE `{name}`;
        USE `{name}`;
        -- No integer key: nothing to put the error value right by, so it stays a loss.
        CREATE TABLE shirt (id INT, size ENUM('', 's', 'm'));
        SET SESSION sql_mode = '';
        INSERT INTO shirt VALUES (1, 's'), (2, ''), (3, 'xl');
    """)
    yield name
    server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def fidelity_gauge(textfile: Path) -> dict[str, float]:
    return {s.labels["database"]: s.value for f in text_string_to_metric_families(textfile.read_text())
            if f.name == "tenangdb_backup_fidelity_losses" for s in f.samples}


def tracked(env) -> set[str]:
    from tenangdb.repository import tracking
    return set(tracking.load(tracking.tracking_path(env.root / "tracking", str(env.backups))))


def test_a_loss_is_recorded_and_shown_everywhere(env, lossy_db, sample_db, receiver):  # noqa: F811
    metrics = metrics_section(env)
    cfg = env.write_config({"backup": {"databases": [lossy_db, sample_db]}, "metrics": metrics,
                            "notify": {"webhook": f"{receiver.url}/hook/{TOKEN}",
                                       "ping": f"{receiver.url}/ping/{TOKEN}"}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "all 2 database backups succeeded" in done.stderr
    assert (f"warning: {lossy_db}: the backup does not hold 1 thing exactly (recorded in its manifest): "
            f"{OBJECT}: {LOST}") in done.stderr
    assert tracked(env) == {lossy_db, sample_db}
    [folder] = env.backups_of(lossy_db)
    [loss] = json.loads((folder / "manifest.json").read_text())["losses"]
    assert loss == {"object": OBJECT, "lost": LOST + ", which restore as the '' member",
                    "why": "the dump writes both as ''"}
    [clean] = env.backups_of(sample_db)
    assert json.loads((clean / "manifest.json").read_text())["losses"] == []

    table = env.cli("list", "--local", config=cfg).stdout.splitlines()
    assert table[0].split()[-1] == "LOSSES"
    assert {line.split()[0]: line.split()[-1] for line in table[1:]} == {lossy_db: "1", sample_db: "-"}
    listed = {b["database"]: b["losses"] for b in json.loads(env.cli("list", "--json", "--local",
                                                                     config=cfg).stdout)["backups"]}
    assert listed == {lossy_db: [loss], sample_db: []}

    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"OK {folder}, with 1 recorded loss: {OBJECT}: {LOST}, which restore as the '' " \
                                  "member (the dump writes both as '')"
    assert env.cli("verify", "-b", str(clean), config=cfg).stdout.strip() == f"OK {clean}"

    assert fidelity_gauge(Path(metrics["textfile"])) == {lossy_db: 1.0, sample_db: 0.0}

    _, checks = doctor(env, cfg)
    assert checks["fidelity"]["status"] == "warn"
    assert f"{lossy_db} ({folder.name}): {OBJECT}: {LOST}" in checks["fidelity"]["message"]
    assert sample_db not in checks["fidelity"]["message"]

    events = {(e["event"], e["database"]): e for e in receiver.events()}
    assert events[("backup.success", lossy_db)]["losses"] == [loss]
    assert events[("backup.success", sample_db)]["losses"] == []
    assert events[("backup.finish", None)]["losses"] == [{"database": lossy_db, **loss}]
    assert events[("backup.finish", None)]["status"] == "success"
    assert receiver.pings()[-1] == f"/ping/{TOKEN}"  # a success, whose body names the lossy database
    assert f"with recorded losses: {lossy_db} (1)" in receiver.requests[-1]["body"]

    # The next backup without the loss: the gauge and doctor follow the newest backup.
    env.server.sql("UPDATE shirt SET size = 'm' WHERE id = 3", lossy_db)
    assert env.cli("backup", "--force", "--databases", lossy_db, config=cfg).returncode == 0
    assert fidelity_gauge(Path(metrics["textfile"])) == {lossy_db: 0.0, sample_db: 0.0}
    _, checks = doctor(env, cfg)
    assert checks["fidelity"]["status"] == "pass", checks["fidelity"]


def test_strict_counts_a_lossy_backup_as_failed_and_keeps_it(env, lossy_db, sample_db):
    metrics = metrics_section(env)
    cfg = env.write_config({"backup": {"databases": [lossy_db, sample_db], "fidelity": "strict",
                                       "verify_backup": True},
                            "metrics": metrics})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 4, done.stderr
    assert "partial success: 1 succeeded, 1 failed" in done.stderr
    assert (f"{lossy_db}: backup failed: backup kept at ") in done.stderr
    assert f"but it does not hold 1 thing exactly (backup.fidelity: strict): {OBJECT}: {LOST}" in done.stderr
    assert (f"backups with recorded losses count as failed (backup.fidelity: strict) and are kept: "
            f"{lossy_db} (1)") in done.stderr
    [folder] = env.backups_of(lossy_db)  # committed and kept
    assert json.loads((folder / "manifest.json").read_text())["losses"][0]["object"] == OBJECT
    assert env.cli("verify", "-b", str(folder), config=cfg).returncode == 0
    assert tracked(env) == {sample_db}  # the lossy one is due again next run
    families = {f.name: f for f in text_string_to_metric_families(Path(metrics["textfile"]).read_text())}
    failed = {s.labels["database"]: s.value for s in families["tenangdb_backup_failed"].samples
              if s.name == "tenangdb_backup_failed_total"}
    assert failed == {lossy_db: 1.0}
    assert fidelity_gauge(Path(metrics["textfile"]))[lossy_db] == 1.0


def test_strict_without_losses_succeeds(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db], "fidelity": "strict"}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr


def test_fidelity_mode_is_checked(offline_env):
    cfg = offline_env.write_config({"backup": {"databases": ["x"], "fidelity": "sloppy"}})
    done = offline_env.cli("backup", "--dry-run", config=cfg)
    assert done.returncode == 2
    assert "backup.fidelity" in done.stderr and "Traceback" not in done.stderr


def test_a_manifest_without_losses_loads_as_none(env, sample_db):
    cfg = env.write_config({"backup": {"databases": [sample_db]}})
    assert env.cli("backup", config=cfg).returncode == 0
    [folder] = env.backups_of(sample_db)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["losses"]  # as written before losses were recorded
    (folder / "manifest.json").write_text(json.dumps(manifest))
    listed = json.loads(env.cli("list", "--json", "--local", config=cfg).stdout)["backups"]
    assert [b["losses"] for b in listed] == [[]]
    done = env.cli("verify", "-b", str(folder), config=cfg)
    assert done.returncode == 0 and done.stdout.strip() == f"OK {folder}", done.stdout + done.stderr
