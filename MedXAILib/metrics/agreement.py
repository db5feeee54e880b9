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

Cost. Everything a map contributes is computed once per map (:class:`MapSummary`): its average ranks (by counting,
linear in the voxels, when half precision holds the values exactly, as for maps read from a benchmark store; else by
one sort), its SSIM moments (two Gaussian filters) and its top-k membership; each pair then costs a dot product, one
Gaussian filter and two element-wise passes.

Consensus. Each importance map is turned into normalised ranks ``r_m(v) ∈ [0, 1]`` (average ranks of tied voxels,
``(rank − 1) / (N − 1)``), and the consensus is their mean over methods, ``c(v) = mean_m r_m(v)``. The per-voxel
agreement is ``1 − 2 · std_m r_m(v)`` (population SD): 1 where every method gives the voxel the same rank, 0 where
they split evenly between the two ends (both are 0 outside the mask). Each method's agreement with the consensus is
reported with the same three measures — computed between the method's normalised ranks and the consensus, so that
SSIM compares like with like (Spearman and top-k IoU depend on ranks only). Because the consensus contains the
method itself, the Spearman ρ with the consensus of the *other* methods is given too (``spearman_leave_one_out``;
needs at least three methods).

Chance level of the consensus agreement (``consensus_agreement_chance``). The mean per-voxel agreement depends on the
number of methods and on how their ranks are distributed (ties, plateaus), so it is reported beside the agreement
the methods would have by chance: the same measure with each method's normalised ranks drawn independently from
its own ranks over the compared voxels (a random voxel per method, ``CHANCE_SAMPLES`` draws, seeded) — spatial
correspondence removed, marginal rank distributions kept. Without ties it tends to the agreement of independent
uniform ranks (2/3 for two methods). ``consensus_agreement_above_chance`` is the difference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .localisation import _top_n_weights
from .similarity import SSIMMoments, average_ranks, ssim_from_moments, ssim_moments

VALUES = ("display", "signed")
MEASURES = ("spearman", "ssim", "topk_iou")
DEFAULT_TOPK_PERCENT = 5.0
#: Random draws of the consensus agreement's chance level (standard error about 0.3 / sqrt(draws)).
CHANCE_SAMPLES = 200_000


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
    x, y = _spatial(a), _spatial(b)
    if x.shape != y.shape:
        raise InputError(f"the two maps must share one (K, J, I) shape; got {x.shape} and {y.shape}")
    return _iou(_top_weights(x.ravel(), percent), _top_weights(y.ravel(), percent))


def _top_weights(flat: np.ndarray, percent: float) -> np.ndarray:
    if not 0 < percent <= 100:
        raise InputError(f"the top-k percentage must be in (0, 100]; got {percent}")
    n = max(1, int(round(percent / 100.0 * flat.size)))
    return _top_n_weights(np.asarray(flat, dtype=np.float64), n).astype(np.float32)


def _iou(wa: np.ndarray, wb: np.ndarray) -> float:
    inter = float(np.minimum(wa, wb).sum(dtype=np.float64))
    union = float(wa.sum(dtype=np.float64) + wb.sum(dtype=np.float64)) - inter
    return inter / union if union > 0 else 1.0


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0)))


@dataclass
class MapSummary:
    """What the pairwise measures need of one map, computed once (see the module docstring).

    Attributes:
        ranks: average ranks (1 … N) of the compared voxels, flat float64; centred: ``ranks − mean`` and norm its
            length (0 for a constant map). moments: the SSIM moments of the map (or its mask's bounding box).
        top: the top-k membership weights of the compared voxels (float32).
    """

    ranks: np.ndarray
    centred: np.ndarray
    norm: float
    moments: SSIMMoments
    top: np.ndarray

    @property
    def normalised_ranks(self) -> np.ndarray:
        """``(rank − 1) / (N − 1)`` of the compared voxels (0.5 for a constant map)."""
        n = self.ranks.size
        if n < 2 or self.norm == 0:
            return np.full(n, 0.5)
        return (self.ranks - 1.0) / (n - 1.0)


def summarise(values: np.ndarray, mask: np.ndarray | None = None, topk_percent: float = DEFAULT_TOPK_PERCENT,
              ranks: np.ndarray | None = None) -> MapSummary:
    """The :class:`MapSummary` of a ``(K, J, I)`` map over ``mask`` (all voxels when None); ``ranks`` may be given
    when already known (a map of ranks is its own ranking)."""
    x = _spatial(values)
    if mask is not None and not np.asarray(mask, dtype=bool).all():
        keep = np.asarray(mask, dtype=bool).reshape(x.shape)
        flat, crop = x[keep], x[_bbox(keep)]
    else:
        flat, crop = x.ravel(), x
    r = average_ranks(flat) if ranks is None else np.asarray(ranks, dtype=np.float64)
    centred = r - r.mean()
    norm = float(np.sqrt(np.dot(centred, centred)))
    if flat.size and float(flat.min()) == float(flat.max()):
        norm = 0.0
    return MapSummary(r, centred, norm, ssim_moments(crop), _top_weights(flat, topk_percent))


def pair_measures(a: MapSummary, b: MapSummary) -> dict[str, float | None]:
    """Spearman ρ (None for a constant map), SSIM and top-k IoU of two summarised maps."""
    rho = None if a.norm == 0 or b.norm == 0 else float(np.dot(a.centred, b.centred) / (a.norm * b.norm))
    return {"spearman": rho, "ssim": ssim_from_moments(a.moments, b.moments), "topk_iou": _iou(a.top, b.top)}


