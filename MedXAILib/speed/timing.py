"""Timing one call: the median wall time of several runs after a warm-up, and the peak resident memory.

Definitions:
    - a *run* is one call of the timed function; its wall time is ``time.perf_counter`` around the call (seconds);
    - the *warm-up* runs (default 1) are made first and not counted (they load kernels and grow the allocator);
    - ``median_s`` is the median of the counted runs (at least 3 in a benchmark);
    - ``peak_bytes`` is the largest peak resident set size (Linux ``VmHWM``, reset before each run through
      :func:`MedXAILib.resources.measure`) over the counted runs. It is the whole process's peak, so it includes the
      models and inputs the benchmark holds; compare it between rows of the same case, not as a method's own cost.
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from ..resources import measure


@dataclass
class Timing:
    """The counted run times (s), the peak RSS (bytes, None where unknown) and the last run's result."""

    times: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    result: Any = None

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.times)) if self.times else float("nan")

    @property
    def peak_mb(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / 2**20


def time_call(fn: Callable[[], Any], runs: int = 3, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; see the module docstring.

    Raises:
        ValueError: ``runs`` < 1 or ``warmup`` < 0.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"time_call needs runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    result: Any = None
    for _ in range(warmup):
        result = fn()
    timing = Timing()
    for _ in range(runs):
        result = None  # let the previous result go before measuring the next run's memory
        gc.collect()
        with measure() as m:
            result = fn()
        timing.times.append(m.seconds)
        if m.peak_rss_bytes is not None:
            timing.peak_bytes = max(timing.peak_bytes or 0, m.peak_rss_bytes)
    timing.result = result
    return timing


def time_interleaved(
    fns: list[Callable[[], Any]], runs: int = 3, warmup: int = 1, min_total_s: float = 0.0, max_runs: int = 51
) -> list[Timing]:
    """Time several calls whose ratios matter, alternating them run by run (a, b, c, b, c, a, c, a, b, …).

    On a shared machine the load drifts over minutes; interleaving puts every call's runs under the same drift, so
    the ratios of the medians are fair even when the absolute times are not. The order rotates each round, so a call
    never always runs right after the same one (e.g. after one that freed gigabytes). Warm-ups are made first.
    With ``min_total_s`` > 0, calls of a few milliseconds get more runs (up to ``max_runs``) so that the timed runs
    of the group take about that long: a median of 3 runs of 15 ms moves by the scheduler's noise.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"time_interleaved needs runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    out = [Timing() for _ in fns]
    group_s = 0.0
    for fn in fns:
        for _ in range(warmup):
            with measure() as m:
                fn()
            group_s += m.seconds / max(warmup, 1)
    if min_total_s > 0 and group_s > 0:
        runs = max(runs, min(max_runs, int(min_total_s / group_s) + 1))
    n = len(fns)
    for r in range(runs):
        for i in range(n):  # the order rotates every round, so no call always follows the same one
            fn, timing = fns[(i + r) % n], out[(i + r) % n]
            gc.collect()
            with measure() as m:
                timing.result = fn()
            timing.times.append(m.seconds)
            if m.peak_rss_bytes is not None:
                timing.peak_bytes = max(timing.peak_bytes or 0, m.peak_rss_bytes)
    return out
