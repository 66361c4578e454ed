"""WSGI middleware the launcher wraps around the user's app when an option asks for it.

:func:`wrap` is the only entry point the launcher uses.  With no option set it returns the app
itself, so an unconfigured server pays nothing per request.  Otherwise the stack is, outermost
first::

    ProxyHeaders -> AccessLog -> RootPath -> app

* :class:`ProxyHeaders` runs first so that everything inside it -- the access log included --
  sees the real client address and scheme, and so that headers a direct (untrusted) client forged
  are removed before anyone can read them.
* :class:`AccessLog` sits outside :class:`RootPath` so that, when the server gives no raw request
  URI, the logged path is the one the request arrived with, not the app-relative one.
* :class:`RootPath` is innermost so that it sees the SCRIPT_NAME a trusted proxy's
  X-Forwarded-Prefix produced, and does not add the same prefix twice.

Every class is strict PEP 3333 middleware: the response iterable's ``close()`` is called exactly
once, streamed bodies are passed on chunk by chunk, ``exc_info`` reaches the server's
``start_response`` untouched and the ``write`` callable keeps working.  Middleware edits the
``environ`` dict in place (as PEP 3333 allows), which is why :class:`AccessLog` copies what it
logs when the request starts.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time

# Not `from typing import TYPE_CHECKING`: this module is imported on every server start, and the
# names below are only needed by the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, TextIO, TypeAlias

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    WSGIApp: TypeAlias = WSGIApplication
    _IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
    _IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"

__all__ = [
    "DEFAULT_ACCESS_FORMAT",
    "AccessLog",
    "BodyLimit",
    "ProxyHeaders",
    "RequestBodyTooLarge",
    "RootPath",
    "access_log_fields",
    "wrap",
]

#: The access-log line used when no format is configured: Apache's "combined" layout plus the time
#: the request took.  Kept identical to ``launcher.options.DEFAULT_ACCESS_LOG_FORMAT``.
DEFAULT_ACCESS_FORMAT = (
    '{client} - - [{time}] "{method} {path} {protocol}" {status} {size} "{referer}" "{user_agent}" {duration_ms}ms'
)


def wrap(app: WSGIApp, opts: Any, *, health: bool = True) -> WSGIApp:
    """Wrap ``app`` in the middleware ``opts`` asks for; return ``app`` itself when it asks for none.

    Reads ``root_path``, ``proxy_headers``, ``forwarded_allow_ips``, ``forwarded_host_header``,
    ``access_log`` and ``access_log_format`` from ``opts`` (a missing attribute counts as "off").
    ``forwarded_host_header`` and ``forwarded_allow_ips`` only matter with ``proxy_headers`` on;
    an empty ``access_log_format`` means :data:`DEFAULT_ACCESS_FORMAT`; a ``root_path`` of ``""``
    or ``"/"`` means no mount point.  Raises :class:`ValueError` for a bad root path, trusted-proxy
    entry, host header name or log format.
    """
    wrapped = app
    root_path = getattr(opts, "root_path", "") or ""
    if root_path:
        mounted = RootPath(wrapped, root_path)
        if mounted.prefix:  # "/" validates but mounts nothing: keep the zero-cost path
            wrapped = mounted
    if getattr(opts, "access_log", False):
        wrapped = AccessLog(wrapped, getattr(opts, "access_log_format", "") or DEFAULT_ACCESS_FORMAT,
                            json_lines=getattr(opts, "log_format", "text") == "json")
    # Outermost, see the module docstring: the access log must see the fixed client address.
    if getattr(opts, "proxy_headers", False):
        wrapped = ProxyHeaders(
            wrapped,
            getattr(opts, "forwarded_allow_ips", None) or (),
            getattr(opts, "forwarded_host_header", "") or "",
        )
    health_path = getattr(opts, "health_path", "") or ""
    if health_path and health:
        # Outermost of all: a load balancer's probe is never logged, rewritten or sent to the app.
        wrapped = Health(wrapped, health_path)
    return wrapped


class Health:
    """Answer ``path`` without calling the app: 200 "ready", then 503 "draining" once this process
    is stopping, so a load balancer stops sending before the server stops accepting."""

    def __init__(self, app: WSGIApp, path: str) -> None:
        from launcher.drain import draining

        self.app = app
        self.path = path
        self.draining = draining

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = (environ.get("SCRIPT_NAME", "") or "") + (environ.get("PATH_INFO", "") or "")
        if path != self.path:
            return self.app(environ, start_response)
        if self.draining.is_set():
            status, body = "503 Service Unavailable", b"draining\n"
        else:
            status, body = "200 OK", b"ready\n"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


# --------------------------------------------------------------------------- helpers


def _wsgi_str(text: str) -> str:
    """``text`` as PEP 3333 stores paths and headers: its UTF-8 bytes, each byte one latin-1 char."""
    return text.encode("utf-8").decode("latin-1")


def _has_control(text: str) -> bool:
    """True when ``text`` holds an ASCII or C1 control character (never valid in a path or host)."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _last_item(value: str | None) -> str:
    """The right-most item of a comma-separated header value: the one the nearest proxy added.

    Proxies append to these headers, and a server joins repeated header lines with commas, so
    only the last item comes from the proxy we trust; anything left of it may be client-made.
    """
    if not value:
        return ""
    return value.rpartition(",")[2].strip()


