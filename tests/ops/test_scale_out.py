"""Scaling out behind nginx (issue 7, point 4): several `serve` instances of different backends,
the upstream block `serve config nginx --upstream ...` generates, a real nginx, load, and one
instance lost in the middle of it.

* SIGKILL (the hard case: requests in flight on the dead instance, its connections reset): the
  clients must see no error, because the generated ``proxy_next_upstream`` retries them on the
  next instance, and the traffic must spread over the survivors.
* SIGTERM with --health-path: the instance drains (its in-flight request is answered, /healthz
  says 503 on a connection opened before, it exits 0) while the clients still see no error.

nginx comes from tests/front's fixture: the generated config is included unchanged inside a
minimal http {} (this test adds, beside it, an access log of $upstream_addr to count the requests
nginx retried on another instance).  The figures (requests, errors, share per instance, retries)
are printed: run with -s to see them.
"""

from __future__ import annotations

import functools
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import (
    APP,
    AppState,
    Background,
    clean_env,
    launch,
    serve_command,
    skip_or_fail,
    wait_exit,
    wait_ready,
)
from tests.support import REPO, Connection, ServeProcess, http_request, list_backends

pytestmark = pytest.mark.server

#: Backends to mix, in order of preference (three different ones are used).
PREFERRED = ("waitress", "gevent", "twisted", "tornado", "gunicorn", "uwsgi", "mod_wsgi")
CLIENTS = 4
DURATION = 4.0
LOSS_AT = 1.5
#: Every CLIENTS-th request takes this long in the app, so requests are in flight at the loss.
SLOW_MS = 150
MIN_SHARE = 0.20


def _upstream_option_exists() -> bool:
    proc = subprocess.run([sys.executable, "-m", "launcher", "config", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=clean_env())
    return proc.returncode == 0 and "--upstream" in proc.stdout + proc.stderr


def _three_backends() -> list[str]:
    installed = {b.name for b in list_backends() if b.installed and getattr(b, "protocol", "") == "http"}
    chosen = [name for name in PREFERRED if name in installed][:3]
    if len(chosen) < 3:
        skip_or_fail(f"scale-out needs three installed HTTP backends, found {sorted(installed)}")
    return chosen


@dataclass
class Instance:
    backend: str
    process: ServeProcess
    state: AppState

    @property
    def bind(self) -> str:
        address = self.process.address
        return f"{address['host']}:{address['port']}"


@dataclass
class Load:
    """What the clients saw: one entry per response or error, with the time it completed."""

    started: float = 0.0
    responses: list[tuple[float, str]] = field(default_factory=list)  # (time, label)
    errors: list[tuple[float, float, str]] = field(default_factory=list)  # (time, sent, what)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def shares(self, since: float = 0.0, until: float = float("inf")) -> tuple[int, dict[str, float]]:
        with self.lock:
            labels = [label for t, label in self.responses if since <= t < until]
        counts = Counter(labels)
        total = len(labels)
        return total, {label: n / total for label, n in counts.items()} if total else {}


def _record(load: Load, resp: Any, sent: float) -> None:
    now = time.monotonic()
    with load.lock:
        if 200 <= resp.status < 300:
            try:
                load.responses.append((now, str(json.loads(resp.body)["label"])))
            except (ValueError, KeyError):
                load.errors.append((now, sent, f"2xx without the app's body: {resp.describe(200)}"))
        else:
            load.errors.append((now, sent, f"HTTP {resp.status}: {resp.describe(300)}"))


def _one(address: Any, path: str, load: Load) -> str:
    """One request on a connection of its own; returns the label of the instance that answered."""
    sent = time.monotonic()
    try:
        resp = http_request(address, "GET", path, timeout=20)
    except Exception as exc:
        with load.lock:
            load.errors.append((time.monotonic(), sent, f"{type(exc).__name__}: {exc} ({path})"))
        return ""
    _record(load, resp, sent)
    try:
        return str(json.loads(resp.body)["label"])
    except (ValueError, KeyError):
        return ""


def _client(address: Any, load: Load, stop: threading.Event, slow: bool) -> None:
    conn = Connection(address, timeout=15)
    path = f"/?ms={SLOW_MS}" if slow else "/"
    on_conn = 0
    while not stop.is_set():
        sent = time.monotonic()
        try:
            resp = conn.request("GET", path)
        except Exception as exc:
            with load.lock:
                load.errors.append((time.monotonic(), sent, f"{type(exc).__name__}: {exc} (request {on_conn + 1}"
                                    f" on its connection, sent {sent - load.started:.2f}s into the run)"))
            conn.close()
            conn = Connection(address, timeout=15)
            on_conn = 0
            continue
        on_conn += 1
        _record(load, resp, sent)
        if resp.will_close:
            conn.close()
            conn = Connection(address, timeout=15)
            on_conn = 0
    conn.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[Instance], Any, Path]]:
    """Three `serve` instances of different backends behind nginx on the generated config."""
    if not _upstream_option_exists():
        skip_or_fail("`serve config nginx --upstream ADDR` does not exist yet")
    from tests.front import servers  # the real-nginx fixture of tests/front

    servers.require_binary("nginx")
    servers.require_web_user()
    backends = _three_backends()
    instances: list[Instance] = []
    front = None
    work = servers.shared_dir("wl-ops-ngx-")
    try:
        for backend in backends:
            args = ["--backend", backend, "--bind", "127.0.0.1:0", "--health-path", "/healthz",
                    "--graceful-timeout", "10", APP]
            state = AppState(work / f"state-{backend}")
            process = launch(serve_command(args, tmp_path / f"{backend}.ready.json"), tmp_path=tmp_path,
                             env=clean_env(OPS_LABEL=backend, **state.env()), label=f"{backend} (scale-out)")
            instances.append(Instance(backend, process, state))
        for instance in instances:
            wait_ready(instance.process, confirm="/healthz")
        listener = servers.loopback_listener()
        port = listener.getsockname()[1]
        argv = ["--name", "ops", "--listen", f"127.0.0.1:{port}"]
        for instance in instances:
            argv += ["--upstream", instance.bind]
        generated = servers.serve_config("nginx", *argv, APP)
        assert generated.text.count("server 127.0.0.1:") == 3, generated.text
        assert "proxy_next_upstream" in generated.text, generated.text
        # Beside the generated config (which is included unchanged): which instance(s) served each request.
        site = (f"log_format ops_upstream '$status $upstream_addr $upstream_status $request_time \"$request\"';\n"
                f"access_log {work}/upstream.log ops_upstream;\n\n{generated.text}")
        front = servers.start_nginx(site, work, listener, ready_path="/")
        yield instances, front, work
    finally:
        if front is not None:
            front.stop(timeout=5)
        for instance in instances:
            instance.process.stop()
        shutil.rmtree(work, ignore_errors=True)


