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

Request hygiene and limits (the launcher's, :mod:`launcher.hygiene`).  gevent.pywsgi's parser is
lax: 37 of gunicorn's 63 invalid requests accepted, and here 34 of the 49 malformed requests of
tests/reliability reached the app, a hidden second request behind 26 of them (CL + TE in either
order, Transfer-Encoding obfuscated, duplicate or "+N"/"0_0" Content-Length, NUL and control bytes,
obsolete folding, no Host, absolute-form...).  Its header parser (the stdlib's email parser) also
ends the head at the first line it cannot read and takes what follows for the body.  So the handler
reads the header lines itself, up to the blank line and within the limits (a field longer than
--limit-request-field-size or more than --limit-request-fields fields is refused as soon as it is
read, 431), checks the raw head, and only then hands the fields to pywsgi's own request handling
(a message built from the checked fields, not re-parsed).  A refused head is answered with its
status and ``Connection: close`` and the connection ends: nothing sent behind it is read.
pywsgi's fixed 8192-byte cap on the request line stays (``--limit-request-line`` above it has no
effect).  Its chunk parser is strict (hex digits only, at most 16 of them, CRLF checked) but reads
the body lazily, as the app reads ``wsgi.input``: a bad chunk is found while the app reads (the
app has been called with the head; its read fails and the answer is 400, or the connection is
closed if the app already answered).

--limit-request-body: a Content-Length above it is refused before the app is called (413); a
chunked body is read at most one byte past it, then the read fails and the answer is 413 (the app
may have started; the unread rest is never read).  --header-timeout: the request head must be
complete within that many seconds of its first byte (a gevent ``Timeout`` around the reads; pywsgi
has no head timer: a client trickling its head kept the connection indefinitely), and each read of
the request body may wait that long at most (408, connection closed).  --keepalive is the wait for
a request's first byte.
"""

from __future__ import annotations

import os
import socket

from backends.base import Backend
from launcher.hygiene import Limits, Rejection, error_parts, error_response, inspect_head
from launcher.log import logger
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
    supports = frozenset({
        "connections", "keepalive", "header_timeout", "limit_request_line", "limit_request_fields",
        "limit_request_field_size", "limit_request_body",
    })
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

    def sizing(self, opts: ServeOptions) -> str:
        # One greenlet per connection, up to --connections per worker: that, not threads, is how
        # many requests a gevent worker serves at once.
        workers = f"{opts.workers} worker{'s' if opts.workers > 1 else ''}"
        return f"{workers}, up to {opts.connections} connections each"

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
            server.launcher_limits = Limits.from_options(opts)
            server.launcher_header_timeout = opts.header_timeout
            if max_accept is not None:
                server.max_accept = max_accept
            self._servers.append(server)
        self._reroute_signals(opts)
        wakeup = _SignalWakeup()
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
            wakeup.close()
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


class _SignalWakeup:
    """Make a signal wake gevent's hub.

    The hub checks for pending Python signals before each loop iteration.  A signal that lands
    after that check, just before the loop blocks in epoll, is noticed only at the next event, and
    an idle server may have none: once in four CI runs a SIGTERM waited 15 s for the test's second
    one.  Python's own cure is the wakeup fd (the C-level handler writes a byte to it), watched by
    the hub so the loop always returns and runs the handler.
    """

    def __init__(self) -> None:
        import signal

        from gevent import get_hub

        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._watcher = get_hub().loop.io(self._read, 1)
        self._watcher.start(self._drain)

    def _drain(self) -> None:
        try:
            while os.read(self._read, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        import signal

        self._watcher.stop()
        signal.set_wakeup_fd(self._previous)
        os.close(self._read)
        os.close(self._write)


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
    from gevent import Timeout
    from gevent.pywsgi import Input, OldMessage, WSGIHandler, WSGIServer, _InvalidClientInput

    class Refused(ValueError):
        """A request head the hygiene rules refuse (pywsgi reads a ValueError as a client error)."""

        def __init__(self, rejection: Rejection) -> None:
            super().__init__(rejection.reason)
            self.rejection = rejection

    class HeadTimeout(OSError):
        """--header-timeout ran out while the head was read (an OSError: pywsgi closes quietly)."""

    class BodyRefused(_InvalidClientInput):  # type: ignore[misc]
        """The request body broke a limit: pywsgi answers the client error and closes."""

    class CheckedInput(Input):  # type: ignore[misc]
        """pywsgi's request body stream with --header-timeout on each read and the chunked body
        capped at --limit-request-body (read one byte past it at most)."""

        __slots__ = ("launcher_handler",)

        def _launcher_read(self, read: Any, size: Any) -> bytes:
            handler = self.launcher_handler
            timeout = handler.server.launcher_header_timeout
            sock = handler.socket
            if timeout > 0:
                sock.settimeout(timeout)
            try:
                data: bytes = read(size)
                return data
            except TimeoutError:
                me: Any = self  # _chunked_input_error is a slot of pywsgi's Input
                me._chunked_input_error = True  # nothing left to discard: the connection ends
                handler.launcher_refusal = Rejection(408, "request body timed out")
                raise BodyRefused("no request body for --header-timeout seconds") from None
            finally:
                if timeout > 0 and getattr(handler, "socket", None) is not None:
                    sock.settimeout(None)

        def read(self, length: int | None = None) -> bytes:
            return self._launcher_read(super().read, length)

        def readline(self, size: int | None = None) -> bytes:
            return self._launcher_read(super().readline, size)

        def _chunked_read(self, length: int | None = None, use_readline: bool = False) -> bytes:
            handler = self.launcher_handler
            limit = handler.server.launcher_limits.body
            if not limit:
                data: bytes = super()._chunked_read(length, use_readline)
                return data
            room = limit - handler.launcher_body_read + 1
            if length is None or length > room:
                length = room  # never buffer more than the limit allows (+1 to see it broken)
            data = super()._chunked_read(length, use_readline)
            handler.launcher_body_read += len(data)
            if handler.launcher_body_read > limit:
                me: Any = self
                me._chunked_input_error = True
                handler.launcher_refusal = Rejection(413, "chunked body beyond --limit-request-body")
                raise BodyRefused("chunked request body beyond --limit-request-body")
            return data

    class Handler(WSGIHandler):  # type: ignore[misc]
        """Tracks its connection for the drain; idle timeout between requests; close on stop;
        request hygiene, limits and the head timer."""

        launcher_busy = False
        launcher_served = 0
        launcher_fields: list[tuple[str, str]] | None = None
        #: the connection's --header-timeout timer (made on first use, restarted for each head)
        launcher_head_timer: Any = None
        launcher_head_timing = False

        def _log_error(self, t: Any, v: Any, tb: Any) -> None:
            # One launcher record (JSON with --log-format json) instead of gevent's bare traceback
            # and its environ dump through the hub's error handler.
            from gevent import GreenletExit

            if issubclass(t, GreenletExit):
                return
            from launcher.log import logger

            path = (self.environ or {}).get("PATH_INFO", "?") if isinstance(self.environ, dict) else "?"
            logger.error("exception in the app while serving %s", path, exc_info=(t, v, tb))

        def log_error(self, msg: str, *args: Any) -> None:
            from launcher.log import logger

            try:
                text = msg % args if args else msg
            except (TypeError, ValueError):
                text = f"{msg} {args}"
            logger.warning("%s", text)
        #: why the request was refused after the app was called (the answer's status)
        launcher_refusal: Rejection | None = None
        launcher_body_read = 0

        def handle(self) -> None:
            backend = self.server.launcher_backend
            backend._connections.add(self)
            try:
                super().handle()
            finally:
                backend._connections.discard(self)
                timer = self.launcher_head_timer
                if timer is not None:
                    self.launcher_head_timer = None
                    self.launcher_head_timing = False
                    timer.close()

        def handle_one_request(self) -> Any:
            self.launcher_refusal = None
            self.launcher_body_read = 0
            try:
                return super().handle_one_request()
            finally:
                self._launcher_stop_head_timer()

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
            try:
                buffered = self.rfile.peek(1)
            except OSError:
                return ""  # idle past --keepalive, or reset
            if not buffered:
                return ""  # the client closed
            # The first byte of a head is here: the whole head gets --header-timeout from now --
            # unless all of it is buffered already (reading it cannot wait: no timer needed).
            header_timeout = server.launcher_header_timeout
            if header_timeout > 0 and b"\r\n\r\n" not in buffered:
                timer = self.launcher_head_timer
                if timer is None:
                    timer = self.launcher_head_timer = Timeout(header_timeout, HeadTimeout)
                timer.start()
                self.launcher_head_timing = True
            line: str = super().read_requestline()
            if line:
                self.launcher_busy = True
            return line

        def read_request(self, raw_requestline: str) -> Any:
            limits: Limits = self.server.launcher_limits
            raw = raw_requestline.encode("latin-1") + b"".join(self._launcher_read_fields(limits))
            head, rejection = inspect_head(raw, limits)
            if rejection is not None:
                raise Refused(rejection)
            assert not isinstance(head, Rejection)
            self.launcher_fields = head[3]
            try:
                result = super().read_request(raw_requestline)
            finally:
                self.launcher_fields = None
            if limits.body and self.content_length is not None and self.content_length > limits.body:
                raise Refused(Rejection(413, "Content-Length beyond --limit-request-body"))
            self._launcher_stop_head_timer()
            self.socket.settimeout(None)
            return result

        def _launcher_read_fields(self, limits: Limits) -> list[bytes]:
            """The field lines up to and including the blank line, refused early past the limits."""
            longest = (limits.field_size or 65534) + 2  # the field and its CRLF
            lines: list[bytes] = []
            while True:
                line = self.rfile.readline(longest + 1)
                if not line:
                    raise HeadTimeout("the client closed in the middle of a request head")
                lines.append(line)
                if line in (b"\r\n", b"\n"):
                    return lines
                if len(line) > longest or not line.endswith(b"\n"):
                    raise Refused(Rejection(431, f"a header field longer than {longest - 2} bytes"))
                if limits.fields and len(lines) > limits.fields:
                    raise Refused(Rejection(431, f"more than {limits.fields} header fields"))

        def _launcher_stop_head_timer(self) -> None:
            if self.launcher_head_timing:
                self.launcher_head_timing = False
                self.launcher_head_timer.cancel()

        def MessageClass(self, *args: Any) -> Any:
            fields = self.launcher_fields
            if fields is None:
                return super().MessageClass(*args)
            # The fields already read and checked; the stdlib parser would re-read them its own way.
            # What pywsgi's headers_factory makes of an empty head (its email parser cost ~6 us).
            message = OldMessage()
            message._payload = ""
            for name, value in fields:
                message[name] = value
            return message

        def get_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().get_environ()
            me: Any = self  # pywsgi's untyped attributes
            stream = me.wsgi_input
            if stream.content_length is None and not stream.chunked_input:
                return environ  # no body: pywsgi's Input reads nothing, waits for nothing
            checked = CheckedInput(stream.rfile, stream.content_length, socket=stream.socket,
                                   chunked_input=stream.chunked_input)
            checked.launcher_handler = self
            me.wsgi_input = checked
            if environ.get("wsgi.input") is stream:
                environ["wsgi.input"] = checked
            return environ

        def _handle_client_error(self, ex: BaseException) -> Any:
            if isinstance(ex, Refused):
                logger.debug("refused a request from %s: %s", self.client_address, ex.rejection.reason)
                self._launcher_stop_head_timer()
                return str(ex.rejection.status), error_response(ex.rejection)
            if isinstance(ex, OSError) and not isinstance(ex, _InvalidClientInput):
                return None  # head timer, reset, EOF: close without a word
            if isinstance(ex, BodyRefused):
                logger.debug("refused a request body from %s: %s", self.client_address, ex)
                return None
            return super()._handle_client_error(ex)

        def _send_error_response_if_possible(self, error_code: int) -> None:
            refusal = self.launcher_refusal
            if refusal is None:
                super()._send_error_response_if_possible(error_code)
                return
            self.close_connection = True
            if self.response_length or self.headers_sent:
                return
            status, headers, body = error_parts(refusal)
            try:
                self.start_response(status, headers)
                self.write(body)
            except OSError:
                pass

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
