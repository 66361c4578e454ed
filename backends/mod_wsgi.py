"""mod_wsgi: Apache httpd through ``mod_wsgi-express``, run as its own program and supervised.

The launcher checks the address (busy port, port 0), then ``mod_wsgi-express setup-server``
writes Apache's configuration into a private server root, and the backend starts that root's
``apachectl start -DFOREGROUND`` itself (it execs Apache, so the launcher signals Apache directly;
``start-server`` would put a Python wrapper in between when stdout is a terminal, and that wrapper
does not forward SIGWINCH).  The command line built (common option -> mod_wsgi-express option)::

    setup-server ENTRY.wsgi --server-root DIR --host H --port P --log-to-terminal --startup-log
        --processes W --threads T   --workers / --threads; neither set: 2 x max(--threads, 25)
        --user U --group G          when started as root: --user/--group, else www-data (Apache will
                                    not run the app as root)
        --keep-alive-timeout K      --keepalive (0: keep-alive off)
        --request-timeout S         --timeout
        --maximum-requests N        --max-requests
        --graceful-timeout G --shutdown-timeout G      --graceful-timeout
        --server-backlog B          --backlog
        --max-clients C             --connections (only when set)
        --limit-request-body N      --limit-request-body (mod_wsgi's own default is 10 MB)
        --chunked-request --locale C.UTF-8 --working-directory CWD

then a file included into the generated httpd.conf before its first <VirtualHost> (see
:func:`strict_config`; mod_wsgi-express's --include-file comes after the virtual hosts, where
Apache no longer applies the request limits)::

        LoadModule launcher_hygiene_module PATH    the launcher's own module (below, backends/apache)
        LimitRequestLine / LimitRequestFields / LimitRequestFieldSize   --limit-request-*
        RequestReadTimeout handshake=S header=S body=S,MinRate=500      --header-timeout
        AcceptFilter http none          (the kernel held silent connections out of the timeout's reach)
        HttpProtocolOptions Strict Require1.0   (no HTTP/0.9, Apache's strict head syntax)
        SetEnvIfNoCase NAMES . LAUNCHER_BAD_HEADER=1    a '_' name posing as a standard header
        ThreadsPerChild / ServerLimit / StartServers ...   --connections, else 256 Apache threads

Request hygiene (a malformed or ambiguous request is answered 400 and its connection closed, so
nothing sent behind it reaches the app), in three layers, each measured with raw sockets
(tests/reliability/corpus.py, tests/backends/test_mod_wsgi.py):

* Apache itself, with HttpProtocolOptions Strict: the request line's syntax, header names that are
  tokens, control characters and bare CR/LF in the head, a missing or malformed Host, the three
  LimitRequest* limits, Content-Length digits, a Transfer-Encoding whose last coding is not
  chunked (or chunked twice), a chunk size that is not hex or overflows, chunk data not followed
  by CRLF: 400 (414 for the request line, 501 for chunked twice) with Connection: close; an error
  in the head also drops whatever the connection had buffered behind it.
* The launcher's Apache module, mod_launcher_hygiene (backends/apache/mod_launcher_hygiene.c, built
  with apxs into the virtualenv by .ci/install-native.sh, else into the per-user cache at the first
  start; the backend refuses to start when it can be neither found nor built).  Apache's core
  unfolds and merges header lines, and drops Content-Length when Transfer-Encoding is present,
  before any other module or the app can see them; the module is a connection input filter that
  sees the raw lines first and refuses obsolete line folding (``X-Folded: a CRLF SP b``), a head
  with both Content-Length and Transfer-Encoding (in either order, however the value is spaced
  or folded), and a chunk-size line that is not ``1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS
  value ] ) CRLF`` (``5 `` with a trailing space: Apache reads it as 5), extensions still served.
  In the head, core turns its refusal into a 400 and closes, as for its own errors; in a chunked
  body the module answers the 400 itself (as Apache's chunk parser does for its own errors), and
  keeps mod_wsgi's 500 for the failed read from being appended; the app has already been called
  there (mod_wsgi sends the environ before the body) and gets an OSError from ``wsgi.input``.
* The entry file, for what Apache takes and the app could see: absolute-form targets, versions
  other than HTTP/1.0 and 1.1, Transfer-Encoding in HTTP/1.0, the posing header names marked above
  (mod_wsgi leaves them out of environ), each answered 400 or 505 with Connection: close (which
  makes Apache close the connection); and every chunked request is answered with Connection: close.

``-o NAME=VALUE`` reaches any other ``setup-server`` option by its own name (``-o
compress-responses=true``, ``-o server-mpm=worker``), checked against its ``--help``; the options
the launcher owns name the common option to use instead; ``-o ready_timeout=SECONDS`` is the
backend's own (default 60).

Default workers: mod_wsgi-express's shipped defaults (1 process x 5 threads) gave a p99 of 0.24
to 0.64 s at 50 connections here (wrk -t1 -c50 -d3s, Flask hello world), 2 x 4 threads 0.29 s,
2 x 10 0.18 s, 2 x 16 60 ms and 2 x 25 36 to 41 ms at the same throughput (3.5-4k requests/s):
without --workers/--threads the backend runs 2 processes x max(--threads, 25) threads, and says so.

--root-path, --proxy-headers, --access-log and --health-path are the launcher's middleware, run in
the mod_wsgi daemon processes, not ``--mount-point`` / ``--trust-proxy-header`` / ``--access-log``
(mod_wsgi's own proxy-header handling stays off, so forwarded headers change nothing unless
--proxy-headers is set): RootPath leaves paths outside the prefix alone where ``--mount-point``
answers 404, like every other backend.  Apache cannot listen on a unix socket, adopt an inherited
socket (this Debian build has no systemd socket activation) or, through mod_wsgi-express, an IPv6
address (it writes ``Listen ::1:P``): such --bind values are refused before start, and so is
--reload (a replacement server cannot bind the port while the old one drains).

The app is imported in each daemon process through the launcher's own importer, by the same entry
file as the uwsgi backend (:func:`backends.uwsgi.child_app`), with the launcher's access log
and records written to the process's real stderr (mod_wsgi turns ``sys.stderr`` into prefixed
error-log entries), marked so the launcher passes them on as they are.  An exception in the app
before its response started is logged there (one record with the traceback) and answered 500.

Traps handled, and why:

* Root.  Apache refuses to run its children as root, so started as root the backend runs them as
  --user / --group (the launcher leaves its own privileges alone: ``drops_privileges``), or
  without --user as ``www-data`` (else ``nobody``), and logs it.  That user must be able to read the
  interpreter, the virtualenv and the app: a pyenv Python in root's home (mode 0700) crash-loops
  the daemon processes while the port stays open.  Every directory on the way to the interpreter,
  ``sys.prefix``, the launcher, the working directory and --pythonpath is checked for that user
  before start; the first one it cannot enter or read is named in one line.
* Port.  The launcher binds and checks the address (busy port, port 0 picks a free one), then
  closes its socket right before Apache binds the same address: another program could take the
  port in those few milliseconds.  Apache then fails with "Address already in use", reported in
  one line; with port 0 the backend picks another free port and retries (three times).
* Stopping.  SIGTERM/SIGINT to the launcher send SIGWINCH (graceful-stop) to Apache, which stops
  listening, lets in-flight requests finish and exits 0 (4 of 4 answered); past --graceful-timeout
  the launcher kills Apache's process group and exits 1.  Apache runs in a process group of its own
  (Ctrl-C's SIGINT to the whole group would stop it at once) and gets SIGTERM if the launcher dies.
* Readiness.  Apache listens before the daemon processes have imported the app: the launcher waits
  until each daemon process marked itself loaded, then for the entry file's 204 to a request
  carrying the run's random ``X-Launcher-Probe`` token.  Apache's start-up output is held back
  (shown with --log-level debug or in the error when it fails).
* Logs.  Apache writes its error log to the launcher's pipe (``--log-to-terminal``): each of its
  lines (``[mpm_event:notice] ... AH00492: caught SIGWINCH``, mod_wsgi's ``[wsgi:error]`` report
  of an exception raised while a response was sent) becomes a launcher record at the level
  Apache gave it, without Apache's date; a traceback is one record.  See backends/uwsgi.py.
* --health-path.  On SIGTERM/SIGINT the launcher writes a file into the status directory before
  it sends SIGWINCH; a thread in each daemon process sees it within 50 ms and sets the
  ``draining`` flag, so /healthz answers 503 during the drain.  mod_wsgi offers no hook in the
  daemon process for the start of Apache's graceful stop: its signal handlers are C code,
  ``signal.signal()`` from Python is ignored there (WSGIRestrictSignal, on by default), and
  ``atexit`` callbacks run when the process ends.  Apache closes idle keep-alive
  connections at once when the graceful stop begins: a probe on such a connection sees it closed
  (a request being received is still answered, 503).
* mod_wsgi-express's default locale en_US.UTF-8 does not exist on Debian (a warning per daemon):
  C.UTF-8 is set.  Chunked request bodies are refused by mod_wsgi unless ``--chunked-request``.

Known limit: an app that raises after the first body byte of a response without Content-Length
cannot be made visible to the client.  mod_wsgi withholds the end of the chunked body only in
embedded mode; in daemon mode the Apache child ends it properly when the daemon's socket closes,
so the client sees a short response that looks complete (the error is logged).  The contract
suite's ``error_after_body_started`` check fails for this reason.
"""

