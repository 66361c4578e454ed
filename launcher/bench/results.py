"""The JSON document of a run: machine, versions, exact commands, settings, every figure per round,
and the per-(backend, concurrency) summaries the table and the chart are drawn from."""

from __future__ import annotations

import json
import os
import platform
import sys
import time

from launcher.bench import flags, stats, wrk
from launcher.bench.runner import ORDER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.bench.plan import BenchPlan

SCHEMA = "wsgi-launcher.bench/1"

METHOD = {
    "order": ORDER,
    "throughput": "successful (2xx/3xx) responses per second; error responses are counted as errors, never as"
                  " throughput",
    "latency": "per-round percentiles from the load generator (wrk: all completed responses); the summary is the"
               " median over rounds, max the largest over rounds",
    "server_cpu": "user + system CPU seconds of the server's whole process tree (reaped children included) from"
                  " /proc/PID/stat before and after each run, per 1,000 completed responses",
    "memory": "peak of the summed RSS of the server's process tree, sampled every 100 ms (forked workers share"
              " copy-on-write pages, so the sum over-states, never under-states)",
    "spread": "(max - min) / median of the rounds' throughput; above"
              f" {stats.DISAGREE_THRESHOLD:.0%} the rounds disagree and the figure is flagged",
    "generator_saturation": "load generator CPU seconds (wait4) / (wall seconds x its threads) above"
                            f" {flags.SATURATED:.0%} is flagged; so is its CPUs being that busy with other processes",
    "shared_cpu": "busy time of the server's CPUs (/proc/stat) not used by the server's tree above"
                  f" {flags.FOREIGN_LOAD:.0%} is flagged: another process took it",
}


def machine(load_before: tuple[float, ...] = ()) -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    uname = os.uname()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": memory,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "kernel": uname.release,
        "system": f"{uname.sysname} {uname.machine}",
        "load_average_before": list(load_before),
        "load_average_after": list(loadavg()),
    }


def loadavg() -> tuple[float, ...]:
    """The 1, 5 and 15 minute load averages (empty where unknown)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return ()


def summarize_backend(rounds: list[dict[str, Any]], levels: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per concurrency level: median and min-max over rounds, totals of errors, and flags."""
    out = []
    for level in levels:
        runs = [run for rnd in rounds for run in rnd.get("runs", []) if run["concurrency"] == level]
        if not runs:
            continue
        rps = [run["rps"] for run in runs]
        p99 = stats.summarize([r["latency_ms"].get("p99", 0) for r in runs])
        summary: dict[str, Any] = {
            "concurrency": level,
            "rounds": len(runs),
            "rps": {k: round(v, 2) if isinstance(v, float) else v for k, v in stats.summarize(rps).items()},
            "latency_ms": {
                "p50": round(stats.median([r["latency_ms"].get("p50", 0) for r in runs]), 3),
                "p90": round(stats.median([r["latency_ms"].get("p90", 0) for r in runs]), 3),
                "p99": {k: round(v, 3) for k, v in p99.items()},
                "max": round(max(r["latency_ms"].get("max", 0) for r in runs), 3),
            },
            "requests": sum(r["requests"] for r in runs),
            "ok_requests": sum(r["ok_requests"] for r in runs),
            "errors": {kind: sum(r["errors"][kind] for r in runs) for kind in runs[0]["errors"]},
            "server_cpu_s_per_1k": _median_or_none([r["server_cpu_s_per_1k"] for r in runs]),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
            "disagree": stats.disagree(rps),
        }
        summary["flags"] = flags.summarise([r.get("flags", {}) for r in runs])
        warnings = list(summary["flags"].values())
        warnings += list(dict.fromkeys(r["message"] for r in runs if r.get("message")))
        if summary["disagree"]:
            warnings.insert(0, f"rounds disagree by {summary['rps']['spread']:.0%} (throughput"
                               f" {summary['rps']['min']:,.0f}-{summary['rps']['max']:,.0f}): do not read small"
                               " differences")
        summary["warnings"] = warnings
        out.append(summary)
    return out


