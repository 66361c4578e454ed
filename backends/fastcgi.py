"""fastcgi: flup6's FastCGI server, threaded, behind nginx / Apache / lighttpd.

The guide's ``yourapplication.fcgi`` runs ``flup.server.fcgi.WSGIServer(app, bindAddress=...).run()``.
Here flup parses the protocol (its Record, Connection, Request and InputStream classes) and runs
connections on its thread pool (``flup.server.threadpool.ThreadPool``), while the launcher owns the
sockets, the signals and the drain.

How a front server drives it (``protocol = "fastcgi"``)::

    serve --backend fastcgi --bind unix:/run/app/fcgi.sock APP       # nginx fastcgi_pass unix:...;
    serve --backend fastcgi --bind unix:/run/app/fcgi.sock:0666 APP  # explicit mode (default 0660)
    serve --backend fastcgi --bind 127.0.0.1:9000 APP                # fastcgi_pass 127.0.0.1:9000;
    serve --backend fastcgi --bind fd://0 APP                         # spawned with the listening
                                                                       # socket on fd 0 (FastCGI's own
                                                                       # convention: mod_fcgid, lighttpd
                                                                       # "bin-path")

The unix socket is created by the launcher with the mode asked (0660 unless ``unix:PATH:MODE``), so
the web server's user must share the server's group (or ask for 0666 knowingly); nginx workers run
as ``nobody``/``www-data`` and answer 502 on a socket they cannot write.  A live socket is never
taken over (a second server exits 1 with a one-line error) and a stale one is replaced; on exit the
file is removed.  The ready file and the startup line name the sockets as ``fcgi://HOST:PORT`` /
``fcgi+unix://PATH`` (a bare connect, not an HTTP request, proves readiness).

What the front server must send: the CGI params REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING,
SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL, CONTENT_TYPE, CONTENT_LENGTH, REMOTE_ADDR and the HTTP_*
headers.  nginx does not send PATH_INFO by default, so as the guide says::

    location / { include fastcgi_params; fastcgi_param PATH_INFO $fastcgi_script_name;
                 fastcgi_param SCRIPT_NAME ""; fastcgi_pass unix:/run/app/fcgi.sock; }
    # mounted under /yourapplication:
    location /yourapplication { include fastcgi_params;
                 fastcgi_split_path_info ^(/yourapplication)(.*)$;
                 fastcgi_param PATH_INFO $fastcgi_path_info;
                 fastcgi_param SCRIPT_NAME $fastcgi_script_name; fastcgi_pass ...; }

(or send the whole path and let ``--root-path /yourapplication`` split it).  PATH_INFO missing
means "" (CGI's rule), not flup's raw, still percent-encoded REQUEST_URI.  HTTPS=on (or
REQUEST_SCHEME=https) gives ``wsgi.url_scheme`` https.

``-o script_name_fix=strip|lighttpd`` replaces the guide's hand-written middleware (see
:func:`backends.cgi.fix_script_name`, applied before --root-path):

* ``strip`` (ScriptNameStripper): SCRIPT_NAME is the script's own path because requests were
  rewritten to it (Apache ``.htaccess`` ``RewriteRule ^(.*)$ yourapplication.fcgi/$1``, lighttpd
  ``url.rewrite-once = ("^(/.*)$" => "/yourapplication.fcgi$1")``): SCRIPT_NAME becomes "" (then
  --root-path, if any).
* ``lighttpd`` (LighttpdCGIRootFix, also ``=true``): lighttpd's ``fastcgi.server = ("/" => ...)``
  without ``"fix-root-scriptname" => "enable"`` sends the whole path as SCRIPT_NAME and no
  PATH_INFO; nginx with only ``include fastcgi_params`` does the same.  PATH_INFO becomes
  SCRIPT_NAME + PATH_INFO and SCRIPT_NAME "" (then --root-path moves the prefix back, so SCRIPT_NAME
  ends up as the root path).  Use it only for such a front: with a correct split it would glue the
  mount point into PATH_INFO.
* ``off`` (default): SCRIPT_NAME and PATH_INFO are used as the front sent them.

Mapped: --threads N -> flup's pool ``maxThreads`` (each open connection holds one thread while it
is open, so N requests run at once per worker), ``maxSpare`` = N (all started up front) and
``minSpare`` = 1, overridable with ``-o max_spare=`` / ``-o min_spare=``; a connection that finds no
free thread waits in the pool's queue instead of being closed (flup closes it, and the web server
answers 502).  --connections N -> at most N connections open per worker, queued ones included;
beyond that a new connection is closed at once (flup's "at our limit" signal); also reported as
FCGI_MAX_CONNS/FCGI_MAX_REQS to FCGI_GET_VALUES.  --keepalive S -> seconds an idle connection the
web server keeps open (``fastcgi_keep_conn on``) stays open; 0 closes after every request; a kept
connection also gives its thread up (within 0.1 s) when another connection is waiting for one.
--backlog on the launcher's socket.  --workers N -> the launcher's pre-fork supervisor forking N
threaded servers, not flup's ``fcgi_fork`` (one single-threaded process per connection: 0.4k vs
1.5k requests/s here, no drain, its own signal handling).  --timeout and the --limit-* options are
not mapped (a front server parses HTTP and enforces them).  --root-path, --proxy-headers (the
"peer" is REMOTE_ADDR as the front saw it) and --access-log are the launcher's middleware; flup has
no proxy-header handling of its own.  ``FCGI_WEB_SERVER_ADDRS`` (the FastCGI spec's list of web
servers allowed to connect over TCP) is honoured.

Traps handled, and why:

* flup binds its own socket from ``bindAddress`` and, given a unix path, unlinks whatever is there
  (a live server's socket included) and leaves the file behind.  Its ``run()``/``_setupSocket()``
  are never called: our own accept loop serves the launcher's sockets (several at once, non-blocking
  so workers sharing a socket never block in ``accept()``), and ``_setupSocket`` raises.
* flup's ``ThreadedServer.run()`` installs SIGHUP/SIGINT/SIGTERM handlers that end the loop without
  draining; it is not used, so the launcher's handlers stay: stop accepting (the loop is woken
  through a pipe, not a 1 s select timeout), wait for in-flight requests, close idle connections.
* flup's connection shutdown waits for the web server to close without a deadline (a thread lost
  per misbehaving peer): here at most 2 s.
* ``debug=True`` (flup's default) answers an app exception with cgitb's HTML traceback (and
  cgitb is gone in Python 3.13); with ``debug=False`` it answers a page *without* a Status line,
  which the web server passes on as 200.  Here: a plain ``500 Internal Server Error``, the
  traceback in the launcher's log.  An exception after part of the body was sent ends the
  connection with an invalid record and a reset, never FCGI_END_REQUEST: a clean close is not
  enough, because nginx without ``fastcgi_keep_conn`` takes the end of the connection as the end of
  the response (20 of 20 truncated bodies reached the client as complete 200s), and over a unix
  socket even a reset is a plain EOF (see ``abort``).
* flup6's ``wsgi.errors`` is a buffered bytes stream: a str written to it, as PEP 3333 says
  (and as a Flask app's log does), raises TypeError when the request ends.  Here it is
  ``sys.stderr``.  Response headers are encoded
  as latin-1 (PEP 3333), not ASCII, and CR/LF in them is refused (header injection).
* flup6 decodes each PARAMS record on its own: a name/value pair split across two records (the
  spec allows any split) is cut short and the rest decoded as garbage.  Its FCGI_GET_VALUES reply
  is always empty on Python 3 (bytes names looked up in a str table) and its unknown-type reply
  raises NameError.  Params are decoded once their stream ends; both replies are rewritten.
* flup's ``FCGI_WEB_SERVER_ADDRS`` check searches a ``map()`` iterator, consumed by the first
  search (with one address listed, every connection after the first is refused): a set here.
* flup sends each record in three writes (header, content, padding): here one ``sendall`` per
  record, and the end of a response (end of FCGI_STDOUT + FCGI_END_REQUEST) as one; TCP_NODELAY on
  TCP connections, so that small last write is not held back by Nagle's algorithm.
"""

