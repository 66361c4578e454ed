"""The WSGI (PEP 3333) contract as plain functions ``check_xxx(target)``, written once.

A *target* is anything with three attributes (use :class:`Target`):

``address``
    where the client connects: a ready-file address dict (``{"kind": "tcp", "host": "127.0.0.1",
    "port": 8080}`` / ``{"kind": "unix", "path": ...}``), ``(host, port)``, ``"unix:/path"``
    or ``"127.0.0.1:8080"``.  Loopback and unix sockets only.
``prefix``
    URL prefix under which the contract app (tests/contract/app.py) is mounted, ``""`` at the
    root; every request goes to ``prefix + "/route"`` and SCRIPT_NAME must equal ``prefix``.
``expect``
    set of capability flags of *this path to the app* (see ``FLAGS``).  A check decorated with
    ``@requires(flag)`` calls ``pytest.skip`` when the flag is absent; all other checks always
    apply.

The app's server must have ``CONTRACT_STATE_DIR`` (a writable directory) in its environment,
for ``check_close_called``.

Reusing the checks through a front server (tests/front/)::

    from tests.contract.checks import CHECKS, FRONT_EXPECT, Target, check_id

    @pytest.fixture(scope="module")
    def target(nginx_in_front_of_flup):          # you start backend + front
        return Target(address={"kind": "tcp", "host": "127.0.0.1", "port": nginx_port},
                      prefix="/yourapplication",   # if the front mounts it there
                      expect=FRONT_EXPECT | {"chunked_request"},   # what this front can do
                      label="nginx->flup")

    @pytest.mark.parametrize("check", CHECKS, ids=check_id)
    def test_contract_through_front(target, check):
        check(target)

Flags ("direct" is for a client talking straight to the WSGI server; a front such as nginx may
legitimately downgrade SERVER_PROTOCOL to HTTP/1.0 or change REMOTE_ADDR/SERVER_PORT, so leave
it out there).
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import Connection, Response, http_request, parallel

SECRET = "contract-secret-xyz"

FLAGS = {
    "direct": "client talks straight to the WSGI server: SERVER_PROTOCOL is the client's "
              "HTTP/1.1, REMOTE_ADDR is loopback and SERVER_PORT the bound port (TCP)",
    "keepalive": "several HTTP/1.1 requests are answered on one connection",
    "concurrency": "4 slow requests are served in parallel",
    "chunked_request": "Transfer-Encoding: chunked request bodies reach the app",
    "multiprocess": "wsgi.multiprocess must be true (several worker processes)",
}
DIRECT_EXPECT = frozenset({"direct", "keepalive", "concurrency", "chunked_request"})
FRONT_EXPECT = frozenset({"keepalive", "concurrency"})


@dataclasses.dataclass(frozen=True)
class Target:
    address: Any
    prefix: str = ""
    expect: frozenset[str] = frozenset()
    label: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.expect) - set(FLAGS)
        if unknown:
            raise ValueError(f"unknown capability flags {sorted(unknown)}; known: {sorted(FLAGS)}")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"prefix must look like '/app' (or be empty), got {self.prefix!r}")
        object.__setattr__(self, "expect", frozenset(self.expect))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def requires(*flags: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    for flag in flags:
        assert flag in FLAGS, flag

    def deco(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        @functools.wraps(fn)
        def wrapper(target: Any) -> None:
            missing = [f for f in flags if f not in target.expect]
            if missing:
                pytest.skip(f"{fn.__name__} needs capability {missing} (not in target.expect)")
            fn(target)

        wrapper.requires = frozenset(flags)  # type: ignore[attr-defined]
        return wrapper

    return deco


def _url(target: Any, path: str) -> str:
    return f"{target.prefix}{path}"


def _who(target: Any) -> str:
    label = getattr(target, "label", "") or ""
    return f"[{label}] " if label else ""


def _get(target: Any, path: str, **kw: Any) -> Response:
    return http_request(target.address, kw.pop("method", "GET"), _url(target, path), **kw)


def _expect(problems: list[str], target: Any, what: str, resp: Response | None = None,
            extra: str = "") -> None:
    __tracebackhide__ = True
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        detail = f"\nresponse: {resp.describe(2000)}" if resp is not None else ""
        raise AssertionError(f"{_who(target)}{what}:\n{lines}{detail}{extra}")


def _ok(target: Any, resp: Response, what: str, status: int = 200) -> None:
    __tracebackhide__ = True
    if resp.status != status:
        raise AssertionError(f"{_who(target)}{what}: expected status {status}, got "
                             f"{resp.status}\nresponse: {resp.describe(2000)}")


def _is_tcp(target: Any) -> bool:
    addr = target.address
    if isinstance(addr, dict):
        return addr.get("kind") == "tcp"
    return not (isinstance(addr, str) and (addr.startswith("unix:") or addr.startswith("/")))


def _port(target: Any) -> int | None:
    addr = target.address
    if isinstance(addr, dict) and addr.get("kind") == "tcp":
        return int(addr["port"])
    if isinstance(addr, tuple):
        return int(addr[1])
    return None


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------


def check_environ_keys_and_types(target: Any) -> None:
    """PEP 3333 environ: required keys present, CGI keys are str, wsgi.* keys sane."""
    resp = _get(target, "/environ?x=1", headers=[("X-Contract-Test", "yes-42")])
    _ok(target, resp, "GET /environ")
    data = resp.json()
    cgi, types = data["cgi"], data["types"]
    problems = []

    required = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL"]
    if target.prefix:
        required.append("SCRIPT_NAME")
    if "direct" in target.expect and _is_tcp(target):
        required.append("REMOTE_ADDR")
    for key in required:
        if key in data["missing"]:
            problems.append(f"{key} missing from environ")
    not_str = {k: t for k, t in types.items() if "." not in k and t != "str"}
    if not_str:
        problems.append(f"CGI-style keys must be str (PEP 3333 native strings): {not_str}")
    for key in ("SERVER_NAME", "SERVER_PORT"):
        if key in cgi and not cgi[key]:
            problems.append(f"{key} must never be empty (PEP 3333)")
    if _is_tcp(target) and cgi.get("SERVER_PORT") and not cgi["SERVER_PORT"].isdigit():
        problems.append(f"SERVER_PORT {cgi['SERVER_PORT']!r} is not a number")
    if cgi.get("REQUEST_METHOD") != "GET":
        problems.append(f"REQUEST_METHOD {cgi.get('REQUEST_METHOD')!r} != 'GET'")
    if cgi.get("HTTP_X_CONTRACT_TEST") != "yes-42":
        problems.append(f"HTTP_X_CONTRACT_TEST {cgi.get('HTTP_X_CONTRACT_TEST')!r} != 'yes-42'")
    if not cgi.get("HTTP_HOST"):
        problems.append("HTTP_HOST missing although the request had a Host header")
    if "SCRIPT_NAME" in cgi and not target.prefix and cgi["SCRIPT_NAME"] not in ("",):
        problems.append(f"SCRIPT_NAME {cgi['SCRIPT_NAME']!r} should be '' at the root")

    if data["wsgi.version"] != [1, 0]:
        problems.append(f"wsgi.version {data['wsgi.version']!r} != (1, 0)")
    if types.get("wsgi.url_scheme") != "str":
        problems.append(f"wsgi.url_scheme has type {types.get('wsgi.url_scheme')}")
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        if types.get(key) not in ("bool", "int"):
            problems.append(f"{key} has type {types.get(key)} (expected bool)")
    if data["wsgi.run_once"]:
        problems.append("wsgi.run_once is true for a long-running server")
    if "multiprocess" in target.expect and not data["wsgi.multiprocess"]:
        problems.append("wsgi.multiprocess is false although several worker processes run")
    missing_in = [m for m, present in data["input"].items() if not present]
    if missing_in:
        problems.append(f"wsgi.input ({types.get('wsgi.input')}) lacks {missing_in}")
    missing_err = [m for m, present in data["errors"].items() if not present]
    if missing_err:
        problems.append(f"wsgi.errors ({types.get('wsgi.errors')}) lacks {missing_err}")

    if "direct" in target.expect and _is_tcp(target):
        if cgi.get("REMOTE_ADDR") not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            problems.append(f"REMOTE_ADDR {cgi.get('REMOTE_ADDR')!r} is not the loopback client")
        port = _port(target)
        if port is not None and cgi.get("SERVER_PORT") != str(port):
            problems.append(f"SERVER_PORT {cgi.get('SERVER_PORT')!r} != bound port {port}")
    _expect(problems, target, "environ does not follow PEP 3333", resp)


def check_content_type_and_length_in_environ(target: Any) -> None:
    """A POST's Content-Type / Content-Length reach the app as CONTENT_TYPE / CONTENT_LENGTH."""
    resp = _get(target, "/environ", method="POST", body=b"abc",
                headers=[("Content-Type", "text/plain; charset=utf-8")])
    _ok(target, resp, "POST /environ")
    data = resp.json()
    cgi = data["cgi"]
    problems = []
    if cgi.get("REQUEST_METHOD") != "POST":
        problems.append(f"REQUEST_METHOD {cgi.get('REQUEST_METHOD')!r} != 'POST'")
    if cgi.get("CONTENT_LENGTH") != "3":
        problems.append(f"CONTENT_LENGTH {cgi.get('CONTENT_LENGTH')!r} != '3'")
    if cgi.get("CONTENT_TYPE") != "text/plain; charset=utf-8":
        problems.append(f"CONTENT_TYPE {cgi.get('CONTENT_TYPE')!r} != 'text/plain; charset=utf-8'")
    _expect(problems, target, "request headers not mapped to CGI keys", resp)


