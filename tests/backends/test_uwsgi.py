"""The uwsgi backend's own guarantees, on real ``python -m launcher --backend uwsgi`` servers.

The shared contract suite (tests/contract) covers PEP 3333 and the common lifecycle over HTTP; this
file covers what is specific to running uWSGI as its own program: HTTP/1.1 keep-alive completed by
the entry file (chunked and HEAD responses on one connection), the uwsgi protocol for nginx's
uwsgi_pass (a packet built by hand here), the drain of a multi-process uWSGI on SIGTERM and the
hard deadline, --workers as uWSGI processes, a unix socket's mode, X-Forwarded-Proto ignored,
import errors and unknown options as one line, and no uWSGI process outliving a killed launcher.
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    Connection,
    ServeProcess,
    contract_args,
    descendants,
    http_request,
    parallel,
    require_backend,
    run_serve,
    seconds_until_closed,
    still_alive,
)

pytestmark = pytest.mark.server

Serve = Callable[..., ServeProcess]


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_backend("uwsgi")






# -- HTTP ---------------------------------------------------------------------------------------


def test_keepalive_serves_three_requests_on_one_connection(serve: Serve) -> None:
    server = serve(contract_args("uwsgi"))
    with Connection(server.address, timeout=10) as conn:
        start = time.monotonic()
        first = conn.request("GET", "/")
        streamed = conn.request("GET", "/stream?n=3&delay=0")  # no Content-Length from the app
        conn.send_request("HEAD", "/")
        head = conn.read_response("HEAD")
        extra = conn.read_extra(0.2)
        last = conn.request("GET", "/environ")
        took = time.monotonic() - start
    assert (first.status, first.body) == (200, b"hello"), first.describe()
    assert streamed.body == b"chunk 0\nchunk 1\nchunk 2\n", streamed.describe()
    assert streamed.header("Transfer-Encoding") == "chunked", streamed.describe()
    assert head.status == 200 and head.header("Content-Length") == "5", head.describe()
    assert extra == b"", f"body bytes after a HEAD response: {extra!r}"
    assert last.status == 200 and not last.will_close, last.describe()
    assert conn.responses == 4
    # uWSGI's own framing would leave the streamed response open until its socket timeout (4 s+).
    assert took < 3, f"4 requests on one connection took {took:.2f}s"


def test_forwarded_proto_from_a_client_is_ignored(serve: Serve) -> None:
    server = serve(contract_args("uwsgi"))
    spoofed = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")]
    data = http_request(server.address, "GET", "/environ", headers=spoofed).json()
    assert data["wsgi.url_scheme"] == "http", "uWSGI's own X-Forwarded-Proto handling leaked through"


def test_unread_chunked_body_never_becomes_a_request(serve: Serve) -> None:
    server = serve(contract_args("uwsgi"))
    hidden = b"GET /environ?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    with Connection(server.address, timeout=10) as conn:
        conn.send_raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.2)  # the body arrives in a packet of its own, after the app answered
        conn.send_raw(b"%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden))
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"hello"), first.describe()
        try:
            follow = conn.request("GET", "/environ?follow=1")
        except OSError:
            return  # the connection was shut down instead: nothing was parsed from the body
        assert follow.json()["cgi"]["QUERY_STRING"] == "follow=1", follow.describe()
        assert conn.read_extra(0.3) == b""


def test_chunked_body_is_parsed_strictly(serve: Serve) -> None:
    """The entry file reads a chunked body's raw bytes itself (RFC 9112 7.1): broken framing is
    refused with 400 and the connection closed, whatever uWSGI's own lax reader would have taken;
    an extension is ignored, trailers are read."""
    server = serve(contract_args("uwsgi"))
    hidden = b"GET /environ?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    broken = {
        "size zz": b"zz\r\nhello\r\n0\r\n\r\n",  # uWSGI: strtoul("zz") is 0, an empty body
        "size 0x5": b"0x5\r\nhello\r\n0\r\n\r\n",  # uWSGI: strtoul takes the 0x
        "data past its size": b"5\r\nhelloXX\r\n0\r\n\r\n",  # uWSGI: skips XX, answers "hello"
        "size '5 '": b"5 \r\nhello\r\n0\r\n\r\n",
        "bare LF": b"5\nhello\n0\n\n",
        "17 hex digits": b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n",
    }
    for what, body in broken.items():
        with Connection(server.address, timeout=10) as conn:
            conn.send_raw(head + body + hidden)
            resp = conn.read_response()
            assert resp.status == 400, f"{what}: {resp.describe()}"
            assert resp.header("Connection") == "close", f"{what}: {resp.describe()}"
            assert conn.read_extra(1.0) == b"" and conn.server_closed, what
    with Connection(server.address, timeout=10) as conn:
        conn.send_raw(head + b"5;name=value\r\nhello\r\n6 ; a=\"b\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"hello world"), resp.describe()
        follow = conn.request("GET", "/")  # the connection is kept and parsed right after the body
        assert (follow.status, follow.body) == (200, b"hello"), follow.describe()


def test_chunked_body_in_pieces_is_read(serve: Serve) -> None:
    """A chunked body that arrives in small packets (lines and data split) is read whole."""
    server = serve(contract_args("uwsgi"))
    body = b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n"
    with Connection(server.address, timeout=10) as conn:
        conn.send_raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 3):
            time.sleep(0.02)
            conn.send_raw(body[i:i + 3])
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"abcdefg"), resp.describe()
        assert conn.request("GET", "/").status == 200


def test_header_timeout_cuts_a_trickled_head(serve: Serve) -> None:
    """uWSGI's socket timeout is per read: a head trickled a byte every 0.2 s would be held for ever
    (--keepalive 5 here).  --header-timeout 1 cuts it, and a connection that sends nothing, at ~1 s."""
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--header-timeout", "1", "--keepalive", "5"))
    address = (server.address["host"], int(server.address["port"]))
    trickled = socket.create_connection(address, timeout=5)
    trickled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    silent = socket.create_connection(address, timeout=5)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(lambda: seconds_until_closed(trickled, trickle=b"a", every=0.2, cap=6.0))
        quiet = pool.submit(lambda: seconds_until_closed(silent, every=0.2, cap=6.0))
        took, quiet_took = slow.result(), quiet.result()
    assert took is not None and 0.8 <= took <= 2.5, f"trickled head closed after {took}"
    assert quiet_took is not None and 0.8 <= quiet_took <= 2.5, f"silent connection closed after {quiet_took}"
    assert http_request(server.address, "GET", "/").status == 200


def test_header_timeout_spares_an_idle_keepalive_connection(serve: Serve) -> None:
    """On a kept-alive connection the head timer starts with the next request's first byte: idle
    time up to --keepalive is not cut at --header-timeout, a trickled second head is."""
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--header-timeout", "1", "--keepalive", "5"))
    with Connection(server.address, timeout=10) as conn:
        assert conn.request("GET", "/").status == 200
        time.sleep(2.0)  # idle: longer than --header-timeout, shorter than --keepalive
        again = conn.request("GET", "/")
        assert (again.status, again.body) == (200, b"hello"), again.describe()
        assert conn.sock is not None
        conn.sock.sendall(b"GET / HTTP/1.1\r\n")
        took = seconds_until_closed(conn.sock, trickle=b"X", every=0.2, cap=6.0)
        conn.sock = None
    assert took is not None and took <= 2.5, f"a trickled second head closed after {took}"


def _read_all(sock: socket.socket, wait: float = 1.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or is quiet for ``wait`` seconds (False)."""
    sock.settimeout(wait)
    data = b""
    try:
        while True:
            got = sock.recv(65536)
            if not got:
                return data, True
            data += got
    except TimeoutError:
        return data, False
    except OSError:
        return data, True


