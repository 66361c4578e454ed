"""Each backend as started through ``serve`` and as started by its own command, same settings.

Used by overhead.py (throughput) and startup.py (time to the first 200).  The native commands are
what the server's documentation tells a user to type; where a server has no command (gevent,
tornado) the scripts in benchmarks/native/ do what a careful user would by hand.
"""

from __future__ import annotations

import os
import sys

from benchmarks.common import REPO, serve_script, tool

APP = "benchmarks.apps:hello"
NATIVE_DIR = REPO / "benchmarks" / "native"
#: gunicorn runs two workers on both sides (its arbiter model is the point of using it).
GUNICORN_WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))
THREADS = 4
#: twistd's reactor thread pool has a maximum of 10 and no flag to change it: match it.
TWISTED_POOL = 10


class Pair:
    """One comparison: the launcher's argv and a native argv for the same server and settings."""

    def __init__(self, backend: str, variant: str, launcher: list[str], native: list[str], note: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.backend = backend
        #: a name for the native side when a backend has more than one ("as shipped", "+TCP_NODELAY")
        self.variant = variant
        self.launcher = launcher
        self.native = native
        self.note = note
        self.env = env or {}

    @property
    def label(self) -> str:
        """The backend, and the variant of its native side when there are several."""
        return self.backend + (f" ({self.variant})" if self.variant else "")


def pairs(port: int, workdir: str) -> list[Pair]:
    """Every pair, for a server listening on 127.0.0.1:``port``."""
    serve = [*serve_script(), "--bind", f"127.0.0.1:{port}"]
    pythonpath = {"PYTHONPATH": str(REPO)}
    py = sys.executable
    return [
        Pair("waitress", "", [*serve, "--backend", "waitress", "--threads", str(THREADS), APP],
             [tool("waitress-serve"), f"--listen=127.0.0.1:{port}", f"--threads={THREADS}", APP],
             note="at 50 connections waitress-serve logs 'Task queue depth is N' for about one request in"
                  " three; the launcher folds that warning (one line per 10 s), which is most of a ratio"
                  " above 1 (before the folding the same run measured 0.976)"),
        Pair("gunicorn", "", [*serve, "--backend", "gunicorn", "--workers", str(GUNICORN_WORKERS), "--threads",
                              str(THREADS), APP],
             [tool("gunicorn"), "-w", str(GUNICORN_WORKERS), "-k", "gthread", "--threads", str(THREADS),
              "--no-control-socket", APP, "-b", f"127.0.0.1:{port}"],
             note="both gthread (gunicorn's own rule for threads > 1); the launcher turns gunicorn's control"
                  " socket off, so the native command does too"),
        Pair("gevent", "as shipped", [*serve, "--backend", "gevent", APP],
             [py, str(NATIVE_DIR / "gevent_server.py"), "--port", str(port), APP], env=pythonpath,
             note="pywsgi as shipped: no TCP_NODELAY, so each response waits for a delayed ACK; the launcher's"
                  " backend sets TCP_NODELAY"),
        Pair("gevent", "+TCP_NODELAY", [*serve, "--backend", "gevent", APP],
             [py, str(NATIVE_DIR / "gevent_server.py"), "--port", str(port), "--nodelay", APP], env=pythonpath,
             note="what a knowledgeable user would write by hand: the fair baseline"),
        Pair("tornado", "", [*serve, "--backend", "tornado", "--threads", str(THREADS), APP],
             [py, str(NATIVE_DIR / "tornado_server.py"), "--port", str(port), "--threads", str(THREADS), APP],
             env=pythonpath),
        Pair("twisted", "", [*serve, "--backend", "twisted", "--threads", str(TWISTED_POOL), APP],
             [tool("twistd"), "-n", f"--pidfile={os.path.join(workdir, f'twistd-{port}.pid')}", "web", "--wsgi",
              APP.replace(":", "."), "--listen", f"tcp:{port}:interface=127.0.0.1"],
             env=pythonpath,
             note="twistd web writes an access-log line per request (the launcher's backend has none by default),"
                  " so the native side does a little more work per request"),
    ]


def fair(pair: Pair) -> bool:
    """Whether this pair's ratio is the one the >= 0.98 goal is judged on (gevent: the +TCP_NODELAY one)."""
    return pair.variant != "as shipped"
