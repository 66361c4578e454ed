"""The shared pre-fork supervisor: faults, restarts and a boot failure that must not loop."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support import http_request, run_serve, start_serve

pytestmark = pytest.mark.server


def _pids(server: object, n: int = 40) -> set[int]:
    seen = set()
    for _ in range(n):
        body = http_request(server.url, "GET", "/slow?t=0").json()  # type: ignore[attr-defined]
        seen.add(body["pid"])
    return seen


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def test_killed_worker_is_replaced(tmp_path: Path) -> None:
    with start_serve(["--backend", "waitress", "-b", "127.0.0.1:0", "-w", "2", "tests.contract.app:app"],
                     tmp_path=tmp_path) as server:
        workers = _children(server.pid)
        assert len(workers) == 2
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = _children(server.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        assert len(now) == 2 and victim not in now
        assert http_request(server.url, "GET", "/").status == 200
        assert "exited; starting a new one" in server.output()
        assert server.stop() == 0


def test_app_that_fails_to_import_does_not_respawn_forever(tmp_path: Path) -> None:
    done = run_serve(["--backend", "waitress", "-b", "127.0.0.1:0", "-w", "3", "no_such_module_xyz:app"],
                     tmp_path=tmp_path, timeout=20)
    assert done.returncode == 4
    assert done.elapsed < 15
    assert done.stderr.count("cannot import module 'no_such_module_xyz'") >= 1
    assert "Traceback" not in done.stderr


def test_parent_killed_leaves_no_worker_serving(tmp_path: Path) -> None:
    server = start_serve(["--backend", "waitress", "-b", "127.0.0.1:0", "-w", "2", "tests.contract.app:app"],
                         tmp_path=tmp_path)
    workers = _children(server.pid)
    assert len(workers) == 2
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    alive = set(workers)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists() and
                 Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"}
        time.sleep(0.05)
    server.kill_group()
    assert not alive, f"workers {alive} outlived their supervisor by 5 s"


def test_max_requests_restarts_a_worker(tmp_path: Path) -> None:
    with start_serve(["--backend", "waitress", "-b", "127.0.0.1:0", "--max-requests", "5",
                      "tests.contract.app:app"], tmp_path=tmp_path) as server:
        pids = _pids(server, 12)
        assert len(pids) >= 2, "the worker was not replaced after 5 requests"
        assert server.stop() == 0


def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with start_serve(["--backend", "waitress", "-b", "127.0.0.1:0", "-w", "2", "tests.contract.app:app"],
                     tmp_path=tmp_path) as server:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(http_request, server.url, "GET", "/slow?t=1.5") for _ in range(6)]
            time.sleep(0.5)
            server.signal(signal.SIGTERM)
            statuses = [f.result(timeout=20).status for f in futures]
        assert statuses == [200] * 6
        assert server.wait(20) == 0
