"""Shared helpers for every suite that starts a real ``python -m launcher`` server.

Starting a server
    ``start_serve(args, tmp_path=...)`` launches ``python -m launcher --ready-file PATH *args`` in a
    new process group, waits (against one deadline) for the ready file while watching the child,
    then confirms readiness with a real request.  It returns a :class:`ServeProcess`; use it as a
    context manager or call ``.stop()``.  ``run_serve(args, tmp_path=...)`` is the counterpart for
    runs that are expected to *fail* (busy port, bad address): it waits for the exit and returns a
    :class:`Finished`.

Talking to it
    ``http_request(address, method, path, ...)`` and :class:`Connection` are a small raw HTTP/1.1
    client that works over TCP (127.0.0.1 / ::1 only) and unix sockets.  ``address`` may be an
    entry of the ready file's ``addresses`` list, ``(host, port)``, ``"unix:/path"``, ``"/path"``,
    ``"127.0.0.1:8000"`` or a URL from the ready file's ``urls``.  Responses keep repeated headers.

Every :class:`ServeProcess` is remembered so tests/conftest.py can attach its output to the report
of a failing test, and so none outlives the test session (``kill_all()``).
"""

from __future__ import annotations

import atexit
import dataclasses
import http.client
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTRACT_APP = "tests.contract.app:app"

_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def list_backends() -> list[Any]:
    """``launcher.registry.list_backends()``, or ``[]`` when the registry cannot be imported yet."""
    try:
        from launcher.registry import list_backends as _list
    except ImportError:
        return []
    return list(_list())


KNOWN_PROTOCOLS = frozenset({"http", "fastcgi", "uwsgi", "cgi"})


def backend_attr(name: str, attr: str, default: Any = True) -> Any:
    """A class attribute of backend ``name`` (e.g. ``unix_sockets``), or ``default`` when the
    backend cannot be loaded (it then fails or skips through :func:`require_backend`)."""
    try:
        from launcher.registry import get_class

        return getattr(get_class(name), attr, default)
    except Exception:
        return default


def backend_names(protocol: str | None = "http") -> list[str]:
    """Names of all registered backends speaking ``protocol`` (installed or not; ``None``: all).

    A backend that is not installed and whose protocol the registry cannot tell (``"?"``) is
    included too, so it shows up as skipped locally and as a failure under CI instead of
    silently vanishing.  Used at collection time for parametrisation; pair it with
    :func:`require_backend`.  Falls back to ``["waitress"]`` while ``launcher.registry`` does
    not exist.
    """
    try:
        from launcher.registry import list_backends as _list
    except ImportError:
        return ["waitress"] if protocol in (None, "http") else []
    names = []
    entries: list[Any] = list(_list())
    for b in entries:
        proto = getattr(b, "protocol", None)
        unknown = not b.installed and proto not in KNOWN_PROTOCOLS
        if protocol is None or proto == protocol or unknown:
            names.append(b.name)
    return names


def require_backend(name: str) -> Any:
    """Skip (locally) or fail (under ``CI=true``) unless backend ``name`` is installed.

    Returns the registry entry (or ``None`` when the registry cannot be imported yet).
    """
    reason: str | None = None
    entry = None
    try:
        from launcher.registry import list_backends as _list
    except ImportError:
        import importlib.util

        if importlib.util.find_spec(name) is None:
            reason = f"python package {name!r} is not importable (launcher.registry missing)"
    else:
        entries: list[Any] = list(_list())
        by_name = {b.name: b for b in entries}
        entry = by_name.get(name)
        if entry is None:
            reason = f"unknown backend; registry has {sorted(by_name)}"
        elif not entry.installed:
            extra = getattr(entry, "extra", None)
            error = getattr(entry, "error", None)
            reason = (f"{error}" if error else
                      f"its server library is not installed (pip extra: {extra!r})")
    if reason is not None:
        message = f"backend {name} not installed: {reason}"
        if _ci():
            pytest.fail(message + " (CI must not skip)", pytrace=False)
        pytest.skip(message)
    return entry


# --------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Addr:
    family: int
    sockaddr: Any
    host_header: str
    label: str


