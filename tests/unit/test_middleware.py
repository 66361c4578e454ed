"""Unit tests of launcher.middleware: wrapped apps called directly with hand-built environs."""

from __future__ import annotations

import gc
import io
import re
import sys
from types import SimpleNamespace
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from launcher.middleware import (
    DEFAULT_ACCESS_FORMAT,
    AccessLog,
    ProxyHeaders,
    RootPath,
    access_log_fields,
    wrap,
)

Environ = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def make_environ(path: str = "/", **extra: Any) -> Environ:
    """A complete PEP 3333 environ for ``path`` (a latin-1 "bytes in a str"), plus ``extra``."""
    environ: Environ = {"PATH_INFO": path, "SCRIPT_NAME": "", "REMOTE_ADDR": "127.0.0.1"}
    setup_testing_defaults(environ)
    environ.update(extra)
    return environ


class Recorder:
    """A server's start_response: records every call and the bytes passed to write()."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.written: list[bytes] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers, exc_info))
        return self.written.append


class SeenApp:
    """An app that remembers a copy of the environ it was called with."""

    def __init__(self, body: bytes = b"ok") -> None:
        self.environ: Environ = {}
        self.body = body

    def __call__(self, environ: Environ, start_response: Any) -> list[bytes]:
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [self.body]


class ClosingBody:
    """A streaming response iterable that counts close() calls."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = 0
        self.served = 0

    def __iter__(self) -> Any:
        for chunk in self.chunks:
            self.served += 1
            yield chunk

    def close(self) -> None:
        self.closed += 1


def run(app: Any, environ: Environ) -> tuple[Recorder, bytes]:
    """Drive ``app`` the way a server does: call, iterate, close."""
    recorder = Recorder()
    result = app(environ, recorder)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return recorder, b"".join(recorder.written) + body


def opts(**values: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "root_path": "",
        "proxy_headers": False,
        "forwarded_allow_ips": ("127.0.0.1", "::1"),
        "forwarded_host_header": "",
        "access_log": False,
        "access_log_format": DEFAULT_ACCESS_FORMAT,
    }
    base.update(values)
    return SimpleNamespace(**base)


# --------------------------------------------------------------------------- wrap


def test_wrap_returns_the_same_app_when_everything_is_off() -> None:
    app = SeenApp()
    assert wrap(app, opts()) is app
    assert wrap(app, SimpleNamespace()) is app  # missing attributes mean "off"
    assert wrap(app, opts(root_path="/")) is app  # "/" mounts nothing


def test_wrap_order_is_proxy_then_access_log_then_root_path() -> None:
    app = SeenApp()
    outer = wrap(app, opts(root_path="/app", proxy_headers=True, access_log=True))
    assert isinstance(outer, ProxyHeaders)
    assert isinstance(outer.app, AccessLog)
    assert isinstance(outer.app.app, RootPath)
    assert outer.app.app.app is app


