"""Start-up, shutdown and bind-error behaviour of ``python -m launcher`` for every HTTP backend."""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import signal
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    Finished,
    ServeProcess,
    backend_attr,
    backend_names,
    busy_socket,
    contract_args,
    http_request,
    make_stale_unix_socket,
    require_backend,
    run_serve,
)

pytestmark = pytest.mark.server

Serve = Callable[..., ServeProcess]


@pytest.fixture(params=backend_names("http"))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_backend(name)
    return name


UNIX_CAPABLE = [name for name in backend_names("http") if backend_attr(name, "unix_sockets")]
NO_UNIX = [name for name in backend_names("http") if not backend_attr(name, "unix_sockets")]


@pytest.fixture(params=UNIX_CAPABLE)
def unix_backend(request: pytest.FixtureRequest) -> str:
    """Backends that can listen on a unix socket (Apache cannot: see test_unix_bind_is_refused)."""
    name: str = request.param
    require_backend(name)
    return name


def _one_clean_line(fin: Finished, *must_mention: str) -> str:
    """The failure was reported as exactly one stderr line, without a traceback."""
    problems = []
    if "Traceback" in fin.stderr or "Traceback" in fin.stdout:
        problems.append("a Traceback was printed")
    lines = fin.stderr_lines()
    if len(lines) != 1:
        problems.append(f"expected exactly one line on stderr, got {len(lines)}")
    for needle in must_mention:
        if not any(needle in line for line in lines):
            problems.append(f"stderr does not mention {needle!r}")
    assert not problems, "; ".join(problems) + "\n" + fin.describe()
    return lines[0]


def _failed_fast(fin: Finished, limit: float) -> None:
    assert not fin.became_ready, f"server started although it should have failed\n{fin.describe()}"
    assert fin.returncode is not None, f"still running after {limit}s\n{fin.describe()}"
    assert fin.returncode != 0, f"exit code 0 for a failure\n{fin.describe()}"
    assert fin.returncode > 0, f"killed by signal {-fin.returncode}\n{fin.describe()}"


def _hello(address: Any) -> None:
    resp = http_request(address, "GET", "/", timeout=5)
    assert (resp.status, resp.body) == (200, b"hello"), resp.describe()


# -- shutdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_requests(backend: str, serve: Serve, sig: signal.Signals) -> None:
    graceful = 10
    server = serve(contract_args(backend, "127.0.0.1:0", "--graceful-timeout", str(graceful)))
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        futures = [pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=20)
                   for _ in range(4)]
        time.sleep(0.5)
        for f in futures:
            assert not f.done(), f"a /slow?t=2 request finished early: {f.result()!r}"
        sent = time.monotonic()
        server.signal(sig)
        try:
            rc = server.wait(graceful + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {graceful + 5}s after {sig.name} "
                        f"(--graceful-timeout {graceful})")
        took = time.monotonic() - sent
        results: list[Any] = []
        for f in futures:
            try:
                results.append(f.result(timeout=5))
            except Exception as exc:
                results.append(exc)
        problems = [f"request {i + 1}: {r!r}" if isinstance(r, BaseException)
                    else f"request {i + 1}: status {r.status}"
                    for i, r in enumerate(results)
                    if isinstance(r, BaseException) or r.status != 200]
        if rc != 0:
            problems.append(f"exit code {rc} != 0 after a graceful {sig.name}")
        assert not problems, (f"{sig.name} with 4 in-flight requests (exit after {took:.2f}s): "
                              + "; ".join(problems))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_sigterm_stops_accepting(backend: str, serve: Serve) -> None:
    server = serve(contract_args(backend, "127.0.0.1:0", "--graceful-timeout", "10"))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        in_flight = pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=20)
        time.sleep(0.5)
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        late: Any
        try:
            late = http_request(server.address, "GET", "/", timeout=8)
        except (OSError, http.client.HTTPException) as exc:
            late = exc
        assert server.wait(15) == 0
        assert in_flight.result(timeout=5).status == 200
        if not isinstance(late, BaseException):
            assert late.status != 200, ("a new request sent during the drain was served: the "
                                        "server did not stop accepting\n" + late.describe())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_second_sigint_during_drain_exits_at_once(backend: str, serve: Serve) -> None:
    server = serve(contract_args(backend, "127.0.0.1:0", "--graceful-timeout", "30"))
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        for _ in range(2):
            pool.submit(http_request, server.address, "GET", "/slow?t=8", timeout=15)
        time.sleep(0.5)
        server.signal(signal.SIGINT)
        time.sleep(0.5)
        assert server.proc.poll() is None, (
            f"exited ({server.proc.returncode}) on the first SIGINT although requests were in "
            "flight: no drain?")
        server.signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            server.wait(2.0)
        except subprocess.TimeoutExpired:
            pytest.fail("a second SIGINT during the drain did not stop the server within 2 s")
        assert time.monotonic() - sent < 2.5
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_sigint_when_idle_exits_zero(backend: str, serve: Serve) -> None:
    server = serve(contract_args(backend, "127.0.0.1:0"))
    server.signal(signal.SIGINT)
    try:
        rc = server.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("idle server still running 10 s after SIGINT")
    assert rc == 0, f"exit code {rc} after SIGINT"


