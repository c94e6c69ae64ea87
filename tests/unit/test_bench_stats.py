"""The benchmarks' pure helpers (bench/stats.py): no broker, no timing."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from stats import TICKS, growth_exponent, linear_fit, median, percentile, proc_stat, spread, table  # noqa: E402


def test_median_odd_and_even():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7]) == 7
    with pytest.raises(ValueError):
        median([])


def test_percentile_nearest_rank():
    values = list(range(1, 21))  # 1..20
    assert percentile(values, 95) == 19
    assert percentile(values, 50) == 10
    assert percentile(values, 100) == 20
    assert percentile([5, 1, 3, 2, 4, 9, 7], 95) == 9  # few samples: p95 is the maximum
    with pytest.raises(ValueError):
        percentile([], 95)
    with pytest.raises(ValueError):
        percentile([1], 0)


def test_spread_cell():
    assert spread([1.0, 2.0, 4.0]) == "2.0 (min 1.0, max 4.0, n=3)"


def test_table_markdown():
    text = table(["a", "b"], [[1, "x|y"], ["", 2.5]])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |", "|  | 2.5 |"]
    with pytest.raises(ValueError):
        table(["a"], [[1, 2]])


def test_linear_fit_and_growth_exponent():
    slope, intercept = linear_fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert slope == pytest.approx(2) and intercept == pytest.approx(1)
    assert growth_exponent([10, 100, 1000], [0.5, 5, 50]) == pytest.approx(1)
    assert growth_exponent([10, 100, 1000], [1, 100, 10000]) == pytest.approx(2)
    with pytest.raises(ValueError):
        linear_fit([1], [1])


def test_a_proc_stat_line_gives_the_parent_and_the_cpu_even_with_a_name_holding_spaces_and_parentheses():
    line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 900 0 0 0 " + f"{3 * TICKS} {TICKS} 0 0 20 0 1 0 100 0 0"
    assert proc_stat(line) == (17, 4.0)
