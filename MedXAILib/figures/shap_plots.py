"""shap's own plots of a supervoxel explanation (``kernelshap``, ``partitionshap``, ``lime``).

Left: ``shap.plots.waterfall`` of the per-supervoxel values, from ``E[f] = f(baseline)`` to ``f(x)`` (the
``max_display − 1`` largest |values|, the rest summed). Right: ``shap.plots.bar`` of the per-sequence values (the sum
of each input channel's supervoxel values) when the run attributed each channel (``per_channel_groups=true``), else
of the per-supervoxel values. Supervoxel ``sv N`` is label N of the run's supervoxels (ids in C order of first
appearance on the model grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..explain.shap_import import import_shap
from .overview import _plt, _save

SUPERVOXEL_METHODS = ("kernelshap", "partitionshap", "lime")


def feature_tables(explanation: Any, channel_names: Sequence[str]) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Per-supervoxel values (summed over channels), their names, and per-sequence sums (empty when not per channel).
    """
    details = explanation.details
    values = np.asarray(details.get("feature_values", []), dtype=np.float64)
    if values.size == 0:
        raise InputError(f"{explanation.method}: this explanation holds no per-supervoxel values to plot "
                         f"(shap plots are for {', '.join(SUPERVOXEL_METHODS)} without windowing)")
    m = int(details.get("n_supervoxels", values.size))
    per_sequence: dict[str, float] = {}
    if details.get("per_channel_groups") and values.size == m * len(channel_names):
        table = values.reshape(len(channel_names), m)
        per_sequence = {str(n): float(v) for n, v in zip(channel_names, table.sum(1))}
        values = table.sum(0)
    return values, [f"sv {i}" for i in range(values.size)], per_sequence


def shap_figure(path: str | Path, explanation: Any, channel_names: Sequence[str], max_display: int = 10) -> Path:
    """Write shap's waterfall (per supervoxel) and bar (per sequence, or per supervoxel) plots as one PNG."""
    shap = import_shap()

    plt = _plt()
    values, names, per_sequence = feature_tables(explanation, channel_names)
    base = float(explanation.details.get("f_baseline", explanation.details.get("intercept", 0.0)))
    fig = plt.figure(figsize=(13, 5.5))
    ax1 = fig.add_subplot(1, 2, 1)
    plt.sca(ax1)
    shap.plots.waterfall(shap.Explanation(values=values, base_values=base, feature_names=names),
                         max_display=max_display, show=False)
    ax1.set_title(f"{explanation.method}: per-supervoxel values", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    if per_sequence:
        bar = shap.Explanation(values=np.array(list(per_sequence.values())), feature_names=list(per_sequence))
        title = "per-sequence values (sum over supervoxels)"
    else:
        bar = shap.Explanation(values=values, feature_names=names)
        title = "per-supervoxel values (run with per_channel_groups=true for sequences)"
    shap.plots.bar(bar, max_display=max_display, ax=ax2, show=False)
    ax2.set_title(title, fontsize=10)
    fig.set_size_inches(13, 5.5)
    fig.tight_layout()
    return _save(fig, path)
