"""gevent: ``gevent.pywsgi.WSGIServer``, one greenlet per connection, in a monkey-patched process.

Mapped: --connections -> ``spawn=Pool(n)``, one greenlet pool shared by every listener (when it is
full gevent stops accepting until a connection ends), --keepalive -> a socket timeout while the
handler waits for the next request line and reads its headers (0: ``Connection: close`` after every
response), --backlog on the launcher's socket, ``-o max_accept=N`` -> ``WSGIServer.max_accept``.
--threads is not mapped: greenlets are not threads, so it is rejected before start; --timeout is
not mapped either (a greenlet cannot be interrupted from outside).  ``wsgi.multithread`` is true,
because the app is called concurrently within one process (greenlet-local state, as with threads),
and ``wsgi.multiprocess`` is true under --workers N.  The server's own access log is off (the
launcher's middleware writes it); gevent.pywsgi has no proxy-header handling to turn off.

Traps handled, and why:

* The Flask guide's ``gevent.wsgi`` no longer exists: ``gevent.pywsgi.WSGIServer`` runs on the
  launcher's already-bound sockets (made non-blocking, as gevent's own listeners are, or a worker
  that loses an accept race to another worker would block its whole loop in ``accept()``).
* ``monkey.patch_all()`` runs in :meth:`GeventBackend.prepare`, which the launcher calls before the
  app is imported; unpatched, ``time.sleep`` in the app serialises every request.  Under the
  pre-fork supervisor the master never calls it (it never imports gevent); each worker patches
  itself after the fork.  The launcher's start path imports nothing gevent warns about (``ssl``).
* pywsgi writes the headers and the body in two ``send()`` calls, so with Nagle's algorithm every
  response waits ~40 ms for the client's delayed ACK (1.1k instead of 5.5k requests/s here):
  TCP_NODELAY is set on every accepted TCP connection.
* ``serve_forever()`` ends with ``stop(timeout=1)``, which kills every handler still running after
  one second, and ``stop()`` waits for connections, not requests, so an idle keep-alive client holds
  it.  So :meth:`serve` uses ``start()`` and waits on its own event; a stop closes the listeners,
  waits for the launcher's in-flight count (plus requests read but not yet handed to the app) to
  reach zero, answers with ``Connection: close`` meanwhile, then shuts the idle connections down.
* With the patched ``signal`` module a Python signal handler runs inside gevent's hub when the
  process is idle, and the hub must never block: the launcher's handler (which starts its watchdog
  thread, a greenlet here) would fail with BlockingSwitchOutError.  The handler is run in a fresh
  greenlet instead.  The launcher's watchdog is a greenlet too, which a greenlet that never yields
  (a CPU-bound request) would starve along with the handler itself: so a real OS thread enforces
  the same hard deadline from the first signal, and a second SIGINT still exits at once.

gevent.pywsgi's parser is lax (37 of gunicorn's 63 invalid requests accepted, 7 of 13 smuggling
probes reached the app, measured here): never expose this backend to untrusted clients without a
request-hygiene layer or a reverse proxy in front.
"""

from __future__ import annotations

import os
import socket

from backends.base import Backend
from launcher.options import Option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: Seconds serve() waits, after the drain, for the closed idle connections to finish.
CLOSE_GRACE = 1.0
#: Seconds a new connection may take to send its first request line when --keepalive is 0.
FIRST_REQUEST_TIMEOUT = 5.0


