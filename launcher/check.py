"""``serve check APP [--backend X] [options]``: why will the app not start?

Imports the app the way the chosen backend would (its ``prepare()`` first, so gevent patches
before the import, as in production) and reports, in plain words, what the Flask deployment
guide's troubleshooting list warns about:

- the callable found and its type;
- ``app.run()`` reached while importing ("SystemExit ignored" under mod_wsgi);
- output printed to stdout while importing (corrupts a CGI response; mod_wsgi restricts stdout);
- a module resolved through a symlink into site-packages (breaks resource lookup);
- the backend library missing, or below the version with the known security fixes;
- a unix socket directory the configured user cannot write;
- an interpreter, virtualenv or app the configured user cannot read (Apache and CGI children).

Exit code 0 when nothing is wrong, 1 when something is (warnings alone do not fail).
"""

from __future__ import annotations

import os
import sys

from launcher.errors import AppImportError, LauncherError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from launcher.options import ServeOptions

OK, WARN, FAIL = "ok", "warning", "problem"
#: Backends where a print to stdout breaks the app.  Not "cgi": the launcher's CGI backend keeps the
#: real stdout for the response and sends the app's prints to stderr (a hand-written wsgiref CGI
#: script would put them into the response: the warning says so).
STDOUT_FATAL = {"mod_wsgi": "mod_wsgi (sys.stdout is off limits there)"}
RUNS_AS_OTHER_USER = {"mod_wsgi", "cgi"}


class Finding:
    __slots__ = ("level", "text")

    def __init__(self, level: str, text: str) -> None:
        self.level = level
        self.text = text

    def __repr__(self) -> str:
        return f"{self.level}: {self.text}"


def run_checks(opts: ServeOptions) -> list[Finding]:
    """Every check, in the order a person would fix them."""
    from launcher import registry

    findings: list[Finding] = []
    try:
        backend_cls = registry.get_class(opts.backend)
    except LauncherError as exc:
        return [Finding(FAIL, str(exc))]
    info = registry.describe(opts.backend, backend_cls)
    findings += _library(info)
    backend = backend_cls()
    if info.installed:
        try:
            backend.check(opts)
            findings.append(Finding(OK, f"the options suit the {opts.backend} backend"))
        except LauncherError as exc:
            findings.append(Finding(FAIL, str(exc)))
    findings += _socket_dirs(opts)
    if opts.backend in RUNS_AS_OTHER_USER or opts.user:
        findings += _readable_by_user(opts)
    if opts.chdir:
        os.chdir(opts.chdir)
    for path in reversed(opts.pythonpath):
        sys.path.insert(0, os.path.abspath(path))
    if info.installed:
        try:
            backend.prepare(opts)
        except LauncherError as exc:
            findings.append(Finding(FAIL, str(exc)))
    findings += _import(opts)
    return findings


def _library(info: Any) -> list[Finding]:
    if not info.installed:
        return [Finding(FAIL, f"the {info.name} backend needs {info.distribution}, which is not installed:"
                              f" pip install 'wsgi-launcher[{info.extra}]'")]
    if info.min_version and info.version and _version_tuple(info.version) < _version_tuple(info.min_version):
        return [Finding(FAIL, f"{info.distribution} {info.version} is older than {info.min_version}, the first"
                              " release with the known request-smuggling and denial-of-service fixes: upgrade it")]
    return [Finding(OK, f"{info.distribution} {info.version or '(version unknown)'} is installed")]


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def _user_ids(opts: ServeOptions) -> tuple[str, int, set[int]]:
    """Name, uid and group ids of the user the server will run as."""
    import grp
    import pwd

    user = opts.user
    if not user and os.geteuid() == 0 and opts.backend in RUNS_AS_OTHER_USER:
        user = "www-data"  # Apache and its CGI children refuse to run as root
    try:
        pw = pwd.getpwnam(user) if user else pwd.getpwuid(os.geteuid())
    except KeyError:
        return user, -1, set()
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    if opts.group:
        try:
            gids.add(grp.getgrnam(opts.group).gr_gid)
        except KeyError:
            pass
    return pw.pw_name, pw.pw_uid, gids


