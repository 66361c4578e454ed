"""The FastCGI backend (flup6) on real ``python -m launcher --backend fastcgi`` servers.

Spoken to with the small FastCGI client below (the records a web server sends: BEGIN_REQUEST,
PARAMS, STDIN; the answer read up to END_REQUEST), over a unix socket and over TCP.  Covered: the
response (status, repeated headers, body), a POST body, the CGI params and wsgi.* keys, --root-path
and ``-o script_name_fix``, a 500 without internals and a dropped connection for an error after
the body started, keep-alive connections (FCGI_KEEP_CONN), the socket mode (0660 by default, never
world-writable), a live socket not taken over (the second server exits non-zero, the first still
answers) and a stale one replaced, the drain on SIGTERM, --workers 2, and options it refuses.
Front servers (nginx, Apache, lighttpd) in front of it are tests/front's job.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    REPO,
    ServeProcess,
    contract_args,
    make_stale_unix_socket,
    require_backend,
    run_serve,
    serve_env,
    short_tmpdir,
)

pytestmark = pytest.mark.server

Serve = Callable[..., ServeProcess]

# --------------------------------------------------------------------------------------------
# a small FastCGI client
# --------------------------------------------------------------------------------------------

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 2, 3, 4, 5, 6, 7
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, KEEP_CONN = 1, 1
HEADER = struct.Struct("!BBHHBx")


def _record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    padding = -len(content) & 7
    return HEADER.pack(1, rtype, request_id, len(content), padding) + content + b"\0" * padding


def _pair(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
    out = b""
    for length in (len(raw_name), len(raw_value)):
        out += bytes([length]) if length < 128 else (length | 0x80000000).to_bytes(4, "big")
    return out + raw_name + raw_value


class FCGIResponse:
    def __init__(self, stdout: bytes, stderr: bytes, ended: bool, app_status: int, protocol_status: int,
                 broken: bool = False) -> None:
        self.stdout = stdout
        #: True when the stream ended with a protocol error or a reset (a web server sees a failure)
        self.broken = broken
        self.stderr = stderr
        #: True when FCGI_END_REQUEST arrived (False: the connection dropped before it)
        self.ended = ended
        self.app_status = app_status
        self.protocol_status = protocol_status
        head, sep, self.body = stdout.partition(b"\r\n\r\n")
        self.headers: list[tuple[str, str]] = []
        self.status = 200
        if sep:
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    self.status = int(value.strip()[:3])
                else:
                    self.headers.append((name, value.strip()))

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return (f"<FCGIResponse ended={self.ended} status={self.status} headers={self.headers}"
                f" body={self.body[:300]!r} stderr={self.stderr[:300]!r}>")


class FCGIClient:
    """One connection to a FastCGI server, for one request or several (FCGI_KEEP_CONN)."""

    def __init__(self, address: dict[str, Any], timeout: float = 10.0) -> None:
        if address["kind"] == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = address["path"]
        else:
            assert address["host"] in ("127.0.0.1", "::1"), address
            family = socket.AF_INET6 if ":" in address["host"] else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            target = (address["host"], int(address["port"]))
        self.sock.settimeout(timeout)
        self.sock.connect(target)
        self._buf = b""
        self.reset = False
        self.bad_version = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FCGIClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, params: dict[str, str], body: bytes = b"", *, request_id: int = 1, keep: bool = False,
             split_params: bool = False) -> None:
        out = [_record(BEGIN_REQUEST, request_id, struct.pack("!HB5x", RESPONDER, KEEP_CONN if keep else 0))]
        encoded = b"".join(_pair(k, v) for k, v in params.items())
        if split_params:  # cut the stream mid-pair: the spec allows any split
            cut = len(encoded) // 2 + 1
            out += [_record(PARAMS, request_id, encoded[:cut]), _record(PARAMS, request_id, encoded[cut:])]
        else:
            out += [_record(PARAMS, request_id, encoded[i:i + 65535]) for i in range(0, len(encoded), 65535)]
        out.append(_record(PARAMS, request_id))
        out += [_record(STDIN, request_id, body[i:i + 65535]) for i in range(0, len(body), 65535)]
        out.append(_record(STDIN, request_id))
        self.sock.sendall(b"".join(out))

    def _read_exact(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                self.reset = True
                chunk = b""
            if not chunk:
                return None
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_record(self) -> tuple[int, int, bytes] | None:
        head = self._read_exact(8)
        if head is None:
            return None
        version, rtype, request_id, length, padding = HEADER.unpack(head)
        if version != 1:
            self.bad_version = True
            return None
        content = self._read_exact(length + padding)
        if content is None:
            return None
        return rtype, request_id, content[:length]

    def read_response(self, request_id: int = 1) -> FCGIResponse:
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            rec = self.read_record()
            if rec is None:
                return FCGIResponse(b"".join(stdout), b"".join(stderr), False, -1, -1,
                                    broken=self.reset or self.bad_version)
            rtype, rid, content = rec
            if rid != request_id:
                continue
            if rtype == STDOUT:
                stdout.append(content)
            elif rtype == STDERR:
                stderr.append(content)
            elif rtype == END_REQUEST:
                app_status, protocol_status = struct.unpack("!LB3x", content)
                return FCGIResponse(b"".join(stdout), b"".join(stderr), True, app_status, protocol_status)

    def request(self, params: dict[str, str], body: bytes = b"", **kw: Any) -> FCGIResponse:
        self.send(params, body, **kw)
        return self.read_response(kw.get("request_id", 1))

    def server_closed(self, timeout: float = 3.0) -> bool:
        """True when the server closes this connection within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def cgi_params(path: str = "/", method: str = "GET", *, query: str = "", body: bytes = b"",
               script_name: str = "", headers: dict[str, str] | None = None) -> dict[str, str]:
    """The params nginx sends with the guide's config (PATH_INFO decoded, latin-1 "bytes in str")."""
    params = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": script_name + path + (f"?{query}" if query else ""),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "test-client",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "localhost:8080",
    }
    if body or method == "POST":
        params["CONTENT_LENGTH"] = str(len(body))
        params["CONTENT_TYPE"] = "application/octet-stream"
    for name, value in (headers or {}).items():
        params["HTTP_" + name.upper().replace("-", "_")] = value
    return params


