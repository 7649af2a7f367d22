"""The live board, drawn into a recording console of a fixed width: rows never wider than the
terminal (names shortened, columns dropped), log lines printed whole above the board."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from tenangdb import logs
from tenangdb.cli.progress import Board

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
