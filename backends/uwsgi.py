"""uWSGI: the server as its own program (``pyuwsgi``), built a command line and supervised.

Packaging: the ``pyuwsgi`` wheel, not the ``uwsgi`` sdist.  pyuwsgi is uWSGI 2.0 compiled as a
Python extension, shipped as manylinux wheels (cp311 x86_64 among them): it installs in seconds
with no compiler, no Python headers and no libpcre/libssl dev packages, whereas ``pip install
uwsgi`` compiles for ~35 s and fails without them.  It is still the whole uWSGI: its ``uwsgi``
console script (``pyuwsgi.run()``) takes the same command line.  The backend runs it as
``python -c 'import pyuwsgi; pyuwsgi.run()' ARGS`` with the launcher's own interpreter, so it always
runs the interpreter and virtualenv the launcher runs in.

The command line built (common option -> uWSGI option)::

    --strict --master --lazy-apps --need-app --single-interpreter --enable-threads --disable-logging
    --http11-socket fd://N      each launcher socket, HTTP/1.1 with keep-alive (the default)
    --http-socket fd://N        with --keepalive 0 (uWSGI then closes every connection)
    --socket fd://N             with -o protocol=uwsgi (nginx's uwsgi_pass)
    --processes W --threads T   --workers, --threads
    --harakiri S                --timeout (0: off)
    --socket-timeout K          --keepalive: how long a worker thread waits for the next request
    --max-requests N            --max-requests (the worker re-imports the app, --lazy-apps)
    (entry file)                --limit-request-body: 413 above it (Content-Length or chunked)
    --listen B                  --backlog (the launcher's socket already has it)
    --worker-reload-mercy G     --graceful-timeout (+1 s: the launcher enforces the deadline)
    --buffer-size 32768         request heads up to 32 KiB (uWSGI's 4 KiB drops big cookies silently)
    --max-vars F+64             --limit-request-fields (uWSGI drops fields past it instead of refusing)
    (entry file)                --limit-request-line / -fields / -field-size: 414 / 431
    (entry file)                --header-timeout: a thread in each worker, see HeadTimer
    --hook-master-start "unix_signal:15 gracefully_kill_them_all"   (and :2, see below)
    --wsgi-file ENTRY.py        a generated entry file, see below

``-o NAME=VALUE`` reaches any other uWSGI option by its own name (``-o thunder-lock=true``,
``-o offload-threads=2``), checked against ``uwsgi --help``: a typo names the closest option, the
options the launcher owns name the common option to use instead; ``true`` gives a flag, ``false``
leaves it out.  Two keys are the backend's own: ``protocol`` (``http`` or ``uwsgi``) and
``ready_timeout`` (seconds to wait for the first answer, default 60).

--root-path, --proxy-headers, --access-log and --health-path are the launcher's middleware, run in
each worker: uWSGI's ``--mount /prefix=app --manage-script-name`` was considered for --root-path,
but it answers 404 outside the prefix where every other backend leaves a path a front server
already stripped alone, so the shared RootPath keeps them all identical.  Not mapped, so refused
before start when set: --connections (uWSGI has no connection limit: one connection per thread).
--header-timeout is the entry file's (:class:`HeadTimer`): uWSGI 2.0's one socket timeout is
--keepalive's, and it is per read, so a head trickled faster was never cut (pyuwsgi 2.0.30's
``uwsgi --help`` lists no ``--http-headers-timeout``: newer uWSGI source has one, for its HTTP
router, ``--http``, only).  A thread in each worker shuts down
a connection whose head has not arrived whole in time: a new connection's from when it is first
seen, a kept-alive one's from the first byte of its next request (TCP_INFO's byte count), so idle
keep-alive still lasts --keepalive.  A chunked body may pause --header-timeout between reads (the
entry file reads it); a Content-Length body is read by uWSGI, which waits --keepalive per read.
A head bigger than --buffer-size is dropped by uWSGI without an answer (closed).

uWSGI's HTTP parser takes almost any head; the entry file refuses (400, 414, 431 or 505 with
Connection: close, and the connection shut down so nothing behind it is parsed) what environ still
shows against the launcher's rules (:func:`environ_refusal`): the request line (method token,
HTTP/1.0 or 1.1, origin-form or ``*`` for OPTIONS, no control byte or space in REQUEST_URI), an
invalid Content-Length, Transfer-Encoding in HTTP/1.0, a missing or invalid Host in HTTP/1.1,
header names that were no token (uWSGI keeps their space in the environ key), control bytes in
values (a bare LF included), and the --limit-request-* limits.  It cannot see a '_' name: uWSGI's
``http_header_to_cgi()`` (proto/http.c) upper-cases the name and turns '-' into '_' *in place* in
its read buffer, so ``Content_Length`` becomes CONTENT_LENGTH and ``X_Forwarded_For`` joins a real
X-Forwarded-For as one HTTP_X_FORWARDED_FOR "a, b" before any Python code runs (measured: no
HTTP_CONTENT_LENGTH key, no second entry, the raw name nowhere).
A chunked request body is parsed by the entry file itself, strictly (:class:`StrictChunkedInput`),
from the raw bytes: uWSGI's ``uwsgi.chunked_read()`` takes chunk size 'zz' as 0 and '0x5' as 5
(``strtoul``), skips data past a chunk's size and fails on an extension.  The raw bytes come from
uWSGI's exported ``uwsgi_proto_base_read_body()`` through ctypes (:class:`RawStream`): what uWSGI
read with the head first, then the connection.
A unix socket's mode is set by the launcher when it binds (``unix:PATH:0660``): uWSGI's
``--chmod-socket`` only applies to sockets it binds itself.

The app is imported by each worker after the fork (``--lazy-apps``) through the launcher's own
importer: the generated entry file calls :func:`child_app`, which rebuilds the launcher's options
from a JSON file, imports the spec with :func:`launcher.importer.import_app` (same spec forms, same
messages) and wraps the same middleware, then marks the worker loaded in a status directory.  A
failing import writes its message there; the launcher stops uWSGI and raises it as
:class:`~launcher.errors.AppImportError` (the user's own traceback printed first), one line.

Traps handled, and why:

* SIGTERM.  With ``--master`` uWSGI takes SIGTERM as "reload" and stays up; SIGINT kills the workers
  at once.  A master-start hook maps both to ``gracefully_kill_them_all``: workers stop accepting,
  finish their requests, exit, and the master exits 0 (4 of 4 in-flight 2 s requests answered).
  The launcher forwards its own SIGTERM/SIGINT as a SIGTERM to the master and enforces
  --graceful-timeout itself: past it the whole uWSGI process group is killed and the exit code is 1.
* Process group.  Ctrl-C in a terminal signals the whole foreground group, and uWSGI *workers* die
  on SIGINT whatever the master's hooks say (measured: 4 of 4 in-flight requests dropped).  So uWSGI
  runs in a process group of its own and only the launcher receives terminal signals; it dies with
  the launcher (``PR_SET_PDEATHSIG``: the master is killed, its workers follow within a second).
* Sockets.  The launcher binds, so a busy port, port 0 and a live or stale unix socket are reported
  as for every backend (uWSGI itself silently takes over a unix socket path a live server holds).
  uWSGI adopts an inherited descriptor given as ``fd://N``; unix socket files are removed by the
  launcher, not by uWSGI's ``--vacuum``.
* Errors.  An app that raises before its body starts gets no answer at all from uWSGI (it closes
  the connection), and uWSGI's ``start_response`` fails when given ``exc_info``.  The entry file
  hands the status and headers to uWSGI only with the first body byte (PEP 3333 allows the delay),
  so until then it can still answer 500 (logged with the traceback); after it, the connection is
  reset (SO_LINGER 0), so the client sees a broken response, never a short one that looks complete
  (a FIN would complete a close-delimited HTTP/1.0 body).
* Keep-alive.  The plain ``--http-socket`` closes every connection after one response (every wrk
  request here ended in a read error), so HTTP/1.1 keep-alive (``--http11-socket``) is the default.
  Its HTTP/1.1 is incomplete, and the entry file completes it for each request: a response without
  Content-Length is sent chunked to HTTP/1.1 clients (uWSGI would keep the connection open with no
  way to find the end: the client waited for the socket timeout, 4 s), a one-chunk list gets a
  Content-Length instead, a HEAD response loses the body uWSGI would send,
  a chunked request body is read by the entry file (uWSGI gives the app an empty body and would
  parse the rest as the next request; an unread rest is drained, up to 1 MiB, or the connection is
  shut down; so is a connection whose body was broken, 400, or too large, 413, or that had bytes
  after the body's end, since uWSGI cannot be handed them back).  CL together with
  Transfer-Encoding, or a coding other than chunked, is refused with 400.
  On SIGTERM, idle keep-alive connections are closed (see :class:`StopWatch`).
* Pipelining.  uWSGI's HTTP/1.1 socket drops requests pipelined behind another: when bytes remain
  after a request, ``uwsgi_proto_http11_close()`` (proto/http.c) closes the connection ("close the
  connection on errors, incomplete parsing, HTTP/1.0, pipelined or offloaded requests"); no option
  changes it, and the HTTP router (``--http``) is no better (``--http-keepalive``: "HTTP 1.1
  keepalive support (non-pipelined) requests").  So after a request without a body, the entry
  file looks at uWSGI's count of those bytes (``proto_parser_remains``, read in place: no system
  call on the way of every request) and, when there are any, takes them and serves them itself
  once uWSGI has sent the first response (:func:`serve_pipelined`: each head checked from its raw
  bytes by the launcher's rules, so a pipelined head gets the strict checks uWSGI's own cannot).
  Not after a request carrying a field an underscore look-alike could have made (Content-Type,
  X-Forwarded-For...: environ cannot tell) nor after a chunked or Content-Length body: the
  connection is then closed as uWSGI does.  Those pipelined requests run inside the first one for
  uWSGI (one request for --timeout/harakiri and --max-requests, no ``wsgi.file_wrapper``).
* Proxy headers.  uWSGI sets ``wsgi.url_scheme`` from X-Forwarded-Proto and X-Forwarded-Ssl sent
  by any client (measured): the entry file resets it to ``http`` on HTTP sockets, and on uwsgi
  sockets derives it only from the front server's own variables (HTTPS, REQUEST_SCHEME,
  UWSGI_SCHEME); --proxy-headers then applies the launcher's peer-checked rules.  On a unix socket
  uWSGI reports the peer as REMOTE_ADDR 0.0.0.0, which --forwarded-allow-ips would take for an IP
  address: it is emptied, so ``unix`` in the allow-list matches as with other backends.  uWSGI also folds
  ``X_Forwarded_For`` into HTTP_X_FORWARDED_FOR (merged with the real header): with
  --proxy-headers, make sure the proxy in front drops header names with underscores (nginx does).
* Readiness.  The launcher's socket accepts connections before any worker has imported the app, so
  a connect proves nothing: the launcher waits until every worker has marked itself loaded, then
  sends one real request carrying a random token (``X-Launcher-Probe``) that the entry file answers
  with 204 without calling the app, the access log or the middleware; only then the startup line
  and the ready file.  uWSGI's own start-up output is held back (shown with --log-level debug, or in
  the error when it fails).
* Logs.  uWSGI prints its own lines ("graceful shutdown triggered...", "goodbye to uWSGI.") and
  a Python traceback line by line, which breaks --log-format json and a text --access-log-format.
  Its stdout and stderr are one pipe the launcher reads (:class:`ProgramOutput`): every line of
  uWSGI's own becomes a launcher record (JSON or the launcher's text line; a printed traceback is
  one record).  The launcher's code inside the workers configures the launcher's logging
  (--log-level, --log-format) and writes the access log and its records with a mark at the start
  of each line (:class:`MarkedStderr`, one ``write(2)`` per record): the launcher strips the mark
  and passes those lines on as they are, never wrapped twice.  An exception in the app is logged
  there with its traceback, one record, as for other backends.  The reader is a daemon thread
  that reads to the end of the pipe once uWSGI exited (no line lost, no exit held up).
* --health-path.  The launcher writes a file into the run's status directory on SIGTERM/SIGINT,
  before it signals uWSGI; a thread in each worker (:class:`StopWatch`) sees it within 50 ms and
  sets the ``draining`` flag: /healthz answers 503 from then on.  (uWSGI has no Python hook when a
  worker's graceful stop begins: its SIGHUP handler is C code, ``uwsgi.atexit`` runs at the end.)
* nginx's ``uwsgi_modifier1 30`` (the Flask guide's uwsgi_pass configuration, which sends
  SCRIPT_NAME=/yourapplication with the full path in PATH_INFO) is ignored by this uWSGI: PATH_INFO
  keeps the prefix.  Run with ``--root-path /yourapplication``: the launcher's RootPath keeps
  SCRIPT_NAME and strips the prefix from PATH_INFO (checked with hand-built packets).
* pyuwsgi sets ``sys.executable`` to the base interpreter (/usr/bin/python3.11), so an app starting
  ``sys.executable`` (multiprocessing, subprocess) would lose the virtualenv: the entry file
  restores the launcher's.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import re
import signal
import sys
import threading
import time

from backends.base import Backend
from launcher.errors import AppImportError, OptionError, ServerError
from launcher.hygiene import _CTL_BUT_TAB_RE, _HOST_RE, Rejection, check_line
from launcher.log import logger
from launcher.options import closest
from launcher.sockets import Listener

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, ClassVar

    from backends.base import Ready, WSGIApp
    from launcher.options import Bind, ServeOptions

#: The probe header a server's entry file answers with 204 when it carries the run's token.
PROBE_HEADER = "X-Launcher-Probe"
PROBE_ENVIRON = "HTTP_X_LAUNCHER_PROBE"
#: Seconds given to a program to answer before the start is called failed (-o ready_timeout).
READY_TIMEOUT = 60.0
#: Lines of a program's output kept for error messages.
OUTPUT_TAIL = 200
#: Seconds between two looks of a server process for the launcher's stop (:class:`StopWatch`).
STOP_POLL = 0.05
#: A chunked request body the app left unread is drained up to this much before the connection is
#: shut down instead (so a keep-alive connection never parses body bytes as a request).
DRAIN_LIMIT = 1 << 20
#: Seconds a chunked body may pause when no --header-timeout / --keepalive says otherwise (uWSGI's
#: own default socket timeout).
BODY_TIMEOUT = 4.0


# =========================================================================== shared: a server that
# runs as its own program (also the base of backends/mod_wsgi.py)


class AnnouncedListener(Listener):
    """A listener whose address is fixed when it is made, so the startup line and the ready file
    can name a socket the launcher no longer holds (mod_wsgi: Apache binds the port itself)."""

    __slots__ = ("_fixed",)

    def __init__(self, listener: Listener, address: Bind | None = None) -> None:
        super().__init__(listener.bind, listener.sock, listener.inode)
        self._fixed = address if address is not None else listener.address

    @property
    def address(self) -> Bind:
        return self._fixed

    @property
    def is_unix(self) -> bool:
        return self._fixed.kind == "unix"

    def url(self, scheme: str = "http") -> str:
        return self._fixed.url(scheme)


class ProgramOutput:
    """Reads a program's merged stdout/stderr through a pipe, line by line.

    A line marked with :data:`LINE_MARK` was written by the launcher's own code inside the program
    (the access log, the launcher's records from the entry file): it is finished, JSON or the
    user's format already, and goes to stderr as it is, always.  Every other line is the server's
    own output: held back (last lines kept) until :meth:`go_live`, then relayed as a launcher
    record (:class:`Relay`), so ``--log-format json`` gives JSON lines and text mode the
    launcher's text lines.  The reader is a daemon thread: it never holds the exit, and
    :meth:`join` after the program exited reads to the end of the pipe, so no line is lost.
    """

    def __init__(self, stream: Any, live: bool = False) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        self._live = live
        self._lock = threading.Lock()
        self._relay = Relay()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="program-output", daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        import select

        fd = stream.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buffer = b""
        try:
            while True:
                # A traceback being gathered is sent on once the program pauses.
                timeout = int(RELAY_PAUSE * 1000) if self._relay.pending else None
                try:
                    readable = poller.poll(timeout)
                except InterruptedError:
                    continue
                if not readable:
                    self._relay.flush()
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for raw in lines:
                    self._line(raw.decode("utf-8", "replace").rstrip("\r"))
            if buffer:
                self._line(buffer.decode("utf-8", "replace").rstrip("\r"))
        except (OSError, ValueError):
            pass
        finally:
            self._relay.flush()
            stream.close()

    def _line(self, line: str) -> None:
        if line.startswith(LINE_MARK):
            self._relay.flush()  # keep the order
            _write_stderr(line[len(LINE_MARK):] + "\n")
            return
        with self._lock:
            self.lines.append(line)
            live = self._live
        if live:
            self._relay.feed(line)

    def go_live(self) -> None:
        with self._lock:
            self._live = True

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def tail(self, count: int = 20) -> list[str]:
        with self._lock:
            return [line for line in list(self.lines)[-count:] if line.strip()]


#: Marks a line the launcher's code wrote inside the server program (see :class:`MarkedStderr`).
LINE_MARK = "\x1e"
#: Seconds of silence after which a traceback being gathered by :class:`Relay` is sent on.
RELAY_PAUSE = 0.2

_APACHE_LINE = re.compile(
    r"^\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [^\]]*\] \[(?P<module>[\w.-]*):(?P<level>\w+)\] "
    r"(?P<ids>(?:\[(?:pid|client|remote) [^\]]*\] )*)(?P<body>.*)$"
)
_UWSGI_TIME = re.compile(r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} - ")
_APACHE_LEVELS = {"emerg": logging.CRITICAL, "alert": logging.CRITICAL, "crit": logging.CRITICAL,
                  "error": logging.ERROR, "warn": logging.WARNING, "notice": logging.INFO, "info": logging.INFO}
_ERROR_WORDS = re.compile(r"\b(?:error|fatal|segmentation fault|exception|damn)\b", re.IGNORECASE)
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


class Relay:
    """The server program's own lines as launcher records (``logger``), one record per line, a
    Python traceback the program printed gathered into one record.

    Apache's lines ``[date] [module:level] [pid N:tid M] message`` keep everything but the date
    (the record has its own time) and take the level Apache gave them; uWSGI's lines lose their
    leading date, and are errors when they say so (``!!!``, "error"...), warnings when they say
    "warning", notices otherwise.
    """

    def __init__(self) -> None:
        #: the traceback being gathered: its lines (without their prefix), its prefix
        self.pending: list[str] = []
        self.prefix = ""
        self.ended = False  # its last line (the exception) arrived: a chained one may follow

    def feed(self, line: str) -> None:
        prefix, level, body = self.parse(line)
        if self.pending:
            if prefix == self.prefix and self._belongs(body):
                self.pending.append(body)
                return
            self.flush()
        if body.startswith(_TRACEBACK):
            self.pending, self.prefix, self.ended = [body], prefix, False
            return
        if body.strip():
            logger.log(level, "%s", prefix + body)

    def _belongs(self, body: str) -> bool:
        """Whether ``body`` (from the same process and thread) goes on the traceback gathered."""
        text = body.strip()
        if not self.ended:
            if text and not body[0].isspace() and text != _TRACEBACK and not body.startswith(_CHAINED):
                self.ended = True  # the exception line: the traceback's last line
            return True
        if not text:
            return True  # maybe the blank line before a chained traceback
        if body.startswith(_CHAINED):
            self.ended = False
            return True
        return False

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        while lines and not lines[-1].strip():
            lines.pop()
        logger.error("%s", self.prefix + "\n".join(lines))

    @staticmethod
    def parse(line: str) -> tuple[str, int, str]:
        """(prefix kept in the message, level, the rest) of one line of the program's output."""
        match = _APACHE_LINE.match(line)
        if match is not None:
            level = _APACHE_LEVELS.get(match["level"], logging.DEBUG)
            return f"[{match['module']}:{match['level']}] {match['ids']}", level, match["body"]
        body = _UWSGI_TIME.sub("", line, count=1)
        text = body.strip()
        if text.startswith("!!!") or _ERROR_WORDS.search(text):
            return "", logging.ERROR, body
        if "warning" in text.lower():
            return "", logging.WARNING, body
        return "", logging.INFO, body


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class ProgramBackend(Backend):
    """A backend that runs the server as a separate program (uWSGI, Apache) in its own process
    group: the launcher binds (or checks) the sockets, writes an entry file that imports the app
    through the launcher's importer, starts the program, announces once it answers, forwards the
    stop as the program's graceful signal and enforces --graceful-timeout."""

    native_workers = True
    drains_itself = True
    load_in_workers = True
    #: the program's name in messages
    program: ClassVar[str] = ""
    #: signal that makes the program drain and exit 0
    graceful_signal: ClassVar[int] = signal.SIGTERM
    #: signal the program gets when the launcher dies (PR_SET_PDEATHSIG)
    death_signal: ClassVar[int] = signal.SIGKILL

    def __init__(self) -> None:
        super().__init__()
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: ProgramOutput | None = None
        self._workdir = ""
        self._status_dir = ""
        self._killed = False

    def check(self, opts: ServeOptions) -> None:
        super().check(opts)
        if not isinstance(opts.app, str):
            raise OptionError(
                f"backend '{self.name}' runs the app in its own server processes, which cannot receive"
                " a Python object: give the app as an import string, e.g. launch('myproject.wsgi:app', ...)"
            )

    # ------------------------------------------------------------------ files the program reads

    def make_workdir(self, mode: int = 0o700) -> str:
        import tempfile

        _sweep_workdirs(tempfile.gettempdir(), self.name)
        # The pid in the name lets the next start remove it should this process be killed.
        self._workdir = tempfile.mkdtemp(prefix=f"serve-{self.name}-{os.getpid()}-")
        os.chmod(self._workdir, mode)
        self._status_dir = os.path.join(self._workdir, "status")
        os.mkdir(self._status_dir, 0o700)
        return self._workdir

    def remove_workdir(self) -> None:
        if self._workdir:
            import shutil

            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = ""

    def write_entry(self, opts: ServeOptions, mode: str, token: str, filename: str = "entry.py") -> str:
        """Write the JSON config and the entry file the program imports; return the entry path."""
        import json

        config = {
            "app": opts.app,
            "options": {name: _jsonable(getattr(opts, name)) for name in sorted(opts.explicit)},
            "cwd": os.getcwd(),
            "pythonpath": [os.path.abspath(p) for p in opts.pythonpath],
            "mode": mode,
            "token": token,
            "status_dir": self._status_dir,
            "executable": sys.executable,
        }
        config_path = os.path.join(self._workdir, "config.json")
        with open(config_path, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        entry = os.path.join(self._workdir, filename)
        with open(entry, "w", encoding="utf-8") as fh:
            fh.write(
                f"# Written by wsgi-launcher: {self.program} imports this in each of its processes.\n"
                "import sys\n"
                f"if {root!r} not in sys.path:\n"
                f"    sys.path.append({root!r})\n"
                "from backends.uwsgi import child_app\n"
                f"application = child_app({config_path!r})\n"
            )
        for path in (config_path, entry):
            os.chmod(path, 0o644)
        return entry

    # ------------------------------------------------------------------ running the program

    def spawn(self, argv: list[str], *, pass_fds: tuple[int, ...] = (), opts: ServeOptions) -> subprocess.Popen[bytes]:
        import subprocess

        setup = _child_setup(self.death_signal)
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=pass_fds, preexec_fn=setup, env=_child_env(),
            )
        except OSError as exc:
            raise ServerError(f"cannot start {self.program} ({argv[0]}): {exc.strerror or exc}") from None
        self._proc = proc
        self._killed = False
        self._output = ProgramOutput(proc.stdout, live=opts.log_level == "debug")
        if self._stopping.is_set():  # a stop arrived while it was being started
            self._signal(self.graceful_signal)
        return proc

    def wait_ready(self, probe: Callable[[], bool], workers: int, timeout: float) -> bool:
        """Wait until every worker loaded the app and ``probe()`` got the entry file's answer.

        Returns False when a stop arrived first; raises when the program failed or the app did not
        import (the program is then killed).
        """
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        while True:
            failure = self._read_failure()
            if failure is not None:
                self.kill()
                raise failure
            code = proc.poll()
            if code is not None:
                if self._stopping.is_set():
                    return False
                raise self.early_exit(code)
            if self._stopping.is_set():
                return False
            if self._loaded() >= workers and probe():
                return True
            if time.monotonic() >= deadline:
                self.kill()
                raise ServerError(
                    f"{self.program} did not answer within {timeout:g}s (-o ready_timeout=SECONDS waits longer)"
                    f"{self._last_words()}"
                )
            time.sleep(0.03)

    def early_exit(self, code: int) -> ServerError:
        """The error for a program that exited before it was ready (its last output line attached)."""
        if self._output is not None:
            self._output.join(1.0)
        how = f"with code {code}" if code >= 0 else f"on signal {signal.Signals(-code).name}"
        return ServerError(f"{self.program} exited {how} before it was ready{self._last_words()}")

    def _last_words(self) -> str:
        lines = self._output.tail(8) if self._output is not None else []
        meaningful = [line.strip() for line in lines if not _boilerplate(line)]
        if not meaningful:
            return " (no output; run with --log-level debug to see everything it prints)"
        return f": {meaningful[-1]} (run with --log-level debug to see everything it prints)"

    def _loaded(self) -> int:
        try:
            return sum(1 for name in os.listdir(self._status_dir) if name.startswith("loaded."))
        except OSError:
            return 0

    def _read_failure(self) -> AppImportError | None:
        import json

        path = os.path.join(self._status_dir, "error.json")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if data.get("traceback"):
            trace = str(data["traceback"]).rstrip("\n")
            from launcher.log import json_mode

            if json_mode():
                logger.error("%s", trace)  # one JSON record, as the CLI reports the rest
            else:
                _write_stderr(trace + "\n")  # as the CLI prints the user's traceback
        return AppImportError(str(data.get("message") or "the app failed to import"), str(data.get("part") or "spec"))

    def wait_exit(self) -> int:
        """Pass the program's output on, wait for it to exit, and judge the exit."""
        proc = self._proc
        assert proc is not None and self._output is not None
        self._output.go_live()
        code = proc.wait()
        self._output.join(2.0)
        if self._stopping.is_set():
            if not self._killed and code != 0:
                raise ServerError(f"{self.program} exited with code {code} while stopping{self._last_words()}")
            return code
        raise ServerError(f"{self.program} exited unexpectedly (code {code}){self._last_words()}")

    # ------------------------------------------------------------------ stopping

    def stop(self, timeout: float) -> None:
        """Called from the signal handler: ask the program to drain, enforce the deadline."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:  # the server processes' StopWatch: drain state, idle keep-alive connections closed
            with open(os.path.join(self._status_dir, "stopping"), "w"):
                pass
        except OSError:
            pass
        self._signal(self.graceful_signal)
        threading.Thread(target=self._enforce_deadline, args=(timeout,), name="launcher-deadline",
                         daemon=True).start()

    def _enforce_deadline(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is None or proc.returncode is not None or not _alive(proc.pid):
                return
            time.sleep(0.05)
        proc = self._proc
        if proc is not None and _alive(proc.pid):
            # The server processes' own counts of running requests (written while they drain).
            self.cut_off = max(self.cut_off, self._busy_requests() or 1)
            logger.warning("%s still busy after %gs: stopping it now", self.program, timeout)
            self.kill()

    def _busy_requests(self) -> int:
        """Requests the server processes still run, as their :class:`StopWatch` wrote them."""
        total = 0
        try:
            names = [name for name in os.listdir(self._status_dir) if name.startswith("busy.")]
        except OSError:
            return 0
        for name in names:
            try:
                with open(os.path.join(self._status_dir, name), encoding="ascii") as fh:
                    total += int(fh.read().strip() or 0)
            except (OSError, ValueError):
                continue
        return total

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Kill the program's whole process group at once."""
        proc = self._proc
        if proc is None:
            return
        self._killed = True
        for kill in (os.killpg, os.kill):  # the group, and the program itself should it have none
            try:
                kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(5)
        except Exception:  # a zombie we cannot reap is not worth a traceback
            pass


def _sweep_workdirs(base: str, name: str) -> None:
    """Remove the private directories of launchers that were killed before they could."""
    import re
    import shutil

    pattern = re.compile(rf"serve-{re.escape(name)}-(\d+)-\w+$")
    try:
        entries = os.listdir(base)
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry)
        if match is None or _alive(int(match.group(1))):
            continue
        path = os.path.join(base, entry)
        try:
            if os.lstat(path).st_uid == os.geteuid():
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reaped or not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def _child_setup(death_signal: int) -> Callable[[], None]:
    """A preexec function: a process group of its own, and death with the launcher."""
    import threading as _threading

    libc: Any = None
    if _threading.current_thread() is _threading.main_thread():
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only safe from the main thread.
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            libc = None

    def setup() -> None:
        os.setpgid(0, 0)
        if libc is not None:
            libc.prctl(1, death_signal, 0, 0, 0)  # PR_SET_PDEATHSIG

    return setup


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Not the program's to adopt: uWSGI would take systemd's sockets as its own.
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(key, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _jsonable(value: Any) -> Any:
    from launcher.options import Bind

    if isinstance(value, Bind):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


_BOILERPLATE = ("***", "WARNING: you are running uWSGI as root", "uWSGI running as root", "getopt_long() error")


def _boilerplate(line: str) -> bool:
    text = line.strip()
    return not text or any(text.startswith(prefix) for prefix in _BOILERPLATE)


def probe_address(listener: Listener) -> tuple[int, Any]:
    """(family, sockaddr) to reach ``listener`` from this host: a wildcard host means loopback."""
    import socket

    address = listener.address
    if address.kind == "unix":
        return socket.AF_UNIX, address.path
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address.host, address.host)
    if ":" in host:
        return socket.AF_INET6, (host, address.port, 0, 0)
    return socket.AF_INET, (host, address.port)


