"""gunicorn: the pre-fork server, embedded through ``gunicorn.app.base.BaseApplication``.

Mapped (common option -> gunicorn setting): --workers -> workers (gunicorn's arbiter forks them),
--threads -> threads, --connections -> worker_connections, --timeout -> timeout, --graceful-timeout
-> graceful_timeout, --keepalive -> keepalive, --max-requests -> max_requests, --backlog -> backlog,
--limit-request-line/-fields/-field-size -> limit_request_line/_fields/_field_size (values
gunicorn's parser would clamp are refused), --limit-request-body ->
``launcher.middleware.BodyLimit`` around the app in each worker (requests that have a body),
--header-timeout -> the head timer and body read timeout below, --log-level -> loglevel (--log-format json puts
gunicorn's own lines in the launcher's JSON).  gunicorn's timeouts are whole seconds, so a
fractional one is rounded up (the arbiter's own stop deadline uses the exact --graceful-timeout).
--timeout keeps gunicorn's meaning: a worker that has not reported for that long is killed and
replaced, which with the sync worker is a request running that long (gthread and gevent workers
report while requests run).

``-o NAME=VALUE`` reaches any other gunicorn setting by its own name (``-o worker_class=gevent``,
``-o max_requests_jitter=50``, ``-o preload_app=true``...), checked by gunicorn's own validators; a
typo names the closest setting, and the settings the launcher owns name the common option to use
instead.  umask, user and group are applied by the launcher before serve(); gunicorn is told the
current ones so it does not switch again.

Worker class: gunicorn's rule, ``sync`` with more than one thread is ``gthread``, so the launcher's
default of 4 threads runs gthread.  An explicit ``-o worker_class=sync`` gets the real sync worker
(one thread), and a --threads the chosen class cannot use (sync, gevent, tornado) is an error, not
silently dropped.

Traps handled, and why:

* Request hygiene.  gunicorn drops header names with ``_`` (``header_map='drop'``): a
  ``Content_Length`` frames no body and the body is read as the next request (a hidden request
  reaches the app).  Each worker installs a ``gunicorn.http.message.Request`` subclass as
  ``RequestParser.mesg_class``: every read of the head goes through its ``read_into``, which keeps
  the bytes, and once gunicorn's parser has found the end of the head, ``parse()`` runs
  ``launcher.hygiene.check_raw_head`` on them exactly as they arrived (look-alikes, absolute-form,
  no Host...), raising one of gunicorn's client errors: 400 (501) with ``Connection: close``, and
  closed.  gunicorn 27's parser already refuses all the rest of the launcher's rules (the
  reliability corpus, run on gunicorn in CI, holds it to that), so a head with no "_" in it, an
  origin-form target and one plausible Host in gunicorn's parse needs no second look (older
  gunicorn releases get the full check on every head).
  The head must arrive within --header-timeout (the first read
  waits at most that long, each later one what is left; gthread's wait for a new connection's first
  bytes is cut to it), and the body's reads get it as their timeout (a stalled body fails the read
  instead of holding the worker).  On the blocking sockets of the sync and gthread workers the
  kernel times the reads (SO_RCVTIMEO, set once a connection): a Python socket timeout makes
  CPython poll() before every recv and send.  gunicorn's gevent_pywsgi (gevent_wsgi) and tornado
  workers parse with gevent.pywsgi's and tornado's parsers, not gunicorn's, where none of this
  applies: they are refused, naming --backend gevent / tornado, which serve those parsers checked.

* Sockets.  The launcher binds; gunicorn gets ``bind = ["fd://N"]`` with a dup of each listener,
  because gunicorn closes the fd it is given.  It would also unlink unix socket paths on exit: the
  arbiter here closes its sockets without unlinking, the launcher removes the files it created.
  LISTEN_FDS/LISTEN_PID are dropped so gunicorn's own systemd activation cannot add sockets.
* The control socket.  gunicorn >= 25.1 opens ``$XDG_RUNTIME_DIR/gunicorn.ctl`` or
  ``~/.gunicorn/gunicorn.ctl``, one path shared by every instance of the user, so two servers
  answer each other's ``gunicornc``: it is off (``-o control_socket=PATH`` turns it on at PATH).
  The dirty-arbiter pid file is named after the process name, so that name is made per instance.
* Proxy headers are the launcher's middleware: gunicorn's forwarded_allow_ips is emptied and its
  secure_scheme_headers / forwarder_headers too, since gunicorn trusts every unix-socket peer
  whatever forwarded_allow_ips says (X-Forwarded-Proto would rewrite wsgi.url_scheme, a
  ``SCRIPT_NAME`` header the mount point).  No gunicorn access log: --access-log is the launcher's.
  gunicorn also takes SCRIPT_NAME from the process environment: it is removed.
* Import order.  The app is imported by each worker after fork (``load_in_workers``), so a gevent
  worker has patched before the app is imported.  ``-o preload_app=true`` imports it once in the
  arbiter instead, which with gevent imports before patching and silently serialises requests:
  that combination is refused.
* Readiness.  ``when_ready`` runs in the arbiter before any worker has imported the app, so the
  ready file would precede a failing import.  Each worker reports from ``post_worker_init`` (app
  imported, about to accept) through a pipe; the arbiter announces once every initial worker has,
  and gunicorn's own early ``READY=1`` to systemd is suppressed until then.
* Signals.  gunicorn treats SIGINT as a quick shutdown that drops in-flight requests; here the
  first SIGINT drains like SIGTERM (workers ignore SIGINT, so Ctrl-C to the process group drains
  too) and a second one kills the workers and exits 130 at once.  SIGUSR2 (re-exec of the
  command line) cannot work under the launcher and is ignored with a warning; SIGHUP reloads
  (fresh workers re-import the app), SIGTTIN/SIGTTOU change the worker count as in gunicorn.
* Draining.  gunicorn never tells systemd STOPPING=1 and knows nothing of --health-path: the
  arbiter sends STOPPING=1 to NOTIFY_SOCKET when its stop begins, and each worker chains its
  SIGTERM and SIGQUIT handlers (installed by gunicorn before ``post_worker_init``) so the
  launcher's ``draining`` flag is set the moment the arbiter tells it to stop: /healthz then
  answers 503.
  (gthread answers requests on kept-alive connections with ``Connection: close`` meanwhile.)
* Stop accepting.  gunicorn's gevent worker looks at its stop flag once a second and serves new
  connections until then: its servers are closed as soon as the flag drops.  (The sync worker
  has no keep-alive and takes one request at a time: connections still waiting in the listen
  backlog at SIGTERM are not in flight and are reset, as with gunicorn itself.)
* Cut-off requests.  gunicorn exits 0 even when its graceful timeout killed workers with requests
  in flight.  Each worker publishes its count of running requests in a shared memory slot (a
  request counts until its response iterable is closed; one ended by a kill stays counted), and the
  arbiter adds up the slots of the workers it was stopping once they are gone: ``cut_off``.
* Forked children.  gunicorn forks its workers from deep inside ``Arbiter.run`` and they leave with
  ``sys.exit``, which would unwind into the launcher and run its clean-up in the worker (removing
  the unix socket file the arbiter still serves on): a child ends with ``os._exit`` in serve().
* Failures.  The arbiter ends with ``sys.exit``: serve() catches it.  An app that fails to import
  in the workers halts gunicorn (APP_LOAD_ERROR, no respawn loop); the worker prints the user's own
  traceback if any and hands the importer's message to the arbiter, which raises it as
  :class:`~launcher.errors.AppImportError`, printed once by the CLI (exit code 4).  (With several
  workers failing, gunicorn's own stop would halt again mid-halt with a traceback: not here.)
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time

from backends.base import Backend
from launcher.errors import AppImportError, LauncherError, OptionError, ServerError
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import mmap
    from collections.abc import Callable, Iterable
    from typing import Any, NoReturn

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: gunicorn settings the launcher sets from its common options: the option to use instead.
OWNED = {
    "bind": "--bind",
    "backlog": "--backlog",
    "workers": "--workers",
    "threads": "--threads",
    "worker_connections": "--connections",
    "timeout": "--timeout",
    "graceful_timeout": "--graceful-timeout",
    "keepalive": "--keepalive",
    "max_requests": "--max-requests",
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "limit_request_field_size": "--limit-request-field-size",
    "user": "--user",
    "group": "--group",
    "initgroups": "--user and --group",
    "umask": "--umask",
    "chdir": "--chdir",
    "pythonpath": "--pythonpath",
    "reload": "--reload",
    "reload_engine": "--reload",
    "reload_extra_files": "--reload",
    "loglevel": "--log-level",
    "accesslog": "--access-log",
    "access_log_format": "--access-log-format",
    "disable_redirect_access_to_syslog": "--access-log",
    "forwarded_allow_ips": "--forwarded-allow-ips (with --proxy-headers)",
    "secure_scheme_headers": "--proxy-headers",
    "forwarder_headers": "--proxy-headers",
    "root_path": "--root-path",
}

#: gunicorn settings that cannot work when gunicorn is embedded by the launcher, and why.
REFUSED = {
    "config": "the launcher reads serve.toml or [tool.serve], not gunicorn.conf.py",
    "wsgi_app": "the app is the APP argument of serve",
    "paste": "the app is the APP argument of serve",
    "raw_paste_global_conf": "the app is the APP argument of serve",
    "daemon": "run serve in the foreground under a process manager",
    "check_config": "use `serve check`",
    "print_config": "gunicorn's command line only",
    "spew": "gunicorn's command line only",
    "reuse_port": "the launcher binds the sockets once and hands them to gunicorn",
    "control_socket_disable": "the control socket is off already; -o control_socket=PATH turns it on at PATH",
    "protocol": "this backend speaks HTTP; use --backend uwsgi for the uwsgi protocol",
    "uwsgi_allow_ips": "this backend speaks HTTP; use --backend uwsgi for the uwsgi protocol",
    "asgi_loop": "ASGI only; the launcher serves WSGI apps",
    "asgi_lifespan": "ASGI only; the launcher serves WSGI apps",
    "asgi_disconnect_grace_period": "ASGI only; the launcher serves WSGI apps",
    "websocket_max_message_size": "ASGI only; the launcher serves WSGI apps",
}

#: The sync worker: one request at a time per process, so one thread.
SYNC_CLASSES = frozenset({"sync", "gunicorn.workers.sync.SyncWorker"})
#: The threaded worker: --threads requests at a time per process.
THREAD_CLASSES = frozenset({"gthread", "gunicorn.workers.gthread.ThreadWorker"})
#: Built-in worker classes --threads means nothing to, and the library each needs.
NO_THREAD_CLASSES = {
    "gevent": "gevent",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
}
ASGI_CLASSES = frozenset({"asgi", "gunicorn.workers.gasgi.ASGIWorker"})
#: Built-in worker classes that parse requests with another server's parser, where the launcher's
#: request checks, limits and head timer (on gunicorn's parser) do not reach: the backend that
#: serves that parser with them.
OTHER_PARSERS = {
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "tornado": "tornado",
    "gunicorn.workers.gtornado.TornadoWorker": "tornado",
}

#: The most gunicorn's parser allows (gunicorn.http.message): larger values are clamped.
MAX_REQUEST_LINE = 8190
MAX_HEADERS = 32768
MAX_FIELD_SIZE = 8190
#: Exit codes of gunicorn's arbiter (gunicorn.arbiter.Arbiter).
WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4
#: Shared-memory slots, one per live worker, holding its count of running requests.
SLOTS = 1024
SLOT_SIZE = 8


def _whole_seconds(seconds: float) -> int:
    """gunicorn's timeouts are whole seconds: round up, so 0.5 s does not become "off" (0)."""
    return math.ceil(seconds)


