"""What the operations tests share: starting ``python -m launcher`` with inherited sockets (the
way systemd does), a NOTIFY_SOCKET receiver, the ops app's state files, and waiting with deadlines.

Processes started here are registered with :mod:`tests.support`'s registry, so tests/conftest.py
attaches their output to a failing test's report and none outlives the session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import support

APP = "tests.ops.app:app"

#: The systemd hand-over, done by a tiny program between fork and exec, as systemd does it: the
#: sockets are moved to fds 3, 4, ... (SD_LISTEN_FDS_START), LISTEN_FDS counts them, LISTEN_FDNAMES
#: names them, and LISTEN_PID is the pid that will run the program: this one, since exec keeps it.
#: argv: FD[,FD...] NAME[:NAME...] -- PROGRAM ARGS...
ACTIVATION_WRAPPER = r"""
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
names = sys.argv[2]
program = sys.argv[sys.argv.index("--") + 1:]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]  # out of the way of 3, 4, ...
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)  # inheritable: no FD_CLOEXEC on the copy
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(high))
os.environ["LISTEN_FDNAMES"] = names
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(program[0], program)
"""

LISTEN_KEYS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally; under CI=true a missing prerequisite is a failure, never a skip."""
    if ci():
        pytest.fail(f"{reason} (CI must not skip)", pytrace=False)
    pytest.skip(reason)


def backend_class(name: str) -> Any:
    """The backend's class, or None when it cannot be loaded yet (not written / not installed)."""
    try:
        from launcher import registry

        return registry.get_class(name)
    except Exception:
        return None


def socket_backend_params(workers: int = 1) -> list[Any]:
    """Every HTTP backend for tests that hand the server a listening socket (systemd activation,
    fd://N).  A backend whose class says ``inherits_sockets = False`` binds its own port (mod_wsgi:
    Apache listens) and is left out here: test_backend_that_binds_its_own_refuses_handed_over_sockets
    asserts that it refuses such sockets instead."""
    params = []
    for name in support.backend_names("http"):
        cls = backend_class(name)
        if cls is None or getattr(cls, "inherits_sockets", True):
            params.append(pytest.param(name, workers, id=f"{name}-w{workers}"))
    return params


def uses_supervisor(name: str, workers: int) -> bool:
    cls = backend_class(name)
    return workers > 1 and not getattr(cls, "native_workers", False)


# --------------------------------------------------------------------------------------------
# The ops app's state
# --------------------------------------------------------------------------------------------


