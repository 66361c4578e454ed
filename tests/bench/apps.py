"""Apps that misbehave on purpose, for the ``serve bench`` tests."""

from __future__ import annotations

import itertools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

#: Requests answered 200 before every later one gets a 500 (per server process): the bench's
#: verification request is the first, so the check passes and the load meets only errors.
GOOD_REQUESTS = 1

_served = itertools.count()


def fail_after_first(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """200 for the first request of this process, 500 for every later one."""
    if next(_served) < GOOD_REQUESTS:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"boom"]


def always_500(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Fails the bench's verification: the backend must be reported as failed, not loaded."""
    start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"boom"]


_served_behind_front = itertools.count()


def fail_after_two(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """fail_after_first behind a front server: 200 for the front's readiness request and the bench's
    verification, 500 for every later one (per server process)."""
    if next(_served_behind_front) < 2:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"boom"]
