"""--health-path (issue 7, point 3), per backend, as a load balancer uses it.

* /healthz is answered 200 "ready" without calling the app (the app records every call it gets).
* After SIGTERM, while a slow request is in flight, /healthz never answers 200 again (once the
  signal had time to arrive) and answers 503 "draining" on a connection opened before SIGTERM.
  A server may close its connections during the drain (closing idle keep-alive connections is
  what a drain asks for): a 503 with ``Connection: close`` and then the end of the connection is
  fine, and so is an idle connection closed without an answer.  So that a server closing idle
  connections at once still has to show its 503, a second connection is busy at SIGTERM (the
  server has begun reading a /healthz request on it; a drain finishes what it has begun to
  receive) and its request is completed once the server must be draining.  At least one 503 on
  those two connections, no 200 after the first 503 or after the signal delay.
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
#: Seconds after SIGTERM the busy connection's /healthz request is completed: the server must be
#: draining by then, and the slow request (SLOW) keeps it running well past it.
HELD_AT = SIGNAL_DELAY


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

        # The busy connection: the server has accepted it and is reading a /healthz request head,
        # all but its final CRLF, when SIGTERM arrives.
        held = Connection(address, timeout=5).connect()
        held_head = held.build_request("GET", HEALTH)
        held.send_raw(held_head[:-2])
        slow = Background(lambda: http_request(address, "GET", f"/slow?t={SLOW}", timeout=30))
        app_state.wait_for_call("/slow", time.monotonic() + 10, process)
        sent = terminate(process)

        def complete_held() -> tuple[float, int, bytes]:
            time.sleep(max(0.0, sent + HELD_AT - time.monotonic()))
            held.send_raw(held_head[-2:])
            resp = held.read_response()
            return time.monotonic() - sent, resp.status, resp.body

        held_answer = Background(complete_held)
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
        probe.close()
        try:
            held_result: tuple[float, int, bytes] | None = held_answer.result(15)
            held_end = ""
        except Exception as exc:  # closed without an answer
            held_result, held_end = None, f"{type(exc).__name__}: {exc}"
        held.close()
        result = slow.result(15)
        code = wait_exit(process, 15)
    finally:
        process.stop()
    shown = ", ".join(f"{t:.2f}s:{status}" for t, status, _ in answers)
    shown_held = f"{held_result[0]:.2f}s:{held_result[1]}" if held_result else f"no answer ({held_end})"
    shown += f"; end: {ended}; the busy connection: {shown_held}"
    assert (result.status, result.body) == (200, b"slow done"), f"the in-flight request: {result.describe()}"
    assert code == 0, f"exit code {code}"
    first_503 = next((i for i, (_, status, _) in enumerate(answers) if status == 503), None)
    early = answers if first_503 is None else answers[:first_503]
    assert all(status == 200 and t < SIGNAL_DELAY for t, status, _ in early), (
        f"/healthz answered 200 after SIGTERM for too long (or something else): {shown}")
    rest = [] if first_503 is None else answers[first_503:]
    assert all((status, body) == (503, b"draining\n") for _, status, body in rest), (
        f"after the first 503, /healthz must answer 503 'draining' until the connection ends: {shown}")
    if held_result is not None:
        assert held_result[1:] == (503, b"draining\n"), (
            f"/healthz completed {HELD_AT:g}s after SIGTERM on the busy connection must answer 503 'draining':"
            f" {shown}")
    assert first_503 is not None or held_result is not None, (
        f"/healthz never answered 503 after SIGTERM on a connection opened before it: {shown}")
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
