"""Shared pytest wiring: the ``server`` marker, server output on failures, no leftover servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support

_MARK_KEY = pytest.StashKey[int]()
_OUTPUT_LIMIT = 40_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server: starts real `python -m launcher` server processes (slow-ish)")
    # Registered by pytest-xdist too; repeated here so --strict-markers holds with -p no:xdist.
    config.addinivalue_line(
        "markers", "xdist_group(name): keep these tests on one xdist worker (--dist loadgroup)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Remember which servers existed before this test's fixtures ran.
    item.stash[_MARK_KEY] = support.registry_mark()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.failed:
        mark = item.stash.get(_MARK_KEY, support.registry_mark())
        seen: list[support.ServeProcess] = []
        # Started during this test (setup included), plus still-running ones (module-scoped
        # servers used by this test were started during an earlier test).
        for process in support.processes_since(mark) + support.live_processes():
            if process not in seen:
                seen.append(process)
        for process in seen:
            text = process.output()
            if len(text) > _OUTPUT_LIMIT:
                text = f"[... {len(text) - _OUTPUT_LIMIT} chars cut ...]\n" + text[-_OUTPUT_LIMIT:]
            state = "running" if process.alive() else f"exit code {process.proc.returncode}"
            report.sections.append(
                (f"server output {process.label} ({state})",
                 f"$ {process.command_line}\n{text or '(no output)'}"))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    support.kill_all()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short-path temporary directory for unix sockets (removed afterwards)."""
    import shutil

    path = support.short_tmpdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., support.ServeProcess]]:
    """``serve(args, **kw)`` -> started ServeProcess, stopped (group killed) at teardown."""
    started: list[support.ServeProcess] = []

    def start(args: list[str], **kw: Any) -> support.ServeProcess:
        kw.setdefault("tmp_path", tmp_path)
        process = support.start_serve(args, **kw)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in reversed(started):
            process.stop()
