"""Statistics over rounds and the flags that qualify a figure: no server, no wrk."""

from __future__ import annotations

import math

import pytest

from launcher.bench import flags, stats


def test_median_odd_and_even() -> None:
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 3, 2]) == 2.5
    assert stats.median([7]) == 7


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        stats.median([])


def test_summarize_gives_median_and_min_max() -> None:
    summary = stats.summarize([100.0, 90.0, 110.0])
    assert summary == {"median": 100.0, "min": 90.0, "max": 110.0, "spread": pytest.approx(0.2), "n": 3}


def test_summarize_of_no_rounds_is_zeros() -> None:
    assert stats.summarize([])["n"] == 0


def test_spread_is_range_over_median() -> None:
    assert stats.spread([80, 100, 120]) == pytest.approx(0.4)
    assert stats.spread([5]) == 0.0
    assert stats.spread([5, 5, 5]) == 0.0
    assert math.isinf(stats.spread([0, 0, 10]))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([100, 100, 100], False),
        ([100, 110, 120], False),  # 20/110 = 18%
        ([100, 100, 121], True),  # 21/100 = 21%
        ([80, 100], True),  # 20/90 = 22%
        ([1000], False),  # one round cannot disagree
    ],
)
def test_disagreement_above_twenty_percent(values: list[float], expected: bool) -> None:
    assert stats.disagree(values) is expected


def test_disagreement_threshold_is_adjustable() -> None:
    assert stats.disagree([100, 105], threshold=0.01)
    assert not stats.disagree([100, 105], threshold=0.10)


def test_percentile_nearest_rank() -> None:
    data = list(range(1, 101))
    assert stats.percentile(data, 50) == 50
    assert stats.percentile(data, 99) == 99
    assert stats.percentile(data, 100) == 100
    assert stats.percentile([5.0], 99) == 5.0
    assert stats.percentile([], 50) == 0.0


def test_flags_detect_only_what_is_wrong() -> None:
    clean = flags.detect(generator_ratio=0.2, generator_threads=1, generator_cpus_busy=0.3, foreign_load=0.01,
                         status_errors=0, socket_errors=0)
    assert clean == {}
    found = flags.detect(generator_ratio=0.95, generator_threads=1, generator_cpus_busy=0.99, foreign_load=0.3,
                         status_errors=12, socket_errors=3)
    assert set(found) == {"generator_saturated", "foreign_load", "status_errors", "socket_errors"}


def test_busy_generator_cpu_is_flagged_when_wrk_itself_is_not_saturated() -> None:
    found = flags.detect(generator_ratio=0.2, generator_threads=1, generator_cpus_busy=0.97, foreign_load=None,
                         status_errors=0, socket_errors=0)
    assert list(found) == ["generator_cpus_busy"]


def test_flags_summarised_over_rounds() -> None:
    text = flags.summarise([{"foreign_load": 0.31}, {}, {"foreign_load": 0.37}])
    assert text["foreign_load"].startswith("other processes used 31%-37% of the server's CPUs in 2 of 3 rounds")
    errors = flags.summarise([{"status_errors": 10}, {"status_errors": 5}])
    assert "15 error responses" in errors["status_errors"]
