"""Every front-server config `serve config` writes passes the server's own syntax check
(``nginx -t``, ``apache2 -t``, ``lighttpd -tt``), for each backend, address kind and mount point.
Nothing listens and no backend runs: these are fast."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.cli import main
from tests.front import servers
from tests.support import CONTRACT_APP, REPO

pytestmark = pytest.mark.server

PREFIX = ["--root-path", "/yourapplication"]

#: label -> serve options (the socket paths do not need to exist for a syntax check)
NGINX = {
    "waitress-unix": ["--backend", "waitress", "--bind", "unix:/run/app/app.sock", "--group", "www-data"],
    "waitress-tcp": ["--backend", "waitress", "--bind", "127.0.0.1:8000", "--proxy-headers"],
    "gunicorn-tcp": ["--backend", "gunicorn", "--bind", "127.0.0.1:8000", "--timeout", "120"],
    "waitress-nolimit": ["--backend", "waitress", "--bind", "127.0.0.1:8000", "--limit-request-body", "0"],
    "waitress-ipv6": ["--backend", "waitress", "--bind", "[::1]:8000"],
    "waitress-scaled": ["--backend", "waitress", "--bind", "127.0.0.1:8001", "--upstream", "127.0.0.1:8001",
                        "--upstream", "127.0.0.1:8002", "--upstream", "unix:/run/app/3.sock"],
    "fastcgi-unix": ["--backend", "fastcgi", "--bind", "unix:/run/app/app.sock", "--group", "www-data"],
    "fastcgi-tcp": ["--backend", "fastcgi", "--bind", "127.0.0.1:9000"],
    "uwsgi": ["--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind", "unix:/run/app/app.sock", "--group",
              "www-data"],
    "uwsgi-http": ["--backend", "uwsgi", "--bind", "127.0.0.1:8000"],
    "mod_wsgi-express": ["--backend", "mod_wsgi", "--bind", "127.0.0.1:8000"],
}
APACHE = {
    "mod_wsgi": ["--backend", "mod_wsgi", "--workers", "2", "--threads", "8", "--max-requests", "1000",
                 "--timeout", "60", "--graceful-timeout", "10", "--proxy-headers"],
    "cgi": ["--backend", "cgi"],
    "fastcgi-unix": ["--backend", "fastcgi", "--bind", "unix:/run/app/app.sock", "--group", "www-data"],
    "fastcgi-tcp": ["--backend", "fastcgi", "--bind", "127.0.0.1:9000"],
    "uwsgi": ["--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind", "127.0.0.1:3031"],
    "waitress-unix": ["--backend", "waitress", "--bind", "unix:/run/app/app.sock", "--group", "www-data"],
    "waitress-tcp": ["--backend", "waitress", "--bind", "127.0.0.1:8000"],
}
LIGHTTPD = {
    "fastcgi-unix": ["--backend", "fastcgi", "--bind", "unix:/run/app/app.sock", "--group", "www-data"],
    "fastcgi-tcp": ["--backend", "fastcgi", "--bind", "127.0.0.1:9000"],
    "cgi": ["--backend", "cgi"],
    "uwsgi": ["--backend", "uwsgi", "-o", "protocol=uwsgi", "--bind", "unix:/run/app/app.sock", "--group",
              "www-data"],
    "waitress-tcp": ["--backend", "waitress", "--bind", "127.0.0.1:8000", "--proxy-headers"],
}


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in [k for k in __import__("os").environ if k.startswith("SERVE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(REPO)
    path = servers.shared_dir("wl-syntax-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def generate(kind: str, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", kind, *args, CONTRACT_APP])
    assert code == 0, err.getvalue()
    return out.getvalue()


def _cases(table: dict[str, list[str]]) -> list[object]:
    return [pytest.param(args, mount, id=f"{label}-{'prefix' if mount else 'root'}")
            for label, args in table.items() for mount in ([], PREFIX)]


@pytest.mark.parametrize(("args", "mount"), _cases(NGINX))
def test_nginx_accepts_it(work: Path, args: list[str], mount: list[str]) -> None:
    servers.require_binary("nginx")
    text = generate("nginx", *args, *mount, "--listen", "127.0.0.1:8080")
    ok, errors = servers.nginx_syntax_ok(text, work)
    assert ok, f"nginx -t rejected it:\n{errors}\n---\n{text}"


@pytest.mark.parametrize(("args", "mount"), _cases(APACHE))
@pytest.mark.parametrize("listen", [[], ["--listen", "127.0.0.1:8080"]], ids=["port80", "listen"])
def test_apache_accepts_it(work: Path, args: list[str], mount: list[str], listen: list[str]) -> None:
    servers.require_binary("apache2")
    if args[1] == "mod_wsgi":
        from tests.support import require_backend

        require_backend("mod_wsgi")
    text = generate("apache", *args, *mount, *listen, "--script", str(work / "app.file"))
    ok, errors = servers.apache_syntax_ok(text, work)
    assert ok, f"apache2 -t rejected it:\n{errors}\n---\n{text}"


@pytest.mark.parametrize(("args", "mount"), _cases(LIGHTTPD))
@pytest.mark.parametrize("listen", [[], ["--listen", "127.0.0.1:8080"]], ids=["global", "listen"])
def test_lighttpd_accepts_it(work: Path, args: list[str], mount: list[str], listen: list[str]) -> None:
    servers.require_binary("lighttpd")
    text = generate("lighttpd", *args, *mount, *listen, "--script", str(work / "app.cgi"))
    ok, errors = servers.lighttpd_syntax_ok(text, work)
    assert ok, f"lighttpd -tt rejected it:\n{errors}\n---\n{text}"
