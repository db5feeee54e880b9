"""Scoring an explanation method against the planted truth.

Per map (a ``(K, J, I)`` heat map of signed relevance and the ``(K, J, I)`` artifact mask on the same grid):

- **artifact mass**: the share of the map's positive relevance that lies inside the artifact,
  ``Σ_{v∈A} max(h_v, 0) / Σ_v max(h_v, 0)`` (relevance mass accuracy, Arras et al. 2022, positive convention);
- **top-k IoU**: IoU between the artifact and the map's ``k = |A|`` highest voxels, i.e. ``r / (2 − r)`` with ``r``
  the relevance rank accuracy (ties at the cut shared: the IoU of the expected intersection).

Per method, over the explained held-out cases of both models:

- **detection AUC**: how well the artifact mass tells the confounded model's maps (positives) from the clean
  model's maps of the same images (negatives) — ROC AUC by ranks, 0.5 = no better than chance;
- **effect Spearman**: Spearman rank correlation between a map's artifact mass and the measured size of the
  artifact's effect on that model and case (``|effect|``, :mod:`.intervention`), pooled over both models; a method
  that shows reliance where and as much as it exists scores near 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..metrics.classification import auc_roc
from ..metrics.localisation import relevance_mass, relevance_rank


def artifact_mass(heatmap: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of positive relevance inside the artifact (None when the map has no positive relevance)."""
    return relevance_mass(heatmap, mask, "positive")


def topk_iou(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """IoU between the artifact and the map's ``|A|`` highest voxels (ties at the cut shared, see the module)."""
    r = relevance_rank(heatmap, mask)
    return r / (2.0 - r)


def detection_auc(mass_confounded: Sequence[float | None], mass_clean: Sequence[float | None]) -> float | None:
    """ROC AUC of artifact mass as a detector of the confounded model's maps (missing masses left out)."""
    pos = [float(v) for v in mass_confounded if v is not None]
    neg = [float(v) for v in mass_clean if v is not None]
    if not pos or not neg:
        return None
    return auc_roc(np.array([1] * len(pos) + [0] * len(neg)), np.array(pos + neg))


def effect_spearman(masses: Sequence[float | None], effects: Sequence[float | None]) -> float | None:
    """Spearman ρ between artifact mass and |effect| over the pairs where both exist (None if either is constant)."""
    pairs = [(float(m), abs(float(e))) for m, e in zip(masses, effects)
             if m is not None and e is not None and np.isfinite(float(e))]
    if len(pairs) < 3:
        return None
    a, b = np.array(pairs).T
    if a.min() == a.max() or b.min() == b.max():
        return None
    return float(spearmanr(a, b).statistic)


def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def summarise_methods(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method: mean artifact mass and top-k IoU per model, the ratio of masses, detection AUC, effect Spearman.

    ``rows`` hold ``method``, ``model`` (``clean``/``confounded``), ``artifact_mass``, ``topk_iou`` and ``effect``.
    """
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m and r.get("status", "ok") == "ok"]
        clean = [r for r in mine if r["model"] == "clean"]
        conf = [r for r in mine if r["model"] == "confounded"]
        mc, mf = _mean([r["artifact_mass"] for r in clean]), _mean([r["artifact_mass"] for r in conf])
        out[m] = {
            "artifact_mass_clean": mc,
            "artifact_mass_confounded": mf,
            "mass_ratio": (mf / mc) if mc and mf is not None else None,
            "topk_iou_clean": _mean([r["topk_iou"] for r in clean]),
            "topk_iou_confounded": _mean([r["topk_iou"] for r in conf]),
            "detection_auc": detection_auc([r["artifact_mass"] for r in conf], [r["artifact_mass"] for r in clean]),
            "effect_spearman": effect_spearman([r["artifact_mass"] for r in mine], [r["effect"] for r in mine]),
            "effect_spearman_confounded": effect_spearman([r["artifact_mass"] for r in conf],
                                                          [r["effect"] for r in conf]),
            "n_maps": len(mine),
            "seconds_per_map": _mean([r.get("seconds") for r in mine]),
        }
    return out


__all__ = ["artifact_mass", "detection_auc", "effect_spearman", "summarise_methods", "topk_iou"]