from __future__ import annotations

import functools
import os
import signal
import stat
import sys

from backends.uwsgi import AnnouncedListener, ProgramBackend, listed_options, probe_address, probe_http
from launcher.errors import BindError, OptionError, ServerError
from launcher.log import logger
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from backends.base import Ready, WSGIApp
    from launcher.options import ServeOptions
    from launcher.sockets import Listener

#: Runs mod_wsgi-express with the launcher's own interpreter (so Apache embeds that Python).
EXPRESS_MAIN = "import sys; from mod_wsgi.express.cli import main; sys.argv[0] = 'mod_wsgi-express'; sys.exit(main())"
#: Threads per daemon process when neither --workers nor --threads is set (see the docstring).
DEFAULT_THREADS = 25
DEFAULT_PROCESSES = 2
#: Apache's own threads (in front of the daemon processes) when --connections is not set.
FRONT_THREADS = 256
#: Attempts at a free port when --bind asked for port 0 and another program took it first.
PORT_ATTEMPTS = 3
#: The launcher's own Apache module (backends/apache/mod_launcher_hygiene.c), as LoadModule names it.
HYGIENE_MODULE = "launcher_hygiene_module"
#: Users Apache's children run as when serve is started as root without --user, in order.
FALLBACK_USERS = ("www-data", "nobody")

