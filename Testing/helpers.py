"""Small builders shared by tests: tiny models and oblique, anisotropic volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from MedXAILib.models import Model
from MedXAILib.models.description import ModelDescription
from MedXAILib.volume import Volume, make_ijk_to_ras


def oblique_direction(angle_deg: float = 20.0) -> np.ndarray:
    """A rotation about an oblique axis: columns are the RAS directions of i, j, k."""
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return rz @ rx


def oblique_volume(channels: int = 2, shape: tuple[int, int, int] = (12, 20, 18), seed: int = 0) -> Volume:
    """A random (C, K, J, I) volume with anisotropic spacing (0.8, 1.1, 2.5) mm and an oblique direction."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=(channels,) + shape).astype(np.float32)
    return Volume(arr, make_ijk_to_ras((0.8, 1.1, 2.5), (-12.5, 30.0, 7.25), oblique_direction()))


def tiny_unet_model(channels: int = 2, classes: int = 3, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    arch = {
        "name": "UNet",
        "kwargs": {"spatial_dims": 3, "in_channels": channels, "out_channels": classes,
                   "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    }
    from MedXAILib.models.monai_network import build_network

    desc = ModelDescription(
        name="tiny-unet", task="segmentation", spatial_dims=3,
        channel_names=[f"c{i}" for i in range(channels)],
        class_names=["background"] + [f"l{i}" for i in range(1, classes)],
        architecture=arch, cam_layer="model.1.submodule.1", preprocessing={"normalize": "zscore"},
    )
    return Model(build_network(arch), desc)


def tiny_classifier(classes: int = 3, seed: int = 0, input_size: list[int] | None = None) -> Model:
    torch.manual_seed(seed)
    arch = {
        "name": "ResNet",
        "kwargs": {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [4, 8, 16, 32], "spatial_dims": 2,
                   "n_input_channels": 1, "num_classes": classes},
    }
    from MedXAILib.models.monai_network import build_network

    pre: dict = {"normalize": "minmax"}
    if input_size:
        pre["input_size"] = input_size
    desc = ModelDescription(
        name="tiny-classifier", task="classification", spatial_dims=2, channel_names=["xray"],
        class_names=[f"f{i}" for i in range(classes)], output="sigmoid", architecture=arch, cam_layer="layer4",
        preprocessing=pre,
    )
    return Model(build_network(arch), desc)


def save_model(model: Model, folder: Path) -> Path:
    """Write ``model`` as a folder with ``model.json`` and ``weights.pt`` (loadable by ``load_model(folder)``)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.network.state_dict(), folder / "weights.pt")
    desc = model.description.to_dict()
    desc["weights"] = "weights.pt"
    (folder / "model.json").write_text(json.dumps(desc))
    return folder
