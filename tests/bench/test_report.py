"""From per-round records to the summary, the table and the JSON document: no server, no wrk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.bench import pinning, report, results
from launcher.bench.plan import BenchPlan


def run(level: int, rps: float, p99: float, *, status: int = 0, run_flags: dict[str, float] | None = None
        ) -> dict[str, Any]:
    requests = int(rps) + status
    return {
        "concurrency": level, "requests": requests, "ok_requests": int(rps), "rps": rps,
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": status},
        "latency_ms": {"p50": p99 / 4, "p90": p99 / 2, "p99": p99, "max": p99 * 2, "mean": p99 / 3},
        "server_cpu_s_per_1k": 0.1, "peak_rss_bytes": 20_000_000, "flags": run_flags or {}, "message": "",
        "warnings": [],
    }


def document() -> dict[str, Any]:
    plan = BenchPlan(app="benchmarks.apps:hello", backends=["alpha", "beta"], concurrency=(1, 16), duration=1,
                     rounds=3, pinning=pinning.Pinning((0,), (1,), "server on CPU 0, load generator on CPU 1"))
    records = {
        "alpha": {"status": "ok", "rounds": [
            {"round": r, "verify": {"ok": True, "keep_alive": True},
             "runs": [run(1, 1000 + r, 1.0), run(16, value, 5.0)]}
            for r, value in ((1, 3000.0), (2, 4000.0), (3, 5000.0))]},
        "beta": {"status": "failed", "failure": "round 1: verification failed: status 500", "rounds": [
            {"round": 1, "verify": {"ok": False, "status": 500, "keep_alive": False}, "runs": []}]},
    }
    return results.build(plan, records, argv=["serve", "bench"], versions={"backends": {"alpha": "1.0"}},
                         generator={"kind": "wrk", "version": "wrk 4.1.0", "fidelity": "high"}, load_before=(),
                         started=0.0)


def test_summary_is_median_with_min_max_and_flags_disagreement() -> None:
    doc = document()
    steady, noisy = doc["backends"]["alpha"]["summary"]
    assert steady["rps"]["median"] == 1002 and steady["rps"]["min"] == 1001 and steady["rps"]["max"] == 1003
    assert not steady["disagree"]
    assert noisy["rps"] == {"median": 4000.0, "min": 3000.0, "max": 5000.0, "spread": 0.5, "n": 3}
    assert noisy["disagree"]
    assert noisy["latency_ms"]["p99"]["median"] == 5.0
    assert any("alpha at 16 connections: rounds disagree by 50%" in w for w in doc["warnings"])


def test_failed_backend_and_closed_connections_are_reported() -> None:
    doc = document()
    assert doc["backends"]["beta"]["status"] == "failed"
    assert doc["backends"]["beta"]["summary"] == []
    assert any(w.startswith("beta failed: round 1: verification failed") for w in doc["warnings"])
    assert any("beta closed the connection" in w for w in doc["warnings"])


def test_plain_table_shows_medians_ranges_and_failures() -> None:
    text = report.plain_table(document())
    assert "alpha" in text and "4,000" in text and "3,000-5,000" in text and "spread 50%" in text
    assert "FAILED beta: round 1: verification failed: status 500" in text
    assert "server on CPU 0, load generator on CPU 1" in text


def test_error_responses_are_flagged_in_the_table() -> None:
    doc = document()
    row = results.summarize_backend(
        [{"runs": [run(4, 0.0, 1.0, status=5000, run_flags={"status_errors": 5000})]}], (4,))[0]
    assert row["rps"]["median"] == 0.0 and row["errors"]["status"] == 5000
    doc["backends"]["alpha"]["summary"] = [row]
    doc["backends"]["alpha"]["rounds"] = [{"runs": [run(4, 0.0, 1.0, status=5000, run_flags={"status_errors": 5000})]}]
    text = report.plain_table(doc)
    assert "error responses" in text and "5,000 error responses" in text


def test_document_is_json_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    results.write(document(), str(path))
    data = json.loads(path.read_text())
    assert data["schema"] == results.SCHEMA
    assert set(data["machine"]) >= {"cpu_count", "cpu_model", "python", "kernel"}
    assert not list(tmp_path.glob("*.tmp"))


def test_chart_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from launcher.bench import chart

    path = tmp_path / "chart.png"
    chart.draw(document(), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def fronted_document() -> dict[str, Any]:
    """alpha over HTTP, fastcgi loaded through nginx (the runner records the front per round)."""
    plan = BenchPlan(app="benchmarks.apps:hello", backends=["alpha", "fastcgi"], protocols={"fastcgi": "fastcgi"},
                     concurrency=(4,), duration=1, rounds=1,
                     pinning=pinning.Pinning((0,), (1,), "server on CPU 0, load generator on CPU 1"))
    records = {
        "alpha": {"status": "ok", "rounds": [{"round": 1, "verify": {"ok": True}, "runs": [run(4, 900.0, 2.0)]}]},
        "fastcgi": {"status": "ok", "rounds": [{"round": 1, "verify": {"ok": True}, "front": "nginx",
                                                "front_protocol": "fastcgi", "runs": [run(4, 700.0, 3.0)]}]},
    }
    return results.build(plan, records, argv=["serve", "bench"], versions={}, load_before=(), started=0.0,
                         generator={"kind": "wrk", "version": "wrk 4.1.0", "fidelity": "high"})


def test_a_backend_behind_a_front_is_labelled_front_plus_backend(tmp_path: Path) -> None:
    doc = fronted_document()
    fastcgi, alpha = doc["backends"]["fastcgi"], doc["backends"]["alpha"]
    assert fastcgi["label"] == "fastcgi (nginx)" and fastcgi["measures"] == "front + backend"
    assert fastcgi["front"]["server"] == "nginx" and fastcgi["front"]["protocol"] == "fastcgi"
    assert alpha["label"] == "alpha" and alpha["measures"] == "backend" and alpha["front"] is None
    text = report.plain_table(doc)
    table = text.splitlines()
    assert any(line.startswith("fastcgi (nginx)") and "700" in line for line in table), text
    assert any(line.startswith("alpha ") for line in table), text
    assert any(line.startswith("fastcgi (nginx): front + backend:") and "CPU s/1k and peak MB count both" in line
               for line in table), text
    path = tmp_path / "out.json"
    results.write(doc, str(path))
    assert json.loads(path.read_text())["backends"]["fastcgi"]["label"] == "fastcgi (nginx)"


def test_chart_labels_a_fronted_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from launcher.bench import chart

    labels: list[str] = []
    original = Axes.errorbar

    def spy(self: Axes, *args: Any, **kwargs: Any) -> Any:
        labels.append(kwargs["label"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", spy)
    path = tmp_path / "chart.png"
    chart.draw(fronted_document(), str(path))
    assert labels == ["alpha", "fastcgi (nginx)"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
