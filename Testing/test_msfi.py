"""MSFI (modality-specific feature importance, Jin et al. AAAI 2022) against a hand computation on a constructed
4-channel case, through the function, ``evaluate --msfi`` and ``benchmark --metrics msfi``; refusals in one line.

The constructed case (1 × 4 × 4 pixels per channel, feature mask = the left 2 columns, 8 pixels):

- t1:    all zero                                 → no positive relevance, portion undefined, counted 0 (weight 0)
- t1ce:  inside 6 (+ a −5 that is ignored), outside 2   → portion 6 / 8 = 0.75
- t2:    inside 1, outside 3                      → 0.25
- flair: inside 4, outside 4                      → 0.5

With importances t1ce 0.5, flair 0.3, t2 0.2, t1 0: MSFI = 0.5·0.75 + 0.3·0.5 + 0.2·0.25 = 0.575 (by hand).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import save_model, tiny_unet_model

from MedXAILib.cli import main
from MedXAILib.errors import InputError
from MedXAILib.io import write_volume
from MedXAILib.metrics.msfi import msfi, parse_importance
from MedXAILib.volume import Volume, make_ijk_to_ras

WEIGHTS = "t1ce:0.5,flair:0.3,t2:0.2,t1:0"
HAND_MSFI = 0.5 * 0.75 + 0.3 * 0.5 + 0.2 * 0.25  # = 0.575


def _case() -> tuple[np.ndarray, np.ndarray]:
    maps = np.zeros((4, 1, 4, 4))
    maps[1, 0, 0, 0], maps[1, 0, 1, 1], maps[1, 0, 2, 0], maps[1, 0, 3, 1] = 3.0, 3.0, -5.0, 0.0  # t1ce in: 6
    maps[1, 0, 0, 3] = 2.0  # t1ce out: 2
    maps[2, 0, 1, 0], maps[2, 0, 1, 2], maps[2, 0, 2, 3] = 1.0, 1.5, 1.5  # t2: in 1, out 3
    maps[3, 0, :, 0] = 1.0  # flair in: 4
    maps[3, 0, :, 3] = 1.0  # flair out: 4
    maps[3, 0, 0, 2] = -3.0  # negative relevance is not evidence
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :, :2] = True
    return maps, mask


def test_msfi_equals_the_hand_computation():
    maps, mask = _case()
    out = msfi(maps, ["t1", "t1ce", "t2", "flair"], parse_importance(WEIGHTS), mask)
    assert out["msfi"] == pytest.approx(HAND_MSFI)
    p = out["msfi_portions"]
    assert p["t1ce"] == pytest.approx(0.75) and p["flair"] == pytest.approx(0.5) and p["t2"] == pytest.approx(0.25)
    assert p["t1"] is None
    assert out["msfi_undefined"] == ["t1"] and out["msfi_maps"] == "per-channel"
    # per-modality feature masks: flair scored on its right half instead → portion 0.5 stays, t1ce outside → 0.25
    right = ~mask
    per = msfi(maps, ["t1", "t1ce", "t2", "flair"], parse_importance(WEIGHTS),
               {"t1": mask, "t1ce": right, "t2": mask, "flair": mask})
    assert per["msfi"] == pytest.approx(0.5 * 0.25 + 0.3 * 0.5 + 0.2 * 0.25)
    # one shared map (Grad-CAM): MSFI is its positive relevance mass, 4 of 8 for the flair map
    shared = msfi(maps[3:4], ["t1", "t1ce", "t2", "flair"], parse_importance(WEIGHTS), mask)
    assert shared["msfi"] == pytest.approx(0.5) and shared["msfi_maps"] == "shared"


@pytest.mark.parametrize("text, message", [
    ("t1ce:0.5,flair:0.3", "sum to 1"),
    ("t1ce:0.5,t1ce:0.5", "twice"),
    ("t1ce:-0.5,flair:1.5", "≥ 0"),
    ("t1ce=1", "MODALITY:WEIGHT"),
])
def test_bad_importances_are_refused(text, message):
    with pytest.raises(InputError, match=message):
        parse_importance(text)


def test_a_weighted_modality_the_map_lacks_is_refused():
    maps, mask = _case()
    with pytest.raises(InputError, match="t2"):
        msfi(maps[[1, 3]], ["t1ce", "flair"], parse_importance(WEIGHTS), mask)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    maps, mask = _case()
    geom = make_ijk_to_ras((0.8, 0.8, 1.0), (0.0, 0.0, 0.0))
    heat = tmp_path / "channels.nrrd"
    write_volume(Volume(maps.astype(np.float32), geom), heat)
    ref = tmp_path / "mask.nrrd"
    write_volume(Volume(mask[None].astype(np.uint8), geom), ref)
    return heat, ref


def test_evaluate_writes_msfi(tmp_path):
    heat, ref = _files(tmp_path)
    out = tmp_path / "msfi.json"
    assert main(["evaluate", "--heatmap", str(heat), "--reference", str(ref), "--msfi", WEIGHTS,
                 "--heatmap-channels", "t1,t1ce,t2,flair", "--output", str(out), "--progress", "none"]) == 0
    data = json.loads(out.read_text())
    assert data["msfi"] == pytest.approx(HAND_MSFI)
    assert data["msfi_portions"]["t1ce"] == pytest.approx(0.75)
    # the other metrics score the sum over channels (its positive part, by hand with numpy)
    summed = _case()[0].sum(axis=0)[0]
    pos = np.clip(summed, 0, None)
    assert data["relevance_mass"] == pytest.approx(pos[:, :2].sum() / pos.sum())
    # without --heatmap-channels a 4-channel map is read in MedXAI's brain order (t1, t1ce, t2, flair)
    out2 = tmp_path / "msfi2.json"
    assert main(["evaluate", "--heatmap", str(heat), "--reference", str(ref), "--msfi", WEIGHTS,
                 "--output", str(out2), "--progress", "none"]) == 0
    assert json.loads(out2.read_text())["msfi"] == pytest.approx(HAND_MSFI)


@pytest.mark.parametrize("extra, message", [
    (["--msfi", "t1ce:0.5,flair:0.3"], "sum to 1"),
    (["--msfi", WEIGHTS, "--heatmap-channels", "t1,t1ce"], "names 2 channel"),
    (["--heatmap-channels", "t1,t1ce,t2,flair"], "--heatmap-channels names the channels for --msfi"),
])
def test_evaluate_refuses_bad_msfi_in_one_line(tmp_path, capsys, extra, message):
    heat, ref = _files(tmp_path)
    out = tmp_path / "bad.json"
    assert main(["evaluate", "--heatmap", str(heat), "--reference", str(ref), *extra, "--output", str(out),
                 "--progress", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err
    assert not out.exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_benchmark_reports_msfi_per_method(tmp_path):
    """Per method in cases.csv, summary.csv and the report; a shared map's MSFI is its relevance mass (an
    independent localisation metric computed by another code path)."""
    folder = save_model(tiny_unet_model(channels=2, classes=2), tmp_path / "model")
    geom = make_ijk_to_ras((1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    rows = ["case_id,patient_id,image:c0,image:c1,label"]
    for n in range(4):
        rng = np.random.default_rng(n)
        img = rng.normal(size=(2, 8, 16, 16)).astype(np.float32)
        lab = np.zeros((1, 8, 16, 16), np.int16)
        lab[0, 2:6, 4 + n : 10 + n, 4:11] = 1
        img[:, lab[0] > 0] += 2.0
        for c in range(2):
            write_volume(Volume(img[c : c + 1], geom), tmp_path / f"k{n}_c{c}.nii.gz")
        write_volume(Volume(lab, geom), tmp_path / f"k{n}_seg.nii.gz")
        rows.append(f"k{n},p{n},k{n}_c0.nii.gz,k{n}_c1.nii.gz,k{n}_seg.nii.gz")
    (tmp_path / "cohort.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "bench"
    assert main(["benchmark", "--dataset", f"csv:{tmp_path / 'cohort.csv'}", "--model", str(folder),
                 "--methods", "gradcam,saliency", "--metrics", "localisation", "--msfi", "c0:0.7,c1:0.3",
                 "--folds", "2", "--output", str(out), "--progress", "none"]) == 0
    with open(out / "cases.csv", newline="") as fh:
        cases = list(csv.DictReader(fh))
    assert len(cases) == 8 and all(r["status"] == "ok" for r in cases)
    for r in cases:
        assert 0.0 <= float(r["msfi"]) <= 1.0
        if r["method"] == "gradcam" and r["relevance_mass"]:
            assert float(r["msfi"]) == pytest.approx(float(r["relevance_mass"]), abs=1e-9)
    with open(out / "summary.csv", newline="") as fh:
        summary = [r for r in csv.DictReader(fh) if r["metric"] == "msfi"]
    assert {r["method"] for r in summary} == {"gradcam", "saliency"}
    assert "msfi" in (out / "report.html").read_text()
