"""waitress specifics the contract and reliability suites do not cover: its queue-depth warning,
which came for about one request in three under load, comes at most once per interval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import ServeProcess, contract_args, http_request, parallel, require_backend

Serve = Callable[..., ServeProcess]


@pytest.fixture(autouse=True)
def _waitress_installed() -> None:
    require_backend("waitress")


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)


def test_queue_depth_warnings_are_folded_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.waitress as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    recorder = _Recorder()
    log = module.QueueDepthLog(recorder, interval=10.0)
    log.warning("Task queue depth is %d", 1)  # the first goes out as waitress wrote it
    for depth in (2, 5, 3):
        clock[0] += 1
        log.warning("Task queue depth is %d", depth)
    assert recorder.lines == ["Task queue depth is 1"]
    clock[0] += 10
    log.warning("Task queue depth is %d", 1)
    assert recorder.lines[1].startswith("Task queue depth is 1 (3 more such warnings in the last 10s, the deepest 5")
    clock[0] += 11
    log.warning("Task queue depth is %d", 2)  # nothing folded since: waitress's own line again
    assert recorder.lines[2:] == ["Task queue depth is 2"]


@pytest.mark.server
def test_a_saturated_server_warns_once_not_per_request(serve: Serve) -> None:
    """One thread, 30 concurrent slow requests: waitress alone warned for most of them."""
    server = serve(contract_args("waitress", "127.0.0.1:0", "--threads", "1"))
    results = parallel(lambda: http_request(server.address, "GET", "/slow?t=0.05", timeout=30),
                       [()] * 30, timeout=60)
    failed = [r for r in results if isinstance(r, BaseException) or r.status != 200]
    assert not failed, failed
    warnings = [line for line in server.stderr().splitlines() if "Task queue depth" in line]
    assert 1 <= len(warnings) <= 2, warnings
