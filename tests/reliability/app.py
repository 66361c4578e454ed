"""The reliability app: a plain PEP 3333 app (stdlib only) that records every call it gets.

Each call appends one JSON line to ``$RELIABILITY_STATE_DIR/calls.jsonl`` twice: ``"phase":
"start"`` when the app is called (method, path, query, pid) and ``"phase": "done"`` once it has
read the whole request body (its length).  The corpus tests read that file to tell a request the
server refused from one that reached the app, and to prove that a request hidden behind a
malformed one (path ``/smuggled/...``) never did.  One ``write()`` of a short line to a file
opened with O_APPEND is atomic, so threads, greenlets and worker processes can share it.

Routes (PATH_INFO):

  /slow?t=1.5   sleep t seconds (at most 30), then "slept"
  /error        raises RuntimeError (the server must answer 500 and stay up)
  /whoami       JSON: pid, uid, REMOTE_ADDR, wsgi.url_scheme, HTTP_HOST, SERVER_NAME/PORT, SCRIPT_NAME
                and every HTTP_X_* / HTTP_FORWARDED key the app can see
  anything else reads the body and answers 200 "ok <length>"
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]


def _record(entry: dict[str, Any]) -> None:
    state = os.environ.get("RELIABILITY_STATE_DIR")
    if not state:
        return
    line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(os.path.join(state, "calls.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = (environ.get("CONTENT_LENGTH") or "").strip()
    if length:
        remaining = int(length)
        parts = []
        while remaining > 0:
            chunk = stream.read(min(remaining, 65536))
            if not chunk:
                raise OSError(f"request body ended {remaining} bytes short of its Content-Length")
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)
    if environ.get("wsgi.input_terminated") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        parts = []
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)
    return b""


def _reply(start_response: StartResponse, status: str, body: bytes, ctype: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "") or "/"
    query = environ.get("QUERY_STRING", "")
    call = {"pid": os.getpid(), "method": environ.get("REQUEST_METHOD", ""), "path": path, "query": query,
            "probe": environ.get("HTTP_X_PROBE", "")}
    _record({**call, "phase": "start"})
    if path == "/error":
        raise RuntimeError("reliability-app-error")
    if path == "/slow":
        t = float(dict(urllib.parse.parse_qsl(query)).get("t", "1"))
        time.sleep(max(0.0, min(t, 30.0)))
        _record({**call, "phase": "done", "length": 0})
        return _reply(start_response, "200 OK", b"slept")
    if path == "/whoami":
        seen = {key: value for key, value in environ.items()
                if isinstance(value, str) and (key.startswith(("HTTP_X", "HTTP_FORWARDED")))}
        data = {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR"),
            "wsgi.url_scheme": environ.get("wsgi.url_scheme"),
            "HTTP_HOST": environ.get("HTTP_HOST"),
            "SERVER_NAME": environ.get("SERVER_NAME"),
            "SERVER_PORT": environ.get("SERVER_PORT"),
            "SCRIPT_NAME": environ.get("SCRIPT_NAME"),
            "headers": seen,
        }
        _record({**call, "phase": "done", "length": 0})
        return _reply(start_response, "200 OK", json.dumps(data, sort_keys=True).encode(), "application/json")
    body = _read_body(environ)
    _record({**call, "phase": "done", "length": len(body)})
    return _reply(start_response, "200 OK", b"ok %d" % len(body))


def read_calls(state_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every call recorded so far under ``state_dir``."""
    try:
        with open(os.path.join(state_dir, "calls.jsonl"), encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