def probe_http(target: tuple[int, Any], token: str, timeout: float = 2.0) -> bool:
    """One HTTP/1.0 request with the probe header: True when the entry file answered 204."""
    request = f"GET / HTTP/1.0\r\nHost: localhost\r\n{PROBE_HEADER}: {token}\r\n\r\n".encode("ascii")
    return _round_trip(target, request, timeout)


def uwsgi_packet(variables: dict[str, str], modifier1: int = 0, modifier2: int = 0) -> bytes:
    """A uwsgi-protocol request: a 4-byte header (modifier1, little-endian u16 size, modifier2) then
    each key and value preceded by its little-endian u16 length."""
    import struct

    body = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
        for k, v in ((key.encode("latin-1"), value.encode("latin-1")) for key, value in variables.items())
    )
    return struct.pack("<BHB", modifier1, len(body), modifier2) + body


def probe_uwsgi(target: tuple[int, Any], token: str, timeout: float = 2.0) -> bool:
    """One uwsgi-protocol request with the probe variable: True when the entry file answered 204."""
    packet = uwsgi_packet({
        "REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/", "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.0", "SERVER_NAME": "localhost", "SERVER_PORT": "0",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost", PROBE_ENVIRON: token,
    })
    return _round_trip(target, packet, timeout)


