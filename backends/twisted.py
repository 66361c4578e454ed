"""Twisted Web: ``twisted.web.wsgi.WSGIResource`` in a ``twisted.web.server.Site``, one reactor per process.

Mapped: --threads -> the reactor's thread pool (``suggestThreadPoolSize``; the pool is created with
a maximum of 10 whatever the machine, so the size is set before it starts and then checked),
--keepalive -> the ``Site`` timeout, which is Twisted's idle timeout: how long a connection may
send nothing while no request is running, i.e. both the keep-alive idle time and the time allowed
for the first request's headers (0: ``Connection: close`` after every response, with a 5 s header
timeout, since Twisted reads 0 as "never time out"), --connections -> the reactor stops reading
the listening sockets while that many connections are open (the excess waits in the kernel's
backlog, as with waitress), --backlog on the launcher's socket (kept when Twisted re-listens on a
unix socket), ``-o reactor=epoll|poll|select`` -> the reactor installed.  --timeout is not mapped:
a request running in a thread cannot be interrupted, so it is rejected before start.
--header-timeout and the --limit-request-* options are the launcher's (below).

``wsgi.errors`` is ``sys.stderr`` (Twisted's sends each write to its log as a critical event);
``wsgi.multiprocess``, which Twisted hard-codes false, is set by the launcher's in-flight counter
in the supervisor's workers.  The server's own access log is off (the launcher's middleware writes
it); Twisted Web has no proxy-header handling to turn off (``_XForwardedForRequest`` is opt-in).

Listening: the issue asks for Twisted endpoints (``tcp:PORT``, ``unix:PATH``); the ports here are
the same ``twisted.internet.tcp.Port`` / ``unix.Port`` objects those endpoints create, but adopted
from the sockets the launcher already bound (``reactor.adoptStreamPort``), not bound by Twisted.
The launcher binds so that every backend reports a busy port, a bad address or a live unix socket
with the same one-line error before anything starts, resolves port 0 before the startup line,
serves ``fd://N`` and systemd sockets, and can hand one socket to every worker of the pre-fork
supervisor.  Twisted dup()s the descriptor; the launcher's copy is closed when the stop begins, so
new connections are refused rather than left waiting in the backlog.

Traps handled, and why:

* ``twistd web --wsgi`` and ``reactor.run()`` hang forever on SIGTERM with a request in flight: the
  reactor stops, its shutdown trigger joins the pool threads, and a thread whose app is still
  writing waits in ``blockingCallFromThread`` for the reactor it is blocking.  So the reactor runs
  with ``installSignalHandlers=False`` under the launcher's handlers; a stop closes the ports from
  inside the loop (``callFromThread``, which only appends to a list and writes to the reactor's
  waker pipe, so it is safe from a signal handler), the launcher waits for its in-flight count and
  for requests Twisted holds but has not finished (queued for a thread, or answered but not yet
  flushed), asks for ``Connection: close`` meanwhile, closes idle keep-alive connections, waits
  for them to flush, and only then stops the reactor.  The reactor's own pool-joining trigger is
  removed: serve() stops the pool itself after the loop, and past the deadline leaves the stuck
  threads behind (they are daemon threads), so the process exits 1 at once instead of waiting for
  the launcher's watchdog.
* ``WSGIResource`` never calls ``close()`` on the app's iterable when iterating it raises (PEP 3333
  requires it): the app's clean-up would not run and the in-flight count would never drop, so
  every later stop would wait out --graceful-timeout and exit 1.  The iterable is wrapped so
  ``close()`` is always called, once.
* An adopted unix socket is chmod()ed to 0666 (world-writable), re-listened with a backlog of 50,
  ``shutdown()`` on stop (which would break the other workers sharing it) and unlinked on stop
  (so one worker restarting under --workers N would remove the path the others still serve).  A
  ``unix.Port`` subclass keeps the launcher's mode and backlog and neither shuts down nor unlinks;
  the launcher removes the file it created when the server exits.
* The launcher's sockets are blocking; Twisted accepts in a loop until EWOULDBLOCK, so a blocking
  socket would hang the reactor in ``accept()`` (and under --workers N the other workers take
  connections first).  The socket is made non-blocking before it is adopted.
* Twisted's log: the ``Site`` formats an access line for every request into Twisted's log, and
  until an observer is chosen Twisted prints critical events raw to stderr (no time, no pid) and
  keeps the rest in a small buffer nobody reads.  The ``Site`` access log is turned off, and
  Twisted's events from warning level up (the "WSGI application error" tracebacks) go to the
  launcher's log on stderr, with its time, pid and --log-level; stdout and Python's ``warnings``
  are left alone (``beginLoggingTo`` would otherwise redirect both).
* The reactor is installed in :meth:`TwistedBackend.prepare`, which runs in the process that
  serves, before the app is imported: under the pre-fork supervisor the master never imports
  Twisted and each worker builds its own reactor.  A reactor already imported when a worker starts
  came from the master (its epoll descriptor would be shared by every worker): that is an error.

Request hygiene (:mod:`launcher.hygiene`): Twisted's parser let 10 of the 49 malformed requests of
tests/reliability reach the app, a hidden second request behind 9 of them: it passes
underscore look-alikes (``X_Forwarded_For`` arrives as HTTP_X_FORWARDED_FOR, ``Content_Length`` as
CONTENT_LENGTH although Twisted framed no body), folds obsolete continuation lines, takes control
bytes, no Host or two, absolute-form targets, and Transfer-Encoding in HTTP/1.0.  So the channel
holds the lines of each request head back from Twisted until the blank line, checks the raw head
and only then replays it to Twisted's own parser; a refused head is answered with its status and
``Connection: close`` and the connection closed at once (nothing after it is parsed).
--limit-request-line, --limit-request-fields and --limit-request-field-size are checked as each
line arrives (414/431); Twisted's own caps stay: 16 KiB per line and per head in all (431 past
either).  --limit-request-body: a Content-Length above
it is refused (413) before anything is read, a chunked body as soon as a chunk would pass it (no
body is buffered past the limit: Twisted buffers the whole body, in a temporary file above 100 kB,
before the app is called).  Twisted's chunk decoder is strict (hex digits only, CRLF checked).

--header-timeout: Twisted has one idle timer (the Site timeout, --keepalive), reset by every byte,
so a client trickling its head kept the connection as long as it liked.  The channel closes a
connection whose head is still incomplete --header-timeout seconds after its first byte, and one
whose request body stops for --header-timeout seconds.
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
import threading
import time

from backends.base import Backend
from launcher.errors import BackendError, BindError
from launcher.hygiene import Limits, Rejection, check_head, error_response, parse_head
from launcher.log import logger
from launcher.options import Option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: Reactors ``-o reactor=`` can install (all of them poll-based ``PosixReactorBase`` reactors,
#: whose ``callFromThread`` is safe in a signal handler).
REACTORS = ("epoll", "poll", "select")
#: Seconds close() waits for closed idle connections to flush before the reactor stops.
CLOSE_GRACE = 1.0
#: Header timeout when --keepalive is 0 (Twisted reads a timeout of 0 as "never").
FIRST_REQUEST_TIMEOUT = 5.0
#: Seconds serve() waits for the idle pool threads to exit once the reactor has stopped.
POOL_JOIN_TIMEOUT = 5.0


class TwistedBackend(Backend):
    name = "twisted"
    extra = "twisted"
    protocol = "http"
    library = "twisted"
    distribution = "Twisted"
    # 24.7.0 fixed out-of-order pipelined responses (CVE-2024-41671) and the redirectTo XSS
    # (CVE-2024-41810); 22.4.0 the request smuggling ones (CVE-2022-24801).
    min_version = "24.7.0"
    supports = frozenset({
        "threads", "connections", "keepalive", "header_timeout", "limit_request_line", "limit_request_fields",
        "limit_request_field_size", "limit_request_body",
    })
    option_spec = (
        Option("reactor", "choice", "epoll", "Twisted reactor to install: epoll, poll or select",
               choices=REACTORS),
    )

    def __init__(self) -> None:
        super().__init__()
        self._reactor: Any = None
        self._site: Any = None
        self._ports: list[Any] = []
        self._listeners: list[Listener] = []
        self._deadline = 0.0

    # ------------------------------------------------------------------ before start

    def prepare(self, opts: ServeOptions) -> None:
        if "twisted.internet.reactor" in sys.modules:
            if opts.workers > 1 or opts.max_requests:
                raise BackendError(
                    "twisted's reactor was imported before the workers were forked (by code run in the"
                    " launcher's process): every worker would share its epoll descriptor; import the"
                    " reactor in the app module, or run one worker"
                )
        else:
            name = self.backend_options.get("reactor") or "epoll"
            try:
                module = importlib.import_module(f"twisted.internet.{name}reactor")
            except ImportError as exc:
                raise BackendError(f"-o reactor={name}: not available here ({exc}); try -o reactor=poll") from None
            module.install()
        from twisted.internet import reactor

        if getattr(reactor, "_started", False) or getattr(reactor, "_startedBefore", False):
            raise BackendError("twisted's reactor has already run in this process and cannot be restarted")
        self._reactor = reactor
        _log_to_stderr()

    # ------------------------------------------------------------------ running

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        wsgi: Any = importlib.import_module("twisted.web.wsgi")
        reactor = self._reactor
        pool = reactor.getThreadPool()
        # Daemon threads: a request still running past the deadline must not keep the process alive.
        pool.threadFactory = _DaemonThread
        reactor.suggestThreadPoolSize(opts.threads)
        if pool.max != opts.threads:
            raise BackendError(f"--threads {opts.threads}: twisted's thread pool kept a maximum of {pool.max}")
        # The reactor's own shutdown trigger joins the pool threads inside the reactor thread, which
        # deadlocks with a thread waiting for the reactor to write its response: stop it ourselves.
        if reactor.threadpoolShutdownID is not None:
            reactor.removeSystemEventTrigger(reactor.threadpoolShutdownID)
            reactor.threadpoolShutdownID = None

        site_cls = _site_class()
        resource = wsgi.WSGIResource(reactor, pool, _ServerFixes(app))
        site = site_cls(resource, timeout=opts.keepalive or FIRST_REQUEST_TIMEOUT, reactor=reactor)
        site.keep_alive = opts.keepalive > 0
        site.max_connections = opts.connections
        site.launcher_limits = Limits.from_options(opts)
        site.launcher_header_timeout = opts.header_timeout
        self._site = site
        self._listeners = list(listeners)
        for listener in listeners:
            self._ports.append(_adopt(reactor, listener, site, opts.backlog))
        site.ports = self._ports
        reactor.callWhenRunning(ready, listeners)
        try:
            reactor.run(installSignalHandlers=False)
        finally:
            self._stop_pool(pool)

    def _stop_pool(self, pool: Any) -> None:
        running = self.inflight.active if self.inflight is not None else 0
        if running:
            # Their threads wait for a reactor that is gone: leave them (daemon threads) and say so.
            self.cut_off = max(self.cut_off, running)
            return
        stopper = threading.Thread(target=pool.stop, name="twisted-pool-stop", daemon=True)
        stopper.start()
        stopper.join(POOL_JOIN_TIMEOUT)

    # ------------------------------------------------------------------ stopping

    def stop(self, timeout: float) -> None:
        if not self._stopping.is_set():
            self._deadline = time.monotonic() + timeout
        super().stop(timeout)

    def stop_accepting(self) -> None:
        # From the signal handler: only queue the work for the reactor thread and wake it up.
        if self._reactor is not None:
            self._reactor.callFromThread(self._close_ports)

    def _close_ports(self) -> None:
        site = self._site
        if site is not None:
            site.begin_drain()
        for port in self._ports:
            port.stopListening()
        # Twisted listens on a dup() of the launcher's socket; while the launcher's copy is open the
        # kernel keeps queueing connections nobody will accept.  Close it so they are refused.
        for listener in self._listeners:
            try:
                listener.sock.close()
            except OSError:
                pass

    def pending(self) -> int:
        # Requests Twisted has parsed and not finished: queued for a pool thread, or answered by the
        # app (the in-flight count already dropped) with the response not yet finished in the reactor.
        site = self._site
        if site is None:
            return 0
        running = self.inflight.active if self.inflight is not None else 0
        return max(0, len(site.held) - running)

    def close(self) -> None:
        reactor = self._reactor
        site = self._site
        if reactor is None:
            return
        if site is not None:
            reactor.callFromThread(site.close_idle)
            # Idle connections were told to close once flushed; with nothing cut off, also let a
            # request that slipped in on a keep-alive connection finish (until the deadline).
            end = max(self._deadline, time.monotonic()) + CLOSE_GRACE
            while time.monotonic() < end:
                channels = list(site.channels)
                busy = set(list(site.held.values()))
                if all(ch in busy for ch in channels) and (self.cut_off or not channels):
                    break
                time.sleep(0.02)
        reactor.callFromThread(_stop_reactor, reactor)


def _stop_reactor(reactor: Any) -> None:
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


class _DaemonThread(threading.Thread):
    """A pool thread that does not keep the interpreter alive at exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