def fcgi(address: dict[str, Any], path: str = "/", method: str = "GET", body: bytes = b"",
         timeout: float = 10.0, **kw: Any) -> FCGIResponse:
    with FCGIClient(address, timeout) as client:
        return client.request(cgi_params(path, method, body=body, **kw), body)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _flup() -> None:
    require_backend("fastcgi")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def sock_path() -> Iterator[Path]:
    import shutil

    directory = short_tmpdir()
    try:
        yield directory / "fcgi.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start(serve: Serve, bind: str, *extra: str, env: dict[str, str] | None = None) -> ServeProcess:
    # The ready file names fcgi:// URLs, so the harness confirms readiness with a bare connect.
    return serve(contract_args("fastcgi", bind, *extra), env=env, confirm="connect")


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_response_status_headers_body_and_post(serve: Serve, sock_path: Path, state: Path, kind: str) -> None:
    bind = f"unix:{sock_path}" if kind == "unix" else "127.0.0.1:0"
    server = start(serve, bind, env=serve_env(CONTRACT_STATE_DIR=str(state)))
    scheme = server.url.split("://")[0]
    assert scheme == ("fcgi+unix" if kind == "unix" else "fcgi"), server.ready

    resp = fcgi(server.address, "/")
    assert resp.ended and resp.protocol_status == 0, resp
    assert (resp.status, resp.body) == (200, b"hello"), resp
    assert resp.header("Content-Type") == "text/plain; charset=utf-8", resp
    assert resp.header("Content-Length") == "5", resp

    resp = fcgi(server.address, "/headers")
    assert resp.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"], resp
    assert resp.header_all("X-Contract-List") == ["one, two"], resp

    resp = fcgi(server.address, "/nothing-here")
    assert resp.status == 404, resp

    payload = os.urandom(200_000)  # several STDIN records
    resp = fcgi(server.address, "/echo", "POST", payload)
    assert resp.status == 200 and resp.header("X-Echo-Length") == str(len(payload)), resp
    assert resp.body == payload

    resp = fcgi(server.address, "/stream", query="n=4&delay=0.01")
    assert resp.body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n", resp


