"""Model-free control maps: what an explanation must beat before it means anything.

- ``random`` — a seeded random map on the model grid. ``smooth_mm = 0``: independent uniform noise in [0, 1) per voxel;
  ``smooth_mm > 0``: standard normal noise smoothed by a Gaussian of ``smooth_mm`` millimetres (σ, per axis through the
  model grid spacing) and min-max scaled to [0, 1] — blobs of about the size of real heat maps, the fairer control for
  localisation and SSIM-based metrics (Quantus's guidance: always include a random control; Arun et al. 2021 used the
  SSIM of random map pairs as their pass threshold). The engine brings it onto the input grid by linear interpolation
  like every map, which smooths white noise slightly where the model grid is coarser than the input.
- ``edges`` — the input's gradient magnitude in intensity per millimetre, ``sqrt(Σ_axes (∂(G_σ * x)/∂u / Δu)²)``
  summed over channels (Gaussian derivative, σ = ``sigma_mm``, at least half a model-grid voxel). Adebayo et al.
  (NeurIPS 2018) showed that several saliency methods look like an edge detector; a method whose map is close to
  this one says little about the model.

Neither runs the network: cost is 0 forward and 0 backward passes (the engine may still make one prediction to
resolve a default target).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, PreparedInput
from .base import ExplainContext, Method, MethodResult, register
from .perturbation import model_grid_spacing


class _Control(Method):
    dims = (2, 3)
    tasks = ("classification", "segmentation")
    target_kinds = ("class", "region", "voxel")
    needs_gradients = False

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        return (0, 0)


def random_map(shape: tuple[int, ...], spacing: np.ndarray, seed: int = 0, smooth_mm: float = 0.0) -> np.ndarray:
    """A seeded random map of ``shape`` (spatial, tensor order) as float32 in [0, 1]; see the module docstring."""
    rng = np.random.default_rng(int(seed))
    if smooth_mm <= 0:
        return rng.random(shape, dtype=np.float32)
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape), sigma=[smooth_mm / s for s in spacing], mode="wrap")
    lo, hi = float(noise.min()), float(noise.max())
    return ((noise - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


@register
class RandomMap(_Control):
    """A seeded random map: the control every evaluation needs."""

    name = "random"
    title = "Random map (control)"
    reference = "control map (Adebayo et al., NeurIPS 2018; Arun et al., Radiology: AI 2021)"
    display = "positive"
    params = {"seed": 0, "smooth_mm": 0.0}
    cost_model = "no model passes (noise generation only)"

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        if float(params.get("smooth_mm", 0.0)) < 0:
            raise MethodError("random: smooth_mm must be ≥ 0 (0 = white noise)")

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        grid = tuple(ctx.x.shape[2:])
        spacing = model_grid_spacing(ctx.prepared, ctx.model.spatial_dims)
        arr = random_map(grid, spacing, int(params["seed"]), float(params["smooth_mm"]))
        maps = torch.from_numpy(arr)[None].to(ctx.x.device)
        return MethodResult(maps, details={"seed": int(params["seed"]), "smooth_mm": float(params["smooth_mm"])})


def edge_map(x: np.ndarray, spacing: np.ndarray, sigma_mm: float = 1.0) -> np.ndarray:
    """Gradient magnitude (intensity / mm) of ``x`` ``(C, *spatial)``, summed over channels → ``(*spatial)`` float32."""
    from scipy.ndimage import gaussian_filter

    sigma = [max(sigma_mm / s, 0.5) for s in spacing]  # below half a voxel the derivative kernel would vanish
    out = np.zeros(x.shape[1:], dtype=np.float64)
    for c in range(x.shape[0]):
        sq = np.zeros(x.shape[1:], dtype=np.float64)
        for axis in range(len(spacing)):
            order = [0] * len(spacing)
            order[axis] = 1
            d = gaussian_filter(x[c].astype(np.float64), sigma=sigma, order=order, mode="nearest") / spacing[axis]
            sq += d * d
        out += np.sqrt(sq)
    return out.astype(np.float32)


@register
class EdgeMap(_Control):
    """The input's edges: the control for 'this map is just an edge detector'."""

    name = "edges"
    title = "Edge map (control)"
    reference = "control map (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018)"
    display = "positive"
    params = {"sigma_mm": 1.0}
    cost_model = "no model passes (Gaussian derivatives of the input)"

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        if float(params.get("sigma_mm", 1.0)) <= 0:
            raise MethodError("edges: sigma_mm must be > 0")

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        spacing = model_grid_spacing(ctx.prepared, ctx.model.spatial_dims)
        arr = edge_map(ctx.x[0].detach().cpu().numpy(), spacing, float(params["sigma_mm"]))
        return MethodResult(torch.from_numpy(arr)[None].to(ctx.x.device), details={"sigma_mm": params["sigma_mm"]})
