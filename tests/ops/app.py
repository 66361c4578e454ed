"""The app tests/ops serves (stdlib only).  It records what happens to it in ``$OPS_STATE_DIR``
(when set), so the test process can see, across processes and backends, whether the app was
called:

  $OPS_STATE_DIR/calls     one line per call of the app: "<pid> <METHOD> <PATH>[?QUERY]" (appended with a
                           single O_APPEND write, so lines from several workers never mix)
  $OPS_STATE_DIR/imports   one line per import of this module: "<pid>"

Routes (every one of them is a call, and counted):

  /?ms=0     JSON {"label": $OPS_LABEL, "pid": pid}, after sleeping ms milliseconds: which
             instance answered (scale-out test)
  /env       JSON {"environ": the app's os.environ keys, "child": the keys a child process of the
             app gets}: does the launcher leave LISTEN_* for the app's children to take?
  /slow?t=1  sleeps t seconds, then "slow done"
  /created   201 "created" (any method; a POST body is read and dropped)
  /error     raises RuntimeError from the app callable (the server answers 500 and logs it)
  anything else: 404 "no such page"
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

StartResponse = Callable[..., Any]
_STATE = os.environ.get("OPS_STATE_DIR", "")
LABEL = os.environ.get("OPS_LABEL", "")


def _append(name: str, line: str) -> None:
    if not _STATE:
        return
    fd = os.open(os.path.join(_STATE, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8", "replace"))
    finally:
        os.close(fd)


_append("imports", str(os.getpid()))


def _reply(start_response: StartResponse, status: str, body: bytes,
           content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _child_environ_keys() -> list[str]:
    code = "import json, os; print(json.dumps(sorted(os.environ)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20, check=True).stdout
    keys: list[str] = json.loads(out)
    return keys


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    path = environ.get("PATH_INFO", "") or "/"
    method = environ.get("REQUEST_METHOD", "GET")
    raw_query = environ.get("QUERY_STRING", "")
    _append("calls", f"{os.getpid()} {method} {path}{'?' + raw_query if raw_query else ''}")
    query = dict(urllib.parse.parse_qsl(raw_query))
    if path == "/":
        if "ms" in query:
            time.sleep(float(query["ms"]) / 1000.0)
        body = json.dumps({"label": LABEL, "pid": os.getpid()}).encode()
        return _reply(start_response, "200 OK", body, "application/json")
    if path == "/env":
        data = {"environ": sorted(os.environ), "child": _child_environ_keys(), "pid": os.getpid()}
        return _reply(start_response, "200 OK", json.dumps(data).encode(), "application/json")
    if path == "/slow":
        time.sleep(float(query.get("t", "1")))
        return _reply(start_response, "200 OK", b"slow done")
    if path == "/created":
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit():
            environ["wsgi.input"].read(int(length))
        return _reply(start_response, "201 Created", b"created")
    if path == "/error":
        raise RuntimeError("ops-app-error: raised on purpose")
    return _reply(start_response, "404 Not Found", b"no such page")
