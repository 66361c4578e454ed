"""Turn an app spec such as ``myproject.wsgi:app`` into the WSGI callable it names.

Supported spec forms::

    module                      looks for ``app``, then ``application``
    pkg.module:attr             one attribute
    module:attr.sub             an attribute chain
    module:create_app()         a factory, called once
    module:create_app("prod", debug=False)    a factory with literal arguments only
    path/to/file.py[:attr]      a file, loaded under the name of its stem

Every failure raises :class:`launcher.errors.AppImportError` whose ``part`` says what failed.

This module is imported on the CLI's start path (``serve --help`` must stay fast), so the
heavier stdlib modules (``ast``, ``inspect``, ``importlib.util``, ``traceback``, ``difflib``,
``socketserver`` ...) are imported inside the functions that need them, and ``typing`` is only
imported for the type checker.
"""

from __future__ import annotations

import os
import sys

from launcher.errors import AppImportError

# A module-level TYPE_CHECKING constant (rather than typing.TYPE_CHECKING) keeps ``typing`` out of
# the start path; mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Callable, Iterable
    from types import ModuleType
    from typing import Any, NoReturn

__all__ = ["AppSpec", "import_app", "parse_spec"]

# Names looked up, in order, when the spec has no ":attr" part (the gunicorn/Flask convention).
_DEFAULT_NAMES = ("app", "application")

_SPEC_EXAMPLES = "e.g. 'myproject.wsgi:app', 'myproject:create_app()' or 'path/to/app.py:app'"

_LITERALS_ONLY = (
    "only literal arguments are allowed (strings, numbers, True/False/None, and "
    "lists/tuples/dicts/sets of them), e.g. 'myproject:create_app(\"prod\", debug=False)'"
)

_RUN_MAIN_GUARD = 'if __name__ == "__main__":'


