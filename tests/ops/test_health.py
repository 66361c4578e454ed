"""--health-path (issue 7, point 3), per backend, as a load balancer uses it.

* /healthz is answered 200 "ready" without calling the app (the app records every call it gets).
* After SIGTERM, on a keep-alive connection opened before, while a slow request is in flight,
  /healthz answers 503 "draining", and keeps answering it until the server exits (the load
  balancer must see the instance go, not lose the connection it probes on).
* Health checks are not requests in flight: a server probed non-stop still exits promptly.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.ops.helpers import (
    APP,
    AppState,
    Background,
    clean_env,
    launch,
    serve_command,
    terminate,
    wait_exit,
    wait_ready,
)
from tests.support import Connection, ServeProcess, backend_names, http_request, require_backend

pytestmark = pytest.mark.server

HEALTH = "/healthz"
#: Seconds a SIGTERM may take to reach the server's handler (the first answers may still be 200).
SIGNAL_DELAY = 1.0
SLOW = 1.5
POLL = 0.05


def _start(backend: str, tmp_path: Path, state: AppState, graceful: int) -> ServeProcess:
    args = ["--backend", backend, "--bind", "127.0.0.1:0", "--health-path", HEALTH,
            "--graceful-timeout", str(graceful), APP]
    process = launch(serve_command(args, tmp_path / "ready.json"), tmp_path=tmp_path,
                     env=clean_env(**state.env()), label=f"{backend} --health-path")
    wait_ready(process, confirm=HEALTH)
    return process


@pytest.mark.parametrize("backend", backend_names("http"))
def test_health_ready_without_the_app_then_draining_until_exit(backend: str, tmp_path: Path,
                                                              app_state: AppState) -> None:
    require_backend(backend)
    process = _start(backend, tmp_path, app_state, graceful=10)
    try:
        address = process.address
        before = app_state.call_paths()
        assert HEALTH not in before, f"the app was called for {HEALTH} (readiness probe): {before}"
        probe = Connection(address, timeout=5).connect()
        for _ in range(3):
            resp = probe.request("GET", HEALTH)
            assert (resp.status, resp.body) == (200, b"ready\n"), resp.describe()
            assert not resp.will_close, f"the health answer closed the keep-alive connection: {resp.describe()}"
        head = probe.request("HEAD", HEALTH)
        assert (head.status, head.body) == (200, b""), head.describe()
        fresh = http_request(address, "GET", HEALTH, timeout=5)
        assert (fresh.status, fresh.body) == (200, b"ready\n"), fresh.describe()
        assert app_state.call_paths() == before, "a health check reached the app"
        assert http_request(address, "GET", "/", timeout=5).status == 200
        assert app_state.call_paths() == [*before, "/"], "the app's calls are not counted (the test cannot see them)"

        slow = Background(lambda: http_request(address, "GET", f"/slow?t={SLOW}", timeout=30))
        app_state.wait_for_call("/slow", time.monotonic() + 10, process)
        sent = terminate(process)
        answers: list[tuple[float, int, bytes]] = []
        ended = ""
        deadline = sent + SLOW + 10
        while time.monotonic() < deadline:
            try:
                resp = probe.request("GET", HEALTH)
            except Exception as exc:  # the server closed the connection or exited: the end
                ended = f"{type(exc).__name__}: {exc}"
                break
            answers.append((time.monotonic() - sent, resp.status, resp.body))
            if resp.will_close:
                ended = "the server closed the connection after an answer"
                break
            time.sleep(POLL)
        closed_at = time.monotonic() - sent
        probe.close()
        result = slow.result(15)
        code = wait_exit(process, 15)
    finally:
        process.stop()
    shown = ", ".join(f"{t:.2f}s:{status}" for t, status, _ in answers)
    assert (result.status, result.body) == (200, b"slow done"), f"the in-flight request: {result.describe()}"
    assert code == 0, f"exit code {code}"
    first_503 = next((i for i, (_, status, _) in enumerate(answers) if status == 503), None)
    assert first_503 is not None, f"/healthz never answered 503 after SIGTERM; answers: {shown}; end: {ended}"
    early = answers[:first_503]
    assert all(status == 200 and t < SIGNAL_DELAY for t, status, _ in early), (
        f"/healthz answered 200 after SIGTERM for too long (or something else): {shown}")
    rest = answers[first_503:]
    assert all((status, body) == (503, b"draining\n") for _, status, body in rest), (
        f"after the first 503, /healthz must answer 503 'draining' until the exit: {shown}")
    assert slow.finished_at is not None
    in_flight_until = slow.finished_at - sent
    assert closed_at >= in_flight_until - 0.2, (
        f"the keep-alive connection stopped answering {closed_at:.2f}s after SIGTERM ({ended}), while a request"
        f" was in flight until {in_flight_until:.2f}s: a load balancer cannot see the instance drain; answers: {shown}")
    assert app_state.call_paths() == [*before, "/", "/slow"], f"calls of the app: {app_state.call_paths()}"


@pytest.mark.parametrize("backend", backend_names("http"))
def test_health_probes_do_not_hold_up_the_exit(backend: str, tmp_path: Path, app_state: AppState) -> None:
    require_backend(backend)
    graceful = 20
    process = _start(backend, tmp_path, app_state, graceful=graceful)
    before = app_state.call_paths()
    stop = threading.Event()
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        conn = Connection(process.address, timeout=5)
        try:
            while not stop.is_set():
                resp = conn.request("GET", HEALTH)
                with lock:
                    statuses.append(resp.status)
                if resp.will_close:
                    return
        except Exception:  # refused, reset or closed: the server is going
            return
        finally:
            conn.close()

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        with lock:
            probed = len(statuses)
        assert probed > 0 and set(statuses) == {200}, f"before SIGTERM: {probed} probes, statuses {set(statuses)}"
        sent = terminate(process)
        try:
            code = process.wait(graceful)
        except Exception:
            code = None
        took = time.monotonic() - sent
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        process.stop()
    print(f"{backend}: {len(statuses)} health probes, exit {took:.2f}s after SIGTERM")
    assert code is not None, f"still running {graceful}s after SIGTERM while only health checks arrived"
    assert took < 3.0, f"the exit took {took:.2f}s while only health checks arrived (nothing in flight)"
    assert code == 0, f"exit code {code}"
    assert "cut off" not in process.stderr(), "health checks were counted as requests cut off"
    assert app_state.call_paths() == before, "a health check reached the app"
