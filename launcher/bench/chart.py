"""The PNG chart: throughput and p99 latency against concurrency, one line per backend.

matplotlib comes with the ``bench`` extra and is imported here only, with the Agg backend (no
display needed).
"""

from __future__ import annotations

from launcher.errors import OptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def require() -> None:
    """Raise now (before a long run) when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise OptionError("--png needs matplotlib: pip install 'wsgi-launcher[bench]'")


def draw(document: dict[str, Any], path: str) -> None:
    """Write the chart of ``document`` (see :mod:`launcher.bench.results`) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    levels: set[int] = set()
    for name, data in document["backends"].items():
        rows = data["summary"]
        if not rows:
            continue
        xs = [row["concurrency"] for row in rows]
        levels.update(xs)
        med = [row["rps"]["median"] for row in rows]
        low = [row["rps"]["median"] - row["rps"]["min"] for row in rows]
        high = [row["rps"]["max"] - row["rps"]["median"] for row in rows]
        # "fastcgi (nginx)": a backend loaded through a front server is charted as front + backend
        label = data.get("label", name) + ("" if data["status"] == "ok" else " (failed)")
        ax_rps.errorbar(xs, med, yerr=[low, high], marker="o", capsize=3, label=label)
        ax_p99.plot(xs, [row["latency_ms"]["p99"]["median"] for row in rows], marker="o", label=label)
    for ax, title, unit in ((ax_rps, "throughput (successful responses)", "requests/s"),
                            (ax_p99, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(levels) or [1])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend()
    s, m = document["settings"], document["machine"]
    low_fi = " - LOW FIDELITY (Python generator)" if document["generator"].get("fidelity") == "low" else ""
    fig.suptitle(
        f"serve bench {s['app']} {s['method']} {s['path']} - median of {s['rounds']} round(s) x {s['duration_s']}s,"
        f" bars min-max{low_fi}\n{m['cpu_count']} CPUs {m['cpu_model']}, Python {m['python']};"
        f" {document['pinning']['note']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
