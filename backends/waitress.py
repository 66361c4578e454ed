"""waitress: the portable default backend.

Mapped: --threads -> threads, --connections -> connection_limit, --keepalive -> channel_timeout
(seconds an idle connection stays open; checked every second, not every 30 s as waitress's
cleanup_interval would), --limit-request-body -> max_request_body_size (Content-Length or chunked:
413 and the connection closed), --backlog on the launcher's socket.  ``-o`` reaches any other
waitress adjustment by its own name, validated against waitress's own table, except the ones the
launcher owns (listening, threads, proxy trust, URL prefix and the limits).

Request hygiene and the other limits (the launcher's, :mod:`launcher.hygiene`): waitress's parser
served 20 of the 49 malformed requests of tests/reliability and let the hidden second request
behind 13 of them reach the app (CL + chunked kept the connection open; Transfer-Encoding twice; X_Forwarded_For
and Content_Length silently dropped, so the body became the next request; obsolete line folding; a
NUL in the target; no Host or two; absolute-form and ``*`` targets; 20 kB request lines, fields
and 600 fields, for it only limits the whole head, to 256 KiB).  So the channel's parser class
checks the raw head -- exactly the bytes waitress buffered up to the blank line -- before
waitress parses it: a refused head becomes waitress's own error task (the status of the
rejection, ``Connection: close``), the channel closes once it is written, and nothing buffered
behind it is ever parsed.  --limit-request-line, --limit-request-fields and
--limit-request-field-size are checked there (414/431); waitress's 256 KiB cap on the whole head
stays (``-o max_request_header_size`` changes it).  Chunk framing is waitress's own and strict
(hex digits only, CRLF after each chunk); a chunk size beyond --limit-request-body is refused once
that many bytes have arrived, not when the size line is read.

--header-timeout: waitress has no head timer (a client trickling one header byte a second kept its
connection 40 s and more: every byte counts as activity).  The server's maintenance, run every
half second, closes a connection whose request head is still incomplete --header-timeout seconds
after it first saw it so (so within a second of the timeout), and one whose request body has not
moved for --header-timeout seconds.  An idle connection (no request begun) is --keepalive's.

waitress's "Task queue depth is N" warning (a request waits for a thread) comes at most once
every 10 s, with the count of the ones folded into it: under load it came for about one request
in three, thousands of lines a second (:class:`QueueDepthLog`).

In-flight requests are waitress's own bookkeeping (each channel's queue of parsed requests), not
a wrapper around the app: the drain, the count of requests cut off and --max-requests read it.

--root-path and --proxy-headers use the launcher's middleware rather than waitress's url_prefix
and trusted_proxy: waitress's url_prefix answers 404 outside the prefix (a front server that
already stripped it breaks), and trusted_proxy takes a single address, not a list or a CIDR.
waitress's own proxy-header handling is off entirely: with no trusted_proxy it deleted
X-Forwarded-For/-Proto/-Host/-Port and Forwarded from every request
(clear_untrusted_proxy_headers, on by default since 2.0), so --proxy-headers never saw them, even
from a trusted proxy.  The launcher's middleware strips them from untrusted peers instead.

waitress 3.0.2 sends the body in answer to HEAD (corrupting the next response on the connection):
the backend sends none.

waitress does not drain on SIGTERM by itself (0 of 4 in-flight requests answered), and closing
its listening socket from a signal handler crashes its select loop.  So every step of the stop
runs inside its loop through its trigger: stop accepting, wait for in-flight and queued requests,
then let each channel flush and close, then end the loop.
"""

from __future__ import annotations

import itertools
import sys
import time

from backends.base import Backend
from launcher.drain import InFlight, count_value
from launcher.errors import OptionError
from launcher.hygiene import COMMON_HEAD, Limits, Rejection, error_parts, inspect_head, is_common_head, quick_size
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: waitress adjustments the launcher sets from its common options (and why -o cannot).
OWNED = {
    "host": "--bind",
    "port": "--bind",
    "listen": "--bind",
    "unix_socket": "--bind unix:PATH",
    "unix_socket_perms": "--bind unix:PATH:MODE",
    "sockets": "--bind",
    "ipv4": "--bind",
    "ipv6": "--bind",
    "threads": "--threads",
    "connection_limit": "--connections",
    "channel_timeout": "--keepalive",
    "backlog": "--backlog",
    "trusted_proxy": "--proxy-headers and --forwarded-allow-ips",
    "trusted_proxy_count": "--proxy-headers and --forwarded-allow-ips",
    "trusted_proxy_headers": "--proxy-headers",
    "clear_untrusted_proxy_headers": "--proxy-headers (it strips forwarded headers from untrusted peers)",
    "log_untrusted_proxy_headers": "--proxy-headers",
    "url_prefix": "--root-path",
    "max_request_body_size": "--limit-request-body",
    "cleanup_interval": "--keepalive and --header-timeout (checked every second)",
}


