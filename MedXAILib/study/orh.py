"""The Obuchowski–Rockette analysis of reader × modality AUCs, with Hillis' improvements.

Model (Obuchowski & Rockette 1995): ``θ[t, r] = μ + τ_t + R_r + (τR)_tr + ε_tr`` with fixed modality effects ``τ``,
random reader effects, and errors correlated through the cases (:mod:`.covariance`). From the two-way ANOVA of the
``(T, R)`` AUC table (mean squares ``MS(T)``, ``MS(R)``, ``MS(T×R)``) and the error covariances:

- random readers, random cases (RRRC): ``F = MS(T) / [MS(T×R) + R·max(Cov2 − Cov3, 0)]`` on ``T − 1`` and Hillis'
  (2007) denominator degrees of freedom ``ddf_H = [MS(T×R) + R·max(Cov2 − Cov3, 0)]² / [MS(T×R)² / ((T−1)(R−1))]``;
  pairwise differences with ``SE = sqrt(2/R · [MS(T×R) + R·max(Cov2 − Cov3, 0)])`` on ``ddf_H``; single-modality
  CIs from that modality's readers only: ``SE = sqrt([MS_t(R) + R·max(Cov2_t, 0)] / R)`` on
  ``[MS_t(R) + R·max(Cov2_t, 0)]² / [MS_t(R)² / (R − 1)]``;
- fixed readers, random cases (FRRC): ``X² = (T − 1)·MS(T) / [σ²_ε − Cov1 + (R − 1)·max(Cov2 − Cov3, 0)]`` on
  ``T − 1`` (chi-square); differences with ``SE = sqrt(2/R · [σ²_ε − Cov1 + (R − 1)·max(Cov2 − Cov3, 0)])`` and the
  normal distribution; per-reader differences with ``SE = sqrt(2·(σ²_ε,r − Cov1_r))``;
- random readers, fixed cases (RRFC): ``F = MS(T) / MS(T×R)`` on ``T − 1`` and ``(T − 1)(R − 1)``; differences with
  ``SE = sqrt(2·MS(T×R)/R)`` (a paired t-test when T = 2).

The variance components (for sample sizes): ``σ²_TR = MS(T×R) − σ²_ε + Cov1 + Cov2 − Cov3`` and
``σ²_R = [MS(R) − σ²_TR − σ²_ε − (T − 1)·Cov1 + Cov2 + (T − 1)·Cov3] / T`` (method-of-moments; they can be negative).
These are the formulas OR-DBM MRMC 2.5 prints under each table, and MRMCaov uses.

Differences are ``a − b`` for every pair of modalities with ``a`` before ``b`` in the modality order.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from .covariance import ORCovariances, or_covariances


def mean_squares(auc: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA mean squares of a ``(T, R)`` AUC table (no replication): ``ms_t``, ``ms_r``, ``ms_tr``."""
    T, R = auc.shape
    grand = auc.mean()
    mt, mr = auc.mean(axis=1), auc.mean(axis=0)
    ms_t = R * float(((mt - grand) ** 2).sum()) / (T - 1) if T > 1 else math.nan
    ms_r = T * float(((mr - grand) ** 2).sum()) / (R - 1) if R > 1 else math.nan
    resid = auc - mt[:, None] - mr[None, :] + grand
    ms_tr = float((resid**2).sum()) / ((T - 1) * (R - 1)) if T > 1 and R > 1 else math.nan
    return {"ms_t": ms_t, "ms_r": ms_r, "ms_tr": ms_tr, "df_t": T - 1, "df_r": R - 1, "df_tr": (T - 1) * (R - 1)}


def _ci(estimate: float, se: float, quantile: float) -> list[float]:
    return [estimate - quantile * se, estimate + quantile * se]


def _t_test(estimate: float, se: float, df: float, alpha: float) -> dict[str, Any]:
    if se <= 0 or not math.isfinite(se):
        return {"difference": estimate, "stderr": se, "df": df, "t": math.nan, "p": math.nan,
                "ci": [math.nan, math.nan]}
    t = estimate / se
    dist = stats.norm if not math.isfinite(df) else stats.t(df)
    return {"difference": estimate, "stderr": se, "df": df, "t": t, "p": float(2 * dist.sf(abs(t))),
            "ci": _ci(estimate, se, float(dist.ppf(1 - alpha / 2)))}


