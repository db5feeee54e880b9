"""The :class:`Model` and its *model function* contract, which every format adapter implements.

One function per model (see ``docs/architecture.md`` and DESIGN.md, "The model's function"). An adapter (a native MONAI
network, TorchScript, a MONAI bundle, nnU-Net, …) subclasses :class:`Model` and overrides these five members; nothing
else in MedXAI needs to know the format:

``prepare(volume) -> PreparedInput``
    The framework's own preprocessing of an input :class:`~MedXAILib.volume.Volume` onto the model grid: intensity
    normalisation, resampling, reorientation. ``PreparedInput.tensor`` is ``(1, C, *grid)`` float32; the adapter keeps
    in ``PreparedInput.state`` whatever it needs to go back (a bundle's transformed data dict, a crop box, …).
``infer(x) -> logits``
    THE model function on the model grid: ``(B, C, *grid)`` → ``(B, N, *grid)`` (or ``(B, N)`` for classifiers),
    differentiable with respect to ``x``, doing everything the framework does to produce its logits: sliding window
    (with its roi, overlap, blend mode and padding), padding to the network's divisor, test-time augmentation, fold
    ensembling. ``predict``, every explainer and every quality metric that rescores the model call this (through
    :meth:`Model.run` with ``exact=True``, the default), so what is explained is what was predicted.
``network_pass(x) -> logits``
    One pass of the network over the whole grid (zero-padded at the end to its divisor and cropped back): the opt-in
    approximation (``--param exact=false``). Whoever uses it measures and reports its deviation from :meth:`infer`
    (Δ score, Dice of the argmax; see :func:`MedXAILib.explain.exactness.deviation`).
``window_plan(grid) -> WindowPlan | None``
    When :meth:`infer` runs a sliding window over a grid of that shape, the plan it follows (window slices, padding,
    the importance map it blends with; :mod:`.function`), so each window's share of a target is known and per-window
    CAMs and relevances are placed where their windows lie (``docs/methods.md``). ``None`` when :meth:`infer` is one
    pass (then layer maps cover the whole grid).
``to_input_grid(maps, prepared)`` / ``mask_to_model_grid(masks, prepared)`` / ``prediction_from_logits(...)``
    The framework's inverse back to the input geometry (maps with linear interpolation; the prediction with the
    framework's own activation and inverse), and the forward mapping of input-grid masks (targets) onto the model grid.

The base class implements the contract for networks described by a :class:`ModelDescription` (the built-in demo
models, state_dict and TorchScript files): normalise → resample to the model grid (same physical box) → one pass, or
MONAI's ``sliding_window_inference`` (Gaussian, overlap 0.25) when the grid exceeds ``patch_size`` → activation →
resample back. For a 3D model the tensor is ``(1, C, K, J, I)``; for a 2D model ``(1, C, J, I)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, ModelError
from ..preprocessing import GridChange, grid_for_spacing, normalize, resize
from ..progress import ProgressCallback, no_progress
from ..volume import Volume
from .description import ModelDescription
from .function import WindowPlan, make_window_plan
from .prediction import Prediction


@dataclass
class PreparedInput:
    """A Volume made ready for the network.

    Attributes:
        tensor: ``(1, C, *grid)`` float32 on the model's device; preprocessed, on the model grid, unpadded.
        volume: the original input (its geometry is where results go back to).
        grid: shapes of the input grid and the model grid (both in the order of their own arrays).
        state: adapter-private data needed to go back (e.g. a MONAI bundle's transformed data dict).
    """

    tensor: torch.Tensor
    volume: Volume
    grid: GridChange
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def model_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.tensor.shape[2:])

    @property
    def model_spacing(self) -> np.ndarray:
        """Voxel size (mm) along the model tensor's spatial axes, in that tensor's order."""
        if "model_spacing" in self.state:
            return np.asarray(self.state["model_spacing"], dtype=float)
        spacing = np.asarray(self.volume.spacing_kji, dtype=float)
        if len(self.grid.model_shape) == 2:
            spacing = spacing[1:]
        return spacing * np.asarray(self.grid.input_shape, float) / np.asarray(self.grid.model_shape, float)

    @property
    def model_ijk_to_ras(self) -> np.ndarray:
        if "model_ijk_to_ras" in self.state:
            return np.asarray(self.state["model_ijk_to_ras"], dtype=float)
        return self.grid.model_ijk_to_ras(self.volume.ijk_to_ras)


class Model:
    """A network with its description, ready to run on Volumes.

    Args:
        network: a ``torch.nn.Module`` (or TorchScript module) mapping ``(B, C, *spatial)`` to logits —
            ``(B, N, *spatial)`` for segmentation, ``(B, N)`` for classification.
        description: what the inputs and outputs mean.
        device: ``cpu`` (default), ``cuda``, or ``auto`` (CUDA when available).
    """

    def __init__(self, network: torch.nn.Module, description: ModelDescription, device: str = "cpu") -> None:
        self.description = description
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()

    def with_network(self, network: torch.nn.Module) -> Model:
        """The same model (same adapter, same function) running another network, e.g. a randomised copy."""
        import copy

        clone = copy.copy(self)
        clone.network = network.to(self.device).eval()
        clone.__dict__.pop("_default_cam_layer", None)
        return clone

    # ---- description shortcuts ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.description.name

    @property
    def task(self) -> str:
        return self.description.task

    @property
    def spatial_dims(self) -> int:
        return self.description.spatial_dims

    # ---- input ------------------------------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        """Refuse inputs this model cannot take, with the reason and the fix."""
        d = self.description
        if volume.n_channels != d.n_channels:
            raise InputError(
                f"model {d.name!r} takes {d.n_channels} channel(s) ({', '.join(d.channel_names)}); "
                f"the input has {volume.n_channels}. Give one --input per channel in that order"
            )
        if d.spatial_dims == 2 and not volume.is_2d:
            raise InputError(
                f"model {d.name!r} is a 2D model but the input is a 3D volume with {volume.shape[0]} slices; "
                "give a 2D image (one slice)"
            )
        if d.spatial_dims == 3 and volume.is_2d:
            raise InputError(f"model {d.name!r} is a 3D model but the input is a 2D image; give a 3D volume")
        volume.check_finite()

    def prepare(self, volume: Volume) -> PreparedInput:
        """Check, normalise and resample a Volume onto the model grid (see the module docstring)."""
        self.check_input(volume)
        d = self.description
        pre = d.preprocessing or {}
        arr = normalize(volume.array.astype(np.float32, copy=False), pre)
        if d.spatial_dims == 2:
            spatial = arr.shape[2:]
            spacing = volume.spacing_kji[1:]
            arr = arr[:, 0]
        else:
            spatial = arr.shape[1:]
            spacing = volume.spacing_kji
        if pre.get("input_size"):
            grid = GridChange(tuple(spatial), tuple(int(s) for s in pre["input_size"]))
        else:
            grid = grid_for_spacing(spatial, spacing, pre.get("target_spacing"))
        tensor = torch.from_numpy(np.ascontiguousarray(arr))[None].to(self.device)
        tensor = resize(tensor, grid.model_shape, "linear")
        return PreparedInput(tensor=tensor, volume=volume, grid=grid)

    # ---- running ----------------------------------------------------------------------------------------------
    def divisor(self) -> int:
        """Spatial sizes the network needs to be divisible by (the product of its strides; 1 for classifiers)."""
        if self.task != "segmentation":
            return 1
        arch = self.description.architecture or {}
        kwargs = arch.get("kwargs", {})
        strides = kwargs.get("strides", getattr(self.network, "strides", None))
        if strides is not None:
            return int(np.prod([s if isinstance(s, int) else max(s) for s in strides]))
        if arch.get("name") == "SegResNet":
            return 2 ** (len(kwargs.get("blocks_down", (1, 2, 2, 4))) - 1)
        if arch.get("name") == "BasicUNet":
            return 16
        return int(self.description.training.get("divisible_by", 16))

    def uses_sliding_window(self, shape: tuple[int, ...]) -> bool:
        patch = self.description.patch_size
        return bool(self.task == "segmentation" and patch and any(s > p for s, p in zip(shape, patch)))

    def window_plan(self, grid: tuple[int, ...]) -> WindowPlan | None:
        """The sliding window :meth:`infer` runs over a ``grid``-shaped input, or None for one whole-grid pass."""
        grid = tuple(int(g) for g in grid)
        if not self.uses_sliding_window(grid):
            return None
        return make_window_plan(grid, list(self.description.patch_size or grid), overlap=0.25, mode="gaussian")

    def function_info(self, grid: tuple[int, ...] | None = None) -> dict[str, Any]:
        """What :meth:`infer` does (for sidecars): its kind and, for a sliding window over ``grid``, its settings."""
        plan = self.window_plan(tuple(grid)) if grid is not None else None
        if plan is not None:
            return {**plan.describe(), "adapter": type(self).__name__}
        return {"kind": "whole_grid", "pad_to_multiple_of": self.divisor(), "adapter": type(self).__name__}

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """THE model function: ``(B, C, *grid)`` → logits, as :meth:`predict` runs it (see the module docstring).

        Keeps the autograd graph unless called under ``no_grad``. Here: MONAI's ``sliding_window_inference``
        (Gaussian, overlap 0.25, the plan of :meth:`window_plan`) when the grid exceeds ``patch_size``, else
        :meth:`network_pass`.
        """
        plan = self.window_plan(tuple(x.shape[2:]))
        if plan is None:
            return self.network_pass(x)
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(
            x, roi_size=list(plan.roi), sw_batch_size=1, predictor=self.network, overlap=plan.overlap[0],
            mode=plan.mode, sigma_scale=plan.sigma_scale,
        )

    def network_pass(self, x: torch.Tensor) -> torch.Tensor:
        """One network pass over the whole grid, zero-padded at the end to the network's divisor and cropped back."""
        spatial = tuple(x.shape[2:])
        div = self.divisor()
        if self.task == "segmentation" and div > 1:
            pads = [(-s) % div for s in spatial]
            if any(pads):
                flat: list[int] = []
                for p in reversed(pads):
                    flat.extend([0, p])
                out = self.network(F.pad(x, flat))
                slices = (slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)
                return out[slices]
        return self.network(x)

    def run(self, x: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """:meth:`infer` (``exact=True``) or the whole-grid approximation :meth:`network_pass`."""
        return self.infer(x) if exact else self.network_pass(x)

    def forward(self, x: torch.Tensor, sliding_window: bool | None = None) -> torch.Tensor:
        """Deprecated spelling: ``sliding_window=False`` → :meth:`network_pass`, otherwise :meth:`infer`."""
        return self.network_pass(x) if sliding_window is False else self.infer(x)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1) if self.description.output == "softmax" else torch.sigmoid(logits)

    def predict(self, volume: Volume, progress: ProgressCallback = no_progress, threshold: float = 0.5) -> Prediction:
        """Run the model and return its prediction in the input geometry."""
        progress(0.0, "preparing input")
        prepared = self.prepare(volume)
        progress(0.2, "running the model")
        with torch.inference_mode():
            logits = self.infer(prepared.tensor)
        progress(0.8, "mapping the prediction back to the input grid")
        pred = self.prediction_from_logits(logits, prepared, threshold)
        progress(1.0, "prediction done")
        return pred

    def prediction_from_logits(
        self, logits: torch.Tensor, prepared: PreparedInput, threshold: float = 0.5
    ) -> Prediction:
        d = self.description
        logits = logits.detach()
        if d.task == "classification":
            probs = self.activation(logits.float())[0].cpu().numpy()
            if d.output == "softmax":
                predicted = [int(np.argmax(probs))]
            else:
                predicted = [int(i) for i in np.nonzero(probs >= threshold)[0]]
            return Prediction("classification", list(d.class_names), class_probabilities=probs, predicted=predicted)
        probs_t = self.activation(logits.float())
        probs_t = resize(probs_t, prepared.grid.input_shape, "linear")[0]
        probs = probs_t.cpu().numpy().astype(np.float32)
        if d.output == "softmax":
            index = probs.argmax(axis=0)
        else:
            index = np.zeros(probs.shape[1:], dtype=np.int64)
            for c in range(probs.shape[0]):  # later classes are nested inside earlier ones (e.g. WT ⊃ TC ⊃ ET)
                index[probs[c] >= threshold] = c + 1 if d.class_names[0].lower() != "background" else c
        values = np.asarray([d.label_value(i) for i in range(d.n_classes)] + [d.n_classes], dtype=np.int16)
        labels = values[index] if d.output == "softmax" else index.astype(np.int16)
        if d.spatial_dims == 2:
            labels = labels[None]
            probs = probs[:, None]
        vol = prepared.volume
        return Prediction(
            "segmentation",
            list(d.class_names),
            labels=Volume(labels[None].astype(np.int16), vol.ijk_to_ras.copy()),
            probabilities=Volume(probs, vol.ijk_to_ras.copy(), list(d.class_names)),
            logits_model_grid=logits,
            label_values=self.label_values(),
        )

    def label_values(self) -> list[int]:
        """The value each class has in this model's label maps (sigmoid: ``c + 1`` unless class 0 is background)."""
        d = self.description
        if d.output == "softmax" or d.task != "segmentation":
            return [d.label_value(i) for i in range(d.n_classes)]
        shift = 1 if d.class_names[0].lower() != "background" else 0
        return [c + shift for c in range(d.n_classes)]

    def to_input_grid(self, maps: torch.Tensor, prepared: PreparedInput) -> np.ndarray:
        """Bring ``(M, *grid_or_layer_shape)`` maps onto the input grid as ``(M, K, J, I)`` float32 (linear)."""
        t = maps.detach().float()[None]
        t = resize(t, prepared.grid.model_shape, "linear")
        t = resize(t, prepared.grid.input_shape, "linear")[0]
        out = t.cpu().numpy().astype(np.float32)
        if self.spatial_dims == 2:
            out = out[:, None]
        return out

    def input_to_model_grid(self, arrays: np.ndarray, prepared: PreparedInput) -> torch.Tensor:
        """``(M, K, J, I)`` float maps on the input grid → ``(M, *model grid)`` float32 (linear), on the device."""
        m = torch.from_numpy(np.ascontiguousarray(arrays, dtype=np.float32))
        if self.spatial_dims == 2:
            m = m[:, 0]
        return resize(m[None], tuple(prepared.grid.model_shape), "linear")[0].to(self.device)

    def mask_to_model_grid(self, masks: np.ndarray, prepared: PreparedInput) -> torch.Tensor:
        """``(M, K, J, I)`` 0/1 masks on the input grid → ``(M, *model grid)`` float32 0/1 on the model's device.

        Nearest-neighbour; a mask that would vanish (a region smaller than a model voxel) keeps every model voxel its
        linear interpolation touches.
        """
        m = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))
        if self.spatial_dims == 2:
            m = m[:, 0]
        grid = tuple(prepared.grid.model_shape)
        if tuple(m.shape[1:]) != grid:
            near = resize(m[None], grid, "nearest")[0]
            if not (near.flatten(1).sum(1).gt(0).all() or m.sum() == 0):
                near = (resize(m[None], grid, "linear")[0] > 0).float()
            m = near
        return m.to(self.device)

    def voxel_to_model_grid(self, voxel: tuple[int, int, int], prepared: PreparedInput) -> tuple[int, ...]:
        """The model-grid index (tensor order) of the model voxel holding input voxel ``(i, j, k)``."""
        i, j, k = voxel
        idx_in = (k, j, i) if self.spatial_dims == 3 else (j, i)
        grid, shape_in = prepared.grid.model_shape, prepared.grid.input_shape
        return tuple(min(int((v + 0.5) * g / s), g - 1) for v, g, s in zip(idx_in, grid, shape_in))

    def card(self) -> dict[str, Any]:
        """The model card: name, version, training data, intended use, … (see :mod:`.cards`)."""
        from .cards import card_of

        return card_of(self)

    def default_cam_layer(self) -> str | None:
        """The layer CAMs use without ``--layer``: the description's ``cam_layer``, else one chosen by rule."""
        if self.description.cam_layer:
            return self.description.cam_layer
        from .cards import pick_cam_layer

        return pick_cam_layer(self)

    def named_layers(self) -> list[str]:
        return [n for n, _ in self.network.named_modules() if n]

    def layer(self, name: str | None) -> torch.nn.Module:
        """The module called ``name`` (default: the description's ``cam_layer``)."""
        name = name or self.default_cam_layer()
        if not name:
            raise ModelError(f"model {self.name!r} names no cam_layer; pass --layer with a module name")
        modules = dict(self.network.named_modules())
        if name not in modules:
            close = [n for n in modules if n and (name in n or n in name)][:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise ModelError(f"model {self.name!r} has no layer {name!r}{hint}")
        return modules[name]


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (error if unavailable) or ``auto``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("CUDA was asked for but no CUDA device is available; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelError(f"unknown device {device!r}; use cpu, cuda or auto")
    return torch.device(device)
