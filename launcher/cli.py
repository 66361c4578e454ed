"""The ``serve`` command.  The only place that prints errors and chooses exit codes.

    serve [run] APP [options]      run the app (bare ``serve APP`` runs)
    serve backends                 the backends, installed or not
    serve check | bench | config   (see ``serve COMMAND --help``)

Every run flag is generated from :data:`launcher.options.OPTIONS`.
"""

from __future__ import annotations

import argparse
import os
import sys

from launcher.errors import AppImportError, LauncherError
from launcher.options import OPTIONS, format_default, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

#: Subcommands besides ``run``: name -> (module, one-line help).  Modules are imported on use only.
COMMANDS: dict[str, tuple[str, str]] = {
    "backends": ("launcher.cli", "list the backends: installed or not, version, protocol, pip extra"),
    "check": ("launcher.check", "import the app as the backend would and explain what is wrong"),
    "bench": ("launcher.bench.cli", "compare backends on your app: throughput, latency, CPU, memory"),
    "config": ("launcher.deploy.cli", "print a front-server or service config for the app"),
}

SECTIONS = {
    "server": "server",
    "limits": "limits (the same names for every backend)",
    "http": "HTTP and proxies",
    "logging": "logging",
    "process": "process",
}


class _Parser(argparse.ArgumentParser):
    """argparse with a 'did you mean' for unknown flags and errors that never print a traceback."""

    def error(self, message: str) -> Any:
        if message.startswith("unrecognized arguments:"):
            from launcher.options import closest

            flags = [flag for action in self._actions for flag in action.option_strings]
            for word in message.split(":", 1)[1].split():
                if word.startswith("-"):
                    message += closest(word.split("=")[0], flags)
                    break
        self.exit(2, f"{self.prog}: error: {message}\n  (see '{self.prog} --help')\n")


