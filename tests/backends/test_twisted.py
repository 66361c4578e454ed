"""The Twisted Web backend's own guarantees, on real ``python -m launcher --backend twisted`` servers.

The shared contract suite (tests/contract) covers PEP 3333 and the common lifecycle; this file
covers what is specific to Twisted: --threads really sizes the reactor's pool (fixed at 10
otherwise); --keepalive is the idle timeout (0: no keep-alive); SIGTERM with requests in flight
drains and exits 0 instead of deadlocking on the pool; idle keep-alive clients do not hold the
stop; a cut-off exits 1 without waiting for the watchdog; an app that raises mid-body does not
hold the drain (Twisted skips close()) and its traceback reaches stderr; Twisted prints nothing
per request; the pre-fork master never builds a reactor; an adopted unix socket keeps its mode and
survives a worker restart; --connections; and the options it refuses.
"""

from __future__ import annotations

import concurrent.futures
import os
import select
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    REPO,
    Connection,
    ServeProcess,
    connect,
    contract_args,
    http_request,
    parallel,
    require_backend,
    run_serve,
)

pytestmark = pytest.mark.server

Serve = Callable[..., ServeProcess]


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_backend("twisted")


def _args(*extra: str, bind: str = "127.0.0.1:0") -> list[str]:
    return contract_args("twisted", bind, *extra)


def _slow_burst(server: ServeProcess, count: int, seconds: float) -> tuple[float, list[Any]]:
    start = time.monotonic()
    results = parallel(lambda: http_request(server.address, "GET", f"/slow?t={seconds}", timeout=20),
                       [()] * count, timeout=30)
    return time.monotonic() - start, results


def _wait_exit(server: ServeProcess, timeout: float, what: str) -> int:
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout:g}s after {what}")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry))
    return kids


def _workers(server: ServeProcess, count: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        kids = _children(server.pid)
        if len(kids) == count or time.monotonic() > deadline:
            assert len(kids) == count, f"expected {count} workers under {server.pid}, found {kids}"
            return kids
        time.sleep(0.05)


def _catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a SIGTERM handler installed (the launcher installs it just before serving)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def _epoll_fds(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventpoll]":
                count += 1
        except OSError:
            pass
    return count


# -- the thread pool --------------------------------------------------------------------------


def test_threads_size_the_reactor_pool(serve: Serve) -> None:
    # Twisted's pool is created with a maximum of 10 whatever is asked: 8 requests would all run
    # at once with --threads 2 if the size were not applied.
    wide = serve(_args("--threads", "8"))
    narrow = serve(_args("--threads", "2"))
    wide_took, wide_results = _slow_burst(wide, 8, 0.5)
    narrow_took, narrow_results = _slow_burst(narrow, 8, 0.5)
    for results in (wide_results, narrow_results):
        bad = [r for r in results if isinstance(r, BaseException) or r.status != 200]
        assert not bad, bad
    wide_threads = {r.json()["thread"] for r in wide_results}
    narrow_threads = {r.json()["thread"] for r in narrow_results}
    assert len(wide_threads) == 8, f"--threads 8 ran 8 requests on {len(wide_threads)} threads"
    assert len(narrow_threads) <= 2, f"--threads 2 ran requests on {len(narrow_threads)} threads"
    assert wide_took < 1.5, f"--threads 8: 8 requests of 0.5 s took {wide_took:.2f}s"
    assert narrow_took >= 1.8, f"--threads 2: 8 requests of 0.5 s took only {narrow_took:.2f}s"


# -- keep-alive -------------------------------------------------------------------------------


def test_keepalive_is_the_idle_timeout(serve: Serve) -> None:
    server = serve(_args("--keepalive", "1"))
    with Connection(server.address) as conn:
        first = conn.request("GET", "/")
        assert first.status == 200 and not first.will_close, first.describe()
        idle_from = time.monotonic()
        assert conn.read_extra(5.0) == b""
        idle = time.monotonic() - idle_from
        assert conn.server_closed, "an idle connection outlived --keepalive 1 by 4 s"
    assert 0.7 <= idle < 4.0, f"closed after {idle:.2f}s idle with --keepalive 1"


def test_keepalive_zero_closes_after_each_response(serve: Serve) -> None:
    # Twisted reads a timeout of 0 as "never time out": 0 must mean no keep-alive instead.
    server = serve(_args("--keepalive", "0"))
    with Connection(server.address) as conn:
        resp = conn.request("GET", "/")
        assert resp.status == 200 and resp.will_close, resp.describe()
        assert conn.read_extra(2.0) == b"" and conn.server_closed


# -- stopping ---------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests_and_exits_zero(serve: Serve) -> None:
    # `reactor.run()` alone deadlocks here: its shutdown joins pool threads that wait for it.
    server = serve(_args("--graceful-timeout", "10"))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=20) for _ in range(4)]
        time.sleep(0.5)
        assert not any(f.done() for f in futures), "a 2 s request finished within 0.5 s"
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        rc = _wait_exit(server, 8, "SIGTERM with 4 requests in flight (--graceful-timeout 10)")
        took = time.monotonic() - sent
        statuses = [f.result(timeout=5).status for f in futures]
    assert statuses == [200] * 4, statuses
    assert rc == 0, f"exit code {rc}\n{server.output()}"
    assert took < 4.0, f"exited {took:.2f}s after SIGTERM; the requests needed ~1.5 s more"