def _parse_ip(text: str) -> _IPAddress | None:
    """Parse one address as peers and X-Forwarded-For write them; None when it is not an IP.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]`` and ``[::1]:5678``.  A zone id
    (``fe80::1%eth0``) is dropped and an IPv4-mapped IPv6 address becomes its IPv4 address, so that
    a dual-stack socket's ``::ffff:127.0.0.1`` matches a trusted ``127.0.0.1``.
    """
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has at least two colons
        text = text.partition(":")[0]
    text = text.partition("%")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _split_host(host: str) -> tuple[str, str] | None:
    """Split a validated-looking ``Host`` value into (name, port); port is "" when absent.

    Returns None unless the value is a DNS-style name or a bracketed IPv6 literal, optionally with
    a numeric port.  Deliberately strict (like Django's host check): the value ends up in URLs the
    app builds, so spaces, slashes, ``@``, quotes and control characters are refused outright.
    """
    if not host or len(host) > 260:
        return None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[: end + 1], host[end + 1 :]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
        if rest and not _valid_port(port):
            return None
        return name, port
    name, colon, port = host.partition(":")
    if not name or not set(name) <= _HOST_CHARS:
        return None
    if colon and not _valid_port(port):
        return None
    return name, port


def _valid_port(port: str) -> bool:
    """True for a decimal port 1-65535 written in ASCII digits only."""
    return port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) <= 65535


_DEFAULT_PORT = {"http": "80", "https": "443"}


# --------------------------------------------------------------------------- RootPath


