"""launcher.importer: every spec form and every error part, with the message a user sees.

No server is started: the app.run() tests prove the trap stops the server before it binds.
Fixture apps are written to tmp_path under unique module names so sys.modules never bleeds
between tests.
"""

from __future__ import annotations

import importlib
import itertools
import os
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import AppImportError
from launcher.importer import AppSpec, import_app, parse_spec

ROOT = Path(__file__).resolve().parents[2]

_counter = itertools.count()


def _unique(prefix: str = "impfx") -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path) -> Iterator[None]:
    """Restore sys.path and forget every module this test loaded from tmp_path."""
    saved_path = sys.path[:]
    before = set(sys.modules)
    yield
    sys.path[:] = saved_path
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        file = str(getattr(module, "__file__", "") or "")
        if name.startswith("impfx_") or file.startswith(str(tmp_path)):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``make_module(source, name=None)`` writes tmp_path/<name>.py and returns the module name.

    A dotted name creates the packages (with empty __init__.py) on the way.
    """
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source: str, name: str | None = None) -> str:
        name = name or _unique()
        *packages, leaf = name.split(".")
        directory = tmp_path
        for package in packages:
            directory = directory / package
            directory.mkdir(exist_ok=True)
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("")
        (directory / f"{leaf}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return name

    return make


def _error(spec: str, **kw: Any) -> AppImportError:
    with pytest.raises(AppImportError) as info:
        import_app(spec, **kw)
    return info.value


WSGI_APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


# --- parse_spec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("module:app", AppSpec("module", ("app",))),
        ("pkg.module:app", AppSpec("pkg.module", ("app",))),
        ("module:app.wsgi_app", AppSpec("module", ("app", "wsgi_app"))),
        ("module", AppSpec("module", ())),
        ("module:create_app()", AppSpec("module", ("create_app",), ((), {}))),
        (
            'module:create_app("prod", debug=False)',
            AppSpec("module", ("create_app",), (("prod",), {"debug": False})),
        ),
        (
            "module:factories.make(1, [2, 3], opts={'a': (None, -1.5)})",
            AppSpec("module", ("factories", "make"), ((1, [2, 3]), {"opts": {"a": (None, -1.5)}})),
        ),
        ('module:create_app("a:b")', AppSpec("module", ("create_app",), (("a:b",), {}))),
        ("path/to/app.py:app", AppSpec("path/to/app.py", ("app",), is_file=True)),
        ("app.py", AppSpec("app.py", (), is_file=True)),
        ("My Projects/app.py:app", AppSpec("My Projects/app.py", ("app",), is_file=True)),
        ("C:\\site\\app.py:app", AppSpec("C:\\site\\app.py", ("app",), is_file=True)),
    ],
)
def test_parse_spec_forms(spec: str, expected: AppSpec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        (":app", "no module is named before the ':'"),
        ("mod:", "nothing follows the ':'"),
        ("mod:a..b", "'a..b' is not an attribute name"),
        ("mod:app.", "'app.' is not an attribute name"),
        ("my mod:app", "contains spaces"),
        ("mod: app", "contains spaces"),
        ("mod :app", "contains spaces"),
        ("mod:app .wsgi", "contains spaces"),
        (" mod:app", "leading or trailing spaces"),
        ("mod:app ", "leading or trailing spaces"),
        ("mod:app#x", "is not an attribute name"),
        ("mod:create_app() # comment", "unexpected text"),
        ("mod:None", "'None' must be a name optionally followed by ONE call"),
        (".rel:app", "relative module names"),
        ("my-mod:app", "not a valid dotted module name"),
        ("dir/app:app", "must name a .py or .wsgi file"),
        ("mod:f(a=1, a=2)", "keyword argument 'a' is given twice"),
        ("mod:create_app(\n)", "several lines"),
    ],
)
def test_parse_spec_rejects_malformed_specs(spec: str, fragment: str) -> None:
    with pytest.raises(AppImportError) as info:
        parse_spec(spec)
    assert info.value.part == "spec"
    message = str(info.value)
    assert fragment in message
    assert f"invalid app spec '{spec}'" in message
    assert "e.g. 'myproject.wsgi:app'" in message  # an example of a valid spec


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("mod:create_app(os.environ)", "argument 1 (os.environ) is not a literal"),
        ("mod:create_app(config=os.environ)", "argument 'config' (os.environ) is not a literal"),
        ("mod:create_app(__import__('os'))", "is not a literal"),
        ("mod:create_app(1 + 2)", "argument 1 (1 + 2) is not a literal"),
        ("mod:create_app(**kw)", "**kw is not allowed"),
        ("mod:create_app(*args)", "*args is not allowed"),
        ("mod:a[0]", "'a[0]' is not an attribute name"),
        ("mod:x + 1", "'x + 1' is not an attribute name"),
        ("mod:create_app()()", "ONE call"),
        ("mod:create_app(x for x in y)", "is not a literal"),
    ],
)
def test_non_literal_factory_expressions_are_refused(spec: str, fragment: str) -> None:
    with pytest.raises(AppImportError) as info:
        parse_spec(spec)
    assert info.value.part == "spec"
    assert fragment in str(info.value)
    assert "only literal arguments are allowed" in str(info.value)


def test_refused_spec_never_imports_the_module(make_module: Callable[..., str]) -> None:
    name = make_module("raise RuntimeError('this module must not be imported')\n")
    error = _error(f"{name}:create_app(os.environ)")
    assert error.part == "spec"
    assert name not in sys.modules


# --- module:attr and bare module ----------------------------------------------------------


def test_module_attr(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP)
    assert import_app(f"{name}:app") is sys.modules[name].app


def test_package_module_attr(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP, name=f"{_unique()}.web.wsgi")
    assert import_app(f"{name}:app") is sys.modules[name].app


def test_attribute_chain(make_module: Callable[..., str]) -> None:
    name = make_module(
        """
        class App:
            def wsgi_app(self, environ, start_response):
                return []
        app = App()
        """
    )
    got = import_app(f"{name}:app.wsgi_app")
    assert got == sys.modules[name].app.wsgi_app


def test_bare_module_uses_app_first(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP + "\napplication = None\n")
    assert import_app(name) is sys.modules[name].app


def test_bare_module_falls_back_to_application(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP.replace("def app(", "def application("))
    assert import_app(name) is sys.modules[name].application


def test_bare_module_without_app_lists_candidates(make_module: Callable[..., str]) -> None:
    name = make_module(
        """
        from os.path import join

        class Helper:
            pass

        def make_wsgi(config=None):
            return None

        class _App:
            def __call__(self, environ, start_response):
                return []

        wsgi_handler = _App()
        settings = {"debug": True}
        """
    )
    error = _error(name)
    assert error.part == "attribute"
    message = str(error)
    assert f"module '{name}' has no attribute 'app' or 'application'" in message
    assert "'make_wsgi'" in message
    assert "'wsgi_handler'" in message
    # Imported functions, classes and plain data are not offered as the app.
    assert "'join'" not in message
    assert "'Helper'" not in message
    assert "'settings'" not in message
    assert f"'{name}:NAME'" in message


def test_cwd_is_put_first_on_sys_path(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    name = _unique()
    (project / f"{name}.py").write_text(WSGI_APP)
    assert str(project) not in sys.path
    app = import_app(f"{name}:app", cwd=str(project))
    assert callable(app)
    assert sys.path[0] == str(project)


def test_current_directory_is_added_when_cwd_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _unique()
    (tmp_path / f"{name}.py").write_text(WSGI_APP)
    monkeypatch.chdir(tmp_path)
    # As under the `serve` console script: neither "" nor the current directory is on the path.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert callable(import_app(f"{name}:app"))
    assert sys.path[0] == str(tmp_path)
    import_app(f"{name}:app")
    assert sys.path.count(str(tmp_path)) == 1  # not inserted again


def test_missing_cwd_directory(tmp_path: Path) -> None:
    error = _error("anything:app", cwd=str(tmp_path / "nope"))
    assert error.part == "module"
    assert str(tmp_path / "nope") in str(error)
    assert "--chdir" in str(error)


# --- module not found ------------------------------------------------------------------


def test_module_not_found_is_a_checklist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    name = _unique("nosuchmod")
    error = _error(f"{name}:app", cwd=str(tmp_path))
    assert error.part == "module"
    assert error.__cause__ is None
    lines = str(error).splitlines()
    assert lines[0] == f"cannot import module '{name}' for app spec '{name}:app': no module named '{name}'"
    message = str(error)
    assert f"looked up from {tmp_path}" in message  # (a) working directory
    assert "--chdir" in message
    assert "PYTHONPATH is unset" in message  # (b) environment
    assert "VIRTUAL_ENV is none" in message
    assert sys.executable in message  # (c) interpreter
    assert lines[-1].startswith(f"sys.path starts with: {str(tmp_path)!r}")


def test_module_not_found_shows_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/somewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/venvs/other")
    name = _unique("nosuchmod")
    message = str(_error(name))
    assert f"for app spec '{name}': no module named '{name}'" in message
    assert "PYTHONPATH is /opt/somewhere" in message
    assert "VIRTUAL_ENV is /venvs/other" in message


def test_missing_parent_package_is_module_not_found() -> None:
    name = _unique("nosuchpkg")
    error = _error(f"{name}.wsgi:app")
    assert error.part == "module"
    assert str(error).startswith(
        f"cannot import module '{name}.wsgi' for app spec '{name}.wsgi:app': no module named '{name}'"
    )


def test_missing_submodule_names_the_parent_found(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP, name=f"{_unique()}.real")
    package = name.rpartition(".")[0]
    error = _error(f"{package}.wsgi:app")
    assert error.part == "module"
    assert f"no module named '{package}.wsgi'" in str(error)
    assert f"'{package}' was found at" in str(error)


# --- the user's own import errors --------------------------------------------------------


def test_missing_dependency_of_the_user_module_is_a_user_import_error(
    make_module: Callable[..., str],
) -> None:
    name = make_module("import nonexistent_dep_xyz\n" + WSGI_APP)
    error = _error(f"{name}:app")
    assert error.part == "user-import"
    assert str(error) == (
        f"importing '{name}' raised ModuleNotFoundError: No module named 'nonexistent_dep_xyz' (app spec '{name}:app')"
    )
    assert "cannot import module" not in str(error)
    assert isinstance(error.__cause__, ModuleNotFoundError)
    assert error.__cause__.name == "nonexistent_dep_xyz"
    assert error.__cause__.__traceback__ is not None  # the user's own traceback survives


def test_missing_dependency_inside_a_package_is_a_user_import_error(make_module: Callable[..., str]) -> None:
    name = make_module(f"import {_unique()}.sibling\n", name=f"{_unique()}.wsgi")
    error = _error(f"{name}:app")
    assert error.part == "user-import"
    assert isinstance(error.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
    ("source", "exc_type", "text"),
    [
        ("raise RuntimeError('DATABASE_URL is not set')\n", RuntimeError, "DATABASE_URL is not set"),
        ("def broken(:\n    pass\n", SyntaxError, "invalid syntax"),
        ("from json import no_such_name\n", ImportError, "cannot import name 'no_such_name'"),
        ("import sys\nsys.exit(3)\n", SystemExit, "3"),
    ],
)
def test_exceptions_while_importing_are_user_import_errors(
    make_module: Callable[..., str], source: str, exc_type: type[BaseException], text: str
) -> None:
    name = make_module(source)
    error = _error(f"{name}:app")
    assert error.part == "user-import"
    assert str(error).startswith(f"importing '{name}' raised {exc_type.__name__}: ")
    assert text in str(error)
    assert "\n" not in str(error)
    assert type(error.__cause__) is exc_type
    assert name not in sys.modules


# --- attributes and callables ----------------------------------------------------------


def test_attribute_typo_suggests_the_close_name(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP)
    error = _error(f"{name}:apq")
    assert error.part == "attribute"
    assert f"module '{name}' has no attribute 'apq'" in str(error)
    assert "did you mean 'app'?" in str(error)


def test_attribute_chain_names_the_failing_link(make_module: Callable[..., str]) -> None:
    name = make_module(
        """
        class App:
            def wsgi_app(self, environ, start_response):
                return []
        app = App()
        """
    )
    error = _error(f"{name}:app.wsgi_ap")
    assert error.part == "attribute"
    assert f"'{name}:app' (an App) has no attribute 'wsgi_ap'" in str(error)
    assert "did you mean 'wsgi_app'?" in str(error)


def test_attribute_chain_through_an_unimported_submodule_hints_the_module_form(
    make_module: Callable[..., str],
) -> None:
    name = make_module(WSGI_APP, name=f"{_unique()}.wsgi")
    package = name.rpartition(".")[0]
    error = _error(f"{package}:wsgi.app")
    assert error.part == "attribute"
    assert f"module '{package}' has no attribute 'wsgi'" in str(error)
    assert f"'{package}.wsgi:app'" in str(error)


def test_not_callable_says_what_it_is(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP + "\nconfig = {'debug': True}\n")
    error = _error(f"{name}:config")
    assert error.part == "callable"
    assert f"'{name}:config' is a dict, not a WSGI callable" in str(error)


def test_default_name_not_callable(make_module: Callable[..., str]) -> None:
    name = make_module("app = None\n")
    error = _error(name)
    assert error.part == "callable"
    assert f"'{name}:app' is None, not a WSGI callable" in str(error)
    assert f"app spec '{name}'" in str(error)


# --- factories -------------------------------------------------------------------------

FACTORY = """
calls = []

