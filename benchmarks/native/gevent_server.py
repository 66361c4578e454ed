"""gevent.pywsgi run by hand, the way a careful user would: the native baseline of overhead.py.

    python benchmarks/native/gevent_server.py --port 8000 [--nodelay] [benchmarks.apps:hello]

Patch first, then import the app (otherwise time.sleep in the app serialises requests).  No
access log (``log=None``), as the launcher serves by default.  ``--nodelay`` sets TCP_NODELAY on
each accepted connection: pywsgi writes headers and body separately, and without it every
response waits ~40 ms for a delayed ACK (1.1k vs 5.5k requests/s here).  That is what a
knowledgeable user would add, and the launcher's gevent backend does; the overhead benchmark
reports the ratio against both this script as shipped and with --nodelay.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after patching, on purpose
import importlib  # noqa: E402
import socket  # noqa: E402
from typing import Any  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402


class NoDelayWSGIServer(WSGIServer):
    """WSGIServer that sets TCP_NODELAY on every accepted connection."""

    def handle(self, sock: Any, address: Any) -> None:
        """Set TCP_NODELAY, then handle the connection as pywsgi does."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def main() -> None:
    """Parse the flags, import the app, serve forever."""
    parser = argparse.ArgumentParser(description="gevent.pywsgi, by hand")
    parser.add_argument("app", nargs="?", default="benchmarks.apps:hello")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY on accepted connections")
    ns = parser.parse_args()
    module, _, attr = ns.app.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    server_class = NoDelayWSGIServer if ns.nodelay else WSGIServer
    server = server_class((ns.host, ns.port), app, log=None)
    server.serve_forever()


if __name__ == "__main__":
    main()