#: setup-server options the launcher sets, and the common option to use instead of ``-o``.
OWNED = {
    "host": "--bind", "port": "--bind", "server-root": "(a private directory)", "processes": "--workers",
    "threads": "--threads", "user": "--user", "group": "--group", "keep-alive-timeout": "--keepalive",
    "request-timeout": "--timeout", "maximum-requests": "--max-requests", "graceful-timeout": "--graceful-timeout",
    "shutdown-timeout": "--graceful-timeout", "server-backlog": "--backlog", "max-clients": "--connections",
    "limit-request-body": "--limit-request-body", "header-timeout": "--header-timeout",
    "mount-point": "--root-path", "trust-proxy-header": "--proxy-headers", "trust-proxy": "--forwarded-allow-ips",
    "access-log": "--access-log", "access-log-format": "--access-log-format", "python-path": "--pythonpath",
    "working-directory": "--chdir", "log-to-terminal": "(always on)", "log-directory": "(logs go to stderr)",
    "startup-log": "(always on)", "setup-only": "(the launcher starts Apache)", "entry-point": "the app spec",
    "application-type": "the app spec", "callable-object": "the app spec", "include-file": "--limit-request-*",
    "chunked-request": "(always on)", "reload-on-changes": "--reload (not available with mod_wsgi)",
}


def express_command() -> list[str]:
    return [sys.executable, "-c", EXPRESS_MAIN]


def express_options() -> set[str]:
    """Every option ``mod_wsgi-express setup-server --help`` lists (read once per process)."""
    return listed_options((*express_command(), "setup-server"), r"^\s+--([a-z0-9][\w-]*)", "mod_wsgi-express's",
                          30.0)


# --------------------------------------------------------------------------- who can read what