def pairwise(
    maps: Sequence[np.ndarray], topk_percent: float = DEFAULT_TOPK_PERCENT, mask: np.ndarray | None = None,
    summaries: Sequence[MapSummary] | None = None,
) -> dict[str, list[list[Any]]]:
    """``{"spearman", "ssim", "topk_iou"}``: symmetric ``M × M`` matrices (lists) over the given maps.

    ``mask`` (``(K, J, I)`` bool) restricts the comparison (see the module docstring). A Spearman ρ that is undefined
    (a constant map) is None. ``summaries`` (one per map, :func:`summarise`) skip the per-map work.
    """
    sums = list(summaries) if summaries is not None else parallel(
        [lambda a=a: summarise(a, mask, topk_percent) for a in maps])
    m = len(sums)
    out: dict[str, list[list[Any]]] = {k: [[None] * m for _ in range(m)] for k in MEASURES}
    pairs = [(i, j) for i in range(m) for j in range(i, m)]
    for (i, j), values in zip(pairs, parallel([lambda i=i, j=j: pair_measures(sums[i], sums[j]) for i, j in pairs])):
        for k, v in values.items():
            out[k][i][j] = out[k][j][i] = None if v is None else float(v)
    return out


def parallel(jobs: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run independent array jobs on the machine's cores (NumPy and SciPy release the GIL), results in order."""
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    if workers == 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


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
    out[keep] = (average_ranks(v) - 1.0) / (v.size - 1.0)
    return out


def _agreement_of(ranks: np.ndarray) -> np.ndarray:
    """``clip(1 − 2 · SD over methods, 0, 1)`` of ``(M, …)`` normalised ranks."""
    return np.clip(1.0 - 2.0 * ranks.std(0), 0.0, 1.0)


def consensus(maps: Sequence[np.ndarray], mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rank-averaged consensus map and the per-voxel agreement (both ``(K, J, I)`` float64 in [0, 1])."""
    if not maps:
        raise InputError("a consensus needs at least one map")
    ranks = np.stack([normalised_ranks(m, mask) for m in maps])
    agree = _agreement_of(ranks)
    if mask is not None:
        agree[~np.asarray(mask, dtype=bool).reshape(agree.shape)] = 0.0
    return ranks.mean(0), agree


def consensus_chance(ranks: Sequence[np.ndarray], samples: int = CHANCE_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """The mean per-voxel agreement of methods whose ranks are drawn independently (see the module docstring).

    Args:
        ranks: each method's normalised ranks over the compared voxels (flat).
    """
    rng = np.random.default_rng(seed)
    draws = np.stack([np.asarray(r)[rng.integers(0, len(r), size=int(samples))] for r in ranks])
    values = _agreement_of(draws)
    return {"mean": float(values.mean()), "standard_error": float(values.std() / np.sqrt(values.size)),
            "samples": int(samples), "seed": int(seed),
            "method": "each method's normalised ranks drawn independently (one random compared voxel per method)"}


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
        "consensus_agreement_mean", "consensus_agreement_chance": {"mean", "standard_error", …},
        "consensus_agreement_above_chance", "settings"}``.
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
    sums = parallel([lambda v=v: summarise(v, keep, topk_percent) for v in vals])
    report: dict[str, Any] = {"methods": names, **pairwise(vals, topk_percent, keep, sums)}
    flat_ranks = [s.normalised_ranks for s in sums]
    ranks = np.zeros((len(vals),) + vals[0].shape)
    for k, r in enumerate(flat_ranks):
        if keep is None:
            ranks[k] = r.reshape(vals[0].shape)
        else:
            ranks[k][keep] = r
    cons = ranks.mean(0)
    per_voxel = _agreement_of(ranks)
    if keep is not None:
        per_voxel[~keep] = 0.0
    cons_sum = summarise(cons, keep, topk_percent)
    total = ranks.sum(0)
    with_cons: dict[str, list[Any]] = {"spearman": [], "ssim": [], "topk_iou": [], "spearman_leave_one_out": []}
    for i in range(len(vals)):
        # a map of ranks ranks like the map itself: its summary reuses the ranks
        own = summarise(ranks[i], keep, topk_percent, ranks=sums[i].ranks)
        for k, v in pair_measures(own, cons_sum).items():
            with_cons[k].append(v)
        loo = None
        if len(vals) >= 3:
            rest = summarise((total - ranks[i]) / (len(vals) - 1), keep, topk_percent)
            loo = pair_measures(own, rest)["spearman"]
        with_cons["spearman_leave_one_out"].append(loo)
    report["consensus"] = with_cons
    report["mean_pairwise"] = {k: _mean_offdiag(report[k]) for k in MEASURES}
    report["consensus_agreement_mean"] = float(per_voxel[keep].mean() if keep is not None else per_voxel.mean())
    chance = consensus_chance(flat_ranks)
    report["consensus_agreement_chance"] = chance
    report["consensus_agreement_above_chance"] = report["consensus_agreement_mean"] - chance["mean"]
    report["settings"] = {
        "values": values,
        "displays": {n: disp.get(n, "signed") for n in names},
        "topk_percent": float(topk_percent),
        "voxels_compared": int(keep.sum()) if keep is not None else int(vals[0].size),
        "voxels_total": int(vals[0].size),
        "ssim": "each map min-max normalised, Gaussian window sigma 1.5 voxels",
        "consensus": "mean over methods of normalised ranks; agreement = 1 - 2 * SD of the ranks",
        "consensus_chance": "mean agreement with each method's ranks drawn independently (spatial link removed)",
    }
    return report, cons, per_voxel


def _mean_offdiag(matrix: list[list[Any]]) -> float | None:
    vals = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i < j and matrix[i][j] is not None]
    return float(np.mean(vals)) if vals else None