def test_wrap_access_log_sees_the_proxy_fixed_client(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    app = SeenApp()
    options = opts(proxy_headers=True, access_log=True, access_log_format="{client} {path}", root_path="/app")
    wrapped = wrap(app, options)
    run(wrapped, make_environ("/app/x", HTTP_X_FORWARDED_FOR="203.0.113.9", REMOTE_ADDR="127.0.0.1"))
    assert stream.getvalue() == "203.0.113.9 /app/x\n"
    assert app.environ["SCRIPT_NAME"] == "/app"
    assert app.environ["PATH_INFO"] == "/x"


def test_wrap_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        wrap(SeenApp(), opts(root_path="app"))
    with pytest.raises(ValueError, match="'localhost'"):
        wrap(SeenApp(), opts(proxy_headers=True, forwarded_allow_ips=("localhost",)))
    with pytest.raises(ValueError, match=r"\{nope\}"):
        wrap(SeenApp(), opts(access_log=True, access_log_format="{nope}"))


# --------------------------------------------------------------------------- RootPath


@pytest.mark.parametrize(
    ("path", "script", "path_info"),
    [
        ("/yourapplication/x/y", "/yourapplication", "/x/y"),
        ("/yourapplication/", "/yourapplication", "/"),
        ("/yourapplication", "/yourapplication", ""),  # exactly the prefix
        ("/yourapplicationx", "/yourapplication", "/yourapplicationx"),  # not a segment boundary
        ("/x/y", "/yourapplication", "/x/y"),  # a front server already stripped it
        ("", "/yourapplication", ""),
    ],
)
def test_root_path_strips_on_segment_boundary(path: str, script: str, path_info: str) -> None:
    app = SeenApp()
    run(RootPath(app, "/yourapplication"), make_environ(path))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == (script, path_info)


def test_root_path_trailing_slash_is_dropped_and_joins_server_script_name() -> None:
    app = SeenApp()
    mounted = RootPath(app, "/yourapplication/")
    assert mounted.prefix == "/yourapplication"
    run(mounted, make_environ("/yourapplication/x", SCRIPT_NAME="/outer/"))
    assert app.environ["SCRIPT_NAME"] == "/outer/yourapplication"
    assert app.environ["PATH_INFO"] == "/x"


def test_root_path_is_not_doubled_when_script_name_already_has_it() -> None:
    app = SeenApp()
    run(RootPath(app, "/yourapplication"), make_environ("/x", SCRIPT_NAME="/yourapplication"))
    assert app.environ["SCRIPT_NAME"] == "/yourapplication"
    assert app.environ["PATH_INFO"] == "/x"


def test_root_path_utf8_prefix_matches_latin1_path_info() -> None:
    app = SeenApp()
    wire = "/café/menu".encode().decode("latin-1")  # how a server hands over /caf%C3%A9/menu
    run(RootPath(app, "/café"), make_environ(wire))
    assert app.environ["PATH_INFO"] == "/menu"
    assert app.environ["SCRIPT_NAME"] == "/café".encode().decode("latin-1")


def test_root_path_slash_alone_is_off() -> None:
    app = SeenApp()
    mounted = RootPath(app, "/")
    assert mounted.prefix == ""
    run(mounted, make_environ("/x", SCRIPT_NAME="/s"))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/s", "/x")


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("yourapplication", "must start with '/'"),
        ("/a//b", "empty, '.' or '..' segment"),
        ("/a/../b", "empty, '.' or '..' segment"),
        ("/a?x=1", "without '\\?' query"),
        ("/a\nb", "control character"),
        ("/my%20app", "decoded path"),
    ],
)
def test_root_path_rejects_bad_prefix(prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RootPath(SeenApp(), prefix)


# --------------------------------------------------------------------------- ProxyHeaders

FORWARDED = {
    "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_HOST": "example.com",
    "HTTP_X_FORWARDED_PORT": "8443",
    "HTTP_X_FORWARDED_PREFIX": "/yourapplication",
    "HTTP_FORWARDED": "for=203.0.113.7",
}


def test_proxy_headers_from_trusted_peer_are_applied() -> None:
    app = SeenApp()
    environ = make_environ("/x", REMOTE_ADDR="127.0.0.1", HTTP_HOST="backend:8000", SERVER_PORT="8000", **FORWARDED)
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    seen = app.environ
    assert seen["REMOTE_ADDR"] == "203.0.113.7"
    assert seen["wsgi.url_scheme"] == "https"
    assert seen["HTTP_HOST"] == "example.com:8443"
    assert seen["SERVER_NAME"] == "example.com"
    assert seen["SERVER_PORT"] == "8443"
    assert seen["SCRIPT_NAME"] == "/yourapplication"
    assert seen["PATH_INFO"] == "/x"
    orig = seen["launcher.proxy.orig"]
    assert orig["REMOTE_ADDR"] == "127.0.0.1"
    assert orig["wsgi.url_scheme"] == "http"
    assert orig["HTTP_HOST"] == "backend:8000"
    assert orig["SERVER_PORT"] == "8000"
    assert orig["SCRIPT_NAME"] == ""
    assert seen["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # a trusted proxy's headers stay readable


def test_proxy_host_without_port_gets_scheme_default_port() -> None:
    app = SeenApp()
    environ = make_environ(
        REMOTE_ADDR="127.0.0.1",
        SERVER_PORT="8000",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="example.com",
    )
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    assert (app.environ["HTTP_HOST"], app.environ["SERVER_PORT"]) == ("example.com", "443")


def test_proxy_default_port_is_left_out_of_host() -> None:
    app = SeenApp()
    environ = make_environ(
        REMOTE_ADDR="127.0.0.1",
        HTTP_HOST="example.com:8000",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_PORT="443",
    )
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    assert (app.environ["HTTP_HOST"], app.environ["SERVER_PORT"]) == ("example.com", "443")


def test_proxy_headers_from_untrusted_peer_are_stripped_spoofing() -> None:
    app = SeenApp()
    environ = make_environ(
        REMOTE_ADDR="198.51.100.20", HTTP_HOST="real.example", HTTP_X_FHOST="evil.example", **FORWARDED
    )
    run(ProxyHeaders(app, ["127.0.0.1", "10.0.0.0/8"], host_header="X-FHost"), environ)
    seen = app.environ
    assert seen["REMOTE_ADDR"] == "198.51.100.20"
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_HOST"] == "real.example"
    assert seen["SCRIPT_NAME"] == ""
    for key in (*FORWARDED, "HTTP_X_FHOST"):
        assert key not in seen, key
    assert "launcher.proxy.orig" not in seen


def test_proxy_right_most_untrusted_address_is_the_client() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 10.0.0.5, 127.0.0.1")
    run(ProxyHeaders(app, ["127.0.0.1", "10.0.0.0/8"]), environ)
    assert app.environ["REMOTE_ADDR"] == "1.2.3.4"


def test_proxy_client_cannot_prepend_a_fake_address() -> None:
    # The client sent "X-Forwarded-For: 6.6.6.6"; the proxy appended the address it saw.
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4")
    run(ProxyHeaders(app, ["10.0.0.0/8"]), environ)
    assert app.environ["REMOTE_ADDR"] == "198.51.100.4"


def test_proxy_all_hops_trusted_takes_left_most() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.9, 10.0.0.5")
    run(ProxyHeaders(app, ["127.0.0.1", "10.0.0.0/8"]), environ)
    assert app.environ["REMOTE_ADDR"] == "10.0.0.9"


def test_proxy_trust_all_takes_left_most() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8")
    run(ProxyHeaders(app, ["*"]), environ)
    assert app.environ["REMOTE_ADDR"] == "1.2.3.4"


def test_proxy_unknown_client_entry_keeps_remote_addr() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="unknown")
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    assert app.environ["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_cidr_membership() -> None:
    inside, outside = SeenApp(), SeenApp()
    run(ProxyHeaders(inside, ["10.0.0.0/8"]), make_environ(REMOTE_ADDR="10.200.3.4", HTTP_X_FORWARDED_FOR="1.1.1.1"))
    run(ProxyHeaders(outside, ["10.0.0.0/8"]), make_environ(REMOTE_ADDR="11.0.0.1", HTTP_X_FORWARDED_FOR="1.1.1.1"))
    assert inside.environ["REMOTE_ADDR"] == "1.1.1.1"
    assert outside.environ["REMOTE_ADDR"] == "11.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in outside.environ


def test_proxy_ipv6_peer_and_chain() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="::1", HTTP_X_FORWARDED_FOR="[2001:db8::7]:4711, fd00::2")
    run(ProxyHeaders(app, ["::1", "fd00::/8"]), environ)
    assert app.environ["REMOTE_ADDR"] == "2001:db8::7"


def test_proxy_ipv4_mapped_peer_matches_ipv4_entry() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="::ffff:127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4:5555")
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    assert app.environ["REMOTE_ADDR"] == "1.2.3.4"


