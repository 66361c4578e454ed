"""Every common option, declared once.

Each :class:`Option` is one typed field with its default, help text and environment variable.
The CLI flags (:mod:`launcher.cli`), the ``launch()`` keywords, the ``SERVE_*`` environment
variables, the config file (``serve.toml`` or ``[tool.serve]`` in pyproject.toml) and the README
options table are all derived from :data:`OPTIONS`, so they cannot drift apart.

Precedence, highest first: CLI flags and ``launch()`` keywords, environment, config file, default.

This module is on the start path of ``serve --help``: it imports nothing heavy (no dataclasses,
no typing at run time, no tomllib until a config file is actually read).
"""

from __future__ import annotations

import os
import sys

from launcher.errors import ConfigFileError, OptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any


def closest(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    import difflib

    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# --------------------------------------------------------------------------- bind addresses


class Bind:
    """One listening address: ``HOST:PORT``, ``[::1]:PORT``, ``unix:PATH[:MODE]`` or ``fd://N``."""

    __slots__ = ("fd", "host", "kind", "mode", "path", "port")

    def __init__(
        self,
        kind: str,
        host: str = "",
        port: int = 0,
        path: str = "",
        mode: int | None = None,
        fd: int = -1,
    ) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.path = path
        self.mode = mode
        self.fd = fd

    @classmethod
    def parse(cls, text: str) -> Bind:
        """Parse a bind address; raise :class:`OptionError` saying which forms are valid."""
        raw = text.strip()
        hint = "use HOST:PORT, [::1]:PORT, unix:/path/to.sock[:0660] or fd://N"
        if not raw:
            raise OptionError(f"empty bind address: {hint}")
        if raw.startswith("unix:"):
            path, mode = raw[5:], None
            head, sep, tail = path.rpartition(":")
            if sep and tail.isdigit() and len(tail) in (3, 4):
                path, mode = head, int(tail, 8)
            if not path:
                raise OptionError(f"bind '{text}' has no socket path: {hint}")
            return cls("unix", path=os.path.abspath(path), mode=mode)
        if raw.startswith("fd://"):
            num = raw[5:]
            if not num.isdigit():
                raise OptionError(f"bind '{text}' needs a file descriptor number: fd://3")
            return cls("fd", fd=int(num))
        if raw.startswith("["):
            host, sep, rest = raw[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise OptionError(f"bad bind address '{text}': {hint}")
            port_text = rest[1:] if rest else "8000"
        elif raw.count(":") > 1:
            raise OptionError(f"bad bind address '{text}': put IPv6 hosts in brackets, [::1]:8000")
        elif ":" in raw:
            host, _, port_text = raw.partition(":")
        elif raw.isdigit():
            host, port_text = "127.0.0.1", raw
        else:
            host, port_text = raw, "8000"
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise OptionError(f"bad port in bind address '{text}': a number from 0 to 65535 (0 picks a free one)")
        if not host:
            host = "0.0.0.0"
        if any(ch.isspace() or ch in "/@" for ch in host):
            raise OptionError(f"bad host in bind address '{text}': {hint}")
        return cls("tcp", host=host, port=int(port_text))

    @property
    def family_is_v6(self) -> bool:
        return self.kind == "tcp" and ":" in self.host

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}" + (f":{self.mode:04o}" if self.mode is not None else "")
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, scheme: str = "http") -> str:
        """The URL a client uses to reach this address (``http+unix://`` for unix sockets)."""
        if self.kind == "unix":
            from urllib.parse import quote

            return f"{scheme}+unix://{quote(self.path, safe='')}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "unix":
            return {"kind": "unix", "path": self.path}
        if self.kind == "fd":
            return {"kind": "fd", "fd": self.fd}
        return {"kind": "tcp", "host": self.host, "port": self.port}

    def __repr__(self) -> str:
        return f"Bind({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bind) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


# --------------------------------------------------------------------------- value parsers


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_octal(text: str) -> int:
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise ValueError("expected an octal mode from 000 to 777")
    return value


def _parse_seconds(text: str) -> float:
    raw = text.strip().lower()
    scale = 1.0
    if raw.endswith("ms"):
        raw, scale = raw[:-2], 0.001
    elif raw.endswith("s"):
        raw = raw[:-1]
    elif raw.endswith("m"):
        raw, scale = raw[:-1], 60.0
    value = float(raw) * scale
    if value < 0:
        raise ValueError("expected a number of seconds >= 0")
    return value


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]


