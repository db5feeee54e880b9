"""Scoring perturbed inputs on a coarser grid: the speed/agreement trade-off shared by Score-CAM and KernelSHAP/LIME.

Perturbation methods spend their time in masked forward passes. With ``scale < 1`` the masked inputs are resampled
(linear, align_corners=False, over the same physical box) to a grid ``scale`` times the model grid per axis, its
sizes rounded to the network's divisor, and the target's weights are resampled the same way and multiplied by the
voxel-count ratio so that a region score keeps its scale (a sum of logits); class weights are unchanged. A pass then
costs about ``scale^dims`` of a full one (1/8 in 3D at ``scale = 0.5``).

It is an approximation of the explained function, so every method that uses it reports the error it measured:
:func:`rescore_error` re-scores a few of the inputs on the full grid and compares the score *differences* the
method uses (to a reference input, e.g. the baseline) at both resolutions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MethodError
from ..preprocessing import resize
from .base import ExplainContext


def check_scale(method: str, name: str, value: float) -> None:
    if not 0 < float(value) <= 1:
        raise MethodError(f"{method}: {name} must be in (0, 1] (1 = masked passes on the full model grid), got {value}")


class CoarseScorer:
    """Target scores of ``(B, C, *model grid)`` inputs, computed on a grid ``scale`` times the model grid.

    Attributes:
        grid: the model grid; low: the coarse grid, or None when ``scale`` leaves the grid unchanged.
        weights: the target weights on the grid the network sees.
    """

    def __init__(self, ctx: ExplainContext, scale: float = 1.0) -> None:
        self.ctx = ctx
        self.grid = tuple(int(g) for g in ctx.x.shape[2:])
        self.low: tuple[int, ...] | None = None
        if scale < 1.0:
            div = ctx.model.divisor()
            low = tuple(max(div, int(round(g * scale / div)) * div) for g in self.grid)
            if low != self.grid:
                self.low = low
        w = ctx.weights
        if self.low is not None and w.ndim > 2:
            ratio = float(np.prod(self.grid)) / float(np.prod(self.low))
            w = resize(w, self.low, "linear") * ratio
        self.weights = w

    def to_grid(self, batch: torch.Tensor) -> torch.Tensor:
        """A model-grid batch resampled to the grid the network sees (unchanged when not coarse)."""
        return batch if self.low is None else resize(batch, self.low, "linear")

    def score_on_grid(self, batch: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of a batch already on the scoring grid (see :meth:`to_grid`); counts B passes."""
        return (self.ctx.logits(batch) * self.weights).flatten(1).sum(1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of a model-grid batch ``(B, C, *grid)``."""
        return self.score_on_grid(self.to_grid(batch))

    def describe(self) -> list[int]:
        return list(self.low or self.grid)


def rescore_error(low: torch.Tensor, full: torch.Tensor, what: str) -> dict[str, Any]:
    """Compare score differences measured on the coarse and on the full grid.

    Args:
        low, full: ``(m,)`` float64 score differences (each input's score minus the method's reference score) of the
            same ``m`` inputs, on the coarse grid and on the full grid.
        what: a description of the differences, for the report.

    Returns:
        ``score_relative_error`` ``‖low − full‖ / ‖full‖``, ``sign_agreement`` (share of equal signs) and the method.
    """
    low, full = low.double().reshape(-1), full.double().reshape(-1)
    rel = float((low - full).norm() / full.norm().clamp_min(1e-30))
    signs = float((torch.sign(low) == torch.sign(full)).double().mean()) if full.numel() else 1.0
    return {
        "inputs_rescored": int(full.numel()),
        "score_relative_error": round(rel, 6),
        "sign_agreement": round(signs, 6),
        "method": f"{full.numel()} inputs re-scored on the full grid; ‖d_low − d_full‖ / ‖d_full‖ of {what}",
    }
