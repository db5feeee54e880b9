"""The benchmark's inputs: a model, an input Volume and a resolved target, tagged ``3d`` / ``2d`` / ``full``.

- ``3d``: the demo 3D UNet (``demo-brain-tumour``) on a brain phantom of ``4 × 128³`` voxels at 2 mm — the model's own
  spacing, so the model grid is the input grid. The phantom is skull-stripped: outside the brain every channel is 0
  (about 92 % of a 256 mm cube), as in BraTS. Target: the predicted foreground region (Seg-Grad-CAM style summed
  logits); if the model predicts none, the phantom's true lesion as a region of class 1.
- ``2d``: the demo chest classifier (``demo-chest-xray``) on a real NIH ChestX-ray14 radiograph
  (``nih-chestxray14-256/images/00000100_000.png``, atelectasis, effusion and infiltration; 256² pixels, the model's
  own input size) from ``MEDXAI_TEST_DATA``; where the data is absent, a chest phantom of ``1 × 256²`` (the note
  says which). Target: the top class.
- ``full``: the demo 3D UNet on a BraTS-size phantom, ``4 × 155 × 240 × 240`` (K, J, I) at 1 mm, run through the
  public API (resampled to the 2 mm model grid, sliding-window segmentation, Grad-CAM on the predicted foreground).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import TargetError
from ..explain.base import ExplainContext
from ..models import Model, PreparedInput
from ..targets import Target, resolve_target
from ..volume import Volume


@dataclass
class BenchCase:
    """One benchmark input.

    Attributes:
        tag: ``3d``, ``2d`` or ``full`` (the ``model`` field of the JSON rows starts with it).
        model: the model; volume: the input ``(C, K, J, I)``; target: what is explained.
        note: how the input was made (printed).
        truth: ``(K, J, I)`` bool true lesion (phantoms), or None.
    """

    tag: str
    model: Model
    volume: Volume
    target: Target
    note: str = ""
    truth: np.ndarray | None = None
    _prepared: PreparedInput | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.tag}:{self.model.name}"

    @property
    def input_shape(self) -> list[int]:
        return [int(s) for s in self.volume.array.shape]

    def prepared(self) -> PreparedInput:
        if self._prepared is None:
            self._prepared = self.model.prepare(self.volume)
        return self._prepared

    def context(self, exact: bool = False) -> ExplainContext:
        """A fresh context (pass counters at 0) on the case's prepared model-grid input.

        By default its function is one whole-grid network pass (``exact=False``), the function the captum / MONAI
        references are given, so that those rows compare the same computation; ``exact=True`` explains the model
        function itself (its sliding window), as ``explain`` does by default."""
        ctx = ExplainContext(self.model, self.prepared(), self.target)
        ctx.exact = exact
        return ctx

    @property
    def model_grid(self) -> list[int]:
        return [int(s) for s in self.prepared().tensor.shape[2:]]


def region_or_truth(model: Model, volume: Volume, truth: np.ndarray | None, fallback_class: int = 1) -> Target:
    """The predicted-foreground region target; the true lesion (class ``fallback_class``) if nothing is predicted."""
    try:
        return resolve_target(model, volume, prediction=model.predict(volume))
    except TargetError:
        if truth is None or not truth.any():
            raise
        return Target("region", fallback_class, model.description.class_names[fallback_class], region=truth)


def brain_case(model: Model, shape: Sequence[int] = (128, 128, 128), spacing: float = 2.0, seed: int = 0,
               tag: str = "3d") -> BenchCase:
    """A brain phantom of ``shape`` (K, J, I) voxels at ``spacing`` mm with ``model``'s channel count."""
    from ..phantoms import make_brain_phantom

    ph = make_brain_phantom(seed, shape=tuple(int(s) for s in shape), spacing=spacing)
    arr = ph.image.array
    n = model.description.n_channels
    if arr.shape[0] != n:  # tiny test models may take fewer channels
        arr = arr[:n] if arr.shape[0] > n else np.concatenate([arr] * -(-n // arr.shape[0]))[:n]
    vol = Volume(np.ascontiguousarray(arr), ph.image.ijk_to_ras.copy(), list(model.description.channel_names))
    truth = ph.label.array[0] > 0
    target = region_or_truth(model, vol, truth)
    brain = float(np.any(arr != 0, axis=0).mean())
    note = (f"brain phantom seed {seed}, {n}×{'×'.join(str(s) for s in shape)} at {spacing:g} mm, "
            f"{100 * brain:.0f} % of voxels inside the brain; target {target.kind} {target.class_name} "
            f"({target.describe().get('region_voxels', '')} voxels)")
    return BenchCase(tag, model, vol, target, note, truth)


def at_input_size(model: Model, size: Sequence[int]) -> Model:
    """The same network with the description's ``input_size`` set to ``size`` (so it runs at that size)."""
    desc = model.description
    pre = dict(desc.preprocessing or {})
    pre["input_size"] = [int(s) for s in size]
    return Model(model.network, dataclasses.replace(desc, preprocessing=pre), device=str(model.device))


#: The real radiograph of the 2D case (NIH ChestX-ray14, 256² in ``nih-chestxray14-256``).
CHEST_IMAGE = "00000100_000.png"


def chest_case(model: Model, size: int = 256, seed: int = 0, real: bool = True) -> BenchCase:
    """The real NIH radiograph :data:`CHEST_IMAGE` at the model's input size when ``real`` and ``MEDXAI_TEST_DATA``
    has it, else a chest phantom of ``size²`` pixels (the network run at that size); target the top class."""
    import os
    from pathlib import Path

    path = Path(os.environ.get("MEDXAI_TEST_DATA", "")) / "nih-chestxray14-256" / "images" / CHEST_IMAGE
    if real and path.is_file():
        from ..io import read_volume

        vol = read_volume([str(path)])
        vol = Volume(vol.array[:1], vol.ijk_to_ras, list(model.description.channel_names))
        target = resolve_target(model, vol)
        note = f"real NIH radiograph {CHEST_IMAGE} ({vol.shape[1]}×{vol.shape[2]}); target class {target.class_name}"
        return BenchCase("2d", model, vol, target, note)
    from ..phantoms import make_chest_phantom

    ph = make_chest_phantom(seed, size=size)
    model = at_input_size(model, (size, size))
    vol = ph.image
    target = resolve_target(model, vol)
    note = (f"chest phantom seed {seed}, 1×{size}² (the real radiograph is not in MEDXAI_TEST_DATA); "
            f"target class {target.class_name}")
    return BenchCase("2d", model, vol, target, note)


def full_case(model: Model, shape: Sequence[int] = (155, 240, 240), spacing: float = 1.0, seed: int = 0) -> BenchCase:
    """A BraTS-size brain phantom; the target is resolved inside the timed call (segmentation + Grad-CAM)."""
    from ..phantoms import make_brain_phantom

    ph = make_brain_phantom(seed, shape=tuple(int(s) for s in shape), spacing=spacing)
    n = model.description.n_channels
    arr = ph.image.array[:n]
    vol = Volume(np.ascontiguousarray(arr), ph.image.ijk_to_ras.copy(), list(model.description.channel_names))
    truth = ph.label.array[0] > 0
    target = Target("region", 1, model.description.class_names[1], region=truth)  # only a fallback; see segment+gradcam
    note = (f"BraTS-size brain phantom seed {seed}, {n}×{'×'.join(str(s) for s in shape)} at {spacing:g} mm "
            "through the public API (predict, then explain gradcam on the predicted foreground)")
    return BenchCase("full", model, vol, target, note, truth)
