"""nginx in front of the app, on the config `serve config nginx` printed, at / and under a prefix.

* proxy_pass to waitress over a unix socket, with --proxy-headers trusting only unix peers
* fastcgi_pass to flup over a unix socket and over TCP
* uwsgi_pass to uWSGI (-o protocol=uwsgi)

Each combination runs every shared contract check (tests/contract/checks.py) through nginx.
nginx buffers a chunked request body and hands it on with a length, so "chunked_request" holds
for all three protocols.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.checks import CHECKS, FRONT_EXPECT, check_id
from tests.front import servers
from tests.front.combos import PREFIXES, Combo, checks_with_limits, environ_of, nginx_combo
from tests.support import http_request, require_backend

pytestmark = pytest.mark.server

NGINX_EXPECT = FRONT_EXPECT | {"chunked_request"}

# The app trusts X-Forwarded-* only from unix-socket peers (nginx): the test client and nginx are
# both 127.0.0.1 here, so trusting 127.0.0.1 would also trust the client itself.
PROXY_ARGS = ["--backend", "waitress", "--bind", "unix:{work}/app.sock", "--bind", "127.0.0.1:0",
              "--proxy-headers", "--forwarded-allow-ips", "unix", "--group", servers.WEB_USER]
FASTCGI_UNIX_ARGS = ["--backend", "fastcgi", "--bind", "unix:{work}/app.sock", "--group", servers.WEB_USER]
FASTCGI_TCP_ARGS = ["--backend", "fastcgi", "--bind", "127.0.0.1:0"]
UWSGI_ARGS = ["--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind", "unix:{work}/app.sock",
              "--group", servers.WEB_USER]


def _params(name: str) -> list[Any]:
    return [pytest.param(key, id=f"{name}-{key}", marks=pytest.mark.xdist_group(f"front-nginx-{name}-{key}"))
            for key in PREFIXES]


# ------------------------------------------------------------------------------- proxy_pass


@pytest.fixture(scope="module", params=_params("proxy"))
def proxy(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("waitress")
    prefix = PREFIXES[request.param]
    yield from nginx_combo(PROXY_ARGS, prefix, NGINX_EXPECT, f"nginx-proxy-waitress{prefix}")()


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_proxy_contract(proxy: Combo, check: Any) -> None:
    check(proxy.target)


def test_proxy_config_has_no_warning(proxy: Combo) -> None:
    """--group www-data and --forwarded-allow-ips unix: nothing for `serve config` to warn about."""
    assert proxy.generated.warnings == []
    assert "proxy_pass http://" in proxy.generated.text


def test_proxy_app_sees_the_client_through_trusted_nginx(proxy: Combo) -> None:
    """Through nginx (a unix-socket peer, trusted): REMOTE_ADDR is the client's 127.0.0.1 from
    X-Forwarded-For -- without the header it would be the unix peer's empty address -- and a
    client's own X-Forwarded-For entry is not taken: the right-most untrusted address wins."""
    cgi = environ_of(proxy.target, headers=[("X-Forwarded-For", "203.0.113.9")])
    assert cgi.get("REMOTE_ADDR") == "127.0.0.1", cgi
    assert cgi.get("HTTP_X_FORWARDED_FOR") == "203.0.113.9, 127.0.0.1", cgi
    port = proxy.target.address[1]
    assert cgi.get("HTTP_HOST") == f"127.0.0.1:{port}", cgi  # X-Forwarded-Host + -Port
    assert cgi.get("SERVER_PORT") == str(port), cgi


def test_proxy_forged_headers_from_an_untrusted_peer_are_dropped(proxy: Combo) -> None:
    """Straight to the backend's TCP address (peer 127.0.0.1, not in --forwarded-allow-ips unix),
    forged X-Forwarded-* are stripped and REMOTE_ADDR stays the real peer."""
    assert proxy.backend is not None
    tcp = proxy.backend.ready["addresses"][1]
    assert tcp["kind"] == "tcp"
    forged = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Host", "evil.example"),
              ("X-Forwarded-Proto", "https"), ("X-Forwarded-Prefix", "/evil")]
    resp = http_request(tcp, "GET", proxy.target.prefix + "/environ", headers=forged)
    assert resp.status == 200, resp.describe()
    data = resp.json()
    cgi = data["cgi"]
    assert cgi.get("REMOTE_ADDR") == "127.0.0.1", cgi
    assert "HTTP_X_FORWARDED_FOR" not in cgi and "HTTP_X_FORWARDED_HOST" not in cgi, cgi
    assert cgi.get("HTTP_HOST", "").split(":")[0] == "127.0.0.1", cgi
    assert data["wsgi.url_scheme"] == "http"
    assert cgi.get("SCRIPT_NAME", "") == proxy.target.prefix, cgi


