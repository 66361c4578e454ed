"""What every template needs, worked out once from the resolved options: :class:`Deployment`.

The templates never look at the raw flags: they read the wire protocol the backend speaks, the
address(es) the front server connects to, the mount prefix, the interpreter and virtualenv, and
collect the warnings (:attr:`Deployment.warnings`) the CLI prints on stderr.
"""

from __future__ import annotations

import os
import re
import sys

from launcher.errors import OptionError
from launcher.options import Bind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from backends.base import Backend
    from launcher.options import ServeOptions

FRONTS = ("nginx", "apache", "lighttpd")

#: config-only flag -> the kinds it applies to (anything else is an error: nothing is dropped).
FLAG_KINDS: dict[str, tuple[str, ...]] = {
    "upstream": ("nginx",),
    "listen": FRONTS,
    "server_name": ("nginx", "apache"),
    "script": ("apache", "lighttpd"),
    "socket_activation": ("systemd",),
}

#: what nginx/Apache/lighttpd workers run as on Debian (and the group to give the socket to).
WEB_USER = "www-data"

#: protocols a backend may announce with ``-o protocol=...`` (uWSGI: http or uwsgi).
WIRE_PROTOCOLS = ("http", "uwsgi", "fastcgi")


class Rendered:
    """One generated file: its conventional name, its text and the mode to write it with."""

    __slots__ = ("filename", "mode", "text")

    def __init__(self, filename: str, text: str, mode: int = 0o644) -> None:
        self.filename = filename
        self.text = text if text.endswith("\n") else text + "\n"
        self.mode = mode

    def __repr__(self) -> str:
        return f"Rendered({self.filename!r}, {len(self.text)} chars, mode={self.mode:04o})"


class Listen:
    """Where the front server listens (``--listen``): a port, HOST:PORT, [::1]:PORT or unix:PATH."""

    __slots__ = ("host", "path", "port")

    def __init__(self, host: str = "", port: int = 80, path: str = "") -> None:
        self.host = host
        self.port = port
        self.path = path

    @classmethod
    def parse(cls, text: str) -> Listen:
        raw = text.strip()
        if raw.isdigit():
            port = int(raw)
            if not 0 < port < 65536:
                raise OptionError(f"--listen {text}: a port from 1 to 65535")
            return cls(port=port)
        bind = Bind.parse(raw)
        if bind.kind == "fd":
            raise OptionError(f"--listen {text}: give the address the front server listens on, not a descriptor")
        if bind.kind == "unix":
            return cls(path=bind.path)
        if bind.port == 0:
            raise OptionError(f"--listen {text}: a front server needs a fixed port, not 0")
        host = "" if bind.host in ("0.0.0.0", "*") else bind.host
        return cls(host=host, port=bind.port)

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_default(self) -> bool:
        """Plain port 80 on every address: what a distribution's main config already listens on."""
        return not self.path and not self.host and self.port == 80

    def host_port(self, wildcard: str = "*") -> str:
        """``HOST:PORT`` with IPv6 in brackets, ``wildcard:PORT`` for every address."""
        if self.path:
            return f"unix:{self.path}"
        host = self.host or wildcard
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}" if host else str(self.port)

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return self.host_port("") if self.host else str(self.port)


