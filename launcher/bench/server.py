"""One benchmarked server: started through ``python -m launcher run`` (the code path of ``serve``),
verified with a real request before any load, stopped with SIGTERM.

The server's output goes to a log file of its own: under load some servers log a line per
request (waitress's "Task queue depth"), and a pipe nobody reads would block the server.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse

from launcher.api import Server
from launcher.bench import pinning, procs
from launcher.errors import LauncherError, ServerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.options import ServeOptions


class StartError(LauncherError):
    """The server did not come up; the message ends with the tail of its own output."""


class BenchServer:
    """A running server under benchmark: its argv, log, URL and the launcher's Server handle."""

    def __init__(self, name: str, argv: list[str], log_path: str, handle: Server) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.handle = handle

    @property
    def pid(self) -> int:
        return self.handle.pid

    @property
    def url(self) -> str:
        return self.handle.url

    def alive(self) -> bool:
        """True while the server's main process runs."""
        return self.handle.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's own output."""
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 15.0) -> dict[str, Any]:
        """SIGTERM (Server.stop), then SIGKILL the group for anything left; exit code and seconds."""
        start = time.monotonic()
        try:
            code: int | None = self.handle.stop(timeout=timeout)
        except ServerError:
            code = None
        elapsed = time.monotonic() - start
        # A worker orphaned by its arbiter would keep the next backend's CPU busy: kill the rest of
        # this server's own process group (pgid == pid: it was started in a new session).
        leftovers = [s.pid for s in procs.tree(self.pid) if s.pid != self.pid]
        if leftovers:
            self.handle.kill()
            for pid in leftovers:  # one that left the process group is still in the session
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        return {"exit_code": code, "stop_seconds": round(elapsed, 3), "leftover_processes": len(leftovers)}


def log_tail(path: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file ("" when unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def command(opts: ServeOptions, cpus: tuple[int, ...]) -> list[str]:
    """The server's argv: ``[taskset -c CPUS] python -m launcher run <options> APP``."""
    return [*pinning.prefix(cpus), sys.executable, "-m", "launcher", "run", *opts.to_argv()]


def start(name: str, opts: ServeOptions, *, cpus: tuple[int, ...], workdir: str, tag: str,
          timeout: float = 30.0, require_http: bool = True) -> BenchServer:
    """Start the server and wait (one deadline, watching the child) for its ready file.

    ``require_http=False`` for a backend behind a front server (it may listen on a unix socket).
    """
    ready_path = os.path.join(workdir, f"ready-{tag}.json")
    log_path = os.path.join(workdir, f"server-{tag}.log")
    opts = opts.replace(ready_file=ready_path)
    argv = command(opts, cpus)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    handle = Server(proc.pid, {}, proc)
    try:
        _wait_ready(name, handle, ready_path, log_path, timeout)
    except BaseException:  # not ready, or Ctrl-C while waiting: never leave it running
        handle.kill()
        raise
    if require_http and not handle.url.startswith("http://"):
        handle.kill()
        raise StartError(f"{name} reported no TCP address to load: {handle.ready.get('urls')}")
    return BenchServer(name, argv, log_path, handle)


def _wait_ready(name: str, handle: Server, ready_path: str, log_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = handle.poll()
        if code is not None:
            raise StartError(f"{name} exited with code {code} before it was ready:\n{log_tail(log_path)}")
        if os.path.exists(ready_path):
            try:
                with open(ready_path, encoding="utf-8") as fh:
                    handle.ready = json.load(fh)
                return
            except ValueError:
                pass  # caught mid-write: read again
        if time.monotonic() > deadline:
            raise StartError(f"{name} was not ready within {timeout:g}s:\n{log_tail(log_path)}")
        time.sleep(0.02)


def verify(url: str, path: str, *, method: str = "GET", body: bytes = b"", expect: str = "",
           timeout: float = 10.0) -> dict[str, Any]:
    """Send one request as the load will; ``ok`` is True for a 2xx with a body that meets ``expect``.

    The record (status, headers, size, a sample of the body, keep-alive) goes into the results, so a
    throughput figure can always be traced back to what the server actually answered.
    """
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    record: dict[str, Any] = {"url": url.rstrip("/") + path, "method": method}
    start = time.perf_counter()
    try:
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        record.update(ok=False, reason=f"no answer: {exc.__class__.__name__}: {exc}")
        return record
    finally:
        conn.close()
    record.update(
        status=response.status,
        reason_phrase=response.reason,
        content_type=response.getheader("Content-Type"),
        content_length=response.getheader("Content-Length"),
        body_bytes=len(data),
        body_sample=data[:120].decode("utf-8", "replace"),
        keep_alive=not response.will_close,
        elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
    )
    problem = _check(response.status, data, body, expect)
    record["ok"] = not problem
    if problem:
        record["reason"] = problem
    return record


def _check(status: int, data: bytes, sent: bytes, expect: str) -> str:
    if not 200 <= status < 300:
        return f"status {status}, not 2xx"
    if not data:
        return f"status {status} with an empty body"
    if expect == "echo" and data != sent:
        return f"the echo came back as {len(data)} bytes, not the {len(sent)} sent"
    if expect.startswith("size:") and len(data) != int(expect[5:]):
        return f"body of {len(data)} bytes, expected {expect[5:]}"
    if expect.startswith("exact:") and data != expect[6:].encode():
        return f"unexpected body {data[:60]!r}"
    return ""
