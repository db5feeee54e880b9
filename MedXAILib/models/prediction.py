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
    ``probabilities`` (N, K, J, I) float32. Classification: ``class_probabilities`` (N,) and ``predicted`` (indices of
    the predicted classes: the top one for softmax, every class ≥ ``threshold`` for sigmoid).
    """

    task: str
    class_names: list[str]
    labels: Volume | None = None
    probabilities: Volume | None = None
    class_probabilities: np.ndarray | None = None
    predicted: list[int] = field(default_factory=list)
    logits_model_grid: torch.Tensor | None = None

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
        counts = {
            self.class_names[i]: float((self.labels.array == v).sum()) * vox_ml
            for i, v in enumerate(np.unique(self.labels.array))
            if i < len(self.class_names)
        }
        return {"task": self.task, "volume_ml": counts}