def test_environ_follows_pep3333(serve: Serve) -> None:
    server = start(serve, "127.0.0.1:0")
    resp = fcgi(server.address, "/environ/café", query="q=caf%C3%A9&x=1", headers={"X-Test": "yes-42"})
    assert resp.status == 200, resp
    data = resp.json()
    cgi = data["cgi"]
    assert data["missing"] == [] or data["missing"] == ["CONTENT_TYPE", "CONTENT_LENGTH"], data["missing"]
    assert all(t == "str" for k, t in data["types"].items() if "." not in k), data["types"]
    assert cgi["SCRIPT_NAME"] == "" and data["path_info_utf8"] == "/environ/café", data
    assert cgi["QUERY_STRING"] == "q=caf%C3%A9&x=1"
    assert cgi["HTTP_X_TEST"] == "yes-42" and cgi["REMOTE_ADDR"] == "127.0.0.1"
    assert data["wsgi.version"] == [1, 0] and data["wsgi.url_scheme"] == "http"
    assert data["wsgi.multithread"] is True and data["wsgi.multiprocess"] is False
    assert data["wsgi.run_once"] is False and data["wsgi.input_terminated"] is True
    assert all(data["input"].values()) and all(data["errors"].values()), data
    assert data["types"]["wsgi.errors"] == "TextIOWrapper", data["types"]  # sys.stderr: a text stream

    params = cgi_params("/environ")
    params["HTTPS"] = "on"
    with FCGIClient(server.address) as client:
        assert client.request(params).json()["wsgi.url_scheme"] == "https"
    # A missing PATH_INFO is "" (CGI), not flup's raw REQUEST_URI (which would route to /x: 404).
    params = cgi_params("/x")
    params.pop("PATH_INFO")
    params["SCRIPT_NAME"] = "/x"
    with FCGIClient(server.address) as client:
        resp = client.request(params)
    assert (resp.status, resp.body) == (200, b"hello"), resp


def test_params_split_across_records_and_get_values(serve: Serve) -> None:
    server = start(serve, "127.0.0.1:0", "--connections", "77")
    with FCGIClient(server.address) as client:
        client.send(cgi_params("/environ", headers={"X-Long": "v" * 300}), split_params=True)
        resp = client.read_response()
    assert resp.status == 200 and resp.json()["cgi"]["HTTP_X_LONG"] == "v" * 300, resp

    with FCGIClient(server.address) as client:
        names = b"".join(_pair(n, "") for n in ("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"))
        client.sock.sendall(_record(GET_VALUES, 0, names) + _record(99, 0, b"x" * 8))
        got = client.read_record()
        unknown = client.read_record()
    assert got is not None and got[0] == GET_VALUES_RESULT, got
    assert b"FCGI_MAX_CONNS77" in got[2] and b"FCGI_MPXS_CONNS0" in got[2], got
    assert unknown is not None and unknown[0] == UNKNOWN_TYPE and unknown[2][0] == 99, unknown


def test_keep_conn_serves_several_requests_then_idles_out(serve: Serve) -> None:
    server = start(serve, "127.0.0.1:0", "--keepalive", "1")
    with FCGIClient(server.address) as client:
        for i in range(3):
            resp = client.request(cgi_params("/echo", "POST", body=b"x" * i), b"x" * i, request_id=i + 1, keep=True)
            assert resp.ended and resp.body == b"x" * i, resp
        started = time.monotonic()
        assert client.server_closed(timeout=5), "an idle kept connection was not closed after --keepalive"
        assert time.monotonic() - started < 4
    with FCGIClient(server.address) as client:  # without FCGI_KEEP_CONN: closed after the answer
        assert client.request(cgi_params("/")).body == b"hello"
        assert client.server_closed(timeout=3)


def test_app_errors_are_500_without_internals_or_a_dropped_connection(serve: Serve) -> None:
    server = start(serve, "127.0.0.1:0")
    for path in ("/error", "/error-after-start"):
        resp = fcgi(server.address, path)
        assert resp.ended and resp.status == 500, resp
        assert b"contract-secret-xyz" not in resp.stdout and b"Traceback" not in resp.stdout, resp
        assert b"contract-secret-xyz" not in resp.stderr, resp
    # Part of the body was sent: no END_REQUEST, and not a clean end of the connection either
    # (nginx takes that for the end of the response): an invalid record, then a reset.
    resp = fcgi(server.address, "/error-after-start", query="partial=1")
    assert not resp.ended and resp.broken and b"partial-".startswith(resp.body), resp
    assert fcgi(server.address, "/").body == b"hello"
    log = server.stderr()
    assert "contract-secret-xyz" in log and "Traceback" in log, log  # the traceback is in the log


READ_THEN_FAIL_APP = """
def app(environ, start_response):
    body = environ["wsgi.input"].read()  # to the end: nothing is left unread on the socket
    start_response("200 OK", [("Content-Type", "text/plain")])
    def gen():
        yield b"partial-" + body
        raise RuntimeError("failed-mid-body")
    return gen()
"""


