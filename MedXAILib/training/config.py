"""Configuration of ``train``: the options, the named architectures (presets), determinism and the choice of
the CAM layer of a freshly built network."""

from __future__ import annotations

import inspect
import json
import math
import random
import shlex
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError

TASKS = ("segmentation", "classification")
FOREGROUND_REGION = "foreground"
FOREGROUND_PATCH_PROBABILITY = 2.0 / 3.0
N_THREADS = 2
SEG_METRICS = ("dice", "iou", "hd95_mm")
CLS_METRICS = ("accuracy", "precision", "recall", "f1", "auc_roc")

#: Named architectures. ``in``/``out`` channel counts and ``spatial_dims`` are filled in from the dataset.
PRESETS: dict[str, dict[str, Any]] = {
    "unet": {
        "name": "UNet",
        "kwargs": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1, "norm": "instance"},
    },
    "unet-small": {
        "name": "UNet",
        "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "instance"},
    },
    "unet-tiny": {
        "name": "UNet",
        "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 1, "norm": "instance"},
    },
    "resnet": {
        "name": "ResNet",
        "kwargs": {"block": "basic", "layers": [2, 2, 2, 2], "block_inplanes": [16, 32, 64, 128]},
    },
    "resnet-small": {
        "name": "ResNet",
        "kwargs": {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 16, 32, 64]},
    },
    "resnet18": {
        "name": "ResNet",
        "kwargs": {"block": "basic", "layers": [2, 2, 2, 2], "block_inplanes": [64, 128, 256, 512]},
    },
    "densenet-small": {
        "name": "DenseNet",
        "kwargs": {"init_features": 16, "growth_rate": 8, "block_config": [2, 4, 6, 4]},
    },
    "densenet121": {
        "name": "DenseNet",
        "kwargs": {"init_features": 64, "growth_rate": 32, "block_config": [6, 12, 24, 16]},
    },
}
DEFAULT_PRESET = {"segmentation": "unet", "classification": "resnet"}