class AppSpec:
    """A parsed app spec; see :func:`parse_spec`.

    ``module`` is a dotted module name, or the file path as written when ``is_file`` is true.
    ``attr_path`` is empty when the spec named no attribute (then ``app``/``application`` are
    looked up).  ``call`` is ``None``, or ``(args, kwargs)`` for a factory call.
    """

    __slots__ = ("attr_path", "call", "is_file", "module")

    def __init__(
        self,
        module: str,
        attr_path: tuple[str, ...] = (),
        call: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
        is_file: bool = False,
    ) -> None:
        self.module = module
        self.attr_path = attr_path
        self.call = call
        self.is_file = is_file

    def __repr__(self) -> str:
        return (
            f"AppSpec(module={self.module!r}, attr_path={self.attr_path!r}, "
            f"call={self.call!r}, is_file={self.is_file!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AppSpec):
            return NotImplemented
        return (self.module, self.attr_path, self.call, self.is_file) == (
            other.module,
            other.attr_path,
            other.call,
            other.is_file,
        )

    # Defining __eq__ leaves __hash__ None: right, as ``call`` holds a kwargs dict.


# ------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------


def _spec_error(spec: str, problem: str) -> AppImportError:
    return AppImportError(
        f"invalid app spec '{spec}': {problem}; write MODULE:ATTR, {_SPEC_EXAMPLES}",
        part="spec",
    )


def parse_spec(spec: str) -> AppSpec:
    """Parse an app spec without importing anything.

    Accepts ``module``, ``pkg.module:attr``, ``module:attr.sub``, ``module:factory()`` or
    ``module:factory(<literal args>)``, and ``path/to/file.py`` with or without ``:attr``.
    Factory arguments are read with :func:`ast.literal_eval`; nothing is ever evaluated.
    Raises :class:`AppImportError` with ``part="spec"`` when the spec is malformed.
    """
    if not spec.strip():
        raise _spec_error(spec, "it is empty")
    if spec != spec.strip():
        raise _spec_error(spec, "it has leading or trailing spaces; remove them")
    if "\n" in spec or "\r" in spec:
        raise _spec_error(spec, "it spans several lines")

    # A Windows drive letter ("C:\\site\\app.py:app") has a colon that is not the separator.
    start = 2 if len(spec) > 2 and spec[0].isalpha() and spec[1] == ":" and spec[2] in "\\/" else 0
    colon = spec.find(":", start)
    module_part = spec if colon == -1 else spec[:colon]
    expr = None if colon == -1 else spec[colon + 1 :]

    if not module_part:
        raise _spec_error(spec, "no module is named before the ':'")
    is_file = module_part.endswith(".py") or "/" in module_part or "\\" in module_part
    if is_file:
        # Spaces inside a path are legitimate ("My Projects/app.py"), around it they are a typo.
        if module_part != module_part.strip():
            raise _spec_error(spec, f"the file path '{module_part}' has spaces around it")
        # .wsgi: mod_wsgi's script files (the Flask guide's yourapplication.wsgi) are Python too;
        # written with a slash (./app.wsgi), since 'pkg.wsgi:app' is a module path.
        if not module_part.endswith((".py", ".wsgi")) or os.path.basename(module_part) in (".py", ".wsgi"):
            raise _spec_error(spec, f"the file path '{module_part}' must name a .py or .wsgi file")
    else:
        _check_module_name(spec, module_part)

    if expr is None:
        return AppSpec(module_part, (), None, is_file)
    if not expr:
        raise _spec_error(spec, "nothing follows the ':'; name the app attribute after it")
    if _is_dotted(expr) and not any(part.isdigit() for part in expr.split(".")):
        # The common case, 'module:app': no need to load ast (a CGI request pays every millisecond).
        import keyword

        if not any(keyword.iskeyword(part) for part in expr.split(".")):
            return AppSpec(module_part, tuple(expr.split(".")), None, is_file)
    attr_path, call = _parse_attr_expr(spec, expr)
    return AppSpec(module_part, attr_path, call, is_file)


def _check_module_name(spec: str, name: str) -> None:
    if any(ch.isspace() for ch in name):
        raise _spec_error(spec, f"the module name '{name}' contains spaces")
    if name.startswith("."):
        raise _spec_error(spec, f"relative module names like '{name}' are not supported")
    if not _is_dotted(name):
        raise _spec_error(spec, f"'{name}' is not a valid dotted module name")


def _parse_attr_expr(spec: str, expr: str) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], dict[str, Any]] | None]:
    import ast

    # Whitespace is only allowed inside the call's parentheses (after a comma, say); the name
    # part is checked by hand so that "app#x" or "app .x" cannot slip through the parser.
    head = expr.split("(", 1)[0]
    compact = "".join(head.split())
    if compact != head and compact and _is_dotted(compact):
        raise _spec_error(spec, f"the attribute part '{expr}' contains spaces")
    if not _is_dotted(head):
        raise _spec_error(
            spec,
            f"'{expr}' is not an attribute name like 'app' or 'app.wsgi_app', optionally "
            f"followed by one call; {_LITERALS_ONLY}",
        )
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise _spec_error(
            spec,
            f"'{expr}' is not a name optionally followed by one call; {_LITERALS_ONLY}",
        ) from None
    body = tree.body
    # The parser ignores a trailing comment ("create_app() # x"): refuse anything left over.
    if body.end_lineno != 1 or body.end_col_offset != len(expr.encode("utf-8")):
        raise _spec_error(spec, f"unexpected text after the expression in '{expr}'")

    target = body.func if isinstance(body, ast.Call) else body
    attr_path = _dotted_name(target)
    if attr_path is None:
        raise _spec_error(
            spec,
            f"'{expr}' must be a name optionally followed by ONE call; {_LITERALS_ONLY}",
        )
    if not isinstance(body, ast.Call):
        return attr_path, None

    args: list[Any] = []
    for index, node in enumerate(body.args, start=1):
        if isinstance(node, ast.Starred):
            raise _spec_error(spec, f"*{_source(expr, node.value)} is not allowed; {_LITERALS_ONLY}")
        args.append(_literal(spec, expr, node, f"argument {index}"))
    kwargs: dict[str, Any] = {}
    for keyword in body.keywords:
        if keyword.arg is None:
            raise _spec_error(
                spec,
                f"**{_source(expr, keyword.value)} is not allowed; {_LITERALS_ONLY}",
            )
        if keyword.arg in kwargs:
            raise _spec_error(spec, f"keyword argument '{keyword.arg}' is given twice")
        kwargs[keyword.arg] = _literal(spec, expr, keyword.value, f"argument '{keyword.arg}'")
    return attr_path, (tuple(args), kwargs)


def _is_dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _dotted_name(node: ast.expr) -> tuple[str, ...] | None:
    import ast

    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    names.append(node.id)
    return tuple(reversed(names))


def _source(expr: str, node: ast.expr) -> str:
    import ast

    return ast.get_source_segment(expr, node) or ast.unparse(node)