class GeventBackend(Backend):
    name = "gevent"
    extra = "gevent"
    protocol = "http"
    library = "gevent"
    distribution = "gevent"
    # 23.9.0 fixed chunked-trailer smuggling (CVE-2023-41419), 25.4.1 the 100-continue one.
    min_version = "25.4.1"
    supports = frozenset({"connections", "keepalive"})
    option_spec = (
        Option("max_accept", "int", None, "connections accepted per wake-up of the accept loop (gevent: 100;"
               " 1 with several workers, which spreads connections across them)", minimum=1),
    )

    def __init__(self) -> None:
        super().__init__()
        self._servers: list[Any] = []
        self._connections: set[Any] = set()
        self._done: Any = None
        #: set by close(): handlers stop reading further requests
        self.closing = False
        #: set when serve() returns (the hard-deadline thread then leaves the process alone)
        self.returned = False
        #: set by the first SIGTERM/SIGINT, before the launcher's handler had a chance to run
        self.signalled = False
        self._deadline_started = False

    # ------------------------------------------------------------------ before the app

    def prepare(self, opts: ServeOptions) -> None:
        # Before the app (and anything it imports) is loaded, so its socket, time, threading, ssl...
        # are gevent's.  Idempotent: a second call does nothing.
        from gevent import monkey

        monkey.patch_all()

    # ------------------------------------------------------------------ running

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        from gevent.event import Event
        from gevent.pool import Pool

        server_cls, handler_cls = _classes()
        self._done = Event()
        pool = Pool(opts.connections)
        max_accept = self.backend_options.get("max_accept")
        for listener in listeners:
            sock = listener.sock
            # gevent's accept loop expects a non-blocking listener (it returns on EAGAIN).
            sock.setblocking(False)
            server = server_cls(sock, app, spawn=pool, log=None, handler_class=handler_cls,
                                environ=_base_environ(listener, opts))
            server.launcher_backend = self
            server.launcher_tcp = not listener.is_unix
            server.launcher_keepalive = opts.keepalive
            if max_accept is not None:
                server.max_accept = max_accept
            self._servers.append(server)
        self._reroute_signals(opts)
        for server in self._servers:
            server.start()
        try:
            ready(listeners)
            self._done.wait()
            # The drain is over: give the idle connections close() shut down a moment to finish
            # (the busy ones left were cut off at the deadline: not worth waiting for).
            deadline = _monotonic() + CLOSE_GRACE
            while _monotonic() < deadline and any(not h.launcher_busy for h in list(self._connections)):
                _gevent_sleep(0.02)
        finally:
            self.returned = True

    def _reroute_signals(self, opts: ServeOptions) -> None:
        """Run the launcher's SIGTERM/SIGINT handlers in a greenlet of their own, not in the hub."""
        import signal

        import gevent

        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, _in_greenlet(handler, self, gevent.spawn, opts.graceful_timeout))

    # ------------------------------------------------------------------ stopping

    def stop(self, timeout: float) -> None:
        """As :meth:`Backend.stop`, with the drain in a greenlet: never blocks, even in the hub."""
        import gevent

        if self._stopping.is_set():
            return
        self._stopping.set()
        self.stop_accepting()
        gevent.spawn(self._drain_then_close, timeout)
        self.start_hard_deadline(timeout)

    def start_hard_deadline(self, timeout: float) -> None:
        """A real OS thread that exits the process past the deadline, as the launcher's watchdog
        does: that one is a greenlet here, which a greenlet that never yields would starve."""
        if not self._deadline_started:
            self._deadline_started = True
            _start_hard_deadline(self, timeout)

    def stop_accepting(self) -> None:
        # close() stops the accept watcher and closes this process's copy of the listening socket;
        # running handlers are untouched.  Responses from now on say Connection: close.
        for server in self._servers:
            server.close()

    def pending(self) -> int:
        # Connections that read a request line but whose request is not (or no longer) counted by
        # the launcher: headers being read, app not called yet, or response being finished.
        busy = sum(1 for handler in list(self._connections) if handler.launcher_busy)
        active = self.inflight.active if self.inflight is not None else 0
        return max(0, busy - active)

    def close(self) -> None:
        self.closing = True
        for handler in list(self._connections):
            if not handler.launcher_busy:
                handler.launcher_shutdown()  # wakes its blocked read with EOF: the greenlet ends
        if self._done is not None:
            self._done.set()


def _base_environ(listener: Listener, opts: ServeOptions) -> dict[str, Any]:
    """SERVER_NAME/PORT set here: gevent would resolve the name (a DNS lookup at start) and leaves
    both empty on a unix socket, which PEP 3333 forbids."""
    if listener.is_unix:
        name, port = "localhost", "80"
    else:
        address = listener.address
        name, port = address.host, str(address.port)
    return {
        "SERVER_NAME": name,
        "SERVER_PORT": port,
        "wsgi.multithread": True,
        "wsgi.multiprocess": opts.workers > 1,
    }


