"""Every registered method runs from the CLI on the demo 3D segmentation case and on a real chest X-ray.

Expensive methods get light parameters here (fewer samples, coarser windows): this checks that each one runs end to
end with a real trained model and writes a map with the input's geometry, not how good its map is.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedXAILib.cli import main
from MedXAILib.explain import available_methods
from MedXAILib.io import read_image, write_volume
from MedXAILib.models import builtin_model_names
from MedXAILib.phantoms import make_brain_phantom

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not {"demo-brain-tumour", "demo-chest-xray"} <= set(builtin_model_names()), reason="demo models not built"
    ),
]

LIGHT = {
    "kernelshap": ["n_samples=24", "n_segments=16"],
    "lime": ["n_samples=24", "n_segments=16"],
    "partitionshap": ["n_samples=40", "n_segments=16"],
    "occlusion": ["window_mm=64", "stride_mm=64"],
    "ig": ["steps=4"],
    "gradientshap": ["n_samples=4"],
    "scorecam": ["top_k=4"],
    "counterfactual": ["steps=3", "sparsify_rounds=1"],
    "sedc": ["max_passes=8", "n_segments=8"],
}
METHODS = sorted(available_methods())


def _params(method: str) -> list[str]:
    out: list[str] = []
    for p in LIGHT.get(method, []):
        out += ["--param", p]
    return out


@pytest.fixture(scope="module")
def brain_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("brain")
    image = make_brain_phantom(31_000).image
    return [str(write_volume(image.channel(c), folder / f"{n}.nii.gz")) for c, n in enumerate(image.channel_names)]


@pytest.mark.parametrize("method", METHODS)
def test_method_on_the_demo_3d_case(method, brain_inputs, tmp_path):
    out = tmp_path / "heat.nrrd"
    argv = ["explain", "--model", "demo-brain-tumour", "--method", method, "--output", str(out), "--progress", "none"]
    for path in brain_inputs:
        argv += ["--input", path]
    assert main(argv + _params(method)) == 0
    heat, ref = read_image(out), read_image(brain_inputs[0])
    assert heat.shape == ref.shape
    np.testing.assert_allclose(heat.ijk_to_ras, ref.ijk_to_ras, atol=1e-6)
    assert np.isfinite(heat.array).all()
    sidecar = json.loads((tmp_path / "heat.nrrd.json").read_text())
    assert sidecar["method"] == method and sidecar["cost"]["seconds"] > 0


@pytest.mark.parametrize("method", METHODS)
def test_method_on_a_real_chest_xray(method, test_data_dir, tmp_path):
    xray = test_data_dir / "nih-chestxray14" / "images" / "00000075_000.png"
    out = tmp_path / "heat.nrrd"
    argv = ["explain", "--model", "demo-chest-xray", "--input", str(xray), "--method", method, "--output", str(out),
            "--progress", "none"]
    assert main(argv + _params(method)) == 0
    heat, ref = read_image(out), read_image(xray)
    assert heat.array.shape == (1, 1, 1024, 1024)
    np.testing.assert_allclose(heat.ijk_to_ras, ref.ijk_to_ras, atol=1e-6)
