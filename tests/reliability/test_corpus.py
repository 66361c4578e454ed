"""Malformed requests, limits, slow clients and proxy trust, against one server per HTTP backend.

The server runs the recording app (tests/reliability/app.py) with small limits (corpus.LIMITS),
``--header-timeout 2``, ``--keepalive 1`` (each only if the backend honours it) and
``--proxy-headers --forwarded-allow-ips 127.0.0.1 --forwarded-host-header X-FHost`` and
``--threads 40``.  Everything
that takes time -- the corpus, whose probes each wait up to 4 s for a server that neither answers
nor closes, and the slow clients -- runs concurrently once per backend; the tests then check the
outcomes one by one, so each probe is its own test id and its own strict xfail when it is a known
gap (gaps.py).
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability import corpus
from tests.reliability.conftest import Served, connect_from, expect, honoured, record, serve_app
from tests.support import http_request, seconds_until_closed

pytestmark = pytest.mark.server

HEADER_TIMEOUT = 2.0
KEEPALIVE = 1.0
#: How late past its timeout a server may close a slow client (waitress looks once a second).
MARGIN = 2.0
CORPUS_SECTION = "corpus: refused / closed / reached (+hidden: the request sent behind it reached the app too)"


def server_args(backend: str) -> list[str]:
    can = honoured(backend)
    args = ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1", "--forwarded-host-header", "X-FHost"]
    for name, value in corpus.LIMITS.items():
        if name in can:
            args += ["--" + name.replace("_", "-"), str(value)]
    if "header_timeout" in can:
        args += ["--header-timeout", str(HEADER_TIMEOUT)]
    if "keepalive" in can:
        args += ["--keepalive", str(KEEPALIVE)]
    if "threads" in can:
        # More threads than probes in flight: a probe a thread-per-connection server holds on to
        # (waiting for a body that never ends) must not starve the others of a thread.
        args += ["--threads", "40"]
    return args


# --------------------------------------------------------------------------- slow clients


def slow_head(address: tuple[str, int]) -> float | None:
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(b"GET /p/slow-head HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    return seconds_until_closed(sock, trickle=b"a")


def stalled_body(address: tuple[str, int]) -> float | None:
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(b"POST /p/stalled-body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nx")
    return seconds_until_closed(sock)


def silent_connection(address: tuple[str, int]) -> float | None:
    return seconds_until_closed(socket.create_connection(address, timeout=5))


def idle_keepalive(address: tuple[str, int]) -> float | None:
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(b"GET /p/keepalive HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"ok 0" not in data:
        got = sock.recv(65536)
        if not got:
            return 0.0  # closed right after the response: no keep-alive at all
        data += got
    return seconds_until_closed(sock)


SLOW = {"slow_head": slow_head, "stalled_body": stalled_body, "silent_connection": silent_connection,
        "idle_keepalive": idle_keepalive}


# --------------------------------------------------------------------------- the server and its runs


class Run:
    def __init__(self, served: Served, results: dict[str, corpus.Result], slow: dict[str, Any]) -> None:
        self.served = served
        self.results = results
        self.slow = slow


@pytest.fixture(scope="module")
def run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    served = serve_app(backend, *server_args(backend), tmp_path=tmp_path_factory.mktemp(f"corpus-{backend}"))
    try:
        with concurrent.futures.ThreadPoolExecutor(len(SLOW)) as pool:
            slow_futures = {name: pool.submit(fn, served.address) for name, fn in SLOW.items()}
            results = corpus.run_corpus(served.address, str(served.state), corpus.ALL_PROBES, parallel=32)
            slow: dict[str, Any] = {}
            for name, future in slow_futures.items():
                try:
                    slow[name] = future.result(timeout=30)
                except Exception as exc:  # reported by the test that reads it
                    slow[name] = exc
        yield Run(served, results, slow)
    finally:
        served.stop()


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("probe", [p.name for p in corpus.PROBES])
def test_malformed_request_never_reaches_the_app(request: pytest.FixtureRequest, backend: str, run: Run,
                                                   probe: str) -> None:
    """Refused (4xx/5xx) or closed, and the request hidden behind it never reaches the app; the
    well-formed controls (ok_*) are served, their pipelined second request too."""
    expect(request, backend, probe)
    result = run.results[probe]
    record(CORPUS_SECTION, backend, probe, result.outcome + (" +hidden" if result.smuggled else ""))
    if corpus.BY_NAME[probe].ok:
        assert result.outcome == "reached" and result.statuses and set(result.statuses) == {200}, result.describe()
        if probe == "ok_pipelined":
            assert result.served_next, result.describe()
        return
    assert not result.smuggled, result.describe()
    assert result.outcome in ("refused", "closed"), result.describe()


@pytest.mark.parametrize("probe", [p.name for p in corpus.LIMIT_PROBES])
def test_limits_have_the_same_names_everywhere(request: pytest.FixtureRequest, backend: str, run: Run,
                                               probe: str) -> None:
    expect(request, backend, probe)
    spec = corpus.BY_NAME[probe]
    result = run.results[probe]
    record("limits (line 2000, 30 fields, field 1000 B, body 10000 B)", backend, probe, result.outcome)
    flag = "--" + spec.limit.replace("_", "-")
    assert spec.limit in honoured(backend), f"{flag} is not honoured (serve refuses it for this backend)"
    assert not result.smuggled, result.describe()
    if spec.ok:
        assert result.outcome == "reached" and result.statuses[:1] == [200], result.describe()
    else:
        assert result.outcome in ("refused", "closed"), result.describe()


# --------------------------------------------------------------------------- slow clients


def _closed_within(request: pytest.FixtureRequest, backend: str, run: Run, check: str, limit: float,
                   option: str) -> float:
    expect(request, backend, check)
    took = run.slow[check]
    shown = "open" if took is None else f"error: {took!r}" if isinstance(took, Exception) else round(took, 1)
    record("slow clients: seconds until the server closed (header timeout 2 s, keep-alive 1 s)", backend, check, shown)
    if isinstance(took, Exception):
        raise took
    assert option in honoured(backend), f"--{option.replace('_', '-')} is not honoured"
    assert took is not None, f"the connection was still open {8.0:g}s later"
    assert took <= limit, f"closed after {took:.1f}s, more than {limit:g}s"
    return took


def test_slow_header_client_is_closed(request: pytest.FixtureRequest, backend: str, run: Run) -> None:
    """A head trickled a byte every 0.25 s is cut at --header-timeout, however steadily it trickles."""
    _closed_within(request, backend, run, "slow_head", HEADER_TIMEOUT + MARGIN, "header_timeout")


def test_stalled_body_is_closed(request: pytest.FixtureRequest, backend: str, run: Run) -> None:
    """A request body that stops coming for longer than --header-timeout ends the connection."""
    _closed_within(request, backend, run, "stalled_body", HEADER_TIMEOUT + MARGIN, "header_timeout")


def test_silent_connection_is_closed(request: pytest.FixtureRequest, backend: str, run: Run) -> None:
    """A connection that never sends a byte is closed (by --keepalive or --header-timeout)."""
    _closed_within(request, backend, run, "silent_connection", HEADER_TIMEOUT + MARGIN, "header_timeout")


def test_idle_keepalive_connection_is_closed(request: pytest.FixtureRequest, backend: str, run: Run) -> None:
    took = _closed_within(request, backend, run, "idle_keepalive", KEEPALIVE + MARGIN, "keepalive")
    assert took >= 0.3, f"closed {took:.2f}s after the response: keep-alive is not kept at all"


# --------------------------------------------------------------------------- faults and proxy trust


def test_app_exception_is_a_500_and_the_server_stays_up(request: pytest.FixtureRequest, backend: str,
                                                         run: Run) -> None:
    expect(request, backend, "app_error")
    failed = http_request(run.served.address, "GET", "/error", timeout=10)
    assert failed.status == 500, failed.describe()
    assert b"reliability-app-error" not in failed.body, "the exception text leaked into the response"
    after = http_request(run.served.address, "GET", "/", timeout=10)
    assert after.status == 200 and run.served.process.alive(), after.describe()


FORWARDED = (
    b"X-Forwarded-For: 198.51.100.1, 203.0.113.7, 127.0.0.1\r\n"
    b"X-Forwarded-Proto: https\r\n"
    b"X-FHost: public.example:8443\r\n"
)


def _whoami_from(source: str, address: tuple[str, int]) -> dict[str, Any]:
    sock = connect_from(source, address)
    try:
        sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: internal:80\r\n" + FORWARDED + b"Connection: close\r\n\r\n")
        data = b""
        while True:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), data[:300]
    if b"chunked" in head.lower():
        body = corpus_dechunk(body)
    result: dict[str, Any] = json.loads(body)
    return result


def corpus_dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def test_forwarded_headers_from_a_trusted_peer_are_believed(request: pytest.FixtureRequest, backend: str,
                                                           run: Run) -> None:
    """From 127.0.0.1 (in --forwarded-allow-ips): the right-most address that is not a trusted proxy
    becomes REMOTE_ADDR (not the left-most one, which the client wrote), the scheme is https and
    the host comes from --forwarded-host-header."""
    expect(request, backend, "proxy_trusted")
    seen = _whoami_from("127.0.0.1", run.served.address)
    record("proxy trust", backend, "trusted REMOTE_ADDR", seen["REMOTE_ADDR"])
    assert seen["REMOTE_ADDR"] == "203.0.113.7", seen
    assert seen["wsgi.url_scheme"] == "https", seen
    assert (seen["HTTP_HOST"], seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("public.example:8443", "public.example",
                                                                            "8443"), seen


def test_forwarded_headers_from_an_untrusted_peer_are_stripped(request: pytest.FixtureRequest, backend: str,
                                                              run: Run) -> None:
    """From 127.0.0.2 (not in --forwarded-allow-ips): nothing changes and the app cannot read them."""
    expect(request, backend, "proxy_untrusted")
    seen = _whoami_from("127.0.0.2", run.served.address)
    record("proxy trust", backend, "untrusted REMOTE_ADDR", seen["REMOTE_ADDR"])
    assert seen["REMOTE_ADDR"] == "127.0.0.2", seen
    assert seen["wsgi.url_scheme"] == "http", seen
    assert seen["HTTP_HOST"] == "internal:80", seen
    assert not [key for key in seen["headers"] if key.startswith(("HTTP_X_FORWARDED", "HTTP_X_FHOST"))], seen
