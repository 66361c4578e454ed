"""Running a server the same way whatever the backend: bind, import, announce, drain, exit.

One process (``--workers 1``, or a backend with its own multi-process mode):

    bind sockets -> backend.prepare -> import the app -> wrap middleware -> drop privileges
    -> install SIGTERM/SIGINT -> backend.serve(...) -> ready: startup line + --ready-file
    SIGTERM/SIGINT -> backend.stop(graceful_timeout): stop accepting, drain, close
    second SIGINT -> exit at once; past the deadline -> exit 1 saying how many requests were cut off

Several processes for a backend without its own (waitress, gevent, twisted...): the shared
pre-fork supervisor below binds once, forks the workers (each one runs the single-process path on
the inherited sockets), restarts a worker that dies, forwards SIGTERM and waits for every worker to
drain.  A worker that fails before it ever served (the app does not import) stops the whole server
instead of being restarted forever.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time

from launcher.errors import LauncherError, OptionError
from launcher.log import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from backends.base import Backend
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: Exit code of a worker whose app could not be loaded (as gunicorn's APP_LOAD_ERROR).
APP_LOAD_ERROR = 4
#: Extra seconds past --graceful-timeout before a stuck server is forced out.
FORCE_GRACE = 3.0


def run(opts: ServeOptions, *, app: Any = None) -> int:
    """Serve until stopped; return the process exit code.  Errors before serving raise."""
    from launcher import registry, sockets

    backend = registry.get(opts.backend)
    backend.check(opts)
    refuse_root(opts)
    _prepare_process(opts)
    listeners = sockets.activation_listeners() if _use_activation(opts) else []
    if listeners and not backend.inherits_sockets:
        sockets.close_all(listeners, unlink=False)
        raise OptionError(
            f"backend '{backend.name}' cannot serve on sockets handed over by systemd socket activation (the"
            " server binds its own port): drop the .socket unit and give --bind HOST:PORT"
        )
    if not listeners and backend.takes_sockets:
        listeners = sockets.bind_all(opts.bind, opts.backlog)
    try:
        # --max-requests restarts a worker and --reload replaces workers: both need a supervisor.
        if opts.reload or ((opts.workers > 1 or opts.max_requests) and not backend.native_workers):
            return Supervisor(type(backend), opts, listeners, app, scheme=backend.url_scheme(),
                              sizing=backend.sizing(opts)).run()
        announce = Announcer(opts, backend.name, scheme=backend.url_scheme(), sizing=backend.sizing(opts))
        return serve_here(backend, opts, listeners, announce, app=app)
    finally:
        sockets.close_all(listeners)


def refuse_root(opts: ServeOptions) -> None:
    """Refuse to serve as root on a non-loopback address unless --user or --allow-root says so."""
    if os.geteuid() != 0 or opts.user or opts.allow_root:
        return
    import ipaddress

    for bind in opts.bind:
        if bind.kind != "tcp":
            continue
        host = bind.host
        if host == "localhost":
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass
        raise OptionError(
            f"refusing to run as root on {bind}, an address others can reach: pass --user NAME to drop"
            " privileges after binding (or --allow-root if you really mean it)"
        )


def _use_activation(opts: ServeOptions) -> bool:
    return not opts.is_set("bind") and os.environ.get("LISTEN_PID") == str(os.getpid())


def _prepare_process(opts: ServeOptions) -> None:
    if opts.umask is not None:
        os.umask(opts.umask)
    if opts.chdir:
        try:
            os.chdir(opts.chdir)
        except OSError as exc:
            raise OptionError(f"--chdir {opts.chdir}: {exc.strerror}") from None
    for path in reversed(opts.pythonpath):
        full = os.path.abspath(path)
        if full not in sys.path:
            sys.path.insert(0, full)


def load_app(backend: Backend, opts: ServeOptions, app: Any = None, *, health: bool = True) -> Any:
    """Import the app and wrap only the middleware that was asked for (after backend.prepare)."""
    from launcher import importer, middleware

    target = app if app is not None else opts.app
    wsgi = importer.import_app(target) if isinstance(target, str) else target
    if not callable(wsgi):
        from launcher.errors import AppImportError

        raise AppImportError(f"the app given to launch() is a {type(wsgi).__name__}, not a WSGI callable", "callable")
    return middleware.wrap(wsgi, opts, health=health)


def serve_here(
    backend: Backend,
    opts: ServeOptions,
    listeners: list[Listener],
    on_ready: Callable[[list[Listener]], None],
    *,
    app: Any = None,
    multiprocess: bool = False,
) -> int:
    """The single-process path: import, serve, drain; return the exit code."""
    backend.prepare(opts)
    if backend.load_in_workers:
        # The server forks first and imports in each worker (gunicorn without preload, so a
        # gevent worker patches before the app is imported): hand it the loader, not the app.
        wsgi: Any = functools.partial(load_app, backend, opts, app)
    else:
        wsgi = load_app(backend, opts, app, health=backend.drains_itself)
    if not backend.drains_itself:
        backend.inflight = backend.request_counter()
        wsgi = backend.inflight.wrap(wsgi, multiprocess=multiprocess)
        if opts.max_requests:
            wsgi = _max_requests(wsgi, backend, opts)
        if opts.health_path:
            # Outside the counter: probes are not requests to drain, nor count towards --max-requests.
            from launcher.middleware import Health

            wsgi = Health(wsgi, opts.health_path)
    if not backend.drops_privileges:
        drop_privileges(opts.user, opts.group, listeners)
    stopper = _Stopper(backend, opts)
    if backend.launcher_signals:
        stopper.install()
    backend.serve(wsgi, opts, listeners, on_ready)
    stopper.done.set()
    if backend.cut_off:
        logger.error("graceful timeout (%gs) ran out: %d request(s) cut off", opts.graceful_timeout, backend.cut_off)
        return 1
    logger.info("stopped")
    return 0


def _max_requests(app: Any, backend: Backend, opts: ServeOptions) -> Any:
    """Stop this worker gracefully after --max-requests requests (the supervisor replaces it)."""
    inflight = backend.inflight
    assert inflight is not None

    def limited(environ: dict[str, Any], start_response: Any) -> Any:
        result = app(environ, start_response)
        if inflight.total >= opts.max_requests and not backend._stopping.is_set():
            logger.info("served %d requests (--max-requests): restarting this worker", inflight.total)
            backend.stop(opts.graceful_timeout)
        return result

    return limited


class _Stopper:
    """SIGTERM/SIGINT: drain once; a second SIGINT exits at once; a stuck drain is forced out."""

    def __init__(self, backend: Backend, opts: ServeOptions) -> None:
        self.backend = backend
        self.opts = opts
        self.stopping = False
        self.done = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            if signum == signal.SIGINT:
                from launcher.log import last_words

                last_words("second interrupt: exiting now", "warning")
                os._exit(130)
            return
        self.stopping = True
        from launcher.drain import draining

        draining.set()
        notify = os.environ.get("NOTIFY_SOCKET")
        if notify:
            sd_notify(notify, "STOPPING=1")
        name = signal.Signals(signum).name
        logger.info("%s: stopping, in-flight requests get up to %gs", name, self.opts.graceful_timeout)
        self.backend.stop(self.opts.graceful_timeout)
        threading.Thread(target=self._watchdog, name="launcher-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        # A server whose threads will not let go (tornado's executor, twisted's pool) must not hang.
        if self.done.wait(self.opts.graceful_timeout + FORCE_GRACE):
            return
        cut = self.backend.inflight.active if self.backend.inflight else 0
        from launcher.log import last_words

        last_words(f"server did not stop within {self.opts.graceful_timeout:g}s; {cut} request(s) cut off")
        os._exit(1)


class Announcer:
    """Called once the server accepts: prints the startup line and writes --ready-file."""

    def __init__(self, opts: ServeOptions, backend: str, *, pid: int | None = None, scheme: str = "http",
                 sizing: str = "") -> None:
        self.opts = opts
        self.backend = backend
        self.pid = pid
        self.scheme = scheme
        self.sizing = sizing
        self.called = False

    def __call__(self, listeners: list[Listener]) -> None:
        if self.called:
            return
        self.called = True
        pid = self.pid or os.getpid()
        urls = [listener.url(self.scheme) for listener in listeners]
        opts = self.opts
        app = opts.app if isinstance(opts.app, str) else getattr(opts.app, "__name__", repr(opts.app))
        where = ", ".join(urls) or "its own sockets"
        sizing = self.sizing or f"{opts.workers} worker{'s' if opts.workers > 1 else ''}"
        logger.info("%s serving %s at %s (pid %d, %s)", self.backend, app, where, pid, sizing)
        if opts.ready_file:
            write_ready_file(opts.ready_file, {
                "pid": pid,
                "backend": self.backend,
                "app": app,
                "urls": urls,
                "addresses": [listener.address.as_dict() for listener in listeners],
            })
        notify = os.environ.get("NOTIFY_SOCKET")
        if notify:
            sd_notify(notify, f"READY=1\nMAINPID={pid}")


def write_ready_file(path: str, data: dict[str, Any]) -> None:
    """Write JSON atomically, so a reader never sees half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def sd_notify(address: str, message: str) -> None:
    """Tell systemd (NOTIFY_SOCKET) about readiness or stopping; failures are not fatal."""
    import socket

    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        logger.warning("cannot notify systemd at %s: %s", address, exc)


