"""Readers and cases for a full study, from a pilot's Obuchowski–Rockette variance components.

The Hillis–Obuchowski–Berbaum method (Hillis, Obuchowski & Berbaum, Acad Radiol 2011;18:129–142, eq. 10; Hillis &
Schartz, J Med Imaging 2018;5:045503): a pilot with ``K*`` cases gives ``σ²_TR``, ``σ²_ε``, ``Cov1``, ``Cov2``,
``Cov3``; the error terms scale with ``K*/K`` in a study with ``K`` cases and ``J`` readers. For an effect ``d`` (the
difference in mean AUC between two arms), with ``σ²_TR`` clipped at 0 and ``c = max(Cov2 − Cov3, 0)``:

- random readers and cases: ``den = σ²_TR + (K*/K)(σ²_ε − Cov1 + (J − 1)c)``, non-centrality ``λ = J d² / (2 den)``,
  ``ddf = den² (J − 1) / [σ²_TR + (K*/K)(σ²_ε − Cov1 − c)]²``, power ``P(F(1, ddf; λ) > F₁₋α(1, ddf))``;
- fixed readers: ``den = (K*/K)(σ²_ε − Cov1 + (J − 1)c)``, power of the 1-df chi-square test with non-centrality λ;
- fixed cases: ``den = σ²_TR + (K*/K)(σ²_ε − Cov1 − c)``, ``F(1, J − 1; λ)``.

The pilot's components are averaged over all its arms; the formulas are for comparing two arms.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

from ..errors import InputError

ANALYSES = ("random_readers_random_cases", "fixed_readers_random_cases", "random_readers_fixed_cases")
MAX_CASES = 1_000_000


def power(effect: float, readers: int, cases: int, pilot_cases: int, components: dict[str, float],
          analysis: str = "random_readers_random_cases", alpha: float = 0.05) -> float:
    """The power of a two-arm study with ``readers`` readers and ``cases`` cases (see the module docstring).

    Args:
        effect: the difference in mean AUC to detect (its sign does not matter).
        components: ``var_tr``, ``var_error``, ``cov1``, ``cov2``, ``cov3`` of the pilot (AUC² units).
        pilot_cases: ``K*``, the pilot's number of cases.
    """
    J, K = int(readers), int(cases)
    var_tr = max(float(components["var_tr"]), 0.0)
    scale = pilot_cases / K
    var_e, cov1 = float(components["var_error"]), float(components["cov1"])
    c = max(float(components["cov2"]) - float(components["cov3"]), 0.0)
    if analysis == "random_readers_random_cases":
        den = var_tr + scale * (var_e - cov1 + (J - 1) * c)
        ddf = den**2 * (J - 1) / (var_tr + scale * (var_e - cov1 - c)) ** 2
    elif analysis == "fixed_readers_random_cases":
        den = scale * (var_e - cov1 + (J - 1) * c)
        ddf = math.inf
    elif analysis == "random_readers_fixed_cases":
        den = var_tr + scale * (var_e - cov1 - c)
        ddf = J - 1
    else:
        raise InputError(f"unknown analysis {analysis!r}; use one of {', '.join(ANALYSES)}")
    if den <= 0:
        raise InputError("the pilot's variance components give a non-positive error variance; the pilot is too small "
                         "or too unusual for a sample-size estimate")
    ncp = readers * effect**2 / (2.0 * den)
    if not math.isfinite(ddf):
        return float(stats.ncx2.sf(stats.chi2.ppf(1 - alpha, 1), 1, ncp))
    return float(stats.ncf.sf(stats.f.ppf(1 - alpha, 1, ddf), 1, ddf, ncp))


def cases_needed(effect: float, readers: int, pilot_cases: int, components: dict[str, float], target: float = 0.8,
                 analysis: str = "random_readers_random_cases", alpha: float = 0.05) -> dict[str, Any]:
    """The smallest number of cases that gives ``target`` power with ``readers`` readers.

    Returns ``{"readers", "cases", "power"}``; ``cases`` is None when even :data:`MAX_CASES` cases fall short (with
    random readers the power is bounded by the reader variance, so more readers, not more cases, are needed).
    """
    def p(k: int) -> float:
        return power(effect, readers, k, pilot_cases, components, analysis, alpha)

    if p(MAX_CASES) < target:
        return {"readers": readers, "cases": None, "power": p(MAX_CASES)}
    lo, hi = 1, 2
    while p(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # power rises with the number of cases: bisect to the first K that reaches the target
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if p(mid) < target else (lo, mid)
    return {"readers": readers, "cases": hi, "power": p(hi)}


def size_table(pilot: dict[str, Any], effect: float, target: float = 0.8, readers: list[int] | None = None,
               alpha: float = 0.05) -> dict[str, Any]:
    """Cases needed for each number of readers and each analysis, from a pilot's ``mrmc.json``."""
    try:
        comps = {k: float(pilot["covariance"][k]) for k in ("var_tr", "var_error", "cov1", "cov2", "cov3")}
        pilot_cases = int(pilot["n_cases"])
    except (KeyError, TypeError, ValueError):
        raise InputError("the pilot must be an mrmc.json written by `study analyse` from two or more arms and two or "
                         "more readers (its covariance block has var_tr, var_error, cov1, cov2 and cov3)") from None
    if pilot.get("design", "fully-crossed") != "fully-crossed":
        raise InputError("sample sizes are computed from a fully crossed pilot; this pilot is split-plot")
    if not 0 < target < 1:
        raise InputError(f"--power {target}: a power lies between 0 and 1")
    if not 0 < abs(effect) < 1:
        raise InputError(f"--effect {effect}: an AUC difference lies between 0 and 1 (and is not 0)")
    js = readers or list(range(3, 16))
    if min(js) < 2:
        raise InputError("at least two readers are needed for a random-reader analysis")
    table = {a: [cases_needed(effect, j, pilot_cases, comps, target, a, alpha) for j in js] for a in ANALYSES}
    return {"method": "Hillis, Obuchowski & Berbaum (2011)", "effect": effect, "power": target, "alpha": alpha,
            "pilot_cases": pilot_cases, "pilot_readers": len(pilot.get("readers", [])),
            "pilot_modalities": pilot.get("modalities"), "components": comps, "table": table}
