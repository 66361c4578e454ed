"""The gunicorn backend's own guarantees.

Unit tests (no server): how the common options and ``-o`` map onto gunicorn's settings, what is
refused and why.  Server tests (real ``python -m launcher --backend gunicorn``): no shared control
socket between two instances, drain and cut-off on SIGTERM, Ctrl-C to the whole group, each worker
class serving concurrent slow requests, and an app that does not import in the workers.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import OptionError
from launcher.options import ServeOptions, resolve
from tests.support import (
    REPO,
    ServeProcess,
    contract_args,
    exchange_until_closed,
    http_request,
    one_response,
    parallel,
    require_backend,
    run_serve,
)

APP = "tests.contract.app:app"

Serve = Callable[..., ServeProcess]


@pytest.fixture(autouse=True)
def _gunicorn_installed() -> None:
    require_backend("gunicorn")


def _opts(**cli: Any) -> ServeOptions:
    cli.setdefault("backend", "gunicorn")
    return resolve(APP, cli=cli, env={}, use_file=False)


def _config(**cli: Any) -> Any:
    """Check the options as the launcher does, then build gunicorn's config from them."""
    from backends.gunicorn import GunicornBackend

    backend = GunicornBackend()
    opts = _opts(**cli)
    backend.check(opts)
    return backend.build_config(opts, ["fd://7"])


def _refused(**cli: Any) -> str:
    from backends.gunicorn import GunicornBackend

    with pytest.raises(OptionError) as info:
        GunicornBackend().check(_opts(**cli))
    return str(info.value)


# --------------------------------------------------------------------------- option mapping


def test_common_options_map_to_gunicorn_settings() -> None:
    cfg = _config(workers=3, threads=2, connections=50, backlog=64, timeout="10", graceful_timeout="2.5",
                  keepalive="1.5", max_requests=100, log_level="warning")
    assert cfg.workers == 3
    assert cfg.threads == 2
    assert cfg.worker_class_str == "gthread"  # gunicorn's rule: sync with threads > 1
    assert cfg.worker_connections == 50
    assert cfg.backlog == 64
    assert cfg.timeout == 10
    assert cfg.graceful_timeout == 3  # whole seconds, rounded up (the arbiter uses the exact 2.5)
    assert cfg.keepalive == 2
    assert cfg.max_requests == 100
    assert cfg.loglevel == "warning"
    assert cfg.address == [7]  # the launcher's socket, handed over by fd
    assert cfg.uid == os.geteuid() and cfg.gid == os.getegid()


def test_gunicorns_proxy_handling_access_log_and_control_socket_are_off() -> None:
    cfg = _config()
    assert cfg.forwarded_allow_ips == []
    assert cfg.secure_scheme_headers == {}
    assert cfg.forwarder_headers == []  # gunicorn trusts unix-socket peers whatever the allow-list
    assert cfg.accesslog is None
    assert cfg.control_socket_disable is True
    assert cfg.proc_name != "gunicorn"  # the dirty arbiter's pid file is named after it


def test_request_limits_map_and_values_gunicorn_would_clamp_are_refused() -> None:
    cfg = _config(limit_request_line=2048, limit_request_fields=50, limit_request_field_size=4096)
    assert (cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size) == (2048, 50, 4096)
    cfg = _config(limit_request_line=0, limit_request_fields=0)  # 0: no limit (gunicorn's most fields)
    assert (cfg.limit_request_line, cfg.limit_request_fields) == (0, 32768)
    assert "at most 8190" in _refused(limit_request_line=10000)
    assert "at most 32768" in _refused(limit_request_fields=40000)
    assert "cannot lift" in _refused(limit_request_field_size=0)
    _config(limit_request_body=1000, header_timeout="2")  # BodyLimit in the workers; the head timer


def test_default_and_single_thread_worker_classes() -> None:
    assert _config().worker_class_str == "gthread"  # the launcher's default: 4 threads
    assert _config(threads=1).worker_class_str == "sync"
    sync = _config(option=["worker_class=sync"])
    assert (sync.worker_class_str, sync.threads) == ("sync", 1)
    gevent = _config(option=["worker_class=gevent"], connections=20)
    assert (gevent.worker_class_str, gevent.worker_connections) == ("gevent", 20)


def test_threads_a_worker_class_cannot_use_are_refused() -> None:
    message = _refused(threads=4, option=["worker_class=sync"])
    assert "--threads 4" in message and "gthread" in message
    message = _refused(threads=8, option=["worker_class=gevent"])
    assert "--threads 8" in message and "--connections" in message


