"""``serve config systemd``: a .service running ``serve`` with the same options, and with
``--socket-activation`` the matching .socket unit (systemd binds; the launcher takes the sockets
from LISTEN_FDS, see :func:`launcher.sockets.activation_listeners`)."""

from __future__ import annotations

from launcher.deploy.common import header
from launcher.deploy.context import Deployment, Rendered
from launcher.deploy.text import comment, systemd_quote
from launcher.errors import OptionError


def render(dep: Deployment) -> list[Rendered]:
    if dep.protocol == "cgi":
        raise OptionError("serve config systemd: --backend cgi has no long-running process (the web server starts"
                          " it per request); use serve config cgi-script")
    files = [Rendered(f"{dep.name}.service", service(dep))]
    if dep.socket_activation:
        files.append(Rendered(f"{dep.name}.socket", socket_unit(dep)))
    return files


def _exec_start(dep: Deployment) -> str:
    argv = [*dep.serve_command, *dep.serve_argv(with_bind=not dep.socket_activation)]
    from launcher.cli import COMMANDS

    if len(argv) > len(dep.serve_command) and argv[len(dep.serve_command)] in COMMANDS:
        argv.insert(len(dep.serve_command), "run")  # an app spec named like a subcommand
    return " ".join(systemd_quote(arg) for arg in argv)


def service(dep: Deployment) -> str:
    opts = dep.opts
    stop = int(opts.graceful_timeout + 5 + 0.999)
    lines = [
        header(dep, f"systemd unit {dep.name}.service"),
        comment(f"""
            Install: save it as /etc/systemd/system/{dep.name}.service, then
              systemctl daemon-reload && systemctl enable --now {dep.name}{'.socket' if dep.socket_activation else ''}
            """),
        "",
        "[Unit]",
        f"Description={dep.app} served by wsgi-launcher ({dep.backend_name})",
        "After=network.target",
    ]
    if dep.socket_activation:
        lines += [f"Requires={dep.name}.socket", f"After={dep.name}.socket"]
    lines += [
        "",
        "[Service]",
        "# serve tells systemd when it is listening (READY=1) and when it starts to drain (STOPPING=1);",
        "# with --workers the ready message may come from a worker process, hence NotifyAccess=all.",
        "Type=notify",
        "NotifyAccess=all",
        "# The working directory serve was configured from: the app is imported from here and",
        "# serve.toml / pyproject.toml here are read again.",
        f"WorkingDirectory={dep.cwd}",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if dep.socket_activation:
        lines += ["# No --bind: the addresses come from the .socket unit (LISTEN_FDS)."]
    lines += [
        f"ExecStart={_exec_start(dep)}",
        "# The launcher's graceful stop: SIGTERM stops accepting, lets in-flight requests finish within",
        f"# --graceful-timeout ({opts.graceful_timeout:g}s) and exits 0; systemd waits 5 s more before SIGKILL.",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={stop}",
        "Restart=on-failure",
        "RestartSec=1",
    ]
    lines += user_lines(dep)
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def user_lines(dep: Deployment) -> list[str]:
    """User=/Group= from --user/--group, and what an unprivileged start then needs."""
    opts = dep.opts
    if not (opts.user or opts.group):
        return [
            "# Runs as root unless told otherwise: serve with --user/--group (they become User=/Group=)",
            "# and make sure that user can read the virtualenv and the app.",
        ]
    lines = [
        "# --user/--group: systemd starts serve as them (serve's own switch is then a no-op).",
    ]
    if opts.user:
        lines.append(f"User={opts.user}")
    if opts.group:
        lines.append(f"Group={opts.group}")
    if not opts.user:
        return lines
    low = [b for b in opts.bind if b.kind == "tcp" and 0 < b.port < 1024]
    if low and not dep.socket_activation:
        lines += [
            f"# Port {low[0].port} is below 1024: an unprivileged user may bind it only with this capability.",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        ]
    unix = [b for b in opts.bind if b.kind == "unix"]
    if unix and not dep.socket_activation:
        parts = unix[0].path.split("/")
        if len(parts) > 3 and parts[1] == "run":
            lines += [
                f"# /run/{parts[2]}: created for {opts.user} at start, so it can create its socket there.",
                f"RuntimeDirectory={parts[2]}",
            ]
        else:
            lines.append(f"# {opts.user} must be able to create {unix[0].path} (its directory must be writable).")
    return lines


def socket_unit(dep: Deployment) -> str:
    opts = dep.opts
    lines = [
        header(dep, f"systemd unit {dep.name}.socket"),
        comment(f"""
            Socket activation: systemd listens on these addresses and starts {dep.name}.service on the first
            connection, passing the sockets (LISTEN_FDS); serve uses them instead of binding.  Restarting
            the service then loses no connection: they wait in the socket's backlog.
            """),
        "",
        "[Unit]",
        f"Description=sockets of {dep.name}.service",
        "",
        "[Socket]",
    ]
    modes = set()
    for bind in opts.bind:
        if bind.kind == "fd":
            raise OptionError(f"serve config systemd --socket-activation: --bind {bind} is a descriptor; give"
                              " the addresses systemd should listen on")
        if bind.kind == "tcp":
            if bind.port == 0:
                raise OptionError(f"serve config systemd --socket-activation: --bind {bind}: systemd needs a"
                                  " fixed port, not 0")
            host = f"[{bind.host}]" if ":" in bind.host else bind.host
            lines.append(f"ListenStream={host}:{bind.port}")
        else:
            lines.append(f"ListenStream={bind.path}")
            modes.add(dep.unix_mode(bind))
    if any(b.kind == "tcp" and ":" in b.host for b in opts.bind):
        lines.append("BindIPv6Only=ipv6-only")
    if modes:
        mode = max(modes)
        lines += [
            "# The launcher's own unix socket mode (0660 unless --bind gives one): never world-writable.",
            f"SocketMode={mode:04o}",
        ]
        if opts.user:
            lines.append(f"SocketUser={opts.user}")
        if opts.group or opts.user:
            lines.append(f"SocketGroup={opts.group or opts.user}")
    lines += [f"Backlog={opts.backlog}", "", "[Install]", "WantedBy=sockets.target", ""]
    return "\n".join(lines)
