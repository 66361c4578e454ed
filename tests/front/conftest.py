"""Front-server tests: attach the front servers' own logs to a failing test, and leave none behind."""

from __future__ import annotations

from typing import Any

import pytest

from tests.front import servers


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.failed:
        for front in servers.live_fronts():
            report.sections.append((f"front server {front.label}", front.output() or "(no output)"))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    servers.kill_all()
