"""The unit tier: pure builders, parsers and policy, runnable alone in seconds
(`./scripts/test tests/unit` or `./scripts/test -m unit`). Everything here is marked `unit`;
nothing here may start a server."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # A conftest's collection hook sees the whole session's items: mark only the ones here.
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def server():
    pytest.fail("a unit test starts no server: put it beside the end-to-end tests in tests/")


@pytest.fixture(scope="session")
def binlog_server():
    pytest.fail("a unit test starts no server: put it beside the end-to-end tests in tests/")
