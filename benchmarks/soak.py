"""Soak: every backend serves N requests (100,000 by default) at 128 connections through wrk with zero
errors, and the memory of its whole process tree stops growing once warmed up.

    python -m benchmarks.soak                          # every installed HTTP backend, 100,000 requests each
    python -m benchmarks.soak waitress gevent          # some of them
    SOAK_REQUESTS=10000 python -m benchmarks.soak      # a short trial

A 3-second wrk run first warms the server up and measures its rate; then wrk runs for as long as N
requests take at that rate plus 20% (``-d``: wrk has no "stop after N requests" that ends the run
itself -- a Lua ``thread:stop()`` leaves it sleeping out its duration), and again for what is
missing if the rate dropped.  wrk is pinned like ``serve bench`` (server and wrk on separate CPUs).
The summed RSS of the server's process tree is sampled every 0.1 s while the main runs go.  The samples
are cut in thirds by time: the first is warm-up (imports, pools, buffers growing to their working
size), and the tree passes when the highest sample of the last third is at most ``--growth`` per
cent (3 by default) above the highest of the middle third.  A leak of a few hundred bytes per
request would show: 100,000 requests x 300 B is 30 MB, several times a server's working set.

Pass: wrk saw no error (connect, read, write, timeout, or a status other than 2xx/3xx), it
completed at least N requests, and memory did not grow.  Results go to
benchmarks/results/soak.json (``--out`` elsewhere), one entry per backend with the wrk summary,
the memory verdict and the samples (MiB, thinned to at most 120).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from launcher.bench import pinning, procs
from launcher.bench import wrk as wrkmod

APP = "benchmarks.apps:hello"
MiB = 1024 * 1024

#: Seconds of the warm-up run that also measures the rate.
CALIBRATION = 3
#: wrk runs for the time N requests take at the calibrated rate times this.
HEADROOM = 1.2


def http_backends() -> list[str]:
    from launcher.registry import list_backends

    return [b.name for b in list_backends() if b.installed and b.protocol == "http"]


class Sampler:
    """(seconds, RSS bytes of the tree) every ``interval`` seconds, in a thread."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-memory", daemon=True)
        self._start = 0.0

    def _loop(self) -> None:
        while True:
            reading = procs.read_tree(self.root)
            self.samples.append((time.monotonic() - self._start, reading.rss_bytes))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Sampler:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def memory_verdict(samples: list[tuple[float, int]], growth_limit: float) -> dict[str, Any]:
    """Compare the highest RSS of the last third of the run with that of the middle third."""
    if len(samples) < 6:
        return {"ok": False, "why": f"only {len(samples)} memory samples: run longer (more requests)"}
    end = samples[-1][0]
    middle = [rss for t, rss in samples if end / 3 <= t < 2 * end / 3]
    last = [rss for t, rss in samples if t >= 2 * end / 3]
    if not middle or not last:
        return {"ok": False, "why": "not enough samples in each third"}
    mid_max, last_max = max(middle), max(last)
    growth = (last_max - mid_max) * 100.0 / mid_max
    return {
        "ok": growth <= growth_limit,
        "middle_third_max_mib": round(mid_max / MiB, 2),
        "last_third_max_mib": round(last_max / MiB, 2),
        "growth_percent": round(growth, 2),
        "limit_percent": growth_limit,
        "warmup_max_mib": round(max(rss for t, rss in samples if t < end / 3) / MiB, 2),
    }


