"""Cohort benchmark of explanation methods: units of (case, method), a concurrent-safe store, and a report.

- :mod:`.runner` — :class:`BenchmarkSettings`, :func:`run_benchmark` (this process, a local process pool or a Dask
  cluster);
- :mod:`.units` — :func:`compute_unit` (the independent unit of work, computed without writing) and
  :func:`commit_unit`, shared by the runner and the Dask executor;
- :mod:`.distributed` — the Dask executor: units go to the workers, records come back and the client commits them;
- :mod:`.store` — one atomically written JSON record (and heat map) per unit;
- :mod:`.report` — ``cases.csv``, ``summary.csv``, ``folds.csv`` and a self-contained ``report.html``.
"""

from __future__ import annotations

from .report import aggregate, write_outputs
from .runner import DEFAULT_METRICS, BenchmarkSettings, plan, run_benchmark
from .store import UnitStore, unit_key
from .units import commit_unit, compute_unit, run_unit

__all__ = [
    "DEFAULT_METRICS",
    "BenchmarkSettings",
    "UnitStore",
    "aggregate",
    "commit_unit",
    "compute_unit",
    "plan",
    "run_benchmark",
    "run_unit",
    "unit_key",
    "write_outputs",
]
