"""Cost before running (``explain --dry-run``): passes from the method's cost model, seconds from a small timed pass,
and the memory bound from a simulation of the passes as they will run — without running the method.

Passes: :meth:`~MedXAILib.explain.base.Method.passes` (forward and backward passes of the explained function).

Seconds. The network is timed once forward and once forward + backward (to its input) after a warm-up, on an input
of the size one network pass sees — one window of the model function's sliding window (or the whole grid) — shrunk
when larger than :data:`CALIBRATION_VOXELS` (each axis scaled alike, kept a multiple of the network's divisor) and
scaled back by the voxel count (a convolutional network's cost grows with it)::

    t_pass = t_calibration × voxels_pass / voxels_calibration;   t_function = windows × t_pass
    seconds ≈ n_forward × t_function_forward + n_backward × (t_function_forward+backward − t_function_forward)

A method that recomputes its network's segments (``memory["checkpoint"]``) pays one more forward per backward pass.

Memory. The process's resident memory now plus the simulated tensor peak (:mod:`MedXAILib.explain.recompute`): for
the methods that plan their memory (Integrated Gradients, Saliency, GradientSHAP, LRP: ``memory_plan``) the plan they
will follow — batch, checkpointed segments and the simulated peak of one pass with their buffers; for the other
methods one network pass at the method's batch (with its backward pass for gradient methods), simulated on ``meta``
tensors. Nothing of the size of the real input's activations is allocated.
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
from .base import ExplainContext, get_method, parse_params
from .recompute import meta_copy, resident_bytes, simulate

#: Calibration passes run on at most this many voxels (64³).
CALIBRATION_VOXELS = 64**3


def _placeholder_target(model: Model, volume: Volume) -> Target:
    """A target of the same shape as the default one (its values do not change the cost), made without a pass."""
    names = list(model.description.class_names)
    if model.task == "segmentation":
        c = 1 if len(names) > 1 else 0
        return Target("region", c, names[c], region=np.ones(volume.shape, dtype=bool))
    return Target("class", 0, names[0])


def _pass_shape(model: Model, x: torch.Tensor, exact: bool) -> tuple[tuple[int, ...], int]:
    """The spatial shape one network pass sees and the passes per function evaluation (windows)."""
    grid = tuple(int(s) for s in x.shape[2:])
    plan = None
    if exact:
        try:
            plan = model.window_plan(grid)
        except Exception:  # an inferer without a window plan: one pass over the whole grid is the estimate
            plan = None
    if plan is not None:
        return tuple(int(r) for r in plan.roi), len(plan.slices)
    div = model.divisor() if model.task == "segmentation" else 1
    return tuple(g + (-g) % div for g in grid), 1


def _calibration_shape(model: Model, shape: tuple[int, ...]) -> tuple[int, ...]:
    n = float(np.prod(shape))
    if n <= CALIBRATION_VOXELS or model.task != "segmentation":
        return shape
    div = model.divisor()
    f = (CALIBRATION_VOXELS / n) ** (1.0 / len(shape))
    return tuple(max(div, int(round(s * f / div)) * div) for s in shape)


def _time_passes(model: Model, channels: int, shape: tuple[int, ...]) -> tuple[float, float]:
    """Seconds of one network forward, and of one forward + backward to the input, on a ``shape`` input."""
    x = torch.randn((1, channels) + shape, generator=torch.Generator().manual_seed(0)).to(model.device)
    net = model.network
    with torch.no_grad():
        net(x)  # warm-up
    with measure(model.device) as fwd, torch.no_grad():
        net(x)
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with measure(model.device) as both, torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(net(xg).float().sum(), xg)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return fwd.seconds, both.seconds


def _simulated_pass(model: Model, channels: int, shape: tuple[int, ...], batch: int, backward: bool) -> int:
    """Simulated tensor peak (bytes) of one network pass at ``batch`` (and its backward pass to the input)."""
    net = meta_copy(model.network)

    def run() -> Any:
        x = torch.empty((batch, channels) + shape, device="meta", requires_grad=backward)
        with torch.set_grad_enabled(backward):
            out = net(x)
            return torch.autograd.grad(out.float().sum(), x) if backward else out

    return simulate(run)


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
    channels = int(x.shape[1])
    shape, windows = _pass_shape(model, x, exact)
    cal = _calibration_shape(model, shape)
    t_fwd_cal, t_both_cal = _time_passes(model, channels, cal)
    scale = float(np.prod(shape)) / float(np.prod(cal)) * windows
    t_fwd, t_both = t_fwd_cal * scale, t_both_cal * scale
    t_bwd = max(t_both - t_fwd, 0.0)

    memory: dict[str, Any] | None = None
    planner = getattr(m, "memory_plan", None)
    if planner is not None:
        ctx = ExplainContext(model, prepared, target or _placeholder_target(model, volume))
        ctx.exact = exact
        memory = planner(ctx, full).describe()
        peak = int(memory["estimated_process_peak_bytes"])
    else:
        batch = max(int(full.get(k, 1)) for k in ("batch_size", "internal_batch_size", "perturbations_per_eval")
                    if isinstance(full.get(k, 1), (int, float)))
        batch = max(1, min(batch, max(n_fwd, 1)))
        peak = resident_bytes() + _simulated_pass(model, channels, shape, batch, bool(m.needs_gradients))
    recompute = n_bwd * t_fwd if memory and memory.get("checkpoint") else 0.0
    seconds = n_fwd * t_fwd + n_bwd * t_bwd + recompute
    out: dict[str, Any] = {
        "method": m.name,
        "forward_passes": n_fwd,
        "backward_passes": n_bwd,
        "estimated_seconds": round(seconds, 2),
        "estimated_peak_memory_bytes": int(peak),
        "calibration": {"forward_s": round(t_fwd, 4), "forward_backward_s": round(t_both, 4),
                        "timed_grid": list(cal), "pass_grid": list(shape), "passes_per_function": windows},
        "model_grid": list(prepared.grid.model_shape),
        "cost_model": m.cost_model,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if memory is not None:
        out["memory"] = memory
    return out