def _allowed(path: str, uid: int, gids: set[int], want: int) -> bool:
    """Would ``uid`` (in ``gids``) get ``want`` (a mask of 4/2/1) on ``path``, by its mode bits?"""
    if uid == 0:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_uid == uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in gids:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def unreadable_component(path: str, uid: int, gids: set[int]) -> str:
    """The first directory on the way to ``path`` the user cannot enter, or ``path`` itself if it
    cannot be read; "" when everything is reachable."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        directory = os.sep.join(parts[:i]) or os.sep
        if not _allowed(directory, uid, gids, 1):
            return directory
    if not _allowed(path, uid, gids, 4):
        return path
    return ""


def _readable_by_user(opts: ServeOptions) -> list[Finding]:
    name, uid, gids = _user_ids(opts)
    if uid < 0:
        return [Finding(FAIL, f"user '{name}' does not exist")]
    out: list[Finding] = []
    targets = {"the interpreter": os.path.realpath(sys.executable), "the virtualenv": sys.prefix,
               "the app's directory": os.path.abspath(opts.chdir or os.getcwd())}
    for what, path in targets.items():
        blocked = unreadable_component(path, uid, gids)
        if blocked:
            out.append(Finding(FAIL, f"{what} ({path}) is not readable by user '{name}', who runs the app:"
                                     f" {blocked} blocks it (a Python under a private home directory, such as"
                                     " pyenv's in /root, crash-loops mod_wsgi and gives CGI 'permission denied';"
                                     " use a virtualenv from the system Python in a readable place)"))
    if not out:
        out.append(Finding(OK, f"user '{name}' can read the interpreter, the virtualenv and the app"))
    return out


def _socket_dirs(opts: ServeOptions) -> list[Finding]:
    out: list[Finding] = []
    for bind in opts.bind:
        if bind.kind != "unix":
            continue
        directory = os.path.dirname(bind.path)
        if not os.path.isdir(directory):
            out.append(Finding(FAIL, f"the socket directory {directory} does not exist"))
            continue
        name, uid, gids = _user_ids(opts) if opts.user else ("the current user", os.geteuid(), set(os.getgroups()))
        # The launcher binds before dropping privileges, but the socket is removed on exit by
        # the unprivileged user, and a restarted server must be able to replace it.
        if not _allowed(directory, uid, gids, 3):
            out.append(Finding(FAIL, f"the socket directory {directory} is not writable by {name}"))
        else:
            out.append(Finding(OK, f"the socket directory {directory} is writable by {name}"))
    return out


def _import(opts: ServeOptions) -> list[Finding]:
    import io

    from launcher.importer import import_app

    captured = io.StringIO()
    real_stdout = sys.stdout
    sys.stdout = captured
    try:
        app = import_app(opts.app)
    except AppImportError as exc:
        sys.stdout = real_stdout
        text = str(exc)
        if exc.part == "user-import" and exc.__cause__ is not None:
            import traceback

            cause = exc.__cause__
            text += "\n" + "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip()
        return [Finding(FAIL, text)]
    finally:
        sys.stdout = real_stdout
    out = [Finding(OK, f"found the WSGI callable {opts.app!r}: {_describe(app)}")]
    printed = captured.getvalue()
    if printed:
        fatal = STDOUT_FATAL.get(opts.backend)
        snippet = printed.strip().splitlines()[0][:80] if printed.strip() else repr(printed[:40])
        text = (f"importing the app printed to stdout ({snippet!r}...): fatal under mod_wsgi (stdout is"
                " restricted) and under a plain CGI script (it becomes part of the response; the launcher's"
                " cgi backend sends it to stderr); log to sys.stderr or logging instead")
        out.append(Finding(FAIL if fatal else WARN, text))
    out += _symlinks(opts.app)
    return out


def _describe(app: object) -> str:
    kind = type(app)
    if kind.__name__ == "function":
        return f"a function {getattr(app, '__module__', '?')}.{getattr(app, '__qualname__', '?')}"
    return f"an instance of {kind.__module__}.{kind.__qualname__}"


def _symlinks(spec: str) -> list[Finding]:
    """The guide: a single .py module symlinked into site-packages finds its resources in the
    wrong place, because resources are looked up relative to the module's file name."""
    module_name = spec.split(":", 1)[0]
    module = sys.modules.get(module_name.split("(")[0])
    filename = getattr(module, "__file__", None) if module else None
    if not filename:
        return []
    if os.path.islink(filename) or os.path.realpath(filename) != os.path.abspath(filename):
        in_site = "site-packages" in filename or "dist-packages" in filename
        where = "into site-packages " if in_site else ""
        return [Finding(FAIL if in_site else WARN,
                        f"{filename} is a symlink {where}to {os.path.realpath(filename)}: resources are looked up"
                        " next to the file name Python sees, so they are not found; put the project on the"
                        " python path (--pythonpath) or make it a package, instead of linking the file")]
    return []


def command_check(args: list[str]) -> int:
    """``serve check``: same options as ``serve``; prints one line per finding."""
    from launcher.cli import parse_run_args
    from launcher.options import resolve

    app, cli, config = parse_run_args(args)
    opts = resolve(app, cli=cli, config=config)
    findings = run_checks(opts)
    marks = {OK: "ok     ", WARN: "warning", FAIL: "PROBLEM"}
    for finding in findings:
        first, *rest = finding.text.splitlines()
        print(f"{marks[finding.level]}  {first}")
        for line in rest:
            print(f"         {line}")
    failed = sum(1 for f in findings if f.level == FAIL)
    print(f"\n{opts.app} on {opts.backend}: " + (f"{failed} problem(s) to fix" if failed else "all well"))
    return 1 if failed else 0