class RootPath:
    """Mount ``app`` under a URL prefix, as a front server's ``SCRIPT_NAME`` setting would.

    For prefix ``/yourapplication``: SCRIPT_NAME becomes the server's SCRIPT_NAME (trailing slash
    removed) plus the prefix -- unless it already ends with the prefix, e.g. because mod_wsgi's
    mount point or a trusted X-Forwarded-Prefix set it, in which case it is not doubled.  PATH_INFO
    loses the prefix when it starts with it on a segment boundary (``/yourapplication`` and
    ``/yourapplication/x`` match, ``/yourapplicationx`` does not); otherwise it is left alone, as a
    front server that already stripped the prefix intends.  Exactly the prefix gives PATH_INFO "".

    ``prefix`` is a decoded path (``/my app``, ``/café``), like PATH_INFO itself; it is compared in
    PEP 3333's latin-1-of-UTF-8 form.  A trailing ``/`` is dropped; ``""`` or ``"/"`` mounts
    nothing.  Raises :class:`ValueError` for a prefix that does not start with ``/`` or holds
    control characters, ``?``, ``#``, a ``%XX`` escape, or empty, ``.`` or ``..`` segments.
    """

    def __init__(self, app: WSGIApp, prefix: str) -> None:
        self.app = app
        #: the normalised prefix as given (no trailing slash); "" when nothing is mounted
        self.prefix = _check_root_path(prefix)
        self._wire = _wsgi_str(self.prefix)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Fix SCRIPT_NAME and PATH_INFO in ``environ``, then call the app."""
        wire = self._wire
        if wire:
            path = environ.get("PATH_INFO") or ""
            if path == wire:
                environ["PATH_INFO"] = ""
            elif path.startswith(wire) and path[len(wire)] == "/":
                environ["PATH_INFO"] = path[len(wire) :]
            script = (environ.get("SCRIPT_NAME") or "").rstrip("/")
            # `wire` starts with "/", so endswith() can only match on a segment boundary.
            if not script.endswith(wire):
                script += wire
            environ["SCRIPT_NAME"] = script
        return self.app(environ, start_response)


def _check_root_path(prefix: str) -> str:
    """Validate a mount prefix; return it without trailing slashes ("" for none)."""
    if not isinstance(prefix, str):
        raise TypeError(f"root path must be a str, not {type(prefix).__name__}")
    if prefix == "":
        return ""
    if not prefix.startswith("/"):
        raise ValueError(f"root path {prefix!r} must start with '/', e.g. '/yourapplication'")
    if _has_control(prefix):
        raise ValueError(f"root path {prefix!r} contains a control character")
    if "?" in prefix or "#" in prefix:
        raise ValueError(f"root path {prefix!r} must be a path only, without '?' query or '#' fragment")
    stripped = prefix.rstrip("/")
    segments = stripped.split("/")[1:]
    if any(seg in ("", ".", "..") for seg in segments):
        raise ValueError(f"root path {prefix!r} has an empty, '.' or '..' segment")
    for i, ch in enumerate(stripped):
        # PATH_INFO arrives percent-decoded; an encoded prefix would silently never match it.
        if ch == "%" and len(stripped) >= i + 3 and all(c in "0123456789abcdefABCDEF" for c in stripped[i + 1 : i + 3]):
            raise ValueError(
                f"root path {prefix!r} contains the escape {stripped[i : i + 3]!r}: give the decoded path"
                " (e.g. '/my app', not '/my%20app')"
            )
    return stripped


# --------------------------------------------------------------------------- ProxyHeaders

_FORWARDED_KEYS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_FORWARDED",
)

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ProxyHeaders:
    """Apply X-Forwarded-* headers, but only those sent by a trusted proxy.

    Unlike werkzeug's ProxyFix, which trusts a fixed number of hops and never looks at who is
    connected, the peer (REMOTE_ADDR) must be in ``trusted`` -- uvicorn's rule.  Otherwise a client
    talking to the server directly could claim any address or scheme.

    ``trusted`` holds IP addresses and CIDR networks (IPv4-mapped IPv6 peers match their IPv4
    form), ``"*"`` to trust every peer, and ``"unix"`` to trust peers without an IP address (a unix
    socket: REMOTE_ADDR empty, missing or not an IP).  A non-IP peer is trusted only with ``"*"``
    or ``"unix"`` listed.  A single comma-separated string is accepted too.

    From a trusted peer:

    * X-Forwarded-For: REMOTE_ADDR becomes the right-most address that is not a trusted proxy
      (all trusted: the left-most).  When that entry is not an IP (``unknown``), REMOTE_ADDR stays.
    * X-Forwarded-Proto: ``wsgi.url_scheme``, if ``http`` or ``https``.
    * ``host_header`` if set and valid, else X-Forwarded-Host: HTTP_HOST, SERVER_NAME and
      SERVER_PORT (the scheme's default port when the host names none).  Values that are not a
      plain host name or ``[IPv6]`` literal with an optional port are ignored.
    * X-Forwarded-Port: SERVER_PORT, and the port in HTTP_HOST (left out when it is the scheme's
      default).
    * X-Forwarded-Prefix: percent-decoded, prepended to SCRIPT_NAME; must start with ``/``.

    Proto/Host/Port/Prefix use the right-most item of a comma list (the nearest proxy's).  The
    original values of every changed key are kept in ``environ["launcher.proxy.orig"]`` (None for
    a key that was absent); that key is set, possibly to ``{}``, exactly when the peer is trusted.

    From an untrusted peer the forwarded headers (X-Forwarded-*, Forwarded and ``host_header``)
    are deleted from environ, so the app cannot be fooled by reading them itself.

    Raises :class:`ValueError` naming the entry for a ``trusted`` entry that is none of the above,
    and for a ``host_header`` that is not a valid header name.
    """

    def __init__(self, app: WSGIApp, trusted: Iterable[str], host_header: str = "") -> None:
        self.app = app
        self._trust_all = False
        self._trust_unix = False
        networks: list[_IPNetwork] = []
        entries = trusted.split(",") if isinstance(trusted, str) else list(trusted)
        for raw in entries:
            entry = str(raw).strip()
            if not entry:
                continue
            if entry == "*":
                self._trust_all = True
            elif entry.lower() == "unix":
                self._trust_unix = True
            else:
                networks.append(_parse_network(entry))
        self._networks = tuple(networks)
        self._host_key = ""
        if host_header:
            name = host_header.strip()
            if not name or not set(name) <= _TOKEN_CHARS:
                raise ValueError(f"forwarded host header {host_header!r} is not a valid HTTP header name")
            self._host_key = "HTTP_" + name.upper().replace("-", "_")
        self._strip_keys = _FORWARDED_KEYS + ((self._host_key,) if self._host_key else ())
        # A server sees few distinct peers (its proxies), so remembering the verdict per
        # REMOTE_ADDR string saves parsing it on every request.  Bounded against address churn.
        self._peer_cache: dict[str, bool] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Apply or strip the forwarded headers in ``environ``, then call the app."""
        if self._peer_trusted(environ.get("REMOTE_ADDR")):
            self._apply(environ)
        else:
            for key in self._strip_keys:
                environ.pop(key, None)
        return self.app(environ, start_response)

    def _is_trusted_ip(self, addr: _IPAddress) -> bool:
        return self._trust_all or any(addr in net for net in self._networks)

    def _peer_trusted(self, remote: Any) -> bool:
        if self._trust_all:
            return True
        key = remote if isinstance(remote, str) else ""
        verdict = self._peer_cache.get(key)
        if verdict is None:
            addr = _parse_ip(key) if key else None
            verdict = self._trust_unix if addr is None else self._is_trusted_ip(addr)
            if len(self._peer_cache) >= 1024:
                self._peer_cache.clear()
            self._peer_cache[key] = verdict
        return verdict

    def _client_from_xff(self, value: str) -> str | None:
        """The client address X-Forwarded-For names, or None when it names no usable IP."""
        entries = [item.strip() for item in value.split(",")]
        entries = [item for item in entries if item]
        if not entries:
            return None
        if not self._trust_all:
            # Walk from the nearest hop outwards: every trusted proxy appended the address it saw,
            # so the first address that is not one of ours is the furthest we can vouch for.
            for item in reversed(entries):
                addr = _parse_ip(item)
                if addr is None:
                    return None  # an untrusted hop we cannot name ("unknown", garbage)
                if not self._is_trusted_ip(addr):
                    return str(addr)
        addr = _parse_ip(entries[0])
        return None if addr is None else str(addr)

    def _apply(self, environ: WSGIEnvironment) -> None:
        orig: dict[str, Any] = {}

        def put(key: str, value: str) -> None:
            if environ.get(key) == value:
                return
            if key not in orig:
                orig[key] = environ.get(key)
            environ[key] = value

        xff = environ.get("HTTP_X_FORWARDED_FOR")
        if xff:
            client = self._client_from_xff(xff)
            if client is not None:
                put("REMOTE_ADDR", client)

        proto = _last_item(environ.get("HTTP_X_FORWARDED_PROTO")).lower()
        if proto in ("http", "https"):
            put("wsgi.url_scheme", proto)
        scheme = str(environ.get("wsgi.url_scheme") or "http")

        host = None
        if self._host_key:
            host = _split_host(_last_item(environ.get(self._host_key)))
        if host is None:
            host = _split_host(_last_item(environ.get("HTTP_X_FORWARDED_HOST")))
        if host is not None:
            name, port = host
            put("HTTP_HOST", f"{name}:{port}" if port else name)
            put("SERVER_NAME", name)
            put("SERVER_PORT", port or _DEFAULT_PORT.get(scheme, "80"))

        port = _last_item(environ.get("HTTP_X_FORWARDED_PORT"))
        if _valid_port(port):
            port = str(int(port))
            put("SERVER_PORT", port)
            current = _split_host(environ.get("HTTP_HOST") or "")
            if current is not None:
                name = current[0]
                put("HTTP_HOST", name if _DEFAULT_PORT.get(scheme) == port else f"{name}:{port}")

        prefix = _forwarded_prefix(_last_item(environ.get("HTTP_X_FORWARDED_PREFIX")))
        if prefix:
            put("SCRIPT_NAME", prefix + (environ.get("SCRIPT_NAME") or "").rstrip("/"))

        environ["launcher.proxy.orig"] = orig


def _parse_network(entry: str) -> _IPNetwork:
    """Parse one trusted-proxy entry (address or CIDR) into a network, naming it on error."""
    try:
        # strict=False like the option check in launcher.options: "10.0.0.5/8" means 10.0.0.0/8.
        net = ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        raise ValueError(
            f"trusted proxy entry {entry!r} is not an IP address, a CIDR network, '*' or 'unix'"
            " (e.g. 127.0.0.1, ::1, 10.0.0.0/8)"
        ) from None
    if isinstance(net, ipaddress.IPv6Network):
        mapped = net.network_address.ipv4_mapped
        if mapped is not None and net.prefixlen >= 96:
            # Peers are compared in IPv4 form (see _parse_ip), so store ::ffff:a.b.c.d/n that way.
            return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _forwarded_prefix(value: str) -> str:
    """X-Forwarded-Prefix as a SCRIPT_NAME fragment (decoded, no trailing slash); "" if unusable."""
    if not value.startswith("/") or _has_control(value) or any(ch in value for ch in " ?#\\"):
        return ""
    from urllib.parse import unquote_to_bytes

    # SCRIPT_NAME is percent-decoded bytes-as-latin-1; proxies may send the prefix either raw or
    # URL-encoded, and decoding both ways lands on the same SCRIPT_NAME.
    try:
        decoded = unquote_to_bytes(value.encode("latin-1")).decode("latin-1")
    except UnicodeEncodeError:  # a server that broke PEP 3333 and handed us non-latin-1 text
        return ""
    if _has_control(decoded):
        return ""
    return decoded.rstrip("/")


# --------------------------------------------------------------------------- BodyLimit


class RequestBodyTooLarge(ValueError):
    """Raised by ``wsgi.input`` under :class:`BodyLimit` once the body passes the limit."""


class BodyLimit:
    """``--limit-request-body`` for a server that has no body limit of its own (not wired by
    :func:`wrap`: a backend whose server cannot refuse a large body wraps its app with it).

    A Content-Length above ``limit`` is answered 413 without calling the app.  A body of unknown
    length (chunked) is read through a stream that never hands out more than ``limit`` bytes: the
    read that would pass it raises :class:`RequestBodyTooLarge`, which becomes a 413 when the app
    lets it through before starting its response.  The 413 says ``Connection: close``; the unread
    rest of the body is the server's to discard or to drop with the connection.  ``limit`` 0 means
    no limit (the app is returned unwrapped by :meth:`wrap`).
    """

    def __init__(self, app: WSGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    @classmethod
    def wrap(cls, app: WSGIApp, limit: int) -> WSGIApp:
        return cls(app, limit) if limit > 0 else app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = str(environ.get("CONTENT_LENGTH") or "").strip()
        if length.isdigit():
            if int(length) > self.limit:
                return self._refuse(start_response)
            return self.app(environ, start_response)
        stream = environ.get("wsgi.input")
        if stream is None:
            return self.app(environ, start_response)
        environ["wsgi.input"] = _LimitedInput(stream, self.limit)
        started = False

        def watching_start_response(status: str, headers: list[tuple[str, str]],
                                    exc_info: OptExcInfo | None = None, /) -> Callable[[bytes], object]:
            nonlocal started
            started = True
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, watching_start_response)
        except RequestBodyTooLarge:
            if started:
                raise
            return self._refuse(start_response)

    def _refuse(self, start_response: StartResponse) -> Iterable[bytes]:
        body = b"413 Content Too Large\n"
        start_response("413 Content Too Large", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                                  ("Connection", "close")])
        return [body]


class _LimitedInput:
    """A request body stream that raises instead of passing ``limit`` bytes (and never buffers past
    it: every read asks the server for at most one byte more than is left)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def _check(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            raise RequestBodyTooLarge("request body beyond --limit-request-body")
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts: list[bytes] = []
            while True:
                chunk = self.read(65536)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        return self._check(self._stream.read(min(size, self._left + 1)))

    def readline(self, size: int | None = -1) -> bytes:
        cap = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._check(self._stream.readline(cap))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


# --------------------------------------------------------------------------- AccessLog

_FIELDS: tuple[str, ...] = (
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

_SAMPLE: dict[str, object] = {
    "client": "127.0.0.1",
    "time": "10/Oct/2000:13:55:36 +0000",
    "method": "GET",
    "path": "/index.html?x=1",
    "query": "x=1",
    "protocol": "HTTP/1.1",
    "status": 200,
    "size": 2326,
    "referer": "-",
    "user_agent": "-",
    "duration_ms": 1.5,
    "pid": 1,
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Apache's escaping for logged strings: quotes and backslashes escaped, and every byte outside
# printable ASCII written as \xHH, so a header cannot forge a second log line or break quoting.
_ESCAPES: dict[int, str] = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0x100))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"

_PATH_SAFE = "/:@!$&'()*+,;=~"


def access_log_fields() -> tuple[str, ...]:
    """The field names an access-log format may use, in documentation order."""
    return _FIELDS


def _clf_time(epoch: float) -> str:
    """``10/Oct/2000:13:55:36 +0000``: Common Log Format time in UTC, English month names.

    Built by hand rather than with strftime("%b"), which follows the process locale.
    """
    tm = time.gmtime(epoch)
    return (
        f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}"
        f":{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000"
    )


def _esc(value: str) -> str:
    return value.translate(_ESCAPES)


def _request_path(environ: WSGIEnvironment) -> str:
    """The request target to log: the server's raw URI if it gives one, else a re-quoted path."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        return str(raw)
    from urllib.parse import quote

    path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")
    try:
        quoted = quote(path.encode("latin-1"), safe=_PATH_SAFE)
    except UnicodeEncodeError:  # not PEP 3333 text; log what we can rather than nothing
        quoted = quote(path, safe=_PATH_SAFE)
    query = environ.get("QUERY_STRING")
    return f"{quoted or '/'}?{query}" if query else quoted or "/"


def _check_format(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` formats a record of :data:`_FIELDS`."""
    import string

    valid = ", ".join(_FIELDS)
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise ValueError(
            f"access log format {fmt!r} is malformed: {exc} (use {{{{ and }}}} for literal braces)"
        ) from None
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        root = field.partition(".")[0].partition("[")[0]
        if not root or root.isdigit():
            raise ValueError(f"access log format {fmt!r} uses a positional field {{{field}}}; name one of: {valid}")
        if root not in _SAMPLE:
            raise ValueError(f"unknown access log field {{{root}}} in {fmt!r}; valid fields: {valid}")
    try:
        fmt.format_map(_SAMPLE)
    except KeyError as exc:  # a field nested in a format spec, e.g. "{status:{width}}"
        raise ValueError(f"unknown access log field {{{exc.args[0]}}} in {fmt!r}; valid fields: {valid}") from None
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"access log format {fmt!r} cannot be applied: {exc}") from None


class AccessLog:
    """Write one access-log line per request, the same for every backend.

    The line is written when the response is finished: when the server calls ``close()`` on the
    response iterable (PEP 3333 requires every server to), or -- for a server that never does --
    when that iterable is garbage-collected.  An app that raises before returning is logged at
    once.  ``fmt`` uses ``str.format`` named fields, see :func:`access_log_fields`:

    ``{client}`` REMOTE_ADDR (``-`` if none) · ``{time}`` request start, CLF style, UTC ·
    ``{method}`` · ``{path}`` the server's REQUEST_URI/RAW_URI, else quoted SCRIPT_NAME+PATH_INFO
    plus ``?query`` · ``{query}`` QUERY_STRING · ``{protocol}`` · ``{status}`` int · ``{size}``
    body bytes actually passed on (iterable and ``write()``) · ``{referer}`` / ``{user_agent}``
    (``-`` if none) · ``{duration_ms}`` float, 1 decimal · ``{pid}``.

    Status is the last one given to ``start_response``; 500 when the app never called it or
    failed before any body byte was passed on (what servers then send).  Strings are escaped the
    way Apache does (``\\"``, ``\\xHH``).  Lines go to ``stream`` (None: ``sys.stderr`` looked up per
    line) with one ``write`` plus ``flush``; a failing stream never breaks the response.

    Raises :class:`ValueError` naming the field for an unknown field, and for a malformed format.
    Note: responses are iterated through this wrapper, so a server's ``wsgi.file_wrapper``
    fast path (sendfile) is not taken while the access log is on.
    """

    def __init__(self, app: WSGIApp, fmt: str = DEFAULT_ACCESS_FORMAT, stream: TextIO | None = None, *,
                 json_lines: bool = False) -> None:
        _check_format(fmt)
        self.app = app
        self.fmt = fmt
        self.stream = stream
        self.json_lines = json_lines
        self._warned = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Call the app, counting what it sends, and log when the response is finished."""
        req = _Request(self, environ, start_response)
        try:
            result = self.app(environ, req.start_response)
        except BaseException:
            req.failed = True
            req.finish()
            raise
        if isinstance(result, (list, tuple)):
            return _SizedLoggedIterable(result, req)
        return _LoggedIterable(result, req)

    def _emit(self, record: dict[str, object]) -> None:
        try:
            if self.json_lines:
                import json

                # ISO time, like the launcher's own JSON records in the same stream
                iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.pop("epoch", time.time())))  # type: ignore[arg-type]
                line = json.dumps({"type": "access", **record, "time": iso}, ensure_ascii=False)
            else:
                line = self.fmt.format_map(record)
            stream = self.stream if self.stream is not None else sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except Exception as exc:  # logging must never fail a request
            if not self._warned:
                self._warned = True
                try:
                    sys.__stderr__.write(f"launcher: access log write failed, lines are being lost: {exc!r}\n")  # type: ignore[union-attr]
                except Exception:  # nowhere left to report to
                    pass


class _Request:
    """What one request's log line needs, captured at its start and updated as it is answered."""

    __slots__ = (
        "client",
        "done",
        "ended",
        "failed",
        "log",
        "method",
        "path",
        "protocol",
        "query",
        "referer",
        "server_start_response",
        "size",
        "started",
        "started_wall",
        "status",
        "user_agent",
    )

    def __init__(self, log: AccessLog, environ: WSGIEnvironment, start_response: StartResponse) -> None:
        self.log = log
        self.server_start_response = start_response
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.status: str | None = None
        self.size = 0
        self.failed = False
        self.done = False
        # Copied now: inner middleware and the app may rewrite environ before the line is written.
        self.client = str(environ.get("REMOTE_ADDR") or "-")
        self.method = str(environ.get("REQUEST_METHOD") or "-")
        self.path = _request_path(environ)
        self.query = str(environ.get("QUERY_STRING") or "")
        self.protocol = str(environ.get("SERVER_PROTOCOL") or "-")
        self.referer = str(environ.get("HTTP_REFERER") or "-")
        self.user_agent = str(environ.get("HTTP_USER_AGENT") or "-")

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        """Record the status, pass everything on unchanged, and count bytes sent with write()."""
        self.status = status
        if exc_info is None:
            write = self.server_start_response(status, headers)
        else:
            write = self.server_start_response(status, headers, exc_info)

        def counting_write(data: bytes) -> object:
            result = write(data)
            self.size += len(data)
            return result

        return counting_write

    def finish(self) -> None:
        """Write the log line, once."""
        if self.done:
            return
        self.done = True
        end = self.ended if self.ended is not None else time.perf_counter()
        status = _status_code(self.status)
        if status == 0 or (self.failed and self.size == 0):
            status = 500
        self.log._emit(
            {
                "client": _esc(self.client),
                "time": _clf_time(self.started_wall),
                "method": _esc(self.method),
                "path": _esc(self.path),
                "query": _esc(self.query),
                "protocol": _esc(self.protocol),
                "status": status,
                "size": self.size,
                "referer": _esc(self.referer),
                "user_agent": _esc(self.user_agent),
                "duration_ms": round((end - self.started) * 1000.0, 1),
                "pid": os.getpid(),
                "epoch": self.started_wall,
            }
        )


def _status_code(status: str | None) -> int:
    """The numeric code of a WSGI status line ("404 Not Found" -> 404); 0 if there is none."""
    if not status:
        return 0
    code = status.partition(" ")[0]
    return int(code) if code.isascii() and code.isdigit() else 0


class _LoggedIterable:
    """The app's response iterable, counted chunk by chunk and logged when closed."""

    __slots__ = ("_closed", "_iter", "_req", "_result")

    def __init__(self, result: Iterable[bytes], req: _Request) -> None:
        self._result = result
        self._iter: Iterator[bytes] | None = None
        self._req = req
        self._closed = False

    def __iter__(self) -> _LoggedIterable:
        return self

    def __next__(self) -> bytes:
        try:
            if self._iter is None:
                self._iter = iter(self._result)
            chunk = next(self._iter)
        except StopIteration:
            self._req.ended = time.perf_counter()
            raise
        except BaseException:
            self._req.failed = True
            raise
        self._req.size += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the app's iterable (once, however often the server calls this), then log."""
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._req.failed = True
            raise
        finally:
            self._req.ended = None  # the response ends now, cleanup included
            self._req.finish()

    def __del__(self) -> None:
        # Fallback for a server that never calls close(): log when it drops the iterable.
        try:
            if not self._closed:
                self._req.finish()
        except Exception:  # never raise from a finaliser
            pass


class _SizedLoggedIterable(_LoggedIterable):
    """Same, keeping ``len()``: waitress sets Content-Length from a one-item list response."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]
