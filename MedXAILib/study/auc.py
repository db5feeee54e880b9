"""The empirical (trapezoidal) ROC AUC and what the covariance estimators need from it.

The empirical AUC is the Mann–Whitney statistic: the probability that a case with the finding is rated higher than
one without, ties counting one half. It equals the area under the ROC curve drawn through every operating point with
straight lines (the trapezoidal rule). Everything here works from *placement values* (DeLong et al. 1988):

- for a case with the finding, ``V10`` = the fraction of cases without the finding that it outranks (ties ½);
- for a case without the finding, ``V01`` = the fraction of cases with the finding that outrank it (ties ½);

so that ``AUC = mean(V10) = mean(V01)``. Placements cost ``O(n log n)`` (sorting), never the ``n1 × n0`` matrix.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def placements(negatives: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong placement values.

    Args:
        negatives: ``(n0,)`` ratings of the cases without the finding.
        positives: ``(n1,)`` ratings of the cases with the finding (higher = more suspicious).

    Returns:
        ``(v10, v01)``: ``(n1,)`` placements of the positives among the negatives and ``(n0,)`` placements of the
        negatives among the positives, each in [0, 1].
    """
    x = np.sort(np.asarray(negatives, dtype=float))
    y = np.sort(np.asarray(positives, dtype=float))
    if x.size == 0 or y.size == 0:
        raise InputError("an AUC needs at least one case with and one case without the finding")
    pos = np.asarray(positives, dtype=float)
    neg = np.asarray(negatives, dtype=float)
    below = np.searchsorted(x, pos, side="left")
    at_or_below = np.searchsorted(x, pos, side="right")
    v10 = (below + 0.5 * (at_or_below - below)) / x.size
    above = y.size - np.searchsorted(y, neg, side="right")
    at_or_above = y.size - np.searchsorted(y, neg, side="left")
    v01 = (above + 0.5 * (at_or_above - above)) / y.size
    return v10, v01


def empirical_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """The trapezoidal ROC AUC (Mann–Whitney, ties ½) of ratings where higher means the finding is present."""
    v10, _ = placements(negatives, positives)
    return float(v10.mean())


def jackknife_aucs(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Leave-one-case-out AUCs of one reader under one modality.

    Args:
        ratings: ``(C,)`` ratings of the cases (case order as ``truth``).
        truth: ``(C,)`` 0/1.

    Returns:
        ``(C,)``: element ``k`` is the AUC with case ``k`` left out. From the placements: leaving out a positive
        ``k`` gives ``(n1·AUC − V10_k) / (n1 − 1)``, leaving out a negative ``l`` gives ``(n0·AUC − V01_l) / (n0 − 1)``.
    """
    truth = np.asarray(truth).astype(bool)
    n1, n0 = int(truth.sum()), int((~truth).sum())
    if n1 < 2 or n0 < 2:
        raise InputError("the jackknife needs at least two cases with and two without the finding per reader")
    v10, v01 = placements(ratings[~truth], ratings[truth])
    auc = v10.mean()
    out = np.empty(truth.size)
    out[truth] = (n1 * auc - v10) / (n1 - 1)
    out[~truth] = (n0 * auc - v01) / (n0 - 1)
    return out


def auc_matrix(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(T, R)`` empirical AUCs of a ``(T, R, C)`` score array (NaN = not read: each AUC uses the cases read)."""
    T, R, _ = scores.shape
    out = np.empty((T, R))
    for t in range(T):
        for r in range(R):
            read = ~np.isnan(scores[t, r])
            s, y = scores[t, r, read], np.asarray(truth)[read].astype(bool)
            out[t, r] = empirical_auc(s[~y], s[y])
    return out


def roc_points(negatives: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical ROC curve: ``(fpr, tpr)`` at every distinct threshold, from (0, 0) to (1, 1)."""
    neg, pos = np.asarray(negatives, float), np.asarray(positives, float)
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.concatenate([[0.0], [(neg >= th).mean() for th in thresholds]])
    tpr = np.concatenate([[0.0], [(pos >= th).mean() for th in thresholds]])
    return fpr, tpr