def check_server_protocol_and_scheme(target: Any) -> None:
    """SERVER_PROTOCOL is HTTP/1.x (the client's HTTP/1.1 when direct); wsgi.url_scheme http."""
    resp = _get(target, "/environ")
    _ok(target, resp, "GET /environ")
    data = resp.json()
    proto = data["cgi"].get("SERVER_PROTOCOL")
    problems = []
    wanted = ("HTTP/1.1",) if "direct" in target.expect else ("HTTP/1.0", "HTTP/1.1")
    if proto not in wanted:
        problems.append(f"SERVER_PROTOCOL {proto!r} not in {wanted}")
    if data["wsgi.url_scheme"] != "http":
        problems.append(f"wsgi.url_scheme {data['wsgi.url_scheme']!r} != 'http'")
    if resp.version not in ("HTTP/1.0", "HTTP/1.1"):
        problems.append(f"response version {resp.version!r}")
    _expect(problems, target, "protocol / scheme", resp)


PATH_RAW = "/environ/caf%C3%A9/%E2%9C%93"
PATH_BYTES = "/environ/café/✓".encode()
QUERY_RAW = "q=caf%C3%A9&sp=a%20b&plus=a+b&slash=%2F&amp=%26&empty="


def check_script_name_and_utf8_path(target: Any) -> None:
    """SCRIPT_NAME == prefix; PATH_INFO is the decoded path as latin-1 "bytes in str";
    QUERY_STRING stays raw (not decoded)."""
    resp = _get(target, f"{PATH_RAW}?{QUERY_RAW}")
    _ok(target, resp, f"GET {target.prefix}{PATH_RAW}")
    data = resp.json()
    cgi = data["cgi"]
    problems = []
    script_name = cgi.get("SCRIPT_NAME", "")
    if script_name != target.prefix:
        problems.append(f"SCRIPT_NAME {script_name!r} != mount prefix {target.prefix!r}")
    path_info = cgi.get("PATH_INFO")
    try:
        as_bytes = path_info.encode("latin-1") if path_info is not None else None
    except UnicodeEncodeError:
        as_bytes = None
        problems.append(f"PATH_INFO {path_info!r} is not latin-1 'bytes in str' (PEP 3333)")
    if as_bytes is not None and as_bytes != PATH_BYTES:
        problems.append(f"PATH_INFO bytes {as_bytes!r} != {PATH_BYTES!r}")
    if not str(data["path_info_utf8"]).endswith("/café/✓"):
        problems.append(f"path_info_utf8 {data['path_info_utf8']!r} does not end with '/café/✓'")
    if cgi.get("QUERY_STRING") != QUERY_RAW:
        problems.append(f"QUERY_STRING {cgi.get('QUERY_STRING')!r} != raw {QUERY_RAW!r}")
    _expect(problems, target, "SCRIPT_NAME / PATH_INFO / QUERY_STRING", resp)


