"""Helpers shared by the project's benchmark scripts (overhead, startup, fidelity).

They reuse the pieces of ``serve bench`` (pinning, wrk, /proc readings) so every script measures
the same way, and add what a native command needs: a port chosen up front, readiness by polling,
stopping by process group.  Durations and counts come from flags, with environment defaults
(BENCH_DURATION, BENCH_PAIRS, BENCH_RUNS, BENCH_WARMUP, BENCH_RESULTS_DIR) so the final run can
be longer than a trial without editing anything.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from launcher.bench import loadgen, pinning, procs, results

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR", REPO / "benchmarks" / "results"))


def env_int(name: str, default: int) -> int:
    """An integer from the environment, else ``default``."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else default


def serve_script() -> list[str]:
    """The ``serve`` console script next to this interpreter (else ``python -m launcher``)."""
    candidate = Path(sys.executable).with_name("serve")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("serve")
    return [found] if found else [sys.executable, "-m", "launcher"]


def tool(name: str) -> str:
    """An executable installed next to this interpreter (waitress-serve, gunicorn, twistd) or on PATH."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    return shutil.which(name) or name


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (native commands cannot take a pre-bound socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed(backend: str) -> tuple[bool, str]:
    """Whether a backend exists and its library is installed; the reason when not."""
    from launcher.registry import describe

    info = describe(backend)
    if info.installed:
        return True, ""
    return False, info.error or f"{info.distribution} not installed (pip install 'wsgi-launcher[{info.extra}]')"


class Proc:
    """A server process started in its own session, its output in a log file."""

    def __init__(self, argv: list[str], *, cpus: tuple[int, ...], workdir: str, label: str,
                 env: dict[str, str] | None = None) -> None:
        self.argv = pinning.prefix(cpus) + argv
        self.label = label
        self.log_path = os.path.join(workdir, f"{label}.log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.started = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, cwd=REPO, env=full_env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output."""
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 30.0, interval: float = 0.005) -> float:
        """Poll ``url`` until it answers 200; seconds since start.  RuntimeError (with the log) if not."""
        parts = url.split("://", 1)[1]
        hostport, _, path = parts.partition("/")
        host, _, port = hostport.rpartition(":")
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.popen.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            try:
                conn.request("GET", "/" + path)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return time.perf_counter() - self.started
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(interval)
        raise RuntimeError(f"{self.label} did not answer 200 within {timeout:g}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL the whole process group (and its session) past ``timeout``."""
        leftovers = {s.pid for s in procs.tree(self.pid)}
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        leftovers |= {s.pid for s in procs.tree(self.pid)}
        for pid in sorted(leftovers):
            if pid != self.pid or self.popen.poll() is None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            return self.popen.wait(5)
        except subprocess.TimeoutExpired:
            return None


def measure(url: str, root: int, pin: pinning.Pinning, *, connections: int, duration: int,
            workdir: str) -> dict[str, Any]:
    """One wrk run (pinned like ``serve bench``) with the server tree's CPU time and peak memory."""
    spec = loadgen.LoadSpec(url, connections=connections, duration=duration, timeout=10, cpus=pin.generator,
                            cpu_budget=pin.generator_cpu_count(), generator="wrk" if shutil.which("wrk") else "python")
    before = procs.read_tree(root)
    with procs.MemorySampler(root) as memory:
        load = loadgen.run(spec, workdir)
    after = procs.read_tree(root)
    cpu = max(0.0, after.cpu_seconds - before.cpu_seconds)
    return {
        "rps": round(load.rps, 2),
        "requests": load.requests,
        "errors": load.errors,
        "p50_ms": round(load.latency_ms.get("p50", 0.0), 3),
        "p99_ms": round(load.latency_ms.get("p99", 0.0), 3),
        "server_cpu_s_per_1k": round(cpu * 1000 / load.requests, 4) if load.requests else None,
        "peak_rss_bytes": memory.peak_bytes,
        "generator_cpu_ratio": round(load.cpu_ratio, 3),
        "generator": load.generator,
        "wrk_argv": load.argv,
    }


def workdir() -> str:
    """A scratch directory for logs, scripts and pid files."""
    return tempfile.mkdtemp(prefix="bench-")


def header(pin: pinning.Pinning) -> dict[str, Any]:
    """Machine, pinning and load average: the top of every result file."""
    from launcher import __version__

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": results.machine(results.loadavg()),
        "launcher": __version__,
        "pinning": pin.as_dict(),
    }


def write(name: str, document: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<name>.json``; return its path."""
    folder = Path(out_dir or RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    """The median (0.0 for no values)."""
    from launcher.bench.stats import median as _median

    return _median(values) if values else 0.0
