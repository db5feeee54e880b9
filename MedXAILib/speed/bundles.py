"""``speed --bundles``: the exact model function of MONAI Model Zoo bundles at full size.

Two bundles from the zoo folder (``--bundle-zoo``, default ``$MEDXAI_TEST_DATA/monai-model-zoo``), each on a real
case of the test data:

- ``spleen_ct_segmentation`` (MONAI UNet, BatchNorm; sliding window 96³, overlap 0.5) on TotalSegmentator's example
  CT (resampled by the bundle to 1.5 × 1.5 × 2 mm);
- ``brats_mri_segmentation`` (SegResNet, GroupNorm; one 240 × 240 × 160 window) on the BraTS 2023 case
  ``BraTS-GLI-00001-000`` (4 × 240 × 240 × 155).

A bundle folder without ``models/model.pt`` (the zoo's configs alone) is given seeded random weights (seed 0), built
from its validated ``network_def``: time and memory do not depend on the weights' values. The target is the predicted
foreground, or a central box of class 1 when the weights predict none.

Rows, each timed the benchmark's way (median of ``runs``):

- ``inference``: ``Model.predict`` — the model's own inference (the bundle's preprocessing, inferer and
  postprocessing);
- ``predict+gradcam``: ``explain(model, volume, "gradcam")`` through the public API, exact (the model function), for
  the default target: the predicted foreground, so the call makes the prediction itself — one forward pass of the
  model function that also keeps the CAM layer's activations and tails — then the CAM. The ratio to ``inference``
  is the target (≤ 1.5).

On the BraTS bundle, LRP and Integrated Gradients (2 steps: the memory of one step) each run once in a fresh child
process, so that the peak resident memory (``VmHWM``) is the explanation's alone: rows ``lrp`` and ``ig`` with
``peak_mb``, the seconds, conservation / completeness, and ``estimated_peak_mb`` from ``explain --dry-run``'s estimate
(:func:`~MedXAILib.explain.estimate.estimate_cost`) made in the same child before the run. Target: peak ≤ 8 GiB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..outputs import scratch_folder

BUNDLES = ("spleen_ct_segmentation", "brats_mri_segmentation")
MEMORY_METHODS = {"lrp": {}, "ig": {"steps": "2"}}


def default_zoo() -> Path:
    return Path(os.environ.get("MEDXAI_TEST_DATA", "")) / "monai-model-zoo"


def case_files(name: str) -> list[str]:
    """The real input files of a bundle's case (one per channel, in the bundle's channel order)."""
    data = Path(os.environ.get("MEDXAI_TEST_DATA", ""))
    if name == "spleen_ct_segmentation":
        return [str(data / "totalsegmentator" / "example_ct.nii.gz")]
    case = data / "brainlesion-tutorials" / "BraTS-GLI-00001-000"
    return [str(case / f"BraTS-GLI-00001-000-{s}.nii.gz") for s in ("t1c", "t1n", "t2w", "t2f")]


def bundle_with_weights(zoo: Path, name: str, work: Path) -> tuple[Path, str]:
    """The bundle folder to load and where its weights come from (its own, or seeded random ones in ``work``)."""
    folder = zoo / name
    if (folder / "models" / "model.pt").is_file():
        return folder, "the bundle's own"
    import torch

    from ..models import bundle_config as bc

    out = work / name
    if not (out / "models" / "model.pt").is_file():
        shutil.copytree(folder / "configs", out / "configs", dirs_exist_ok=True)
        config = bc.read_config(out, "inference") or {}
        try:
            ids = bc.check_entries(config, ["network_def"])
        except bc.SchemaError as exc:
            raise bc.refuse(out, exc) from None
        torch.manual_seed(0)
        net = bc.safe_parser(config, ids, out).get_parsed_content("network_def")
        (out / "models").mkdir(exist_ok=True)
        torch.save(net.state_dict(), out / "models" / "model.pt")
    return out, "seeded random (seed 0; time and memory do not depend on the values)"


def fallback_target(model: Any, volume: Any) -> Any:
    """A central box (a quarter of each axis) of class 1 as a region target."""
    from ..targets import resolve_target

    region = np.zeros(volume.shape, dtype=bool)
    region[tuple(slice(s * 3 // 8, max(s * 5 // 8, s * 3 // 8 + 1)) for s in volume.shape)] = True
    return resolve_target(model, volume, label=1, region=region)


Timer = Callable[..., tuple[dict[str, Any], Any]]


def run_bundles(timer: Timer, log: Callable[[str], None], zoo: Path | None = None,
                memory: bool = True, methods: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Time the rows of every bundle with ``timer(label, input_shape, method, implementation, fn)`` (the suite's
    timer) and make the child-process memory rows of the BraTS bundle (those of ``methods`` when given, as
    ``speed --methods`` selects); returns the memory rows."""
    zoo = zoo or default_zoo()
    rows: list[dict[str, Any]] = []
    with scratch_folder(prefix="medxai-speed-") as tmp:
        for name in BUNDLES:
            if not (zoo / name / "configs").is_dir():
                log(f"[bundle {name}] skipped: {zoo / name} not found (--bundle-zoo)")
                continue
            folder, weights = bundle_with_weights(zoo, name, Path(tmp))
            shape = _timed_rows(timer, log, folder, name, weights)
            if memory and name == "brats_mri_segmentation":
                for method, params in MEMORY_METHODS.items():
                    if methods is not None and method not in methods:
                        continue
                    log(f"[bundle:{name}] {method} in a child process (peak memory), params {params}")
                    rows.append(memory_row(folder, name, method, params, shape))
    return rows