def test_idle_keepalive_connection_does_not_hold_the_stop(serve: Serve) -> None:
    server = serve(_args("--keepalive", "30", "--graceful-timeout", "10"))
    with Connection(server.address, timeout=10) as idle:
        first = idle.request("GET", "/")
        assert first.status == 200 and not first.will_close, first.describe()
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        rc = _wait_exit(server, 5, "SIGTERM with one idle keep-alive connection")
        took = time.monotonic() - sent
        assert idle.read_extra(2.0) == b""
        assert idle.server_closed, "the idle keep-alive connection was left open"
    assert rc == 0, f"exit code {rc}\n{server.output()}"
    assert took < 3.0, f"an idle keep-alive connection held the stop for {took:.2f}s"


def test_keepalive_request_during_the_drain_is_answered_and_closed(serve: Serve) -> None:
    server = serve(_args("--keepalive", "30", "--graceful-timeout", "10"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool, Connection(server.address, timeout=10) as conn:
        assert conn.request("GET", "/").status == 200
        slow = pool.submit(http_request, server.address, "GET", "/slow?t=1.5", timeout=20)
        time.sleep(0.4)
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        late = conn.request("GET", "/")  # an accepted connection: served, then closed
        assert late.status == 200, late.describe()
        assert late.will_close, f"no Connection: close during the drain\n{late.describe()}"
        assert slow.result(timeout=10).status == 200
        rc = _wait_exit(server, 8, "SIGTERM")
    assert rc == 0, f"exit code {rc}\n{server.output()}"


def test_cut_off_past_the_graceful_timeout_exits_one_promptly(serve: Serve) -> None:
    graceful = 1.0
    server = serve(_args("--graceful-timeout", str(graceful)))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(http_request, server.address, "GET", "/slow?t=10", timeout=20)
        time.sleep(0.4)
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        rc = _wait_exit(server, graceful + 4, f"SIGTERM with --graceful-timeout {graceful:g}")
        took = time.monotonic() - sent
        try:
            stuck.result(timeout=5)
        except Exception:
            pass
    err = server.stderr()
    assert rc == 1, f"exit code {rc} although a request was cut off\n{err}"
    assert "1 request(s) cut off" in err, err
    # Not the launcher's watchdog (graceful + 3 s): the stuck pool thread must not hold the exit.
    assert "did not stop within" not in err, err
    assert took < graceful + 2.5, f"exit 1 came {took:.2f}s after SIGTERM"


def test_app_raising_mid_body_does_not_hold_the_drain(serve: Serve) -> None:
    # Twisted does not call close() when iterating the response raises; the in-flight count would
    # never drop and every stop would wait out the graceful timeout and exit 1.
    server = serve(_args("--graceful-timeout", "5"))
    for path in ("/error-after-start?partial=1", "/error-after-start", "/error"):
        try:
            http_request(server.address, "GET", path, timeout=5)
        except Exception:
            pass
    assert http_request(server.address, "GET", "/", timeout=5).status == 200
    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    rc = _wait_exit(server, 8, "SIGTERM")
    took = time.monotonic() - sent
    err = server.stderr()
    assert rc == 0, f"exit code {rc}\n{err}"
    assert took < 3.0, f"stop took {took:.2f}s after an app error"
    # The app's tracebacks reach stderr as the launcher's log lines (with the pid: which worker).
    assert err.count("RuntimeError: contract-secret-xyz") >= 2, err
    assert f"[{server.pid}] [CRITICAL] WSGI application error" in err, err


# -- output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("access_log", [False, True], ids=["quiet", "access-log"])
def test_nothing_printed_per_request_unless_access_log(serve: Serve, access_log: bool) -> None:
    token = uuid.uuid4().hex
    server = serve(_args(*(["--access-log"] if access_log else [])))
    with Connection(server.address) as conn:
        for _ in range(3):
            assert conn.request("GET", f"/environ/{token}").status == 200
    assert http_request(server.address, "GET", f"/missing-{token}").status == 404
    assert server.stop() == 0
    out, err = server.stdout(), server.stderr()
    assert out == "", f"stdout: {out!r}"
    mentions = [line for line in err.splitlines() if token in line]
    if access_log:
        assert len(mentions) == 4, f"--access-log: expected 4 lines, got\n{err}"
    else:
        assert not mentions, f"per-request output without --access-log:\n{err}"
        assert not any(word in err for word in ("TwistedWeb", "Starting factory", "Timing out")), err


# -- processes and sockets --------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_pre_fork_master_never_builds_a_reactor(serve: Serve) -> None:
    server = serve(_args("--workers", "2"))
    workers = _workers(server, 2)
    assert _epoll_fds(server.pid) == 0, "the pre-fork master holds an epoll descriptor: it built a reactor"
    for pid in workers:
        assert _epoll_fds(pid) >= 1, f"worker {pid} has no epoll descriptor: no epoll reactor"
    served_by = http_request(server.address, "GET", "/slow?t=0").json()["pid"]
    assert served_by in workers


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_unix_socket_keeps_its_mode_and_survives_a_worker_restart(serve: Serve, sock_dir: Path) -> None:
    # An adopted unix port is chmod()ed to 0666, and unlinked (and shut down) when it stops.
    path = sock_dir / "tw.sock"
    server = serve(_args("--workers", "2", bind=f"unix:{path}:0600"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    first, _ = _workers(server, 2)
    os.kill(first, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while first in _children(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first not in _children(server.pid), f"worker {first} did not stop on SIGTERM"
    replacement = [pid for pid in _workers(server, 2) if pid != first]  # the supervisor replaced it
    # A worker signalled before it installs the launcher's handlers dies of the signal, and the
    # supervisor then exits 1: let the replacement get that far before the final stop.
    while not all(_catches_sigterm(pid) for pid in replacement) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.is_socket(), "a worker stopping removed the shared socket file"
    for _ in range(6):
        assert http_request(server.address, "GET", "/", timeout=5).status == 200
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server.stop() == 0
    assert not path.exists(), "the launcher left its socket file behind"


def test_connections_limit_holds_new_connections_until_one_closes(serve: Serve) -> None:
    server = serve(_args("--connections", "1", "--keepalive", "30"))
    with Connection(server.address) as holder:
        assert holder.request("GET", "/").status == 200
        waiting = connect(server.address, timeout=10)
        try:
            waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            readable, _, _ = select.select([waiting], [], [], 1.0)
            assert not readable, "a second connection was served although --connections 1 is held"
            holder.close()
            readable, _, _ = select.select([waiting], [], [], 5.0)
            assert readable, "the waiting connection was not served after the first one closed"
            assert waiting.recv(64).startswith(b"HTTP/1.1 200")
        finally:
            waiting.close()


# -- options ----------------------------------------------------------------------------------


def test_poll_reactor_option_serves(serve: Serve) -> None:
    server = serve(_args("-o", "reactor=poll"))
    assert http_request(server.address, "GET", "/").body == b"hello"
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--timeout", "5"], ["--timeout"]),
        (["-o", "reactor=pol"], ["poll"]),
        (["-o", "reactr=poll"], ["reactor"]),
    ],
    ids=["timeout", "bad-reactor", "unknown-key"],
)
def test_refused_options_are_one_line_errors(tmp_path: Path, extra: list[str], needles: list[str]) -> None:
    fin = run_serve(_args(*extra), timeout=10, tmp_path=tmp_path)
    assert not fin.became_ready and fin.returncode == 2, fin.describe()
    lines = fin.stderr_lines()
    assert len(lines) == 1 and "Traceback" not in fin.stderr, fin.describe()
    for needle in needles:
        assert needle in lines[0], fin.describe()


def test_importing_the_backend_imports_no_twisted() -> None:
    code = ("import sys, backends.twisted\n"
            "loaded = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))\n"
            "print(loaded)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout

