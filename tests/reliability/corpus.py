"""Malformed and ambiguous requests, written by hand, and a runner that sends them over raw sockets.

Every probe is one request (its path carries a token unique to the probe and the run), followed in
the same ``send()`` by a hidden second request, ``GET /smuggled/<token>``.  A server that reads the
first request's framing differently from a front proxy -- or that answers it and keeps reading --
hands that hidden request to the app; the rule this suite checks is that it never does: a probe is
refused (4xx/5xx) or the connection is closed, and the app (tests/reliability/app.py, which records
every call) never sees ``/smuggled/...``.

The ``ok_*`` probes are the controls: well-formed requests (a pipelined second one included) that
must be served, so a layer that refuses everything cannot pass.

Run directly to measure a server without the test harness::

    python -m tests.reliability.corpus 127.0.0.1:8000 STATE_DIR   # STATE_DIR: the app's RELIABILITY_STATE_DIR
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.reliability.app import read_calls

HOST = b"Host: localhost\r\n"


def hidden(tok: str) -> bytes:
    """The request hidden behind every probe (Connection: close: a server that serves it says so at once)."""
    return b"GET /smuggled/%s HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (tok.encode(), HOST)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST = b"0\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str
    kind: str  # "smuggling", "framing" (chunked body), "syntax", "size", "limit", "ok"
    what: str
    build: Callable[[str], bytes]
    #: the controls: served (200), and their pipelined second request too
    ok: bool = False
    #: the limit a "limit" probe exercises (an option name)
    limit: str = ""


def _post(tok: str, headers: bytes, body: bytes, *, version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /p/%s %s\r\n%s%s\r\n%s" % (tok.encode(), version, HOST, headers, body)


def _get(tok: str, headers: bytes = b"", *, line: bytes | None = None) -> bytes:
    first = line if line is not None else b"GET /p/%s HTTP/1.1" % tok.encode()
    return b"%s\r\n%s%s\r\n" % (first, HOST, headers)


def _te_cl(te_line: bytes) -> Callable[[str], bytes]:
    """Content-Length covers only the first chunk-size line: a server that frames by Content-Length
    (ignoring an obfuscated Transfer-Encoding) reads the hidden request as the next one."""

    def build(tok: str) -> bytes:
        body = chunk(hidden(tok)) + LAST
        first_line = body.split(b"\r\n", 1)[0] + b"\r\n"
        return _post(tok, b"Content-Length: %d\r\n%s\r\n" % (len(first_line), te_line), body)

    return build


def _cl_te(tok: str) -> bytes:
    """Content-Length covers everything: a server that frames by Transfer-Encoding and keeps the
    connection open reads the hidden request after the last chunk."""
    body = LAST + hidden(tok)
    return _post(tok, b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body), body)


def _te_then_cl(tok: str) -> bytes:
    body = chunk(hidden(tok)) + LAST
    first_line = body.split(b"\r\n", 1)[0] + b"\r\n"
    return _post(tok, b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(first_line), body)


def _chunked(headers: bytes, body: bytes) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        return _post(tok, headers, body + hidden(tok))

    return build


def _bad_chunks(body: bytes) -> Callable[[str], bytes]:
    return _chunked(b"Transfer-Encoding: chunked\r\n", body)


def _cl(value: bytes) -> Callable[[str], bytes]:
    """An invalid Content-Length in front of the hidden request: read as 0 (or refused) it is next."""

    def build(tok: str) -> bytes:
        return _post(tok, b"Content-Length: %s\r\n" % value, hidden(tok))

    return build


def _header(line: bytes) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        return _get(tok, line + b"\r\n") + hidden(tok)

    return build


def _line(fmt: bytes) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        return _get(tok, line=fmt.replace(b"TOK", tok.encode())) + hidden(tok)

    return build


def _ok_pipelined(tok: str) -> bytes:
    second = b"GET /p/%s/next HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (tok.encode(), HOST)
    return _get(tok) + second


def _ok_post(headers: bytes, body: bytes) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        return _post(tok, headers + b"Connection: close\r\n", body)

    return build


PROBES: tuple[Probe, ...] = (
    # -- request smuggling by framing ----------------------------------------------------------
    Probe("cl_te", "smuggling", "Content-Length then Transfer-Encoding: chunked (CL covers all)", _cl_te),
    Probe("te_cl", "smuggling", "Transfer-Encoding: chunked then Content-Length (CL covers one line)",
          _te_then_cl),
    Probe("te_chunked_identity_cl", "smuggling", "CL + Transfer-Encoding: chunked, identity",
          _te_cl(b"Transfer-Encoding: chunked, identity")),
    Probe("te_leading_space_cl", "smuggling", "CL + Transfer-Encoding:  chunked (extra space)",
          _te_cl(b"Transfer-Encoding:  chunked")),
    Probe("te_space_before_colon_cl", "smuggling", "CL + 'Transfer-Encoding : chunked'",
          _te_cl(b"Transfer-Encoding : chunked")),
    Probe("te_obs_fold_cl", "smuggling", "CL + Transfer-Encoding folded onto a continuation line",
          _te_cl(b"Transfer-Encoding:\r\n chunked")),
    Probe("te_vtab_cl", "smuggling", "CL + Transfer-Encoding:<VT>chunked", _te_cl(b"Transfer-Encoding:\x0bchunked")),
    Probe("te_xchunked_cl", "smuggling", "CL + Transfer-Encoding: xchunked", _te_cl(b"Transfer-Encoding: xchunked")),
    Probe("te_chunked_identity", "smuggling", "Transfer-Encoding: chunked, identity (chunked not last)",
          _chunked(b"Transfer-Encoding: chunked, identity\r\n", LAST)),
    Probe("te_twice", "smuggling", "Transfer-Encoding: chunked twice",
          _chunked(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", LAST)),
    Probe("te_http10", "smuggling", "Transfer-Encoding: chunked in an HTTP/1.0 request",
          lambda tok: _post(tok, b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n",
                            LAST + hidden(tok), version=b"HTTP/1.0")),
    Probe("cl_twice", "smuggling", "Content-Length: 0 and Content-Length: N",
          lambda tok: _post(tok, b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(hidden(tok)), hidden(tok))),
    Probe("cl_list", "smuggling", "Content-Length: 0, N",
          lambda tok: _post(tok, b"Content-Length: 0, %d\r\n" % len(hidden(tok)), hidden(tok))),
    Probe("cl_plus", "smuggling", "Content-Length: +N", lambda tok: _post(
        tok, b"Content-Length: +%d\r\n" % len(hidden(tok)), hidden(tok))),
    Probe("cl_negative", "smuggling", "Content-Length: -1", _cl(b"-1")),
    Probe("cl_underscore", "smuggling", "Content-Length: 0_0 (Python's int() takes it)", _cl(b"0_0")),
    Probe("underscore_cl", "smuggling", "Content_Length: N (underscore look-alike)",
          lambda tok: _post(tok, b"Content_Length: %d\r\n" % len(hidden(tok)), hidden(tok))),
    # -- chunked body framing ------------------------------------------------------------------
    Probe("chunk_nonhex", "framing", "chunk size 'zz'", _bad_chunks(b"zz\r\nhello\r\n" + LAST)),
    Probe("chunk_negative", "framing", "chunk size '-5'", _bad_chunks(b"-5\r\nhello\r\n" + LAST)),
    Probe("chunk_overflow", "framing", "chunk size of 33 hex digits", _bad_chunks(b"1" + b"0" * 32 + b"\r\nhello\r\n"
                                                                                   + LAST)),
    Probe("chunk_0x", "framing", "chunk size '0x5'", _bad_chunks(b"0x5\r\nhello\r\n" + LAST)),
    Probe("chunk_underscore", "framing", "chunk size '0_5'", _bad_chunks(b"0_5\r\nhello\r\n" + LAST)),
    Probe("chunk_size_space", "framing", "chunk size '5 ' (trailing space, no extension)",
          _bad_chunks(b"5 \r\nhello\r\n" + LAST)),
    Probe("chunk_too_long", "framing", "chunk data longer than its size", _bad_chunks(b"5\r\nhelloXX\r\n" + LAST)),
    Probe("chunk_bare_lf", "framing", "chunk lines ended by LF alone", _bad_chunks(b"5\nhello\n0\n\n")),
    # -- request head syntax -------------------------------------------------------------------
    Probe("obs_fold", "syntax", "obsolete line folding (X-Folded: a CRLF SP b)", _header(b"X-Folded: a\r\n b")),
    Probe("nul_in_header", "syntax", "NUL in a header value", _header(b"X-A: a\x00b")),
    Probe("ctl_in_header", "syntax", "\\x01 in a header value", _header(b"X-A: a\x01b")),
    Probe("del_in_header", "syntax", "DEL in a header value", _header(b"X-A: a\x7fb")),
    Probe("bare_cr_in_header", "syntax", "bare CR in a header value", _header(b"X-A: a\rb")),
    Probe("bare_lf_in_head", "syntax", "a header line ended by LF alone", _header(b"X-A: a\nX-B: b")),
    Probe("nul_in_target", "syntax", "NUL in the target", _line(b"GET /p/TOK\x00x HTTP/1.1")),
    Probe("space_before_colon", "syntax", "'X-A : b'", _header(b"X-A : b")),
    Probe("header_without_colon", "syntax", "a header line without a colon", _header(b"X-No-Colon")),
    Probe("space_in_header_name", "syntax", "'X A: b'", _header(b"X A: b")),
    Probe("underscore_xff", "syntax", "X_Forwarded_For posing as X-Forwarded-For",
          _header(b"X_Forwarded_For: 6.6.6.6")),
    Probe("no_host", "syntax", "HTTP/1.1 without Host", lambda tok: b"GET /p/%s HTTP/1.1\r\n\r\n" % tok.encode()
          + hidden(tok)),
    Probe("two_hosts", "syntax", "two Host fields", _header(b"Host: evil.example")),
    Probe("invalid_method", "syntax", "method 'G@T'", _line(b"G@T /p/TOK HTTP/1.1")),
    Probe("version_2", "syntax", "HTTP/2.0 on an HTTP/1 connection", _line(b"GET /p/TOK HTTP/2.0")),
    Probe("version_garbage", "syntax", "version 'HTTX/1.1'", _line(b"GET /p/TOK HTTX/1.1")),
    Probe("http09", "syntax", "HTTP/0.9 request line (no version)", _line(b"GET /p/TOK")),
    Probe("absolute_form", "syntax", "absolute-form target (not a proxy)",
          _line(b"GET http://evil.example/p/TOK HTTP/1.1")),
    Probe("double_space", "syntax", "two spaces in the request line", _line(b"GET  /p/TOK HTTP/1.1")),
    Probe("space_in_target", "syntax", "a space inside the target", _line(b"GET /p/TOK x HTTP/1.1")),
    Probe("star_get", "syntax", "'*' target outside OPTIONS (X-Probe names the token)",
          lambda tok: _get(tok, b"X-Probe: %s\r\n" % tok.encode(), line=b"GET * HTTP/1.1") + hidden(tok)),
    # -- sizes at the default limits -------------------------------------------------------------
    Probe("huge_request_line", "size", "a 20000-byte target", lambda tok: _get(
        tok, line=b"GET /p/%s?%s HTTP/1.1" % (tok.encode(), b"a" * 20000)) + hidden(tok)),
    Probe("huge_header", "size", "a 20000-byte header field", _header(b"X-Big: " + b"b" * 20000)),
    Probe("many_headers", "size", "600 header fields", lambda tok: _get(
        tok, b"".join(b"X-H%d: v\r\n" % i for i in range(600))) + hidden(tok)),
    # -- controls: must be served ----------------------------------------------------------------
    Probe("ok_pipelined", "ok", "two GETs pipelined", _ok_pipelined, ok=True),
    Probe("ok_post_length", "ok", "POST with Content-Length", _ok_post(b"Content-Length: 5\r\n", b"hello"), ok=True),
    Probe("ok_post_chunked", "ok", "POST chunked", _ok_post(b"Transfer-Encoding: chunked\r\n",
                                                            chunk(b"hello") + chunk(b" world") + LAST), ok=True),
    Probe("ok_chunk_extension", "ok", "POST chunked with a chunk extension",
          _ok_post(b"Transfer-Encoding: chunked\r\n", b"5;name=value\r\nhello\r\n" + LAST), ok=True),
    Probe("ok_custom_underscore", "ok", "X-Custom_Thing (an underscore, not posing as a standard name)",
          lambda tok: _get(tok, b"X-Custom_Thing: v\r\nConnection: close\r\n"), ok=True),
    Probe("ok_http10", "ok", "an HTTP/1.0 GET", lambda tok: b"GET /p/%s HTTP/1.0\r\n\r\n" % tok.encode(), ok=True),
)

#: The limits the limit probes run under (the corpus server is started with them).
LIMITS = {
    "limit_request_line": 2000,
    "limit_request_fields": 30,
    "limit_request_field_size": 1000,
    "limit_request_body": 10000,
}


def _limit_line(length: int) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        first = b"GET /p/%s?" % tok.encode()
        pad = length - len(first) - len(b" HTTP/1.1")
        return _get(tok, b"Connection: close\r\n", line=first + b"a" * pad + b" HTTP/1.1") + hidden(tok)

    return build


def _limit_fields(count: int) -> Callable[[str], bytes]:
    # Host and Connection count as fields too.
    def build(tok: str) -> bytes:
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(count - 2))
        return _get(tok, extra + b"Connection: close\r\n") + hidden(tok)

    return build


def _limit_field_size(size: int) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        value = b"v" * (size - len(b"X-Big: "))
        return _get(tok, b"X-Big: " + value + b"\r\nConnection: close\r\n") + hidden(tok)

    return build


def _limit_body(size: int, chunked: bool) -> Callable[[str], bytes]:
    def build(tok: str) -> bytes:
        data = b"x" * size
        if chunked:
            return _post(tok, b"Transfer-Encoding: chunked\r\nConnection: close\r\n",
                         b"".join(chunk(data[i:i + 4096]) for i in range(0, size, 4096)) + LAST) + hidden(tok)
        return _post(tok, b"Content-Length: %d\r\nConnection: close\r\n" % size, data) + hidden(tok)

    return build


#: Just under and just over each limit of :data:`LIMITS`.
LIMIT_PROBES: tuple[Probe, ...] = (
    Probe("line_under", "limit", "request line 1900 bytes", _limit_line(1900), ok=True, limit="limit_request_line"),
    Probe("line_over", "limit", "request line 2100 bytes", _limit_line(2100), limit="limit_request_line"),
    Probe("fields_under", "limit", "25 fields", _limit_fields(25), ok=True, limit="limit_request_fields"),
    Probe("fields_over", "limit", "40 fields", _limit_fields(40), limit="limit_request_fields"),
    Probe("field_size_under", "limit", "a 900-byte field", _limit_field_size(900), ok=True,
          limit="limit_request_field_size"),
    Probe("field_size_over", "limit", "a 1100-byte field", _limit_field_size(1100), limit="limit_request_field_size"),
    Probe("body_under", "limit", "a 9000-byte body (Content-Length)", _limit_body(9000, False), ok=True,
          limit="limit_request_body"),
    Probe("body_over", "limit", "a 20000-byte body (Content-Length)", _limit_body(20000, False),
          limit="limit_request_body"),
    Probe("chunked_body_under", "limit", "a 9000-byte chunked body", _limit_body(9000, True), ok=True,
          limit="limit_request_body"),
    Probe("chunked_body_over", "limit", "a 20000-byte chunked body", _limit_body(20000, True),
          limit="limit_request_body"),
)

ALL_PROBES = PROBES + LIMIT_PROBES
BY_NAME = {probe.name: probe for probe in ALL_PROBES}


# --------------------------------------------------------------------------- running a probe


@dataclasses.dataclass
class Result:
    probe: str
    token: str
    statuses: list[int]  # the responses, in order
    closed: bool  # the server closed (or reset) the connection within the wait
    elapsed: float
    app_started: bool = False  # the app was called for the probe's request
    app_done: bool = False  # ...and read its whole body
    smuggled: bool = False  # the app saw /smuggled/<token>
    served_next: bool = False  # the app served the control's pipelined second request
    error: str = ""

    @property
    def outcome(self) -> str:
        """refused (4xx/5xx), closed (no answer), reached (the app served it), open (no answer, still open)."""
        if self.app_done:
            return "reached"
        if self.statuses and self.statuses[0] >= 400:
            return "refused"
        if not self.statuses:
            return "closed" if self.closed else "open"
        return f"answered {self.statuses[0]}"

    def describe(self) -> str:
        bits = [self.outcome]
        if self.statuses:
            bits.append("responses " + ",".join(map(str, self.statuses)))
        bits.append("closed" if self.closed else "left open")
        if self.app_started and not self.app_done:
            bits.append("app called, body read failed")
        if self.smuggled:
            bits.append("SMUGGLED REQUEST REACHED THE APP")
        if self.error:
            bits.append(self.error)
        return f"{self.probe}: " + "; ".join(bits) + f" ({self.elapsed:.2f}s)"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "statuses": self.statuses, "closed": self.closed,
                "app_started": self.app_started, "smuggled": self.smuggled, "elapsed": round(self.elapsed, 2)}


def parse_statuses(data: bytes) -> list[int]:
    """The status codes of the responses in ``data`` (framed by Content-Length or chunked; a response
    with neither runs to the end)."""
    statuses: list[int] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].decode("latin-1").split("\r\n")
        match = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
        if not match:
            break
        status = int(match.group(1))
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        pos = end + 4
        if 100 <= status < 200:
            continue
        statuses.append(status)
        if "content-length" in headers and headers["content-length"].isdigit():
            pos += int(headers["content-length"])
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    return statuses
                size = int(data[pos:line_end].split(b";")[0] or b"0", 16)
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
        else:
            break
    return statuses


def send_probe(address: tuple[str, int] | str, payload: bytes, *, wait: float = 4.0,
               quiet: float = 0.6) -> tuple[bytes, bool, float, str]:
    """Send ``payload``; read until the server closes, until ``quiet`` seconds pass without data once
    something arrived, or for ``wait`` seconds at most.
    Returns (data, closed, elapsed, error)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    start = time.monotonic()
    data = b""
    closed = False
    error = ""
    try:
        sock.settimeout(wait)
        try:
            sock.connect(address)
        except OSError as exc:  # the server is gone (or not accepting): nothing was sent
            return b"", True, time.monotonic() - start, f"connect: {exc.__class__.__name__}"
        try:
            sock.sendall(payload)
        except OSError as exc:  # refused half-way through a large probe: read what was answered
            error = f"send: {exc.__class__.__name__}"
        deadline = start + wait
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            timeout = deadline - now
            if data:
                timeout = min(timeout, quiet)
            sock.settimeout(timeout)
            try:
                got = sock.recv(65536)
            except TimeoutError:
                break
            except OSError as exc:  # reset: closed, hard
                closed = True
                error = error or f"recv: {exc.__class__.__name__}"
                break
            if not got:
                closed = True
                break
            data += got
    finally:
        sock.close()
    return data, closed, time.monotonic() - start, error


