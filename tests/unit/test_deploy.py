"""``serve config``: every kind renders, with the key directives for each backend and mount point;
bad kinds and options are one-line errors.  No server starts here (tests/front runs them)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.deploy import KINDS

APP = "tests.unit.fakes:app"
PREFIX = "/yourapplication"


def config(capsys: pytest.CaptureFixture[str], *args: str, app: str = APP) -> tuple[int, str, str]:
    code = main(["config", *args, *([app] if app else [])])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *args: str, app: str = APP) -> str:
    code, out, err = config(capsys, *args, app=app)
    assert code == 0, err
    return out


def directives(text: str, comment: str = "#") -> list[str]:
    """The non-comment lines, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(comment)]


def prose(text: str) -> str:
    """The text as one line, comment markers dropped: wrapped comments compare as sentences."""
    return " ".join(word for word in text.split() if word not in ("#", ";"))


@pytest.fixture(autouse=True)
def _clean(clean_env: None) -> None:
    """No SERVE_* variables and an empty working directory for every test."""


HYGIENE_SO = "/opt/wl/mod_launcher_hygiene-0123456789abcdef.so"


@pytest.fixture(autouse=True)
def _hygiene_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve config apache` finds (or builds) the launcher's Apache module: a fixed path here, so no
    test runs apxs (tests/front loads the real one)."""
    import backends.apache

    monkeypatch.setattr(backends.apache, "module_path", lambda: HYGIENE_SO)


# ------------------------------------------------------------------------------- CLI


def test_help_lists_the_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = config(capsys, "--help", app="")
    assert code == 0
    for kind in KINDS:
        assert f"  {kind} " in out
    assert "--upstream ADDR" in out and "--socket-activation" in out


def test_serve_help_lists_the_config_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "serve config" in capsys.readouterr().out


def test_unknown_kind_names_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = config(capsys, "ngnix")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "unknown kind 'ngnix'" in err and "did you mean 'nginx'" in err


def test_kind_must_come_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "--backend", "fastcgi", "nginx")
    assert code == 2 and "give the KIND first" in err


@pytest.mark.parametrize("args", [
    ["--workers", "0"],
    ["--bind", "nowhere:port"],
    ["--backend", "tornadoo"],
    ["--backend", "fastcgi", "--timeout", "5"],
    ["--backend", "fastcgi", "-o", "max_spares=3"],
    ["--root-path", "yourapplication"],
])
def test_bad_options_are_the_same_one_line_errors_as_serve(capsys: pytest.CaptureFixture[str],
                                                           args: list[str]) -> None:
    code, out, err = config(capsys, "nginx", *args)
    run_code = main([*args, APP])  # fails in the same checks, before anything binds
    run_err = capsys.readouterr().err
    assert code == run_code != 0 and out == ""
    assert err.strip() == run_err.strip()
    assert len(err.strip().splitlines()) == 1, err


def test_unknown_flag_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "nginx", "--upstreams", "127.0.0.1:8000")
    assert code == 2 and "did you mean '--upstream'" in err


def test_config_flag_for_another_kind_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "systemd", "--upstream", "127.0.0.1:8001")
    assert code == 2 and "--upstream does not apply here (it is for nginx)" in err


def test_options_come_from_the_environment_and_serve_toml(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "serve.toml").write_text('backend = "fastcgi"\nbind = ["127.0.0.1:9000"]\n')
    monkeypatch.setenv("SERVE_ROOT_PATH", PREFIX)
    out = ok(capsys, "nginx")
    assert "fastcgi_pass" in out and f"location {PREFIX}/ {{" in out
    assert "server 127.0.0.1:9000 max_fails=3 fail_timeout=10s;" in out


# ------------------------------------------------------------------------------- nginx


def test_nginx_proxy_at_root(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "nginx", "--bind", "127.0.0.1:8000", "--proxy-headers"))
    assert "upstream tests {" in lines and "server 127.0.0.1:8000 max_fails=3 fail_timeout=10s;" in lines
    assert "location / {" in lines and "proxy_pass http://tests;" in lines
    for header in ("Host $host", "X-Real-IP $remote_addr", "X-Forwarded-For $proxy_add_x_forwarded_for",
                   "X-Forwarded-Proto $scheme", "X-Forwarded-Host $host"):
        assert f"proxy_set_header {header};" in lines
    assert not any("X-Forwarded-Prefix" in line for line in lines)
    assert "proxy_next_upstream error timeout http_502 http_503;" in lines
    assert "listen 80;" in lines and "server_name _;" in lines


def test_nginx_proxy_under_a_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "nginx", "--bind", "127.0.0.1:8000", "--root-path", PREFIX))
    assert f"location = {PREFIX} {{ rewrite ^ {PREFIX}/ last; }}" in lines
    assert f"location {PREFIX}/ {{" in lines
    assert f"proxy_set_header X-Forwarded-Prefix {PREFIX};" in lines
    assert "proxy_pass http://tests;" in lines  # no URI part: the prefix reaches the app, --root-path strips it


def test_nginx_fastcgi_at_root(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "nginx", "--backend", "fastcgi", "--bind", "unix:/run/app.sock",
                          "--group", "www-data"))
    assert "include fastcgi_params;" in lines
    assert 'fastcgi_param SCRIPT_NAME "";' in lines and "fastcgi_param PATH_INFO $uri;" in lines
    assert "fastcgi_pass tests;" in lines and "server unix:/run/app.sock max_fails=3 fail_timeout=10s;" in lines
    assert "fastcgi_keep_conn on;" not in lines and "keepalive 16;" not in lines
    assert "fastcgi_next_upstream error timeout http_503;" in lines


def test_nginx_fastcgi_under_a_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "nginx", "--backend", "fastcgi", "--bind", "127.0.0.1:9000", "--root-path", PREFIX))
    assert f"fastcgi_split_path_info ^({PREFIX})(/.*)$;" in lines
    assert "fastcgi_param SCRIPT_NAME $fastcgi_script_name;" in lines
    assert "fastcgi_param PATH_INFO $fastcgi_path_info;" in lines
    assert f"location {PREFIX}/ {{" in lines


def test_nginx_fastcgi_prefix_is_escaped_in_the_regex(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "nginx", "--backend", "fastcgi", "--bind", "127.0.0.1:9000", "--root-path", "/my.app")
    assert r"fastcgi_split_path_info ^(/my\.app)(/.*)$;" in out


def test_nginx_uwsgi(capsys: pytest.CaptureFixture[str]) -> None:
    root = directives(ok(capsys, "nginx", "--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind", "127.0.0.1:3031"))
    assert "include uwsgi_params;" in root and "uwsgi_pass tests;" in root
    assert not any(line.startswith("uwsgi_param SCRIPT_NAME") for line in root)
    assert "uwsgi_next_upstream error timeout http_503;" in root
    prefixed = directives(ok(capsys, "nginx", "--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind",
                             "127.0.0.1:3031", "--root-path", PREFIX))
    assert f"uwsgi_param SCRIPT_NAME {PREFIX};" in prefixed


def test_nginx_uwsgi_over_http_is_proxied(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "nginx", "--backend", "uwsgi", "--bind", "127.0.0.1:8000")
    assert "proxy_pass http://tests;" in out and "uwsgi_pass" not in out


def test_nginx_several_upstreams(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "nginx", "--bind", "127.0.0.1:8001", "--upstream", "127.0.0.1:8001", "--upstream",
             "127.0.0.1:8002", "--upstream", "unix:/run/app/3.sock")
    lines = directives(out)
    for target in ("127.0.0.1:8001", "127.0.0.1:8002", "unix:/run/app/3.sock"):
        assert f"server {target} max_fails=3 fail_timeout=10s;" in lines
    assert "proxy_next_upstream error timeout http_502 http_503;" in lines


def test_nginx_listen_and_server_name(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "nginx", "--bind", "127.0.0.1:8000", "--listen", "[::1]:8080",
                          "--server-name", "example.com"))
    assert "listen [::1]:8080;" in lines and "server_name example.com;" in lines
    assert "listen unix:/run/front.sock;" in directives(ok(capsys, "nginx", "--bind", "127.0.0.1:8000", "--listen",
                                                           "unix:/run/front.sock"))


def test_nginx_cannot_run_cgi(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "nginx", "--backend", "cgi")
    assert code == 2 and "nginx cannot run CGI scripts" in err and "lighttpd" in err


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "fd://3"])
def test_nginx_needs_a_real_address(capsys: pytest.CaptureFixture[str], bind: str) -> None:
    code, _, err = config(capsys, "nginx", "--bind", bind)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_nginx_warns_about_a_socket_its_workers_cannot_write(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = config(capsys, "nginx", "--backend", "fastcgi", "--bind", "unix:/run/app.sock")
    assert code == 0
    (warning,) = [line for line in err.splitlines() if "warning:" in line]
    assert "502" in warning and "--group www-data" in warning and "0660" in warning
    assert "NOT writable by the web server" in prose(out) and "--group www-data" in out


@pytest.mark.parametrize("fix", [["--group", "www-data"], ["--bind", "unix:/run/app.sock:0666"]])
def test_nginx_no_warning_once_the_socket_is_reachable(capsys: pytest.CaptureFixture[str], fix: list[str]) -> None:
    args = ["nginx", "--backend", "fastcgi"]
    args += fix if fix[0] == "--bind" else ["--bind", "unix:/run/app.sock", *fix]
    code, out, err = config(capsys, *args)
    assert code == 0 and "warning" not in err
    assert "NOT writable" not in out


def test_nginx_warns_when_the_proxy_is_not_trusted(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = config(capsys, "nginx", "--bind", "unix:/run/app.sock:0666", "--proxy-headers")
    assert "'unix' is not in --forwarded-allow-ips" in err
    _, _, err = config(capsys, "nginx", "--bind", "unix:/run/app.sock:0666", "--proxy-headers",
                       "--forwarded-allow-ips", "unix")
    assert "warning" not in err


# ------------------------------------------------------------------------------- Apache


def test_apache_mod_wsgi_daemon_mode(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "apache", "--backend", "mod_wsgi", "--threads", "5", "--workers", "2", "--script",
             "/var/www/yourapplication/yourapplication.wsgi")
    lines = directives(out)
    daemon = out[out.index("WSGIDaemonProcess"):].split("\n\n")[0]
    assert daemon.startswith("WSGIDaemonProcess tests user=www-data group=www-data")
    assert "processes=2 threads=5" in daemon and f"python-home={sys.prefix}" in daemon
    assert "WSGIScriptAlias / /var/www/yourapplication/yourapplication.wsgi" in lines
    assert "<Directory /var/www/yourapplication>" in lines
    assert "WSGIProcessGroup tests" in lines and "WSGIApplicationGroup %{GLOBAL}" in lines
    assert "Require all granted" in lines
    assert not any(line.startswith(("Order", "Allow from")) for line in lines)  # 2.2 syntax
    assert "<IfModule !wsgi_module>" in lines and f'WSGIPythonHome "{sys.prefix}"' in lines


def test_apache_mod_wsgi_has_the_request_hygiene_of_the_backend(capsys: pytest.CaptureFixture[str]) -> None:
    """What backends.mod_wsgi.strict_config gives `serve --backend mod_wsgi`: server-wide directives
    before the virtual host (LoadModule and AcceptFilter exist only there; HttpProtocolOptions and
    RequestReadTimeout are read with the address's default virtual host), the rest inside it."""
    from backends.mod_wsgi import _posing_names

    code, out, err = config(capsys, "apache", "--backend", "mod_wsgi", "--header-timeout", "7",
                            "--limit-request-line", "4000", "--limit-request-fields", "50",
                            "--limit-request-field-size", "2000", "--limit-request-body", "1000000")
    assert code == 0 and "warning" not in err, err
    server, _, vhost = out.partition("\n<VirtualHost")
    head = directives(server)
    assert head[head.index("<IfModule !launcher_hygiene_module>") + 1] == \
        f'LoadModule launcher_hygiene_module "{HYGIENE_SO}"'
    for line in ("HttpProtocolOptions Strict Require1.0 LenientMethods", "AcceptFilter http none",
                 "RequestReadTimeout handshake=7 header=7 body=7,MinRate=500"):
        assert line in head
    inner = directives(vhost)
    for line in ("LimitRequestLine 4000", "LimitRequestFields 50", "LimitRequestFieldSize 2000",
                 "LimitRequestBody 1000000", "RewriteEngine On", "RewriteCond %{ENV:LAUNCHER_BAD_HEADER} =1",
                 "RewriteRule ^ - [R=400,L]",
                 f'SetEnvIfNoCase "{_posing_names()}" "." LAUNCHER_BAD_HEADER=1 nokeepalive'):
        assert line in inner
    assert not any("launcher_hygiene" in line or line.startswith(("HttpProtocolOptions", "AcceptFilter"))
                   for line in inner)
    assert "a2enmod reqtimeout setenvif rewrite && a2ensite tests" in out


def test_apache_mod_wsgi_without_the_module_warns_in_one_line(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.apache

    def cannot() -> str:
        raise backends.apache.BuildError("apxs (apache2-dev) is not installed")

    monkeypatch.setattr(backends.apache, "module_path", cannot)
    code, out, err = config(capsys, "apache", "--backend", "mod_wsgi")
    assert code == 0 and "Traceback" not in err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "mod_launcher_hygiene" in warnings[0] and "apxs (apache2-dev) is not installed" in warnings[0]
    assert "obsolete line folding" in warnings[0] and "python -m backends.apache" in warnings[0]
    assert not any("launcher_hygiene" in line for line in directives(out))
    assert "# NOT LOADED: the module could not be built on this machine." in out
    # the rest of the protection is still there
    assert "HttpProtocolOptions Strict Require1.0 LenientMethods" in directives(out)


@pytest.mark.parametrize("args", [["--backend", "fastcgi", "--bind", "127.0.0.1:9000"],
                                  ["--backend", "cgi", "--script", "/srv/cgi-bin/app.cgi"]], ids=["fastcgi", "cgi"])
def test_apache_fastcgi_and_cgi_do_not_load_the_module(capsys: pytest.CaptureFixture[str], args: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Apache frames every request for these backends (see launcher/deploy/apache.py): no apxs build."""
    import backends.apache

    def never() -> str:
        raise AssertionError("module_path called")

    monkeypatch.setattr(backends.apache, "module_path", never)
    out = ok(capsys, "apache", *args)
    assert not any("launcher_hygiene" in line or "HttpProtocolOptions" in line for line in directives(out))
    assert "so no parser behind it can read" in prose(out)


def test_apache_mod_wsgi_maps_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "apache", "--backend", "mod_wsgi", "--user", "app", "--group", "web", "--root-path", PREFIX,
             "--max-requests", "500", "--timeout", "60", "--chdir", "/srv/app", "--pythonpath", "lib")
    daemon = out[out.index("WSGIDaemonProcess"):].split("\n\n")[0]
    assert "user=app group=web" in daemon and "maximum-requests=500" in daemon and "request-timeout=60" in daemon
    assert "python-path=/srv/app:/srv/app/lib" in daemon and "home=/srv/app" in daemon
    assert "processes=2 threads=25" in daemon  # the mod_wsgi backend's default when neither is given
    assert f"WSGIScriptAlias {PREFIX} /var/www/tests/tests.wsgi" in out


def test_apache_fastcgi(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "apache", "--backend", "fastcgi", "--bind", "unix:/run/app.sock", "--group", "www-data",
             "--root-path", PREFIX)
    assert f'ProxyPass "{PREFIX}" "unix:/run/app.sock|fcgi://localhost"' in out
    assert "mod_fastcgi, which Debian 12 no" in out
    assert "SetEnvIf Request_URI . proxy-fcgi-pathinfo=unescape" in directives(out)
    root = ok(capsys, "apache", "--backend", "fastcgi", "--bind", "127.0.0.1:9000")
    assert 'ProxyPass "/" "fcgi://127.0.0.1:9000/"' in root


def test_apache_cgi(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "apache", "--backend", "cgi", "--root-path", PREFIX, "--script", "/srv/cgi-bin/app.cgi")
    lines = directives(out)
    assert f"ScriptAlias {PREFIX} /srv/cgi-bin/app.cgi" in lines
    assert "Options +ExecCGI" in lines
    assert "#   RewriteRule ^(.*)$ /srv/cgi-bin/app.cgi/$1 [L]" in out  # the guide's .htaccess variant
    root = directives(ok(capsys, "apache", "--backend", "cgi", "--script", "/srv/cgi-bin/app.cgi"))
    assert "ScriptAlias / /srv/cgi-bin/app.cgi/" in root


def test_apache_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "apache", "--bind", "127.0.0.1:8000", "--root-path", PREFIX, "--listen",
                          "127.0.0.1:8080"))
    assert "Listen 127.0.0.1:8080" in lines and "<VirtualHost 127.0.0.1:8080>" in lines
    assert f'ProxyPass "{PREFIX}" "http://127.0.0.1:8000{PREFIX}" nocanon' in lines
    assert "ProxyPreserveHost On" in lines and "ProxyRequests Off" in lines
    assert "RequestHeader set X-Forwarded-Proto expr=%{REQUEST_SCHEME}" in lines
    assert f'RequestHeader set X-Forwarded-Prefix "{PREFIX}"' in lines


def test_apache_cannot_listen_on_a_unix_socket(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "apache", "--bind", "127.0.0.1:8000", "--listen", "unix:/run/front.sock")
    assert code == 2 and "Apache cannot listen on a unix socket" in err


# ------------------------------------------------------------------------------- lighttpd


def test_lighttpd_fastcgi(capsys: pytest.CaptureFixture[str]) -> None:
    root = ok(capsys, "lighttpd", "--backend", "fastcgi", "--bind", "unix:/run/app.sock", "--group", "www-data")
    assert '"/" => ((' in root and '"fix-root-scriptname" => "enable",' in root
    assert '"socket" => "/run/app.sock",' in root and '"check-local" => "disable",' in root
    assert 'server.modules += ( "mod_fastcgi" )' in root
    prefixed = ok(capsys, "lighttpd", "--backend", "fastcgi", "--bind", "127.0.0.1:9000", "--root-path", PREFIX)
    assert f'"{PREFIX}" => ((' in prefixed and "fix-root-scriptname" not in directives(prefixed)
    assert '"host" => "127.0.0.1",' in prefixed and '"port" => 9000,' in prefixed


def test_lighttpd_cgi(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "lighttpd", "--backend", "cgi", "--root-path", PREFIX, "--script", "/srv/app.cgi")
    lines = directives(out)
    assert f'alias.url += ( "{PREFIX}" => "/srv/app.cgi" )' in lines
    assert 'cgi.assign = ( "" => "" )' in lines
    assert 'server.modules += ( "mod_alias", "mod_cgi" )' in lines


def test_lighttpd_uwsgi_and_listen(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "lighttpd", "--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind", "127.0.0.1:3031",
             "--listen", "127.0.0.1:8080")
    assert '$SERVER["socket"] == "127.0.0.1:8080" {' in out and '"proto" => "uwsgi",' in out


# ------------------------------------------------------------------------------- entry files


def test_wsgi_file_imports_through_the_launcher(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = ok(capsys, "wsgi-file", "--backend", "mod_wsgi", "--chdir", str(Path.cwd()))
    assert f"application = import_app({APP!r})" in out and "sys.stdout = sys.stderr" in out
    compile(out, "app.wsgi", "exec")
    assert "wrap(" not in out  # no middleware asked for: the app itself


def test_wsgi_file_runs_and_wraps_the_middleware(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    out = ok(capsys, "wsgi-file", "--chdir", repo, "--root-path", PREFIX, "--output", str(tmp_path / "app.wsgi"))
    assert out == ""
    namespace: dict[str, object] = {}
    cwd = os.getcwd()
    saved = (list(sys.path), sys.stdout)
    try:
        exec(compile((tmp_path / "app.wsgi").read_text(), "app.wsgi", "exec"), namespace)
    finally:
        os.chdir(cwd)
        sys.path[:], sys.stdout = saved
    application = namespace["application"]
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"{PREFIX}/x", "SCRIPT_NAME": "", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    assert b"".join(application(environ, start_response)) == b"fake"  # type: ignore[operator]
    assert environ["SCRIPT_NAME"] == PREFIX and environ["PATH_INFO"] == "/x"


def test_cgi_script_is_executable_and_answers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "app.cgi"
    code, out, err = config(capsys, "cgi-script", "--backend", "cgi", "--chdir", repo, "--output", str(script))
    assert code == 0 and out == "" and f"wrote {script}" in err
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    text = script.read_text()
    assert text.startswith(f"#!{sys.executable}\n") and os.path.isabs(sys.executable)
    assert "from backends.cgi import run_cgi" in text
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([str(script)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"Status: 200 OK\r\n") and proc.stdout.endswith(b"\r\n\r\nfake")


def test_cgi_script_goes_with_the_cgi_backend(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "cgi-script")
    assert code == 2 and "goes with --backend cgi" in err


# ------------------------------------------------------------------------------- services


def test_systemd_service(capsys: pytest.CaptureFixture[str]) -> None:
    from launcher.options import resolve

    args = ["--bind", "127.0.0.1:8000", "--workers", "2", "--graceful-timeout", "20", "--user", "www-data"]
    lines = directives(ok(capsys, "systemd", *args))
    serve = os.path.join(os.path.dirname(sys.executable), "serve")
    argv = resolve(APP, cli={"bind": ["127.0.0.1:8000"], "workers": "2", "graceful_timeout": "20",
                             "user": "www-data"}, use_file=False).to_argv()
    assert f"ExecStart={serve} {' '.join(argv)}" in lines
    assert "KillSignal=SIGTERM" in lines and "TimeoutStopSec=25" in lines
    assert "User=www-data" in lines and f"WorkingDirectory={os.getcwd()}" in lines
    assert "Type=notify" in lines


def test_systemd_socket_activation(capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "systemd", "--socket-activation", "--bind", "127.0.0.1:8000", "--bind", "[::1]:8000",
             "--bind", "unix:/run/app/app.sock", "--group", "www-data")
    service, socket_unit = out.split("# ---------------------------------------- tests.socket\n")
    assert service.startswith("# ---------------------------------------- tests.service\n")
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert "--bind" not in exec_start and "--group www-data" in exec_start
    assert "Requires=tests.socket" in service
    for listen in ("127.0.0.1:8000", "[::1]:8000", "/run/app/app.sock"):
        assert f"ListenStream={listen}" in socket_unit
    assert "SocketMode=0660" in socket_unit and "SocketGroup=www-data" in socket_unit


def test_systemd_socket_activation_writes_two_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = config(capsys, "systemd", "--socket-activation", "--bind", "127.0.0.1:8000", "--output",
                          str(tmp_path / "x"))
    assert code == 2 and "--output-dir" in err
    code, out, _ = config(capsys, "systemd", "--socket-activation", "--bind", "127.0.0.1:8000", "--output-dir",
                          str(tmp_path))
    assert code == 0 and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tests.service", "tests.socket"]


def test_systemd_socket_activation_needs_fixed_ports(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config(capsys, "systemd", "--socket-activation", "--bind", "127.0.0.1:0")
    assert code == 2 and "fixed port" in err


def test_supervisor(capsys: pytest.CaptureFixture[str]) -> None:
    lines = directives(ok(capsys, "supervisor", "--bind", "127.0.0.1:8000", "--graceful-timeout", "12",
                          "--access-log-format", "{status} 100%"), comment=";")
    assert "[program:tests]" in lines and "stopsignal=TERM" in lines and "stopwaitsecs=17" in lines
    command = next(line for line in lines if line.startswith("command="))
    assert "--bind 127.0.0.1:8000" in command and "100%%" in command  # % is supervisord's interpolation


def test_services_warn_when_serve_would_refuse_root(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = config(capsys, "supervisor", "--bind", "0.0.0.0:8000")
    assert "refuses to listen on 0.0.0.0:8000" in err
    _, _, err = config(capsys, "supervisor", "--bind", "0.0.0.0:8000", "--user", "www-data")
    assert "warning" not in err


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_renders_with_a_header(capsys: pytest.CaptureFixture[str], kind: str) -> None:
    backend = {"cgi-script": "cgi", "apache": "mod_wsgi"}.get(kind, "fastcgi")
    args = ["--backend", backend] + (["--bind", "127.0.0.1:9000"] if backend == "fastcgi" else [])
    out = ok(capsys, kind, *args)
    assert f"Generated by: serve config {kind} --backend {backend}" in out
