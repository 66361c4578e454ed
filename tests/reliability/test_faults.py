"""Faults, for every HTTP backend: a worker killed with SIGKILL, the parent killed with SIGKILL, an app
that does not import (alone and under --workers).  (An exception in the app is checked against the
corpus server in test_corpus.py.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import Served, expect, record, run_app, serve_app
from tests.support import http_request

pytestmark = pytest.mark.server

FAULTS = "faults (--workers 2)"


def descendants(pid: int) -> set[int]:
    """Every live (not zombie) process below ``pid``."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return {p for p in found if _alive(p)}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _serving_pid(served: Served) -> int:
    reply = http_request(served.address, "GET", "/whoami", timeout=10)
    assert reply.status == 200, reply.describe()
    pid: int = reply.json()["pid"]
    return pid


def test_killed_worker_is_replaced_and_the_server_keeps_answering(request: pytest.FixtureRequest, backend: str,
                                                                  tmp_path: Path) -> None:
    expect(request, backend, "worker_killed")
    served = serve_app(backend, "--workers", "2", tmp_path=tmp_path)
    try:
        before = descendants(served.process.pid)
        victim = _serving_pid(served)
        assert victim != served.process.pid, "the app runs in the launcher's own process: no worker to kill"
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        statuses = []
        for _ in range(20):
            try:
                statuses.append(http_request(served.address, "GET", "/", timeout=10).status)
            except OSError as exc:
                statuses.append(repr(exc))
        deadline = start + 10
        while time.monotonic() < deadline:
            now = descendants(served.process.pid)
            if len(now) >= len(before) and victim not in now:
                break
            time.sleep(0.05)
        replaced = round(time.monotonic() - start, 2)
        record(FAULTS, backend, "worker killed: answers after", f"{statuses.count(200)}/20")
        record(FAULTS, backend, "worker killed: processes back in s", replaced if len(now) >= len(before) else "no")
        assert statuses == [200] * 20, f"after the kill: {statuses}"
        assert victim not in now and len(now) >= len(before), (
            f"processes below the launcher: {sorted(before)} before, {sorted(now)} 10 s after killing {victim}")
        assert served.process.alive()
    finally:
        served.stop()


def test_killed_parent_leaves_no_worker_serving(request: pytest.FixtureRequest, backend: str,
                                               tmp_path: Path) -> None:
    expect(request, backend, "parent_killed")
    served = serve_app(backend, "--workers", "2", tmp_path=tmp_path)
    try:
        workers = descendants(served.process.pid)
        assert workers, "no worker processes"
        os.kill(served.process.pid, signal.SIGKILL)
        start = time.monotonic()
        alive = set(workers)
        answering = True
        while time.monotonic() - start < 10:
            alive = {pid for pid in alive if _alive(pid)}
            try:
                http_request(served.address, "GET", "/", timeout=1)
                answering = True
            except OSError:
                answering = False
            if not alive and not answering:
                break
            time.sleep(0.1)
        took = time.monotonic() - start
        gone = round(took, 1) if not alive else f"> 10 ({len(alive)} left)"
        record(FAULTS, backend, "parent killed: workers gone in s", gone)
        assert not alive and not answering, f"{len(alive)} worker(s) still alive 10 s after the parent's SIGKILL"
        assert took <= 5, f"workers outlived their parent by {took:.1f}s"
    finally:
        served.process.kill_group()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(("app", "needle"), [
    ("tests.reliability.no_such_module:app", "cannot import module 'tests.reliability.no_such_module'"),
    ("tests.reliability.broken_app:app", "raised RuntimeError: reliability-broken-at-import"),
], ids=["missing-module", "raises-at-import"])
def test_app_that_does_not_import_exits_non_zero_and_is_not_respawned(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path, workers: str, app: str, needle: str) -> None:
    expect(request, backend, f"import_error_w{workers}")
    done = run_app(backend, "--workers", workers, app=app, tmp_path=tmp_path, timeout=20)
    what = "missing module" if "no_such_module" in app else "raises at import"
    record("app that does not import: exit code", backend, f"{what}, --workers {workers}", done.returncode)
    assert not done.became_ready, done.describe()
    assert done.returncode not in (0, None), done.describe()
    assert done.elapsed < 15, f"took {done.elapsed:.1f}s to give up\n{done.describe()}"
    assert needle in done.stderr, done.describe()
    # Not respawned in a loop: the message comes once per worker at most (and once more from the parent).
    assert done.stderr.count(needle) <= int(workers) + 1, done.describe()