class Option:
    """One option: its name, type, default, help, env var and CLI flags.

    ``kind`` is one of: str, int, float (seconds), bool, choice, octal, list, bind, kv.
    ``list``, ``bind`` and ``kv`` options may be repeated on the command line.
    """

    __slots__ = ("choices", "default", "help", "kind", "metavar", "minimum", "name", "section", "short")

    def __init__(
        self,
        name: str,
        kind: str,
        default: Any,
        help: str,
        *,
        short: str = "",
        metavar: str = "",
        choices: tuple[str, ...] = (),
        minimum: float | None = None,
        section: str = "server",
    ) -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.short = short
        self.metavar = metavar or name.upper()
        self.choices = choices
        self.minimum = minimum
        self.section = section

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "SERVE_" + self.name.upper()

    @property
    def repeatable(self) -> bool:
        return self.kind in ("list", "bind", "kv")

    def convert(self, value: Any, source: str) -> Any:
        """Turn a raw value (a CLI/env string or a TOML/Python value) into the typed value."""
        try:
            return self._convert(value)
        except OptionError as exc:
            raise OptionError(f"{source}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise OptionError(f"{source}: bad value {value!r} for {self.flag}: {exc}") from None

    def _convert(self, value: Any) -> Any:
        kind = self.kind
        if kind == "bool":
            return value if isinstance(value, bool) else _parse_bool(str(value))
        if kind in ("list", "bind"):
            items: list[Any]
            if isinstance(value, str):
                items = _split_list(value) if kind == "list" else [v for v in value.split(",") if v.strip()]
            elif isinstance(value, (list, tuple)):
                # A repeated flag gives a list; each item may still be a comma list ("127.0.0.1,unix").
                items = [part for item in value for part in (_split_list(item) if kind == "list" and
                                                             isinstance(item, str) else [item])]
            else:
                raise TypeError("expected a list")
            if kind == "bind":
                return tuple(v if isinstance(v, Bind) else Bind.parse(str(v)) for v in items)
            return tuple(str(v) for v in items)
        if kind == "kv":
            if isinstance(value, dict):
                return {str(k): v for k, v in value.items()}
            pairs = [value] if isinstance(value, str) else list(value)
            out: dict[str, Any] = {}
            for pair in pairs:
                key, sep, val = str(pair).partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"expected KEY=VALUE, got {pair!r}")
                out[key.strip().replace("-", "_")] = val
            return out
        if value is None and self.default is None:
            return None
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError("expected a whole number")
            result: Any = int(value)
        elif kind == "float":
            if isinstance(value, bool):
                raise TypeError("expected a number of seconds")
            result = float(value) if isinstance(value, (int, float)) else _parse_seconds(str(value))
        elif kind == "octal":
            result = value if isinstance(value, int) and not isinstance(value, bool) else _parse_octal(str(value))
        elif kind == "choice":
            result = str(value).lower()
            if result not in self.choices:
                raise ValueError(f"choose one of {', '.join(self.choices)}{closest(result, self.choices)}")
        else:
            result = str(value)
        if self.minimum is not None and result < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}")
        return result


# --------------------------------------------------------------------------- the options

DEFAULT_ACCESS_LOG_FORMAT = (
    '{client} - - [{time}] "{method} {path} {protocol}" {status} {size} "{referer}" "{user_agent}" {duration_ms}ms'
)

