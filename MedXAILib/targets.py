"""The :class:`Target`: what an explanation explains.

Every target reduces the model's logits to one score per sample as a weighted sum, ``score = Σ W ⊙ logits``, with a
weight tensor ``W`` shaped like the logits:

- **class** (classification): ``W[:, c] = 1`` — the logit of class ``c``;
- **region** (segmentation, Seg-Grad-CAM): ``W[:, c, region] = 1`` — the logits of class ``c`` summed inside a
  region. The default region is the predicted foreground, where each voxel counts the logit of its own predicted
  class (``class_index == -1``);
- **voxel** (segmentation): ``W[:, c, k, j, i] = 1`` — one voxel's logit.

The weights are built on the model grid, so a score is cheap to evaluate for a whole batch of perturbed inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .errors import TargetError
from .models import Model, Prediction, PreparedInput
from .volume import Volume

FOREGROUND = -1  # class_index meaning "each voxel's own predicted (non-background) class"


@dataclass
class Target:
    """What is explained.

    Attributes:
        kind: ``class``, ``region`` or ``voxel``.
        class_index: the explained class, or ``FOREGROUND`` (−1) for the predicted foreground's own classes.
        class_name: its name (``foreground`` for −1).
        region: ``(K, J, I)`` bool mask on the input grid (region targets).
        voxel: ``(i, j, k)`` input voxel index (voxel targets).
        label_map: for ``FOREGROUND`` targets, the ``(K, J, I)`` predicted class indices on the input grid.
    """

    kind: str
    class_index: int
    class_name: str
    region: np.ndarray | None = None
    voxel: tuple[int, int, int] | None = None
    label_map: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "class_index": self.class_index, "class_name": self.class_name}
        if self.region is not None:
            out["region_voxels"] = int(self.region.sum())
        if self.voxel is not None:
            out["voxel_ijk"] = list(self.voxel)
        return out

    def weights(self, model: Model, prepared: PreparedInput) -> torch.Tensor:
        """The weight tensor ``W`` (1, N, *model grid) — or (1, N) for classification — on the model's device."""
        n = model.description.n_classes
        dev = model.device
        if self.kind == "class":
            w = torch.zeros(1, n, device=dev)
            w[0, self.class_index] = 1.0
            return w
        grid = prepared.model_shape
        w = torch.zeros((1, n) + tuple(grid), device=dev)
        if self.kind == "voxel":
            assert self.voxel is not None
            w[(0, self.class_index) + model.voxel_to_model_grid(self.voxel, prepared)] = 1.0
            return w
        assert self.region is not None
        mask = self.region if model.spatial_dims == 3 else self.region[0]
        if self.class_index == FOREGROUND:
            assert self.label_map is not None
            lm = self.label_map if model.spatial_dims == 3 else self.label_map[0]
            onehot = np.zeros((n,) + mask.shape, dtype=np.float32)
            for c in range(1, n):
                onehot[c] = (lm == c) & mask
            if model.spatial_dims == 2:
                onehot = onehot[:, None]
            return model.mask_to_model_grid(onehot, prepared)[None]
        m = mask.astype(np.float32)[None] if model.spatial_dims == 3 else mask.astype(np.float32)[None, None]
        w[0, self.class_index] = model.mask_to_model_grid(m, prepared)[0]
        return w


def score(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ W ⊙ logits`` per sample: ``(B, N, …)`` logits, ``(1, N, …)`` weights → ``(B,)``."""
    return (logits * weights).flatten(1).sum(1)


def _region_from(region: Volume | np.ndarray, volume: Volume) -> np.ndarray:
    if isinstance(region, Volume):
        diff = volume.geometry_difference(region)
        if diff is not None:
            raise TargetError(f"the region mask has {diff} than the input; it must lie on the input's voxel grid")
        arr = region.array[0]
    else:
        arr = np.asarray(region)
        if arr.ndim == 4:
            arr = arr[0]
        if arr.shape != volume.shape:
            raise TargetError(f"the region mask has shape {arr.shape}, the input {volume.shape}")
    return arr > 0


def resolve_target(
    model: Model,
    volume: Volume,
    label: str | int | None = None,
    region: Volume | np.ndarray | None = None,
    voxel: Sequence[int] | None = None,
    prediction: Prediction | None = None,
) -> Target:
    """Turn a user's request into a :class:`Target`, refusing empty or impossible ones with a clear message.

    Defaults: the top class (classification), the predicted foreground (segmentation).
    ``voxel`` is an ``(i, j, k)`` index on the input grid.
    """
    d = model.description
    class_index = d.class_index(label) if label is not None else None
    if d.task == "classification":
        if region is not None or voxel is not None:
            raise TargetError(
                "a classification model explains a class score; --region and --voxel are for segmentation"
            )
        if class_index is None:
            if prediction is None:
                prediction = model.predict(volume)
            assert prediction.class_probabilities is not None
            class_index = int(np.argmax(prediction.class_probabilities))
        return Target("class", class_index, d.class_names[class_index])

    if voxel is not None:
        ijk = tuple(int(v) for v in voxel)
        if len(ijk) != 3:
            raise TargetError(f"a voxel is given as i,j,k; got {list(voxel)}")
        size_ijk = volume.shape[::-1]
        if any(not 0 <= v < s for v, s in zip(ijk, size_ijk)):
            raise TargetError(f"voxel {list(ijk)} lies outside the input (size i,j,k = {list(size_ijk)})")
        if class_index is None:
            prediction = prediction or model.predict(volume)
            assert prediction.probabilities is not None
            class_index = int(prediction.probabilities.array[:, ijk[2], ijk[1], ijk[0]].argmax())
        return Target("voxel", class_index, d.class_names[class_index], voxel=ijk)  # type: ignore[arg-type]

    if region is not None:
        mask = _region_from(region, volume)
        if not mask.any():
            raise TargetError("the region mask is empty; give a mask with at least one non-zero voxel")
        if class_index is None:
            prediction = prediction or model.predict(volume)
            idx = _class_indices(model, prediction)
            inside = idx[mask]
            fg = inside[inside > 0]
            if fg.size == 0:
                raise TargetError(
                    "the model predicts only background inside the region; name the class to explain with --target"
                )
            class_index = int(np.bincount(fg).argmax())
        return Target("region", class_index, d.class_names[class_index], region=mask)

    prediction = prediction or model.predict(volume)
    idx = _class_indices(model, prediction)
    if class_index is None:
        mask = idx > 0
        if not mask.any():
            raise TargetError(
                "the model predicts no foreground in this input, so there is no region to explain; "
                "give --target LABEL with --region MASK, or --voxel i,j,k"
            )
        return Target("region", FOREGROUND, "foreground", region=mask, label_map=idx)
    if class_index == 0 and d.output == "softmax":
        mask = idx == 0
    else:
        mask = idx == class_index
    if not mask.any():
        raise TargetError(
            f"the model predicts no voxel of class {d.class_names[class_index]!r} in this input; "
            "give --region MASK to explain a region of your choice"
        )
    return Target("region", class_index, d.class_names[class_index], region=mask)


def _class_indices(model: Model, prediction: Prediction) -> np.ndarray:
    """Predicted class index per input voxel, ``(K, J, I)``."""
    assert prediction.probabilities is not None
    probs = prediction.probabilities.array
    if model.description.output == "softmax":
        return probs.argmax(axis=0)
    # sigmoid: index of the last (innermost) class above 0.5, 0 where none
    idx = np.zeros(probs.shape[1:], dtype=np.int64)
    for c in range(probs.shape[0]):
        idx[probs[c] >= 0.5] = c
    return idx
