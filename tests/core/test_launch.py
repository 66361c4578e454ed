"""launch(): blocking and background, with a spec string and with a callable."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from launcher import OptionError, ServerError, launch
from tests.support import http_request

pytestmark = pytest.mark.server
REPO = Path(__file__).resolve().parents[2]


def hello(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [f"pid {os.getpid()}".encode()]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for key in list(os.environ):
        if key.startswith("SERVE_"):
            monkeypatch.delenv(key)


def test_background_spec_runs_in_a_fresh_child() -> None:
    before = set(sys.modules)
    with launch("tests.contract.app:app", background=True, bind="127.0.0.1:0") as server:
        assert server.running and server.pid != os.getpid()
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        assert server.addresses[0]["port"] > 0
        assert http_request(server.url, "GET", "/").status == 200
    assert server.poll() == 0  # leaving the block drained and stopped it with exit 0
    # this process imported no server library (another test in this worker may have, earlier)
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] == "waitress"}


def test_background_callable_is_forked(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    server = launch(hello, background=True, bind=f"unix:{sock}")
    try:
        response = http_request(f"unix:{sock}", "GET", "/")
        assert response.status == 200 and response.body == f"pid {server.pid}".encode()
    finally:
        assert server.stop(10) == 0
    assert not sock.exists()


def test_background_failure_raises_with_exit_code() -> None:
    with pytest.raises(ServerError, match="exited with code 4 before it was ready"):
        launch("no_such_module_for_launch:app", background=True, bind="127.0.0.1:0", ready_timeout=20)


def test_unknown_keyword_names_the_closest() -> None:
    with pytest.raises(OptionError, match="did you mean 'workers'"):
        launch("tests.contract.app:app", background=True, wrokers=2)


def test_blocking_launch_returns_exit_code_after_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"

    def stop_when_ready() -> None:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(pid, signal.SIGTERM)

    pid = os.fork()
    if pid == 0:  # the blocking launch runs in a child so its signal handlers stay there
        code = 1
        try:
            code = launch("tests.contract.app:app", bind="127.0.0.1:0", ready_file=str(ready))
        finally:
            os._exit(code)
    threading.Thread(target=stop_when_ready, daemon=True).start()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ready.exists()
