"""Refusing explanation parameters whose cost is absurd, before any pass runs.

``ig steps=10^12`` is caught where IG builds its quadrature; the sampling methods (KernelSHAP, LIME, GradientSHAP,
SmoothGrad, occlusion windows) would instead allocate one record per sample or loop for years. From the method's own
cost model (:meth:`~MedXAILib.explain.base.Method.passes`) this module bounds what every run needs at least:

- per-pass bookkeeping: ``passes × BYTES_PER_PASS`` (a score, a mask row, an index per sample — a lower bound);
- a batch of inputs: ``min(batch, passes) × the model-grid input tensor``;

and refuses with the estimate (:func:`MedXAILib.memory.require`) when either exceeds the memory bound.
``explain --dry-run`` prints the passes without running them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MethodError
from ..memory import require
from ..models import Model
from ..volume import Volume
from .base import get_method, parse_params

#: A lower bound of what a sampling method keeps per pass (a float64 score and a few mask or index entries).
BYTES_PER_PASS = 64
#: Parameters that set how many inputs go through the network at once.
BATCH_KEYS = ("batch_size", "internal_batch_size")


def check_budget(model: Model, volume: Volume, method: str, params: dict[str, Any] | None = None) -> None:
    """Raise :class:`~MedXAILib.errors.MethodError` when ``method`` with ``params`` cannot fit in memory.

    Args:
        model: the model to explain; volume: its input ``(C, K, J, I)``.
        method: a registered method name; params: its ``key=value`` parameters (strings are cast as ``explain`` does).
    """
    m = get_method(method)
    full = {**m.params, **parse_params(m, params or {})}
    d = model.description
    grid = (d.preprocessing or {}).get("input_size") or (volume.shape[1:] if d.spatial_dims == 2 else volume.shape)
    try:
        prepared = model.prepare(volume)
        grid = tuple(prepared.grid.model_shape)
        n_fwd, n_bwd = m.passes(model, prepared, full)
    except (TypeError, ValueError, OverflowError):
        return  # parameters of the wrong type are refused by the method's own check, with its message
    passes = int(n_fwd) + int(n_bwd)
    what = f"{m.name} ({passes} passes)"
    require(float(passes) * BYTES_PER_PASS, what, "use fewer samples or steps, or larger windows", MethodError)
    tensor = float(np.prod(grid)) * d.n_channels * 4
    for key in BATCH_KEYS:
        value = full.get(key)
        if isinstance(value, (int, float)) and value > 1:
            batch = min(float(value), float(max(passes, 1)))
            require(batch * tensor * 3, f"{m.name} with {key}={value} ({batch:.0f} inputs of {list(grid)} at once)",
                    f"use a smaller {key}", MethodError)