class WaitressBackend(Backend):
    name = "waitress"
    extra = "waitress"
    protocol = "http"
    library = "waitress"
    distribution = "waitress"
    min_version = "3.0.1"
    supports = frozenset({
        "threads", "connections", "keepalive", "header_timeout", "limit_request_line", "limit_request_fields",
        "limit_request_field_size", "limit_request_body",
    })

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None
        self._map: dict[int, Any] = {}

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        from waitress.adjustments import Adjustments

        known = dict(Adjustments._params)
        parsed: dict[str, Any] = {}
        for key, value in raw.items():
            if key in OWNED:
                raise OptionError(f"-o {key}: set it with {OWNED[key]}, the launcher's common option")
            cast = known.get(key)
            if cast is None:
                raise OptionError(f"-o {key}: not a waitress setting{closest(key, known)}")
            try:
                parsed[key] = cast(value)
            except (ValueError, TypeError) as exc:
                raise OptionError(f"-o {key}={value}: {exc}") from None
        return parsed

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        from waitress.adjustments import Adjustments
        from waitress.server import MultiSocketServer
        from waitress.task import ThreadedTaskDispatcher

        body_limit = opts.limit_request_body
        settings: dict[str, Any] = {
            "threads": opts.threads,
            "connection_limit": opts.connections,
            "channel_timeout": max(1, round(opts.keepalive)),
            # waitress refuses a body of max_request_body_size bytes or more: the limit itself is allowed.
            "max_request_body_size": body_limit + 1 if body_limit else sys.maxsize,
            "backlog": opts.backlog,
            # poll(), not select(): select() cannot watch more than 1024 descriptors
            "asyncore_use_poll": True,
            # The launcher's --proxy-headers middleware judges forwarded headers, not waitress.
            "clear_untrusted_proxy_headers": False,
            "ident": "waitress",
        }
        settings.update(self.backend_options)
        app = strip_head_body(app)  # already, when the app came through request_counter().wrap()
        adj = Adjustments(**settings)
        # How often idle connections and head timeouts are looked at (waitress: every 30 s; an
        # int in waitress's table, a float where it is used).
        adj.cleanup_interval = MAINTENANCE_INTERVAL
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.queue_logger = QueueDepthLog(dispatcher.queue_logger)
        dispatcher.set_thread_count(adj.threads)
        counted = self.inflight.step if isinstance(self.inflight, ChannelCount) else None
        tcp_cls, unix_cls = server_classes(Limits.from_options(opts), opts.header_timeout, counted)
        # One waitress server per socket on a shared map and thread pool, as create_server() does,
        # but without its rule against mixing TCP and unix sockets in one process.
        for listener in listeners:
            sock = listener.sock
            server_cls = unix_cls if listener.is_unix else tcp_cls
            server_cls(app, self._map, True, sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                       sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
        self._server = MultiSocketServer(self._map, adj, [], dispatcher)
        ready(listeners)
        try:
            self._server.run()
        finally:
            dispatcher.shutdown(timeout=1)

    # -- stopping, always inside waitress's own loop

    def _servers(self) -> list[Any]:
        from waitress.server import BaseWSGIServer

        return [d for d in list(self._map.values()) if isinstance(d, BaseWSGIServer)]

    def _channels(self) -> list[Any]:
        from waitress.channel import HTTPChannel

        return [d for d in list(self._map.values()) if isinstance(d, HTTPChannel)]

    def _pull(self, thunk: Any) -> None:
        servers = self._servers()
        if servers:
            servers[0].trigger.pull_trigger(thunk)

    def stop_accepting(self) -> None:
        from waitress import wasyncore

        def close_listeners() -> None:
            for server in self._servers():
                server.accepting = False
                wasyncore.dispatcher.close(server)  # the listening socket only; its trigger lives on

        if self._server is not None:
            self._pull(close_listeners)

    def request_counter(self) -> ChannelCount:
        return ChannelCount(self)

    def pending(self) -> int:
        # Answered, but not yet flushed to the client (the requests parsed, queued or in the app
        # are the in-flight count's: counting them twice reported 4 requests cut off when 2 were).
        return sum(1 for ch in self._channels() if not ch.requests and ch.total_outbufs_len)

    def close(self) -> None:
        from waitress import wasyncore

        def close_idle() -> None:
            for channel in self._channels():
                channel.will_close = True  # closes once its output is flushed

        if self._server is None:
            return
        # The listeners are gone from the map; a trigger of theirs still runs thunks.
        triggers = [d for d in list(self._map.values()) if d.__class__.__name__ == "trigger"]
        if not triggers:
            return
        trigger = triggers[0]
        if not _pull_safely(trigger, close_idle):
            return
        deadline = time.monotonic() + 2.0
        while self._channels() and time.monotonic() < deadline:
            time.sleep(0.02)
        _pull_safely(trigger, lambda: wasyncore.close_all(self._map))


def _pull_safely(trigger: Any, thunk: Any) -> bool:
    """Run ``thunk`` in waitress's loop; False when the loop already closed its trigger (it is
    ending by itself: nothing is left to close)."""
    try:
        trigger.pull_trigger(thunk)
    except OSError:
        return False
    return True


class QueueDepthLog:
    """waitress warns "Task queue depth is N" each time a request has to wait for a thread: under a
    load beyond --threads that is about one request in three (7,330 lines in 2 s at 50 connections
    here, each one a record formatted and written to stderr).  This stands in for waitress's queue
    logger: the first warning goes out as it comes, the others within ``interval`` seconds are
    folded into the next line that goes out, which says how many and how deep the queue got."""

    def __init__(self, logger: Any, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._quiet_until = 0.0
        self._folded = 0
        self._deepest = 0

    def warning(self, message: str, depth: int, *args: Any) -> None:
        # Called by waitress's dispatcher under its lock (add_task): no lock of our own.
        self._deepest = max(self._deepest, depth)
        now = time.monotonic()
        if now < self._quiet_until:
            self._folded += 1
            return
        if self._folded:
            self._logger.warning("Task queue depth is %d (%d more such warnings in the last %gs, the deepest %d:"
                                 " requests wait for a free thread, see --threads)", depth, self._folded,
                                 self._interval, self._deepest)
        else:
            self._logger.warning(message, depth, *args)
        self._quiet_until = now + self._interval
        self._folded = 0
        self._deepest = 0


#: How often waitress's maintenance runs: idle connections and --header-timeout are checked then.
MAINTENANCE_INTERVAL = 0.5


class ChannelCount(InFlight):
    """waitress's own bookkeeping as the count of requests in flight, instead of a wrapper around
    the app: a request is in flight from when its head is parsed until its task is done (it sits
    in its channel's ``requests`` until then), and the parser steps :attr:`total`.  The wrapper
    cost ~0.5 us a request, close to 1 % of waitress's whole time for a small response."""

    def __init__(self, backend: WaitressBackend) -> None:
        super().__init__()
        self._backend = backend
        self._parsed = itertools.count()
        #: called by the parser for every request head it accepts (one C-level step)
        self.step = self._parsed.__next__

    @property
    def total(self) -> int:
        return count_value(self._parsed)

    @property
    def active(self) -> int:
        return sum(len(channel.requests) for channel in self._backend._channels())

    def wrap(self, app: WSGIApp, *, multiprocess: bool = False) -> WSGIApp:
        return strip_head_body(app, multiprocess=multiprocess)


def strip_head_body(app: WSGIApp, *, multiprocess: bool = False) -> WSGIApp:
    """Send no body in answer to HEAD: waitress 3.0.2 sends the app's body after the headers,
    which corrupts the next response on a keep-alive connection.  ``multiprocess`` marks the
    environ of a worker forked by the launcher's supervisor (PEP 3333's wsgi.multiprocess)."""
    if getattr(app, "launcher_head_safe", False):
        return app

    def head_safe(environ: dict[str, Any], start_response: Any) -> Any:
        if multiprocess:
            environ["wsgi.multiprocess"] = True
        result = app(environ, start_response)
        if environ["REQUEST_METHOD"] != "HEAD":
            return result
        return _NoBody(result)

    head_safe.launcher_head_safe = True  # type: ignore[attr-defined]
    head_safe.__wrapped__ = app  # type: ignore[attr-defined]
    return head_safe


class _NoBody:
    """Runs the app's iterable up to its first chunk (so a lazy start_response is called), sends
    nothing, and still closes it."""

    def __init__(self, result: Any) -> None:
        self._result = result

    def __iter__(self) -> Any:
        for chunk in self._result:
            if chunk:
                break
        return iter(())

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------- hygiene and head timer


def server_classes(limits: Limits, header_timeout: float,
                   counted: Callable[[], object] | None = None) -> tuple[Any, Any]:
    """waitress's TCP and unix server classes with the checking parser (which calls ``counted``
    for every head it accepts) and the maintenance that enforces --header-timeout."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.receiver import ChunkedReceiver
    from waitress.server import TcpWSGIServer, UnixWSGIServer
    from waitress.utilities import BadRequest, Error, RequestEntityTooLarge

    class Refused(Error):  # type: ignore[misc]
        """A rejection as waitress's error task sends it (the task adds Content-Length and
        Connection: close, and closes the channel once it is written)."""

        def __init__(self, rejection: Rejection) -> None:
            super().__init__(rejection.reason)
            self.rejection = rejection
            self.code = rejection.status

        def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
            status, _, body = error_parts(self.rejection)
            return status, [("Content-Type", "text/plain")], body

    class CappedChunks(ChunkedReceiver):  # type: ignore[misc]
        """Refuses a chunk size beyond --limit-request-body (or 2**63) as soon as its line is read,
        not once that many bytes have come (a 33-digit size left the connection waiting)."""

        def received(self, s: bytes) -> int:
            consumed: int = super().received(s)
            me: Any = self  # waitress's attributes are untyped class attributes
            if me.error is None and me.chunk_remainder:
                if limits.body and len(me.buf) + me.chunk_remainder > limits.body:
                    me.error = RequestEntityTooLarge("chunk beyond --limit-request-body")
                elif me.chunk_remainder >= 2**63:
                    me.error = BadRequest("chunk size too large")
                if me.error is not None:
                    me.all_chunks_received = True
            return consumed

    parse = HTTPRequestParser.parse_header
    count = counted or (lambda: None)
    fullmatch, quick = COMMON_HEAD.fullmatch, quick_size(limits)

    class Parser(HTTPRequestParser):  # type: ignore[misc]
        #: when waitress's maintenance first saw this head incomplete (0: not yet)
        launcher_seen = 0.0

        def parse_header(self, header_plus: bytes) -> None:
            # header_plus: the request line and the fields exactly as received, up to the blank line.
            if (fullmatch(header_plus) is not None if len(header_plus) <= quick
                    else is_common_head(header_plus, limits)):
                # Accepted in one C-level match; no Content-Length nor Transfer-Encoding: not chunked.
                parse(self, header_plus)
                count()
                return
            head, rejection = inspect_head(header_plus, limits)
            if rejection is None:
                parse(self, header_plus)
                count()
                me: Any = self
                if me.chunked:
                    me.body_rcv = CappedChunks(me.body_rcv.buf)
                return
            if not isinstance(head, Rejection) and head[2] in ("HTTP/1.0", "HTTP/1.1"):
                self.version = head[2][5:]
            # Completed with an error: the channel queues an error task and parses nothing after it.
            self.error = Refused(rejection)
            self.completed = True

    class Channel(HTTPChannel):  # type: ignore[misc]
        parser_class = Parser

    def maintenance(server: Any, now: float) -> None:
        # A head is timed from when maintenance first sees it incomplete, at most one interval
        # after its first byte: it is cut between --header-timeout and that plus twice the
        # interval (1 s) after it began.  Noting the first byte's time instead cost a Python
        # call on every read of every connection.
        if header_timeout <= 0:
            return
        cutoff = now - header_timeout
        for channel in list(server.active_channels.values()):
            request = channel.request
            if channel.requests or channel.will_close or request is None:
                continue  # busy, closing, or idle (--keepalive's: waitress's own channel_timeout)
            if not request.headers_finished:
                seen = request.launcher_seen
                if not seen:
                    request.launcher_seen = now - MAINTENANCE_INTERVAL / 2
                    continue
                stuck = seen < cutoff
            else:
                stuck = channel.last_activity < cutoff  # a request body that stopped moving
            if stuck:
                channel.will_close = True

    class Tcp(TcpWSGIServer):  # type: ignore[misc]
        channel_class = Channel

        def maintenance(self, now: float) -> None:
            super().maintenance(now)
            maintenance(self, now)

    class Unix(UnixWSGIServer):  # type: ignore[misc]
        channel_class = Channel

        def getsockname(self) -> tuple[str, str]:
            # waitress reports the socket path as SERVER_PORT, which PEP 3333 does not allow (a
            # front server's app would see it); name it like the other backends do on unix sockets.
            return "localhost", "80"

        def maintenance(self, now: float) -> None:
            super().maintenance(now)
            maintenance(self, now)

    return Tcp, Unix
