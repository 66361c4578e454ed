"""Start-up cost: ``serve --help`` and ``import launcher`` against a bare ``python -c pass``, and the
time from process start to the first 200 through ``serve --backend X`` against X's own command.

    python benchmarks/startup.py [--runs 20] [--ready-runs 10] [--backends waitress,gunicorn]

The first part uses hyperfine when installed (apt-get install hyperfine), else an interleaved
loop of N runs each; the figure is the median and the goal is ``serve --help`` within 2.5x of
``python -c pass``.  The second part starts each server N times, alternating launcher and
native, polling GET / every 5 ms until the first 200.
Writes benchmarks/results/startup.json and startup.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `launcher` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from benchmarks.pairs import pairs
from launcher.bench import pinning, procs

HELP_GOAL = 2.5


def commands() -> dict[str, list[str]]:
    """The three commands of the first part."""
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import launcher'": [sys.executable, "-c", "import launcher"],
        "serve --help": [*common.serve_script(), "--help"],
    }


def with_hyperfine(cmds: dict[str, list[str]], runs: int, workdir: str) -> dict[str, Any]:
    """hyperfine, no shell (-N), warm-up 3; medians in seconds."""
    export = os.path.join(workdir, "hyperfine.json")
    argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", export, "--style", "none"]
    for name, cmd in cmds.items():
        argv += ["-n", name, shlex.join(cmd)]  # -N splits the command shell-style
    subprocess.run(argv, check=True, cwd=common.REPO, stdout=subprocess.DEVNULL)
    data = json.loads(Path(export).read_text())
    return {"tool": "hyperfine", "argv": argv,
            "median_s": {r["command"]: r["median"] for r in data["results"]},
            "min_s": {r["command"]: r["min"] for r in data["results"]},
            "max_s": {r["command"]: r["max"] for r in data["results"]}}


def with_loop(cmds: dict[str, list[str]], runs: int) -> dict[str, Any]:
    """Interleaved runs (A B C A B C...) timed with perf_counter; medians in seconds."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for index in range(runs + 3):
        for name, cmd in cmds.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=common.REPO, stdout=subprocess.DEVNULL)
            if index >= 3:  # the first three are warm-up (page cache, pyc files)
                times[name].append(time.perf_counter() - start)
    return {"tool": f"loop of {runs} interleaved runs", "median_s": {n: common.median(t) for n, t in times.items()},
            "min_s": {n: min(t) for n, t in times.items()}, "max_s": {n: max(t) for n, t in times.items()}}


def time_to_first_200(backends: list[str], runs: int, pin: pinning.Pinning, workdir: str) -> dict[str, Any]:
    """Per backend (gevent: the fair native), launcher and native alternately, ``runs`` times each."""
    out: dict[str, Any] = {}
    for backend in backends:
        ok, why = common.installed(backend)
        if not ok:
            out[backend] = {"skipped": why}
            continue
        samples: dict[str, list[float]] = {"launcher": [], "native": []}
        argvs: dict[str, list[str]] = {}
        for index in range(runs):
            for side in ("launcher", "native"):
                port = common.free_port()
                pair = next(p for p in pairs(port, workdir) if p.backend == backend and p.variant != "as shipped")
                argv = pair.launcher if side == "launcher" else pair.native
                proc = common.Proc(argv, cpus=pin.server, workdir=workdir, label=f"{backend}-{side}-{index}",
                                   env={} if side == "launcher" else pair.env)
                try:
                    samples[side].append(proc.wait_http(f"http://127.0.0.1:{port}/"))
                    argvs[side] = proc.argv
                except RuntimeError as exc:
                    out[backend] = {"skipped": f"failed: {exc}"}
                    break
                finally:
                    proc.stop()
            if backend in out:
                break
        if backend in out:
            continue
        launcher, native = common.median(samples["launcher"]), common.median(samples["native"])
        out[backend] = {"launcher_s": round(launcher, 4), "native_s": round(native, 4),
                        "ratio": round(launcher / native, 3) if native else None,
                        "launcher_samples": [round(v, 4) for v in samples["launcher"]],
                        "native_samples": [round(v, 4) for v in samples["native"]],
                        "launcher_argv": argvs.get("launcher"), "native_argv": argvs.get("native")}
        print(f"  {backend:<10} first 200: launcher {launcher * 1000:7.0f} ms  native {native * 1000:7.0f} ms"
              f"  ratio {out[backend]['ratio']}", flush=True)
    return out


