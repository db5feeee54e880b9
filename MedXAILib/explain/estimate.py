"""Cost before running: passes from the method's cost model, seconds and memory from one calibration pass.

The calibration times one forward and one forward + backward pass of the model on the prepared input (after a
warm-up), and measures the process's peak RSS over them. The estimate is::

    seconds ≈ n_forward_only × t_forward + n_backward × (t_forward+backward − t_forward)
    peak    ≈ the calibration's peak (methods that batch passes scale it by their batch size)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..models import Model
from ..resources import measure
from ..targets import Target
from ..volume import Volume
from .base import get_method, parse_params
from .engine import MAX_WHOLE_GRID_VOXELS


def estimate_cost(
    model: Model, volume: Volume, method: str, target: Target | None = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Estimate passes, seconds and peak memory (bytes) of ``explain`` without running the method."""
    m = get_method(method)
    raw = dict(params or {})
    exact = str(raw.pop("exact", True)).lower() not in ("0", "false", "no", "off")
    full = {**m.params, **parse_params(m, raw)}
    prepared = model.prepare(volume)
    n_fwd, n_bwd = m.passes(model, prepared, full)
    x = prepared.tensor
    # as the engine runs it: the model function (exact), else one whole-grid pass (or patches above its limit)
    sliding = model.task == "segmentation" and int(np.prod(x.shape[2:])) > MAX_WHOLE_GRID_VOXELS

    def run(t: torch.Tensor) -> torch.Tensor:
        return model.infer(t) if exact or sliding else model.network_pass(t)

    with torch.no_grad():
        run(x)  # warm-up
    with measure(model.device) as fwd:
        with torch.no_grad():
            run(x)
    with measure(model.device) as both:
        xg = x.detach().clone().requires_grad_(True)
        out = run(xg)
        out.float().sum().backward()
    t_fwd = fwd.seconds
    t_bwd = max(both.seconds - t_fwd, 0.0)
    seconds = n_fwd * t_fwd + n_bwd * t_bwd
    return {
        "method": m.name,
        "forward_passes": n_fwd,
        "backward_passes": n_bwd,
        "estimated_seconds": round(seconds, 2),
        "estimated_peak_memory_bytes": both.peak_rss_bytes,
        "calibration": {"forward_s": round(t_fwd, 4), "forward_backward_s": round(both.seconds, 4)},
        "model_grid": list(prepared.grid.model_shape),
        "cost_model": m.cost_model,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
