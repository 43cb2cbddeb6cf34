"""The fleet benchmarks' statistics: nearest-rank percentiles and the summaries built on them."""

from __future__ import annotations

import pytest

from benchmarks.fleet.stats import Result, percentile, summarize


def test_a_percentile_is_always_a_measured_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_with_fewer_than_a_hundred_values_p99_is_the_maximum() -> None:
    values = [5.0, 1.0, 9.0, 7.0]
    assert percentile(values, 99) == 9.0
    assert percentile([4.2], 1) == 4.2


def test_percentiles_of_nothing_or_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 0)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_a_summary_gives_count_median_p99_and_maximum_rounded() -> None:
    assert summarize([1.04, 2.06, 30.0]) == {"n": 3, "p50": 2.1, "p99": 30.0, "max": 30.0}
    assert summarize([]) == {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}


def test_a_result_has_the_shared_contracts_shape() -> None:
    result = Result("demo", "Demo", "Q?", "M.")
    result.table("t", ["N", "p50 ms"], [(10, 1.5)])
    result.goal("p99", "<= 50 ms", "31 ms", met=True)
    data = result.to_dict()
    assert set(data) >= {
        "name",
        "title",
        "question",
        "method",
        "machine",
        "started_at",
        "duration_s",
        "tables",
        "goals",
        "notes",
    }
    assert set(data["machine"]) == {"cpus", "load_before", "load_after", "python"}
    assert len(data["machine"]["load_before"]) == 3
    assert data["tables"] == [{"title": "t", "columns": ["N", "p50 ms"], "rows": [[10, 1.5]]}]
    assert data["goals"][0]["met"] is True