# keyword names MONAI networks use for the input channels, the outputs and the dimensionality
_IN_KEYS = ("in_channels", "n_input_channels")
_OUT_KEYS = ("out_channels", "num_classes")


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """What to train and how (the ``train`` command's options).

    Attributes:
        dataset: ``KIND:PATH`` spec (see :func:`MedXAILib.datasets.open_dataset`).
        task: ``segmentation`` or ``classification``.
        output: the output folder ``DIR``.
        folds: number of patient-level folds (≥ 2).
        seed: seeds the folds, the initial weights and the sampling.
        architecture: a preset name (:data:`PRESETS`), a JSON string ``{"name": ..., "kwargs": {...}}``, a dict, or
            None for the task's default preset.
        epochs, steps_per_epoch: schedule; one step is one optimiser update on ``batch_size`` samples.
        patch: training patch in voxels on the model grid, tensor order (segmentation only); None: a default.
        spacing: target spacing in mm, tensor order (None: 2 mm for 3D segmentation, the input grid otherwise).
        input_size: classification input size in pixels ``(J, I)`` (None: 256 × 256 in 2D, 64³ in 3D).
        lr: peak learning rate of AdamW.
        batch_size: samples per step.
        device: ``cpu``, ``cuda`` or ``auto``.
        threads: torch CPU threads while training a fold (default :data:`N_THREADS`; the same count gives the same
            weights, wherever the fold runs).
        finding: train on this one finding (classification) or region (segmentation) only; None: every class.
        artifact: a planted artifact confounded with ``finding`` (:class:`~MedXAILib.shortcut.ArtifactSpec` as a
            dict), or None.
        explanation_loss: ``rrr`` adds the right-for-the-right-reasons penalty (:mod:`.explanation_loss`); None: none.
        explanation_weight: its weight λ (≥ 0; 0 trains exactly as without it).
        explanation_mask: ``annotation`` (allowed: the finding's boxes or label map) or ``artifact`` (allowed:
            everywhere but the planted artifact).
    """

    dataset: str
    task: str
    output: str
    folds: int = 5
    seed: int = 0
    architecture: str | dict[str, Any] | None = None
    epochs: int = 20
    steps_per_epoch: int = 25
    patch: list[int] | None = None
    spacing: list[float] | None = None
    input_size: list[int] | None = None
    lr: float = 2e-3
    batch_size: int = 2
    device: str = "cpu"
    threads: int = N_THREADS
    finding: str | None = None
    artifact: dict[str, Any] | None = None
    explanation_loss: str | None = None
    explanation_weight: float = 0.0
    explanation_mask: str | None = None

    def check(self) -> None:
        """Refuse values that cannot work, with the reason (raises :class:`InputError`)."""
        if self.task not in TASKS:
            raise InputError(f"--task must be one of {', '.join(TASKS)}; got {self.task!r}")
        for name in ("epochs", "steps_per_epoch", "batch_size", "threads"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number; got {self.lr}")
        if self.patch is not None and any(int(p) < 1 for p in self.patch):
            raise InputError(f"--patch sizes must be positive voxel counts; got {self.patch}")
        if self.spacing is not None and any(not (s > 0) for s in self.spacing):
            raise InputError(f"--spacing values must be positive millimetres; got {self.spacing}")
        if self.input_size is not None and any(int(s) < 1 for s in self.input_size):
            raise InputError(f"--input-size values must be positive pixel counts; got {self.input_size}")
        from .explanation_loss import check_explanation_options

        check_explanation_options(self)

    @property
    def explained(self) -> bool:
        """Whether the explanation penalty takes part in training (a loss with a weight above 0)."""
        return bool(self.explanation_loss) and float(self.explanation_weight) > 0

    def command(self) -> str:
        """The shell command that reruns this training (from the repository root)."""
        parts = ["python", "-m", "MedXAILib", "train", "--dataset", self.dataset, "--task", self.task,
                 "--folds", str(self.folds), "--output", self.output, "--seed", str(self.seed)]
        if self.architecture is not None:
            arch = self.architecture if isinstance(self.architecture, str) else json.dumps(self.architecture)
            parts += ["--architecture", arch]
        parts += ["--epochs", str(self.epochs), "--steps-per-epoch", str(self.steps_per_epoch)]
        for flag, value in (("--patch", self.patch), ("--spacing", self.spacing), ("--input-size", self.input_size)):
            if value is not None:
                parts += [flag, ",".join(_fmt_number(v) for v in value)]
        parts += ["--lr", _fmt_number(self.lr), "--batch-size", str(self.batch_size)]
        if self.threads != N_THREADS:  # the thread count changes the weights in the last bits
            parts += ["--threads", str(self.threads)]
        if self.finding is not None:
            parts += ["--finding", self.finding]
        if self.artifact:
            a = self.artifact
            parts += ["--artifact", str(a["kind"]), "--strength", _fmt_number(a.get("strength", 0.9)),
                      "--artifact-seed", str(a.get("seed", 0))]
            if a.get("size_mm") is not None:
                parts += ["--artifact-size", _fmt_number(a["size_mm"])]
            if a.get("kind") == "intensity":
                parts += ["--artifact-contrast", _fmt_number(a.get("contrast", 2.0))]
        if self.explanation_loss:
            parts += ["--explanation-loss", self.explanation_loss, "--explanation-weight",
                      _fmt_number(self.explanation_weight), "--explanation-mask", str(self.explanation_mask)]
        return shlex.join(parts)


def _fmt_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def resolve_architecture(
    spec: str | dict[str, Any] | None, task: str, spatial_dims: int, n_in: int, n_out: int
) -> dict[str, Any]:
    """The full ``{"name", "kwargs"}`` of the network to train, with dims and channel counts filled in.

    ``spec`` is a preset name, a JSON object (string or dict) or None (the task's default preset). Channel counts
    and ``spatial_dims`` are set from the data when absent, and refused when they contradict it.

    Raises:
        InputError: unknown preset, malformed JSON, a network MONAI does not have, or contradicting channel counts.
    """
    if spec is None:
        spec = DEFAULT_PRESET[task]
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"--architecture is not valid JSON ({exc.msg} at column {exc.colno})") from None
        elif text.lower() in PRESETS:
            spec = PRESETS[text.lower()]
        else:
            raise InputError(
                f"unknown architecture preset {text!r}; use one of {', '.join(PRESETS)} or a JSON object "
                "'{\"name\": \"UNet\", \"kwargs\": {...}}'"
            )
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InputError("--architecture JSON must be an object with a \"name\" (a MONAI network) and \"kwargs\"")
    unknown = sorted(set(spec) - {"name", "kwargs"})
    if unknown:
        raise InputError(f"--architecture: unknown keys {unknown}; give only \"name\" and \"kwargs\"")
    kwargs = dict(spec.get("kwargs") or {})
    if not isinstance(spec.get("kwargs", {}), dict):
        raise InputError("--architecture: \"kwargs\" must be a JSON object")
    import monai.networks.nets as nets

    cls = getattr(nets, spec["name"], None)
    if cls is None or not callable(cls):
        raise InputError(f"--architecture: MONAI has no network {spec['name']!r} (see monai.networks.nets)")
    try:
        params = set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        params = set()
    wanted = {"spatial_dims": spatial_dims}
    wanted.update({k: n_in for k in _IN_KEYS if k in params})
    wanted.update({k: n_out for k in _OUT_KEYS if k in params})
    for key, value in wanted.items():
        if key in kwargs and kwargs[key] != value:
            raise InputError(
                f"--architecture sets {key}={kwargs[key]}, but the data needs {value} "
                f"({n_in} input channel(s), {n_out} output(s), {spatial_dims}D); leave {key} out to have it filled in"
            )
        if key in params or key == "spatial_dims":
            kwargs[key] = value
    if "spatial_dims" not in params:
        kwargs.pop("spatial_dims", None)
    return {"name": spec["name"], "kwargs": kwargs}


