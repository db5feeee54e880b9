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
     "weights": "demo-brain-tumour.pt"}

Spatial lists (``patch_size``, ``target_spacing``, ``input_size``) are in tensor order — ``(K, J, I)`` in 3D,
``(J, I)`` in 2D — with spacings in millimetres. ``output`` is ``softmax`` (mutually exclusive classes, index 0 is
background for segmentation) or ``sigmoid`` (independent labels: multi-label findings, or overlapping regions such
as BraTS's TC / WT / ET).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

TASKS = ("segmentation", "classification")
OUTPUTS = ("softmax", "sigmoid")


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
    source: str | None = None

    def __post_init__(self) -> None:
        where = f"model description {self.name!r}"
        if self.task not in TASKS:
            raise ModelError(f"{where}: task must be one of {TASKS}, got {self.task!r}")
        if self.spatial_dims not in (2, 3):
            raise ModelError(f"{where}: spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if self.output not in OUTPUTS:
            raise ModelError(f"{where}: output must be one of {OUTPUTS}, got {self.output!r}")
        if not self.channel_names:
            raise ModelError(f"{where}: channel_names is empty; name each input channel (e.g. [\"t1\", \"flair\"])")
        if not self.class_names:
            raise ModelError(f"{where}: class_names is empty")
        if self.label_values is not None and len(self.label_values) != len(self.class_names):
            raise ModelError(f"{where}: label_values needs one value per class name")

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
        return cls(**{**data, "source": source})

    @classmethod
    def from_json(cls, path: str | Path) -> ModelDescription:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise ModelError(f"{p}: model description not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{p}: not a valid JSON model description ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{p}: a model description is a JSON object")
        return cls.from_dict(data, source=str(p))
