"""Apache in front of (or hosting) the app, at / and under a prefix.

* the `serve config apache --backend mod_wsgi` daemon-mode virtual host, loading the virtualenv's
  own pip-built mod_wsgi, on the .wsgi file `serve config wsgi-file` wrote
* `serve --backend mod_wsgi`: Apache through mod_wsgi-express, run by the launcher
* CGI: ScriptAlias to the script `serve config cgi-script` wrote, run by mod_cgid as www-data
* FastCGI through mod_proxy_fcgi to flup over a unix socket

Apache refuses to run its children as root: they run as www-data, which must be able to read the
repository, the virtualenv and the interpreter (checked first, with the fix in the message).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.checks import DIRECT_EXPECT, FRONT_EXPECT, Target
from tests.front import servers
from tests.front.combos import (
    PREFIXES,
    Combo,
    check_cgi_environ,
    checks_with_limits,
    mount_args,
    start_backend,
    with_real_binds,
    workdir,
)
from tests.support import CONTRACT_APP, require_backend

pytestmark = pytest.mark.server


def _params(name: str) -> list[Any]:
    return [pytest.param(key, id=f"{name}-{key}", marks=pytest.mark.xdist_group(f"front-apache-{name}-{key}"))
            for key in PREFIXES]


def apache_combo(kind_args: list[str], prefix: str, expect: frozenset[str], label: str, *,
                 files: Callable[[Path, list[str]], list[str]] | None = None,
                 backend: bool = False, top: str = "") -> Iterator[Combo]:
    """`serve config apache` (after writing the entry file, or starting the backend) and Apache;
    ``top``: top-level lines before the site (``{work}``, ``{port}`` filled in)."""
    servers.require_binary("apache2")
    servers.require_web_user()
    servers.require_readable_by_web_user(*servers.python_paths())
    with workdir("wl-apache-") as work:
        state = servers.state_dir(work)
        full = [*[a.replace("{work}", str(work)) for a in kind_args], *mount_args(prefix)]
        extra = files(work, full) if files is not None else []
        process = start_backend(full, work, state) if backend else None
        try:
            config_args = with_real_binds(full, process) if process else full
            generated: list[servers.Generated] = []

            def site(port: int) -> str:
                generated.append(servers.serve_config("apache", *config_args, *extra, CONTRACT_APP,
                                                      "--listen", f"127.0.0.1:{port}"))
                return generated[-1].text

            # Apache gives CGI programs only the request's variables and what PassEnv names; the
            # mod_wsgi daemon processes inherit Apache's environment.
            os.environ["CONTRACT_STATE_DIR"] = str(state)
            try:
                front = servers.start_apache(site, work, ready_path=prefix + "/",
                                             extra="PassEnv CONTRACT_STATE_DIR\n" + top.replace("{work}", str(work)))
            finally:
                os.environ.pop("CONTRACT_STATE_DIR", None)
            try:
                yield Combo(Target(address=front.address, prefix=prefix, expect=expect, label=label),
                            front, generated[-1], process, work, full)
            finally:
                front.stop()
        finally:
            if process is not None:
                process.stop()


# ------------------------------------------------------------------------------- mod_wsgi daemon mode


def _wsgi_file(work: Path, args: list[str]) -> list[str]:
    servers.serve_config("wsgi-file", *args, CONTRACT_APP, "--output", str(work / "app.wsgi"))
    return ["--script", str(work / "app.wsgi")]


@pytest.fixture(scope="module", params=_params("mod_wsgi-vhost"))
def vhost(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("mod_wsgi")
    prefix = PREFIXES[request.param]
    yield from apache_combo(["--backend", "mod_wsgi", "--threads", "8"], prefix,
                            FRONT_EXPECT | {"chunked_request"}, f"apache-mod_wsgi-vhost{prefix}", files=_wsgi_file)


# mod_wsgi ends a response the app broke off after its first chunk like a finished one (the
# chunked terminator is sent), in daemon mode as through mod_wsgi-express: the client cannot tell.
MOD_WSGI_CHECKS = checks_with_limits({
    "error_after_body_started": "mod_wsgi finishes a response the app broke off half-way (terminating chunk sent)",
})


@pytest.mark.parametrize("check", MOD_WSGI_CHECKS)
def test_mod_wsgi_vhost_contract(vhost: Combo, check: Any) -> None:
    check(vhost.target)


def test_mod_wsgi_vhost_loads_the_pip_built_module(vhost: Combo) -> None:
    """The LoadModule / WSGIPythonHome lines are what `mod_wsgi-express module-config` prints."""
    express = os.path.join(os.path.dirname(sys.executable), "mod_wsgi-express")
    printed = subprocess.run([express, "module-config"], capture_output=True, text=True, timeout=30).stdout
    for line in printed.splitlines():
        if line.startswith("LoadModule"):
            path = line.split(None, 2)[2].strip('"')
            assert f'LoadModule wsgi_module "{path}"' in vhost.generated.text
        elif line.startswith("WSGIPythonHome"):
            assert line.split(None, 1)[1].strip('"') == sys.prefix
    text = vhost.generated.text
    assert "WSGIDaemonProcess tests user=www-data group=www-data" in text
    assert "WSGIApplicationGroup %{GLOBAL}" in text and "Require all granted" in text
    assert f"python-home={sys.prefix}" in text


def test_mod_wsgi_vhost_loads_the_launchers_module(vhost: Combo) -> None:
    """The generated vhost loads the launcher's Apache module by its absolute path (server level):
    the stable link beside the build, which points at the build of this source."""
    from backends.apache import STEM, module_path

    text = vhost.generated.text
    link = os.path.join(os.path.dirname(module_path()), f"{STEM}.so")
    assert f'LoadModule launcher_hygiene_module "{link}"' in text
    assert os.path.realpath(link) == os.path.realpath(module_path())
    assert text.index("LoadModule launcher_hygiene_module") < text.index("\n<VirtualHost")
    assert "HttpProtocolOptions Strict Require1.0 LenientMethods" in text
    assert not vhost.generated.warnings, vhost.generated.stderr


def _raw_exchange(address: Any, payload: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``payload`` on a fresh connection; (everything answered, whether the server closed)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return data, False
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
        return data, False


def _hidden_request_refused(combo: Combo, head: Callable[[str, str], bytes], host: str = "localhost") -> None:
    """``head(first, hidden)`` is a refused request with a request pipelined behind it, both
    ``/close?token=T`` (the contract app leaves a marker file in the state directory when it
    served one): a 400, the connection closed, and the app saw neither."""
    prefix = combo.target.prefix
    state = combo.work / "state"
    first, hidden, after = (uuid.uuid4().hex[:16] for _ in range(3))
    payload = head(f"{prefix}/close?token={first}", f"{prefix}/close?token={hidden}")
    data, closed = _raw_exchange(combo.front.address, payload)
    assert data.startswith(b"HTTP/1.1 400 "), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert closed, f"the connection stayed open after the 400: {data[:300]!r}"
    # A request of its own, served: its marker shows the app got the time to see the others.
    with socket.create_connection(combo.front.address, timeout=5) as sock:
        sock.sendall(f"GET {prefix}/close?token={after} HTTP/1.1\r\nHost: {host}\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    deadline = time.monotonic() + 5
    while not (state / f"closed-{after}").exists():
        assert time.monotonic() < deadline, "the app did not serve the request sent after"
        time.sleep(0.05)
    time.sleep(0.2)
    assert not (state / f"closed-{first}").exists(), "the app served the refused request"
    assert not (state / f"closed-{hidden}").exists(), "the app served the request hidden behind it"


def test_mod_wsgi_vhost_refuses_obsolete_line_folding(vhost: Combo) -> None:
    """Obsolete line folding (a header line starting with SP): Apache's core would unfold it; the
    launcher's module the vhost loads answers 400 and closes, the pipelined request unread."""
    _hidden_request_refused(vhost, lambda first, hidden: (
        f"GET {first} HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n"
        f"GET {hidden} HTTP/1.1\r\nHost: localhost\r\n\r\n").encode())