def test_failure_mid_body_is_visible_on_a_unix_socket_with_all_input_read(serve: Serve, sock_path: Path,
                                                                          tmp_path: Path) -> None:
    # Over a unix socket a close with no unread input is a plain EOF, which nginx (without
    # fastcgi_keep_conn) takes for the end of the response: the invalid record is what tells.
    (tmp_path / "read_then_fail.py").write_text(READ_THEN_FAIL_APP)
    server = serve(["--backend", "fastcgi", "--bind", f"unix:{sock_path}", "--pythonpath", str(tmp_path),
                    "read_then_fail:app"], confirm="connect")
    resp = fcgi(server.address, "/", "POST", b"abc")
    assert not resp.ended and resp.broken, resp
    assert b"partial-abc".startswith(resp.body), resp
    assert "failed-mid-body" in server.stderr()


# --------------------------------------------------------------------------------------------
# root path and the SCRIPT_NAME fixes
# --------------------------------------------------------------------------------------------


def _split(resp: FCGIResponse) -> tuple[str, str]:
    cgi = resp.json()["cgi"]
    return cgi["SCRIPT_NAME"], cgi["PATH_INFO"]


def test_root_path(serve: Serve, sock_path: Path) -> None:
    server = start(serve, f"unix:{sock_path}", "--root-path", "/yourapplication")
    # The whole path in PATH_INFO (nginx at "/"): the prefix moves to SCRIPT_NAME.
    assert _split(fcgi(server.address, "/yourapplication/environ/x")) == ("/yourapplication", "/environ/x")
    # Already split by the front (the guide's fastcgi_split_path_info): left alone.
    resp = fcgi(server.address, "/environ/x", script_name="/yourapplication")
    assert _split(resp) == ("/yourapplication", "/environ/x")


def test_script_name_fix_strip_and_lighttpd(serve: Serve) -> None:
    strip = start(serve, "127.0.0.1:0", "-o", "script_name_fix=strip")
    # A rewrite to /yourapplication.fcgi$1 leaves the script in SCRIPT_NAME (the guide's ScriptNameStripper).
    resp = fcgi(strip.address, "/environ/news", script_name="/yourapplication.fcgi")
    assert _split(resp) == ("", "/environ/news"), resp

    lighty = start(serve, "127.0.0.1:0", "-o", "script_name_fix=true", "--root-path", "/app")
    # lighttpd with the app at "/": the whole path in SCRIPT_NAME, no PATH_INFO.
    with FCGIClient(lighty.address) as client:
        params = cgi_params("/unused")
        params.pop("PATH_INFO")
        params["SCRIPT_NAME"] = "/app/environ/x"
        resp = client.request(params)
    assert _split(resp) == ("/app", "/environ/x"), resp


def test_refuses_options_it_cannot_honour(tmp_path: Path) -> None:
    fin = run_serve(contract_args("fastcgi", "127.0.0.1:0", "-o", "script_name_fx=strip"), tmp_path=tmp_path)
    assert fin.returncode == 2 and "did you mean 'script_name_fix'" in fin.stderr, fin.describe()
    fin = run_serve(contract_args("fastcgi", "127.0.0.1:0", "-o", "script_name_fix=sometimes"), tmp_path=tmp_path)
    assert fin.returncode == 2 and "strip" in fin.stderr, fin.describe()
    fin = run_serve(contract_args("fastcgi", "127.0.0.1:0", "--timeout", "5"), tmp_path=tmp_path)
    assert fin.returncode == 2 and "--timeout" in fin.stderr and "Traceback" not in fin.stderr, fin.describe()
    fin = run_serve(contract_args("fastcgi", "127.0.0.1:0", "--threads", "2", "-o", "max_spare=3"),
                    tmp_path=tmp_path)
    assert fin.returncode == 2 and "max_spare" in fin.stderr, fin.describe()


# --------------------------------------------------------------------------------------------
# sockets
# --------------------------------------------------------------------------------------------


def test_unix_socket_mode_default_and_explicit(serve: Serve, sock_path: Path) -> None:
    server = start(serve, f"unix:{sock_path}")
    mode = stat.S_IMODE(os.stat(sock_path).st_mode)
    assert mode == 0o660, oct(mode)
    assert not mode & stat.S_IWOTH
    assert fcgi(server.address).body == b"hello"
    server.stop()
    assert not sock_path.exists(), "the socket file was left behind"

    other = sock_path.with_name("other.sock")
    server = start(serve, f"unix:{other}:0600")
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o600
    assert fcgi(server.address).body == b"hello"


