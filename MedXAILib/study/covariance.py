"""Covariances of the reader × modality AUCs over cases, and their Obuchowski–Rockette averages.

Two estimators of ``Cov(AUC[t, r], AUC[t', r'])`` over the population of cases:

- ``jackknife`` (the default of OR-DBM MRMC, MRMCaov and RJafroc): ``(c − 1)/c · Σ_k (θ₍ₖ₎ − θ̄)(θ'₍ₖ₎ − θ̄')`` over
  the ``c`` leave-one-case-out AUCs;
- ``delong`` (DeLong, DeLong & Clarke-Pearson 1988): ``S10/n1 + S01/n0``, the sample covariances (divisor n − 1) of
  the placement values over the cases with (n1) and without (n0) the finding.

Readers that read disjoint case blocks (a split-plot design) share no case, so their AUCs are independent and the
covariance between them is exactly 0; each block's jackknife leaves out its own cases only.

The Obuchowski–Rockette model averages this ``(T·R) × (T·R)`` matrix into four numbers: the error variance and
``Cov1`` (same reader, different modalities), ``Cov2`` (same modality, different readers), ``Cov3`` (both differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .auc import jackknife_aucs, placements

COVARIANCE_METHODS = ("jackknife", "delong")


def reader_groups(mask: np.ndarray) -> list[list[int]]:
    """Readers grouped by the cases they read (a split-plot design's blocks; one group when fully crossed).

    Args:
        mask: ``(T, R, C)`` bool of existing reads (each reader reads each of its cases under every modality).

    Raises:
        InputError: two readers' case sets overlap without being equal (neither crossed nor split-plot).
    """
    per_reader = mask.all(axis=0)  # (R, C)
    groups: dict[bytes, list[int]] = {}
    for r in range(per_reader.shape[0]):
        groups.setdefault(per_reader[r].tobytes(), []).append(r)
    blocks = list(groups.values())
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            if (per_reader[a[0]] & per_reader[b[0]]).any():
                raise InputError("readers' case sets overlap without being equal; a split-plot design needs disjoint "
                                 "case blocks, each read in full by its reader group")
    return blocks


def mean_covariance(values: np.ndarray) -> np.ndarray:
    """The jackknife ``(T, R, T, R)`` covariance over cases of per-reader means (e.g. mean reading time).

    Args:
        values: ``(T, R, C)`` per-read values, NaN where not read (split-plot blocks as in :func:`auc_covariance`).
    """
    T, R, _ = values.shape
    cov = np.zeros((T, R, T, R))
    for group in reader_groups(~np.isnan(values)):
        cases = ~np.isnan(values[0, group[0]])
        flat = values[:, group][:, :, cases].reshape(T * len(group), -1)
        c = flat.shape[1]
        if c < 2:
            raise InputError("a jackknife over cases needs at least two cases per reader")
        jk = (flat.sum(axis=1, keepdims=True) - flat) / (c - 1)
        dev = jk - jk.mean(axis=1, keepdims=True)
        sub = ((c - 1) / c * dev @ dev.T).reshape(T, len(group), T, len(group))
        for a, ra in enumerate(group):
            for b, rb in enumerate(group):
                cov[:, ra, :, rb] = sub[:, a, :, b]
    return cov


def auc_covariance(scores: np.ndarray, truth: np.ndarray, method: str = "jackknife") -> np.ndarray:
    """The ``(T, R, T, R)`` covariance of the empirical AUCs over cases.

    Args:
        scores: ``(T, R, C)`` ratings, NaN where not read (split-plot blocks; see :func:`reader_groups`).
        truth: ``(C,)`` 0/1.
        method: ``jackknife`` or ``delong``.
    """
    if method not in COVARIANCE_METHODS:
        raise InputError(f"unknown covariance method {method!r}; use one of {', '.join(COVARIANCE_METHODS)}")
    T, R, _ = scores.shape
    truth = np.asarray(truth).astype(bool)
    cov = np.zeros((T, R, T, R))
    for group in reader_groups(~np.isnan(scores)):
        cases = ~np.isnan(scores[0, group[0]])
        y = truth[cases]
        block = scores[:, group][:, :, cases]  # (T, G, c)
        flat = block.reshape(T * len(group), -1)
        if method == "jackknife":
            c = flat.shape[1]
            jk = np.stack([jackknife_aucs(row, y) for row in flat])  # (T·G, c)
            dev = jk - jk.mean(axis=1, keepdims=True)
            sub = (c - 1) / c * dev @ dev.T
        else:
            if y.sum() < 2 or (~y).sum() < 2:
                raise InputError("DeLong's covariance needs at least two cases with and two without the finding")
            pl = [placements(row[~y], row[y]) for row in flat]
            v10 = np.stack([p[0] for p in pl])
            v01 = np.stack([p[1] for p in pl])
            sub = np.cov(v10, ddof=1) / v10.shape[1] + np.cov(v01, ddof=1) / v01.shape[1]
            sub = np.atleast_2d(sub)
        sub = sub.reshape(T, len(group), T, len(group))
        for a, ra in enumerate(group):
            for b, rb in enumerate(group):
                cov[:, ra, :, rb] = sub[:, a, :, b]
    return cov


@dataclass(frozen=True)
class ORCovariances:
    """The Obuchowski–Rockette error variance and covariances (AUC² units).

    ``cov1``, ``cov2`` or ``cov3`` is NaN where no pair defines it (one modality: cov1 and cov3; one reader: cov2
    and cov3).
    """

    var_error: float
    cov1: float
    cov2: float
    cov3: float


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def or_covariances(cov: np.ndarray, modalities: list[int] | None = None,
                   readers: list[int] | None = None) -> ORCovariances:
    """Average a ``(T, R, T, R)`` covariance into the OR error variance, Cov1, Cov2 and Cov3.

    Args:
        cov: from :func:`auc_covariance`.
        modalities, readers: restrict the averages to these indices (one modality: its single-arm analysis; one
            reader: the reader-specific tests).
    """
    T, R = cov.shape[:2]
    ts = list(range(T)) if modalities is None else list(modalities)
    rs = list(range(R)) if readers is None else list(readers)
    var, c1, c2, c3 = [], [], [], []
    for t in ts:
        for r in rs:
            for u in ts:
                for s in rs:
                    v = float(cov[t, r, u, s])
                    if t == u and r == s:
                        var.append(v)
                    elif r == s:
                        c1.append(v)
                    elif t == u:
                        c2.append(v)
                    else:
                        c3.append(v)
    return ORCovariances(_mean(var), _mean(c1), _mean(c2), _mean(c3))
