"""``serve config nginx``: an upstream block and a server block, for inclusion inside ``http {}``.

The guide's three nginx recipes: ``proxy_pass`` to an HTTP server (with the Host and
X-Forwarded-* headers set), ``uwsgi_pass`` (``include uwsgi_params``) and ``fastcgi_pass``
(``include fastcgi_params`` with SCRIPT_NAME and PATH_INFO worked out by nginx), each at ``/`` or
under the ``--root-path`` prefix.  nginx cannot run CGI scripts: that is an error naming the
servers that can.
"""

from __future__ import annotations

from launcher.deploy.common import address, header, socket_permission_note
from launcher.deploy.context import Deployment, Rendered
from launcher.deploy.text import comment, nginx_value
from launcher.errors import OptionError

I = "    "  # noqa: E741 - one indent level


def render(dep: Deployment) -> list[Rendered]:
    if dep.protocol == "cgi":
        raise OptionError("serve config nginx: nginx cannot run CGI scripts; use `serve config apache` or"
                          " `serve config lighttpd` for --backend cgi, or serve with --backend fastcgi")
    if dep.protocol not in ("http", "fastcgi", "uwsgi"):
        raise OptionError(f"serve config nginx: backend '{dep.backend_name}' speaks {dep.protocol}, which nginx"
                          " cannot forward to")
    parts = [
        header(dep, "nginx config"),
        comment(f"""
            Include it inside http {{}}; Debian: save it as /etc/nginx/conf.d/{dep.name}.conf, then
              nginx -t && systemctl reload nginx
            """),
        socket_permission_note(dep, "nginx"),
        upstream_block(dep),
        server_block(dep),
    ]
    return [Rendered(f"{dep.name}.conf", "\n\n".join(p for p in parts if p))]


# ------------------------------------------------------------------------------- upstream


def upstream_block(dep: Deployment) -> str:
    lines = [comment(f"""
        The instances of the app.  With several (--upstream ADDR, repeatable: one `serve` per address)
        nginx spreads requests over them, takes an instance out for fail_timeout after max_fails
        failed attempts, and {next_upstream_note(dep)}
        """)]
    lines.append(f"upstream {dep.name} {{")
    for bind in dep.targets:
        target = f"unix:{bind.path}" if bind.kind == "unix" else address(bind)
        lines.append(f"{I}server {nginx_value(target)} max_fails=3 fail_timeout=10s;")
    if dep.protocol == "http":
        lines.append(f"{I}# idle connections kept open to the app (needs proxy_http_version 1.1 below)")
        lines.append(f"{I}keepalive 16;")
    elif dep.protocol == "fastcgi":
        lines.append(f"{I}# no `keepalive`: it needs `fastcgi_keep_conn on`, which gave multi-second response")
        lines.append(f"{I}# tails with flup; nginx opens one FastCGI connection per request instead.")
    lines.append("}")
    return "\n".join(lines)


def next_upstream_note(dep: Deployment) -> str:
    if dep.protocol in ("fastcgi", "uwsgi"):  # their *_next_upstream has no http_502
        return ("retries a request on the next instance when one cannot be reached, times out or answers"
                " 503 (a draining instance); never for a POST that may have reached the app.")
    return ("retries a request on the next instance when one cannot be reached, times out or answers 502/503"
            " (a draining instance); never for a POST that may have reached the app.")


# ------------------------------------------------------------------------------- server


def server_block(dep: Deployment) -> str:
    listen = dep.listen
    lines = ["server {"]
    if listen.is_unix:
        lines.append(f"{I}listen {nginx_value('unix:' + listen.path)};")
    else:
        lines.append(f"{I}listen {listen.host_port('') if listen.host else listen.port};")
    lines.append(f"{I}server_name {nginx_value(dep.server_name or '_')};")
    lines.append("")
    lines.append(comment("""
        access_log / error_log: inherited from http {} (the guide's /var/log/nginx/*.log); set them here
        to give this site its own files.
        """, indent=I))
    limit = getattr(dep.opts, "limit_request_body", None)
    honoured = dep.backend is not None and "limit_request_body" in dep.backend.honoured()
    if limit is None or not honoured:
        lines.append(f"{I}# Request bodies over nginx's default client_max_body_size (1 MB) get 413: raise it for")
        lines.append(f"{I}# bigger uploads.")
    else:
        lines.append(f"{I}# The app's --limit-request-body ({'no limit' if not limit else f'{limit} bytes'}): nginx's"
                     " own default, 1 MB,")
        lines.append(f"{I}# would turn bigger uploads away with 413 before they reach the app.")
        lines.append(f"{I}client_max_body_size {limit};")
    lines.append("")
    body = {"http": proxy_location, "uwsgi": uwsgi_location, "fastcgi": fastcgi_location}[dep.protocol](dep)
    if dep.prefix:
        lines.append(comment(f"""
            Mounted under {dep.prefix}: {dep.prefix} itself is served as {dep.prefix}/ (an internal
            rewrite, as in the guide), and URLs outside the prefix are not the app's.
            """, indent=I))
        lines.append(f"{I}location = {nginx_value(dep.prefix)} {{ rewrite ^ {nginx_value(dep.prefix + '/')} last; }}")
        lines.append(f"{I}location {nginx_value(dep.prefix + '/')} {{")
    else:
        lines.append(comment("""
            The whole site is the app.  (The guide's `try_files $uri @app` would first look for a static
            file under nginx's default root, which can shadow the app's own URLs: serve static files
            from a location of their own instead, e.g. `location /static/ { alias /path/to/static/; }`.)
            """, indent=I))
        lines.append(f"{I}location / {{")
    lines += [f"{I}{I}{line}" if line else "" for line in body]
    lines.append(f"{I}}}")
    lines.append("}")
    return "\n".join(lines)