def _is_gevent(worker_class: str, cfg: Any) -> bool:
    """Whether the worker class is gunicorn's gevent worker or a subclass of it."""
    if worker_class in NO_THREAD_CLASSES:
        return NO_THREAD_CLASSES[worker_class] == "gevent"
    if "." not in worker_class:
        return False
    return any(klass.__module__ == "gunicorn.workers.ggevent" for klass in cfg.worker_class.__mro__)


class GunicornBackend(Backend):
    name = "gunicorn"
    extra = "gunicorn"
    protocol = "http"
    library = "gunicorn"
    distribution = "gunicorn"
    min_version = "23.0.0"
    supports = frozenset({
        "threads", "connections", "timeout", "keepalive",
        "limit_request_line", "limit_request_fields", "limit_request_field_size", "limit_request_body",
        "header_timeout",
    })
    native_workers = True
    drains_itself = True
    launcher_signals = False
    load_in_workers = True

    def __init__(self) -> None:
        super().__init__()
        self._arbiter: Any = None

    # ------------------------------------------------------------------ options

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Check each ``-o`` key and value with gunicorn's own setting and validator.

        Returns the values as given (gunicorn's validators are not all idempotent), so they are
        set on the real config as they were checked.
        """
        from gunicorn.config import make_settings

        known = make_settings()
        parsed: dict[str, Any] = {}
        for key, value in raw.items():
            if key in OWNED:
                raise OptionError(f"-o {key}: set it with {OWNED[key]}, the launcher's common option")
            if key in REFUSED:
                raise OptionError(f"-o {key}: not available when the launcher runs gunicorn: {REFUSED[key]}")
            setting = known.get(key)
            if setting is None:
                raise OptionError(f"-o {key}: not a gunicorn setting{closest(key, known)}")
            value = _friendly_value(setting, value)
            try:
                setting.set(value)
            except Exception as exc:  # gunicorn's validators raise ValueError, TypeError, ConfigError...
                raise OptionError(f"-o {key}={value}: {exc}") from None
            parsed[key] = value
        return parsed

    def check(self, opts: ServeOptions) -> None:
        super().check(opts)
        # gunicorn's parser clamps its limits: a value it would silently change is an error.
        if opts.limit_request_line > MAX_REQUEST_LINE:
            raise OptionError(f"--limit-request-line {opts.limit_request_line}: gunicorn allows at most"
                              f" {MAX_REQUEST_LINE} (0: no limit)")
        if opts.limit_request_fields > MAX_HEADERS:
            raise OptionError(f"--limit-request-fields {opts.limit_request_fields}: gunicorn allows at most"
                              f" {MAX_HEADERS}")
        if opts.is_set("limit_request_field_size") and opts.limit_request_field_size == 0:
            raise OptionError("--limit-request-field-size 0: gunicorn cannot lift this limit (it would use"
                              f" {MAX_FIELD_SIZE}); give a size in bytes")
        self.build_config(opts)  # contradictions between options are errors before anything starts

    def settings(self, opts: ServeOptions, binds: list[str] | None = None) -> dict[str, Any]:
        """Every gunicorn setting this backend sets, by gunicorn's name (values as its validators take)."""
        worker_class, threads = self._worker_class(opts)
        settings: dict[str, Any] = {
            "workers": opts.workers,
            "threads": threads,
            "worker_connections": opts.connections,
            "backlog": opts.backlog,
            "timeout": _whole_seconds(opts.timeout),
            "graceful_timeout": _whole_seconds(opts.graceful_timeout),
            "keepalive": _whole_seconds(opts.keepalive),
            "max_requests": opts.max_requests,
            "limit_request_line": opts.limit_request_line,
            # 0 ("no limit") is gunicorn's own most, 32768 fields
            "limit_request_fields": opts.limit_request_fields or MAX_HEADERS,
            "limit_request_field_size": opts.limit_request_field_size or MAX_FIELD_SIZE,
            # The launcher already switched user and group: gunicorn must not try again (its
            # defaults were read when gunicorn.config was imported, maybe still as root).
            "user": os.geteuid(),
            "group": os.getegid(),
            # Proxy headers and the access log are the launcher's middleware.
            "forwarded_allow_ips": "",
            "secure_scheme_headers": {},
            "forwarder_headers": "",
            "accesslog": None,
            "loglevel": opts.log_level,
            # One control socket per user is shared by every instance: none by default.
            "control_socket_disable": "control_socket" not in self.backend_options,
            # The dirty arbiter's pid file is named after it, in the shared temp dir.
            "default_proc_name": f"serve-gunicorn-{os.getpid()}",
        }
        if worker_class is not None:
            settings["worker_class"] = worker_class
        if binds is not None:
            settings["bind"] = binds
        settings.update(self.backend_options)
        return settings

    def _worker_class(self, opts: ServeOptions) -> tuple[str | None, int]:
        """The worker class to ask for (None: gunicorn's rule) and the thread count it gets."""
        raw = self.backend_options.get("worker_class")
        threads = opts.threads
        if raw is None:
            return None, threads  # sync, or gthread with more than one thread: gunicorn's rule
        worker_class = str(raw).strip()
        explicit = opts.is_set("threads") and threads > 1
        if worker_class in ASGI_CLASSES:
            raise OptionError(f"-o worker_class={worker_class} runs ASGI apps; the launcher serves WSGI apps")
        if worker_class in OTHER_PARSERS:
            other = OTHER_PARSERS[worker_class]
            hint = " or -o worker_class=gevent" if other == "gevent" else ""
            raise OptionError(
                f"-o worker_class={worker_class} parses requests with {other}'s own parser, which the launcher's"
                f" request checks do not cover: use --backend {other} (checked){hint}"
            )
        if worker_class in SYNC_CLASSES:
            if explicit:
                raise OptionError(
                    f"-o worker_class=sync runs one request at a time per worker; --threads {threads} needs"
                    " gthread: drop -o worker_class=sync (or use -o worker_class=gthread)"
                )
            return worker_class, 1
        if worker_class in THREAD_CLASSES:
            return worker_class, threads
        library = NO_THREAD_CLASSES.get(worker_class)
        if library is not None:
            if explicit:
                raise OptionError(
                    f"-o worker_class={worker_class} does not use threads; remove --threads {threads}"
                    " (--connections sets how many requests one worker serves at once)"
                )
            import importlib.util

            if importlib.util.find_spec(library) is None:
                raise OptionError(f"-o worker_class={worker_class} needs {library}: pip install {library}")
            return worker_class, 1
        self._load_worker_class(worker_class)
        return worker_class, threads

    @staticmethod
    def _load_worker_class(worker_class: str) -> None:
        from gunicorn import util
        from gunicorn.workers import SUPPORTED_WORKERS

        try:
            util.load_class(worker_class)
        except (RuntimeError, ImportError) as exc:
            hint = closest(worker_class, SUPPORTED_WORKERS) if "." not in worker_class else ""
            detail = "" if "." not in worker_class else f" ({str(exc).strip().splitlines()[-1]})"
            raise OptionError(
                f"-o worker_class={worker_class}: not a gunicorn worker class{hint}{detail}; use one of "
                f"{', '.join(sorted(set(SUPPORTED_WORKERS) - ASGI_CLASSES - set(OTHER_PARSERS)))} or a module.Class"
                " path"
            ) from None

    def build_config(self, opts: ServeOptions, binds: list[str] | None = None) -> Any:
        """The ``gunicorn.config.Config`` this backend runs with (``binds``: ``fd://N`` addresses)."""
        from gunicorn.config import Config

        cfg = Config()
        for key, value in self.settings(opts, binds).items():
            if key not in cfg.settings:
                continue  # an older gunicorn without this setting (the control socket came in 25.1)
            try:
                cfg.set(key, value)
            except Exception as exc:
                raise OptionError(f"gunicorn setting {key}={value!r}: {exc}") from None
        try:
            cfg.validate()
        except Exception as exc:
            raise OptionError(f"gunicorn: {exc}") from None
        if cfg.preload_app and _is_gevent(cfg.worker_class_str, cfg):
            raise OptionError(
                f"-o preload_app=true with -o worker_class={cfg.worker_class_str} imports the app before gevent"
                " patches, so requests silently run one at a time: drop one of them"
            )
        return cfg

    # ------------------------------------------------------------------ running

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        arbiter_cls, application_cls = _gunicorn_classes()
        # gunicorn would take sockets from systemd activation on top of ours, and apply a
        # SCRIPT_NAME from the environment to every request.
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "SCRIPT_NAME"):
            os.environ.pop(key, None)
        # gunicorn closes the fd it is given: give it a duplicate, the launcher keeps its own.
        fds = [os.dup(listener.sock.fileno()) for listener in listeners]
        runtime = _Runtime(self, opts, [f"fd://{fd}" for fd in fds], app, lambda: ready(listeners))
        # gunicorn tells systemd READY=1 before any worker has imported the app: hide the socket.
        runtime.notify_socket = os.environ.pop("NOTIFY_SOCKET", None)
        try:
            application = application_cls(runtime)
            arbiter = arbiter_cls(application)
            self._arbiter = arbiter
            try:
                arbiter.run()
                code: Any = 0
            except BaseException as exc:
                if os.getpid() != runtime.master_pid:
                    _leave_worker(exc)  # a forked worker unwinding: never run the launcher's clean-up
                if isinstance(exc, _SecondInterrupt):
                    raise KeyboardInterrupt from None  # the CLI exits 130, as on a second SIGINT elsewhere
                if not isinstance(exc, SystemExit):
                    raise
                code = exc.code
        finally:
            self._arbiter = None
            if not runtime.fds_taken:
                for fd in fds:  # gunicorn failed before taking (and closing) them
                    os.close(fd)
            runtime.poll_messages()
            runtime.close()
        self._raise_for_exit(code, runtime)

    def _raise_for_exit(self, code: Any, runtime: _Runtime) -> None:
        if code in (0, None):
            return
        if runtime.load_error is not None:
            raise runtime.load_error
        if code == APP_LOAD_ERROR:
            raise ServerError("gunicorn stopped: the app failed to load in a worker (see the messages above)")
        if code == WORKER_BOOT_ERROR:
            raise ServerError("gunicorn stopped: a worker failed to boot (see the messages above)")
        raise ServerError(f"gunicorn stopped with exit code {code} (see the messages above)")

    def stop(self, timeout: float) -> None:
        """Graceful stop from Python: the arbiter drains on SIGTERM by itself."""
        if self._arbiter is not None:
            os.kill(os.getpid(), signal.SIGTERM)


