"""Classification metrics for multi-label (or binary) outputs: accuracy, precision, recall, F1 and AUC-ROC.

Array layout: ``y_true`` is ``(N, L)`` with 0/1 (or boolean) ground truth for N samples and L labels, ``y_score``
is ``(N, L)`` with a score per sample and label (a probability for the thresholded metrics). A 1-D array is one
label. Exclusive (softmax) classes are scored one-vs-rest by passing one-hot ``y_true`` and the class
probabilities.

Undefined values are ``None`` with a reason in ``notes``, never NaN:

- precision when nothing is predicted positive (``tp + fp == 0``),
- recall when there are no positive samples (``tp + fn == 0``),
- F1 = ``2 tp / (2 tp + fp + fn)`` when there are neither positive samples nor positive predictions,
- AUC-ROC when only one class is present among the samples.

Macro averages are the unweighted mean over the labels where the metric is defined; ``macro["n_labels"][metric]``
says over how many labels each mean was taken.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from ..errors import InputError

METRICS = ("accuracy", "precision", "recall", "f1", "auc_roc")


def _as_2d(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(f"{what} must be (N,) or (N, L); got shape {arr.shape}")
    return arr


def _truth(y_true: np.ndarray) -> np.ndarray:
    t = _as_2d(y_true, "y_true")
    if not np.isin(t, (0, 1)).all():
        raise InputError("y_true must hold only 0 and 1 (one column per label)")
    return t.astype(bool)


def auc_roc(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """Area under the ROC curve of one label, by ranks (Mann–Whitney U / (n_pos · n_neg)).

    Ties get average ranks, so a tie between a positive and a negative counts one half — the trapezoidal ROC
    area. Returns None when only one class is present (AUC is undefined).
    """
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if t.shape != s.shape:
        raise InputError(f"y_true has {t.size} values, y_score {s.size}")
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # average ranks for ties
    u = float(ranks[t].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    """Counts ``tp, fp, tn, fn`` of one binary label (1-D arrays of 0/1 or booleans)."""
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    return {
        "tp": int(np.sum(t & p)),
        "fp": int(np.sum(~t & p)),
        "tn": int(np.sum(~t & ~p)),
        "fn": int(np.sum(t & ~p)),
    }


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def label_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> dict[str, object]:
    """Metrics of one label: ``accuracy, precision, recall, f1, auc_roc``, the confusion counts and ``notes``.

    A sample is predicted positive when its score is ``>= threshold``.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    c = confusion(t, s >= threshold)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    out: dict[str, object] = {
        "accuracy": (tp + tn) / t.size,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc_roc": auc_roc(t, s),
        **c,
        "n_positive": int(t.sum()),
    }
    notes: dict[str, str] = {}
    if out["precision"] is None:
        notes["precision"] = "no sample is predicted positive at this threshold"
    if out["recall"] is None:
        notes["recall"] = "no positive sample"
    if out["f1"] is None:
        notes["f1"] = "no positive sample and no positive prediction"
    if out["auc_roc"] is None:
        notes["auc_roc"] = f"only one class present ({'all positive' if t.all() else 'all negative'})"
    if notes:
        out["notes"] = notes
    return out


def classification_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    label_names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, object]:
    """Per-label and macro-averaged classification metrics.

    Args:
        y_true: ``(N, L)`` 0/1 ground truth (or ``(N,)`` for one label).
        y_score: ``(N, L)`` scores / probabilities, same shape.
        label_names: one name per label (default ``"0", "1", ...``).
        threshold: a score ``>= threshold`` is a positive prediction (default 0.5).

    Returns:
        ``{"threshold", "n_samples", "labels": {name: {...}}, "macro": {metric: value | None, "n_labels": {...}}}``.
    """
    t = _truth(y_true)
    s = _as_2d(y_score, "y_score").astype(float)
    if t.shape != s.shape:
        raise InputError(f"y_true has shape {t.shape} but y_score has {s.shape}; they must match (N, L)")
    if t.shape[0] == 0:
        raise InputError("no samples to score")
    if not np.isfinite(s).all():
        raise InputError("y_score holds NaN or infinite values")
    names = [str(i) for i in range(t.shape[1])] if label_names is None else [str(n) for n in label_names]
    if len(names) != t.shape[1]:
        raise InputError(f"{len(names)} label names for {t.shape[1]} labels")
    per_label = {name: label_metrics(t[:, i], s[:, i], threshold) for i, name in enumerate(names)}
    macro: dict[str, object] = {}
    counts: dict[str, int] = {}
    for m in METRICS:
        vals = [float(v[m]) for v in per_label.values() if v[m] is not None]  # type: ignore[arg-type]
        macro[m] = float(np.mean(vals)) if vals else None
        counts[m] = len(vals)
    macro["n_labels"] = counts
    return {"threshold": float(threshold), "n_samples": int(t.shape[0]), "labels": per_label, "macro": macro}
