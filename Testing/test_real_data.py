"""The demo models on the real shared cases: they read, run, keep geometry, and metrics agree with numpy.

What the demo models predict on real scans does not matter here (they were trained on phantoms); what matters is
that real files of every kind go through the whole pipeline with their geometry intact.
"""

from __future__ import annotations

import numpy as np
import pytest

from MedXAILib.explain import explain
from MedXAILib.io import read_image, read_label_map, read_volume, write_volume
from MedXAILib.metrics.segmentation import segmentation_metrics
from MedXAILib.models import builtin_model_names, load_model
from MedXAILib.volume import Volume

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not {"demo-brain-tumour", "demo-chest-xray"} <= set(builtin_model_names()), reason="demo models not built"
    ),
]


def _four_channels(paths: dict[str, str]) -> Volume:
    """Order t1, t1ce, t2, flair; a missing sequence is filled by its nearest available one, else by any given one."""
    stand_in = {"t1": ["t1", "t1ce"], "t1ce": ["t1ce", "t1"], "t2": ["t2", "flair"], "flair": ["flair", "t2"]}
    first = next(iter(paths.values()))
    chosen = [next((paths[s] for s in stand_in[c] if s in paths), first) for c in ("t1", "t1ce", "t2", "flair")]
    return read_volume(chosen, channel_names=["t1", "t1ce", "t2", "flair"])


def _check_same_geometry(out: Volume, ref: Volume) -> None:
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out.ijk_to_ras, ref.ijk_to_ras)


@pytest.fixture(scope="module")
def brain_model():
    return load_model("demo-brain-tumour")


@pytest.fixture(scope="module")
def chest_model():
    return load_model("demo-chest-xray")


def test_brats2015_expert_labels_predict_explain_and_metrics(test_data_dir, brain_model, tmp_path):
    case = test_data_dir / "deepmedic-brats2015" / "test" / "brats_2013_pat0001_1"
    vol = _four_channels({"t1ce": case / "T1c_subtrMeanDivStd.nii.gz", "flair": case / "Flair_subtrMeanDivStd.nii.gz"})
    ref = read_label_map(case / "OTMultiClass.nii.gz", reference=vol)
    pred = brain_model.predict(vol)
    _check_same_geometry(pred.labels, vol)
    heat = explain(brain_model, vol, "gradcam", label=2, region=ref.array[0] > 0).heatmap
    _check_same_geometry(heat, vol)
    # metrics against an independent numpy computation, through a file round trip
    back = read_label_map(write_volume(pred.labels, tmp_path / "pred.nii.gz"), reference=vol)
    ours = segmentation_metrics(back, ref, regions={"whole": [1, 2, 3, 4]})
    p, r = back.array[0] > 0, ref.array[0] > 0
    dice = 2 * (p & r).sum() / (p.sum() + r.sum())
    iou = (p & r).sum() / (p | r).sum()
    assert abs(ours["whole"]["dice"] - dice) < 1e-6 and abs(ours["whole"]["iou"] - iou) < 1e-6
    np.testing.assert_allclose(ours["whole"]["volume_ml_reference"], r.sum() * vol.voxel_volume_ml, rtol=1e-9)


@pytest.mark.parametrize(
    "folder,names",
    [
        ("brainlesion-tutorials/BraTS-GLI-00001-000",
         {"t1": "BraTS-GLI-00001-000-t1n.nii.gz", "t1ce": "BraTS-GLI-00001-000-t1c.nii.gz",
          "t2": "BraTS-GLI-00001-000-t2w.nii.gz", "flair": "BraTS-GLI-00001-000-t2f.nii.gz"}),
        ("brainlesion-tutorials/TCGA-DU-7294",
         {"t1": "TCGA-DU-7294_t1_bet.nii.gz", "t1ce": "TCGA-DU-7294_t1c_bet.nii.gz",
          "t2": "TCGA-DU-7294_t2_bet.nii.gz", "flair": "TCGA-DU-7294_fla_bet.nii.gz"}),
    ],
)
def test_four_sequence_cases(test_data_dir, brain_model, folder, names):
    vol = _four_channels({k: test_data_dir / folder / v for k, v in names.items()})
    pred = brain_model.predict(vol)
    _check_same_geometry(pred.labels, vol)
    region = np.zeros(vol.shape, bool)
    region[60:90, 100:140, 100:140] = True
    expl = explain(brain_model, vol, "gradcam", label=2, region=region)
    _check_same_geometry(expl.heatmap, vol)
    assert np.isfinite(expl.heatmap.array).all()


def test_thick_slice_nrrd(test_data_dir, brain_model, tmp_path):
    image = test_data_dir / "pyradiomics" / "brain1_image.nrrd"
    vol = _four_channels({"t1ce": image})
    assert np.allclose(vol.spacing, [0.78125, 0.78125, 6.5])
    pred = brain_model.predict(vol)
    _check_same_geometry(pred.labels, vol)
    out = read_image(write_volume(pred.labels, tmp_path / "pred.nrrd"))
    np.testing.assert_allclose(out.ijk_to_ras, vol.ijk_to_ras, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["nih-chestxray14/images/00000075_000.png", "torchxrayvision-tests/00000001_000.png",
             "torchxrayvision-tests/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"]
)
def test_chest_xrays(test_data_dir, chest_model, name):
    vol = read_volume(test_data_dir / name, channel_names=["xray"])
    pred = chest_model.predict(vol)
    assert pred.class_probabilities.shape == (len(chest_model.description.class_names),)
    expl = explain(chest_model, vol, "gradcam")
    _check_same_geometry(expl.heatmap, vol)
