"""The model description: everything needed to use a network honestly.

A description is a JSON object (see ``MedXAILib/builtin_models/*.json``)::

    {"name": "demo-brain-tumour", "task": "segmentation", "spatial_dims": 3,
     "channel_names": ["t1", "t1ce", "t2", "flair"],
     "class_names": ["background", "necrotic core", "oedema", "enhancing rim"],
     "output": "softmax",
     "preprocessing": {"normalize": "zscore_foreground", "target_spacing": [2.0, 2.0, 2.0]},
     "patch_size": [64, 96, 96],
     "architecture": {"name": "UNet", "kwargs": {...}},
     "cam_layer": "model.2.0.conv",
     "weights": "demo-brain-tumour.pt",
     "card": {"version": "1", "training_data": "...", "intended_use": "...", "domain": {...}}}

Spatial lists (``patch_size``, ``target_spacing``, ``input_size``) are in tensor order — ``(K, J, I)`` in 3D,
``(J, I)`` in 2D — with spacings in millimetres. ``output`` is ``softmax`` (mutually exclusive classes, index 0 is
background for segmentation) or ``sigmoid`` (independent labels: multi-label findings, or overlapping regions such
as BraTS's TC / WT / ET).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..preprocessing import NORMALIZERS

TASKS = ("segmentation", "classification")
OUTPUTS = ("softmax", "sigmoid")
PREPROCESSING_KEYS = ("normalize", "target_spacing", "input_size", "percentiles", "hu_window")


@dataclass
class ModelDescription:
    """What a network expects and what its outputs mean (see the module docstring for the JSON form)."""

    name: str
    task: str
    spatial_dims: int
    channel_names: list[str]
    class_names: list[str]
    output: str = "softmax"
    preprocessing: dict[str, Any] = field(default_factory=dict)
    patch_size: list[int] | None = None
    architecture: dict[str, Any] | None = None
    cam_layer: str | None = None
    weights: str | None = None
    label_values: list[int] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        _check_schema(self)

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def label_value(self, class_index: int) -> int:
        """The value written in label maps for a class index (the index itself unless ``label_values`` says)."""
        return int(self.label_values[class_index]) if self.label_values else int(class_index)

    def class_index(self, label: str | int) -> int:
        """Resolve a class name (case-insensitive) or index (as int or digit string) to a class index."""
        text = str(label).strip()
        names = [n.lower() for n in self.class_names]
        if text.lower() in names:
            return names.index(text.lower())
        if text.lstrip("-").isdigit():
            idx = int(text)
            if 0 <= idx < self.n_classes:
                return idx
        from ..errors import TargetError

        raise TargetError(
            f"model {self.name!r} has no class {label!r}; its classes are "
            + ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names))
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> ModelDescription:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"model description {source or ''}: unknown keys {unknown}")
        missing = [k for k in ("name", "task", "spatial_dims", "channel_names", "class_names") if k not in data]
        if missing:
            raise ModelError(f"model description {source or ''}: missing keys {missing}")
        pre = data.get("preprocessing")
        extra = sorted(set(pre) - set(PREPROCESSING_KEYS)) if isinstance(pre, dict) else []
        if extra:  # a misspelt key would otherwise be ignored in silence
            raise ModelError(
                f"model description {source or ''}: unknown preprocessing keys {extra}; known: "
                + ", ".join(PREPROCESSING_KEYS)
            )
        return cls(**{**data, "source": source})

    @classmethod
    def from_json(cls, path: str | Path) -> ModelDescription:
        from .config_files import parse_json_bounded, read_text_bounded

        p = Path(path)
        if not p.exists() and not p.is_symlink():
            raise ModelError(f"{p}: model description not found")
        data = parse_json_bounded(read_text_bounded(p, "model description"), p, "model description")
        if not isinstance(data, dict):
            raise ModelError(f"{p}: a model description is a JSON object")
        return cls.from_dict(data, source=str(p))


# ---- schema ---------------------------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _names(where: str, key: str, value: Any, example: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise ModelError(f"{where}: {key} must be a list of names such as {example}, not {_kind(value)} ({value!r})")
    names = list(value)
    if not names:
        raise ModelError(f"{where}: {key} is empty; give one name per entry, e.g. {example}")
    bad = [v for v in names if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ModelError(f"{where}: {key} must hold non-empty strings; found {bad[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(f"{where}: {key} names {dupes[0]!r} twice; each name must be unique")
    return names


def _sizes(where: str, key: str, value: Any, dims: int, integer: bool) -> list:
    what = "whole numbers" if integer else "numbers (mm)"
    ok = isinstance(value, (list, tuple)) and len(value) == dims and all(
        _is_number(v) and v > 0 and (not integer or float(v).is_integer()) for v in value
    )
    if not ok:
        raise ModelError(
            f"{where}: {key} must be a list of {dims} positive {what} in tensor order, got {value!r}"
        )
    return [int(v) for v in value] if integer else [float(v) for v in value]


def _check_preprocessing(where: str, pre: Any, dims: int) -> dict[str, Any]:
    if not isinstance(pre, dict):
        raise ModelError(
            f"{where}: preprocessing must be an object such as {{\"normalize\": \"zscore\"}}, "
            f"not {_kind(pre)} ({pre!r})"
        )
    norm = pre.get("normalize", "none")
    if norm not in NORMALIZERS:
        raise ModelError(f"{where}: preprocessing.normalize must be one of {', '.join(NORMALIZERS)}, got {norm!r}")
    for key in ("target_spacing", "input_size"):
        if pre.get(key) is not None:
            _sizes(where, f"preprocessing.{key}", pre[key], dims, integer=key == "input_size")
    for key, lo_hi in (("percentiles", (0, 100)), ("hu_window", None)):
        value = pre.get(key)
        if value is None:
            continue
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
        ok = ok and value[0] < value[1] and (lo_hi is None or (lo_hi[0] <= value[0] and value[1] <= lo_hi[1]))
        if not ok:
            raise ModelError(f"{where}: preprocessing.{key} must be [low, high] with low < high, got {value!r}")
    return pre


def _check_schema(d: ModelDescription) -> None:
    """Check the type and range of every field; each problem is one ModelError naming the field and the fix."""
    if not isinstance(d.name, str) or not d.name.strip():
        raise ModelError(f"model description {d.source or ''}: name must be a non-empty string, got {d.name!r}")
    where = f"model description {d.name!r}"
    if d.task not in TASKS:
        raise ModelError(f"{where}: task must be one of {TASKS}, got {d.task!r}")
    if isinstance(d.spatial_dims, bool) or d.spatial_dims not in (2, 3):
        raise ModelError(f"{where}: spatial_dims must be 2 or 3, got {d.spatial_dims!r}")
    if d.output not in OUTPUTS:
        raise ModelError(f"{where}: output must be one of {OUTPUTS}, got {d.output!r}")
    d.channel_names = _names(where, "channel_names", d.channel_names, '["t1", "flair"]')
    d.class_names = _names(where, "class_names", d.class_names, '["background", "tumour"]')
    d.preprocessing = _check_preprocessing(where, {} if d.preprocessing is None else d.preprocessing, d.spatial_dims)
    if d.patch_size is not None:
        d.patch_size = _sizes(where, "patch_size", d.patch_size, d.spatial_dims, integer=True)
    if d.architecture is not None:
        arch = d.architecture
        if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(
            arch.get("kwargs", {}), dict
        ):
            raise ModelError(
                f"{where}: architecture must be an object {{\"name\": \"UNet\", \"kwargs\": {{...}}}}, got {arch!r}"
            )
    for key in ("cam_layer", "weights"):
        value = getattr(d, key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ModelError(f"{where}: {key} must be a string (or left out), got {_kind(value)} ({value!r})")
    if d.label_values is not None:
        values = d.label_values
        ok = isinstance(values, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**15 for v in values
        )
        if not ok or len(set(values)) != len(values):
            raise ModelError(f"{where}: label_values must be distinct whole numbers 0..32767, got {values!r}")
        if len(values) != len(d.class_names):
            raise ModelError(
                f"{where}: {len(values)} label_values for {len(d.class_names)} class names; give one value per class"
            )
        d.label_values = list(values)
    if not isinstance(d.training, dict):
        raise ModelError(f"{where}: training must be an object, got {_kind(d.training)}")