from __future__ import annotations

import os
import threading

from backends.base import Backend
from launcher.errors import OptionError
from launcher.options import Option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: Seconds between checks of an idle connection (keep-alive expiry, shutdown, waiting connections).
IDLE_TICK = 0.1
#: Seconds a new connection may take to send its first record.
FIRST_RECORD_TIMEOUT = 10.0
#: Seconds a connection being shut down waits for the web server to close its side.
LINGER = 2.0
#: A just-accepted connection counts as a pending request for this long (its request is on the way).
FRESH = 1.0
#: Largest PARAMS stream accepted (nginx and Apache stay far below: header limits of ~8 KiB each).
MAX_PARAMS = 4 << 20
#: Content bytes per FCGI_STDOUT record (a multiple of 8: no padding; the spec's maximum is 65535).
RECORD_CONTENT = 65528

_FIX_ALIASES = {"true": "lighttpd", "on": "lighttpd", "yes": "lighttpd", "1": "lighttpd",
                "false": "off", "no": "off", "0": "off", "none": "off"}


class FastCGIBackend(Backend):
    name = "fastcgi"
    extra = "fastcgi"
    protocol = "fastcgi"
    library = "flup"
    distribution = "flup6"
    min_version = "1.1.1"
    supports = frozenset({"threads", "connections", "keepalive"})
    option_spec = (
        Option("script_name_fix", "choice", "off",
               "repair the web server's SCRIPT_NAME/PATH_INFO split before --root-path: strip (SCRIPT_NAME is"
               " the .fcgi script's path after a rewrite) or lighttpd (app at '/': whole path in SCRIPT_NAME)",
               choices=("off", "strip", "lighttpd")),
        Option("max_spare", "int", None, "idle threads kept (flup maxSpare; default: --threads, all started at"
               " once)", minimum=1),
        Option("min_spare", "int", 1, "idle threads the pool keeps ready while below --threads (flup minSpare)",
               minimum=1),
    )

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None
        self._wake_w = -1
        #: set by close(): serve() returns
        self._done = threading.Event()

    def check(self, opts: ServeOptions) -> None:
        super().check(opts)
        max_spare = self.backend_options.get("max_spare")
        if max_spare is not None and max_spare > opts.threads:
            raise OptionError(f"-o max_spare={max_spare}: at most --threads ({opts.threads})")
        if self.backend_options["min_spare"] > (max_spare or opts.threads):
            raise OptionError(f"-o min_spare={self.backend_options['min_spare']}: at most max_spare"
                              f" ({max_spare or opts.threads})")

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        fixed = dict(raw)
        if "script_name_fix" in fixed:
            value = str(fixed["script_name_fix"]).strip().lower()
            fixed["script_name_fix"] = _FIX_ALIASES.get(value, value)
        return super().parse_backend_options(fixed)

    # ------------------------------------------------------------------ running

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        server_cls = _classes()
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(self._wake_w, False)
        options = self.backend_options
        self._server = server_cls(
            app,
            threads=opts.threads,
            max_spare=options.get("max_spare") or opts.threads,
            min_spare=options.get("min_spare") or 1,
            connections=opts.connections,
            keepalive=opts.keepalive,
            script_name_fix=options.get("script_name_fix", "off"),
            allowed=_web_server_addrs(),
        )
        if self._stopping.is_set():
            self._server.accepting = False  # a signal came while the server was being built
        socks = [listener.sock for listener in listeners]
        for sock in socks:
            # Several workers share these sockets: whoever loses an accept race must not block.
            sock.setblocking(False)
        try:
            ready(listeners)
            self._server.accept_loop(socks, wake_r)
            # Not accepting any more (stop_accepting): close this process's copies now, so new
            # connections are refused instead of waiting in a backlog nobody reads.
            for sock in socks:
                try:
                    sock.close()
                except OSError:
                    pass
            while not self._done.wait(0.5):
                pass
        finally:
            wake_w, self._wake_w = self._wake_w, -1  # a late signal must not write to a reused fd
            os.close(wake_w)
            os.close(wake_r)

    # ------------------------------------------------------------------ stopping

    def stop_accepting(self) -> None:
        # Called from the signal handler: set a flag and wake the accept loop, nothing that blocks.
        server = self._server
        if server is None:
            return
        server.accepting = False
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def pending(self) -> int:
        server = self._server
        if server is None:
            return 0
        active = self.inflight.active if self.inflight is not None else 0
        return int(server.pending(active))

    def close(self) -> None:
        if self._server is not None:
            self._server.closing = True  # idle connections end within IDLE_TICK
        self._done.set()


