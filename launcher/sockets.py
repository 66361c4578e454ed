"""Binding listening sockets once, in the launcher, with one set of errors for every backend.

The launcher binds before the backend starts, so a busy port, a bad address, a missing socket
directory or a live unix socket is reported the same way whatever the server, port 0 is resolved
before the startup line, and the pre-fork supervisor can hand the same socket to every worker.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from launcher.errors import BindError
from launcher.options import Bind

#: Unix sockets are created group-writable, never world-writable, unless a mode is given.
DEFAULT_UNIX_MODE = 0o660


class Listener:
    """A bound, listening socket and the address it was asked for."""

    __slots__ = ("bind", "inode", "sock")

    def __init__(self, bind: Bind, sock: socket.socket, inode: int = 0) -> None:
        self.bind = bind
        self.sock = sock
        self.inode = inode

    @property
    def address(self) -> Bind:
        """The real address: the port the kernel chose when 0 was asked, the real fd family."""
        if self.sock.family == socket.AF_UNIX:
            path = self.sock.getsockname()
            return Bind("unix", path=path if isinstance(path, str) else self.bind.path, mode=self.bind.mode)
        host, port = self.sock.getsockname()[:2]
        return Bind("tcp", host=host, port=port)

    @property
    def is_unix(self) -> bool:
        return self.sock.family == socket.AF_UNIX

    def url(self, scheme: str = "http") -> str:
        return self.address.url(scheme)

    def __repr__(self) -> str:
        return f"Listener({self.address})"


def bind_all(binds: tuple[Bind, ...] | list[Bind], backlog: int = 2048) -> list[Listener]:
    """Bind and listen on every address; on any failure close what was opened and raise."""
    listeners: list[Listener] = []
    try:
        for bind in binds:
            listeners.append(_bind_one(bind, backlog))
    except BaseException:
        close_all(listeners)
        raise
    return listeners


def activation_listeners() -> list[Listener]:
    """Sockets passed by systemd socket activation (LISTEN_FDS for this pid), else []."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)  # children must not take them for their own
    return [_adopt_fd(Bind("fd", fd=fd)) for fd in range(3, 3 + count)]


def _bind_one(bind: Bind, backlog: int) -> Listener:
    if bind.kind == "fd":
        return _adopt_fd(bind)
    if bind.kind == "unix":
        return _bind_unix(bind, backlog)
    return _bind_tcp(bind, backlog)


def _bind_tcp(bind: Bind, backlog: int) -> Listener:
    try:
        infos = socket.getaddrinfo(bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {bind}: cannot resolve host '{bind.host}' ({exc.strerror})") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {bind}: {_explain(exc)}") from None
    return Listener(bind, sock)


def _bind_unix(bind: Bind, backlog: int) -> Listener:
    path = bind.path
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise BindError(f"cannot listen on unix:{path}: directory {directory} does not exist")
    if os.path.lexists(path):
        _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mode = DEFAULT_UNIX_MODE if bind.mode is None else bind.mode
    # Create the file with no more than the final mode, so it is never briefly world-writable.
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {_explain(exc)}") from None
    finally:
        os.umask(old_umask)
    try:
        os.chmod(path, mode)
        sock.listen(backlog)
        inode = os.stat(path).st_ino
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {_explain(exc)}") from None
    return Listener(bind, sock, inode)


def _remove_stale(path: str) -> None:
    """Remove a socket file left by a dead server; refuse to take over a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)  # stale: nobody listens on it
        except FileNotFoundError:
            pass
        return
    except OSError as exc:
        raise BindError(f"cannot listen on unix:{path}: cannot check the existing socket: {_explain(exc)}") from None
    finally:
        probe.close()
    raise BindError(f"cannot listen on unix:{path}: another server is listening on it; stop it or pick another path")


def _adopt_fd(bind: Bind) -> Listener:
    try:
        sock = socket.socket(fileno=bind.fd)
    except OSError as exc:
        raise BindError(f"cannot listen on fd://{bind.fd}: {_explain(exc)}") from None
    try:
        accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        accepting = 0
    if sock.type != socket.SOCK_STREAM or not accepting:
        sock.detach()
        raise BindError(f"cannot listen on fd://{bind.fd}: it is not a listening stream socket")
    return Listener(bind, sock)


def close_all(listeners: list[Listener], *, unlink: bool = True) -> None:
    """Close every socket; remove the unix socket files this process created (and only those)."""
    for listener in listeners:
        try:
            listener.sock.close()
        except OSError:
            pass
        if unlink and listener.inode and listener.bind.kind == "unix":
            try:
                if os.stat(listener.bind.path).st_ino == listener.inode:
                    os.unlink(listener.bind.path)
            except OSError:
                pass


def _explain(exc: OSError) -> str:
    code = exc.errno
    if code == errno.EADDRINUSE:
        return "address already in use (another server runs there: stop it or pick another port)"
    if code == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; check directory permissions)"
    if code == errno.EADDRNOTAVAIL:
        return "no such address on this machine"
    if code == errno.EBADF:
        return "no such open file descriptor"
    if code == errno.ENOTSOCK:
        return "not a socket"
    return exc.strerror or str(exc)