def test_any_gunicorn_setting_through_dash_o() -> None:
    cfg = _config(max_requests=1000, option=["max_requests_jitter=50", "header_map=refuse",
                                             "preload_app=yes", "worker_class=gthread"])
    assert cfg.max_requests_jitter == 50
    assert cfg.header_map == "refuse"
    assert cfg.preload_app is True
    cfg = _config(option=["control_socket=/run/x/gunicorn.ctl"])
    assert cfg.control_socket == "/run/x/gunicorn.ctl" and cfg.control_socket_disable is False


def test_a_typo_names_the_closest_setting() -> None:
    message = _refused(option=["max_request_jitter=5"])
    assert "not a gunicorn setting" in message and "'max_requests_jitter'" in message


def test_a_bad_value_is_reported_by_gunicorns_validator() -> None:
    message = _refused(option=["max_requests_jitter=lots"])
    assert message.startswith("-o max_requests_jitter=lots:"), message


def test_a_bad_worker_class_names_the_valid_ones() -> None:
    message = _refused(option=["worker_class=gevnt"])
    assert "'gevent'" in message and "gthread" in message, message
    assert "gevent" in _refused(option=["worker_class=no.such.Worker"])
    assert "ASGI" in _refused(option=["worker_class=asgi"])


@pytest.mark.parametrize(("worker_class", "backend"), [
    ("gevent_pywsgi", "gevent"), ("gevent_wsgi", "gevent"), ("gunicorn.workers.ggevent.GeventPyWSGIWorker", "gevent"),
    ("tornado", "tornado"), ("gunicorn.workers.gtornado.TornadoWorker", "tornado"),
])
def test_a_worker_class_with_another_servers_parser_is_refused(worker_class: str, backend: str) -> None:
    """Those workers parse with gevent.pywsgi's or tornado's parser, where the launcher's checks on
    gunicorn's parser do not reach: refused, naming the backend that serves that parser checked."""
    message = _refused(option=[f"worker_class={worker_class}"])
    assert "request checks do not cover" in message and f"--backend {backend}" in message, message


@pytest.mark.parametrize(("setting", "flag"), [
    ("bind", "--bind"), ("workers", "--workers"), ("threads", "--threads"), ("user", "--user"),
    ("umask", "--umask"), ("accesslog", "--access-log"), ("forwarded_allow_ips", "--forwarded-allow-ips"),
    ("secure_scheme_headers", "--proxy-headers"), ("worker_connections", "--connections"),
    ("graceful_timeout", "--graceful-timeout"), ("loglevel", "--log-level"),
    ("limit_request_line", "--limit-request-line"),
])
def test_settings_the_launcher_owns_name_the_common_option(setting: str, flag: str) -> None:
    message = _refused(option=[f"{setting}=1"])
    assert f"-o {setting}" in message and flag in message, message


@pytest.mark.parametrize("setting", ["daemon", "reuse_port", "control_socket_disable", "protocol"])
def test_settings_that_cannot_work_embedded_are_refused(setting: str) -> None:
    assert "not available" in _refused(option=[f"{setting}=true"])


def test_preload_with_gevent_is_refused() -> None:
    message = _refused(option=["preload_app=true", "worker_class=gevent"])
    assert "preload_app" in message and "gevent" in message and "one at a time" in message
    assert _config(option=["preload_app=true"]).preload_app is True  # fine with threads


def test_importing_the_backend_imports_no_server_library() -> None:
    code = ("import sys, backends.gunicorn\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gunicorn', 'gevent')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- real servers

server = pytest.mark.server


def _gunicorn(*extra: str, bind: str = "127.0.0.1:0", app: str = APP) -> list[str]:
    return contract_args("gunicorn", bind, *extra, app=app)


def _home_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home))
    env.pop("XDG_RUNTIME_DIR", None)
    return env


