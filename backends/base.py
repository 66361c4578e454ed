"""The backend contract every server adapter fulfils.

A backend module imports its server library lazily (inside ``prepare``/``serve``), so importing
``backends.x`` to read its metadata costs nothing.  The launcher drives every backend the same way:

    backend.check(opts)                 # before anything starts: options it cannot honour -> error
    backend.prepare(opts)               # before the app is imported (gevent patches here)
    backend.serve(app, opts, listeners, ready)   # blocks; ready(listeners) once accepting
    backend.stop(timeout)               # from the signal handler: stop accepting, drain, return

Sockets are bound by the launcher (:mod:`launcher.sockets`) before ``serve`` and handed over as
:class:`~launcher.sockets.Listener` objects, so every backend reports the same errors for a busy port
or a live unix socket, honours port 0, ``fd://N`` and socket activation, and can run under the shared
pre-fork supervisor.  This is one argument more than ../shared/DESIGN.md's ``serve(app, opts,
ready)``: the socket is the one thing the launcher must own for those guarantees to hold.
"""

from __future__ import annotations

import threading
import time

from launcher.errors import OptionError
from launcher.options import Option, closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, ClassVar

    from launcher.drain import InFlight
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

    WSGIApp = Callable[..., Any]
    Ready = Callable[[list[Listener]], None]

#: Options every backend honours because the launcher itself implements them.
LAUNCHER_OPTIONS = frozenset(
    {
        "backend",
        "bind",
        "workers",
        "graceful_timeout",
        "root_path",
        "proxy_headers",
        "forwarded_allow_ips",
        "forwarded_host_header",
        "access_log",
        "access_log_format",
        "health_path",
        "log_format",
        "log_level",
        "chdir",
        "pythonpath",
        "user",
        "group",
        "umask",
        "allow_root",
        "reload",
        "reload_dir",
        "reload_include",
        "reload_exclude",
        "ready_file",
        "option",
        "backlog",
        "max_requests",
    }
)


#: URL scheme per protocol.
SCHEMES = {"http": "http", "fastcgi": "fcgi", "uwsgi": "uwsgi", "cgi": "cgi"}


