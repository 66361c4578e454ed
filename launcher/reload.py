"""``--reload``: restart the server when a source file changes (development only).

Built on hupper: a monitor process watches every module the server imported and restarts the
server process on a change.  When the app fails to import, hupper keeps watching the files of
the failure and restarts on the next change instead of exiting or looping.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from launcher.options import ServeOptions


def start_reloader(opts: ServeOptions, argv: list[str]) -> None:
    """In the monitor: never returns.  In the reloaded server process: returns at once."""
    try:
        import hupper
    except ImportError:
        from launcher.errors import OptionError

        raise OptionError("--reload needs hupper: pip install 'wsgi-launcher[reload]'") from None
    if hupper.is_active():
        return
    hupper.start_reloader("launcher.cli.main", worker_kwargs={"argv": ["run", *argv]}, verbose=0)
