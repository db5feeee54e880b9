"""Triangulation: run several explanation methods on one case and target, and measure how far they agree.

``compare(model, volume, ["gradcam", "ig", "occlusion"], label=...)`` explains the *same* target with every method
(the target is resolved once, from one prediction), then measures pairwise agreement, a rank-averaged consensus map
and each method's agreement with it (:mod:`MedXAILib.metrics.agreement`). :func:`write_comparison` writes the
folder the ``compare`` command produces::

    DIR/<method>.nrrd            each method's signed raw heat map (input geometry) and DIR/<method>.nrrd.json
    DIR/consensus.nrrd           the consensus map (mean normalised rank, [0, 1])
    DIR/consensus_agreement.nrrd the per-voxel agreement (1 − 2·SD of the normalised ranks, [0, 1])
    DIR/agreement.json           {"methods", "spearman", "ssim", "topk_iou", "consensus", "mean_pairwise",
                                  "consensus_agreement_mean", "consensus_agreement_chance", …}

The consensus agreement's mean is read against its chance level, ``consensus_agreement_chance`` (the same mean with
each method's ranks drawn independently of the others', :func:`MedXAILib.metrics.agreement.consensus_chance`): with
two methods and no ties, chance is 2/3, so a mean of 0.7 says little; ``consensus_agreement_above_chance`` is the
difference. The command prints both.
    DIR/agreement.png            the maps side by side over the anatomy, and the three matrices as heat maps
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import InputError
from .metrics.agreement import DEFAULT_TOPK_PERCENT, agreement
from .models import Model, Prediction
from .progress import ProgressCallback, no_progress, scaled
from .targets import Target, resolve_target
from .volume import Volume


@dataclass
class Comparison:
    """The result of :func:`compare`.

    Attributes:
        explanations: method name → :class:`~MedXAILib.explain.Explanation` (maps on the input grid).
        report: the agreement report (see :func:`MedXAILib.metrics.agreement.agreement`).
        consensus: ``(1, K, J, I)`` Volume of the consensus map; agreement: the per-voxel agreement, same geometry.
        target: the explained target.
    """

    explanations: dict[str, Any]
    report: dict[str, Any]
    consensus: Volume
    agreement: Volume
    target: Target


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """Method names from ``"a,b,c"`` or a list; at least two, no repeats."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t and t.strip()]
    if len(items) < 2:
        raise InputError(f"compare needs at least two methods (e.g. --methods gradcam,ig,occlusion); got {items}")
    repeated = sorted({m for m in items if items.count(m) > 1})
    if repeated:
        raise InputError(f"method {', '.join(repeated)} is listed twice; list each method once")
    return items


def object_mask(volume: Volume) -> np.ndarray:
    """``(K, J, I)`` bool: voxels where any channel is non-zero, or every voxel when none or all are zero."""
    obj = np.any(volume.array != 0, axis=0)
    return obj if obj.any() and not obj.all() else np.ones(volume.shape, dtype=bool)


def compare(
    model: Model,
    volume: Volume,
    methods: str | Sequence[str],
    *,
    label: str | int | None = None,
    region: Volume | np.ndarray | None = None,
    voxel: Sequence[int] | None = None,
    target: Target | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    values: str = "display",
    topk_percent: float = DEFAULT_TOPK_PERCENT,
    map_resampling: str = "interpolate",
    region_of_comparison: str = "object",
    progress: ProgressCallback = no_progress,
) -> Comparison:
    """Explain one target of ``model`` on ``volume`` with every method and measure their agreement.

    Args:
        model, volume: the model and its input ``(C, K, J, I)``.
        methods: two or more registered method names (``"a,b,c"`` or a list).
        label, region, voxel, target: what to explain (as :func:`MedXAILib.explain.explain`); resolved once.
        params: per-method parameters, method → {key: value}.
        values: ``display`` (compare importance as displayed) or ``signed``; topk_percent: k of the top-k IoU.
        map_resampling: see :func:`MedXAILib.explain.explain`.
        region_of_comparison: ``object`` (default: voxels where any input channel is non-zero, see
            :func:`object_mask`) or ``all`` voxels.

    Returns:
        a :class:`Comparison`. A method that cannot explain this model or target raises its error (nothing is
        silently dropped).
    """
    from .explain import explain, get_method

    if region_of_comparison not in ("object", "all"):
        raise InputError(f"unknown comparison region {region_of_comparison!r}; use object or all")
    names = parse_methods(methods)
    for name in names:
        get_method(name)  # unknown names fail before any work
    unknown = sorted(set(params or {}) - set(names))
    if unknown:
        raise InputError(f"parameters given for {', '.join(unknown)}, which is not among the compared methods")
    if target is None:
        progress(0.0, "predicting and resolving the target")
        prediction: Prediction | None = None
        needs_prediction = label is None or (model.task == "segmentation" and region is None and voxel is None)
        if needs_prediction:
            prediction = model.predict(volume)
        target = resolve_target(model, volume, label, region, voxel, prediction)
    explanations: dict[str, Any] = {}
    for n, name in enumerate(names):
        sub = scaled(progress, 0.02 + 0.88 * n / len(names), 0.02 + 0.88 * (n + 1) / len(names))
        sub(0.0, f"explaining with {name}")
        explanations[name] = explain(model, volume, name, target=target, params=dict((params or {}).get(name, {})),
                                     progress=sub, map_resampling=map_resampling)
    progress(0.9, "measuring agreement")
    maps = {n: e.heatmap.array[0] for n, e in explanations.items()}
    mask = object_mask(volume) if region_of_comparison == "object" else None
    report, cons, per_voxel = agreement(maps, {n: e.display for n, e in explanations.items()}, values, topk_percent,
                                        mask)
    report["settings"]["region"] = region_of_comparison
    report["target"] = target.describe()
    report["seconds"] = {n: round(e.cost.seconds, 4) for n, e in explanations.items()}
    progress(1.0, "comparison done")
    return Comparison(
        explanations=explanations,
        report=report,
        consensus=volume.with_array(cons[None].astype(np.float32), channel_names=["consensus"]),
        agreement=volume.with_array(per_voxel[None].astype(np.float32), channel_names=["agreement"]),
        target=target,
    )


def write_comparison(
    comparison: Comparison, folder: str | Path, anatomy: Volume, extra: Mapping[str, Any] | None = None,
    figure: bool = True,
) -> dict[str, Path]:
    """Write the ``compare`` folder (see the module docstring); every file atomically. Returns name → path."""
    from .io import write_json, write_volume

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; give --output a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, e in comparison.explanations.items():
        p = out / f"{name}.nrrd"
        write_volume(e.heatmap, p)
        write_json({**(extra or {}), **e.summary()}, str(p) + ".json")
        paths[name] = p
    paths["consensus"] = write_volume(comparison.consensus, out / "consensus.nrrd")
    paths["consensus_agreement"] = write_volume(comparison.agreement, out / "consensus_agreement.nrrd")
    paths["agreement"] = write_json({**comparison.report, **(extra or {})}, out / "agreement.json")
    if figure:
        from .figures.agreement import agreement_figure

        paths["figure"] = agreement_figure(out / "agreement.png", anatomy, comparison)
    return paths
