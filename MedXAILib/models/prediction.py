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
    adapter skipped or substituted (e.g. a bundle postprocessing step that needs code). ``overlapping``: the classes
    are independent sigmoid regions that may overlap (BraTS TC / WT / ET); their volumes in :meth:`summary` are then
    those of ``probabilities >= 0.5``, not of the label map.
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
    overlapping: bool = False

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
        arr = self.labels.array
        # label values unknown (a bundle's own label mapping): volumes from the probabilities, label shown as null
        known_values = self.label_values is not None or not self.overlapping
        values: list[int | None] = (list(self.label_values) if self.label_values is not None
                                    else list(range(len(self.class_names))) if known_values
                                    else [None] * len(self.class_names))
        classes: dict[str, Any] = {}
        for c, (name, v) in enumerate(zip(self.class_names, values)):
            if self.overlapping and self.probabilities is not None:
                n_vox = int((self.probabilities.array[c] >= 0.5).sum())
            else:
                n_vox = int((arr == v).sum())
            classes[name] = {"label": None if v is None else int(v), "voxels": n_vox, "volume_ml": n_vox * vox_ml}
        known = set(int(v) for v in values if v is not None)
        other = {int(v): int((arr == v).sum()) for v in np.unique(arr) if int(v) not in known and int(v) != 0}
        out: dict[str, Any] = {"task": self.task, "classes": classes,
                               "volume_ml": {n: c["volume_ml"] for n, c in classes.items()}}
        if other:
            out["other_label_voxels"] = {str(k): n for k, n in other.items()}
        if self.notes:
            out["notes"] = list(self.notes)
        return out
