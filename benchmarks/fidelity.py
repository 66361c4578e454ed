"""``serve bench`` against wrk run by hand on the same server: do they agree?

    python benchmarks/fidelity.py [--pairs 5] [--duration 5] [--backends waitress]

Alternating, per pair: (A) ``serve bench benchmarks.apps:hello --backends X --concurrency 50
--rounds 1`` and its requests/s from the JSON; (B) the same server started by hand with
``serve --backend X`` pinned to the same CPU, a warm-up, then plain ``wrk -t1 -c50 -dD URL`` (no
Lua script) pinned to the generator CPU, and the "Requests/sec:" line of wrk's own output.  The
ratio A/B per pair, its median (goal: within 5%), and the spread.
Writes benchmarks/results/fidelity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `launcher` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from launcher.bench import pinning, procs

GOAL = 0.05
APP = "benchmarks.apps:hello"


def with_bench(backend: str, args: Any, workdir: str) -> dict[str, Any]:
    """One ``serve bench`` run (one round, one level); its requests/s from the JSON."""
    out = os.path.join(workdir, "bench.json")
    argv = [sys.executable, "-m", "launcher", "bench", APP, "--backends", backend, "--concurrency",
            str(args.connections), "--duration", f"{args.duration}s", "--warmup", f"{args.warmup}s", "--rounds", "1",
            "--json", out]
    done = subprocess.run(argv, cwd=common.REPO, capture_output=True, text=True, timeout=args.duration * 4 + 120)
    if done.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"serve bench failed ({done.returncode}):\n{done.stderr[-2000:]}")
    data = json.loads(Path(out).read_text())
    (row,) = data["backends"][backend]["summary"]
    return {"rps": row["rps"]["median"], "argv": argv, "errors": row["errors"]}


def with_wrk_by_hand(backend: str, args: Any, pin: pinning.Pinning, workdir: str) -> dict[str, Any]:
    """``serve --backend X`` started by hand, plain wrk against it; wrk's own Requests/sec."""
    port = common.free_port()
    argv = [*common.serve_script(), "--backend", backend, "--bind", f"127.0.0.1:{port}", APP]
    proc = common.Proc(argv, cpus=pin.server, workdir=workdir, label=f"hand-{backend}")
    url = f"http://127.0.0.1:{port}/"
    wrk = shutil.which("wrk") or "wrk"
    threads = max(1, min(args.connections, pin.generator_cpu_count()))
    try:
        proc.wait_http(url)
        if args.warmup:
            subprocess.run([*pinning.prefix(pin.generator), wrk, f"-t{threads}", f"-c{args.connections}",
                            f"-d{args.warmup}s", url], capture_output=True, check=True)
        wrk_argv = [*pinning.prefix(pin.generator), wrk, f"-t{threads}", f"-c{args.connections}",
                    f"-d{args.duration}s", url]
        done = subprocess.run(wrk_argv, capture_output=True, text=True, check=True)
    finally:
        proc.stop()
    match = re.search(r"^Requests/sec:\s*([0-9.]+)", done.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{done.stdout}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    return {"rps": float(match.group(1)), "server_argv": proc.argv, "wrk_argv": wrk_argv,
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "wrk_output": done.stdout}


def main(argv: list[str] | None = None) -> int:
    """Alternate the two ways per backend, write fidelity.json, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=common.env_int("BENCH_PAIRS", 5))
    parser.add_argument("--duration", type=int, default=common.env_int("BENCH_DURATION", 5), help="seconds per run")
    parser.add_argument("--warmup", type=int, default=common.env_int("BENCH_WARMUP", 1))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--backends", default="waitress")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("fidelity needs wrk (apt-get install wrk): nothing to compare against", file=sys.stderr)
        return 1
    pin = pinning.plan()
    procs.pin_threads(os.getpid(), pin.generator)  # this process's sampling stays off the server's CPUs
    workdir = common.workdir()
    document: dict[str, Any] = {
        **common.header(pin),
        "settings": {"pairs": args.pairs, "duration_s": args.duration, "warmup_s": args.warmup,
                     "connections": args.connections, "app": APP, "order": "bench, by hand, bench, by hand..."},
        "goal": f"median ratio serve bench / wrk by hand within {GOAL:.0%} of 1",
        "results": {},
    }
    print(f"fidelity: {args.pairs} pairs x {args.duration}s at {args.connections} connections; {pin.note}")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        ok, why = common.installed(backend)
        if not ok:
            document["results"][backend] = {"skipped": why}
            continue
        pairs = []
        for index in range(args.pairs):
            bench = with_bench(backend, args, workdir)
            hand = with_wrk_by_hand(backend, args, pin, workdir)
            ratio = bench["rps"] / hand["rps"] if hand["rps"] else 0.0
            pairs.append({"pair": index + 1, "bench": bench, "by_hand": hand, "ratio": round(ratio, 4)})
            print(f"  {backend:<10} pair {index + 1}: serve bench {bench['rps']:>9,.0f}  wrk by hand"
                  f" {hand['rps']:>9,.0f}  ratio {ratio:.3f}", flush=True)
        ratios = [p["ratio"] for p in pairs]
        median = common.median(ratios)
        document["results"][backend] = {
            "ratio_median": round(median, 4), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "bench_rps_median": round(common.median([p["bench"]["rps"] for p in pairs]), 1),
            "by_hand_rps_median": round(common.median([p["by_hand"]["rps"] for p in pairs]), 1),
            "meets_goal": abs(median - 1) <= GOAL,
            "pairs": pairs,
        }
        print(f"  {backend}: median ratio {median:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}):"
              f" {'within' if abs(median - 1) <= GOAL else 'OUTSIDE'} {GOAL:.0%}")
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {common.write('fidelity', document, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