class Backend:
    """Base class of the server adapters.  Subclasses set the class attributes and override
    :meth:`serve`, and usually :meth:`stop_accepting` and :meth:`close`."""

    #: registry name, e.g. "tornado"
    name: ClassVar[str] = ""
    #: pip extra that installs the server library: ``pip install wsgi-launcher[tornado]``
    extra: ClassVar[str] = ""
    #: what the server speaks on its socket: "http", "fastcgi", "uwsgi" or "cgi"
    protocol: ClassVar[str] = "http"
    #: module to look for to know whether the server library is installed
    library: ClassVar[str] = ""
    #: distribution whose version is reported by `serve backends`
    distribution: ClassVar[str] = ""
    #: the lowest version with the known request-smuggling and denial-of-service fixes
    min_version: ClassVar[str] = ""
    #: common options honoured beyond :data:`LAUNCHER_OPTIONS`
    supports: ClassVar[frozenset[str]] = frozenset()
    #: backend-specific options for ``-o KEY=VALUE``
    option_spec: ClassVar[tuple[Option, ...]] = ()
    #: True when the server has its own multi-process mode and takes ``--workers`` itself
    native_workers: ClassVar[bool] = False
    #: True when the server drains in-flight requests by itself (no launcher counter needed)
    drains_itself: ClassVar[bool] = False
    #: True when the launcher's SIGTERM/SIGINT handlers should be installed around serve()
    launcher_signals: ClassVar[bool] = True
    #: False for a backend that cannot use a socket bound by the launcher (it binds its own)
    takes_sockets: ClassVar[bool] = True
    #: False for a server that cannot serve on an inherited listening socket (Apache binds its own
    #: port): fd://N and systemd socket activation are then refused instead of serving elsewhere
    inherits_sockets: ClassVar[bool] = True
    #: False for a server that cannot listen on a unix socket at all (Apache): such binds are refused
    unix_sockets: ClassVar[bool] = True
    #: True for a server that switches to --user/--group itself (Apache binds as root, then drops):
    #: the launcher then leaves its own privileges alone
    drops_privileges: ClassVar[bool] = False
    #: True when the server imports the app in each forked worker: serve() then gets a
    #: zero-argument loader returning the wrapped app instead of the app itself
    load_in_workers: ClassVar[bool] = False

    def __init__(self) -> None:
        self.inflight: InFlight | None = None
        self.backend_options: dict[str, Any] = {}
        #: requests still running when the graceful timeout ran out (set by stop)
        self.cut_off = 0
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ metadata

    @classmethod
    def honoured(cls) -> frozenset[str]:
        """Every common option this backend honours."""
        return LAUNCHER_OPTIONS | cls.supports

    def request_counter(self) -> InFlight:
        """What counts this server's requests in flight, for a backend that does not drain by
        itself: by default :class:`launcher.drain.InFlight`, a wrapper around the app; a backend
        whose server keeps that count already may return a subclass that reads it instead."""
        from launcher.drain import InFlight

        return InFlight()

    def sizing(self, opts: ServeOptions) -> str:
        """How this server runs the app, for the startup line ("2 workers, 4 threads")."""
        workers = f"{opts.workers} worker{'s' if opts.workers > 1 else ''}"
        if "threads" not in self.honoured():
            return workers
        return f"{workers}, {opts.threads} thread{'s' if opts.threads > 1 else ''}"

    def url_scheme(self) -> str:
        """The scheme of this server's URLs in the startup line and --ready-file
        (``fcgi://`` for FastCGI, so nobody mistakes the socket for an HTTP one)."""
        return SCHEMES.get(self.protocol, self.protocol)

    # ------------------------------------------------------------------ before start

    def check(self, opts: ServeOptions) -> None:
        """Reject, before anything starts, any set option this backend cannot honour."""
        unsupported = sorted(name for name in opts.explicit if name not in self.honoured())
        if unsupported:
            flags = ", ".join("--" + n.replace("_", "-") for n in unsupported)
            raise OptionError(
                f"backend '{self.name}' cannot honour {flags}; remove it or pick another backend"
                " (`serve backends` lists what each one supports)"
            )
        self.backend_options = self.parse_backend_options(opts.option)

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate ``-o KEY=VALUE`` against :attr:`option_spec`; unknown keys are errors."""
        spec = {opt.name: opt for opt in self.option_spec}
        parsed = {opt.name: opt.default for opt in self.option_spec}
        for key, value in raw.items():
            opt = spec.get(key)
            if opt is None:
                valid = ", ".join(sorted(spec)) or "none"
                raise OptionError(
                    f"-o {key}: unknown option for backend '{self.name}'{closest(key, spec)}; valid: {valid}"
                )
            parsed[key] = opt.convert(value, f"-o {key}")
        return parsed

    def prepare(self, opts: ServeOptions) -> None:
        """Run before the app is imported, in the process that will serve it."""

    # ------------------------------------------------------------------ running

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        """Serve ``app`` on ``listeners`` until stopped; call ``ready(listeners)`` once accepting.

        With :attr:`load_in_workers`, ``app`` is a zero-argument callable that imports the app and
        returns it wrapped (call it in each worker, after the worker's own set-up).
        """
        raise NotImplementedError

    def stop(self, timeout: float) -> None:
        """Graceful stop, called from the signal handler: must return quickly.

        The default stops accepting now, then (in a helper thread) waits for in-flight requests
        to finish for up to ``timeout`` seconds and calls :meth:`close`, which makes ``serve``
        return.  :attr:`cut_off` counts the requests still running at the deadline.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.stop_accepting()
        threading.Thread(target=self._drain_then_close, args=(timeout,), name="launcher-drain", daemon=True).start()

    def _drain_then_close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            busy = (self.inflight.active if self.inflight is not None else 0) + self.pending()
            if busy <= 0 or time.monotonic() >= deadline:
                self.cut_off = max(busy, 0)
                break
            time.sleep(0.02)
        self.close()

    def pending(self) -> int:
        """Requests the server holds that the app has not been called for yet (queued)."""
        return 0

    def stop_accepting(self) -> None:
        """Stop accepting new connections (signal-safe: wake the server's loop, do not block)."""

    def close(self) -> None:
        """Close idle connections and make :meth:`serve` return (called from the drain thread)."""


def set_on_signals(event: threading.Event | Callable[[], object], signals: Iterable[int]) -> None:
    """Chain the current handlers of ``signals`` so that ``event`` is set (or, given a function,
    it is called) first, then the handler that was there runs as before (signals whose handler is
    not a Python callable are left alone)."""
    import signal

    action = event.set if isinstance(event, threading.Event) else event
    for sig in signals:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
            action()
            previous(signum, frame)

        signal.signal(sig, handler)


def iter_sockets(listeners: Iterable[Listener]) -> list[Any]:
    """The raw socket objects of ``listeners``."""
    return [listener.sock for listener in listeners]
