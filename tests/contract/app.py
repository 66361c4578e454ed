"""The contract app: a plain PEP 3333 application (stdlib only) used by tests/contract and the
front tests.  The server runs it in another process; state that must survive a request (the
``close()`` markers) goes to files in ``$CONTRACT_STATE_DIR``.

Routes (all also work under a mount prefix: they look at PATH_INFO only):

  /                      "hello"
  /environ[/...]         JSON description of the environ (see ``describe_environ``)
  /echo                  the request body back; X-Echo-Length / X-Echo-Mode headers
  /stream?n=5&delay=.05  n chunks from a generator, no Content-Length
  /close?token=T         body from an iterable whose close() creates $CONTRACT_STATE_DIR/T
  /closed?token=T        "yes" / "no"
  /error                 raises RuntimeError("contract-secret-xyz") from the app callable
  /error-after-start     calls start_response, then raises on the first iteration
                         (?partial=1: yields one chunk first, then raises)
  /headers               two Set-Cookie headers and ``X-Contract-List: one, two``
  /slow?t=0.5            time.sleep(t), then JSON {pid, thread, start, end}
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

SECRET = "contract-secret-xyz"

CGI_KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
    "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

StartResponse = Callable[..., Any]


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def _reply(start_response: StartResponse, status: str, body: bytes,
           content_type: str = "text/plain; charset=utf-8",
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


def _json(start_response: StartResponse, data: Any, status: str = "200 OK") -> list[bytes]:
    return _reply(start_response, status, json.dumps(data, sort_keys=True).encode("ascii"),
                  "application/json")


def _has(obj: Any, names: Iterable[str]) -> dict[str, bool]:
    return {name: callable(getattr(obj, name, None)) for name in names}


def _bytes_in_str_as_utf8(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return None  # not a "bytes in str" value at all: report that as-is (None)


def describe_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """JSON-able view of the environ.

    ``cgi``: every key without a dot whose value is a str (CGI keys, HTTP_*, server extras).
    ``types``: type name of every key without a dot (PEP 3333: all must be ``str``), and of the
    wsgi.* flags.  ``missing``: CGI_KEYS absent from the environ.
    """
    cgi = {k: v for k, v in environ.items() if "." not in k and isinstance(v, str)}
    types = {k: type(v).__name__ for k, v in environ.items() if "." not in k}
    for key in ("wsgi.version", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
                "wsgi.run_once", "wsgi.input", "wsgi.errors"):
        types[key] = type(environ[key]).__name__ if key in environ else "MISSING"
    version = environ.get("wsgi.version")
    return {
        "cgi": cgi,
        "types": types,
        "missing": [k for k in CGI_KEYS if k not in environ],
        "wsgi.version": list(version) if isinstance(version, tuple) else repr(version),
        "wsgi.url_scheme": environ.get("wsgi.url_scheme"),
        "wsgi.multithread": environ.get("wsgi.multithread"),
        "wsgi.multiprocess": environ.get("wsgi.multiprocess"),
        "wsgi.run_once": environ.get("wsgi.run_once"),
        "wsgi.input_terminated": environ.get("wsgi.input_terminated"),
        "wsgi.file_wrapper": "wsgi.file_wrapper" in environ,
        "input": _has(environ.get("wsgi.input"), ("read", "readline", "readlines", "__iter__")),
        "errors": _has(environ.get("wsgi.errors"), ("write", "writelines", "flush")),
        "path_info_utf8": _bytes_in_str_as_utf8(environ.get("PATH_INFO", "")),
        "script_name_utf8": _bytes_in_str_as_utf8(environ.get("SCRIPT_NAME", "")),
        "pid": os.getpid(),
    }


def _read_body(environ: dict[str, Any]) -> tuple[bytes, str]:
    stream = environ["wsgi.input"]
    length = (environ.get("CONTENT_LENGTH") or "").strip()
    if length:
        remaining = int(length)
        parts = []
        while remaining > 0:
            chunk = stream.read(min(remaining, 65536))
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts), "content-length"
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if environ.get("wsgi.input_terminated") or chunked:
        parts = []
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts), "eof"
    return b"", "none"


class ClosingBody:
    """Response iterable whose ``close()`` leaves a marker file for /closed to find."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __iter__(self) -> Iterator[bytes]:
        yield b"closing-"
        yield b"body"

    def close(self) -> None:
        with open(self.marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(self.marker + ".tmp", self.marker)


def _marker(environ: dict[str, Any]) -> str | None:
    token = _query(environ).get("token", "")
    state = os.environ.get("CONTRACT_STATE_DIR")
    if not state or not _TOKEN.match(token):
        return None
    return os.path.join(state, f"closed-{token}")


def _stream(n: int, delay: float) -> Iterator[bytes]:
    for i in range(n):
        if i and delay:
            time.sleep(delay)
        yield f"chunk {i}\n".encode()


def _failing(partial: bool) -> Iterator[bytes]:
    if partial:
        yield b"partial-"
    raise RuntimeError(SECRET)


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "") or "/"

    if path == "/":
        return _reply(start_response, "200 OK", b"hello")

    if path == "/environ" or path.startswith("/environ/"):
        return _json(start_response, describe_environ(environ))

    if path == "/echo":
        body, mode = _read_body(environ)
        return _reply(start_response, "200 OK", body, "application/octet-stream",
                      [("X-Echo-Length", str(len(body))), ("X-Echo-Mode", mode)])

    if path == "/stream":
        q = _query(environ)
        n = max(0, min(int(q.get("n", "5")), 1000))
        delay = max(0.0, min(float(q.get("delay", "0.05")), 2.0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream(n, delay)

    if path == "/close":
        marker = _marker(environ)
        if marker is None:
            return _reply(start_response, "400 Bad Request",
                          b"need ?token=[A-Za-z0-9_-]+ and $CONTRACT_STATE_DIR in the server env")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
        return ClosingBody(marker)

    if path == "/closed":
        marker = _marker(environ)
        if marker is None:
            return _reply(start_response, "400 Bad Request",
                          b"need ?token=[A-Za-z0-9_-]+ and $CONTRACT_STATE_DIR in the server env")
        return _reply(start_response, "200 OK", b"yes" if os.path.exists(marker) else b"no")

    if path == "/error":
        raise RuntimeError(SECRET)

    if path == "/error-after-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _failing(_query(environ).get("partial") == "1")

    if path == "/headers":
        return _reply(start_response, "200 OK", b"headers", extra=[
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/"),
            ("X-Contract-List", "one, two"),
        ])

    if path == "/slow":
        t = max(0.0, min(float(_query(environ).get("t", "0.5")), 30.0))
        start = time.time()
        time.sleep(t)
        return _json(start_response, {"pid": os.getpid(), "thread": threading.get_ident(),
                                      "start": start, "end": time.time()})

    return _reply(start_response, "404 Not Found", b"not found: " + path.encode("latin-1", "replace"))
