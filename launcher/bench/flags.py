"""What makes a figure less trustworthy: detected per run, summarised over the rounds.

Each flag is a kind and a value (a fraction or a count).  The per-round records keep the
values; the table shows a short label; the summary says in how many rounds and how much.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

#: A share of the server's CPUs used by other processes above this is flagged (shared machine).
FOREIGN_LOAD = 0.10
#: Generator CPU use (of the CPUs it may use) above this: the generator may be the limit.
SATURATED = 0.90

#: kind -> short label for the table
LABELS = {
    "generator_saturated": "generator saturated",
    "generator_cpus_busy": "generator CPU busy",
    "foreign_load": "shared CPU",
    "status_errors": "error responses",
    "socket_errors": "socket errors",
}

_FRACTIONS = {"generator_saturated", "generator_cpus_busy", "foreign_load"}


def detect(*, generator_ratio: float, generator_threads: int, generator_cpus_busy: float | None,
           foreign_load: float | None, status_errors: int, socket_errors: int) -> dict[str, float]:
    """The flags of one run (empty when nothing is wrong)."""
    found: dict[str, float] = {}
    if generator_ratio > SATURATED:
        found["generator_saturated"] = round(generator_ratio, 3)
    elif generator_cpus_busy is not None and generator_cpus_busy > SATURATED:
        # wrk itself had room, but something else kept its CPUs busy: it may have waited for them.
        found["generator_cpus_busy"] = round(generator_cpus_busy, 3)
    if foreign_load is not None and foreign_load > FOREIGN_LOAD:
        found["foreign_load"] = round(foreign_load, 3)
    if status_errors:
        found["status_errors"] = status_errors
    if socket_errors:
        found["socket_errors"] = socket_errors
    return found


def describe(kind: str, values: Sequence[float], rounds: int = 1) -> str:
    """One sentence for ``kind`` seen with ``values`` in ``len(values)`` of ``rounds`` rounds."""
    if kind in _FRACTIONS:
        low, high = min(values), max(values)
        amount = f"{low:.0%}" if round(low, 2) == round(high, 2) else f"{low:.0%}-{high:.0%}"
    else:
        amount = f"{int(sum(values)):,}"
    where = "" if rounds <= 1 else f" in {len(values)} of {rounds} rounds"
    if kind == "generator_saturated":
        return (f"load generator saturated ({amount} of its CPUs){where}: the figure may be the generator's"
                " limit, not the server's")
    if kind == "generator_cpus_busy":
        return (f"the generator's CPUs were {amount} busy{where} with other processes running there:"
                " the generator may have waited for its CPU")
    if kind == "foreign_load":
        return f"other processes used {amount} of the server's CPUs{where} (shared machine): the figure is low"
    if kind == "status_errors":
        return (f"{amount} error responses (status >= 400){where}: only successful responses count as"
                " throughput")
    if kind == "socket_errors":
        return f"{amount} socket errors (connect/read/write/timeout){where}"
    return f"{kind}: {amount}{where}"


def summarise(per_run: Sequence[dict[str, float]]) -> dict[str, str]:
    """kind -> sentence, over the runs of one (backend, concurrency)."""
    kinds = dict.fromkeys(kind for flags in per_run for kind in flags)
    return {kind: describe(kind, [flags[kind] for flags in per_run if kind in flags], len(per_run))
            for kind in kinds}