def _literal(spec: str, expr: str, node: ast.expr, what: str) -> Any:
    import ast

    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _spec_error(spec, f"{what} ({_source(expr, node)}) is not a literal; {_LITERALS_ONLY}") from None


# ------------------------------------------------------------------------------
# Importing
# ------------------------------------------------------------------------------


def import_app(spec: str, *, cwd: str | None = None) -> Callable[..., Any]:
    """Import the WSGI callable named by ``spec`` and return it.

    ``cwd`` (default: the current directory) is put on ``sys.path`` first, as gunicorn and
    uvicorn do, so ``serve myproject:app`` works from the project folder; relative file paths
    are resolved against it too.  A module that starts a development server while being
    imported (``app.run()`` at module level) is stopped before it can bind and reported.

    Raises :class:`AppImportError`; its ``part`` is one of "spec", "module", "attribute",
    "callable", "factory-args", "factory", "app-run" or "user-import".
    """
    parsed = parse_spec(spec)

    if cwd is not None:
        base = os.path.abspath(cwd)
        if not os.path.isdir(base):
            raise AppImportError(
                f"cannot import app spec '{spec}': the working directory {base} does not exist; "
                "check the --chdir value",
                part="module",
            )
        # An explicit working directory wins over whatever is on the path already.
        if not sys.path or sys.path[0] != base:
            sys.path.insert(0, base)
    else:
        base = os.getcwd()
        # "" on sys.path (python -m / -c) already means the current directory.
        if base not in sys.path and "" not in sys.path:
            sys.path.insert(0, base)

    if parsed.is_file:
        module, module_name = _load_file(spec, parsed.module, base)
    else:
        module_name = parsed.module
        module = _import_module(spec, module_name, base)

    if parsed.attr_path:
        obj = _resolve_chain(spec, parsed, module)
        shown = f"{parsed.module}:{'.'.join(parsed.attr_path)}"
    else:
        name, obj = _default_app(spec, parsed.module, module)
        shown = f"{parsed.module}:{name}"

    if parsed.call is not None:
        args, kwargs = parsed.call
        return _call_factory(spec, shown, module_name, obj, args, kwargs)

    if not callable(obj):
        how = "" if parsed.attr_path else f" (the default name looked up for app spec '{spec}')"
        raise AppImportError(
            f"'{shown}' is {_describe(obj)}, not a WSGI callable{how}; point the spec "
            "at the application object, the one called as app(environ, start_response)",
            part="callable",
        )
    return obj


def _import_module(spec: str, name: str, base: str) -> ModuleType:
    import importlib

    try:
        with _DevServerTrap():
            return importlib.import_module(name)
    except _DevServerStarted as exc:
        raise _app_run_error(spec, name, name, exc, factory=None) from None
    except ModuleNotFoundError as exc:
        # Only "the module itself (or a parent package) is missing" is a lookup problem; a
        # missing dependency imported BY the user's module is the user's own import error.
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppImportError(_not_found_message(spec, name, exc.name, base), part="module") from None
        raise _user_import_error(spec, name, exc, is_file=False) from exc
    except (Exception, SystemExit) as exc:
        # SystemExit too: a module calling sys.exit() at import must not end the launcher silently.
        raise _user_import_error(spec, name, exc, is_file=False) from exc


def _load_file(spec: str, written_path: str, base: str) -> tuple[ModuleType, str]:
    path = os.path.abspath(os.path.join(base, os.path.expanduser(written_path)))
    if not os.path.isfile(path):
        raise AppImportError(
            f"cannot load the app file for app spec '{spec}': {path} does not exist"
            f"{' (it is a directory)' if os.path.isdir(path) else ''}; check the path, run serve "
            "from the folder it is relative to, or pass --chdir",
            part="module",
        )
    directory = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in stem)
    if not name.isidentifier():
        name = "_" + name

    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file and _same_file(existing_file, path):
            return existing, name  # loaded before (a second import_app call): reuse it
        raise AppImportError(
            f"cannot load {path} for app spec '{spec}' as module '{name}': a different module "
            f"of that name is already imported (from {existing_file or 'built-in'}); rename the "
            "file, or use the module form 'package.module:app'",
            part="module",
        )

    # The file's own directory goes first so `import sibling` inside it works, as when it is run.
    if not sys.path or sys.path[0] != directory:
        sys.path.insert(0, directory)

    import importlib.util
    from importlib.machinery import SourceFileLoader

    # An explicit loader, so a file without the .py suffix (a .wsgi script) loads as source too.
    file_spec = importlib.util.spec_from_file_location(name, path, loader=SourceFileLoader(name, path))
    if file_spec is None or file_spec.loader is None:
        raise AppImportError(
            f"cannot load {path} for app spec '{spec}': Python cannot import this file; "
            "check that it is a Python source file",
            part="module",
        )
    module = importlib.util.module_from_spec(file_spec)
    # Registered before running, like a normal import, so the module can import itself
    # (dataclasses, pickling and circular imports look it up in sys.modules).
    sys.modules[name] = module
    try:
        with _DevServerTrap():
            file_spec.loader.exec_module(module)
    except _DevServerStarted as exc:
        _forget_module(name, module)
        raise _app_run_error(spec, written_path, name, exc, factory=None) from None
    except (Exception, SystemExit) as exc:
        _forget_module(name, module)
        raise _user_import_error(spec, written_path, exc, is_file=True) from exc
    return module, name


