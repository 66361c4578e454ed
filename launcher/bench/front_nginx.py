"""nginx in front of a FastCGI backend, for ``serve bench`` (see :mod:`launcher.bench.fronts`).

The site is exactly what ``serve config nginx`` prints for the benchmarked server (the upstream
and server blocks rendered by :mod:`launcher.deploy.nginx`, called, not copied), so the figure is
the one of the front config users deploy.  Around it only the top level a private nginx needs:

* its own prefix, config, pid file, temp directories and error log in a directory of the run's
  workdir (nothing under /etc/nginx or /var is touched; ``fastcgi_params`` is copied from nginx's
  own configuration directory, which is what ``include fastcgi_params;`` finds on a real host);
* ``worker_processes 1``, no access log (a log line per request would be part of the figure);
* when started as root, ``user`` names root itself: the workers keep the user that owns the
  backend's socket (mode 0660, in the run's private workdir), so nothing has to be opened up for
  www-data or nobody;
* the listening socket is bound here on 127.0.0.1:0 and inherited by nginx (``NGINX="fd;"``, the
  mechanism of nginx's binary upgrade): the site's ``listen 127.0.0.1:PORT`` adopts it, so there is
  no window in which another process could take the port.

nginx runs in the foreground (``daemon off``) in its own process group, pinned to the server's
CPUs; it is ready when a real request is answered through it, and :meth:`FrontProcess.stop` sends
SIGTERM (fast shutdown), waits, then SIGKILLs the group.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from launcher.bench import pinning
from launcher.bench.server import StartError, log_tail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.options import ServeOptions

#: where nginx's own configuration (and so ``fastcgi_params``) lives, per platform
CONF_DIRS = ("/etc/nginx", "/usr/local/etc/nginx", "/usr/local/nginx/conf", "/opt/homebrew/etc/nginx")
#: protocol -> the params file the generated location includes
PARAMS = {"fastcgi": "fastcgi_params", "uwsgi": "uwsgi_params"}
#: the fewest connections the worker is given (it needs a client and an upstream one per request)
MIN_WORKER_CONNECTIONS = 512


def find_binary() -> str:
    """The nginx executable, or ""."""
    for path in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if path and os.access(path, os.X_OK):
            return path
    return ""


def find_params(name: str) -> str:
    """The path of nginx's ``fastcgi_params`` / ``uwsgi_params``, or ""."""
    for folder in CONF_DIRS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return ""


def _bind_text(address: dict[str, Any]) -> str:
    """``--bind`` form of an address from the server's ready file."""
    if address["kind"] == "unix":
        return f"unix:{address['path']}"
    host = str(address["host"])
    return f"[{host}]:{address['port']}" if ":" in host else f"{host}:{address['port']}"


def render_site(opts: ServeOptions, addresses: list[dict[str, Any]], port: int) -> str:
    """What ``serve config nginx <the server's options> --listen 127.0.0.1:PORT`` prints."""
    from launcher.deploy import render
    from launcher.deploy.context import build

    if not addresses:
        raise StartError("the backend reported no address for nginx to connect to")
    real = opts.replace(bind=[_bind_text(address) for address in addresses][:1])
    deployment = build("nginx", real, {"listen": f"127.0.0.1:{port}", "name": "bench_app"})
    files = render(deployment)
    return "\n".join(item.text for item in files)


def worker_connections(connections: int) -> int:
    """Enough for ``connections`` clients, each with its own upstream connection, and some spare."""
    return max(MIN_WORKER_CONNECTIONS, 2 * connections + 64)


