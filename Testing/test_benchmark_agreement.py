"""benchmark: mean pairwise agreement per method pair over the cohort, from the stored maps (agreement.csv, report)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from MedXAILib.benchmark.report import write_outputs
from MedXAILib.benchmark.store import UnitStore


def test_cohort_agreement_is_the_mean_over_cases_of_each_pair(tmp_path) -> None:
    methods = ["gradcam", "ig", "random"]
    (tmp_path / "benchmark.json").write_text(json.dumps({
        "dataset": "phantom:3", "model": "m", "methods": methods, "metrics": ["localisation"], "folds": 1, "seed": 0,
        "steps": 4, "baseline": "blur", "blur_sigma_mm": 8.0}))
    store = UnitStore(tmp_path)
    store.prepare()
    rng = np.random.default_rng(0)
    maps: dict[tuple[str, str], np.ndarray] = {}
    for case in ("c0", "c1", "c2"):
        base = rng.random((3, 6, 7))
        for m in methods:
            if case == "c2" and m == "ig":
                store.write({"case_id": case, "method": m, "fold": 0, "status": "error", "error": "x"})
                continue
            arr = {"gradcam": base, "ig": -(base + 0.3 * rng.random(base.shape)), "random": rng.random(base.shape)}[m]
            store.write({"case_id": case, "method": m, "fold": 0, "status": "ok"}, arr)
            maps[(case, m)] = store.read_map(case, m)  # float16 round trip, as the report reads them
    write_outputs(tmp_path)
    with open(tmp_path / "agreement.csv") as fh:
        rows = {(r["method_a"], r["method_b"], r["measure"]): r for r in csv.DictReader(fh)}
    # ig is signed: compared as |h|; gradcam is positive: compared as max(h, 0)
    rhos = [spearmanr(np.maximum(maps[(c, "gradcam")], 0).ravel(), np.abs(maps[(c, "ig")]).ravel()).statistic
            for c in ("c0", "c1")]
    row = rows[("gradcam", "ig", "spearman")]
    assert float(row["mean"]) == pytest.approx(np.mean(rhos)) and row["n_cases"] == "2"
    assert float(row["sd"]) == pytest.approx(np.std(rhos, ddof=1))
    assert rows[("gradcam", "random", "spearman")]["n_cases"] == "3"
    assert float(row["mean"]) > 0.8 > abs(float(rows[("gradcam", "random", "spearman")]["mean"]))
    assert {k[2] for k in rows} == {"spearman", "ssim", "topk_iou"}
    assert "Agreement between methods" in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "conventions.json").read_text())["conventions"]["hd95"] == "monai"