def build_run_parser(prog: str = "serve") -> argparse.ArgumentParser:
    """The run parser, generated from the option declarations."""
    others = "\n".join(f"  serve {name:<9} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = _Parser(
        prog=prog,
        usage=f"{prog} [run] APP [options]\n       {prog} COMMAND ...",
        description="Run a WSGI app on the server of your choice, the same way every time.",
        epilog=(
            "APP is module:attr, module:attr.sub, module (app or application), "
            "module:create_app() or path/to/file.py:app.\n"
            "Every option can also be set as SERVE_<NAME> in the environment or in serve.toml / "
            "[tool.serve] of pyproject.toml;\nprecedence: flags > environment > file > default.\n\n"
            f"other commands:\n{others}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        add_help=False,  # help is rendered by render_help(), without argparse's formatter
    )
    parser.add_argument("app", nargs="?", help="the WSGI app to serve")
    parser.add_argument("--config", metavar="FILE", help="read options from this TOML file (default: serve.toml,"
                        " else [tool.serve] in pyproject.toml)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    groups = {key: parser.add_argument_group(title) for key, title in SECTIONS.items()}
    for opt in OPTIONS:
        group = groups[opt.section]
        flags = [opt.short, opt.flag] if opt.short else [opt.flag]
        default = format_default(opt).replace("`", "")
        if opt.kind == "bool":
            group.add_argument(*flags, dest=opt.name, action="store_const", const=True, default=argparse.SUPPRESS,
                               help=f"{opt.help} [env {opt.env}]")
            group.add_argument("--no-" + opt.flag[2:], dest=opt.name, action="store_const", const=False,
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            continue
        group.add_argument(
            *flags,
            dest=opt.name,
            metavar=opt.metavar,
            action="append" if opt.repeatable else "store",
            default=argparse.SUPPRESS,
            help=f"{opt.help} (default {default}) [env {opt.env}]".replace("%", "%%"),
        )
    return parser


def _version() -> str:
    from launcher import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``serve`` and ``python -m launcher``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and (args[0] == "help" or (args[0] not in COMMANDS and _wants_help(args))):
            sys.stdout.write(render_help())
            return 0
        if args and args[0] in COMMANDS:
            module_name, _ = COMMANDS[args[0]]
            import importlib

            module = importlib.import_module(module_name)
            command: Callable[[list[str]], int] = getattr(module, "command_" + args[0].replace("-", "_"))
            return command(args[1:])
        if args and args[0] == "run":
            args = args[1:]
        return run_command(args)
    except LauncherError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def _wants_help(args: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in args)


def render_help(width: int = 0) -> str:
    """``serve --help``, rendered straight from :data:`OPTIONS`.

    Not argparse's formatter: it imports re, gettext and shutil, which made ``serve --help`` take
    2.5 times as long as starting Python at all; this keeps it near 1.5 times.
    """
    if not width:
        try:
            width = min(os.get_terminal_size().columns, 100)
        except OSError:
            width = 100
    lines = [
        "usage: serve [run] APP [options]",
        "       serve COMMAND ...",
        "",
        "Run a WSGI app on the server of your choice, the same way every time.",
        "",
        "APP is module:attr, module:attr.sub, module (finds app or application), module:create_app(),",
        'module:create_app("prod", debug=False) (literal arguments only) or path/to/file.py:app.',
        "",
        "Every option can also be set as SERVE_<NAME> in the environment, or in serve.toml or the",
        "[tool.serve] table of pyproject.toml; precedence: flags > environment > file > default.",
        "",
        "  -h, --help            show this help and exit",
        "  --version             show the version and exit",
        "  --config FILE         read options from this TOML file",
    ]
    for section, title in SECTIONS.items():
        lines += ["", f"{title}:"]
        for opt in OPTIONS:
            if opt.section != section:
                continue
            flags = f"{opt.short}, {opt.flag}" if opt.short else opt.flag
            if opt.kind == "bool":
                flags += f", --no-{opt.flag[2:]}"
            else:
                flags += f" {opt.metavar}"
            text = opt.help
            if opt.kind != "bool":
                text += f" (default {format_default(opt).replace('`', '')})"
            text += f" [{opt.env}]"
            lines += _hang(flags, text, width)
    lines += ["", "other commands:"]
    lines += [f"  serve {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def _hang(flags: str, text: str, width: int) -> list[str]:
    """Two columns: flags, then the help wrapped at ``width`` and indented under itself."""
    indent = 24
    head = f"  {flags}"
    out: list[str] = []
    words = text.split()
    line = head + " " * (indent - len(head)) if len(head) < indent - 1 else None
    if line is None:
        out.append(head)
        line = " " * indent
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip() and len(line) > indent:
            out.append(line.rstrip())
            line = " " * indent
        line += word + " "
    out.append(line.rstrip())
    return out


def parse_run_args(args: list[str]) -> tuple[Any, dict[str, Any], str | None]:
    parser = build_run_parser()
    namespace = vars(parser.parse_args(args))
    app = namespace.pop("app", None)
    config = namespace.pop("config", None)
    return app, namespace, config


def run_command(args: list[str]) -> int:
    app, cli, config = parse_run_args(args)
    opts = resolve(app, cli=cli, config=config)
    from launcher import lifecycle, log

    log.configure(opts.log_level, opts.log_format)
    return lifecycle.run(opts)


def report(exc: LauncherError) -> int:
    """Print ``exc`` for a person (the user's own traceback first, when it is theirs); one JSON
    record instead with --log-format json."""
    from launcher import log

    user_traceback = ""
    if isinstance(exc, AppImportError) and exc.part == "user-import" and exc.__cause__ is not None:
        import traceback

        cause = exc.__cause__
        user_traceback = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip()
    if log.json_mode():
        log.logger.error("%s%s", exc, f"\n{user_traceback}" if user_traceback else "")
        return exc.exit_code
    if user_traceback:
        print(user_traceback, file=sys.stderr)
    print(f"serve: error: {exc}", file=sys.stderr)
    sys.stderr.flush()
    return exc.exit_code


# --------------------------------------------------------------------------- serve backends


def command_backends(args: list[str]) -> int:
    parser = _Parser(prog="serve backends", description="List the backends, installed or not.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    ns = parser.parse_args(args)
    from launcher.registry import list_backends

    infos = list_backends()
    if ns.json:
        import json

        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    from backends.base import LAUNCHER_OPTIONS

    rows = [("backend", "installed", "version", "protocol", "install with", "options beyond the launcher's own")]
    for info in infos:
        extra = sorted(set(info.supports or ()) - LAUNCHER_OPTIONS)
        rows.append((
            info.name,
            "yes" if info.installed else "no",
            info.version or "-",
            info.protocol or "?",
            f"pip install 'wsgi-launcher[{info.extra}]'",
            ", ".join(o.replace("_", "-") for o in extra) or "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    print("\nEvery backend also honours: " + ", ".join("--" + o.replace("_", "-") for o in sorted(LAUNCHER_OPTIONS)
                                                     if o != "option") + ".", file=sys.stdout)
    missing = [info for info in infos if info.error]
    for info in missing:
        print(f"note: {info.error}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
