"""Progress of a restore, a verification and a download as the operator sees it: a live board
on a terminal (stage, bytes of the total, rate, time left), and without one a log line per
stage and nothing drawn."""

from __future__ import annotations

import re

import pytest

from conftest import made_database, on_a_terminal, unique

ROWS = 200_000  # the bench's row shape (bench/test_restore_vs_raw), a few seconds of loading
ESCAPE = "\x1b["


@pytest.fixture(scope="module")
def bench_db(server):
    statements = "; ".join(
        f"CREATE TABLE t{t} (id INT PRIMARY KEY, k INT, name VARCHAR(60), at DATETIME, amount DECIMAL(12,2), "
        f"note TEXT) ENGINE=InnoDB; INSERT INTO t{t} SELECT seq, seq % 1000, CONCAT('name ', seq), "
        f"'2024-01-01' + INTERVAL seq SECOND, seq / 7, REPEAT(CHAR(65 + seq % 26), seq % 120) FROM seq_1_to_{ROWS}"
        for t in (1, 2))
    yield from made_database(server, "bench", statements)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory, server, bench_db):
    return _backed_up(tmp_path_factory, server, bench_db, "mysqldump")


@pytest.fixture(scope="module", params=["mysqldump", "mydumper"])
def by_each_engine(request, tmp_path_factory, server, bench_db):
    if request.param == "mydumper":
        request.getfixturevalue("needs_mydumper")
    return _backed_up(tmp_path_factory, server, bench_db, request.param)


def _backed_up(tmp_path_factory, server, bench_db, engine):
    from conftest import Env

    env = Env(root=tmp_path_factory.mktemp("progress"), server=server)
    settings = {"backup": {"databases": [bench_db], "engine": engine,
                           "encryption": {"enabled": True, "key_file": str(env.key())}}}
    if engine == "mydumper":
        # myloader's threads load this data set in well under a second, before a second redraw
        # could show a rate; one thread takes long enough to be watched, and files of 2 MB
        # (myloader's progress is the bytes of the files it has read) let it move smoothly.
        settings["database"] = {"mydumper": {"chunk_filesize": 2, "myloader": {"threads": 1}}}
    cfg = env.write_config(settings)
    done = env.cli("backup", "--yes", config=cfg)
    assert done.returncode == 0, done.stderr
    [folder] = env.backups_of(bench_db)
    return env, cfg, folder


def test_a_restore_on_a_terminal_shows_its_stages_and_time_left(by_each_engine, server):
    env, cfg, folder = by_each_engine
    target = unique("restored")
    status, screen = on_a_terminal(["--config", str(cfg), "restore", "-b", str(folder), "-d", target], [], env.root)
    try:
        assert status == 0, screen
        # The row's name is shortened to the terminal's width (80 columns).
        rows = [line for line in _frames(screen) if line.startswith("restore restored_")]
        # The load drawn while it ran (the verification of so small a backup may end before the
        # first redraw): how much of its total, how fast and how long it has left.
        loading = [row for row in rows if re.search(r" loading \d+\.\d MiB/\d+\.\d MiB +\d+% .*/s .*ETA \d+s", row)]
        assert loading, rows
        assert "done" in rows[-1] and "100%" in rows[-1], rows[-1]  # the bytes of the load stay in sight
        assert ESCAPE in screen  # redrawn in place
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def test_without_a_terminal_a_restore_logs_one_line_per_stage(backed_up, server):
    env, cfg, folder = backed_up
    target = unique("restored")
    done = env.cli("restore", "-b", str(folder), "-d", target, config=cfg)
    try:
        assert done.returncode == 0, done.stderr
        assert ESCAPE not in done.stderr and "ETA" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if f"restore {target}:" in line]
        stages = [line.split(f"restore {target}: ", 1)[1] for line in lines]
        assert [s.split(" ")[0] for s in stages] == ["verifying", "loading", "checking", "done"], stages
        assert re.fullmatch(r"verifying \d+\.\d MiB", stages[0]) and re.fullmatch(r"done in \d+s", stages[-1])
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def _frames(screen: str) -> list[str]:
    """The lines a terminal showed, escape sequences removed, in order."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", screen)  # colours
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", plain.replace("\r", "\n"))  # cursor moves
    return [line.strip() for line in plain.splitlines() if line.strip()]


def test_a_drill_and_a_restore_from_the_remote_without_a_terminal_log_each_stage(backed_up, server, tmp_path):
    env, _, folder = backed_up
    rclone_config = tmp_path / "rclone.conf"
    rclone_config.write_text("")
    rclone_config.chmod(0o600)
    offsite = tmp_path / "offsite"
    cfg = env.write_config({"backup": {"databases": [folder.parent.parent.name], "engine": "mysqldump",
                                       "encryption": {"enabled": True, "key_file": str(env.key())}},
                            "upload": {"enabled": True, "destination": str(offsite),
                                       "rclone_config_path": str(rclone_config), "retry_delay": 0}},
                           name="remote.yaml")
    assert env.cli("upload", config=cfg).returncode == 0
    done = env.cli("verify", "--from-remote", "-b", folder.name, "--test-restore", "--target", "server", config=cfg)
    assert done.returncode == 0, done.stderr
    assert ESCAPE not in done.stderr and "ETA" not in done.stderr
    said = [line.split(f"verify {folder.name}: ", 1)[1] for line in done.stderr.splitlines()
            if f"verify {folder.name}: " in line]
    stored = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "verify.json")
    assert said[0] == f"downloading {_size(stored)}", said
    assert said[1:-1] == ["creating a scratch database", f"verifying and loading {_size(_plain(folder))}",
                          "checking objects", "checking 2 tables"], said
    assert said[-1].startswith("done in "), said

    # The worst day's restore: the newest good backup of the database, from the remote.
    target = unique("restored")
    done = env.cli("restore", "--from-remote", "-b", folder.parent.parent.name, "--latest", "-d", target, config=cfg)
    try:
        assert done.returncode == 0, done.stderr
        said = [line.split(f"restore {target}: ", 1)[1] for line in done.stderr.splitlines()
                if f"restore {target}: " in line]
        assert said[:-1] == [f"downloading {_size(stored)}", f"verifying {_size(_plain(folder))}",
                             f"loading {_size(_plain(folder))}", "checking objects"], said
        assert said[-1].startswith("done in "), said
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")


def _size(size: int) -> str:
    from tenangdb.fileio import human_size

    return human_size(size)


def _plain(folder) -> int:
    import json

    return sum(entry["plain_size"] for entry in json.loads((folder / "manifest.json").read_text())["files"])


def test_a_question_before_a_restore_is_asked_and_answered_then_the_board_shows_it(backed_up, server):
    env, cfg, folder = backed_up
    target = unique("full")
    server.sql(f"CREATE DATABASE `{target}`; CREATE TABLE `{target}`.keep (id INT)")
    try:
        status, screen = on_a_terminal(["--config", str(cfg), "restore", "-b", str(folder), "-d", target],
                                       [(b"[y/N]", b"y")], env.root)
        assert status == 0, screen
        frames = _frames(screen)
        asked = next(i for i, line in enumerate(frames) if "[y/N]" in line)
        assert not any(line.startswith("restore ") for line in frames[:asked]), frames[:asked]  # no board yet
        assert any(line.startswith("restore ") and "done" in line for line in frames[asked:]), frames[asked:]
    finally:
        server.sql(f"DROP DATABASE IF EXISTS `{target}`")
