"""wsgi-launcher: run any WSGI app on the server of your choice, the same way every time.

    from launcher import launch
    launch("myproject:app", backend="tornado", bind="127.0.0.1:0")          # blocks
    with launch("myproject:app", background=True, bind="127.0.0.1:0") as server:
        print(server.url)

Importing this package imports no server library (``launch`` and ``Server`` load on first use).
"""

from __future__ import annotations

from launcher.errors import (
    AppImportError,
    BackendError,
    BindError,
    ConfigFileError,
    LauncherError,
    OptionError,
    ServerError,
)

__version__ = "0.1.0"

__all__ = [
    "AppImportError",
    "BackendError",
    "BindError",
    "ConfigFileError",
    "LauncherError",
    "OptionError",
    "ServeOptions",
    "Server",
    "ServerError",
    "__version__",
    "launch",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from launcher.api import Server, launch
    from launcher.options import ServeOptions


def __getattr__(name: str) -> object:
    if name in ("launch", "Server"):
        from launcher import api

        return getattr(api, name)
    if name == "ServeOptions":
        from launcher.options import ServeOptions

        return ServeOptions
    raise AttributeError(f"module 'launcher' has no attribute {name!r}")