OPTIONS: tuple[Option, ...] = (
    Option("backend", "str", "waitress", "server to run the app on (see `serve backends`)", metavar="NAME"),
    Option(
        "bind",
        "bind",
        (Bind("tcp", host="127.0.0.1", port=8000),),
        "address to listen on, repeatable: HOST:PORT, [::1]:PORT, unix:PATH[:MODE], fd://N; port 0 picks a free one",
        short="-b",
        metavar="ADDR",
    ),
    Option("workers", "int", 1, "worker processes", short="-w", minimum=1, metavar="N"),
    Option("threads", "int", 4, "threads per worker that run the app", minimum=1, metavar="N"),
    Option("connections", "int", 1000, "most client connections at once per worker", minimum=1, metavar="N"),
    Option("backlog", "int", 2048, "listen backlog: connections waiting to be accepted", minimum=1, metavar="N"),
    Option("timeout", "float", 30.0, "seconds a request may run before its worker is restarted", minimum=0,
           metavar="SECONDS"),
    Option("keepalive", "float", 5.0, "seconds an idle keep-alive connection stays open", minimum=0,
           metavar="SECONDS"),
    Option("graceful_timeout", "float", 30.0, "seconds in-flight requests get to finish on stop", minimum=0,
           metavar="SECONDS"),
    Option("max_requests", "int", 0, "restart a worker after this many requests (0: never)", minimum=0,
           metavar="N"),
    Option("limit_request_line", "int", 8190, "longest request line in bytes (0: no limit)", minimum=0,
           metavar="BYTES", section="limits"),
    Option("limit_request_fields", "int", 100, "most header fields in a request (0: no limit)", minimum=0,
           metavar="N", section="limits"),
    Option("limit_request_field_size", "int", 8190, "longest header field in bytes (0: no limit)", minimum=0,
           metavar="BYTES", section="limits"),
    Option("limit_request_body", "int", 1073741824, "largest request body in bytes (0: no limit)", minimum=0,
           metavar="BYTES", section="limits"),
    Option("header_timeout", "float", 10.0, "seconds a client gets to send the request head (slow clients)",
           minimum=0, metavar="SECONDS", section="limits"),
    Option("root_path", "str", "", "mount the app under this URL prefix (sets SCRIPT_NAME)", metavar="PREFIX",
           section="http"),
    Option("proxy_headers", "bool", False, "honour X-Forwarded-* from --forwarded-allow-ips peers only",
           section="http"),
    Option("forwarded_allow_ips", "list", ("127.0.0.1", "::1"), "proxies trusted for forwarded headers (IPs, CIDRs)",
           metavar="IPS", section="http"),
    Option("forwarded_host_header", "str", "", "extra header a trusted proxy names the host in (e.g. X-FHost)",
           metavar="NAME", section="http"),
    Option("health_path", "str", "", "answer this path (e.g. /healthz) without calling the app: 200 ready,"
           " 503 once stopping", metavar="PATH", section="http"),
    Option("access_log", "bool", False, "log one line per request to stderr", section="logging"),
    Option("access_log_format", "str", DEFAULT_ACCESS_LOG_FORMAT, "access log line with {named} fields",
           metavar="FORMAT", section="logging"),
    Option("log_format", "choice", "text", "text, or json: one JSON object per line for the launcher's"
           " messages and the access log", choices=("text", "json"), metavar="FORMAT", section="logging"),
    Option("log_level", "choice", "info", "launcher log level",
           choices=("critical", "error", "warning", "info", "debug"), metavar="LEVEL", section="logging"),
    Option("chdir", "str", "", "change to this directory before importing the app", metavar="DIR",
           section="process"),
    Option("pythonpath", "list", (), "directories to put on sys.path, comma separated", metavar="DIRS",
           section="process"),
    Option("user", "str", "", "drop privileges to this user after binding", metavar="USER", section="process"),
    Option("group", "str", "", "drop privileges to this group after binding", metavar="GROUP", section="process"),
    Option("umask", "octal", None, "umask for the server process (octal, e.g. 022)", metavar="MASK",
           section="process"),
    Option("reload", "bool", False, "restart when a source file changes (development)", section="process"),
    Option("reload_dir", "list", (), "with --reload: also watch the files under these directories (default: the"
           " working directory)", metavar="DIRS", section="process"),
    Option("reload_include", "list", (), "with --reload: file patterns to watch besides *.py and *.wsgi",
           metavar="PATTERNS", section="process"),
    Option("reload_exclude", "list", (), "with --reload: file or path patterns to leave alone", metavar="PATTERNS",
           section="process"),
    Option("allow_root", "bool", False, "allow running as root on a non-loopback address without --user",
           section="process"),
    Option("ready_file", "str", "", "write the bound addresses as JSON to this file once listening",
           metavar="PATH", section="process"),
    Option("option", "kv", {}, "backend-specific option, repeatable (see `serve backends`)", short="-o",
           metavar="KEY=VALUE", section="server"),
)

BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}

#: Names accepted besides the options themselves.
APP_KEY = "app"
CONFIG_ENV = "SERVE_CONFIG"


def _normalise(key: str) -> str:
    return key.strip().replace("-", "_").lower()


def lookup(key: str, source: str) -> Option:
    """Find the option for ``key``, or raise naming the closest valid one."""
    name = _normalise(key)
    opt = BY_NAME.get(name)
    if opt is None:
        raise OptionError(f"{source}: unknown option '{key}'{closest(name, BY_NAME)}")
    return opt


# --------------------------------------------------------------------------- resolved options