def test_listening_socket_on_fd_0(sock_path: Path, tmp_path: Path) -> None:
    """FastCGI's own convention (mod_fcgid, lighttpd "bin-path"): the web server binds and hands
    the listening socket over as fd 0; ``--bind fd://0`` serves it and leaves the file alone."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(16)
    ready = tmp_path / "ready.json"
    err = open(tmp_path / "stderr.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "--ready-file", str(ready), "--backend", "fastcgi",
                             "--bind", "fd://0", "tests.contract.app:app"], cwd=str(REPO), env=serve_env(),
                            stdin=listener.fileno(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    listener.close()
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.log").read_text()
            time.sleep(0.03)
        assert fcgi({"kind": "unix", "path": str(sock_path)}).body == b"hello"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, (tmp_path / "stderr.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        err.close()
    assert sock_path.exists(), "the launcher removed a socket file it did not create"


def test_live_socket_is_not_taken_over_and_stale_one_is_replaced(serve: Serve, sock_path: Path,
                                                                 tmp_path: Path) -> None:
    first = start(serve, f"unix:{sock_path}")
    inode = os.stat(sock_path).st_ino
    fin = run_serve(contract_args("fastcgi", f"unix:{sock_path}"), tmp_path=tmp_path)
    assert fin.returncode is not None and fin.returncode > 0 and not fin.became_ready, fin.describe()
    assert "another server is listening" in fin.stderr and "Traceback" not in fin.stderr, fin.describe()
    assert os.stat(sock_path).st_ino == inode, "the live server's socket file was replaced"
    assert fcgi(first.address).body == b"hello"
    first.stop()

    stale = sock_path.with_name("stale.sock")
    make_stale_unix_socket(stale)
    server = start(serve, f"unix:{stale}")
    assert fcgi(server.address).body == b"hello"


# --------------------------------------------------------------------------------------------
# stopping and workers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_in_flight_requests(serve: Serve, sock_path: Path, workers: int) -> None:
    server = start(serve, f"unix:{sock_path}", "--workers", str(workers), "--threads", "4",
                   "--graceful-timeout", "10")
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        futures = [pool.submit(fcgi, server.address, "/slow", query="t=1.5", timeout=20) for _ in range(4)]
        time.sleep(0.6)
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        if workers == 1:
            # New connections are refused while the in-flight ones finish.
            time.sleep(0.3)
            with pytest.raises(OSError):
                fcgi(server.address, "/", timeout=2)
        results = [f.result(timeout=20) for f in futures]
        code = server.wait(15)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for resp in results:
        assert resp.ended and resp.status == 200, resp
    assert code == 0, server.output()
    assert time.monotonic() - sent < 8, "the drain took far longer than the requests"


def test_past_graceful_timeout_exits_1(serve: Serve) -> None:
    server = start(serve, "127.0.0.1:0", "--graceful-timeout", "0.5")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        future = pool.submit(fcgi, server.address, "/slow", query="t=4", timeout=20)
        time.sleep(0.5)
        server.signal(signal.SIGTERM)
        code = server.wait(10)
        resp = future.result(timeout=10)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert code == 1, server.output()
    assert "cut off" in server.stderr(), server.output()
    assert not resp.ended, resp


def test_two_workers_share_the_socket(serve: Serve, sock_path: Path) -> None:
    server = start(serve, f"unix:{sock_path}", "--workers", "2", "--threads", "2")
    pids: set[int] = set()
    deadline = time.monotonic() + 15
    while len(pids) < 2 and time.monotonic() < deadline:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: fcgi(server.address, "/slow", query="t=0.3"), range(4)))
        for resp in results:
            assert resp.status == 200, resp
            data = resp.json()
            pids.add(data["pid"])
        env = fcgi(server.address, "/environ").json()
        assert env["wsgi.multiprocess"] is True, env
    assert len(pids) == 2, f"requests were answered by {pids} only"


def test_threads_bound_concurrency_and_extra_connections_wait(serve: Serve) -> None:
    server = start(serve, "127.0.0.1:0", "--threads", "2")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fcgi(server.address, "/slow", query="t=0.6", timeout=20), range(4)))
    elapsed = time.monotonic() - started
    for resp in results:
        assert resp.ended and resp.status == 200, resp  # queued, not refused (flup closed them)
    assert elapsed >= 1.1, f"4 requests of 0.6 s on 2 threads took only {elapsed:.2f}s"
