"""Agreement between explanation methods on one case ("triangulation"), and their consensus map.

Array layout: every map is a spatial ``(K, J, I)`` array on one voxel grid (2D maps have ``K == 1``).

What is compared. Methods differ in sign conventions (a CAM is shown by its positive part, IG and SHAP are signed),
so by default (``values="display"``) each map is first turned into an *importance* map the way it is displayed:
the positive part for ``positive``-display methods, ``|h|`` for ``signed`` ones (:func:`importance`). With
``values="signed"`` the raw values are compared.

Pairwise measures (each a symmetric ``M × M`` matrix, diagonal 1 for any non-constant map):

- **Spearman ρ** of the voxel values (average ranks for ties; :func:`MedXAILib.metrics.similarity.spearman`,
  ``scipy.stats.spearmanr``); None where a map is constant;
- **SSIM** (Wang et al. 2004) of the two maps each min–max normalised to [0, 1], Gaussian window σ = 1.5 voxels
  (:func:`MedXAILib.metrics.similarity.ssim`; equal to ``skimage.metrics.structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1)`` on a 2D pair);
- **top-k IoU**: the intersection over union of the two maps' top ``topk_percent`` % voxels (``round(k/100·N)``
  voxels, at least 1). Voxels tied at the cut take a fractional membership (the share of the remaining places), and
  the IoU is ``Σ min(a, b) / Σ max(a, b)`` of the memberships — the plain set IoU when there are no ties.

Compared voxels (``mask``). By default every voxel is compared. ``compare`` passes the *object* — the voxels where
any input channel is non-zero (all voxels when none or all are zero) — so the air around a skull-stripped head, where
some methods are exactly zero and others are not, does not dominate the ranks. Spearman ρ, top-k IoU and the ranks of
the consensus use the masked voxels only; SSIM, which needs a neighbourhood, is computed on the mask's bounding box.

Consensus. Each importance map is turned into normalised ranks ``r_m(v) ∈ [0, 1]`` (average ranks of tied voxels,
``(rank − 1) / (N − 1)``), and the consensus is their mean over methods, ``c(v) = mean_m r_m(v)``. The per-voxel
agreement is ``1 − 2 · std_m r_m(v)`` (population SD): 1 where every method gives the voxel the same rank, 0 where
they split evenly between the two ends (both are 0 outside the mask). Each method's agreement with the consensus is
reported with the same three measures — computed between the method's normalised ranks and the consensus, so that
SSIM compares like with like (Spearman and top-k IoU depend on ranks only). Because the consensus contains the
method itself, the Spearman ρ with the consensus of the *other* methods is given too (``spearman_leave_one_out``;
needs at least three methods).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from ..errors import InputError
from .localisation import _top_n_weights
from .similarity import spearman, ssim

VALUES = ("display", "signed")
MEASURES = ("spearman", "ssim", "topk_iou")
DEFAULT_TOPK_PERCENT = 5.0


def _spatial(a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"a map must be (K, J, I) or (J, I); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("a map holds NaN or infinite values")
    return arr


def importance(heatmap: np.ndarray, display: str = "signed", values: str = "display") -> np.ndarray:
    """The values compared for one map: positive part (``positive`` display) or ``|h|`` (``signed``), or raw."""
    if values not in VALUES:
        raise InputError(f"unknown agreement values {values!r}; use one of {', '.join(VALUES)}")
    h = _spatial(heatmap)
    if values == "signed":
        return h
    return np.maximum(h, 0.0) if display == "positive" else np.abs(h)


def topk_iou(a: np.ndarray, b: np.ndarray, percent: float = DEFAULT_TOPK_PERCENT) -> float:
    """IoU of the top ``percent`` % voxels of two maps (tied voxels at the cut count fractionally; see above)."""
    if not 0 < percent <= 100:
        raise InputError(f"the top-k percentage must be in (0, 100]; got {percent}")
    x, y = _spatial(a), _spatial(b)
    if x.shape != y.shape:
        raise InputError(f"the two maps must share one (K, J, I) shape; got {x.shape} and {y.shape}")
    n = max(1, int(round(percent / 100.0 * x.size)))
    wa, wb = _top_n_weights(x.ravel(), n), _top_n_weights(y.ravel(), n)
    union = float(np.maximum(wa, wb).sum())
    return float(np.minimum(wa, wb).sum()) / union if union > 0 else 1.0


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0)))


def pairwise(
    maps: Sequence[np.ndarray], topk_percent: float = DEFAULT_TOPK_PERCENT, mask: np.ndarray | None = None
) -> dict[str, list[list[Any]]]:
    """``{"spearman", "ssim", "topk_iou"}``: symmetric ``M × M`` matrices (lists) over the given maps.

    ``mask`` (``(K, J, I)`` bool) restricts the comparison (see the module docstring). A Spearman ρ that is undefined
    (a constant map) is None.
    """
    arrs = [_spatial(m) for m in maps]
    if mask is not None and not np.asarray(mask, dtype=bool).all():
        keep = np.asarray(mask, dtype=bool).reshape(arrs[0].shape)
        box = _bbox(keep)
        flat = [a[keep][None, None] for a in arrs]
        crops = [a[box] for a in arrs]
    else:
        flat = crops = arrs
    m = len(arrs)
    out: dict[str, list[list[Any]]] = {k: [[None] * m for _ in range(m)] for k in MEASURES}
    for i in range(m):
        for j in range(i, m):
            vals = {
                "spearman": spearman(flat[i], flat[j]),
                "ssim": ssim(crops[i], crops[j]),
                "topk_iou": topk_iou(flat[i], flat[j], topk_percent),
            }
            for k, v in vals.items():
                out[k][i][j] = out[k][j][i] = None if v is None else float(v)
    return out


def normalised_ranks(a: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Average ranks of the voxel values mapped to [0, 1], ``(rank − 1) / (N − 1)``, over ``mask`` (0 outside it);
    a map constant over the mask gives 0.5 there."""
    x = _spatial(a)
    keep = np.ones(x.shape, bool) if mask is None else np.asarray(mask, dtype=bool).reshape(x.shape)
    out = np.zeros(x.shape)
    v = x[keep]
    if v.size < 2 or v.min() == v.max():
        out[keep] = 0.5
        return out
    out[keep] = (rankdata(v, method="average") - 1.0) / (v.size - 1.0)
    return out