class ServeOptions:
    """The resolved, validated, frozen options of one server.

    Attribute names are the option names (``opts.workers``, ``opts.bind``...), plus ``app`` and
    ``explicit``: the names set by the user anywhere (CLI, keyword, env or file), which lets a
    backend reject options it cannot honour without rejecting defaults.
    """

    __slots__ = (*BY_NAME, "app", "explicit", "sources")

    if TYPE_CHECKING:
        backend: str
        bind: tuple[Bind, ...]
        workers: int
        threads: int
        connections: int
        backlog: int
        timeout: float
        keepalive: float
        graceful_timeout: float
        max_requests: int
        limit_request_line: int
        limit_request_fields: int
        limit_request_field_size: int
        limit_request_body: int
        header_timeout: float
        root_path: str
        proxy_headers: bool
        forwarded_allow_ips: tuple[str, ...]
        forwarded_host_header: str
        health_path: str
        access_log: bool
        access_log_format: str
        log_format: str
        log_level: str
        chdir: str
        pythonpath: tuple[str, ...]
        user: str
        group: str
        umask: int | None
        allow_root: bool
        reload: bool
        reload_dir: tuple[str, ...]
        reload_include: tuple[str, ...]
        reload_exclude: tuple[str, ...]
        ready_file: str
        option: dict[str, Any]
        app: Any
        explicit: frozenset[str]
        sources: dict[str, str]

    def __init__(self, app: Any, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        set_ = object.__setattr__
        for opt in OPTIONS:
            set_(self, opt.name, values.get(opt.name, opt.default))
        set_(self, "app", app)
        set_(self, "sources", dict(sources))
        set_(self, "explicit", frozenset(sources))
        _validate(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ServeOptions is frozen: use .replace(**changes)")

    def is_set(self, name: str) -> bool:
        """True when the user set ``name`` (anywhere), even to its default value."""
        return name in self.explicit

    def replace(self, **changes: Any) -> ServeOptions:
        """A copy with some values changed (the changed names count as set)."""
        values = {opt.name: getattr(self, opt.name) for opt in OPTIONS}
        sources = dict(self.sources)
        app = changes.pop("app", self.app)
        for key, value in changes.items():
            opt = lookup(key, "replace()")
            values[opt.name] = opt.convert(value, "replace()")
            sources[opt.name] = "keyword"
        return ServeOptions(app, values, sources)

    def as_dict(self) -> dict[str, Any]:
        return {opt.name: getattr(self, opt.name) for opt in OPTIONS}

    def to_argv(self, *, include_app: bool = True) -> list[str]:
        """The ``serve`` command-line arguments that reproduce the options set explicitly.

        Used to start a background server, a benchmarked server or a systemd unit through the
        same code path as ``serve`` itself.
        """
        argv: list[str] = []
        for opt in OPTIONS:
            if opt.name not in self.explicit:
                continue
            value = getattr(self, opt.name)
            if opt.kind == "bool":
                argv.append(opt.flag if value else "--no-" + opt.flag[2:])
            elif opt.kind in ("list", "bind"):
                for item in value:
                    argv += [opt.flag, str(item)]
            elif opt.kind == "kv":
                for key, val in value.items():
                    argv += [opt.flag, f"{key}={val}"]
            elif opt.kind == "octal":
                argv += [opt.flag, f"{value:03o}"]
            elif value is not None:
                argv += [opt.flag, format(value, "g") if isinstance(value, float) else str(value)]
        if include_app and isinstance(self.app, str):
            argv.append(self.app)
        return argv

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.explicit))
        return f"ServeOptions(app={self.app!r}, {shown})"


def _validate(opts: ServeOptions) -> None:
    """Checks that span one option's value beyond its type."""
    if not opts.bind:
        raise OptionError("--bind: at least one address is needed")
    if opts.root_path:
        if not opts.root_path.startswith("/"):
            raise OptionError(f"--root-path '{opts.root_path}' must start with '/', e.g. /yourapplication")
        from launcher.middleware import RootPath

        try:
            RootPath(lambda e, s: [], opts.root_path)
        except (ValueError, TypeError) as exc:
            raise OptionError(f"--root-path: {exc}") from None
    ip_entries = [ip for ip in opts.forwarded_allow_ips if ip not in ("*", "unix")]
    if ip_entries:
        import ipaddress

        for entry in ip_entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise OptionError(
                    f"--forwarded-allow-ips: '{entry}' is not an IP address or CIDR network"
                    " (use e.g. 127.0.0.1,10.0.0.0/8, or * to trust every peer)"
                ) from None
    if opts.health_path and (not opts.health_path.startswith("/") or any(c in opts.health_path for c in "?# ")):
        raise OptionError(f"--health-path '{opts.health_path}' must be a plain path starting with '/', e.g. /healthz")
    if opts.access_log and opts.access_log_format != DEFAULT_ACCESS_LOG_FORMAT:
        from launcher.middleware import AccessLog

        try:
            AccessLog(lambda e, s: [], opts.access_log_format)
        except ValueError as exc:
            raise OptionError(f"--access-log-format: {exc}") from None