def check_request_body_content_length(target: Any) -> None:
    """64 KiB of random bytes with Content-Length are echoed exactly."""
    payload = os.urandom(64 * 1024)
    resp = _get(target, "/echo", method="POST", body=payload,
                headers=[("Content-Type", "application/octet-stream")], timeout=20)
    _ok(target, resp, "POST /echo (Content-Length)")
    problems = []
    if resp.header("X-Echo-Length") != str(len(payload)):
        problems.append(f"app read {resp.header('X-Echo-Length')} bytes, sent {len(payload)}")
    if resp.body != payload:
        problems.append(f"echoed body differs ({len(resp.body)} bytes back, first difference at "
                        f"{_first_diff(resp.body, payload)})")
    _expect(problems, target, "request body with Content-Length", None,
            f"\nheaders: {resp.headers}")


@requires("chunked_request")
def check_request_body_chunked(target: Any) -> None:
    """A Transfer-Encoding: chunked request body reaches the app complete."""
    pieces = [os.urandom(n) for n in (1, 1000, 16384, 7, 30000)]
    payload = b"".join(pieces)
    resp = _get(target, "/echo", method="POST", body=pieces, chunked=True,
                headers=[("Content-Type", "application/octet-stream")], timeout=20)
    _ok(target, resp, "POST /echo (chunked)")
    problems = []
    if resp.body != payload:
        problems.append(f"echoed {len(resp.body)} bytes (mode {resp.header('X-Echo-Mode')}), "
                        f"sent {len(payload)}; first difference at "
                        f"{_first_diff(resp.body, payload)}")
    _expect(problems, target, "chunked request body", None, f"\nheaders: {resp.headers}")


