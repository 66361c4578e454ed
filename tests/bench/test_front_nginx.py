"""The nginx front adapter of ``serve bench``: its config (no nginx needed) and a start that must fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.bench import front_nginx, fronts
from launcher.bench.server import StartError
from launcher.options import ServeOptions, resolve
from tests.bench.test_bench_front import _sessions, need_nginx  # noqa: F401 - need_nginx is a fixture


def fastcgi_opts(sock: str) -> ServeOptions:
    return resolve("examples.hello:app", cli={"backend": "fastcgi", "bind": f"unix:{sock}"})


def test_fastcgi_has_the_nginx_adapter() -> None:
    adapter = fronts.adapter_for("fastcgi")
    assert isinstance(adapter, front_nginx.NginxFront) and adapter.name == "nginx"
    assert adapter.bind("/tmp/run") == "unix:/tmp/run/fastcgi.sock"
    assert not adapter.runs_app
    assert fronts.adapter_for("uwsgi") is None  # the uwsgi backend is benchmarked over HTTP


def test_the_site_is_what_serve_config_nginx_renders(tmp_path: Path) -> None:
    from launcher.deploy import render
    from launcher.deploy.context import build

    sock = str(tmp_path / "fastcgi.sock")
    opts = fastcgi_opts(sock)
    site = front_nginx.render_site(opts, [{"kind": "unix", "path": sock}], 41234)
    expected = build("nginx", opts, {"listen": "127.0.0.1:41234", "name": "bench_app"})
    assert site == render(expected)[0].text
    assert "listen 127.0.0.1:41234;" in site
    assert f"server unix:{sock} " in site and "fastcgi_pass bench_app;" in site


@pytest.mark.parametrize("as_root", [True, False])
def test_top_level_is_private_with_one_worker_and_no_access_log(tmp_path: Path, as_root: bool) -> None:
    conf = front_nginx.top_level(str(tmp_path), str(tmp_path / "site.conf"), as_root=as_root, connections=3000)
    lines = [line.strip() for line in conf.splitlines()]
    assert "worker_processes 1;" in lines and "access_log off;" in lines
    assert f"error_log {tmp_path}/error.log warn;" in lines and f"pid {tmp_path}/nginx.pid;" in lines
    assert f"include {tmp_path}/site.conf;" in lines
    assert "events { worker_connections 6064; }" in lines
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {tmp_path}/temp-{kind};" in lines
    users = [line for line in lines if line.startswith("user ")]
    if as_root:  # the workers keep the user that owns the 0660 socket, never www-data or nobody
        import grp
        import pwd

        assert users == [f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"]
    else:
        assert users == []


def test_nginx_that_cannot_reach_the_backend_is_a_start_error_and_is_stopped(
        need_nginx: None, tmp_path: Path) -> None:  # noqa: F811
    sock = str(tmp_path / "fastcgi.sock")  # nothing listens there: nginx answers 502
    with pytest.raises(StartError, match="cannot reach the backend") as caught:
        front_nginx.NginxFront().start([{"kind": "unix", "path": sock}], str(tmp_path), (),
                                       opts=fastcgi_opts(sock), connections=4, timeout=2)
    assert "connect() to unix:" in str(caught.value)  # the tail of nginx's error log says why
    (folder,) = tmp_path.glob("nginx-*")
    leftovers = [cmd for cmds in _sessions().values() for cmd in cmds if str(folder) in cmd]
    assert not leftovers, leftovers