def _leave_worker(exc: BaseException) -> NoReturn:
    """End a worker (or gunicorn's dirty arbiter) whose ``sys.exit`` unwound into serve().

    gunicorn forks from deep inside ``Arbiter.run`` and its children leave with ``sys.exit``.
    Letting that propagate would run the launcher's clean-up in the child: removing the unix
    socket file the arbiter still serves on, logging "stopped".  Exit as gunicorn's own command
    would, minus that: flush, run the atexit functions, leave.
    """
    import atexit

    code = exc.code if isinstance(exc, SystemExit) else 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _friendly_value(setting: Any, value: Any) -> Any:
    """Accept the launcher's spellings for gunicorn's booleans and JSON for its dictionaries."""
    from gunicorn import config

    if not isinstance(value, str):
        return value
    if setting.validator is config.validate_bool:
        low = value.strip().lower()
        if low in ("1", "yes", "on", "true"):
            return "true"
        if low in ("0", "no", "off", "false"):
            return "false"
    if setting.validator is config.validate_dict and value.strip().startswith("{"):
        import json

        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --------------------------------------------------------------------------- shared state


class _SecondInterrupt(BaseException):
    """A second SIGINT during the drain: leave the arbiter at once (not an Exception, which
    gunicorn's main loop would catch)."""


