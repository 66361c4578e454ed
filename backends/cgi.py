"""cgi: one request per process, started by the web server (Apache mod_cgi/mod_cgid, lighttpd mod_cgi).

A CGI program answers exactly one request: the request arrives in the environment and on stdin,
the response leaves on stdout as ``Status:`` line, headers, blank line, body, and the process exits.
This backend does what the guide's ``yourapplication.cgi`` does (``CGIHandler().run(app)``), with
:class:`wsgiref.handlers.CGIHandler`'s semantics (environ from ``read_environ()``, so PATH_INFO is
PEP 3333's latin-1 "bytes in str"; ``wsgi.run_once`` true, ``wsgi.multithread`` false,
``wsgi.multiprocess`` true; ``wsgi.errors`` is stderr; an exception in the app gives a 500 without
details and its traceback on stderr), and the guide's traps handled (below).

Entry points, both ending in :func:`handle_request`:

* the cgi-bin script: a fresh interpreter per request (55-75 requests/s for a bare app here), so
  this path imports only ``launcher.importer``, ``wsgiref.handlers`` and, with a root path,
  ``launcher.middleware`` -- never the CLI, the options table, the registry or ``backends.base``
  (the backend class below is built on first attribute access).  Measured here (fastest of 25
  starts): ``python -c pass`` 9 ms; importing ``wsgiref.handlers`` (the guide's script pays it
  too) 14 ms; plus the importer's ``ast`` (spec parsing) 17 ms and ``socketserver`` (its
  app.run() trap) 20 ms; plus ``launcher.importer`` and this module 21 ms::

      #!/srv/app/venv/bin/python
      import sys
      sys.path[:0] = ["/srv/app"]          # only if wsgi-launcher / the app are not installed there
      from backends.cgi import run_cgi
      raise SystemExit(run_cgi("yourapplication:app"))

  ``run_cgi(spec, *, root_path="", chdir="", pythonpath=(), script_name_fix="off",
  response_buffer=1048576) -> int`` (the exit code).
* ``serve --backend cgi [--root-path P] [-o script_name_fix=strip] yourapplication:app`` as the
  CGI program (it starts the whole CLI: slower).  It binds nothing (``takes_sockets`` is false),
  writes no startup line or ready file, keeps the launcher's log to warnings unless --log-level is
  given (no "stopped" line per request in the web server's error log), and rejects the options
  that mean nothing for a one-shot program (--bind, --workers, --graceful-timeout, --backlog,
  --max-requests, --reload*, --ready-file, --user, --group, --allow-root).

What the web server must give (every CGI server does): REQUEST_METHOD, SCRIPT_NAME, PATH_INFO,
QUERY_STRING, SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL, CONTENT_TYPE/CONTENT_LENGTH and stdin for
a body, HTTP_* headers.  Apache ``ScriptAlias /app /path/to/app.cgi`` gives SCRIPT_NAME=/app and
PATH_INFO=the rest: nothing to fix.  A rewrite to the script (the guide's ``.htaccess``
``RewriteRule ^(.*)$ /path/to/the/application.cgi/$1``, lighttpd ``url.rewrite``) leaves the
script's own path in SCRIPT_NAME: pass ``script_name_fix="strip"`` (the guide's
ScriptNameStripper).  lighttpd with the app at "/" may send the whole path as SCRIPT_NAME and an
empty PATH_INFO: ``script_name_fix="lighttpd"`` (the guide's LighttpdCGIRootFix).  See
:func:`fix_script_name`; ``--root-path`` is applied after the fix.

Traps handled, and why:

* print() corrupts the response (the guide: "make sure there are no print statements or that
  sys.stdout is overridden").  Before the app is even imported, the real stdout is moved to a
  private descriptor used only for the response; fd 1 becomes a copy of stderr (so C extensions
  and subprocesses writing to fd 1 land in the error log too) and ``sys.stdout`` is
  ``sys.stderr``.  The private descriptor is not inheritable: a subprocess the app starts can
  neither write into the response nor keep the pipe open after we exit (the web server waits for
  EOF).
* An app that does not import: a plain ``500 Internal Server Error`` response (no traceback in
  the body), the message (and the user's own traceback) on stderr, exit code 4.
* A failure after the body started: CGI has no way to abort a response.  Measured with lighttpd
  1.4.69: a program that printed half a body and then died (exit 1, SIGKILL or SIGABRT) was still
  sent as a complete ``200`` with a Content-Length.  So the response is held back until the app
  has finished, up to ``response_buffer`` bytes (1 MiB): a failure before that becomes a clean
  500, and a Content-Length is added when the app gave none.  Bigger responses are streamed from
  that point on.  This delays blocks, which PEP 3333 asks servers not to do; lighttpd buffers
  CGI responses itself anyway.  ``response_buffer=0`` (``-o response_buffer=0``) streams every
  block at once, as wsgiref's CGIHandler does.
* Run by hand (the guide's debugging advice: run the script as the web server's user to see the
  import error) without REQUEST_METHOD: the app is imported, import errors are shown, then it
  answers 500, says there is no request to answer and exits 1.
* A web server stops a CGI program once it has the whole response (lighttpd sends SIGTERM), which
  cut the app's ``close()`` short: the app's ``close()`` runs before a held response leaves, and
  once a streamed response has reached its Content-Length, SIGTERM is held back until ``close()``
  has run.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, BinaryIO

    from backends.base import Backend

    WSGIApp = Callable[..., Any]

__all__ = ["fix_script_name", "handle_request", "protect_stdout", "run_cgi"]

#: ``script_name_fix`` values: leave the front's SCRIPT_NAME alone, blank it, or join it to PATH_INFO.
SCRIPT_NAME_FIXES = ("off", "strip", "lighttpd")
_FIX_ALIASES = {"true": "lighttpd", "on": "lighttpd", "yes": "lighttpd", "1": "lighttpd",
                "false": "off", "no": "off", "0": "off", "none": "off"}
#: Bytes of response held back so that a late failure can still become a clean 500.
DEFAULT_RESPONSE_BUFFER = 1 << 20

ERROR_STATUS = "500 Internal Server Error"
ERROR_BODY = b"Internal Server Error\n"
_ERROR_RESPONSE = (
    f"Status: {ERROR_STATUS}\r\nContent-Type: text/plain; charset=utf-8\r\n"
    f"Content-Length: {len(ERROR_BODY)}\r\n\r\n"
).encode("latin-1") + ERROR_BODY


# --------------------------------------------------------------------------- SCRIPT_NAME fixes


def script_name_fix_mode(value: str) -> str:
    """Normalise a ``script_name_fix`` value; ``true`` means the guide's lighttpd root fix."""
    mode = _FIX_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if mode not in SCRIPT_NAME_FIXES:
        raise ValueError(f"script_name_fix must be one of {', '.join(SCRIPT_NAME_FIXES)}, not {value!r}")
    return mode


