"""Occlusion (Zeiler & Fergus, ECCV 2014): slide a window over the input, set it to a baseline, record the drop.

Definition (the same as captum's ``Occlusion`` with the same window, stride and baseline):

- windows start at ``0, s, 2s, …`` along each model-grid axis, ``ceil((n − w) / s) + 1`` of them, so every voxel is
  covered; a last window that would run past the edge is cut at the edge;
- for each window ``W``: ``d_W = f(x) − f(x with W set to the baseline)`` (``f`` = the target score);
- the map at a voxel is the mean of ``d_W`` over the windows that cover it.

The baseline is a value in the network's input units, i.e. after the model's intensity normalisation (0 is the
background of a ``zscore_foreground`` MRI, but the mean intensity under plain ``zscore``).

Window and stride are given in millimetres and turned into model-grid voxels with the model grid's spacing
(input spacing × input shape / model shape, per axis; at least one voxel). With ``per_channel`` each input channel
(MRI sequence) is occluded on its own — ``C`` times the passes — and the map has one channel per sequence, so the engine
can report which sequence drove the target.

Speed (issue 6): the unperturbed score is computed once; masked inputs are built in a reusable batch buffer
(``x`` copied once into ``(B, C, *grid)``; each sample's window filled in place with the baseline and restored
from ``x`` after the pass), so building a batch costs only the windows' voxels; windows whose voxels already equal
the baseline (e.g. zero background of a skull-stripped MRI with baseline 0) change nothing and are skipped exactly
(``d_W = 0``); the per-window drops are spread onto the grid with one transposed convolution of a box kernel, not
with a Python loop over voxels; everything runs under ``torch.inference_mode``.

Through a sliding-window model function (the default, exact), each masked input is scored with
:class:`~MedXAILib.explain.window_cache.WindowCache`: only the windows that hold part of the target and whose input
the occluded window changed are run; the others reuse the unoccluded input's window outputs.

Memory: the batch buffer is ``batch_size × C × grid`` float32 (8 × 4 × 240·240·155 ≈ 1.1 GB for a full BraTS case on
its own grid — lower ``batch_size`` there) plus the network's activations for that batch.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MethodError
from ..models import Model, PreparedInput
from .base import ExplainContext, Method, MethodResult, register
from .window_cache import ContextScorer


def model_grid_spacing(prepared: PreparedInput, spatial_dims: int) -> np.ndarray:
    """Spacing (mm) of the model grid in tensor order: ``(K, J, I)`` in 3D, ``(J, I)`` in 2D.

    It is the input spacing × input shape / model shape per axis (the model grid covers the same physical box).
    """
    return prepared.model_spacing


def mm_to_voxels(values_mm: Sequence[float] | float, spacing: np.ndarray, what: str) -> tuple[int, ...]:
    """Millimetres → whole voxels per axis (rounded, at least 1). A single value applies to every axis."""
    vals = [float(values_mm)] if isinstance(values_mm, (int, float)) else [float(v) for v in values_mm]
    if len(vals) == 1:
        vals = vals * len(spacing)
    if len(vals) != len(spacing):
        raise MethodError(
            f"occlusion: {what} needs one value or {len(spacing)} values (mm, tensor order), got {len(vals)}"
        )
    if any(v <= 0 for v in vals):
        raise MethodError(f"occlusion: {what} must be positive millimetres, got {vals}")
    return tuple(max(1, int(round(v / s))) for v, s in zip(vals, spacing))


def window_starts(n: int, w: int, s: int) -> list[int]:
    """Window starts along one axis of length ``n`` (captum's rule: ``ceil((n − w) / s) + 1`` windows)."""
    w = min(w, n)
    count = int(math.ceil((n - w) / s)) + 1
    return [i * s for i in range(count)]


def spread_window_values(
    values: torch.Tensor, counts: Sequence[int], window: Sequence[int], stride: Sequence[int], grid: Sequence[int]
) -> torch.Tensor:
    """Mean of per-window values over the windows covering each voxel.

    Args:
        values: ``(M, *counts)`` one value per window position (M maps, e.g. channels).
        counts, window, stride: windows per axis, window size and stride (voxels).
        grid: the spatial shape to return.

    Returns:
        ``(M, *grid)`` float64: Σ_windows value / number of covering windows (0 where nothing covers).
    """
    nd = len(grid)
    conv_t = F.conv_transpose3d if nd == 3 else F.conv_transpose2d
    kernel = torch.ones((1, 1) + tuple(window), dtype=torch.float64, device=values.device)
    vals = values.to(torch.float64)[:, None]
    total = conv_t(vals, kernel, stride=tuple(stride))[:, 0]
    cover = conv_t(torch.ones_like(vals[:1]), kernel, stride=tuple(stride))[:, 0]
    crop = (slice(None),) + tuple(slice(0, g) for g in grid)
    # the output spans (count − 1)·stride + window ≥ grid voxels per axis; windows cut at the edge are cropped
    total, cover = total[crop], cover[crop]
    return torch.where(cover > 0, total / cover.clamp_min(1), torch.zeros_like(total))


def occlusion_map(
    ctx: ExplainContext,
    window: Sequence[int],
    stride: Sequence[int],
    baseline: float = 0.0,
    batch_size: int = 8,
    per_channel: bool = False,
    skip_unchanged: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Occlusion on the model grid (voxel window/stride); see the module docstring.

    Returns:
        ``(M, *grid)`` float32 map (M = C with ``per_channel``, else 1) and diagnostics.
    """
    x = ctx.x.detach()
    grid = tuple(x.shape[2:])
    n_ch = x.shape[1]
    window = tuple(min(w, g) for w, g in zip(window, grid))
    stride = tuple(int(s) for s in stride)
    starts = [window_starts(g, w, s) for g, w, s in zip(grid, window, stride)]
    counts = tuple(len(s) for s in starts)
    positions = list(np.ndindex(*counts))
    channel_sets: list[slice] = [slice(c, c + 1) for c in range(n_ch)] if per_channel else [slice(0, n_ch)]
    n_maps = len(channel_sets)
    drops = torch.zeros((n_maps, len(positions)), dtype=torch.float64)

    def region(ci: int, pos: tuple[int, ...]) -> tuple[slice, ...]:
        return (channel_sets[ci],) + tuple(
            slice(st[p], min(st[p] + w, g)) for st, p, w, g in zip(starts, pos, window, grid)
        )

    jobs: list[tuple[int, int]] = []
    skipped = 0
    for ci in range(n_maps):
        for pi, pos in enumerate(positions):
            if skip_unchanged and bool((x[(0,) + region(ci, pos)] == baseline).all()):
                skipped += 1  # occluding changes nothing: the drop is exactly 0
                continue
            jobs.append((ci, pi))

    scorer = ContextScorer(ctx, [x], batch_size)
    with torch.inference_mode():
        base_score = scorer(x)[0]
        bs = max(1, min(int(batch_size), len(jobs) or 1))
        buf = x.expand((bs,) + tuple(x.shape[1:])).clone()
        for start in range(0, len(jobs), bs):
            chunk = jobs[start : start + bs]
            regions = [region(ci, positions[pi]) for ci, pi in chunk]
            for b, reg in enumerate(regions):
                buf[(b,) + reg] = baseline
            scores = scorer(buf[: len(chunk)])
            for b, reg in enumerate(regions):
                buf[(b,) + reg] = x[(0,) + reg]
            for (ci, pi), sc in zip(chunk, scores):
                drops[ci, pi] = base_score - sc
            ctx.progress((start + len(chunk)) / max(len(jobs), 1), "occlusion: masked passes")
    maps = spread_window_values(drops.reshape((n_maps,) + counts), counts, window, stride, grid)
    details = {
        "window_voxels": list(window),
        "stride_voxels": list(stride),
        "windows": len(positions) * n_maps,
        "windows_skipped_unchanged": skipped,
        "masked_passes": len(jobs),
        "unperturbed_score": float(base_score),
        "window_cache": scorer.describe(),
    }
    return maps.float(), details


@register
class Occlusion(Method):
    """Occlusion with windows and strides in millimetres; see the module docstring."""

    name = "occlusion"
    title = "Occlusion"
    reference = "Zeiler & Fergus, ECCV 2014"
    dims = (2, 3)
    tasks = ("classification", "segmentation")
    target_kinds = ("class", "region", "voxel")
    needs_gradients = False
    display = "signed"
    params = {
        "window_mm": [32.0],
        "stride_mm": [16.0],
        "baseline": 0.0,
        "batch_size": 8,
        "per_channel": False,
        "skip_unchanged": True,
    }
    cost_model = "1 + (windows per axis product) × (C if per_channel) forward passes, batched; no backward"

    def _geometry(
        self, model: Model, prepared: PreparedInput, params: dict[str, Any]
    ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        spacing = model_grid_spacing(prepared, model.spatial_dims)
        window = mm_to_voxels(params["window_mm"], spacing, "window_mm")
        stride = mm_to_voxels(params["stride_mm"], spacing, "stride_mm")
        grid = tuple(prepared.grid.model_shape)
        n = int(np.prod([len(window_starts(g, w, s)) for g, w, s in zip(grid, window, stride)]))
        return window, stride, n

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        _, _, n = self._geometry(model, prepared, params)
        if params.get("per_channel"):
            n *= model.description.n_channels
        return (1 + n, 0)  # an upper bound: windows already at the baseline are skipped

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        if int(params["batch_size"]) < 1:
            raise MethodError("occlusion: batch_size must be at least 1")
        window, stride, _ = self._geometry(ctx.model, ctx.prepared, params)
        maps, details = occlusion_map(
            ctx,
            window,
            stride,
            baseline=float(params["baseline"]),
            batch_size=int(params["batch_size"]),
            per_channel=bool(params["per_channel"]),
            skip_unchanged=bool(params["skip_unchanged"]),
        )
        spacing = model_grid_spacing(ctx.prepared, ctx.model.spatial_dims)
        details["model_spacing_mm"] = [round(float(s), 4) for s in spacing]
        return MethodResult(maps, per_channel=bool(params["per_channel"]), details=details)
