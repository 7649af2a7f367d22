"""The live board, drawn into a recording console of a fixed width: rows never wider than the
terminal (names shortened, columns dropped), log lines printed whole above the board. A
restore's stages: rate and time left, the board's task rows, and the stage lines logged
without a terminal."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from tenangdb import logs
from tenangdb.actions.verify import backup_name
from tenangdb.cli.progress import Board
from tenangdb.cli.stages import StageLog, stage_line
from tenangdb.progress import Meter, Progress, Task, duration, eta, folder_size, rate

LONG = "a_database_with_a_name_far_longer_than_any_terminal_is_wide_" * 3


def terminal(width: int, height: int = 25) -> Console:
    return Console(file=io.StringIO(), width=width, height=height, force_terminal=True, record=True,
                   color_system=None, legacy_windows=False)


def lines_of(console: Console) -> list[str]:
    return console.export_text(styles=False).splitlines()


@pytest.fixture
def console_log():
    """The CLI's console logging for the test, the logger as it was afterwards."""
    root = logging.getLogger("tenangdb")
    before = root.handlers[:], root.level, root.propagate
    logs.setup("info")
    yield logging.getLogger("tenangdb.test")
    root.handlers[:], root.level, root.propagate = before


@pytest.mark.parametrize("width", [20, 24, 40, 80, 300])
def test_rows_fit_the_width_and_logs_print_above(width, console_log):
    console = terminal(width)
    with logs.console_stream(Board(console)) as board, board:
        board.started(LONG, "mydumper", 12)
        console_log.info("%s: backup started [bold]not markup[/]", LONG)
        board.advanced(LONG, 123_456_789, 5)
        board.started("shop", "mysqldump", 3)
        board.advanced("shop", 4096)
        board.finished("shop", False)
        console_log.warning("shop: backup failed")
    shown = lines_of(console)
    # The log lines are kept whole for the terminal to fold, the board's rows are fitted.
    started = shown.index(f"{LONG}: backup started [bold]not markup[/]")
    failed = shown.index("warning: shop: backup failed")
    board_rows = shown[failed + 1:]
    assert started < failed and len(board_rows) == 2, shown
    for line in board_rows:
        assert len(line) <= width, (width, line)
    long_row, shop_row = board_rows
    assert "running" in long_row and "FAILED" in shop_row
    if width == 300:  # room for the whole name and every column
        assert LONG in long_row
    else:
        assert "…" in long_row and LONG not in long_row
    if width >= 80:  # everything it shows, as before the terminal was narrow
        assert all(part in long_row for part in ("mydumper", "117.7 MiB", "/s", "tables 5/12"))
        assert all(part in shop_row for part in ("mysqldump", "4.0 KiB", "s"))


def test_a_narrow_terminal_keeps_the_progress_before_the_engine():
    console = terminal(44)
    board = Board(console)
    board.started("shop", "mydumper", 12)
    board.advanced("shop", 2048, 7)
    console.print(board.render())
    [row] = lines_of(console)
    assert "tables 7/12" in row and "mydumper" not in row and len(row) <= 44


def test_a_backup_row_with_a_total_shows_how_far_it_is_and_the_time_left():
    """A physical backup knows its total beforehand (the data directory's files): its row shows
    the bytes of it, the share and the time left; a row without one shows the bytes alone."""
    now = 100.0
    board = Board(terminal(120))
    board.started("_instance", "mariabackup", 40, total=400 * 2**20)
    board.started("shop", "mysqldump", 3)
    board._rows["_instance"].started = board._rows["shop"].started = 90.0
    board.advanced("_instance", 100 * 2**20)
    board.advanced("shop", 100 * 2**20)
    cells = board._rows["_instance"].cells(now)
    assert cells["size"] == "100.0 MiB/400.0 MiB  25%", cells
    assert cells["eta"] == "ETA 30s", cells  # 100 MiB in 10 s, 300 MiB to go
    plain = board._rows["shop"].cells(now)
    assert plain["size"] == "100.0 MiB" and plain["eta"] == "", plain
    # More than the estimate (the redo log grew while it copied): never past 100%.
    board.advanced("_instance", 410 * 2**20)
    board.finished("_instance", True)
    assert board._rows["_instance"].cells(now)["size"].endswith("100%")


