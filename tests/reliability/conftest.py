"""Reliability suite wiring: one ``backend`` parameter per installed HTTP backend (module-scoped, so
each module's tests run backend by backend on one server), known gaps as strict xfails, and the
per-backend results table printed at the end (and written as JSON when ``RELIABILITY_RESULTS`` is
set: ``1`` for tests/reliability/corpus-results.json, or a path).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.reliability import gaps
from tests.reliability.app import read_calls

APP = "tests.reliability.app:app"
HTTP_BACKENDS = support.backend_names("http")

#: section -> backend -> key -> value, for the table at the end
RESULTS: dict[str, dict[str, dict[str, Any]]] = {}


def record(section: str, backend: str, key: str, value: Any) -> None:
    RESULTS.setdefault(section, {}).setdefault(backend, {})[key] = value


def expect(request: pytest.FixtureRequest, backend: str, check: str) -> None:
    """Mark this test a strict xfail when ``check`` is a known gap of ``backend`` (gaps.py says why)."""
    reason = gaps.reason(backend, check)
    if reason:
        request.node.add_marker(pytest.mark.xfail(reason=f"{backend}: {reason}", strict=True))


@pytest.fixture(scope="module", params=HTTP_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    support.require_backend(name)
    return name


def honoured(backend: str) -> frozenset[str]:
    from launcher.registry import get_class

    return get_class(backend).honoured()


class Served:
    """A ``serve`` process running the reliability app, and the directory its calls are recorded in."""

    def __init__(self, process: support.ServeProcess, state: Path, backend: str) -> None:
        self.process = process
        self.state = state
        self.backend = backend

    @property
    def address(self) -> tuple[str, int]:
        addr = self.process.address
        return addr["host"], int(addr["port"])

    def calls(self) -> list[dict[str, Any]]:
        return read_calls(self.state)

    def stop(self, timeout: float = 10.0) -> int | None:
        return self.process.stop(timeout)


def state_dir() -> Path:
    """A short, world-writable directory (the app may run as nobody) for the app's call log."""
    path = support.short_tmpdir("wlr-")
    path.chmod(0o777)
    return path


def serve_app(backend: str, *args: str, tmp_path: Path, bind: str = "127.0.0.1:0", app: str = APP,
              ready_timeout: float = 30.0, confirm: str = "auto") -> Served:
    state = state_dir()
    env = support.serve_env(RELIABILITY_STATE_DIR=str(state))
    process = support.start_serve(["--backend", backend, "--bind", bind, *args, app], env=env, tmp_path=tmp_path,
                                  ready_timeout=ready_timeout, confirm=confirm)
    return Served(process, state, backend)


def run_app(backend: str, *args: str, tmp_path: Path, bind: str = "127.0.0.1:0", app: str = APP,
            timeout: float = 20.0) -> support.Finished:
    env = support.serve_env(RELIABILITY_STATE_DIR=str(tmp_path))
    return support.run_serve(["--backend", backend, "--bind", bind, *args, app], env=env, tmp_path=tmp_path,
                             timeout=timeout)


def connect_from(source: str, address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``address`` whose local (source) address is ``source``, e.g. 127.0.0.2."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(address)
    return sock


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = support.short_tmpdir("wlr-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- the table at the end


def _table(section: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for values in rows.values():
        keys += [k for k in values if k not in keys]
    backends = list(rows)
    width = max([len(k) for k in keys] + [len(section)])
    col = max([len(b) for b in backends] + [10])
    lines = [f"{section:<{width}}  " + "  ".join(f"{b:<{col}}" for b in backends)]
    for key in keys:
        cells = [str(rows[b].get(key, "-")) for b in backends]
        lines.append(f"{key:<{width}}  " + "  ".join(f"{c:<{col}}" for c in cells))
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not RESULTS:
        return
    terminalreporter.section("reliability results per backend")
    for section, rows in RESULTS.items():
        for line in _table(section, rows):
            terminalreporter.write_line(line)
        terminalreporter.write_line("")
    target = os.environ.get("RELIABILITY_RESULTS", "").strip()
    if target:
        path = Path(__file__).with_name("corpus-results.json") if target == "1" else Path(target)
        path.write_text(json.dumps(RESULTS, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"written: {path}")
