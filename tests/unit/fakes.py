"""A fake backend and apps for unit tests: nothing here serves a request."""

from __future__ import annotations

from typing import Any, ClassVar

from backends.base import Backend
from launcher.options import Option


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fake"]


class FakeBackend(Backend):
    """Records what the launcher hands it, announces readiness and returns at once."""

    name = "fake"
    extra = "fake"
    protocol = "http"
    library = "json"  # always installed
    distribution = "pip"
    supports = frozenset({"threads"})
    option_spec = (
        Option("flavour", "choice", "plain", "test option", choices=("plain", "spicy")),
        Option("depth", "int", 1, "test option", minimum=1),
    )
    calls: ClassVar[list[dict[str, Any]]] = []

    def serve(self, app: Any, opts: Any, listeners: Any, ready: Any) -> None:
        ready(listeners)
        FakeBackend.calls.append(
            {"app": app, "opts": opts, "addresses": [lst.address for lst in listeners],
             "backend_options": dict(self.backend_options)}
        )


class MissingLibraryBackend(FakeBackend):
    name = "missing"
    extra = "missing-extra"
    library = "no_such_server_library_xyz"
    distribution = "no-such-server"
