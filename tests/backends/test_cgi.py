"""The CGI backend: one request per process, as a web server runs it.

Each test runs the CGI program as a subprocess with a hand-built CGI environment and the request
body on stdin, both ways a cgi-bin can start it: the minimal script (``run_cgi``) and
``serve --backend cgi``.  Checked: stdout holds a valid CGI response and nothing else (Status line,
headers, blank line, body), even when the app print()s at import and during the request, writes to
fd 1 or starts a subprocess that does; the printed text reaches stderr; a POST body is echoed; the
CGI and wsgi.* keys; an app that does not import gives a 500 without a traceback in the body and a
non-zero exit; errors in the app (before and after the body started); --root-path and
``script_name_fix``; options a CGI program cannot honour; the script path imports only what it needs.
Real Apache/lighttpd in front are tests/front's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

CONTRACT_APP = "tests.contract.app:app"

PRINTING_APP = textwrap.dedent('''
    import os
    import subprocess
    import sys

    print("printed-at-import")
    os.write(1, b"fd1-at-import\\n")


    def app(environ, start_response):
        print("printed-in-request")
        sys.stdout.write("stdout-write-in-request\\n")
        sys.stdout.flush()
        os.write(1, b"fd1-in-request\\n")
        subprocess.run([sys.executable, "-c", "print('from-a-subprocess')"], check=True)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.errors"].write("to-wsgi-errors\\n")
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Twice", "1"), ("X-Twice", "2")])
        return [b"got:", body]


    class BadClose:
        def __iter__(self):
            yield b"looks-fine"

        def close(self):
            raise RuntimeError("close-failed-secret")


    def bad_close(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return BadClose()


    class SlowClose:
        def __iter__(self):
            yield b"whole-body"

        def close(self):
            import time
            time.sleep(0.5)
            with open(os.environ["CLOSE_MARKER"], "w") as fh:
                fh.write("closed")


    def slow_close(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return SlowClose()


    def failing(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial-"
        raise RuntimeError("cgi-secret-xyz")

''')

BROKEN_APP = textwrap.dedent('''
    raise RuntimeError("broken-at-import-secret")
''')

# Imports nothing itself, to see what the CGI path loads (the CLI's argparse, logging, the server
# libraries... must not be among them).
MODULES_APP = textwrap.dedent('''
    import sys


    def app(environ, start_response):
        mine = sorted(m for m in sys.modules if m.split(".")[0] in ("launcher", "backends"))
        heavy = sorted(m for m in ("argparse", "logging", "flup", "tomllib", "difflib", "json") if m in sys.modules)
        body = (" ".join(mine) + "|" + " ".join(heavy)).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
''')


def cgi_env(path: str = "/", method: str = "GET", *, query: str = "", body: bytes = b"",
            script_name: str = "/app.cgi", **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "test-harness",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost:8080",
    }
    if body or method == "POST":
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/octet-stream"
    env.update(extra)
    return env


class CGIResult:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr.decode("utf-8", "replace")
        head, sep, self.body = proc.stdout.partition(b"\r\n\r\n")
        self.valid = bool(sep)
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0] if lines else ""
        self.headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]

    @property
    def status(self) -> int:
        assert self.status_line.startswith("Status: "), self
        return int(self.status_line[8:11])

    def header_all(self, name: str) -> list[str]:
        return [h[1] for h in self.headers if h[0].lower() == name.lower()]

    def __repr__(self) -> str:
        return f"<CGIResult rc={self.returncode} stdout={self.stdout[:500]!r}\nstderr:\n{self.stderr[-3000:]}>"


def script_args(spec: str, **kw: Any) -> list[str]:
    """The cgi-bin script the guide's yourapplication.cgi becomes."""
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]\n"
            "from backends.cgi import run_cgi\n"
            f"raise SystemExit(run_cgi({spec!r}, **{kw!r}))\n")
    return [sys.executable, "-c", code]


def serve_args(spec: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "launcher", "--backend", "cgi", *options, spec]


def run(argv: list[str], env: dict[str, str], body: bytes = b"", cwd: Path | str = REPO,
        timeout: float = 30) -> CGIResult:
    env = dict(env)
    env["PYTHONPATH"] = str(REPO)  # `python -m launcher` from any directory (the script sets sys.path itself)
    proc = subprocess.run(argv, input=body, env=env, cwd=str(cwd), capture_output=True, timeout=timeout)
    return CGIResult(proc)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "printing_app.py").write_text(PRINTING_APP)
    (tmp_path / "broken_app.py").write_text(BROKEN_APP)
    (tmp_path / "modules_app.py").write_text(MODULES_APP)
    return tmp_path


WAYS = ["script", "serve"]


