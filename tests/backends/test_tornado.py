"""The tornado backend's own guarantees, on real ``python -m launcher --backend tornado`` servers.

The shared contract suite (tests/contract) covers PEP 3333 and the common lifecycle; this file
covers what is specific to tornado: the executor is what gives concurrency (--threads), SIGTERM
drains and a cut-off exits 1 at once although the app's threads are still busy, --workers runs on
tornado's own fork_processes (one announcement with the main pid, responses from two workers, a
killed worker replaced, SIGTERM drains every worker and leaves no process behind, --max-requests
replaces a worker without touching the shared unix socket), --keepalive and --header-timeout set
tornado's one head timer (its default is an hour), --limit-request-body, a unix-socket peer is not
reported as an IP address, importing the backend imports no tornado, and the options it refuses.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.checks import CHECKS, DIRECT_EXPECT, Target, check_id
from tests.support import (
    REPO,
    Connection,
    ServeProcess,
    connect,
    contract_args,
    exchange_until_closed,
    http_request,
    one_response,
    parallel,
    require_backend,
    run_serve,
    short_tmpdir,
    start_serve,
)

pytestmark = pytest.mark.server

Serve = Callable[..., ServeProcess]


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_backend("tornado")


def _args(*extra: str, bind: str = "127.0.0.1:0") -> list[str]:
    return contract_args("tornado", bind, *extra)


def _burst(server: ServeProcess, count: int, seconds: float) -> tuple[float, list[Any]]:
    start = time.monotonic()
    results = parallel(lambda: http_request(server.address, "GET", f"/slow?t={seconds}", timeout=20),
                       [()] * count, timeout=30)
    return time.monotonic() - start, results


def _failures(results: list[Any]) -> list[str]:
    return [f"request {i + 1}: {r!r}" if isinstance(r, BaseException) else f"request {i + 1}: status {r.status}"
            for i, r in enumerate(results) if isinstance(r, BaseException) or r.status != 200]


def _wait_exit(server: ServeProcess, timeout: float, what: str) -> int:
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout:g}s after {what}")


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _living(field: int, value: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields and fields[0] not in ("Z", "X") and int(fields[field]) == value:
                found.append(int(entry))
    return sorted(found)


def _children(pid: int) -> list[int]:
    return _living(1, pid)


def _group(pgid: int) -> list[int]:
    return _living(2, pgid)


def _wait_for(what: str, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


def _assert_group_gone(server: ServeProcess) -> None:
    deadline = time.monotonic() + 3
    while (left := _group(server.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left in the server's group after it exited: {left}"


def _pid_of(address: Any) -> int:
    resp = http_request(address, "GET", "/slow?t=0", timeout=10)
    assert resp.status == 200, resp.describe()
    return int(resp.json()["pid"])


# -- threads ----------------------------------------------------------------------------------


def test_threads_serve_slow_requests_concurrently(serve: Serve) -> None:
    server = serve(_args("--threads", "20"))
    took, results = _burst(server, 20, 0.1)
    assert not _failures(results), _failures(results)
    assert took < 1.5, f"20 concurrent 0.1 s requests took {took:.2f}s with --threads 20"


def test_one_thread_serialises_requests(serve: Serve) -> None:
    # The counterpart of the test above: the executor, not the event loop, gives concurrency.
    server = serve(_args("--threads", "1"))
    took, results = _burst(server, 20, 0.1)
    assert not _failures(results), _failures(results)
    assert took > 1.8, f"20 concurrent 0.1 s requests took only {took:.2f}s with --threads 1"


# -- stopping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "sig", "group"),
    [("1", signal.SIGTERM, False), ("2", signal.SIGTERM, False), ("2", signal.SIGINT, True)],
    ids=["one-process", "two-workers", "two-workers-ctrl-c-to-the-group"],
)
def test_stop_answers_every_in_flight_request(serve: Serve, workers: str, sig: int, group: bool) -> None:
    # Ctrl-C in a terminal reaches every worker directly as well as through the parent.
    server = serve(_args("--workers", workers, "--graceful-timeout", "10"))
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        futures = [pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=20) for _ in range(4)]
        time.sleep(0.5)
        assert not any(f.done() for f in futures), "a 2 s request finished early"
        server.signal(sig, group=group)
        rc = _wait_exit(server, 10, signal.Signals(sig).name)
        results = [f.exception(timeout=5) or f.result() for f in futures]
        assert not _failures(results), _failures(results)
        assert rc == 0, f"exit code {rc}\n{server.output()}"
        _assert_group_gone(server)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cut_off_exits_1_without_waiting_for_the_app(serve: Serve, workers: str) -> None:
    graceful = 1.0
    server = serve(_args("--workers", workers, "--graceful-timeout", str(graceful)))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(http_request, server.address, "GET", "/slow?t=25", timeout=30)
        time.sleep(0.5)
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        rc = _wait_exit(server, graceful + 8, "SIGTERM")
        took = time.monotonic() - sent
        assert rc == 1, f"exit code {rc} although a request was cut off\n{server.output()}"
        # Executor threads would hold the interpreter until the app returns (25 s), or until the
        # launcher's watchdog forces the exit at graceful + 3 s: both too late here.
        assert took < graceful + 2.5, f"exit {took:.2f}s after SIGTERM (--graceful-timeout {graceful:g})"
        assert "cut off" in server.stderr(), server.output()
        _assert_group_gone(server)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# -- --workers through tornado.process.fork_processes ----------------------------------------


def test_two_workers_answer_and_the_main_process_announces_once(serve: Serve) -> None:
    server = serve(_args("--workers", "2"))
    assert server.ready["pid"] == server.pid, "the ready file must name the main pid, not a worker"
    workers = _wait_for("two workers", lambda: len(_children(server.pid)) == 2 and _children(server.pid))
    seen: set[int] = set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        # New connections, a few at once: whichever worker accepts first answers.
        results = parallel(lambda: _pid_of(server.address), [()] * 4, timeout=15)
        seen.update(r for r in results if isinstance(r, int))
    assert seen == set(workers), f"answered by {sorted(seen)}, workers are {workers}"
    lines = [line for line in server.stderr().splitlines() if "tornado serving" in line]
    assert len(lines) == 1, f"expected one startup line, got {lines}"
    assert f"pid {server.pid}" in lines[0], lines[0]


def test_killed_worker_is_replaced_and_sigterm_stops_all(serve: Serve) -> None:
    server = serve(_args("--workers", "2"))
    before = _wait_for("two workers", lambda: len(_children(server.pid)) == 2 and _children(server.pid))
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    after = _wait_for("a replacement worker",
                      lambda: (kids := _children(server.pid)) and len(kids) == 2 and victim not in kids and kids)
    for _ in range(6):
        assert _pid_of(server.address) in after
    server.signal(signal.SIGTERM)
    rc = _wait_exit(server, 10, "SIGTERM")
    assert rc == 0, f"exit code {rc}\n{server.output()}"
    _assert_group_gone(server)


def test_max_requests_replaces_the_worker_and_keeps_the_unix_socket(serve: Serve, sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    server = serve(_args("--max-requests", "1", bind=f"unix:{path}"))
    pids = {_pid_of(server.address) for _ in range(3)}
    # Each worker served one request, then made way for a new one: the socket file must survive.
    assert len(pids) == 3 and server.pid not in pids, pids
    assert path.is_socket(), "a worker that exited removed the shared unix socket"
    assert "exited with status" not in server.stderr(), "a routine replacement logged as a failure"
    server.signal(signal.SIGTERM)
    assert _wait_exit(server, 10, "SIGTERM") == 0, server.output()
    assert not path.exists(), "socket file left behind after a clean exit"


# -- timeouts and -o limits -------------------------------------------------------------------


@pytest.mark.parametrize("extra", [["--keepalive", "1"], ["--keepalive", "30", "--header-timeout", "1"]],
                         ids=["keepalive", "header-timeout"])
def test_one_timer_for_idle_connections_and_slow_heads(serve: Serve, extra: list[str]) -> None:
    # tornado's own default for both is an hour.
    server = serve(_args(*extra))
    for sent in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):  # idle, then a head that never ends
        with connect(server.address, timeout=10) as sock:
            start = time.monotonic()
            sock.sendall(sent)
            try:
                data = sock.recv(100)
            except OSError:  # reset: closed as well
                data = b""
            took = time.monotonic() - start
        assert data == b"" and took < 4, f"after sending {sent!r}: got {data!r} after {took:.2f}s"


def test_keepalive_zero_closes_after_each_response(serve: Serve) -> None:
    server = serve(_args("--keepalive", "0"))
    with Connection(server.address, timeout=10) as conn:
        resp = conn.request("GET", "/")
        assert resp.status == 200 and resp.body == b"hello", resp.describe()
        assert resp.will_close, f"no Connection: close with --keepalive 0: {resp.headers}"


def test_limit_request_body(serve: Serve) -> None:
    server = serve(_args("--limit-request-body", "10"))
    small = http_request(server.address, "POST", "/echo", body=b"x" * 10, timeout=10)
    assert (small.status, small.body) == (200, b"x" * 10), small.describe()
    try:
        big = http_request(server.address, "POST", "/echo", body=b"x" * 11, timeout=10)
    except OSError:
        return  # refused by closing: fine as well
    assert big.status == 400, f"an 11-byte body with --limit-request-body 10: {big.describe()}"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--connections", "10"], "--connections"),
        (["--timeout", "5"], "--timeout"),
        (["-o", "max_bufer_size=10"], "max_buffer_size"),
        (["-o", "xheaders=1"], "--proxy-headers"),
        (["-o", "max_body_size=10"], "--limit-request-body"),
        (["-o", "max_header_size=lots"], "max_header_size"),
    ],
    ids=["connections", "timeout", "typo", "owned", "owned-limit", "bad-value"],
)
def test_refused_options_are_one_line(extra: list[str], needle: str, tmp_path: Path) -> None:
    fin = run_serve(_args(*extra), timeout=10, tmp_path=tmp_path)
    assert not fin.became_ready and fin.returncode == 2, fin.describe()
    lines = fin.stderr_lines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in fin.stderr, fin.describe()


def test_importing_the_backend_imports_no_tornado() -> None:
    code = ("import sys, backends.tornado as b; b.TornadoBackend(); "
            "print(sorted(m for m in sys.modules if m == 'tornado' or m.startswith('tornado.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"tornado modules imported: {out.stdout}"


def test_unix_socket_peer_is_not_an_ip(serve: Serve, sock_dir: Path) -> None:
    # tornado calls a unix-socket peer "0.0.0.0", which an allow-list of networks could match.
    server = serve(_args("--workers", "2", bind=f"unix:{sock_dir / 'w.sock'}"))
    data = http_request(server.address, "GET", "/environ", timeout=10).json()
    assert data["cgi"].get("REMOTE_ADDR", "") == "", data["cgi"]
    assert data["wsgi.multiprocess"] is True, data


# -- the contract over a unix socket with --workers 2 (the shared suite forks over TCP only) ----


@pytest.fixture(scope="module")
def forked_unix_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    require_backend("tornado")
    import shutil

    work = tmp_path_factory.mktemp("tornado-forked-unix")
    (work / "state").mkdir()
    sock_dir = short_tmpdir()
    env = dict(os.environ, CONTRACT_STATE_DIR=str(work / "state"))
    try:
        server = start_serve(_args("--workers", "2", bind=f"unix:{sock_dir}/c.sock"), env=env, tmp_path=work)
        try:
            yield Target(address=server.address, expect=DIRECT_EXPECT | {"multiprocess"}, label="tornado-unix-w2")
        finally:
            server.stop()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.xdist_group("tornado-forked-unix")
@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_contract_over_unix_with_two_workers(forked_unix_target: Target, check: Any) -> None:
    check(forked_unix_target)


# --------------------------------------------------------------------------- request hygiene and limits


def test_a_refused_head_is_answered_and_closed(serve: Serve) -> None:
    """check_head in headers_received: 400 (431 for a limit), Connection: close, nothing behind it read."""
    server = serve(_args("--limit-request-fields", "5"))
    hidden = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    for head, status in (
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent_Length: %d\r\n\r\n" % len(hidden), b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n", b"400"),
        (b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\nHost: x\n\n", b"400"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 6 + b"\r\n", b"431"),
    ):
        answer, _ = exchange_until_closed(server, head + hidden)
        assert answer.startswith(b"HTTP/1.1 " + status), (head, answer[:200])
        assert one_response(answer), (head, answer)  # the hidden request was not served


def test_no_request_is_served_after_connection_close(serve: Serve) -> None:
    server = serve(_args())
    answer, _ = exchange_until_closed(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                  b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 1, answer


def test_a_chunk_extension_is_ignored(serve: Serve) -> None:
    server = serve(_args())
    answer, _ = exchange_until_closed(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                  b"Connection: close\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer
    answer, _ = exchange_until_closed(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                  b"Connection: close\r\n\r\n5 \r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer  # a trailing space without an extension


def test_header_timeout_also_bounds_a_stalled_body(serve: Serve) -> None:
    server = serve(_args("--header-timeout", "1"))
    stalled = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx"
    _, took = exchange_until_closed(server, stalled, timeout=10)
    assert took < 3, took