@pytest.mark.parametrize("remote", ["", None, "/run/app.sock"])
def test_proxy_unix_peer_trusted_only_with_unix(remote: str | None) -> None:
    def environ() -> Environ:
        env = make_environ(HTTP_X_FORWARDED_FOR="1.2.3.4")
        if remote is None:
            del env["REMOTE_ADDR"]
        else:
            env["REMOTE_ADDR"] = remote
        return env

    plain, unix = SeenApp(), SeenApp()
    run(ProxyHeaders(plain, ["127.0.0.1"]), environ())
    run(ProxyHeaders(unix, ["127.0.0.1", "unix"]), environ())
    assert "HTTP_X_FORWARDED_FOR" not in plain.environ
    assert plain.environ.get("REMOTE_ADDR") == remote
    assert unix.environ["REMOTE_ADDR"] == "1.2.3.4"


def test_proxy_custom_host_header_trusted_wins_over_forwarded_host() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="127.0.0.1", HTTP_X_FHOST="front.example", HTTP_X_FORWARDED_HOST="other.example")
    run(ProxyHeaders(app, ["127.0.0.1"], host_header="X-FHost"), environ)
    assert app.environ["HTTP_HOST"] == "front.example"
    assert app.environ["SERVER_NAME"] == "front.example"


def test_proxy_custom_host_header_untrusted_is_stripped() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="192.0.2.50", HTTP_HOST="real.example", HTTP_X_FHOST="evil.example")
    run(ProxyHeaders(app, ["127.0.0.1"], host_header="X-FHost"), environ)
    assert app.environ["HTTP_HOST"] == "real.example"
    assert "HTTP_X_FHOST" not in app.environ


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_FORWARDED_PROTO": "javascript"},
        {"HTTP_X_FORWARDED_HOST": "evil.example/path"},
        {"HTTP_X_FORWARDED_HOST": "a b"},
        {"HTTP_X_FORWARDED_HOST": "user@evil.example"},
        {"HTTP_X_FORWARDED_HOST": "evil\r\n.example"},
        {"HTTP_X_FORWARDED_PORT": "80a"},
        {"HTTP_X_FORWARDED_PORT": "70000"},
        {"HTTP_X_FORWARDED_PREFIX": "no-slash"},
    ],
)
def test_proxy_invalid_values_are_ignored(headers: dict[str, str]) -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="127.0.0.1", HTTP_HOST="real.example:8000", SERVER_PORT="8000", **headers)
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    seen = app.environ
    assert (seen["wsgi.url_scheme"], seen["HTTP_HOST"], seen["SERVER_PORT"], seen["SCRIPT_NAME"]) == (
        "http",
        "real.example:8000",
        "8000",
        "",
    )
    assert seen["launcher.proxy.orig"] == {}