# --------------------------------------------------------------------------- the app side


class _ServerFixes:
    """Corrects Twisted's environ and makes sure the response iterable is always closed."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.errors"] = sys.stderr
        return _AlwaysClosed(self.app(environ, start_response))


class _AlwaysClosed:
    """The app's iterable, closed exactly once even when iterating it raises (Twisted skips close())."""

    __slots__ = ("_result", "_closed")

    def __init__(self, result: Iterable[bytes]) -> None:
        self._result = result
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except BaseException:
            # Includes GeneratorExit: Twisted gave up on the response (a write failed).
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------- Twisted classes


class _UnixPeer:
    """The client of a unix socket as WSGIResource reads it: no address, no port."""

    host = ""
    port = ""


_UNIX_PEER = _UnixPeer()

_SITE_CLASS: Any = None


def _site_class() -> Any:
    """The Site and channel subclasses (built on first use: importing Twisted here is not free)."""
    global _SITE_CLASS
    if _SITE_CLASS is not None:
        return _SITE_CLASS
    # Twisted's annotations (zope interfaces, untyped methods) do not survive strict mypy: Any.
    http: Any = importlib.import_module("twisted.web.http")
    server: Any = importlib.import_module("twisted.web.server")

    class Channel(http.HTTPChannel):  # type: ignore[misc]
        #: the lines of the request head being received, held back from Twisted until it is checked
        _launcher_head: list[bytes] | None = None
        _launcher_head_size = 0
        #: the --header-timeout timer: the head's deadline, or the request body's idle timeout
        _launcher_timer: Any = None
        _launcher_refused = False
        _launcher_body = 0

        def connectionMade(self) -> None:
            super().connectionMade()
            self.factory.channel_opened(self)

        def connectionLost(self, reason: Any) -> None:
            self._launcher_cancel_timer()
            super().connectionLost(reason)
            self.factory.channel_closed(self)

        # -- the head: held back, checked, then replayed to Twisted

        def dataReceived(self, data: bytes) -> None:
            super().dataReceived(data)
            transport = self.transport
            if self._launcher_refused or transport is None or transport.disconnecting or self._handlingRequest:
                return
            timeout = self.factory.launcher_header_timeout
            if timeout <= 0:
                return
            if self.line_mode:
                # A head has begun (a line held back, or part of one buffered): its deadline runs
                # from its first byte, whatever trickles in after.
                if self._launcher_timer is None and (self._launcher_head is not None or self._buffer):
                    self._launcher_timer = self.callLater(timeout, self._launcher_timed_out, "request head")
            else:
                # Receiving a body: it may pause --header-timeout seconds at most.
                self._launcher_cancel_timer()
                self._launcher_timer = self.callLater(timeout, self._launcher_timed_out, "request body")

        def lineReceived(self, line: bytes) -> Any:
            head = self._launcher_head
            if head is None:
                if not line or not self.persistent:
                    return super().lineReceived(line)  # the blank line Twisted skips, or one it drops
                head = self._launcher_head = []
                self._launcher_head_size = 0
            if line:
                head.append(line)
                self._launcher_head_size += len(line) + 2
                limits: Limits = self.factory.launcher_limits
                if len(head) == 1 and limits.line and len(line) > limits.line:
                    return self._launcher_refuse(Rejection(414, f"request line longer than {limits.line} bytes"))
                if len(head) > 1 and limits.field_size and len(line) > limits.field_size:
                    return self._launcher_refuse(Rejection(431, "a header field longer than"
                                                                f" {limits.field_size} bytes"))
                if limits.fields and len(head) - 1 > limits.fields:
                    return self._launcher_refuse(Rejection(431, f"more than {limits.fields} header fields"))
                if self._launcher_head_size > self.totalHeadersSize:
                    return self._launcher_refuse(Rejection(431, f"request head over {self.totalHeadersSize} bytes"))
                return None
            # The blank line: the whole head is here.
            self._launcher_head = None
            self._launcher_cancel_timer()
            rejection = self._launcher_check(head)
            if rejection is not None:
                return self._launcher_refuse(rejection)
            self._launcher_body = 0
            for held in head:
                super().lineReceived(held)
                if self.transport.disconnecting:
                    return None  # Twisted refused it itself
            return super().lineReceived(line)

        def lineLengthExceeded(self, line: bytes) -> None:
            # A line over Twisted's 16 KiB (LineReceiver.MAX_LENGTH): answered, not just dropped.
            if self._launcher_head is None:
                self._launcher_refuse(Rejection(414, f"request line over {self.MAX_LENGTH} bytes"))
            else:
                self._launcher_refuse(Rejection(431, f"a header field over {self.MAX_LENGTH} bytes"))

        def _launcher_check(self, lines: list[bytes]) -> Rejection | None:
            limits: Limits = self.factory.launcher_limits
            head = parse_head(b"\r\n".join(lines))
            if isinstance(head, Rejection):
                return head
            rejection = check_head(*head, limits)
            if rejection is None and limits.body:
                lengths = [value for name, value in head[3] if name.lower() == "content-length"]
                if lengths and int(lengths[0].split(",")[0]) > limits.body:
                    rejection = Rejection(413, "Content-Length beyond --limit-request-body")
            return rejection

        def _launcher_refuse(self, rejection: Rejection) -> None:
            logger.debug("refused a request from %s: %s", self.transport.getPeer(), rejection.reason)
            self._launcher_refused = True
            self._launcher_head = None
            self._launcher_cancel_timer()
            self.transport.write(error_response(rejection))
            self.loseConnection()  # LineReceiver stops parsing once the transport is disconnecting

        def allContentReceived(self) -> None:
            self._launcher_cancel_timer()
            if self._launcher_refused:
                return  # the body was refused half-way: the app must not be called
            super().allContentReceived()

        def launcher_body_chunk(self, size: int) -> bool:
            """Count ``size`` body bytes about to be stored; False (and the request refused) past
            --limit-request-body, counting the rest of a chunk whose size line was read."""
            limit = self.factory.launcher_limits.body
            if not limit or self._launcher_refused:
                return not self._launcher_refused
            self._launcher_body += size
            decoder = self._transferDecoder
            announced = getattr(decoder, "length", 0) if getattr(decoder, "state", "") == "BODY" else 0
            if self._launcher_body + (announced or 0) > limit:
                self._launcher_refuse(Rejection(413, "request body beyond --limit-request-body"))
                return False
            return True

        def _launcher_timed_out(self, what: str) -> None:
            self._launcher_timer = None
            logger.debug("closing a connection from %s: %s not received within --header-timeout",
                         self.transport.getPeer(), what)
            self.loseConnection()

        def _launcher_cancel_timer(self) -> None:
            timer = self._launcher_timer
            if timer is not None:
                self._launcher_timer = None
                if timer.active():
                    timer.cancel()

        def checkPersistence(self, request: Any, version: bytes) -> bool:
            site = self.factory
            if site.draining or not site.keep_alive:
                request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
                return False
            return bool(super().checkPersistence(request, version))

    address: Any = importlib.import_module("twisted.internet.address")
    unix_host = address.IPv4Address("TCP", "localhost", 80)

    class Request(server.Request):  # type: ignore[misc]
        # WSGIResource reads .host and .port of both addresses, which a UNIXAddress lacks: every
        # request on a unix socket failed with AttributeError.  Give it what gevent's backend gives:
        # SERVER_NAME localhost (unless a Host header names one), SERVER_PORT 80, REMOTE_ADDR empty
        # (the launcher's proxy-header middleware reads an empty peer as a unix-socket client).
        def getClientAddress(self) -> Any:
            peer = super().getClientAddress()
            return _UNIX_PEER if isinstance(peer, address.UNIXAddress) else peer

        def getHost(self) -> Any:
            host = super().getHost()
            return unix_host if isinstance(host, address.UNIXAddress) else host

        def handleContentChunk(self, data: bytes) -> None:
            if self.channel is not None and not self.channel.launcher_body_chunk(len(data)):
                return  # refused: nothing more is stored
            super().handleContentChunk(data)

    class Site(server.Site):  # type: ignore[misc]
        # A plain HTTPChannel, not the HTTP/2-negotiating wrapper: there is no TLS here to offer h2.
        protocol = Channel
        requestFactory = Request

        def __init__(self, resource: Any, **kwargs: Any) -> None:
            super().__init__(resource, **kwargs)
            self.channels: set[Any] = set()
            #: request -> its channel, from render until finished (only touched in the reactor thread)
            self.held: dict[Any, Any] = {}
            self.draining = False
            self.keep_alive = True
            self.max_connections = 0
            self.ports: list[Any] = []
            self._paused = False

        def log(self, request: Any) -> None:
            """No access log: the launcher's --access-log middleware writes it."""

        def getResourceFor(self, request: Any) -> Any:
            # Every request reaches the WSGI resource (it is a leaf): count it until it is finished.
            self.held[request] = request.channel
            request.notifyFinish().addBoth(self._finished, request)
            return super().getResourceFor(request)

        def _finished(self, result: Any, request: Any) -> None:
            self.held.pop(request, None)

        def buildProtocol(self, addr: Any) -> Any:
            if self.max_connections and len(self.channels) >= self.max_connections:
                return None  # one accept() batch overshot the limit: Twisted closes the socket
            return super().buildProtocol(addr)

        def channel_opened(self, channel: Any) -> None:
            self.channels.add(channel)
            if self.max_connections and len(self.channels) >= self.max_connections and not self._paused:
                self._paused = True
                for port in self.ports:
                    if port.connected:
                        port.stopReading()

        def channel_closed(self, channel: Any) -> None:
            self.channels.discard(channel)
            if self._paused and len(self.channels) < self.max_connections:
                self._paused = False
                for port in self.ports:
                    if port.connected and not port.disconnecting:
                        port.startReading()

        def begin_drain(self) -> None:
            self.draining = True
            for channel in list(self.channels):
                # Close once the running request is answered.  Not on an idle channel: Twisted
                # silently drops every byte a non-persistent channel receives after a request.
                if channel.requests:
                    channel.persistent = False

        def close_idle(self) -> None:
            self.begin_drain()
            busy = set(self.held.values())
            for channel in list(self.channels):
                if channel not in busy and not channel.transport.disconnecting:
                    channel.loseConnection()  # flushes what is buffered, then closes

    _SITE_CLASS = Site
    return Site