def _round_trip(target: tuple[int, Any], request: bytes, timeout: float) -> bool:
    import socket

    family, sockaddr = target
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            sock.sendall(request)
            data = b""
            while b"\r\n" not in data and len(data) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    status_line = data.partition(b"\r\n")[0].split()
    return len(status_line) >= 2 and status_line[0].startswith(b"HTTP/") and status_line[1] == b"204"


# =========================================================================== in the server processes


def child_app(config_path: str) -> WSGIApp:
    """Import the app in a server process exactly as the launcher would, wrapped for that server.

    Called by the generated entry file.  On failure the importer's message goes to the status
    directory for the launcher to report, and the exception propagates (uWSGI's --need-app then
    stops the whole server).
    """
    import json

    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    status_dir = config["status_dir"]
    if config["mode"] != "mod_wsgi" and config.get("executable"):
        # pyuwsgi reports the base interpreter (/usr/bin/python3.11), not the virtualenv's, so an
        # app starting `sys.executable` (multiprocessing, subprocess) would lose its packages.
        sys.executable = config["executable"]
    try:
        for path in reversed(config["pythonpath"]):
            if path not in sys.path:
                sys.path.insert(0, path)
        from launcher import importer, middleware
        from launcher.options import resolve

        opts = resolve(config["app"], cli=config["options"], env={}, use_file=False)
        marked = worker_logging(opts.log_level, opts.log_format)
        app = middleware.wrap(importer.import_app(config["app"], cwd=config["cwd"]), opts)
        _access_log_to(app, marked)
    except AppImportError as exc:
        _report_failure(status_dir, str(exc), exc.part, exc.__cause__)
        raise
    except Exception as exc:
        _report_failure(status_dir, f"{type(exc).__name__}: {exc}", "spec", None)
        raise
    from launcher.hygiene import Limits

    adapted = Adapter(app, config["token"], config["mode"], opts.limit_request_body, Limits.from_options(opts),
                      threads=opts.threads, body_timeout=_body_timeout(opts), head_timeout=opts.header_timeout)
    head_timeout = opts.header_timeout if config["mode"] != "mod_wsgi" else 0.0  # Apache has its own
    adapted.connections = StopWatch(status_dir, keepalive=config["mode"] == "http11", head_timeout=head_timeout).start()
    try:
        with open(os.path.join(status_dir, f"loaded.{os.getpid()}"), "w"):
            pass
    except OSError:
        pass
    return adapted