class App:
    def __init__(self, env, debug):
        self.env, self.debug = env, debug
    def __call__(self, environ, start_response):
        return []

def create_app(env="dev", debug=True):
    calls.append((env, debug))
    return App(env, debug)

def needs_config(config, debug=False):
    calls.append(config)
    return App(config, debug)

def broken():
    raise RuntimeError("no database")

def returns_none():
    return None

settings = {"a": 1}
"""


def test_factory_without_arguments(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    app = import_app(f"{name}:create_app()")
    assert (app.env, app.debug) == ("dev", True)  # type: ignore[attr-defined]
    assert sys.modules[name].calls == [("dev", True)]


def test_factory_with_literal_args_and_kwargs(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    app = import_app(f'{name}:create_app("prod", debug=False)')
    assert (app.env, app.debug) == ("prod", False)  # type: ignore[attr-defined]


def test_factory_with_wrong_arguments_names_the_signature(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    error = _error(f"{name}:needs_config()")
    assert error.part == "factory-args"
    message = str(error)
    assert "missing a required argument: 'config'" in message
    assert "needs_config(config, debug=False)" in message
    assert f"app spec '{name}:needs_config()'" in message
    assert sys.modules[name].calls == []  # the factory was not called


def test_factory_with_unknown_keyword(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    error = _error(f"{name}:create_app(verbose=True)")
    assert error.part == "factory-args"
    assert "unexpected keyword argument 'verbose'" in str(error)
    assert "create_app(env='dev', debug=True)" in str(error)


def test_factory_that_raises(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    error = _error(f"{name}:broken()")
    assert error.part == "factory"
    assert "the app factory broken() raised RuntimeError: no database" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert str(error.__cause__) == "no database"


def test_factory_must_return_a_callable(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    error = _error(f"{name}:returns_none()")
    assert error.part == "callable"
    assert "the app factory returns_none() returned None, not a WSGI callable" in str(error)


def test_calling_something_that_is_not_callable(make_module: Callable[..., str]) -> None:
    name = make_module(FACTORY)
    error = _error(f"{name}:settings()")
    assert error.part == "callable"
    assert f"'{name}:settings' is a dict, so it cannot be called as a factory" in str(error)


# --- path/to/file.py -------------------------------------------------------------------


def _write_file_app(directory: Path, source: str, helper: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if helper is not None:
        (directory / f"{helper}.py").write_text("GREETING = b'hello from a sibling'\n")
    path = directory / f"{_unique()}.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_file_path_with_sibling_import(tmp_path: Path) -> None:
    helper = _unique()
    path = _write_file_app(
        tmp_path / "site",
        f"""
        from {helper} import GREETING

        def app(environ, start_response):
            start_response("200 OK", [])
            return [GREETING]
        """,
        helper=helper,
    )
    app = import_app(f"{path}:app")
    assert app({}, lambda *a: None) == [b"hello from a sibling"]
    assert sys.path[0] == str(path.parent)
    assert sys.modules[path.stem].app is app
    # A second import of the same file reuses the module rather than failing or re-running it.
    assert import_app(f"{path}:app") is app


def test_relative_file_path_resolved_against_cwd(tmp_path: Path) -> None:
    path = _write_file_app(tmp_path / "proj" / "src", WSGI_APP.replace("def app(", "def application("))
    relative = os.path.relpath(path, tmp_path / "proj")
    assert not os.path.isabs(relative)
    app = import_app(relative, cwd=str(tmp_path / "proj"))  # bare file: app, then application
    assert app is sys.modules[path.stem].application


def test_missing_file_reports_the_absolute_path(tmp_path: Path) -> None:
    error = _error("src/missing_app.py:app", cwd=str(tmp_path))
    assert error.part == "module"
    assert str(tmp_path / "src" / "missing_app.py") in str(error)
    assert "does not exist" in str(error)


def test_file_whose_name_clashes_with_an_imported_module(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(WSGI_APP)
    error = _error(f"{tmp_path / 'json.py'}:app")
    assert error.part == "module"
    assert "a different module of that name is already imported" in str(error)
    assert sys.modules["json"].__file__ != str(tmp_path / "json.py")


def test_file_that_raises_is_a_user_import_error_and_is_forgotten(tmp_path: Path) -> None:
    path = _write_file_app(tmp_path, "import nonexistent_dep_xyz\n")
    error = _error(str(path))
    assert error.part == "user-import"
    assert isinstance(error.__cause__, ModuleNotFoundError)
    assert path.stem not in sys.modules


# --- app.run() at import ------------------------------------------------------------------


@pytest.fixture
def created_sockets(monkeypatch: pytest.MonkeyPatch) -> list[socket.socket]:
    """Every socket.socket created during the test (socketserver looks the class up at call time)."""
    created: list[socket.socket] = []
    real = socket.socket

    class Tracking(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(socket, "socket", Tracking)
    return created


def _import_with_deadline(spec: str, timeout: float = 20.0, **kw: Any) -> BaseException | None:
    """import_app in a thread: a trap that fails would serve forever, and the test must not hang."""
    outcome: dict[str, BaseException | None] = {"error": None}

    def run() -> None:
        try:
            import_app(spec, **kw)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"import_app({spec!r}) hung: the development server was not stopped"
    return outcome["error"]


ORIGINAL_BIND = socketserver.TCPServer.server_bind
ORIGINAL_SERVE = socketserver.BaseServer.serve_forever


def _assert_trap_removed_and_sockets_closed(created: list[socket.socket]) -> None:
    assert socketserver.TCPServer.server_bind is ORIGINAL_BIND
    assert socketserver.BaseServer.serve_forever is ORIGINAL_SERVE
    assert created, "the fixture app never created its server socket"
    assert all(s.fileno() == -1 for s in created), "a server socket was left open"


def test_wsgiref_server_at_import_is_stopped(
    make_module: Callable[..., str], created_sockets: list[socket.socket]
) -> None:
    name = make_module(
        WSGI_APP
        + """