def _forget_module(name: str, module: ModuleType) -> None:
    # A failed import must not leave a half-run module behind (importlib does the same).
    if sys.modules.get(name) is module:
        del sys.modules[name]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _not_found_message(spec: str, name: str, missing: str, base: str) -> str:
    lines = [f"cannot import module '{name}' for app spec '{spec}': no module named '{missing}'"]
    if missing != name:
        lines.append(f"  (the package '{missing}' itself was not found)")
    else:
        parent = name.rpartition(".")[0]
        parent_module = sys.modules.get(parent) if parent else None
        if parent_module is not None:
            where = getattr(parent_module, "__file__", None) or "a namespace package"
            lines.append(
                f"  ('{parent}' was found at {where} but has no module "
                f"'{name.rpartition('.')[2]}'; is that the package you meant?)"
            )
    pythonpath = os.environ.get("PYTHONPATH") or "unset"
    venv = os.environ.get("VIRTUAL_ENV") or "none"
    head = ", ".join(repr(p) for p in sys.path[:5])
    more = f", ... ({len(sys.path) - 5} more)" if len(sys.path) > 5 else ""
    lines += [
        "Likely causes:",
        (
            f"  - wrong working directory: module names are looked up from {base}; run "
            "serve from the project folder, or pass --chdir /path/to/project"
        ),
        (
            f"  - environment not set: PYTHONPATH is {pythonpath} and VIRTUAL_ENV is {venv}; "
            "set PYTHONPATH or activate the virtualenv the app is installed in"
        ),
        (
            f"  - different interpreter: serve runs on {sys.executable}; install the app's "
            "packages for this interpreter, or run serve from the app's environment"
        ),
        f"sys.path starts with: {head}{more}",
    ]
    return "\n".join(lines)


def _user_import_error(spec: str, label: str, exc: BaseException, *, is_file: bool) -> AppImportError:
    message = f"importing '{label}' raised {type(exc).__name__}: {exc} (app spec '{spec}')"
    if is_file and isinstance(exc, ImportError) and "relative import" in str(exc):
        # A file loaded by path has no parent package; the module form gives it one.
        message += "; a file using relative imports must be named as a module, e.g. 'package.module:app'"
    return AppImportError(message, part="user-import")


# ------------------------------------------------------------------------------
# Attribute lookup
# ------------------------------------------------------------------------------


def _resolve_chain(spec: str, parsed: AppSpec, module: ModuleType) -> object:
    obj: object = module
    for index, name in enumerate(parsed.attr_path):
        missing = object()
        try:
            value = getattr(obj, name, missing)
        except Exception as exc:  # a property or module __getattr__ in user code raised
            raise AppImportError(
                f"looking up '{name}' for app spec '{spec}' raised {type(exc).__name__}: {exc}",
                part="attribute",
            ) from exc
        if value is missing:
            if index == 0:
                where = f"module '{parsed.module}'"
            else:
                where = f"'{parsed.module}:{'.'.join(parsed.attr_path[:index])}' ({_describe(obj)})"
            message = f"{where} has no attribute '{name}' (app spec '{spec}')"
            message += _suggest(name, _public_names(obj))
            if index == 0 and len(parsed.attr_path) > 1 and not parsed.is_file:
                # "pkg:sub.app" where sub is a submodule that pkg does not import itself.
                message += (
                    f"; if '{name}' is a submodule, name it in the module part: "
                    f"'{parsed.module}.{name}:{'.'.join(parsed.attr_path[1:])}'"
                )
            raise AppImportError(message, part="attribute")
        obj = value
    return obj


