"""The gevent backend's own guarantees, on real ``python -m launcher --backend gevent`` servers.

The shared contract suite (tests/contract) covers PEP 3333 and the common lifecycle; this file
covers what is specific to gevent: the process is monkey-patched before the app is imported
(proved in a fresh interpreter and by behaviour), the pre-fork master stays unpatched, TCP_NODELAY,
the drain that neither cuts in-flight requests after gevent's 1 s nor waits for idle keep-alive
clients, the hard deadline and second SIGINT behind a greenlet that never yields, the keep-alive
idle timeout, --connections as the greenlet pool, and the options it refuses.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import (
    REPO,
    Connection,
    ServeProcess,
    contract_args,
    http_request,
    parallel,
    require_backend,
    run_serve,
)

pytestmark = pytest.mark.server

Serve = Callable[..., ServeProcess]

PROBE_APP = textwrap.dedent('''
    """Records, at import time, whether the launcher patched the process before importing it."""
    import json
    import os
    import time

    from gevent import monkey  # importing gevent patches nothing by itself

    PATCHED = {name: monkey.is_module_patched(name) for name in ("socket", "time", "threading")}


    def app(environ, start_response):
        if environ["PATH_INFO"] == "/sleep":
            time.sleep(0.5)  # blocks the whole process unless time is patched
        if environ["PATH_INFO"] == "/spin":
            end = time.monotonic() + 15
            while time.monotonic() < end:  # CPU-bound: never yields to the other greenlets
                pass
        body = json.dumps({"patched": PATCHED, "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')


@pytest.fixture(autouse=True)
def _gevent_installed() -> None:
    require_backend("gevent")


@pytest.fixture
def probe_app(tmp_path: Path) -> list[str]:
    """Launcher arguments that serve PROBE_APP, written into tmp_path (a fresh module)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "gevent_probe_app.py").write_text(PROBE_APP)
    return ["--pythonpath", str(app_dir), "gevent_probe_app:app"]


def _gevent_args(*extra: str, bind: str = "127.0.0.1:0") -> list[str]:
    return ["--backend", "gevent", "--bind", bind, *extra]


def _stop(server: ServeProcess, timeout: float = 10) -> int:
    server.signal(signal.SIGTERM)
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout}s after SIGTERM\n{server.output()}")


