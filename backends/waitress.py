"""waitress: the portable default backend.

Mapped: --threads -> threads, --connections -> connection_limit, --keepalive -> channel_timeout
(seconds an idle connection stays open), --backlog on the launcher's socket.  ``-o`` reaches any
other waitress adjustment by its own name, validated against waitress's own table, except the ones
the launcher owns (listening, threads, proxy trust and URL prefix).

--root-path and --proxy-headers use the launcher's middleware rather than waitress's url_prefix
and trusted_proxy: waitress's url_prefix answers 404 outside the prefix (a front server that
already stripped it breaks), and trusted_proxy takes a single address, not a list or a CIDR.

waitress 3.0.2 sends the body in answer to HEAD (corrupting the next response on the connection):
the backend sends none.

waitress does not drain on SIGTERM by itself (0 of 4 in-flight requests answered), and closing
its listening socket from a signal handler crashes its select loop.  So every step of the stop
runs inside its loop through its trigger: stop accepting, wait for in-flight and queued requests,
then let each channel flush and close, then end the loop.
"""

from __future__ import annotations

import time

from backends.base import Backend
from launcher.errors import OptionError
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: waitress adjustments the launcher sets from its common options (and why -o cannot).
OWNED = {
    "host": "--bind",
    "port": "--bind",
    "listen": "--bind",
    "unix_socket": "--bind unix:PATH",
    "unix_socket_perms": "--bind unix:PATH:MODE",
    "sockets": "--bind",
    "ipv4": "--bind",
    "ipv6": "--bind",
    "threads": "--threads",
    "connection_limit": "--connections",
    "channel_timeout": "--keepalive",
    "backlog": "--backlog",
    "trusted_proxy": "--proxy-headers and --forwarded-allow-ips",
    "trusted_proxy_count": "--proxy-headers and --forwarded-allow-ips",
    "trusted_proxy_headers": "--proxy-headers",
    "url_prefix": "--root-path",
}


class WaitressBackend(Backend):
    name = "waitress"
    extra = "waitress"
    protocol = "http"
    library = "waitress"
    distribution = "waitress"
    min_version = "3.0.1"
    supports = frozenset({"threads", "connections", "keepalive"})

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None
        self._map: dict[int, Any] = {}

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        from waitress.adjustments import Adjustments

        known = dict(Adjustments._params)
        parsed: dict[str, Any] = {}
        for key, value in raw.items():
            if key in OWNED:
                raise OptionError(f"-o {key}: set it with {OWNED[key]}, the launcher's common option")
            cast = known.get(key)
            if cast is None:
                raise OptionError(f"-o {key}: not a waitress setting{closest(key, known)}")
            try:
                parsed[key] = cast(value)
            except (ValueError, TypeError) as exc:
                raise OptionError(f"-o {key}={value}: {exc}") from None
        return parsed

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        from waitress.adjustments import Adjustments
        from waitress.server import MultiSocketServer, TcpWSGIServer, UnixWSGIServer
        from waitress.task import ThreadedTaskDispatcher

        settings: dict[str, Any] = {
            "threads": opts.threads,
            "connection_limit": opts.connections,
            "channel_timeout": max(1, round(opts.keepalive)),
            "backlog": opts.backlog,
            # poll(), not select(): select() cannot watch more than 1024 descriptors
            "asyncore_use_poll": True,
            "ident": "waitress",
        }
        settings.update(self.backend_options)
        app = strip_head_body(app)
        adj = Adjustments(**settings)
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        # One waitress server per socket on a shared map and thread pool, as create_server() does,
        # but without its rule against mixing TCP and unix sockets in one process.
        for listener in listeners:
            sock = listener.sock
            server_cls = UnixWSGIServer if listener.is_unix else TcpWSGIServer
            server_cls(app, self._map, True, sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                       sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
        self._server = MultiSocketServer(self._map, adj, [], dispatcher)
        ready(listeners)
        try:
            self._server.run()
        finally:
            dispatcher.shutdown(timeout=1)

    # -- stopping, always inside waitress's own loop

    def _servers(self) -> list[Any]:
        from waitress.server import BaseWSGIServer

        return [d for d in list(self._map.values()) if isinstance(d, BaseWSGIServer)]

    def _channels(self) -> list[Any]:
        from waitress.channel import HTTPChannel

        return [d for d in list(self._map.values()) if isinstance(d, HTTPChannel)]

    def _pull(self, thunk: Any) -> None:
        servers = self._servers()
        if servers:
            servers[0].trigger.pull_trigger(thunk)

    def stop_accepting(self) -> None:
        from waitress import wasyncore

        def close_listeners() -> None:
            for server in self._servers():
                server.accepting = False
                wasyncore.dispatcher.close(server)  # the listening socket only; its trigger lives on

        if self._server is not None:
            self._pull(close_listeners)

    def pending(self) -> int:
        # Requests parsed and queued for a thread, or answered but not yet flushed to the client.
        return sum(1 for ch in self._channels() if ch.requests or ch.total_outbufs_len)

    def close(self) -> None:
        from waitress import wasyncore

        def close_idle() -> None:
            for channel in self._channels():
                channel.will_close = True  # closes once its output is flushed

        if self._server is None:
            return
        # The listeners are gone from the map; a trigger of theirs still runs thunks.
        triggers = [d for d in list(self._map.values()) if d.__class__.__name__ == "trigger"]
        if not triggers:
            return
        trigger = triggers[0]
        trigger.pull_trigger(close_idle)
        deadline = time.monotonic() + 2.0
        while self._channels() and time.monotonic() < deadline:
            time.sleep(0.02)
        trigger.pull_trigger(lambda: wasyncore.close_all(self._map))


def strip_head_body(app: WSGIApp) -> WSGIApp:
    """Send no body in answer to HEAD: waitress 3.0.2 sends the app's body after the headers,
    which corrupts the next response on a keep-alive connection."""

    def head_safe(environ: dict[str, Any], start_response: Any) -> Any:
        result = app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return result
        return _NoBody(result)

    return head_safe


class _NoBody:
    """Runs the app's iterable up to its first chunk (so a lazy start_response is called), sends
    nothing, and still closes it."""

    def __init__(self, result: Any) -> None:
        self._result = result

    def __iter__(self) -> Any:
        for chunk in self._result:
            if chunk:
                break
        return iter(())

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
