"""A bundle's label map and probabilities are what MONAI's own objects make of its postprocessing (issue 21).

The bundles are built here with seeded weights; their postprocessing names no activation:

- ``AsDiscreted(argmax)`` → ``KeepLargestConnectedComponentd`` → ``Invertd`` (the third Model Zoo layout the audit
  tried): the label map must be that chain on the model grid, inverted; the probabilities the softmax of the logits
  mapped back by MONAI's ``Invertd`` (linear);
- ``AsDiscreted(threshold)`` (independent channels, no ``Invertd``): the probabilities are the sigmoid, mapped back.

The reference never uses MedXAI: MONAI's ``ConfigParser`` builds every object, ``LoadImaged`` reads the file, the batch
goes through ``list_data_collate`` → inferer → ``decollate_batch`` as MONAI's evaluator does, then the bundle's own
postprocessing (labels) or ``torch.softmax`` / ``torch.sigmoid`` and MONAI's ``Invertd`` (probabilities).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from bundle_helpers import TINY_INFERENCE, TINY_METADATA, write_bundle

from MedXAILib.cli import main
from MedXAILib.io import write_volume
from MedXAILib.volume import Volume, make_ijk_to_ras


@pytest.fixture()
def anisotropic_mr(tmp_path: Path) -> Path:
    """An MR-like volume, 0.875 × 1.25 × 3.5 mm, flipped along i (so ``Orientationd`` has work), with two bright
    blobs (so components compete). The geometry is exact in float32, so MONAI's reader and MedXAI's read the same
    affine: where an input voxel centre falls exactly halfway between two model voxels, nearest-neighbour inversion
    is a tie that a 1e-8 difference in the affine would decide either way."""
    rng = np.random.default_rng(11)
    k, j, i = np.mgrid[0:14, 0:30, 0:26]
    blob = lambda ci, cj, ck, r: ((i - ci) ** 2 + (j - cj) ** 2 + 4 * (k - ck) ** 2) < r ** 2  # noqa: E731
    arr = 100 + 20 * rng.normal(size=blob(0, 0, 0, 1).shape)
    arr[blob(8, 9, 6, 6)] += 300
    arr[blob(19, 21, 8, 4)] += 250
    vol = Volume(arr.astype(np.float32)[None], make_ijk_to_ras((0.875, 1.25, 3.5), (4.0, -20.0, 11.5),
                                                              np.diag([-1.0, 1.0, 1.0])))
    return write_volume(vol, tmp_path / "mr.nii.gz")


def _bundle(tmp_path: Path, post: list[dict], seed: int) -> Path:
    inference = copy.deepcopy(TINY_INFERENCE)
    inference["preprocessing"]["transforms"][3]["pixdim"] = [1.4, 1.1, 2.0]
    inference["postprocessing"] = {"_target_": "Compose", "transforms": post}
    return write_bundle(tmp_path / "bundle", inference, TINY_METADATA, seed=seed)


def _monai(folder: Path, image: str) -> tuple[dict, object, object]:
    """MONAI's own evaluation of the bundle up to ``pred`` (decollated item), and its preprocessing and
    postprocessing objects."""
    from monai.bundle import ConfigParser
    from monai.data import decollate_batch, list_data_collate

    parser = ConfigParser(json.loads((folder / "configs" / "inference.json").read_text()))
    parser["bundle_root"] = str(folder)
    pre = parser.get_parsed_content("preprocessing")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    net.eval()
    batch = list_data_collate([pre({"image": image})])
    with torch.no_grad():
        batch["pred"] = parser.get_parsed_content("inferer")(batch["image"], net)
    return decollate_batch(batch)[0], pre, parser.get_parsed_content("postprocessing")


def _probabilities(item: dict, pre: object, activation) -> np.ndarray:
    from monai.transforms import Invertd

    d = dict(item)
    d["pred"] = activation(item["pred"])
    d = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True)(d)
    return np.asarray(d["pred"]).transpose(0, 3, 2, 1)  # (N, I, J, K) → (N, K, J, I)


def _segment(folder: Path, image: Path, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    out, probs = tmp_path / "seg.nii.gz", tmp_path / "probs.nii.gz"
    assert main(["segment", "--progress", "none", "--model", str(folder), "--input", str(image), "--output",
                 str(out), "--probabilities", str(probs)]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    p = sitk.GetArrayFromImage(sitk.ReadImage(str(probs)))  # (class, K, J, I)
    return labels, p, json.loads(Path(str(out) + ".json").read_text())


def test_argmax_largest_component_invert_is_run_as_monai_runs_it(tmp_path: Path, anisotropic_mr: Path) -> None:
    post = [{"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": [1], "connectivity": 1},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key"}]
    folder = _bundle(tmp_path, post, seed=6)  # a seed whose argmax has several components
    labels, probs, side = _segment(folder, anisotropic_mr, tmp_path)
    item, pre, postprocessing = _monai(folder, str(anisotropic_mr))
    ref_labels = np.asarray(postprocessing(dict(item))["pred"])[0].transpose(2, 1, 0)
    steps = postprocessing.transforms
    without_klcc = np.asarray(steps[2](steps[0](dict(item)))["pred"])[0].transpose(2, 1, 0)
    assert (without_klcc != ref_labels).any()  # the largest-component step matters on this case
    ref_probs = _probabilities(item, pre, lambda t: torch.softmax(t, 0))
    assert labels.shape == ref_labels.shape and probs.shape == ref_probs.shape
    agree = float((labels == ref_labels).mean())
    assert agree >= 0.999, agree
    assert 0 < int((ref_labels == 1).sum()) < ref_labels.size  # a non-trivial map
    assert float(np.abs(probs - ref_probs).max()) <= 1e-3
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)  # probabilities, not inverted logits
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    notes = " ".join(side.get("notes", []))
    assert "names no activation" in notes and "softmax" in notes


def test_threshold_without_activation_gives_sigmoid_probabilities(tmp_path: Path, anisotropic_mr: Path) -> None:
    post = [{"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.0}]
    folder = _bundle(tmp_path, post, seed=5)
    _labels, probs, side = _segment(folder, anisotropic_mr, tmp_path)
    item, pre, _post = _monai(folder, str(anisotropic_mr))
    ref_probs = _probabilities(item, pre, torch.sigmoid)
    assert float(np.abs(probs - ref_probs).max()) <= 1e-3
    assert "sigmoid" in " ".join(side.get("notes", []))
