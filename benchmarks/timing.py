"""Timing helper shared by the report benchmarks: p50 and p95 of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(function: Callable[[], T], repeat: int) -> tuple[float, float, T]:
    """p50 and p95 in ms of ``repeat`` calls (at least one), and the last result."""
    samples: list[float] = []
    for _ in range(max(repeat, 1)):
        started = time.perf_counter()
        result = function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[max(0, -(-95 * len(samples) // 100) - 1)]
    return statistics.median(samples), p95, result
