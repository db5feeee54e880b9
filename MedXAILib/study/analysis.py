"""The MRMC analysis of a ratings table: what ``study analyse`` writes as ``mrmc.json``.

:func:`analyse_ratings` computes, for a :class:`~.ratings.Ratings` table:

- per reader and arm: the empirical (trapezoidal) AUC and, where decisions were recorded, sensitivity and
  specificity at the reader's decision;
- the Obuchowski–Rockette analysis (:mod:`.orh`) of the AUCs with jackknife (default) or DeLong covariances
  (:mod:`.covariance`): random readers and random cases, fixed readers and random cases, random readers and fixed
  cases;
- where reading times were recorded: the median per arm and the OR analysis of the per-reader mean reading time
  (jackknife over cases), which gives each pairwise difference a CI that accounts for readers and cases.

The keys other tools can rely on are listed in :data:`MRMC_KEYS`; numbers that do not exist (a df of infinity, a
test a design cannot support) are written as ``null``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .auc import auc_matrix, roc_points
from .covariance import COVARIANCE_METHODS, auc_covariance, mean_covariance, reader_groups
from .orh import or_analysis
from .ratings import Ratings

#: The documented, stable keys of ``mrmc.json`` (docs/reader-study.md describes each).
MRMC_KEYS = ("modalities", "readers", "auc", "mean_auc", "covariance", "random_readers_random_cases",
             "fixed_readers_random_cases", "random_readers_fixed_cases")
FORMAT = "medxai-mrmc/1"


def _binary_rates(decisions: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Sensitivity and specificity of 0/1 decisions (NaN = no decision) against truth."""
    have = ~np.isnan(decisions)
    pos, neg = have & (truth == 1), have & (truth == 0)
    sens = float(decisions[pos].mean()) if pos.any() else None
    spec = float(1.0 - decisions[neg].mean()) if neg.any() else None
    return {"sensitivity": sens, "specificity": spec, "n_with_finding": int(pos.sum()),
            "n_without_finding": int(neg.sum())}


def decision_summary(ratings: Ratings) -> dict[str, Any] | None:
    """Sensitivity and specificity per arm and reader, and per arm over readers (mean of the reader values)."""
    if np.isnan(ratings.decisions).all():
        return None
    out: dict[str, Any] = {}
    for t, m in enumerate(ratings.modalities):
        per_reader = {r: _binary_rates(ratings.decisions[t, j], ratings.truth) for j, r in enumerate(ratings.readers)}
        sens = [v["sensitivity"] for v in per_reader.values() if v["sensitivity"] is not None]
        spec = [v["specificity"] for v in per_reader.values() if v["specificity"] is not None]
        out[m] = {"mean_sensitivity": float(np.mean(sens)) if sens else None,
                  "mean_specificity": float(np.mean(spec)) if spec else None, "readers": per_reader}
    return out


def timing_summary(ratings: Ratings, alpha: float = 0.05) -> dict[str, Any] | None:
    """Reading time per arm (median and mean seconds) and the OR analysis (random readers and cases) of the
    per-reader mean reading time: each pairwise difference (a − b, seconds) with its SE, df, p and CI."""
    seconds = ratings.seconds
    if np.isnan(seconds).all():
        return None
    if (np.isnan(seconds) != np.isnan(ratings.scores)).any():
        return {"note": "reading times are missing for some reads; no timing analysis"}
    out: dict[str, Any] = {"unit": "seconds", "arms": {}}
    for t, m in enumerate(ratings.modalities):
        v = seconds[t][~np.isnan(seconds[t])]
        out["arms"][m] = {"median": float(np.median(v)), "mean": float(v.mean()),
                          "quartiles": [float(np.percentile(v, 25)), float(np.percentile(v, 75))]}
    if len(ratings.modalities) > 1 and len(ratings.readers) > 1:
        means = np.nanmean(seconds, axis=2)
        res = or_analysis(means, mean_covariance(seconds), ratings.modalities, ratings.readers, alpha)
        rrrc = res["random_readers_random_cases"]
        out["random_readers_random_cases"] = {k: rrrc[k] for k in ("f", "df1", "df2", "p", "differences")}
    return out


def roc_curves(ratings: Ratings) -> dict[str, Any]:
    """Empirical ROC points per arm and reader (``fpr``, ``tpr`` lists) for the report's figures."""
    out: dict[str, Any] = {}
    for t, m in enumerate(ratings.modalities):
        out[m] = {}
        for j, r in enumerate(ratings.readers):
            read = ~np.isnan(ratings.scores[t, j])
            s, y = ratings.scores[t, j, read], ratings.truth[read].astype(bool)
            fpr, tpr = roc_points(s[~y], s[y])
            out[m][r] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return out


def analyse_ratings(ratings: Ratings, covariance: str = "jackknife", alpha: float = 0.05) -> dict[str, Any]:
    """The whole MRMC analysis of a ratings table (see the module docstring); JSON-ready."""
    if covariance not in COVARIANCE_METHODS:
        from ..errors import InputError

        raise InputError(f"unknown covariance method {covariance!r}; use one of {', '.join(COVARIANCE_METHODS)}")
    auc = auc_matrix(ratings.scores, ratings.truth)
    cov = auc_covariance(ratings.scores, ratings.truth, covariance)
    result = or_analysis(auc, cov, ratings.modalities, ratings.readers, alpha)
    groups = reader_groups(ratings.read_mask())
    covariance_out = {"method": covariance, **result.pop("covariance")}
    n_read = ratings.read_mask()[0].sum(axis=1)
    out: dict[str, Any] = {
        "format": FORMAT,
        "source": ratings.source,
        "design": "fully-crossed" if len(groups) == 1 else "split-plot",
        "reader_groups": [[ratings.readers[r] for r in g] for g in groups],
        "alpha": alpha,
        "n_cases": int(len(ratings.cases)),
        "n_cases_with_finding": int(ratings.truth.sum()),
        "n_cases_per_reader": {r: int(n) for r, n in zip(ratings.readers, n_read)},
        "modalities": list(ratings.modalities),
        "readers": list(ratings.readers),
        "auc": {m: {r: float(auc[t, j]) for j, r in enumerate(ratings.readers)}
                for t, m in enumerate(ratings.modalities)},
        "mean_auc": {m: float(auc[t].mean()) for t, m in enumerate(ratings.modalities)},
        "covariance": covariance_out,
        **result,
        "decisions": decision_summary(ratings),
        "reading_time": timing_summary(ratings, alpha),
    }
    return finite_or_null(out)


def finite_or_null(obj: Any) -> Any:
    """A copy of a JSON-like structure with NaN and ±inf replaced by None and numpy scalars by Python numbers."""
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
