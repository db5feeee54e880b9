"""Complexity of an explanation: how concentrated its relevance is.

Array layout: any array of relevance values (a heat map ``(K, J, I)``, a 2D map ``(J, I)``); only the values count,
not where they are. Both metrics use the absolute values ``|h|``, so negative evidence counts as relevance.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def _abs_values(heatmap: np.ndarray) -> np.ndarray:
    a = np.abs(np.asarray(heatmap, dtype=np.float64)).ravel()
    if a.size == 0:
        raise InputError("the heat map is empty")
    if not np.isfinite(a).all():
        raise InputError("the heat map holds NaN or infinite values")
    return a


def sparseness_gini(heatmap: np.ndarray) -> float:
    """Sparseness as the Gini index of ``|h|`` (Chalasani et al., "Concise explanations of neural networks using
    adversarial training", ICML 2020; Hurley & Rickard 2009).

    With the n absolute values sorted ascending ``a_1 ≤ … ≤ a_n``:
    ``G = Σ_k (2k − n − 1) a_k / (n Σ_k a_k)``. 0 when every voxel carries the same relevance, ``1 − 1/n`` when a
    single voxel carries it all (higher = sparser). An all-zero map scores 0.0 (no concentration), by convention.
    """
    a = np.sort(_abs_values(heatmap))
    n = a.size
    total = float(a.sum())
    if total <= 0.0:
        return 0.0
    k = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2.0 * k - n - 1.0) * a) / (n * total))


def complexity_entropy(heatmap: np.ndarray) -> float:
    """Complexity as the Shannon entropy (nats) of the fractional contributions ``p_v = |h_v| / Σ |h|``
    (Bhatt, Weller & Moura, "Evaluating and aggregating feature-based model explanations", IJCAI 2020).

    0 when one voxel carries all relevance, ``ln n`` when all carry the same (lower = simpler). An all-zero map
    scores ``ln n`` (treated as uniform), by convention.
    """
    a = _abs_values(heatmap)
    total = float(a.sum())
    if total <= 0.0:
        return float(np.log(a.size))
    p = a[a > 0] / total
    return float(-np.sum(p * np.log(p)))


def complexity_summary(heatmap: np.ndarray) -> dict[str, float]:
    """Sparseness (Gini) and entropy (nats) of ``|h|``: ``{"sparseness_gini", "complexity_entropy_nats"}``."""
    return {"sparseness_gini": sparseness_gini(heatmap), "complexity_entropy_nats": complexity_entropy(heatmap)}
