"""lighttpd running the cgi backend (mod_cgi), for ``serve bench`` (see :mod:`launcher.bench.fronts`).

CGI has no server process: lighttpd starts the cgi-bin script once per request.  So this front
*runs the app* (:attr:`LighttpdCGI.runs_app`): the runner starts no backend, loads lighttpd and
counts lighttpd's whole tree (the CGI processes it starts and reaps included) as the server.  The
script is what ``serve config cgi-script`` writes and the site what ``serve config lighttpd
--backend cgi --script ...`` prints (:mod:`launcher.deploy.files` and :mod:`launcher.deploy.lighttpd`,
called, not copied).  Around them only the top level a private lighttpd needs: its own document
root, default listener (a unix socket in its directory, instead of *:80), pid file and error log
in a directory of the run's workdir, no access log.  When started as root it sets no
``server.username``: it keeps the user that owns the private directory and the script.

The listening socket is bound here on 127.0.0.1:0 and handed over by systemd socket activation
(``LISTEN_FDS=1``; a tiny exec shim puts it on fd 3 and sets ``LISTEN_PID``), matched by the
generated ``$SERVER["socket"] == "127.0.0.1:PORT"``.  lighttpd runs in the foreground (``-D``) in
its own process group, pinned to the server's CPUs; ready when a request is answered through it;
stopped with SIGINT, then SIGKILL for the group.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from launcher.bench import pinning
from launcher.bench.front_nginx import FrontProcess, answering, loopback_listener, spawn
from launcher.bench.server import StartError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.options import ServeOptions

#: exec a program with the socket ``argv[1]`` as fd 3 and LISTEN_PID set to its (unchanged) pid
ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def find_binary() -> str:
    """The lighttpd executable, or ""."""
    for path in (shutil.which("lighttpd"), "/usr/sbin/lighttpd", "/usr/local/sbin/lighttpd"):
        if path and os.access(path, os.X_OK):
            return path
    return ""


def render(opts: ServeOptions, port: int, script: str) -> tuple[str, str, int]:
    """(the cgi-bin script, its mode, the lighttpd site) that ``serve config`` writes for ``opts``."""
    from launcher.deploy import render as render_kind
    from launcher.deploy.context import build

    script_file = render_kind(build("cgi-script", opts, {"name": "bench_app"}))[0]
    site = render_kind(build("lighttpd", opts, {"listen": f"127.0.0.1:{port}", "script": script,
                                                "name": "bench_app"}))
    return script_file.text, "\n".join(item.text for item in site), script_file.mode


def top_level(folder: str, site_path: str, connections: int = 256) -> str:
    """lighttpd.conf around the generated site: private paths, no access log, no user change."""
    return f"""# serve bench: the top level only; site.conf is `serve config lighttpd` output, included unchanged
server.document-root = "{folder}/www"
server.bind = "{folder}/default.sock"
server.errorlog = "{folder}/error.log"
server.pid-file = "{folder}/lighttpd.pid"
server.max-connections = {max(256, connections + 64)}
server.max-fds = {max(1024, 4 * connections + 256)}
server.systemd-socket-activation = "enable"
server.modules = ( "mod_access" )
include "{site_path}"
"""


class LighttpdCGI:
    """lighttpd's mod_cgi running the cgi-bin script, one process per request."""

    name = "lighttpd"
    #: lighttpd starts the app itself: there is no backend server to start
    runs_app = True

    def unavailable(self) -> str:
        """Why this front cannot run here ("" when it can)."""
        if not find_binary():
            return "lighttpd, which is not installed (Debian: apt-get install lighttpd)"
        return ""

    def bind(self, workdir: str) -> str:
        """Nothing: the CGI program binds no socket."""
        return ""

    def start(self, addresses: list[dict[str, Any]], workdir: str, cpus: tuple[int, ...], *,
              opts: ServeOptions, connections: int = 256, timeout: float = 20.0) -> FrontProcess:
        """Write the script and the site for ``opts``, start lighttpd, wait for a real answer."""
        binary = find_binary()
        if not binary:
            raise StartError(self.unavailable())
        folder = tempfile.mkdtemp(prefix="lighttpd-", dir=workdir)
        os.mkdir(os.path.join(folder, "www"))
        script_path = os.path.join(folder, "bench_app.cgi")
        listener = loopback_listener()
        try:
            port = int(listener.getsockname()[1])
            script, site, mode = render(opts, port, script_path)
            with open(script_path, "w", encoding="utf-8") as fh:
                fh.write(script)
            os.chmod(script_path, mode)
            site_path = os.path.join(folder, "site.conf")
            with open(site_path, "w", encoding="utf-8") as fh:
                fh.write(site)
            conf_path = os.path.join(folder, "lighttpd.conf")
            with open(conf_path, "w", encoding="utf-8") as fh:
                fh.write(top_level(folder, site_path, connections))
            fd = listener.fileno()
            argv = [*pinning.prefix(cpus), sys.executable, "-c", ACTIVATE, str(fd), binary, "-D", "-f", conf_path]
            env = dict(os.environ, LISTEN_FDS="1")
            env.pop("LISTEN_FDNAMES", None)
            proc = spawn(argv, env, folder, fd)
        finally:
            listener.close()  # lighttpd holds its own copy
        handle = FrontProcess(proc, argv, f"http://127.0.0.1:{port}", folder, site, server="lighttpd")
        return answering(handle, port, timeout)
