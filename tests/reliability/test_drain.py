"""SIGTERM with requests in flight, for every HTTP backend.

Drain: N requests in flight (seen by the app) and an idle keep-alive connection; SIGTERM; every
request is answered 200, the idle connection is closed, the server exits 0 well before
--graceful-timeout.  Cut-off: requests that outlive --graceful-timeout; the server exits 1 within
the deadline plus the launcher's grace and says how many requests it cut off.
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import Served, expect, record, serve_app
from tests.support import http_request

pytestmark = pytest.mark.server

IN_FLIGHT = 4
SLOW = 1.5
DRAIN = "drain: SIGTERM with requests in flight"


def _wait_started(served: Served, count: int, path: str = "/slow", timeout: float = 10.0) -> int:
    """Wait until the app has been called ``count`` times for ``path``; how many it saw."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = sum(1 for c in served.calls() if c["path"] == path and c["phase"] == "start")
        if seen >= count:
            break
        time.sleep(0.02)
    return seen


def _fire(served: Served, count: int, seconds: float) -> tuple[concurrent.futures.ThreadPoolExecutor, list[Any]]:
    pool = concurrent.futures.ThreadPoolExecutor(count)
    futures = [pool.submit(http_request, served.address, "GET", f"/slow?t={seconds}", None, None, 30)
               for _ in range(count)]
    return pool, futures


def test_sigterm_answers_every_request_in_flight_and_exits_0(request: pytest.FixtureRequest, backend: str,
                                                             tmp_path: Path) -> None:
    expect(request, backend, "drain")
    served = serve_app(backend, "--graceful-timeout", "15", tmp_path=tmp_path)
    idle = socket.create_connection(served.address, timeout=10)
    pool, futures = _fire(served, IN_FLIGHT, SLOW)
    try:
        # An idle keep-alive connection: one request answered, then nothing.
        idle.sendall(b"GET /p/idle HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = b""
        while not reply.endswith(b"ok 0"):  # the whole response (head and body may come apart)
            got = idle.recv(65536)
            assert got, f"closed after {reply!r}"
            reply += got
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        started = _wait_started(served, IN_FLIGHT)
        assert started == IN_FLIGHT, f"only {started} of {IN_FLIGHT} requests reached the app"
        sent = time.monotonic()
        served.process.signal(signal.SIGTERM)
        try:
            code = served.process.wait(15 + 5)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 20 s after SIGTERM (--graceful-timeout 15)")
        took = time.monotonic() - sent
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=10).status)
            except Exception as exc:
                outcomes.append(repr(exc))
        idle.settimeout(2)
        try:
            leftover = idle.recv(65536)
            idle_closed = leftover == b""
        except OSError:
            leftover, idle_closed = b"", True
        answered = outcomes.count(200)
        record(DRAIN, backend, "in flight", IN_FLIGHT)
        record(DRAIN, backend, "answered", answered)
        record(DRAIN, backend, "exit code", code)
        record(DRAIN, backend, "seconds to exit", round(took, 1))
        assert answered == IN_FLIGHT, f"answers: {outcomes}"
        assert code == 0, f"exit code {code} after a drain that answered everything"
        assert idle_closed, f"the idle keep-alive connection was left open (then sent {leftover[:100]!r})"
        assert took < SLOW + 5, f"took {took:.1f}s to stop: something held the drain"
    finally:
        idle.close()
        pool.shutdown(wait=False, cancel_futures=True)
        served.stop()


def test_requests_past_the_graceful_timeout_exit_1_and_are_counted(request: pytest.FixtureRequest, backend: str,
                                                                   tmp_path: Path) -> None:
    expect(request, backend, "cut_off")
    graceful = 1.0
    cut = 2
    served = serve_app(backend, "--graceful-timeout", str(graceful), tmp_path=tmp_path)
    pool, _ = _fire(served, cut, 20)
    try:
        started = _wait_started(served, cut)
        assert started == cut, f"only {started} of {cut} requests reached the app"
        sent = time.monotonic()
        served.process.signal(signal.SIGTERM)
        try:
            code = served.process.wait(graceful + 3 + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {graceful + 8:g}s after SIGTERM (--graceful-timeout {graceful:g})")
        took = time.monotonic() - sent
        output = served.process.output()
        counts = [int(n) for n in re.findall(r"(\d+) request\(s\) cut off", output)]
        record("drain: past --graceful-timeout 1 s", backend, "in flight", cut)
        record("drain: past --graceful-timeout 1 s", backend, "exit code", code)
        record("drain: past --graceful-timeout 1 s", backend, "reported cut off", counts[-1] if counts else "-")
        assert code == 1, f"exit code {code} although {cut} requests were cut off"
        assert counts and counts[-1] == cut, f"no 'N request(s) cut off' line saying {cut}:\n{output[-2000:]}"
        assert took < graceful + 3 + 1.5, f"exited {took:.1f}s after SIGTERM"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        served.stop()