# -- start-up ---------------------------------------------------------------------------------


def test_startup_line_names_backend_and_real_url(backend: str, serve: Serve) -> None:
    server = serve(contract_args(backend, "127.0.0.1:0"))
    port = server.address["port"]
    assert port != 0, f"ready file reports port 0: {server.ready}"
    assert urllib.parse.urlsplit(server.url).port == port, server.ready
    assert server.ready.get("backend") == backend, server.ready
    assert server.ready.get("pid"), server.ready
    wanted = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 3
    while True:
        lines = [line for line in server.stderr().splitlines()
                 if wanted in line and backend in line.lower()]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines, (f"no stderr line mentions both {backend!r} and {wanted!r} "
                   f"(url {server.url})")


def test_busy_port_is_one_clean_line(backend: str, tmp_path: Path) -> None:
    with busy_socket() as taken:
        port = taken.getsockname()[1]
        fin = run_serve(contract_args(backend, f"127.0.0.1:{port}"), timeout=10,
                        tmp_path=tmp_path)
    _failed_fast(fin, 10)
    _one_clean_line(fin, str(port))


def test_bad_bind_address_is_one_clean_line(backend: str, tmp_path: Path) -> None:
    fin = run_serve(contract_args(backend, "nonsense:xx"), timeout=10, tmp_path=tmp_path)
    _failed_fast(fin, 10)
    assert fin.returncode in (1, 2), f"exit code {fin.returncode}, expected 2 (usage)\n" + \
        fin.describe()
    _one_clean_line(fin, "nonsense")


def test_missing_socket_directory_is_one_clean_line(unix_backend: str, tmp_path: Path) -> None:
    missing = Path(f"/nonexistent-{uuid.uuid4().hex[:8]}")
    assert not missing.exists()
    fin = run_serve(contract_args(unix_backend, f"unix:{missing}/x.sock"), timeout=10,
                    tmp_path=tmp_path)
    _failed_fast(fin, 10)
    _one_clean_line(fin, str(missing))


def test_stale_unix_socket_is_replaced(unix_backend: str, serve: Serve, sock_dir: Path) -> None:
    path = make_stale_unix_socket(sock_dir / "app.sock")
    assert path.is_socket()
    server = serve(contract_args(unix_backend, f"unix:{path}"))
    assert (server.address["kind"], server.address["path"]) == ("unix", str(path)), server.ready
    _hello(server.address)


def test_live_unix_socket_is_not_stolen(unix_backend: str, serve: Serve, sock_dir: Path,
                                         tmp_path: Path) -> None:
    path = sock_dir / "app.sock"
    first = serve(contract_args(unix_backend, f"unix:{path}"))
    fin = run_serve(contract_args(unix_backend, f"unix:{path}"), timeout=10,
                    tmp_path=tmp_path / "second")
    _failed_fast(fin, 10)
    assert "Traceback" not in fin.stderr, fin.describe()
    assert path.is_socket(), "the second server removed the first server's socket file"
    _hello(first.address)


def test_unix_socket_removed_on_clean_exit(unix_backend: str, serve: Serve, sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    server = serve(contract_args(unix_backend, f"unix:{path}"))
    _hello(server.address)
    rc = server.stop()
    assert rc == 0, f"exit code {rc} after SIGTERM"
    assert not os.path.exists(path), "socket file left behind after a clean exit"



@pytest.mark.parametrize("name", NO_UNIX)
def test_unix_bind_is_refused_where_the_server_cannot(name: str, tmp_path: Path) -> None:
    """A server that cannot listen on a unix socket refuses the bind before starting (one line)."""
    require_backend(name)
    fin = run_serve(contract_args(name, f"unix:{tmp_path}/x.sock"), timeout=15, tmp_path=tmp_path)
    _failed_fast(fin, 15)
    _one_clean_line(fin, "unix")
