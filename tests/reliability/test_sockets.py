"""Sockets and privileges: a busy port, unix socket modes (every backend that takes the launcher's
sockets and can serve a unix socket, FastCGI included; mod_wsgi's refusal of unix binds is in
tests/contract/test_lifecycle.py), --user, and root refused on an address others can reach."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from tests import support
from tests.reliability.conftest import expect, record, run_app, serve_app
from tests.support import busy_socket, http_request

pytestmark = pytest.mark.server

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (privilege drop / root refusal)")


def _socket_backends() -> list[str]:
    from launcher.registry import get_class

    names = []
    for name in support.backend_names(None):
        try:
            cls = get_class(name)
            if cls.takes_sockets and cls.unix_sockets:
                names.append(name)
        except Exception:  # not loadable yet: require_backend reports it
            names.append(name)
    return names


@pytest.fixture(scope="module", params=_socket_backends())
def socket_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    support.require_backend(name)
    return name


def test_unix_sockets_are_0660_unless_told_and_never_world_writable(
        request: pytest.FixtureRequest, socket_backend: str, scratch: Path, tmp_path: Path) -> None:
    from launcher.registry import get_class

    backend = socket_backend
    expect(request, backend, "unix_mode")
    default, explicit = scratch / "default.sock", scratch / "explicit.sock"
    http = get_class(backend).protocol == "http"
    served = serve_app(backend, "--bind", f"unix:{explicit}:0600", bind=f"unix:{default}", tmp_path=tmp_path,
                       confirm="http" if http else "connect")
    try:
        if http:
            for path in (default, explicit):
                assert http_request(f"unix:{path}", "GET", "/", timeout=10).status == 200
        modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in (default, explicit)}
        record("unix socket modes", backend, "default", oct(modes["default.sock"]))
        record("unix socket modes", backend, ":0600", oct(modes["explicit.sock"]))
        assert modes == {"default.sock": 0o660, "explicit.sock": 0o600}, {k: oct(v) for k, v in modes.items()}
    finally:
        served.stop()
    assert not default.exists() and not explicit.exists(), "socket files left behind"


def test_busy_port_is_one_line_and_a_non_zero_exit(request: pytest.FixtureRequest, backend: str,
                                                   tmp_path: Path) -> None:
    expect(request, backend, "busy_port")
    with busy_socket() as taken:
        port = taken.getsockname()[1]
        done = run_app(backend, bind=f"127.0.0.1:{port}", tmp_path=tmp_path, timeout=15)
    record("sockets and privileges", backend, "busy port: exit code", done.returncode)
    assert not done.became_ready and done.returncode not in (0, None), done.describe()
    lines = done.stderr_lines()
    assert len(lines) == 1 and str(port) in lines[0] and "Traceback" not in done.stderr, done.describe()
    assert done.elapsed < 5, done.describe()


@needs_root
def test_user_drops_privileges_after_binding(request: pytest.FixtureRequest, backend: str, scratch: Path) -> None:
    expect(request, backend, "user")
    scratch.chmod(0o777)  # the ready file is written once serving, as nobody
    nobody = pwd.getpwnam("nobody").pw_uid
    served = serve_app(backend, "--user", "nobody", tmp_path=scratch)
    try:
        who = http_request(served.address, "GET", "/whoami", timeout=10)
        assert who.status == 200, who.describe()
        record("sockets and privileges", backend, "--user nobody: app uid", who.json()["uid"])
        assert who.json()["uid"] == nobody, who.json()
    finally:
        served.stop()


@needs_root
def test_root_on_a_public_address_is_refused(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    expect(request, backend, "root_refused")
    done = run_app(backend, bind="0.0.0.0:0", tmp_path=tmp_path, timeout=15)
    record("sockets and privileges", backend, "root on 0.0.0.0: exit code", done.returncode)
    assert not done.became_ready and done.returncode == 2, done.describe()
    lines = done.stderr_lines()
    assert len(lines) == 1 and "--user" in lines[0] and "Traceback" not in done.stderr, done.describe()