def fix_script_name(environ: dict[str, Any], mode: str) -> None:
    """Repair the SCRIPT_NAME/PATH_INFO split a front server sent (before --root-path applies).

    ``strip``: SCRIPT_NAME becomes "" and PATH_INFO is kept -- the guide's ScriptNameStripper, for a
    rewrite to ``/app.fcgi$1`` / ``/app.cgi/$1`` that leaves the script's path in SCRIPT_NAME.
    ``lighttpd``: PATH_INFO becomes SCRIPT_NAME + PATH_INFO and SCRIPT_NAME "" -- the guide's
    LighttpdCGIRootFix, for lighttpd serving the app at "/" (it sends the whole path as
    SCRIPT_NAME), and also for nginx with only ``include fastcgi_params`` (SCRIPT_NAME is the
    whole path there and PATH_INFO is missing).  With --root-path the launcher then moves the prefix
    back from PATH_INFO to SCRIPT_NAME, so SCRIPT_NAME ends up as the root path.
    """
    if mode == "strip":
        environ["SCRIPT_NAME"] = ""
    elif mode == "lighttpd":
        environ["PATH_INFO"] = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
        environ["SCRIPT_NAME"] = ""


class ScriptNameFix:
    """WSGI middleware applying :func:`fix_script_name` (outermost: before --root-path)."""

    def __init__(self, app: WSGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        fix_script_name(environ, self.mode)
        return self.app(environ, start_response)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- the one request


def protect_stdout() -> BinaryIO:
    """Keep the real stdout for the response only; send everything else written to it to stderr.

    Returns the response stream (a private, non-inheritable copy of fd 1).  Afterwards fd 1 is a
    copy of stderr and ``sys.stdout`` is ``sys.stderr``.
    """
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        pass
    response_fd = os.dup(1)  # os.dup: not inheritable, so no child process holds the response open
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr at all: stray output goes nowhere rather than into the response
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    sys.stdout = sys.stderr
    return os.fdopen(response_fd, "wb")


def handle_request(
    load: Callable[[], WSGIApp],
    response: BinaryIO,
    *,
    script_name_fix: str = "off",
    response_buffer: int = DEFAULT_RESPONSE_BUFFER,
) -> int:
    """Load the app and answer this process's one CGI request on ``response``.

    Returns 0, or 1 when the app raised (the response was then a 500, or cut short if part of it
    had already left).  When ``load`` raises, a 500 is written and the exception propagates; with no
    request in the environment (no REQUEST_METHOD) a 500 is written and a ServerError raised.
    """
    try:
        app = load()
    except BaseException:
        _write_error(response)
        raise
    if "REQUEST_METHOD" not in os.environ:
        _write_error(response)
        from launcher.errors import ServerError

        raise ServerError(
            "no CGI request to answer: REQUEST_METHOD is not set (the app imported fine). A web server runs"
            " this program once per request; to try one by hand set REQUEST_METHOD=GET PATH_INFO=/"
            " SERVER_NAME=localhost SERVER_PORT=80 SERVER_PROTOCOL=HTTP/1.1"
        )
    if script_name_fix != "off":
        app = ScriptNameFix(app, script_name_fix)
    from wsgiref.handlers import read_environ

    stdin = _BodyInput(sys.stdin.buffer if sys.stdin is not None else _empty_input(), os.environ.get("CONTENT_LENGTH"))
    handler = _handler_class()(stdin, response, sys.stderr, read_environ(), response_buffer)
    try:
        handler.run(app)
        response.flush()
        # Apache's mod_cgid drops the whole response of a program that exits without reading its
        # request body (measured: 10 of 10 broken, 0 of 10 once the body is read): read the rest.
        stdin.discard_rest()
    except OSError:  # the web server went away: nobody is left to answer
        return 1
    finally:
        if handler.sigterm_held:  # a SIGTERM held back since the body was complete ends us now
            import signal

            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    return 1 if handler.failed else 0


class _BodyInput:
    """wsgi.input for a CGI request: the request body on stdin, counted so the unread rest can be
    read and discarded before the program exits."""

    MAX_DISCARD = 1 << 30

    def __init__(self, raw: Any, content_length: str | None) -> None:
        self._raw = raw
        self._left = int(content_length) if content_length and content_length.isdigit() else 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        data: bytes = self._raw.read(size) if size else b""
        self._left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        data: bytes = self._raw.readline(size) if size else b""
        self._left -= len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def discard_rest(self) -> None:
        left = min(self._left, self.MAX_DISCARD)
        while left > 0:
            chunk = self._raw.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
        self._left = 0


def run_cgi(
    spec: str,
    *,
    root_path: str = "",
    chdir: str = "",
    pythonpath: tuple[str, ...] | list[str] = (),
    script_name_fix: str = "off",
    response_buffer: int = DEFAULT_RESPONSE_BUFFER,
) -> int:
    """Entry point of a cgi-bin script: answer the request in the environment; return the exit code.

    ``spec`` is an app spec as ``serve`` takes it (``pkg.module:app``, ``pkg:create_app()``,
    ``path/to/file.py:app``).  ``chdir`` and ``pythonpath`` act as --chdir and --pythonpath,
    ``root_path`` as --root-path; ``script_name_fix`` and ``response_buffer`` as the backend's ``-o``
    options (see the module docstring).  Nothing but the response is ever written to stdout.
    """
    try:
        response = protect_stdout()
    except OSError as exc:
        sys.stderr.write(f"serve: error: no stdout to answer the CGI request on: {exc.strerror}\n")
        return 1
    try:
        mode = script_name_fix_mode(script_name_fix)
        limit = int(response_buffer)
        if limit < 0:
            raise ValueError("response_buffer must be 0 (stream) or more bytes")
    except ValueError as exc:
        _write_error(response)
        sys.stderr.write(f"serve: error: {exc}\n")
        return 2

    def load() -> WSGIApp:
        _setup_path(chdir, pythonpath)
        from launcher.importer import import_app

        app = import_app(spec)
        if root_path:
            from launcher.middleware import RootPath

            mounted = RootPath(app, root_path)
            if mounted.prefix:
                app = mounted
        return app

    from launcher.errors import LauncherError

    try:
        return handle_request(load, response, script_name_fix=mode, response_buffer=limit)
    except LauncherError as exc:
        return _report(exc)
    except Exception as exc:  # e.g. a bad root_path (ValueError): one line, never a traceback
        sys.stderr.write(f"serve: error: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        return 1


def _setup_path(chdir: str, pythonpath: tuple[str, ...] | list[str]) -> None:
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            from launcher.errors import OptionError

            raise OptionError(f"chdir {chdir}: {exc.strerror}") from None
    for path in reversed(list(pythonpath)):
        full = os.path.abspath(path)
        if full not in sys.path:
            sys.path.insert(0, full)


def _report(exc: BaseException) -> int:
    """Like ``launcher.cli.report`` (not imported: the CLI is too heavy for a per-request start)."""
    from launcher.errors import AppImportError

    if isinstance(exc, AppImportError) and exc.part == "user-import" and exc.__cause__ is not None:
        import traceback

        cause = exc.__cause__
        sys.stderr.write("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)))
    sys.stderr.write(f"serve: error: {exc}\n")
    sys.stderr.flush()
    return int(getattr(exc, "exit_code", 1))


def _write_error(response: BinaryIO) -> None:
    try:
        response.write(_ERROR_RESPONSE)
        response.flush()
    except (OSError, ValueError):
        pass


def _empty_input() -> BinaryIO:
    import io

    return io.BytesIO(b"")


# --------------------------------------------------------------------------- wsgiref handler

_HANDLER: Any = None


def _handler_class() -> Any:
    """``BaseCGIHandler`` as ``CGIHandler`` configures it, holding the response back (built lazily)."""
    global _HANDLER
    if _HANDLER is not None:
        return _HANDLER
    from wsgiref.handlers import BaseCGIHandler

    class OneShotCGIHandler(BaseCGIHandler):
        # CGIHandler's settings: one request per process; the environ passed in is the whole CGI
        # environment already (read_environ()), so os.environ must not be merged in a second time.
        wsgi_run_once = True
        os_environ: dict[str, str] = {}
        error_status = ERROR_STATUS
        error_headers = [("Content-Type", "text/plain; charset=utf-8")]
        error_body = ERROR_BODY
        # set by wsgiref at run time (its stubs do not declare them)
        environ: Any
        headers: Any
        status: Any
        result: Any

        def __init__(self, stdin: Any, stdout: Any, stderr: Any, environ: dict[str, str], hold: int) -> None:
            super().__init__(stdin, stdout, stderr, environ, multithread=False, multiprocess=True)
            self.hold_limit = hold
            self.holding = hold > 0
            self.held: list[bytes] = []
            self.held_size = 0
            #: True once any byte of the response has left the process
            self.committed = False
            #: True when the app raised
            self.failed = False
            #: True while SIGTERM is blocked (released by handle_request once all is done)
            self.sigterm_held = False

        # -- holding the response back

        def send_headers(self) -> None:
            if self.holding:
                self.headers_sent = True  # serialised on release, when the body length is known
                return
            self.committed = True
            super().send_headers()

        def _write(self, data: bytes) -> None:
            if self.holding:
                self.held.append(data)
                self.held_size += len(data)
                if self.held_size > self.hold_limit:
                    self._release(complete=False)
                return
            self.committed = True
            if not self.sigterm_held and self._length_reached():
                # This block completes the declared body: the web server may stop the program as
                # soon as it has it, before the app's close() ran.  Hold SIGTERM back until then.
                import signal

                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                self.sigterm_held = True
            super()._write(data)

        def _flush(self) -> None:
            if not self.holding:
                self.stdout.flush()

        def close(self) -> None:
            # Called once the body is complete.  The app's close() runs *before* the held response
            # leaves: a web server that has the whole response stops the CGI program (lighttpd
            # sends SIGTERM), which would cut close() short.  If close() raises, nothing has left
            # yet and the answer is still a clean 500.
            if self.holding:
                result_close = getattr(self.result, "close", None)
                self.result = None  # closed here, not again by BaseHandler.close
                if result_close is not None:
                    result_close()
                self._release(complete=True)
                super().close()
                return
            super().close()

        def _release(self, *, complete: bool) -> None:
            self.holding = False
            body, self.held, self.held_size = self.held, [], 0
            if self.headers_sent:
                if complete and "Content-Length" not in self.headers and self._may_have_length():
                    self.headers["Content-Length"] = str(sum(len(block) for block in body))
                self.cleanup_headers()
                self.send_preamble()
                self._write(bytes(self.headers))
            for block in body:
                self._write(block)
            self._flush()

        def _length_reached(self) -> bool:
            length = self.headers.get("Content-Length") if self.headers is not None else None
            return bool(length and length.strip().isdigit() and self.bytes_sent >= int(length))

        def _may_have_length(self) -> bool:
            if (self.environ or {}).get("REQUEST_METHOD", "").upper() == "HEAD":
                return False  # the app may have sent no body; a length of 0 would be a lie
            code = str(self.status or "")[:3]
            return not (code.startswith("1") or code in ("204", "304"))

        # -- errors

        def handle_error(self) -> None:
            self.failed = True
            self.log_exception(sys.exc_info())
            if self.committed or self.environ is None:
                return  # part of the response has left: nothing better can be said now
            # Nothing was sent: forget what the app had produced and answer a plain 500.
            self.held, self.held_size = [], 0
            self.holding = self.hold_limit > 0
            self.headers_sent = False
            self.bytes_sent = 0
            self.result = self.error_output(self.environ, self.start_response)
            self.finish_response()

    _HANDLER = OneShotCGIHandler
    return _HANDLER


# --------------------------------------------------------------------------- the backend class

#: Launcher options that mean nothing for a program started once per request by the web server.
NOT_FOR_CGI = frozenset({
    "bind", "workers", "graceful_timeout", "backlog", "max_requests", "reload", "reload_dir",
    "reload_include", "reload_exclude", "ready_file", "user", "group", "allow_root",
})

_BACKEND: Any = None


def __getattr__(name: str) -> Any:
    # The registry imports "backends.cgi:CGIBackend"; the class (and backends.base, threading,
    # launcher.options with it) is only built then, keeping run_cgi's import path minimal.
    if name == "CGIBackend":
        return _backend_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _backend_class() -> type[Backend]:
    global _BACKEND
    if _BACKEND is not None:
        return _BACKEND  # type: ignore[no-any-return]

    from backends.base import LAUNCHER_OPTIONS, Backend
    from launcher.errors import OptionError, ServerError
    from launcher.options import Option

    class CGIBackend(Backend):
        """``serve --backend cgi APP``: the CGI program itself (see the module docstring)."""

        name = "cgi"
        extra = "cgi"
        protocol = "cgi"
        library = "wsgiref"
        distribution = "wsgi-launcher"  # the standard library's wsgiref: nothing to install
        min_version = ""
        supports = frozenset()
        option_spec = (
            Option("script_name_fix", "choice", "off",
                   "repair the SCRIPT_NAME/PATH_INFO split of the web server: strip (SCRIPT_NAME is the"
                   " script's own path after a rewrite) or lighttpd (app at '/': whole path in SCRIPT_NAME)",
                   choices=SCRIPT_NAME_FIXES),
            Option("response_buffer", "int", DEFAULT_RESPONSE_BUFFER,
                   "bytes of response held until the app finishes, so a late error is still a clean 500"
                   " (0: stream every block at once)", minimum=0, metavar="BYTES"),
        )
        takes_sockets = False  # the web server owns the connection: bind nothing
        drains_itself = True  # one request, answered before serve() returns: nothing to drain
        launcher_signals = False  # a web server's SIGTERM must end a CGI program at once
        load_in_workers = True  # import inside serve(), so an import error still gets its 500

        @classmethod
        def honoured(cls) -> frozenset[str]:
            return (LAUNCHER_OPTIONS - NOT_FOR_CGI) | cls.supports

        def check(self, opts: Any) -> None:
            pointless = sorted(name for name in opts.explicit if name in NOT_FOR_CGI)
            if pointless:
                flags = ", ".join("--" + n.replace("_", "-") for n in pointless)
                raise OptionError(
                    f"backend 'cgi' cannot honour {flags}: the web server starts it for each request and"
                    " talks to it over stdin/stdout, so it binds nothing and runs no workers"
                )
            super().check(opts)

        def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
            fixed = dict(raw)
            if "script_name_fix" in fixed:
                value = str(fixed["script_name_fix"]).strip().lower()
                fixed["script_name_fix"] = _FIX_ALIASES.get(value, value)
            return super().parse_backend_options(fixed)

        def serve(self, app: Any, opts: Any, listeners: list[Any], ready: Any) -> None:
            # load_in_workers: ``app`` is the launcher's loader (import + middleware), so the app
            # is imported only now, after stdout is protected.  Not in prepare(): `serve check`
            # calls prepare() too, and its report goes to stdout.
            response = protect_stdout()
            if not opts.is_set("log_level"):
                from launcher.log import logger

                logger.setLevel("WARNING")  # no "stopped" line per request in the web server's error log
            code = handle_request(
                app,
                response,
                script_name_fix=self.backend_options.get("script_name_fix", "off"),
                response_buffer=self.backend_options.get("response_buffer", DEFAULT_RESPONSE_BUFFER),
            )
            if code:
                raise ServerError("the CGI request failed (see above): the response was a 500, or was cut short")

    _BACKEND = CGIBackend
    return CGIBackend
