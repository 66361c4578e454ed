"""--reload with real files changed on disk: a change, a broken import that waits, .wsgi scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import http_request

pytestmark = pytest.mark.server
REPO = Path(__file__).resolve().parents[2]

APP = """def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{text}"]
"""


class Reloading:
    """A `serve --reload` process tree on a unix socket (the path survives restarts)."""

    def __init__(self, workdir: Path, spec: str, *extra: str) -> None:
        self.sock = workdir / "s.sock"
        self.log = open(workdir / "serve.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "--reload", "-b", f"unix:{self.sock}", *extra, spec],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.logfile = workdir / "serve.log"

    def body(self) -> str | None:
        try:
            return http_request(f"unix:{self.sock}", "GET", "/", timeout=2).body.decode()
        except OSError:
            return None

    def wait_for(self, text: str, timeout: float = 15.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.body() == text:
                return time.monotonic() - start
            time.sleep(0.02)
        raise AssertionError(f"never answered {text!r}; log:\n{self.output()}")

    def output(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    later = time.time() + 1  # a visible mtime change even on coarse-grained file systems
    os.utime(path, (later, later))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_change_reloads_and_a_broken_import_waits_for_the_fix(workdir: Path) -> None:
    module = workdir / "reloadme.py"
    module.write_text(APP.format(text="v1"))
    server = Reloading(workdir, "reloadme:app")
    try:
        server.wait_for("v1", timeout=20)
        rewrite(module, APP.format(text="v2"))
        latency = server.wait_for("v2")
        print(f"reload latency (change to first new response): {latency:.2f}s")
        assert latency < 10

        rewrite(module, "def app(environ, start_response):\n    return [b'broken'\n")  # SyntaxError
        deadline = time.monotonic() + 10
        while server.body() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # long enough for a crash loop to show itself
        assert server.proc.poll() is None, "the reloader exited on an import error"
        assert server.output().count("SyntaxError") >= 1
        assert server.output().count("serve: error:") == 1, "the error is printed once, not in a loop"

        rewrite(module, APP.format(text="v3"))
        server.wait_for("v3")
    finally:
        server.stop()


def test_reload_dir_include_pattern_and_wsgi_script(workdir: Path) -> None:
    script = workdir / "yourapplication.wsgi"
    script.write_text(APP.format(text="w1").replace("def app", "def application"))
    templates = workdir / "templates"
    templates.mkdir()
    (templates / "page.html").write_text("one")
    server = Reloading(workdir, "./yourapplication.wsgi", "--reload-dir", str(templates),
                       "--reload-include", "*.html")
    try:
        server.wait_for("w1", timeout=20)
        rewrite(script, APP.format(text="w2").replace("def app", "def application"))
        server.wait_for("w2")  # WSGIScriptReloading: a changed .wsgi file reloads
        before = server.output().count("serving")
        rewrite(templates / "page.html", "two")
        deadline = time.monotonic() + 10
        while server.output().count("serving") == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.output().count("serving") > before, "a change under --reload-dir did not reload"
    finally:
        server.stop()
