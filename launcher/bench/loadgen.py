"""Drive load against one URL and measure it: wrk when installed, else the Python fallback.

The generator must not be the bottleneck, so it is measured too: its own CPU seconds (from
``wait4``'s resource usage of exactly its processes) against wall time.  Above
:data:`launcher.bench.flags.SATURATED` of the CPUs it may use, the figure is the generator's limit, not the server's,
and the run carries a warning.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from launcher.bench import pinning, stats, wrk
from launcher.bench.wrk import LoadGenError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ERROR_KINDS = ("connect", "read", "write", "timeout", "status")


class LoadSpec:
    """What to send, how hard and for how long."""

    __slots__ = ("url", "method", "body_size", "connections", "duration", "timeout", "cpus", "cpu_budget",
                 "generator")

    def __init__(self, url: str, *, connections: int, duration: int, method: str = "GET", body_size: int = 0,
                 timeout: int = 10, cpus: tuple[int, ...] = (), cpu_budget: int = 1, generator: str = "wrk") -> None:
        self.url = url
        self.method = method
        self.body_size = body_size
        self.connections = connections
        self.duration = duration
        self.timeout = timeout
        #: CPUs the generator is pinned to (empty: not pinned)
        self.cpus = cpus
        #: how many CPUs the generator may use: wrk threads / Python processes, one per CPU
        self.cpu_budget = len(cpus) or max(1, cpu_budget)
        #: "wrk" or "python"
        self.generator = generator


class LoadResult:
    """The figures of one load run.  Latencies in milliseconds, rates per second."""

    def __init__(self, *, generator: str, argv: list[list[str]], requests: int, duration_s: float, nbytes: int,
                 errors: dict[str, int], latency_ms: dict[str, float], threads: int, cpu_s: float,
                 wall_s: float, text_rps: float | None = None, message: str = "") -> None:
        self.generator = generator
        self.argv = argv
        self.requests = requests
        self.duration_s = duration_s
        self.bytes = nbytes
        self.errors = {kind: int(errors.get(kind, 0)) for kind in ERROR_KINDS}
        self.latency_ms = latency_ms
        self.threads = threads
        self.cpu_s = cpu_s
        self.wall_s = wall_s
        self.text_rps = text_rps
        self.message = message

    @property
    def ok_requests(self) -> int:
        """Responses with a 2xx/3xx status (wrk counts >= 400 as status errors)."""
        return max(0, self.requests - self.errors["status"])

    @property
    def rps(self) -> float:
        """Successful responses per second: errors never count as throughput."""
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def cpu_ratio(self) -> float:
        """Generator CPU seconds / (wall seconds x threads it runs): 1.0 is flat out."""
        return self.cpu_s / (self.wall_s * self.threads) if self.wall_s > 0 and self.threads else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as recorded per round in the results."""
        return {
            "generator": self.generator,
            "argv": self.argv,
            "requests": self.requests,
            "ok_requests": self.ok_requests,
            "duration_s": round(self.duration_s, 6),
            "rps": round(self.rps, 2),
            "wrk_text_rps": self.text_rps,
            "bytes": self.bytes,
            "errors": dict(self.errors),
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "generator_threads": self.threads,
            "generator_cpu_s": round(self.cpu_s, 3),
            "generator_cpu_ratio": round(self.cpu_ratio, 3),
            "message": self.message,
        }


def threads_for(connections: int, generator_cpus: int) -> int:
    """wrk threads: one per generator CPU, never more than the connections."""
    return max(1, min(connections, generator_cpus))


def run(spec: LoadSpec, workdir: str) -> LoadResult:
    """Run one load (blocking for ``spec.duration`` seconds) and return its figures."""
    if spec.generator == "wrk":
        return _run_wrk(spec, workdir)
    return _run_python(spec, workdir)


# --------------------------------------------------------------------------- wrk


def script_path(workdir: str, method: str, body_size: int) -> str:
    """Write (once) the Lua script for this request shape; return its path."""
    path = os.path.join(workdir, f"wrk-{method.lower()}-{body_size}.lua")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(wrk.script(method, body_size))
    return path


def _run_wrk(spec: LoadSpec, workdir: str) -> LoadResult:
    binary = wrk.find()
    if binary is None:
        raise LoadGenError("wrk is not installed (apt-get install wrk), and the Python generator was not chosen")
    threads = threads_for(spec.connections, spec.cpu_budget)
    command = pinning.prefix(spec.cpus) + wrk.argv(
        binary, spec.url, connections=spec.connections, threads=threads, duration=spec.duration,
        timeout=spec.timeout, script_path=script_path(workdir, spec.method, spec.body_size))
    out_path = os.path.join(workdir, "wrk.out")
    with open(out_path, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        cpu_s = _reap([proc], start + spec.duration + spec.timeout + 30)
        wall = time.monotonic() - start
    with open(out_path, encoding="utf-8", errors="replace") as fh:
        output = fh.read()
    try:
        data = wrk.parse(output)
    except LoadGenError:
        if "unable to connect" in output:
            # wrk gives up at once when no connection can be made: every connection failed.
            return LoadResult(generator="wrk", argv=[command], requests=0, duration_s=float(spec.duration),
                              nbytes=0, errors={"connect": spec.connections}, latency_ms={}, threads=threads,
                              cpu_s=cpu_s, wall_s=wall, message=output.strip()[:300])
        raise
    latency = data.get("latency_us") or {}
    return LoadResult(
        generator="wrk", argv=[command], requests=int(data["requests"]), duration_s=data["duration_us"] / 1e6,
        nbytes=int(data["bytes"]), errors=data.get("errors") or {},
        latency_ms={k: float(latency.get(k, 0)) / 1000 for k in ("p50", "p90", "p99", "max", "mean")},
        threads=threads, cpu_s=cpu_s, wall_s=wall, text_rps=data.get("text_rps"),
    )


# --------------------------------------------------------------------------- Python fallback


def _run_python(spec: LoadSpec, workdir: str) -> LoadResult:
    processes = threads_for(spec.connections, spec.cpu_budget)
    shares = [spec.connections // processes + (1 if i < spec.connections % processes else 0) for i in range(processes)]
    commands, procs, outputs = [], [], []
    start = time.monotonic()
    for index, share in enumerate(shares):
        command = [
            *pinning.prefix(spec.cpus), sys.executable, "-m", "launcher.bench.pyload", spec.url,
            "--connections", str(share), "--duration", str(spec.duration), "--method", spec.method,
            "--body-size", str(spec.body_size), "--timeout", str(spec.timeout)]
        path = os.path.join(workdir, f"pyload-{index}.out")
        with open(path, "wb") as out:
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        commands.append(command)
        outputs.append(path)
    cpu_s = _reap(procs, start + spec.duration + spec.timeout + 30)
    wall = time.monotonic() - start
    requests = nbytes = 0
    errors = dict.fromkeys(ERROR_KINDS, 0)
    latencies: list[int] = []
    for path in outputs:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        try:
            data = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LoadGenError(f"the Python load generator failed: {text.strip()[-300:] or 'no output'}") from None
        requests += data["requests"]
        nbytes += data["bytes"]
        latencies.extend(data["latencies_us"])
        for kind in ERROR_KINDS:
            errors[kind] += data["errors"].get(kind, 0)
    latencies.sort()
    latency_ms = {f"p{p:g}": stats.percentile(latencies, p) / 1000 for p in (50, 90, 99)}
    latency_ms["max"] = latencies[-1] / 1000 if latencies else 0.0
    latency_ms["mean"] = sum(latencies) / len(latencies) / 1000 if latencies else 0.0
    return LoadResult(generator="python", argv=commands, requests=requests, duration_s=float(spec.duration),
                      nbytes=nbytes, errors=errors, latency_ms=latency_ms, threads=processes, cpu_s=cpu_s,
                      wall_s=wall, message="low fidelity: Python load generator (wrk not installed)")


# --------------------------------------------------------------------------- reaping


def _reap(procs: list[subprocess.Popen[bytes]], deadline: float) -> float:
    """Wait for ``procs``; return their CPU seconds (user + system) from ``wait4``.

    ``wait4`` reports exactly that child's usage (and its reaped descendants'), unlike
    RUSAGE_CHILDREN deltas which would also count any other child reaped meanwhile.
    """
    pending = {proc.pid: proc for proc in procs}
    cpu = 0.0
    killed = False
    while pending:
        for pid in list(pending):
            try:
                done, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                pending.pop(pid).returncode = -1
                continue
            if done:
                pending.pop(pid).returncode = os.waitstatus_to_exitcode(status)
                cpu += usage.ru_utime + usage.ru_stime
        if pending and not killed and time.monotonic() > deadline:
            for pid in pending:
                os.kill(pid, signal.SIGKILL)
            killed = True
        if pending:
            time.sleep(0.02)
    if killed:
        raise LoadGenError("the load generator overran its deadline and was killed")
    return cpu
