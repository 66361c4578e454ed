"""Socket activation and readiness, the way systemd drives a service (issue 7, point 1).

* LISTEN_FDS hand-over: the test binds a TCP socket (127.0.0.1:0) and a unix socket, and starts
  ``python -m launcher APP`` without --bind through a small exec wrapper that moves them to fds 3
  and 4 and sets LISTEN_FDS=2, LISTEN_FDNAMES and LISTEN_PID to its own pid (exec keeps it), as
  systemd does between fork and exec.  Both sockets must be served, the ready file must list both,
  the app's environment (and so its children's) must no longer hold LISTEN_*, and the sockets must
  still accept connections after the server exited (systemd keeps them for the next start).
* ``--bind fd://N`` with a socket inherited at its own number N.
* sd_notify: READY=1 with MAINPID once the app is imported and the server answers (once, even
  with several workers), and STOPPING=1 on SIGTERM while a request is still in flight, i.e.
  before the exit; to a NOTIFY_SOCKET path and to the abstract-namespace ``@name`` form.

Every HTTP backend runs with --workers 1 and --workers 2 (the launcher's pre-fork supervisor, or the
server's own multi-process mode).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import (
    APP,
    LISTEN_KEYS,
    AppState,
    Background,
    NotifyReceiver,
    activation_command,
    backend_class,
    clean_env,
    launch,
    listening_tcp,
    listening_unix,
    serve_command,
    socket_backend_params,
    still_accepts,
    terminate,
    uses_supervisor,
    wait_exit,
    wait_ready,
)
from tests.support import ServeProcess, backend_names, http_request, require_backend

pytestmark = pytest.mark.server

#: How long a request may take to be answered once READY=1 arrived (the server must already
#: accept: systemd starts the units that wait for this one as soon as it gets READY=1).
ANSWER_AFTER_READY = 2.0
SLOW = 1.0


def _ready_then_serving(process: ServeProcess, notify: NotifyReceiver, state: AppState,
                        addresses: list[Any], workers: int, backend: str) -> None:
    received, sender, fields = notify.wait_for("READY=1", timeout=20, process=process)
    assert process.alive(), f"the server exited (code {process.proc.returncode}) right after READY=1"
    assert fields.get("MAINPID") == str(process.pid), (
        f"READY=1 names MAINPID={fields.get('MAINPID')}, but the service's main process is {process.pid}"
        f" (message from pid {sender}: {fields})")
    imports = state.imports()
    assert imports, "READY=1 was sent before the app was imported"
    if uses_supervisor(backend, workers):
        assert len(set(imports)) >= workers, f"READY=1 before all {workers} workers imported the app: {imports}"
    assert process.ready_path.exists(), "READY=1 was sent before the --ready-file was written"
    for address in addresses:
        try:
            resp = http_request(address, "GET", "/", timeout=5)
        except OSError as exc:
            raise AssertionError(f"READY=1 was sent, but the handed-over socket {address} is not served"
                                 f" ({exc!r}); the startup line says: {_startup_line(process)}") from None
        assert resp.status == 200, f"{address}: {resp.describe()}"
        assert "pid" in resp.json()
    late = time.monotonic() - received
    assert late < ANSWER_AFTER_READY, f"answers came {late:.2f}s after READY=1 (limit {ANSWER_AFTER_READY}s)"


def _startup_line(process: ServeProcess) -> str:
    return next((line for line in process.stderr().splitlines() if "serving" in line), "(none)")


def _stopping_before_exit(process: ServeProcess, notify: NotifyReceiver, state: AppState, address: Any) -> None:
    slow = Background(lambda: http_request(address, "GET", f"/slow?t={SLOW}", timeout=20))
    state.wait_for_call("/slow", time.monotonic() + 10, process)
    terminate(process)
    stopping_at, _, _ = notify.wait_for("STOPPING=1", timeout=5)
    resp = slow.result(15)
    assert (resp.status, resp.body) == (200, b"slow done"), f"the in-flight request was not drained: {resp.describe()}"
    assert slow.finished_at is not None
    assert stopping_at < slow.finished_at, "STOPPING=1 came only after the in-flight request was answered"
    code = wait_exit(process, 15)
    assert code == 0, f"exit code {code} after SIGTERM"
    assert notify.count("READY=1") == 1, f"READY=1 sent more than once: {notify.texts()}"
    for text in notify.texts():
        mainpid = [line for line in text.split("\n") if line.startswith("MAINPID=")]
        assert mainpid in ([], [f"MAINPID={process.pid}"]), f"a notification names another main pid: {text!r}"


@pytest.mark.parametrize(("backend", "workers"), socket_backend_params(1) + socket_backend_params(2))
def test_listen_fds_tcp_and_unix(backend: str, workers: int, tmp_path: Path, sock_dir: Path,
                                 app_state: AppState) -> None:
    require_backend(backend)
    tcp = listening_tcp()
    unix_path = sock_dir / "app.sock"
    unix = listening_unix(unix_path)
    notify = NotifyReceiver(sock_dir)
    state = app_state
    port = tcp.getsockname()[1]
    tcp_address, unix_address = ("127.0.0.1", port), f"unix:{unix_path}"
    args = ["--backend", backend, "--workers", str(workers), "--graceful-timeout", "10", APP]
    command = activation_command([tcp.fileno(), unix.fileno()], ["web", "web-unix"], args, tmp_path / "ready.json")
    process = launch(command, tmp_path=tmp_path, env=clean_env(NOTIFY_SOCKET=notify.address, **state.env()),
                     pass_fds=[tcp.fileno(), unix.fileno()], label=f"{backend} LISTEN_FDS=2 w{workers}")
    try:
        _ready_then_serving(process, notify, state, [tcp_address, unix_address], workers, backend)
        ready = wait_ready(process, timeout=5)
        assert ready["addresses"] == [
            {"kind": "tcp", "host": "127.0.0.1", "port": port},
            {"kind": "unix", "path": str(unix_path)},
        ], f"the ready file does not list the two activated sockets: {ready}"
        startup = [line for line in process.stderr().splitlines() if "serving" in line]
        assert startup and f"127.0.0.1:{port}" in startup[0] and "unix" in startup[0], (
            f"the startup line does not name both sockets: {startup}")

        env = http_request(tcp_address, "GET", "/env", timeout=20).json()
        for where in ("environ", "child"):
            leaked = sorted(set(env[where]) & set(LISTEN_KEYS))
            assert not leaked, (f"{leaked} still in the {'app' if where == 'environ' else 'app child'}'s"
                                " environment: a child process would take the sockets for its own")

        _stopping_before_exit(process, notify, state, unix_address)
        assert unix_path.exists(), "the launcher removed the unix socket file systemd owns"
        assert still_accepts(tcp, tcp_address), "the TCP socket no longer accepts after the server exited"
        assert still_accepts(unix, unix_address), "the unix socket no longer accepts after the server exited"
    finally:
        process.stop()
        notify.close()
        tcp.close()
        unix.close()


def _fd_params() -> list[Any]:
    params = socket_backend_params(1)
    params += [p for p in socket_backend_params(2) if p.values[0] == "waitress"]
    return params


@pytest.mark.parametrize(("backend", "workers"), _fd_params())
def test_bind_inherited_fd_and_abstract_notify_socket(backend: str, workers: int, tmp_path: Path,
                                                      sock_dir: Path, app_state: AppState) -> None:
    require_backend(backend)
    tcp = listening_tcp()
    fd, port = tcp.fileno(), tcp.getsockname()[1]
    notify = NotifyReceiver(sock_dir, abstract=True)
    state = app_state
    args = ["--backend", backend, "--workers", str(workers), "--bind", f"fd://{fd}", "--graceful-timeout", "10", APP]
    process = launch(serve_command(args, tmp_path / "ready.json"), tmp_path=tmp_path,
                     env=clean_env(NOTIFY_SOCKET=notify.address, **state.env()), pass_fds=[fd],
                     label=f"{backend} fd://{fd} w{workers}")
    try:
        _ready_then_serving(process, notify, state, [("127.0.0.1", port)], workers, backend)
        ready = wait_ready(process, timeout=5)
        assert ready["addresses"] == [{"kind": "tcp", "host": "127.0.0.1", "port": port}], ready
        _stopping_before_exit(process, notify, state, ("127.0.0.1", port))
        assert still_accepts(tcp, ("127.0.0.1", port)), "the inherited socket no longer accepts after the exit"
    finally:
        process.stop()
        notify.close()
        tcp.close()


def _own_socket_params() -> list[Any]:
    return [name for name in backend_names("http")
            if (cls := backend_class(name)) is not None and not getattr(cls, "inherits_sockets", True)]


@pytest.mark.parametrize("backend", _own_socket_params())
def test_backend_that_binds_its_own_refuses_handed_over_sockets(backend: str, tmp_path: Path, sock_dir: Path,
                                                                app_state: AppState) -> None:
    """The counterpart of the exclusion above: a backend that cannot take a socket, given one by
    socket activation, must refuse to start with a message, not serve another address while the
    activated socket (where systemd sends the clients) is never accepted on."""
    require_backend(backend)
    tcp = listening_tcp()
    notify = NotifyReceiver(sock_dir)
    command = activation_command([tcp.fileno()], ["web"], ["--backend", backend, APP], tmp_path / "ready.json")
    process = launch(command, tmp_path=tmp_path, env=clean_env(NOTIFY_SOCKET=notify.address, **app_state.env()),
                     pass_fds=[tcp.fileno()], label=f"{backend} LISTEN_FDS=1 (refused)")
    try:
        code = wait_exit(process, 30)
    finally:
        process.stop()
        notify.close()
        tcp.close()
    assert code != 0 and not process.ready_path.exists(), f"{backend} started although it cannot take the socket"
    assert notify.count("READY=1") == 0, "READY=1 sent for a server that does not serve the activated socket"
    assert "LISTEN_FDS" in process.stderr() or "activation" in process.stderr(), (
        f"the error does not say that socket activation is the problem: {process.stderr()[-2000:]}")
