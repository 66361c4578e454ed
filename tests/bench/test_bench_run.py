"""``serve bench`` end to end, through the CLI, on real servers and real wrk (a few seconds each).

Under CI=true a missing wrk is a failure: the fallback generator is low fidelity and CI must
exercise the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from launcher.registry import list_backends
from tests.support import REPO

pytestmark = pytest.mark.server

TINY = ["--concurrency", "4", "--duration", "1s", "--rounds", "1", "--warmup", "0"]


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture
def need_wrk() -> None:
    if shutil.which("wrk") is None:
        if _ci():
            pytest.fail("wrk is not installed: CI must run serve bench with wrk (apt-get install wrk)")
        pytest.skip("wrk is not installed")


def http_backends() -> list[str]:
    """waitress first, then one other installed HTTP backend when there is one."""
    names = [i.name for i in list_backends() if i.installed and i.protocol == "http"]
    others = [n for n in names if n != "waitress"]
    return ["waitress", *others[:1]]


def bench(args: list[str], tmp_path: Path, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    """Run ``python -m launcher bench ARGS --json F``; (exit code, the JSON or {}, stderr)."""
    out = tmp_path / "bench.json"
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "bench", *args, "--json", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the bench stops its server on the way out
        stdout, stderr = proc.communicate(timeout=40)
        pytest.fail(f"serve bench did not finish in {timeout}s:\n{stdout}\n{stderr}")
    document = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, document, stdout + stderr


def test_tiny_bench_reports_every_figure(need_wrk: None, tmp_path: Path) -> None:
    backends = http_backends()
    code, doc, output = bench(["--workload", "hello", "--backends", ",".join(backends), *TINY], tmp_path)
    assert code == 0, output
    assert list(doc["backends"]) == backends
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["python"] and doc["machine"]["kernel"]
    assert doc["versions"]["launcher"] and doc["versions"]["wrk"].startswith("wrk")
    assert doc["generator"] == {"kind": "wrk", "version": doc["versions"]["wrk"], "fidelity": "high",
                                "threads": "min(connections, generator CPUs)"}
    for name in backends:
        data = doc["backends"][name]
        assert data["status"] == "ok", data
        assert data["version"]
        (row,) = data["summary"]
        assert row["concurrency"] == 4 and row["rounds"] == 1
        assert row["rps"]["median"] > 0
        assert row["rps"]["min"] == row["rps"]["max"] == row["rps"]["median"]
        assert row["latency_ms"]["p50"] > 0 and row["latency_ms"]["p90"] > 0
        assert row["latency_ms"]["p99"]["median"] > 0 and row["latency_ms"]["max"] > 0
        assert row["server_cpu_s_per_1k"] > 0
        assert row["peak_rss_bytes"] > 1_000_000
        assert row["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
        (rnd,) = data["rounds"]
        assert rnd["verify"]["ok"] and rnd["verify"]["status"] == 200
        assert rnd["verify"]["body_sample"] == "Hello, World!"
        argv = rnd["server_argv"]
        assert argv[argv.index("-m") + 1:argv.index("-m") + 3] == ["launcher", "run"]
        assert ["--backend", name] == argv[argv.index("--backend"):argv.index("--backend") + 2]
        (run,) = rnd["runs"]
        assert any(os.path.basename(part) == "wrk" for part in run["argv"][0])
        assert run["requests"] > 0 and run["duration_s"] > 0.5
        assert run["rps"] == pytest.approx(run["wrk_text_rps"], rel=0.01)
        assert rnd["stop"]["exit_code"] is not None
    assert f"{backends[0]}" in output and "req/s" in output


def test_error_responses_are_errors_not_throughput(need_wrk: None, tmp_path: Path) -> None:
    code, doc, output = bench(["tests.bench.apps:fail_after_first", "--backends", "waitress", *TINY], tmp_path)
    assert code == 0, output
    data = doc["backends"]["waitress"]
    assert data["status"] == "ok"
    (rnd,) = data["rounds"]
    assert rnd["verify"]["ok"] and rnd["verify"]["status"] == 200  # the check passed first...
    (run,) = rnd["runs"]
    assert run["requests"] > 100  # ...then the load met only 500s
    assert run["errors"]["status"] >= run["requests"] - 1
    assert run["ok_requests"] <= 1
    assert run["rps"] < 2
    assert "status_errors" in run["flags"]
    assert "error responses" in output


def test_a_backend_whose_check_fails_is_reported_failed_not_loaded(need_wrk: None, tmp_path: Path) -> None:
    code, doc, output = bench(["tests.bench.apps:always_500", "--backends", "waitress", *TINY], tmp_path)
    assert code == 1, output
    data = doc["backends"]["waitress"]
    assert data["status"] == "failed"
    assert "verification failed: status 500" in data["failure"]
    (rnd,) = data["rounds"]
    assert rnd["runs"] == [] and "warmup" not in rnd
    assert rnd["verify"]["status"] == 500
    assert "FAILED waitress" in output


def test_python_fallback_is_labelled_low_fidelity(tmp_path: Path) -> None:
    code, doc, output = bench(["--workload", "echo", "--backends", "waitress", "--generator", "python", *TINY],
                              tmp_path)
    assert code == 0, output
    assert doc["generator"]["fidelity"] == "low"
    assert any("LOW FIDELITY" in w for w in doc["warnings"])
    (row,) = doc["backends"]["waitress"]["summary"]
    assert row["rps"]["median"] > 0 and row["errors"]["status"] == 0
    assert "LOW FIDELITY" in output
