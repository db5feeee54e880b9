"""Agreement of two maps as the speed suite reports it: Spearman's rho over evenly strided voxels and the largest
difference relative to the reference's largest magnitude. Maps: equally sized arrays of any layout."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["spearman", "max_relative_difference"]


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, max_voxels: int = 200_000) -> float:
    """Spearman correlation of two equally sized maps (see the module docstring)."""
    from scipy.stats import spearmanr

    fa = np.asarray(torch.as_tensor(a).detach().double().cpu().reshape(-1))
    fb = np.asarray(torch.as_tensor(b).detach().double().cpu().reshape(-1))
    if fa.size != fb.size:
        raise ValueError(f"maps differ in size: {fa.size} vs {fb.size}")
    step = max(1, fa.size // max_voxels)
    va, vb = fa[::step], fb[::step]
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        return float("nan")
    if np.ptp(va) == 0 or np.ptp(vb) == 0:
        return 1.0 if np.allclose(va, vb) else 0.0
    return float(spearmanr(va, vb).statistic)


def max_relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a − b| / max |b|`` (``b`` the reference); ``max |a − b|`` when b is all zero."""
    a64, b64 = torch.as_tensor(a).double(), torch.as_tensor(b).double().reshape(torch.as_tensor(a).shape)
    diff = float((a64 - b64).abs().max())
    peak = float(b64.abs().max())
    return diff / peak if peak > 0 else diff
