"""Which CPUs the server gets and which the load generator gets.

On one shared CPU the generator and the server steal time from each other and the figure
measures both; pinning them apart roughly doubles threaded servers here and halves the
run-to-run spread (../shared/SERVER-FACTS.md).  Two CPUs: server on the first, generator on the
second.  More: the first half for the server, the rest for the generator.
"""

from __future__ import annotations

import os
import shutil
import sys


class Pinning:
    """The CPU split of one run (``server`` and ``generator`` are empty when not pinned)."""

    __slots__ = ("server", "generator", "note")

    def __init__(self, server: tuple[int, ...], generator: tuple[int, ...], note: str) -> None:
        self.server = server
        self.generator = generator
        self.note = note

    @property
    def enabled(self) -> bool:
        """True when server and generator have CPUs of their own."""
        return bool(self.server)

    def generator_cpu_count(self) -> int:
        """CPUs the generator may use: its own set, or half the machine when not pinned."""
        if self.generator:
            return len(self.generator)
        return max(1, len(available_cpus()) // 2)

    def as_dict(self) -> dict[str, object]:
        """The split as recorded in the results."""
        return {"server_cpus": list(self.server), "generator_cpus": list(self.generator), "note": self.note}


def available_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def plan(enabled: bool = True) -> Pinning:
    """Split the available CPUs between server and generator (see the module docstring)."""
    cpus = available_cpus()
    if not enabled:
        return Pinning((), (), "not pinned (--no-pin): server and generator share every CPU")
    if not hasattr(os, "sched_setaffinity"):
        return Pinning((), (), "not pinned: this platform has no CPU affinity")
    if len(cpus) < 2:
        return Pinning((), (), "not pinned: one CPU only, so server and generator share it (figures are lower)")
    half = len(cpus) // 2
    server, generator = tuple(cpus[:half]), tuple(cpus[half:])
    return Pinning(server, generator, f"server on CPU {_cpus(server)}, load generator on CPU {_cpus(generator)}")


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cpus)


def prefix(cpus: tuple[int, ...]) -> list[str]:
    """The argv prefix that starts a command on ``cpus`` (its children inherit the mask).

    ``taskset`` when installed (the recorded command is then one a person can paste); otherwise a
    tiny Python exec wrapper doing the same.
    """
    if not cpus:
        return []
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", _cpus(cpus)]
    code = f"import os,sys; os.sched_setaffinity(0, {{{_cpus(cpus)}}}); os.execvp(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", code]
