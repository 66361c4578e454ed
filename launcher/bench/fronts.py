"""The hook for backends that do not speak HTTP: FastCGI, uwsgi and CGI need a front server.

wrk speaks HTTP only, so such a backend can be loaded only through a real front server (nginx or
lighttpd translating HTTP to its protocol), and the figure is then "front + backend", which the
report must say.  No adapter exists yet: those backends are skipped with one clear line.

Adding one: a class with the :class:`Front` interface, registered below under its protocol as an
import string (imported only when a run needs it), e.g.
``ADAPTERS["fastcgi"] = "launcher.bench.front_nginx:NginxFastCGI"``.  The runner then binds the
backend where :meth:`Front.bind` says, starts the front pinned to the server's CPUs, loads
``handle.url``, and counts the front's processes with the server's (CPU time and memory).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class FrontHandle(Protocol):
        """A running front server: where to send load, its pid (counted with the server's), its argv."""

        url: str
        pid: int
        argv: list[str]

        def stop(self) -> None:
            """Stop the front server and everything it started."""

    class Front(Protocol):
        """A front-server adapter for one protocol."""

        name: str

        def bind(self, workdir: str) -> str:
            """The address the backend listens on (e.g. ``unix:WORKDIR/app.sock``)."""

        def start(self, addresses: list[dict[str, Any]], workdir: str, cpus: tuple[int, ...]) -> FrontHandle:
            """Start the front server in front of ``addresses``; ready to answer on return."""


#: protocol -> "module:Class" of the front adapter.  Empty until an adapter is written.
ADAPTERS: dict[str, str] = {}


def adapter_for(protocol: str) -> Front | None:
    """An instance of the front adapter for ``protocol``, or None."""
    target = ADAPTERS.get(protocol)
    if not target:
        return None
    import importlib

    module_name, _, attr = target.partition(":")
    adapter: Front = getattr(importlib.import_module(module_name), attr)()
    return adapter


def skip_line(backend: str, protocol: str) -> str:
    """The line shown for a backend that cannot be loaded yet."""
    return f"{backend} speaks {protocol}: front-server benchmarking not available yet"
