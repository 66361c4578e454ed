"""``serve config KIND APP [options]``: parse like ``serve``, check like ``serve``, print the config.

The run options are parsed by the run parser of :mod:`launcher.cli` and resolved by
:func:`launcher.options.resolve` (flags > ``SERVE_*`` > serve.toml / [tool.serve] > defaults), and
the backend checks them as it does before serving, so a bad option is the same one-line error
here as with ``serve``.  Warnings (a unix socket the web server cannot write...) go to stderr.
"""

from __future__ import annotations

import os
import sys

from launcher.deploy import KINDS
from launcher.errors import OptionError
from launcher.options import closest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from launcher.deploy.context import Rendered

USAGE = "usage: serve config KIND APP [options]"

#: config-only flags: (flags, dest, metavar or "" for a switch, repeatable, help)
CONFIG_FLAGS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("--listen", "listen", "ADDR", False,
     "where the front server listens: PORT, HOST:PORT, [::1]:PORT or unix:PATH (default 80)"),
    ("--upstream", "upstream", "ADDR", True,
     "nginx: an instance of the app to balance over, repeatable (default: the first --bind)"),
    ("--server-name", "server_name", "NAME", False, "nginx server_name / Apache ServerName"),
    ("--name", "name", "NAME", False,
     "name of the upstream, daemon process group, unit or program (default: from the app)"),
    ("--script", "script", "PATH", False,
     "apache/lighttpd: where the .wsgi or .cgi file is (write it with serve config wsgi-file/cgi-script)"),
    ("--socket-activation", "socket_activation", "", False,
     "systemd: a .socket unit listens on the --bind addresses and hands them to serve"),
    ("--output", "output", "FILE", False, "write the file here instead of printing it"),
    ("--output-dir", "output_dir", "DIR", False, "write the file(s) into DIR under their usual names"),
)


def render_help() -> str:
    lines = [
        USAGE,
        "",
        "Print a front-server or service config that matches the backend and options given.  The options",
        "are those of `serve` (see serve --help), read the same way (flags, SERVE_* variables, serve.toml),",
        "so the config describes exactly the server `serve` with the same options runs.",
        "",
        "kinds:",
    ]
    lines += [f"  {kind:<12}{help_}" for kind, (_, help_) in KINDS.items()]
    lines += ["", "config options:"]
    for flag, _, metavar, _, help_ in CONFIG_FLAGS:
        head = f"  {flag} {metavar}".rstrip()
        lines.append(f"{head:<24}{help_}" if len(head) < 23 else f"{head}\n{'':<24}{help_}")
    lines += [
        "",
        "examples:",
        "  serve config nginx --backend fastcgi --bind unix:/run/app.sock --group www-data myproject:app",
        "  serve config apache --backend mod_wsgi --root-path /yourapplication myproject:app",
        "  serve config systemd --socket-activation --bind 127.0.0.1:8000 --output-dir /etc/systemd/system \\",
        "      myproject:app",
    ]
    return "\n".join(lines) + "\n"


def _parser(kind: str) -> argparse.ArgumentParser:
    from launcher.cli import build_run_parser

    parser = build_run_parser(prog=f"serve config {kind}")
    group = parser.add_argument_group("config")
    for flag, dest, metavar, repeat, help_ in CONFIG_FLAGS:
        if not metavar:
            group.add_argument(flag, dest=dest, action="store_true", default=False, help=help_)
        else:
            group.add_argument(flag, dest=dest, metavar=metavar, action="append" if repeat else "store",
                               default=None, help=help_)
    return parser


def parse(args: list[str]) -> tuple[str, object, dict[str, object], str | None, dict[str, object]]:
    """Split ``KIND [run options] [config options]`` into its parts (raises on a bad KIND)."""
    if not args or args[0].startswith("-"):
        raise OptionError(f"serve config: give the KIND first ({', '.join(KINDS)}): {USAGE[7:]}")
    kind = args[0]
    if kind not in KINDS:
        raise OptionError(f"serve config: unknown kind '{kind}'{closest(kind, KINDS)}; choose one of:"
                          f" {', '.join(KINDS)}")
    namespace = vars(_parser(kind).parse_args(args[1:]))
    config = {dest: namespace.pop(dest) for _, dest, _, _, _ in CONFIG_FLAGS}
    app = namespace.pop("app", None)
    config_file = namespace.pop("config", None)
    return kind, app, namespace, config_file, config


def command_config(args: list[str]) -> int:
    """``serve config KIND APP [options]``; returns the exit code (errors raise for cli.report)."""
    if not args or args[0] in ("-h", "--help", "help") or (args[0] in KINDS and _wants_help(args[1:])):
        sys.stdout.write(render_help())
        return 0
    from launcher.deploy import render
    from launcher.deploy.context import build
    from launcher.options import resolve

    kind, app, cli, config_file, config = parse(args)
    opts = resolve(app, cli=cli, config=config_file)
    deployment = build(kind, opts, config)
    files = render(deployment)
    for line in deployment.warnings:
        print(f"serve config: warning: {line}", file=sys.stderr)
    for line in deployment.notes:
        print(f"serve config: note: {line}", file=sys.stderr)
    write(files, output=config.get("output"), output_dir=config.get("output_dir"))  # type: ignore[arg-type]
    return 0


def _wants_help(args: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in args)


def write(files: list[Rendered], *, output: str | None = None, output_dir: str | None = None) -> None:
    """Print the files (a comment header before each when there are several) or write them."""
    if output and output_dir:
        raise OptionError("serve config: give --output or --output-dir, not both")
    if output and len(files) > 1:
        names = " and ".join(f.filename for f in files)
        raise OptionError(f"serve config: this writes two files ({names}): use --output-dir DIR")
    if output:
        _write_file(output, files[0])
        return
    if output_dir:
        if not os.path.isdir(output_dir):
            raise OptionError(f"--output-dir {output_dir}: no such directory")
        for item in files:
            _write_file(os.path.join(output_dir, item.filename), item)
        return
    if len(files) == 1:
        sys.stdout.write(files[0].text)
        return
    for i, item in enumerate(files):
        if i:
            sys.stdout.write("\n")
        sys.stdout.write(f"# ---------------------------------------- {item.filename}\n{item.text}")


def _write_file(path: str, item: Rendered) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(item.text)
        os.chmod(tmp, item.mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OptionError(f"cannot write {path}: {exc.strerror}") from None
    print(f"serve config: wrote {path}", file=sys.stderr)
