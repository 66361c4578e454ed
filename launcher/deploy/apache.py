"""``serve config apache``: an Apache 2.4 virtual host for the chosen backend.

* ``--backend mod_wsgi``: the guide's daemon-mode virtual host (``WSGIDaemonProcess`` with the
  options mapped, ``WSGIScriptAlias`` to the .wsgi file, ``WSGIProcessGroup``,
  ``WSGIApplicationGroup %{GLOBAL}``), loading the virtualenv's own pip-built mod_wsgi, with the
  request hygiene of ``serve --backend mod_wsgi`` (:func:`hygiene_server`, :func:`hygiene_vhost`):
  the launcher's own module (backends/apache, built with apxs now when it is not built yet),
  ``HttpProtocolOptions Strict Require1.0``, ``AcceptFilter http none``, ``RequestReadTimeout``,
  the LimitRequest* limits and the '_' header-name rule.  Apache applies some of these to the
  whole server only (LoadModule, AcceptFilter), or reads them with the default virtual host of
  the address before Host picks this one (HttpProtocolOptions, RequestReadTimeout's head stage):
  those are written at server level, outside the virtual host, where Apache merges them into every
  virtual host that sets none of its own, whatever the include order.
* FastCGI and CGI do not load the module (see :data:`NO_HYGIENE_NOTE`): there Apache frames every
  request for a backend that does not speak HTTP (FastCGI records, CGI variables and stdin), so no
  parser behind Apache can read a head differently from it, and the backend still checks what it
  is given; the module would make these recipes need apache2-dev (the mod_wsgi one needs it
  anyway, pip builds mod_wsgi with it).  It is server-wide once loaded: with a mod_wsgi site from
  ``serve config apache`` on the same Apache, these sites have it too.
* FastCGI: ``mod_proxy_fcgi`` (the guide's mod_fastcgi/``ScriptAlias`` recipe needs a module
  Debian 12 no longer ships).
* CGI: ``ScriptAlias`` to the cgi-bin script (the guide's .htaccess rewrite as a comment).
* uwsgi protocol: ``mod_proxy_uwsgi``; HTTP backends: ``ProxyPass`` with the X-Forwarded-* headers.
"""

from __future__ import annotations

import os

from launcher.deploy.common import address, header, socket_permission_note
from launcher.deploy.context import WEB_USER, Deployment, Rendered
from launcher.deploy.text import apache_value, comment, dquote
from launcher.errors import OptionError

I = "    "  # noqa: E741


def render(dep: Deployment) -> list[Rendered]:
    if dep.listen.is_unix:
        raise OptionError("serve config apache: Apache cannot listen on a unix socket; give --listen PORT or"
                          " HOST:PORT")
    if dep.embedded:
        modules = ["reqtimeout", "setenvif", "rewrite", "wsgi (the virtualenv's own, loaded below)"]
        body = hygiene_vhost(dep) + mod_wsgi_body(dep)
        preamble = load_mod_wsgi(dep) + "\n\n" + hygiene_server(dep)
    elif dep.protocol == "cgi":
        modules, body, preamble = ["cgid", "alias"], cgi_body(dep), ""
    elif dep.protocol == "fastcgi":
        modules, body, preamble = ["proxy", "proxy_fcgi", "setenvif"], fcgi_body(dep), ""
    elif dep.protocol == "uwsgi":
        modules, body, preamble = ["proxy", "proxy_uwsgi"], uwsgi_body(dep), ""
    else:
        modules, body, preamble = ["proxy", "proxy_http", "headers"], proxy_body(dep), ""
    enable = " ".join(m for m in modules if " " not in m)
    enable_cmd = f"a2enmod {enable} && " if enable else ""
    parts = [
        header(dep, "Apache 2.4 config"),
        comment(f"""
            Debian: save it as /etc/apache2/sites-available/{dep.name}.conf, then
              {enable_cmd}a2ensite {dep.name} && apachectl configtest && systemctl reload apache2
            """),
        preamble,
        listen_line(dep),
        virtual_host(dep, body),
    ]
    return [Rendered(f"{dep.name}.conf", "\n\n".join(p for p in parts if p))]


def listen_line(dep: Deployment) -> str:
    if dep.listen.is_default:
        return "# Listen 80 is in ports.conf already (Debian); a second `Listen 80` would be an error."
    return f"Listen {dep.listen.host_port('')}" if dep.listen.host else f"Listen {dep.listen.port}"


