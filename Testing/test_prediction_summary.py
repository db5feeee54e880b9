"""``Prediction.summary()`` keys volumes by class with the label value shown (issue 10, item 6)."""

from __future__ import annotations

import json

import numpy as np
from helpers import oblique_volume, save_model, tiny_unet_model

from MedXAILib.cli import main
from MedXAILib.io import write_volume
from MedXAILib.models import Prediction
from MedXAILib.volume import Volume, make_ijk_to_ras


def _prediction(labels: np.ndarray, names: list[str], values: list[int] | None) -> Prediction:
    vol = Volume(labels[None].astype(np.int16), make_ijk_to_ras((2.0, 1.0, 0.5)))  # 1 mm³ voxels
    return Prediction("segmentation", names, labels=vol, label_values=values)


def test_a_missing_middle_label_does_not_shift_the_names():
    labels = np.zeros((4, 5, 6), dtype=np.int16)
    labels[0, :2] = 1  # 12 voxels of class 1
    labels[3] = 4  # 30 voxels of class "enhancing" (value 4); value 2 ("oedema") is absent
    s = _prediction(labels, ["background", "necrotic", "oedema", "enhancing"], [0, 1, 2, 4]).summary()
    assert s["classes"]["necrotic"] == {"label": 1, "voxels": 12, "volume_ml": 0.012}
    assert s["classes"]["oedema"]["voxels"] == 0 and s["classes"]["oedema"]["label"] == 2
    assert s["classes"]["enhancing"] == {"label": 4, "voxels": 30, "volume_ml": 0.03}
    assert s["volume_ml"]["enhancing"] == 0.03 and "other_label_voxels" not in s


def test_unknown_values_are_reported_not_misnamed():
    labels = np.zeros((2, 2, 2), dtype=np.int16)
    labels[0, 0, 0] = 9
    s = _prediction(labels, ["background", "a"], None).summary()
    assert s["classes"]["a"]["voxels"] == 0 and s["other_label_voxels"] == {"9": 1}


def test_segment_sidecar_is_keyed_by_class(tmp_path):
    model = tiny_unet_model(channels=2, classes=3)
    model.description.label_values = [0, 2, 5]
    folder = save_model(model, tmp_path / "m")
    vol = oblique_volume(channels=2)
    inputs = [write_volume(vol.with_array(vol.array[c : c + 1]), tmp_path / f"c{c}.nii.gz") for c in range(2)]
    out = tmp_path / "seg.nii.gz"
    args = ["segment", "--progress", "none", "--model", str(folder), "--output", str(out)]
    for p in inputs:
        args += ["--input", str(p)]
    assert main(args) == 0
    side = json.loads((tmp_path / "seg.nii.gz.json").read_text())
    assert [side["classes"][n]["label"] for n in ("background", "l1", "l2")] == [0, 2, 5]
    seg = model.predict(vol).labels.array
    assert side["classes"]["l2"]["voxels"] == int((seg == 5).sum())
    assert side["function"]["kind"] == "whole_grid" and side["card"]["name"] == "tiny-unet"
