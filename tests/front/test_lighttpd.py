"""lighttpd in front of the app, on the config `serve config lighttpd` printed, at / and under a prefix.

* FastCGI (fastcgi.server) to flup over a unix socket; at / with the guide's root fix
  ("fix-root-scriptname")
* CGI (mod_cgi) running the script `serve config cgi-script` wrote, as www-data

lighttpd reads a chunked request body completely before it starts the backend request and hands
it on with a CONTENT_LENGTH, so "chunked_request" holds for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.checks import FRONT_EXPECT
from tests.front import servers
from tests.front.combos import PREFIXES, Combo, check_cgi_environ, checks_with_limits, lighttpd_combo
from tests.support import CONTRACT_APP, require_backend

pytestmark = pytest.mark.server

LIGHTTPD_EXPECT = FRONT_EXPECT | {"chunked_request"}

FASTCGI_ARGS = ["--backend", "fastcgi", "--bind", "unix:{work}/app.sock", "--group", servers.WEB_USER]
CGI_ARGS = ["--backend", "cgi"]

# The fixture's top level passes the contract app's state directory to CGI programs (a web server
# gives a CGI program only the request's variables and what its config adds).
CGI_ENV = 'server.modules += ( "mod_setenv" )\nsetenv.add-environment = ( "CONTRACT_STATE_DIR" => "{state}" )'


def _params(name: str) -> list[Any]:
    return [pytest.param(key, id=f"{name}-{key}", marks=pytest.mark.xdist_group(f"front-lighttpd-{name}-{key}"))
            for key in PREFIXES]


# ------------------------------------------------------------------------------- FastCGI


@pytest.fixture(scope="module", params=_params("fastcgi"))
def fastcgi(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("fastcgi")
    prefix = PREFIXES[request.param]
    yield from lighttpd_combo(FASTCGI_ARGS, prefix, LIGHTTPD_EXPECT, f"lighttpd-fastcgi{prefix}")()


# lighttpd 1.4.69 collects a FastCGI response before sending it: when the app sends a first chunk
# and fails right after, the chunk and the broken connection arrive together and lighttpd sends
# the chunk as a complete-looking 200 with a Content-Length (its error log says "response already
# sent out, but backend returned error ... terminating connection"); server.stream-response-body
# does not change it.  nginx in front of the same backend cuts the response short.  (For CGI the
# backend holds the response back until the app has finished, so a late error is a clean 500.)
LIGHTTPD_FASTCGI_CHECKS = checks_with_limits({
    "error_after_body_started": "lighttpd sends a FastCGI response broken off right after its first chunk as a"
                                " complete 200",
})

@pytest.mark.parametrize("check", LIGHTTPD_FASTCGI_CHECKS)
def test_fastcgi_contract(fastcgi: Combo, check: Any) -> None:
    check(fastcgi.target)


def test_fastcgi_root_fix_only_at_root(fastcgi: Combo) -> None:
    assert ('"fix-root-scriptname" => "enable"' in fastcgi.generated.text) == (not fastcgi.target.prefix)
    assert fastcgi.generated.warnings == []


# ------------------------------------------------------------------------------- CGI


def _write_cgi_script(work: Path, args: list[str]) -> None:
    servers.require_readable_by_web_user(*servers.python_paths())
    servers.serve_config("cgi-script", *args, CONTRACT_APP, "--output", str(work / "app.cgi"))


@pytest.fixture(scope="module", params=_params("cgi"))
def cgi(request: pytest.FixtureRequest) -> Iterator[Combo]:
    require_backend("cgi")
    prefix = PREFIXES[request.param]
    yield from lighttpd_combo(CGI_ARGS, prefix, LIGHTTPD_EXPECT, f"lighttpd-cgi{prefix}", backend=False,
                              extra=CGI_ENV, prepare=_write_cgi_script)()


# A CGI program answers one request and exits: PEP 3333 wants wsgi.run_once true there, and the
# shared environ check (written for long-running servers) insists on false.  The CGI-specific
# environ test below checks the rest of the environ.
CGI_CHECKS = checks_with_limits({
    "environ_keys_and_types": "CGI is run_once by definition (PEP 3333: wsgi.run_once true)",
})


@pytest.mark.parametrize("check", CGI_CHECKS)
def test_cgi_contract(cgi: Combo, check: Any) -> None:
    check(cgi.target)


def test_cgi_environ(cgi: Combo) -> None:
    check_cgi_environ(cgi.target)


def test_cgi_script_is_the_generated_one(cgi: Combo) -> None:
    """Executable, run by the virtualenv's own interpreter (absolute), as the web server's user."""
    import sys

    script = cgi.work / "app.cgi"
    assert script.stat().st_mode & 0o777 == 0o755
    lines = script.read_text().splitlines()
    assert lines[0] == f"#!{sys.executable}" and sys.executable.startswith("/")
    assert any(line.startswith("from backends.cgi import run_cgi") for line in lines)
    assert f'alias.url += ( "{cgi.target.prefix or "/"}" => "{script}{"" if cgi.target.prefix else "/"}" )' in (
        cgi.generated.text)