def proxy_location(dep: Deployment) -> list[str]:
    prefix = dep.prefix
    lines = [
        "# No URI after the upstream name: nginx passes the request line unchanged (still",
        "# percent-encoded" + (f", {prefix} included: `serve --root-path {prefix}` takes it off" if prefix else "")
        + ").",
        f"proxy_pass http://{dep.name};",
        "# HTTP/1.1 with an empty Connection header keeps upstream connections open (keepalive",
        "# above) and lets the app stream: a response cut off by an app error stays cut off.",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_redirect off;",
        "",
        "# The guide's headers.  Host: the name the client asked for; X-Real-IP and X-Forwarded-For:",
        "# the client's address (nginx appends it to any X-Forwarded-For the client sent; the app",
        "# takes the right-most address that is not a trusted proxy, so a client cannot forge it).",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "# Scheme, host and port the client used, so the app builds correct absolute URLs.",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $host;",
        "proxy_set_header X-Forwarded-Port $server_port;",
    ]
    if prefix:
        lines += [
            "# The mount point, for apps and middleware that read it (the app already gets it from",
            "# --root-path; a trusted X-Forwarded-Prefix is never applied twice).",
            f"proxy_set_header X-Forwarded-Prefix {nginx_value(prefix)};",
        ]
    lines += [""]
    lines += trust_note(dep)
    lines += [
        "",
        "proxy_next_upstream error timeout http_502 http_503;",
    ]
    if dep.opts.is_set("timeout") and dep.opts.timeout + 5 > 60:
        lines.append(f"proxy_read_timeout {int(dep.opts.timeout + 5)}s;  # longer than the app's --timeout")
    return lines


def trust_note(dep: Deployment) -> list[str]:
    opts = dep.opts
    if not opts.proxy_headers:
        return [
            "# The backend runs without --proxy-headers: the app sees nginx's address as REMOTE_ADDR and",
            "# ignores the X-Forwarded-* headers.  Serve with --proxy-headers --forwarded-allow-ips ADDR",
            "# (the address nginx connects from; `unix` for a unix socket) to use them.",
        ]
    trusted = ",".join(opts.forwarded_allow_ips)
    return [
        f"# The backend honours these headers only from --forwarded-allow-ips peers ({trusted}) and",
        "# strips them from every other client (werkzeug's ProxyFix would trust anyone).",
    ]


def regex_escape(text: str) -> str:
    """``text`` as a literal in an nginx (PCRE) regex."""
    return "".join("\\" + ch if ch in ".^$*+?()[]{}|\\" else ch for ch in text)


def uwsgi_location(dep: Deployment) -> list[str]:
    lines = [
        "# The guide's uwsgi_pass: nginx speaks uWSGI's binary protocol (`serve --backend uwsgi",
        "# -o protocol=uwsgi`), passing the request as CGI variables from uwsgi_params.",
        "include uwsgi_params;",
    ]
    if dep.prefix:
        lines += [
            "# uwsgi_params sends PATH_INFO with the prefix in it ($document_uri); SCRIPT_NAME says where",
            f"# the app is mounted and `serve --root-path {dep.prefix}` takes the prefix off PATH_INFO.",
            "# (The guide's `uwsgi_modifier1 30` did that inside uWSGI; uWSGI deprecated it.)",
            f"uwsgi_param SCRIPT_NAME {nginx_value(dep.prefix)};",
        ]
    else:
        lines.append("# At / nothing needs rewriting: SCRIPT_NAME is empty and PATH_INFO the whole path.")
    lines += [
        f"uwsgi_pass {dep.name};",
        "uwsgi_next_upstream error timeout http_503;",
    ]
    if dep.opts.is_set("timeout") and dep.opts.timeout + 5 > 60:
        lines.append(f"uwsgi_read_timeout {int(dep.opts.timeout + 5)}s;  # longer than the app's --timeout")
    return lines


def fastcgi_location(dep: Deployment) -> list[str]:
    lines = [
        "# nginx passes no FastCGI parameters by default: fastcgi_params sends the request as CGI",
        "# variables, and the two lines after it say where the app is mounted (SCRIPT_NAME) and",
        "# which path inside it was asked for (PATH_INFO, decoded as WSGI wants it).",
        "include fastcgi_params;",
    ]
    if dep.prefix:
        lines += [
            f"fastcgi_split_path_info {nginx_value('^(' + regex_escape(dep.prefix) + ')(/.*)$')};",
            "fastcgi_param SCRIPT_NAME $fastcgi_script_name;",
            "fastcgi_param PATH_INFO $fastcgi_path_info;",
        ]
    else:
        lines += [
            "# (fastcgi_params sends SCRIPT_NAME as the whole path; this later value is the one used)",
            'fastcgi_param SCRIPT_NAME "";',
            "fastcgi_param PATH_INFO $uri;",
        ]
    lines += [
        f"fastcgi_pass {dep.name};",
        "# Not `fastcgi_keep_conn on`: with flup it gave multi-second tails on some responses.",
        "fastcgi_next_upstream error timeout http_503;",
    ]
    if dep.opts.is_set("timeout") and dep.opts.timeout + 5 > 60:
        lines.append(f"fastcgi_read_timeout {int(dep.opts.timeout + 5)}s;  # longer than the app's --timeout")
    return lines
