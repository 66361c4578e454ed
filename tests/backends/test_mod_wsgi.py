"""The mod_wsgi backend's own guarantees, on real ``python -m launcher --backend mod_wsgi`` servers.

The shared contract suite (tests/contract) covers PEP 3333 and the common lifecycle; this file
covers what is specific to Apache run through mod_wsgi-express: the app mounted under --root-path
by the launcher's middleware in the daemon processes, the unprivileged user Apache's children run
as when serve is started as root (and the one-line error when that user cannot read what it must),
the default 2 x 25 sizing, the SIGWINCH drain, Apache dying with a killed launcher, and the
addresses and options it refuses.  Apache takes about a second to start: one module-scoped server
serves the read-only checks.
"""

from __future__ import annotations

import concurrent.futures
import os
import pwd
import secrets
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    Connection,
    ServeProcess,
    connect,
    contract_args,
    descendants,
    http_request,
    parallel,
    require_backend,
    run_serve,
    serve_env,
    start_serve,
    still_alive,
)

pytestmark = [pytest.mark.server, pytest.mark.xdist_group("mod_wsgi")]

Serve = Callable[..., ServeProcess]
PREFIX = "/yourapplication"
AS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_backend("mod_wsgi")






@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One Apache with the defaults and the contract app under --root-path."""
    require_backend("mod_wsgi")
    work = tmp_path_factory.mktemp("mod_wsgi")
    state = work / "state"
    state.mkdir()
    state.chmod(0o1777)  # the app runs as www-data when the tests run as root
    server = start_serve(contract_args("mod_wsgi", "127.0.0.1:0", "--root-path", PREFIX),
                         env=serve_env(CONTRACT_STATE_DIR=str(state)), tmp_path=work, ready_timeout=60)
    try:
        yield server
    finally:
        server.stop()


# -- one server, several checks ---------------------------------------------------------------


def test_app_is_mounted_under_the_root_path(mounted: ServeProcess) -> None:
    data = http_request(mounted.address, "GET", f"{PREFIX}/environ/x").json()
    assert data["cgi"]["SCRIPT_NAME"] == PREFIX, data["cgi"]
    assert data["cgi"]["PATH_INFO"] == "/environ/x", data["cgi"]
    # The launcher's RootPath, not Apache's --mount-point: a path a front already stripped works too.
    stripped = http_request(mounted.address, "GET", "/environ").json()
    assert stripped["cgi"]["SCRIPT_NAME"] == PREFIX and stripped["cgi"]["PATH_INFO"] == "/environ"


@pytest.mark.skipif(not AS_ROOT, reason="Apache only switches user when started as root")
def test_runs_the_app_as_an_unprivileged_user_and_says_so(mounted: ServeProcess) -> None:
    pid = http_request(mounted.address, "GET", f"{PREFIX}/slow?t=0").json()["pid"]
    uid = os.stat(f"/proc/{pid}").st_uid
    expected = "www-data" if _user_exists("www-data") else "nobody"
    assert uid == pwd.getpwnam(expected).pw_uid, f"the app runs as uid {uid}"
    assert f"as user {expected}" in mounted.stderr(), mounted.stderr()


def test_default_sizing_is_two_processes_of_25_threads(mounted: ServeProcess) -> None:
    assert "2 processes x 25 threads" in mounted.stderr(), mounted.stderr()
    start = time.monotonic()
    results = parallel(lambda: http_request(mounted.address, "GET", f"{PREFIX}/slow?t=0.5", timeout=10), [()] * 8)
    took = time.monotonic() - start
    assert all(not isinstance(r, BaseException) and r.status == 200 for r in results), results
    assert took < 2.5, f"8 concurrent 0.5 s requests took {took:.2f}s"
    assert http_request(mounted.address, "GET", f"{PREFIX}/environ").json()["wsgi.multiprocess"] is True


def test_forwarded_headers_change_nothing_without_proxy_headers(mounted: ServeProcess) -> None:
    headers = [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Host", "evil")]
    data = http_request(mounted.address, "GET", f"{PREFIX}/environ", headers=headers).json()
    assert data["wsgi.url_scheme"] == "http"
    assert data["cgi"]["REMOTE_ADDR"] == "127.0.0.1"
    assert data["cgi"]["HTTP_HOST"].startswith("127.0.0.1:")


# -- the launcher's Apache module: what Apache's own parser takes -------------------------------
#
# Each refusal is checked against a request hidden behind it: ``GET /close?token=T``, which the
# contract app answers by leaving a marker that ``/closed?token=T`` reports.  Without the module
# Apache serves these (unfolding, framing by the chunks, reading chunk size '5 ' as 5).

HIDDEN = b"GET /close?token=%s HTTP/1.1\r\nHost: localhost\r\n\r\n"


def _exchange(address: Any, payload: bytes, wait: float = 5.0) -> tuple[list[int], bool, bytes]:
    """Send ``payload`` on a fresh connection; (statuses, closed by the server, bytes received)."""
    from tests.reliability.corpus import parse_statuses

    sock = connect(address, timeout=wait)
    data = b""
    closed = False
    try:
        sock.sendall(payload)
        while True:
            try:
                got = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:  # reset
                closed = True
                break
            if not got:
                closed = True
                break
            data += got
    finally:
        sock.close()
    return parse_statuses(data), closed, data


def _assert_refused(address: Any, build: Callable[[bytes], bytes]) -> None:
    token = secrets.token_hex(8)
    statuses, closed, data = _exchange(address, build(token.encode()) + HIDDEN % token.encode())
    assert statuses == [400], data[:600]
    assert closed, "the connection was left open after the 400"
    # one response: not Apache's own chunk-error 400 with mod_wsgi's 500 page appended to its body
    assert data.startswith(b"HTTP/1.1 400 ") and data.count(b"HTTP/1.") == 1 and data.count(b"<html>") == 1, data
    time.sleep(0.3)  # the marker is written when the hidden request's response is closed
    assert http_request(address, "GET", f"/closed?token={token}").body == b"no", "the hidden request reached the app"


def _head(extra: bytes, method: bytes = b"GET", path: bytes = b"/") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (method, path, extra)


def test_obsolete_line_folding_is_refused_and_nothing_behind_it_is_read(mounted: ServeProcess) -> None:
    _assert_refused(mounted.address, lambda tok: _head(b"X-Folded: a\r\n b\r\n"))
    _assert_refused(mounted.address, lambda tok: _head(b"X-Folded: a\r\n\tb\r\nX-After: c\r\n"))


@pytest.mark.parametrize("fields", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    b"content-length: 5\r\nTRANSFER-ENCODING: chunked\r\n",
    b"Transfer-Encoding:  chunked\r\nContent-Length: 5\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n",
], ids=["cl_te", "te_cl", "case", "te_two_spaces", "te_folded"])
def test_content_length_with_transfer_encoding_is_refused(mounted: ServeProcess, fields: bytes) -> None:
    _assert_refused(mounted.address, lambda tok: _head(fields, b"POST") + b"0\r\n\r\n")


@pytest.mark.parametrize("chunks", [
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5\t\r\nhello\r\n0\r\n\r\n",
    b"5;\r\nhello\r\n0\r\n\r\n",
    b"5;a b\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0 \r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX\r\n0\r\n\r\n",
    b"5" + b" " * 11 + b";a\r\nhello\r\n0\r\n\r\n",
    b"5;a=\"b\x01\"\r\nhello\r\n0\r\n\r\n",
], ids=["trailing_space", "trailing_tab", "empty_extension", "space_in_extension", "last_chunk_space", "bare_lf",
        "data_too_long", "eleven_spaces", "control_in_extension"])
def test_a_malformed_chunk_line_is_refused(mounted: ServeProcess, chunks: bytes) -> None:
    _assert_refused(mounted.address, lambda tok: _head(b"Transfer-Encoding: chunked\r\n", b"POST") + chunks)


def test_a_client_still_sending_the_body_reads_the_400(mounted: ServeProcess) -> None:
    """Apache closes a refused chunked request the lingering way (reading what still comes), so a
    client that keeps sending its body is not reset and reads the 400."""
    sock = connect(mounted.address, timeout=10)
    try:
        sock.sendall(_head(b"Transfer-Encoding: chunked\r\n", b"POST") + b"5 \r\nhello\r\n")
        for _ in range(100):  # 1.6 MB more, long after the refusal
            sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
        data = b""
        while got := sock.recv(65536):
            data += got
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 400 ") and data.count(b"HTTP/1.") == 1, data[:2000]
    assert data.rstrip().endswith(b"</html>") and data.count(b"<html>") == 1, data[-1000:]


@pytest.mark.parametrize(("chunks", "body"), [
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"5;name=value\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b'5 ; a = "q\\"x" ;b;c=d\r\nhello\r\n0;last\r\n\r\n', b"hello"),
    (b"a\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n", b"0123456789"),
    (b"00005\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (30000, b"a" * 30000, 45000, b"b" * 45000), b"a" * 30000 + b"b" * 45000),
], ids=["two_chunks", "extension", "extensions_bws_quoted", "trailers", "leading_zeros", "large"])
def test_chunked_bodies_are_still_served(mounted: ServeProcess, chunks: bytes, body: bytes) -> None:
    statuses, _, data = _exchange(mounted.address, _head(b"Transfer-Encoding: chunked\r\n", b"POST", b"/echo")
                                  + chunks)
    assert statuses == [200], data[:600]
    assert data.endswith(b"\r\n\r\n" + body) and b"X-Echo-Length: %d\r\n" % len(body) in data, data[:600]


def test_content_length_bodies_keep_alive_and_pipelining_still_work(mounted: ServeProcess) -> None:
    with Connection(mounted.address) as conn:
        first = conn.request("POST", "/echo", body=b"hello")
        assert (first.status, first.body, first.will_close) == (200, b"hello", False), first.describe()
        second = conn.request("GET", "/")  # the same connection, kept alive
        assert (second.status, second.body) == (200, b"hello"), second.describe()
        conn.send_raw(b"".join(conn.build_request("POST" if i == 1 else "GET", "/echo" if i == 1 else "/",
                                                  body=b"x" * 3 if i == 1 else None) for i in range(3)))
        pipelined = [conn.read_response() for _ in range(3)]
        assert [(r.status, r.body) for r in pipelined] == [(200, b"hello"), (200, b"xxx"), (200, b"hello")], pipelined
        assert conn.request("GET", "/").status == 200
    # a folded line behind them is still refused on a connection that served requests before it
    statuses, closed, data = _exchange(mounted.address, _head(b"") + _head(b"X-Folded: a\r\n b\r\n") + _head(b""))
    assert statuses == [200, 400] and closed, data[:2000]


def test_the_module_is_built_once_into_the_per_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No module in the virtualenv: serve builds it into the cache, once, atomically (two servers
    may start at the same moment), and takes the cached file next time."""
    import backends.apache as apache

    if apache.find_apxs() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("apxs (apache2-dev) is not installed: make test installs it")
        pytest.skip("no apxs")
    monkeypatch.setattr(apache, "installed_path", lambda: str(tmp_path / "venv" / apache.file_name()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / "wsgi-launcher" / "apache" / apache.file_name()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: apache.module_path(), range(2)))
    assert paths == [str(expected)] * 2
    assert expected.read_bytes()[:4] == b"\x7fELF"
    assert os.listdir(expected.parent) == [expected.name], "a build directory was left behind"
    built = expected.stat().st_mtime_ns
    assert apache.module_path() == str(expected) and expected.stat().st_mtime_ns == built  # not built again