def unreadable_path(path: str, uid: int, gids: set[int] | frozenset[int], *, file_mode: int = 0o4) -> str | None:
    """The first component of ``path`` user ``uid`` (groups ``gids``) cannot use, or None.

    Every directory on the way needs search (x) permission, the last directory read and search
    (Python lists the directories on ``sys.path``), a file ``file_mode`` (4: read, 5: read and
    execute).  Judged from the mode bits as the kernel would for that user (root passes).
    """
    if uid == 0:
        return None
    full = os.path.abspath(path)
    parts = [p for p in full.split("/") if p]
    current = "/"
    for index, part in enumerate([*parts, None]):
        try:
            st = os.stat(current)
        except OSError:
            return current
        last = index == len(parts)
        if stat.S_ISDIR(st.st_mode):
            need = 0o5 if last else 0o1
        else:
            need = file_mode
        if uid == st.st_uid:
            granted = (st.st_mode >> 6) & 0o7
        elif st.st_gid in gids:
            granted = (st.st_mode >> 3) & 0o7
        else:
            granted = st.st_mode & 0o7
        if granted & need != need:
            return current
        if part is not None:
            current = os.path.join(current, part)
    return None


def check_readable(paths: list[tuple[str, str]], user: str, uid: int, gids: set[int]) -> None:
    """Raise one line naming the first of ``(what, path)`` that ``user`` cannot read."""
    for what, path in paths:
        blocked = unreadable_path(path, uid, gids, file_mode=0o5 if what == "the interpreter" else 0o4)
        if blocked is not None:
            try:
                mode = f"mode {stat.S_IMODE(os.stat(blocked).st_mode):04o}"
            except OSError:
                mode = "missing"
            raise ServerError(
                f"mod_wsgi: Apache runs the app as user '{user}', who cannot read {what} ({path}): {blocked} is"
                f" {mode}; use a Python and virtualenv that {user} can read (e.g. built from /usr/bin/python3"
                " outside /root), move the app, or pass --user"
            )


def _run_user(user: str = "", group: str = "") -> tuple[str, str, int, set[int]] | None:
    """(user, group, uid, gids) Apache's children run as when started as root, else None:
    --user / --group when given, else the first of :data:`FALLBACK_USERS`."""
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    if user:
        try:
            pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise ServerError(f"mod_wsgi: --user {user}: no such user") from None
        try:
            gr = (grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)) if group \
                else grp.getgrgid(pw.pw_gid)
        except KeyError:
            raise ServerError(f"mod_wsgi: --group {group}: no such group") from None
        return pw.pw_name, gr.gr_name, pw.pw_uid, {gr.gr_gid, *os.getgrouplist(pw.pw_name, gr.gr_gid)}
    for name in FALLBACK_USERS:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        group = grp.getgrgid(pw.pw_gid).gr_name
        return name, group, pw.pw_uid, set(os.getgrouplist(name, pw.pw_gid))
    raise ServerError("mod_wsgi: started as root, Apache needs an unprivileged user to run the app: pass --user")


# --------------------------------------------------------------------------- the backend


