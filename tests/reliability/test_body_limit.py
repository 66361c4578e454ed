"""launcher.middleware.BodyLimit, without a server: --limit-request-body for servers with no limit."""

from __future__ import annotations

import io
from typing import Any

import pytest

from launcher.middleware import BodyLimit, RequestBodyTooLarge


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _call(app: Any, body: bytes, length: str | None) -> tuple[str, list[tuple[str, str]], bytes]:
    environ: dict[str, Any] = {"wsgi.input": io.BytesIO(body)}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    out = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], out


def test_content_length_over_the_limit_is_413_without_calling_the_app() -> None:
    called = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append(1)
        return _echo(environ, start_response)

    status, headers, _ = _call(BodyLimit(app, 10), b"x" * 11, "11")
    assert status.startswith("413") and ("Connection", "close") in headers and not called


@pytest.mark.parametrize("size", [0, 9, 10])
def test_bodies_up_to_the_limit_are_untouched(size: int) -> None:
    assert _call(BodyLimit(_echo, 10), b"x" * size, str(size))[2] == b"x" * size
    assert _call(BodyLimit(_echo, 10), b"x" * size, None)[2] == b"x" * size  # chunked: no length


def test_unknown_length_over_the_limit_is_413_and_never_read_past_it() -> None:
    stream = io.BytesIO(b"x" * 1000)
    environ: dict[str, Any] = {"wsgi.input": stream}
    statuses = []
    list(BodyLimit(_echo, 10)(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["413 Content Too Large"] and stream.tell() <= 11


def test_readline_and_iteration_are_capped_too() -> None:
    def lines(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        got = list(environ["wsgi.input"])
        start_response("200 OK", [])
        return got

    assert _call(BodyLimit(lines, 10), b"ab\ncd\n", None)[2] == b"ab\ncd\n"
    assert _call(BodyLimit(lines, 10), b"abcdef\nghijkl\n", None)[0].startswith("413")


def test_too_large_after_the_response_started_is_raised() -> None:
    def late(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        environ["wsgi.input"].read()
        return [b""]

    with pytest.raises(RequestBodyTooLarge):
        _call(BodyLimit(late, 5), b"x" * 50, None)


def test_no_limit_returns_the_app_itself() -> None:
    assert BodyLimit.wrap(_echo, 0) is _echo and isinstance(BodyLimit.wrap(_echo, 5), BodyLimit)
