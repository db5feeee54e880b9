"""Explaining a sliding-window model function exactly, one window at a time.

When :meth:`~MedXAILib.models.Model.infer` runs a sliding window (plan ``P``, :mod:`MedXAILib.models.function`),
the explained score decomposes over the windows. With ``N(v) = Σ_w g(v − o_w)`` the inferer's normaliser on the
padded grid and ``W`` the target weights (zero on the padding, which the inferer crops)::

    S = Σ_v W(v) · Σ_w g(v − o_w) f(x[w])(v − o_w) / N(v)  =  Σ_w S_w,     S_w = Σ W_w ⊙ f(x[w]),
    W_w = (W · g / N)[w]

so every window is an ordinary network pass on ``x[w]`` with its own weighted-logit target ``W_w``, and:

- the gradient of ``S`` with respect to a window's layer activation is the gradient of ``S_w`` (CAMs: each window's
  map ``combine(A_w, ∂S_w/∂A_w)``, then blended with the inferer's weights, :meth:`WindowPlan.blend`);
- relevance that conserves ``S_w`` in each window conserves ``S`` in total (LRP: window relevances are summed at their
  positions, the blend being a linear map without bias);
- input gradients are the sum of the windows' (gradient methods simply differentiate :meth:`Model.infer`).

Windows whose ``W_w`` is zero contribute nothing and are skipped (their CAM is 0: its channel weights are 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.function import WindowPlan, pad_for_plan
from .base import ExplainContext


@dataclass
class WindowTarget:
    """One window: its slices of the padded grid, its input ``(1, C, *roi)`` and weights ``(1, N, *roi)``."""

    index: int
    slices: tuple[slice, ...]
    x: torch.Tensor
    weights: torch.Tensor


def window_targets(ctx: ExplainContext, plan: WindowPlan) -> list[WindowTarget]:
    """The windows of ``plan`` whose share of the target is non-zero, with their weights ``W_w``."""
    xp = pad_for_plan(ctx.x.detach(), plan)
    flat: list[int] = []
    for a, b in reversed(plan.pad):
        flat.extend([a, b])
    wp = torch.nn.functional.pad(ctx.weights, flat) if any(flat) else ctx.weights
    g = plan.importance.to(ctx.x.device, torch.float32)
    norm = torch.zeros(plan.padded, device=ctx.x.device)
    for sl in plan.slices:
        norm[sl] += g
    out = []
    for i, sl in enumerate(plan.slices):
        idx = (slice(None), slice(None)) + sl
        w = wp[idx] * (g / norm[sl].clamp_min(1e-12))
        if bool(w.abs().sum() > 0):
            out.append(WindowTarget(i, sl, xp[idx], w))
    return out


def window_context(ctx: ExplainContext, wt: WindowTarget) -> ExplainContext:
    """A context whose input and target are one window's (its ``logits`` run one network pass)."""
    sub = ExplainContext.__new__(ExplainContext)
    sub.model, sub.prepared, sub.target = ctx.model, ctx.prepared, ctx.target
    sub.x, sub.weights = wt.x, wt.weights
    sub.progress = ctx.progress
    sub.forward_passes = sub.backward_passes = 0
    sub.window = wt.slices
    sub.exact = False  # inside a window the function *is* one network pass
    sub.function_logits = None
    return sub
