"""Launcher overhead: ``serve --backend X`` against X's own command, same settings, same app.

    python benchmarks/overhead.py [--pairs 8] [--duration 5] [--backends waitress,gunicorn]

For each backend, A B A B...: start the server through the launcher, warm it up, load it with wrk
-c50 (server pinned to the first CPUs, wrk to the rest, as ``serve bench`` does), stop it; then
the same with the native command.  Each pair gives a ratio launcher/native of successful
requests/s; the median of the ratios is the result (goal: >= 0.98).  Two identical servers differ
by ~1-2% per pair on this kind of machine, so that is the resolution.
Writes benchmarks/results/overhead.json and overhead.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `launcher` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from benchmarks.pairs import Pair, fair, pairs
from launcher.bench import pinning, procs

GOAL = 0.98


def run_one(argv: list[str], env: dict[str, str], label: str, *, pin: pinning.Pinning, port: int, args: Any,
            workdir: str) -> dict[str, Any]:
    """Start, wait for a 200, warm up, measure, stop: one side of one pair."""
    proc = common.Proc(argv, cpus=pin.server, workdir=workdir, label=label, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        ready = proc.wait_http(url)
        if pin.enabled:
            procs.pin_tree(proc.pid, pin.server)
        if args.warmup:
            common.measure(url, proc.pid, pin, connections=args.connections, duration=args.warmup, workdir=workdir)
        figures = common.measure(url, proc.pid, pin, connections=args.connections, duration=args.duration,
                                 workdir=workdir)
        figures.update(argv=proc.argv, ready_s=round(ready, 3))
        return figures
    finally:
        proc.stop()


def compare(pair: Pair, *, pin: pinning.Pinning, args: Any, workdir: str) -> dict[str, Any]:
    """A B A B ... for one pair; ratios per pair and their median."""
    rounds = []
    for index in range(args.pairs):
        entry: dict[str, Any] = {"pair": index + 1}
        for side in ("launcher", "native"):
            port = common.free_port()
            chosen = next(p for p in pairs(port, workdir) if p.label == pair.label)
            argv = chosen.launcher if side == "launcher" else chosen.native
            env = {} if side == "launcher" else chosen.env
            entry[side] = run_one(argv, env, f"{pair.backend}-{side}-{index}", pin=pin, port=port, args=args,
                                  workdir=workdir)
        native = entry["native"]["rps"]
        entry["ratio"] = round(entry["launcher"]["rps"] / native, 4) if native else None
        rounds.append(entry)
        print(f"  {pair.label:<24} pair {index + 1}: launcher {entry['launcher']['rps']:>9,.0f}  native"
              f" {native:>9,.0f}  ratio {entry['ratio']:.3f}", flush=True)
    ratios = [r["ratio"] for r in rounds if r["ratio"] is not None]
    result = {
        "backend": pair.backend,
        "variant": pair.variant,
        "note": pair.note,
        "judged": fair(pair),
        "ratio_median": round(common.median(ratios), 4),
        "ratio_min": min(ratios) if ratios else None,
        "ratio_max": max(ratios) if ratios else None,
        "launcher_rps_median": round(common.median([r["launcher"]["rps"] for r in rounds]), 1),
        "native_rps_median": round(common.median([r["native"]["rps"] for r in rounds]), 1),
        "launcher_p99_ms_median": round(common.median([r["launcher"]["p99_ms"] for r in rounds]), 3),
        "native_p99_ms_median": round(common.median([r["native"]["p99_ms"] for r in rounds]), 3),
        "launcher_argv": rounds[0]["launcher"]["argv"] if rounds else [],
        "native_argv": rounds[0]["native"]["argv"] if rounds else [],
        "pairs": rounds,
    }
    result["meets_goal"] = result["ratio_median"] >= GOAL if fair(pair) else None
    return result


def chart(document: dict[str, Any], path: Path) -> None:
    """Bars: median ratio per backend; dots: every pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["results"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [r["backend"] + (f"\n{r['variant']}" if r["variant"] else "") for r in rows]
    ax.bar(range(len(rows)), [r["ratio_median"] for r in rows], color=["C0" if r["judged"] else "C7" for r in rows])
    for index, row in enumerate(rows):
        ratios = [p["ratio"] for p in row["pairs"] if p["ratio"] is not None]
        ax.scatter([index] * len(ratios), ratios, color="black", s=12, zorder=3)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.axhline(GOAL, color="red", linestyle="--", linewidth=0.8, label=f"goal {GOAL}")
    # gevent "as shipped" is several times off the scale: keep the judged ratios readable, and
    # write the value of any bar that does not fit.
    judged = [p["ratio"] for r in rows if r["judged"] for p in r["pairs"] if p["ratio"] is not None]
    top = max([1.3, *(v * 1.1 for v in judged)])
    ax.set_ylim(0, top)
    for index, row in enumerate(rows):
        if row["ratio_median"] > top:
            ax.text(index, top * 0.95, f"{row['ratio_median']:.1f}x (off scale)", ha="center", va="top", fontsize=8)
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylabel("launcher / native requests/s")
    s = document["settings"]
    ax.set_title(f"launcher overhead: median of {s['pairs']} A/B pairs x {s['duration_s']}s, wrk -c{s['connections']}"
                 f" (dots: pairs; grey: not judged)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Compare every installed backend, write overhead.json and .png, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=common.env_int("BENCH_PAIRS", 8))
    parser.add_argument("--duration", type=int, default=common.env_int("BENCH_DURATION", 5), help="seconds per run")
    parser.add_argument("--warmup", type=int, default=common.env_int("BENCH_WARMUP", 1), help="seconds per start")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--backends", default="waitress,gunicorn,gevent,tornado,twisted")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.duration < 1:
        parser.error("--pairs and --duration must be at least 1")
    if shutil.which("wrk") is None:
        print("warning: wrk is not installed: LOW FIDELITY Python generator", file=sys.stderr)
    pin = pinning.plan()
    procs.pin_threads(os.getpid(), pin.generator)  # this process's sampling stays off the server's CPUs
    workdir = common.workdir()
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    document: dict[str, Any] = {
        **common.header(pin),
        "settings": {"pairs": args.pairs, "duration_s": args.duration, "warmup_s": args.warmup,
                     "connections": args.connections, "app": "benchmarks.apps:hello", "order": "A B A B"},
        "goal": f"median ratio launcher/native >= {GOAL}",
        "skipped": {},
        "results": [],
    }
    print(f"launcher overhead: {args.pairs} pairs x {args.duration}s, wrk -c{args.connections}; {pin.note}")
    for pair in pairs(0, workdir):
        if pair.backend not in wanted:
            continue
        ok, why = common.installed(pair.backend)
        if not ok:
            document["skipped"][pair.backend] = why
            print(f"  {pair.backend}: skipped ({why})")
            continue
        try:
            document["results"].append(compare(pair, pin=pin, args=args, workdir=workdir))
        except RuntimeError as exc:
            document["skipped"][pair.label] = f"failed: {exc}"
            print(f"  {pair.label}: FAILED {exc}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    path = common.write("overhead", document, args.out)
    print(f"\n{'backend':<26} {'launcher':>10} {'native':>10} {'ratio':>7} {'min-max':>13}  goal")
    for row in document["results"]:
        label = row["backend"] + (f" ({row['variant']})" if row["variant"] else "")
        goal = {True: "ok", False: "BELOW", None: "(not judged)"}[row["meets_goal"]]
        print(f"{label:<26} {row['launcher_rps_median']:>10,.0f} {row['native_rps_median']:>10,.0f}"
              f" {row['ratio_median']:>7.3f} {row['ratio_min']:>6.3f}-{row['ratio_max']:<6.3f}  {goal}")
    if document["results"]:
        try:
            chart(document, path.with_suffix(".png"))
        except ImportError:
            print("matplotlib missing: no chart (pip install 'wsgi-launcher[bench]')", file=sys.stderr)
    print(f"wrote {path}" + (f" and {path.with_suffix('.png').name}" if path.with_suffix(".png").exists() else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