def test_mod_wsgi_vhost_refuses_content_length_with_transfer_encoding(vhost: Combo) -> None:
    """Content-Length with Transfer-Encoding: Apache's core would drop Content-Length and read the
    chunks, then the request a Content-Length reader takes for body; the module answers 400."""
    def head(first: str, hidden: str) -> bytes:
        smuggled = f"0\r\n\r\nGET {hidden} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        return (f"POST {first} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(smuggled)}\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n{smuggled}").encode()

    _hidden_request_refused(vhost, head)


def test_mod_wsgi_vhost_refuses_posing_header_names(vhost: Combo) -> None:
    """A '_' header name posing as a standard one: 400 with Connection: close (mod_setenvif and
    mod_rewrite in the vhost), as `serve --backend mod_wsgi` answers it."""
    prefix = vhost.target.prefix
    data, closed = _raw_exchange(vhost.front.address, (
        f"GET {prefix}/ HTTP/1.1\r\nHost: localhost\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n"
        f"GET {prefix}/ HTTP/1.1\r\nHost: localhost\r\n\r\n").encode())
    assert data.startswith(b"HTTP/1.1 400 "), data[:300]
    assert closed and data.count(b"HTTP/1.1 ") == 1, data


#: Another site on the same address and port, listed first: the address's default virtual host, as
#: Debian's 000-default.conf is for a site added to a system Apache.
OTHER_SITE = """
<VirtualHost 127.0.0.1:{port}>
    ServerName default.example
    DocumentRoot {work}
    <Directory {work}>
        Require all granted
    </Directory>
</VirtualHost>
"""


