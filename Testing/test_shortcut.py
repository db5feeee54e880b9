"""The shortcut benchmark and the trade-off, end to end on chest phantoms (the issue's "done when").

One ``shortcut`` run and one ``tradeoff --weights 0,100`` in the same folder (weight 0 is plain confounded training,
so its models are the shortcut run's, reused through the fold fingerprints). The ground truth is planted: a tag
confounded with effusion at strength 0.95, and reliance is proven by intervention before any explanation is judged.

- the confounded model's AUC falls by ≥ 0.2 on the swapped test set; the clean model's changes by ≤ 0.05;
- Grad-CAM's and IG's artifact mass is ≥ 3× higher for the confounded model;
- λ = 100 (``--explanation-mask artifact``) recovers at least half of the swapped-AUC loss of λ = 0;
- the files the issue names, and per-case masks that match an independent redraw;
- bad input (item 5): one ``error:`` line, exit status 2, nothing written.

Sizes are chosen to run in CI: 96 phantoms (48 to train on per fold: with fewer, the network memorises images
rather than learning the tag) at 64 × 64 model input, a small ResNet, 80 steps, 2 folds, one torch thread.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from MedXAILib.cli import main
from MedXAILib.io import read_image, write_volume
from MedXAILib.volume import Volume, make_ijk_to_ras

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATASET = "phantom-chest:96"
COMMON = ["--dataset", DATASET, "--task", "classification", "--finding", "effusion", "--artifact", "tag",
          "--strength", "0.95", "--folds", "2", "--seed", "0", "--architecture", "resnet-small",
          "--input-size", "64,64", "--epochs", "4", "--steps-per-epoch", "20", "--batch-size", "8",
          "--threads", "1", "--progress", "none"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shortcut") / "run"
    assert main(["shortcut", *COMMON, "--methods", "gradcam,ig,random", "--param", "ig:steps=16",
                 "--explain-cases", "24", "--output", str(out)]) == 0
    weights = out / "train-confounded" / "fold0" / "weights.pt"
    before = weights.stat().st_mtime_ns
    assert main(["tradeoff", *COMMON, "--weights", "0,100", "--explanation-mask", "artifact",
                 "--methods", "gradcam", "--explain-cases", "8", "--faithfulness-steps", "4",
                 "--output", str(out)]) == 0
    assert weights.stat().st_mtime_ns == before  # λ = 0 is plain training: the confounded folds were reused
    return out


def test_confounded_model_relies_on_the_tag_and_the_clean_one_does_not(run):
    rel = json.loads((run / "shortcut.json").read_text())["reliance"]
    assert rel["confounded"]["auc"] - rel["confounded"]["auc_swapped"] >= 0.2, rel
    assert abs(rel["clean"]["auc"] - rel["clean"]["auc_swapped"]) <= 0.05, rel
    assert rel["confounded"]["n_cases"] == rel["clean"]["n_cases"] == 96  # every case held out once


def test_gradcam_and_ig_show_the_reliance(run):
    methods = json.loads((run / "shortcut.json").read_text())["methods"]
    for m in ("gradcam", "ig"):
        assert methods[m]["artifact_mass_confounded"] >= 3 * methods[m]["artifact_mass_clean"], methods[m]
        assert methods[m]["detection_auc"] > 0.5
    # the control: a model-independent random map cannot tell the two models apart
    assert methods["random"]["detection_auc"] == pytest.approx(0.5)


def test_large_explanation_weight_recovers_half_of_the_swapped_loss(run):
    result = json.loads((run / "tradeoff.json").read_text())
    rec = result["recovery"]
    assert rec["from_weight"] == 0 and rec["to_weight"] == 100
    assert rec["recovered_fraction"] >= 0.5, rec
    with open(run / "tradeoff.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["weight"], r["fold"]) for r in rows] == [("0.0", "0"), ("0.0", "1"), ("100.0", "0"), ("100.0", "1")]
    wanted = {"auc", "auc_swapped", "gradcam_relevance_mass", "gradcam_deletion_auc", "gradcam_artifact_mass"}
    assert wanted <= set(rows[0])
    assert (run / "tradeoff.png").read_bytes().startswith(b"\x89PNG")
    # weight 0 reused the shortcut run's confounded folds; weight 100 trained with the penalty, and says so
    assert not (run / "train-confounded-rrr-artifact-w0").exists()
    fold = json.loads((run / "train-confounded-rrr-artifact-w100" / "fold0" / "model.json").read_text())["training"]
    assert fold["explanation_loss"]["weight"] == 100 and fold["explanation_loss"]["mask"] == "artifact"
    assert "--explanation-weight 100" in fold["command"]


def test_outputs_and_masks(run):
    data = json.loads((run / "shortcut.json").read_text())
    assert set(data["reliance"]) == {"clean", "confounded"}
    for m in ("gradcam", "ig", "random"):
        assert {"artifact_mass_clean", "artifact_mass_confounded", "detection_auc", "effect_spearman"} <= \
            set(data["methods"][m])
    with open(run / "shortcut.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 * 2 * 3 and all(r["status"] == "ok" for r in rows)
    assert sum(int(r["label"]) for r in rows) == 12 * 2 * 3  # the explained cases: half positive
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "detection AUC" in html
    # each held-out case's mask, in its geometry, equals an independent redraw of the seeded artifact
    from MedXAILib.datasets import open_dataset
    from MedXAILib.shortcut.artifacts import ArtifactSpec, place, render

    case = open_dataset(DATASET).cases[5]
    image = case.load()[0]
    spec = ArtifactSpec("tag", strength=0.95, seed=0)
    _, mask = render(spec, image, place(spec, image, case.case_id))
    stored = read_image(run / "masks" / f"{case.case_id}.nii.gz")
    assert stored.same_geometry(image) and np.array_equal(stored.array[0] > 0, mask)
    assert len(list((run / "masks").glob("*.nii.gz"))) == 96


def _floats(rows, key):
    return [float(r[key]) if r[key] != "" else None for r in rows]


def test_published_numbers_equal_independent_computations_from_the_per_case_files(run):
    """Every summary number of shortcut.json and tradeoff.json recomputed from the per-case CSV files with
    scikit-learn's roc_auc_score, scipy's spearmanr and numpy (not MedXAI's metric code)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    data = json.loads((run / "shortcut.json").read_text())
    with open(run / "interventions.csv", newline="") as fh:
        interventions = list(csv.DictReader(fh))
    for role in ("clean", "confounded"):
        mine = [r for r in interventions if r["model"] == role]
        y = [int(r["label"]) for r in mine]
        rel = data["reliance"][role]
        for key, column in (("auc", "score_clean"), ("auc_swapped", "score_swapped"),
                            ("auc_confounded_data", "score_confounded_data")):
            assert rel[key] == pytest.approx(roc_auc_score(y, _floats(mine, column)), abs=1e-12), (role, key)
        for r in mine:  # swapped: the added score for a negative, the clean one for a positive
            want = r["score_added"] if r["label"] == "0" else r["score_clean"]
            assert float(r["score_swapped"]) == float(want)
            assert float(r["effect"]) == pytest.approx(float(r["score_added"]) - float(r["score_clean"]), abs=1e-12)
        assert rel["auc_drop"] == pytest.approx(rel["auc"] - rel["auc_swapped"])
    with open(run / "shortcut.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for m, summary in data["methods"].items():
        conf = [r for r in rows if r["method"] == m and r["model"] == "confounded" and r["artifact_mass"]]
        clean = [r for r in rows if r["method"] == m and r["model"] == "clean" and r["artifact_mass"]]
        mass_conf, mass_clean = _floats(conf, "artifact_mass"), _floats(clean, "artifact_mass")
        assert summary["artifact_mass_confounded"] == pytest.approx(np.mean(mass_conf), abs=1e-12)
        assert summary["artifact_mass_clean"] == pytest.approx(np.mean(mass_clean), abs=1e-12)
        expected = roc_auc_score([1] * len(conf) + [0] * len(clean), mass_conf + mass_clean)
        assert summary["detection_auc"] == pytest.approx(expected, abs=1e-12), m
        both = conf + clean
        rho = spearmanr(_floats(both, "artifact_mass"), np.abs(_floats(both, "effect"))).statistic
        assert summary["effect_spearman"] == pytest.approx(rho, abs=1e-12), m
        rho_conf = spearmanr(mass_conf, np.abs(_floats(conf, "effect"))).statistic
        assert summary["effect_spearman_confounded"] == pytest.approx(rho_conf, abs=1e-12), m
    # no leakage: both models share one patient-level split, and each held-out case was scored by the fold model
    # whose training cases (recorded in its model.json) and patients exclude it
    splits = [json.loads((run / f"train-{role}" / "splits.json").read_text()) for role in ("clean", "confounded")]
    assert splits[0]["folds"] == splits[1]["folds"] and splits[0]["patients"] == splits[1]["patients"]
    patient = splits[0]["patients"]
    for role in ("clean", "confounded"):
        for fold in (0, 1):
            training = json.loads((run / f"train-{role}" / f"fold{fold}" / "model.json").read_text())["training"]
            seen = set(training["train_case_ids"])
            held = [r["case_id"] for r in interventions if r["model"] == role and r["fold"] == str(fold)]
            assert held and not seen & set(held)
            assert not {patient[c] for c in seen} & {patient[c] for c in held}
    # the trade-off's recovery, by hand from tradeoff.csv (mean over folds of the per-fold AUCs)
    with open(run / "tradeoff.csv", newline="") as fh:
        trade = list(csv.DictReader(fh))
    mean = {(w, k): np.mean([float(r[k]) for r in trade if r["weight"] == w]) for w in ("0.0", "100.0")
            for k in ("auc", "auc_swapped")}
    loss = mean["0.0", "auc"] - mean["0.0", "auc_swapped"]
    rec = json.loads((run / "tradeoff.json").read_text())["recovery"]
    assert rec["recovered_fraction"] == pytest.approx((mean["100.0", "auc_swapped"] - mean["0.0", "auc_swapped"])
                                                      / loss, abs=1e-12)


def test_topk_iou_equals_a_brute_force_count():
    """IoU of the artifact with the map's |A| highest voxels, counted directly (distinct values, no ties)."""
    from MedXAILib.shortcut.scoring import artifact_mass, topk_iou

    rng = np.random.default_rng(3)
    for _ in range(5):
        heat = rng.normal(size=(1, 20, 24))
        mask = np.zeros((1, 20, 24), bool)
        mask[0, rng.integers(0, 12):, rng.integers(0, 16):][:6, :5] = True
        top = np.zeros(heat.size, bool)
        top[np.argsort(heat.ravel())[-int(mask.sum()):]] = True
        inter = (top & mask.ravel()).sum()
        assert topk_iou(heat, mask) == pytest.approx(inter / (top | mask.ravel()).sum())
        pos = np.clip(heat, 0, None)
        assert artifact_mass(heat, mask) == pytest.approx(pos[mask].sum() / pos.sum())


def _manifest_without_boxes(root: Path) -> Path:
    rows = ["case_id,patient_id,image,effusion"]
    geom = make_ijk_to_ras((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    for n in range(4):
        write_volume(Volume(np.random.default_rng(n).random((1, 1, 32, 32)).astype(np.float32), geom),
                     root / f"x{n}.nrrd")
        rows.append(f"x{n},p{n},x{n}.nrrd,{n % 2}")
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    return root / "cases.csv"


@pytest.mark.parametrize("command, extra, message", [
    ("shortcut", ["--artifact-size", "2000"], "does not fit"),
    ("shortcut", ["--strength", "1.5"], "--strength must lie in [0, 1]"),
    ("shortcut", ["--finding", "pneumonia"], "finding 'pneumonia' is not in"),
    ("tradeoff", ["--explanation-mask", "annotation", "--weights", "0,10", "--dataset", "MANIFEST"],
     "needs an annotation of effusion"),
    ("tradeoff", ["--explanation-mask", "artifact", "--weights", "0,-1"], "--weights must be numbers ≥ 0"),
    ("tradeoff", ["--explanation-mask", "artifact", "--weights", "0,1.0000001,1.0000002"], "share one model folder"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, command, extra, message):
    argv = [command, *COMMON, "--output", str(tmp_path / "out")]
    if command == "tradeoff" and "--explanation-mask" not in argv:
        argv += ["--explanation-mask", "artifact"]
    for flag_index in range(0, len(extra), 2):
        flag, value = extra[flag_index], extra[flag_index + 1]
        if value == "MANIFEST":
            value = f"csv:{_manifest_without_boxes(tmp_path)}"
            argv[argv.index("--artifact"):argv.index("--artifact") + 2] = []  # annotation mode needs no artifact
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_segmentation_with_an_intensity_blob_runs_end_to_end(tmp_path):
    """3D segmentation: Dice clean / swapped, blob masks away from the lesion and as in training, both models
    explained (tiny volumes and one optimiser step: the path, not the numbers)."""
    rows = ["case_id,patient_id,image:t1,image:flair,label"]
    geom = make_ijk_to_ras((2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    for n in range(4):
        rng = np.random.default_rng(n)
        k, j, i = np.meshgrid(np.arange(12), np.arange(16), np.arange(16), indexing="ij")
        r = np.sqrt((k - 6) ** 2 + (j - 5 - n) ** 2 + (i - 8) ** 2)
        label = np.where(r < 2, 4, np.where(r < 4, 1, 0)).astype(np.int16)
        image = (1.0 + 2.0 * (label > 0) + rng.normal(0, 0.1, (2, 12, 16, 16))).astype(np.float32)
        for c, name in enumerate(("t1", "flair")):
            write_volume(Volume(image[c:c + 1], geom), tmp_path / f"s{n}_{name}.nii.gz")
        write_volume(Volume(label[None], geom), tmp_path / f"s{n}_seg.nii.gz")
        rows.append(f"s{n},p{n},s{n}_t1.nii.gz,s{n}_flair.nii.gz,s{n}_seg.nii.gz")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "seg"
    tiny = json.dumps({"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1}})
    assert main(["shortcut", "--dataset", f"csv:{tmp_path / 'cases.csv'}", "--task", "segmentation",
                 "--artifact", "intensity", "--artifact-size", "8", "--methods", "saliency", "--folds", "2",
                 "--architecture", tiny, "--patch", "8,16,16", "--epochs", "1", "--steps-per-epoch", "1",
                 "--threads", "1", "--output", str(out), "--progress", "none"]) == 0
    data = json.loads((out / "shortcut.json").read_text())
    assert data["finding"]["name"] == "foreground"  # the manifest declares no labels: every non-zero one
    for role in ("clean", "confounded"):
        assert {"dice", "dice_swapped", "dice_drop", "dice_confounded_data"} <= set(data["reliance"][role])
    assert len(list((out / "masks").glob("*_swapped.nii.gz"))) == 4
    swapped = read_image(out / "masks" / "s0_swapped.nii.gz").array[0] > 0
    lesion = read_image(tmp_path / "s0_seg.nii.gz").array[0] > 0
    assert swapped.any() and not (swapped & lesion).any()  # the swapped blob lies away from the lesion
    with open(out / "shortcut.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4 * 2


def test_images_a_manifest_names_inside_the_output_folder_are_not_overwritten(tmp_path, capsys):
    """A csv: manifest's images are inputs too: with the images in DIR/masks/ named by case id, shortcut --output
    DIR would have written each case's artifact mask over its image (the manifest file itself was the only
    protected input). Refused before any work, every image unchanged."""
    import hashlib

    rows = ["case_id,patient_id,image,effusion"]
    geom = make_ijk_to_ras((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    for n in range(4):
        write_volume(Volume(np.random.default_rng(n).random((1, 1, 32, 32)).astype(np.float32), geom),
                     tmp_path / "masks" / f"x{n}.nii.gz")
        rows.append(f"x{n},p{n},masks/x{n}.nii.gz,{n % 2}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["shortcut", "--dataset", f"csv:{tmp_path / 'cases.csv'}", "--task", "classification",
                 "--finding", "effusion", "--artifact", "tag", "--methods", "random", "--folds", "2",
                 "--architecture", "resnet-small", "--input-size", "32,32", "--epochs", "1", "--steps-per-epoch", "1",
                 "--threads", "1", "--output", str(tmp_path), "--progress", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "(--dataset)" in err, err
    assert re.search(r"masks/x\d\.nii\.gz is such a file: the input", err), err
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()} == before
