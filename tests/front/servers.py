"""Real nginx, Apache and lighttpd on loopback, wrapped around the config `serve config` printed.

The fixture writes only the minimal top level each server needs (pid file, logs, the worker user,
the modules) and *includes* the generated file unchanged: a fixture never edits a generated
directive.  Every front server runs in the foreground in its own process group, with a directory
of the test's own; readiness is a real request answered against one deadline that also watches
the process; teardown sends the server's graceful stop signal, waits, then SIGKILLs the group.

Listening without guessing a port:

* nginx inherits a listening socket the test bound on 127.0.0.1:0 (``NGINX="fd;"``, the socket
  nginx's binary upgrade uses); the generated config says ``listen 127.0.0.1:PORT`` for that port
  and nginx adopts the inherited socket instead of binding.
* lighttpd takes it by systemd socket activation (``LISTEN_FDS=1``; a three-line exec shim puts the
  socket on fd 3 and sets ``LISTEN_PID`` to its own pid, which lighttpd keeps), matched to the generated
  ``$SERVER["socket"] == "127.0.0.1:PORT"``.
* Apache can do neither, so its port is picked by binding 127.0.0.1:0 and closing the socket just
  before Apache starts.  Another process could take the port in that gap: Apache then exits with
  "Address already in use" and the fixture retries with a new port (three attempts).
"""

from __future__ import annotations

import atexit
import grp
import http.client
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, http_request, serve_env, short_tmpdir

WEB_USER = "www-data"

#: front servers started by this session, for failure reports and the final clean-up
_FRONTS: list[FrontServer] = []
_LOCK = threading.Lock()


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_binary(name: str, *candidates: str) -> str:
    """The path of a front-server binary: skip locally, fail under CI=true, when it is missing."""
    for path in (*candidates, shutil.which(name), f"/usr/sbin/{name}"):
        if path and os.access(path, os.X_OK):
            return path
    message = f"{name} is not installed (Debian: apt-get install {name}; `make test` installs it as root)"
    if _ci():
        pytest.fail(message + " (CI must not skip)", pytrace=False)
    pytest.skip(message)


def require_web_user() -> None:
    try:
        pwd.getpwnam(WEB_USER)
        grp.getgrnam(WEB_USER)
    except KeyError:
        pytest.fail(f"user/group {WEB_USER} does not exist: the front servers run their workers as it",
                    pytrace=False)
    if os.geteuid() != 0:
        message = "front-server tests run nginx/Apache/lighttpd as root (workers as www-data): run as root"
        if _ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def require_readable_by_web_user(*paths: str | os.PathLike[str]) -> None:
    """Fail with the fix when the web server's user cannot reach ``paths`` (the repo, the venv, the
    interpreter): Apache children and CGI programs run as www-data, and a checkout or interpreter
    under a private home directory (mode 0700) crash-loops them."""
    problems = []
    for raw in paths:
        path = Path(raw)
        targets = [path, *path.parents]
        for part in targets:
            try:
                mode = part.stat().st_mode
            except OSError as exc:
                problems.append(f"{part}: {exc.strerror}")
                break
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                problems.append(f"{part} (mode {stat.S_IMODE(mode):04o}) is not searchable by others")
            if part == path and not mode & stat.S_IROTH:
                problems.append(f"{part} (mode {stat.S_IMODE(mode):04o}) is not readable by others")
    if problems:
        pytest.fail(
            f"the web server's user ({WEB_USER}) cannot read the app, the virtualenv or the interpreter:\n  "
            + "\n  ".join(dict.fromkeys(problems))
            + "\nclone the repository somewhere world-readable (e.g. /tmp/fresh) and build .venv from"
            " /usr/bin/python3 (make install does), or chmod o+rx the directories named",
            pytrace=False)


def python_paths() -> list[str]:
    """The repo, the virtualenv's interpreter and the real interpreter it points to."""
    return [str(REPO), sys.executable, os.path.realpath(sys.executable), sys.prefix]


