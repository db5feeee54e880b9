"""Cohort benchmark of explanation methods: units of (case, method), a concurrent-safe store, and a report.

- :mod:`.runner` — :class:`BenchmarkSettings`, :func:`run_benchmark` (local process pool), :func:`run_unit`
  (the independent, idempotent unit of work that a Dask or Ray worker could run unchanged);
- :mod:`.store` — one atomically written JSON record (and heat map) per unit;
- :mod:`.report` — ``cases.csv``, ``summary.csv``, ``folds.csv`` and a self-contained ``report.html``.
"""

from __future__ import annotations

from .report import aggregate, write_outputs
from .runner import DEFAULT_METRICS, BenchmarkSettings, plan, run_benchmark, run_unit
from .store import UnitStore, unit_key

__all__ = [
    "DEFAULT_METRICS",
    "BenchmarkSettings",
    "UnitStore",
    "aggregate",
    "plan",
    "run_benchmark",
    "run_unit",
    "unit_key",
    "write_outputs",
]
