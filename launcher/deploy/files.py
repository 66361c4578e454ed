"""``serve config wsgi-file`` and ``serve config cgi-script``: the two entry files a web server runs.

* the .wsgi file is the guide's ``from yourapplication import app as application``, but through
  the launcher's importer (factories, ``path/to/app.py:app`` and its error messages work) with the
  directory ``serve`` imports from put on ``sys.path`` first, as the guide does by hand;
* the cgi-bin script is the guide's ``CGIHandler().run(app)`` through :func:`backends.cgi.run_cgi`
  (stdout protected against print(), clean 500s), run by the virtualenv's own interpreter.
"""

from __future__ import annotations

import os

from launcher.deploy.common import header
from launcher.deploy.context import Deployment, Rendered
from launcher.errors import OptionError

#: the middleware options and the keyword values the .wsgi file hands to resolve()
_MIDDLEWARE = ("root_path", "proxy_headers", "forwarded_allow_ips", "forwarded_host_header", "health_path",
               "access_log", "access_log_format", "log_format")


def render(dep: Deployment) -> list[Rendered]:
    if dep.kind == "wsgi-file":
        return [Rendered(f"{dep.name}.wsgi", wsgi_file(dep))]
    return [Rendered(f"{dep.name}.cgi", cgi_script(dep), mode=0o755)]


def _path_lines(dep: Deployment, *, launcher_too: bool) -> list[str]:
    paths = [dep.workdir, *dep.pythonpath]
    if launcher_too and not _launcher_installed():
        paths.append(_launcher_root())
    return [f"sys.path[:0] = {[p for i, p in enumerate(paths) if p not in paths[:i]]!r}"]


def _launcher_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("wsgi-launcher")
    except PackageNotFoundError:
        return False
    return True


def _launcher_root() -> str:
    import launcher

    return os.path.dirname(os.path.dirname(os.path.abspath(launcher.__file__)))


def middleware_keywords(dep: Deployment) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in _MIDDLEWARE:
        if dep.opts.is_set(name):
            value = getattr(dep.opts, name)
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def wsgi_file(dep: Deployment) -> str:
    spec = dep.app
    lines = [
        header(dep, f"{dep.name}.wsgi: the entry file mod_wsgi loads (WSGIScriptAlias points here)"),
        "#",
        "# Apache's mod_wsgi imports this file and serves the `application` it defines.  The daemon",
        "# process's python-home (serve config apache) makes the virtualenv's packages importable, the",
        "# guide's `activate_this.py` trick included.",
        "import os",
        "import sys",
        "",
        "# The guide's \"app dies on print\": old mod_wsgi refused writes to sys.stdout",
        "# (WSGIRestrictStdout); send them to the error log instead, as the guide suggests.",
        "sys.stdout = sys.stderr",
        "",
        "# Where `serve` imports the app from (its working directory, --chdir, --pythonpath): the",
        "# guide's sys.path.insert(0, '/path/to/the/application').",
        *_path_lines(dep, launcher_too=True),
        f"os.chdir({dep.workdir!r})",
        "",
        "from launcher.importer import import_app  # noqa: E402",
        "",
        "# The guide's `from yourapplication import app as application`, through the launcher's importer:",
        "# the same app spec as `serve` (factories, path/to/app.py:app) and the same error messages.",
        f"application = import_app({spec!r})",
    ]
    keywords = middleware_keywords(dep)
    if keywords:
        lines += [
            "",
            "# The launcher middleware the serve options ask for (mount prefix, trusted proxy headers,",
            "# access log...), exactly as `serve` wraps it.",
            "from launcher.middleware import wrap  # noqa: E402",
            "from launcher.options import resolve  # noqa: E402",
            "",
            f"application = wrap(application, resolve({spec!r}, cli={keywords!r}, env={{}}, use_file=False))",
        ]
    return "\n".join(lines) + "\n"


def cgi_script(dep: Deployment) -> str:
    if dep.protocol != "cgi":
        raise OptionError("serve config cgi-script: the script goes with --backend cgi (the web server runs it"
                          f" for each request); got --backend {dep.backend_name}")
    python = dep.python
    if not os.path.isabs(python):
        raise OptionError(f"serve config cgi-script: the interpreter path {python!r} is not absolute")
    keywords: list[str] = []
    if dep.prefix:
        keywords.append(f"root_path={dep.prefix!r}")
    keywords.append(f"chdir={dep.workdir!r}")
    if dep.pythonpath:
        keywords.append(f"pythonpath={tuple(dep.pythonpath)!r}")
    for name in ("script_name_fix", "response_buffer"):
        if name in dep.opts.option:
            keywords.append(f"{name}={dep.backend_options.get(name, dep.opts.option[name])!r}")
    call = f"run_cgi({dep.app!r}, " + ", ".join(keywords) + ")"
    lines = [
        f"#!{python}",
        header(dep, f"{dep.name}.cgi: the cgi-bin script"),
        "#",
        "# The web server runs it once per request (Apache ScriptAlias, lighttpd cgi.assign), as its own",
        "# user: that user must be able to read this interpreter -- the virtualenv's, so the app's",
        "# packages are there -- and the app.  Keep it executable (chmod 0755; --output does).",
        "# Debugging, as the guide says: run it as that user by hand to see an import error:",
        f"#   su -s /bin/sh www-data -c /path/to/{dep.name}.cgi",
        "import sys",
        "",
    ]
    if not _launcher_installed():
        lines += ["# wsgi-launcher is not installed in this interpreter: use the checkout it runs from",
                  f"sys.path.insert(0, {_launcher_root()!r})", ""]
    lines += [
        "# run_cgi keeps stdout for the response only (print() goes to the error log, as the guide",
        "# asks), imports the app from where `serve` would and answers with a clean 500 on errors.",
        "from backends.cgi import run_cgi  # noqa: E402",
        "",
        f"raise SystemExit({call})",
    ]
    return "\n".join(lines) + "\n"