def argv_for(way: str, spec: str, chdir: Path | None = None, *options: str, **kw: Any) -> list[str]:
    if way == "script":
        if chdir is not None:
            kw["chdir"] = str(chdir)
        return script_args(spec, **kw)
    extra = list(options)
    if chdir is not None:
        extra += ["--chdir", str(chdir)]
    return serve_args(spec, *extra)


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_valid_cgi_response_and_nothing_else_on_stdout(way: str) -> None:
    res = run(argv_for(way, CONTRACT_APP), cgi_env("/"))
    assert res.returncode == 0, res
    assert res.stdout == (b"Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          b"Content-Length: 5\r\n\r\nhello"), res
    if way == "serve":
        assert "serving" not in res.stderr, res  # no startup line for a one-shot program


@pytest.mark.parametrize("way", WAYS)
def test_environ_and_post_body(way: str) -> None:
    payload = os.urandom(100_000)
    res = run(argv_for(way, CONTRACT_APP), cgi_env("/echo", "POST", body=payload), payload)
    assert res.returncode == 0 and res.status == 200, res
    assert res.header_all("X-Echo-Length") == [str(len(payload))] and res.body == payload

    res = run(argv_for(way, CONTRACT_APP),
              cgi_env("/environ/café", query="q=caf%C3%A9", HTTP_X_TEST="yes-42"))
    assert res.status == 200, res
    data = json.loads(res.body)
    cgi = data["cgi"]
    assert data["path_info_utf8"] == "/environ/café", data  # PEP 3333 "bytes in str" (read_environ)
    assert cgi["SCRIPT_NAME"] == "/app.cgi" and cgi["QUERY_STRING"] == "q=caf%C3%A9"
    assert cgi["HTTP_X_TEST"] == "yes-42" and cgi["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert data["wsgi.run_once"] is True and data["wsgi.multithread"] is False
    assert data["wsgi.multiprocess"] is True and data["wsgi.version"] == [1, 0]
    assert all(t == "str" for k, t in data["types"].items() if "." not in k), data["types"]


@pytest.mark.parametrize("way", WAYS)
def test_prints_go_to_stderr_never_into_the_response(way: str, app_dir: Path) -> None:
    body = b"posted"
    res = run(argv_for(way, "printing_app:app", app_dir), cgi_env("/", "POST", body=body), body)
    assert res.returncode == 0, res
    assert res.stdout == (b"Status: 200 OK\r\nContent-Type: text/plain\r\nX-Twice: 1\r\nX-Twice: 2\r\n"
                          b"Content-Length: 10\r\n\r\ngot:posted"), res
    for text in ("printed-at-import", "fd1-at-import", "printed-in-request", "stdout-write-in-request",
                 "fd1-in-request", "from-a-subprocess", "to-wsgi-errors"):
        assert text in res.stderr, (text, res)


@pytest.mark.parametrize("way", WAYS)
def test_app_that_does_not_import_is_a_500_without_traceback(way: str, app_dir: Path) -> None:
    for spec, why in (("broken_app:app", "broken-at-import-secret"), ("no_such_module_xyz:app", "no_such_module_xyz")):
        res = run(argv_for(way, spec, app_dir), cgi_env("/"))
        assert res.returncode == 4, res
        assert res.valid and res.status == 500, res
        assert b"Traceback" not in res.stdout and why.encode() not in res.stdout, res
        assert "serve: error:" in res.stderr and why in res.stderr, res


@pytest.mark.parametrize("way", WAYS)
def test_error_in_the_app_is_a_clean_500(way: str, app_dir: Path) -> None:
    res = run(argv_for(way, CONTRACT_APP), cgi_env("/error"))
    assert res.returncode == 1 and res.status == 500, res
    assert b"contract-secret-xyz" not in res.stdout and "contract-secret-xyz" in res.stderr, res
    # The body had started: held back, so the failure is still a clean 500, not a short 200.
    res = run(argv_for(way, "printing_app:failing", app_dir), cgi_env("/"))
    assert res.returncode == 1 and res.status == 500, res
    assert b"partial-" not in res.stdout and b"cgi-secret-xyz" not in res.stdout, res
    assert "cgi-secret-xyz" in res.stderr and "Traceback" in res.stderr, res


@pytest.mark.parametrize("way", WAYS)
def test_close_is_called_before_the_held_response_leaves(way: str, app_dir: Path, tmp_path: Path) -> None:
    # close() runs before the response leaves (lighttpd stops the program once it has the whole
    # response), so a close() that raises still turns into a clean 500.
    res = run(argv_for(way, "printing_app:bad_close", app_dir), cgi_env("/"))
    assert res.returncode == 1 and res.status == 500 and b"looks-fine" not in res.stdout, res
    assert "close-failed-secret" in res.stderr, res
    state = tmp_path / "state"
    state.mkdir()
    env = cgi_env("/close", query="token=t1", CONTRACT_STATE_DIR=str(state))
    res = run(argv_for(way, CONTRACT_APP), env)
    assert res.body == b"closing-body" and (state / "closed-t1").exists(), res


@pytest.mark.parametrize("buffer", [0, 1 << 20])
def test_close_survives_the_sigterm_a_web_server_sends_once_it_has_the_response(
        buffer: int, app_dir: Path, tmp_path: Path) -> None:
    # lighttpd sends SIGTERM as soon as it has the whole (Content-Length) response.
    import signal
    import time

    marker = tmp_path / "closed"
    env = cgi_env("/", CLOSE_MARKER=str(marker), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(script_args("printing_app:slow_close", chdir=str(app_dir), response_buffer=buffer),
                            env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 20
        while not out.endswith(b"whole-body"):
            assert time.monotonic() < deadline, out
            chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
            assert chunk, (out, proc.stderr.read() if proc.stderr else b"")
            out += chunk
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert marker.exists(), "the app's close() was cut short by the SIGTERM"


def test_response_buffer_0_streams_as_cgihandler(app_dir: Path) -> None:
    res = run(script_args("printing_app:failing", chdir=str(app_dir), response_buffer=0), cgi_env("/"))
    assert res.returncode == 1 and res.status == 200 and res.body == b"partial-", res
    res = run(serve_args("tests.contract.app:app", "-o", "response_buffer=0"), cgi_env("/stream", query="n=3"))
    assert res.returncode == 0 and res.body == b"chunk 0\nchunk 1\nchunk 2\n", res
    assert not res.header_all("Content-Length"), res  # streamed: length unknown
    res = run(serve_args("tests.contract.app:app"), cgi_env("/stream", query="n=3"))
    assert res.header_all("Content-Length") == ["24"], res  # held: length added


@pytest.mark.parametrize("way", WAYS)
def test_root_path_and_script_name_fix(way: str) -> None:
    def split(res: CGIResult) -> tuple[str, str]:
        cgi = json.loads(res.body)["cgi"]
        return cgi["SCRIPT_NAME"], cgi["PATH_INFO"]

    # A rewrite to the script (.htaccess RewriteRule ^(.*)$ /path/app.cgi/$1): strip SCRIPT_NAME.
    if way == "script":
        argv = script_args(CONTRACT_APP, script_name_fix="strip")
    else:
        argv = serve_args(CONTRACT_APP, "-o", "script_name_fix=strip")
    assert split(run(argv, cgi_env("/environ/x", script_name="/cgi-bin/app.cgi"))) == ("", "/environ/x")

    # lighttpd with the app at "/": the whole path in SCRIPT_NAME; then --root-path splits it.
    if way == "script":
        argv = script_args(CONTRACT_APP, script_name_fix="lighttpd", root_path="/app")
    else:
        argv = serve_args(CONTRACT_APP, "-o", "script_name_fix=lighttpd", "--root-path", "/app")
    assert split(run(argv, cgi_env("", script_name="/app/environ/y"))) == ("/app", "/environ/y")


def test_serve_refuses_what_a_cgi_program_cannot_do() -> None:
    for options in (["--bind", "127.0.0.1:0"], ["--workers", "2"], ["--ready-file", "/tmp/x.json"],
                    ["-o", "script_name_fx=strip"]):
        res = run(serve_args(CONTRACT_APP, *options), cgi_env("/"))
        assert res.returncode == 2 and res.stdout == b"", res
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in res.stderr, res


@pytest.mark.parametrize("way", WAYS)
def test_not_in_a_cgi_environment(way: str) -> None:
    env = cgi_env("/")
    del env["REQUEST_METHOD"]
    res = run(argv_for(way, CONTRACT_APP), env)
    assert res.returncode != 0 and res.status == 500, res
    assert "REQUEST_METHOD is not set" in res.stderr, res


def test_script_path_imports_only_what_it_needs(app_dir: Path) -> None:
    res = run(script_args("modules_app:app", chdir=str(app_dir)), cgi_env("/"))
    assert res.returncode == 0, res
    mine, _, heavy = res.body.decode().partition("|")
    assert set(mine.split()) <= {"backends", "backends.cgi", "launcher", "launcher.errors", "launcher.importer"}, mine
    assert heavy == "", f"the CGI path imported {heavy}"
    res = run(script_args("modules_app:app", chdir=str(app_dir), root_path="/app"), cgi_env("/app/x"))
    assert "launcher.middleware" in res.body.decode(), res
