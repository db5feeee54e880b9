"""Reliance measured by intervention: the ground truth of the shortcut benchmark.

Each held-out case is shown to a trained model in the variants of :mod:`.confound` (every prediction through
:meth:`Model.predict`, the model's one function), and the model's score is read:

- classification: the predicted probability of the finding on the clean image (``score_clean``), with the artifact
  added (``score_added``), and in the swapped test set (``score_swapped``: the added score for a negative, the clean
  one for a positive). The per-case **effect** is ``score_added − score_clean``.
- segmentation: Dice of the finding's region on the clean image, on the swapped image (the blob away from the
  lesion) and on the image drawn as in training; the per-case **effect** is the change of the model's mean
  probability of the finding inside the blob's mask, swapped minus clean.

:func:`summarise_reliance` pools the held-out cases of all folds (each scored by the fold model that never saw
it) into AUC (or mean Dice) clean, swapped, and on data confounded like the training data, with per-fold values.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..metrics.classification import auc_roc
from ..metrics.segmentation import dice
from .artifacts import ArtifactSpec
from .confound import Finding, draw_case, finding_mask, finding_region

RELIANCE_KEYS = {"classification": ("auc", "auc_swapped", "auc_confounded_data"),
                 "segmentation": ("dice", "dice_swapped", "dice_confounded_data")}


def finding_classes(model: Any, finding: Finding) -> list[int]:
    """Indices of the model's outputs that make up the finding."""
    d = model.description
    if finding.task == "classification":
        return [d.class_index(finding.name)]
    values = list(d.label_values) if d.label_values else list(range(d.n_classes))
    if not finding.label_values:  # the whole foreground
        return [i for i, v in enumerate(values) if v != 0]
    return [values.index(v) for v in finding.label_values if v in values]


def _seg_score(model: Any, prediction: Any, finding: Finding, region: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean probability of the finding inside ``region``, predicted finding mask (K, J, I))."""
    idx = finding_classes(model, finding)
    prob = prediction.probabilities.array[idx].sum(axis=0)
    predicted = finding_mask(prediction.labels.array[0], finding)
    return (float(prob[region].mean()) if region.any() else float("nan")), predicted


def measure_case(model: Any, role: str, case: Any, spec: ArtifactSpec, finding: Finding, fold: int) -> dict[str, Any]:
    """One held-out case shown to one model in every variant; returns the case's record (see the module docstring).

    ``case`` is a case of the original (unconfounded) dataset; ``role`` names the model (``clean``/``confounded``).
    """
    trained = draw_case(case, spec, finding, "train")
    rec: dict[str, Any] = {"case_id": case.case_id, "patient_id": case.patient_id, "fold": int(fold), "model": role,
                           "artifact_in_training_draw": bool(trained.present)}
    if trained.placement is not None:
        rec["placement"] = trained.placement.as_dict()
    if finding.task == "classification":
        clean = draw_case(case, spec, finding, "clean")
        added = draw_case(case, spec, finding, "added")
        c = finding_classes(model, finding)[0]
        p_clean = float(model.predict(clean.image).class_probabilities[c])
        p_added = float(model.predict(added.image).class_probabilities[c])
        rec.update(label=int(clean.label or 0), score_clean=p_clean, score_added=p_added,
                   score_swapped=p_added if not clean.label else p_clean,
                   score_confounded_data=p_added if trained.present else p_clean, effect=p_added - p_clean)
        return rec
    clean = draw_case(case, spec, finding, "clean")
    swapped = draw_case(case, spec, finding, "swapped")
    lesion = finding_region(clean.truth, finding)
    assert swapped.mask is not None
    s_clean, pred_clean = _seg_score(model, model.predict(clean.image), finding, swapped.mask)
    s_swapped, pred_swapped = _seg_score(model, model.predict(swapped.image), finding, swapped.mask)
    _, pred_trained = _seg_score(model, model.predict(trained.image), finding, swapped.mask)
    rec.update(dice_clean=dice(pred_clean, lesion), dice_swapped=dice(pred_swapped, lesion),
               dice_confounded_data=dice(pred_trained, lesion), score_clean=s_clean, score_swapped=s_swapped,
               effect=s_swapped - s_clean, swapped_placement=swapped.placement.as_dict() if swapped.placement else None)
    return rec


def _reliance_of(records: Sequence[dict[str, Any]], task: str) -> dict[str, float | None]:
    if task == "classification":
        y = np.array([r["label"] for r in records])
        out: dict[str, float | None] = {
            "auc": auc_roc(y, np.array([r["score_clean"] for r in records])),
            "auc_swapped": auc_roc(y, np.array([r["score_swapped"] for r in records])),
            "auc_confounded_data": auc_roc(y, np.array([r["score_confounded_data"] for r in records])),
        }
    else:
        out = {k: float(np.mean([r["dice_clean" if k == "dice" else k] for r in records])) if records else None
               for k in RELIANCE_KEYS["segmentation"]}
    out["n_cases"] = len(records)  # type: ignore[assignment]
    if task == "classification":
        out["n_positive"] = int(sum(r["label"] for r in records))  # type: ignore[assignment]
    return out


def summarise_reliance(records: Sequence[dict[str, Any]], task: str) -> dict[str, dict[str, Any]]:
    """Per model role: the pooled reliance numbers, the drop (clean − swapped), and the same per fold.

    Returns ``{role: {"auc", "auc_swapped", "auc_confounded_data", "auc_drop", "n_cases", "n_positive",
    "per_fold": [{fold, auc, auc_swapped, ...}]}}`` (``dice*`` keys for segmentation; mean Dice over cases).
    """
    metric = RELIANCE_KEYS[task][0]
    out: dict[str, dict[str, Any]] = {}
    for role in dict.fromkeys(r["model"] for r in records):
        mine = [r for r in records if r["model"] == role]
        summary: dict[str, Any] = _reliance_of(mine, task)
        a, b = summary[metric], summary[f"{metric}_swapped"]
        summary[f"{metric}_drop"] = None if a is None or b is None else a - b
        per_fold = []
        for fold in sorted({int(r["fold"]) for r in mine}):
            row = _reliance_of([r for r in mine if int(r["fold"]) == fold], task)
            per_fold.append({"fold": fold, **row})
        summary["per_fold"] = per_fold
        out[role] = summary
    return out


__all__ = ["RELIANCE_KEYS", "finding_classes", "measure_case", "summarise_reliance"]