def check_streaming_response(target: Any) -> None:
    """A generator response without Content-Length arrives complete."""
    n = 5
    resp = _get(target, f"/stream?n={n}&delay=0.05")
    _ok(target, resp, "GET /stream")
    expected = b"".join(f"chunk {i}\n".encode() for i in range(n))
    if resp.body != expected:
        raise AssertionError(f"{_who(target)}streamed body incomplete: got {resp.body!r}, "
                             f"expected {expected!r}\nresponse: {resp.describe()}")


def check_close_called(target: Any, timeout: float = 5.0) -> None:
    """The server calls close() on the response iterable (PEP 3333)."""
    token = uuid.uuid4().hex
    resp = _get(target, f"/close?token={token}")
    _ok(target, resp, "GET /close")
    if resp.body != b"closing-body":
        raise AssertionError(f"{_who(target)}unexpected body {resp.describe()}")
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = _get(target, f"/closed?token={token}")
        if last.status == 200 and last.body == b"yes":
            return
        if last.status != 200:
            break
        time.sleep(0.05)
    raise AssertionError(f"{_who(target)}close() of the response iterable was not called within "
                         f"{timeout}s\nlast /closed answer: "
                         f"{last.describe() if last else None}")


def _no_leak(problems: list[str], body: bytes, what: str) -> None:
    if SECRET.encode() in body:
        problems.append(f"{what}: the exception message leaked into the response body")
    if b"Traceback" in body:
        problems.append(f"{what}: a traceback leaked into the response body")


def _still_answers(target: Any, problems: list[str], after: str) -> None:
    try:
        resp = _get(target, "/")
    except (OSError, http.client.HTTPException) as exc:
        problems.append(f"server no longer answers GET / after {after}: {exc!r}")
        return
    if resp.status != 200 or resp.body != b"hello":
        problems.append(f"GET / after {after} -> {resp.status} {resp.body[:200]!r}")


def check_app_exception_is_500(target: Any) -> None:
    """An exception in the app gives a 500 without internals, and the server keeps serving."""
    resp = _get(target, "/error")
    problems: list[str] = []
    if resp.status != 500:
        problems.append(f"status {resp.status} != 500")
    _no_leak(problems, resp.body, "/error")
    _still_answers(target, problems, "/error")
    _expect(problems, target, "exception in the app", resp)


def check_error_after_start_response(target: Any) -> None:
    """start_response called, then the iterable raises before any body: still a 500 (or a broken
    connection), never a successful-looking response, and the server keeps serving."""
    problems: list[str] = []
    resp = None
    try:
        resp = _get(target, "/error-after-start")
    except (OSError, http.client.HTTPException):
        pass  # connection dropped: acceptable, the client sees a failure
    if resp is not None:
        if resp.status != 500:
            problems.append(f"status {resp.status}: the client cannot tell the request failed")
        _no_leak(problems, resp.body, "/error-after-start")
    _still_answers(target, problems, "/error-after-start")
    _expect(problems, target, "exception while iterating the response", resp)


def check_error_after_body_started(target: Any) -> None:
    """The iterable raises after a first chunk was sent: the response must not look complete
    (connection dropped / truncated chunked body, or a 500 when the server buffered)."""
    problems: list[str] = []
    resp = None
    try:
        resp = _get(target, "/error-after-start?partial=1")
    except (OSError, http.client.HTTPException):
        pass  # IncompleteRead / reset: the client can tell it failed
    if resp is not None:
        if resp.status == 200:
            problems.append("a complete 200 response arrived although the app raised mid-body "
                            "(the server must abort the connection)")
        _no_leak(problems, resp.body, "/error-after-start?partial=1")
    _still_answers(target, problems, "/error-after-start?partial=1")
    _expect(problems, target, "exception after the body started", resp)


