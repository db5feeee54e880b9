"""The benchmark command end to end on a tiny model and a small synthetic cohort: outputs, folds, report,
resuming after SIGKILL, and the same rows with one or two workers."""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_unet_model

from MedXAILib.benchmark import UnitStore
from MedXAILib.cli import main
from MedXAILib.io import write_volume
from MedXAILib.volume import Volume, make_ijk_to_ras

REPO = Path(__file__).resolve().parents[1]
TIMING = {"seconds", "seconds_predict", "seconds_explain", "seconds_metrics", "worker"}  # and who computed it


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny UNet and 5 cases of 4 patients (p1 has two scans), 2 channels, anisotropic 1.2 × 0.9 × 2.5 mm."""
    root = tmp_path_factory.mktemp("cohort")
    model = tiny_unet_model(channels=2, classes=3)
    folder = root / "model"
    folder.mkdir()
    torch.save(model.network.state_dict(), folder / "weights.pt")
    desc = model.description.to_dict()
    desc["weights"] = "weights.pt"
    (folder / "model.json").write_text(json.dumps(desc))
    rows = ["case_id,patient_id,image:c0,image:c1,label"]
    geom = make_ijk_to_ras((1.2, 0.9, 2.5), (10.0, -5.0, 3.0))
    for n, pid in enumerate(["p0", "p1", "p1", "p2", "p3"]):
        rng = np.random.default_rng(n)
        img = rng.normal(size=(2, 8, 16, 16)).astype(np.float32)
        lab = np.zeros((1, 8, 16, 16), np.int16)
        lab[0, 2:6, 4 + n : 9 + n, 5:11] = 1
        lab[0, 3:5, 5 + n : 7 + n, 6:9] = 2
        img[:, lab[0] > 0] += 2.0
        cid = f"case{n}"
        for c in range(2):
            write_volume(Volume(img[c : c + 1], geom), root / f"{cid}_c{c}.nii.gz")
        write_volume(Volume(lab, geom), root / f"{cid}_seg.nii.gz")
        rows.append(f"{cid},{pid},{cid}_c0.nii.gz,{cid}_c1.nii.gz,{cid}_seg.nii.gz")
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")
    return {"model": folder, "csv": root / "cohort.csv"}


def _args(cohort: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["benchmark", "--dataset", f"csv:{cohort['csv']}", "--model", str(cohort["model"]),
            "--methods", "gradcam,random", "--folds", "2", "--steps", "4", "--output", str(out),
            "--progress", "none", *extra]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[bytes] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        src = dict(attrs).get("src") or ""
        if tag == "img" and src.startswith("data:image/png;base64,"):
            self.images.append(base64.b64decode(src.split(",", 1)[1]))


def test_benchmark_writes_cases_summary_and_a_self_contained_report(cohort: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(_args(cohort, out, "--metrics", "localisation,faithfulness,complexity,sanity",
                      "--sanity-stages", "2")) == 0
    rows = _rows(out / "cases.csv")
    assert len(rows) == 10 and len({(r["case_id"], r["method"]) for r in rows}) == 10
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    for key in ("deletion_auc", "insertion_auc", "deletion_auc_random", "pointing_game", "sparseness_gini",
                "sanity_ssim", "sanity_passed", "task_dice", "task_hd95_mm", "seconds"):
        assert rows[0][key] != "", key
    splits = json.loads((out / "splits.json").read_text())
    fold_of = {c: f["index"] for f in splits["folds"] for c in f["test"]}
    assert fold_of["case1"] == fold_of["case2"]  # one patient, one fold
    assert all(int(r["fold"]) == fold_of[r["case_id"]] for r in rows)
    summary = _rows(out / "summary.csv")
    methods = {r["method"] for r in summary}
    assert {"gradcam", "random", "(model)"} <= methods
    dice = next(r for r in summary if r["method"] == "(model)" and r["metric"] == "task_dice")
    assert dice["n_folds"] == "2" and "±" in dice["text"]
    assert any(r["metric"] == "sanity_method_passed" for r in summary)
    assert (out / "folds.csv").exists()
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    assert len(parser.images) >= 3 and all(im.startswith(b"\x89PNG") for im in parser.images)
    # a rerun has nothing left to do and keeps every row once
    mtime = (out / "units" / "case0__gradcam.json").stat().st_mtime
    assert main(_args(cohort, out, "--metrics", "localisation,faithfulness,complexity,sanity",
                      "--sanity-stages", "2")) == 0
    assert (out / "units" / "case0__gradcam.json").stat().st_mtime == mtime
    assert len(_rows(out / "cases.csv")) == 10


def test_rerun_with_other_settings_is_refused(cohort: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    assert main(_args(cohort, out, "--methods", "random")) == 0
    assert main(_args(cohort, out, "--methods", "random", "--steps", "5")) == 2
    assert "different steps" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter imports torch and MONAI (~10-20 s on 2 shared cores)
def test_resumes_after_sigkill_without_losing_or_duplicating_rows(cohort: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "MedXAILib", *_args(cohort, out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    units = out / "units"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if units.is_dir() and len(list(units.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(units.glob("*.json")))
    assert 0 < done_before < 10, "the run was not caught mid-way"
    assert not (out / "cases.csv").exists()
    # a torn temporary file from a killed writer is ignored
    (units / ".case4__random.json.abc.part.json").write_text('{"case_id": "case4", "meth')
    assert main(_args(cohort, out)) == 0
    rows = _rows(out / "cases.csv")
    keys = [(r["case_id"], r["method"]) for r in rows]
    assert len(keys) == 10 and len(set(keys)) == 10
    assert all(r["status"] == "ok" for r in rows)
    assert len(list(UnitStore(out).records())) == 10


@pytest.mark.slow  # two spawned workers import torch and MONAI
def test_two_workers_give_the_same_rows_as_one(cohort: dict[str, Path], tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(cohort, one)) == 0
    assert main(_args(cohort, two, "--workers", "2")) == 0
    r1, r2 = _rows(one / "cases.csv"), _rows(two / "cases.csv")
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in r1]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in r2]


def test_classification_cohort_reports_fold_metrics_and_box_localisation(tmp_path: Path) -> None:
    from helpers import tiny_classifier

    from MedXAILib.phantoms import CHEST_FINDINGS

    model = tiny_classifier(classes=len(CHEST_FINDINGS), input_size=[32, 32])
    folder = tmp_path / "cls"
    folder.mkdir()
    torch.save(model.network.state_dict(), folder / "weights.pt")
    desc = model.description.to_dict()
    desc.update(weights="weights.pt", class_names=list(CHEST_FINDINGS))
    (folder / "model.json").write_text(json.dumps(desc))
    out = tmp_path / "chest"
    assert main(["benchmark", "--dataset", "phantom-chest:4", "--model", str(folder), "--methods", "gradcam,random",
                 "--folds", "2", "--steps", "3", "--output", str(out), "--progress", "none"]) == 0
    rows = _rows(out / "cases.csv")
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    summary = {(r["method"], r["metric"]) for r in _rows(out / "summary.csv")}
    assert {("(model)", "accuracy"), ("(model)", "f1"), ("gradcam", "deletion_auc")} <= summary
    folds = _rows(out / "folds.csv")
    assert len(folds) == 2 and all(f["accuracy"] != "" for f in folds)