def test_proxy_right_most_value_of_comma_lists() -> None:
    app = SeenApp()
    environ = make_environ(
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_PROTO="http, https",
        HTTP_X_FORWARDED_HOST="client-made.example, proxy.example",
    )
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    assert app.environ["wsgi.url_scheme"] == "https"
    assert app.environ["HTTP_HOST"] == "proxy.example"


def test_proxy_prefix_is_decoded_and_prepended() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="127.0.0.1", SCRIPT_NAME="/inner", HTTP_X_FORWARDED_PREFIX="/my%20app/")
    run(ProxyHeaders(app, ["127.0.0.1"]), environ)
    assert app.environ["SCRIPT_NAME"] == "/my app/inner"


def test_proxy_trusted_list_as_comma_string() -> None:
    app = SeenApp()
    environ = make_environ(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    run(ProxyHeaders(app, "127.0.0.1, 10.0.0.0/8"), environ)
    assert app.environ["REMOTE_ADDR"] == "1.2.3.4"


def test_proxy_bad_entries_are_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        ProxyHeaders(SeenApp(), ["127.0.0.1", "10.0.0.0/33"])
    with pytest.raises(ValueError, match="header name"):
        ProxyHeaders(SeenApp(), ["127.0.0.1"], host_header="X FHost")


# --------------------------------------------------------------------------- AccessLog

CLF_TIME = re.compile(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$")


def fields_format() -> str:
    return "|".join(f"{{{name}}}" for name in access_log_fields())


def log_fields(stream: io.StringIO) -> dict[str, str]:
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return dict(zip(access_log_fields(), lines[0].split("|"), strict=True))


def test_access_log_fields_list() -> None:
    assert access_log_fields() == (
        "client",
        "time",
        "method",
        "path",
        "query",
        "protocol",
        "status",
        "size",
        "referer",
        "user_agent",
        "duration_ms",
        "pid",
    )


def test_access_log_default_format_line() -> None:
    stream = io.StringIO()
    environ = make_environ(
        "/a b",
        REMOTE_ADDR="192.0.2.5",
        QUERY_STRING="q=1",
        HTTP_REFERER="http://ref.example/",
        HTTP_USER_AGENT='curl/8 "quoted"',
    )
    run(AccessLog(SeenApp(b"hello"), stream=stream), environ)
    line = stream.getvalue()
    pattern = (
        r'^192\.0\.2\.5 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /a%20b\?q=1 HTTP/1\.0" 200 5 '
        r'"http://ref\.example/" "curl/8 \\"quoted\\"" \d+\.\dms\n$'
    )
    assert re.match(pattern, line), line


def test_access_log_field_values_and_streamed_size() -> None:
    stream = io.StringIO()
    body = ClosingBody([b"abc", b"", b"defgh"])

    def app(environ: Environ, start_response: Any) -> ClosingBody:
        start_response("404 Not Found", [])
        return body

    environ = make_environ("/p", REQUEST_METHOD="POST", SERVER_PROTOCOL="HTTP/1.1", REMOTE_ADDR="10.9.8.7")
    environ["REQUEST_URI"] = "/raw%2Fpath?x=%41"
    _, sent = run(AccessLog(app, fields_format(), stream), environ)
    assert sent == b"abcdefgh"
    got = log_fields(stream)
    assert got["client"] == "10.9.8.7"
    assert CLF_TIME.match(got["time"]), got["time"]
    assert got["method"] == "POST"
    assert got["path"] == "/raw%2Fpath?x=%41"  # the server's raw URI wins
    assert got["protocol"] == "HTTP/1.1"
    assert got["status"] == "404"
    assert got["size"] == "8"
    assert (got["referer"], got["user_agent"]) == ("-", "-")
    assert re.fullmatch(r"\d+\.\d", got["duration_ms"]), got["duration_ms"]
    assert got["pid"].isdigit()


def test_access_log_is_written_at_close_not_before() -> None:
    stream = io.StringIO()
    body = ClosingBody([b"a", b"b"])

    def app(environ: Environ, start_response: Any) -> ClosingBody:
        start_response("200 OK", [])
        return body

    result: Any = AccessLog(app, "{status} {size}", stream)(make_environ(), Recorder())
    it = iter(result)
    assert next(it) == b"a"
    assert body.served == 1  # streamed: nothing read ahead
    assert list(it) == [b"b"]
    assert stream.getvalue() == ""
    result.close()
    assert stream.getvalue() == "200 2\n"


def test_access_log_closes_inner_iterable_exactly_once() -> None:
    stream = io.StringIO()
    body = ClosingBody([b"x"])

    def app(environ: Environ, start_response: Any) -> ClosingBody:
        start_response("200 OK", [])
        return body

    result: Any = AccessLog(app, "{status}", stream)(make_environ(), Recorder())
    list(result)
    result.close()
    result.close()  # a sloppy server closing twice
    assert body.closed == 1
    assert stream.getvalue() == "200\n"


def test_access_log_closes_when_server_closes_without_iterating() -> None:
    stream = io.StringIO()
    body = ClosingBody([b"x"])

    def app(environ: Environ, start_response: Any) -> ClosingBody:
        start_response("200 OK", [])
        return body

    result: Any = AccessLog(app, "{status} {size}", stream)(make_environ(), Recorder())
    result.close()
    assert body.closed == 1
    assert stream.getvalue() == "200 0\n"


def test_access_log_falls_back_to_garbage_collection_without_close() -> None:
    stream = io.StringIO()
    result: Any = AccessLog(SeenApp(b"abc"), "{status} {size}", stream)(make_environ(), Recorder())
    assert list(result) == [b"abc"]
    assert stream.getvalue() == ""
    del result
    gc.collect()
    assert stream.getvalue() == "200 3\n"


def test_access_log_keeps_len_of_list_responses() -> None:
    result: Any = AccessLog(SeenApp(b"abc"), "{status}", io.StringIO())(make_environ(), Recorder())
    assert len(result) == 1
    result.close()


def test_access_log_passes_exc_info_through() -> None:
    stream = io.StringIO()
    error = RuntimeError("boom")

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise error
        except RuntimeError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"err"]

    recorder, _ = run(AccessLog(app, "{status} {size}", stream), make_environ())
    assert len(recorder.calls) == 2
    assert recorder.calls[0][2] is None
    status, headers, exc_info = recorder.calls[1]
    assert status == "500 Internal Server Error"
    assert headers == [("Content-Type", "text/plain")]
    assert exc_info is not None
    assert exc_info[1] is error
    assert stream.getvalue() == "500 3\n"


def test_access_log_write_callable_is_passed_through_and_counted() -> None:
    stream = io.StringIO()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"hello ")
        write(b"world")
        return [b"!"]

    recorder, sent = run(AccessLog(app, "{status} {size}", stream), make_environ())
    assert recorder.written == [b"hello ", b"world"]
    assert sent == b"hello world!"
    assert stream.getvalue() == "200 12\n"


