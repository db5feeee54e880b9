"""The evaluate command's model-based metrics, and the one-stop evaluate_explanation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import oblique_volume, save_model, tiny_unet_model

from MedXAILib.cli import main
from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.io import write_volume
from MedXAILib.quality import evaluate_explanation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_evaluate_cli_writes_faithfulness_stability_and_sanity(tmp_path: Path) -> None:
    model_dir = save_model(tiny_unet_model(channels=2), tmp_path / "m")
    vol = oblique_volume(channels=2, shape=(8, 12, 12))
    inputs = [str(write_volume(vol.channel(c), tmp_path / f"in{c}.nii.gz")) for c in range(2)]
    ref = np.zeros((1,) + vol.shape, np.int16)
    ref[0, 2:6, 3:9, 3:9] = 1
    write_volume(vol.with_array(ref), tmp_path / "ref.nii.gz")
    heat = tmp_path / "heat.nrrd"
    common = ["--model", str(model_dir), "--input", *inputs, "--progress", "none"]
    assert main(["explain", "--model", str(model_dir), "--input", inputs[0], "--input", inputs[1],
                 "--progress", "none", "--output", str(heat)]) == 0
    out = tmp_path / "q.json"
    assert main(["evaluate", "--heatmap", str(heat), "--reference", str(tmp_path / "ref.nii.gz"), *common,
                 "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("pointing_game", "deletion_auc", "insertion_auc", "deletion_auc_random", "stability_ssim",
                "stability_spearman", "max_sensitivity", "sanity_ssim", "sanity_passed"):
        assert key in data, key
    assert data["quality_inputs"]["method"] == "gradcam"  # read from the explain sidecar
    (tmp_path / "heat.nrrd.json").unlink()
    out2 = tmp_path / "q2.json"
    assert main(["evaluate", "--heatmap", str(heat), "--reference", str(tmp_path / "ref.nii.gz"), *common,
                 "--output", str(out2)]) == 0
    data2 = json.loads(out2.read_text())
    assert "deletion_auc" in data2 and "sanity_ssim" not in data2 and "sanity" in data2["quality_skipped"]
    out3 = tmp_path / "q3.json"
    assert main(["evaluate", "--heatmap", str(heat), "--reference", str(tmp_path / "ref.nii.gz"), *common,
                 "--method", "gradcam", "--quality", "sanity", "--output", str(out3)]) == 0
    data3 = json.loads(out3.read_text())
    assert "sanity_passed" in data3 and "deletion_auc" not in data3


def test_evaluate_explanation_defaults_and_refusals() -> None:
    model = tiny_unet_model(channels=2)
    vol = oblique_volume(channels=2, shape=(8, 12, 12))
    e = explain(model, vol, "gradcam")
    ref = np.zeros(vol.shape, bool)
    ref[2:6, 3:9, 3:9] = True
    res = evaluate_explanation(model, vol, e, ref, faithfulness_options={"steps": 4})
    assert {"pointing_game", "sparseness_gini", "deletion_auc"} <= set(res) and "stability_ssim" not in res
    with pytest.raises(MethodError, match="method"):
        evaluate_explanation(model, vol, e.heatmap.array[0], ref, "sanity")
