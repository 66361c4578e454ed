"""The fallback load generator, used only when wrk is not installed: LOW FIDELITY.

``python -m launcher.bench.pyload URL --connections N --duration S`` runs N keep-alive
``http.client`` connections, one thread each, until the deadline, and prints one JSON line in the
shape of the wrk summary (plus every latency, so several processes can be merged exactly).
Python's client costs far more CPU per request than wrk, so on a fast server the generator,
not the server, is what gets measured: the report labels such results "low fidelity".
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.latencies: list[int] = []


def _connection(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)


def _worker(url: urllib.parse.SplitResult, method: str, body: bytes | None, deadline: float, timeout: float,
            counts: _Counts) -> None:
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {"Content-Type": "application/octet-stream"} if body else {}
    latencies: list[int] = []
    requests = nbytes = 0
    errors = dict.fromkeys(counts.errors, 0)
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < deadline:
        if conn is None:
            conn = _connection(url, timeout)
            try:
                conn.connect()
            except TimeoutError:
                errors["timeout"] += 1
                conn = None
                continue
            except OSError:
                errors["connect"] += 1
                conn = None
                time.sleep(0.01)
                continue
        start = time.perf_counter()
        stage = "write"
        try:
            conn.request(method, path, body=body, headers=headers)
            stage = "read"
            response = conn.getresponse()
            data = response.read()
        except TimeoutError:
            errors["timeout"] += 1
            conn.close()
            conn = None
            continue
        except (OSError, http.client.HTTPException):
            errors[stage] += 1
            conn.close()
            conn = None
            continue
        if time.monotonic() > deadline:
            break  # finished after the end: not counted, as wrk does
        latencies.append(int((time.perf_counter() - start) * 1e6))
        requests += 1
        nbytes += len(data)
        if response.status >= 400:
            errors["status"] += 1
        if response.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with counts.lock:
        counts.requests += requests
        counts.bytes += nbytes
        counts.latencies.extend(latencies)
        for key, value in errors.items():
            counts.errors[key] += value


def run(url: str, *, connections: int, duration: float, method: str = "GET", body_size: int = 0,
        timeout: float = 10.0) -> dict[str, Any]:
    """Load ``url`` for ``duration`` seconds; the summary dict (see the module docstring)."""
    parts = urllib.parse.urlsplit(url)
    body = b"x" * body_size if body_size else None
    counts = _Counts()
    socket.setdefaulttimeout(timeout)
    start = time.monotonic()
    deadline = start + duration
    threads = [
        threading.Thread(target=_worker, args=(parts, method, body, deadline, timeout, counts), daemon=True)
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    return {
        "requests": counts.requests,
        "duration_us": int(duration * 1e6),
        "bytes": counts.bytes,
        "errors": counts.errors,
        "latencies_us": sorted(counts.latencies),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m launcher.bench.pyload``: run, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m launcher.bench.pyload", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-size", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    ns = parser.parse_args(argv)
    summary = run(ns.url, connections=ns.connections, duration=ns.duration, method=ns.method,
                  body_size=ns.body_size, timeout=ns.timeout)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