from wsgiref.simple_server import make_server
httpd = make_server("127.0.0.1", 0, app)
httpd.serve_forever()
"""
    )
    error = _import_with_deadline(f"{name}:app")
    assert isinstance(error, AppImportError)
    assert error.part == "app-run"
    message = str(error)
    assert name not in sys.modules  # the half-imported module is not left behind
    assert f"'{name}' started a development server while being imported" in message
    assert f"{name}.py:7)" in message  # the make_server line
    assert 'if __name__ == "__main__":' in message
    assert "separate run.py" in message
    _assert_trap_removed_and_sockets_closed(created_sockets)


def test_server_started_inside_except_exception_is_still_caught(
    make_module: Callable[..., str], created_sockets: list[socket.socket]
) -> None:
    name = make_module(
        WSGI_APP
        + """
from wsgiref.simple_server import make_server
try:
    make_server("127.0.0.1", 0, app).serve_forever()
except Exception:
    pass
"""
    )
    error = _import_with_deadline(f"{name}:app")
    assert isinstance(error, AppImportError)
    assert error.part == "app-run"
    _assert_trap_removed_and_sockets_closed(created_sockets)


def test_flask_app_run_at_import_is_stopped(
    make_module: Callable[..., str], created_sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    for var in ("FLASK_RUN_FROM_CLI", "WERKZEUG_RUN_MAIN", "WERKZEUG_SERVER_FD"):
        monkeypatch.delenv(var, raising=False)
    name = make_module(
        """
        from flask import Flask

        app = Flask(__name__)

        @app.route("/")
        def index():
            return "hello"

        app.run(host="127.0.0.1", port=0)
        """
    )
    error = _import_with_deadline(f"{name}:app")
    assert isinstance(error, AppImportError)
    assert error.part == "app-run"
    message = str(error)
    assert f"'{name}' started a development server while being imported" in message
    assert '(app.run(host="127.0.0.1", port=0) at ' in message
    assert f"{name}.py:10)" in message
    assert 'move app.run(host="127.0.0.1", port=0) under  if __name__ == "__main__":' in message
    assert "FLASK_RUN_FROM_CLI" not in os.environ  # we must not make Flask skip app.run() silently
    _assert_trap_removed_and_sockets_closed(created_sockets)


def test_server_started_by_a_factory_is_stopped(
    make_module: Callable[..., str], created_sockets: list[socket.socket]
) -> None:
    name = make_module(
        WSGI_APP
        + """
