"""The request-hygiene rules, on heads written by hand (no server)."""

from __future__ import annotations

import pytest

from launcher.hygiene import Limits, check_head, error_response

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
        (("POST", "/", "HTTP/1.1"), [("Transfer-Encoding", "gzip, chunked")]),
        (("POST", "/", "HTTP/1.1"), [("Content-Length", "5"), ("Content-Length", "05")]),
        (("OPTIONS", "*", "HTTP/1.1"), [("Host", "x"), ("User-Agent", "tab\tinside")]),
    ],
)
def test_accepted(line: tuple[str, str, str], headers: list[tuple[str, str]]) -> None:
    assert check_head(*line, headers) is None


def test_limits_are_configurable_and_zero_means_off() -> None:
    assert check_head("GET", "/" + "a" * 9000, "HTTP/1.1", [], Limits(line=0)) is None
    assert check_head("GET", "/abc", "HTTP/1.1", [], Limits(line=10)).status == 414  # type: ignore[union-attr]


def test_error_response_closes_the_connection() -> None:
    raw = error_response(check_head("GET", "/", "HTTP/1.1", [("X_Forwarded_For", "1")]))  # type: ignore[arg-type]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