class _Runtime:
    """What the arbiter and its workers share: the worker -> arbiter pipe and the slots."""

    def __init__(self, backend: GunicornBackend, opts: ServeOptions, binds: list[str], loader: Any,
                 announce: Callable[[], None]) -> None:
        import mmap

        self.backend = backend
        self.opts = opts
        self.binds = binds
        self.loader = loader
        self.announce = announce
        self.master_pid = os.getpid()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)  # a worker never waits on the arbiter
        self.slots: mmap.mmap = mmap.mmap(-1, SLOTS * SLOT_SIZE)  # anonymous and shared across fork
        self.slot = -1  # this process's slot (set in the arbiter just before each fork)
        self.ready_pids: set[int] = set()
        self.announced = False
        self.load_error: LauncherError | None = None
        #: the request counter (made with the config, in the arbiter: each worker has its own copy)
        self.counter: _Counter | None = None
        #: systemd's NOTIFY_SOCKET, hidden from gunicorn's start() (put back right after it)
        self.notify_socket: str | None = None
        #: gunicorn made its listeners from the fd:// duplicates (and closed those numbers)
        self.fds_taken = False
        self._buffer = b""

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.slots.close()

    # -- slots: each worker writes its own, the arbiter reads

    def read_slot(self, slot: int) -> int:
        if not 0 <= slot < SLOTS:
            return 0
        return int.from_bytes(self.slots[slot * SLOT_SIZE:(slot + 1) * SLOT_SIZE], sys.byteorder, signed=True)

    def write_slot(self, slot: int, value: int) -> None:
        if 0 <= slot < SLOTS:
            self.slots[slot * SLOT_SIZE:(slot + 1) * SLOT_SIZE] = value.to_bytes(SLOT_SIZE, sys.byteorder, signed=True)

    # -- messages from the workers (one line each, shorter than PIPE_BUF so never interleaved)

    def send(self, kind: str, payload: str = "") -> None:
        line = f"{kind} {os.getpid()} {payload}".encode("utf-8", "replace")[:3500].replace(b"\n", b" ") + b"\n"
        try:
            os.write(self.write_fd, line)
        except OSError:
            pass

    def poll_messages(self) -> None:
        import json

        try:
            while True:
                chunk = os.read(self.read_fd, 65536)
                if not chunk:
                    break
                self._buffer += chunk
        except (BlockingIOError, InterruptedError, OSError):
            pass
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            kind, _, rest = line.decode("utf-8", "replace").partition(" ")
            pid_text, _, payload = rest.partition(" ")
            if kind == "ready" and pid_text.isdigit() and not self.announced:
                self.ready_pids.add(int(pid_text))
            elif kind == "error" and self.load_error is None:
                try:
                    data = json.loads(payload)
                except ValueError:
                    data = {"message": payload}
                message = str(data.get("message") or "the app failed to load in a worker")
                if data.get("kind") == "AppImportError":
                    self.load_error = AppImportError(message, str(data.get("part") or "spec"))
                else:
                    self.load_error = ServerError(message)

    # -- in the workers

    def load(self) -> WSGIApp:
        """Import and wrap the app (in each worker, or once in the arbiter with preload_app)."""
        if os.getpid() == self.master_pid:
            app = self.loader()  # preload_app: an error propagates out of the arbiter's construction
        else:
            try:
                app = self.loader()
            except LauncherError as exc:
                self._report_load_error(exc)
                sys.exit(APP_LOAD_ERROR)  # the arbiter halts instead of respawning forever
        return _Counter.wrap(app, self.opts.limit_request_body)

    def _report_load_error(self, exc: LauncherError) -> None:
        import json

        cause = exc.__cause__
        if isinstance(exc, AppImportError) and exc.part == "user-import" and cause is not None:
            import traceback

            # The user's own traceback, as the CLI prints it in the single-process path.
            text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
            sys.stderr.write(text.rstrip() + "\n")
            sys.stderr.flush()
        self.send("error", json.dumps({
            "kind": type(exc).__name__,
            "part": getattr(exc, "part", ""),
            "message": str(exc)[:3000],  # the whole line must stay under PIPE_BUF
        }))

    def worker_ready(self, worker: Any) -> None:
        _install_hygiene(self.opts.header_timeout, worker.cfg.proxy_protocol != "off")
        # The arbiter drains on the first SIGINT; a worker must not quit mid-request when Ctrl-C
        # reaches the whole process group (gunicorn's worker treats SIGINT as "quit now").
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _drain_on_stop(self.counter)
        ggevent = sys.modules.get("gunicorn.workers.ggevent")
        if ggevent is not None and isinstance(worker, ggevent.GeventWorker):
            _stop_accepting_promptly(worker)
        self.send("ready")


