"""Small text helpers shared by the templates: comment blocks and each config language's quoting."""

from __future__ import annotations

import textwrap

WIDTH = 100


def comment(text: str, prefix: str = "# ", indent: str = "", width: int = WIDTH) -> str:
    """``text`` as a comment block: paragraphs (blank-line separated) wrapped at ``width``."""
    lines: list[str] = []
    for para in textwrap.dedent(text).strip("\n").split("\n\n"):
        if lines:
            lines.append(indent + prefix.rstrip())
        keep = para.startswith(("  ", "\t")) or "\n  " in para
        if keep:  # preformatted (a command, a config snippet): keep its lines
            lines += [indent + prefix + line for line in para.splitlines()]
            continue
        wrapped = textwrap.wrap(" ".join(para.split()), width=max(40, width - len(indent) - len(prefix)),
                                break_long_words=False, break_on_hyphens=False)
        lines += [indent + prefix + line for line in wrapped]
    return "\n".join(lines)


def dquote(value: str) -> str:
    """A double-quoted string for nginx, Apache and lighttpd (backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_value(value: str) -> str:
    """An nginx argument, quoted only when it has to be."""
    if value and not any(ch.isspace() or ch in ";{}\"'#" for ch in value):
        return value
    return dquote(value)


def apache_value(value: str) -> str:
    if value and not any(ch.isspace() or ch in "\"'#\\<>" for ch in value):
        return value
    return dquote(value)


def systemd_quote(arg: str) -> str:
    """One ExecStart= word: specifiers (%) and variables ($) escaped, quoted when needed."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(ch.isspace() or ch in "\"'\\;" for ch in escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def supervisor_command(argv: list[str]) -> str:
    """A supervisord ``command=``: shell-style quoting, ``%`` doubled (its interpolation)."""
    import shlex

    return shlex.join(argv).replace("%", "%%")
