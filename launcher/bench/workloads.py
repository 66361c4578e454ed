"""The named workloads: which app of benchmarks/apps.py, and the request wrk sends to it."""

from __future__ import annotations

import os

from launcher.errors import OptionError
from launcher.options import closest

#: The module holding the workload apps (benchmarks/apps.py of a source checkout).
APPS_MODULE = "benchmarks.apps"


class Workload:
    """One named workload: the app attribute and the request that loads it."""

    __slots__ = ("name", "method", "body_size", "description", "expect")

    def __init__(self, name: str, description: str, *, method: str = "GET", body_size: int = 0,
                 expect: str = "") -> None:
        self.name = name
        self.description = description
        self.method = method
        self.body_size = body_size
        #: what a correct answer looks like beyond "2xx with a body": "echo" (body == request
        #: body), "size:N" (body of N bytes), "exact:TEXT", or "" (any body)
        self.expect = expect

    @property
    def app(self) -> str:
        return f"{APPS_MODULE}:{self.name}"

    def body(self) -> bytes:
        """The request body (the same bytes the wrk script sends)."""
        return b"x" * self.body_size


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hello", "plaintext 'Hello, World!'", expect="exact:Hello, World!"),
        Workload("json", "a small JSON object"),
        Workload("large", "a 100 KB response", expect=f"size:{100 * 1024}"),
        Workload("echo", "a 64 KB request body, echoed back", method="POST", body_size=64 * 1024, expect="echo"),
        Workload("sleep", "10 ms time.sleep (I/O-bound)"),
        Workload("cpu", "about 1 ms of pure-Python CPU"),
    )
}


def get(name: str) -> Workload:
    """The workload called ``name``, or an OptionError listing the valid ones."""
    workload = WORKLOADS.get(name.strip().lower())
    if workload is None:
        raise OptionError(
            f"--workload: unknown workload '{name}'{closest(name, WORKLOADS)}; choose one of: {', '.join(WORKLOADS)}"
        )
    return workload


def help_text() -> str:
    """The workload list shown by ``serve bench --help``."""
    width = max(len(name) for name in WORKLOADS)
    lines = [f"  {w.name:<{width}}  {w.method:<4} {w.description}" for w in WORKLOADS.values()]
    return "\n".join(lines)


def apps_root(cwd: str | None = None) -> str:
    """The directory that holds ``benchmarks/apps.py``: the current one, else the source checkout.

    The workload apps live in the repository, not in the wheel, so a server can import them only
    with this directory on its path (the bench passes it as ``--pythonpath``).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(os.path.dirname(here))
    for root in (cwd or os.getcwd(), checkout):
        if os.path.isfile(os.path.join(root, "benchmarks", "apps.py")):
            return root
    raise OptionError(
        "--workload needs benchmarks/apps.py from a source checkout of wsgi-launcher (it is not in the"
        " wheel): run from the checkout, or benchmark your own app: serve bench MODULE:APP --path /"
    )
