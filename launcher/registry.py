"""Backend name -> import string, resolved lazily.

Importing this module imports no backend and no server library.  Third-party backends register
under the entry-point group ``launcher.backends`` (``name = "package.module:Class"``).
"""

from __future__ import annotations

from launcher.errors import BackendError
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from backends.base import Backend

ENTRY_POINT_GROUP = "launcher.backends"

#: The built-in backends, in the order `serve backends` lists them.
BUILTIN: dict[str, str] = {
    "waitress": "backends.waitress:WaitressBackend",
    "gunicorn": "backends.gunicorn:GunicornBackend",
    "gevent": "backends.gevent:GeventBackend",
    "tornado": "backends.tornado:TornadoBackend",
    "twisted": "backends.twisted:TwistedBackend",
    "fastcgi": "backends.fastcgi:FastCGIBackend",
    "cgi": "backends.cgi:CGIBackend",
    "uwsgi": "backends.uwsgi:UWSGIBackend",
    "mod_wsgi": "backends.mod_wsgi:ModWSGIBackend",
}

DEFAULT_BACKEND = "waitress"


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def import_strings() -> dict[str, str]:
    """Every known backend: the built-ins, then entry points (which cannot shadow a built-in)."""
    table = dict(BUILTIN)
    for name, target in _entry_points().items():
        table.setdefault(name, target)
    return table


def _load(target: str) -> type[Backend]:
    import importlib

    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Backend] = getattr(module, attr)
    return cls


def get_class(name: str) -> type[Backend]:
    """The backend class for ``name``; unknown names list the valid ones."""
    table = import_strings()
    target = table.get(name)
    if target is None:
        raise BackendError(f"unknown backend '{name}'{closest(name, table)}; choose one of: {', '.join(table)}")
    try:
        return _load(target)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"backend '{name}' ({target}) cannot be loaded: {exc}") from None


def get(name: str) -> Backend:
    """An instance of backend ``name`` whose server library is installed, or a one-line error."""
    cls = get_class(name)
    info = describe(name, cls)
    if not info.installed:
        raise BackendError(
            f"backend '{name}' needs {info.distribution}, which is not installed:"
            f" pip install 'wsgi-launcher[{info.extra}]'"
        )
    return cls()


class BackendInfo:
    """What `serve backends` shows about one backend."""

    FIELDS = ("name", "target", "installed", "version", "protocol", "extra", "distribution", "supports",
              "min_version", "error")

    def __init__(self, *, name: str, target: str, installed: bool, version: str | None, protocol: str, extra: str,
                 distribution: str, supports: frozenset[str], min_version: str, error: str) -> None:
        self.name = name
        self.target = target
        self.installed = installed
        self.version = version
        self.protocol = protocol
        self.extra = extra
        self.distribution = distribution
        self.supports = supports
        self.min_version = min_version
        self.error = error

    def as_dict(self) -> dict[str, object]:
        return {key: (sorted(v) if isinstance(v := getattr(self, key), frozenset) else v) for key in self.FIELDS}


def describe(name: str, cls: type[Backend] | None = None) -> BackendInfo:
    """Availability, version and capabilities of one backend, without importing its library."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    target = import_strings().get(name, "")
    error = ""
    if cls is None:
        try:
            cls = get_class(name)
        except BackendError as exc:
            error = str(exc)
    if cls is None:
        return BackendInfo(name=name, target=target, installed=False, version=None, protocol="?", extra=name,
                           distribution="?", supports=frozenset(), min_version="", error=error)
    installed = bool(cls.library) and importlib.util.find_spec(cls.library) is not None
    ver = None
    if installed:
        try:
            ver = version(cls.distribution)
        except PackageNotFoundError:
            ver = None
    return BackendInfo(name=name, target=target, installed=installed, version=ver, protocol=cls.protocol,
                       extra=cls.extra, distribution=cls.distribution, supports=cls.honoured(),
                       min_version=cls.min_version, error=error)


def list_backends() -> list[BackendInfo]:
    """Every known backend, installed or not."""
    return [describe(name) for name in import_strings()]
