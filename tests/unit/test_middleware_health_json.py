"""--health-path and JSON access lines (the middleware added for operating a server)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from launcher import drain, middleware
from launcher.options import resolve


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["test.called"] = True
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def call(wsgi: Any, path: str, method: str = "GET") -> tuple[str, bytes, dict[str, Any]]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http"}
    seen: list[str] = []
    body = b"".join(wsgi(environ, lambda status, headers, exc_info=None: seen.append(status)))
    return seen[0], body, environ


@pytest.fixture(autouse=True)
def _not_draining() -> Any:
    drain.draining.clear()
    yield
    drain.draining.clear()


def test_health_answers_without_calling_the_app_then_drains() -> None:
    wsgi = middleware.wrap(app, resolve("m:app", cli={"health_path": "/healthz"}, env={}, use_file=False))
    status, body, environ = call(wsgi, "/healthz")
    assert (status, body) == ("200 OK", b"ready\n") and "test.called" not in environ
    assert call(wsgi, "/other")[1] == b"app"
    drain.draining.set()
    status, body, _ = call(wsgi, "/healthz")
    assert status.startswith("503") and body == b"draining\n"
    assert call(wsgi, "/healthz", "HEAD")[1] == b""


def test_health_path_must_be_a_path() -> None:
    from launcher.errors import OptionError

    with pytest.raises(OptionError, match="plain path"):
        resolve("m:app", cli={"health_path": "healthz"}, env={}, use_file=False)


def test_json_access_log_is_one_object_per_line() -> None:
    stream = io.StringIO()
    logged = middleware.AccessLog(app, stream=stream, json_lines=True)
    result = logged({"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "QUERY_STRING": "a=1", "SERVER_PROTOCOL": "HTTP/1.1",
                     "REMOTE_ADDR": "10.1.2.3"}, lambda *a: None)
    list(result)
    result.close()  # type: ignore[attr-defined]
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["type"] == "access" and record["status"] == 200 and record["client"] == "10.1.2.3"
    assert record["method"] == "GET" and record["size"] == 3


def test_json_launcher_log(capsys: pytest.CaptureFixture[str]) -> None:
    from launcher import log

    log.configure("info", "json")
    try:
        log.logger.info("hello %s", "world")
    finally:
        log.configure("info", "text")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["message"] == "hello world" and record["level"] == "info" and isinstance(record["pid"], int)
