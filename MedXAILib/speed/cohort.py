"""The ``agreement`` case: ``benchmark``'s method agreement over BraTS-size units, timed as its report computes it.

A benchmark store is written in a temporary folder: ``agreement_cases`` cases × ``agreement_methods`` methods, each
unit a ``(K, J, I)`` map of ``agreement_shape`` voxels (155 × 240 × 240 by default: 30 BraTS-size units), stored as
``benchmark`` stores them (float16 ``.npz``). The maps are smooth random fields (seeded) shared in part between the
methods of a case, so the pairs agree partly, as real maps do; a CAM-like map is zero on 70 % of the voxels (ties).
The row ``agreement`` times :func:`MedXAILib.benchmark.agreement.cohort_agreement` — reading the maps, Spearman ρ,
SSIM and top-k IoU of every pair of every case, and their means — and checks one pair's values against
``scipy.stats.spearmanr`` (``spearman_vs_scipy``: the largest absolute difference). Target: under 2 minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..outputs import scratch_folder


def _maps(shape: tuple[int, ...], methods: tuple[str, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    from scipy import ndimage

    coarse = tuple(max(2, s // 4) for s in shape)

    def field() -> np.ndarray:
        small = ndimage.gaussian_filter(rng.random(coarse), 2.0)
        big = ndimage.zoom(small, [s / c for s, c in zip(shape, coarse)], order=1)
        return big[tuple(slice(0, s) for s in shape)]

    shared = field()
    out = {}
    for k, m in enumerate(methods):
        arr = (shared + 0.5 * field()).astype(np.float32)
        if k == 0:  # a CAM: its positive part, zero on 70 % of the voxels
            arr = np.maximum(arr - np.quantile(arr, 0.7), 0.0)
        elif k == 1:  # a signed attribution
            arr = arr - float(arr.mean())
        out[m] = arr
    return out


def write_store(folder: Path, cases: int, methods: tuple[str, ...], shape: tuple[int, ...], seed: int = 0
                ) -> tuple[Any, list[dict[str, Any]]]:
    """A benchmark store of ``cases × methods`` maps; returns the store and its records."""
    from ..benchmark.store import UnitStore

    (folder / "benchmark.json").write_text(json.dumps({
        "dataset": f"speed:{cases}", "model": "speed", "methods": list(methods), "metrics": ["localisation"],
        "folds": 1, "seed": seed, "steps": 4, "baseline": "blur", "blur_sigma_mm": 8.0}))
    store = UnitStore(folder)
    store.prepare()
    rng = np.random.default_rng(seed)
    records = []
    for c in range(cases):
        for m, arr in _maps(shape, methods, rng).items():
            record = {"case_id": f"case{c:03d}", "method": m, "fold": 0, "status": "ok"}
            store.write(record, arr)
            records.append(record)
    return store, records


def run_agreement(bench: Any, log: Callable[[str], None]) -> None:
    """Write the store, then time the cohort agreement once with ``bench.time_row``."""
    from ..benchmark.agreement import cohort_agreement

    cfg = bench.config
    methods = tuple(cfg.agreement_methods)
    shape = tuple(int(s) for s in cfg.agreement_shape)
    units = cfg.agreement_cases * len(methods)
    log(f"[agreement] {units} units ({cfg.agreement_cases} cases × {len(methods)} methods) of "
        f"{'×'.join(map(str, shape))} voxels; writing the store")
    with scratch_folder(prefix="medxai-agreement-") as tmp:
        store, records = write_store(Path(tmp), cfg.agreement_cases, methods, shape, cfg.seed)
        label = f"agreement:{units}-units"
        row, out = bench.time_row(label, [units, *shape], "agreement", "medxai",
                                  lambda: cohort_agreement(store, records, list(methods)), runs=1)
        row["units"] = units
        if out is not None:
            row["spearman_vs_scipy"] = _check(store, records, methods, out)


def _check(store: Any, records: list[dict[str, Any]], methods: tuple[str, ...], out: dict[str, Any]) -> float:
    """|ρ − scipy's ρ| for the first pair of the first case (the report's per-case value, before averaging)."""
    from scipy.stats import spearmanr

    from ..benchmark.agreement import _display
    from ..metrics.agreement import importance, pairwise

    case = records[0]["case_id"]
    a, b = (importance(store.read_map(case, m), _display(m)) for m in methods[:2])
    ours = pairwise([a, b])["spearman"][0][1]
    ref = float(spearmanr(a.ravel(), b.ravel()).statistic)
    return float(abs(ours - ref))