def _in_greenlet(handler: Callable[..., Any], backend: GeventBackend, spawn: Callable[..., Any],
                 graceful_timeout: float) -> Any:
    """Wrap the launcher's signal handler so it runs in a greenlet of its own.

    In the hub it would have to block (it starts its watchdog thread); in whatever greenlet happens
    to be running it would switch away from it at an arbitrary point.  The deadline starts at the
    signal even when a greenlet that never yields keeps the launcher's handler from running.
    """
    import signal

    def on_signal(signum: int, frame: object) -> None:
        if not backend.signalled:
            backend.signalled = True
            backend.start_hard_deadline(graceful_timeout)
            spawn(handler, signum, None)
        elif backend._stopping.is_set():
            # A repeat once the launcher's handler ran: it exits at once (second SIGINT) or ignores
            # it (SIGTERM), never blocks; so it runs here, where a busy greenlet cannot delay it.
            handler(signum, frame)
        elif signum == signal.SIGINT:
            # The first signal's handler is still queued behind a busy greenlet: exit as it would.
            os.write(2, b"second interrupt: exiting now\n")
            os._exit(130)

    return on_signal


def _start_hard_deadline(backend: GeventBackend, timeout: float) -> None:
    from gevent import monkey

    from launcher.lifecycle import FORCE_GRACE

    start_new_thread = monkey.get_original("_thread", "start_new_thread")
    real_sleep = monkey.get_original("time", "sleep")

    def watchdog() -> None:
        real_sleep(timeout + FORCE_GRACE + 0.5)  # the launcher's own watchdog fires first if it can
        if backend.returned:
            return  # stopped in time (launch() may go on running in this process)
        cut = backend.inflight.active if backend.inflight is not None else 0
        os.write(2, f"server did not stop within {timeout:g}s; {cut} request(s) cut off\n".encode())
        os._exit(1)

    start_new_thread(watchdog, ())


def _monotonic() -> float:
    import time

    return time.monotonic()


def _gevent_sleep(seconds: float) -> None:
    import gevent

    gevent.sleep(seconds)


_CLASSES: tuple[Any, Any] | None = None


def _classes() -> tuple[Any, Any]:
    """The WSGIServer and WSGIHandler subclasses, defined on first use (gevent imported lazily)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    from gevent.pywsgi import WSGIHandler, WSGIServer

    class Handler(WSGIHandler):  # type: ignore[misc]
        """Tracks its connection for the drain; idle timeout between requests; close on stop."""

        launcher_busy = False
        launcher_served = 0

        def handle(self) -> None:
            backend = self.server.launcher_backend
            backend._connections.add(self)
            try:
                super().handle()
            finally:
                backend._connections.discard(self)

        def read_requestline(self) -> str:
            self.launcher_busy = False
            server = self.server
            if server.launcher_backend.closing:
                return ""  # the stop is closing idle connections: end this one
            keepalive = server.launcher_keepalive
            # An idle connection (before its first request or between two) stays open for
            # --keepalive seconds; the timeout also bounds each read of the headers, and is lifted
            # in read_request before the app reads the body.
            self.socket.settimeout(keepalive if keepalive > 0 else FIRST_REQUEST_TIMEOUT)
            line: str = super().read_requestline()
            if line:
                self.launcher_busy = True
            return line

        def read_request(self, raw_requestline: str) -> Any:
            result = super().read_request(raw_requestline)
            self.socket.settimeout(None)
            return result

        def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            server = self.server
            closing = server.launcher_backend._stopping.is_set() or server.launcher_keepalive <= 0
            if closing and not any(name.lower() == "connection" for name, _ in headers):
                # Tell the client this connection ends after the response (gevent would only close).
                headers = [*headers, ("Connection", "close")]
            return super().start_response(status, headers, exc_info)

        def _write(self, data: bytes, _bytearray: Any = bytearray) -> None:
            if self.command == "HEAD":
                # pywsgi sends the body of a HEAD response (and a chunk terminator), which the
                # client reads as the start of the next response on a keep-alive connection.
                self.response_use_chunked = False
                return
            super()._write(data)

        def launcher_shutdown(self) -> None:
            sock = getattr(self, "socket", None)
            if sock is None:
                return
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    class Server(WSGIServer):  # type: ignore[misc]
        """Sets TCP_NODELAY on each accepted TCP connection before handling it."""

        launcher_tcp = True

        def handle(self, sock: Any, address: Any) -> None:
            if self.launcher_tcp:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass  # the client is already gone: the handler will find out
            super().handle(sock, address)

    _CLASSES = (Server, Handler)
    return _CLASSES
