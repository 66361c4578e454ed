"""Run the plan: rounds x backends x concurrency levels, one server alive at a time.

Order (why it is the honest one): for each round, for each backend: start it, verify its answer,
warm up, measure every concurrency level, stop it; then the next backend; then the next round
(A B C A B C).  Only one server is ever alive, so no idle server competes with the measured one
for the server CPU, and its CPU time and memory are its own.  A slow spell of a shared machine
lands on one round of every backend instead of every round of one, and it shows up as spread
between rounds (flagged above 20%) instead of as a difference between servers.  Restarting each
round also puts start-to-start variation (worker placement, memory layout) into that spread.
Keeping every server running and interleaving only the load would save the restarts, but the idle
ones' timers and housekeeping would land on the measured server's CPU.
"""

from __future__ import annotations

import os
import time

from launcher.bench import flags, fronts, loadgen, procs, server
from launcher.bench.server import StartError
from launcher.errors import LauncherError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from launcher.bench.plan import BenchPlan

    class Progress(Protocol):
        """What the runner tells the display (see :mod:`launcher.bench.report`)."""

        def phase(self, text: str) -> None: ...
        def advance(self, steps: int = 1, line: str = "") -> None: ...
        def note(self, text: str) -> None: ...

ORDER = (
    "interleaved rounds (A B C A B C): each round starts, verifies, warms up, measures and stops one "
    "backend at a time, so only the measured server is ever alive and a slow spell of the machine "
    "spreads over every backend's rounds instead of one backend's figures"
)