def _drive(front: Any, lose: Any, load: Load) -> Load:
    """CLIENTS threads for DURATION seconds; ``lose()`` runs at LOSS_AT seconds."""
    load.started = time.monotonic()
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(front.address, load, stop, i == 0), daemon=True)
               for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(LOSS_AT)
    lose()
    time.sleep(max(0.0, DURATION - (time.monotonic() - load.started)))
    stop.set()
    for thread in threads:
        thread.join(20)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    return load


def _retried(work: Path) -> int:
    """Requests nginx passed to more than one instance ($upstream_addr lists them all)."""
    try:
        lines = (work / "upstream.log").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum("," in line.split('"')[0] for line in lines)


def _cut_by_kill(load: Load, lost_at: float) -> list[tuple[float, float, str]]:
    """Responses cut off mid-body by the SIGKILL.  Once nginx has passed a response's header on to
    the client it cannot retry it anywhere (no proxy can): an instance killed between writing a
    response's header and its body (gevent writes them with two send calls) cuts that response.
    Only a request already in flight at the kill can be cut so."""
    return [e for e in load.errors if e[2].startswith("IncompleteRead") and lost_at - 1.0 <= e[1] <= lost_at]


def _report(kind: str, instances: list[Instance], victim: Instance, load: Load, lost_at: float,
            retried: int) -> str:
    total, overall = load.shares()
    before_n, before = load.shares(until=lost_at)
    after_n, after = load.shares(since=lost_at + 0.2)
    elapsed = (load.responses[-1][0] - load.started) if load.responses else 0.0
    cut = _cut_by_kill(load, lost_at) if kind == "SIGKILL" else []
    lines = [f"scale-out behind nginx, {kind} of {victim.backend} at {lost_at - load.started:.2f}s:"
             f" {total + len(load.errors)} requests in {elapsed:.1f}s from {CLIENTS} clients,"
             f" {len(load.errors) - len(cut)} errors"
             + (f" (+{len(cut)} response(s) cut mid-body by the kill)" if cut else "")
             + f", {retried} passed to a second instance by nginx"]
    for instance in instances:
        name = instance.backend
        lines.append(f"  {name:9} overall {overall.get(name, 0):6.1%}   before {before.get(name, 0):6.1%}"
                     f"   after {after.get(name, 0):6.1%}{'   (lost)' if instance is victim else ''}")
    lines.append(f"  ({before_n} responses before the loss, {after_n} from 0.2s after it)")
    return "\n".join(lines)


def _diagnostics(front: Any) -> str:
    try:
        lines = (Path(front.workdir) / "upstream.log").read_text().splitlines()
    except OSError:
        lines = []
    odd = [line for line in lines if not line.startswith("200 ")]
    return ("nginx requests not answered 200 ($status $upstream_addr $upstream_status $request_time $request):\n"
            + "\n".join(odd[:50]) + f"\nnginx output:\n{front.output()[-8000:]}")


