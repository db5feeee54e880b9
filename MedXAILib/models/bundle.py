"""MONAI bundles: a folder with ``configs/inference.json`` (or ``.yaml``), ``configs/metadata.json`` and
``models/model.pt`` or ``models/model.ts``, turned into a network and a :class:`ModelDescription`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from .checkpoints import UNSAFE_FLAG, load_weights_into
from .description import ModelDescription
from .torchscript import load_torchscript


def _read_config(folder: Path, stem: str) -> dict[str, Any] | None:
    for ext in (".json", ".yaml", ".yml"):
        p = folder / "configs" / f"{stem}{ext}"
        if p.exists():
            if ext == ".json":
                return json.loads(p.read_text())
            import yaml  # MONAI bundles in YAML need PyYAML

            return yaml.safe_load(p.read_text())
    return None


def _contains_expression(obj: Any) -> bool:
    if isinstance(obj, str):
        return obj.startswith("$")
    if isinstance(obj, dict):
        return any(_contains_expression(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_contains_expression(v) for v in obj)
    return False


def _bundle_preprocessing(config: dict[str, Any]) -> dict[str, Any]:
    """Translate the common MONAI inference transforms into our preprocessing spec."""
    spec: dict[str, Any] = {"normalize": "none"}
    pre = config.get("preprocessing", {})
    transforms = pre.get("transforms", []) if isinstance(pre, dict) else []
    for t in transforms:
        if not isinstance(t, dict):
            continue
        target = str(t.get("_target_", "")).split(".")[-1]
        if target in ("NormalizeIntensityd", "NormalizeIntensity"):
            spec["normalize"] = "zscore_foreground" if t.get("nonzero") else "zscore"
        elif target in ("ScaleIntensityRanged", "ScaleIntensityRange"):
            spec["normalize"] = "hu_window"
            spec["hu_window"] = [float(t.get("a_min", -1000)), float(t.get("a_max", 1000))]
        elif target in ("ScaleIntensityRangePercentilesd", "ScaleIntensityRangePercentiles"):
            spec["normalize"] = "percentile"
            spec["percentiles"] = [float(t.get("lower", 0.5)), float(t.get("upper", 99.5))]
        elif target in ("Spacingd", "Spacing") and isinstance(t.get("pixdim"), list):
            # MONAI pixdim is (x, y, z) = (i, j, k); ours is tensor order
            spec["target_spacing"] = [float(v) for v in t["pixdim"]][::-1]
    return spec


def load_bundle(folder: Path, allow_unsafe_pickle: bool = False) -> tuple[torch.nn.Module, ModelDescription]:
    """Load a MONAI bundle folder: ``configs/inference.json`` (network_def, preprocessing) + ``models/model.pt``."""
    config = _read_config(folder, "inference")
    if config is None or "network_def" not in config:
        raise ModelError(f"{folder}: a MONAI bundle needs configs/inference.json with a network_def")
    network_def = config["network_def"]
    if _contains_expression(network_def) and not allow_unsafe_pickle:
        raise ModelError(
            f"{folder}: the bundle's network_def contains Python expressions ('$...'), which would run code; "
            f"pass {UNSAFE_FLAG} if you trust this bundle"
        )
    from monai.bundle import ConfigParser

    scalars = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    parser = ConfigParser({**scalars, "network_def": network_def})
    try:
        network = parser.get_parsed_content("network_def")
    except Exception as exc:  # noqa: BLE001 - MONAI raises many types for bad configs
        raise ModelError(f"{folder}: cannot build the bundle's network_def ({exc})") from None
    metadata = _read_config(folder, "metadata") or {}
    fmt = metadata.get("network_data_format", {})
    image_in = fmt.get("inputs", {}).get("image", {})
    pred_out = fmt.get("outputs", {}).get("pred", {})
    n_in = int(image_in.get("num_channels", 1))
    n_out = int(pred_out.get("num_channels", 2))
    ch_def = image_in.get("channel_def", {}) or {}
    out_def = pred_out.get("channel_def", {}) or {}
    channel_names = [str(ch_def.get(str(i), f"channel{i}")) for i in range(n_in)]
    class_names = [str(out_def.get(str(i), f"class{i}")) for i in range(n_out)]
    spatial = image_in.get("spatial_shape", [])
    spatial_dims = 2 if len(spatial) == 2 else 3
    task = "classification" if pred_out.get("type") in ("probabilities", "logits") and not spatial else "segmentation"
    description = ModelDescription(
        name=str(metadata.get("name", folder.name)),
        task=task,
        spatial_dims=spatial_dims,
        channel_names=channel_names,
        class_names=class_names,
        output="sigmoid" if "sigmoid" in json.dumps(config.get("postprocessing", "")).lower() else "softmax",
        preprocessing=_bundle_preprocessing(config),
        patch_size=[int(s) for s in config.get("inferer", {}).get("roi_size", [])][::-1] or None,
        source=str(folder),
    )
    weights = folder / "models" / "model.pt"
    ts = folder / "models" / "model.ts"
    if weights.exists():
        load_weights_into(network, weights, allow_unsafe_pickle)
    elif ts.exists():
        network = load_torchscript(ts)
    else:
        raise ModelError(f"{folder}: the bundle has no models/model.pt or models/model.ts")
    return network, description
