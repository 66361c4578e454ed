"""``--reload``: restart the server's workers when a source file changes (development only).

The launcher's own supervisor (:class:`launcher.lifecycle.Supervisor`) runs the workers, so the
sockets are bound once: the port (even a port-0 one) stays the same across reloads and no worker
ever races its predecessor for the address.  A watcher process built on watchfiles (inotify)
reports changes under ``--reload-dir`` (default: the working directory, plus ``--pythonpath``
directories and the directory of a file-path app) for files matching ``--reload-include`` and none
of ``--reload-exclude``; the supervisor then replaces its workers, each importing the app afresh
(the supervisor itself never imports it).  An app that fails to import prints its error once and
the server waits for the next change instead of exiting or looping.  A ``.wsgi`` script is matched
by the default include patterns, which gives mod_wsgi's WSGIScriptReloading behaviour.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from launcher.options import ServeOptions

#: Always watched; --reload-include adds to these (as uvicorn's does).
DEFAULT_INCLUDE = ("*.py", "*.wsgi")
#: watchfiles waits this long (ms) for a burst of writes (an editor's save) to settle.
DEBOUNCE_MS = 50


def watch_dirs(opts: ServeOptions) -> list[str]:
    """The directories to watch for this server."""
    dirs = [os.path.abspath(d) for d in opts.reload_dir] or [os.path.abspath(opts.chdir or os.getcwd())]
    dirs += [os.path.abspath(p) for p in opts.pythonpath]
    app = opts.app if isinstance(opts.app, str) else ""
    module_part = app.split(":", 1)[0]
    if module_part.endswith((".py", ".wsgi")) or "/" in module_part:
        dirs.append(os.path.dirname(os.path.abspath(os.path.join(opts.chdir or "", module_part))))
    unique: list[str] = []
    for directory in dirs:
        if os.path.isdir(directory) and not any(directory == d or directory.startswith(d + os.sep) for d in unique):
            unique.append(directory)
    return unique


def watcher_command(opts: ServeOptions) -> list[str]:
    """The watcher process's command line (one JSON list of changed paths per line on stdout)."""
    spec = {"dirs": watch_dirs(opts), "include": [*DEFAULT_INCLUDE, *opts.reload_include],
            "exclude": list(opts.reload_exclude)}
    return [sys.executable, "-m", "launcher.reload", json.dumps(spec)]


def matches(path: str, include: list[str], exclude: list[str]) -> bool:
    name = os.path.basename(path)
    if not any(fnmatch.fnmatch(name, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(path, pattern) for pattern in exclude)


def main(argv: list[str]) -> int:
    """The watcher process: print the changed paths that match, one JSON list per line."""
    spec = json.loads(argv[0])
    from launcher.lifecycle import die_with_parent

    die_with_parent(os.getppid())
    try:
        import watchfiles
    except ImportError:
        print("--reload needs watchfiles: pip install watchfiles", file=sys.stderr)
        return 2

    include, exclude = spec["include"], spec["exclude"]
    default = watchfiles.DefaultFilter()

    def wanted(change: object, path: str) -> bool:
        return default(change, path) and matches(path, include, exclude)  # type: ignore[arg-type]

    print(json.dumps([]), flush=True)  # "watching now": the supervisor starts workers after this
    try:
        for changes in watchfiles.watch(*spec["dirs"], watch_filter=wanted, debounce=DEBOUNCE_MS, step=20,
                                        raise_interrupt=False):
            print(json.dumps(sorted({path for _, path in changes})), flush=True)
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