def test_access_log_app_raising_is_logged_as_500_and_reraised() -> None:
    stream = io.StringIO()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        raise ValueError("app bug")

    with pytest.raises(ValueError, match="app bug"):
        AccessLog(app, "{status} {size}", stream)(make_environ(), Recorder())
    assert stream.getvalue() == "500 0\n"


def test_access_log_iteration_error_closes_and_logs() -> None:
    stream = io.StringIO()

    class Failing(ClosingBody):
        def __iter__(self) -> Any:
            yield b"part"
            raise OSError("disk gone")

    body = Failing([])

    def app(environ: Environ, start_response: Any) -> Failing:
        start_response("200 OK", [])
        return body

    with pytest.raises(OSError, match="disk gone"):
        run(AccessLog(app, "{status} {size}", stream), make_environ())
    assert body.closed == 1
    assert stream.getvalue() == "200 4\n"  # headers were out: the status stays what was sent


def test_access_log_lazy_start_response_in_first_iteration() -> None:
    stream = io.StringIO()

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("201 Created", [])  # runs only when the server iterates
        yield b"made"

    run(AccessLog(app, "{status} {size}", stream), make_environ())
    assert stream.getvalue() == "201 4\n"


def test_access_log_path_quoted_without_raw_uri_and_logged_before_root_path() -> None:
    stream = io.StringIO()
    app = wrap(SeenApp(), opts(access_log=True, access_log_format="{path}", root_path="/app"))
    environ = make_environ("/app/caf\xc3\xa9", QUERY_STRING="a=1")
    environ.pop("REQUEST_URI", None)
    environ.pop("RAW_URI", None)
    assert isinstance(app, AccessLog)
    app.stream = stream
    run(app, environ)
    assert stream.getvalue() == "/app/caf%C3%A9?a=1\n"