def _timed_rows(timer: Timer, log: Callable[[str], None], folder: Path, name: str, weights: str) -> list[int]:
    from ..errors import TargetError
    from ..explain import explain
    from ..io import read_inputs
    from ..models import load_model
    from ..targets import resolve_target

    model = load_model(folder)
    volume = read_inputs(case_files(name), model)
    label = f"bundle:{name}"
    log(f"[{label}] {volume.n_channels}×{'×'.join(map(str, volume.shape))} input; weights: {weights}")
    shape = [int(s) for s in volume.array.shape]
    _, pred = timer(label, shape, "inference", "medxai", lambda: model.predict(volume))
    try:
        resolve_target(model, volume, prediction=pred)
        target, note = None, "predicted foreground (explain makes the prediction, reusing its forward pass)"
    except TargetError:
        target, note = fallback_target(model, volume), "central box of class 1 (no foreground predicted)"

    def predict_and_explain() -> Any:
        # the default target: explain predicts with the forward pass that keeps the CAM layer's tails, then explains
        return explain(model, volume, "gradcam", target=target)

    row, out = timer(label, shape, "predict+gradcam", "medxai", predict_and_explain)
    row["target"] = note
    if out is not None:
        row["function"] = {k: out.details.get("function", {}).get(k) for k in ("exact", "kind", "n_windows")}
    return shape


_CHILD = """
import json, sys
import numpy as np
from MedXAILib.errors import TargetError
from MedXAILib.explain import explain
from MedXAILib.explain.estimate import estimate_cost
from MedXAILib.io import read_inputs
from MedXAILib.models import load_model
from MedXAILib.resources import measure
from MedXAILib.speed.bundles import case_files, fallback_target
folder, name, method, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
model = load_model(folder)
volume = read_inputs(case_files(name), model)
target = fallback_target(model, volume)
est = estimate_cost(model, volume, method, target=target, params=params)
with measure() as m:
    e = explain(model, volume, method, target=target, params=params)
keep = ("conservation", "absorbed_share", "unexplained_share", "completeness_gap", "memory")
print(json.dumps({"seconds": m.seconds, "peak_bytes": m.peak_rss_bytes,
                  "estimated_peak_bytes": est["estimated_peak_memory_bytes"],
                  "estimated_seconds": est["estimated_seconds"],
                  "details": {k: e.details[k] for k in keep if k in e.details}}, default=str))
"""


def memory_row(folder: Path, name: str, method: str, params: dict[str, str], shape: list[int]) -> dict[str, Any]:
    """One explanation in a fresh process: its seconds, peak RSS (MB) and the dry-run estimate made before it."""
    row: dict[str, Any] = {"model": f"bundle:{name}", "input_shape": shape, "method": method,
                           "implementation": "medxai", "params": params, "child_process": True}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(folder), name, method, json.dumps(params)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        row.update({"median_s": None, "peak_mb": None, "error": proc.stderr.strip().splitlines()[-1][:300]
                    if proc.stderr.strip() else f"exit status {proc.returncode}"})
        return row
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update({"median_s": round(out["seconds"], 2), "times_s": [round(out["seconds"], 2)], "runs": 1,
                "peak_mb": round(out["peak_bytes"] / 2**20, 1),
                "estimated_peak_mb": round(out["estimated_peak_bytes"] / 2**20, 1),
                "estimated_seconds": out["estimated_seconds"], "details": out["details"]})
    return row