# --------------------------------------------------------------------------- sources


def read_config_file(path: str | None = None, cwd: str | None = None) -> tuple[dict[str, Any], str]:
    """Read ``serve.toml`` or ``[tool.serve]`` of ``pyproject.toml``; return (table, file name).

    With ``path`` given, that file must exist.  Without it, ``serve.toml`` then ``pyproject.toml`` in
    ``cwd`` are tried, and a missing file means an empty table.
    """
    base = cwd or os.getcwd()
    candidates = [path] if path else [os.path.join(base, "serve.toml"), os.path.join(base, "pyproject.toml")]
    for candidate in candidates:
        if candidate is None:
            continue
        if not os.path.exists(candidate):
            if path:
                raise ConfigFileError(f"config file not found: {candidate}")
            continue
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on 3.10 only
            import tomli as tomllib
        try:
            with open(candidate, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigFileError(f"cannot read config file {candidate}: {exc}") from None
        name = os.path.basename(candidate)
        if name == "pyproject.toml" and not path:
            table = data.get("tool", {}).get("serve")
            if table is None:
                continue
            return dict(table), f"{candidate} [tool.serve]"
        if name == "pyproject.toml":
            return dict(data.get("tool", {}).get("serve", {})), f"{candidate} [tool.serve]"
        return dict(data), candidate
    return {}, ""


def resolve(
    app: Any = None,
    *,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config: str | None = None,
    cwd: str | None = None,
    use_file: bool = True,
) -> ServeOptions:
    """Merge every source into one :class:`ServeOptions`.

    ``cli`` holds CLI flags or ``launch()`` keywords (already the right names; values raw or typed),
    ``env`` the process environment (``SERVE_*`` variables are read from it), ``config`` an explicit
    config file path.  Unknown keys in any source are errors naming the closest valid key.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    environ = os.environ if env is None else env

    if use_file:
        table, file_name = read_config_file(config or environ.get(CONFIG_ENV) or None, cwd)
        for key, value in table.items():
            if _normalise(key) == APP_KEY:
                if app is None:
                    app = str(value)
                continue
            opt = lookup(key, f"config file {file_name}")
            values[opt.name] = opt.convert(value, f"config file {file_name}, key '{key}'")
            sources[opt.name] = "file"

    for key, raw in environ.items():
        if not key.startswith("SERVE_") or key == CONFIG_ENV:
            continue
        name = key[6:].lower()
        if name == APP_KEY:
            if app is None:
                app = raw
            continue
        if name not in BY_NAME:
            valid = [o.env for o in OPTIONS] + [CONFIG_ENV, "SERVE_APP"]
            raise OptionError(f"environment: unknown variable {key}{closest(key, valid)}")
        opt = BY_NAME[name]
        values[opt.name] = opt.convert(raw, f"environment {key}")
        sources[opt.name] = "env"

    for key, value in (cli or {}).items():
        opt = lookup(key, "option")
        if opt.kind == "kv" and opt.name in values and not isinstance(value, dict):
            merged = dict(values[opt.name])
            merged.update(opt.convert(value, opt.flag))
            values[opt.name] = merged
        else:
            values[opt.name] = opt.convert(value, opt.flag)
        sources[opt.name] = "cli"

    if app is None:
        raise OptionError("no app given: serve MODULE:APP (e.g. serve examples.hello:app), or set SERVE_APP")
    return ServeOptions(app, values, sources)


def options_table() -> str:
    """The README's options table, in Markdown, generated from :data:`OPTIONS`."""
    rows = ["| flag | env | default | meaning |", "| --- | --- | --- | --- |"]
    for opt in OPTIONS:
        flag = f"`{opt.short}`, `{opt.flag}`" if opt.short else f"`{opt.flag}`"
        if opt.kind == "bool":
            flag += f" / `--no-{opt.flag[2:]}`"
        rows.append(f"| {flag} | `{opt.env}` | {format_default(opt)} | {opt.help} |")
    return "\n".join(rows)


def format_default(opt: Option) -> str:
    value = opt.default
    if opt.kind == "bind":
        return "`" + ",".join(str(b) for b in value) + "`"
    if opt.kind == "list":
        return "`" + ",".join(value) + "`" if value else "(none)"
    if opt.kind == "kv":
        return "(none)"
    if value is None or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, float):
        return f"`{value:g}`"
    text = str(value).replace("|", "\\|")
    return f"`{text}`"