@pytest.fixture(scope="module", params=[pytest.param("root", id="mod_wsgi-vhost-second",
                                                     marks=pytest.mark.xdist_group("front-apache-vhost-second"))])
def second_vhost(request: pytest.FixtureRequest) -> Iterator[Combo]:
    """The generated mod_wsgi vhost included after another site on its address (not the default
    virtual host there): the server-wide hygiene must still apply to it."""
    require_backend("mod_wsgi")

    def files(work: Path, args: list[str]) -> list[str]:
        (work / "index.html").write_text("the other site\n")
        return ["--server-name", "app.example", *_wsgi_file(work, args)]

    yield from apache_combo(["--backend", "mod_wsgi", "--threads", "4", "--header-timeout", "2"], "", FRONT_EXPECT,
                            "apache-mod_wsgi-vhost-second", files=files, top=OTHER_SITE)


def test_second_vhost_keeps_the_server_wide_hygiene(second_vhost: Combo) -> None:
    """LoadModule, HttpProtocolOptions and RequestReadTimeout at server level reach a virtual host
    that is not the address's default: obs-fold and CL+TE refused, HTTP/0.9 refused, the head
    timed out after --header-timeout (Apache reads the head with the default virtual host)."""
    address = second_vhost.front.address
    data, _ = _raw_exchange(address, b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hello"), data[-300:]
    data, _ = _raw_exchange(address, b"GET / HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"the other site\n"), data[-300:]  # the other site is the default one
    _hidden_request_refused(second_vhost, lambda first, hidden: (
        f"GET {first} HTTP/1.1\r\nHost: app.example\r\nX-Folded: a\r\n\tb\r\n\r\n"
        f"GET {hidden} HTTP/1.1\r\nHost: app.example\r\n\r\n").encode(), host="app.example")
    _hidden_request_refused(second_vhost, lambda first, hidden: (
        f"POST {first} HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        f"0\r\n\r\nGET {hidden} HTTP/1.1\r\nHost: app.example\r\n\r\n").encode(), host="app.example")
    data, closed = _raw_exchange(address, b"GET /\r\n")
    assert data.startswith(b"HTTP/1.1 400 ") and closed, data[:300]
    started = time.monotonic()
    data, closed = _raw_exchange(address, b"GET / HTTP/1.1\r\nHost: app.example\r\n", timeout=10)
    assert closed and time.monotonic() - started < 5, (data[:300], time.monotonic() - started)


# ------------------------------------------------------------------------------- mod_wsgi-express


@pytest.fixture(scope="module", params=_params("mod_wsgi-express"))
def express(request: pytest.FixtureRequest) -> Iterator[Target]:
    """`serve --backend mod_wsgi`: the launcher runs Apache itself (mod_wsgi-express)."""
    require_backend("mod_wsgi")
    servers.require_readable_by_web_user(*servers.python_paths())
    prefix = PREFIXES[request.param]
    with workdir("wl-express-") as work:
        state = servers.state_dir(work)
        server = start_backend(["--backend", "mod_wsgi", "--bind", "127.0.0.1:0", *mount_args(prefix)], work, state)
        try:
            yield Target(address=server.address, prefix=prefix, expect=DIRECT_EXPECT,
                         label=f"mod_wsgi-express{prefix}")
        finally:
            server.stop()


@pytest.mark.parametrize("check", MOD_WSGI_CHECKS)
def test_mod_wsgi_express_contract(express: Target, check: Any) -> None:
    check(express)


# ------------------------------------------------------------------------------- CGI


def _cgi_script(work: Path, args: list[str]) -> list[str]:
    servers.serve_config("cgi-script", *args, CONTRACT_APP, "--output", str(work / "app.cgi"))
    return ["--script", str(work / "app.cgi")]


@pytest.fixture(scope="module", params=_params("cgi"))
def cgi(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("cgi")
    prefix = PREFIXES[request.param]
    # chunked_request is expected so its check runs (as an expected failure, see APACHE_CGI_CHECKS)
    yield from apache_combo(["--backend", "cgi"], prefix, FRONT_EXPECT | {"chunked_request"}, f"apache-cgi{prefix}",
                            files=_cgi_script)


# Apache's CGI modules read a request body only with a Content-Length: a chunked one gets 411
# Length Required or a broken response: its check is an expected failure.  And a CGI program is run_once.
APACHE_CGI_CHECKS = checks_with_limits({
    "environ_keys_and_types": "CGI is run_once by definition (PEP 3333: wsgi.run_once true)",
    "request_body_chunked": "Apache's mod_cgid gives a CGI program no chunked request body (no CONTENT_LENGTH) and"
                            " breaks the response off (AH00574)",
})


@pytest.mark.parametrize("check", APACHE_CGI_CHECKS)
def test_cgi_contract(cgi: Combo, check: Any) -> None:
    check(cgi.target)


def test_cgi_environ(cgi: Combo) -> None:
    check_cgi_environ(cgi.target)



# ------------------------------------------------------------------------------- FastCGI


@pytest.fixture(scope="module", params=_params("fastcgi"))
def fastcgi(request: pytest.FixtureRequest) -> Iterator[Combo]:
    """mod_proxy_fcgi to flup over a unix socket Apache's children (www-data) can write."""
    require_backend("fastcgi")
    prefix = PREFIXES[request.param]
    yield from apache_combo(["--backend", "fastcgi", "--bind", "unix:{work}/fcgi.sock", "--group", servers.WEB_USER],
                            prefix, FRONT_EXPECT | {"chunked_request"}, f"apache-fastcgi{prefix}", backend=True)


@pytest.mark.parametrize("check", checks_with_limits({}))
def test_fastcgi_contract(fastcgi: Combo, check: Any) -> None:
    check(fastcgi.target)