def virtual_host(dep: Deployment, body: list[str]) -> str:
    lines = [f"<VirtualHost {dep.listen.host_port('*')}>"]
    if dep.server_name:
        lines.append(f"{I}ServerName {apache_value(dep.server_name)}")
    else:
        lines.append(f"{I}# ServerName example.com    (--server-name: the name this virtual host answers for)")
    lines.append("")
    lines += [f"{I}{line}" if line else "" for line in body]
    lines.append("</VirtualHost>")
    return "\n".join(lines)


def _mount(dep: Deployment) -> str:
    return dep.prefix or "/"


# ------------------------------------------------------------------------------- mod_wsgi


def mod_wsgi_module() -> str:
    """The pip-built mod_wsgi of this interpreter (what `mod_wsgi-express module-config` names), or ""."""
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec("mod_wsgi.server")
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.submodule_search_locations:
        return ""
    for location in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(location, "mod_wsgi-py*.so")))
        if found:
            return found[0]
    return ""


def load_mod_wsgi(dep: Deployment) -> str:
    module = mod_wsgi_module()
    intro = comment("""
        mod_wsgi must be built for the Python of the virtualenv the app runs in: this loads the module
        pip built into it (what `mod_wsgi-express module-config` prints), unless a mod_wsgi is loaded
        already -- then make sure it is this one (Debian's libapache2-mod-wsgi-py3 is built for
        /usr/bin/python3: `a2dismod wsgi`).  WSGIRestrictEmbedded: the app runs only in the daemon
        processes below, never inside Apache's own workers.
        """)
    lines = [intro, "<IfModule !wsgi_module>"]
    if module:
        lines.append(f"{I}LoadModule wsgi_module {dquote(module)}")
    else:
        dep.warnings.append("mod_wsgi is not installed in this virtualenv (pip install 'wsgi-launcher[mod_wsgi]',"
                            " needs apache2-dev): the LoadModule line is a placeholder")
        lines.append(f"{I}# pip install 'wsgi-launcher[mod_wsgi]', then paste `mod_wsgi-express module-config`:")
        lines.append(f"{I}# LoadModule wsgi_module /path/to/venv/lib/python3.X/site-packages/mod_wsgi/server/"
                     "mod_wsgi-py3X.so")
    lines.append(f"{I}WSGIPythonHome {dquote(dep.venv)}")
    lines.append(f"{I}WSGIRestrictEmbedded On")
    lines.append("</IfModule>")
    return "\n".join(lines)


def daemon_options(dep: Deployment) -> list[str]:
    """WSGIDaemonProcess options from the serve options (each one explained)."""
    opts = dep.opts
    user = opts.user or WEB_USER
    group = opts.group or (opts.user if opts.user else WEB_USER)
    processes, threads = opts.workers, opts.threads
    if not opts.is_set("workers") and not opts.is_set("threads"):
        # what `serve --backend mod_wsgi` runs by default: mod_wsgi's own 1 x 5 gave a p99 of
        # 0.24-0.64 s at 50 connections, 2 x 25 36-41 ms at the same throughput
        processes, threads = 2, max(opts.threads, 25)
    out = [
        f"user={user} group={group}",
        f"processes={processes} threads={threads}",
        f"python-home={apache_value(dep.venv)}",
        "python-path=" + apache_value(":".join((dep.workdir, *dep.pythonpath))),
        f"home={apache_value(dep.workdir)}",
        "display-name=%{GROUP} lang=C.UTF-8 locale=C.UTF-8",
    ]
    extra = []
    if opts.is_set("timeout"):
        extra.append(f"request-timeout={int(opts.timeout)}")
    if opts.is_set("graceful_timeout"):
        extra.append(f"graceful-timeout={int(opts.graceful_timeout)} shutdown-timeout={int(opts.graceful_timeout)}")
    if opts.max_requests:
        extra.append(f"maximum-requests={opts.max_requests}")
    if opts.is_set("backlog"):
        extra.append(f"listen-backlog={opts.backlog}")
    if opts.umask is not None:
        extra.append(f"umask={opts.umask:04o}")
    if extra:
        out.append(" ".join(extra))
    return out