def test_pipelined_requests_are_served_in_order(serve: Serve) -> None:
    """uWSGI drops requests pipelined behind another (it closes the connection when bytes remain
    after a request); the entry file serves them, bodies included, and hands the connection back."""
    server = serve(contract_args("uwsgi"))
    host = b"Host: x\r\n"
    pipelined = (b"GET / HTTP/1.1\r\n" + host + b"\r\n"
                 b"GET /environ?second=1 HTTP/1.1\r\n" + host + b"\r\n"
                 b"POST /echo HTTP/1.1\r\n" + host + b"Content-Length: 5\r\n\r\nhello"
                 b"POST /echo HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
                 b"HEAD / HTTP/1.1\r\n" + host + b"\r\n")
    with Connection(server.address, timeout=10) as conn:
        conn.send_raw(pipelined)
        first = conn.read_response()
        second = conn.read_response()
        third = conn.read_response()
        fourth = conn.read_response()
        fifth = conn.read_response("HEAD")
        assert (first.status, first.body) == (200, b"hello"), first.describe()
        assert second.json()["cgi"]["QUERY_STRING"] == "second=1", second.describe()
        assert (third.status, third.body) == (200, b"hello"), third.describe()
        assert (fourth.status, fourth.body) == (200, b"abc"), fourth.describe()
        assert fifth.status == 200 and fifth.header("Content-Length") == "5", fifth.describe()
        assert conn.read_extra(0.3) == b""
        after = conn.request("GET", "/environ?after=1")  # uWSGI reads the connection again
        assert after.json()["cgi"]["QUERY_STRING"] == "after=1", after.describe()