def _resolve(address: Any) -> _Addr:
    """Turn any accepted address form into something to connect to (loopback / unix only)."""
    if isinstance(address, _Addr):
        return address
    if isinstance(address, Mapping):
        kind = address.get("kind")
        if kind == "unix":
            return _unix(address["path"])
        if kind == "tcp":
            return _tcp(address["host"], int(address["port"]))
        raise ValueError(f"unsupported address kind in {address!r}")
    if isinstance(address, tuple) and len(address) == 2:
        return _tcp(str(address[0]), int(address[1]))
    if isinstance(address, os.PathLike):
        return _unix(os.fspath(address))
    if isinstance(address, str):
        if address.startswith("unix:"):
            return _unix(address[len("unix:"):])
        if address.startswith("/"):
            return _unix(address)
        if "://" in address:
            parts = urllib.parse.urlsplit(address)
            if parts.scheme.endswith("+unix"):
                return _unix(urllib.parse.unquote(parts.netloc))
            if parts.hostname is None or parts.port is None:
                raise ValueError(f"cannot connect to {address!r}: no host/port")
            return _tcp(parts.hostname, parts.port)
        host, sep, port = address.rpartition(":")
        if sep and port.isdigit():
            return _tcp(host.strip("[]"), int(port))
    raise ValueError(f"cannot understand address {address!r}")


def _tcp(host: str, port: int) -> _Addr:
    host = _WILDCARD_TO_LOOPBACK.get(host, host)
    if host not in _LOOPBACK_HOSTS:
        raise ValueError(f"refusing to send test traffic to {host!r}: loopback or unix only")
    if host == "localhost":
        host = "127.0.0.1"
    if ":" in host:
        return _Addr(socket.AF_INET6, (host, port, 0, 0), f"[{host}]:{port}", f"[{host}]:{port}")
    return _Addr(socket.AF_INET, (host, port), f"{host}:{port}", f"{host}:{port}")


def _unix(path: str) -> _Addr:
    return _Addr(socket.AF_UNIX, path, "localhost", f"unix:{path}")


def address_label(address: Any) -> str:
    """``127.0.0.1:41234`` / ``[::1]:80`` / ``unix:/path`` for messages."""
    return _resolve(address).label