def mod_wsgi_body(dep: Deployment) -> list[str]:
    script = dep.script
    directory = os.path.dirname(script) or "/"
    opts = daemon_options(dep)
    daemon = f"WSGIDaemonProcess {dep.name} " + " \\\n        ".join(opts)
    lines = [
        "# The guide's daemon mode: the app runs in processes of its own, as this user and group",
        "# (--user/--group; never root, and they must be able to read the virtualenv and the app),",
        "# with --workers processes of --threads threads (neither given: 2 x 25, the mod_wsgi backend's",
        "# default; mod_wsgi's own 1 x 5 had a p99 of up to 0.6 s here).  python-home is the virtualenv",
        "# (sys.prefix); python-path and home are the directory `serve` imports the app from.",
        "# lang/locale: Apache starts with the C locale, which would make file names ASCII-only.",
        *daemon.splitlines(),
        "",
        f"# {_mount(dep)} is the app: the .wsgi file (serve config wsgi-file ... --output {script})",
        "# imports it through the launcher, so the same app spec and middleware options apply.",
        f"WSGIScriptAlias {apache_value(_mount(dep))} {apache_value(script)}",
        "",
        f"<Directory {apache_value(directory)}>",
        f"{I}# Run it in the daemon processes above, in the main interpreter (%{{GLOBAL}}): C",
        f"{I}# extensions that do not support sub-interpreters (numpy...) work there.",
        f"{I}WSGIProcessGroup {dep.name}",
        f"{I}WSGIApplicationGroup %{{GLOBAL}}",
        f"{I}# Accept chunked request bodies (the app reads wsgi.input to its end), as `serve --backend",
        f"{I}# mod_wsgi` does; without it Apache answers them 411 Length Required.",
        f"{I}WSGIChunkedRequest On",
        f"{I}# Apache 2.4 access control (the guide's `Order deny,allow` / `Allow from all` is 2.2).",
        f"{I}Require all granted",
    ]
    if dep.opts.reload:
        lines += [
            f"{I}# --reload: restart the daemon processes when the .wsgi file changes (touch it).",
            f"{I}WSGIScriptReloading On",
        ]
    lines.append("</Directory>")
    if dep.opts.is_set("keepalive"):
        lines += ["", f"KeepAliveTimeout {int(dep.opts.keepalive)}"]
    return lines


# ------------------------------------------------------------------------------- request hygiene


def hygiene_module(dep: Deployment) -> str:
    """The absolute path of the launcher's Apache module (backends/apache: the virtualenv's build,
    else the per-user cache's, else built there now), or "" with a one-line warning."""
    from backends import apache as hygiene  # lazily: apxs and hashing only for this recipe

    try:
        built = os.path.abspath(hygiene.module_path())
    except (hygiene.BuildError, OSError) as exc:
        dep.warnings.append(
            f"the launcher's Apache module (mod_launcher_hygiene) could not be built ({exc}): the config"
            " does not load it, so this Apache accepts obsolete line folding, Content-Length with"
            " Transfer-Encoding and malformed chunk sizes (request smuggling); install apache2-dev (apxs),"
            " run `python -m backends.apache` in this virtualenv and generate the config again")
        return ""
    try:
        return hygiene.stable_link(built)  # the name each rebuild (after an upgrade) moves along
    except OSError:
        return built


def hygiene_server(dep: Deployment) -> str:
    """The server-wide part: the launcher's module, the strict protocol options, the accept filter
    and the read timeouts (what :func:`backends.mod_wsgi.strict_config` gives `serve --backend
    mod_wsgi`)."""
    import math

    module = hygiene_module(dep)
    timeout = max(1, math.ceil(dep.opts.header_timeout))
    lines = [comment("""
        Request hygiene, as `serve --backend mod_wsgi` has it.  These are server-wide: Apache takes
        LoadModule and AcceptFilter for the whole server only, and reads a request's head with the
        default virtual host of the address it came to, before Host picks this one.  Written here,
        outside any <VirtualHost>, Apache merges them into every virtual host that sets none of its
        own, in whatever order the sites are included: they apply to the other sites of this Apache
        too.

        The launcher's own module (mod_launcher_hygiene, wsgi-launcher's backends/apache, built with
        apxs) reads the raw request bytes before Apache's core: it answers 400 and closes the
        connection for obsolete line folding, Content-Length together with Transfer-Encoding and a
        malformed chunk-size line, which core would unfold, drop or read leniently -- and a proxy in
        front of Apache could read differently (request smuggling).  The file name carries the
        source's hash; the name loaded here is a link that each rebuild (`python -m backends.apache`,
        which `make` runs after an upgrade) moves to the new build: reload Apache after upgrading.
        """)]
    if module:
        lines += ["<IfModule !launcher_hygiene_module>",
                  f"{I}LoadModule launcher_hygiene_module {dquote(module)}",
                  "</IfModule>"]
    else:
        lines += ["# NOT LOADED: the module could not be built on this machine.  Install apache2-dev (apxs), run",
                  "# `python -m backends.apache` with the virtualenv's python, then generate this file again;",
                  "# until then obsolete line folding and Content-Length + Transfer-Encoding reach Apache's core.",
                  "# LoadModule launcher_hygiene_module /path/to/venv/lib/wsgi-launcher/mod_launcher_hygiene-HASH.so"]
    lines += [
        "# No HTTP/0.9, Apache's strict head syntax (control characters, header names that are tokens,",
        "# a valid Host); methods Apache does not know still reach the app.",
        "HttpProtocolOptions Strict Require1.0 LenientMethods",
        "# Linux's TCP_DEFER_ACCEPT (Apache's default) holds a connection that sends nothing in the kernel,",
        "# out of RequestReadTimeout's reach.",
        "AcceptFilter http none",
        f"# --header-timeout ({timeout} s): the head must arrive within it, however it trickles, and a body",
        "# must keep coming (mod_reqtimeout: a2enmod reqtimeout; Debian's default is header=20-40).",
        f"RequestReadTimeout handshake={timeout} header={timeout} body={timeout},MinRate=500",
    ]
    return "\n".join(lines)