def _report_failure(status_dir: str, message: str, part: str, cause: BaseException | None) -> None:
    import json

    trace = ""
    if part == "user-import" and cause is not None:
        import traceback

        trace = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    tmp = os.path.join(status_dir, f"error.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"message": message, "part": part, "traceback": trace}, fh)
        os.replace(tmp, os.path.join(status_dir, "error.json"))
    except OSError:
        pass


class MarkedStderr:
    """A text stream onto file descriptor 2 of a server process, each line marked with
    :data:`LINE_MARK`, so the launcher passes it on as it is (:class:`ProgramOutput`).

    fd 2 is the pipe the launcher reads in every process of the program: uWSGI's workers write
    there, and so does Apache (``--log-to-terminal``), whose mod_wsgi daemon processes have it too
    (their ``sys.stderr`` is mod_wsgi's error log instead, one prefixed entry per line).  A write
    of a whole record is one ``write(2)``: up to PIPE_BUF bytes, lines of several processes never
    mix.
    """

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self.lock:
            marked = []
            *complete, rest = text.split("\n")  # lines end at "\n" only, as the launcher reads them
            for line in complete:
                marked.append(f"{LINE_MARK if self.at_line_start else ''}{line}\n")
                self.at_line_start = True
            if rest:
                marked.append(f"{LINE_MARK if self.at_line_start else ''}{rest}")
                self.at_line_start = False
            data = "".join(marked).encode("utf-8", "backslashreplace")
            while data:
                try:
                    written = os.write(self.fd, data)
                except InterruptedError:
                    continue
                data = data[written:]
        return len(text)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def worker_logging(level: str, fmt: str) -> MarkedStderr:
    """The launcher's logging in a server process, as in the launcher (``--log-level``,
    ``--log-format``), its lines marked to pass the launcher unchanged; returns the stream."""
    from launcher import log

    log.configure(level, fmt)
    stream = MarkedStderr()
    for handler in log.logger.handlers:
        if getattr(handler, "_launcher", False) and isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    if fmt == "json":
        # Warnings and errors libraries log without a handler: JSON records too (configure() made
        # logging's fallback write them to sys.stderr, which mod_wsgi would prefix).
        fallback = logging.StreamHandler(stream)
        fallback.setLevel(logging.WARNING)
        fallback.setFormatter(log.JSONFormatter())
        logging.lastResort = fallback
    return stream


def _access_log_to(app: Any, stream: Any) -> None:
    """Give the launcher's access log (in the middleware chain of ``app``) ``stream``."""
    from launcher.middleware import AccessLog

    node = app
    for _ in range(16):
        if isinstance(node, AccessLog):
            node.stream = stream
        node = getattr(node, "app", None)
        if node is None:
            break


class Adapter:
    """The outermost layer in a server process: the readiness probe, and what the server's own
    HTTP handling lacks (``mode``: "http11", "http", "uwsgi" or "mod_wsgi")."""

    def __init__(self, app: WSGIApp, token: str, mode: str, limit: int = 0, limits: Any = None, *,
                 threads: int = 1, body_timeout: float = BODY_TIMEOUT, head_timeout: float = 0.0) -> None:
        self.app = app
        #: --header-timeout, for the heads of pipelined requests (see :func:`serve_pipelined`)
        self.head_timeout = head_timeout
        #: uWSGI's threads per process (which request pointer :class:`RawStream` asks uWSGI for)
        self.threads = threads
        #: seconds a chunked request body may pause
        self.body_timeout = body_timeout
        #: --limit-request-line / -fields / -field-size (launcher.hygiene.Limits), checked on environ
        self.limits = limits
        self.token = token.encode("ascii")
        self.mode = mode
        #: --limit-request-body (0: none)
        self.limit = limit
        self.connections: StopWatch | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = environ.get(PROBE_ENVIRON)
        if probe is not None:
            import hmac

            if hmac.compare_digest(str(probe).encode("latin-1", "replace"), self.token):
                start_response("204 No Content", [])
                return []
        watch = self.connections
        if watch is None:
            return self._call(environ, start_response)
        watch.begin()
        watch.count(1)
        try:
            result = self._call(environ, start_response)
        except BaseException:
            watch.count(-1)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if (isinstance(result, (list, tuple)) and getattr(result, "close", None) is None) or (
                isinstance(wrapper, type) and isinstance(result, wrapper)):
            # The app is done, only sending is left (and the server's own file wrapper must reach it
            # as it is, or it would not send the file with sendfile()).
            watch.count(-1)
            return result
        return _Counted(result, watch)

    def _call(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.mode == "mod_wsgi":  # Apache's HTTP handling needs nothing more
            return _mod_wsgi_call(self.app, environ, start_response)
        return _Exchange(self.app, environ, start_response, self.mode, self.limit, self.limits,
                         self.threads, self.body_timeout, self).run()


class _Counted:
    """A response counted as running (for the cut-off count) until the server closes it."""

    def __init__(self, result: Iterable[bytes], watch: StopWatch) -> None:
        self.result = result
        self.watch = watch

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.watch.count(-1)


#: Set by the backend's Apache configuration (mod_setenvif) when a header name with "_" poses as a
#: standard or forwarded header: mod_wsgi leaves such names out of environ, so the app cannot see them.
MOD_WSGI_BAD_HEADER = "LAUNCHER_BAD_HEADER"


#: An environ key uWSGI made of a header name that was a token (upper-cased, '-' turned into '_').
_FIELD_KEY_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Z]+\Z")


def environ_refusal(environ: dict[str, Any], limits: Any = None, *, fields: bool = False) -> Any:
    """What the request head can still be refused for once the server has parsed it into ``environ``
    (the launcher's rules, launcher/hygiene.py, as far as environ shows them), or None.

    The request line (method, REQUEST_URI as the target, version), Content-Length digits only,
    Transfer-Encoding not in HTTP/1.0, one plausible Host in HTTP/1.1; with ``fields`` the field
    count and sizes of ``limits`` too (counted from the HTTP_* keys).
    """
    version = str(environ.get("SERVER_PROTOCOL", ""))
    target = environ.get("REQUEST_URI")
    if target is None:
        target = _request_target(environ) or "/"
    rejection = check_line(str(environ.get("REQUEST_METHOD", "")), str(target), version, limits)
    if rejection is not None:
        return rejection
    length = environ.get("CONTENT_LENGTH")
    if length not in (None, "") and not (str(length).isdigit() and str(length).isascii()):
        return Rejection(400, "invalid Content-Length")
    if environ.get("HTTP_TRANSFER_ENCODING") is not None and version == "HTTP/1.0":
        return Rejection(400, "Transfer-Encoding in an HTTP/1.0 request")
    host = environ.get("HTTP_HOST")
    if host is None:
        if version == "HTTP/1.1":
            return Rejection(400, "HTTP/1.1 request without Host")
    elif _HOST_RE.match(str(host)) is None or "," in str(host):
        return Rejection(400, "invalid Host (or more than one)")
    if environ.get(MOD_WSGI_BAD_HEADER):
        return Rejection(400, "a header name with '_' poses as a standard header")
    if fields:
        # The fields as uWSGI made them keys: HTTP_ + the name upper-cased, '-' as '_' (a name that
        # was no token keeps its space or colon), and the value as it came (control bytes kept).
        max_fields = limits.fields if limits is not None else 0
        max_size = limits.field_size if limits is not None else 0
        count = 0
        for key, value in environ.items():
            if key.startswith("HTTP_") or key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                count += 1
                text = str(value)
                if max_size and len(key) + len(text) - (5 if key[0] == "H" else 0) + 2 > max_size:
                    return Rejection(431, f"header field longer than {max_size} bytes")
                if _FIELD_KEY_RE.match(key) is None:
                    return Rejection(400, f"invalid header name {key[5:45]!r}")
                if _CTL_BUT_TAB_RE.search(text) is not None:
                    return Rejection(400, f"control character in header {key[5:45]!r} (or a bare CR or LF)")
        if max_fields and count > max_fields:
            return Rejection(431, f"more than {max_fields} header fields")
    return None


def refusal_parts(rejection: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    """The answer to a refused request (Connection: close) and a log line."""
    from launcher.hygiene import error_parts

    logger.debug("refused: %s", rejection.reason)
    return error_parts(rejection)


def _mod_wsgi_call(app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Call the app under mod_wsgi: an exception before the response started is logged here, as one
    launcher record (mod_wsgi would log its traceback line by line), and answered 500.

    A request head Apache took although the launcher's rules refuse it (see :func:`environ_refusal`)
    is answered 400 with Connection: close, which makes Apache close the connection: nothing sent
    behind it is read as another request.  Every chunked request, once answered, is closed too: a
    second guard behind the launcher's Apache module (backends/apache), which already refuses a
    chunk line that is not strict (chunk size '5 ') before Apache's own reader takes it."""
    rejection = environ_refusal(environ, None)
    if rejection is not None:
        status, headers, body = refusal_parts(rejection)
        start_response(status, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
    if environ.get("HTTP_TRANSFER_ENCODING") is not None:
        start_response = _closing_start_response(start_response)
    try:
        result: Iterable[bytes] = app(environ, start_response)
    except Exception:
        exc_info = sys.exc_info()
        logger.exception("error in the app for %s %s", environ.get("REQUEST_METHOD"), _request_target(environ))
        try:
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(_ERROR_BODY)))], exc_info)
        except Exception:  # the response had started (write()): mod_wsgi breaks the connection
            raise exc_info[1].with_traceback(exc_info[2]) from None  # type: ignore[union-attr]
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [_ERROR_BODY]
    return result


def _closing_start_response(start_response: Callable[..., Any]) -> Callable[..., Any]:
    """``start_response`` adding Connection: close (Apache then closes after the response)."""

    def closing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers = [(name, value) for name, value in headers if name.lower() != "connection"]
        return start_response(status, [*headers, ("Connection", "close")], exc_info)

    return closing


def _request_target(environ: dict[str, Any]) -> str:
    uri = environ.get("REQUEST_URI")
    if uri:
        return str(uri)
    query = environ.get("QUERY_STRING")
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    return f"{path}?{query}" if query else path


def _plain_inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def _make_fd_inode() -> Callable[[int], int]:
    """``os.fstat(fd).st_ino``, but without letting go of the GIL: ``os.fstat`` releases it, and
    with uWSGI's threads waiting for it, taking it back cost ~5 us of every request (begin() below
    ran ~10 us; ~5 us this way, +10% throughput measured).  libc's ``fstat`` through ctypes.PyDLL
    into a per-thread buffer; the offset of ``st_ino`` is checked against ``os.fstat`` on two
    descriptors first, and any mismatch (another libc, no ``fstat`` symbol) keeps ``os.fstat``."""
    import ctypes

    plain = _plain_inode
    try:
        fstat = ctypes.PyDLL(None).fstat
        fstat.argtypes = [ctypes.c_int, ctypes.c_void_p]
        fstat.restype = ctypes.c_int
    except (AttributeError, OSError):
        return plain
    local = threading.local()

    def buffer() -> Any:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = ctypes.create_string_buffer(512)  # struct stat is 144 bytes on x86_64
        return buf

    def fast(fd: int) -> int:
        buf = buffer()
        if fstat(fd, buf) != 0:
            return plain(fd)  # raises the OSError
        return ctypes.c_uint64.from_buffer(buf, 8).value  # st_ino follows st_dev (8 bytes)

    read_fd, write_fd = os.pipe()
    null_fd = os.open(os.devnull, os.O_RDONLY)
    try:
        if all(fast(fd) == os.fstat(fd).st_ino for fd in (read_fd, null_fd)):
            return fast
    except Exception:
        pass
    finally:
        for fd in (read_fd, write_fd, null_fd):
            os.close(fd)
    return plain


class StopWatch:
    """In each server process: notices the launcher's stop (a file in the status directory), sets
    the launcher's ``draining`` flag (--health-path then answers 503), and on uWSGI HTTP/1.1 sockets
    closes the keep-alive connections that wait idle for another request.

    uWSGI's graceful stop waits for every worker thread, and a thread holding an idle keep-alive
    connection waits for the next request until the socket timeout (--keepalive): the drain took
    --keepalive seconds with one idle client, and past --graceful-timeout it would count as cut off.
    So each thread's connection is recorded when a request begins and marked idle by uWSGI's
    ``after_req_hook``; on stop the idle ones are shut down, the busy ones right after their response.
    The same records tell the :class:`HeadTimer` (--header-timeout) which connections wait for a head.
    """

    def __init__(self, status_dir: str, *, keepalive: bool, head_timeout: float = 0.0) -> None:
        self.path = os.path.join(status_dir, "stopping")
        self.keepalive = keepalive
        self.head_timeout = head_timeout
        #: connections are recorded (keep-alive connections to close on stop, or the head timer's)
        self.track = keepalive or head_timeout > 0
        #: os.fstat(fd).st_ino, GIL kept (only needed when connections are tracked)
        self.fd_inode: Callable[[int], int] = _make_fd_inode() if self.track else _plain_inode
        self.lock = threading.Lock()
        self.stopping = False
        #: thread ident -> [fd, socket inode, busy, requests begun on that connection]
        self.connections: dict[int, list[int]] = {}
        self.previous_hook: Any = None
        #: requests running in this process (written to busy.PID while draining, for the cut-off count)
        self.running = 0
        self.busy_path = os.path.join(status_dir, f"busy.{os.getpid()}")

    def count(self, delta: int) -> None:
        with self.lock:
            self.running += delta

    def start(self) -> StopWatch:
        if self.track:
            import uwsgi

            self.previous_hook = getattr(uwsgi, "after_req_hook", None)
            uwsgi.after_req_hook = self.after_request
        threading.Thread(target=self._watch, name="launcher-stopwatch", daemon=True).start()
        if self.head_timeout > 0:
            HeadTimer(self, self.head_timeout).start()
        return self

    def begin(self) -> None:
        if not self.track:
            return
        try:
            import uwsgi

            fd = uwsgi.connection_fd()
            inode = self.fd_inode(fd)
        except Exception:
            return
        ident = threading.get_ident()
        with self.lock:
            entry = self.connections.get(ident)
            begun = entry[3] + 1 if entry is not None and entry[1] == inode else 1
            self.connections[ident] = [fd, inode, 1, begun]

    def after_request(self) -> None:
        try:
            if self.previous_hook is not None:
                self.previous_hook()
        finally:
            with self.lock:
                entry = self.connections.get(threading.get_ident())
                if entry is not None:
                    entry[2] = 0
                stopping = self.stopping
            if stopping and entry is not None:
                _shutdown_fd(entry[0], entry[1])

    def _watch(self) -> None:
        while not os.path.exists(self.path):
            time.sleep(STOP_POLL)
        from launcher.drain import draining

        draining.set()
        with self.lock:
            self.stopping = True
            idle = [(fd, inode) for fd, inode, busy, _ in self.connections.values() if not busy]
        for fd, inode in idle:
            _shutdown_fd(fd, inode)
        written = -1
        while True:  # until the process ends: what the launcher counts if the deadline runs out
            running = self.running
            if running != written:
                try:
                    with open(self.busy_path + ".tmp", "w", encoding="ascii") as fh:
                        fh.write(str(running))
                    os.replace(self.busy_path + ".tmp", self.busy_path)
                    written = running
                except OSError:
                    return
            time.sleep(STOP_POLL)


