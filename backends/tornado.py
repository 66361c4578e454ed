"""tornado: the WSGI app on tornado's HTTP server, in a thread pool, forked by tornado itself.

Mapped: --threads -> the executor of ``tornado.wsgi.WSGIContainer`` (without an executor every
request runs on the event-loop thread: three 2 s requests all finished at 6 s), --keepalive and
--header-timeout -> ``idle_connection_timeout`` (below), --limit-request-body -> ``max_body_size``
(0: no limit; the body is held in memory, as the container needs it whole), --workers ->
``tornado.process.fork_processes`` (tornado's own multi-process mode), --backlog on the launcher's
socket.  ``-o`` takes tornado's other HTTPServer limits by their own names: max_buffer_size,
max_header_size (the whole request head), chunk_size, body_timeout (seconds to receive a request
body; 0 or unset: no limit, tornado's default) and decompress_request.

Timeouts: tornado has one timer for the wait until a request's head is complete, set by
``idle_connection_timeout`` (``header_timeout`` is copied from it; it defaults to an hour).  It
starts when the connection waits for a request, so it covers an idle keep-alive connection and a
client sending its head slowly alike.  It is the smaller of --keepalive and --header-timeout:
--header-timeout is never exceeded, and an idle connection stays open at most --keepalive
seconds (less when --header-timeout is smaller; a new connection gets the same timer for its
first head).  --keepalive 0 turns keep-alive off; then --header-timeout alone applies.
--header-timeout is also tornado's ``body_timeout`` unless ``-o body_timeout`` is given: a body
that stops coming ends the connection.
--timeout (restart a worker whose request runs too long) cannot be honoured: a thread running the
app cannot be stopped.  --connections cannot either (tornado accepts without limit).  They stay
out of ``supports``, so setting them is an error.

Request hygiene (:mod:`launcher.hygiene`): tornado's parser is lax (bare-LF header lines,
absolute-form and ``*`` targets, ``Content_Length`` / ``X_Forwarded_For`` look-alikes that the
environ would turn into CONTENT_LENGTH / HTTP_X_FORWARDED_FOR, no Host, Transfer-Encoding in
HTTP/1.0, no per-line or per-field limits).  The request delegate's ``headers_received`` runs
``check_head`` with ``Limits.from_options`` (--limit-request-line/-fields/-field-size) on the
start line and the fields as they arrived; a refused head takes the stream from tornado
(``detach``), writes ``error_response()`` and closes, so nothing behind it is parsed.  A head
with a bare LF is refused in ``HTTP1Connection._parse_headers`` (tornado answers 400 and closes).
After a response that closes the connection (``Connection: close``, HTTP/1.0) tornado would still
parse and serve what it had buffered behind it: dropped (RFC 9112 9.6).  Chunk extensions
(``5;name=value``), which tornado refuses, are ignored as RFC 9112 7.1.1 says.

The launcher's middleware does --root-path, --proxy-headers and the access log; tornado's own
``xheaders`` stays off (it trusts X-Forwarded-For from any peer) and its access log is not
written.

The container is tornado's WSGIContainer with its request handling replaced, because as shipped:

* an exception in the app never answers: the client waits until it gives up.  Here it is a 500
  without internals, logged with its traceback, and the server keeps serving;
* a HEAD response whose app returned a body closes the connection with nothing sent (tornado
  refuses to write "more than Content-Length" for HEAD).  The body is dropped instead, and 204
  and 304 get no Content-Length;
* it builds SERVER_PORT from the Host header (80 when there is none, wrong for ``[::1]:8000``, an
  exception for a non-numeric port) and calls a unix-socket peer "0.0.0.0" (an IP address the
  proxy-header allow-list could match).  SERVER_PORT is the real local port here and
  REMOTE_ADDR of a unix-socket peer is empty;
* it parses form bodies for nothing (WSGI apps read wsgi.input themselves).

As tornado's container does, the response is buffered whole before it is sent: no streaming.

Executor threads: ThreadPoolExecutor threads are not daemons, so the interpreter joins them at
exit: after a cut-off stop it waited for the stuck request (still alive at 20 s).  The pool here
(:class:`DaemonPool`) has daemon threads, so a stop past --graceful-timeout exits 1 at once.

Stopping (SIGTERM/SIGINT, through the launcher's handler): stop accepting on the event loop
(``call_soon_threadsafe``, safe from a signal handler), answer later requests on open
connections with ``Connection: close``, wait for requests in the app, queued for a thread, still
being received or still being written, then close the idle connections and end the loop.
``HTTPServer.close_all_connections()`` alone aborts requests rather than draining them.

--workers N (and --max-requests, which needs a process to replace a worker): the launcher binds
and imports the app, then ``fork_processes(N)`` forks after binding and before any event loop
exists, as tornado documents.  Its parent never returns while workers run: it waits in
``os.wait()``, replaces a worker that dies abnormally and only ``sys.exit(0)``s once every worker
exited with 0.  It forwards no signals and keeps its worker list to itself.  So the workers talk
to it over a pipe (their pid, "accepting", "cut off N", "failed to start") and wake it with
SIGCHLD, whose handler reads the pipe between two ``os.wait()`` calls:

* ready: the parent announces (one startup line, one ready file, with the main pid) once every
  worker accepts;
* SIGTERM/SIGINT to the main pid: the parent forwards SIGTERM to its workers (checking in
  /proc that each pid is still its child), each drains as above and exits 0, then
  fork_processes ends and the exit code is 1 if any worker cut requests off (their sum is
  reported) or died while stopping (fork_processes then logs "restarting", but the worker it
  forks sees the stop it inherited and exits at once);
* the workers ask the kernel for SIGINT when the parent dies (PR_SET_PDEATHSIG): a parent killed
  outright leaves no workers behind (they drain), and after a second SIGINT or the launcher's
  forced exit a worker already draining exits at once;
* a worker that fails before it ever accepted stops the whole server (an error, not 100 quick
  restarts); --max-requests makes a worker exit with :data:`RECYCLE_EXIT` so tornado replaces it;
  ``max_restarts`` (100 over the server's whole life by default, then the parent raises) is
  lifted for that reason, as gunicorn's arbiter replaces workers without limit.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import re
import signal
import sys
import threading

from backends.base import Backend
from launcher.errors import OptionError, ServerError
from launcher.log import logger
from launcher.options import Option

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any, TypeVar

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

    _T = TypeVar("_T")

#: tornado's own head timer (seconds) when neither --keepalive nor --header-timeout limits it.
TORNADO_HEADER_TIMEOUT = 3600.0
#: max_body_size for --limit-request-body 0 (tornado has no "unlimited").
NO_BODY_LIMIT = 2**63 - 1
#: Exit code of a worker that stopped after --max-requests: not 0, so fork_processes replaces it.
RECYCLE_EXIT = 3
#: Seconds close() gives the last idle connections to be closed before the loop ends anyway.
CLOSE_GRACE = 2.0

#: HTTPServer settings the launcher sets from its common options (and why -o cannot).
OWNED = {
    "idle_connection_timeout": "--keepalive and --header-timeout",
    "header_timeout": "--header-timeout",
    "max_body_size": "--limit-request-body",
    "no_keep_alive": "--keepalive 0",
    "xheaders": "--proxy-headers and --forwarded-allow-ips",
    "trusted_downstream": "--proxy-headers and --forwarded-allow-ips",
    "protocol": "--proxy-headers (X-Forwarded-Proto)",
    "executor": "--threads",
    "num_processes": "--workers",
}

_MiB = 1024 * 1024


class TornadoBackend(Backend):
    name = "tornado"
    extra = "tornado"
    protocol = "http"
    library = "tornado"
    distribution = "tornado"
    min_version = "6.5.3"
    supports = frozenset({
        "threads", "keepalive", "header_timeout", "limit_request_body",
        "limit_request_line", "limit_request_fields", "limit_request_field_size",
    })
    native_workers = True
    option_spec = (
        Option("max_buffer_size", "int", 100 * _MiB, "bytes a connection may buffer while reading", minimum=1),
        Option("max_header_size", "int", 64 * 1024, "largest request head in bytes", minimum=1024),
        Option("chunk_size", "int", 64 * 1024, "bytes read from a socket at once", minimum=1024),
        Option("body_timeout", "float", None, "seconds to receive a request body (0: no limit)", minimum=0),
        Option("decompress_request", "bool", False, "gunzip request bodies sent with Content-Encoding: gzip"),
    )

    def __init__(self) -> None:
        super().__init__()
        # one process, or one worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._container: Any = None
        self._done: asyncio.Event | None = None
        self._closed = False
        # the fork_processes parent
        self._role = "single"
        self._news_fd = -1
        self._news_buf = b""
        self._in_news = False
        self._news_again = False
        self._pids: dict[int, int] = {}  # worker pid -> task id
        self._ready_tasks: set[int] = set()
        self._announced = False
        self._announce: Ready | None = None
        self._listeners: list[Listener] = []
        self._workers = 0
        self._worker_cut = 0
        self._unclean = False
        self._failed = False

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        for key in raw:
            if key in OWNED:
                raise OptionError(f"-o {key}: set it with {OWNED[key]}, the launcher's common option")
        parsed = super().parse_backend_options(raw)
        if not parsed.get("body_timeout"):
            parsed["body_timeout"] = None  # tornado reads 0 as "time out at once"
        return parsed

    # ------------------------------------------------------------------ running

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        _route_tornado_logs()
        for listener in listeners:
            # tornado accepts in a loop until EAGAIN: a blocking socket would hang the loop
            # (and with several workers sharing it, every worker but the fastest).
            listener.sock.setblocking(False)
        if opts.workers > 1 or opts.max_requests:
            self._serve_forked(app, opts, listeners, ready)
        else:
            self._serve_here(app, opts, listeners, ready)

    def _serve_here(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        import asyncio

        executor = DaemonPool(opts.threads, "tornado-wsgi")
        try:
            asyncio.run(self._main(app, opts, listeners, ready, executor))
        finally:
            # Threads still running the app (cut off) are daemons: they do not hold the exit.
            executor.shutdown(wait=False, cancel_futures=True)

    async def _main(
        self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready, executor: DaemonPool
    ) -> None:
        import asyncio

        from tornado.httpserver import HTTPServer

        from launcher.hygiene import Limits

        container = _container_class()(app, executor, multiprocess=opts.workers > 1)
        container.limits = Limits.from_options(opts)
        options = dict(self.backend_options)
        if options.get("body_timeout") is None and opts.header_timeout > 0:
            options["body_timeout"] = opts.header_timeout  # a stalled body ends like a stalled head
        server = HTTPServer(
            container,
            xheaders=False,
            no_keep_alive=opts.keepalive <= 0,
            idle_connection_timeout=head_timer(opts),
            max_body_size=opts.limit_request_body or NO_BODY_LIMIT,
            **options,
        )
        self._done = asyncio.Event()
        self._container = container
        self._server = server
        server.add_sockets([listener.sock for listener in listeners])
        # Published last: a signal handler (same thread) or the drain thread may use them now.
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():  # stopped before the loop existed
            self._stop_server()
        else:
            ready(listeners)
        if not self._closed:
            await self._done.wait()
        # Drained (or cut off): what is left is idle, or past the deadline.
        try:
            await asyncio.wait_for(server.close_all_connections(), CLOSE_GRACE)
        except (asyncio.TimeoutError, OSError):
            pass

    # -- stopping one process (signal handler, --max-requests thread, drain thread)

    def stop(self, timeout: float) -> None:
        if self._role != "parent":
            super().stop(timeout)
            return
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._read_news()
        for pid in list(self._pids):
            _kill_child(pid, signal.SIGTERM)

    def stop_accepting(self) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._stop_server)
            except RuntimeError:  # the loop is already closed
                pass

    def _stop_server(self) -> None:
        # On the loop thread.  Requests that arrive on open connections from now on are answered
        # with "Connection: close" (tornado reads this shared setting for every request).
        self._server.conn_params.no_keep_alive = True
        self._server.stop()

    def pending(self) -> int:
        # Requests being received, queued for a thread, or answered but not yet flushed; the
        # launcher's counter covers the ones in the app, which the container counts too.
        container = self._container
        if container is None:
            return 0
        running = self.inflight.active if self.inflight is not None else 0
        opened: int = container.open
        return max(0, opened - running)

    def close(self) -> None:
        self._closed = True
        loop, done = self._loop, self._done
        if loop is not None and done is not None:
            try:
                loop.call_soon_threadsafe(done.set)
            except RuntimeError:
                pass

    # ------------------------------------------------------------------ --workers: fork_processes

    def _serve_forked(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        from tornado.process import fork_processes

        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._role = "parent"
        self._news_fd = read_fd
        self._announce = ready
        self._listeners = listeners
        self._workers = opts.workers
        parent = os.getpid()
        old_chld = signal.signal(signal.SIGCHLD, self._on_news)
        try:
            try:
                # No limit on replacements: --max-requests replaces workers all the time, and a
                # worker that cannot start stops the server (see _read_news) instead.
                task = fork_processes(opts.workers, max_restarts=sys.maxsize)
            except SystemExit:
                pass  # every worker exited with 0: fork_processes' way of ending the parent
            else:
                self._worker_main(task, parent, write_fd, old_chld, app, opts, listeners)  # never returns
        finally:
            # Only the parent gets here.
            signal.signal(signal.SIGCHLD, old_chld)
            self._read_news()
            os.close(read_fd)
            os.close(write_fd)
        if self._failed:
            raise ServerError("a tornado worker failed to start (see the error above); stopped")
        self.cut_off = self._worker_cut
        if self._unclean and not self.cut_off:
            # Killed, interrupted twice or forced out by its watchdog: not a clean drain.
            raise ServerError("a tornado worker did not stop cleanly (see the warnings above)")

    def _worker_main(
        self,
        task: int,
        parent: int,
        news: int,
        old_chld: Any,
        app: WSGIApp,
        opts: ServeOptions,
        listeners: list[Listener],
    ) -> None:
        """A forked worker: serve, drain, report, and leave with os._exit, never returning into the
        launcher (whose exit path would remove the unix socket the other workers still use)."""
        self._role = "worker"
        code = 1
        accepted = False
        pid = os.getpid()

        def tell(message: str) -> None:
            try:
                os.write(news, f"{message}\n".encode())
                os.kill(parent, signal.SIGCHLD)
            except OSError:
                pass

        try:
            signal.signal(signal.SIGCHLD, old_chld)
            os.close(self._news_fd)
            if not _die_with_parent(parent):
                code = 0
                return
            if self._stopping.is_set():
                # Forked by fork_processes to replace a worker that died while the server stops.
                tell(f"X {pid}")
                code = 0
                return
            self._news_fd = -1
            signalled = _note_signals()
            tell(f"S {pid} {task}")

            def on_ready(ready_listeners: list[Listener]) -> None:
                nonlocal accepted
                accepted = True
                tell(f"R {pid} {task}")

            self._serve_here(app, opts, listeners, on_ready)
            if self.cut_off:
                tell(f"C {pid} {self.cut_off}")
                code = 0  # the parent reports it and exits 1; exit 1 here would be "restarted"
            elif signalled.is_set():
                code = 0
            else:
                code = RECYCLE_EXIT  # stopped by --max-requests: fork_processes replaces it
        except BaseException:
            logger.exception("tornado worker %d failed", pid)
            if not accepted:
                tell(f"F {pid}")
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)

    def _on_news(self, signum: int, frame: object) -> None:
        self._read_news()

    def _read_news(self) -> None:
        """Read what the workers wrote on the pipe (in the parent, from a signal handler)."""
        if self._news_fd < 0 or self._role != "parent":
            return
        if self._in_news:  # a signal handler interrupted this very loop: it reads once more
            self._news_again = True
            return
        self._in_news = True
        try:
            while True:
                self._news_again = False
                try:
                    while chunk := os.read(self._news_fd, 65536):
                        self._news_buf += chunk
                except (BlockingIOError, InterruptedError):
                    pass
                *lines, self._news_buf = self._news_buf.split(b"\n")
                for line in lines:
                    self._handle_news(line.decode("ascii", "replace").split())
                if not self._news_again:
                    break
        finally:
            self._in_news = False

    def _handle_news(self, words: list[str]) -> None:
        if len(words) < 2 or not words[1].isdigit():
            return
        kind, pid = words[0], int(words[1])
        if kind == "S" and len(words) > 2:
            task = int(words[2])
            # fork_processes gives a replacement the task id of the worker it replaces.
            self._pids = {other: t for other, t in self._pids.items() if t != task}
            self._pids[pid] = task
            if self._stopping.is_set():  # forked just before the stop: it missed the forward
                _kill_child(pid, signal.SIGTERM)
        elif kind == "R" and len(words) > 2:
            self._ready_tasks.add(int(words[2]))
            if not self._announced and len(self._ready_tasks) >= self._workers and not self._stopping.is_set():
                self._announced = True
                if self._announce is not None:
                    self._announce(self._listeners)
        elif kind == "C" and len(words) > 2:
            self._worker_cut += int(words[2])
        elif kind == "X":
            self._unclean = True
        elif kind == "F" and not self._stopping.is_set():
            self._failed = True
            self.stop(0)
        if kind in ("C", "X", "F"):
            self._pids.pop(pid, None)


# --------------------------------------------------------------------------- helpers


def head_timer(opts: ServeOptions) -> float:
    """Seconds tornado waits for a complete request head: the smaller of --keepalive and
    --header-timeout (0 counts as unset for either)."""
    timers = [t for t in (opts.keepalive, opts.header_timeout) if t > 0]
    return min(timers) if timers else TORNADO_HEADER_TIMEOUT


def _route_tornado_logs() -> None:
    """Tornado's warnings and errors go out in the launcher's format; its info and access lines
    (one per request) do not."""
    tornado_log = logging.getLogger("tornado")
    for handler in list(tornado_log.handlers):
        if getattr(handler, "_launcher", False):  # from an earlier log.configure()
            tornado_log.removeHandler(handler)
    for handler in logger.handlers:
        tornado_log.addHandler(handler)
    tornado_log.propagate = False
    tornado_log.setLevel(logging.WARNING)
    general = logging.getLogger("tornado.general")
    if not any(isinstance(f, _RecycleFilter) for f in general.filters):
        general.addFilter(_RecycleFilter())


class _RecycleFilter(logging.Filter):
    """Drop fork_processes' warning about a worker replaced after --max-requests (the worker
    already logged why it stopped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(record.msg, str)
            and "exited with status" in record.msg
            and isinstance(args, tuple)
            and len(args) == 3
            and args[2] == RECYCLE_EXIT
        )


