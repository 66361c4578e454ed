"""Logs (issue 7, point 2): what a log shipper reading the server's stderr gets, for every backend.

* ``--log-format json``: every stderr line of a short run (start, requests, SIGTERM) is one JSON
  object: the launcher's messages (the startup line included) with one set of fields, the access
  log (``--access-log``) with another, the same sets whatever the backend.  A line that is not
  JSON fails the test and is quoted: a server printing its own unstructured log is a bug.
* ``--access-log-format`` with named fields in text mode gives exactly those lines.
* Logs go to stderr; stdout stays empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import APP, AppState, clean_env, launch, serve_command, terminate, wait_exit, wait_ready
from tests.support import backend_names, http_request, require_backend

pytestmark = pytest.mark.server

#: The fields of a launcher message (``exception`` only when there is one).
LAUNCHER_FIELDS = {"time", "level", "pid", "logger", "message"}
LAUNCHER_OPTIONAL = {"exception"}
#: The fields of an access-log record.
ACCESS_FIELDS = {"type", "client", "time", "method", "path", "query", "protocol", "status", "size", "referer",
                 "user_agent", "duration_ms", "pid"}
#: A launcher line in text mode: ``[2024-01-01 12:00:00 +0000] [123] [INFO] message``.
TEXT_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")

#: (method, path, body) of the requests of a short run, and (method, logged path, status) expected.
REQUESTS = [("GET", "/", None), ("GET", "/missing?x=1", None), ("POST", "/created", b"name=value")]
EXPECTED = [("GET", "/", 200), ("GET", "/missing?x=1", 404), ("POST", "/created", 201)]
CONFIRM = ("GET", "/ping", 404)  # the readiness probe of wait_ready, logged too


class Run:
    """The output of one short run: start, the requests, SIGTERM, exit."""

    def __init__(self, stderr: str, stdout: str, code: int, port: int, statuses: list[int]) -> None:
        self.stderr = stderr
        self.stdout = stdout
        self.code = code
        self.port = port
        self.statuses = statuses

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def short_run(backend: str, extra: list[str], tmp_path: Path, state: AppState,
              requests: list[tuple[str, str, bytes | None]], workers: int = 1) -> Run:
    args = ["--backend", backend, "--workers", str(workers), "--bind", "127.0.0.1:0", "--graceful-timeout", "10",
            *extra, APP]
    process = launch(serve_command(args, tmp_path / "ready.json"), tmp_path=tmp_path,
                     env=clean_env(**state.env()), label=f"{backend} {' '.join(extra)}")
    try:
        ready = wait_ready(process, confirm=CONFIRM[1])
        (address,) = ready["addresses"]
        statuses = []
        for method, path, body in requests:
            statuses.append(http_request(address, method, path, body=body, timeout=10).status)
        terminate(process)
        code = wait_exit(process, 15)
    finally:
        process.stop()
    return Run(process.stderr(), process.stdout(), code, address["port"], statuses)


def _json_params() -> list[Any]:
    params: list[Any] = [pytest.param(name, 1, id=f"{name}-w1") for name in backend_names("http")]
    params.append(pytest.param("waitress", 2, id="waitress-w2"))
    return params


def _parse_all(run: Run) -> tuple[list[dict[str, Any]], list[str]]:
    records, not_json = [], []
    for line in run.lines():
        try:
            record = json.loads(line)
        except ValueError:
            not_json.append(line)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            not_json.append(line)
    return records, not_json


def _check_records(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    access = [r for r in records if r.get("type") == "access"]
    launcher = [r for r in records if "type" not in r]
    other = [r for r in records if "type" in r and r["type"] != "access"]
    assert not other, f"records of an unknown type: {other}"
    for record in launcher:
        keys = set(record)
        assert LAUNCHER_FIELDS <= keys <= LAUNCHER_FIELDS | LAUNCHER_OPTIONAL, (
            f"a launcher record with other fields than {sorted(LAUNCHER_FIELDS)}: {record}")
        assert isinstance(record["pid"], int) and isinstance(record["message"], str), record
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}, record
    for record in access:
        assert set(record) == ACCESS_FIELDS, (
            f"an access record with other fields than {sorted(ACCESS_FIELDS)}: {record}")
        assert all(isinstance(record[k], int) for k in ("status", "size", "pid")), record
        assert isinstance(record["duration_ms"], (int, float)), record
    return launcher, access


@pytest.mark.parametrize(("backend", "workers"), _json_params())
def test_json_log_every_stderr_line_is_an_object(backend: str, workers: int, tmp_path: Path,
                                                 app_state: AppState) -> None:
    require_backend(backend)
    run = short_run(backend, ["--log-format", "json", "--access-log"], tmp_path, app_state, REQUESTS, workers)
    assert run.statuses == [status for _, _, status in EXPECTED], run.statuses
    records, not_json = _parse_all(run)
    assert not not_json, (f"{len(not_json)} stderr line(s) of {backend} are not JSON with --log-format json;"
                          " the first ones:\n" + "\n".join(not_json[:10]))
    launcher, access = _check_records(records)
    startup = [r for r in launcher if f"{backend} serving {APP} at http://127.0.0.1:{run.port}" in r["message"]]
    assert len(startup) == 1, f"no (or several) JSON startup records: {launcher}"
    logged = sorted((r["method"], r["path"], r["status"]) for r in access)
    assert logged == sorted([*EXPECTED, CONFIRM]), f"access records {logged}, expected {sorted([*EXPECTED, CONFIRM])}"
    assert run.stdout == "", f"stdout is not empty: {run.stdout[:500]!r}"
    assert run.code == 0


@pytest.mark.parametrize("backend", backend_names("http"))
def test_json_log_app_error_is_one_object(backend: str, tmp_path: Path, app_state: AppState) -> None:
    """An exception in the app: the server's error report must be JSON too (the traceback in one
    record), not a bare traceback spread over many lines."""
    require_backend(backend)
    run = short_run(backend, ["--log-format", "json", "--access-log"], tmp_path, app_state,
                    [("GET", "/error", None)])
    assert run.statuses == [500]
    records, not_json = _parse_all(run)
    assert not not_json, (f"{len(not_json)} stderr line(s) of {backend} are not JSON after an app error;"
                          " the first ones:\n" + "\n".join(not_json[:10]))
    launcher, access = _check_records(records)
    assert [(r["path"], r["status"]) for r in access if r["path"] == "/error"] == [("/error", 500)]
    reported = [r for r in launcher if "ops-app-error" in r.get("exception", "") + r["message"]]
    assert reported, f"the app's exception was not logged as a record: {launcher}"
    assert run.stdout == ""


@pytest.mark.parametrize("backend", backend_names("http"))
def test_text_access_log_format_gives_exactly_those_lines(backend: str, tmp_path: Path,
                                                         app_state: AppState) -> None:
    require_backend(backend)
    run = short_run(backend, ["--access-log", "--access-log-format", "{method} {path} {status}"], tmp_path,
                    app_state, REQUESTS)
    assert run.statuses == [status for _, _, status in EXPECTED], run.statuses
    rest = [line for line in run.lines() if not TEXT_LINE.match(line)]
    expected = [f"{m} {p} {s}" for m, p, s in [*EXPECTED, CONFIRM]]
    assert sorted(rest) == sorted(expected), (
        f"stderr lines besides the launcher's: {rest}\nexpected exactly: {expected}\nfull stderr:\n{run.stderr}")
    assert any("serving" in line for line in run.lines() if TEXT_LINE.match(line)), "no startup line"
    assert run.stdout == "", f"stdout is not empty: {run.stdout[:500]!r}"
    assert run.code == 0
