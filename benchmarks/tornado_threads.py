"""Tornado with a thread pool against the bare WSGIContainer: 20 concurrent 100 ms requests.

    python benchmarks/tornado_threads.py [--runs 5] [--concurrent 20]

Without an executor tornado.wsgi.WSGIContainer runs every request on the IOLoop thread, so 20
requests of 100 ms each take 2 s end to end; `serve --backend tornado --threads 20` runs them on a
pool.  Goal: under 0.5 s through the launcher.  Writes benchmarks/results/tornado_threads.json.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from launcher.bench import pinning

APP = "benchmarks.apps:sleep100"


def burst(port: int, concurrent: int) -> float:
    """Send ``concurrent`` requests at once; seconds until the last answer."""

    def one() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        statuses = list(pool.map(lambda _: one(), range(concurrent)))
    elapsed = time.perf_counter() - start
    if statuses != [200] * concurrent:
        raise RuntimeError(f"not every request answered 200: {statuses}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=common.env_int("BENCH_RUNS", 5))
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args(argv)
    pin = pinning.plan()
    workdir = common.workdir()
    sides = {
        "serve --backend tornado --threads 20": lambda port: [
            *common.serve_script(), "--backend", "tornado", "--threads", str(args.concurrent),
            "--bind", f"127.0.0.1:{port}", APP],
        "bare WSGIContainer (no executor)": lambda port: [
            sys.executable, "benchmarks/native/tornado_server.py", "--port", str(port), "--threads", "0", APP],
    }
    results: dict[str, dict[str, object]] = {}
    for label, command in sides.items():
        port = common.free_port()
        proc = common.Proc(command(port), cpus=pin.server, workdir=workdir, label=label.split()[0])
        try:
            proc.wait_http(f"http://127.0.0.1:{port}/")
            times = [burst(port, args.concurrent) for _ in range(args.runs)]
        finally:
            proc.stop()
        results[label] = {"argv": proc.argv, "seconds": times, "median": common.median(times)}
        print(f"{label:<40} median {common.median(times):.3f}s  runs {', '.join(f'{t:.3f}' for t in times)}")
    launcher = float(results["serve --backend tornado --threads 20"]["median"])  # type: ignore[arg-type]
    document = {**common.header(pin), "concurrent": args.concurrent, "request_seconds": 0.1, "results": results,
                "goal": "launcher under 0.5 s", "met": launcher < 0.5}
    path = common.write("tornado_threads", document, args.out)
    print(f"launcher {launcher:.3f}s (goal < 0.5 s): {'ok' if launcher < 0.5 else 'MISSED'}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