def test_pipelined_heads_are_checked_strictly(serve: Serve) -> None:
    """A pipelined head is parsed from its raw bytes by the launcher's rules: an underscore look-alike
    (which uWSGI folds into the real name) or a bare LF is refused with 400 and the connection
    closed, so the request behind it never reaches the app.  After a request that carried a field an
    underscore look-alike could have made (X-Forwarded-For here), nothing pipelined is served."""
    server = serve(contract_args("uwsgi"))
    host = b"Host: x\r\n"
    hidden = b"GET /environ?smuggled=1 HTTP/1.1\r\n" + host + b"\r\n"
    for bad in (b"GET / HTTP/1.1\r\n" + host + b"X_Forwarded_For: 6.6.6.6\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + host + b"X-A: a\nX-B: b\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + host + b"Content_Length: 5\r\n\r\n"):
        sock = socket.create_connection((server.address["host"], int(server.address["port"])), timeout=10)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\n" + host + b"\r\n" + bad + hidden)
            data, closed = _read_all(sock)
        assert data.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 400 Bad Request" in data, (bad, data)
        assert b"smuggled" not in data and data.count(b"HTTP/1.1 ") == 2 and closed, (bad, data)
    sock = socket.create_connection((server.address["host"], int(server.address["port"])), timeout=10)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + host + b"X-Forwarded-For: 1.2.3.4\r\n\r\n" + hidden)
        data, closed = _read_all(sock)
    assert data.count(b"HTTP/1.1 ") == 1 and closed, data


def test_head_timer_knows_connections_of_a_wildcard_listener() -> None:
    """A listener on 0.0.0.0 has another local address than the connections it accepts (127.0.0.1):
    the head timer matches them by family and port."""
    from backends.uwsgi import _local_key

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1])) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert _local_key(accepted) == _local_key(listener)
                assert _local_key(client) != _local_key(listener)


def test_conflicting_length_and_chunked_is_refused(serve: Serve) -> None:
    server = serve(contract_args("uwsgi"))
    with Connection(server.address, timeout=10) as conn:
        conn.send_raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 400, resp.describe()
        assert conn.read_extra(1.0) == b"" and conn.server_closed


def test_heads_uwsgi_takes_are_refused_from_environ(serve: Serve) -> None:
    """uWSGI's parser takes almost any head: the entry file refuses what environ shows (400 or 431,
    Connection: close, the connection shut down so nothing behind it is parsed)."""
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--limit-request-line", "200", "--limit-request-fields",
                                 "10", "--limit-request-field-size", "100"))
    hidden = b"GET /environ?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    heads = {
        b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n": 400,  # absolute-form
        b"GET / HTTP/1.1\r\n\r\n": 400,  # no Host
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n": 400,
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 400,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n": 400,  # space before the colon
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n": 400,
        b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n": 414,
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(12)) + b"\r\n": 431,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 120 + b"\r\n\r\n": 431,
    }
    for head, status in heads.items():
        with Connection(server.address, timeout=10) as conn:
            conn.send_raw(head + hidden)
            resp = conn.read_response()
            assert resp.status == status, f"{head[:60]!r}: {resp.describe()}"
            assert resp.header("Connection") == "close", resp.describe()
            assert conn.read_extra(1.0) == b"" and conn.server_closed, head[:60]
    ok = http_request(server.address, "GET", "/environ", headers={f"X-{i}": "v" for i in range(5)})
    assert ok.status == 200, ok.describe()


