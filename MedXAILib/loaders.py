"""Loading networks safely: TorchScript, state_dicts, safetensors and MONAI bundles.

Untrusted checkpoints are never unpickled by default: ``.pt``/``.pth`` files are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers. A checkpoint that needs arbitrary
unpickling (a whole pickled ``nn.Module``, custom classes) is refused unless the caller passes
``allow_unsafe_pickle=True`` (CLI: ``--allow-unsafe-pickle``), which can run any code stored in the file.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError
from .model_description import ModelDescription

UNSAFE_FLAG = "--allow-unsafe-pickle"


def build_network(architecture: dict[str, Any] | None, where: str = "model") -> torch.nn.Module:
    """Instantiate a MONAI network from ``{"name": "UNet", "kwargs": {...}}``."""
    if not architecture or "name" not in architecture:
        raise ModelError(f"{where}: the description has no architecture (a MONAI network name and its kwargs)")
    import monai.networks.nets as nets

    name = architecture["name"]
    cls = getattr(nets, name, None)
    if cls is None or not callable(cls):
        raise ModelError(f"{where}: unknown MONAI network {name!r} (see monai.networks.nets)")
    try:
        return cls(**architecture.get("kwargs", {}))
    except TypeError as exc:
        raise ModelError(f"{where}: cannot build {name} with the given kwargs ({exc})") from None


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a ``code/`` folder and ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    has_code = any("/code/" in n or n.startswith("code/") for n in names)
    return has_code and any(n.endswith("constants.pkl") for n in names)


def _unwrap_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "network", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ModelError(f"{where}: the checkpoint holds no state_dict (a dict of tensors)")


def load_state_dict(path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read weights from ``.safetensors`` or a torch checkpoint without arbitrary unpickling by default."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise ModelError(f"{p}: unreadable safetensors file ({exc})") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise ModelError(f"{p}: unreadable checkpoint (not a PyTorch weights file)") from None
        if not allow_unsafe_pickle:
            raise ModelError(
                f"{p}: this checkpoint needs arbitrary unpickling, which can run code hidden in the file; "
                f"re-save it as a state_dict or TorchScript, or pass {UNSAFE_FLAG} if you trust its source"
            ) from None
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001 - anything here means the file cannot be used
            raise ModelError(f"{p}: unreadable checkpoint ({str(exc2).splitlines()[0][:160]})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{p}: unreadable checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    return _unwrap_state_dict(obj, str(p))


def load_weights_into(network: torch.nn.Module, path: str | Path, allow_unsafe_pickle: bool = False) -> None:
    state = load_state_dict(path, allow_unsafe_pickle)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ModelError(
            f"{path}: the weights do not fit the described architecture ({'; '.join(lines[1:3])[:240]})"
        ) from None


def load_torchscript(path: Path) -> torch.nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise ModelError(f"{path}: unreadable TorchScript file ({str(exc).splitlines()[0][:160]})") from None


# ---- MONAI bundles --------------------------------------------------------------------------------------------


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