def app_name(spec: Any) -> str:
    """A short name for the app (``myproject:app`` -> ``myproject``; ``path/to/site.py:app`` -> ``site``)."""
    text = str(spec)
    module = text.split(":", 1)[0] if not re.match(r"^[A-Za-z]:[\\/]", text) else text.rsplit(":", 1)[0]
    if "/" in module or module.endswith(".py"):
        name = os.path.splitext(os.path.basename(module))[0]
    else:
        name = module.split(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")
    return name or "app"


class Deployment:
    """Everything a template needs; built by :func:`build`.

    ``protocol`` is what the front server speaks to the app: ``http``, ``fastcgi``, ``uwsgi`` or
    ``cgi``; ``embedded`` is true for the mod_wsgi backend (Apache itself hosts the app).
    ``targets`` are the addresses a front server connects to: the ``--upstream`` addresses, else
    the first ``--bind`` (the other binds of one server are the same server).
    """

    def __init__(self, kind: str, opts: ServeOptions, *, backend: Backend | None, backend_options: dict[str, Any],
                 upstreams: tuple[Bind, ...] = (), listen: Listen | None = None, server_name: str = "",
                 name: str = "", script: str = "", socket_activation: bool = False,
                 config_argv: tuple[str, ...] = (), cwd: str = "", python: str = "", venv: str = "") -> None:
        self.kind = kind
        self.opts = opts
        self.backend = backend
        self.backend_name = opts.backend
        self.backend_options = backend_options
        base_protocol = getattr(backend, "protocol", "http") if backend is not None else "http"
        wanted = str(backend_options.get("protocol", "") or "").lower()
        self.protocol = wanted if wanted in WIRE_PROTOCOLS else base_protocol
        self.embedded = opts.backend == "mod_wsgi"
        self.upstreams = upstreams
        self.upstream_given = bool(upstreams)
        self.listen = listen or Listen()
        self.server_name = server_name
        self.name = name or app_name(opts.app)
        self.socket_activation = socket_activation
        self.config_argv = config_argv
        self.cwd = cwd or os.getcwd()
        self.python = python or sys.executable
        self.venv = venv or sys.prefix
        self.workdir = os.path.normpath(os.path.join(self.cwd, opts.chdir)) if opts.chdir else self.cwd
        self.pythonpath = tuple(os.path.normpath(os.path.join(self.workdir, p)) for p in opts.pythonpath)
        self.prefix = (opts.root_path or "").rstrip("/")
        self.script = script or self.default_script()
        self.warnings: list[str] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------------ derived values

    @property
    def app(self) -> str:
        return str(self.opts.app)

    @property
    def targets(self) -> tuple[Bind, ...]:
        return self.upstreams or self.opts.bind[:1]

    @property
    def bin_dir(self) -> str:
        return os.path.dirname(self.python)

    @property
    def serve_command(self) -> list[str]:
        """The absolute command that runs ``serve`` from this virtualenv."""
        serve = os.path.join(self.bin_dir, "serve")
        if os.access(serve, os.X_OK):
            return [serve]
        return [self.python, "-m", "launcher"]

    def default_script(self) -> str:
        """Where the guide keeps the entry file: /var/www/NAME/NAME.wsgi (.cgi for CGI)."""
        ext = ".cgi" if self.protocol == "cgi" else ".wsgi"
        return f"/var/www/{self.name}/{self.name}{ext}"

    def command_line(self) -> str:
        """The ``serve config`` command that reproduces this output."""
        import shlex

        argv = ["serve", "config", self.kind, *self.opts.to_argv(include_app=False), *self.config_argv]
        if isinstance(self.opts.app, str):
            argv.append(self.opts.app)
        return shlex.join(argv)

    def serve_line(self, *, with_bind: bool = True) -> str:
        """The ``serve`` command line of the server this config goes with."""
        import shlex

        return shlex.join(["serve", *self.serve_argv(with_bind=with_bind)])

    def serve_argv(self, *, with_bind: bool = True) -> list[str]:
        """``serve`` arguments reproducing the options (``--bind`` left out for socket activation)."""
        argv = self.opts.to_argv()
        if with_bind:
            return argv
        out: list[str] = []
        skip = False
        for arg in argv:
            if skip:
                skip = False
                continue
            if arg in ("--bind", "-b"):
                skip = True
                continue
            out.append(arg)
        return out

    def has_middleware_options(self) -> bool:
        return any(self.opts.is_set(n) for n in MIDDLEWARE_OPTIONS)

    def unix_mode(self, bind: Bind) -> int:
        from launcher.sockets import DEFAULT_UNIX_MODE

        return DEFAULT_UNIX_MODE if bind.mode is None else bind.mode

    def socket_reachable_by_web_user(self, bind: Bind) -> bool:
        """Can a front-server worker (www-data, or nobody) write this unix socket of ours?

        The launcher creates it with the --bind mode (0660 by default), owned by the user serve
        runs as; --user/--group hand it to that user/group after binding.  Any --group counts (the
        user named the web server's group); --user only when it is the web server's own user.
        """
        mode = self.unix_mode(bind)
        if mode & 0o006 == 0o006:
            return True
        if self.opts.group and mode & 0o060 == 0o060:
            return True  # --group names the web server's group (www-data on Debian, nginx elsewhere)
        return bool(self.opts.user == WEB_USER and mode & 0o600 == 0o600)


MIDDLEWARE_OPTIONS = ("root_path", "proxy_headers", "forwarded_allow_ips", "forwarded_host_header", "access_log",
                      "access_log_format")


def build(kind: str, opts: ServeOptions, config: dict[str, Any], *, cwd: str = "") -> Deployment:
    """Check the options against the backend (as ``serve`` does) and ``kind``; return the deployment."""
    from launcher import registry

    for flag, kinds in FLAG_KINDS.items():
        value = config.get(flag)
        if value and kind not in kinds:
            name = "--" + flag.replace("_", "-")
            raise OptionError(f"serve config {kind}: {name} does not apply here (it is for {', '.join(kinds)})")
    backend: Backend | None = None
    backend_options: dict[str, Any] = {}
    cls = registry.get_class(opts.backend)
    backend = cls()
    try:
        backend.check(opts)
        backend_options = dict(backend.backend_options)
    except ImportError:  # the backend validates -o with its own library, which is not installed here
        backend_options = dict(opts.option)
    info = registry.describe(opts.backend, cls)
    upstreams = tuple(Bind.parse(text) for text in config.get("upstream") or ())
    listen = Listen.parse(config["listen"]) if config.get("listen") else None
    argv = _config_argv(config)
    dep = Deployment(kind, opts, backend=backend, backend_options=backend_options, upstreams=upstreams,
                     listen=listen, server_name=config.get("server_name") or "", name=config.get("name") or "",
                     script=os.path.abspath(config["script"]) if config.get("script") else "",
                     socket_activation=bool(config.get("socket_activation")), config_argv=argv, cwd=cwd)
    if not info.installed:
        dep.notes.append(f"backend '{opts.backend}' is not installed here ({info.distribution}):"
                         f" pip install 'wsgi-launcher[{info.extra}]' where the app runs")
    if kind in FRONTS:
        _check_front(dep)
    elif kind in ("systemd", "supervisor"):
        _check_root(dep)
    return dep


def _check_root(dep: Deployment) -> None:
    """serve refuses root on a non-loopback address without --user or --allow-root: say so now."""
    opts = dep.opts
    if opts.user or getattr(opts, "allow_root", False):
        return
    import ipaddress

    for bind in opts.bind:
        if bind.kind != "tcp" or bind.host == "localhost":
            continue
        try:
            if ipaddress.ip_address(bind.host).is_loopback:
                continue
        except ValueError:
            pass
        dep.warnings.append(f"started as root, serve refuses to listen on {bind} without --user (or --allow-root);"
                            " add --user www-data to the options")
        return


def _config_argv(config: dict[str, Any]) -> tuple[str, ...]:
    argv: list[str] = []
    for text in config.get("upstream") or ():
        argv += ["--upstream", text]
    for flag in ("listen", "server_name", "name", "script"):
        if config.get(flag):
            argv += ["--" + flag.replace("_", "-"), str(config[flag])]
    if config.get("socket_activation"):
        argv.append("--socket-activation")
    return tuple(argv)


def _check_front(dep: Deployment) -> None:
    """Errors and warnings shared by nginx, Apache and lighttpd."""
    if dep.protocol == "cgi" or (dep.embedded and dep.kind == "apache"):
        return  # the front server runs the app itself: no address to connect to
    for bind in dep.targets:
        if bind.kind == "fd":
            raise OptionError(f"serve config {dep.kind}: cannot tell where {bind} listens; give the server a"
                              " --bind address (or --upstream ADDR) the front server can connect to")
        if bind.kind == "tcp" and bind.port == 0:
            raise OptionError(f"serve config {dep.kind}: --bind {bind} picks a random port at start; the front"
                              " server needs the real one: give a fixed port (or a unix socket)")
    if not dep.upstream_given:
        for bind in dep.targets:
            if bind.kind == "unix" and not dep.socket_reachable_by_web_user(bind):
                who = f"{dep.kind} workers run as {WEB_USER}" + (
                    " (nobody when nginx.conf sets no user)" if dep.kind == "nginx" else "")
                dep.warnings.append(
                    f"{who} and get 502 Bad Gateway from unix:{bind.path}: it will be mode"
                    f" {dep.unix_mode(bind):04o} owned by the user serve runs as; serve with --group {WEB_USER}"
                    f" (or --bind unix:{bind.path}:0666)")
    if dep.protocol == "http":
        _check_proxy_trust(dep)


def _check_proxy_trust(dep: Deployment) -> None:
    opts = dep.opts
    if not opts.proxy_headers:
        dep.notes.append(f"without --proxy-headers the app sees {dep.kind}'s address as REMOTE_ADDR and ignores the"
                         " X-Forwarded-* headers this config sends")
        return
    trusted = set(opts.forwarded_allow_ips)
    if "*" in trusted:
        return
    for bind in dep.targets:
        if bind.kind == "unix" and "unix" not in trusted:
            dep.warnings.append(f"--proxy-headers: {dep.kind} connects over unix:{bind.path}, but 'unix' is not in"
                                " --forwarded-allow-ips, so its X-Forwarded-* headers are dropped")
        elif bind.kind == "tcp" and bind.host in ("127.0.0.1", "::1", "localhost") and not _trusts_loopback(
                trusted, bind.host):
            dep.warnings.append(f"--proxy-headers: {dep.kind} connects from {bind.host}, which --forwarded-allow-ips"
                                " does not list, so its X-Forwarded-* headers are dropped")


def _trusts_loopback(trusted: set[str], host: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    for entry in trusted:
        if entry == "unix":
            continue
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