@server
def test_two_instances_never_share_a_control_socket(serve: Serve, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = tmp_path / "xdg"
    home.mkdir()
    runtime.mkdir()
    first = serve(_gunicorn(), env=_home_env(home))
    second = serve(_gunicorn(), env=dict(_home_env(home), XDG_RUNTIME_DIR=str(runtime)))
    for process in (first, second):
        resp = http_request(process.address, "GET", "/", timeout=5)
        assert (resp.status, resp.body) == (200, b"hello")
    assert not (home / ".gunicorn").exists(), "an instance created ~/.gunicorn (the shared control socket)"
    assert list(runtime.iterdir()) == [], "an instance created $XDG_RUNTIME_DIR/gunicorn.ctl"
    for process in (first, second):
        assert "control" not in process.output().lower(), process.output()


@server
def test_a_users_request_hooks_still_run(serve: Serve, tmp_path: Path) -> None:
    """The launcher counts requests in gunicorn's pre_request/post_request hooks: hooks of the
    user's own (-o pre_request=module.func) still run, once per request, in order."""
    (tmp_path / "hooks_mod.py").write_text(
        "import os\n"
        "LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'hooks.log')\n"
        "def pre(worker, req):\n"
        "    open(LOG, 'a').write('pre ' + req.path + '\\n')\n"
        "def post(worker, req, environ, resp):\n"
        "    open(LOG, 'a').write('post ' + req.path + '\\n')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    process = serve(_gunicorn("-o", "pre_request=hooks_mod.pre", "-o", "post_request=hooks_mod.post"), env=env)
    for path in ("/a", "/b"):
        assert http_request(process.address, "GET", path, timeout=5).status == 404  # the contract app's
    deadline = time.monotonic() + 5
    seen: list[str] = []
    while time.monotonic() < deadline:  # post_request runs after the response is sent: it may lag
        log = tmp_path / "hooks.log"
        lines = log.read_text().splitlines() if log.exists() else []
        seen = [line for line in lines if line.endswith((" /a", " /b"))]
        if len(seen) >= 4:
            break
        time.sleep(0.05)
    assert sorted(seen) == ["post /a", "post /b", "pre /a", "pre /b"], seen  # each once
    assert all(seen.index(f"pre {path}") < seen.index(f"post {path}") for path in ("/a", "/b")), seen


@server
def test_own_control_socket_when_asked(serve: Serve, tmp_path: Path) -> None:
    ctl = tmp_path / "ctl" / "g.ctl"
    process = serve(_gunicorn("-o", f"control_socket={ctl}"), env=_home_env(tmp_path))
    deadline = time.monotonic() + 5
    while not ctl.is_socket() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ctl.is_socket(), process.output()
    assert not (tmp_path / ".gunicorn").exists()


def _slow_requests(process: ServeProcess, count: int, seconds: float, timeout: float = 20) -> list[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(count)
    futures = [pool.submit(http_request, process.address, "GET", f"/slow?t={seconds}", timeout=timeout)
               for _ in range(count)]
    pool.shutdown(wait=False)
    return futures


def _results(futures: list[Any]) -> list[Any]:
    out = []
    for future in futures:
        try:
            out.append(future.result(timeout=20))
        except Exception as exc:  # reported by the caller
            out.append(exc)
    return out


@server
@pytest.mark.parametrize("extra", [
    pytest.param(["--threads", "4"], id="gthread"),
    pytest.param(["-o", "worker_class=sync", "--workers", "3"], id="sync"),
    pytest.param(["-o", "worker_class=gevent"], id="gevent"),
])
def test_sigterm_answers_in_flight_requests_and_exits_zero(serve: Serve, extra: list[str]) -> None:
    process = serve(_gunicorn("--graceful-timeout", "10", *extra))
    futures = _slow_requests(process, 3, 1.5)
    time.sleep(0.5)
    process.signal(signal.SIGTERM)
    rc = process.wait(15)
    answers = _results(futures)
    assert [getattr(a, "status", a) for a in answers] == [200] * 3, process.output()
    assert rc == 0, process.output()
    assert "cut off" not in process.output()


@server
@pytest.mark.parametrize("extra", [
    pytest.param([], id="gthread"),
    pytest.param(["-o", "worker_class=sync"], id="sync"),
    pytest.param(["-o", "worker_class=gevent"], id="gevent"),
])
def test_requests_past_the_graceful_timeout_exit_one_and_say_how_many(serve: Serve, extra: list[str]) -> None:
    process = serve(_gunicorn("--graceful-timeout", "1", *extra))
    futures = _slow_requests(process, 1, 20)
    time.sleep(0.5)
    sent = time.monotonic()
    process.signal(signal.SIGTERM)
    rc = process.wait(10)
    took = time.monotonic() - sent
    _results(futures)
    assert rc == 1, process.output()
    assert took < 5, f"exit {took:.1f}s after SIGTERM with --graceful-timeout 1"
    assert "1 request(s) cut off" in process.output(), process.output()
    assert "Traceback" not in process.output()


@server
def test_ctrl_c_to_the_process_group_drains(serve: Serve) -> None:
    process = serve(_gunicorn("--graceful-timeout", "10", "--workers", "2"))
    futures = _slow_requests(process, 2, 1.5)
    time.sleep(0.5)
    process.signal(signal.SIGINT, group=True)  # a terminal's Ctrl-C reaches the workers too
    rc = process.wait(15)
    assert [getattr(a, "status", a) for a in _results(futures)] == [200, 200], process.output()
    assert rc == 0, process.output()


@server
@pytest.mark.parametrize(("extra", "count", "seconds"), [
    pytest.param(["--threads", "4"], 4, 1.0, id="gthread"),
    pytest.param(["-o", "worker_class=sync", "--workers", "4"], 4, 1.0, id="sync"),
    pytest.param(["-o", "worker_class=gevent", "--workers", "1"], 10, 0.5, id="gevent"),
])
def test_each_worker_class_serves_concurrent_slow_requests(serve: Serve, extra: list[str], count: int,
                                                           seconds: float) -> None:
    process = serve(_gunicorn(*extra))
    start = time.monotonic()
    results = parallel(lambda: http_request(process.address, "GET", f"/slow?t={seconds}", timeout=20),
                       [()] * count, timeout=30)
    elapsed = time.monotonic() - start
    assert [getattr(r, "status", r) for r in results] == [200] * count, process.output()
    serial = count * seconds
    assert elapsed < serial / 2, f"{count} x {seconds}s took {elapsed:.2f}s (serial would be {serial:g}s)"


@server
def test_an_app_that_does_not_import_stops_with_its_message(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "broken_gunicorn_app.py").write_text("import no_such_dependency_xyz\n")
    fin = run_serve(_gunicorn("--workers", "2", "--pythonpath", str(app_dir), app="broken_gunicorn_app:app"),
                    timeout=15, tmp_path=tmp_path)
    assert not fin.became_ready, fin.describe()
    assert fin.returncode == 4, fin.describe()
    assert fin.elapsed < 10, fin.describe()
    errors = [line for line in fin.stderr_lines() if line.startswith("serve: error:")]
    assert len(errors) == 1, fin.describe()
    assert "no_such_dependency_xyz" in errors[0]
    assert fin.stderr.count("Booting worker") <= 2, "the arbiter respawned workers that cannot load\n" + fin.describe()


@server
def test_a_missing_module_is_one_error_without_traceback(tmp_path: Path) -> None:
    fin = run_serve(_gunicorn(app="no_such_module_xyz:app"), timeout=15, tmp_path=tmp_path)
    assert fin.returncode == 4, fin.describe()
    assert "Traceback" not in fin.stderr, fin.describe()
    errors = [line for line in fin.stderr_lines() if line.startswith("serve: error:")]
    assert len(errors) == 1 and "no_such_module_xyz" in errors[0], fin.describe()


@server
@pytest.mark.parametrize("extra", [
    pytest.param([], id="gthread"),
    pytest.param(["-o", "worker_class=sync", "--workers", "2"], id="sync"),
    pytest.param(["-o", "worker_class=gevent"], id="gevent"),
])
def test_sigterm_stops_accepting_at_once(serve: Serve, extra: list[str]) -> None:
    # gunicorn's gevent worker alone would keep serving new connections for up to a second.
    process = serve(_gunicorn("--graceful-timeout", "10", *extra))
    futures = _slow_requests(process, 1, 2)
    time.sleep(0.5)
    process.signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        late: Any = http_request(process.address, "GET", "/", timeout=8)
    except OSError as exc:
        late = exc
    assert process.wait(15) == 0, process.output()
    assert [getattr(a, "status", a) for a in _results(futures)] == [200], process.output()
    assert getattr(late, "status", None) != 200, "a request sent 0.2 s after SIGTERM was served"


@server
def test_worker_restarts_keep_the_unix_socket(serve: Serve, sock_dir: Path) -> None:
    # A worker leaving (here after --max-requests) must not run the launcher's clean-up, which
    # removes the socket file the arbiter still serves on.
    path = sock_dir / "g.sock"
    process = serve(_gunicorn("--max-requests", "2", "--workers", "2", bind=f"unix:{path}"))
    pids = set()
    for _ in range(10):
        resp = http_request(process.address, "GET", "/slow?t=0", timeout=5)
        assert resp.status == 200, resp.describe()
        pids.add(resp.json()["pid"])
    assert len(pids) >= 3, f"workers were not replaced after --max-requests 2: {pids}"
    assert path.is_socket(), "the socket file disappeared when a worker was replaced"
    assert process.stop() == 0, process.output()
    assert not path.exists(), "socket file left behind after a clean exit"


IMPORT_PROBE = '''
import json
import os
import sys

IMPORTED_IN = os.getpid()
TIME_PATCHED = "gevent.monkey" in sys.modules and sys.modules["gevent.monkey"].is_module_patched("time")


def app(environ, start_response):
    body = json.dumps({"imported_in": IMPORTED_IN, "pid": os.getpid(), "time_patched": TIME_PATCHED}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''


@server
@pytest.mark.parametrize(("extra", "preloaded", "patched"), [
    pytest.param(["--workers", "2"], False, False, id="in-workers"),
    pytest.param(["--workers", "2", "-o", "preload_app=true"], True, False, id="preload"),
    pytest.param(["-o", "worker_class=gevent"], False, True, id="gevent-after-patching"),
])
def test_where_the_app_is_imported(serve: Serve, tmp_path: Path, extra: list[str], preloaded: bool,
                                   patched: bool) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "gunicorn_import_probe.py").write_text(IMPORT_PROBE)
    process = serve(_gunicorn(*extra, "--pythonpath", str(app_dir), app="gunicorn_import_probe:app"))
    data = http_request(process.address, "GET", "/", timeout=5).json()
    master = process.ready["pid"]
    if preloaded:
        assert data["imported_in"] == master != data["pid"], data
    else:
        assert data["imported_in"] == data["pid"] != master, data
    assert data["time_patched"] is patched, data


@server
def test_log_format_json_covers_gunicorns_own_lines(serve: Serve) -> None:
    import json

    process = serve(_gunicorn("--log-format", "json"))
    assert process.stop() == 0
    lines = [line for line in process.stderr().splitlines() if line.strip()]
    loggers = set()
    for line in lines:
        loggers.add(json.loads(line)["logger"])  # every line is one JSON object
    assert {"launcher", "gunicorn.error"} <= loggers, lines


# --------------------------------------------------------------------------- request hygiene and limits

WORKER_CLASSES = [
    pytest.param([], id="gthread"),
    pytest.param(["-o", "worker_class=sync"], id="sync"),
    pytest.param(["-o", "worker_class=gevent"], id="gevent"),
]


@server
@pytest.mark.parametrize("extra", WORKER_CLASSES)
def test_a_smuggling_head_is_refused_and_closed(serve: Serve, extra: list[str]) -> None:
    """``Content_Length`` (gunicorn drops it and would read the body as the next request), an
    absolute-form target and a missing Host: 400 with Connection: close, the hidden request unread."""
    process = serve(_gunicorn(*extra))
    hidden = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    for head in (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent_Length: %d\r\n\r\n" % len(hidden),
        b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ):
        answer, _ = exchange_until_closed(process, head + hidden)
        assert answer.startswith(b"HTTP/1.1 400 "), (head, answer[:200])
        assert one_response(answer), (head, answer)  # the hidden request was not served
    ok = http_request(process.address, "GET", "/", headers={"X-Custom_Thing": "v"}, timeout=10)
    assert ok.status == 200, ok.describe()  # an underscore that poses as nothing standard is fine


@server
@pytest.mark.parametrize("extra", WORKER_CLASSES)
def test_header_timeout_cuts_a_slow_head_and_a_stalled_body(serve: Serve, extra: list[str]) -> None:
    process = serve(_gunicorn("--header-timeout", "1", *extra))
    answer, took = exchange_until_closed(process, b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=10)
    assert answer == b"" and took < 3, (answer, took)
    answer, took = exchange_until_closed(process, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx",
                             timeout=10)
    assert took < 3, (answer, took)


@server
def test_limit_request_body(serve: Serve) -> None:
    process = serve(_gunicorn("--limit-request-body", "10"))
    small = http_request(process.address, "POST", "/echo", body=b"x" * 10, timeout=10)
    assert (small.status, small.body) == (200, b"x" * 10), small.describe()
    big = http_request(process.address, "POST", "/echo", body=b"x" * 11, timeout=10)
    assert big.status == 413, big.describe()