def _check(instances: list[Instance], victim: Instance, load: Load, lost_at: float, report: str,
           front: Any, *, cut_allowed: bool) -> None:
    cut = _cut_by_kill(load, lost_at) if cut_allowed else []
    errors = [e for e in load.errors if e not in cut]
    first = [(round(t - load.started, 2), what) for t, _, what in errors[:5]]
    assert not errors, f"{len(errors)} client error(s), the first: {first}\n{report}\n{_diagnostics(front)}"
    assert len(cut) <= CLIENTS + 1, f"more responses cut by the kill than requests could be in flight\n{report}"
    total, _ = load.shares()
    assert total >= 200, f"too few requests to judge ({total})\n{report}"
    _, before = load.shares(until=lost_at)
    assert victim.backend in before, f"the lost instance served nothing before it was lost\n{report}"
    after_n, after = load.shares(since=lost_at + 0.2)
    assert after_n >= 100, f"too few requests after the loss ({after_n})\n{report}"
    for instance in instances:
        if instance is not victim:
            assert after.get(instance.backend, 0) > MIN_SHARE, (
                f"{instance.backend} got {after.get(instance.backend, 0):.1%} of the traffic after the loss"
                f" (expected > {MIN_SHARE:.0%})\n{report}")


def test_sigkill_one_instance_under_load(cluster: tuple[list[Instance], Any, Path]) -> None:
    instances, front, work = cluster
    victim = instances[1]
    load = Load()
    lost: list[float] = []
    burst: list[Background] = []
    in_flight: list[str] = []

    def lose() -> None:
        # The hard case, made certain: slow requests (600 ms in the app) go through nginx until the
        # victim's app has started at least one of them, then the victim is killed mid-request.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            targets = [t for t in victim.state.call_targets() if "burst=" in t]
            if targets:
                in_flight.extend(targets)
                break
            path = f"/?ms=600&burst={len(burst)}"
            burst.append(Background(functools.partial(_one, front.address, path, load)))
            time.sleep(0.02)
        lost.append(time.monotonic())
        victim.process.kill_group()

    _drive(front, lose, load)
    assert in_flight, "no request was in flight on the victim when it was killed"
    answered_by = [b.result(20) for b in burst]
    assert victim.process.wait(5) < 0, "the killed instance is still running"
    report = _report("SIGKILL", instances, victim, load, lost[0], _retried(work))
    report += (f"\n  in flight on {victim.backend} when it was killed: {len(in_flight)} request(s);"
               f" the burst of {len(burst)} was answered by {dict(Counter(answered_by))}")
    print("\n" + report)
    _check(instances, victim, load, lost[0], report, front, cut_allowed=True)
    killed = {target.partition("burst=")[2] for target in in_flight}
    for index in killed:
        assert answered_by[int(index)] not in ("", victim.backend), (
            f"burst request {index}, in flight on the killed instance, was answered by {answered_by[int(index)]!r}"
            f"\n{report}")
    _, after = load.shares(since=lost[0] + 0.2)
    assert victim.backend not in after, f"answers from a killed instance?\n{report}"


def test_sigterm_with_health_path_under_load(cluster: tuple[list[Instance], Any, Path]) -> None:
    instances, front, work = cluster
    victim = instances[0]
    address = victim.process.address
    probe = Connection(address, timeout=5).connect()
    assert probe.request("GET", "/healthz").status == 200
    health: list[int] = []
    lost: list[float] = []
    slow: list[Background] = []

    def lose() -> None:
        slow.append(Background(lambda: http_request(address, "GET", "/slow?t=1", timeout=20)))
        time.sleep(0.2)  # the slow request is in the app
        lost.append(time.monotonic())
        victim.process.signal(signal.SIGTERM)
        for _ in range(6):  # what a load balancer probing on its open connection sees
            time.sleep(0.1)
            try:
                health.append(probe.request("GET", "/healthz").status)
            except Exception:
                break

    load = _drive(front, lose, Load())
    probe.close()
    code = wait_exit(victim.process, 15)
    report = _report("SIGTERM (--health-path)", instances, victim, load, lost[0], _retried(work))
    print("\n" + report + f"\n  /healthz of {victim.backend} after SIGTERM: {health}")
    resp = slow[0].result(15)
    assert (resp.status, resp.body) == (200, b"slow done"), (
        f"the draining instance dropped a request: {resp.describe()}")
    assert code == 0, f"the terminated instance exited {code}"
    assert health and health[0] == 503, f"/healthz on the draining instance answered {health}, expected 503 first"
    _check(instances, victim, load, lost[0], report, front, cut_allowed=False)
    _, late = load.shares(since=lost[0] + 2.0)
    assert victim.backend not in late, f"the terminated instance still served 2s after SIGTERM\n{report}"
