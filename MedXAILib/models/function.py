"""The model function's sliding window, described so that explainers know each window's place and share.

A model whose function runs a sliding window (MONAI's ``sliding_window_inference`` / ``SlidingWindowInferer``)
computes, on a grid padded symmetrically up to the window size where it is smaller::

    logits(v) = Σ_w g(v − o_w) · f(x[w])(v − o_w) / Σ_w g(v − o_w)        (then the padding is cropped)

with windows ``w`` at offsets ``o_w`` (MONAI's ``dense_patch_slices`` with its scan interval for the overlap) and the
importance map ``g`` (``constant`` or ``gaussian``, MONAI's ``compute_importance_map``). :class:`WindowPlan` holds
exactly those pieces, computed with MONAI's own helpers, so that an explainer can give each window its share of a
target (``W · g / N``) and place one map per window (a CAM, a layer's relevance) where the window lies
(:mod:`MedXAILib.explain.windows`).
Windows are listed in the order the inferer runs them, so the k-th layer activation captured during a real inferer
call belongs to ``plan.slices[k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass
class WindowPlan:
    """One sliding-window inference over a grid.

    Attributes:
        grid: the unpadded spatial shape of the model-grid tensor (tensor order of that tensor).
        roi: the window size (same order).
        pad: ``(before, after)`` per spatial axis, MONAI's symmetric padding up to ``roi``.
        slices: the windows, in the inferer's order, as slices of the *padded* grid.
        importance: ``roi``-shaped float32 weights ``g`` (``(*roi)``).
        overlap, mode, sigma_scale, padding_mode, cval: the inferer's settings (for the record).
    """

    grid: tuple[int, ...]
    roi: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]
    slices: list[tuple[slice, ...]]
    importance: torch.Tensor
    overlap: tuple[float, ...]
    mode: str
    sigma_scale: float | tuple[float, ...]
    padding_mode: str = "constant"
    cval: float = 0.0

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(g + a + b for g, (a, b) in zip(self.grid, self.pad))

    def describe(self) -> dict[str, object]:
        return {
            "kind": "sliding_window",
            "roi": list(self.roi),
            "overlap": list(self.overlap),
            "mode": self.mode,
            "sigma_scale": self.sigma_scale if isinstance(self.sigma_scale, float) else list(self.sigma_scale),
            "padding_mode": self.padding_mode,
            "n_windows": len(self.slices),
        }


def make_window_plan(
    grid: Sequence[int],
    roi: Sequence[int],
    overlap: float | Sequence[float] = 0.25,
    mode: str = "constant",
    sigma_scale: float | Sequence[float] = 0.125,
    padding_mode: str = "constant",
    cval: float = 0.0,
) -> WindowPlan:
    """The plan MONAI's ``sliding_window_inference`` follows for a ``grid``-shaped input (MONAI's own helpers)."""
    from monai.data.utils import compute_importance_map, dense_patch_slices, get_valid_patch_size
    from monai.inferers.utils import _get_scan_interval
    from monai.utils import ensure_tuple_rep, fall_back_tuple

    nd = len(grid)
    grid = tuple(int(g) for g in grid)
    roi_t = tuple(int(r) for r in fall_back_tuple(tuple(roi), grid))
    ov = tuple(float(o) for o in ensure_tuple_rep(overlap, nd))
    image_size = tuple(max(g, r) for g, r in zip(grid, roi_t))
    pad = tuple((max(r - g, 0) // 2, max(r - g, 0) - max(r - g, 0) // 2) for g, r in zip(grid, roi_t))
    scan = _get_scan_interval(image_size, roi_t, nd, ov)
    slices = [tuple(s) for s in dense_patch_slices(image_size, roi_t, scan, return_slice=True)]
    valid = tuple(get_valid_patch_size(image_size, roi_t))
    importance = compute_importance_map(valid, mode=mode, sigma_scale=sigma_scale, device="cpu", dtype=torch.float32)
    return WindowPlan(grid, valid, pad, slices, importance.float(), ov, str(mode), sigma_scale, str(padding_mode),
                      float(cval))


def pad_for_plan(x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """``(B, C, *grid)`` → ``(B, C, *padded)`` as the inferer pads it."""
    flat: list[int] = []
    for a, b in reversed(plan.pad):
        flat.extend([a, b])
    if not any(flat):
        return x
    mode = {"zeros": "constant"}.get(plan.padding_mode, plan.padding_mode)
    return F.pad(x, flat, mode=mode, value=plan.cval) if mode == "constant" else F.pad(x, flat, mode=mode)