def _note_signals() -> threading.Event:
    """Wrap the launcher's SIGTERM/SIGINT handlers to remember that a signal (not --max-requests)
    stopped this worker."""
    from backends.base import set_on_signals

    seen = threading.Event()
    set_on_signals(seen, (signal.SIGTERM, signal.SIGINT))
    return seen


def _kill_child(pid: int, sig: int) -> None:
    """Signal ``pid`` if it is still a child of this process (a reaped pid may have been reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return  # gone
        stat = b""  # no /proc: trust the pid
    except OSError:
        stat = b""
    if stat:
        try:
            ppid = int(stat.rpartition(b")")[2].split()[1])
        except (IndexError, ValueError):
            ppid = os.getpid()
        if ppid != os.getpid():
            return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _die_with_parent(parent: int) -> bool:
    """Ask Linux for SIGINT when the parent dies: the launcher's handler then drains a worker that
    was serving, and exits at once a worker that was already draining (a second interrupt).
    False if the parent is already gone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGINT, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return os.getppid() == parent  # else the parent died before prctl took effect


class DaemonPool(concurrent.futures.Executor):
    """A fixed-size thread pool of daemon threads, started on demand.

    ThreadPoolExecutor's threads are joined at interpreter exit, so a request the graceful timeout
    cut off kept the process alive until the app returned.  Daemon threads do not.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[_T]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future[_T] = concurrent.futures.Future()
            self._queue.put((future, fn, args, kwargs))
            # A new thread only when none is idle, as ThreadPoolExecutor does.
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)
            return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to whoever awaits the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


_CONTAINER: Any = None


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+"
#: A chunk size and its extensions (RFC 9112 7.1.1): *( BWS ";" BWS name [ BWS "=" BWS value ] ).
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t -~\x80-\xff])*"'
CHUNK_EXTENSIONS = re.compile(rf"([0-9a-fA-F]+)(?:[ \t]*;[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*(?:{_TOKEN}|{_QUOTED}))?)+")


def _container_class() -> Any:
    """The WSGI container class, built on first use so that importing this module imports no
    tornado."""
    global _CONTAINER
    if _CONTAINER is None:
        _CONTAINER = _build_container()
    return _CONTAINER


def _build_container() -> Any:
    import asyncio
    import socket
    import time

    import tornado
    from tornado import http1connection, httputil, iostream
    from tornado.escape import url_unescape
    from tornado.http1connection import HTTP1Connection
    from tornado.wsgi import WSGIContainer

    from launcher.hygiene import Limits, Rejection, check_head, error_response

    parse_headers = HTTP1Connection._parse_headers

    def strict_parse_headers(self: HTTP1Connection, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        # tornado takes header lines ended by a bare LF; the launcher's rule is 400 (tornado answers
        # an HTTPInputError here with 400 and closes).
        if data.count(b"\n") != data.count(b"\r\n"):
            raise httputil.HTTPInputError("bare LF in the request head")
        return parse_headers(self, data)

    HTTP1Connection._parse_headers = strict_parse_headers  # type: ignore[method-assign]

    # tornado refuses a chunk size line with an extension (5;name=value); RFC 9112 7.1.1: a
    # recipient MUST ignore unknown extensions.  A well-formed extension is dropped, anything
    # else (a trailing space with no extension, a stray character) still fails tornado's check.
    parse_hex_int = http1connection.parse_hex_int

    def parse_chunk_size(text: str) -> int:
        if ";" in text:
            match = CHUNK_EXTENSIONS.fullmatch(text)
            if match is None:
                raise ValueError(f"invalid chunk extension: {text[:40]!r}")
            text = match.group(1)
        return parse_hex_int(text)

    http1connection.parse_hex_int = parse_chunk_size  # type: ignore[assignment]

    server_header = f"TornadoServer/{tornado.version}"
    error_body = b"Internal Server Error"
    no_body_codes = (204, 304)

    class Request(httputil.HTTPMessageDelegate):
        """One request: its body is buffered, then the container runs the app on it.  Counted in
        ``container.open`` from its complete head until its response is flushed."""

        request: httputil.HTTPServerRequest | None
        body: bytearray

        def __init__(self, container: Container, connection: HTTP1Connection) -> None:
            self.container = container
            self.connection = connection
            self.request = None
            self.body = bytearray()
            self.counted = False
            self.rejected = False

        def headers_received(
            self,
            start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
            headers: httputil.HTTPHeaders,
        ) -> None:
            assert isinstance(start_line, httputil.RequestStartLine)
            if self.connection.stream.closed():
                # The previous request said Connection: close (or was HTTP/1.0) and its answer closed
                # the stream, but tornado still parses what it had buffered behind it (RFC 9112
                # 9.6: process no further requests): drop it.
                self.rejected = True
                self.connection.detach()
                return
            rejection = check_head(start_line.method, start_line.path, start_line.version, headers.get_all(),
                                   self.container.limits)
            if rejection is not None:
                self.reject(error_response(rejection))
                return
            try:
                self.request = httputil.HTTPServerRequest(
                    connection=self.connection, start_line=start_line, headers=headers
                )
            except httputil.HTTPInputError:
                # A bad Host header or query string: tornado would log "Uncaught exception" and
                # drop the connection without a word.
                self.reject(error_response(Rejection(400, "invalid Host or query")))
                return
            self.counted = True
            self.container.open += 1

        def reject(self, answer: bytes) -> None:
            """Answer a refused head and close: the stream is taken from tornado first, so nothing
            sent behind the request (a body, a hidden request) is ever parsed."""
            self.rejected = True
            stream = self.connection.detach()
            try:
                written = stream.write(answer)
            except iostream.StreamClosedError:
                return
            written.add_done_callback(lambda _: stream.close())

        def data_received(self, chunk: bytes) -> None:
            if not self.rejected:
                self.body += chunk

        def finish(self) -> None:
            if self.request is None:
                return
            self.request.body = bytes(self.body)
            self.body = bytearray()
            self.container.spawn(self)

        def on_connection_close(self) -> None:
            self.release()

        def release(self) -> None:
            if self.counted:
                self.counted = False
                self.container.open -= 1

    class Container(WSGIContainer, httputil.HTTPServerConnectionDelegate):
        def __init__(self, app: WSGIApp, executor: DaemonPool, *, multiprocess: bool) -> None:
            super().__init__(app, executor=executor)
            self.multiprocess = multiprocess
            #: requests from their complete head until their response is flushed (loop thread)
            self.open = 0
            self._tasks: set[asyncio.Task[None]] = set()
            #: the request limits checked with the head (set by the backend)
            self.limits = Limits()

        def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> Request:
            assert isinstance(request_conn, HTTP1Connection)
            return Request(self, request_conn)

        def spawn(self, delegate: Request) -> None:
            task = asyncio.get_running_loop().create_task(self.respond(delegate))
            self._tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._tasks.discard)

        async def respond(self, delegate: Request) -> None:
            request = delegate.request
            assert request is not None
            conn = delegate.connection
            try:
                try:
                    environ = self.environ(request)
                    loop = asyncio.get_running_loop()
                    status, app_headers, body = await loop.run_in_executor(self.executor, self.run_app, environ)
                    start_line, headers, body = self.response(request, status, app_headers, body)
                    written = conn.write_headers(start_line, headers, chunk=body)
                except Exception:
                    logger.exception("error in the app for %s %s", request.method, request.uri)
                    if conn.stream.closed():
                        return
                    start_line, headers, body = self.response(
                        request, "500 Internal Server Error",
                        [("Content-Type", "text/plain; charset=utf-8")], error_body,
                    )
                    written = conn.write_headers(start_line, headers, chunk=body)
                try:
                    conn.finish()
                except httputil.HTTPOutputError:
                    # Content-Length says more than the app sent: the connection is closed.
                    logger.error("response to %s %s shorter than its Content-Length", request.method, request.uri)
                try:
                    await written
                except iostream.StreamClosedError:
                    pass  # the client went away
            finally:
                delegate.release()

        def run_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
            """In an executor thread: call the app, collect the body, close the iterable."""
            sent: dict[str, Any] = {}
            chunks: list[bytes] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                if exc_info is not None:
                    if chunks:  # written already: PEP 3333 says re-raise
                        raise exc_info[1].with_traceback(exc_info[2])
                elif sent:
                    raise AssertionError("start_response called a second time without exc_info")
                sent["status"], sent["headers"] = status, headers
                return chunks.append

            result = self.wsgi_application(environ, start_response)
            try:
                for chunk in result:
                    if chunk:
                        chunks.append(chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not sent:
                raise RuntimeError("the app did not call start_response")
            return sent["status"], sent["headers"], b"".join(chunks)

        def response(
            self, request: httputil.HTTPServerRequest, status: str, app_headers: list[tuple[str, str]], body: bytes
        ) -> tuple[httputil.ResponseStartLine, httputil.HTTPHeaders, bytes]:
            code_text, _, reason = status.partition(" ")
            code = int(code_text)
            headers = httputil.HTTPHeaders()
            for key, value in app_headers:
                headers.add(key, value)
            if code in no_body_codes or code < 200:
                body = b""
                for key in ("Content-Length", "Transfer-Encoding"):
                    if key in headers:
                        del headers[key]
            elif "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            if request.method == "HEAD":
                body = b""  # the headers describe the GET response; tornado refuses a body here
            if "Server" not in headers:
                headers["Server"] = server_header
            if "Date" not in headers:
                headers["Date"] = httputil.format_timestamp(time.time())
            return httputil.ResponseStartLine("HTTP/1.1", code, reason), headers, body

        def environ(self, request: httputil.HTTPServerRequest) -> dict[str, Any]:
            conn = request.connection
            assert isinstance(conn, HTTP1Connection)
            context: Any = conn.context
            tcp = getattr(context, "address_family", None) in (socket.AF_INET, socket.AF_INET6)
            host, host_port = httputil.split_host_and_port(request.host)
            port = str(host_port or 80)
            if tcp and conn.stream.socket is not None:
                try:
                    port = str(conn.stream.socket.getsockname()[1])
                except OSError:
                    pass
            assert request.path is not None
            environ: dict[str, Any] = {
                "REQUEST_METHOD": request.method,
                "SCRIPT_NAME": "",
                "PATH_INFO": url_unescape(request.path, encoding=None, plus=False).decode("latin-1"),
                "QUERY_STRING": request.query,
                "REMOTE_ADDR": request.remote_ip if tcp else "",
                "SERVER_NAME": host.strip("[]") or "localhost",
                "SERVER_PORT": port,
                "SERVER_PROTOCOL": request.version,
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": request.protocol,
                "wsgi.input": _bytes_io(request.body),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": self.multiprocess,
                "wsgi.run_once": False,
            }
            if tcp and isinstance(context.address, tuple) and len(context.address) > 1:
                environ["REMOTE_PORT"] = str(context.address[1])
            for key, value in request.headers.items():
                name = key.replace("-", "_").upper()
                if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    environ[name] = value
                else:
                    environ["HTTP_" + name] = value
            return environ

    return Container


def _bytes_io(data: bytes) -> Any:
    from io import BytesIO

    return BytesIO(data)
