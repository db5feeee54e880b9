"""``train --cluster local:2``: the folds trained on two Dask worker processes are the serial run's folds, with the
same weights and the same per-fold metrics (same seeds, same thread count)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from MedXAILib.cli import main
from MedXAILib.io import write_volume
from MedXAILib.models import load_model
from MedXAILib.volume import Volume, make_ijk_to_ras

SHAPE = (12, 16, 16)
TINY_UNET = json.dumps({"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}})


def _manifest(root: Path) -> Path:
    """Five two-channel blob cases of four patients (p1 has two scans), label values 0, 1, 2 at 2 mm."""
    rng = np.random.default_rng(0)
    k, j, i = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    rows = []
    for n, patient in enumerate(["p0", "p1", "p1", "p2", "p3"]):
        c = np.array([6, 8, 8]) + rng.integers(-2, 3, size=3)
        r = np.sqrt((k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2)
        label = np.where(r < 2.0, 2, np.where(r < 4.0, 1, 0)).astype(np.int16)
        image = np.stack([1.0 + 2.0 * (label == 2) + rng.normal(0, 0.1, SHAPE),
                          1.0 + 1.5 * (label > 0) + rng.normal(0, 0.1, SHAPE)]).astype(np.float32)
        affine = make_ijk_to_ras((2.0, 2.0, 2.0), (-10.0, 4.0, 2.0))
        for ch, name in enumerate(("t1", "flair")):
            write_volume(Volume(image[ch : ch + 1], affine), root / f"c{n}_{name}.nii.gz")
        write_volume(Volume(label[None], affine), root / f"c{n}_seg.nii.gz")
        rows.append({"case_id": f"c{n}", "patient_id": patient, "image:t1": f"c{n}_t1.nii.gz",
                     "image:flair": f"c{n}_flair.nii.gz", "label": f"c{n}_seg.nii.gz"})
    with open(root / "cases.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "cases.csv"


@pytest.mark.slow  # two Dask worker processes import torch and MONAI (~15-30 s on 2 shared cores)
def test_cluster_folds_equal_the_serial_folds(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    argv = ["train", "--dataset", f"csv:{manifest}", "--task", "segmentation", "--architecture", TINY_UNET,
            "--patch", "8,16,16", "--epochs", "1", "--steps-per-epoch", "3", "--folds", "2", "--seed", "7",
            "--worker-threads", "1", "--progress", "none"]
    serial, parallel = tmp_path / "serial", tmp_path / "cluster"
    assert main([*argv, "--output", str(serial)]) == 0
    assert main([*argv, "--output", str(parallel), "--cluster", "local:2"]) == 0
    assert (serial / "splits.json").read_text() == (parallel / "splits.json").read_text()
    a = json.loads((serial / "folds.json").read_text())
    b = json.loads((parallel / "folds.json").read_text())
    for fa, fb in zip(a["folds"], b["folds"], strict=True):
        assert fa["fold"] == fb["fold"] and fa["val_case_ids"] == fb["val_case_ids"]
        assert fa["train_case_ids"] == fb["train_case_ids"] and fa["fingerprint"] == fb["fingerprint"]
        assert fa["metrics"] == fb["metrics"]  # exactly: the same seeds and threads give the same weights
        assert not fb["skipped"]
    assert a["summary"] == b["summary"]
    workers = set()
    for k in (0, 1):
        wa = torch.load(serial / f"fold{k}" / "weights.pt", weights_only=True)
        wb = torch.load(parallel / f"fold{k}" / "weights.pt", weights_only=True)
        assert all(torch.equal(wa[n], wb[n]) for n in wa)
        model = load_model(parallel / f"fold{k}")  # loads back as today
        assert model.description.training["fold"] == k
        workers.add(model.description.training["worker"])
    assert len(workers) == 2, workers  # one fold per worker
    # a rerun keeps both folds (resume works the same with --cluster)
    assert main([*argv, "--output", str(parallel), "--cluster", "local:2"]) == 0
    assert all(f["skipped"] for f in json.loads((parallel / "folds.json").read_text())["folds"])


@pytest.mark.slow  # trains two tiny folds, then benchmarks five tiny cases
def test_benchmark_with_a_train_folder_explains_each_case_with_its_fold_model(tmp_path: Path) -> None:
    import csv as _csv

    manifest = _manifest(tmp_path)
    run = tmp_path / "train"
    assert main(["train", "--dataset", f"csv:{manifest}", "--task", "segmentation", "--architecture", TINY_UNET,
                 "--patch", "8,16,16", "--epochs", "1", "--steps-per-epoch", "2", "--folds", "2", "--seed", "3",
                 "--progress", "none", "--output", str(run)]) == 0
    out = tmp_path / "bench"
    base = ["benchmark", "--dataset", f"csv:{manifest}", "--model", str(run), "--methods", "gradcam",
            "--metrics", "localisation", "--progress", "none"]
    assert main([*base, "--folds", "2", "--seed", "4", "--output", str(tmp_path / "other")]) == 2  # other folds
    assert main([*base, "--folds", "2", "--seed", "3", "--output", str(out)]) == 0
    with open(out / "cases.csv", newline="") as fh:
        rows = list(_csv.DictReader(fh))
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)
    for r in rows:  # the benchmark's task Dice is the one the fold model scored on its held-out case
        fold_model = load_model(run / f"fold{r['fold']}")
        expected = fold_model.description.training["per_case"][r["case_id"]]["foreground"]["dice"]
        assert float(r["task_dice"]) == pytest.approx(expected, abs=1e-9)
