"""The request-hygiene rules, on heads written by hand (no server)."""

from __future__ import annotations

import pytest

from launcher.hygiene import Limits, Rejection, check_head, check_raw_head, error_parts, error_response, parse_head

OK_HEADERS = [("Host", "example"), ("Content-Length", "5")]


@pytest.mark.parametrize(
    ("line", "headers", "status", "why"),
    [
        (("GET", "/", "HTTP/1.1"), [("Content-Length", "5"), ("Transfer-Encoding", "chunked")], 400, "both"),
        (("POST", "/", "HTTP/1.1"), [("Content-Length", "5"), ("Content-Length", "6")], 400, "conflicting"),
        (("POST", "/", "HTTP/1.1"), [("Content-Length", "5, 6")], 400, "conflicting"),
        (("POST", "/", "HTTP/1.1"), [("Content-Length", "+5")], 400, "invalid Content-Length"),
        (("POST", "/", "HTTP/1.1"), [("Content-Length", "0x5")], 400, "invalid Content-Length"),
        (("POST", "/", "HTTP/1.1"), [("Content-Length", "\u0665")], 400, "invalid Content-Length"),
        (("POST", "/", "HTTP/1.1"), [("Transfer-Encoding", "chunked, identity")], 400, "end in chunked"),
        (("POST", "/", "HTTP/1.1"), [("Transfer-Encoding", "gzip")], 501, "end in chunked"),
        (("POST", "/", "HTTP/1.1"), [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], 400,
         "once"),
        (("GET", "/", "HTTP/1.1"), [("X_Forwarded_For", "1.2.3.4")], 400, "poses as x-forwarded-for"),
        (("GET", "/", "HTTP/1.1"), [("Content_Length", "5")], 400, "poses as content-length"),
        (("GET", "/", "HTTP/1.1"), [("Bad Name", "x")], 400, "invalid header name"),
        (("GET", "/", "HTTP/1.1"), [("X-A", "a\x00b")], 400, "control character"),
        (("GET", "/", "HTTP/1.1"), [("X-A", "a\r\n b")], 400, "line folding"),
        (("GET", "/", "HTTP/1.1"), [("Accept", "*/*")], 400, "without Host"),
        (("GET", "/", "HTTP/1.1"), [("Host", "a"), ("Host", "b")], 400, "more than one Host"),
        (("GET", "/", "HTTP/1.0"), [("Host", "a"), ("host", "a")], 400, "more than one Host"),
        (("GET", "/", "HTTP/1.1"), [("Host", "a/b@c")], 400, "invalid Host"),
        (("POST", "/", "HTTP/1.0"), [("Transfer-Encoding", "chunked")], 400, "HTTP/1.0"),
        (("G@T", "/", "HTTP/1.1"), OK_HEADERS, 400, "invalid method"),
        (("GET", "/", "HTTP/2.0"), OK_HEADERS, 505, "unsupported version"),
        (("GET", "/", "HTTX/1.1"), OK_HEADERS, 400, "unsupported version"),
        (("GET", "http://evil.example/", "HTTP/1.1"), OK_HEADERS, 400, "absolute-form"),
        (("GET", "/a\x00b", "HTTP/1.1"), OK_HEADERS, 400, "control character"),
        (("GET", "*", "HTTP/1.1"), OK_HEADERS, 400, "'*' target"),
        (("GET", "/" + "a" * 9000, "HTTP/1.1"), OK_HEADERS, 414, "request line longer"),
        (("GET", "/", "HTTP/1.1"), [("X-Big", "b" * 9000)], 431, "longer than"),
        (("GET", "/", "HTTP/1.1"), [(f"X-{i}", "v") for i in range(101)], 431, "more than 100"),
    ],
)
def test_refused(line: tuple[str, str, str], headers: list[tuple[str, str]], status: int, why: str) -> None:
    rejection = check_head(*line, headers)
    assert rejection is not None and rejection.status == status and why in rejection.reason


@pytest.mark.parametrize(
    ("line", "headers"),
    [
        (("GET", "/", "HTTP/1.1"), OK_HEADERS),
        (("GET", "/a?b=c%20d", "HTTP/1.0"), [("X-Custom_Header", "fine: not a standard name")]),
        (("POST", "/", "HTTP/1.1"), [("Host", "x"), ("Transfer-Encoding", "gzip, chunked")]),
        (("POST", "/", "HTTP/1.1"), [("Host", "x"), ("Content-Length", "5"), ("Content-Length", "05")]),
        (("GET", "/", "HTTP/1.0"), []),
        (("GET", "/", "HTTP/1.1"), [("Host", "")]),
        (("GET", "/", "HTTP/1.1"), [("Host", "[::1]:8000")]),
        (("OPTIONS", "*", "HTTP/1.1"), [("Host", "x"), ("User-Agent", "tab\tinside")]),
    ],
)
def test_accepted(line: tuple[str, str, str], headers: list[tuple[str, str]]) -> None:
    assert check_head(*line, headers) is None


