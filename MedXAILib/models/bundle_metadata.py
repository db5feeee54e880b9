"""A MONAI bundle's ``configs/metadata.json``: read bounded, checked against a typed schema, turned into the task,
channels, classes and model card MedXAI shows.

Metadata is pure data (MONAI never parses it as a config), so only the entries MedXAI reads are typed here; every
other entry is ignored. Declared channel counts are bounded (:data:`MAX_INPUT_CHANNELS`, :data:`MAX_CLASSES`) before
any name list is built from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError
from .config_files import read_mapping
from .schema_types import AnyOf, Ignored, Int, Map, Null, Num, SchemaError, Seq, Str, plain_walk

MAX_INPUT_CHANNELS = 64
MAX_CLASSES = 1024
_TEXT = AnyOf((Null(), Str(max_len=8192), Num()))
_TEXTS = AnyOf((_TEXT, Seq(_TEXT, 0, 256)))
_NAMES = Map(extra=AnyOf((Str(max_len=256), Int(-(2**31), 2**31))), max_keys=MAX_CLASSES)
_SHAPE = Seq(AnyOf((Int(-1, 1 << 20), Str(max_len=64))), 0, 4)
_ANY = Ignored()


def _tensor(max_channels: int) -> Map:
    """An input or output of ``network_data_format`` (only the entries MedXAI reads are typed)."""
    return Map(fields={"num_channels": Int(1, max_channels), "channel_def": _NAMES, "spatial_shape": _SHAPE,
                       "type": Str(max_len=64), "format": Str(max_len=64), "label_classes": AnyOf((_NAMES, _TEXT))},
               extra=_ANY)


METADATA_SCHEMA = Map(
    fields={
        "name": _TEXT, "version": _TEXT, "data_source": _TEXT, "intended_use": _TEXT, "monai_version": _TEXT,
        "authors": _TEXTS, "references": _TEXTS, "label_classes": AnyOf((_NAMES, _TEXT)),
        "network_data_format": AnyOf((Null(), Map(fields={
            "inputs": AnyOf((Null(), Map(fields={"image": AnyOf((Null(), _tensor(MAX_INPUT_CHANNELS)))}, extra=_ANY))),
            "outputs": AnyOf((Null(), Map(fields={"pred": AnyOf((Null(), _tensor(MAX_CLASSES)))}, extra=_ANY))),
        }, extra=_ANY))),
    },
    extra=_ANY,
)


def check_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """``metadata`` if it fits :data:`METADATA_SCHEMA`, else a ModelError naming the entry."""
    try:
        plain_walk(metadata, METADATA_SCHEMA, "metadata")
    except SchemaError as exc:
        raise ModelError(f"{where}: bundle {exc}") from None
    return metadata


def find_config(folder: Path, stem: str) -> Path | None:
    """``folder/configs/<stem>.json`` (or ``.yaml`` / ``.yml``), the first that exists."""
    for ext in (".json", ".yaml", ".yml"):
        p = folder / "configs" / f"{stem}{ext}"
        if p.exists() or p.is_symlink():
            return p
    return None


def read_metadata(folder: Path) -> dict[str, Any]:
    """The checked ``configs/metadata.json`` of a bundle folder (``{}`` when there is none)."""
    path = find_config(folder, "metadata")
    if path is None:
        return {}
    return check_metadata(read_mapping(path, "bundle metadata file"), str(path))


def _entry(d: dict[str, Any] | None, key: str) -> dict[str, Any]:
    value = (d or {}).get(key)
    return value if isinstance(value, dict) else {}


def bundle_io(metadata: dict[str, Any], folder: Path | str = "bundle") -> dict[str, Any]:
    """Task, dims, channel and class names from checked metadata (``network_data_format``)."""
    fmt = _entry(metadata, "network_data_format")
    image_in = _entry(_entry(fmt, "inputs"), "image")
    pred_out = _entry(_entry(fmt, "outputs"), "pred")
    n_in = int(image_in.get("num_channels") or 1)
    ch_def = _entry(image_in, "channel_def")
    out_def = _entry(pred_out, "channel_def")
    labels = metadata.get("label_classes") or pred_out.get("label_classes")
    n_out = int(pred_out.get("num_channels") or len(out_def) or 2)
    if n_out > MAX_CLASSES:
        raise ModelError(f"{folder}: the bundle metadata names {n_out} output channels; at most {MAX_CLASSES}")
    classes = [str(out_def.get(str(i), f"class{i}")) for i in range(n_out)]
    if isinstance(labels, dict) and not out_def:
        classes = [str(labels.get(str(i), classes[i])) for i in range(n_out)]
    spatial = image_in.get("spatial_shape") or []
    is_image_out = pred_out.get("type") == "image" or pred_out.get("format") == "segmentation"
    return {
        "task": "segmentation" if is_image_out else "classification",
        "spatial_dims": 2 if len(spatial) == 2 else 3,
        "channels": [str(ch_def.get(str(i), f"channel{i}")) for i in range(n_in)],
        "classes": classes,
    }


def bundle_card(metadata: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The model card of a bundle from its checked ``metadata.json``."""
    return {
        "name": str(metadata.get("name") or folder.name),
        "version": str(metadata.get("version") or "unknown"),
        "training_data": str(metadata.get("data_source") or "unknown"),
        "intended_use": str(metadata.get("intended_use") or "unknown"),
        "source": str(folder),
        "authors": metadata.get("authors"),
        "references": metadata.get("references"),
        "monai_version": metadata.get("monai_version"),
    }
