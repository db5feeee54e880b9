"""The ``train`` command: patient-level folds, fold checkpoints that load back as models, resume, refusals.

Everything runs on tiny inputs: a CSV manifest of 12 × 16 × 16 two-channel volumes (label values 0, 1, 4 so the
label mapping is exercised) and 32 × 32 chest phantoms, with one or two optimiser steps per fold.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from MedXAILib.cli import main
from MedXAILib.errors import InputError
from MedXAILib.io import write_volume
from MedXAILib.models import load_model
from MedXAILib.models.monai_network import build_network
from MedXAILib.splits import read_splits
from MedXAILib.training import PRESETS, TrainConfig, pick_cam_layer, resolve_architecture
from MedXAILib.volume import Volume, make_ijk_to_ras

SHAPE = (12, 16, 16)  # K, J, I at 2 mm: the model grid is the input grid
TINY_UNET = json.dumps({"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}})
TINY_SEG = ["--task", "segmentation", "--architecture", TINY_UNET, "--patch", "8,16,16", "--epochs", "1",
            "--steps-per-epoch", "2", "--folds", "2", "--progress", "none"]


def _case(rng: np.random.Generator) -> tuple[Volume, Volume]:
    """A two-channel blob volume and its label map: 1 around a core labelled 4 (values 0, 1, 4 as BraTS 2021)."""
    k, j, i = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    c = np.array([6, 8, 8]) + rng.integers(-2, 3, size=3)
    r = np.sqrt((k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2)
    label = np.where(r < 2.0, 4, np.where(r < 4.0, 1, 0)).astype(np.int16)
    image = np.stack([1.0 + 2.0 * (label == 4) + rng.normal(0, 0.1, SHAPE),
                      1.0 + 1.5 * (label > 0) + rng.normal(0, 0.1, SHAPE)]).astype(np.float32)
    affine = make_ijk_to_ras((2.0, 2.0, 2.0), (-10.0, 4.0, 2.0))
    return Volume(image, affine), Volume(label[None], affine)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Five cases of four patients (patient p1 has two scans)."""
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    rows = []
    for n, patient in enumerate(["p0", "p1", "p1", "p2", "p3"]):
        image, label = _case(rng)
        for ch, name in enumerate(("t1", "flair")):
            write_volume(image.channel(ch), root / f"c{n}_{name}.nii.gz")
        write_volume(label, root / f"c{n}_seg.nii.gz")
        rows.append({"case_id": f"c{n}", "patient_id": patient, "image:t1": f"c{n}_t1.nii.gz",
                     "image:flair": f"c{n}_flair.nii.gz", "label": f"c{n}_seg.nii.gz"})
    with open(root / "cases.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "cases.csv"


@pytest.fixture(scope="module")
def seg_run(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "run"
    assert main(["train", "--dataset", f"csv:{manifest}", *TINY_SEG, "--output", str(out)]) == 0
    return out


@pytest.mark.slow
def test_outputs_and_patient_level_folds(seg_run):
    out = seg_run
    for name in ("splits.json", "folds.json", "summary.csv", "fold0/model.json", "fold0/weights.pt",
                 "fold1/model.json", "fold1/weights.pt"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left
    folds = read_splits(out / "splits.json")
    assert len(folds) == 2
    for fold in folds:
        training = json.loads((out / f"fold{fold.index}" / "model.json").read_text())["training"]
        assert sorted(training["train_case_ids"]) == sorted(fold.train)
        assert sorted(training["val_case_ids"]) == sorted(fold.test)
        assert not set(training["train_patients"]) & set(training["val_patients"])
        assert training["fold"] == fold.index and training["seed"] == 0
        assert training["command"].startswith("python -m MedXAILib train --dataset csv:")
    # the two scans of patient p1 are on the same side of every fold
    assert all(("c1" in f.test) == ("c2" in f.test) for f in folds)
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "label,metric,mean,sd,n_folds,fold0,fold1"
    labels = {row.split(",")[0] for row in summary[1:]}
    assert labels == {"label 1", "label 4", "foreground"}
    data = json.loads((out / "folds.json").read_text())
    assert data["label_values"] == [0, 1, 4]
    dice = data["folds"][0]["metrics"]["labels"]["foreground"]["dice"]
    assert 0.0 <= dice <= 1.0


@pytest.mark.slow
def test_fold_loads_back_and_segments_with_original_label_values(seg_run, manifest, tmp_path):
    out = seg_run
    model = load_model(out / "fold0")
    d = model.description
    assert d.task == "segmentation" and d.label_values == [0, 1, 4]
    assert d.class_names == ["background", "label 1", "label 4"]
    assert d.channel_names == ["t1", "flair"]
    assert d.preprocessing["normalize"] == "zscore_foreground"
    assert model.layer(None) is not None  # cam_layer resolves
    root = manifest.parent
    argv = ["--model", str(out / "fold0"), "--input", str(root / "c0_t1.nii.gz"),
            "--input", str(root / "c0_flair.nii.gz"), "--progress", "none"]
    assert main(["segment", *argv, "--output", str(tmp_path / "pred.nii.gz")]) == 0
    from MedXAILib.io import read_image

    pred = read_image(tmp_path / "pred.nii.gz")
    assert pred.shape == SHAPE
    assert set(np.unique(pred.array).astype(int)) <= {0, 1, 4}
    assert main(["explain", *argv, "--voxel", "8,8,6", "--output", str(tmp_path / "heat.nrrd")]) == 0


@pytest.mark.slow
def test_resume_skips_finished_folds_and_retrains_on_change(seg_run, manifest, capsys):
    out = seg_run
    stamp = {k: (out / f"fold{k}" / "weights.pt").stat().st_mtime_ns for k in (0, 1)}
    capsys.readouterr()
    assert main(["train", "--dataset", f"csv:{manifest}", *TINY_SEG, "--output", str(out)]) == 0
    assert "0 trained, 2 kept" in capsys.readouterr().out
    assert all((out / f"fold{k}" / "weights.pt").stat().st_mtime_ns == stamp[k] for k in (0, 1))
    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert [f["skipped"] for f in folds] == [True, True]
    # a different schedule is a different model: both folds are retrained
    argv = [a if a != "2" or i != TINY_SEG.index("--steps-per-epoch") + 1 else "1" for i, a in enumerate(TINY_SEG)]
    assert main(["train", "--dataset", f"csv:{manifest}", *argv, "--output", str(out)]) == 0
    assert "2 trained, 0 kept" in capsys.readouterr().out
    assert json.loads((out / "fold0" / "model.json").read_text())["training"]["schedule"]["steps_per_epoch"] == 1


@pytest.mark.slow
def test_same_seed_same_weights(manifest, tmp_path):
    argv = ["train", "--dataset", f"csv:{manifest}", *TINY_SEG]
    argv[argv.index("--steps-per-epoch") + 1] = "1"
    for name in ("a", "b"):
        assert main([*argv, "--output", str(tmp_path / name)]) == 0
    for k in (0, 1):
        wa = torch.load(tmp_path / "a" / f"fold{k}" / "weights.pt", weights_only=True)
        wb = torch.load(tmp_path / "b" / f"fold{k}" / "weights.pt", weights_only=True)
        assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_progress_json_lines(manifest, tmp_path, capsys):
    argv = ["train", "--dataset", f"csv:{manifest}", *TINY_SEG, "--output", str(tmp_path / "run")]
    argv[argv.index("--progress") + 1] = "json"
    argv[argv.index("--steps-per-epoch") + 1] = "1"
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    fractions = [x["progress"] for x in lines if "progress" in x]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "summary" in lines[-1]["result"]


def test_classification_on_chest_phantoms(tmp_path):
    out = tmp_path / "cls"
    argv = ["train", "--dataset", "phantom-chest:4", "--task", "classification", "--folds", "2", "--architecture",
            "resnet-small", "--input-size", "32,32", "--epochs", "1", "--steps-per-epoch", "1", "--output", str(out),
            "--progress", "none"]
    assert main(argv) == 0
    model = load_model(out / "fold1")
    d = model.description
    assert d.task == "classification" and d.output == "sigmoid" and d.cam_layer == "layer4"
    assert d.class_names == ["nodule", "cardiomegaly", "effusion"]
    assert d.preprocessing == {"normalize": "percentile", "percentiles": [0.5, 99.5], "input_size": [32, 32]}
    metrics = d.training["metrics"]["labels"]
    assert set(metrics) == {"nodule", "cardiomegaly", "effusion", "macro"}
    assert set(metrics["macro"]) == {"accuracy", "precision", "recall", "f1", "auc_roc"}
    from MedXAILib.phantoms import make_chest_phantom

    image = tmp_path / "xray.nii.gz"
    write_volume(make_chest_phantom(3, size=64).image, image)
    result = tmp_path / "cls.json"
    assert main(["classify", "--model", str(out / "fold1"), "--input", str(image), "--output", str(result),
                 "--progress", "none"]) == 0
    assert set(json.loads(result.read_text())["probabilities"]) == {"nodule", "cardiomegaly", "effusion"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "phantom:4", "--task", "classification"], "Use --task segmentation"),
        (["--dataset", "phantom-chest:4", "--task", "segmentation"], "Use --task classification"),
        (["--dataset", "phantom:2", "--task", "segmentation", "--folds", "3"], "patient-level folds from 2"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--architecture", "unet-huge"], "unknown architecture"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--architecture", "{bad"], "not valid JSON"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--architecture", '{"name": "NoSuchNet"}'],
         "MONAI has no network"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--architecture",
          '{"name": "UNet", "kwargs": {"in_channels": 2}}'], "in_channels=2"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--patch", "30,60,60"], "multiple of 8"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--patch", "32,64"], "needs 3 values"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--folds", "1"], "--folds must be 2 or more"),
        (["--dataset", "phantom:4", "--task", "segmentation", "--epochs", "0"], "--epochs must be a positive"),
        (["--dataset", "nosuch:4", "--task", "segmentation"], "KIND:PATH"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", *argv, "--output", str(out), "--progress", "none"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert message in err, err
    assert not out.exists()


def test_presets_resolve_and_pick_a_cam_layer():
    for name, spec in PRESETS.items():
        task = "segmentation" if spec["name"] == "UNet" else "classification"
        if name in ("resnet18", "densenet121", "unet"):
            continue  # same code path as their small siblings; too slow to build in a quick test
        dims = 3 if task == "segmentation" else 2
        arch = resolve_architecture(name, task, dims, 2, 3)
        net = build_network(arch)
        shape = (1, 2, 16, 32, 32) if dims == 3 else (1, 2, 32, 32)
        layer = pick_cam_layer(net, task, shape)
        assert layer in dict(net.named_modules()), (name, layer)
        if spec["name"] == "DenseNet":
            assert layer == "features.norm5"
    unet = build_network(resolve_architecture("unet-small", "segmentation", 3, 4, 4))
    # a decoder stage at half resolution, not the output head
    assert pick_cam_layer(unet, "segmentation", (1, 4, 16, 32, 32)).startswith("model.1.submodule.2")


def test_config_command_round_trips_options():
    cfg = TrainConfig(dataset="phantom:6", task="segmentation", output="out", folds=3, epochs=2,
                      steps_per_epoch=4, patch=[32, 64, 64], spacing=[2.0, 2.0, 2.0])
    cmd = cfg.command()
    assert "--patch 32,64,64" in cmd and "--spacing 2,2,2" in cmd and "--folds 3" in cmd
    with pytest.raises(InputError):
        TrainConfig(dataset="phantom:6", task="detection", output="out").check()