def drop_privileges(user: str, group: str, listeners: list[Listener] = ()) -> None:  # type: ignore[assignment]
    """Switch to --user/--group after binding, as mod_wsgi's WSGIDaemonProcess user=/group= does."""
    if not user and not group:
        return
    import grp
    import pwd

    try:
        pw = pwd.getpwnam(user) if user else None
    except KeyError:
        raise OptionError(f"--user: no such user '{user}'") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else (pw.pw_gid if pw else os.getgid())
    except KeyError:
        raise OptionError(f"--group: no such group '{group}'") from None
    uid = pw.pw_uid if pw else os.getuid()
    if (uid, gid) == (os.getuid(), os.getgid()):
        return
    if os.geteuid() != 0:
        raise OptionError(f"--user/--group: switching to {user or uid}:{group or gid} needs root")
    for listener in listeners:
        if listener.is_unix:
            os.chown(listener.bind.path, uid, gid)  # so the unprivileged server can remove it on exit
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if pw is not None:
        os.environ["HOME"] = pw.pw_dir
        os.environ["USER"] = os.environ["LOGNAME"] = pw.pw_name


# --------------------------------------------------------------------------- pre-fork supervisor


class Supervisor:
    """Bind once, fork N workers, replace the ones that die, drain them all on SIGTERM."""

    RESPAWN_DELAY = 0.1

    def __init__(self, backend_cls: type[Backend], opts: ServeOptions, listeners: list[Listener], app: Any, *,
                 scheme: str = "http", sizing: str = "") -> None:
        self.backend_cls = backend_cls
        self.opts = opts
        self.listeners = listeners
        self.app = app
        # A server with its own multi-process mode runs as one child that forks by itself.
        self.slots = 1 if backend_cls.native_workers else opts.workers
        self.workers: dict[int, int] = {}  # pid -> slot
        self.ready_pids: set[int] = set()
        self.retiring: set[int] = set()  # replaced on --reload, draining
        self.failed_slots: set[int] = set()  # --reload: failed to boot, waiting for a change
        self.ever_ready = False
        self.stopping = False
        self.interrupts = 0
        self.exit_code = 0
        self.announce = Announcer(opts, backend_cls.name, scheme=scheme, sizing=sizing)
        self.watcher: Any = None

    def run(self) -> int:
        import select

        self.pid = os.getpid()
        self.ready_r, self.ready_w = os.pipe()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        watch_fd = self._start_watcher() if self.opts.reload else None
        try:
            for slot in range(self.slots):
                self._spawn(slot)
            deadline = None
            # With --reload, no worker left (the app failed to start) means: wait for a change.
            while self.workers or (self.opts.reload and not self.stopping):
                timeout = 1.0
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + self.opts.graceful_timeout + FORCE_GRACE
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - time.monotonic()))
                    if timeout == 0.0:
                        self._kill_all(signal.SIGKILL)
                        self.exit_code = 1
                        deadline = time.monotonic() + 5
                fds = [self.ready_r, wake_r] + ([watch_fd] if watch_fd is not None else [])
                try:
                    readable, _, _ = select.select(fds, [], [], timeout)
                except InterruptedError:
                    readable = []
                if wake_r in readable:
                    _drain_fd(wake_r)
                if self.ready_r in readable:
                    self._read_ready()
                if watch_fd is not None and watch_fd in readable:
                    self._on_changes()
                self._reap()
            return self.exit_code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for fd in (self.ready_r, self.ready_w, wake_r, wake_w):
                os.close(fd)
            if self.watcher is not None:
                self.watcher.kill()
                self.watcher.wait()

    # -- --reload

    def _start_watcher(self) -> int:
        import subprocess

        from launcher.reload import watch_dirs, watcher_command

        self.watcher = subprocess.Popen(watcher_command(self.opts), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.watcher.stdout is not None
        fd: int = self.watcher.stdout.fileno()
        # Workers start once the watcher watches: a change made right after start is not missed.
        first = self.watcher.stdout.readline()
        if not first:
            raise OptionError("--reload: the file watcher did not start (is watchfiles installed?)")
        os.set_blocking(fd, False)
        self._watch_buffer = b""
        logger.info("reloading on changes under %s", ", ".join(watch_dirs(self.opts)))
        return fd

    def _on_changes(self) -> None:
        assert self.watcher is not None and self.watcher.stdout is not None
        try:
            chunk = os.read(self.watcher.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:  # the watcher died: keep serving, without reloading
            logger.warning("the file watcher stopped: no more reloading")
            self.watcher = None
            return
        self._watch_buffer += chunk
        *lines, self._watch_buffer = self._watch_buffer.split(b"\n")
        changed = [path for line in lines if line.strip() for path in json.loads(line)]
        if not changed or self.stopping:
            return
        shown = ", ".join(os.path.relpath(p) for p in changed[:3]) + (" ..." if len(changed) > 3 else "")
        logger.info("%s changed: reloading", shown)
        # The socket is shared: new workers start now, the old ones drain beside them.
        old = set(self.workers) - self.retiring
        self.retiring |= old
        for pid in old:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.failed_slots.clear()
        self.ever_ready = False
        self.announce.called = False
        for slot in range(self.slots):
            self._spawn(slot)

    # -- signals (the handler only records; the loop acts)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGCHLD:
            return
        if signum == signal.SIGHUP:
            # Like gunicorn: a HUP replaces the workers one by one with fresh ones.
            if not self.stopping:
                logger.info("SIGHUP: restarting workers")
                for pid in list(self.workers):
                    os.kill(pid, signal.SIGTERM)
            return
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts > 1:
                from launcher.log import last_words

                last_words("second interrupt: exiting now", "warning")
                self._kill_all(signal.SIGKILL)
                os._exit(130)
        if not self.stopping:
            self.stopping = True
            notify = os.environ.get("NOTIFY_SOCKET")
            if notify:
                sd_notify(notify, "STOPPING=1")
            logger.info("%s: stopping %d workers, in-flight requests get up to %gs",
                        signal.Signals(signum).name, len(self.workers), self.opts.graceful_timeout)
            self._kill_all(signal.SIGTERM)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # -- workers

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid:
            self.workers[pid] = slot
            return
        exit_child(self._worker_main)

    def _worker_main(self) -> int:
        for sig in (signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        # Until serve_here installs the draining handler, a stop finds nothing to drain: leave cleanly
        # (the default action would count as a crash).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: os._exit(0))
        signal.set_wakeup_fd(-1)
        os.close(self.ready_r)
        if self.watcher is not None and self.watcher.stdout is not None:
            self.watcher.stdout.close()
        die_with_parent(self.pid)
        backend = self.backend_cls()
        backend.check(self.opts)
        ready_w = self.ready_w

        def on_ready(listeners: list[Listener]) -> None:
            os.write(ready_w, b"%d\n" % os.getpid())

        from launcher.errors import AppImportError

        try:
            return serve_here(backend, self.opts, self.listeners, on_ready, app=self.app, multiprocess=True)
        except AppImportError as exc:
            from launcher.cli import report

            report(exc)
            return APP_LOAD_ERROR

    def _read_ready(self) -> None:
        try:
            data = os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        for line in data.split():
            self.ready_pids.add(int(line))
        if not self.ever_ready and len(self.ready_pids & (set(self.workers) - self.retiring)) >= self.slots:
            self.ever_ready = True
            self.announce(self.listeners)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.workers.pop(pid, None)
            if slot is None:
                continue
            was_ready = pid in self.ready_pids
            self.ready_pids.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if pid in self.retiring:
                self.retiring.discard(pid)
                continue
            if self.opts.reload and not self.stopping and not was_ready:
                logger.error("the app did not start (exit code %s): waiting for a file to change", code)
                self.failed_slots.add(slot)
                continue
            if self.stopping:
                if code != 0 and self.exit_code == 0:
                    self.exit_code = 1
                continue
            if not was_ready:
                # It never served: the app does not load (or the backend cannot start). Respawning
                # would loop forever, so stop everything and report it, as gunicorn does.
                logger.error("worker %d failed to start (exit code %s): stopping", pid, code)
                self.exit_code = code if code > 0 else 1
                self.stopping = True
                self._kill_all(signal.SIGTERM)
                continue
            how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            logger.warning("worker %d (%s) exited; starting a new one", pid, how)
            time.sleep(self.RESPAWN_DELAY)
            self._spawn(slot)


def exit_child(main: Callable[[], int]) -> NoReturn:
    """End a forked child with ``main()``'s exit code, never returning into the parent's code
    (its clean-up would remove sockets the parent still serves): errors become the CLI's one line."""
    code = 1
    try:
        code = main()
    except LauncherError as exc:
        from launcher.cli import report

        code = report(exc)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent (``parent``) dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