def _median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(stats.median(present), 4) if present else None


def build(plan: BenchPlan, records: dict[str, dict[str, Any]], *, argv: list[str], versions: dict[str, Any],
          generator: dict[str, Any], load_before: tuple[float, ...], started: float) -> dict[str, Any]:
    """The whole document."""
    backends = {}
    for name, record in records.items():
        front = front_of(plan, name, record)
        backends[name] = {
            "status": record["status"],
            "failure": record.get("failure", ""),
            "version": versions.get("backends", {}).get(name),
            "label": f"{name} ({front['server']})" if front else name,
            "measures": "front + backend" if front else "backend",
            "front": front,
            "summary": summarize_backend(record["rounds"], plan.concurrency),
            "rounds": record["rounds"],
        }
    warnings = []
    if generator.get("fidelity") == "low":
        warnings.append("LOW FIDELITY: wrk is not installed, the Python load generator was used; install wrk"
                        " (apt-get install wrk) for figures of the servers rather than of the generator")
    if not plan.pinning.enabled:
        warnings.append(plan.pinning.note)
    cpus = os.cpu_count() or 1
    if load_before and load_before[0] > 0.5 * cpus:
        warnings.append(f"the machine was busy before the run (load average {load_before[0]:.2f} on {cpus} CPUs):"
                        " expect noisy figures")
    for name, data in backends.items():
        if any(rnd.get("verify", {}).get("keep_alive") is False for rnd in data["rounds"]):
            warnings.append(f"{name} closed the connection after its response: wrk then reconnects for every"
                            " request, so its figures include connection set-up")
        if data["status"] != "ok":
            warnings.append(f"{name} failed: {str(data['failure']).splitlines()[0]}")
        for row in data["summary"]:
            if row["disagree"]:
                warnings.append(f"{name} at {row['concurrency']} connections: {row['warnings'][0]}")
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "command": argv,
        "machine": machine(load_before),
        "versions": versions,
        "generator": generator,
        "pinning": plan.pinning.as_dict(),
        "settings": {
            "app": plan.app,
            "workload": plan.workload.name if plan.workload else None,
            "path": plan.path,
            "method": plan.method,
            "body_bytes": plan.body_size,
            "backends": plan.backends,
            "concurrency": list(plan.concurrency),
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "rounds": plan.rounds,
            "client_timeout_s": plan.client_timeout,
            "server_options": {name: opts.to_argv(include_app=False) for name, opts in plan.options.items()},
            "wrk_script": wrk.script(plan.method, plan.body_size) if plan.generator == "wrk" else None,
        },
        "method": METHOD,
        "skipped": plan.skipped,
        "notes": plan.notes,
        "warnings": warnings,
        "backends": backends,
    }


def front_of(plan: BenchPlan, name: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The front server ``name`` was loaded through (None for an HTTP backend loaded directly)."""
    protocol = plan.protocols.get(name)
    if not protocol:
        return None
    server = next((rnd["front"] for rnd in record["rounds"] if rnd.get("front")), "")
    if not server:
        from launcher.bench import fronts

        adapter = fronts.adapter_for(protocol)
        server = adapter.name if adapter else "front"
    if protocol == "cgi":
        how = (f"wrk speaks HTTP to {server}, which runs the cgi-bin script `serve config cgi-script` writes,"
               f" a new Python process per request (the site `serve config {server}` writes); {server} and"
               " every CGI process run on the server's CPUs, and CPU s/1k and peak MB count them all")
    else:
        how = (f"wrk speaks HTTP to {server}, which passes each request to the backend over {protocol}"
               f" (a unix socket; the site `serve config {server}` writes); both run on the server's"
               " CPUs, and CPU s/1k and peak MB count both")
    return {"server": server, "protocol": protocol, "how": how}


def write(document: dict[str, Any], path: str) -> None:
    """Write the document as indented JSON (atomically: a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
