"""One backend + one front server, started the way a user would: `serve ...`, then `serve config KIND`
with the same options, then the front server on the generated config."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.contract.checks import Target
from tests.front import servers
from tests.support import CONTRACT_APP, ServeProcess, serve_env, start_serve

PREFIXES = {"root": "", "prefix": "/yourapplication"}


@dataclasses.dataclass
class Combo:
    target: Target
    front: servers.FrontServer
    generated: servers.Generated
    backend: ServeProcess | None
    work: Path
    args: list[str]


def mount_args(prefix: str) -> list[str]:
    return ["--root-path", prefix] if prefix else []


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    work = servers.shared_dir(prefix)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def start_backend(args: list[str], work: Path, state: Path, *, confirm: str = "auto") -> ServeProcess:
    """``serve *args`` (plus --ready-file) with the contract app's state directory."""
    return start_serve([*args, CONTRACT_APP], env=serve_env(CONTRACT_STATE_DIR=str(state)), tmp_path=work,
                       confirm=confirm)


def real_bind(server: ServeProcess, index: int = 0) -> str:
    """The ``--bind`` form of the address a started server really listens on (port 0 resolved)."""
    addr = server.ready["addresses"][index]
    if addr["kind"] == "unix":
        return f"unix:{addr['path']}"
    host = f"[{addr['host']}]" if ":" in addr["host"] else addr["host"]
    return f"{host}:{addr['port']}"


def with_real_binds(args: list[str], server: ServeProcess) -> list[str]:
    """``args`` with each ``--bind`` replaced by the address the server really got (port 0 -> its port),
    so `serve config` describes the running server exactly."""
    out: list[str] = []
    index = 0
    skip = False
    for arg in args:
        if skip:
            out.append(real_bind(server, index))
            index += 1
            skip = False
            continue
        out.append(arg)
        if arg in ("--bind", "-b"):
            skip = True
    return out


def nginx_combo(args: list[str], prefix: str, expect: frozenset[str], label: str,
                *, backend_confirm: str = "auto") -> Callable[[], Iterator[Combo]]:
    """A generator function for a module fixture: backend, `serve config nginx`, nginx."""

    def run() -> Iterator[Combo]:
        servers.require_binary("nginx")
        servers.require_web_user()
        with workdir("wl-ngx-") as work:
            state = servers.state_dir(work)
            full = [*[a.replace("{work}", str(work)) for a in args], *mount_args(prefix)]
            backend = start_backend(full, work, state, confirm=backend_confirm)
            try:
                listener = servers.loopback_listener()
                port = listener.getsockname()[1]
                generated = servers.serve_config("nginx", *with_real_binds(full, backend), CONTRACT_APP,
                                                 "--listen", f"127.0.0.1:{port}")
                front = servers.start_nginx(generated.text, work, listener, ready_path=prefix + "/")
                try:
                    yield Combo(Target(address=front.address, prefix=prefix, expect=expect, label=label),
                                front, generated, backend, work, full)
                finally:
                    front.stop()
            finally:
                backend.stop()

    return run


def lighttpd_combo(args: list[str], prefix: str, expect: frozenset[str], label: str, *,
                   backend: bool = True, extra: str = "", prepare: Callable[[Path, list[str]], None] | None = None,
                   backend_confirm: str = "auto") -> Callable[[], Iterator[Combo]]:
    def run() -> Iterator[Combo]:
        servers.require_binary("lighttpd")
        servers.require_web_user()
        with workdir("wl-lt-") as work:
            state = servers.state_dir(work)
            full = [*[a.replace("{work}", str(work)) for a in args], *mount_args(prefix)]
            if prepare is not None:
                prepare(work, full)
            process = start_backend(full, work, state, confirm=backend_confirm) if backend else None
            try:
                listener = servers.loopback_listener()
                port = listener.getsockname()[1]
                config_args = with_real_binds(full, process) if process else full
                generated = servers.serve_config("lighttpd", *config_args, CONTRACT_APP,
                                                 "--listen", f"127.0.0.1:{port}",
                                                 *(["--script", str(work / "app.cgi")] if not backend else []))
                front = servers.start_lighttpd(generated.text, work, listener, ready_path=prefix + "/",
                                               extra=extra.replace("{state}", str(state)))
                try:
                    yield Combo(Target(address=front.address, prefix=prefix, expect=expect, label=label),
                                front, generated, process, work, full)
                finally:
                    front.stop()
            finally:
                if process is not None:
                    process.stop()

    return run


def checks_with_limits(limits: dict[str, str], omit: dict[str, str] | None = None) -> list[Any]:
    """CHECKS as parameters, the ones this path cannot pass (check name -> why) marked xfail;
    ``omit`` (check name -> why) leaves out checks that do not apply, which a test of its own then
    covers (so nothing is skipped in CI)."""
    from tests.contract.checks import CHECKS, check_id

    omit = omit or {}
    unknown = (set(limits) | set(omit)) - {check_id(c) for c in CHECKS}
    assert not unknown, f"no such checks: {unknown}"
    out = []
    for check in CHECKS:
        if check_id(check) in omit:
            continue
        reason = limits.get(check_id(check))
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        out.append(pytest.param(check, marks=marks, id=check_id(check)))
    return out


def environ_of(target: Target, path: str = "/environ", headers: Any = None) -> dict[str, Any]:
    from tests.support import http_request

    resp = http_request(target.address, "GET", target.prefix + path, headers=headers)
    assert resp.status == 200, resp.describe()
    return dict(resp.json()["cgi"])


def check_cgi_environ(target: Target) -> None:
    """The environ of a CGI request: PEP 3333's keys as str, run_once and multiprocess true."""
    from tests.support import http_request

    resp = http_request(target.address, "GET", target.prefix + "/environ?x=1", headers=[("X-Contract-Test", "yes-42")])
    assert resp.status == 200, resp.describe()
    data = resp.json()
    cgi = data["cgi"]
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL"):
        assert isinstance(cgi.get(key), str), (key, cgi)
    assert cgi["SCRIPT_NAME"] == target.prefix and cgi["PATH_INFO"] == "/environ", cgi
    assert cgi["QUERY_STRING"] == "x=1" and cgi["HTTP_X_CONTRACT_TEST"] == "yes-42", cgi
    assert cgi["SERVER_PORT"] == str(target.address[1]), cgi
    assert data["wsgi.run_once"] is True and data["wsgi.multiprocess"] is True, data
    assert data["wsgi.multithread"] is False and data["wsgi.url_scheme"] == "http", data