class Runner:
    """Runs a :class:`BenchPlan`; :meth:`run` returns the per-backend records (JSON-ready)."""

    def __init__(self, plan: BenchPlan, progress: Progress, workdir: str) -> None:
        self.plan = plan
        self.progress = progress
        self.workdir = workdir
        self.failed: dict[str, str] = {}

    def run(self) -> dict[str, dict[str, Any]]:
        """Every round of every backend; per backend: status, failure and the round records."""
        plan = self.plan
        records: dict[str, dict[str, Any]] = {name: {"status": "ok", "rounds": []} for name in plan.backends}
        # The orchestrator (memory sampler, progress display) runs beside the generator, never on the
        # server's CPUs, so it does not take time from the server being measured.
        saved = _set_own_affinity(plan.pinning.generator)
        try:
            for round_no in range(1, plan.rounds + 1):
                for name in plan.backends:
                    if name in self.failed:
                        self.progress.advance(len(plan.concurrency))
                        continue
                    record = self.one_round(name, round_no)
                    records[name]["rounds"].append(record)
                    if record.get("failure"):
                        self.failed[name] = f"round {round_no}: {record['failure']}"
                        records[name].update(status="failed", failure=self.failed[name])
                        self.progress.note(f"{name} failed in round {round_no}: {record['failure']}")
                        self.progress.advance(len(plan.concurrency) - len(record["runs"]))
        finally:
            _set_own_affinity(saved)
        return records

    # ------------------------------------------------------------------ one backend, one round

    def one_round(self, name: str, round_no: int) -> dict[str, Any]:
        """Start ``name``, verify, warm up, measure each level, stop; the round's record."""
        plan = self.plan
        record: dict[str, Any] = {"round": round_no, "runs": []}
        protocol = plan.protocols.get(name, "http")
        front = fronts.adapter_for(protocol) if protocol != "http" else None
        shown = f"{name} ({front.name})" if front is not None else name
        label = f"round {round_no}/{plan.rounds} · {shown}"
        opts = plan.options[name]
        runs_app = front is not None and front.runs_app  # CGI: the front runs the app, no server
        if front is not None and not runs_app:
            opts = opts.replace(bind=front.bind(self.workdir))
        self.progress.phase(f"{label} · starting")
        srv = None
        if not runs_app:
            try:
                srv = server.start(name, opts, cpus=plan.pinning.server, workdir=self.workdir,
                                   tag=f"{name}-r{round_no}", require_http=front is None)
            except StartError as exc:
                record["failure"] = f"did not start: {exc}"
                return record
            record.update(server_argv=srv.argv, server_pid=srv.pid)
        front_handle = None
        try:
            roots = [srv.pid] if srv is not None else []
            url = srv.url if srv is not None else ""
            if front is not None:
                record.update(front=front.name, front_protocol=protocol)
                try:
                    front_handle = front.start(srv.handle.addresses if srv is not None else [], self.workdir,
                                               plan.pinning.server, opts=opts, connections=max(plan.concurrency))
                except (LauncherError, OSError) as exc:  # StartError, or the site config could not be rendered
                    record["failure"] = f"the {front.name} front did not start: {exc}"
                    return record
                roots.append(front_handle.pid)
                url = front_handle.url
                record.update(front_pid=front_handle.pid, front_argv=front_handle.argv,
                              front_config=front_handle.config)
            record["url"] = url
            if plan.pinning.enabled:
                for root in roots:
                    procs.pin_tree(root, plan.pinning.server)
            record["server_cpus"] = sorted({cpu for root in roots for cpu in procs.tree_affinity(root)})
            self.progress.phase(f"{label} · verifying")
            check = server.verify(url, plan.path, method=plan.method, body=plan.body(), expect=plan.expect,
                                  timeout=float(plan.client_timeout))
            record["verify"] = check
            if not check["ok"]:
                record["failure"] = f"verification failed: {check.get('reason')}"
                return record
            if plan.warmup:
                self.progress.phase(f"{label} · warming up {plan.warmup}s")
                warm = loadgen.run(self._spec(url, max(plan.concurrency), plan.warmup), self.workdir)
                record["warmup"] = {"concurrency": max(plan.concurrency), "rps": round(warm.rps, 2),
                                    "requests": warm.requests, "errors": warm.errors, "argv": warm.argv}
            for level in plan.concurrency:
                self.progress.phase(f"{label} · {level} connections · {plan.duration}s")
                run = self.measure(url, roots, level)
                record["runs"].append(run)
                self.progress.advance(1, _line(shown, round_no, run))
                if srv is not None and not srv.alive():
                    record["failure"] = f"the server exited during the run:\n{srv.log_tail()}"
                    break
                if front_handle is not None and not front_handle.alive():
                    record["failure"] = f"the {record['front']} front exited during the run:\n{front_handle.log_tail()}"
                    break
        finally:
            self.progress.phase(f"{label} · stopping")
            if front_handle is not None:
                if record.get("failure"):
                    record["front_log_tail"] = front_handle.log_tail(40)
                record["front_stop"] = {"exit_code": front_handle.stop()}
            if srv is not None:
                record["stop"] = srv.stop()
                if record.get("failure"):
                    record["server_log_tail"] = srv.log_tail(40)
        return record

    def _spec(self, url: str, connections: int, duration: int) -> loadgen.LoadSpec:
        plan = self.plan
        return loadgen.LoadSpec(
            url.rstrip("/") + plan.path, connections=connections, duration=duration, method=plan.method,
            body_size=plan.body_size, timeout=plan.client_timeout, cpus=plan.pinning.generator,
            cpu_budget=plan.pinning.generator_cpu_count(), generator=plan.generator)

    def measure(self, url: str, roots: list[int], connections: int) -> dict[str, Any]:
        """One load run at ``connections``, with the server's CPU time, peak memory and CPU sharing.

        ``roots`` are the server's main process (and a front server's): their whole trees count.
        """
        plan = self.plan
        spec = self._spec(url, connections, plan.duration)
        before, cpus_before, start = procs.read_tree(*roots), procs.cpu_times(), time.monotonic()
        with procs.MemorySampler(*roots) as memory:
            load = loadgen.run(spec, self.workdir)
        after, cpus_after, wall = procs.read_tree(*roots), procs.cpu_times(), time.monotonic() - start
        server_cpu = max(0.0, after.cpu_seconds - before.cpu_seconds)
        run: dict[str, Any] = {"concurrency": connections, **load.as_dict()}
        run.update(
            server_cpu_s=round(server_cpu, 3),
            server_cpu_s_per_1k=round(server_cpu * 1000 / load.requests, 4) if load.requests else None,
            peak_rss_bytes=memory.peak_bytes,
            server_processes=memory.peak_processes,
            memory_samples=memory.samples,
        )
        gen_busy = srv_busy = foreign = None
        if plan.pinning.enabled:
            gen_busy = procs.busy_fraction(cpus_before, cpus_after, plan.pinning.generator)
            srv_busy = procs.busy_fraction(cpus_before, cpus_after, plan.pinning.server)
            if srv_busy is not None and wall > 0:
                # Busy time on the server's CPUs that the server's own tree did not use: another
                # process (or the hypervisor's steal) took it.
                foreign = max(0.0, srv_busy - server_cpu / (wall * len(plan.pinning.server)))
        run.update(
            generator_cpus_busy=None if gen_busy is None else round(gen_busy, 3),
            server_cpus_busy=None if srv_busy is None else round(srv_busy, 3),
            foreign_load_on_server_cpus=None if foreign is None else round(foreign, 3),
        )
        run["flags"] = flags.detect(
            generator_ratio=load.cpu_ratio, generator_threads=load.threads, generator_cpus_busy=gen_busy,
            foreign_load=foreign, status_errors=load.errors["status"],
            socket_errors=sum(v for k, v in load.errors.items() if k != "status"))
        warnings = [load.message] if load.message else []
        warnings += [flags.describe(kind, [value]) for kind, value in run["flags"].items()]
        run["warnings"] = warnings
        return run


def _line(name: str, round_no: int, run: dict[str, Any]) -> str:
    latency = run.get("latency_ms") or {}
    text = (f"{name:<10} round {round_no}  c={run['concurrency']:<4} {run['rps']:>10,.0f} req/s"
            f"  p99 {latency.get('p99', 0):8.2f} ms")
    errors = sum(run["errors"].values())
    return text + (f"  errors {errors}" if errors else "")


def _set_own_affinity(cpus: tuple[int, ...]) -> tuple[int, ...]:
    """Pin every thread of this process to ``cpus`` (no-op when empty); return the previous mask."""
    if not hasattr(os, "sched_getaffinity"):
        return ()
    previous = tuple(sorted(os.sched_getaffinity(0)))
    if cpus:
        procs.pin_threads(os.getpid(), cpus)
    return previous
