"""The workloads of ``serve bench --workload NAME``: small WSGI apps, one per kind of load.

Each app answers every path the same way, so ``--path`` never turns a workload into a 404.
They import nothing beyond the standard library, so every backend (and every native server
command in benchmarks/overhead.py) loads exactly the same code.

    hello   plaintext "Hello, World!" (13 bytes): the server's own per-request cost
    json    a small JSON object, serialised per request
    large   a 100 KB response: write path and buffering
    echo    POST of 64 KB echoed back: request body reading
    sleep   10 ms of time.sleep: I/O-bound, shows how many requests run at once
    cpu     about 1 ms of pure-Python CPU work (30,000 loop steps, measured on the reference machine)
"""

from __future__ import annotations

import json as _json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    StartResponse = Callable[..., Any]

HELLO_BODY = b"Hello, World!"
LARGE_BODY = b"x" * (100 * 1024)
#: Loop steps that take about 1 ms on the reference machine (2-core VM, Python 3.11).
CPU_STEPS = 30_000
SLEEP_SECONDS = 0.010
#: Largest request body the echo app accepts (the workload sends 64 KB).
ECHO_LIMIT = 1024 * 1024


def _reply(start_response: StartResponse, body: bytes, content_type: str) -> list[bytes]:
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Plaintext hello world."""
    return _reply(start_response, HELLO_BODY, "text/plain")


def json(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A small JSON document, serialised on every request (as a real API would)."""
    body = _json.dumps({"message": "Hello, World!", "path": environ.get("PATH_INFO", "/")}).encode()
    return _reply(start_response, body, "application/json")


def large(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A 100 KB response body."""
    return _reply(start_response, LARGE_BODY, "application/octet-stream")


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the request body (Content-Length bounded) and send it back."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > ECHO_LIMIT:
        start_response("413 Payload Too Large", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return _reply(start_response, body, "application/octet-stream")


def sleep(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Wait 10 ms, as for a database or an upstream API (gevent patches time.sleep)."""
    time.sleep(SLEEP_SECONDS)
    return _reply(start_response, b"slept 10 ms", "text/plain")


def sleep100(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Wait 100 ms (benchmarks/tornado_threads.py: do slow requests queue behind each other?)."""
    time.sleep(0.1)
    return _reply(start_response, b"slept 100 ms", "text/plain")


def cpu(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """About 1 ms of CPU in pure Python (holds the GIL, as template rendering would)."""
    total = 0
    for i in range(CPU_STEPS):
        total += i * i % 7
    return _reply(start_response, str(total).encode(), "text/plain")
