"""Agreement between methods over a benchmark cohort: the mean pairwise agreement per method pair.

For every case, the stored maps (``maps/<case>__<method>.npz``, input grid) of the methods that finished are compared
pair by pair with the measures ``compare`` uses (:func:`MedXAILib.metrics.agreement.pairwise`, each map turned
into importance the way it is displayed: positive part or |h|): Spearman ρ, SSIM and top-k IoU. Unlike ``compare``,
which compares the object's voxels (non-zero input), the report sees only the stored maps, so every voxel of the map
is compared. Each pair's values
are then averaged over the cases where both maps exist (mean, sample SD, count), giving ``agreement.csv`` and an
``M × M`` matrix per measure in the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.agreement import DEFAULT_TOPK_PERCENT, MEASURES, importance, pairwise
from .store import UnitStore


def _display(method: str) -> str:
    from ..explain import available_methods

    cls = available_methods().get(method)
    return cls.display if cls is not None else "signed"


def cohort_agreement(
    store: UnitStore, records: list[dict[str, Any]], methods: list[str],
    topk_percent: float = DEFAULT_TOPK_PERCENT,
) -> dict[str, Any]:
    """``{"rows": [{method_a, method_b, measure, mean, sd, n_cases}], "matrices": {measure: M×M}, "methods"}``.

    Pairs are unordered (``method_a`` before ``method_b`` in ``methods`` order); the matrices are symmetric with the
    diagonal left empty (None). Cases with fewer than two finished maps add nothing.
    """
    ok: dict[str, list[str]] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("method") in methods:
            ok.setdefault(str(r["case_id"]), []).append(str(r["method"]))
    values: dict[tuple[str, str, str], list[float]] = {}
    displays = {m: _display(m) for m in methods}
    for case_id, names in sorted(ok.items()):
        names = [m for m in methods if m in names]
        maps = {}
        for m in names:
            arr = store.read_map(case_id, m)
            if arr is not None and np.isfinite(arr).all():
                maps[m] = importance(arr, displays[m])
        present = list(maps)
        if len(present) < 2 or len({maps[m].shape for m in present}) != 1:
            continue
        mats = pairwise([maps[m] for m in present], topk_percent)
        for i, a in enumerate(present):
            for j in range(i + 1, len(present)):
                for measure in MEASURES:
                    v = mats[measure][i][j]
                    if v is not None:
                        values.setdefault((a, present[j], measure), []).append(float(v))
    rows = []
    index = {m: k for k, m in enumerate(methods)}
    matrices: dict[str, list[list[Any]]] = {k: [[None] * len(methods) for _ in methods] for k in MEASURES}
    for (a, b, measure), vals in sorted(values.items(), key=lambda kv: (index[kv[0][0]], index[kv[0][1]], kv[0][2])):
        mean = float(np.mean(vals))
        sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        rows.append({"method_a": a, "method_b": b, "measure": measure, "mean": mean, "sd": sd, "n_cases": len(vals)})
        matrices[measure][index[a]][index[b]] = matrices[measure][index[b]][index[a]] = mean
    return {"methods": list(methods), "rows": rows, "matrices": matrices, "topk_percent": float(topk_percent)}


def agreement_html_tables(agreement: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """One (title, header, rows) table per measure, for the HTML report."""
    names = agreement["methods"]
    titles = {"spearman": "Spearman ρ", "ssim": "SSIM",
              "topk_iou": f"top-{agreement['topk_percent']:g}% IoU"}
    out = []
    for measure in MEASURES:
        mat = agreement["matrices"][measure]
        rows = [[a] + ["–" if v is None else f"{v:.3f}" for v in mat[i]] for i, a in enumerate(names)]
        out.append((titles[measure], [""] + names, rows))
    return out
