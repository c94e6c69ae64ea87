"""Small pure helpers shared by the benchmarks: order statistics and plain-text/Markdown tables."""

from __future__ import annotations

import math
import os
from typing import Sequence


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct% of the values at or below it.
    With few samples p95 is the maximum (nearest rank of 95% of 7 is the 7th)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < pct <= 100:
        raise ValueError("pct must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(pct / 100 * len(ordered))
    return float(ordered[max(rank, 1) - 1])


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """'median (min–max, n=N)' for a table cell."""
    return (
        f"{fmt.format(median(values))} (min {fmt.format(min(values))}, max {fmt.format(max(values))}, n={len(values)})"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pipes, a header rule), each cell str()-ed; pasted as is into bench/RESULTS.md."""
    cells = [[str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, headers {len(headers)}")
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through the points."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need two or more (x, y) pairs")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("all x equal")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def growth_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The slope of log(y) over log(x): 1 for linear growth, 2 for quadratic."""
    return linear_fit([math.log(x) for x in xs], [math.log(y) for y in ys])[0]


TICKS = os.sysconf("SC_CLK_TCK")  # the clock ticks /proc and process accounting count in


def proc_stat(text: str) -> tuple[int, float]:
    """A /proc/<pid>/stat line read: (parent pid, CPU seconds so far, user + system). The fields after the name,
    which may hold spaces and parentheses, start after its last ")"."""
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS
