"""``serve config supervisor``: a supervisord ``[program:x]`` section running ``serve`` with the same
options (the guide: "Supervisor can manage the FastCGI process")."""

from __future__ import annotations

from launcher.deploy.common import header
from launcher.deploy.context import Deployment, Rendered
from launcher.deploy.text import supervisor_command
from launcher.errors import OptionError


def render(dep: Deployment) -> list[Rendered]:
    if dep.protocol == "cgi":
        raise OptionError("serve config supervisor: --backend cgi has no long-running process (the web server"
                          " starts it per request); use serve config cgi-script")
    opts = dep.opts
    argv = [*dep.serve_command, *dep.serve_argv()]
    from launcher.cli import COMMANDS

    if len(argv) > len(dep.serve_command) and argv[len(dep.serve_command)] in COMMANDS:
        argv.insert(len(dep.serve_command), "run")
    stop = int(opts.graceful_timeout + 5 + 0.999)
    lines = [
        header(dep, f"supervisord program {dep.name}", prefix="; "),
        f"; Debian: save it as /etc/supervisor/conf.d/{dep.name}.conf, then `supervisorctl update`.",
        "",
        f"[program:{dep.name}]",
        f"command={supervisor_command(argv)}",
        "; the directory serve was configured from: the app is imported from here",
        f"directory={dep.cwd}",
        "autostart=true",
        "autorestart=true",
        "; serve reports a start failure (bad option, app import error) within a second or two",
        "startsecs=2",
        "; the launcher's graceful stop: SIGTERM stops accepting and lets in-flight requests finish",
        f"; within --graceful-timeout ({opts.graceful_timeout:g}s); supervisord waits 5 s more before SIGKILL.",
        "stopsignal=TERM",
        f"stopwaitsecs={stop}",
        "; the signal goes to serve only (it stops its own workers); a SIGKILL takes the whole group",
        "stopasgroup=false",
        "killasgroup=true",
    ]
    if opts.user or opts.group:
        lines += [
            f"; No user=: serve binds as root, then drops to --user/--group itself ({opts.user or opts.group}).",
        ]
    else:
        lines += ["; user=www-data     (or serve with --user/--group: it binds first, then drops privileges)"]
    lines += [
        "redirect_stderr=true",
        "environment=PYTHONUNBUFFERED=\"1\"",
        f"stdout_logfile=/var/log/supervisor/{dep.name}.log",
        "",
    ]
    return [Rendered(f"{dep.name}.conf", "\n".join(lines))]