def shared_dir(prefix: str) -> Path:
    """A short temporary directory the web server's user can enter (sockets, configs, logs)."""
    path = short_tmpdir(prefix)
    path.chmod(0o755)
    return path


def state_dir(parent: Path) -> Path:
    """CONTRACT_STATE_DIR, writable by the web server's user (mod_wsgi daemons, CGI programs)."""
    path = parent / "state"
    path.mkdir()
    path.chmod(0o1777)
    return path


# --------------------------------------------------------------------------------------------
# serve config
# --------------------------------------------------------------------------------------------


class Generated:
    """What one `serve config` run printed: the config (stdout) and the warnings (stderr)."""

    def __init__(self, argv: list[str], text: str, stderr: str) -> None:
        self.argv = argv
        self.text = text
        self.stderr = stderr

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "warning:" in line]


def serve_config(kind: str, *args: str, check: bool = True) -> Generated:
    """Run ``python -m launcher config KIND *args`` from the repository, as a user would."""
    argv = [sys.executable, "-m", "launcher", "config", kind, *args]
    proc = subprocess.run(argv, cwd=REPO, env=serve_env(), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"serve config {kind} failed ({proc.returncode}):\n  {' '.join(argv)}\n"
                             f"{proc.stderr}{proc.stdout}")
    return Generated(argv, proc.stdout if proc.returncode == 0 else "", proc.stderr)


# --------------------------------------------------------------------------------------------
# a running front server
# --------------------------------------------------------------------------------------------


class FrontStartError(AssertionError):
    pass


class FrontServer:
    """A front server in its own process group; ``address`` is where clients connect."""

    def __init__(self, name: str, command: list[str], workdir: Path, *, stop_signal: int,
                 address: Any, logs: Sequence[Path], env: dict[str, str] | None = None,
                 pass_fds: Sequence[int] = ()) -> None:
        self.name = name
        self.command = command
        self.workdir = workdir
        self.stop_signal = stop_signal
        self.address = address
        self.logs = list(logs)
        self.output_path = workdir / f"{name}.console.log"
        with open(self.output_path, "wb") as out:
            self.proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds)
        with _LOCK:
            _FRONTS.append(self)

    @property
    def label(self) -> str:
        return f"{self.name} pid={self.proc.pid}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        parts = []
        for path in [self.output_path, *self.logs]:
            try:
                text = path.read_text("utf-8", "replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"--- {path.name}\n{text[-20000:]}")
        return "\n".join(parts)

    def wait_ready(self, path: str, timeout: float = 20.0, *, expect: int | None = 200) -> None:
        """A real request for ``path`` answered (``expect`` status, any when None) before the deadline."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            if self.proc.poll() is not None:
                raise FrontStartError(f"{self.name} exited with code {self.proc.returncode} before it answered\n"
                                      f"$ {' '.join(self.command)}\n{self.output()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FrontStartError(f"{self.name} did not answer GET {path} with {expect} within {timeout}s"
                                      f" (last: {last!r})\n$ {' '.join(self.command)}\n{self.output()}")
            try:
                resp = http_request(self.address, "GET", path, timeout=max(0.2, min(5.0, remaining)))
                if expect is None or resp.status == expect:
                    return
                last = f"{resp.status} {resp.body[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                last = exc
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """The server's graceful stop signal to its main process, then SIGKILL to the group."""
        try:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, self.stop_signal)
                    self.proc.wait(timeout)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # no worker or CGI child may outlive the test
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        return self.proc.returncode


def live_fronts() -> list[FrontServer]:
    with _LOCK:
        return [f for f in _FRONTS if f.alive()]


def all_fronts() -> list[FrontServer]:
    with _LOCK:
        return list(_FRONTS)


def kill_all() -> None:
    for front in all_fronts():
        if front.alive():
            front.stop(timeout=3)


atexit.register(kill_all)


