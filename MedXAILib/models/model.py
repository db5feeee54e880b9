"""The :class:`Model`: a network plus what is needed to run it on a Volume, and :func:`load_model`.

Data flow inside :meth:`Model.predict`::

    Volume (C, K, J, I) ──check──► normalise ──► resample to the model grid ──► tensor (1, C, *grid)
        ──► network (whole grid, padded to a multiple of its stride, or MONAI sliding window if larger than the patch)
        ──► logits (1, N, *grid) ──► probabilities ──► resample to the input grid ──► Prediction

For a 3D model the tensor is ``(1, C, K, J, I)``; for a 2D model ``(1, C, J, I)`` (the input must have one slice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, ModelError
from ..preprocessing import GridChange, grid_for_spacing, normalize, resize
from ..progress import ProgressCallback, no_progress
from ..volume import Volume
from .description import ModelDescription
from .prediction import Prediction


@dataclass
class PreparedInput:
    """A Volume made ready for the network.

    Attributes:
        tensor: ``(1, C, *grid)`` float32 on the model's device; normalised, on the model grid, unpadded.
        volume: the original input (its geometry is where results go back to).
        grid: how the input grid maps to the model grid.
    """

    tensor: torch.Tensor
    volume: Volume
    grid: GridChange

    @property
    def model_ijk_to_ras(self) -> np.ndarray:
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

    def forward(self, x: torch.Tensor, sliding_window: bool | None = None) -> torch.Tensor:
        """Logits for a ``(B, C, *grid)`` tensor; keeps the autograd graph unless called under ``no_grad``.

        Segmentation inputs larger than the patch go through MONAI's ``sliding_window_inference`` (Gaussian-weighted
        overlap 0.25); otherwise the whole grid runs at once, zero-padded at the end to the network's divisor and
        cropped back.
        """
        spatial = tuple(x.shape[2:])
        if sliding_window is None:
            sliding_window = self.uses_sliding_window(spatial)
        if sliding_window:
            from monai.inferers import sliding_window_inference

            return sliding_window_inference(
                x, roi_size=list(self.description.patch_size or spatial), sw_batch_size=1,
                predictor=self.network, overlap=0.25, mode="gaussian",
            )
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

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1) if self.description.output == "softmax" else torch.sigmoid(logits)

    def predict(self, volume: Volume, progress: ProgressCallback = no_progress, threshold: float = 0.5) -> Prediction:
        """Run the model and return its prediction in the input geometry."""
        progress(0.0, "preparing input")
        prepared = self.prepare(volume)
        progress(0.2, "running the model")
        with torch.inference_mode():
            logits = self.forward(prepared.tensor)
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
        )

    def to_input_grid(self, maps: torch.Tensor, prepared: PreparedInput) -> np.ndarray:
        """Bring ``(M, *grid_or_layer_shape)`` maps onto the input grid as ``(M, K, J, I)`` float32 (linear)."""
        t = maps.detach().float()[None]
        t = resize(t, prepared.grid.model_shape, "linear")
        t = resize(t, prepared.grid.input_shape, "linear")[0]
        out = t.cpu().numpy().astype(np.float32)
        if self.spatial_dims == 2:
            out = out[:, None]
        return out

    def named_layers(self) -> list[str]:
        return [n for n, _ in self.network.named_modules() if n]

    def layer(self, name: str | None) -> torch.nn.Module:
        """The module called ``name`` (default: the description's ``cam_layer``)."""
        name = name or self.description.cam_layer
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
