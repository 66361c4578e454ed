"""The validated settings of one ``serve bench`` run, built from its flags.

Every check happens here, before any server starts, so a typo costs one line and exit code 2,
not a half-finished ten-minute run.
"""

from __future__ import annotations

import os
import re

from launcher.bench import fronts, pinning, workloads
from launcher.errors import BackendError, OptionError
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from launcher.options import ServeOptions
    from launcher.registry import BackendInfo

DEFAULT_CONCURRENCY = (1, 16, 64, 256)
MAX_CONCURRENCY = 10_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|)\s*$", re.IGNORECASE)


def parse_duration(text: str, flag: str, *, allow_zero: bool = False) -> int:
    """Whole seconds from ``10``, ``10s``, ``2m`` or ``1500ms`` (wrk counts whole seconds only)."""
    match = _DURATION.match(str(text))
    if not match:
        raise OptionError(f"{flag}: bad duration '{text}': use seconds like 10s, 10 or 2m")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0}[match.group(2).lower()]
    if value != int(value):
        raise OptionError(f"{flag}: '{text}' is not a whole number of seconds (wrk measures in seconds)")
    if value < (0 if allow_zero else 1):
        raise OptionError(f"{flag}: '{text}' is too short: at least {'0s' if allow_zero else '1s'}")
    return int(value)


def parse_concurrency(text: str) -> tuple[int, ...]:
    """``1,16,64,256`` -> (1, 16, 64, 256): positive, unique, in ascending order."""
    levels: set[int] = set()
    for part in str(text).replace(" ", ",").split(","):
        if not part.strip():
            continue
        if not part.strip().isdigit() or not 1 <= int(part) <= MAX_CONCURRENCY:
            raise OptionError(
                f"--concurrency: '{part.strip()}' is not a number of connections from 1 to {MAX_CONCURRENCY}"
                " (use a comma-separated list such as 1,16,64,256)"
            )
        levels.add(int(part))
    if not levels:
        raise OptionError("--concurrency: no levels given (use a comma-separated list such as 1,16,64,256)")
    return tuple(sorted(levels))


class Selection:
    """The backends to run, and the lines saying why others are not run."""

    def __init__(self, names: list[str], skipped: list[str], notes: list[str], protocols: dict[str, str]) -> None:
        self.names = names
        self.skipped = skipped
        self.notes = notes
        #: backend -> protocol for the non-HTTP ones run behind a front adapter
        self.protocols = protocols


#: Protocols ``--backends all`` leaves out (a backend named in the list still runs), and why.
NOT_IN_ALL = {
    "cgi": "not part of 'all': a new Python process per request (about 8 requests/s here) means as many"
           " interpreters as connections, which at 64 and 256 starved the machine and every backend run"
           " after it; name it to run it (--backends cgi --concurrency 1,4)",
}


def select_backends(text: str, infos: Sequence[BackendInfo]) -> Selection:
    """``all`` or a comma list -> the installed HTTP backends to run, plus those behind a front adapter
    (:mod:`launcher.bench.fronts`) that can run here (``all``: but CGI, see :data:`NOT_IN_ALL`).

    Named backends must exist and be installed (an error otherwise: the user asked for them);
    ``all`` quietly takes what is installed and notes the rest.
    """
    by_name = {info.name: info for info in infos}
    wanted = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not wanted:
        raise OptionError("--backends: no backend given (use all, or names such as waitress,gunicorn)")
    every = wanted == ["all"]
    if every:
        wanted = list(by_name)
    elif "all" in wanted:
        raise OptionError("--backends: use 'all' alone, or a list of names")
    names, skipped, notes, missing = [], [], [], []
    protocols: dict[str, str] = {}
    for name in dict.fromkeys(wanted):
        info = by_name.get(name)
        if info is None:
            raise OptionError(
                f"--backends: unknown backend '{name}'{closest(name, by_name)}; choose from: {', '.join(by_name)}"
            )
        if not info.installed:
            if not every:
                raise BackendError(str(info.error) if info.error else
                                   f"backend '{name}' is not installed: pip install 'wsgi-launcher[{info.extra}]'")
            missing.append(name)
            continue
        protocol = str(info.protocol)
        if every and protocol in NOT_IN_ALL:
            skipped.append(f"{name}: {NOT_IN_ALL[protocol]}")
            continue
        if protocol != "http":
            front = fronts.adapter_for(protocol)
            if front is None or front.unavailable():
                skipped.append(fronts.skip_line(name, protocol, front.unavailable() if front else ""))
                continue
            protocols[name] = protocol
        names.append(name)
    if missing:
        notes.append(f"not installed (or not built yet), so not run: {', '.join(missing)}")
    if not names:
        reason = "; ".join(skipped + notes) or "none installed"
        raise OptionError(f"--backends {text}: no backend can be benchmarked ({reason})")
    return Selection(names, skipped, notes, protocols)