def loopback_listener() -> socket.socket:
    """A socket listening on 127.0.0.1:<free port>, to hand to nginx or lighttpd."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(511)
    # Non-blocking before it is handed over: nginx does not make an inherited socket non-blocking
    # ("TODO: nonblocking" in ngx_open_listening_sockets), and with two workers woken for one
    # connection, the one that loses the race would block in accept() with its other clients
    # stuck (measured: 1 in ~10 rounds of 4 parallel requests hung for the client's timeout).
    sock.setblocking(False)
    return sock


def free_port() -> int:
    """A port that was free a moment ago (Apache only: see the module docstring for the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------


def start_nginx(site: str, work: Path, listener: socket.socket, *, ready_path: str,
                ready_status: int | None = 200) -> FrontServer:
    """nginx with ``site`` (the generated config) included in http {}, on the inherited ``listener``."""
    binary = require_binary("nginx")
    for name in ("fastcgi_params", "uwsgi_params"):
        shutil.copy(f"/etc/nginx/{name}", work / name)  # what `include fastcgi_params;` finds on Debian
    (work / "site.conf").write_text(site)
    (work / "nginx.conf").write_text(f"""
# test fixture: the top level only; the site is the generated config, included unchanged
user {WEB_USER} {WEB_USER};
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {work}/access.log;
    include {work}/site.conf;
}}
""")
    fd = listener.fileno()
    env = dict(os.environ, NGINX=f"{fd};")
    front = FrontServer("nginx", [binary, "-p", f"{work}/", "-c", f"{work}/nginx.conf", "-g", "daemon off;"], work,
                        stop_signal=signal.SIGQUIT, address=listener.getsockname()[:2],
                        logs=[work / "error.log"], env=env, pass_fds=(fd,))
    listener.close()  # nginx holds its own copy
    try:
        front.wait_ready(ready_path, expect=ready_status)
    except BaseException:
        front.stop(timeout=3)
        raise
    return front


def nginx_syntax_ok(site: str, work: Path) -> tuple[bool, str]:
    """``nginx -t`` on the generated config wrapped in the fixture's top level (nothing listens)."""
    binary = require_binary("nginx")
    for name in ("fastcgi_params", "uwsgi_params"):
        shutil.copy(f"/etc/nginx/{name}", work / name)
    (work / "site.conf").write_text(site)
    (work / "nginx.conf").write_text(f"""
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{}}
http {{ access_log off; include {work}/site.conf; }}
""")
    proc = subprocess.run([binary, "-t", "-q", "-p", f"{work}/", "-c", f"{work}/nginx.conf"], capture_output=True,
                          text=True, timeout=30)
    return proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# lighttpd
# --------------------------------------------------------------------------------------------


def _lighttpd_conf(site: str, work: Path, extra: str = "") -> Path:
    (work / "www").mkdir(exist_ok=True)
    # lighttpd opens its logs after switching to www-data
    pw = pwd.getpwnam(WEB_USER)
    for name in ("error.log", "access.log"):
        (work / name).touch()
        os.chown(work / name, pw.pw_uid, pw.pw_gid)
    (work / "site.conf").write_text(site)
    conf = work / "lighttpd.conf"
    # The fixture's own default listener is a unix socket in its directory: lighttpd would
    # otherwise bind *:80.  The generated $SERVER["socket"] block adds the loopback port.
    conf.write_text(f"""
# test fixture: the top level only; the site is the generated config, included unchanged
server.document-root = "{work}/www"
server.bind = "{work}/default.sock"
server.errorlog = "{work}/error.log"
server.pid-file = "{work}/lighttpd.pid"
server.username = "{WEB_USER}"
server.groupname = "{WEB_USER}"
server.modules = ( "mod_access", "mod_accesslog" )
accesslog.filename = "{work}/access.log"
{extra}
include "{work}/site.conf"
""")
    return conf


#: exec a program with the socket ``argv[1]`` as fd 3 and LISTEN_PID set to its (unchanged) pid
_ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def start_lighttpd(site: str, work: Path, listener: socket.socket, *, ready_path: str, extra: str = "",
                   ready_status: int | None = 200) -> FrontServer:
    """lighttpd with ``site`` included, taking ``listener`` by socket activation."""
    binary = require_binary("lighttpd")
    conf = _lighttpd_conf(site, work, extra + '\nserver.systemd-socket-activation = "enable"\n')
    fd = listener.fileno()
    command = [sys.executable, "-c", _ACTIVATE, str(fd), binary, "-D", "-f", str(conf)]
    env = dict(os.environ, LISTEN_FDS="1")
    env.pop("LISTEN_FDNAMES", None)
    front = FrontServer("lighttpd", command, work, stop_signal=signal.SIGINT, address=listener.getsockname()[:2],
                        logs=[work / "error.log"], env=env, pass_fds=(fd,))
    listener.close()
    try:
        front.wait_ready(ready_path, expect=ready_status)
    except BaseException:
        front.stop(timeout=3)
        raise
    return front


def lighttpd_syntax_ok(site: str, work: Path) -> tuple[bool, str]:
    binary = require_binary("lighttpd")
    conf = _lighttpd_conf(site, work)
    proc = subprocess.run([binary, "-tt", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0, proc.stderr + proc.stdout


# --------------------------------------------------------------------------------------------
# Apache
# --------------------------------------------------------------------------------------------

APACHE_MODULES = ("mpm_event", "authz_core", "authz_host", "alias", "mime", "dir", "env", "setenvif", "reqtimeout",
                  "headers", "rewrite", "proxy", "proxy_http", "proxy_fcgi", "proxy_uwsgi", "cgid")


def _apache_conf(site: str, work: Path, extra: str = "") -> Path:
    (work / "run").mkdir(exist_ok=True)
    (work / "run").chmod(0o755)
    (work / "site.conf").write_text(site)
    loads = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in APACHE_MODULES)
    conf = work / "apache2.conf"
    conf.write_text(f"""
# test fixture: the top level only; the site is the generated config, included unchanged
ServerRoot {work}
ServerName localhost
PidFile {work}/apache2.pid
ErrorLog {work}/error.log
LogLevel info
DefaultRuntimeDir {work}/run
Mutex file:{work}/run default
ScriptSock {work}/run/cgid.sock
User {WEB_USER}
Group {WEB_USER}
{loads}
TypesConfig /etc/mime.types
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog {work}/access.log common
StartServers 1
ThreadsPerChild 25
MaxRequestWorkers 50
GracefulShutdownTimeout 5
{extra}
Include {work}/site.conf
# mod_wsgi's daemon sockets: its compiled-in place is /var/run/apache2, not DefaultRuntimeDir
<IfModule wsgi_module>
    WSGISocketPrefix {work}/run/wsgi
</IfModule>
""")
    return conf


def start_apache(make_site: Any, work: Path, *, ready_path: str, extra: str = "", attempts: int = 3,
                 ready_status: int | None = 200) -> FrontServer:
    """Apache with the site ``make_site(port)`` returns; retried on a port someone else took.
    ``{port}`` in ``extra`` (top-level lines before the site) is the port picked."""
    binary = require_binary("apache2")
    last: FrontStartError | None = None
    for _ in range(attempts):
        port = free_port()
        conf = _apache_conf(make_site(port), work, extra.replace("{port}", str(port)))
        (work / "error.log").write_text("")
        env = dict(os.environ, APACHE_RUN_DIR=str(work / "run"), APACHE_LOCK_DIR=str(work / "run"))
        front = FrontServer("apache2", [binary, "-f", str(conf), "-DFOREGROUND"], work, stop_signal=signal.SIGWINCH,
                            address=("127.0.0.1", port), logs=[work / "error.log"], env=env)
        try:
            front.wait_ready(ready_path, expect=ready_status)
            return front
        except FrontStartError as exc:
            front.stop(timeout=3)
            if "Address already in use" not in front.output():
                raise
            last = exc
    assert last is not None
    raise last


def apache_syntax_ok(site: str, work: Path, extra: str = "") -> tuple[bool, str]:
    binary = require_binary("apache2")
    conf = _apache_conf(site, work, extra)
    proc = subprocess.run([binary, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, APACHE_RUN_DIR=str(work / "run")))
    return proc.returncode == 0, proc.stderr + proc.stdout