def hygiene_vhost(dep: Deployment) -> list[str]:
    """The per-virtual-host part: the request limits and the '_' header-name rule."""
    from backends.mod_wsgi import _posing_names  # the same names `serve --backend mod_wsgi` refuses

    opts = dep.opts
    return [
        "# The request limits of the serve options (0: no limit).  Apache applies the three head limits",
        "# of the address's default virtual host (the first one listed for it): with other sites on",
        "# the same address and port, include this file first (name it 000-...) for them to count.",
        f"LimitRequestLine {opts.limit_request_line}",
        f"LimitRequestFields {opts.limit_request_fields}",
        f"LimitRequestFieldSize {opts.limit_request_field_size}",
        f"LimitRequestBody {opts.limit_request_body}",
        "",
        "# A header name with '_' posing as a standard or forwarded one (Content_Length, X_Forwarded_For):",
        "# mod_wsgi leaves such names out of environ, so neither the app nor a check in it could see",
        "# them.  Answered 400 with Connection: close, as `serve --backend mod_wsgi` does.",
        f'SetEnvIfNoCase "{_posing_names()}" "." LAUNCHER_BAD_HEADER=1 nokeepalive',
        "RewriteEngine On",
        "RewriteCond %{ENV:LAUNCHER_BAD_HEADER} =1",
        "RewriteRule ^ - [R=400,L]",
        "",
    ]


#: Why the FastCGI and CGI recipes do not load the launcher's module (written into them).
NO_HYGIENE_NOTE = [
    "# Request hygiene: Apache frames each request for {what}, so no parser behind it can read",
    "# a head differently.  The launcher's Apache module (which refuses obsolete line folding and",
    "# Content-Length with Transfer-Encoding, against a proxy in front of Apache reading them",
    "# differently) is not loaded here; `serve config apache --backend mod_wsgi` shows its server-wide",
    "# lines (LoadModule launcher_hygiene_module ..., HttpProtocolOptions Strict Require1.0), which",
    "# this site gets too on an Apache that has them.",
    "",
]


# ------------------------------------------------------------------------------- CGI


def cgi_body(dep: Deployment) -> list[str]:
    script = dep.script
    directory = os.path.dirname(script) or "/"
    mount = _mount(dep)
    target = script + "/" if mount == "/" else script
    lines = [
        *(line.format(what="the CGI program (variables and stdin)") for line in NO_HYGIENE_NOTE),
        "# The guide's ScriptAlias: every request under the mount point runs the script, a new",
        "# process each time (mod_cgid, as the web server's user: it must be able to read the",
        "# interpreter, the virtualenv and the app).  SCRIPT_NAME is the mount point and PATH_INFO",
        "# the rest, as WSGI wants them.  Write the script with",
        f"#   serve config cgi-script ... --output {script}",
        f"ScriptAlias {apache_value(mount)} {apache_value(target)}",
        "",
        f"<Directory {apache_value(directory)}>",
        f"{I}Options +ExecCGI",
        f"{I}Require all granted",
        "</Directory>",
        "",
        "# Without access to the server config (shared hosting), the guide's .htaccess variant in the",
        "# public directory does the same through a rewrite; the script's own path then ends up in",
        "# SCRIPT_NAME: generate the script with -o script_name_fix=strip (the ScriptNameStripper).",
        "#   RewriteEngine On",
        "#   RewriteCond %{REQUEST_FILENAME} !-f",
        f"#   RewriteRule ^(.*)$ {script}/$1 [L]",
    ]
    return lines