class HeadTimer:
    """--header-timeout in a uWSGI process: a connection whose request head has not arrived whole
    within the timeout is shut down (uWSGI then reads the end and closes it).

    uWSGI 2.0 reads a head with one poll per read (``--socket-timeout``), so a head trickled a byte
    at a time never times out, and no Python code runs before the head is complete.  So a thread
    looks at the process's sockets every quarter second (``/proc/self/fd``): a client connection of
    one of the listening sockets (its local port, or unix path, is a listener's) that no request is running on
    is waiting for a head.  A new connection's head is due ``timeout`` seconds after it was first
    seen; on a kept-alive connection (a request already ended there) from the first byte of the next
    request (the kernel's ``tcpi_bytes_received`` grew): until then --keepalive governs it.  Unix
    socket connections have no such count: only their first head is timed.
    """

    def __init__(self, watch: StopWatch, timeout: float) -> None:
        self.watch = watch
        self.timeout = timeout
        self.every = min(0.25, timeout / 4)
        #: the listening sockets' (family, port), or unix path (:func:`_local_key`)
        self.listeners: set[Any] = set()
        #: inodes of sockets that are no client connection (listeners, uWSGI's pipes, the app's own)
        self.ignored: set[int] = set()
        #: inode -> [kind ("tcp"/"unix"), requests begun, head due since (None: not started), bytes seen]
        self.heads: dict[int, list[Any]] = {}

    def start(self) -> HeadTimer:
        for fd, _ in _sockets():
            sock = _socket_of(fd)
            if sock is None:
                continue
            try:
                if sock.getsockopt(_SOL_SOCKET, _SO_ACCEPTCONN):
                    self.listeners.add(_local_key(sock))
            except OSError:
                pass
            finally:
                sock.close()
        if self.listeners:
            threading.Thread(target=self._run, name="launcher-head-timer", daemon=True).start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            try:
                self.tick(time.monotonic())
            except Exception:  # never let the timer die of one odd socket
                logger.debug("head timer", exc_info=True)

    def tick(self, now: float) -> None:
        with self.watch.lock:
            states = {inode: (busy, begun) for _, inode, busy, begun in self.watch.connections.values()}
        alive: set[int] = set()
        for fd, inode in _sockets():
            alive.add(inode)
            if inode in self.ignored:
                continue
            busy, begun = states.get(inode, (0, 0))
            if busy:
                self.heads.pop(inode, None)
                continue
            head = self.heads.get(inode)
            if head is None or head[1] != begun:
                kind = head[0] if head is not None else self._classify(fd)
                if kind is None:
                    self.ignored.add(inode)
                    continue
                if begun:  # kept alive after a request: the next head starts with its first byte
                    head = [kind, begun, None, _bytes_received(fd) if kind == "tcp" else None]
                else:
                    head = [kind, begun, now, None]
                self.heads[inode] = head
            if head[2] is None:
                received = _bytes_received(fd) if head[0] == "tcp" else None
                if received is None or head[3] is None or received == head[3]:
                    continue
                head[2] = now
            if now - head[2] >= self.timeout:
                del self.heads[inode]
                logger.debug("closing a connection: no complete request head within %gs", self.timeout)
                _shutdown_fd(fd, inode)
        for inode in set(self.heads) - alive:
            del self.heads[inode]
        self.ignored &= alive

    def _classify(self, fd: int) -> str | None:
        """"tcp" or "unix" for a client connection of one of the listening sockets, else None."""
        import socket

        sock = _socket_of(fd)
        if sock is None:
            return None
        try:
            if sock.type != socket.SOCK_STREAM or sock.getsockopt(_SOL_SOCKET, _SO_ACCEPTCONN):
                return None
            if _local_key(sock) not in self.listeners:
                return None
            sock.getpeername()  # connected
            return "unix" if sock.family == socket.AF_UNIX else "tcp"
        except OSError:
            return None
        finally:
            sock.close()


_SOL_SOCKET = 1
_SO_ACCEPTCONN = 30
#: ``struct tcp_info``'s size and the offset of ``tcpi_bytes_received`` (Linux 4.1+)
_TCP_INFO_SIZE = 232
_BYTES_RECEIVED_AT = 128


def _local_key(sock: Any) -> Any:
    """What a listening socket and the connections it accepted share: (family, port) for TCP (a
    listener on 0.0.0.0 or :: has another local address than its connections), the path for unix."""
    name = sock.getsockname()
    return (sock.family, name[1]) if isinstance(name, tuple) else name


def _sockets() -> list[tuple[int, int]]:
    """(fd, inode) of every socket this process holds."""
    found = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.append((int(name), int(target[8:-1])))
    return found


def _socket_of(fd: int) -> Any:
    import socket

    try:
        return socket.socket(fileno=os.dup(fd))
    except OSError:
        return None


def _bytes_received(fd: int) -> int | None:
    """The bytes a TCP connection received so far (TCP_INFO), or None."""
    import socket
    import struct

    sock = _socket_of(fd)
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    finally:
        sock.close()
    if len(info) < _BYTES_RECEIVED_AT + 8:
        return None
    value: int = struct.unpack_from("<Q", info, _BYTES_RECEIVED_AT)[0]
    return value


def _shutdown_fd(fd: int, inode: int) -> None:
    """Shut down connection ``fd`` if it is still the socket ``inode`` (fd numbers are reused)."""
    import socket

    try:
        if os.fstat(fd).st_ino != inode:
            return
    except OSError:
        return
    _on_socket(fd, lambda sock: sock.shutdown(socket.SHUT_RDWR))


def _on_socket(fd: int, action: Callable[[Any], object]) -> None:
    """Run ``action`` on a socket object over a duplicate of descriptor ``fd``, closed after; an
    OSError (the connection is gone) ends it quietly."""
    import socket

    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        action(sock)
    except OSError:
        pass
    finally:
        sock.close()


def _front_scheme(environ: dict[str, Any]) -> str:
    """The scheme a front server (nginx uwsgi_params) states in its own variables, never a header."""
    if str(environ.get("HTTPS", "")).lower() in ("on", "1", "yes"):
        return "https"
    for key in ("REQUEST_SCHEME", "UWSGI_SCHEME"):
        value = str(environ.get(key, "")).lower()
        if value in ("http", "https"):
            return value
    return "http"


def _no_body(status: str) -> bool:
    code = status[:3]
    return code.startswith("1") or code in ("204", "304")


_ERROR_BODY = b"Internal Server Error\n"


class _Exchange:
    """One request on a uWSGI socket, completed where uWSGI falls short: a 500 for an app that
    fails before its body starts (uWSGI just closes the connection, and its ``start_response``
    cannot take ``exc_info``), and on HTTP sockets proper HTTP/1.1 framing (chunked bodies both
    ways, HEAD without a body).  The headers reach uWSGI only with the first body byte (or at the
    end), as PEP 3333 allows, so until then the response can still become a 500."""

    def __init__(self, app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any], mode: str,
                 limit: int = 0, limits: Any = None, threads: int = 1, body_timeout: float = BODY_TIMEOUT,
                 adapter: Adapter | None = None) -> None:
        self.app = app
        self.threads = threads
        self.body_timeout = body_timeout
        self.adapter = adapter
        self.mode = mode
        #: bytes of requests pipelined behind this one, taken from uWSGI (see :func:`serve_pipelined`)
        self.pipelined: bytes | None = None
        self.stream: RawStream | None = None
        #: this request's environ as uWSGI gave it (the pipelined requests' environ is made from it)
        self.template: dict[str, Any] | None = None
        #: the connection is being shut down after this response (nothing pipelined is served)
        self.closing = False
        self.limit = limit
        self.limits = limits
        self.environ = environ
        self.server_start_response = start_response
        self.http = mode != "uwsgi"
        # Chunked framing for an HTTP/1.1 client whatever the socket: the end of the body is then
        # explicit, so a client tells a complete response from one cut by an error.
        self.can_chunk = self.http and environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        self.head = self.http and environ.get("REQUEST_METHOD") == "HEAD"
        self.pending: tuple[str, list[tuple[str, str]]] | None = None
        self.server_write: Callable[[bytes], Any] | None = None
        self.chunked = False
        self.body_sent = False
        self.body_in: ChunkedInput | None = None

    @property
    def committed(self) -> bool:
        return self.server_write is not None

    def run(self) -> Iterable[bytes]:
        result = self._run()
        if self.template is not None:
            # Bytes past this request were (or may be) taken from uWSGI: served after this response,
            # or the connection is shut down.
            return _Pipelined(self, result)
        return result

    def _run(self) -> Iterable[bytes]:
        environ = self.environ
        if self.http:
            # uWSGI's HTTP parser takes almost any head: the launcher's rules, as far as environ shows them.
            rejection = environ_refusal(environ, self.limits, fields=True)
            if rejection is not None:
                status, _, body = refusal_parts(rejection)
                return self._refuse(status, b"" if environ.get("REQUEST_METHOD") == "HEAD" else body)
        length = str(environ.get("CONTENT_LENGTH") or "0")
        if self.limit and length.isdigit() and int(length) > self.limit:
            return self._refuse("413 Content Too Large", b"Content Too Large\n")
        if not self.http:
            environ["wsgi.url_scheme"] = _front_scheme(environ)
        else:
            environ["wsgi.url_scheme"] = "http"  # no TLS on these sockets, whatever the headers say
            if environ.get("REMOTE_ADDR") == "0.0.0.0":
                # uWSGI's stand-in for a unix socket peer: no address, as --forwarded-allow-ips "unix" expects
                environ["REMOTE_ADDR"] = ""
            te = environ.get("HTTP_TRANSFER_ENCODING")
            if te is not None:
                codings = [c.strip().lower() for c in str(te).split(",")]
                if codings[-1] != "chunked" or codings.count("chunked") != 1 or environ.get("CONTENT_LENGTH"):
                    return self._refuse("400 Bad Request", b"Bad Request: unsupported Transfer-Encoding\n")
                given = environ.get(PIPELINED_INPUT)
                if isinstance(given, StrictChunkedInput):  # a pipelined request: its body is partly read
                    self.body_in = given
                else:
                    # (Bytes past the body close the connection: Transfer-Encoding could have been a
                    # Transfer_Encoding look-alike, see serve_pipelined.)
                    stream = RawStream.open(self.threads, self.body_timeout)
                    self.body_in = (ChunkedInput(self.limit) if stream is None
                                    else StrictChunkedInput(self.limit, stream))
                environ["wsgi.input"] = self.body_in
                environ["wsgi.input_terminated"] = True
                environ.pop("CONTENT_LENGTH", None)
            elif (self.mode == "http11" and length == "0" and PIPELINED_INPUT not in environ
                  and environ.get("SERVER_PROTOCOL") == "HTTP/1.1"):
                # uWSGI read what the socket held with the head: for a request without a body, any
                # byte past the head is a request pipelined behind it, which uWSGI would drop (it
                # closes the connection), so it is taken here now and served after this response.
                early = _early_bytes(self.threads)
                if early:
                    stream = RawStream.open(self.threads, self.body_timeout)
                    if stream is None:  # cannot be served: the connection closes after this response
                        self.closing = True
                        _shutdown_connection()
                    else:
                        self.pipelined, self.stream, self.template = early, stream, dict(environ)
        try:
            result: Iterable[bytes] = self.app(environ, self.start_response)
        except Exception:
            return self.failed()
        if self.pending is not None and not self.committed and isinstance(result, (list, tuple)):
            # The whole body is known: one chunk gets a Content-Length rather than chunked framing.
            if len(result) == 1 and isinstance(result[0], bytes) and not _no_body(self.pending[0]):
                self._add_length(len(result[0]))
            self.commit()
            if not (self.chunked or self.head or self.body_in is not None or self.template is not None):
                return result  # nothing to fix and nothing that can fail while uWSGI sends it
        return _Body(self, result)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], Any]:
        if exc_info is not None and self.committed:
            raise exc_info[1].with_traceback(exc_info[2])
        self.pending = (status, list(headers))
        return self.write

    def _add_length(self, length: int) -> None:
        assert self.pending is not None
        status, headers = self.pending
        if not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers):
            self.pending = (status, [*headers, ("Content-Length", str(length))])

    def commit(self) -> None:
        """Hand the status and headers to uWSGI, deciding the framing."""
        if self.committed:
            return
        if self.pending is None:
            raise RuntimeError("the app sent a body without calling start_response")
        status, headers = self.pending
        names = {name.lower() for name, _ in headers}
        self.chunked = (self.can_chunk and not self.head and not _no_body(status)
                        and "content-length" not in names and "transfer-encoding" not in names)
        if self.chunked:
            headers = [*headers, ("Transfer-Encoding", "chunked")]
        self.server_write = self.server_start_response(status, headers)

    def write(self, data: bytes) -> None:
        """PEP 3333's write(): framed like the iterable's chunks."""
        if not data:
            return
        self.commit()
        framed = self.frame(data)
        if framed and self.server_write is not None:
            self.server_write(framed)

    def frame(self, data: bytes) -> bytes:
        if self.head or not data:
            return b""
        self.body_sent = True
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data

    def failed(self) -> list[bytes]:
        """The app raised: answer 500 while no byte of the response is out, else break the
        connection (logged either way)."""
        exc_info = sys.exc_info()
        if isinstance(exc_info[1], BodyTooLarge) and not self.committed:
            self.pending = ("413 Content Too Large", [("Content-Type", "text/plain"), ("Content-Length", "18"),
                                                      ("Connection", "close")])
            self.commit()
            self.closing = True
            return _Closing([] if self.head else [b"Content Too Large\n"])  # the rest is not read
        if isinstance(exc_info[1], BadChunk) and not self.committed:
            # The client's framing, not the app: no traceback (the connection is shut down after it).
            logger.debug("refused: %s", exc_info[1])
            body = b"Bad Request: invalid chunked body\n"
            self.pending = ("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                                ("Connection", "close")])
            self.commit()
            self.closing = True
            return _Closing([] if self.head else [body])
        environ = self.environ
        # One launcher record with the traceback (uWSGI would print it line by line).
        logger.exception("error in the app for %s %s", environ.get("REQUEST_METHOD"), _request_target(environ))
        if self.committed:
            # The headers (and maybe part of the body) are out: the client must see a broken
            # response, not a short one.  The connection is reset, and the response ends here
            # (no end of a chunked body), without handing uWSGI the exception to print again.
            self.closing = True
            _abort_connection()
            return []
        self.pending = ("500 Internal Server Error",
                        [("Content-Type", "text/plain"), ("Content-Length", str(len(_ERROR_BODY)))])
        self.commit()
        return [] if self.head else [_ERROR_BODY]

    def _refuse(self, status: str, body: bytes) -> Iterable[bytes]:
        self.closing = True
        self.server_start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                            ("Connection", "close")])
        return _Closing([body])


