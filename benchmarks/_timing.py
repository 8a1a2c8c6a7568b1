"""Timing helper shared by the benchmark scripts."""

import time
from collections.abc import Callable


def best_time(function: Callable[[], object], repeats: int = 5) -> float:
    """Best wall-clock seconds of ``repeats`` calls (the least disturbed by other load on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best