def test_proxy_unix_socket_is_the_trust_boundary(proxy: Combo) -> None:
    """Whoever can write the unix socket is trusted like nginx: a forged X-Forwarded-For sent
    straight to it is believed.  That is why the socket is 0660 and handed only to www-data's
    group (--group www-data), never world-writable."""
    assert proxy.backend is not None
    unix = proxy.backend.ready["addresses"][0]
    assert unix["kind"] == "unix"
    resp = http_request(unix, "GET", proxy.target.prefix + "/environ", headers=[("X-Forwarded-For", "203.0.113.9")])
    assert resp.json()["cgi"].get("REMOTE_ADDR") == "203.0.113.9"
    st = os.stat(unix["path"])
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert grp.getgrgid(st.st_gid).gr_name == servers.WEB_USER


# ------------------------------------------------------------------------------- FastCGI


@pytest.fixture(scope="module", params=_params("fastcgi-unix"))
def fastcgi_unix(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("fastcgi")
    prefix = PREFIXES[request.param]
    yield from nginx_combo(FASTCGI_UNIX_ARGS, prefix, NGINX_EXPECT, f"nginx-fastcgi-unix{prefix}")()


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_fastcgi_unix_contract(fastcgi_unix: Combo, check: Any) -> None:
    check(fastcgi_unix.target)


@pytest.fixture(scope="module", params=_params("fastcgi-tcp"))
def fastcgi_tcp(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("fastcgi")
    prefix = PREFIXES[request.param]
    yield from nginx_combo(FASTCGI_TCP_ARGS, prefix, NGINX_EXPECT, f"nginx-fastcgi-tcp{prefix}")()


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_fastcgi_tcp_contract(fastcgi_tcp: Combo, check: Any) -> None:
    check(fastcgi_tcp.target)


# ------------------------------------------------------------------------------- uwsgi


@pytest.fixture(scope="module", params=_params("uwsgi"))
def uwsgi(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("uwsgi")
    prefix = PREFIXES[request.param]
    yield from nginx_combo(UWSGI_ARGS, prefix, NGINX_EXPECT, f"nginx-uwsgi{prefix}")()


# The uwsgi protocol has no end-of-response marker: a response ends when the connection does.
# Over a unix socket there is no reset either, so when the app fails after its first chunk, uWSGI
# closing the connection looks to nginx exactly like a finished response (measured: a TCP reset,
# or a close with unread data, does make nginx cut the client's response short).
UWSGI_CHECKS = checks_with_limits({
    "error_after_body_started": "uwsgi protocol over a unix socket: a response broken off looks finished to nginx",
})


@pytest.mark.parametrize("check", UWSGI_CHECKS)
def test_uwsgi_contract(uwsgi: Combo, check: Any) -> None:
    check(uwsgi.target)


# ------------------------------------------------------------------------------- the trap


def test_socket_nginx_cannot_write_gives_502_and_a_warning() -> None:
    """The trap: without --group the socket is 0660 root:root, nginx's www-data workers cannot
    connect and every request is a 502 -- and `serve config nginx` said so beforehand."""
    require_backend("waitress")
    servers.require_binary("nginx")
    servers.require_web_user()
    from tests.front.combos import start_backend, workdir

    with workdir("wl-ngx-trap-") as work:
        state = servers.state_dir(work)
        args = ["--backend", "waitress", "--bind", f"unix:{work}/app.sock"]
        backend = start_backend(args, work, state)
        try:
            listener = servers.loopback_listener()
            port = listener.getsockname()[1]
            generated = servers.serve_config("nginx", *args, "tests.contract.app:app", "--listen", f"127.0.0.1:{port}")
            assert any("502" in w and "--group www-data" in w for w in generated.warnings), generated.stderr
            assert "NOT writable by the web server" in generated.text
            front = servers.start_nginx(generated.text, work, listener, ready_path="/", ready_status=502)
            try:
                resp = http_request(front.address, "GET", "/")
                assert resp.status == 502
                assert "Permission denied" in (work / "error.log").read_text()
            finally:
                front.stop()
        finally:
            backend.stop()