def test_no_module_and_no_apxs_refuses_to_start_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.apache as apache
    from backends.mod_wsgi import hygiene_module
    from launcher.errors import ServerError

    monkeypatch.setattr(apache, "installed_path", lambda: str(tmp_path / "venv" / apache.file_name()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(apache, "find_apxs", lambda: None)
    with pytest.raises(ServerError, match=r"cannot build the launcher's Apache module .*apxs \(apache2-dev\) is not"
                                          r" installed") as info:
        hygiene_module()
    assert "\n" not in str(info.value)


def test_the_stable_link_follows_each_build(tmp_path: Path) -> None:
    """A system Apache loads mod_launcher_hygiene.so, a link that each build moves to itself, so
    removing an older build after an upgrade never leaves that Apache pointing at nothing."""
    import backends.apache as apache

    old, new = tmp_path / "mod_launcher_hygiene-aaaa.so", tmp_path / "mod_launcher_hygiene-bbbb.so"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    link = apache.stable_link(str(old))
    assert link == str(tmp_path / "mod_launcher_hygiene.so") and Path(link).read_bytes() == b"old"
    assert os.readlink(link) == old.name  # relative: the directory may move with the virtualenv
    assert apache.stable_link(str(new)) == link and Path(link).read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == sorted([old.name, new.name, "mod_launcher_hygiene.so"])


def test_a_failed_build_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.apache as apache

    fake = tmp_path / "apxs"
    fake.write_text("#!/bin/sh\necho 'compiling...' >&2\necho 'mod_launcher_hygiene.c:1: error: no compiler' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(apache, "find_apxs", lambda: str(fake))
    target = tmp_path / "cache" / "m.so"
    with pytest.raises(apache.BuildError, match=r"apxs -c failed: mod_launcher_hygiene.c:1: error: no compiler$"):
        apache.build(str(target))
    assert not target.exists() and os.listdir(target.parent) == []


# -- stopping ---------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests(serve: Serve) -> None:
    server = serve(contract_args("mod_wsgi", "127.0.0.1:0", "--workers", "1", "--threads", "4",
                                 "--graceful-timeout", "10"), ready_timeout=60)
    apache = descendants(server.pid)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        futures = [pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=20) for _ in range(4)]
        time.sleep(0.8)
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(OSError):  # graceful-stop closes the listener at once
            http_request(server.address, "GET", "/", timeout=3)
        rc = server.wait(15)
        statuses = [f.result(timeout=5).status for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert statuses == [200] * 4
    assert rc == 0, server.output()
    assert still_alive(apache, 5) == [], "Apache processes outlived the drain"


def test_apache_stops_with_a_killed_launcher(serve: Serve) -> None:
    server = serve(contract_args("mod_wsgi"), ready_timeout=60)
    apache = descendants(server.pid)
    assert apache, "no Apache process under the launcher"
    os.kill(server.pid, signal.SIGKILL)
    server.wait(5)
    assert still_alive(apache, 10) == [], "Apache processes outlived the launcher"


def test_port_taken_before_apache_binds_is_retried_on_port_0(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from backends.mod_wsgi import ModWSGIBackend
    from launcher import sockets
    from launcher.options import resolve

    opts = resolve("tests.contract.app:app", cli={"backend": "mod_wsgi", "bind": "127.0.0.1:0", "workers": 1,
                                                  "threads": 2, "graceful_timeout": 5}, env={}, use_file=False)
    backend = ModWSGIBackend()
    backend.check(opts)
    listeners = sockets.bind_all(opts.bind, opts.backlog)
    checked_port = listeners[0].address.port
    thieves: list[socket.socket] = []
    real_spawn = ModWSGIBackend.spawn

    def spawn(self: ModWSGIBackend, argv: list[str], **kw: object) -> object:
        if not thieves:  # another program takes the port between the launcher's check and Apache
            thief = socket.socket()
            thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            thief.bind(("127.0.0.1", checked_port))
            thief.listen(1)
            thieves.append(thief)
        return real_spawn(self, argv, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ModWSGIBackend, "spawn", spawn)
    announced: list[int] = []

    def ready(listeners: list[sockets.Listener]) -> None:
        announced.extend(listener.address.port for listener in listeners)
        resp = http_request(("127.0.0.1", announced[0]), "GET", "/")
        assert resp.body == b"hello"
        backend.stop(5)

    try:
        backend.serve(lambda *args: [], opts, listeners, ready)
    finally:
        sockets.close_all(listeners)
        for thief in thieves:
            thief.close()
    assert thieves and announced and announced[0] not in (0, checked_port), announced
    assert backend.cut_off == 0


def test_port_taken_before_apache_binds_a_fixed_port_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from backends.mod_wsgi import ModWSGIBackend
    from launcher import sockets
    from launcher.errors import BindError
    from launcher.options import resolve

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    opts = resolve("tests.contract.app:app", cli={"backend": "mod_wsgi", "bind": f"127.0.0.1:{port}"}, env={},
                   use_file=False)
    backend = ModWSGIBackend()
    backend.check(opts)
    listeners = sockets.bind_all(opts.bind, opts.backlog)
    thief = socket.socket()
    real_spawn = ModWSGIBackend.spawn

    def spawn(self: ModWSGIBackend, argv: list[str], **kw: object) -> object:
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        thief.bind(("127.0.0.1", port))
        thief.listen(1)
        return real_spawn(self, argv, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ModWSGIBackend, "spawn", spawn)
    try:
        with pytest.raises(BindError, match=rf"127\.0\.0\.1:{port}: address already in use") as info:
            backend.serve(lambda *args: [], opts, listeners, lambda listeners: None)
    finally:
        sockets.close_all(listeners)
        thief.close()
    assert "\n" not in str(info.value)


# -- refusing early, in one line ----------------------------------------------------------------


@pytest.mark.skipif(not AS_ROOT, reason="the readability check is for the user Apache switches to as root")
def test_unreadable_path_for_the_app_user_is_one_line(tmp_path: Path, open_dir: Path) -> None:
    private = open_dir / "private"
    private.mkdir()
    private.chmod(0o700)  # root's own, like a pyenv Python under /root
    fin = run_serve(contract_args("mod_wsgi", "127.0.0.1:0", "--pythonpath", str(private)),
                    timeout=30, tmp_path=tmp_path / "run")
    assert fin.returncode == 1 and not fin.became_ready, fin.describe()
    lines = fin.stderr_lines()
    errors = [line for line in lines if line.startswith("serve: error:")]
    assert len(errors) == 1, fin.describe()
    assert str(private) in errors[0] and "mode 0700" in errors[0] and "cannot read" in errors[0], errors[0]
    assert "Traceback" not in fin.stderr


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everybody can enter (pytest's own base directory is 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="wl-mw-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unreadable_path_names_the_first_blocked_directory(open_dir: Path) -> None:
    from backends.mod_wsgi import check_readable, unreadable_path
    from launcher.errors import ServerError

    outer = open_dir / "home"
    inner = outer / "venv" / "bin"
    inner.mkdir(parents=True)
    python = inner / "python3"
    python.write_text("")
    python.chmod(0o755)
    outer.chmod(0o700)
    owner = os.stat(outer).st_uid
    other = 65534 if owner != 65534 else 65533
    assert unreadable_path(str(python), other, {other}, file_mode=0o5) == str(outer)
    assert unreadable_path(str(python), owner, set(), file_mode=0o5) is None
    with pytest.raises(ServerError, match=r"cannot read the interpreter .*home is mode 0700") as info:
        check_readable([("the interpreter", str(python))], "nobody", other, {other})
    assert "\n" not in str(info.value)
    outer.chmod(0o755)
    assert unreadable_path(str(python), other, {other}, file_mode=0o5) is None
    python.chmod(0o700)
    assert unreadable_path(str(python), other, {other}, file_mode=0o5) == str(python)
    assert stat.S_IMODE(os.stat(python).st_mode) == 0o700


@pytest.mark.parametrize(("bind", "message"), [
    ("unix:/tmp/x.sock", "cannot take a unix socket"),
    ("[::1]:0", "IPv6"),
])
def test_addresses_apache_cannot_use_are_refused(tmp_path: Path, bind: str, message: str) -> None:
    fin = run_serve(contract_args("mod_wsgi", bind), timeout=15, tmp_path=tmp_path)
    assert fin.returncode == 2, fin.describe()
    assert len(fin.stderr_lines()) == 1 and message in fin.stderr, fin.describe()


def test_options(tmp_path: Path) -> None:
    from backends.mod_wsgi import ModWSGIBackend
    from launcher.errors import OptionError
    from launcher.options import resolve

    backend = ModWSGIBackend()
    with pytest.raises(OptionError, match="did you mean 'compress-responses'"):
        backend.parse_backend_options({"compress_response": "true"})
    with pytest.raises(OptionError, match="use --root-path"):
        backend.parse_backend_options({"mount_point": "/x"})
    opts = resolve("tests.contract.app:app", cli={"backend": "mod_wsgi", "reload": True}, env={}, use_file=False)
    with pytest.raises(OptionError, match="cannot --reload"):
        backend.check(opts)

    opts = resolve("tests.contract.app:app", cli={
        "backend": "mod_wsgi", "bind": "127.0.0.1:0", "workers": 3, "keepalive": 0, "timeout": 9.5,
        "max_requests": 50, "graceful_timeout": 7, "connections": 99, "option": {"server_mpm": "worker"},
    }, env={}, use_file=False)
    backend = ModWSGIBackend()
    backend.check(opts)
    assert backend.sizes(opts) == (3, 25)  # --threads not set: still at least 25
    argv = " ".join(backend.setup_command(opts, "/x/app.wsgi", "/x/httpd", "127.0.0.1", 8080, ("www-data", "www-data")))
    for expected in ("setup-server /x/app.wsgi", "--host 127.0.0.1 --port 8080", "--processes 3", "--threads 25",
                     "--keep-alive-timeout 0", "--request-timeout 10", "--maximum-requests 50",
                     "--graceful-timeout 7", "--shutdown-timeout 7", "--max-clients 99", "--user www-data",
                     "--chunked-request", "--log-to-terminal", "--server-mpm=worker"):
        assert expected in argv, f"{expected!r} missing from {argv}"
    assert "--mount-point" not in argv and "--trust-proxy" not in argv and "--access-log" not in argv


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_strict_config(tmp_path: Path) -> None:
    """The Apache directives included before the virtual hosts: limits, strictness, timeouts, sizing."""
    import re

    from backends.mod_wsgi import ModWSGIBackend, _posing_names, strict_config
    from launcher.options import resolve

    opts = resolve("tests.contract.app:app", cli={
        "backend": "mod_wsgi", "limit_request_line": 2000, "limit_request_fields": 30,
        "limit_request_field_size": 1000, "header_timeout": 2.5,
    }, env={}, use_file=False)
    conf = strict_config(opts, "/x/mod_launcher_hygiene-0123.so")
    for line in ("LoadModule launcher_hygiene_module '/x/mod_launcher_hygiene-0123.so'",
                 "LimitRequestLine 2000", "LimitRequestFields 30", "LimitRequestFieldSize 1000",
                 "HttpProtocolOptions Strict Require1.0", "AcceptFilter http none",
                 "RequestReadTimeout handshake=3 header=3 body=3,MinRate=500", "StartServers 4",
                 "MaxRequestWorkers 256"):
        assert line in conf, f"{line!r} missing from {conf}"
    names = re.compile(_posing_names(), re.IGNORECASE)
    for posing in ("Content_Length", "X_Forwarded_For", "x-forwarded_for", "X_Real-IP", "Transfer_Encoding"):
        assert names.match(posing), posing
    for fine in ("Content-Length", "X-Forwarded-For", "X-Custom_Thing", "X_Content_Length_2"):
        assert not names.match(fine), fine

    sized = resolve("tests.contract.app:app", cli={"backend": "mod_wsgi", "connections": 100}, env={}, use_file=False)
    conf = strict_config(sized, "/x/m.so")
    assert "ThreadsPerChild 64" in conf and "MaxRequestWorkers 128" in conf

    backend = ModWSGIBackend()
    backend._workdir = str(tmp_path)
    root = tmp_path / "httpd"
    root.mkdir()
    (root / "httpd.conf").write_text("Timeout 60\nKeepAlive On\n<VirtualHost *:80>\n</VirtualHost>\n")
    backend._include_limits(str(root))
    text = (root / "httpd.conf").read_text()
    assert text.index("limits.conf") < text.index("<VirtualHost"), text


@pytest.mark.skipif(not AS_ROOT, reason="needs root")
def test_user_and_group_are_honoured() -> None:
    import grp

    from backends.mod_wsgi import _run_user

    nobody = pwd.getpwnam("nobody")
    user = _run_user("nobody")
    assert user is not None and user[0] == "nobody" and user[2] == nobody.pw_uid
    assert user[1] == grp.getgrgid(nobody.pw_gid).gr_name
    assert _run_user()[0] in ("www-data", "nobody")  # type: ignore[index]
    from launcher.errors import ServerError

    with pytest.raises(ServerError, match="no such user"):
        _run_user("no-such-user-here")