# ---------------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------------
def set_determinism(seed: int, device: torch.device | str = "cpu", threads: int = N_THREADS) -> None:
    """Seed Python, NumPy and torch (all devices) and use ``threads`` CPU threads (default :data:`N_THREADS`).

    The CPU kernels used here are deterministic; on CUDA, cuDNN is also asked for deterministic algorithms (and
    no benchmarking), which is all that is needed for the convolutions of these networks.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def fold_seed(seed: int, fold: int) -> int:
    return int(seed) * 1000 + int(fold)


# ---------------------------------------------------------------------------------------------------------------
# Network inspection
# ---------------------------------------------------------------------------------------------------------------
def pick_cam_layer(network: torch.nn.Module, task: str, example_shape: Sequence[int]) -> str | None:
    """A sensible layer for class activation maps, chosen by running one dummy batch through ``network``.

    Classification: ``layer4`` (ResNet), ``features.norm5`` (DenseNet), else the last module with a spatial output.
    Segmentation: the last convolutional block (MONAI ``Convolution``/``ResidualUnit`` or a plain conv) whose output
    is coarser than the input (a decoder stage, e.g. ``model.1.submodule.2.1`` in a MONAI UNet); without
    down-sampling, the last block before the output head.

    Args:
        example_shape: ``(1, C, *grid)`` shape of a valid input.
    """
    modules = dict(network.named_modules())
    if task == "classification":
        for name in ("layer4", "features.norm5"):
            if name in modules:
                return name
    from monai.networks.blocks import Convolution, ResidualUnit

    blocks = (Convolution, ResidualUnit, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d,
              torch.nn.ConvTranspose3d)
    finished: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, mod in modules.items():
        if not name:
            continue
        if task == "classification" or isinstance(mod, blocks):
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, out, name=name: finished.append((name, tuple(out.shape)))
                if isinstance(out, torch.Tensor) else None
            ))
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(torch.zeros(tuple(example_shape)))
    finally:
        for h in hooks:
            h.remove()
        network.train(was_training)
    grid = tuple(example_shape[2:])
    spatial = [(n, s) for n, s in finished if len(s) == len(example_shape)]
    if not spatial:
        return None
    if task == "classification":
        return spatial[-1][0]
    # drop blocks nested inside a later-finishing block of the same name prefix (keep the innermost last one)
    coarser = [n for n, s in spatial if tuple(s[2:]) != grid and all(a <= b for a, b in zip(s[2:], grid))]
    if coarser:
        return coarser[-1]
    head = spatial[-1][0]
    before = [n for n, _ in spatial if not head.startswith(n) and not n.startswith(head)]
    return before[-1] if before else head
