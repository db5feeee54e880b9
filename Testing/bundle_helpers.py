"""Building MONAI bundles for tests (seeded weights) and running MONAI's own pipeline on them as the reference.

The reference never uses MedXAI code: ``monai.bundle.ConfigParser`` builds the bundle's preprocessing, inferer,
network and postprocessing; the images are read by MONAI's ``LoadImaged`` from the files; the batch goes through
``list_data_collate`` → inferer → ``decollate_batch`` as MONAI's ``SupervisedEvaluator`` does; then the bundle's own
postprocessing steps up to and including ``Invertd``.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

TINY_INFERENCE: dict[str, Any] = {
    "imports": ["$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "device": "$torch.device('cpu')",
    "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                    "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "@image_key"},
        {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
        {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [1.5, 1.2, 2.0], "mode": "bilinear"},
        {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True},
        {"_target_": "EnsureTyped", "keys": "@image_key"},
    ]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 2, "overlap": 0.5,
                "mode": "gaussian"},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'"},
    ]},
}

TINY_METADATA: dict[str, Any] = {
    "name": "tiny-bundle", "version": "0.1.0", "data_source": "random weights (test)",
    "intended_use": "tests only",
    "network_data_format": {
        "inputs": {"image": {"type": "image", "num_channels": 1, "spatial_shape": [16, 16, 16],
                             "channel_def": {"0": "ct"}}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                             "spatial_shape": [16, 16, 16], "channel_def": {"0": "background", "1": "organ"}}},
    },
}


def write_bundle(folder: Path, inference: dict[str, Any], metadata: dict[str, Any], seed: int = 0) -> Path:
    """A bundle folder with the configs and seeded weights of its ``network_def`` (built by MONAI)."""
    from monai.bundle import ConfigParser

    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=1))
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    torch.manual_seed(seed)
    net = ConfigParser({"network_def": copy.deepcopy(inference["network_def"])}).get_parsed_content("network_def")
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    return folder


def zoo_bundle(tmp: Path, name: str, zoo: Path, seed: int = 0) -> Path:
    """A copy of a Model Zoo bundle's configs with seeded weights."""
    folder = tmp / name
    shutil.copytree(zoo / name / "configs", folder / "configs")
    inference = json.loads((folder / "configs" / "inference.json").read_text())
    metadata = json.loads((folder / "configs" / "metadata.json").read_text())
    return write_bundle(folder, inference, metadata, seed)


def monai_reference(folder: Path, image: str | list[str]) -> np.ndarray:
    """The bundle's own pipeline (MONAI only): probabilities after its ``Invertd``, as ``(N, K, J, I)``."""
    from monai.bundle import ConfigParser
    from monai.data import decollate_batch, list_data_collate
    from monai.transforms import Compose

    config = json.loads((folder / "configs" / "inference.json").read_text())
    parser = ConfigParser(config)
    parser["bundle_root"] = str(folder)
    pre = parser.get_parsed_content("preprocessing")
    inferer = parser.get_parsed_content("inferer")
    post = parser.get_parsed_content("postprocessing")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    net.eval()
    batch = list_data_collate([pre({"image": image})])
    with torch.no_grad():
        batch["pred"] = inferer(batch["image"], net)
    item = decollate_batch(batch)[0]
    steps = []
    for t in post.transforms:
        steps.append(t)
        if type(t).__name__ == "Invertd":
            break
    item = Compose(steps)(item)
    return np.asarray(item["pred"]).transpose(0, 3, 2, 1)


def parity(ours: np.ndarray, ref: np.ndarray, sigmoid: bool) -> tuple[float, float]:
    """``(max |Δp|, argmax agreement)``; for sigmoid outputs the agreement of every channel's 0.5 threshold."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    dp = float(np.abs(ours.astype(np.float64) - ref).max())
    agree = float(((ours > 0.5) == (ref > 0.5)).mean()) if sigmoid else float((ours.argmax(0) == ref.argmax(0)).mean())
    return dp, agree