def _maps_gevent(pid: int) -> bool:
    """Whether process ``pid`` has gevent's compiled modules mapped (i.e. imported gevent)."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
        return "gevent" in fh.read()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return found


# -- import order -----------------------------------------------------------------------------


def test_importing_the_backend_imports_no_gevent() -> None:
    code = "import sys, backends.gevent, launcher.cli; print(sorted(m for m in sys.modules if 'gevent' in m))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['backends.gevent']", out.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_patched_before_the_app_is_imported(serve: Serve, probe_app: list[str], workers: str) -> None:
    server = serve(_gevent_args("--workers", workers, *probe_app))
    pids = set()
    for _ in range(6 if workers == "2" else 1):
        data = http_request(server.address, "GET", "/", timeout=5).json()
        assert data["patched"] == {"socket": True, "time": True, "threading": True}, data
        pids.add(data["pid"])
    if workers == "2":
        assert server.pid not in pids, "the pre-fork master answered a request itself"
    assert _stop(server) == 0
    err = server.stderr()
    assert "MonkeyPatchWarning" not in err, err
    assert "Traceback" not in err, err


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_prefork_master_stays_unpatched(serve: Serve, probe_app: list[str]) -> None:
    server = serve(_gevent_args("--workers", "2", *probe_app))
    workers = _children(server.pid)
    assert len(workers) == 2, f"expected 2 workers, found {workers}"
    assert not _maps_gevent(server.pid), "the supervisor imported gevent: it must stay unpatched"
    assert all(_maps_gevent(pid) for pid in workers), "a worker has no gevent loaded"
    assert _stop(server) == 0


def test_sleeping_requests_run_concurrently(serve: Serve, probe_app: list[str]) -> None:
    server = serve(_gevent_args("--workers", "1", *probe_app))
    start = time.monotonic()
    results = parallel(lambda: http_request(server.address, "GET", "/sleep", timeout=15), [()] * 10,
                       timeout=20)
    elapsed = time.monotonic() - start
    failed = [r for r in results if isinstance(r, BaseException) or r.status != 200]
    assert not failed, failed
    # Unpatched, the ten 0.5 s sleeps serialise to 5 s.
    assert elapsed < 2.5, f"10 concurrent 0.5 s requests took {elapsed:.2f}s: time.sleep is not patched?"


def test_the_startup_line_says_how_many_connections_a_worker_serves(serve: Serve, probe_app: list[str]) -> None:
    """gevent serves a greenlet per connection: the startup line gives --connections, not threads."""
    server = serve(_gevent_args("--workers", "1", "--connections", "37", *probe_app))
    line = next((text for text in server.stderr().splitlines() if " serving " in text), "")
    assert "(pid " in line and "1 worker, up to 37 connections each)" in line, server.output()
    assert "thread" not in line, line


# -- TCP_NODELAY --------------------------------------------------------------------------------


def test_keepalive_responses_do_not_wait_for_delayed_ack(serve: Serve) -> None:
    server = serve(contract_args("gevent"))
    with Connection(server.address, timeout=5) as conn:
        conn.request("GET", "/")
        start = time.monotonic()
        for _ in range(20):
            resp = conn.request("GET", "/")
            assert (resp.status, resp.body, resp.will_close) == (200, b"hello", False), resp.describe()
        elapsed = time.monotonic() - start
    # With Nagle's algorithm on, each response's body waits ~40 ms for the client's delayed ACK
    # (measured: 0.9 s for 20 requests; 5 ms with TCP_NODELAY).
    assert elapsed < 0.5, f"20 keep-alive requests took {elapsed:.3f}s: TCP_NODELAY not set?"


# -- stopping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_answers_four_in_flight_requests(serve: Serve, workers: str) -> None:
    server = serve(contract_args("gevent", "127.0.0.1:0", "--workers", workers, "--graceful-timeout", "10"))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=15) for _ in range(4)]
        time.sleep(0.6)
        assert not any(f.done() for f in futures), [f.result() for f in futures if f.done()]
        sent = time.monotonic()
        rc = _stop(server, timeout=15)
        took = time.monotonic() - sent
        statuses = []
        for f in futures:
            try:
                statuses.append(f.result(timeout=5).status)
            except Exception as exc:
                statuses.append(repr(exc))
    # gevent's own stop() would have killed them one second after the signal.
    assert statuses == [200] * 4, f"{statuses} (exit {rc} after {took:.2f}s)\n{server.output()}"
    assert rc == 0, server.output()
    assert took < 5, f"exit {took:.2f}s after SIGTERM with 2 s requests in flight"


def test_idle_keepalive_connections_do_not_hold_the_stop(serve: Serve) -> None:
    # --keepalive 60: only the drain, not the idle timeout, may close the idle connections.
    server = serve(contract_args("gevent", "127.0.0.1:0", "--keepalive", "60", "--graceful-timeout", "10"))
    idle, late = Connection(server.address, timeout=10), Connection(server.address, timeout=10)
    with idle, late, concurrent.futures.ThreadPoolExecutor(1) as pool:
        for conn in (idle, late):
            resp = conn.request("GET", "/")
            assert (resp.status, resp.will_close) == (200, False), resp.describe()
        in_flight = pool.submit(http_request, server.address, "GET", "/slow?t=1.5", timeout=10)
        time.sleep(0.4)
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        # A request on an open keep-alive connection during the drain is still answered, and the
        # server says the connection ends there.
        during = late.request("GET", "/")
        assert during.status == 200 and during.will_close, during.describe()
        resp = in_flight.result(timeout=10)
        done = time.monotonic()
        assert resp.status == 200, resp.describe()
        try:
            rc = server.wait(5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"an idle keep-alive connection held the stop\n{server.output()}")
        after = time.monotonic() - done
        assert rc == 0, server.output()
        assert after < 0.8, f"exited {after:.2f}s after the last in-flight request finished"
        assert idle.read_extra(2.0) == b"" and idle.server_closed, "the idle connection was not closed"


def _spin(server: ServeProcess) -> concurrent.futures.Future[object]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(http_request, server.address, "GET", "/spin", timeout=20)
    pool.shutdown(wait=False)
    time.sleep(0.5)
    assert not future.done(), future.result()
    return future  # type: ignore[return-value]


def test_greenlet_that_never_yields_is_cut_off_at_the_deadline(serve: Serve, probe_app: list[str]) -> None:
    server = serve(_gevent_args("--graceful-timeout", "1", *probe_app))
    _spin(server)
    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    try:
        rc = server.wait(12)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a busy greenlet kept the server running 12 s after SIGTERM\n{server.output()}")
    took = time.monotonic() - sent
    assert rc == 1, server.output()
    assert "did not stop within 1s" in server.stderr(), server.output()
    # --graceful-timeout 1 plus the launcher's 3 s of grace (and half a second of ours).
    assert 3.5 < took < 8, f"exit {took:.2f}s after SIGTERM"


def test_second_sigint_exits_at_once_behind_a_busy_greenlet(serve: Serve, probe_app: list[str]) -> None:
    server = serve(_gevent_args("--graceful-timeout", "30", *probe_app))
    _spin(server)
    server.signal(signal.SIGINT)
    time.sleep(0.3)
    assert server.proc.poll() is None, f"exited on the first SIGINT\n{server.output()}"
    server.signal(signal.SIGINT)
    try:
        rc = server.wait(3)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a second SIGINT did not stop the server within 3 s\n{server.output()}")
    assert rc == 130, server.output()


def test_keepalive_timeout_closes_idle_connections(serve: Serve) -> None:
    server = serve(contract_args("gevent", "127.0.0.1:0", "--keepalive", "0.5"))
    with Connection(server.address, timeout=10) as conn:
        resp = conn.request("GET", "/")
        assert (resp.status, resp.will_close) == (200, False), resp.describe()
        idle_from = time.monotonic()
        assert conn.read_extra(4.0) == b""
        closed_after = time.monotonic() - idle_from
        assert conn.server_closed, "an idle connection stayed open past --keepalive 0.5"
    assert 0.3 < closed_after < 3.0, f"closed after {closed_after:.2f}s idle with --keepalive 0.5"


def test_keepalive_zero_closes_after_each_response(serve: Serve) -> None:
    server = serve(contract_args("gevent", "127.0.0.1:0", "--keepalive", "0"))
    with Connection(server.address, timeout=5) as conn:
        resp = conn.request("GET", "/")
        assert resp.status == 200 and resp.header("Connection") == "close", resp.describe()
        assert conn.read_extra(2.0) == b"" and conn.server_closed


def test_connections_limits_the_greenlet_pool(serve: Serve) -> None:
    server = serve(contract_args("gevent", "127.0.0.1:0", "--connections", "1", "--keepalive", "30"))
    with Connection(server.address, timeout=5) as first, Connection(server.address, timeout=5) as second:
        assert first.request("GET", "/").status == 200
        second.send_request("GET", "/")  # connected by the kernel, not accepted: the pool is full
        assert second.read_extra(0.8) == b"", "a second connection was served with --connections 1"
        first.close()
        resp = second.read_response()
        assert (resp.status, resp.body) == (200, b"hello"), resp.describe()


# -- options it cannot honour ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "mentions"), [
    (["--threads", "8"], "--threads"),
    (["--timeout", "5"], "--timeout"),
    (["-o", "max_acept=4"], "max_accept"),
], ids=["threads", "timeout", "option-typo"])
def test_rejected_before_start(tmp_path: Path, args: list[str], mentions: str) -> None:
    fin = run_serve(contract_args("gevent", "127.0.0.1:0", *args), tmp_path=tmp_path, timeout=15)
    assert not fin.became_ready and fin.returncode == 2, fin.describe()
    lines = fin.stderr_lines()
    assert len(lines) == 1 and mentions in lines[0] and "Traceback" not in fin.stderr, fin.describe()
