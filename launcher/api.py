"""``launch()``: run a WSGI app from Python, blocking or in the background."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from launcher.errors import ServerError
from launcher.options import resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.options import ServeOptions


def launch(
    app: Any = None,
    *,
    background: bool = False,
    config: str | None = None,
    ready_timeout: float = 30.0,
    **options: Any,
) -> Any:
    """Serve ``app`` (a ``"module:attr"`` spec or a WSGI callable) with the common options.

    Blocking by default: returns the exit code once the server stops (SIGTERM/SIGINT drain first).
    With ``background=True`` returns a running :class:`Server` in a child process, so this process
    is never monkey-patched and never inherits a reactor.  Keywords are the option names of
    ``serve --help`` (``bind="127.0.0.1:0"``, ``workers=2``, ``option={"worker_class": "gthread"}``);
    they rank like CLI flags, above ``SERVE_*`` variables and the config file.  An unknown keyword
    raises :class:`~launcher.errors.OptionError` naming the closest valid one.
    """
    opts = resolve(app, cli=options, config=config)
    if background:
        return Server.start(opts, ready_timeout=ready_timeout, config=config)
    from launcher import lifecycle, log

    log.configure(opts.log_level, opts.log_format)
    return lifecycle.run(opts, app=None if isinstance(opts.app, str) else opts.app)


class Server:
    """A server running in a child process (``launch(..., background=True)``).

    ``url`` is the first address's URL with the real port, ``addresses`` every bound address as
    dicts (``{"kind": "tcp", "host": ..., "port": ...}`` or ``{"kind": "unix", "path": ...}``).
    Use it as a context manager to stop it on exit.
    """

    def __init__(self, pid: int, ready: dict[str, Any], proc: subprocess.Popen[bytes] | None) -> None:
        self.pid = pid
        self.ready = ready
        self._proc = proc
        self._code: int | None = None

    @property
    def url(self) -> str:
        urls: list[str] = self.ready.get("urls", [])
        return urls[0] if urls else ""

    @property
    def urls(self) -> list[str]:
        return list(self.ready.get("urls", []))

    @property
    def addresses(self) -> list[dict[str, Any]]:
        return list(self.ready.get("addresses", []))

    # ------------------------------------------------------------------ starting

    @classmethod
    def start(cls, opts: ServeOptions, *, ready_timeout: float = 30.0, config: str | None = None) -> Server:
        ready_dir = tempfile.mkdtemp(prefix="serve-ready-")
        ready_file = opts.ready_file or os.path.join(ready_dir, "ready.json")
        if opts.ready_file and os.path.exists(ready_file):
            os.unlink(ready_file)
        if isinstance(opts.app, str):
            argv = [sys.executable, "-m", "launcher", "run", *opts.replace(ready_file=ready_file).to_argv()]
            if config:
                argv[4:4] = ["--config", config]
            proc = subprocess.Popen(argv, start_new_session=True)
            pid: int = proc.pid
        else:
            proc = None
            pid = _fork_server(opts.replace(ready_file=ready_file))
        server = cls(pid, {}, proc)
        try:
            server.ready = server._wait_ready(ready_file, ready_timeout)
        except BaseException:
            server.kill()
            raise
        finally:
            if not opts.ready_file:
                try:
                    os.unlink(ready_file)
                except OSError:
                    pass
                os.rmdir(ready_dir)
        return server

    def _wait_ready(self, path: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                raise ServerError(f"the server exited with code {code} before it was ready (see its messages above)")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    data: dict[str, Any] = json.load(fh)
                return data
            time.sleep(0.02)
        raise ServerError(f"the server was not ready within {timeout:g}s")

    # ------------------------------------------------------------------ state

    def poll(self) -> int | None:
        """The exit code if the server has exited, else None."""
        if self._code is not None:
            return self._code
        if self._proc is not None:
            self._code = self._proc.poll()
            return self._code
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self._code = -1
            return self._code
        if pid:
            self._code = os.waitstatus_to_exitcode(status)
        return self._code

    @property
    def running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the server to exit; return its exit code (ServerError on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                raise ServerError(f"the server (pid {self.pid}) did not exit within {timeout:g}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 35.0) -> int:
        """SIGTERM (drain in-flight requests), wait up to ``timeout``; then kill the process group."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                return self.wait(timeout)
            except ServerError:
                self.kill()
                return self.wait(5)
        return self.wait(0)

    def kill(self) -> None:
        """SIGKILL the server and every process it started."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.wait(5)
        except ServerError:
            pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server pid={self.pid} url={self.url!r} running={self.running}>"


def _fork_server(opts: ServeOptions) -> int:
    """Serve a callable app in a forked child (a spec string gets a fresh interpreter instead)."""
    pid = os.fork()
    if pid:
        return pid
    from launcher import lifecycle, log

    def child() -> int:
        os.setsid()
        log.configure(opts.log_level, opts.log_format)
        return lifecycle.run(opts, app=opts.app)

    lifecycle.exit_child(child)