def test_more_databases_than_lines_keep_the_running_ones_in_sight():
    console = terminal(60, height=8)
    board = Board(console)
    for i in range(20):
        board.started(f"db{i:02}", "mysqldump", 1)
        if i < 17:
            board.finished(f"db{i:02}", True)
    console.print(board.render())
    shown = lines_of(console)
    assert len(shown) <= 6, shown
    assert [line.split()[0] for line in shown if "running" in line] == ["db17", "db18", "db19"]
    assert shown[-1].strip() == f"… and {17 - (len(shown) - 4)} more finished"


def test_a_log_line_cut_across_writes_prints_once_whole():
    console = terminal(30)
    with Board(console) as board:
        board.write("first half, ")
        board.write("second half\nnext")
    assert lines_of(console) == ["first half, second half", "next"]


def test_nothing_is_drawn_without_a_database():
    console = terminal(30)
    with Board(console):
        pass
    assert lines_of(console) == []


# --- restores, verifications and downloads: stages, rate and time left ------------------------

MiB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Heard(Progress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def stage(self, name, stage, total=None, tables=None):
        self.calls.append(("stage", name, stage, total, tables))

    def advanced(self, name, plain_bytes, tables_done=None):
        self.calls.append(("advanced", name, plain_bytes, tables_done))

    def finished(self, name, ok):
        self.calls.append(("finished", name, ok))


def test_rate_and_time_left():
    assert rate(0, 10) == 0 and rate(100, 0) == 0  # nothing to measure yet
    assert rate(50 * MiB, 2) == 25 * MiB
    assert eta(25 * MiB, 100 * MiB, 1) == 3  # 75 MiB left at 25 MiB/s
    assert eta(0, 100 * MiB, 5) is None  # no rate yet, no guess
    assert eta(10, None, 5) is None  # no total, no time left
    assert eta(120, 100, 1) == 0  # past a total that was an estimate: not negative


@pytest.mark.parametrize("seconds, shown", [(0, "0s"), (0.4, "0s"), (42.4, "42s"), (59.6, "1m00s"),
                                            (185, "3m05s"), (3600, "1h00m"), (3725, "1h02m"), (-3, "0s")])
def test_durations_read_as_an_operator_reads_them(seconds, shown):
    assert duration(seconds) == shown


def test_a_meter_reports_a_few_times_a_second_and_exactly_at_its_end():
    heard, clock = Heard(), Clock()
    meter = Meter(heard, "restore shop", clock=clock)
    for _ in range(1000):  # a second's worth of 64 KiB chunks at 64 MB/s
        meter.add(64 * 1024)
        clock.now += 0.001
    reports = [c for c in heard.calls if c[0] == "advanced"]
    assert 3 <= len(reports) <= 5, reports  # about every Meter.INTERVAL, not per chunk
    meter.close()
    assert heard.calls[-1] == ("advanced", "restore shop", 1000 * 64 * 1024, None)


def test_a_measured_meter_never_passes_its_total_and_tables_are_news_at_once():
    heard, clock = Heard(), Clock()
    meter = Meter(heard, "t", 100, clock=clock)
    meter.set(150)
    assert meter.done == 100
    meter.table_done()
    meter.table_done()  # within the interval, still reported: tables come seconds apart
    assert heard.calls[-1] == ("advanced", "t", 100, 2)


def test_a_task_tells_its_display_each_stage_and_its_end():
    heard = Heard()
    task = Task(heard, "restore shop")
    with task.stage("verifying", 10 * MiB) as meter:
        meter.add(10 * MiB)
    task.step("checking objects")
    task.done(True)
    assert heard.calls == [("stage", "restore shop", "verifying", 10 * MiB, None),
                           ("advanced", "restore shop", 10 * MiB, None),
                           ("advanced", "restore shop", 10 * MiB, None),
                           ("stage", "restore shop", "checking objects", None, None),
                           ("finished", "restore shop", True)]
    Task(None, "nobody watches").step("loading")  # no display: nothing to tell, nothing fails


def test_stage_lines_say_how_far_how_fast_and_how_long():
    assert stage_line("verifying", 300 * MiB, 1000 * MiB, 10) == \
        "verifying 300.0 MiB of 1000.0 MiB (30%), 30.0 MiB/s, 23s left"
    assert stage_line("loading", 0, 1000 * MiB, 0) == "loading 0 B of 1000.0 MiB (0%)"
    assert stage_line("downloading", 5 * MiB, None, 2) == "downloading 5.0 MiB, 2.5 MiB/s"
    assert stage_line("checking", 0, None, 3, 4, 20) == "checking 0 B, 4 of 20 tables"


def test_without_a_terminal_one_line_per_stage_and_one_now_and_then(caplog):
    clock = Clock()
    stages = StageLog(logging.getLogger("tenangdb.test.stages"), clock=clock)
    with caplog.at_level(logging.INFO, logger="tenangdb.test.stages"):
        stages.started("shop", "mysqldump", 3)  # a backup's row: it logs its own events
        stages.stage("restore shop", "downloading", int(1.2 * 1024 * MiB))
        for second in range(1, 70):  # a minute and more of progress reports, several a second
            clock.now += 1
            stages.advanced("restore shop", second * 10 * MiB)
        stages.stage("restore shop", "verifying", 1500 * MiB)
        stages.stage("restore shop", "loading", 1500 * MiB, 2)
        clock.now += 24
        stages.stage("restore shop", "checking objects")
        stages.finished("restore shop", True)
        stages.stage("verify shop-x", "verifying", 1)
        stages.finished("verify shop-x", False)
        stages.finished("never began", True)
    assert [r.getMessage() for r in caplog.records] == [
        "restore shop: downloading 1.2 GiB",
        "restore shop: downloading 300.0 MiB of 1.2 GiB (24%), 10.0 MiB/s, 1m33s left",
        "restore shop: downloading 600.0 MiB of 1.2 GiB (48%), 10.0 MiB/s, 1m03s left",
        "restore shop: verifying 1.5 GiB",
        "restore shop: loading 1.5 GiB, 2 tables",
        "restore shop: checking objects",
        "restore shop: done in 1m33s",
        "verify shop-x: verifying 1 B",
        "verify shop-x: stopped after 0s",
    ]


def test_a_task_row_shows_its_stage_the_share_done_and_the_time_left():
    console = terminal(100)
    board = Board(console)
    board.stage("restore shop", "loading", 100 * MiB)
    board._rows["restore shop"].stage_started -= 10  # ten seconds into the load
    board.advanced("restore shop", 25 * MiB)
    board.started("orders", "mysqldump", 2)  # a backup's row beside it keeps its own columns
    console.print(board.render())
    task_row, backup_row = lines_of(console)
    assert task_row.split()[:3] == ["restore", "shop", "loading"]
    assert "25.0 MiB/100.0 MiB  25%" in task_row and "2.5 MiB/s" in task_row and "ETA 30s" in task_row
    assert "running" in backup_row and "mysqldump" in backup_row and "ETA" not in backup_row


def test_a_step_keeps_the_bytes_of_the_stage_before_and_drops_its_pace():
    console = terminal(100)
    board = Board(console)
    board.stage("restore shop", "loading", 100 * MiB)
    board.advanced("restore shop", 100 * MiB)
    board.stage("restore shop", "checking objects")
    board.finished("restore shop", True)
    console.print(board.render())
    [row] = lines_of(console)
    assert "done" in row and "100.0 MiB/100.0 MiB 100%" in row and "/s" not in row.split("%")[1]


@pytest.mark.parametrize("path, name", [
    ("remote:shop/2026-01/shop-2026-01-01_00-00-00", "shop-2026-01-01_00-00-00"),
    ("shop-2026-01-01_00-00-00", "shop-2026-01-01_00-00-00"),
    ("s3:bucket/tenangdb/shop/2026-01/shop-2026-01-01_00-00-00/", "shop-2026-01-01_00-00-00"),
    ("/tmp/tenangdb-remote-1-x/shop-2026-01-01_00-00-00", "shop-2026-01-01_00-00-00"),
    ("/backups/shop/2026-01/shop-2026-01-01_00-00-00/manifest.json", "shop-2026-01-01_00-00-00"),
    ("/backups/latest/shop", "shop"),
])
def test_a_download_and_its_verification_are_one_task(path, name):
    assert backup_name(path) == name


def test_a_download_in_progress_is_measured_by_what_has_arrived(tmp_path):
    assert folder_size(tmp_path / "not yet") == 0
    (tmp_path / "sub").mkdir()
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b.partial").write_bytes(b"y" * 5)
    assert folder_size(tmp_path) == 15