def _default_app(spec: str, label: str, module: ModuleType) -> tuple[str, object]:
    missing = object()
    for name in _DEFAULT_NAMES:
        try:
            value = getattr(module, name, missing)
        except Exception as exc:
            raise AppImportError(
                f"looking up '{name}' for app spec '{spec}' raised {type(exc).__name__}: {exc}",
                part="attribute",
            ) from exc
        if value is not missing:
            return name, value

    candidates = _candidate_callables(module)
    message = (
        f"module '{label}' has no attribute 'app' or 'application', the names looked up when "
        f"the app spec '{spec}' names no attribute; name the WSGI callable after a colon, "
        f"e.g. '{label}:NAME'"
    )
    if candidates:
        message += "; callables in it that may be the app: " + ", ".join(f"'{name}'" for name in candidates[:10])
        message += f" (for an app factory, call it: '{label}:{candidates[0]}()')"
    else:
        message += "; it defines no callables that look like an app"
    raise AppImportError(message, part="attribute")


def _candidate_callables(module: ModuleType) -> list[str]:
    import inspect

    found = []
    # The module's own namespace, not getattr: no module __getattr__ runs, nothing can raise.
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if not callable(value) or inspect.isclass(value) or inspect.ismodule(value):
            continue
        # Functions imported from elsewhere (os.path.join, flask.render_template) are noise;
        # app objects (Flask(), Django's WSGIHandler()) are instances and always kept.
        if (inspect.isfunction(value) or inspect.isbuiltin(value)) and getattr(
            value, "__module__", None
        ) != module.__name__:
            continue
        found.append(name)
    return found


def _public_names(obj: object) -> list[str]:
    try:
        return [name for name in dir(obj) if not name.startswith("_")]
    except Exception:  # a broken __dir__ must not hide the real error
        return []


def _suggest(name: str, choices: Iterable[str]) -> str:
    import difflib

    matches = difflib.get_close_matches(name, list(choices), n=3)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def _describe(obj: object) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, type(sys)):
        return "a module"
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    type_name = type(obj).__name__
    article = "an" if type_name[:1].lower() in "aeiou" else "a"
    return f"{article} {type_name}"


# ------------------------------------------------------------------------------
# Factories
# ------------------------------------------------------------------------------