def _z_test(estimate: float, se: float, alpha: float) -> dict[str, Any]:
    out = _t_test(estimate, se, math.inf, alpha)
    out["z"] = out.pop("t")
    out.pop("df")
    return out


def _hillis_df(denominator: float, ms: float, df_ms: int) -> float:
    """Satterthwaite-type df of ``denominator`` when only ``ms`` (on ``df_ms``) is random: Hillis (2007)."""
    if ms <= 0:
        return math.inf
    return denominator**2 / (ms**2 / df_ms)


def variance_components(ms: dict[str, float], c: ORCovariances, T: int) -> dict[str, float]:
    """``var_r`` and ``var_tr`` of the OR model (method of moments; see the module docstring)."""
    cov1 = 0.0 if math.isnan(c.cov1) else c.cov1
    cov3 = 0.0 if math.isnan(c.cov3) else c.cov3
    cov2 = 0.0 if math.isnan(c.cov2) else c.cov2
    var_tr = ms["ms_tr"] - c.var_error + cov1 + cov2 - cov3 if T > 1 else math.nan
    var_r = (ms["ms_r"] - (0.0 if T == 1 else var_tr) - c.var_error - (T - 1) * cov1 + cov2 + (T - 1) * cov3) / T
    return {"var_r": var_r, "var_tr": var_tr}