class ModWSGIBackend(ProgramBackend):
    unix_sockets = False  # Apache cannot listen on a unix socket
    inherits_sockets = False  # nor serve on an inherited one (fd://N, systemd socket activation)
    drops_privileges = True  # Apache binds as root, then runs its children as --user
    name = "mod_wsgi"
    extra = "mod_wsgi"
    protocol = "http"
    library = "mod_wsgi"
    distribution = "mod_wsgi"
    # 4.9.3 fixed CVE-2022-2255 (X-Client-IP kept from untrusted proxies).
    min_version = "4.9.3"
    supports = frozenset({
        "threads", "timeout", "keepalive", "connections", "limit_request_line", "limit_request_fields",
        "limit_request_field_size", "limit_request_body", "header_timeout",
    })
    program = "Apache (mod_wsgi)"
    graceful_signal = signal.SIGWINCH  # Apache's graceful-stop
    death_signal = signal.SIGTERM  # Apache then stops its children and daemon processes itself

    def check(self, opts: ServeOptions) -> None:
        super().check(opts)
        if len(opts.bind) != 1 or opts.bind[0].kind != "tcp":
            shown = ", ".join(str(b) for b in opts.bind)
            raise OptionError(
                f"backend 'mod_wsgi' listens on exactly one IPv4 HOST:PORT (Apache binds it itself and"
                f" cannot take a unix socket or an inherited descriptor), not {shown}"
            )
        if opts.bind[0].family_is_v6:
            raise OptionError(f"backend 'mod_wsgi' cannot listen on IPv6 address {opts.bind[0]}: mod_wsgi-express"
                              " writes an invalid Listen line for it; bind an IPv4 address")
        if opts.reload:
            raise OptionError("backend 'mod_wsgi' cannot --reload: a fresh Apache cannot bind the port while the old"
                              " one drains; restart the server instead")

    def parse_backend_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        from backends.uwsgi import _seconds

        parsed: dict[str, Any] = {"ready_timeout": 60.0, "extra": []}
        for key, value in raw.items():
            name = key.replace("_", "-")
            text = str(value).strip()
            if key == "ready_timeout":
                parsed["ready_timeout"] = _seconds(key, text)
            elif name in OWNED:
                raise OptionError(f"-o {name}: set by the launcher; use {OWNED[name]}")
            else:
                known = express_options()
                if name not in known:
                    raise OptionError(f"-o {name}: not a mod_wsgi-express option{closest(name, known)}"
                                      " (`mod_wsgi-express setup-server --help` lists them)")
                parsed["extra"].append((name, text))
        return parsed

    def sizing(self, opts: ServeOptions) -> str:
        processes, threads = self.sizes(opts)
        return f"{processes} Apache daemon processes, {threads} threads each"

    @staticmethod
    def sizes(opts: ServeOptions) -> tuple[int, int]:
        """(processes, threads): the defaults avoid mod_wsgi-express's long tail (see the docstring)."""
        processes = opts.workers if opts.is_set("workers") else DEFAULT_PROCESSES
        threads = opts.threads if opts.is_set("threads") else max(opts.threads, DEFAULT_THREADS)
        return processes, threads

    def setup_command(self, opts: ServeOptions, entry: str, root: str, host: str, port: int,
                      run_as: tuple[str, str] | None) -> list[str]:
        """``mod_wsgi-express setup-server`` for these options (see the module docstring)."""
        import math

        backend = self.backend_options or self.parse_backend_options({})
        processes, threads = self.sizes(opts)
        graceful = str(math.ceil(opts.graceful_timeout))
        argv = [*express_command(), "setup-server", entry, "--server-root", root, "--host", host,
                "--port", str(port), "--log-to-terminal", "--startup-log", "--processes", str(processes),
                "--threads", str(threads), "--keep-alive-timeout", str(math.ceil(opts.keepalive)),
                "--request-timeout", str(math.ceil(opts.timeout)), "--graceful-timeout", graceful,
                "--shutdown-timeout", graceful, "--server-backlog", str(opts.backlog),
                "--limit-request-body", str(opts.limit_request_body),
                "--header-timeout", str(max(1, math.ceil(opts.header_timeout))),
                "--chunked-request",
                "--locale", "C.UTF-8", "--working-directory", os.getcwd()]
        if opts.max_requests:
            argv += ["--maximum-requests", str(opts.max_requests)]
        if opts.is_set("connections"):
            argv += ["--max-clients", str(opts.connections)]
        if run_as is not None:
            argv += ["--user", run_as[0], "--group", run_as[1]]
        for name, value in backend["extra"]:
            if value.lower() in ("true", "yes", "on", ""):
                argv.append(f"--{name}")
            elif value.lower() not in ("false", "no", "off"):
                argv.append(f"--{name}={value}")
        return argv

    def _write_limits(self, opts: ServeOptions, hygiene: str) -> None:
        with open(os.path.join(self._workdir, "limits.conf"), "w", encoding="utf-8") as fh:
            fh.write(strict_config(opts, hygiene))

    def _include_limits(self, root: str) -> None:
        """Include limits.conf before the first <VirtualHost> of the generated httpd.conf.

        Apache copies LimitRequestLine / -Fields / -FieldSize into each virtual host when it reads
        the <VirtualHost> line, and reads the request head with the connection's default virtual
        host: mod_wsgi-express's --include-file comes after its virtual hosts, where those limits
        changed the main server only (a 2100-byte line was served with --limit-request-line 2000).
        """
        path = os.path.join(root, "httpd.conf")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        include = f"Include '{os.path.join(self._workdir, 'limits.conf')}'\n"
        at = text.find("\n<VirtualHost")
        if at < 0:
            raise ServerError(f"mod_wsgi: no <VirtualHost> in {path}: cannot apply the request limits")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text[:at + 1] + include + text[at + 1:])

    def serve(self, app: WSGIApp, opts: ServeOptions, listeners: list[Listener], ready: Ready) -> None:
        import secrets
        import subprocess

        if self._stopping.is_set():
            return
        backend = self.backend_options or self.parse_backend_options({})
        token = secrets.token_hex(16)
        user = _run_user(opts.user, opts.group)
        workdir = self.make_workdir(0o755)
        try:
            if user is not None:
                name, _, uid, gids = user
                os.chown(self._status_dir, uid, -1)
                check_readable(self._paths_to_read(opts), name, uid, gids)
                if not opts.user:
                    logger.info("mod_wsgi: Apache runs the app as user %s (serve was started as root without"
                                " --user)", name)
            hygiene = hygiene_module()
            entry = self.write_entry(opts, "mod_wsgi", token, filename="app.wsgi")
            self._write_limits(opts, hygiene)
            processes, threads = self.sizes(opts)
            if not (opts.is_set("workers") and opts.is_set("threads")):
                logger.info("mod_wsgi: %d processes x %d threads", processes, threads)
            root = os.path.join(workdir, "httpd")
            listener = listeners[0]
            address = listener.address
            held = listener.sock
            for attempt in range(1, PORT_ATTEMPTS + 1):
                setup = self.setup_command(opts, entry, root, address.host, address.port,
                                           None if user is None else (user[0], user[1]))
                logger.debug("setting up: %s", " ".join(setup))
                done = subprocess.run(setup, capture_output=True, check=False, timeout=120, env=_setup_env())
                if done.returncode != 0:
                    lines = [ln for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
                    last = lines[-1] if lines else f"exit code {done.returncode}"
                    raise ServerError(f"mod_wsgi-express setup-server failed: {last}")
                self._include_limits(root)
                # The race this backend cannot avoid: Apache binds the address itself, right after this.
                held.close()
                self.spawn([os.path.join(root, "apachectl"), "start", "-DFOREGROUND"], opts=opts)
                target = probe_address(AnnouncedListener(listener, address=address))
                try:
                    started = self.wait_ready(functools.partial(probe_http, target, token), processes,
                                              backend["ready_timeout"])
                except ServerError:
                    if not self._port_taken():
                        raise
                    if listener.bind.port != 0 or attempt == PORT_ATTEMPTS:
                        raise BindError(
                            f"cannot listen on {address}: address already in use (another program took the port"
                            " between the launcher's check and Apache's start)") from None
                    held, address = _free_port(address.host)
                    logger.info("mod_wsgi: port taken before Apache bound it: trying %s", address)
                    continue
                if started:
                    ready([AnnouncedListener(listener, address=address)])
                break
            self.wait_exit()
        finally:
            self.kill_if_running()
            self.remove_workdir()

    def _port_taken(self) -> bool:
        lines = self._output.tail(50) if self._output is not None else []
        return any("Address already in use" in line or "could not bind to address" in line for line in lines)

    def _paths_to_read(self, opts: ServeOptions) -> list[tuple[str, str]]:
        import launcher

        paths = [("the interpreter", os.path.realpath(sys.executable)), ("the virtualenv", sys.prefix),
                 ("the Python installation", sys.base_prefix),
                 ("the launcher", os.path.dirname(os.path.dirname(os.path.abspath(launcher.__file__)))),
                 ("the working directory", os.getcwd()), ("the server root", self._workdir)]
        paths += [("--pythonpath", os.path.abspath(p)) for p in opts.pythonpath]
        spec = str(opts.app).partition(":")[0]
        if spec.endswith(".py") or os.sep in spec:
            paths.append(("the app file", os.path.abspath(spec)))
        return paths

    def kill_if_running(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.kill()


def _posing_names() -> str:
    """A regular expression for header names with '_' that pose as a standard or forwarded one
    (every spelling with at least one '_' for a '-')."""
    import itertools

    from launcher.hygiene import PROTECTED

    names = []
    for name in sorted(PROTECTED):
        parts = name.split("-")
        for seps in itertools.product("-_", repeat=len(parts) - 1):
            if "_" in seps:
                names.append(parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:], strict=True)))
    return "^(" + "|".join(names) + ")$"