def _adopt(reactor: Any, listener: Listener, site: Any, backlog: int) -> Any:
    """A Twisted listening port on the launcher's socket."""
    sock = listener.sock
    # Twisted accepts until EWOULDBLOCK: a blocking socket would hang the reactor in accept().
    sock.setblocking(False)
    if not listener.is_unix:
        return reactor.adoptStreamPort(sock.fileno(), sock.family, site)
    path = sock.getsockname()
    in_filesystem = isinstance(path, str) and bool(path) and not path.startswith("\0")
    port = _unix_port_class()._fromListeningDescriptor(reactor, sock.fileno(), site)
    port.backlog = backlog  # startListening() calls listen() again, with 50 unless told
    if in_filesystem:
        # startListening() chmod()s the path to port.mode (0666 by default): keep the launcher's mode.
        try:
            port.mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as exc:
            raise BindError(f"cannot serve unix:{path}: {exc.strerror}") from None
    port.startListening()
    return port


_UNIX_PORT_CLASS: Any = None


def _unix_port_class() -> Any:
    global _UNIX_PORT_CLASS
    if _UNIX_PORT_CLASS is None:
        tcp: Any = importlib.import_module("twisted.internet.tcp")
        unix: Any = importlib.import_module("twisted.internet.unix")

        class AdoptedUNIXPort(unix.Port):  # type: ignore[misc]
            """A unix port on a socket the launcher owns: no shutdown(), no unlink() on stop."""

            # shutdown() on a listening socket shared with other workers would stop theirs too.
            _shouldShutdown = False

            def connectionLost(self, reason: Any) -> None:
                # unix.Port.connectionLost unlinks the path first; the launcher removes its own file.
                tcp.Port.connectionLost(self, reason)

        _UNIX_PORT_CLASS = AdoptedUNIXPort
    return _UNIX_PORT_CLASS


def _log_to_stderr() -> None:
    """Twisted's warnings and errors to the launcher's log on stderr; nothing per request."""
    import warnings

    tlog: Any = importlib.import_module("twisted.logger")
    observer = tlog.FilteringLogObserver(
        tlog.STDLibLogObserver(name="launcher.twisted"),
        [tlog.LogLevelFilterPredicate(defaultLogLevel=tlog.LogLevel.warn)],
    )
    showwarning = warnings.showwarning
    tlog.globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)
    warnings.showwarning = showwarning  # beginLoggingTo routes Python warnings into Twisted's log