def test_limits_are_configurable_and_zero_means_off() -> None:
    assert check_head("GET", "/" + "a" * 9000, "HTTP/1.1", [("Host", "x")], Limits(line=0)) is None
    assert check_head("GET", "/abc", "HTTP/1.1", [("Host", "x")], Limits(line=10)).status == 414  # type: ignore[union-attr]
    assert check_head("GET", "/", "HTTP/1.1", [("Host", "x")] * 1 + [("X", "v")] * 500, Limits(fields=0)) is None


def test_error_response_closes_the_connection() -> None:
    raw = error_response(check_head("GET", "/", "HTTP/1.1", [("X_Forwarded_For", "1")]))  # type: ignore[arg-type]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head


def test_from_options_reads_the_limit_options() -> None:
    class Opts:
        limit_request_line = 10
        limit_request_fields = 2
        limit_request_field_size = 30
        limit_request_body = 40

    limits = Limits.from_options(Opts())
    assert (limits.line, limits.fields, limits.field_size, limits.body) == (10, 2, 30, 40)


def test_parse_head_keeps_names_and_repeats_as_they_arrived() -> None:
    raw = b"POST /a?b HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nx-dup:\t2 \r\nEmpty:\r\n\r\n"
    fields = [("Host", "x"), ("X-Dup", "1"), ("x-dup", "2"), ("Empty", "")]
    assert parse_head(raw) == ("POST", "/a?b", "HTTP/1.1", fields)
    assert parse_head(b"GET / HTTP/1.1") == ("GET", "/", "HTTP/1.1", [])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n", "bare CR or LF"),
        (b"GET / HTTP/1.1\r\nHost: x\rX-B: b\r\n", "bare CR or LF"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\tb\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n", "without a colon"),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n", "malformed request line"),
        (b"GET / x HTTP/1.1\r\nHost: x\r\n", "malformed request line"),
        (b"GET / HTTP/1.1 \r\nHost: x\r\n", "malformed request line"),
        (b"GET /\r\n", "HTTP/0.9"),
        (b"\r\n", "malformed request line"),
    ],
)
def test_parse_head_refuses_what_servers_read_differently(raw: bytes, why: str) -> None:
    rejection = parse_head(raw)
    assert isinstance(rejection, Rejection) and rejection.status == 400 and why in rejection.reason


def test_check_raw_head_parses_then_checks() -> None:
    assert check_raw_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is None
    rejection = check_raw_head(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n")
    assert rejection == Rejection(400, "invalid header name 'Transfer-Encoding '")
    rejection = check_raw_head(b"GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 1\r\n")
    assert rejection is not None and "poses as x-forwarded-for" in rejection.reason


def test_error_parts_match_error_response() -> None:
    status, headers, body = error_parts(Rejection(413, "too big"))
    assert status == "413 Content Too Large" and ("Connection", "close") in headers
    assert error_response(Rejection(413, "too big")).endswith(b"\r\n\r\n" + body)


def _heads() -> list[bytes]:
    """Every head of the reliability corpus and of the tables above, as raw bytes."""
    from tests.reliability.corpus import ALL_PROBES

    heads = []
    for probe in ALL_PROBES:
        raw = probe.build("tok")
        end = raw.find(b"\r\n\r\n")
        heads.append(raw[:end + 4] if end >= 0 else raw)
    for line, fields in [(("GET", "/", "HTTP/1.1"), [("Host", "example")]),
                         (("GET", "/a?b=c_d", "HTTP/1.0"), [("Host", "127.0.0.1:8000"), ("Accept", "*/*")]),
                         (("GET", "/", "HTTP/1.1"), [("host", "x"), ("X-Custom_Thing", "v")]),
                         (("GET", "/", "HTTP/1.1"), [("Host", "x")] + [(f"X-{i}", "v") for i in range(100)]),
                         (("GET", "/", "HTTP/1.1"), [("Host", "x")] + [(f"X-{i}", "v") for i in range(99)])]:
        head = " ".join(line) + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields) + "\r\n"
        heads.append(head.encode("latin-1"))
    return heads


@pytest.mark.parametrize("limits", [Limits(), Limits(0, 0, 0), Limits(60, 3, 40)])
def test_the_inline_common_head_match_agrees_with_the_full_check(limits: Limits) -> None:
    """What servers call inline (COMMON_HEAD.fullmatch up to quick_size, is_common_head beyond it)
    accepts only heads the full check accepts, and agrees with is_common_head."""
    from launcher.hygiene import COMMON_HEAD, is_common_head, quick_size

    quick = quick_size(limits)
    accepted = 0
    for head in _heads():
        inline = COMMON_HEAD.fullmatch(head) is not None if len(head) <= quick else is_common_head(head, limits)
        assert inline == is_common_head(head, limits), head
        if inline:
            accepted += 1
            assert check_raw_head(head, limits) is None, head
    if limits.fields != 3:
        assert accepted >= 5, accepted  # the ordinary heads are accepted (the tiny limits refuse them)
    assert len(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n") <= quick_size()  # wrk's: no limit check