def test_environ_refusal_rules() -> None:
    from backends.uwsgi import environ_refusal
    from launcher.hygiene import Limits

    base = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/p?q=1", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "x:80"}
    assert environ_refusal(base, Limits(), fields=True) is None
    assert environ_refusal({**base, "HTTP_X_CUSTOM_THING": "1"}, Limits(), fields=True) is None
    refused = [
        {**base, "REQUEST_URI": "http://evil/"}, {**base, "REQUEST_URI": "*"}, {**base, "SERVER_PROTOCOL": "HTTP/2.0"},
        {**base, "REQUEST_METHOD": "G@T"}, {k: v for k, v in base.items() if k != "HTTP_HOST"},
        {**base, "HTTP_HOST": "a, b"}, {**base, "CONTENT_LENGTH": "0_0"}, {**base, "CONTENT_LENGTH": "+5"},
        {**base, "SERVER_PROTOCOL": "HTTP/1.0", "HTTP_TRANSFER_ENCODING": "chunked"},
        {**base, "HTTP_X_A ": "b"}, {**base, "HTTP_X_A": "a\x00b"}, {**base, "HTTP_X_A": "a\nX-B: b"},
    ]
    for environ in refused:
        assert environ_refusal(environ, Limits(), fields=True) is not None, environ
    assert environ_refusal({**base, "HTTP_X_A": "a\tb"}, Limits(), fields=True) is None
    assert environ_refusal({**base, "HTTP_X_A": "a" * 50}, Limits(field_size=40), fields=True).status == 431
    many = {**base, **{f"HTTP_X_{i}": "v" for i in range(10)}}
    assert environ_refusal(many, Limits(fields=10), fields=True).status == 431
    assert environ_refusal(many, Limits(fields=11), fields=True) is None
    assert environ_refusal({**base, "LAUNCHER_BAD_HEADER": "1"}).status == 400  # set by the mod_wsgi config


def test_limit_request_body(serve: Serve) -> None:
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--limit-request-body", "1000"))
    small = http_request(server.address, "POST", "/echo", body=b"x" * 1000)
    assert (small.status, len(small.body)) == (200, 1000), small.describe()
    for chunked in (False, True):
        resp = http_request(server.address, "POST", "/echo", body=[b"x" * 800, b"y" * 800], chunked=chunked)
        assert resp.status == 413, f"chunked={chunked}: {resp.describe()}"


# -- the uwsgi protocol -------------------------------------------------------------------------


def _uwsgi_request(address: dict[str, Any], variables: dict[str, str]) -> tuple[bytes, bytes]:
    """Send one uwsgi packet (built by hand, as nginx's uwsgi_pass does) and read until close."""
    payload = b""
    for key, value in variables.items():
        k, v = key.encode("latin-1"), value.encode("latin-1")
        payload += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    # modifier1 = 0 (WSGI), datasize as a little-endian u16, modifier2 = 0
    packet = bytes([0]) + struct.pack("<H", len(payload)) + bytes([0]) + payload
    with socket.create_connection((address["host"], address["port"]), timeout=10) as sock:
        sock.sendall(packet)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_uwsgi_protocol_for_nginx(serve: Serve) -> None:
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "-o", "protocol=uwsgi"), confirm="connect")
    assert server.url.startswith("uwsgi://127.0.0.1:"), server.ready
    base = {
        "REQUEST_METHOD": "GET", "REQUEST_URI": "/environ?x=1", "PATH_INFO": "/environ", "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "example.org", "SERVER_PORT": "80",
        "REMOTE_ADDR": "203.0.113.7", "HTTP_HOST": "example.org", "HTTP_X_FORWARDED_PROTO": "https",
    }
    head, body = _uwsgi_request(server.address, base)
    status_line = head.split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 200"), head
    data = json.loads(body)
    assert data["cgi"]["REMOTE_ADDR"] == "203.0.113.7"
    assert data["cgi"]["QUERY_STRING"] == "x=1"
    assert data["wsgi.url_scheme"] == "http", "a client's X-Forwarded-Proto set the scheme"
    # The front server's own variable (nginx: HTTPS $https) is what says https.
    _, body = _uwsgi_request(server.address, {**base, "HTTPS": "on"})
    assert json.loads(body)["wsgi.url_scheme"] == "https"