def hygiene_module() -> str:
    """The path of the launcher's Apache module (built on first use, see backends/apache), or a
    one-line :class:`ServerError`: Apache without it would take what the launcher refuses."""
    from backends.apache import BuildError, module_path

    try:
        return module_path()
    except BuildError as exc:
        raise ServerError(f"mod_wsgi: cannot build the launcher's Apache module (mod_launcher_hygiene), which"
                          f" refuses the requests Apache's parser lets through: {exc}") from None


def strict_config(opts: ServeOptions, hygiene: str) -> str:
    """Apache directives for the launcher's request limits and rules (included before the virtual
    hosts, see :meth:`ModWSGIBackend._include_limits`).

    ``hygiene`` is the path of the launcher's module (:func:`hygiene_module`), loaded by its absolute
    path: it refuses obsolete line folding, Content-Length with Transfer-Encoding and a malformed
    chunk-size line (the module docstring says how).
    HttpProtocolOptions Strict Require1.0 refuses HTTP/0.9 and Apache's lax head syntax; mod_setenvif
    marks a header name with '_' posing as a standard one (``Content_Length``, ``X_Forwarded_For``:
    mod_wsgi leaves them out of environ, so the entry file could not see them), and the entry file
    answers 400 with Connection: close; --header-timeout bounds the head and a stalled body
    (mod_reqtimeout: the head within the timeout, however it trickles; the body must keep coming).
    """
    import math

    timeout = max(1, math.ceil(opts.header_timeout))
    return (f"LimitRequestLine {opts.limit_request_line}\n"
            f"LimitRequestFields {opts.limit_request_fields}\n"
            f"LimitRequestFieldSize {opts.limit_request_field_size}\n"
            "HttpProtocolOptions Strict Require1.0 LenientMethods\n"
            f"LoadModule {HYGIENE_MODULE} '{hygiene}'\n"
            # Linux's TCP_DEFER_ACCEPT (Apache's default) holds a connection that sends nothing in the
            # kernel, out of reach of RequestReadTimeout: a silent connection stayed open 10 s and more.
            "AcceptFilter http none\n"
            "<IfModule !setenvif_module>\n"
            "LoadModule setenvif_module '${MOD_WSGI_MODULES_DIRECTORY}/mod_setenvif.so'\n"
            "</IfModule>\n"
            f'SetEnvIfNoCase "{_posing_names()}" "." LAUNCHER_BAD_HEADER=1 nokeepalive\n'
            "<IfModule !reqtimeout_module>\n"
            "LoadModule reqtimeout_module '${MOD_WSGI_MODULES_DIRECTORY}/mod_reqtimeout.so'\n"
            "</IfModule>\n"
            f"RequestReadTimeout handshake={timeout} header={timeout} body={timeout},MinRate=500\n"
            + front_config(opts))


