"""The wrk script and the parser of its output: no server, no wrk."""

from __future__ import annotations

import json

import pytest

from launcher.bench import loadgen, wrk
from launcher.bench.wrk import LoadGenError

SUMMARY = {
    "requests": 7087, "duration_us": 1000430, "bytes": 857527,
    "errors": {"connect": 0, "read": 1, "write": 0, "status": 12, "timeout": 2},
    "latency_us": {"min": 95, "mean": 1622.9, "stdev": 1700.1, "max": 22460, "p50": 1258, "p90": 3010,
                   "p99": 9483, "p999": 15000},
}

OUTPUT = f"""Running 1s test @ http://127.0.0.1:8765/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.62ms    1.70ms  22.46ms   94.15%
    Req/Sec     7.12k     1.08k    8.63k    60.00%
  7087 requests in 1.00s, 837.43KB read
  Non-2xx or 3xx responses: 12
Requests/sec:   7083.95
Transfer/sec:    837.07KB

{wrk.MARKER}{json.dumps(SUMMARY)}
"""


def test_parse_reads_the_json_summary_and_the_text_rate() -> None:
    data = wrk.parse(OUTPUT)
    assert data["requests"] == 7087
    assert data["errors"]["status"] == 12
    assert data["latency_us"]["p99"] == 9483
    assert data["text_rps"] == pytest.approx(7083.95)


def test_parse_without_a_summary_says_what_wrk_printed() -> None:
    with pytest.raises(LoadGenError, match="unable to connect"):
        wrk.parse("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_parse_with_a_broken_summary_is_an_error() -> None:
    with pytest.raises(LoadGenError, match="not JSON"):
        wrk.parse(f"{wrk.MARKER}{{\"requests\": \n")


def test_parse_takes_the_last_summary_line() -> None:
    first = dict(SUMMARY, requests=1)
    data = wrk.parse(f"{wrk.MARKER}{json.dumps(first)}\nnoise\n{wrk.MARKER}{json.dumps(SUMMARY)}\n")
    assert data["requests"] == 7087


def test_a_load_result_counts_only_successful_responses_as_throughput() -> None:
    result = loadgen.LoadResult(
        generator="wrk", argv=[["wrk"]], requests=1000, duration_s=2.0, nbytes=1, errors={"status": 400, "read": 3},
        latency_ms={"p50": 1.0}, threads=1, cpu_s=0.5, wall_s=2.0)
    assert result.ok_requests == 600
    assert result.rps == 300
    assert result.errors == {"connect": 0, "read": 3, "write": 0, "timeout": 0, "status": 400}
    assert result.cpu_ratio == pytest.approx(0.25)


def test_script_sets_method_and_body_only_when_needed() -> None:
    get = wrk.script()
    assert "wrk.method" not in get and "wrk.body" not in get
    assert "done = function(summary, latency, requests)" in get
    assert wrk.MARKER in get
    post = wrk.script("POST", 65536)
    assert 'wrk.method = "POST"' in post
    assert 'wrk.body = string.rep("x", 65536)' in post


def test_argv_is_keep_alive_wrk_with_the_script() -> None:
    argv = wrk.argv("/usr/bin/wrk", "http://127.0.0.1:1/x", connections=64, threads=1, duration=10, timeout=10,
                    script_path="/tmp/s.lua")
    assert argv == ["/usr/bin/wrk", "-t1", "-c64", "-d10s", "--timeout=10s", "-s", "/tmp/s.lua", "http://127.0.0.1:1/x"]


@pytest.mark.parametrize(("connections", "cpus", "threads"), [(1, 1, 1), (256, 1, 1), (2, 4, 2), (64, 4, 4)])
def test_wrk_threads_are_one_per_generator_cpu_at_most(connections: int, cpus: int, threads: int) -> None:
    assert loadgen.threads_for(connections, cpus) == threads
