"""``serve config KIND APP [options]``: the front-server or service config that matches a server.

The options are the ones of ``serve`` itself, resolved the same way (flags, ``SERVE_*``, the config
file), so ``serve config nginx --backend fastcgi --bind unix:/run/app.sock --root-path /app myproject:app``
describes exactly the server that ``serve`` with those options runs.  Each kind is one small module
of template functions returning :class:`~launcher.deploy.context.Rendered` files:

    nginx        server block (+ upstream): proxy_pass, uwsgi_pass or fastcgi_pass
    apache       virtual host: mod_wsgi daemon mode, mod_proxy_fcgi, CGI or mod_proxy_http
    lighttpd     fastcgi.server, scgi.server (uwsgi protocol), proxy.server or mod_cgi
    wsgi-file    the .wsgi entry file mod_wsgi loads
    cgi-script   the executable cgi-bin script
    systemd      .service (and .socket with --socket-activation)
    supervisor   a [program:x] section

Like the backends, the modules are imported only when their kind is asked for.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from launcher.deploy.context import Deployment, Rendered

#: kind -> (module, one-line help).  Each module has ``render(deployment) -> list[Rendered]``.
KINDS: dict[str, tuple[str, str]] = {
    "nginx": ("launcher.deploy.nginx", "server block: proxy_pass, uwsgi_pass or fastcgi_pass to the app"),
    "apache": ("launcher.deploy.apache", "virtual host: mod_wsgi daemon mode, mod_proxy_fcgi, CGI or ProxyPass"),
    "lighttpd": ("launcher.deploy.lighttpd", "fastcgi.server, scgi.server (uwsgi), proxy.server or mod_cgi"),
    "wsgi-file": ("launcher.deploy.files", "the .wsgi entry file mod_wsgi loads (WSGIScriptAlias)"),
    "cgi-script": ("launcher.deploy.files", "the executable cgi-bin script that serves the app"),
    "systemd": ("launcher.deploy.systemd", "a .service running serve (and a .socket with --socket-activation)"),
    "supervisor": ("launcher.deploy.supervisor", "a [program:x] section running serve"),
}


def render(deployment: Deployment) -> list[Rendered]:
    """The files of ``deployment.kind`` (usually one)."""
    import importlib

    module = importlib.import_module(KINDS[deployment.kind][0])
    files: list[Rendered] = module.render(deployment)
    return files
