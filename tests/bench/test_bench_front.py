"""``serve bench`` on fastcgi through a real nginx and on cgi run by a real lighttpd (seconds each).

Under CI=true a missing nginx, lighttpd, wrk or flup is a failure, never a skip: the front
adapters must be exercised for real.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.bench.test_bench_run import TINY, bench, need_wrk  # noqa: F401 - need_wrk is a fixture
from tests.support import require_backend

pytestmark = pytest.mark.server


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture
def need_nginx() -> None:
    from launcher.bench import front_nginx

    reason = front_nginx.NginxFront().unavailable()
    if reason:
        message = f"the fastcgi front needs {reason}"
        if _ci():
            pytest.fail(message + " (CI must not skip)", pytrace=False)
        pytest.skip(message)
    require_backend("fastcgi")


def _sessions() -> dict[int, list[str]]:
    """session id -> command lines of the live (not zombie) processes in it."""
    out: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session
        if fields[0] != "Z":
            out.setdefault(int(fields[3]), []).append(cmdline or f"[{entry}]")
    return out


def assert_front_gone(rnd: dict[str, Any]) -> None:
    """Nothing of the round's front is left: no process in its session, none naming its directory."""
    pid = rnd["front_pid"]
    conf = next(arg for arg in rnd["front_argv"] if arg.endswith(".conf"))
    prefix = os.path.dirname(conf)
    assert prefix.startswith("/") and "serve-bench-" in prefix, conf
    sessions = _sessions()
    if pid in sessions:
        pytest.fail(f"{rnd['front']} (session {pid}) left running: {sessions[pid]}", pytrace=False)
    leftovers = [cmd for cmds in sessions.values() for cmd in cmds if prefix in cmd]
    if leftovers:
        pytest.fail(f"{rnd['front']} left running: {leftovers}", pytrace=False)


def front_round(doc: dict[str, Any]) -> dict[str, Any]:
    data = doc["backends"]["fastcgi"]
    assert data["label"] == "fastcgi (nginx)" and data["measures"] == "front + backend", data
    assert data["front"]["server"] == "nginx" and data["front"]["protocol"] == "fastcgi", data["front"]
    rnd: dict[str, Any]
    (rnd,) = data["rounds"]
    assert rnd["front"] == "nginx" and rnd["front_protocol"] == "fastcgi"
    assert os.path.basename(rnd["front_argv"][rnd["front_argv"].index("-p") - 1]) == "nginx"
    assert "fastcgi_pass bench_app;" in rnd["front_config"] and "include fastcgi_params;" in rnd["front_config"]
    assert rnd["url"].startswith("http://127.0.0.1:")
    assert rnd["front_stop"]["exit_code"] is not None
    return rnd


def test_fastcgi_is_loaded_through_nginx_and_reported_as_front_plus_backend(
        need_wrk: None, need_nginx: None, tmp_path: Path) -> None:  # noqa: F811
    code, doc, output = bench(["--workload", "hello", "--backends", "fastcgi,waitress", *TINY], tmp_path)
    assert code == 0, output
    assert list(doc["backends"]) == ["fastcgi", "waitress"]
    assert not any("fastcgi" in line for line in doc["skipped"]), doc["skipped"]
    assert doc["backends"]["waitress"]["label"] == "waitress" and doc["backends"]["waitress"]["front"] is None
    data = doc["backends"]["fastcgi"]
    assert data["status"] == "ok", data
    rnd = front_round(doc)
    assert rnd["verify"]["ok"] and rnd["verify"]["status"] == 200 and rnd["verify"]["body_sample"] == "Hello, World!"
    argv = rnd["server_argv"]
    bind = argv[argv.index("--bind") + 1]
    assert bind.startswith("unix:") and bind.endswith("/fastcgi.sock"), argv
    (run,) = rnd["runs"]
    assert run["requests"] > 0 and run["ok_requests"] == run["requests"]
    assert run["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    (row,) = data["summary"]
    assert row["rps"]["median"] > 0 and row["latency_ms"]["p50"] > 0 and row["latency_ms"]["p99"]["median"] > 0
    assert row["server_cpu_s_per_1k"] > 0
    assert row["peak_rss_bytes"] > 1_000_000
    # nginx's master and worker are counted with the backend's processes
    assert run["server_processes"] >= 3, run
    assert "fastcgi (nginx)" in output and "front + backend" in output
    assert_front_gone(rnd)


def test_error_responses_through_nginx_are_errors(need_wrk: None, need_nginx: None,  # noqa: F811
                                                   tmp_path: Path) -> None:
    code, doc, output = bench(["tests.bench.apps:fail_after_two", "--backends", "fastcgi", "--workers", "1",
                               *TINY], tmp_path)
    assert code == 0, output
    data = doc["backends"]["fastcgi"]
    assert data["status"] == "ok", data
    rnd = front_round(doc)
    assert rnd["verify"]["ok"] and rnd["verify"]["status"] == 200  # nginx's readiness request came first...
    (run,) = rnd["runs"]
    assert run["requests"] > 50  # ...then the load met only 500s, passed on by nginx
    assert run["errors"]["status"] >= run["requests"] - 2
    assert run["ok_requests"] <= 2 and run["rps"] < 3
    assert "status_errors" in run["flags"]
    assert "error responses" in output
    assert_front_gone(rnd)


@pytest.fixture
def need_lighttpd() -> None:
    from launcher.bench import front_lighttpd

    reason = front_lighttpd.LighttpdCGI().unavailable()
    if reason:
        message = f"the cgi front needs {reason}"
        if _ci():
            pytest.fail(message + " (CI must not skip)", pytrace=False)
        pytest.skip(message)
    require_backend("cgi")


def test_cgi_is_run_by_lighttpd_and_reported_as_front_plus_backend(
        need_wrk: None, need_lighttpd: None, tmp_path: Path) -> None:  # noqa: F811
    code, doc, output = bench(["--workload", "hello", "--backends", "cgi", *TINY], tmp_path)
    assert code == 0, output
    data = doc["backends"]["cgi"]
    assert data["status"] == "ok", data
    assert data["label"] == "cgi (lighttpd)" and data["measures"] == "front + backend"
    assert data["front"]["server"] == "lighttpd" and data["front"]["protocol"] == "cgi"
    rnd: dict[str, Any]
    (rnd,) = data["rounds"]
    assert "server_argv" not in rnd  # lighttpd runs the app: no backend server was started
    assert rnd["front"] == "lighttpd" and 'cgi.assign = ( "" => "" )' in rnd["front_config"]
    assert rnd["verify"]["ok"] and rnd["verify"]["body_sample"] == "Hello, World!"
    (run,) = rnd["runs"]
    assert run["requests"] > 0 and run["ok_requests"] == run["requests"]
    assert run["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    (row,) = data["summary"]
    assert row["rps"]["median"] > 0 and row["latency_ms"]["p50"] > 0
    # every request is a Python process lighttpd starts and reaps: its CPU time is counted
    assert row["server_cpu_s_per_1k"] > 1
    assert "cgi (lighttpd)" in output and "front + backend" in output
    assert_front_gone(rnd)