def check_repeated_headers(target: Any) -> None:
    """Two Set-Cookie headers stay two; a header value with a comma is unchanged."""
    resp = _get(target, "/headers")
    _ok(target, resp, "GET /headers")
    problems = []
    cookies = resp.header_all("Set-Cookie")
    if cookies != ["a=1; Path=/", "b=2; Path=/"]:
        problems.append(f"Set-Cookie headers {cookies!r} != ['a=1; Path=/', 'b=2; Path=/']")
    if resp.header_all("X-Contract-List") != ["one, two"]:
        problems.append(f"X-Contract-List {resp.header_all('X-Contract-List')!r} != ['one, two']")
    _expect(problems, target, "response headers", resp)


def check_head_has_no_body(target: Any) -> None:
    """HEAD returns the headers and not a single body byte."""
    with Connection(target.address, timeout=10) as conn:
        conn.send_request("HEAD", _url(target, "/"))
        resp = conn.read_response("HEAD")
        problems = []
        if resp.status != 200:
            problems.append(f"status {resp.status} != 200")
        if not resp.header("Content-Type"):
            problems.append("no Content-Type header")
        extra = conn.read_extra(0.3)
        if extra:
            problems.append(f"the server sent {len(extra)} body byte(s) after the HEAD response "
                            f"headers: {extra[:200]!r}")
        elif not resp.will_close and not conn.server_closed and "keepalive" in target.expect:
            follow = conn.request("GET", _url(target, "/"))
            if follow.body != b"hello":
                problems.append(f"GET after HEAD on the same connection: {follow.describe()}")
    _expect(problems, target, "HEAD", resp)


@requires("keepalive")
def check_keepalive(target: Any) -> None:
    """Three HTTP/1.1 requests (with and without bodies) are answered on one connection."""
    answers = []
    with Connection(target.address, timeout=10) as conn:
        try:
            answers.append(conn.request("GET", _url(target, "/")))
            answers.append(conn.request("POST", _url(target, "/echo"), body=b"x" * 1000))
            answers.append(conn.request("GET", _url(target, "/environ")))
        except (OSError, http.client.HTTPException) as exc:
            got = "; ".join(f"{r.status} will_close={r.will_close}" for r in answers)
            raise AssertionError(f"{_who(target)}keep-alive: request {len(answers) + 1} of 3 on "
                                 f"one connection failed: {exc!r} (earlier answers: {got})") from None
    problems = []
    for i, resp in enumerate(answers):
        if resp.status != 200:
            problems.append(f"answer {i + 1}: status {resp.status}")
        if i < 2 and resp.will_close:
            problems.append(f"answer {i + 1}: server announced close ({resp.headers})")
    if answers[0].body != b"hello" or answers[1].body != b"x" * 1000:
        problems.append("bodies mixed up between requests on one connection")
    _expect(problems, target, "keep-alive", answers[-1])


@requires("concurrency")
def check_concurrent_slow_requests(target: Any) -> None:
    """4 parallel /slow?t=1 requests all finish within 2.5 s (served concurrently)."""
    start = time.monotonic()
    results = parallel(lambda: _get(target, "/slow?t=1", timeout=10), [()] * 4, timeout=15)
    elapsed = time.monotonic() - start
    problems = []
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            problems.append(f"request {i + 1}: {r!r}")
        elif r.status != 200:
            problems.append(f"request {i + 1}: status {r.status}")
    if elapsed >= 2.5:
        spans = [(round(r.json()["start"] % 100, 2), round(r.json()["end"] % 100, 2))
                 for r in results if isinstance(r, Response) and r.status == 200]
        problems.append(f"4 x 1 s requests took {elapsed:.2f}s (not concurrent?) spans={spans}")
    _expect(problems, target, "concurrency")


CHECKS: list[Callable[[Any], None]] = [
    check_environ_keys_and_types,
    check_content_type_and_length_in_environ,
    check_server_protocol_and_scheme,
    check_script_name_and_utf8_path,
    check_request_body_content_length,
    check_request_body_chunked,
    check_streaming_response,
    check_close_called,
    check_app_exception_is_500,
    check_error_after_start_response,
    check_error_after_body_started,
    check_repeated_headers,
    check_head_has_no_body,
    check_keepalive,
    check_concurrent_slow_requests,
]


def check_id(check: Callable[[Any], None]) -> str:
    """Test id for a check: its name without the ``check_`` prefix."""
    return check.__name__.removeprefix("check_")


def _first_diff(a: bytes, b: bytes) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
