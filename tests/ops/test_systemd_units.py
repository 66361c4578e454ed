"""The units `serve config systemd --socket-activation` writes, driven the way systemd drives them:
the test plays systemd, listening on the .socket's ListenStream= addresses and running the
.service's ExecStart= (in its WorkingDirectory=, with its Environment=) with the sockets handed over
(LISTEN_FDS) and a NOTIFY_SOCKET (Type=notify).  Then the restart the .socket unit promises loses no
connection: the service is stopped (KillSignal=SIGTERM), a client connects while nothing runs, and
the next start answers it from the backlog."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ops.helpers import (
    APP,
    AppState,
    Background,
    NotifyReceiver,
    activation_command,
    clean_env,
    launch,
    listening_unix,
    terminate,
    wait_exit,
)
from tests.support import REPO, ServeProcess, http_request, require_backend

pytestmark = pytest.mark.server


def _units(tmp_path: Path, port: int, unix_path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    out = tmp_path / "units"
    out.mkdir()
    argv = [sys.executable, "-m", "launcher", "config", "systemd", "--socket-activation", "--name", "opsapp",
            "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{unix_path}", "--health-path", "/healthz",
            "--graceful-timeout", "5", "--output-dir", str(out), APP]
    proc = subprocess.run(argv, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"serve config systemd failed: {proc.stderr}{proc.stdout}"
    return _parse(out / "opsapp.service"), _parse(out / "opsapp.socket")


def _parse(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (comments and sections dropped; repeated keys kept in order)."""
    assert path.exists(), f"{path.name} was not written"
    values: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def _start(service: dict[str, list[str]], fds: list[int], notify: NotifyReceiver, state: AppState,
           tmp_path: Path, n: int) -> ServeProcess:
    env = clean_env(NOTIFY_SOCKET=notify.address, SERVE_READY_FILE=str(tmp_path / f"ready{n}.json"), **state.env())
    for assignment in service.get("Environment", []):
        for pair in shlex.split(assignment):
            key, _, value = pair.partition("=")
            env[key] = value
    (exec_start,) = service["ExecStart"]
    program = shlex.split(exec_start)
    (workdir,) = service["WorkingDirectory"]
    assert Path(workdir).resolve() == REPO.resolve(), f"WorkingDirectory={workdir}"
    command = activation_command(fds, ["opsapp.socket"] * len(fds), [], None, program=program)
    return launch(command, tmp_path=tmp_path, env=env, pass_fds=fds, ready_path=tmp_path / f"ready{n}.json",
                  label=f"ExecStart #{n}")


def test_generated_units_socket_activation_and_restart(tmp_path: Path, sock_dir: Path, app_state: AppState) -> None:
    require_backend("waitress")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    unix_path = sock_dir / "app.sock"
    service, sockets = _units(tmp_path, port, unix_path)
    assert service.get("Type") == ["notify"], service
    assert service.get("KillSignal") == ["SIGTERM"], service
    assert "--bind" not in service["ExecStart"][0], "ExecStart must take its sockets from the .socket unit"
    assert sockets.get("ListenStream") == [f"127.0.0.1:{port}", str(unix_path)], sockets

    # systemd's side of the .socket unit: listen on every ListenStream=, keep them across restarts.
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(int(sockets.get("Backlog", ["128"])[0]))
    unix = listening_unix(unix_path)
    notify = NotifyReceiver(sock_dir)
    fds = [tcp.fileno(), unix.fileno()]
    first = second = None
    try:
        first = _start(service, fds, notify, app_state, tmp_path, 1)
        notify.wait_for("READY=1", timeout=20, process=first)
        for address in (("127.0.0.1", port), f"unix:{unix_path}"):
            resp = http_request(address, "GET", "/", timeout=5)
            assert resp.status == 200 and resp.json()["pid"] == first.pid, resp.describe()
        assert http_request(("127.0.0.1", port), "GET", "/healthz", timeout=5).body == b"ready\n"

        terminate(first)  # systemctl restart: stop (KillSignal=SIGTERM) ...
        notify.wait_for("STOPPING=1", timeout=5)
        assert wait_exit(first, 15) == 0
        # ... a client comes while no server runs: it waits in the socket's backlog ...
        waiting = Background(lambda: http_request(("127.0.0.1", port), "GET", "/", timeout=30))
        time.sleep(0.3)
        assert not waiting.done, "the connection was refused or failed while the service was stopped"
        second = _start(service, fds, notify, app_state, tmp_path, 2)  # ... start
        resp = waiting.result(30)
        assert resp.status == 200, resp.describe()
        assert resp.json()["pid"] == second.pid, "answered by which process?"
        assert notify.count("READY=1") == 2, notify.texts()
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        notify.close()
        tcp.close()
        unix.close()