def connect(address: Any, timeout: float = 10.0) -> socket.socket:
    """A connected socket to ``address`` (TCP loopback or unix)."""
    addr = _resolve(address)
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(addr.sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def busy_socket(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound and listening on ``host:0``; ``.getsockname()[1]`` is the busy port.

    No SO_REUSEPORT, so a server trying to bind the same port must fail.  Close it yourself (or
    use it as a context manager).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(8)
    return sock


def make_stale_unix_socket(path: str | os.PathLike[str]) -> Path:
    """Leave a socket *file* at ``path`` with nobody listening (bound, then closed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
    finally:
        sock.close()
    return Path(path)


def short_tmpdir(prefix: str = "wl-") -> Path:
    """A fresh directory with a short path (unix socket paths are limited to ~107 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# --------------------------------------------------------------------------------------------
# Raw HTTP client
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # in arrival order, repeats preserved
    body: bytes
    version: str = "HTTP/1.1"
    will_close: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise AssertionError(f"response body is not JSON ({exc}): {self.describe()}") from None

    def describe(self, limit: int = 600) -> str:
        body = self.body[:limit]
        more = "" if len(self.body) <= limit else f"... ({len(self.body)} bytes)"
        hdrs = "".join(f"\n  {k}: {v}" for k, v in self.headers)
        return f"{self.version} {self.status} {self.reason}{hdrs}\n  body: {body!r}{more}"


class _SocketReader:
    """Buffered reader over a socket that survives several responses and timeouts.

    http.client.HTTPResponse is given this as its ``fp``; unlike ``socket.makefile`` it does not
    lose read-ahead bytes between responses and ``close()`` does nothing.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self._sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self._buf += data
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            idx = self._buf.find(b"\n", start)
            if idx >= 0:
                end = idx + 1
                break
            if 0 <= limit <= len(self._buf):
                end = limit
                break
            start = len(self._buf)
            if not self._fill():
                end = len(self._buf)
                break
        if limit is not None and limit >= 0:
            end = min(end, limit)
        return self._take(end)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            while self._fill():
                pass
            return self._take(len(self._buf))
        while len(self._buf) < n and self._fill():
            pass
        return self._take(min(n, len(self._buf)))

    def read1(self, n: int = -1) -> bytes:
        if not self._buf:
            self._fill()
        if n is None or n < 0:
            n = len(self._buf)
        return self._take(min(n, len(self._buf)))

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def peek(self, n: int = 0) -> bytes:
        if not self._buf:
            self._fill()
        return bytes(self._buf)

    def fileno(self) -> int:
        return self._sock.fileno()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take_available(self, timeout: float) -> bytes:
        """Unread bytes: whatever is buffered or arrives within ``timeout`` (b"" if none/EOF)."""
        end = time.monotonic() + timeout
        while not self.eof:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([self._sock], [], [], remaining)
            if not readable or not self._fill():
                break
            if self._buf:
                end = min(end, time.monotonic() + 0.05)  # collect the rest of a burst
        return self._take(len(self._buf))


class _FpShim:
    def __init__(self, fp: _SocketReader) -> None:
        self._fp = fp

    def makefile(self, *args: Any, **kwargs: Any) -> _SocketReader:
        return self._fp


HeadersArg = Mapping[str, str] | Sequence[tuple[str, str]] | None


def _header_pairs(headers: HeadersArg) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(str(k), str(v)) for k, v in headers]


class Connection:
    """One client connection (TCP loopback or unix) for several requests or raw bytes.

    >>> with Connection(server.address) as conn:
    ...     r1 = conn.request("GET", "/")
    ...     conn.send_raw(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    ...     r2 = conn.read_response()

    Nothing is sent implicitly except a ``Host`` header (unless given) and the framing header
    for a body (``Content-Length``, or ``Transfer-Encoding: chunked`` with ``chunked=True``).
    There is no automatic reconnect: if the server closes, the next request fails loudly.
    """

    def __init__(self, address: Any, timeout: float = 10.0) -> None:
        self.addr = _resolve(address)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._reader: _SocketReader | None = None
        self.responses = 0

    # -- plumbing ---------------------------------------------------------------------------
    def connect(self) -> Connection:
        if self.sock is None:
            self.sock = connect(self.addr, self.timeout)
            self._reader = _SocketReader(self.sock)
        return self

    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self._reader = None

    def __enter__(self) -> Connection:
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.connect()
        assert self.sock is not None
        self.sock.sendall(data)

    def build_request(
        self,
        method: str,
        path: str,
        headers: HeadersArg = None,
        body: bytes | Iterable[bytes] | None = None,
        *,
        chunked: bool = False,
        version: str = "HTTP/1.1",
    ) -> bytes:
        pairs = _header_pairs(headers)
        names = {k.lower() for k, _ in pairs}
        if "host" not in names:
            pairs.insert(0, ("Host", self.addr.host_header))
        payload = b""
        if chunked:
            if "transfer-encoding" not in names:
                pairs.append(("Transfer-Encoding", "chunked"))
            pieces = [body] if isinstance(body, (bytes, bytearray)) else list(body or [])
            for piece in pieces:
                if piece:
                    payload += b"%x\r\n%s\r\n" % (len(piece), bytes(piece))
            payload += b"0\r\n\r\n"
        elif body is not None:
            if not isinstance(body, (bytes, bytearray)):
                body = b"".join(body)
            if "content-length" not in names:
                pairs.append(("Content-Length", str(len(body))))
            payload = bytes(body)
        head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs)
        return head.encode("latin-1") + b"\r\n" + payload

    def send_request(self, method: str, path: str, headers: HeadersArg = None,
                     body: bytes | Iterable[bytes] | None = None, *, chunked: bool = False,
                     version: str = "HTTP/1.1") -> None:
        self.send_raw(self.build_request(method, path, headers, body, chunked=chunked,
                                         version=version))

    # -- receiving --------------------------------------------------------------------------
    def read_response(self, method: str = "GET") -> Response:
        """Read one complete response (1xx interim responses are skipped)."""
        self.connect()
        assert self._reader is not None
        resp = http.client.HTTPResponse(_FpShim(self._reader), method=method)  # type: ignore[arg-type]
        resp.begin()
        body = resp.read()
        self.responses += 1
        version = {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1"}.get(resp.version, str(resp.version))
        return Response(
            status=resp.status,
            reason=resp.reason,
            headers=list(resp.msg.items()),
            body=body,
            version=version,
            will_close=bool(resp.will_close),
        )

    def read_extra(self, timeout: float = 0.3) -> bytes:
        """Bytes the server sent beyond the responses read so far (waiting up to ``timeout``);
        b"" if nothing came.  Consumes them."""
        self.connect()
        assert self._reader is not None
        return self._reader.take_available(timeout)

    @property
    def server_closed(self) -> bool:
        return self._reader is not None and self._reader.eof

    def request(self, method: str, path: str, headers: HeadersArg = None,
                body: bytes | Iterable[bytes] | None = None, *, chunked: bool = False) -> Response:
        self.send_request(method, path, headers, body, chunked=chunked)
        return self.read_response(method)


def http_request(address: Any, method: str, path: str, headers: HeadersArg = None,
                 body: bytes | Iterable[bytes] | None = None, timeout: float = 10.0, *,
                 chunked: bool = False) -> Response:
    """One request on a fresh connection (``Connection: close`` added unless given)."""
    pairs = _header_pairs(headers)
    if "connection" not in {k.lower() for k, _ in pairs}:
        pairs.append(("Connection", "close"))
    with Connection(address, timeout=timeout) as conn:
        return conn.request(method, path, pairs, body, chunked=chunked)


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------

_REGISTRY: list[ServeProcess] = []
_REGISTRY_LOCK = threading.Lock()
_COUNTER = itertools.count(1)


class ServeStartError(AssertionError):
    """The server did not become ready (it exited, or the deadline passed)."""

    def __init__(self, message: str, process: ServeProcess) -> None:
        self.process = process
        self.returncode = process.proc.returncode
        self.stdout = process.stdout()
        self.stderr = process.stderr()
        super().__init__(f"{message}\n  command: {process.command_line}\n{_indent_output(process)}")


def _indent_output(process: ServeProcess) -> str:
    text = process.output().rstrip("\n")
    if not text:
        return "  (no output)"
    return "  output:\n" + "\n".join("    | " + line for line in text.splitlines())


class ServeProcess:
    """A running ``python -m launcher`` child in its own process group."""

    def __init__(self, proc: subprocess.Popen[bytes], command: list[str], stdout_path: Path,
                 stderr_path: Path, ready_path: Path, label: str) -> None:
        self.proc = proc
        self.command = command
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.ready_path = ready_path
        self.label = label
        self.ready: dict[str, Any] = {}
        self.started_at = time.monotonic()
        self._stopped = False

    # -- info -------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def command_line(self) -> str:
        return " ".join(self.command)

    @property
    def url(self) -> str:
        return str(self.ready["urls"][0])

    @property
    def address(self) -> dict[str, Any]:
        return dict(self.ready["addresses"][0])

    def stdout(self) -> str:
        return _read_text(self.stdout_path)

    def stderr(self) -> str:
        return _read_text(self.stderr_path)

    def output(self) -> str:
        """Everything the server printed: stderr, then stdout (if any) after a marker line."""
        err, out = self.stderr(), self.stdout()
        if out:
            return f"{err}{'' if not err or err.endswith(chr(10)) else chr(10)}[stdout]\n{out}"
        return err

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- control ----------------------------------------------------------------------------
    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the launcher process itself, or (``group=True``, like Ctrl-C in a
        terminal) to every process of its group."""
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        """Exit code; raises subprocess.TimeoutExpired if still running after ``timeout``."""
        return self.proc.wait(timeout)

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the whole group.  Returns the exit code
        of the launcher (negative = killed by that signal)."""
        try:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            # Always: no worker may outlive the test, whatever the launcher did.
            self.kill_group()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                pass
            self._stopped = True
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"<ServeProcess {self.label} pid={self.proc.pid} {state}>"


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""


def serve_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without ``SERVE_*`` variables (the launcher reads options from them), plus
    ``extra``.  This is what :func:`start_serve` uses when ``env`` is not given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env.update(extra)
    return env


def _launch(args: Sequence[str], *, cwd: Path | str, env: Mapping[str, str] | None,
            tmp_path: Path | str) -> ServeProcess:
    tmp = Path(tmp_path)
    tmp.mkdir(parents=True, exist_ok=True)
    n = next(_COUNTER)
    stem = f"serve-{os.getpid()}-{n}"
    ready_path = tmp / f"{stem}.ready.json"
    stdout_path = tmp / f"{stem}.stdout.log"
    stderr_path = tmp / f"{stem}.stderr.log"
    for p in (ready_path, stdout_path, stderr_path):
        if p.exists():
            p.unlink()
    command = [sys.executable, "-m", "launcher", "--ready-file", str(ready_path), *map(str, args)]
    child_env = serve_env() if env is None else dict(env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    label = _label_from_args(args, n)
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(command, cwd=str(cwd), env=child_env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    process = ServeProcess(proc, command, stdout_path, stderr_path, ready_path, label)
    with _REGISTRY_LOCK:
        _REGISTRY.append(process)
    return process


def _label_from_args(args: Sequence[str], n: int) -> str:
    args = list(map(str, args))
    parts = []
    for flag in ("--backend", "--bind"):
        if flag in args and args.index(flag) + 1 < len(args):
            parts.append(args[args.index(flag) + 1])
    return f"#{n} " + " ".join(parts) if parts else f"#{n}"


def _read_ready(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None  # not atomic?  keep polling; the deadline still applies
    return data if isinstance(data, dict) else None


def _confirm_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    return path + (f"?{parts.query}" if parts.query else "")


def start_serve(args: Sequence[str], *, cwd: Path | str = REPO, env: Mapping[str, str] | None = None,
                ready_timeout: float = 20.0, tmp_path: Path | str,
                confirm: str = "auto") -> ServeProcess:
    """Start ``python -m launcher --ready-file F *args`` and return once it really serves.

    * new process group; stdout/stderr go to log files in ``tmp_path``;
    * one deadline (``ready_timeout``) covers: ready file written, then a real request answered
      (any HTTP status counts);
    * if the child exits first, or the deadline passes, the group is killed and
      :class:`ServeStartError` is raised with the exit code and the full output.

    ``confirm``: ``"auto"`` (HTTP GET for ``http``/``http+unix`` URLs, a bare connect for other
    protocols such as FastCGI or uwsgi), ``"http"``, ``"connect"`` or ``"none"``.
    """
    deadline = time.monotonic() + ready_timeout
    process = _launch(args, cwd=cwd, env=env, tmp_path=tmp_path)
    try:
        _wait_ready(process, deadline, ready_timeout)
        _confirm(process, deadline, ready_timeout, confirm)
    except BaseException:
        process.stop(timeout=2)
        raise
    return process


def _wait_ready(process: ServeProcess, deadline: float, ready_timeout: float) -> None:
    while True:
        rc = process.proc.poll()
        if rc is not None:
            raise ServeStartError(f"server exited with code {rc} before it was ready", process)
        ready = _read_ready(process.ready_path)
        if ready is not None:
            missing = [k for k in ("urls", "addresses") if not ready.get(k)]
            if missing:
                raise ServeStartError(f"ready file lacks {missing}: {ready!r}", process)
            process.ready = ready
            return
        if time.monotonic() >= deadline:
            raise ServeStartError(
                f"no ready file {process.ready_path} after {ready_timeout:.1f}s", process)
        time.sleep(0.03)


def _confirm(process: ServeProcess, deadline: float, ready_timeout: float, confirm: str) -> None:
    if confirm == "none":
        return
    url = process.url
    scheme = urllib.parse.urlsplit(url).scheme
    use_http = confirm == "http" or (confirm == "auto" and scheme in ("http", "http+unix"))
    last_error: BaseException | None = None
    while True:
        rc = process.proc.poll()
        if rc is not None:
            raise ServeStartError(
                f"server exited with code {rc} after writing its ready file", process)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServeStartError(
                f"ready file written but {'no HTTP answer' if use_http else 'no connect'} at "
                f"{address_label(process.address)} within {ready_timeout:.1f}s "
                f"(last error: {last_error!r})", process)
        try:
            if use_http:
                http_request(process.address, "GET", _confirm_path(url),
                             timeout=max(0.2, min(3.0, remaining)))
            else:
                connect(process.address, timeout=max(0.2, min(3.0, remaining))).close()
            return
        except (OSError, http.client.HTTPException) as exc:
            last_error = exc
            time.sleep(0.05)


@dataclasses.dataclass
class Finished:
    """Outcome of :func:`run_serve`."""

    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float
    became_ready: bool
    process: ServeProcess

    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return (f"exit code {self.returncode} after {self.elapsed:.2f}s"
                f"{' (it became READY)' if self.became_ready else ''}\n"
                f"  command: {self.process.command_line}\n{_indent_output(self.process)}")


def run_serve(args: Sequence[str], *, cwd: Path | str = REPO, env: Mapping[str, str] | None = None,
              timeout: float = 15.0, tmp_path: Path | str) -> Finished:
    """Run the launcher expecting it to exit by itself (e.g. a bind error).

    Returns as soon as it exits.  If it becomes ready instead (writes its ready file) or is still
    running after ``timeout``, it is stopped and ``became_ready`` / ``returncode`` tell so.
    """
    start = time.monotonic()
    process = _launch(args, cwd=cwd, env=env, tmp_path=tmp_path)
    became_ready = False
    try:
        while True:
            if process.proc.poll() is not None:
                break
            if process.ready_path.exists():
                became_ready = True
                break
            if time.monotonic() - start >= timeout:
                break
            time.sleep(0.03)
    finally:
        elapsed = time.monotonic() - start
        if process.proc.poll() is None:
            process.stop(timeout=3)
        else:
            process.kill_group()
    return Finished(
        returncode=None if became_ready and process.proc.returncode is None else process.proc.returncode,
        stdout=process.stdout(), stderr=process.stderr(), elapsed=elapsed,
        became_ready=became_ready, process=process)


def contract_args(backend: str, bind: str = "127.0.0.1:0", *extra: str,
                  app: str = CONTRACT_APP) -> list[str]:
    """``--backend NAME --bind ADDR *extra tests.contract.app:app``."""
    return ["--backend", backend, "--bind", bind, *extra, app]


# -- registry used by tests/conftest.py ------------------------------------------------------


def registry_mark() -> int:
    with _REGISTRY_LOCK:
        return len(_REGISTRY)


def processes_since(mark: int) -> list[ServeProcess]:
    with _REGISTRY_LOCK:
        return list(_REGISTRY[mark:])


def live_processes() -> list[ServeProcess]:
    with _REGISTRY_LOCK:
        return [p for p in _REGISTRY if p.alive()]


def kill_all() -> None:
    """Kill every process group this session started (used at session end and at exit)."""
    with _REGISTRY_LOCK:
        processes = list(_REGISTRY)
    for p in processes:
        if p.alive():
            p.stop(timeout=2)
        else:
            p.kill_group()


atexit.register(kill_all)


def parallel(fn: Any, args_list: Sequence[tuple[Any, ...]], timeout: float = 30.0) -> list[Any]:
    """Run ``fn(*args)`` for each tuple in threads, all released together; returns results in
    order, an exception object in place of a result that raised."""
    results: list[Any] = [None] * len(args_list)
    barrier = threading.Barrier(len(args_list))

    def run(i: int, args: tuple[Any, ...]) -> None:
        try:
            barrier.wait(timeout)
            results[i] = fn(*args)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, a), daemon=True) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    for i, t in enumerate(threads):
        if t.is_alive():
            results[i] = TimeoutError(f"still running after {timeout}s")
    return results


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rpartition(b")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def still_alive(pids: list[int], timeout: float) -> list[int]:
    """The pids still running (zombies do not count) after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    if fh.read().rpartition(b")")[2].split()[0] != b"Z":
                        alive.append(pid)
            except OSError:
                pass
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


# --------------------------------------------------------------------------- raw exchanges


def seconds_until_closed(sock: socket.socket, *, trickle: bytes = b"", every: float = 0.25,
                         cap: float = 8.0) -> float | None:
    """Keep the connection (sending ``trickle`` every ``every`` seconds if given) until the server
    closes it; the seconds that took, or None if it was still open after ``cap`` seconds."""
    start = time.monotonic()
    sock.settimeout(every)
    try:
        while time.monotonic() - start < cap:
            try:
                if trickle:
                    sock.send(trickle)
                if not sock.recv(65536):
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - start
        return None
    finally:
        sock.close()


def one_response(answer: bytes) -> bool:
    """Whether ``answer`` is exactly one response (its Content-Length, or no body; nothing after it)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"\r\nContent-Length: *(\d+)", head, re.IGNORECASE)
    return len(body) == (int(length.group(1)) if length else 0)


def exchange_until_closed(process: ServeProcess, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``; everything the server answers until it closes, and how long that took."""
    sock = connect(process.address, timeout=timeout)
    start = time.monotonic()
    try:
        sock.sendall(data)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return answer, time.monotonic() - start
            answer += chunk
    finally:
        sock.close()