def top_level(folder: str, site_path: str, *, as_root: bool, connections: int = 256) -> str:
    """nginx.conf around the generated site: private paths, one worker, no access log."""
    wanted = worker_connections(connections)
    limits = f"events {{ worker_connections {wanted}; }}"
    try:
        import resource

        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted + 64:
            limits = f"worker_rlimit_nofile {wanted + 64};\n" + limits
    except (ImportError, OSError, ValueError):
        pass
    user = ""
    if as_root:
        import grp
        import pwd

        user = (f"# root: the workers keep the user that owns the backend's socket\n"
                f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n")
    temps = "\n".join(f"    {kind}_temp_path {folder}/temp-{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# serve bench: the top level only; site.conf is `serve config nginx` output, included unchanged
{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
{limits}
http {{
    access_log off;
{temps}
    include {site_path};
}}
"""


def loopback_listener() -> socket.socket:
    """A socket listening on 127.0.0.1:<free port>, handed to nginx."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        # nginx does not make an inherited socket non-blocking itself
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class FrontProcess:
    """A running front server: ``url`` to load, ``pid`` (counted with the server's), ``argv``, ``config``."""

    def __init__(self, proc: subprocess.Popen[bytes], argv: list[str], url: str, folder: str, config: str, *,
                 server: str = "nginx") -> None:
        self.server = server
        self.proc = proc
        self.pid = proc.pid
        self.argv = argv
        self.url = url
        self.folder = folder
        #: the generated site (``serve config nginx`` output) nginx runs
        self.config = config
        self.error_log = os.path.join(folder, "error.log")
        self.console_log = os.path.join(folder, "console.log")

    def alive(self) -> bool:
        """True while the front's main process runs."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The end of the front's error log and console output."""
        return "\n".join(t for t in (log_tail(self.console_log, lines), log_tail(self.error_log, lines)) if t)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the main process (fast shutdown), wait; then SIGKILL the group, so no worker (or CGI
        process) is left."""
        try:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(timeout)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was sent
                pass
            # Workers or CGI processes still dying: wait until the session holds nothing but zombies
            # (the next backend must not share the CPUs with them).
            deadline = time.monotonic() + 5
            while (left := session_members(self.pid)) and time.monotonic() < deadline:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.02)
        return self.proc.returncode


def session_members(session: int) -> list[int]:
    """The processes of session ``session`` that are not zombies."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                text = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry))
    return members


class NginxFront:
    """nginx translating wrk's HTTP into the backend's protocol (``fastcgi_pass`` / ``uwsgi_pass``)."""

    name = "nginx"
    #: the backend is a server of its own, started by the runner; nginx connects to it
    runs_app = False

    def __init__(self, protocol: str = "fastcgi") -> None:
        self.protocol = protocol

    def unavailable(self) -> str:
        """Why this front cannot run here ("" when it can)."""
        if not find_binary():
            return "nginx, which is not installed (Debian: apt-get install nginx)"
        params = PARAMS[self.protocol]
        if not find_params(params):
            return f"nginx's {params}, not found in {', '.join(CONF_DIRS)}"
        return ""

    def bind(self, workdir: str) -> str:
        """A unix socket in the run's (private) workdir."""
        return f"unix:{os.path.join(workdir, self.protocol + '.sock')}"

    def start(self, addresses: list[dict[str, Any]], workdir: str, cpus: tuple[int, ...], *,
              opts: ServeOptions, connections: int = 256, timeout: float = 15.0) -> FrontProcess:
        """Render the site for ``opts`` at ``addresses``, start nginx on it, wait for a real answer.

        ``connections``: the most concurrent clients the run opens (nginx's worker_connections follow).
        """
        binary = find_binary()
        if not binary:
            raise StartError(self.unavailable())
        folder = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        params = PARAMS[self.protocol]
        listener = loopback_listener()
        try:
            port = int(listener.getsockname()[1])
            site = render_site(opts, addresses, port)
            shutil.copy(find_params(params), os.path.join(folder, params))  # `include fastcgi_params;`
            site_path = os.path.join(folder, "site.conf")
            with open(site_path, "w", encoding="utf-8") as fh:
                fh.write(site)
            conf_path = os.path.join(folder, "nginx.conf")
            with open(conf_path, "w", encoding="utf-8") as fh:
                fh.write(top_level(folder, site_path, as_root=os.geteuid() == 0, connections=connections))
            argv = [*pinning.prefix(cpus), binary, "-p", folder + "/", "-c", conf_path, "-e",
                    os.path.join(folder, "error.log"), "-g", "daemon off;"]
            fd = listener.fileno()
            env = dict(os.environ, NGINX=f"{fd};")
            proc = spawn(argv, env, folder, fd)
        finally:
            listener.close()  # nginx holds its own copy
        return answering(FrontProcess(proc, argv, f"http://127.0.0.1:{port}", folder, site), port, timeout)


def spawn(argv: list[str], env: dict[str, str], folder: str, fd: int) -> subprocess.Popen[bytes]:
    """Start a front server in its own session, in ``folder`` (its output in console.log), with the
    listening socket ``fd`` passed on."""
    with open(os.path.join(folder, "console.log"), "wb") as out:
        return subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(fd,))


def answering(handle: FrontProcess, port: int, timeout: float) -> FrontProcess:
    """``handle`` once its front server answers a real request on ``port``; stopped again if not."""
    try:
        _wait_answer(handle, port, timeout)
    except BaseException:
        handle.stop(timeout=3)
        raise
    return handle


def _wait_answer(handle: FrontProcess, port: int, timeout: float) -> None:
    """A real request through the front answered (not by its own 502/504) before the deadline."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if not handle.alive():
            raise StartError(f"{handle.server} exited with code {handle.proc.returncode} before it answered:\n"
                             f"{handle.log_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{handle.server} did not pass a request to the app within {timeout:g}s ({last}):\n"
                             f"{handle.log_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            if response.status not in (502, 504):
                return
            last = f"{handle.server} answered {response.status}: it cannot reach the backend"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{exc.__class__.__name__}: {exc}"
        finally:
            conn.close()
        time.sleep(0.05)
