"""Explaining a sliding-window model function exactly, one window at a time.

When :meth:`~MedXAILib.models.Model.infer` runs a sliding window (plan ``P``, :mod:`MedXAILib.models.function`),
the explained score decomposes over the windows. With ``N(v) = Σ_w g(v − o_w)`` the inferer's normaliser on the
padded grid and ``W`` the target weights (zero on the padding, which the inferer crops)::

    S = Σ_v W(v) · Σ_w g(v − o_w) f(x[w])(v − o_w) / N(v)  =  Σ_w S_w,     S_w = Σ W_w ⊙ f(x[w]),
    W_w = (W · g / N)[w]

so every window is an ordinary network pass on ``x[w]`` with its own weighted-logit target ``W_w`` (its *share*).
With test-time mirroring (nnU-Net) a window's function is the mean of P passes over flipped copies, so pass ``p``
gets ``flip_p(W_w) / P``; with F folds averaged, each fold's network gets ``1/F`` of that. Then:

- the gradient of ``S`` with respect to a window's layer activation is the gradient of its share (CAMs: the sum of
  the per-call maps ``combine(A_c, ∂S/∂A_c)``, each placed at its window, :mod:`MedXAILib.explain.calls`);
- relevance that conserves ``S_w`` in each window conserves ``S`` in total (LRP: window relevances are summed at their
  positions, the blend being a linear map without bias);
- input gradients are the sum of the windows' (gradient methods simply differentiate :meth:`Model.infer`).

Windows whose ``W_w`` is zero contribute nothing and are skipped (their CAM is 0: its channel weights are 0); the
skip is by the bounding box of the target's weights, so a window inside it with a zero share is computed, at no
harm but its cost.

:class:`CallWindows` assigns the network calls recorded during a real run of the function to these windows and
passes — in the inferer's order, ``sw_batch_size`` windows per call (MONAI) or one call per mirrored pass
(nnU-Net) — and checks each call's input against the window it should be (shape and checksum); a function whose
calls do not match is handled by the generic replay of :mod:`MedXAILib.explain.calls` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

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


def window_weights(weights: torch.Tensor, plan: WindowPlan) -> dict[int, torch.Tensor]:
    """Each window's share ``W_w = (W · g / N)[w]`` ``(1, N, *roi)`` of target weights ``(1, N, *grid)``, by window
    index, for the windows that meet the bounding box of the target's non-zero weights (the others' shares are 0;
    a window inside the box may still get an all-zero share)."""
    flat: list[int] = []
    for a, b in reversed(plan.pad):
        flat.extend([a, b])
    wp = torch.nn.functional.pad(weights, flat) if any(flat) else weights
    g = plan.importance.to(weights.device, torch.float32)
    norm = torch.zeros(plan.padded, device=weights.device)
    for sl in plan.slices:
        norm[sl] += g
    ratio = wp / norm.clamp_min(1e-12)  # W / N, once for all windows
    nonzero = (wp != 0).any(dim=1)[0]  # (*padded) bool: where the target has weight
    box = []  # per axis, the first and last index with weight (windows outside the box get no share)
    for axis in range(nonzero.ndim):
        hits = torch.nonzero(nonzero.any(dim=tuple(a for a in range(nonzero.ndim) if a != axis))).flatten()
        box.append((int(hits[0]), int(hits[-1])) if hits.numel() else (1, 0))
    out: dict[int, torch.Tensor] = {}
    for i, sl in enumerate(plan.slices):
        if all(s.start <= hi and s.stop > lo for s, (lo, hi) in zip(sl, box)):
            out[i] = ratio[(slice(None), slice(None)) + sl] * g
    return out


def window_targets(ctx: ExplainContext, plan: WindowPlan) -> list[WindowTarget]:
    """The windows of ``plan`` whose share of the target is non-zero, with their weights ``W_w``."""
    xp = pad_for_plan(ctx.x.detach(), plan)
    return [WindowTarget(i, plan.slices[i], xp[(slice(None), slice(None)) + plan.slices[i]], w)
            for i, w in window_weights(ctx.weights, plan).items()]


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


# ---- network calls of a sliding window -------------------------------------------------------------------------
Unit = tuple[int, tuple[int, ...]]  # (window index, flipped axes of the pass)


@dataclass
class CallWindows:
    """The windows and mirrored passes each recorded network call ran (see the module docstring).

    Attributes:
        plan: the sliding window. passes: the flips of the P mirrored passes, in order (``[()]`` without).
        folds: F, the number of networks whose outputs are averaged (only one holds the explained layer).
        units: per call, one ``(window, flipped axes)`` per batch element.
        squeeze: the network is 2D over one-slice windows (nnU-Net 2d): the slice axis is dropped from inputs.
        xp: the padded input ``(1, C, *padded)``.
    """

    plan: WindowPlan
    passes: list[tuple[int, ...]]
    folds: int
    units: list[list[Unit]]
    squeeze: bool
    xp: torch.Tensor

    def _to_call(self, t: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        """A window-shaped ``(B, M, *roi)`` tensor as the network call sees it (slice axis dropped, flipped)."""
        t = t[:, :, 0] if self.squeeze else t
        return torch.flip(t, [a + 2 for a in axes]) if axes else t

    def _from_call(self, t: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        t = torch.flip(t, [a + 2 for a in axes]) if axes else t
        return t[:, :, None] if self.squeeze else t

    def inputs(self, k: int) -> torch.Tensor:
        """The input of call ``k``, ``(B, C, *call spatial)``, cut from the padded input."""
        return torch.cat([self._to_call(self.xp[(slice(None), slice(None)) + self.plan.slices[w]], axes)
                          for w, axes in self.units[k]])

    def shares(self, weights: torch.Tensor, out_shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        """Each call's share ``∂S/∂out`` for target weights ``(1, N, *grid)``: ``flip(W_w) / (P · F)`` per unit."""
        per_window = window_weights(weights, self.plan)
        scale = 1.0 / (len(self.passes) * self.folds)
        out = []
        for unit, shape in zip(self.units, out_shapes):
            parts = []
            for w, axes in unit:
                if w in per_window:
                    parts.append(self._to_call(per_window[w], axes) * scale)
                else:
                    parts.append(torch.zeros((1,) + tuple(shape[1:]), device=weights.device))
            out.append(torch.cat(parts).reshape(shape))
        return out

    def canvas(self) -> torch.Tensor:
        """A zero map ``(1, *padded)`` to :meth:`add` per-call maps to."""
        return torch.zeros((1,) + self.plan.padded, device=self.xp.device)

    def add(self, acc: torch.Tensor, k: int, m: torch.Tensor) -> None:
        """Add call ``k``'s maps ``(B, 1, *call spatial)`` at their windows, flipped back."""
        for b, (w, axes) in enumerate(self.units[k]):
            acc[(slice(None),) + self.plan.slices[w]] += self._from_call(m[b:b + 1].float(), axes)[0]

    def crop(self, acc: torch.Tensor) -> torch.Tensor:
        """``(1, *padded)`` → ``(1, *grid)``: the adjoint of the inferer's padding — a crop for constant padding;
        reflect / replicate padding folds the border's maps back onto the grid voxels it copied."""
        plan = self.plan
        if plan.padding_mode in ("constant", "zeros") or not any(a or b for a, b in plan.pad):
            return acc[(slice(None),) + tuple(slice(a, a + g) for g, (a, _) in zip(plan.grid, plan.pad))]
        x0 = torch.zeros((1, 1) + tuple(plan.grid), dtype=acc.dtype, device=acc.device, requires_grad=True)
        with torch.enable_grad():
            (folded,) = torch.autograd.grad(pad_for_plan(x0, plan), x0, acc[None])
        return folded[0]


def match_calls(plan: WindowPlan, passes: list[tuple[int, ...]], folds: int, x: torch.Tensor,
                calls: Sequence[Any]) -> CallWindows | None:
    """Assign recorded calls (each with ``in_shape`` and ``checksum``) to the plan's windows in the inferer's order;
    None unless every call's input is exactly the window (and pass) it is assigned to."""
    n, p_count = len(plan.slices), len(passes)
    units: list[list[Unit]] = []
    w = p = 0
    for call in calls:
        batch = int(call.in_shape[0])
        if p_count > 1 and batch != 1:
            return None
        unit: list[Unit] = []
        for _ in range(batch):
            if w >= n:
                return None
            unit.append((w, passes[p]))
            p += 1
            if p == p_count:
                p, w = 0, w + 1
        units.append(unit)
    if w != n or p != 0 or not calls:
        return None
    if any(tuple(c.out_shape[2:]) != tuple(c.in_shape[2:]) for c in calls):
        return None  # the network changes the resolution: shares are not window-shaped
    squeeze = len(calls[0].in_shape) == len(plan.roi) + 1 and plan.roi[0] == 1
    layout = CallWindows(plan, list(passes), int(folds), units, squeeze, pad_for_plan(x.detach(), plan))
    spatial = tuple(plan.roi[1:] if squeeze else plan.roi)
    for call, unit in zip(calls, units):  # each call's input is its windows (sums are blind to the flips)
        total = sum(float(layout.xp[(slice(None), slice(None)) + plan.slices[w]].sum(dtype=torch.float64))
                    for w, _ in unit)
        shape = (len(unit), int(layout.xp.shape[1])) + spatial
        if shape != tuple(call.in_shape) or abs(total - call.checksum) > 1e-9 * max(1.0, abs(total)):
            return None
    return layout