def _call_factory(
    spec: str,
    shown: str,
    module_name: str,
    factory: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Callable[..., Any]:
    call_text = _call_text(shown.rpartition(":")[2], args, kwargs)
    if not callable(factory):
        raise AppImportError(
            f"'{shown}' is {_describe(factory)}, so it cannot be called as a factory "
            f"(app spec '{spec}'); remove the parentheses if it is the app itself, or point "
            "the spec at the factory function",
            part="callable",
        )

    import inspect

    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None  # some builtins have no signature: let the call itself complain
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            name = shown.rpartition(":")[2].rpartition(".")[2]
            raise AppImportError(
                f"cannot call {call_text} for app spec '{spec}': {exc}; the factory's signature is {name}{signature}",
                part="factory-args",
            ) from None

    try:
        with _DevServerTrap():
            app: object = factory(*args, **kwargs)
    except _DevServerStarted as exc:
        raise _app_run_error(spec, shown, module_name, exc, factory=call_text) from None
    except (Exception, SystemExit) as exc:
        raise AppImportError(
            f"the app factory {call_text} raised {type(exc).__name__}: {exc} (app spec '{spec}')",
            part="factory",
        ) from exc
    if not callable(app):
        raise AppImportError(
            f"the app factory {call_text} returned {_describe(app)}, not a WSGI callable "
            f"(app spec '{spec}'); make the factory return the application object",
            part="callable",
        )
    return app


def _call_text(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


# ------------------------------------------------------------------------------
# The app.run()-at-import trap
# ------------------------------------------------------------------------------


class _DevServerStarted(BaseException):
    """Raised instead of binding or serving while user code is being imported or called.

    A BaseException so that user code wrapping app.run() in ``except Exception`` (or werkzeug's
    ``except OSError`` around bind) cannot swallow it.
    """


def _refuse_server(server: object, *args: object, **kwargs: object) -> NoReturn:
    # Close the socket the server constructor already created.  socketserver and werkzeug 3
    # close it themselves when bind raises, but a custom server class may not, and nothing
    # else would once we unwind past its owner; closing twice is harmless.
    close = getattr(getattr(server, "socket", None), "close", None)
    if callable(close):
        close()
    raise _DevServerStarted


class _DevServerTrap:
    """Patch socketserver so that starting a server raises :class:`_DevServerStarted`.

    werkzeug's run_simple (Flask's ``app.run()``) and wsgiref's ``make_server`` both bind
    through ``TCPServer.server_bind`` and serve through ``BaseServer.serve_forever``.  Without
    this a module calling ``app.run()`` at import would block ``serve`` forever on a server it
    never asked for.
    """

    def __enter__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []
        self._hook: _PatchOnImport | None = None
        module = sys.modules.get("socketserver")
        if module is not None:
            self._patch(module)
        else:
            # Not imported yet (the usual case for a bare app, and every CGI request): patch it only
            # if the app's import brings it in, instead of paying for socketserver every time.
            self._hook = _PatchOnImport(self._patch)
            sys.meta_path.insert(0, self._hook)

    def _patch(self, socketserver: Any) -> None:
        self._saved = [
            (cls, attr, cls.__dict__[attr])
            for cls, attr in (
                (socketserver.TCPServer, "server_bind"),
                (socketserver.BaseServer, "serve_forever"),
            )
        ]
        for cls, attr, _ in self._saved:
            setattr(cls, attr, _refuse_server)

    def __exit__(self, *exc_info: object) -> None:
        if self._hook is not None and self._hook in sys.meta_path:
            sys.meta_path.remove(self._hook)
        for cls, attr, original in self._saved:
            setattr(cls, attr, original)


class _PatchOnImport:
    """A meta-path finder that lets socketserver load normally, then patches it."""

    def __init__(self, patch: Callable[[Any], None]) -> None:
        self.patch = patch
        self.busy = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "socketserver" or self.busy:
            return None
        import importlib.util

        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, self.patch)  # type: ignore[assignment]
        return spec


class _PatchingLoader:
    def __init__(self, loader: Any, patch: Callable[[Any], None]) -> None:
        self.loader = loader
        self.patch = patch

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.patch(module)


def _app_run_error(
    spec: str, label: str, module_name: str, exc: BaseException, *, factory: str | None
) -> AppImportError:
    import linecache

    site = _server_start_site(exc, module_name)
    if site is None:
        what, where = "app.run()", "an unknown place"
    else:
        filename, lineno = site
        line = linecache.getline(filename, lineno).strip()
        # Show the user's own line ("app.run(debug=True)", "make_server(...)") if short.
        what = line if line and len(line) <= 80 else "app.run()"
        where = f"{filename}:{lineno}"
    # "move app.run(port=0) under ..." reads well; "move httpd = make_server(...)" does not.
    subject = what if ".run(" in what else "the code that starts the server"
    if factory is None:
        return AppImportError(
            f"'{label}' started a development server while being imported "
            f"({what} at {where}); move {subject} under  {_RUN_MAIN_GUARD}  or into a "
            f"separate run.py, so it is not called when a server imports the app "
            f"(app spec '{spec}').",
            part="app-run",
        )
    return AppImportError(
        f"the app factory {factory} started a development server while being called "
        f"({what} at {where}); a factory must only build and return the app: move "
        f"{subject} into a separate run.py or under  {_RUN_MAIN_GUARD}  "
        f"(app spec '{spec}').",
        part="app-run",
    )


def _server_start_site(exc: BaseException, module_name: str) -> tuple[str, int] | None:
    import traceback

    frames = list(traceback.walk_tb(exc.__traceback__))
    # Best: the innermost line of the user's module itself (that is where app.run() is).
    for frame, lineno in reversed(frames):
        if frame.f_globals.get("__name__") == module_name:
            return frame.f_code.co_filename, lineno
    # Else (a factory defined elsewhere): the outermost frame that is not library code.
    for frame, lineno in frames:
        if not _is_library_file(frame.f_code.co_filename):
            return frame.f_code.co_filename, lineno
    return None


def _is_library_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    path = os.path.normcase(os.path.abspath(filename))
    if os.path.dirname(path) == os.path.dirname(os.path.normcase(os.path.abspath(__file__))):
        return True  # the launcher's own frames
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    import sysconfig

    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        root = os.path.normcase(os.path.abspath(sysconfig.get_path(key)))
        if path.startswith(root + os.sep):
            return True
    return False
