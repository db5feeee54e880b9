"""The :class:`Prediction`: what a model said about one input, in the input's geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..volume import Volume


@dataclass
class Prediction:
    """What a model said about one input, in the input's geometry.

    Segmentation: ``labels`` (1, K, J, I) int16 label map (values from the description's label values) and
    ``probabilities`` (N, K, J, I) float32 (softmax or sigmoid, as the model says), one channel per class name;
    ``label_values[i]`` is the value class ``i`` has in ``labels`` (default: ``i``). ``notes``: what the model's
    adapter skipped or substituted (e.g. a bundle postprocessing step that needs code).
    Classification: ``class_probabilities`` (N,) and ``predicted`` (indices of
    the predicted classes: the top one for softmax, every class ≥ ``threshold`` for sigmoid).
    """

    task: str
    class_names: list[str]
    labels: Volume | None = None
    probabilities: Volume | None = None
    class_probabilities: np.ndarray | None = None
    predicted: list[int] = field(default_factory=list)
    logits_model_grid: torch.Tensor | None = None
    label_values: list[int] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        if self.task == "classification":
            assert self.class_probabilities is not None
            return {
                "task": self.task,
                "probabilities": {n: float(p) for n, p in zip(self.class_names, self.class_probabilities)},
                "predicted": [self.class_names[i] for i in self.predicted],
            }
        assert self.labels is not None
        vox_ml = self.labels.voxel_volume_ml
        values = self.label_values or list(range(len(self.class_names)))
        arr = self.labels.array
        classes = {
            name: {"label": int(v), "voxels": int((arr == v).sum()), "volume_ml": float((arr == v).sum()) * vox_ml}
            for name, v in zip(self.class_names, values)
        }
        known = set(int(v) for v in values)
        other = {int(v): int((arr == v).sum()) for v in np.unique(arr) if int(v) not in known}
        out: dict[str, Any] = {"task": self.task, "classes": classes,
                               "volume_ml": {n: c["volume_ml"] for n, c in classes.items()}}
        if other:
            out["other_label_voxels"] = {str(k): n for k, n in other.items()}
        if self.notes:
            out["notes"] = list(self.notes)
        return out