def _install_hygiene(header_timeout: float, proxy_protocol: bool = False) -> None:
    """In this worker: gunicorn's HTTP/1 parser makes its requests with :class:`_hygiene_request`
    (the launcher's head check, head timer and body read timeout); gthread's wait for a new
    connection's first bytes is cut to --header-timeout."""
    from gunicorn.http.parser import RequestParser

    RequestParser.mesg_class = _hygiene_request(header_timeout, proxy_protocol)
    gthread = sys.modules.get("gunicorn.workers.gthread")
    if gthread is not None and header_timeout > 0:
        wait = min(gthread.DEFAULT_WORKER_DATA_TIMEOUT, header_timeout)
        gthread.DEFAULT_WORKER_DATA_TIMEOUT = wait  # type: ignore[attr-defined]


def _hygiene_request(header_timeout: float, proxy_protocol: bool = False) -> type[Any]:
    """A gunicorn Request that runs :func:`launcher.hygiene.check_raw_head` on the raw head, the
    bytes exactly as they were read, once gunicorn's parser has found where the head ends and before
    the request goes any further (``header_map='drop'`` drops ``Content_Length``, which would frame
    no body and serve the body as the next request).  A refused head raises one of gunicorn's client
    errors: the worker answers 400 (501) with ``Connection: close`` and closes, and nothing behind
    it is parsed.  gunicorn enforces the line and field limits itself.

    Every read of the head goes through :meth:`read_into`, which keeps what it read (gunicorn's
    parser reads and splits the head once; reading it ahead and handing it back cost ~7 us a
    request) and holds the head to --header-timeout: the first read waits at most that long, each
    later one only what is left of it.  Bodies are then read with --header-timeout as the socket
    timeout, so a stalled body ends the request instead of holding the worker."""

    from gunicorn.http import errors
    from gunicorn.http.message import Request

    from launcher.hygiene import COMMON_HEAD, HOST_RE, Limits, check_raw_head

    plain_host = HOST_RE.match
    # The shortcut below leans on gunicorn's own parser: only on the version the corpus was run on.
    import gunicorn

    trusted_parser = tuple(gunicorn.version_info[:2]) >= (27, 0)

    def one_plain_host(headers: list[tuple[str, str]]) -> bool:
        """Exactly one Host field among gunicorn's parsed headers (names upper-cased), with a value
        the launcher's rules accept; False sends the head to the full check, which decides."""
        host = None
        for name, value in headers:
            if name == "HOST":
                if host is not None:
                    return False
                host = value
        return host is not None and plain_host(host) is not None

    limits = Limits(0, 0, 0)  # gunicorn's parser applies --limit-request-line/-fields/-field-size
    fullmatch = COMMON_HEAD.fullmatch  # with no limits of ours, the pattern alone is is_common_head
    expired = "request head not received within --header-timeout"

    class Refused(errors.InvalidHeader):  # type: ignore[misc]
        def __init__(self, reason: str) -> None:
            super().__init__(reason)
            self.reason = reason

        def __str__(self) -> str:
            return self.reason

    class NotImplementedCoding(errors.UnsupportedTransferCoding):  # type: ignore[misc]
        pass

    class HygieneRequest(Request):  # type: ignore[misc]
        #: the socket whose reads of this head are timed (None: not timed), and their deadline
        _launcher_sock: Any = None
        _launcher_deadline = 0.0
        #: whether the kernel times this socket's reads (SO_RCVTIMEO), not Python's socket timeout
        _launcher_kernel = False
        #: whether a later read of the head shortened the timeout (put back once the head is in)
        _launcher_shortened = False
        #: every piece of data read while gunicorn parses the head (None: not kept)
        _launcher_read: list[bytes] | None = None

        def parse(self, unreader: Any) -> Any:
            if proxy_protocol and self.req_number == 1:
                return super().parse(unreader)  # the PROXY line first: gunicorn's parser only
            timing = getattr(unreader, "_launcher_timing", None)
            if timing is None:
                timing = unreader._launcher_timing = _head_timing(unreader, header_timeout)
            if timing:
                sock = self._launcher_sock = unreader.sock
                if timing is _KERNEL:
                    self._launcher_kernel = True
                elif sock.gettimeout() != header_timeout:
                    sock.settimeout(header_timeout)  # gevent's sockets: a timeout of their own
            read: list[bytes] = []
            self._launcher_read = read
            rest = super().parse(unreader)
            self._launcher_read = None
            data = read[0] if len(read) == 1 else b"".join(read)
            begin = 2 if data[:2] == b"\r\n" else 0  # one CRLF may come before the request line
            end = data.find(b"\r\n\r\n", begin)
            head = data[begin:end + 4] if end >= 0 else data[begin:]
            # gunicorn's parser has already refused what the launcher's rules refuse but four things
            # (tests/reliability/README.md): an origin-form target and one plausible Host are read
            # off its parse; an "_" anywhere in the head (a name gunicorn dropped may have posed as a
            # standard one) sends the head to the launcher's own check, one C-level match for the
            # common head, else the full rules.  The match on every head cost ~2 us a request here.
            rejection = None
            if not trusted_parser or b"_" in head or self.uri[:1] != "/" or not one_plain_host(self.headers):
                rejection = None if fullmatch(head) is not None else check_raw_head(head, limits)
            if rejection is not None:
                self.must_close = True
                if rejection.status == 501:
                    raise NotImplementedCoding(rejection.reason)
                raise Refused(rejection.reason)
            if self._launcher_shortened:
                self._launch_timeout(header_timeout)  # the body's reads, and the next head's first
            return rest

        def _launch_timeout(self, seconds: float) -> None:
            if self._launcher_kernel:
                _receive_timeout(self._launcher_sock, seconds)
            else:
                self._launcher_sock.settimeout(seconds)

        def read_into(self, unreader: Any, buf: bytearray, stop: bool = False) -> None:
            # gunicorn's own, plus the head timer and keeping what was read.
            if self._launcher_sock is not None:
                if self._launcher_deadline:  # a later read of this head: only what is left
                    remaining = self._launcher_deadline - time.monotonic()
                    if remaining <= 0:
                        raise StopIteration(expired)
                    self._launch_timeout(remaining)
                    self._launcher_shortened = True
                else:  # the first read already waits at most --header-timeout
                    self._launcher_deadline = time.monotonic() + header_timeout
            try:
                data = unreader.read()
            except (TimeoutError, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO ran out
                raise StopIteration(expired) from None
            if not data:
                if stop:
                    raise StopIteration()
                raise errors.NoMoreData(bytes(buf))
            buf.extend(data)
            read = self._launcher_read
            if read is not None:
                read.append(data)

    return HygieneRequest


_KERNEL, _PYTHON = "kernel", "python"


def _head_timing(unreader: Any, header_timeout: float) -> str:
    """How a connection's head and body reads are timed, decided at its first request: "" (not
    timed), _KERNEL or _PYTHON.  A blocking stdlib socket (sync, gthread) is timed by the kernel,
    SO_RCVTIMEO set here once: a Python socket timeout makes CPython poll() before every recv and
    send, and gthread switches the socket back to blocking for each request, so it cost a
    settimeout and two polls a request (~4 us).  gevent's sockets (and SSL's) keep their own
    timeouts (settimeout)."""
    sock: Any = getattr(unreader, "sock", None)
    if header_timeout <= 0 or sock is None or not hasattr(sock, "settimeout"):
        return ""
    if type(sock).__module__ == "socket":  # the stdlib's socket (not gevent's, nor SSL's)
        _receive_timeout(sock, header_timeout)
        return _KERNEL
    return _PYTHON


def _receive_timeout(sock: Any, seconds: float) -> None:
    """SO_RCVTIMEO: a blocking read of ``sock`` fails (EAGAIN) after ``seconds``."""
    import struct

    whole = int(seconds)
    micro = int((seconds - whole) * 1_000_000)
    if not whole and not micro:
        micro = 1  # zero would mean "no timeout"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micro))


def _drain_on_stop(counter: _Counter | None) -> None:
    """As soon as this worker's stop begins (the arbiter tells each worker with SIGTERM, or SIGQUIT
    for a quick stop): set the launcher's ``draining`` flag, so --health-path answers 503 from then
    on, and have the counter keep the worker's slot up to date.  gunicorn's own handlers, which
    ``init_signals`` installed before ``post_worker_init``, run after."""
    from backends.base import set_on_signals
    from launcher.drain import draining

    def stopping() -> None:
        draining.set()
        if counter is not None:
            counter.start_publishing()

    set_on_signals(stopping, (signal.SIGTERM, signal.SIGQUIT))
    # As gunicorn's init_signals: the stop must not interrupt system calls of running requests.
    signal.siginterrupt(signal.SIGTERM, False)


def _stop_accepting_promptly(worker: Any) -> None:
    """Make a gevent worker stop accepting as soon as it is told to stop.

    gunicorn's gevent worker looks at its ``alive`` flag once a second, and keeps accepting (and
    serving) new connections until then.  Its servers are local to its ``run()``: note them as
    they start, and close them from a greenlet that watches the flag more often.  (The worker
    closes them again after its loop, which gevent allows.)
    """
    import gevent
    from gevent.baseserver import BaseServer

    started: list[Any] = []
    original = BaseServer.start

    def start(server: Any) -> None:
        started.append(server)
        original(server)

    BaseServer.start = start  # this worker process only

    def watch() -> None:
        while worker.alive:
            gevent.sleep(0.05)
        for server in started:
            server.close()

    gevent.spawn(watch)


class _Counter:
    """One worker's running requests, left in its slot for the arbiter to read once it is gone.

    A request counts from gunicorn's ``pre_request`` hook to its ``post_request`` hook, which
    gunicorn calls for every request anyway (its defaults: a debug log line and nothing), so
    counting adds no call of its own: two C-level steps, as :class:`launcher.drain.InFlight`
    counts.  ``post_request`` runs in a ``finally``: while a GreenletExit or SystemExit passes
    through (the worker is being stopped, the request cut off), ``sys.exc_info()`` shows it and the
    request stays counted; so does one whose thread died with the process.  The slot is written only
    once the worker is told to stop (:meth:`start_publishing`, from its SIGTERM/SIGQUIT handler), and
    from then on at every begin and end, under a lock: it holds the running requests whenever the
    worker exits or is killed.  Writing it at every request, as before, cost ~1.5 us a request, and
    wrapping every response to see its end ~0.5 us.

    ``--limit-request-body`` (:class:`launcher.middleware.BodyLimit`) is applied by :meth:`wrap`,
    only to a request that has a body (Content-Length or Transfer-Encoding: gunicorn frames no
    other body), so a GET pays one dictionary look-up for it.
    """

    def __init__(self, runtime: _Runtime) -> None:
        from launcher.drain import InFlight

        self.runtime = runtime
        self.inflight = InFlight()
        self.begin, self.end = self.inflight.begin, self.inflight.end
        self.lock = threading.RLock()  # re-entered when the stop signal lands inside publish()
        #: whether every begin and end writes the slot (once the worker is stopping)
        self.publishing = False

    def publish(self) -> None:
        with self.lock:
            self.runtime.write_slot(self.runtime.slot, self.inflight.active)

    def start_publishing(self) -> None:
        self.publishing = True
        self.publish()

    def pre_request(self, worker: Any, req: Any) -> None:
        self.begin()
        if self.publishing:
            self.publish()

    def post_request(self, worker: Any, req: Any, environ: Any, resp: Any) -> None:
        error = sys.exc_info()[1]
        if error is None or isinstance(error, Exception):
            self.end()
            if self.publishing:
                self.publish()

    @staticmethod
    def wrap(app: WSGIApp, body_limit: int = 0) -> WSGIApp:
        from launcher.middleware import BodyLimit

        if body_limit <= 0:
            return app
        limited = BodyLimit(app, body_limit)

        def body_limited(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if "CONTENT_LENGTH" in environ or "HTTP_TRANSFER_ENCODING" in environ:
                return limited(environ, start_response)
            result: Iterable[bytes] = app(environ, start_response)
            return result

        body_limited.__wrapped__ = app  # type: ignore[attr-defined]
        return body_limited


# --------------------------------------------------------------------------- gunicorn subclasses

_CLASSES: tuple[type[Any], type[Any]] | None = None


def _gunicorn_classes() -> tuple[type[Any], type[Any]]:
    """The Arbiter and BaseApplication subclasses, defined on first use (gunicorn imported lazily)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _define_classes()
    return _CLASSES


def _define_classes() -> tuple[type[Any], type[Any]]:
    import queue
    import time

    from gunicorn import sock
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer

    class LauncherApplication(BaseApplication):  # type: ignore[misc]
        def __init__(self, runtime: _Runtime) -> None:
            self.runtime = runtime
            super().__init__(prog="serve")

        def do_load_config(self) -> None:
            # gunicorn's version prints any error and calls sys.exit(1): let OptionError through.
            self.load_default_config()
            self.load_config()

        def load_config(self) -> None:
            runtime = self.runtime
            cfg = runtime.backend.build_config(runtime.opts, runtime.binds)
            self.cfg = cfg
            user_hook = cfg.post_worker_init

            def post_worker_init(worker: Any) -> None:
                user_hook(worker)
                runtime.worker_ready(worker)

            cfg.set("post_worker_init", post_worker_init)
            self._count_requests(cfg)

        def _count_requests(self, cfg: Any) -> None:
            """The request hooks count requests (see :class:`_Counter`): the counter's own methods
            are the hooks, so counting adds no call to gunicorn's; a user's own hooks (``-o
            pre_request=module.func``) still run, after the count.  gunicorn's default pre_request
            only writes "METHOD PATH" at debug level: --access-log is the launcher's."""
            counter = self.runtime.counter = _Counter(self.runtime)  # made here, inherited by each worker
            pre, post = cfg.settings["pre_request"], cfg.settings["post_request"]
            if pre.value is pre.default:
                cfg.set("pre_request", counter.pre_request)
            else:
                user_pre = pre.value

                def pre_request(worker: Any, req: Any) -> None:
                    counter.pre_request(worker, req)
                    user_pre(worker, req)

                cfg.set("pre_request", pre_request)
            if post.value is post.default:
                cfg.set("post_request", counter.post_request)
            else:
                user_post = post.value

                def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
                    counter.post_request(worker, req, environ, resp)
                    user_post(worker, req, environ, resp)

                cfg.set("post_request", post_request)

        def load(self) -> Any:
            return self.runtime.load()

    class LauncherArbiter(Arbiter):  # type: ignore[misc]
        """gunicorn's arbiter with the launcher's stop, readiness and worker slots."""

        # Fresh class attributes (gunicorn keeps these two on the class, shared by every instance).
        LISTENERS: list[Any] = []
        WORKERS: dict[int, Any] = {}

        def __init__(self, app: LauncherApplication) -> None:
            self.runtime = app.runtime
            self.worker_slots: dict[int, int] = {}  # pid -> slot
            self.stopping = False
            super().__init__(app)

        def setup(self, app: LauncherApplication) -> None:
            super().setup(app)  # also on SIGHUP: the logger is set up again
            if self.runtime.opts.log_format == "json":
                from launcher.log import JSONFormatter

                for handler in self.log.error_log.handlers:
                    handler.setFormatter(JSONFormatter())  # gunicorn's lines in the launcher's JSON

        def start(self) -> None:
            try:
                super().start()  # listens, logs, and tells systemd READY=1 if it can see NOTIFY_SOCKET
            finally:
                self.runtime.fds_taken = bool(self.LISTENERS)
            if self.runtime.notify_socket is not None:
                os.environ["NOTIFY_SOCKET"] = self.runtime.notify_socket  # the workers see it as usual

        # -- readiness: the workers report through the pipe; look often until all have

        def wait_for_signals(self, timeout: float = 1.0) -> list[int]:
            runtime = self.runtime
            signals: list[int] = super().wait_for_signals(timeout if runtime.announced else min(timeout, 0.05))
            runtime.poll_messages()
            if not runtime.announced and runtime.load_error is None:
                booted = runtime.ready_pids & set(self.WORKERS)
                if len(booted) >= self.num_workers:
                    runtime.announced = True
                    runtime.announce()
            return signals

        # -- one shared-memory slot per live worker, for the count of its running requests

        def spawn_worker(self) -> Any:
            used = set(self.worker_slots.values())
            slot = next((n for n in range(SLOTS) if n not in used), -1)
            self.runtime.write_slot(slot, 0)
            self.runtime.slot = slot  # the child keeps this value: its own slot
            pid = super().spawn_worker()
            self.worker_slots[pid] = slot
            return pid

        def reap_workers(self) -> None:
            if self.stopping:
                # Several workers failing to load would each halt the arbiter again while it is
                # already halting (a traceback out of gunicorn's own stop()): keep reaping instead.
                while True:
                    try:
                        super().reap_workers()
                        break
                    except HaltServer:
                        continue
            else:
                super().reap_workers()
            # A dead worker's slot is free again (stop() took a copy of the ones it waits for).
            for pid in list(self.worker_slots):
                if pid not in self.WORKERS:
                    del self.worker_slots[pid]

        # -- signals

        def handle_int(self) -> None:
            # gunicorn's SIGINT is a quick shutdown that drops in-flight requests: drain instead.
            raise StopIteration

        def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
            if self.runtime.load_error is None:
                super().halt(reason, exit_status)  # logs, stops and calls sys.exit
                return
            # The app did not load: the CLI reports the importer's message, no "Shutting down" noise.
            self._stop_control_server()
            self.stop()
            if self.pidfile is not None:
                self.pidfile.unlink()
            self.cfg.on_exit(self)
            sys.exit(exit_status)

        def handle_usr2(self) -> None:
            self.log.warning("SIGUSR2 ignored: re-executing is not possible under the launcher; restart serve")

        # -- stopping

        def stop(self, graceful: bool = True) -> None:
            runtime = self.runtime
            if not self.stopping and runtime.notify_socket:
                # The stop begins (SIGTERM, the draining SIGINT, SIGQUIT or a halt): tell systemd
                # now, while the workers drain, as the launcher does for every other backend.
                from launcher.lifecycle import sd_notify

                sd_notify(runtime.notify_socket, "STOPPING=1")
            self.stopping = True
            # Close our copies without unlinking unix socket files: the launcher removes its own.
            sock.close_sockets(self.LISTENERS, False)
            self.LISTENERS = []
            stopping = [self.worker_slots.get(pid, -1) for pid in self.WORKERS]
            sig = signal.SIGTERM if graceful else signal.SIGQUIT
            deadline = time.monotonic() + runtime.opts.graceful_timeout
            if self.dirty_arbiter_pid:
                self.kill_dirty_arbiter(sig)
            self.kill_workers(sig)
            quick = not graceful
            while (self.WORKERS or self.dirty_arbiter_pid) and time.monotonic() < deadline:
                for pending in self._pending_signals():
                    if pending == signal.SIGINT:
                        self._exit_now()  # as the launcher does: a SIGINT during the drain ends it
                    if pending == signal.SIGQUIT and not quick:
                        self.log.info("Quick shutdown requested")
                        quick = True
                        self.kill_workers(signal.SIGQUIT)
                        if self.dirty_arbiter_pid:
                            self.kill_dirty_arbiter(signal.SIGQUIT)
                        deadline = min(deadline, time.monotonic() + 2.0)
                self.reap_workers()
                self.reap_dirty_arbiter()
                time.sleep(0.02)
            if self.WORKERS:
                self.log.warning("graceful timeout (%gs) ran out: killing %d worker(s)",
                                 runtime.opts.graceful_timeout, len(self.WORKERS))
            self.kill_workers(signal.SIGKILL)
            if self.dirty_arbiter_pid:
                self.kill_dirty_arbiter(signal.SIGKILL)
            self._reap_all(2.0)
            # Requests still counted in the slot of a worker that is gone were cut off.
            runtime.backend.cut_off = sum(max(0, runtime.read_slot(slot)) for slot in stopping)

        def _pending_signals(self) -> list[int]:
            pending = []
            while True:
                try:
                    pending.append(self.SIG_QUEUE.get_nowait())
                except queue.Empty:
                    return pending

        def _reap_all(self, limit: float) -> None:
            end = time.monotonic() + limit
            while self.WORKERS and time.monotonic() < end:
                self.reap_workers()
                if self.WORKERS:
                    time.sleep(0.01)
            self.reap_dirty_arbiter()

        def _exit_now(self) -> None:
            os.write(2, b"second interrupt: exiting now\n")
            self.kill_workers(signal.SIGKILL)
            if self.dirty_arbiter_pid:
                self.kill_dirty_arbiter(signal.SIGKILL)
            self._reap_all(1.0)
            raise _SecondInterrupt

    return LauncherArbiter, LauncherApplication