def parse_backend_options(raw: Iterable[str], backends: Sequence[str]) -> dict[str, dict[str, str]]:
    """``-o KEY=VALUE`` for every backend, ``-o NAME:KEY=VALUE`` for backend NAME only."""
    per: dict[str, dict[str, str]] = {name: {} for name in backends}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"-o {item}: expected KEY=VALUE or BACKEND:KEY=VALUE")
        target, colon, bare = key.partition(":")
        if colon:
            if target not in per:
                raise OptionError(f"-o {item}: '{target}' is not one of the benchmarked backends ({', '.join(per)})")
            per[target][bare.strip()] = value
        else:
            for options in per.values():
                options[key.strip()] = value
    return per


class BenchPlan:
    """Everything a run needs, validated."""

    def __init__(self, **fields: Any) -> None:
        self.app: str = fields["app"]
        self.workload: workloads.Workload | None = fields.get("workload")
        self.path: str = fields.get("path", "/")
        self.method: str = fields.get("method", "GET")
        self.body_size: int = fields.get("body_size", 0)
        self.expect: str = fields.get("expect", "")
        self.backends: list[str] = fields["backends"]
        #: backend -> protocol, for those that are not "http" (they run behind a front adapter)
        self.protocols: dict[str, str] = fields.get("protocols", {})
        self.skipped: list[str] = fields.get("skipped", [])
        self.notes: list[str] = fields.get("notes", [])
        self.concurrency: tuple[int, ...] = fields.get("concurrency", DEFAULT_CONCURRENCY)
        self.duration: int = fields.get("duration", 10)
        self.warmup: int = fields.get("warmup", 1)
        self.rounds: int = fields.get("rounds", 3)
        self.client_timeout: int = fields.get("client_timeout", 10)
        self.generator: str = fields.get("generator", "wrk")
        self.pinning: pinning.Pinning = fields.get("pinning") or pinning.plan(False)
        #: per backend, the resolved options it is started with (bind 127.0.0.1:0 and the ready
        #: file are set at start)
        self.options: dict[str, ServeOptions] = fields.get("options", {})
        self.json_path: str = fields.get("json_path", "")
        self.png_path: str = fields.get("png_path", "")

    def body(self) -> bytes:
        """The request body (empty for GET)."""
        return b"x" * self.body_size

    def steps(self) -> int:
        """Load runs in the whole plan (for the progress display)."""
        return self.rounds * len(self.backends) * len(self.concurrency)


def server_options(app: str, backend: str, info: BackendInfo | None, *, workers: int | None, threads: int | None,
                   options: dict[str, str], pythonpath: str, notes: list[str],
                   run_by_front: bool = False) -> ServeOptions:
    """Resolve (as ``serve`` would) and check the options ``backend`` is started with.

    ``--threads`` is dropped, with a note, for a backend that has no threads (gevent's greenlets),
    so one comparison can still ask for threads where they exist.  ``run_by_front``: the front
    server runs the app itself, once per request (CGI): no address, no workers, no threads.
    Anything else the backend cannot honour is an error now, before any server starts.
    """
    from launcher import registry
    from launcher.options import resolve

    cli: dict[str, Any] = {"backend": backend} if run_by_front else {"backend": backend, "bind": "127.0.0.1:0"}
    if run_by_front and (workers is not None or threads is not None):
        given = " and ".join(flag for flag, value in (("--workers", workers), ("--threads", threads))
                             if value is not None)
        notes.append(f"{backend} is run by its front server, one process per request: run without {given}")
        workers = threads = None
    if workers is not None:
        cli["workers"] = workers
    if threads is not None:
        if info is not None and info.supports and "threads" not in info.supports:
            notes.append(f"{backend} has no --threads setting: run without it")
        else:
            cli["threads"] = threads
    if options:
        cli["option"] = dict(options)
    if pythonpath:
        cli["pythonpath"] = pythonpath
    opts = resolve(app, cli=cli)
    try:
        registry.get(backend).check(opts)
    except OptionError as exc:
        hint = " (-o BACKEND:KEY=VALUE sets an option for one backend only)" if str(exc).startswith("-o") else ""
        raise OptionError(f"{backend}: {exc}{hint}") from None
    return opts


def check_output_path(path: str, flag: str) -> str:
    """An output file whose directory exists (checked now, not after the run)."""
    if not path:
        return ""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OptionError(f"{flag} {path}: directory {folder} does not exist")
    return path