class AppState:
    """``$OPS_STATE_DIR`` of one server: how often (and for what) the app was called."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        # A server run as root may run the app as another user (mod_wsgi: www-data): the
        # directory and the files must be reachable and writable by it.
        directory.chmod(0o777)
        for name in ("calls", "imports"):
            (directory / name).touch()
            (directory / name).chmod(0o666)

    def env(self) -> dict[str, str]:
        return {"OPS_STATE_DIR": str(self.dir)}

    def _lines(self, name: str) -> list[str]:
        try:
            return (self.dir / name).read_text("utf-8").splitlines()
        except FileNotFoundError:
            return []

    def calls(self) -> list[str]:
        """``"<pid> <METHOD> <PATH>[?QUERY]"`` per call of the app, in order."""
        return self._lines("calls")

    def call_targets(self) -> list[str]:
        """The request target (path and query) of each call."""
        return [line.split(" ", 2)[2] for line in self.calls()]

    def call_paths(self) -> list[str]:
        """The path of each call (no query)."""
        return [target.partition("?")[0] for target in self.call_targets()]

    def imports(self) -> list[str]:
        return self._lines("imports")

    def wait_for_call(self, path: str, deadline: float, process: support.ServeProcess | None = None) -> None:
        while path not in self.call_paths():
            if process is not None and not process.alive():
                raise AssertionError(f"server exited before the app was called for {path}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"the app was never called for {path}; calls: {self.calls()}")
            time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Starting servers
# --------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without SERVE_*, LISTEN_* or NOTIFY_SOCKET (a test runner started by
    systemd must not hand its own to the servers), plus ``extra``."""
    env = {k: v for k, v in support.serve_env().items()
           if k not in LISTEN_KEYS and k != "NOTIFY_SOCKET"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def launch(command: Sequence[str], *, tmp_path: Path, env: Mapping[str, str], pass_fds: Sequence[int] = (),
           label: str = "", ready_path: Path | None = None) -> support.ServeProcess:
    """Start ``command`` like tests.support starts servers: own process group, output in files under
    ``tmp_path``, registered for reports and clean-up.  The ready file is ``ready_path``, else the
    one ``--ready-file`` in ``command`` names."""
    stem = f"ops-{uuid.uuid4().hex[:8]}"
    stdout_path, stderr_path = tmp_path / f"{stem}.stdout.log", tmp_path / f"{stem}.stderr.log"
    if ready_path is None:
        ready_path = Path(command[command.index("--ready-file") + 1])
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(list(command), cwd=str(support.REPO), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True, pass_fds=tuple(pass_fds))
    process = support.ServeProcess(proc, list(command), stdout_path, stderr_path, ready_path, label or stem)
    # tests.support has no public way to register a process it did not build the command for.
    with support._REGISTRY_LOCK:
        support._REGISTRY.append(process)
    return process


def serve_command(args: Sequence[str], ready: Path) -> list[str]:
    return [sys.executable, "-m", "launcher", "--ready-file", str(ready), *args]


def activation_command(fds: Sequence[int], names: Sequence[str], args: Sequence[str], ready: Path | None,
                       program: Sequence[str] = ()) -> list[str]:
    """The wrapper handing ``fds`` over, then ``program`` (default: ``python -m launcher``) with
    ``--ready-file READY`` (when given) and ``args``."""
    program = list(program) or [sys.executable, "-m", "launcher"]
    ready_args = ["--ready-file", str(ready)] if ready is not None else []
    return [sys.executable, "-c", ACTIVATION_WRAPPER, ",".join(map(str, fds)), ":".join(names), "--",
            *program, *ready_args, *args]


def wait_ready(process: support.ServeProcess, timeout: float = 20.0, confirm: str = "/ping") -> dict[str, Any]:
    """Wait (one deadline) for the ready file, then for an HTTP answer on every address."""
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive():
            raise support.ServeStartError(f"exited with code {process.proc.returncode} before it was ready", process)
        try:
            ready: dict[str, Any] = json.loads(process.ready_path.read_text("utf-8"))
            break
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() >= deadline:
            raise support.ServeStartError(f"no ready file after {timeout}s", process)
        time.sleep(0.02)
    process.ready = ready
    for address in ready.get("addresses", []):
        while True:
            try:
                support.http_request(address, "GET", confirm, timeout=max(0.2, deadline - time.monotonic()))
                break
            except OSError as exc:
                if not process.alive() or time.monotonic() >= deadline:
                    raise support.ServeStartError(f"no HTTP answer at {address}: {exc!r}", process) from None
                time.sleep(0.03)
    return ready


def wait_exit(process: support.ServeProcess, timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the server was still running {timeout:g}s after SIGTERM") from None


def listening_tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def listening_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    return sock


def still_accepts(listener: socket.socket, address: Any) -> bool:
    """After the server exited: does the socket systemd (here: the test) holds still take and
    hand over connections?  A server that shut the shared socket down breaks the next start."""
    listener.settimeout(2.0)
    try:
        client = support.connect(address, timeout=2.0)
    except OSError:
        return False
    try:
        conn, _ = listener.accept()
        conn.close()
        return True
    except OSError:
        return False
    finally:
        client.close()


class Background:
    """Run ``fn()`` in a thread; ``result()`` re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:
            self._error = exc
        finally:
            self.finished_at = time.monotonic()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"still running after {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self._value


# --------------------------------------------------------------------------------------------
# sd_notify
# --------------------------------------------------------------------------------------------


class NotifyReceiver:
    """A NOTIFY_SOCKET, as systemd listens on one: AF_UNIX datagrams, with the sender's
    credentials (SO_PASSCRED), collected by a thread.  ``abstract=True`` binds in the abstract
    namespace and gives the ``@name`` form."""

    def __init__(self, directory: Path, *, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"wl-ops-notify-{os.getpid()}-{uuid.uuid4().hex[:10]}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.1)
        #: (monotonic time received, sender pid, message)
        self.messages: list[tuple[float, int, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        creds_size = socket.CMSG_SPACE(struct.calcsize("iII"))
        while not self._closed:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, creds_size)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            with self._cond:
                self.messages.append((time.monotonic(), pid, data.decode("utf-8", "replace")))
                self._cond.notify_all()

    def wait_for(self, field: str, timeout: float,
                 process: support.ServeProcess | None = None) -> tuple[float, int, dict[str, str]]:
        """The first message carrying ``field`` (e.g. ``READY=1``), as (time, pid, fields).  With
        ``process``, give up as soon as it has exited (and nothing is left to arrive)."""
        deadline = time.monotonic() + timeout
        exited_at: float | None = None
        with self._cond:
            while True:
                for received, pid, text in self.messages:
                    if field in text.split("\n"):
                        return received, pid, parse_notify(text)
                now = time.monotonic()
                if process is not None and exited_at is None and not process.alive():
                    exited_at = now
                gone = exited_at is not None and now - exited_at > 0.3  # a last datagram in transit
                if now >= deadline or gone:
                    why = f"the server exited with code {process.proc.returncode}" if gone and process else (
                        f"within {timeout:g}s")
                    raise AssertionError(f"no {field} on NOTIFY_SOCKET {self.address} ({why});"
                                         f" received: {self.texts()}")
                self._cond.wait(min(0.1, deadline - now))

    def texts(self) -> list[str]:
        with self._cond:
            return [text for _, _, text in self.messages]

    def count(self, field: str) -> int:
        return sum(field in text.split("\n") for text in self.texts())

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


def parse_notify(text: str) -> dict[str, str]:
    fields = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def terminate(process: support.ServeProcess) -> float:
    """SIGTERM to the launcher (as systemd's KillMode=mixed sends it to the main process first);
    returns the time it was sent."""
    sent = time.monotonic()
    process.signal(signal.SIGTERM)
    return sent