def _web_server_addrs() -> frozenset[str] | None:
    """FCGI_WEB_SERVER_ADDRS: the web servers allowed to connect over TCP (None: any)."""
    value = os.environ.get("FCGI_WEB_SERVER_ADDRS")
    if value is None:
        return None
    return frozenset(_plain_ip(part.strip()) for part in value.split(",") if part.strip())


def _plain_ip(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") and "." in host else host


# --------------------------------------------------------------------------- flup subclasses

_CLASSES: Any = None


def _classes() -> Any:
    """The server class built on flup's protocol classes (imported here: flup loads lazily)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES

    import errno
    import select
    import socket
    import struct
    import sys
    import time

    from flup.server import fcgi_base as fb
    from flup.server.threadpool import ThreadPool

    from launcher.log import logger

    header = struct.Struct("!BBHHBx")
    end_body = struct.Struct("!LB3x")
    monotonic = time.monotonic

    def record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
        padding = -len(content) & 7
        return header.pack(fb.FCGI_VERSION_1, rtype, request_id, len(content), padding) + content + b"\0" * padding

    def stream(rtype: int, request_id: int, data: bytes) -> list[bytes]:
        return [record(rtype, request_id, data[i:i + RECORD_CONTENT]) for i in range(0, len(data), RECORD_CONTENT)]

    def readable(sock: socket.socket, timeout: float) -> bool:
        # poll, not select: select() fails on descriptors above 1024
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(max(0, int(timeout * 1000))))

    def decode_pairs(data: bytes) -> dict[str, str]:
        pairs: dict[str, str] = {}
        pos, end = 0, len(data)
        while pos < end:
            lengths = []
            for _ in range(2):
                if pos >= end:
                    raise EOFError("truncated name-value pair")
                if data[pos] & 0x80:
                    if pos + 4 > end:
                        raise EOFError("truncated name-value pair")
                    lengths.append(int.from_bytes(data[pos:pos + 4], "big") & 0x7FFFFFFF)
                    pos += 4
                else:
                    lengths.append(data[pos])
                    pos += 1
            name_len, value_len = lengths
            if pos + name_len + value_len > end:
                raise EOFError("truncated name-value pair")
            name = data[pos:pos + name_len].decode("latin-1")
            pos += name_len
            pairs[name] = data[pos:pos + value_len].decode("latin-1")
            pos += value_len
        return pairs

    def encode_pair(name: bytes, value: bytes) -> bytes:
        out = b""
        for length in (len(name), len(value)):
            out += bytes([length]) if length < 128 else (length | 0x80000000).to_bytes(4, "big")
        return out + name + value

    class Gone(Exception):
        """Writing to the web server failed: it closed the connection."""

    class Abort(Exception):
        """The response cannot be completed: drop the connection without FCGI_END_REQUEST."""

    class LauncherRequest(fb.Request):  # type: ignore[misc]
        def __init__(self, conn: Any, input_stream_class: Any) -> None:
            super().__init__(conn, input_stream_class)
            self.params_data: list[bytes] = []
            self.params_size = 0

        def run(self) -> None:
            conn = self._conn
            try:
                protocol_status, app_status = self.server.handler(self)
                conn.finish_request(self, app_status, protocol_status)
            except (Abort, Gone, OSError):
                conn.abort(self.requestId)

    class LauncherConnection(fb.Connection):  # type: ignore[misc]
        def __init__(self, sock: socket.socket, addr: Any, server: Any) -> None:
            super().__init__(sock, addr, server)
            self.accepted_at = monotonic()
            self.started_at = 0.0  # set when a pool thread picks the connection up
            self.last_active = self.accepted_at
            self.seen_record = False
            self.closed = False

        # -- the connection's thread

        def run(self) -> None:
            self.started_at = self.last_active = monotonic()
            self._keepGoing = True
            try:
                while self._keepGoing:
                    try:
                        self.process_input()
                    except (EOFError, OSError, ValueError, struct.error):
                        break
            finally:
                self._requests.clear()  # the web server hung up mid-request: nothing left to answer
                self._cleanupSocket()
                self.server.forget(self)

        def process_input(self) -> None:
            sock = self._sock
            while self._keepGoing:
                if self.closed:
                    raise EOFError
                if readable(sock, IDLE_TICK):
                    break
                if not self._requests and self._idle_should_end():
                    self._keepGoing = False
            if not self._keepGoing:
                return
            rec = fb.Record()
            rec.read(sock)
            self.seen_record = True
            self.last_active = monotonic()
            rtype = rec.type
            if rtype == fb.FCGI_GET_VALUES:
                self._do_get_values(rec)
            elif rtype == fb.FCGI_BEGIN_REQUEST:
                self._do_begin_request(rec)
            elif rtype == fb.FCGI_ABORT_REQUEST:
                self._do_abort_request(rec)
            elif rtype == fb.FCGI_PARAMS:
                self._do_params(rec)
            elif rtype == fb.FCGI_STDIN:
                self._do_stdin(rec)
            elif rtype == fb.FCGI_DATA:
                self._do_data(rec)
            elif rec.requestId == fb.FCGI_NULL_REQUEST_ID:
                self._do_unknown_type(rec)

        def _idle_should_end(self) -> bool:
            server = self.server
            if server.closing:
                return True
            if self.seen_record and server.pool._workQueue:
                return True  # a connection is waiting for this thread: give it up
            limit = server.keepalive if self.seen_record else max(server.keepalive, FIRST_RECORD_TIMEOUT)
            return bool(monotonic() - self.last_active > limit)

        # -- records in

        def _do_params(self, inrec: Any) -> None:
            req = self._requests.get(inrec.requestId)
            if req is None:
                return
            if inrec.contentLength:
                # A name-value pair may span records: decode the whole stream once it ends.
                req.params_size += inrec.contentLength
                if req.params_size > MAX_PARAMS:
                    raise EOFError("PARAMS stream too large")
                req.params_data.append(inrec.contentData)
                return
            req.params = decode_pairs(b"".join(req.params_data))
            req.params_data = []
            self._start_request(req)

        def _do_get_values(self, inrec: Any) -> None:
            wanted = decode_pairs(inrec.contentData)
            capability = self.server.capability
            content = b"".join(encode_pair(name.encode("latin-1"), str(capability[name]).encode("ascii"))
                               for name in wanted if name in capability)
            self.send(record(fb.FCGI_GET_VALUES_RESULT, fb.FCGI_NULL_REQUEST_ID, content))

        def _do_unknown_type(self, inrec: Any) -> None:
            body = struct.pack(fb.FCGI_UnknownTypeBody, inrec.type)
            self.send(record(fb.FCGI_UNKNOWN_TYPE, fb.FCGI_NULL_REQUEST_ID, body))

        # -- records out

        def send(self, data: bytes) -> None:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise Gone(str(exc)) from None

        def writeRecord(self, rec: Any) -> None:  # flup's own callers (CANT_MPX_CONN replies)
            self.send(record(rec.type, rec.requestId, rec.contentData))

        def send_stdout(self, request_id: int, data: bytes) -> None:
            for chunk in stream(fb.FCGI_STDOUT, request_id, data):
                self.send(chunk)

        def finish_request(self, req: Any, app_status: int, protocol_status: int) -> None:
            """End of FCGI_STDOUT and FCGI_END_REQUEST in one write, then keep or close."""
            self.send(record(fb.FCGI_STDOUT, req.requestId)
                      + record(fb.FCGI_END_REQUEST, req.requestId, end_body.pack(app_status, protocol_status)))
            req.stdout.closed = True
            self._requests.pop(req.requestId, None)
            self.last_active = monotonic()
            self._after_request(req.flags)

        def end_request(self, req: Any, appStatus: int = 0, protocolStatus: int = fb.FCGI_REQUEST_COMPLETE,
                        remove: bool = True) -> None:
            self.send(record(fb.FCGI_END_REQUEST, req.requestId, end_body.pack(appStatus, protocolStatus)))
            if remove:
                self._requests.pop(req.requestId, None)
            self._after_request(req.flags)

        def _after_request(self, flags: int) -> None:
            server = self.server
            # Kept open only while no other connection waits for this thread.
            keep = (flags & fb.FCGI_KEEP_CONN and server.keepalive > 0 and not server.closing
                    and not server.pool._workQueue)
            if not keep and not self._requests:
                self._keepGoing = False
                self._cleanupSocket()

        # -- closing

        def _cleanupSocket(self) -> None:
            """Close after the web server closed its side (so unread input cannot turn the close
            into a reset that loses the response), but wait no more than LINGER seconds."""
            if self.closed:
                return
            self.closed = True
            sock = self._sock
            try:
                sock.shutdown(socket.SHUT_WR)
                deadline = monotonic() + LINGER
                while True:
                    remaining = deadline - monotonic()
                    if remaining <= 0 or not readable(sock, remaining) or not sock.recv(65536):
                        break
            except OSError:
                pass
            finally:
                sock.close()

        def abort(self, request_id: int = 1) -> None:
            """Make the web server see this response fail, not end.

            Ending the connection is not enough: nginx without ``fastcgi_keep_conn`` takes the
            end of the connection as the end of the response, FCGI_END_REQUEST or not, and over a
            unix socket a close is a plain EOF (a reset only happens with unread input left).
            Measured, 20 requests each, app failing after the first body block: clean close, 20
            complete 200s; reset over TCP, 20 cut; reset over a unix socket after the app read
            its whole body, 20 complete 200s.  A record with an invalid version, then a reset, was
            20 of 20 failures (cut or dropped) in all four of unix/TCP x keep_conn on/off: it is a
            protocol error for every web server.
            """
            self._requests.clear()
            self._keepGoing = False
            if self.closed:
                return
            self.closed = True
            sock = self._sock
            try:
                sock.send(header.pack(0, fb.FCGI_STDOUT, request_id, 0, 0))  # version 0: invalid
            except OSError:
                pass
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            sock.close()

    class LauncherFCGIServer(fb.BaseFCGIServer):  # type: ignore[misc]
        request_class = LauncherRequest

        def __init__(self, application: WSGIApp, *, threads: int, max_spare: int, min_spare: int,
                     connections: int, keepalive: float, script_name_fix: str,
                     allowed: frozenset[str] | None) -> None:
            # bindAddress stays None and is never used: _setupSocket is not called.
            super().__init__(application, multithreaded=True, multiprocess=False, debug=False)
            self._connectionClass = LauncherConnection
            self.capability = {fb.FCGI_MAX_CONNS: connections, fb.FCGI_MAX_REQS: connections,
                               fb.FCGI_MPXS_CONNS: 0}
            self.max_connections = connections
            self.keepalive = keepalive
            self.script_name_fix = script_name_fix
            self.allowed = allowed
            self.accepting = True
            self.closing = False
            self.conns: set[Any] = set()
            self.lock = threading.Lock()
            self.pool = ThreadPool(minSpare=min_spare, maxSpare=max_spare, maxThreads=threads)
            self._warned_at = 0.0
            self._warned_missing = False

        def _setupSocket(self) -> Any:
            raise RuntimeError("the launcher binds the sockets; flup must not bind, unlink or take over one")

        def _cleanupSocket(self, sock: Any) -> None:
            pass  # the launcher closes its sockets and removes the unix socket file it created

        # -- accepting

        def accept_loop(self, socks: list[socket.socket], wake_fd: int) -> None:
            poller = select.poll()
            by_fd = {sock.fileno(): sock for sock in socks}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            poller.register(wake_fd, select.POLLIN)
            while self.accepting:
                for fd, _ in poller.poll(1000):
                    if fd == wake_fd:
                        try:
                            os.read(wake_fd, 512)
                        except OSError:
                            pass
                        continue
                    self._accept_from(by_fd[fd])
                    if not self.accepting:
                        break

        def _accept_from(self, sock: socket.socket) -> None:
            for _ in range(64):  # a burst at most, then poll again (fair across sockets)
                try:
                    client, addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        self._warn(f"cannot accept a connection: {exc.strerror}")
                        time.sleep(0.1)
                        return
                    raise
                self._take(client, addr)

        def _take(self, client: socket.socket, addr: Any) -> None:
            client.setblocking(True)
            if client.family != socket.AF_UNIX:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.allowed is not None and _plain_ip(str(addr[0])) not in self.allowed:
                    client.close()  # not one of FCGI_WEB_SERVER_ADDRS
                    return
            with self.lock:
                full = len(self.conns) >= self.max_connections
                if not full:
                    conn = LauncherConnection(client, addr, self)
                    self.conns.add(conn)
            if full:
                client.close()  # as flup at its limit: the web server reports it (502)
                self._warn(f"{self.max_connections} connections open (--connections): refusing new ones")
                return
            self.pool.addJob(conn, allowQueuing=True)

        def forget(self, conn: Any) -> None:
            with self.lock:
                self.conns.discard(conn)

        def pending(self, active: int) -> int:
            """Requests received (or surely on the way) that the app is not running."""
            now = monotonic()
            with self.lock:
                conns = list(self.conns)
            waiting = 0
            requests = 0
            for conn in conns:
                if not conn.started_at:
                    waiting += 1  # accepted, queued for a thread
                elif not conn.seen_record and now - conn.started_at < FRESH:
                    waiting += 1  # its first request is on the way
                requests += len(conn._requests)
            # Requests begun on a connection but not running in the app: params or body still
            # arriving, or the response being finished after the app's close().
            return waiting + max(0, requests - active)

        def _warn(self, message: str) -> None:
            now = monotonic()
            if now - self._warned_at >= 5.0:
                self._warned_at = now
                logger.warning(message)

        # -- one request

        def handler(self, req: Any) -> tuple[int, int]:
            if req.role != fb.FCGI_RESPONDER:
                return fb.FCGI_UNKNOWN_ROLE, 0
            conn = req._conn
            request_id = req.requestId
            environ = self._environ(req)
            status_line: list[str] = []
            headers_out: list[tuple[str, str]] = []
            sent = False
            result: Any = None

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                if exc_info:
                    try:
                        if sent:
                            raise exc_info[1].with_traceback(exc_info[2])
                    finally:
                        exc_info = None
                elif status_line:
                    raise AssertionError("start_response() called a second time without exc_info")
                _check_status(status)
                checked = _check_headers(headers)
                status_line[:] = [status]
                headers_out[:] = checked
                return write

            def write(data: bytes) -> None:
                nonlocal sent
                if type(data) is not bytes:
                    raise TypeError(f"the app must give bytes, not {type(data).__name__}")
                if not status_line:
                    raise AssertionError("write() before start_response()")
                if not sent:
                    sent = True
                    if result is not None and not any(k.lower() == "content-length" for k, _ in headers_out):
                        try:
                            if len(result) == 1:
                                headers_out.append(("Content-Length", str(len(data))))
                        except (TypeError, AttributeError):
                            pass
                    lines = [f"Status: {status_line[0]}\r\n"]
                    lines += [f"{name}: {value}\r\n" for name, value in headers_out]
                    lines.append("\r\n")
                    data = "".join(lines).encode("latin-1") + data
                conn.send_stdout(request_id, data)

            try:
                try:
                    result = self.application(environ, start_response)
                    for data in result:
                        if data:
                            write(data)
                    if not sent:
                        write(b"")
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except Gone:
                raise
            except Exception:
                logger.exception("error in the app answering %s %s", environ.get("REQUEST_METHOD"),
                                  environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
                if sent:
                    raise Abort from None  # part of the response left: it must not look complete
                conn.send_stdout(request_id, ERROR_RESPONSE)
            return fb.FCGI_REQUEST_COMPLETE, 0

        def _environ(self, req: Any) -> dict[str, Any]:
            environ: dict[str, Any] = req.params
            # CGI's rule: a missing PATH_INFO is an empty one (flup substituted the raw,
            # percent-encoded REQUEST_URI, doubling the mount point under a SCRIPT_NAME).
            environ.setdefault("SCRIPT_NAME", "")
            environ.setdefault("PATH_INFO", "")
            environ.setdefault("QUERY_STRING", "")
            missing = [key for key in ("REQUEST_METHOD", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL")
                       if not environ.get(key)]
            if missing:
                if not self._warned_missing:
                    self._warned_missing = True
                    logger.warning("the web server sent no %s (see the FastCGI params in its config)",
                                   ", ".join(missing))
                defaults = {"REQUEST_METHOD": "GET", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                            "SERVER_PROTOCOL": "HTTP/1.0"}
                for key in missing:
                    environ[key] = defaults[key]
            if self.script_name_fix != "off":
                from backends.cgi import fix_script_name

                fix_script_name(environ, self.script_name_fix)
            https = (environ.get("HTTPS", "").lower() in ("on", "1")
                     or environ.get("REQUEST_SCHEME", "").lower() == "https")
            environ["wsgi.version"] = (1, 0)
            environ["wsgi.input"] = req.stdin
            environ["wsgi.errors"] = sys.stderr
            environ["wsgi.multithread"] = True
            environ["wsgi.multiprocess"] = False  # set by the launcher in a pre-forked worker
            environ["wsgi.run_once"] = False
            environ["wsgi.url_scheme"] = "https" if https else "http"
            environ["wsgi.input_terminated"] = True  # FCGI_STDIN ends with an empty record
            return environ

        def error(self, req: Any) -> None:  # flup's own error page (unused: handler answers itself)
            req._conn.send_stdout(req.requestId, ERROR_RESPONSE)

    _CLASSES = LauncherFCGIServer
    return _CLASSES


ERROR_BODY = b"Internal Server Error\n"
ERROR_RESPONSE = (
    b"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(ERROR_BODY)).encode() + b"\r\n\r\n" + ERROR_BODY
)


def _check_status(status: Any) -> None:
    if type(status) is not str:
        raise TypeError(f"status must be a str, not {type(status).__name__}")
    if len(status) < 4 or not status[:3].isdigit() or status[3] != " " or _bad_chars(status):
        raise ValueError(f"bad status {status!r}: expected e.g. '200 OK'")


def _check_headers(headers: Any) -> list[tuple[str, str]]:
    if type(headers) is not list:
        raise TypeError(f"headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"each header must be a (name, value) tuple, not {item!r}")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header name and value must be str: {item!r}")
        if not name or _bad_chars(name) or ":" in name or _bad_chars(value):
            raise ValueError(f"header {name!r} has a control character (or a colon in its name)")
        try:
            value.encode("latin-1")
            name.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} is not latin-1 (PEP 3333)") from None
    return [(name, value) for name, value in headers]


def _bad_chars(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text