def soak(backend: str, *, requests: int, connections: int, threads: int, growth: float, workers: int,
         pin: pinning.Pinning, workdir: str) -> dict[str, Any]:
    port = common.free_port()
    url = f"http://127.0.0.1:{port}/"
    server = common.Proc([*common.serve_script(), "--backend", backend, "--bind", f"127.0.0.1:{port}",
                          "--workers", str(workers), APP],
                         cpus=pin.server, workdir=workdir, label=f"soak-{backend}")
    entry: dict[str, Any] = {"backend": backend, "requests_asked": requests, "connections": connections,
                             "workers": workers}
    try:
        server.wait_http(url)
        script_path = os.path.join(workdir, f"soak-{backend}.lua")
        Path(script_path).write_text(wrkmod.script())

        def run_wrk(seconds: int) -> tuple[dict[str, Any], list[str]]:
            argv = pinning.prefix(pin.generator) + wrkmod.argv(
                wrkmod.find() or "wrk", url, connections=connections, threads=threads, duration=seconds, timeout=10,
                script_path=script_path)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
            return wrkmod.parse(done.stdout), argv

        warm, _ = run_wrk(CALIBRATION)
        rate = warm["requests"] / max(warm["duration_us"] / 1e6, 0.001)
        entry["warmup"] = {"requests": int(warm["requests"]), "rps": round(rate, 1), "errors": warm["errors"]}
        total = 0
        errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        latency: dict[str, Any] = {}
        runs = []
        started = time.monotonic()
        with Sampler(server.pid) as sampler:
            for _ in range(3):
                missing = requests - total
                if missing <= 0:
                    break
                seconds = max(2, math.ceil(missing / max(rate, 1.0) * HEADROOM))
                summary, argv = run_wrk(seconds)
                total += int(summary["requests"])
                for key, value in summary["errors"].items():
                    errors[key] = errors.get(key, 0) + int(value)
                latency = summary["latency_us"]
                runs.append({"seconds": seconds, "requests": int(summary["requests"]), "argv": argv})
                rate = summary["requests"] / max(summary["duration_us"] / 1e6, 0.001)
        took = time.monotonic() - started
        memory = memory_verdict(sampler.samples, growth)
        step = max(1, len(sampler.samples) // 120)
        entry.update({
            "requests": total,
            "seconds": round(took, 2),
            "rps": round(total / took, 1) if took else None,
            "errors": errors,
            "latency_ms_last_run": {k: round(v / 1000, 2) for k, v in latency.items()},
            "memory": memory,
            "rss_samples_mib": [[round(t, 2), round(rss / MiB, 2)] for t, rss in sampler.samples[::step]],
            "server_alive": server.popen.poll() is None,
            "wrk_runs": runs,
        })
        clean = not any(errors.values()) and total >= requests and entry["server_alive"]
        entry["ok"] = bool(clean and memory["ok"])
    except Exception as exc:  # one backend failing must not lose the others' results
        entry.update({"ok": False, "error": f"{exc.__class__.__name__}: {exc}", "log": server.log_tail()})
    finally:
        entry["exit_code"] = server.stop()
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("backends", nargs="*", help="backends to soak (default: every installed HTTP backend)")
    parser.add_argument("--requests", type=int, default=common.env_int("SOAK_REQUESTS", 100_000))
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="--workers for every backend")
    parser.add_argument("--growth", type=float, default=3.0, help="per cent the last third may exceed the middle")
    parser.add_argument("--no-pin", action="store_true", help="let server and wrk share every CPU")
    parser.add_argument("--out", default=str(common.RESULTS / "soak.json"))
    args = parser.parse_args(argv)
    if wrkmod.find() is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    pin = pinning.plan(not args.no_pin)
    workdir = common.workdir()
    document = common.header(pin)
    document.update({"requests_per_backend": args.requests, "connections": args.connections, "app": APP,
                     "growth_limit_percent": args.growth, "wrk": wrkmod.version(wrkmod.find() or "wrk"),
                     "backends": []})
    for backend in args.backends or http_backends():
        ok, why = common.installed(backend)
        if not ok:
            document["backends"].append({"backend": backend, "ok": False, "error": why})
            continue
        entry = soak(backend, requests=args.requests, connections=args.connections, threads=args.wrk_threads,
                     growth=args.growth, workers=args.workers, pin=pin, workdir=workdir)
        document["backends"].append(entry)
        memory = entry.get("memory", {})
        print(f"{backend:9} {'ok  ' if entry['ok'] else 'FAIL'} {entry.get('requests', 0):>7} requests "
              f"in {entry.get('seconds', 0):6.1f}s  errors {entry.get('errors', entry.get('error'))}  "
              f"rss {memory.get('middle_third_max_mib', '?')} -> {memory.get('last_third_max_mib', '?')} MiB "
              f"({memory.get('growth_percent', '?')}%)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written: {out}")
    return 0 if all(e["ok"] for e in document["backends"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
