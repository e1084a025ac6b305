"""Fixtures for the reliability tests: real server processes, always killed at teardown."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.reliability._support import ServerProcess

ServerFactory = Callable[..., ServerProcess]
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """``server_factory(HEARTBEAT_INTERVAL=0.5, …)`` → a (not yet started) ServerProcess."""
    servers: list[ServerProcess] = []

    def factory(**settings: str | int | float | bool) -> ServerProcess:
        server = ServerProcess(tmp_path / f"node{len(servers)}", **settings)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.cleanup()
        if request.node.stash.get(_FAILED, False):
            # Shown with the failure: what the node said (tracebacks, warnings).
            print(f"--- {server.log_path}\n{server.log_tail(200)}")