def create_app():
    from wsgiref.simple_server import make_server
    make_server("127.0.0.1", 0, app).serve_forever()
    return app
"""
    )
    error = _import_with_deadline(f"{name}:create_app()")
    assert isinstance(error, AppImportError)
    assert error.part == "app-run"
    assert "the app factory create_app() started a development server" in str(error)
    assert f"{name}.py:8)" in str(error)
    _assert_trap_removed_and_sockets_closed(created_sockets)


def test_socketserver_is_restored_after_a_normal_import(make_module: Callable[..., str]) -> None:
    name = make_module(WSGI_APP)
    import_app(f"{name}:app")
    assert socketserver.TCPServer.server_bind is ORIGINAL_BIND
    assert socketserver.BaseServer.serve_forever is ORIGINAL_SERVE


# --- start-up cost ------------------------------------------------------------------------


def test_importing_the_importer_stays_cheap() -> None:
    heavy = ["ast", "inspect", "traceback", "difflib", "importlib.util", "socketserver", "typing", "dataclasses"]
    # Load launcher.importer without running launcher/__init__.py, so only this module is measured.
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("launcher")
        package.__path__ = [{str(ROOT / "launcher")!r}]
        sys.modules["launcher"] = package
        before = set(sys.modules)
        import launcher.importer
        print(" ".join(m for m in {heavy!r} if m in sys.modules and m not in before))
        """
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_wsgi_script_file_loads_like_mod_wsgi(tmp_path: Path) -> None:
    # The Flask guide's yourapplication.wsgi: a Python file without the .py suffix, `application` in it.
    (tmp_path / "yourapplication.wsgi").write_text(
        "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'wsgi']\n"
    )
    app = import_app("./yourapplication.wsgi", cwd=str(tmp_path))
    assert app.__name__ == "application"
    sys.modules.pop("yourapplication", None)