def test_access_log_escapes_control_characters() -> None:
    stream = io.StringIO()
    run(AccessLog(SeenApp(), "{user_agent}", stream), make_environ(HTTP_USER_AGENT="a\nb\\c"))
    assert stream.getvalue() == "a\\x0ab\\\\c\n"


def test_access_log_stream_none_uses_stderr_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    log = AccessLog(SeenApp(), "{status}")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    run(log, make_environ())
    assert stream.getvalue() == "200\n"


def test_access_log_broken_stream_never_breaks_the_response() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("stream closed")

    recorder, sent = run(AccessLog(SeenApp(b"fine"), "{status}", Broken()), make_environ())
    assert sent == b"fine"
    assert recorder.calls[0][0] == "200 OK"


@pytest.mark.parametrize("fmt", ["{client} {nope}", "{status:{width}}"])
def test_access_log_unknown_field_is_named(fmt: str) -> None:
    with pytest.raises(ValueError, match=r"unknown access log field \{(nope|width)\}") as info:
        AccessLog(SeenApp(), fmt)
    assert "valid fields: client, time," in str(info.value)


@pytest.mark.parametrize("fmt", ["{", "{0}", "{} x", "{status:%}x{client:d}"])
def test_access_log_malformed_format_is_rejected(fmt: str) -> None:
    with pytest.raises(ValueError, match="access log format"):
        AccessLog(SeenApp(), fmt)


def test_access_log_format_specs_apply() -> None:
    stream = io.StringIO()
    run(AccessLog(SeenApp(), "[{status:>5}] {duration_ms:.0f}", stream), make_environ())
    assert re.fullmatch(r"\[  200\] \d+\n", stream.getvalue())
