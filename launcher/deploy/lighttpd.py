"""``serve config lighttpd``: lighttpd 1.4 config for the chosen backend.

FastCGI through ``fastcgi.server`` (the guide's recipe, with the app started by ``serve`` rather
than by lighttpd's ``bin-path``), the uwsgi protocol through ``scgi.server`` with
``"proto" => "uwsgi"``, CGI through ``mod_cgi`` (``alias.url`` + ``cgi.assign``) and HTTP backends
through ``proxy.server``.  At ``/`` the guide's "lighttpd root fix" (LighttpdCGIRootFix) is
lighttpd's own ``"fix-root-scriptname" => "enable"`` since 1.4.23.
"""

from __future__ import annotations

from launcher.deploy.common import header, socket_permission_note
from launcher.deploy.context import Deployment, Rendered
from launcher.deploy.text import comment, dquote

I = "    "  # noqa: E741


def render(dep: Deployment) -> list[Rendered]:
    if dep.embedded:
        from launcher.errors import OptionError

        raise OptionError("serve config lighttpd: the mod_wsgi backend is Apache itself; use `serve config apache`,"
                          " or put lighttpd in front of it: pick an HTTP backend")
    if dep.protocol == "cgi":
        modules, body = ["mod_alias", "mod_cgi"], cgi_block(dep)
    elif dep.protocol == "fastcgi":
        modules, body = ["mod_fastcgi"], gateway_block(dep, "fastcgi.server", [])
    elif dep.protocol == "uwsgi":
        modules, body = ["mod_scgi"], gateway_block(dep, "scgi.server", [
            '# mod_scgi speaks the uwsgi protocol too (`serve --backend uwsgi -o protocol=uwsgi`)',
            '"proto" => "uwsgi",'])
    else:
        modules, body = ["mod_proxy", "mod_setenv"], proxy_block(dep)
    parts = [
        header(dep, "lighttpd config"),
        comment(f"""
            Debian: save it as /etc/lighttpd/conf-available/50-{dep.name}.conf, then
              lighty-enable-mod {dep.name} && lighttpd -tt -f /etc/lighttpd/lighttpd.conf && systemctl reload lighttpd
            """),
        socket_permission_note(dep, "lighttpd") if dep.protocol != "cgi" else "",
        "server.modules += ( " + ", ".join(dquote(m) for m in modules) + " )",
        scoped(dep, body),
    ]
    return [Rendered(f"{dep.name}.conf", "\n\n".join(p for p in parts if p))]


def scoped(dep: Deployment, body: list[str]) -> str:
    """The body at the top level, or inside ``$SERVER["socket"]`` for a --listen address of its own."""
    listen = dep.listen
    if listen.is_default:
        return "\n".join(body)
    where = listen.path if listen.is_unix else listen.host_port("")
    if not listen.is_unix and not listen.host:
        where = f":{listen.port}"
    lines = [
        f"# Listen on {where} and serve the app there (the rest of lighttpd.conf stays as it is).",
        f'$SERVER["socket"] == {dquote(where)} {{',
        *[f"{I}{line}" if line else "" for line in body],
        "}",
    ]
    return "\n".join(lines)


def _key(dep: Deployment) -> str:
    return dep.prefix or "/"


def target_lines(dep: Deployment) -> list[str]:
    bind = dep.targets[0]
    if bind.kind == "unix":
        return [f'"socket" => {dquote(bind.path)},']
    return [f'"host" => {dquote(bind.host)},', f'"port" => {bind.port},']


def gateway_block(dep: Deployment, directive: str, extra: list[str]) -> list[str]:
    key = _key(dep)
    lines = [
        "# The app is started by `serve`, not by lighttpd: no \"bin-path\" (the guide's spawning of the",
        "# .fcgi file); lighttpd only connects to it.",
        f"{directive} += (",
        f"{I}{dquote(key)} => ((",
        *[f"{I}{I}{line}" for line in target_lines(dep)],
        f"{I}{I}# the app is not a file under document-root: do not look for one",
        f'{I}{I}"check-local" => "disable",',
        *[f"{I}{I}{line}" for line in extra],
    ]
    if key == "/":
        lines += [
            f"{I}{I}# The guide's lighttpd root fix: mounted at \"/\", lighttpd would send the whole path as",
            f"{I}{I}# SCRIPT_NAME and an empty PATH_INFO (what LighttpdCGIRootFix repaired in the app);",
            f"{I}{I}# this gives SCRIPT_NAME \"\" and PATH_INFO the path instead.  (Where it cannot be set,",
            f"{I}{I}# serve with -o script_name_fix=lighttpd: the same repair inside the app process.)",
            f'{I}{I}"fix-root-scriptname" => "enable",',
        ]
    else:
        lines += [
            f"{I}{I}# Mounted at {key}: SCRIPT_NAME is {key} and PATH_INFO the rest.",
        ]
    lines += [f"{I}))", ")"]
    return lines


def cgi_block(dep: Deployment) -> list[str]:
    script = dep.script
    key = _key(dep)
    if key == "/":
        alias = [f'alias.url += ( "/" => {dquote(script + "/")} )']
        cond = ""
    else:
        alias = [f"alias.url += ( {dquote(key)} => {dquote(script)} )"]
        cond = f"^{regex_escape(key)}(/|$)"
    lines = [
        "# The guide's CGI recipe: every request under the mount point runs the script (a new process",
        "# each time, as lighttpd's user: it must be able to read the interpreter, the virtualenv and",
        "# the app).  The path below the script becomes PATH_INFO and the mount point SCRIPT_NAME.",
        f"# Write the script with: serve config cgi-script ... --output {script}",
        *alias,
    ]
    assign = [
        "# \"\" => \"\": run the script itself (it is executable and its #! line names the interpreter).",
        'cgi.assign = ( "" => "" )',
    ]
    if cond:
        lines += [f"$HTTP[\"url\"] =~ {dquote(cond)} {{", *[f"{I}{line}" for line in assign], "}"]
    else:
        lines += assign
    return lines


def proxy_block(dep: Deployment) -> list[str]:
    key = _key(dep)
    lines = [
        "# The path goes to the app as the client sent it" + (
            f", {key} included (`serve --root-path {key}` takes it off)." if dep.prefix else "."),
        "proxy.server += (",
        f"{I}{dquote(key)} => ((",
        *[f"{I}{I}{line}" for line in target_lines(dep)],
        f"{I}))",
        ")",
        "# lighttpd sends X-Forwarded-For and X-Forwarded-Proto itself; this adds the host as well",
        "# (and an RFC 7239 Forwarded header).",
        'proxy.forwarded = ( "for" => 1, "proto" => 1, "host" => 1 )',
    ]
    if dep.prefix:
        lines += [f'setenv.add-request-header += ( "X-Forwarded-Prefix" => {dquote(dep.prefix)} )']
    if not dep.opts.proxy_headers:
        lines += [
            "# The backend runs without --proxy-headers: the app sees lighttpd's address as REMOTE_ADDR.",
            "# Serve with --proxy-headers --forwarded-allow-ips ADDR to use these headers.",
        ]
    return lines


def regex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in ".^$*+?()[]{}|\\" else ch for ch in text)
