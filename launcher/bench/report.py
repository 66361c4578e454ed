"""What a person sees: the progress of a run (it takes minutes) and the final table.

rich is used when it is installed and the stream is a terminal (imported here, lazily); otherwise
plain lines, so CI logs and pipes stay readable.
"""

from __future__ import annotations

import sys

from launcher.bench import flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

COLUMNS = ("backend", "conn", "req/s", "min-max", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
           "CPU s/1k", "peak MB", "")


def _rich_available(stream: TextIO) -> bool:
    if not getattr(stream, "isatty", lambda: False)():
        return False
    import importlib.util

    return importlib.util.find_spec("rich") is not None


# --------------------------------------------------------------------------- progress


class PlainProgress:
    """One line per finished load run and per note, on stderr."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr

    def phase(self, text: str) -> None:
        """What is happening now (not printed in plain mode)."""
        pass  # a line per phase would drown the results in a CI log

    def advance(self, steps: int = 1, line: str = "") -> None:
        """``steps`` load runs done; ``line`` summarises the last one."""
        self.done += steps
        if line:
            print(f"[{self.done}/{self.total}] {line}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """Something the user should know now (a backend failed)."""
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class RichProgress:
    """A progress bar with the current phase; finished runs are printed above it."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream or sys.stderr)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self.console, refresh_per_second=2, transient=True,
        )
        self.task = self.progress.add_task("starting", total=total)

    def phase(self, text: str) -> None:
        """Show what is happening now beside the bar."""
        self.progress.update(self.task, description=text)

    def advance(self, steps: int = 1, line: str = "") -> None:
        """Move the bar; print ``line`` above it."""
        if line:
            self.progress.console.print(line, highlight=False, markup=False)
        self.progress.advance(self.task, steps)

    def note(self, text: str) -> None:
        """Print a highlighted line above the bar."""
        self.progress.console.print(text, style="yellow", highlight=False, markup=False)

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def progress(total: int, stream: TextIO | None = None) -> PlainProgress | RichProgress:
    """The progress display for ``stream`` (stderr by default)."""
    out = stream or sys.stderr
    return RichProgress(total, out) if _rich_available(out) else PlainProgress(total, out)


# --------------------------------------------------------------------------- the table


def rows(document: dict[str, Any]) -> list[list[str]]:
    """The table's rows (strings), one per backend and concurrency level."""
    table = []
    for name, data in document["backends"].items():
        for position, row in enumerate(data["summary"]):
            rps, lat = row["rps"], row["latency_ms"]
            errors = sum(row["errors"].values())
            marks = [f"spread {rps['spread']:.0%}"] if row["disagree"] else []
            marks += [flags.LABELS.get(kind, kind) for kind in row.get("flags", {})]
            cpu = row["server_cpu_s_per_1k"]
            table.append([
                data.get("label", name) if position == 0 else "",
                str(row["concurrency"]),
                f"{rps['median']:,.0f}",
                f"{rps['min']:,.0f}-{rps['max']:,.0f}" if row["rounds"] > 1 else "-",
                f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']['median']:.2f}", f"{lat['max']:.1f}",
                f"{errors:,}",
                f"{cpu:.3f}" if cpu is not None else "-",
                f"{row['peak_rss_bytes'] / 1e6:.1f}",
                "; ".join(marks),
            ])
    return table


def header(document: dict[str, Any]) -> list[str]:
    """The lines above the table: what was measured, how."""
    s, gen = document["settings"], document["generator"]
    fidelity = "  LOW FIDELITY" if gen.get("fidelity") == "low" else ""
    lines = [
        f"serve bench {s['app']}  {s['method']} {s['path']}"
        + (f" ({s['body_bytes']:,} byte body)" if s["body_bytes"] else ""),
        f"{s['rounds']} round(s) x {s['duration_s']}s per level, warm-up {s['warmup_s']}s;"
        f" generator {gen.get('version') or gen['kind']}{fidelity}; {document['pinning']['note']}",
        "req/s: successful responses per second, median of rounds (min-max); latency: median of rounds;"
        " CPU s/1k: server CPU seconds per 1,000 responses",
    ]
    for name, data in document["backends"].items():
        front = data.get("front")
        if front:
            lines.append(f"{data.get('label', name)}: front + backend: {front['how']}")
    return lines


def footer(document: dict[str, Any]) -> list[str]:
    """The lines below the table: failures, skipped backends, notes, warnings."""
    lines = []
    for name, data in document["backends"].items():
        if data["status"] != "ok":
            lines.append(f"FAILED {data.get('label', name)}: {data['failure']}")
    lines += [f"skipped: {line}" for line in document["skipped"]]
    lines += [f"note: {line}" for line in document["notes"]]
    seen = set(lines)
    for warning in document["warnings"]:
        if not warning.startswith(tuple(f"{n} failed" for n in document["backends"])) and warning not in seen:
            lines.append(f"warning: {warning}")
    for name, data in document["backends"].items():
        # One line per backend and kind of trouble, over every level and round, so a busy machine
        # gives a handful of lines rather than one per run.
        runs = [run for rnd in data["rounds"] for run in rnd.get("runs", [])]
        kinds: dict[str, list[tuple[int, float]]] = {}
        for run in runs:
            for kind, value in run.get("flags", {}).items():
                kinds.setdefault(kind, []).append((run["concurrency"], value))
        for kind, seen_at in kinds.items():
            text = flags.describe(kind, [value for _, value in seen_at], len(runs))
            levels = ", ".join(str(level) for level in sorted({level for level, _ in seen_at}))
            lines.append(f"warning: {name}: {text.replace(' rounds', ' runs')} (at {levels} connections)")
        for message in dict.fromkeys(run["message"] for run in runs if run.get("message")):
            lines.append(f"warning: {name}: {message}")
    return list(dict.fromkeys(lines))


def plain_table(document: dict[str, Any]) -> str:
    """The whole report as aligned plain text."""
    body = rows(document)
    grid = [list(COLUMNS), *body]
    widths = [max(len(r[i]) for r in grid) for i in range(len(COLUMNS))]
    right = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
    lines = [*header(document), ""]
    for index, row in enumerate(grid):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    extra = footer(document)
    return "\n".join(lines + (["", *extra] if extra else []))


def print_report(document: dict[str, Any], stream: TextIO | None = None) -> None:
    """Print the report: a rich table on a terminal, plain text elsewhere."""
    out = stream or sys.stdout
    if not _rich_available(out):
        print(plain_table(document), file=out)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out)
    table = Table(show_edge=False, pad_edge=False)
    for index, title in enumerate(COLUMNS):
        table.add_column(title, justify="right" if 0 < index < len(COLUMNS) - 1 else "left",
                         style="bold" if index == 2 else None, no_wrap=True)
    body = rows(document)
    for row in body:
        table.add_row(*row[:-1], Text(row[-1], style="yellow"))
    natural = sum(max(len(r[i]) for r in [list(COLUMNS), *body]) + 3 for i in range(len(COLUMNS)))
    if natural > console.width:
        # Squeezed into a narrow terminal rich would cut every figure to "5,1…": plain lines instead.
        print(plain_table(document), file=out)
        return
    for line in header(document):
        console.print(line, highlight=False, markup=False)
    console.print(table)
    for line in footer(document):
        style = "red" if line.startswith("FAILED") else "yellow" if line.startswith("warning") else "dim"
        console.print(line, style=style, highlight=False, markup=False)
