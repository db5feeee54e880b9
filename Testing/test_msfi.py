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


def _blind_to_second_channel(model):
    """The tiny U-Net with every weight that reads input channel 1 set to 0: the network ignores that channel, so
    any gradient attribution of it is exactly 0 (a planted truth)."""
    import torch

    with torch.no_grad():
        for m in model.network.modules():
            if isinstance(m, torch.nn.Conv3d) and m.in_channels == 2:
                m.weight[:, 1] = 0.0
    return model


@pytest.mark.usefixtures("one_torch_thread")
def test_explain_channel_maps_to_evaluate_msfi_end_to_end(tmp_path, capsys):
    """``explain --channel-maps`` writes the signed per-channel relevance as a 4-D (x, y, z, channel) image in the
    input's geometry with its channel names beside it, and ``evaluate --msfi`` scores that file. Checked with
    nibabel (not MedXAI's reader) against the input's affine, against the heat map (the sum over channels), against
    the planted truth (the model ignores channel c1, so its map is 0) and against MSFI by hand from the file."""
    import nibabel as nib

    model = _blind_to_second_channel(tiny_unet_model(channels=2, classes=2))
    folder = save_model(model, tmp_path / "model")
    geom = make_ijk_to_ras((1.2, 0.9, 2.5), (10.0, -4.0, 3.0))
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 8, 16, 12)).astype(np.float32)
    image[:, 2:5, 4:11, 3:9] += 2.0
    inputs = []
    for c in range(2):
        inputs += ["--input", str(write_volume(Volume(image[c:c + 1], geom), tmp_path / f"c{c}.nii.gz"))]
    mask = np.zeros((1, 8, 16, 12), np.uint8)
    mask[0, 2:5, 4:11, 3:9] = 1
    ref = write_volume(Volume(mask, geom), tmp_path / "mask.nii.gz")
    heat, maps = tmp_path / "heat.nii.gz", tmp_path / "maps.nii.gz"
    explain = ["explain", "--model", str(folder), *inputs, "--method", "saliency", "--target", "l1",
               "--region", str(ref), "--progress", "none"]
    assert main([*explain, "--output", str(heat), "--channel-maps", str(maps)]) == 0

    written, affine = nib.load(maps), nib.load(tmp_path / "c0.nii.gz").affine
    data = np.asarray(written.dataobj, dtype=np.float64)  # (x, y, z, channel)
    assert data.shape == (12, 16, 8, 2) and np.allclose(written.affine, affine)
    heat_xyz = np.asarray(nib.load(heat).dataobj, dtype=np.float64)
    np.testing.assert_allclose(data.sum(axis=-1), heat_xyz, rtol=1e-5, atol=1e-6 * np.abs(heat_xyz).max())
    assert np.abs(data[..., 0]).max() > 0 and np.all(data[..., 1] == 0)  # c1 is ignored by the network
    side = json.loads((tmp_path / "maps.nii.gz.json").read_text())
    assert side["channel_names"] == ["c0", "c1"] and side["method"] == "saliency"
    assert json.loads((tmp_path / "heat.nii.gz.json").read_text())["channel_maps"]["channel_names"] == ["c0", "c1"]

    out = tmp_path / "msfi.json"
    assert main(["evaluate", "--heatmap", str(maps), "--reference", str(ref), "--msfi", "c0:0.6,c1:0.4",
                 "--output", str(out), "--progress", "none"]) == 0
    result = json.loads(out.read_text())
    inside = np.transpose(mask[0], (2, 1, 0)) > 0  # (x, y, z) like nibabel's arrays
    pos = np.clip(data[..., 0], 0, None)
    portion_c0 = pos[inside].sum() / pos.sum()  # c1 has no positive relevance: undefined, counted 0
    assert result["msfi"] == pytest.approx(0.6 * portion_c0 / (0.6 + 0.4))
    assert result["msfi_portions"]["c0"] == pytest.approx(portion_c0) and result["msfi_undefined"] == ["c1"]

    # the names recorded beside the map cannot be contradicted, and a method without per-channel maps is refused
    # before anything is written
    capsys.readouterr()
    assert main(["evaluate", "--heatmap", str(maps), "--reference", str(ref), "--msfi", "c0:0.6,c1:0.4",
                 "--heatmap-channels", "c1,c0", "--output", str(tmp_path / "swapped.json"), "--progress", "none"]) == 2
    assert "contradicts" in capsys.readouterr().err and not (tmp_path / "swapped.json").exists()
    assert main(["evaluate", "--heatmap", str(maps), "--reference", str(ref), "--msfi", "c0:0.6,c1:0.4",
                 "--output", str(maps) + ".json", "--progress", "none"]) == 2
    assert "which --msfi reads" in capsys.readouterr().err
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([*explain[:7], "--method", "gradcam", "--target", "l1", "--progress", "none",
                 "--output", str(tmp_path / "cam.nii.gz"), "--channel-maps", str(tmp_path / "cam_maps.nii.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --channel-maps: gradcam gives one map for all input channels") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