class _Body:
    """The response iterable of an :class:`_Exchange`: headers with the first body byte, framed
    chunks, the end of a chunked body, a 500 for an error before the first byte, and no
    half-read connection left behind."""

    def __init__(self, exchange: _Exchange, result: Iterable[bytes]) -> None:
        self.exchange = exchange
        self.result = result

    def __iter__(self) -> Iterator[bytes]:
        exchange = self.exchange
        try:
            for data in self.result:
                if data:
                    exchange.commit()
                    framed = exchange.frame(data)
                    if framed:
                        yield framed
            if not exchange.committed:
                if exchange.pending is not None and not _no_body(exchange.pending[0]):
                    exchange._add_length(0)  # no body at all: say so rather than chunk nothing
                exchange.commit()
        except Exception:
            yield from exchange.failed()  # nothing once the headers are out: the connection is reset
            return
        if exchange.chunked:
            yield b"0\r\n\r\n"

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            body_in = self.exchange.body_in
            if body_in is not None and not body_in.drain(DRAIN_LIMIT):
                self.exchange.closing = True
                _shutdown_connection()


class _Pipelined:
    """The response of a request with bytes past it taken from uWSGI (requests pipelined behind it):
    once uWSGI has sent it and closes it, those requests are served (:func:`serve_pipelined`)."""

    def __init__(self, exchange: _Exchange, result: Iterable[bytes]) -> None:
        self.exchange = exchange
        self.result = result

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        exchange = self.exchange
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            data = exchange.pipelined or b""
            answered = exchange.pending[1] if exchange.pending is not None else []
            if any(name.lower() == "connection" and "close" in value.lower() for name, value in answered):
                exchange.closing = True  # the app's Connection: close (uWSGI itself would keep the connection)
                _shutdown_connection()
            if data and not exchange.closing:
                if exchange.adapter is None or exchange.stream is None or exchange.template is None:
                    _shutdown_connection()
                else:
                    serve_pipelined(exchange.adapter, exchange.template, exchange.stream, data)


#: environ key of a pipelined request's chunked body, already set up by :func:`serve_pipelined`
#: (and the mark that a request is pipelined: nothing is taken from uWSGI for it).
PIPELINED_INPUT = "launcher.pipelined_input"
#: A pipelined request's head may not be longer (uWSGI's --buffer-size).
PIPELINED_HEAD_MAX = 32768
#: environ keys uWSGI also makes of an underscore look-alike (``X_Forwarded_For``, ``Content_Type``:
#: its parser folds '_' and '-' alike) of a field with a dash in its name that the launcher's rules
#: protect (launcher.hygiene.PROTECTED).  After a request carrying one, requests pipelined behind it
#: are not served (the connection is closed, as uWSGI does): the head might have been a look-alike,
#: which a front proxy reads differently.
_FOLDABLE = ("CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_TRANSFER_ENCODING", "HTTP_X_FORWARDED_", "HTTP_X_REAL_IP",
             "HTTP_PROXY_AUTHORIZATION")
#: The keys of uWSGI's environ that describe its request (the rest describes the server).
_REQUEST_KEYS = frozenset({"REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
                           "SCRIPT_NAME", "CONTENT_LENGTH", "CONTENT_TYPE", "wsgi.input", "wsgi.input_terminated",
                           "wsgi.file_wrapper", PIPELINED_INPUT})


def serve_pipelined(adapter: Adapter, template: dict[str, Any], stream: RawStream, data: bytes) -> None:
    """Serve requests a client pipelined behind one uWSGI answered, on the same connection.

    uWSGI's HTTP/1.1 socket drops them: ``uwsgi_proto_http11_close()`` (proto/http.c) closes the
    connection when bytes remain after a request (``proto_parser_remains > 0``: "close the
    connection on errors, incomplete parsing, HTTP/1.0, pipelined or offloaded requests"), and no
    uWSGI option changes that.  So the entry file takes those bytes (:class:`RawStream`) and serves
    them here, in order, from the close() of the response before them: each head is parsed and
    checked by the launcher's own rules (:func:`launcher.hygiene.inspect_head`, strict: a refused
    head is answered and the connection closed), the environ is uWSGI's for the first request with
    this request's keys, the app runs through the same :class:`Adapter`, and the response is written
    to the connection.  Once no byte is left uWSGI gets the connection back for the next request;
    a head that stays incomplete past --header-timeout, a Connection: close, HTTP/1.0 or the stop
    ends the connection.
    """
    import socket

    sock = _socket_of(stream.fd)
    if sock is None:
        _shutdown_connection()
        return
    try:
        sock.settimeout(max(stream.timeout, 1.0))
        pending: bytes | None = data
        while pending is not None:
            pending = _serve_one(adapter, template, stream, sock, pending)
    except Exception as exc:  # the client went away, or the connection was reset after an error
        logger.debug("pipelined requests: %s", exc)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    finally:
        sock.close()


def _serve_one(adapter: Adapter, template: dict[str, Any], stream: RawStream, sock: Any,
               data: bytes) -> bytes | None:
    """Serve the first request in ``data`` (reading the rest of it from the connection); the bytes
    after it, or None when the connection was ended (or handed back to uWSGI, nothing left)."""
    import io
    import socket

    from launcher.hygiene import Rejection, error_response, inspect_head

    watch = adapter.connections
    if not data:
        more = stream.read_now()
        if not more:
            if more is None:
                sock.shutdown(socket.SHUT_RDWR)
            return None  # nothing more: uWSGI reads the connection's next request
        data = more
    version_before = str(template.get("SERVER_PROTOCOL", ""))
    if (watch is not None and watch.stopping) or version_before != "HTTP/1.1" or "close" in str(
            template.get("HTTP_CONNECTION", "")).lower() or any(key.startswith(_FOLDABLE) for key in template):
        sock.shutdown(socket.SHUT_RDWR)  # the connection ends with the response before
        return None
    deadline = time.monotonic() + adapter.head_timeout if adapter.head_timeout > 0 else 0.0
    while b"\r\n\r\n" not in data:
        if len(data) > PIPELINED_HEAD_MAX:
            sock.sendall(error_response(Rejection(431, "request head too large")))
            sock.shutdown(socket.SHUT_RDWR)
            return None
        more = stream.read(deadline)  # TimeoutError ends the connection
        if not more:
            sock.shutdown(socket.SHUT_RDWR)
            return None
        data += more
    end = data.index(b"\r\n\r\n") + 4
    head, rejection = inspect_head(data[:end], adapter.limits)
    data = data[end:]
    if rejection is not None or isinstance(head, Rejection):
        refused = rejection if rejection is not None else Rejection(400, "invalid request head")
        logger.debug("refused (pipelined): %s", refused.reason)
        sock.sendall(error_response(refused))
        sock.shutdown(socket.SHUT_RDWR)
        return None
    method, target, version, fields = head
    environ = _pipelined_environ(template, method, target, version, fields)
    body_in: Any
    if "HTTP_TRANSFER_ENCODING" in environ:
        body_in = StrictChunkedInput(adapter.limit, stream)
        body_in.raw, data = data, b""
        body_in.keep_rest = True
        environ[PIPELINED_INPUT] = body_in
    elif environ.get("CONTENT_LENGTH"):
        body_in = _LengthInput(stream, data, int(environ["CONTENT_LENGTH"]))
        data = b""
        environ["wsgi.input"] = body_in
        environ[PIPELINED_INPUT] = None
    else:
        body_in = None
        environ["wsgi.input"] = io.BytesIO(b"")
        environ[PIPELINED_INPUT] = None
    response: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
        response["status"], response["headers"] = status, headers
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        sock.sendall(f"{version} {status}\r\n{lines}\r\n".encode("latin-1"))

        def write(data: bytes) -> None:
            sock.sendall(data)

        return write

    result = adapter(environ, start_response)
    try:
        for piece in result:
            if piece:
                sock.sendall(piece)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    closes = version != "HTTP/1.1" or "close" in str(environ.get("HTTP_CONNECTION", "")).lower() or any(
        name.lower() == "connection" and "close" in value.lower() for name, value in response.get("headers", []))
    if isinstance(body_in, StrictChunkedInput):
        if not body_in.drain(DRAIN_LIMIT) or not body_in.done:
            closes = True
        data, body_in.raw = body_in.raw, b""
    elif isinstance(body_in, _LengthInput):
        if not body_in.drain(DRAIN_LIMIT):
            closes = True
        data = body_in.rest
    if closes or "status" not in response:
        sock.shutdown(socket.SHUT_RDWR)
        return None
    return data


def _pipelined_environ(template: dict[str, Any], method: str, target: str, version: str,
                       fields: list[tuple[str, str]]) -> dict[str, Any]:
    """A pipelined request's environ as uWSGI would make it: its server keys from the request
    before it, its own request line (PATH_INFO percent-decoded) and header fields (names upper-cased,
    '-' as '_', repeats joined by ", ")."""
    import urllib.parse

    environ = {key: value for key, value in template.items()
               if key not in _REQUEST_KEYS and not key.startswith("HTTP_")}
    path, _, query = target.partition("?")
    environ.update({
        "REQUEST_METHOD": method, "REQUEST_URI": target, "QUERY_STRING": query, "SERVER_PROTOCOL": version,
        "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"), "SCRIPT_NAME": "",
    })
    for name, value in fields:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    return environ


