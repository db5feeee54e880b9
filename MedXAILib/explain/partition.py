"""PartitionSHAP: Owen values over supervoxels through ``shap.PartitionExplainer`` (the shap library's own code).

shap recommends its Partition explainer for images: it computes Owen values, Shapley values that respect a
hierarchy of the features (Owen 1977; Lundberg et al., shap 0.36+), in about ``max_evals`` model calls whatever the
number of features. Here the features are the *same* supervoxels as KernelSHAP and LIME
(:mod:`MedXAILib.explain.supervoxels`), in 2D and 3D, and the hierarchy is spatial:

- the supervoxels' centroids, in millimetres on the model grid, are clustered by Ward linkage
  (``scipy.cluster.hierarchy.linkage``), so neighbouring supervoxels are grouped first, as shap's ``Image`` masker
  groups neighbouring pixels;
- with ``per_channel_groups=true`` each supervoxel of each input channel (sequence) is its own feature, and the
  C channel features of one supervoxel are merged first (distance 0), then the supervoxels spatially.

Masking ("blur masker"): shap's ``maskers.Partition`` is given the all-ones row as the explained input and the
all-zeros row as the single background row, so a shap mask *is* a coalition ``z``. A feature switched off takes the
blurred input (Gaussian of ``blur_mm`` millimetres σ per physical axis, :func:`~.shapley.make_baseline`), as shap's
``Image("blur(…)")`` masker does with pixels: ``x(z) = b + z[labels] ⊙ (x − b)``. Batches of coalitions are scored by
:class:`~.shapley.MaskedScorer` (one batched forward pass each). Owen values satisfy efficiency, so the attributions
sum to ``f(x) − f(b)`` (``details["efficiency_gap"]``).

Maps are painted as KernelSHAP's (each voxel carries its feature's value); ``details["feature_values"]`` keeps the
per-feature values and :func:`MedXAILib.figures.shap_plots.shap_figure` draws shap's waterfall and bar plots.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import MethodError
from ..models import Model, PreparedInput
from .base import ExplainContext, register
from .shap_import import import_shap
from .shapley import Features, MaskedScorer, _SupervoxelMethod


def supervoxel_linkage(labels: np.ndarray, spacing: tuple[float, ...], n_channels: int = 1,
                       per_channel: bool = False) -> np.ndarray:
    """A scipy linkage matrix ``(F − 1, 4)`` over the features (see the module docstring).

    Args:
        labels: ``(*grid)`` supervoxel ids ``0 … M−1``. spacing: mm per grid axis.
        n_channels, per_channel: with ``per_channel`` the features are ``c · M + s`` (as
            :func:`~.shapley.feature_index`); otherwise the M supervoxels.
    """
    from scipy.cluster.hierarchy import linkage

    m = int(labels.max()) + 1
    coords = np.indices(labels.shape).reshape(labels.ndim, -1).T * np.asarray(spacing, dtype=np.float64)
    flat = labels.reshape(-1)
    counts = np.bincount(flat, minlength=m).astype(np.float64)
    centroids = np.stack([np.bincount(flat, weights=coords[:, a], minlength=m) for a in range(labels.ndim)], 1)
    centroids /= counts[:, None]
    spatial = linkage(centroids, "ward") if m > 1 else np.zeros((0, 4))
    if not per_channel or n_channels == 1:
        return spatial
    n_feat = m * n_channels
    rows: list[list[float]] = []
    group = np.arange(m)  # node id of each supervoxel's channel group
    for s in range(m):
        node = s
        for c in range(1, n_channels):
            rows.append([float(node), float(c * m + s), 0.0, float(c + 1)])
            node = n_feat + len(rows) - 1
        group[s] = node
    offset = n_feat + len(rows)
    for a, b, dist, size in spatial:
        ids = [group[int(v)] if v < m else offset + int(v) - m for v in (a, b)]
        rows.append([float(ids[0]), float(ids[1]), float(dist) + 1e-9, float(size) * n_channels])
    return np.asarray(rows, dtype=np.float64)


def partition_shap(
    scorer: MaskedScorer | Callable[..., np.ndarray],
    n_features: int,
    clustering: np.ndarray,
    max_evals: int,
    batch_size: int = 8,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Owen values ``(F,)`` of the features by ``shap.PartitionExplainer`` (see the module docstring).

    Args:
        scorer: coalitions ``(S, F)`` 0/1 → scores ``(S,)``.
        clustering: a scipy linkage matrix over the F features.
        max_evals: shap's budget of model evaluations.
    """
    shap = import_shap()

    calls = {"rows": 0}

    def game(z: np.ndarray) -> np.ndarray:
        calls["rows"] += int(len(z))
        if progress is not None:
            progress(min(1.0, calls["rows"] / max(max_evals, 1)))
        return scorer(np.asarray(z) > 0.5)

    masker = shap.maskers.Partition(np.zeros((1, n_features)), clustering=clustering)
    explainer = shap.PartitionExplainer(game, masker)
    result = explainer(np.ones((1, n_features)), max_evals=int(max_evals), batch_size=int(batch_size), silent=True)
    phi = np.asarray(result.values, dtype=np.float64).reshape(-1)
    f0 = float(np.asarray(result.base_values).reshape(-1)[0])
    f1 = float(scorer(np.ones((1, n_features), dtype=bool))[0])
    gap = abs(float(phi.sum()) - (f1 - f0))
    return phi, {
        "max_evals": int(max_evals),
        "n_coalitions_evaluated": calls["rows"] + 1,
        "n_features": int(n_features),
        "f_x": f1,
        "f_baseline": f0,
        "sum_attributions": float(phi.sum()),
        "efficiency_gap": gap,
        "efficiency_gap_relative": gap / max(abs(f1 - f0), 1e-12),
        "shap_version": shap.__version__,
    }


@register
class PartitionSHAP(_SupervoxelMethod):
    name = "partitionshap"
    title = "PartitionSHAP (Owen values, shap)"
    reference = "Lundberg & Lee, NeurIPS 2017; shap.PartitionExplainer (Owen values)"
    params = {**_SupervoxelMethod.common_params, "n_samples": 512, "baseline": "blur"}
    cost_model = "about n_samples masked forward passes (shap's max_evals; batched), no backward"

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        p = {**self.params, **params}
        if float(p["score_scale"]) < 1.0:
            raise MethodError("partitionshap scores on the model grid; score_scale < 1 is not offered for it")

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        return (int(params["n_samples"]) + 1, 0)

    def attribute(self, scorer: MaskedScorer, features: Features, params: dict[str, Any], ctx: ExplainContext
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        per_channel = bool(params["per_channel_groups"])
        clustering = supervoxel_linkage(features.labels, features.spacing, int(ctx.x.shape[1]), per_channel)
        return partition_shap(
            scorer, features.n_features, clustering, int(params["n_samples"]), int(params["batch_size"]),
            progress=lambda f: ctx.progress(0.05 + 0.9 * f, "partitionshap: masked forward passes"),
        )
