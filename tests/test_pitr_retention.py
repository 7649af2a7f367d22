"""Retention of the binlog archive (`cleanup.pitr_days`) on a real server with the binary log on:
over a history of three base backups and several archived files, cleanup deletes the files no
restore within the window needs, locally and in the remote mirror, keeps the rest, and a
`restore --to-time` inside the window still gives the database as it was."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from conftest import unique
from test_pitr import archived, benv, checksums, pause_past_second  # noqa: F401 - benv is a fixture
from test_pitr_ops import off_site


def finished(benv, db: str) -> list[float]:
    return sorted(datetime.fromisoformat(json.loads(p.read_text())["finished_at"]).timestamp()
                  for p in benv.backups.glob(f"{db}/*/*/manifest.json"))


def base_file(benv, db: str, nth: int) -> str:
    manifests = sorted((json.loads(p.read_text()) for p in benv.backups.glob(f"{db}/*/*/manifest.json")),
                       key=lambda m: m["finished_at"])
    return manifests[nth]["binlog"]["file"]


def test_cleanup_keeps_the_pitr_window_and_deletes_the_binlogs_before_it(benv):
    server = benv.server
    db = unique("ret")
    target, upload, encryption, config = off_site(benv, db)
    restored = unique("ret_at")
    try:
        # Base A, its file closed and archived; then base B in the next file.
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        server.sql(f"UPDATE `{db}`.t SET v = v + 1 WHERE id < 20")
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        pause_past_second()
        between_a_and_b = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        pause_past_second()
        server.sql(f"UPDATE `{db}`.t SET v = v + 3 WHERE id < 10")  # only A plus a replay gives the time before
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        server.sql(f"UPDATE `{db}`.t SET v = v * 2 WHERE id < 50")
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        pause_past_second()
        window_start = time.time()  # the window will start here (or a little later): after B, before T
        time.sleep(8)
        moment = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        at_t = checksums(server, db)
        pause_past_second()
        server.sql(f"DELETE FROM `{db}`.t WHERE id > 100")
        assert benv.cli("binlog", "--once", config=config).returncode == 0
        # Base C, then more writes archived after it.
        assert benv.cli("backup", "--databases", db, config=config).returncode == 0
        server.sql(f"DROP TABLE `{db}`.t")
        done = benv.cli("binlog", "--once", config=config)
        assert done.returncode == 0 and "uploaded" in done.stdout, done.stdout + done.stderr
        a_file, b_file, c_file = (base_file(benv, db, n) for n in range(3))
        assert a_file < b_file < c_file
        before = [r["name"] for r in archived(benv)]
        mirror = target / ".binlog"
        assert {f"{n}.json" for n in before} <= {p.name for p in mirror.iterdir()}

        days = (time.time() - window_start) / 86400
        config = benv.write_config({"backup": {"encryption": encryption}, "upload": upload,
                                    "cleanup": {"pitr_days": days}})
        plan = benv.cli("cleanup", "--dry-run", config=config)
        assert plan.returncode == 0, plan.stderr
        lines = plan.stdout.splitlines()
        for place in ("local", "remote"):
            line = next(x for x in lines if f" {place} " in x and f".binlog/{a_file} " in x)
            assert line.strip().startswith("DELETE") and "restore within the last" in line, line
            line = next(x for x in lines if f" {place} " in x and f".binlog/{b_file} " in x)
            assert line.strip().startswith("keep") and "start of the" in line, line
        assert [r["name"] for r in archived(benv)] == before  # a dry run deletes nothing

        done = benv.cli("cleanup", "--yes", config=config)
        assert done.returncode == 0, done.stdout + done.stderr
        kept = [r["name"] for r in archived(benv)]
        assert kept == [n for n in before if n >= b_file]  # from B's file on, none after it lost
        left = {p.name for p in (benv.backups / ".binlog").iterdir()}
        assert not any(name.startswith(n) for name in left for n in before if n < b_file)  # sealed files too
        remote = {p.name for p in mirror.iterdir()}
        assert {f"{n}.json" for n in kept} <= remote
        assert not any(name.startswith(n) for name in remote for n in before if n < b_file)
        assert len(finished(benv, db)) == 3  # the backups themselves are young: all kept

        # The window the metric and `list` report starts at B now, and holds T.
        listed = json.loads(benv.cli("list", "--local", "--json", config=config).stdout)["pitr_window"]
        start = datetime.fromisoformat(listed["databases"][db]["start"]).timestamp()
        assert abs(start - finished(benv, db)[1]) < 1

        done = benv.cli("restore", "-b", db, "--to-time", moment, "-d", restored, config=config)
        assert done.returncode == 0, done.stderr
        assert checksums(server, restored) == at_t
        # Before the window (from A) the files are gone: refused, not guessed.
        done = benv.cli("restore", "-b", db, "--to-time", between_a_and_b, "-d", unique("x"), config=config)
        assert done.returncode == 4 and "lacks" in done.stderr, done.stderr
        # Nothing more to delete, but what a delete interrupted after the record left in the mirror.
        assert (benv.backups / ".binlog" / "server.json").exists() and (mirror / "server.json").exists()
        stray = mirror / next(p.name for p in mirror.iterdir() if p.name.startswith(b_file) and "json" not in p.name)
        stray = stray.with_name(stray.name.replace(b_file, a_file))
        stray.write_bytes(b"left by a killed cleanup")
        again = benv.cli("cleanup", "--dry-run", config=config)
        doomed = [x for x in again.stdout.splitlines() if x.strip().startswith("DELETE") and ".binlog/" in x]
        assert len(doomed) == 1 and "without its record" in doomed[0], again.stdout
        assert benv.cli("cleanup", "--yes", config=config).returncode == 0
        assert not stray.exists() and [r["name"] for r in archived(benv)] == kept
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`; DROP DATABASE IF EXISTS `{restored}`")