class _BufferedInput:
    """A ``wsgi.input`` over a buffer that :meth:`_more` refills (False: the body is over): read,
    readline, readlines and iteration, as PEP 3333 asks of ``wsgi.input``."""

    def __init__(self) -> None:
        self._buffer = b""

    def _more(self) -> bool:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            data, self._buffer = self._buffer, b""
            return data
        while len(self._buffer) < size and self._more():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while b"\n" not in self._buffer and (size is None or size < 0 or len(self._buffer) < size) and self._more():
            pass
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size is not None and size >= 0:
            end = min(end, size)
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _LengthInput(_BufferedInput):
    """``wsgi.input`` of a pipelined request with a Content-Length: the bytes already read, then the
    connection's; ``rest`` holds what came after the body."""

    def __init__(self, stream: RawStream, data: bytes, length: int) -> None:
        super().__init__()
        self.stream = stream
        self._buffer = data[:length]
        self.rest = data[length:]
        self.left = length - len(self._buffer)

    def _more(self) -> bool:
        if self.left <= 0:
            return False
        data = self.stream.read()
        if not data:
            raise OSError("the connection ended inside the request body")
        self._buffer += data[:self.left]
        self.rest += data[self.left:]
        self.left -= min(len(data), self.left)
        return True

    def drain(self, limit: int) -> bool:
        """Drop the rest of the body (up to ``limit`` bytes); True when it all arrived."""
        if self.left > limit:
            return False
        try:
            self.read()
        except OSError:
            return False
        return self.left == 0


class _Closing(list[bytes]):
    """A list response after which the connection is shut down (uWSGI ignores Connection: close)."""

    def close(self) -> None:
        _shutdown_connection()


def _abort_connection() -> None:
    """Make uWSGI reset the current connection: no FIN that would make a close-delimited body look
    complete, and no reuse of a keep-alive connection in the middle of a chunked body."""
    import socket
    import struct

    def reset(sock: Any) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        sock.shutdown(socket.SHUT_RD)  # uWSGI's next read sees the end: it closes instead of reusing

    _on_connection(reset)


def _shutdown_connection() -> None:
    """Shut the current uWSGI connection down after what was already written: uWSGI then reads EOF
    and closes it instead of parsing leftover bytes as another request."""
    import socket

    _on_connection(lambda sock: sock.shutdown(socket.SHUT_RDWR))


def _on_connection(action: Callable[[Any], object]) -> None:
    """:func:`_on_socket` on the connection of the request uWSGI is serving (none: nothing)."""
    try:
        import uwsgi

        fd = uwsgi.connection_fd()
    except Exception:  # not under uWSGI, or no connection
        return
    _on_socket(fd, action)


class BodyTooLarge(OSError):
    """A chunked request body grew past --limit-request-body (answered 413 if the app lets it go)."""


class BadChunk(OSError):
    """A chunked request body whose framing breaks RFC 9112 7.1 (answered 400 if the app lets it go)."""


#: A chunk-size line: hex digits (at most 16: no overflow), then optional extensions (RFC 9112 7.1.1:
#: ``*( BWS ";" BWS name [ BWS "=" BWS value ] )``, kept loose but without control bytes), nothing else.
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?")
#: A trailer field line (a token, a colon, a value without control bytes).
_TRAILER_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*")
#: The longest chunk-size line, and the most trailer bytes, taken.
CHUNK_LINE_MAX = 4096
TRAILERS_MAX = 16384

#: uWSGI's C functions reached through ctypes (see :class:`RawStream`): False when unavailable.
_RAW: Any = None


def _raw_functions() -> Any:
    """(threaded_current_wsgi_req, simple_current_wsgi_req, uwsgi_proto_base_read_body) from the
    uWSGI running this process (the pyuwsgi extension), or None."""
    global _RAW
    if _RAW is None:
        try:
            import ctypes

            module = sys.modules.get("pyuwsgi")
            # PyDLL: the GIL is kept during the calls (they never block: a memcpy or a read() on a
            # non-blocking socket); handing it to another thread on every request cost 17% of the
            # throughput with 4 threads.
            lib = ctypes.PyDLL(module.__file__ if module is not None and module.__file__ else None, use_errno=True)
            functions = []
            for name in ("threaded_current_wsgi_req", "simple_current_wsgi_req"):
                current = getattr(lib, name)
                current.restype = ctypes.c_void_p
                current.argtypes = []
                functions.append(current)
            read_body = lib.uwsgi_proto_base_read_body
            read_body.restype = ctypes.c_ssize_t
            read_body.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            _RAW = (*functions, read_body)
        except Exception:  # not uWSGI's pyuwsgi, or a build without these symbols
            _RAW = False
    return _RAW or None


_THREAD = threading.local()


def _early_bytes(threads: int) -> bytes | None:
    """Bytes uWSGI read past the head of the current bodyless request (requests pipelined behind
    it), taken now; None when there are none.

    The check runs on every such request, so it makes no system call (a ``read()`` that finds
    nothing cost ~10% of the throughput): it reads uWSGI's own count of those bytes,
    ``proto_parser_remains``, in this thread's request (cached, checked against the connection),
    at the offset :func:`_remains_offset` found; only when it is not 0 are the bytes copied out
    through ``uwsgi_proto_base_read_body()``."""
    cached = getattr(_THREAD, "cached", None)
    if cached is None:
        cached = _THREAD.cached = _early_setup(threads)
    if not cached:
        return None
    request, connection_fd, fd_at, remains_at, offset = cached
    if fd_at(request).value != connection_fd():
        stream = RawStream.open(threads, BODY_TIMEOUT)  # another request of this thread (async modes)
        if stream is None:
            return None
        request = stream.request
    if remains_at(request + offset).value <= 0:
        return None
    import ctypes

    functions = _raw_functions()
    buffer = RawStream.thread_buffer()
    got = functions[2](request, buffer, RawStream.SIZE)
    return ctypes.string_at(buffer, got) if got > 0 else None


def _early_setup(threads: int) -> tuple[Any, ...]:
    """What :func:`_early_bytes` needs in this thread, looked up once: () when it cannot work."""
    import ctypes

    import uwsgi

    functions = _raw_functions()
    stream = RawStream.open(threads, BODY_TIMEOUT)
    offset = _remains_offset(functions[2]) if functions is not None else None
    if stream is None or not offset:
        return ()
    return stream.request, uwsgi.connection_fd, ctypes.c_int.from_address, ctypes.c_ssize_t.from_address, offset


_REMAINS_OFFSET: list[int | None] = []


def _remains_offset(read_body: Any) -> int | None:
    """The offset of ``proto_parser_remains`` in uWSGI's ``struct wsgi_request`` (0x418 in pyuwsgi
    2.0.30 x86_64; it moves between builds), found once without reading uWSGI's headers or code:
    ``uwsgi_proto_base_read_body()`` is called on a decoy request whose every 8-byte slot holds the
    address of a real buffer.  It copies from the slot it takes for ``proto_parser_remains_buf`` and
    moves the two slots it takes for the pointer (+n) and the count (-n): the slot that went down
    by n is the count.  Any other outcome: None (pipelined requests are then not served)."""
    if _REMAINS_OFFSET:
        return _REMAINS_OFFSET[0]
    import ctypes

    found: int | None = None
    try:
        source = ctypes.create_string_buffer(4096)
        address = ctypes.addressof(source)
        slots = 8192  # 64 KiB: far more than the struct
        decoy = (ctypes.c_uint64 * slots)(*([address] * slots))
        out = ctypes.create_string_buffer(64)
        if read_body(ctypes.addressof(decoy), out, 16) == 16:
            changed = [(i * 8, value) for i, value in enumerate(decoy) if value != address]
            counts = [offset for offset, value in changed if value == address - 16]
            pointers = [offset for offset, value in changed if value == address + 16]
            if len(changed) == 2 and len(counts) == 1 and len(pointers) == 1:
                found = counts[0]
    except Exception:
        found = None
    _REMAINS_OFFSET.append(found)
    return found


class RawStream:
    """The request body's bytes exactly as the client sent them, for a strict parser of our own.

    uWSGI reads as much as the socket holds with the head (``proto_parser_remains``: the body, or
    a request pipelined behind it) and hands it out through its HTTP sockets' ``proto_read_body``,
    ``uwsgi_proto_base_read_body()``: the bytes it already holds first, then ``read()`` on the
    connection.  That exported function is called through ctypes with the current request
    (``threaded_current_wsgi_req()`` when uWSGI runs threads, else ``simple_current_wsgi_req()``),
    whose first member is the connection's descriptor: checked against ``uwsgi.connection_fd()``
    before any use.  The connection is non-blocking: an empty read waits (poll) up to ``timeout``.
    """

    SIZE = 65536
    #: one read buffer per thread (a request's reads all happen in its thread)
    _local = threading.local()

    def __init__(self, request: int, read_body: Any, fd: int, timeout: float) -> None:
        self.request = request
        self.read_body = read_body
        self.fd = fd
        self.timeout = timeout

    @property
    def buffer(self) -> Any:
        return self.thread_buffer()

    @classmethod
    def thread_buffer(cls) -> Any:
        buffer = getattr(cls._local, "buffer", None)
        if buffer is None:
            import ctypes

            buffer = cls._local.buffer = ctypes.create_string_buffer(cls.SIZE)
        return buffer

    @classmethod
    def open(cls, threads: int, timeout: float) -> RawStream | None:
        """The current request's raw body stream, or None when uWSGI's functions are not reachable."""
        functions = _raw_functions()
        if functions is None:
            return None
        import ctypes

        import uwsgi

        threaded, simple, read_body = functions
        try:
            request = (threaded if threads > 1 else simple)()
            fd = uwsgi.connection_fd()
            if not request or ctypes.c_int.from_address(request).value != fd:
                return None  # another request loop (-o gevent...): not the request we think
        except Exception:
            return None
        return cls(request, read_body, fd, timeout)

    def read(self, deadline: float = 0.0) -> bytes:
        """The next bytes of the connection (b"" at its end); TimeoutError past ``timeout`` idle
        (or past the ``deadline``, a time.monotonic() value, when one is given)."""
        import select

        while True:
            data = self.read_now()
            if data is None:
                return b""
            if data:
                return data
            wait = self.timeout
            if deadline:
                wait = min(wait, deadline - time.monotonic())
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if wait <= 0 or not poller.poll(int(wait * 1000)):
                raise TimeoutError(f"no byte from the client for {self.timeout:g}s")

    def read_now(self) -> bytes | None:
        """What can be read without waiting: b"" when nothing, None at the connection's end."""
        import ctypes
        import errno

        buffer = self.buffer
        while True:
            got = self.read_body(self.request, buffer, self.SIZE)
            if got > 0:
                return ctypes.string_at(buffer, got)
            if got == 0:
                return None
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return b""
            raise OSError(err, os.strerror(err))


