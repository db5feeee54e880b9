"""MONAI bundles run as MONAI runs them (issue 10) and never run code without consent (issue 17, item 1).

Parity: MedXAI's ``segment`` path (MedXAI reads the files, :class:`BundleModel` runs the bundle's objects) against
MONAI's own pipeline computed in the test from the files (``bundle_helpers.monai_reference``). Bar: max |Δp| ≤ 1e-3,
argmax (sigmoid: per-channel threshold) agreement ≥ 99.9 %.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import TINY_INFERENCE, TINY_METADATA, monai_reference, parity, write_bundle, zoo_bundle
from helpers import oblique_direction

from MedXAILib.cli import main
from MedXAILib.errors import ModelError
from MedXAILib.io import read_inputs, read_volume, write_volume
from MedXAILib.models import load_model
from MedXAILib.models.bundle_config import BundleCodeError
from MedXAILib.volume import Volume, make_ijk_to_ras

DATA = Path(os.environ.get("MEDXAI_TEST_DATA", "/nonexistent"))
ZOO = DATA / "monai-model-zoo"
needs_zoo = pytest.mark.skipif(not ZOO.is_dir(), reason="MEDXAI_TEST_DATA with monai-model-zoo/ not available")


@pytest.fixture()
def oblique_ct(tmp_path: Path) -> Path:
    """An oblique, anisotropic CT-like volume (20 × 28 × 24 voxels, 0.8 × 1.1 × 2.5 mm) written as NIfTI."""
    rng = np.random.default_rng(3)
    k, j, i = np.mgrid[0:20, 0:28, 0:24]
    body = ((i - 12) ** 2 / 100 + (j - 14) ** 2 / 140 + (k - 10) ** 2 / 60) < 1
    arr = np.where(body, 40 + 30 * rng.normal(size=body.shape), -1000).astype(np.float32)[None]
    vol = Volume(arr, make_ijk_to_ras((0.8, 1.1, 2.5), (-12.5, 30.0, 7.25), oblique_direction(25)))
    return write_volume(vol, tmp_path / "ct.nii.gz")


def _tiny(tmp_path: Path, **changes) -> Path:
    inference = copy.deepcopy(TINY_INFERENCE)
    inference.update(changes)
    return write_bundle(tmp_path / "bundle", inference, TINY_METADATA)


# ---- parity --------------------------------------------------------------------------------------------------------
def test_spacing_orientation_bundle_on_an_oblique_anisotropic_volume(tmp_path, oblique_ct):
    folder = _tiny(tmp_path)
    model = load_model(folder)
    pred = model.predict(read_volume([str(oblique_ct)]))
    dp, agree = parity(pred.probabilities.array, monai_reference(folder, str(oblique_ct)), sigmoid=False)
    assert dp <= 1e-3 and agree >= 0.999, (dp, agree)
    assert model.function_info((16, 16, 16))["inferer"] == "SlidingWindowInferer"
    np.testing.assert_allclose(pred.labels.ijk_to_ras, read_volume([str(oblique_ct)]).ijk_to_ras)
    assert "SaveImaged" not in model.function_info()["postprocessing"]


@pytest.mark.slow
@needs_zoo
def test_spleen_bundle_parity_on_the_totalsegmentator_ct(tmp_path):
    folder = zoo_bundle(tmp_path, "spleen_ct_segmentation", ZOO)
    image = str(DATA / "totalsegmentator" / "example_ct.nii.gz")
    model = load_model(folder)
    pred = model.predict(read_inputs([image], model))
    dp, agree = parity(pred.probabilities.array, monai_reference(folder, image), sigmoid=False)
    print(f"spleen parity: max|dp|={dp:.3g} argmax agreement={agree:.6f}")
    assert dp <= 1e-3 and agree >= 0.999


@pytest.mark.slow
@needs_zoo
def test_brats_bundle_parity_on_the_brats_2023_case(tmp_path):
    folder = zoo_bundle(tmp_path, "brats_mri_segmentation", ZOO)
    case = DATA / "brainlesion-tutorials" / "BraTS-GLI-00001-000"
    files = [str(case / f"BraTS-GLI-00001-000-{s}.nii.gz") for s in ("t1c", "t1n", "t2w", "t2f")]
    model = load_model(folder)
    assert model.description.output == "sigmoid"
    assert model.description.class_names == ["Tumor core", "Whole tumor", "Enhancing tumor"]
    pred = model.predict(read_inputs(files, model))
    dp, agree = parity(pred.probabilities.array, monai_reference(folder, files), sigmoid=True)
    print(f"brats parity: max|dp|={dp:.3g} threshold agreement={agree:.6f}")
    assert dp <= 1e-3 and agree >= 0.999
    assert any("Lambdad" in n and "--trust-model-code" in n for n in pred.notes)


# ---- consent -------------------------------------------------------------------------------------------------------
def _payload(tmp_path: Path) -> tuple[Path, str]:
    marker = tmp_path / "PAYLOAD_RAN"
    return marker, f"__import__('pathlib').Path({str(marker)!r}).touch()"


def _segment(folder: Path, image: Path, out: Path, *extra: str) -> int:
    return main(["segment", "--progress", "none", "--model", str(folder), "--input", str(image),
                 "--output", str(out), *extra])


@pytest.mark.parametrize("kind", ["target", "expression", "reference", "macro", "dotted", "mode"])
def test_malicious_bundle_is_refused_and_its_payload_never_runs(tmp_path, oblique_ct, capsys, kind):
    marker, code = _payload(tmp_path)
    inference = copy.deepcopy(TINY_INFERENCE)
    inference["imports"] = [f"${code}"]  # never parsed: only checked entries reach MONAI
    norm = inference["preprocessing"]["transforms"][4]
    if kind == "target":  # a _target_ naming any callable
        inference["network_def"] = {"_target_": "subprocess.call", "args": ["touch", str(marker)]}
    elif kind == "expression":
        norm["nonzero"] = f"${code} or True"
    elif kind == "reference":  # an @ reference to a top-level $ expression
        inference["evil"] = f"${code} or 'image'"
        norm["keys"] = "@evil"
    elif kind == "macro":
        norm["keys"] = "%other.json#key"
    elif kind == "dotted":
        inference["preprocessing"]["transforms"][4] = {"_target_": "monai.transforms.Lambdad", "keys": "image",
                                                       "func": f"$lambda x: ({code}, x)[1]"}
    else:
        inference["inferer"]["_mode_"] = "debug"
    folder = tmp_path / "bundle"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    (folder / "configs" / "metadata.json").write_text(json.dumps(TINY_METADATA))
    write_bundle(tmp_path / "weights", TINY_INFERENCE, TINY_METADATA)
    (tmp_path / "weights" / "models" / "model.pt").rename(folder / "models" / "model.pt")
    with pytest.raises(BundleCodeError, match="--trust-bundle-code"):
        load_model(folder)
    out = tmp_path / "seg.nii.gz"
    assert _segment(folder, oblique_ct, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--trust-bundle-code" in err[0], err
    assert not marker.exists() and not out.exists()


def test_code_in_postprocessing_is_skipped_with_a_note_and_runs_only_when_trusted(tmp_path, oblique_ct, capsys):
    marker, code = _payload(tmp_path)
    inference = copy.deepcopy(TINY_INFERENCE)
    inference["postprocessing"]["transforms"].insert(
        3, {"_target_": "Lambdad", "keys": "pred", "func": f"$lambda x: ({code}, x * 7)[1]"})
    folder = write_bundle(tmp_path / "bundle", inference, TINY_METADATA)
    model = load_model(folder)
    pred = model.predict(read_volume([str(oblique_ct)]))
    assert not marker.exists()
    assert any("Lambdad" in n and "skipped" in n for n in pred.notes)
    assert set(np.unique(pred.labels.array)) <= {0, 1}
    out = tmp_path / "seg.nii.gz"
    assert _segment(folder, oblique_ct, out) == 0 and not marker.exists()
    assert "notes" in json.loads(Path(str(out) + ".json").read_text())
    trusted = load_model(folder, trust_bundle_code=True).predict(read_volume([str(oblique_ct)]))
    assert marker.exists()  # with consent the bundle's own label mapping runs
    assert set(np.unique(trusted.labels.array)) <= {0, 7} and (trusted.labels.array == 7).any()


def test_allow_list_accepts_dotted_monai_names_and_refuses_lookalikes(tmp_path):
    inference = copy.deepcopy(TINY_INFERENCE)
    inference["network_def"]["_target_"] = "monai.networks.nets.UNet"
    assert load_model(write_bundle(tmp_path / "a", inference, TINY_METADATA)).name == "tiny-bundle"
    inference["network_def"]["_target_"] = "evil.UNet"
    with pytest.raises(BundleCodeError, match="evil.UNet"):
        load_model(_write_raw(tmp_path / "b", inference))


def _write_raw(folder: Path, inference: dict) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    (folder / "configs" / "metadata.json").write_text(json.dumps(TINY_METADATA))
    return folder


# ---- outputs -------------------------------------------------------------------------------------------------------
def test_segment_probabilities_are_one_4d_image_in_the_input_geometry(tmp_path, oblique_ct):
    folder = _tiny(tmp_path)
    out, probs = tmp_path / "seg.nii.gz", tmp_path / "probs.nii.gz"
    assert _segment(folder, oblique_ct, out, "--probabilities", str(probs)) == 0
    import SimpleITK as sitk

    img = sitk.ReadImage(str(probs))
    ref = sitk.ReadImage(str(oblique_ct))
    assert img.GetDimension() == 4 and img.GetSize() == ref.GetSize() + (2,)
    np.testing.assert_allclose(img.GetSpacing()[:3], ref.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(img.GetOrigin()[:3], ref.GetOrigin(), atol=1e-4)
    arr = sitk.GetArrayFromImage(img)  # (class, z, y, x)
    np.testing.assert_allclose(arr.sum(0), 1.0, atol=1e-4)
    model = load_model(folder)
    pred = model.predict(read_volume([str(oblique_ct)]))
    np.testing.assert_allclose(arr, pred.probabilities.array, atol=1e-6)
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["classes"]["organ"]["label"] == 1 and side["card"]["version"] == "0.1.0"
    assert side["probabilities"]["layout"] == "x, y, z, class"


def test_missing_bundle_parts_are_clear_errors(tmp_path):
    folder = _tiny(tmp_path)
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(ModelError, match="model.pt"):
        load_model(folder)


# ---- explaining a bundle -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spleen_crop(tmp_path_factory) -> tuple[Path, Path]:
    """The spleen bundle (seeded weights) and a crop of the TotalSegmentator CT that its inferer covers in one
    96³ window after ``Spacingd`` (so each function pass costs one network pass in CI)."""
    if not ZOO.is_dir():
        pytest.skip("MEDXAI_TEST_DATA with monai-model-zoo/ not available")
    tmp = tmp_path_factory.mktemp("spleen")
    folder = zoo_bundle(tmp, "spleen_ct_segmentation", ZOO)
    vol = read_volume([str(DATA / "totalsegmentator" / "example_ct.nii.gz")])
    crop = Volume(np.ascontiguousarray(vol.array[:, 40:80, 20:64, 30:76]), vol.ijk_to_ras.copy())
    crop.ijk_to_ras[:3, 3] = vol.ijk_to_ras[:3, :3] @ np.array([30.0, 20.0, 40.0]) + vol.ijk_to_ras[:3, 3]
    return folder, write_volume(crop, tmp / "ct_crop.nii.gz")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "lrp", "ig", "occlusion"])
def test_explain_runs_on_the_spleen_bundle_without_layer(spleen_crop, tmp_path, method):
    folder, image = spleen_crop
    params = {"ig": ["steps=2", "internal_batch_size=2"], "occlusion": ["window_mm=100", "stride_mm=100"]}
    out = tmp_path / "heat.nii.gz"
    args = ["explain", "--progress", "none", "--model", str(folder), "--input", str(image), "--method", method,
            "--output", str(out)]
    for p in params.get(method, []):
        args += ["--param", p]
    assert main(args) == 0
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["details"]["function"]["exact"] is True
    assert side["details"]["function"]["inferer"] == "SlidingWindowInferer"
    if method == "gradcam":
        assert side["details"]["layer"] == side["card"]["cam_layer"] == "model.1.submodule.2.1.conv.unit0.conv"
    heat, ref = read_volume([str(out)]), read_volume([str(image)])
    assert heat.shape == ref.shape and np.isfinite(heat.array).all() and np.abs(heat.array).max() > 0
    np.testing.assert_allclose(heat.ijk_to_ras, ref.ijk_to_ras, atol=1e-4)