# ------------------------------------------------------------------------------- FastCGI / uwsgi / HTTP


def backend_url(dep: Deployment, scheme: str) -> str:
    """``scheme://HOST:PORT/`` or ``unix:/path|scheme://localhost/`` for the first target."""
    bind = dep.targets[0]
    if bind.kind == "unix":
        return f"unix:{bind.path}|{scheme}://localhost"
    return f"{scheme}://{address(bind)}"


def fcgi_body(dep: Deployment) -> list[str]:
    mount = _mount(dep)
    url = backend_url(dep, "fcgi") + ("/" if mount == "/" else "")  # trailing slashes must pair up
    lines = [
        *(line.format(what="the FastCGI backend (FastCGI records)") for line in NO_HYGIENE_NOTE),
        "# FastCGI through mod_proxy_fcgi.  The guide's recipe (mod_fastcgi / mod_fcgid with a",
        "# ScriptAlias to an .fcgi file Apache starts itself) needs mod_fastcgi, which Debian 12 no",
        "# longer ships: here `serve --backend fastcgi` runs the app and Apache connects to it.",
        "#",
        "# mod_proxy_fcgi sends the whole path as SCRIPT_NAME and no PATH_INFO unless told:",
        "# proxy-fcgi-pathinfo=unescape makes PATH_INFO the decoded path below the mount point and",
        "# SCRIPT_NAME the mount point, as WSGI wants them.",
        "SetEnvIf Request_URI . proxy-fcgi-pathinfo=unescape",
        "ProxyFCGIBackendType GENERIC",
        f"ProxyPass {dquote(mount)} {dquote(url)}",
    ]
    lines += _socket_lines(dep)
    return lines


def uwsgi_body(dep: Deployment) -> list[str]:
    mount = _mount(dep)
    url = backend_url(dep, "uwsgi") + ("/" if mount == "/" else "")
    return [
        "# The uwsgi protocol through mod_proxy_uwsgi (`serve --backend uwsgi -o protocol=uwsgi`):",
        "# SCRIPT_NAME is the mount point and PATH_INFO the rest.",
        f"ProxyPass {dquote(mount)} {dquote(url)}",
        *_socket_lines(dep),
    ]


def proxy_body(dep: Deployment) -> list[str]:
    mount = _mount(dep)
    base = backend_url(dep, "http")
    # The path is passed on as the client sent it, prefix included (serve --root-path takes it off).
    url = base + (dep.prefix if dep.prefix else "/")
    lines = [
        "# A reverse proxy only, never an open forward proxy.",
        "ProxyRequests Off",
        "# The guide's `Host $host`: the app sees the host name the client asked for.",
        "ProxyPreserveHost On",
        "# mod_proxy_http adds X-Forwarded-For (the client's address), X-Forwarded-Host and",
        "# X-Forwarded-Server itself; the scheme (and the mount point) are added here.",
        "RequestHeader set X-Forwarded-Proto expr=%{REQUEST_SCHEME}",
    ]
    if dep.prefix:
        lines += [f"RequestHeader set X-Forwarded-Prefix {dquote(dep.prefix)}"]
    lines += [
        "# nocanon: the path reaches the app exactly as the client sent it (still percent-encoded)",
        f"# with {dep.prefix} in it: `serve --root-path {dep.prefix}` takes it off" if dep.prefix else "# ",
        f"ProxyPass {dquote(mount)} {dquote(url)} nocanon",
        f"ProxyPassReverse {dquote(mount)} {dquote(url)}",
    ]
    if not dep.opts.proxy_headers:
        lines += [
            "# The backend runs without --proxy-headers: the app sees Apache's address as REMOTE_ADDR.",
            "# Serve with --proxy-headers --forwarded-allow-ips ADDR (Apache's address; `unix` for a",
            "# unix socket) to use these headers.",
        ]
    lines += _socket_lines(dep)
    return [line for line in lines if line != "# "]


def _socket_lines(dep: Deployment) -> list[str]:
    note = socket_permission_note(dep, "Apache")
    return ["", *note.splitlines()] if note else []