def run_corpus(address: tuple[str, int] | str, state_dir: str, probes: Sequence[Probe] = ALL_PROBES, *,
               wait: float = 4.0, parallel: int = 16) -> dict[str, Result]:
    """Send every probe on its own connection (``parallel`` at a time) and tell what became of it."""
    run = secrets.token_hex(4)
    tokens = {probe.name: f"{run}{i:03d}" for i, probe in enumerate(probes)}

    def one(probe: Probe) -> Result:
        tok = tokens[probe.name]
        data, closed, elapsed, error = send_probe(address, probe.build(tok), wait=wait)
        return Result(probe.name, tok, parse_statuses(data), closed, elapsed, error=error)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        results = {r.probe: r for r in pool.map(one, probes)}
    time.sleep(0.3)  # a request handed to the app just before its connection closed
    calls = read_calls(state_dir)
    for result in results.values():
        tok = result.token
        mine = [c for c in calls if tok in c.get("path", "") + "?" + c.get("query", "") + c.get("probe", "")]
        first = [c for c in mine if "/smuggled/" not in c["path"] and not c["path"].endswith("/next")]
        result.app_started = any(c["phase"] == "start" for c in first)
        result.app_done = any(c["phase"] == "done" for c in first)
        result.smuggled = any("/smuggled/" in c["path"] for c in mine)
        result.served_next = any(c["path"].endswith("/next") and c["phase"] == "done" for c in mine)
    return results


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__)
        return 2
    target, state = args
    address: tuple[str, int] | str
    if target.startswith("unix:"):
        address = target[5:]
    else:
        host, _, port = target.rpartition(":")
        address = (host, int(port))
    results = run_corpus(address, state, PROBES)
    for result in results.values():
        print(result.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