def consensus(maps: Sequence[np.ndarray], mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rank-averaged consensus map and the per-voxel agreement (both ``(K, J, I)`` float64 in [0, 1])."""
    if not maps:
        raise InputError("a consensus needs at least one map")
    ranks = np.stack([normalised_ranks(m, mask) for m in maps])
    agree = np.clip(1.0 - 2.0 * ranks.std(0), 0.0, 1.0)
    if mask is not None:
        agree[~np.asarray(mask, dtype=bool).reshape(agree.shape)] = 0.0
    return ranks.mean(0), agree


def agreement(
    maps: Mapping[str, np.ndarray],
    displays: Mapping[str, str] | None = None,
    values: str = "display",
    topk_percent: float = DEFAULT_TOPK_PERCENT,
    mask: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Everything ``compare`` reports about a set of maps of one case.

    Args:
        maps: method name → ``(K, J, I)`` map (signed raw relevance), all on one grid.
        displays: method name → ``positive`` / ``signed`` (how each map is displayed; default ``signed``).
        values: ``display`` (importance as displayed; default) or ``signed`` (raw values).
        topk_percent: k of the top-k IoU.
        mask: ``(K, J, I)`` bool, the voxels compared (default: all; see the module docstring).

    Returns:
        ``(report, consensus map, per-voxel agreement)``; the report is ``{"methods", "spearman", "ssim",
        "topk_iou", "consensus": {"spearman", "ssim", "topk_iou", "spearman_leave_one_out"}, "mean_pairwise",
        "settings"}``.
    """
    names = list(maps)
    if len(names) < 2:
        raise InputError(f"agreement needs at least two maps; got {len(names)}")
    shapes = {tuple(_spatial(maps[n]).shape) for n in names}
    if len(shapes) != 1:
        raise InputError(f"the maps must share one grid; got shapes {sorted(shapes)}")
    disp = dict(displays or {})
    vals = [importance(maps[n], disp.get(n, "signed"), values) for n in names]
    keep = None if mask is None else np.asarray(mask, dtype=bool).reshape(vals[0].shape)
    if keep is not None and not keep.any():
        raise InputError("the agreement mask holds no voxel")
    report: dict[str, Any] = {"methods": names, **pairwise(vals, topk_percent, keep)}
    ranks = np.stack([normalised_ranks(v, keep) for v in vals])
    cons, per_voxel = consensus(vals, keep)
    total = ranks.sum(0)
    with_cons: dict[str, list[Any]] = {"spearman": [], "ssim": [], "topk_iou": [], "spearman_leave_one_out": []}
    for i in range(len(vals)):
        one = pairwise([ranks[i], cons], topk_percent, keep)
        for k in MEASURES:
            with_cons[k].append(one[k][0][1])
        loo = (pairwise([ranks[i], (total - ranks[i]) / (len(vals) - 1)], topk_percent, keep)["spearman"][0][1]
               if len(vals) >= 3 else None)
        with_cons["spearman_leave_one_out"].append(loo)
    report["consensus"] = with_cons
    report["mean_pairwise"] = {k: _mean_offdiag(report[k]) for k in MEASURES}
    report["consensus_agreement_mean"] = float(per_voxel[keep].mean() if keep is not None else per_voxel.mean())
    report["settings"] = {
        "values": values,
        "displays": {n: disp.get(n, "signed") for n in names},
        "topk_percent": float(topk_percent),
        "voxels_compared": int(keep.sum()) if keep is not None else int(vals[0].size),
        "voxels_total": int(vals[0].size),
        "ssim": "each map min-max normalised, Gaussian window sigma 1.5 voxels",
        "consensus": "mean over methods of normalised ranks; agreement = 1 - 2 * SD of the ranks",
    }
    return report, cons, per_voxel


def _mean_offdiag(matrix: list[list[Any]]) -> float | None:
    vals = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i < j and matrix[i][j] is not None]
    return float(np.mean(vals)) if vals else None
