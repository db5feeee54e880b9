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

**Complete or truncated.** shap's recursion expands every internal node of the tree once per context of its
ancestors (each ancestor's sibling group absent or present), two evaluations per expansion, so the full expansion —
the exact Owen values of the tree — needs ``2 + 2 · Σ_internal nodes 2^depth`` evaluations
(:func:`owen_evaluations_needed`; about ``2(F² − 1)/3`` for a balanced tree of F features). With fewer, shap stops
expanding and gives each unexpanded node's whole contribution to its leaves in proportion to their number: the
result still satisfies efficiency but is no longer the Owen value. The sidecar says which: ``complete``,
``evaluations`` (model evaluations made), ``needed``. The default budget (``n_samples=0``) is the full expansion when
its time estimate — one timed batch of ``batch_size`` coalitions times ``needed`` — fits ``max_seconds``; otherwise
as many evaluations as fit, and the sidecar says the run is truncated. A given ``n_samples`` is used as shap's
``max_evals``.

Maps are painted as KernelSHAP's (each voxel carries its feature's value); ``details["feature_values"]`` keeps the
per-feature values and :func:`MedXAILib.figures.shap_plots.shap_figure` draws shap's waterfall and bar plots.
"""

from __future__ import annotations

import time
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


def owen_evaluations_needed(clustering: np.ndarray, n_features: int) -> int:
    """Model evaluations shap's Partition recursion makes to expand the whole tree (see the module docstring):
    ``2 + 2 · Σ_internal 2^depth(node)``, the root at depth 0; ``clustering`` is a scipy linkage over the features."""
    if n_features < 2 or len(clustering) == 0:
        return 2
    depth = {2 * n_features - 2: 0}  # scipy numbers the root last
    total = 0
    for node in range(2 * n_features - 2, n_features - 1, -1):
        d = depth[node]
        total += 2 ** (d + 1)
        if float(clustering[node - n_features, 2]) < 0:
            continue  # shap does not descend below a negative distance
        for child in clustering[node - n_features, :2]:
            if int(child) >= n_features:
                depth[int(child)] = d + 1
    return 2 + total


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
        max_evals: shap's budget of model evaluations (the full expansion needs :func:`owen_evaluations_needed`).
    """
    shap = import_shap()
    needed = owen_evaluations_needed(clustering, n_features)

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
    complete = int(max_evals) >= needed
    return phi, {
        "complete": complete,
        "evaluations": calls["rows"],
        "needed": needed,
        "truncated": None if complete else (
            f"shap expanded the tree with {calls['rows']} of the {needed} evaluations the full expansion needs: "
            "the values satisfy efficiency but are not the Owen values (raise n_samples or max_seconds)"),
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
    params = {**_SupervoxelMethod.common_params, "n_samples": 0, "max_seconds": 600.0, "baseline": "blur"}
    cost_model = ("n_samples masked forward passes (shap's max_evals; batched), no backward; n_samples=0: the full "
                  "Owen expansion (about 2(F² − 1)/3 for F features) if it fits max_seconds")

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        p = {**self.params, **params}
        if int(p["n_samples"]) == 0:  # automatic: checked against max_seconds instead
            p["n_samples"] = 2
        super().check(model, target, p)
        if float(p["score_scale"]) < 1.0:
            raise MethodError("partitionshap scores on the model grid; score_scale < 1 is not offered for it")
        if float(p["max_seconds"]) <= 0:
            raise MethodError(f"partitionshap: max_seconds must be > 0 (got {p['max_seconds']})")

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        n = int(params["n_samples"])
        if n == 0:  # the full expansion of a balanced tree over about n_segments (× channels) features
            f = int(params["n_segments"]) * (int(prepared.tensor.shape[1]) if params["per_channel_groups"] else 1)
            n = 2 + (2 * (f * f - 1)) // 3
        return (n + 1, 0)

    def attribute(self, scorer: MaskedScorer, features: Features, params: dict[str, Any], ctx: ExplainContext
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        per_channel = bool(params["per_channel_groups"])
        clustering = supervoxel_linkage(features.labels, features.spacing, int(ctx.x.shape[1]), per_channel)
        needed = owen_evaluations_needed(clustering, features.n_features)
        budget, rule = int(params["n_samples"]), "n_samples given"
        if budget == 0:
            budget, rule = auto_budget(scorer, features.n_features, needed, int(params["batch_size"]),
                                       float(params["max_seconds"]), int(params["seed"]))
            ctx.forward_passes += min(int(params["batch_size"]), needed)
        phi, details = partition_shap(
            scorer, features.n_features, clustering, budget, int(params["batch_size"]),
            progress=lambda f: ctx.progress(0.05 + 0.9 * f, "partitionshap: masked forward passes"),
        )
        details["budget_rule"] = rule
        return phi, details


def auto_budget(scorer: MaskedScorer, n_features: int, needed: int, batch_size: int, max_seconds: float,
                seed: int) -> tuple[int, str]:
    """The default ``max_evals``: the full expansion when ``needed`` evaluations fit ``max_seconds`` at the pace of
    one timed batch of random coalitions, else as many as fit (at least ``2F + 2``)."""
    rows = max(1, min(batch_size, needed))
    coalitions = np.random.default_rng(seed).random((rows, n_features)) < 0.5
    t0 = time.perf_counter()
    scorer(coalitions)
    per_eval = (time.perf_counter() - t0) / rows
    estimate = needed * per_eval
    if estimate <= max_seconds:
        return needed, (f"automatic: the full expansion ({needed} evaluations, about {estimate:.0f} s at "
                        f"{per_eval:.3g} s each) fits max_seconds={max_seconds:g}")
    fit = max(int(max_seconds / max(per_eval, 1e-9)), 2 * n_features + 2)
    return fit, (f"automatic: the full expansion ({needed} evaluations) would take about {estimate:.0f} s at "
                 f"{per_eval:.3g} s each, more than max_seconds={max_seconds:g}; {fit} evaluations fit")
