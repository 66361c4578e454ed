"""``serve bench``: the command.  Flags -> plan -> run -> table, JSON and PNG.

Errors in the flags are :class:`~launcher.errors.OptionError` raised before anything starts;
``launcher.cli.main`` prints them as one line with a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from launcher.bench import plan as planning
from launcher.bench import workloads
from launcher.cli import _Parser
from launcher.errors import OptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.bench.plan import BenchPlan

DESCRIPTION = """\
Start each backend on the same app, one at a time, through the same code path as `serve`;
check its answer; warm it up; load it with wrk (HTTP/1.1 keep-alive) at each concurrency level;
stop it; repeat for the next backend, for every round (A B C A B C).  Report successful
requests/s (median and min-max over rounds), latency p50/p90/p99/max, errors by kind, server CPU
seconds per 1,000 responses and peak memory of the server's whole process tree (with its
front server's, for FastCGI behind nginx and CGI under lighttpd)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``serve bench`` parser (its --help lists the workloads)."""
    parser = _Parser(
        prog="serve bench",
        usage="serve bench (APP | --workload NAME) [--backends all|a,b] [--concurrency 1,16,64,256] [options]",
        description=DESCRIPTION,
        epilog=(
            "workloads (benchmarks/apps.py of a source checkout):\n" + workloads.help_text() + "\n\n"
            "examples:\n"
            "  serve bench myproject:app --path /health --backends waitress,gunicorn --json bench.json\n"
            "  serve bench --workload json --concurrency 16,64 --duration 5s --rounds 5 --png bench.png\n\n"
            "With two or more CPUs the server runs on the first half and the load generator on the rest\n"
            "(--no-pin to share).  Without wrk a Python generator is used and the results say LOW FIDELITY.\n"
            "FastCGI is loaded through a private nginx (fastcgi_pass over a unix socket) and CGI through\n"
            "a private lighttpd (mod_cgi, a Python process per request), each on the site `serve config`\n"
            "writes; they are reported as front + backend: \"fastcgi (nginx)\", \"cgi (lighttpd)\".  CGI runs\n"
            "only when named (--backends cgi): not in all, it starves the machine at high concurrency."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("app", nargs="?", help="the WSGI app to benchmark (module:attr), or use --workload")
    add("--workload", metavar="NAME", help="a shipped workload instead of APP: " + ", ".join(workloads.WORKLOADS))
    add("--backends", default="all", metavar="LIST",
        help="comma-separated backends, or all: every installed backend (default all)")
    add("--path", default=None, metavar="PATH", help="URL path to load (default /)")
    add("--concurrency", default=",".join(map(str, planning.DEFAULT_CONCURRENCY)), metavar="LIST",
        help="open connections, one run per level (default 1,16,64,256)")
    add("--duration", default="10s", metavar="TIME", help="length of each measured run (default 10s)")
    add("--warmup", default="1s", metavar="TIME", help="warm-up at the highest level after each start (default 1s)")
    add("--rounds", default="3", metavar="N", help="rounds over all backends; the median is reported (default 3)")
    add("--workers", default=None, metavar="N", help="--workers for every backend (default: each backend's own)")
    add("--threads", default=None, metavar="N",
        help="--threads for every backend that has threads (default: each backend's own)")
    add("-o", "--option", action="append", default=[], metavar="[BACKEND:]KEY=VALUE",
        help="backend option, repeatable; BACKEND: limits it to one backend (gunicorn:worker_class=gthread)")
    add("--json", default="", metavar="FILE", help="write every figure, per round, with machine and commands")
    add("--png", default="", metavar="FILE", help="write a chart: throughput and p99 against concurrency")
    add("--generator", default="auto", choices=("auto", "wrk", "python"),
        help="load generator: wrk, or the low-fidelity Python fallback (default auto: wrk when installed)")
    add("--client-timeout", default="10s", metavar="TIME",
        help="a response slower than this counts as a timeout error (default 10s)")
    add("--no-pin", action="store_true", help="do not pin the server and the generator to separate CPUs")
    return parser


def make_plan(ns: argparse.Namespace) -> tuple[BenchPlan, dict[str, Any]]:
    """Validate the flags into a plan (and the versions of what will run).  Starts nothing."""
    from launcher.bench import pinning, wrk
    from launcher.registry import list_backends

    workload = None
    if ns.workload:
        workload = workloads.get(ns.workload)
        if ns.app:
            raise OptionError(f"give APP or --workload, not both ('{ns.app}' and --workload {ns.workload})")
    elif not ns.app:
        raise OptionError("no app given: serve bench MODULE:APP, or --workload NAME ("
                          + ", ".join(workloads.WORKLOADS) + ")")
    path = ns.path or "/"
    if not path.startswith("/"):
        raise OptionError(f"--path '{path}' must start with '/'")
    if not str(ns.rounds).isdigit() or int(ns.rounds) < 1:
        raise OptionError(f"--rounds: '{ns.rounds}' is not a whole number >= 1")
    concurrency = planning.parse_concurrency(ns.concurrency)
    duration = planning.parse_duration(ns.duration, "--duration")
    warmup = planning.parse_duration(ns.warmup, "--warmup", allow_zero=True)
    client_timeout = planning.parse_duration(ns.client_timeout, "--client-timeout")
    wrk_path = wrk.find()
    generator = ns.generator
    if generator == "wrk" and wrk_path is None:
        raise OptionError("--generator wrk: wrk is not installed (apt-get install wrk)")
    if generator == "auto":
        generator = "wrk" if wrk_path else "python"
    json_path = planning.check_output_path(ns.json, "--json")
    png_path = planning.check_output_path(ns.png, "--png")
    if png_path:
        from launcher.bench import chart

        chart.require()

    infos = list_backends()
    selection = planning.select_backends(ns.backends, infos)
    by_name = {info.name: info for info in infos}
    per_backend = planning.parse_backend_options(ns.option, selection.names)
    app = workload.app if workload else ns.app
    pythonpath = workloads.apps_root() if workload else ""
    notes = list(selection.notes)
    for name, protocol in selection.protocols.items():
        if protocol == "cgi" and max(concurrency) > 64:
            notes.append(f"{name} runs a Python process per request: at {max(concurrency)} connections that is"
                         f" up to {max(concurrency)} interpreters at once (tens of MB each)")
    options = {
        name: planning.server_options(
            app, name, by_name.get(name), workers=ns.workers, threads=ns.threads, options=per_backend[name],
            pythonpath=pythonpath, notes=notes, run_by_front=selection.protocols.get(name) == "cgi")
        for name in selection.names
    }
    bench_plan = planning.BenchPlan(
        app=app, workload=workload, path=path,
        method=workload.method if workload else "GET",
        body_size=workload.body_size if workload else 0,
        expect=workload.expect if workload else "",
        backends=selection.names, protocols=selection.protocols, skipped=selection.skipped, notes=notes,
        concurrency=concurrency, duration=duration, warmup=warmup, rounds=int(ns.rounds),
        client_timeout=client_timeout, generator=generator, pinning=pinning.plan(not ns.no_pin),
        options=options, json_path=json_path, png_path=png_path,
    )
    from launcher import __version__

    versions = {
        "launcher": __version__,
        "python": sys.version.split()[0],
        "backends": {name: by_name[name].version for name in selection.names},
        "distributions": {name: by_name[name].distribution for name in selection.names},
        "wrk": wrk.version(wrk_path) if wrk_path and generator == "wrk" else None,
    }
    return bench_plan, versions


def estimate_seconds(bench_plan: BenchPlan) -> float:
    """A rough length of the run: load time, warm-ups and about 2 s per start/stop."""
    per_round = len(bench_plan.backends) * (bench_plan.duration * len(bench_plan.concurrency)
                                            + bench_plan.warmup + 2)
    return float(per_round * bench_plan.rounds)


def command_bench(args: list[str]) -> int:
    """``serve bench``: run the plan, print the table, write the JSON and PNG; 1 if a backend failed."""
    ns = build_parser().parse_args(args)
    bench_plan, versions = make_plan(ns)
    from launcher.bench import report, results
    from launcher.bench.runner import Runner

    for line in bench_plan.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    for line in bench_plan.notes:
        print(f"note: {line}", file=sys.stderr)
    minutes = estimate_seconds(bench_plan) / 60
    print(f"benchmarking {', '.join(bench_plan.backends)} on {bench_plan.app}: {len(bench_plan.concurrency)}"
          f" level(s) x {bench_plan.rounds} round(s) x {bench_plan.duration}s, about"
          f" {minutes:.1f} min; {bench_plan.pinning.note}", file=sys.stderr)
    if bench_plan.generator == "python":
        print("LOW FIDELITY: wrk is not installed or not chosen; the Python load generator is used",
              file=sys.stderr)
    generator = {
        "kind": bench_plan.generator,
        "version": versions["wrk"] if bench_plan.generator == "wrk" else "launcher.bench.pyload (http.client)",
        "fidelity": "high" if bench_plan.generator == "wrk" else "low",
        "threads": "min(connections, generator CPUs)",
    }
    load_before = results.loadavg()
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="serve-bench-")
    try:
        with report.progress(bench_plan.steps()) as display:
            records = Runner(bench_plan, display, workdir).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    document = results.build(bench_plan, records, argv=["serve", "bench", *args], versions=versions,
                             generator=generator, load_before=load_before, started=started)
    if bench_plan.json_path:
        results.write(document, bench_plan.json_path)
    if bench_plan.png_path:
        from launcher.bench import chart

        chart.draw(document, bench_plan.png_path)
    report.print_report(document)
    written = [p for p in (bench_plan.json_path, bench_plan.png_path) if p]
    if written:
        print("wrote " + ", ".join(os.path.abspath(p) for p in written), file=sys.stderr)
    return 1 if any(data["status"] != "ok" for data in document["backends"].values()) else 0