def front_config(opts: ServeOptions) -> str:
    """Apache's own threads (the event MPM, in front of the daemon processes), all started at once.

    mod_wsgi-express sizes them from the daemon threads (1.5 x processes x threads + 10, 17-20 per
    child, one child started): when every Apache thread is busy the event MPM closes all idle
    keep-alive connections at once, so under 128 connections (wrk -c128) keep-alive was off in
    practice -- 428 read errors in the soak -- and so was the idle keep-alive probe while the
    corpus ran.  So: --connections in all (else at least :data:`FRONT_THREADS`), started at once.
    """
    processes, threads = ModWSGIBackend.sizes(opts)
    total = opts.connections if opts.is_set("connections") else max(FRONT_THREADS, int(1.5 * processes * threads) + 10)
    per_child = min(total, 64)
    children = -(-total // per_child)
    return ("<IfModule mpm_event_module>\n"
            f"ServerLimit {children}\nThreadLimit {per_child}\nThreadsPerChild {per_child}\n"
            f"MaxRequestWorkers {children * per_child}\nStartServers {children}\n"
            f"MinSpareThreads {per_child}\nMaxSpareThreads {children * per_child}\n"
            "</IfModule>\n")


def _free_port(host: str) -> tuple[Any, Any]:
    """A new socket bound to ``host:0`` (held until Apache starts) and its address."""
    import socket

    from launcher.options import Bind

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock, Bind("tcp", host=host, port=sock.getsockname()[1])


def _setup_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    return env