def or_analysis(auc: np.ndarray, cov: np.ndarray, modalities: list[str], readers: list[str],
                alpha: float = 0.05) -> dict[str, Any]:
    """The three OR analyses (see the module docstring) of a ``(T, R)`` AUC table and its ``(T, R, T, R)`` covariance.

    Returns a JSON-ready dict: ``anova``, ``covariance`` (``var_error``, ``cov1``, ``cov2``, ``cov3``, ``var_r``,
    ``var_tr``, per-modality and per-reader parts), ``random_readers_random_cases``, ``fixed_readers_random_cases``,
    ``random_readers_fixed_cases``. A test that the design cannot support (one reader: no random-reader analysis;
    one modality: no comparison) is None or has no differences, with a ``note``.
    """
    T, R = auc.shape
    ms = mean_squares(auc)
    c = or_covariances(cov)
    comp = variance_components(ms, c, T)
    by_mod = {m: or_covariances(cov, modalities=[t]) for t, m in enumerate(modalities)}
    by_reader = {r: or_covariances(cov, readers=[j]) for j, r in enumerate(readers)}
    ms_r_mod = {m: float(auc[t].var(ddof=1)) if R > 1 else math.nan for t, m in enumerate(modalities)}
    means = [float(v) for v in auc.mean(axis=1)]
    pairs = list(combinations(range(T), 2))
    cov_out = {"var_error": c.var_error, "cov1": c.cov1, "cov2": c.cov2, "cov3": c.cov3, **comp,
               "by_modality": {m: {"var_error": v.var_error, "cov2": v.cov2} for m, v in by_mod.items()},
               "by_reader": {r: {"var_error": v.var_error, "cov1": v.cov1} for r, v in by_reader.items()}}
    anova = {**ms, "ms_r_by_modality": ms_r_mod}
    z975 = float(stats.norm.ppf(1 - alpha / 2))

    # --- fixed readers, random cases -------------------------------------------------------------------------------
    c23 = max(c.cov2 - c.cov3, 0.0) if R > 1 and T > 1 else 0.0
    frrc: dict[str, Any] = {"chi2": None, "df": None, "p": None, "differences": []}
    if T > 1:
        den = c.var_error - c.cov1 + (R - 1) * c23
        chi2 = (T - 1) * ms["ms_t"] / den if den > 0 else math.nan
        frrc.update({"chi2": chi2, "df": T - 1, "denominator": den,
                     "p": float(stats.chi2.sf(chi2, T - 1)) if math.isfinite(chi2) else math.nan})
        se = math.sqrt(2.0 / R * den) if den > 0 else math.nan
        frrc["differences"] = [{"a": modalities[a], "b": modalities[b], **_z_test(means[a] - means[b], se, alpha)}
                               for a, b in pairs]
        frrc["readers"] = {}
        for j, r in enumerate(readers):
            v = by_reader[r]
            se_r = math.sqrt(2.0 * (v.var_error - v.cov1)) if v.var_error > v.cov1 else math.nan
            frrc["readers"][r] = [{"a": modalities[a], "b": modalities[b],
                                   **_z_test(float(auc[a, j] - auc[b, j]), se_r, alpha)} for a, b in pairs]
    frrc["modalities"] = {}
    for t, m in enumerate(modalities):
        v = by_mod[m]
        cov2 = max(v.cov2, 0.0) if R > 1 else 0.0
        se = math.sqrt((v.var_error + (R - 1) * cov2) / R)
        frrc["modalities"][m] = {"auc": float(means[t]), "var_error": v.var_error, "cov2": v.cov2, "stderr": se,
                                 "ci": _ci(float(means[t]), se, z975)}
    frrc["reader_auc"] = {r: {m: {"auc": float(auc[t, j]), "stderr": math.sqrt(max(cov[t, j, t, j], 0.0)),
                                  "ci": _ci(float(auc[t, j]), math.sqrt(max(cov[t, j, t, j], 0.0)), z975)}
                              for t, m in enumerate(modalities)} for j, r in enumerate(readers)}
    if R < 2:
        note = "one reader: readers cannot be treated as random; only the fixed-reader analysis applies"
        return {"anova": anova, "covariance": cov_out, "random_readers_random_cases": None,
                "fixed_readers_random_cases": frrc, "random_readers_fixed_cases": None, "note": note}

    # --- random readers, random cases ------------------------------------------------------------------------------
    rrrc: dict[str, Any] = {"f": None, "df1": None, "df2": None, "p": None, "differences": []}
    if T > 1:
        den = ms["ms_tr"] + R * c23
        df2 = _hillis_df(den, ms["ms_tr"], ms["df_tr"])
        f = ms["ms_t"] / den if den > 0 else math.nan
        p = float(stats.f.sf(f, T - 1, df2)) if math.isfinite(df2) else float(stats.chi2.sf(f * (T - 1), T - 1))
        rrrc.update({"f": f, "df1": T - 1, "df2": df2, "p": p, "denominator": den})
        se = math.sqrt(2.0 / R * den)
        rrrc["differences"] = [{"a": modalities[a], "b": modalities[b], **_t_test(means[a] - means[b], se, df2, alpha)}
                               for a, b in pairs]
    rrrc["modalities"] = {}
    for t, m in enumerate(modalities):
        den_t = ms_r_mod[m] + R * max(by_mod[m].cov2, 0.0)
        df_t = _hillis_df(den_t, ms_r_mod[m], R - 1)
        se = math.sqrt(den_t / R)
        q = float(stats.t.ppf(1 - alpha / 2, df_t)) if math.isfinite(df_t) else z975
        rrrc["modalities"][m] = {"auc": float(means[t]), "ms_r": ms_r_mod[m], "cov2": by_mod[m].cov2,
                                 "stderr": se, "df": df_t, "ci": _ci(float(means[t]), se, q)}

    # --- random readers, fixed cases -------------------------------------------------------------------------------
    rrfc: dict[str, Any] = {"f": None, "df1": None, "df2": None, "p": None, "differences": []}
    if T > 1:
        f = ms["ms_t"] / ms["ms_tr"] if ms["ms_tr"] > 0 else math.nan
        rrfc.update({"f": f, "df1": T - 1, "df2": ms["df_tr"],
                     "p": float(stats.f.sf(f, T - 1, ms["df_tr"])) if math.isfinite(f) else math.nan})
        se = math.sqrt(2.0 * ms["ms_tr"] / R)
        rrfc["differences"] = [{"a": modalities[a], "b": modalities[b],
                                **_t_test(means[a] - means[b], se, ms["df_tr"], alpha)} for a, b in pairs]
    rrfc["modalities"] = {}
    for t, m in enumerate(modalities):
        se = math.sqrt(ms_r_mod[m] / R)
        rrfc["modalities"][m] = {"auc": float(means[t]), "ms_r": ms_r_mod[m], "stderr": se, "df": R - 1,
                                 "ci": _ci(float(means[t]), se, float(stats.t.ppf(1 - alpha / 2, R - 1)))}
    out = {"anova": anova, "covariance": cov_out, "random_readers_random_cases": rrrc,
           "fixed_readers_random_cases": frrc, "random_readers_fixed_cases": rrfc}
    if T < 2:
        out["note"] = "one arm: nothing to compare; single-arm AUCs and confidence intervals only"
    return out