# -- processes, sockets, stopping ---------------------------------------------------------------


def test_workers_are_uwsgi_processes(serve: Serve) -> None:
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--workers", "2", "--threads", "1"))
    results = parallel(lambda: http_request(server.address, "GET", "/slow?t=0.6", timeout=10), [()] * 4)
    pids = {r.json()["pid"] for r in results if not isinstance(r, BaseException)}
    assert len(pids) == 2, f"4 concurrent requests on 2 workers x 1 thread came from {pids}: {results}"
    assert server.pid not in pids, "the launcher itself served a request"
    assert set(pids) <= set(descendants(server.pid))
    environ = http_request(server.address, "GET", "/environ").json()
    assert environ["wsgi.multiprocess"] is True


def test_unix_socket_keeps_its_mode_and_trusts_its_proxy(serve: Serve, sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    server = serve(contract_args("uwsgi", f"unix:{path}:0600", "--proxy-headers", "--forwarded-allow-ips", "unix"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    resp = http_request(server.address, "GET", "/")
    assert (resp.status, resp.body) == (200, b"hello"), resp.describe()
    # uWSGI calls a unix socket peer 0.0.0.0: the "unix" entry of the allow-list must still match.
    forwarded = [("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "https")]
    data = http_request(server.address, "GET", "/environ", headers=forwarded).json()
    assert (data["cgi"]["REMOTE_ADDR"], data["wsgi.url_scheme"]) == ("203.0.113.5", "https"), data["cgi"]
    assert server.stop() == 0
    assert not path.exists()


def test_sigterm_drains_every_worker(serve: Serve) -> None:
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--workers", "2", "--threads", "2",
                                 "--graceful-timeout", "10"))
    uwsgi_pids = descendants(server.pid)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        futures = [pool.submit(http_request, server.address, "GET", "/slow?t=2", timeout=20) for _ in range(4)]
        time.sleep(0.6)
        server.signal(signal.SIGTERM)
        rc = server.wait(15)
        statuses = [f.result(timeout=5).status for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert statuses == [200] * 4
    assert rc == 0, server.output()
    assert still_alive(uwsgi_pids, 3) == []


def test_idle_keepalive_connection_does_not_hold_the_drain(serve: Serve) -> None:
    # uWSGI's own graceful stop waits for a thread holding an idle keep-alive connection until its
    # socket timeout (--keepalive, 20 s here).
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--keepalive", "20", "--graceful-timeout", "10"))
    with Connection(server.address, timeout=30) as idle:
        assert idle.request("GET", "/").status == 200
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        rc = server.wait(15)
        took = time.monotonic() - sent
        assert idle.read_extra(1.0) == b"" and idle.server_closed
    assert rc == 0, server.output()
    assert took < 5, f"an idle keep-alive connection held the drain for {took:.2f}s"


def test_graceful_timeout_cuts_off_with_exit_1(serve: Serve) -> None:
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--graceful-timeout", "1"))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        slow = pool.submit(http_request, server.address, "GET", "/slow?t=20", timeout=30)
        time.sleep(0.5)
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        rc = server.wait(10)
        took = time.monotonic() - sent
        with pytest.raises(Exception):  # noqa: B017 - any failure: the request was cut off
            slow.result(timeout=5)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert rc == 1, server.output()
    assert took < 4, f"stopped {took:.2f}s after SIGTERM with --graceful-timeout 1"
    assert "cut off" in server.stderr()


def test_uwsgi_dies_with_a_killed_launcher(serve: Serve) -> None:
    server = serve(contract_args("uwsgi", "127.0.0.1:0", "--workers", "2"))
    uwsgi_pids = descendants(server.pid)
    assert len(uwsgi_pids) >= 3, f"expected a master and 2 workers, found {uwsgi_pids}"
    # Its own process group (Ctrl-C must reach the launcher only), so killing the launcher's
    # group does not reach it: PR_SET_PDEATHSIG must.
    workdirs = list(Path(tempfile.gettempdir()).glob(f"serve-uwsgi-{server.pid}-*"))
    assert len(workdirs) == 1, workdirs
    os.kill(server.pid, signal.SIGKILL)
    server.wait(5)
    assert still_alive(uwsgi_pids, 5) == [], "uWSGI processes outlived the launcher"
    # The killed launcher could not remove its private directory: the next start does.
    serve(contract_args("uwsgi"))
    assert not workdirs[0].exists()


# -- failing cleanly ----------------------------------------------------------------------------


def test_app_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    fin = run_serve(["--backend", "uwsgi", "--bind", "127.0.0.1:0", "no_such_module_here:app"],
                    timeout=20, tmp_path=tmp_path)
    assert fin.returncode == 4, fin.describe()
    assert "Traceback" not in fin.stderr, fin.describe()
    errors = [line for line in fin.stderr_lines() if line.startswith("serve: error:")]
    assert len(errors) == 1 and "no_such_module_here" in errors[0], fin.describe()
    assert "uWSGI" not in fin.stderr, "uWSGI's start-up banner should stay hidden"


def test_backend_options(tmp_path: Path) -> None:
    from backends.uwsgi import UWSGIBackend
    from launcher.errors import OptionError

    backend = UWSGIBackend()
    with pytest.raises(OptionError, match="did you mean 'thunder-lock'"):
        backend.parse_backend_options({"thunder_lok": "true"})
    with pytest.raises(OptionError, match="use --workers"):
        backend.parse_backend_options({"processes": "3"})
    with pytest.raises(OptionError, match="choose http"):
        backend.parse_backend_options({"protocol": "fastcgi"})
    parsed = backend.parse_backend_options({"thunder_lock": "true", "buffer_size": "8192", "protocol": "uwsgi"})
    assert parsed["protocol"] == "uwsgi"
    assert parsed["extra"] == [("thunder-lock", "true"), ("buffer-size", "8192")]


def test_command_line(tmp_path: Path) -> None:
    from backends.uwsgi import UWSGIBackend
    from launcher import sockets
    from launcher.options import resolve

    opts = resolve("tests.contract.app:app", cli={
        "backend": "uwsgi", "bind": "127.0.0.1:0", "workers": 3, "threads": 2, "timeout": 7.5,
        "keepalive": 2, "max_requests": 100, "graceful_timeout": 4, "option": {"thunder_lock": "true"},
    }, env={}, use_file=False)
    backend = UWSGIBackend()
    backend.check(opts)
    listeners = sockets.bind_all(opts.bind, opts.backlog)
    try:
        argv = backend.command(opts, listeners, "/x/entry.py")
        fd = listeners[0].sock.fileno()
    finally:
        sockets.close_all(listeners)
    joined = " ".join(argv)
    for expected in (f"--http11-socket fd://{fd}", "--processes 3", "--threads 2", "--harakiri 8",
                     "--socket-timeout 2", "--max-requests 100", "--worker-reload-mercy 5",
                     "--master", "--lazy-apps", "--need-app", "--strict", "--thunder-lock",
                     "unix_signal:15 gracefully_kill_them_all", "unix_signal:2 gracefully_kill_them_all",
                     "--max-vars 164", "--wsgi-file /x/entry.py"):
        assert expected in joined, f"{expected!r} missing from {joined}"


def test_callable_app_is_refused() -> None:
    from backends.uwsgi import UWSGIBackend
    from launcher.errors import OptionError
    from launcher.options import resolve

    opts = resolve(lambda environ, start_response: [], cli={"backend": "uwsgi"}, env={}, use_file=False)
    with pytest.raises(OptionError, match="import string"):
        UWSGIBackend().check(opts)


def test_importing_the_backend_imports_no_server_library() -> None:
    # The registry imports backends.uwsgi (and backends.mod_wsgi, built on it) to read metadata.
    code = ("import sys, backends.uwsgi, backends.mod_wsgi;"
            " print('pyuwsgi' in sys.modules, 'uwsgi' in sys.modules, 'mod_wsgi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.split() == ["False", "False", "False"], out
