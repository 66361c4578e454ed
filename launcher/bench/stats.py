"""Statistics over rounds: median, min-max, spread, and when rounds disagree.

Rounds are few (3 by default), so the median is the summary (one slow round caused by another
process on a shared machine does not drag it the way it drags a mean) and min-max shows the
whole range instead of a standard deviation that three points cannot support.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

#: Rounds of one (backend, concurrency) whose throughput spread, (max - min) / median, is above
#: this are flagged: the figure is not a property of the server alone on this machine.
DISAGREE_THRESHOLD = 0.20


def median(values: Sequence[float]) -> float:
    """The median (the mean of the two middle values for an even count); ValueError when empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: 0.0 for one value or identical values; inf when the median is 0."""
    if len(values) < 2:
        return 0.0
    mid = median(values)
    gap = max(values) - min(values)
    if gap == 0:
        return 0.0
    return gap / mid if mid > 0 else float("inf")


def disagree(values: Sequence[float], threshold: float = DISAGREE_THRESHOLD) -> bool:
    """True when rounds disagree by more than ``threshold`` (see :func:`spread`)."""
    return spread(values) > threshold


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "min", "max", "spread", "n"}`` of the rounds' values."""
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "spread": 0.0, "n": 0}
    return {
        "median": median(values),
        "min": float(min(values)),
        "max": float(max(values)),
        "spread": spread(values),
        "n": len(values),
    }


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0.0 when empty)."""
    if not ordered:
        return 0.0
    if pct <= 0:
        return float(ordered[0])
    rank = -(-pct * len(ordered) // 100)  # ceil without floats drifting at exact ranks
    index = min(len(ordered), max(1, int(rank))) - 1
    return float(ordered[index])