class ChunkedInput(_BufferedInput):
    """``wsgi.input`` for a chunked request body on a uWSGI HTTP socket, read with uWSGI's own
    ``uwsgi.chunked_read()`` (uWSGI hands the app an empty body otherwise).  Only used when the raw
    body cannot be reached (:class:`StrictChunkedInput` otherwise): uWSGI's reader is lax (chunk
    size 'zz' reads as 0, '0x5' as 5, data past a chunk's size is skipped) and fails on extensions."""

    def __init__(self, limit: int = 0) -> None:
        super().__init__()
        self.done = False
        self.limit = limit
        self.received = 0
        self.truncated = False

    def _more(self) -> bool:
        if self.done:
            return False
        import uwsgi

        chunk = uwsgi.chunked_read()
        if not chunk:
            self.done = True
            return False
        self.received += len(chunk)
        if self.limit and self.received > self.limit:
            self.done = self.truncated = True  # the rest stays unread: the connection is shut down
            raise BodyTooLarge(f"request body larger than --limit-request-body ({self.limit} bytes)")
        self._buffer += chunk
        return True

    def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to ``limit`` bytes; True when it all arrived."""
        dropped = len(self._buffer)
        self._buffer = b""
        try:
            while dropped <= limit and self._more():
                dropped += len(self._buffer)
                self._buffer = b""
        except Exception:  # a broken body: the connection is shut down instead
            return False
        return self.done and not self.truncated


class StrictChunkedInput(ChunkedInput):
    """``wsgi.input`` for a chunked request body, parsed here from the raw bytes (:class:`RawStream`)
    by RFC 9112 7.1: a chunk-size line is hex digits with optional extensions (ignored), chunk data
    is followed by CRLF, the trailer section ends with an empty line.  Anything else raises
    :class:`BadChunk` (400 when the app lets it go, and the connection is closed).  Bytes read past
    the body's end belong to a request pipelined behind it, which uWSGI cannot be handed back:
    the connection is then shut down after the response (uWSGI closes it too, see ok_pipelined)."""

    def __init__(self, limit: int, stream: RawStream) -> None:
        super().__init__(limit)
        self.stream = stream
        self.raw = b""  # read, not parsed yet
        self.left = 0  # data bytes of the current chunk still to come
        self.broken = False
        #: bytes past the body are handed on (a pipelined request, :func:`serve_pipelined`), not a failure
        self.keep_rest = False

    def _fill(self) -> None:
        data = self.stream.read()
        if not data:
            raise BadChunk("the connection ended inside a chunked body")
        self.raw += data

    def _line(self, most: int) -> bytes:
        while True:
            end = self.raw.find(b"\r\n")
            if end >= 0:
                line, self.raw = self.raw[:end], self.raw[end + 2:]
                return line
            if len(self.raw) > most:
                raise BadChunk("chunk line too long (or not ended by CRLF)")
            self._fill()

    def _more(self) -> bool:
        if self.done:
            if self.broken:
                raise BadChunk("invalid chunked body")
            return False
        try:
            return self._parse()
        except BadChunk:
            self.done = self.broken = True
            raise
        except BodyTooLarge:
            raise
        except OSError as exc:  # the connection failed or paused too long: the body is broken
            self.done = self.broken = True
            raise BadChunk(f"chunked body not received: {exc}") from None

    def _parse(self) -> bool:
        if self.left == 0:
            line = self._line(CHUNK_LINE_MAX)
            match = _CHUNK_SIZE_RE.fullmatch(line)
            if match is None:
                raise BadChunk(f"invalid chunk size line {line[:40]!r}")
            size = int(match.group(1), 16)
            if size == 0:
                total = 0
                while True:  # the trailer section, up to its empty line
                    trailer = self._line(TRAILERS_MAX)
                    if not trailer:
                        break
                    total += len(trailer) + 2
                    if total > TRAILERS_MAX or _TRAILER_RE.fullmatch(trailer) is None:
                        raise BadChunk("invalid chunked trailer section")
                self.done = True
                return False
            if self.limit and self.received + size > self.limit:
                self.done = self.truncated = True
                raise BodyTooLarge(f"request body larger than --limit-request-body ({self.limit} bytes)")
            self.left = size
        if not self.raw:
            self._fill()
        data, self.raw = self.raw[:self.left], self.raw[self.left:]
        self.left -= len(data)
        if self.left == 0:
            while len(self.raw) < 2:
                self._fill()
            if self.raw[:2] != b"\r\n":
                raise BadChunk("chunk data longer than its size (no CRLF after it)")
            self.raw = self.raw[2:]
        self.received += len(data)
        self._buffer += data
        return True

    def drain(self, limit: int) -> bool:
        """As :meth:`ChunkedInput.drain`; False too when bytes past the body were read (a request
        pipelined behind it, which uWSGI cannot be given back) or the body was broken."""
        return super().drain(limit) and not self.broken and (self.keep_rest or not self.raw)


# =========================================================================== the uWSGI backend

#: uWSGI options the launcher sets, and the common option to use instead of ``-o``.
OWNED = {
    "socket": "--bind", "uwsgi-socket": "--bind", "http-socket": "--bind", "http11-socket": "--bind",
    "https-socket": "--bind", "fastcgi-socket": "--bind", "scgi-socket": "--bind", "shared-socket": "--bind",
    "http": "--bind", "https": "--bind", "chmod-socket": "--bind unix:PATH:MODE", "listen": "--backlog",
    "processes": "--workers", "workers": "--workers", "threads": "--threads", "harakiri": "--timeout",
    "socket-timeout": "--keepalive", "max-requests": "--max-requests",
    "worker-reload-mercy": "--graceful-timeout", "reload-mercy": "--graceful-timeout",
    "module": "the app spec", "wsgi-file": "the app spec", "callable": "the app spec", "file": "the app spec",
    "wsgi": "the app spec", "mount": "--root-path", "manage-script-name": "--root-path",
    "chdir": "--chdir", "pythonpath": "--pythonpath", "python-path": "--pythonpath", "pp": "--pythonpath",
    "uid": "--user", "gid": "--group", "umask": "--umask",
    "log-x-forwarded-for": "--proxy-headers", "enable-proxy-protocol": "--proxy-headers",
    "disable-logging": "--access-log", "master": "(always on)", "lazy-apps": "(always on)",
    "lazy": "(always on)", "need-app": "(always on)", "strict": "(always on)",
    "hook-master-start": "(the launcher's stop)", "max-vars": "--limit-request-fields",
    "die-on-term": "(the launcher's stop)", "daemonize": "(the launcher runs in the foreground)",
    "daemonize2": "(the launcher runs in the foreground)", "vacuum": "(the launcher removes its unix sockets)",
    "ini": "single -o options", "yaml": "single -o options", "yml": "single -o options", "json": "single -o options",
    "xml": "single -o options", "xmlconfig": "single -o options", "inherit": "single -o options",
    "include": "single -o options", "config": "single -o options",
}
#: Variables uWSGI sets besides the header fields (REQUEST_METHOD, PATH_INFO...), with room to spare:
#: past --max-vars uWSGI drops fields ("max vec size reached. skip this var") instead of refusing.
MAX_CGI_VARS = 64
BACKEND_KEYS = ("protocol", "ready_timeout")
_TRUE = ("true", "yes", "on", "")
_FALSE = ("false", "no", "off")
#: Runs uWSGI from the pyuwsgi module with the launcher's own interpreter.
PYUWSGI_MAIN = "import sys, pyuwsgi; sys.argv[0] = 'uwsgi'; sys.exit(pyuwsgi.run())"


def uwsgi_command() -> list[str]:
    """The command that runs uWSGI (before its options)."""
    return [sys.executable, "-c", PYUWSGI_MAIN]


def uwsgi_options() -> set[str]:
    """Every option name ``uwsgi --help`` lists (read once per process)."""
    return listed_options(tuple(uwsgi_command()), r"^\s+(?:-\w\|)?--([A-Za-z0-9][\w-]*)", "uWSGI's", 20.0)


@functools.cache
def listed_options(argv: tuple[str, ...], pattern: str, owner: str, timeout: float) -> set[str]:
    """The option names a program's ``--help`` (``argv``) lists, by ``pattern``'s first group,
    read once per process; an OptionError naming ``owner`` when it cannot be run."""
    import subprocess

    try:
        out = subprocess.run([*argv, "--help"], capture_output=True, timeout=timeout, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OptionError(f"-o: cannot list {owner} options ({exc})") from None
    compiled = re.compile(pattern)
    return {m.group(1) for line in out.decode("utf-8", "replace").splitlines() if (m := compiled.match(line))}


class UWSGIBackend(ProgramBackend):
    name = "uwsgi"
    extra = "uwsgi"
    protocol = "http"
    library = "pyuwsgi"
    distribution = "pyuwsgi"
    # 2.0.26 fixed the termination race of --need-app with --lazy-apps, the mode used here.
    min_version = "2.0.26"
    supports = frozenset({"threads", "timeout", "keepalive", "header_timeout", "limit_request_body",
                          "limit_request_line", "limit_request_fields", "limit_request_field_size"})
    program = "uWSGI"
    graceful_signal = signal.SIGTERM  # gracefully_kill_them_all, through the master-start hook
    death_signal = signal.SIGKILL  # the workers leave within a second of their master

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        parsed: dict[str, Any] = {"protocol": "http", "ready_timeout": READY_TIMEOUT, "extra": []}
        for key, value in raw.items():
            name = key.replace("_", "-")
            text = str(value).strip()
            if key == "protocol":
                if text.lower() not in ("http", "uwsgi"):
                    raise OptionError(f"-o protocol={value}: choose http (the default) or uwsgi (nginx uwsgi_pass)"
                                      f"{closest(text.lower(), ('http', 'uwsgi'))}")
                parsed["protocol"] = text.lower()
            elif key == "ready_timeout":
                parsed["ready_timeout"] = _seconds(key, text)
            elif name in OWNED:
                raise OptionError(f"-o {name}: set by the launcher; use {OWNED[name]}")
            else:
                known = uwsgi_options()
                if name not in known:
                    raise OptionError(f"-o {name}: not a uWSGI option{closest(name, known | set(BACKEND_KEYS))}"
                                      " (`uwsgi --help` lists them)")
                parsed["extra"].append((name, text))
        return parsed

    def url_scheme(self) -> str:
        """``uwsgi://`` in the startup line and the ready file with -o protocol=uwsgi."""
        return "uwsgi" if (self.backend_options or {}).get("protocol") == "uwsgi" else "http"

    def command(self, opts: ServeOptions, listeners: list[Listener], entry: str) -> list[str]:
        """uWSGI's command line for these options (see the module docstring)."""
        backend = self.backend_options or self.parse_backend_options({})
        argv = [*uwsgi_command(), "--strict", "--master", "--lazy-apps", "--need-app", "--single-interpreter",
                "--enable-threads", "--disable-logging"]
        if backend["protocol"] == "uwsgi":
            flag = "--socket"
        elif opts.keepalive > 0:
            flag = "--http11-socket"
        else:
            flag = "--http-socket"
        for listener in listeners:
            argv += [flag, f"fd://{listener.sock.fileno()}"]
        argv += ["--processes", str(opts.workers), "--threads", str(opts.threads)]
        if opts.timeout > 0:
            argv += ["--harakiri", str(max(1, _ceil(opts.timeout)))]
        if opts.keepalive > 0:
            argv += ["--socket-timeout", str(max(1, _ceil(opts.keepalive)))]
        if opts.max_requests:
            argv += ["--max-requests", str(opts.max_requests)]
        mercy = str(_ceil(opts.graceful_timeout) + 1)
        argv += ["--listen", str(opts.backlog), "--worker-reload-mercy", mercy, "--reload-mercy", mercy,
                 "--buffer-size", "32768", "--max-vars", str((opts.limit_request_fields or 200) + MAX_CGI_VARS)]
        for sig in (signal.SIGTERM, signal.SIGINT):
            argv += ["--hook-master-start", f"unix_signal:{int(sig)} gracefully_kill_them_all"]
        for name, value in backend["extra"]:
            if value.lower() in _TRUE:
                argv.append(f"--{name}")
            elif value.lower() not in _FALSE:
                argv.append(f"--{name}={value}")
        argv += ["--wsgi-file", entry]
        return argv

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        import secrets

        backend = self.backend_options or self.parse_backend_options({})
        uwsgi_protocol = backend["protocol"] == "uwsgi"
        mode = "uwsgi" if uwsgi_protocol else ("http11" if opts.keepalive > 0 else "http")
        token = secrets.token_hex(16)
        if self._stopping.is_set():  # stopped before it started
            return
        self.make_workdir()
        try:
            entry = self.write_entry(opts, mode, token)
            argv = self.command(opts, listeners, entry)
            logger.debug("starting: %s", " ".join(argv))
            fds = tuple(listener.sock.fileno() for listener in listeners)
            for fd in fds:
                os.set_inheritable(fd, True)
            self.spawn(argv, pass_fds=fds, opts=opts)
            targets = [probe_address(listener) for listener in listeners]
            probe = probe_uwsgi if uwsgi_protocol else probe_http

            def answered() -> bool:
                return all(probe(target, token) for target in targets)

            if self.wait_ready(answered, opts.workers, backend["ready_timeout"]):
                ready(listeners)
            self.wait_exit()
        finally:
            self.kill_if_running()
            self.remove_workdir()

    def kill_if_running(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.kill()


def _body_timeout(opts: Any) -> float:
    """Seconds a chunked request body may pause: --header-timeout when honoured, else uWSGI's own
    socket timeout (--keepalive, or its default)."""
    if "header_timeout" in UWSGIBackend.supports and getattr(opts, "header_timeout", 0) > 0:
        return float(opts.header_timeout)
    return float(opts.keepalive) if opts.keepalive > 0 else BODY_TIMEOUT


def _ceil(value: float) -> int:
    import math

    return math.ceil(value)


def _seconds(key: str, text: str) -> float:
    try:
        value = float(text.rstrip("s"))
    except ValueError:
        raise OptionError(f"-o {key}={text}: expected a number of seconds") from None
    if value <= 0:
        raise OptionError(f"-o {key}={text}: must be more than 0 seconds")
    return value