def chart(document: dict[str, Any], path: Path) -> None:
    """Command start-up times, and time to the first 200 per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    cli = document["cli"]["median_s"]
    left.bar(range(len(cli)), [v * 1000 for v in cli.values()], color="C0")
    left.set_xticks(range(len(cli)), list(cli), fontsize=8)
    left.set_ylabel("ms (median)")
    left.set_title(f"command start-up ({document['cli']['tool']})", fontsize=9)
    ready = {k: v for k, v in document["first_200"].items() if "launcher_s" in v}
    xs = range(len(ready))
    right.bar([x - 0.2 for x in xs], [v["launcher_s"] * 1000 for v in ready.values()], width=0.4, label="serve")
    right.bar([x + 0.2 for x in xs], [v["native_s"] * 1000 for v in ready.values()], width=0.4, label="native")
    right.set_xticks(list(xs), list(ready))
    right.set_ylabel("ms to first 200 (median)")
    right.set_title("process start to first 200", fontsize=9)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Both measurements; write startup.json and .png, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=common.env_int("BENCH_RUNS", 20), help="runs per command")
    parser.add_argument("--ready-runs", type=int, default=common.env_int("BENCH_READY_RUNS", 10),
                        help="starts per server and side")
    parser.add_argument("--backends", default="waitress,gunicorn,gevent,tornado,twisted")
    parser.add_argument("--no-hyperfine", action="store_true", help="use the built-in loop even if hyperfine exists")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="results directory")
    args = parser.parse_args(argv)
    # As `make install` does: cached bytecode, which an installed package always has.  Without it
    # (or with stale .pyc after an edit, on a machine with PYTHONDONTWRITEBYTECODE=1) every start
    # recompiles the launcher and the comparison measures the compiler instead.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "launcher", "backends"], cwd=common.REPO,
                   check=True, stdout=subprocess.DEVNULL)
    pin = pinning.plan()
    procs.pin_threads(os.getpid(), pin.generator)  # the polling client stays off the server's CPUs
    workdir = common.workdir()
    cmds = commands()
    if shutil.which("hyperfine") and not args.no_hyperfine:
        cli = with_hyperfine(cmds, args.runs, workdir)
    else:
        cli = with_loop(cmds, args.runs)
    base = cli["median_s"]["python -c pass"]
    cli["ratio_to_python"] = {name: round(value / base, 3) for name, value in cli["median_s"].items()}
    cli["commands"] = cmds
    help_ratio = cli["ratio_to_python"]["serve --help"]
    print(f"start-up ({cli['tool']}):")
    for name, value in cli["median_s"].items():
        print(f"  {name:<30} {value * 1000:7.1f} ms  x{cli['ratio_to_python'][name]:.2f}")
    print(f"  serve --help / python -c pass = {help_ratio:.2f} (goal <= {HELP_GOAL}):"
          f" {'ok' if help_ratio <= HELP_GOAL else 'ABOVE'}")
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    print(f"time to first 200 ({args.ready_runs} starts per side; {pin.note}):")
    document = {
        **common.header(pin),
        "settings": {"runs": args.runs, "ready_runs": args.ready_runs, "poll_interval_s": 0.005},
        "goal": f"serve --help within {HELP_GOAL}x of python -c pass",
        "help_ratio": help_ratio,
        "meets_goal": help_ratio <= HELP_GOAL,
        "cli": cli,
        "first_200": time_to_first_200(wanted, args.ready_runs, pin, workdir),
    }
    shutil.rmtree(workdir, ignore_errors=True)
    path = common.write("startup", document, args.out)
    try:
        chart(document, path.with_suffix(".png"))
    except ImportError:
        print("matplotlib missing: no chart", file=sys.stderr)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
