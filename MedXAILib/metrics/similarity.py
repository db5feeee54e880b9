"""Similarity between two explanation maps: SSIM (2D and 3D), Spearman rank correlation, random-pair baselines.

Array layout: maps are spatial ``(K, J, I)`` arrays on the same grid (2D maps have ``K == 1``; ``(J, I)`` accepted).
``spacing_kji`` is the voxel size in mm along k, j, i when a physical Gaussian window is wanted.

These are the measures of the model-randomisation sanity check (Adebayo et al. 2018) and of stability tests: the
map of a trained model is compared with that of a randomised model or a perturbed input. Following Arun et al.
(Radiology: AI 2021), a similarity is judged against the mean similarity of *random pairs of maps*
(:func:`random_pair_baseline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage
from scipy.stats import spearmanr

from ..errors import InputError

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA_VOXELS = 1.5
SSIM_TRUNCATE = 3.5


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = (np.asarray(v, dtype=np.float64) for v in (a, b))
    x, y = (v[None] if v.ndim == 2 else v for v in (x, y))
    if x.shape != y.shape or x.ndim != 3:
        raise InputError(f"the two maps must have one (K, J, I) shape; got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("a map holds NaN or infinite values")
    return x, y


def normalise_unit(a: np.ndarray) -> np.ndarray:
    """Min–max rescale to [0, 1]; a constant map becomes all zeros."""
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


def _sigmas(shape: tuple[int, ...], sigma_mm: float | None, spacing_kji: Sequence[float] | None) -> list[float]:
    """Per-axis Gaussian sigma in voxels; a singleton axis (the K of a 2D map) is not smoothed."""
    if sigma_mm is None:
        sig = [SSIM_SIGMA_VOXELS] * 3
    else:
        sp = np.asarray(spacing_kji if spacing_kji is not None else (1.0, 1.0, 1.0), dtype=float)
        if sp.size != 3 or not np.all(sp > 0) or sigma_mm <= 0:
            raise InputError("SSIM needs sigma_mm > 0 and three positive spacings (k, j, i) in mm")
        sig = list(sigma_mm / sp)
    return [0.0 if n == 1 else s for n, s in zip(shape, sig)]


@dataclass
class SSIMMoments:
    """One map's share of an SSIM computation, made once and reused for every pair (:func:`ssim_moments`).

    Attributes:
        x: the map (min–max normalised when ``normalise``), float64 ``(K, J, I)``. mean: its Gaussian-weighted local
            mean; var: its local (population) variance. sigmas: the window's σ per axis (voxels).
        low, high: the map's value range before normalisation; normalised: whether it was normalised.
    """

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    sigmas: tuple[float, ...]
    low: float
    high: float
    normalised: bool


def _smooth(v: np.ndarray, sig: Sequence[float]) -> np.ndarray:
    return ndimage.gaussian_filter(v, sigma=list(sig), truncate=SSIM_TRUNCATE, mode="reflect")


def ssim_moments(
    a: np.ndarray, normalise: bool = True, sigma_mm: float | None = None, spacing_kji: Sequence[float] | None = None,
) -> SSIMMoments:
    """The local mean and variance of one map (two Gaussian filters); see :func:`ssim` for the parameters."""
    x = np.asarray(a, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3:
        raise InputError(f"a map must be (K, J, I) or (J, I); got shape {np.shape(a)}")
    if not np.isfinite(x).all():
        raise InputError("a map holds NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if normalise:
        x = normalise_unit(x)
    sig = tuple(_sigmas(x.shape, sigma_mm, spacing_kji))
    mean = _smooth(x, sig)
    var = _smooth(x * x, sig)
    var -= mean * mean
    return SSIMMoments(x, mean, var, sig, low, high, normalise)


def ssim_from_moments(ma: SSIMMoments, mb: SSIMMoments) -> float:
    """The mean SSIM of two maps from their moments: one more Gaussian filter (of ``x · y``) per pair."""
    if ma.x.shape != mb.x.shape:
        raise InputError(f"the two maps must have one (K, J, I) shape; got {ma.x.shape} and {mb.x.shape}")
    if ma.normalised:
        data_range = 1.0
    else:
        data_range = max(max(ma.high, mb.high) - min(ma.low, mb.low), 1e-12)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    pads = [int(SSIM_TRUNCATE * g + 0.5) for g in ma.sigmas]
    box = tuple(slice(p, n - p) if n > 2 * p else slice(None) for p, n in zip(pads, ma.x.shape))
    # the SSIM map is only averaged inside the box: compute it there, with as few full-size temporaries as possible
    ua, ub = ma.mean[box], mb.mean[box]
    num = _smooth(ma.x * mb.x, ma.sigmas)[box]
    prod = ua * ub
    num -= prod
    num *= 2.0
    num += c2  # 2 cov + C2
    prod *= 2.0
    prod += c1  # 2 μa μb + C1
    num *= prod
    den = np.square(ua, out=prod)
    den += np.square(ub)
    den += c1
    var = ma.var[box] + mb.var[box]
    var += c2
    den *= var
    num /= den
    return float(num.mean(dtype=np.float64))


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    normalise: bool = True,
    sigma_mm: float | None = None,
    spacing_kji: Sequence[float] | None = None,
) -> float:
    """Mean structural similarity of two maps, 2D or 3D (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004).

    Local means, variances and covariance are Gaussian-weighted (σ = 1.5 voxels, truncated at 3.5 σ, reflecting
    borders; or σ = ``sigma_mm`` converted per axis with ``spacing_kji`` for anisotropic volumes), population
    statistics, ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²``. The SSIM map is averaged after cropping the window radius
    from each smoothed axis (as scikit-image does), unless that leaves nothing.

    Normalisation: with ``normalise=True`` (default) each map is first min–max rescaled to [0, 1] on its own, so
    maps of different methods / scales compare by shape, and ``L = 1``. With ``normalise=False`` the raw values are
    used and ``L`` is the range of both maps together.

    Comparing many maps pairwise, :func:`ssim_moments` once per map and :func:`ssim_from_moments` per pair give the
    same value with a third of the filtering.
    """
    x, y = _pair(a, b)
    return ssim_from_moments(ssim_moments(x, normalise, sigma_mm, spacing_kji),
                             ssim_moments(y, normalise, sigma_mm, spacing_kji))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1 … N, ties sharing their mean rank) of a flat array, as ``scipy.stats.rankdata`` gives them.

    Values that half precision holds exactly (maps read from a benchmark store are float16) are ranked by counting
    the 65 536 possible values — linear in N; other values by sorting."""
    v = np.asarray(values).ravel()
    if v.size and v.dtype.kind == "f":
        half = v.astype(np.float16)
        if np.array_equal(half, v):  # compared in v's precision: every value is a float16 exactly
            bits = half.view(np.uint16)
            bits[bits == 0x8000] = 0  # −0.0 ties with +0.0, as in a sort
            # IEEE bits → value order: negatives reversed below the positives
            key = np.where(bits >= 0x8000, np.uint16(0xFFFF) - bits, bits | np.uint16(0x8000))
            counts = np.bincount(key, minlength=0x10000)
            ends = np.cumsum(counts)
            mean_rank = ends - (counts - 1) / 2.0
            return mean_rank[key]
    from scipy.stats import rankdata

    return rankdata(v, method="average")


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of the voxel values of two maps (average ranks for ties).

    None when either map is constant (the correlation is undefined).
    """
    x, y = _pair(a, b)
    if x.min() == x.max() or y.min() == y.max():
        return None
    return float(spearmanr(x.ravel(), y.ravel()).statistic)


def random_pair_baseline(
    maps: Sequence[np.ndarray],
    measure: Callable[[np.ndarray, np.ndarray], float | None] = ssim,
    n_pairs: int = 100,
    seed: int = 0,
) -> dict[str, float | int]:
    """Similarity of random pairs of *different* maps: the chance level a sanity check must beat.

    Arun et al. (Radiology: AI 2021) used the mean SSIM of random pairs of maps (of different images) as the
    threshold between "similar" and "dissimilar". Pairs ``(i, j), i ≠ j`` are drawn uniformly with replacement from
    ``maps`` (each on the same grid); pairs where the measure is undefined are skipped.

    Returns:
        ``{"mean", "std", "n_pairs"}`` over the scored pairs.
    """
    if len(maps) < 2:
        raise InputError("a random-pair baseline needs at least two maps")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(int(n_pairs)):
        i, j = rng.choice(len(maps), size=2, replace=False)
        v = measure(maps[int(i)], maps[int(j)])
        if v is not None:
            scores.append(float(v))
    if not scores:
        raise InputError("the measure was undefined for every random pair (constant maps?)")
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "n_pairs": len(scores)}
