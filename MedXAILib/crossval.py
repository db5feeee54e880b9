"""K-fold, patient-level training of a user's own segmentation U-Net or image classifier (the ``train`` command).

For each fold ``k`` of :func:`MedXAILib.splits.patient_kfold` (the same folds ``benchmark`` uses, written to
``DIR/splits.json``), a fresh network is trained on the other folds and evaluated on fold ``k``; the fold is saved as
``DIR/fold{k}/model.json`` (a full :class:`~MedXAILib.model_description.ModelDescription`) + ``weights.pt``
(a plain ``state_dict``), so ``load_model("DIR/fold0")`` and ``--model DIR/fold0`` work with ``segment``,
``classify`` and ``explain``.

Data flow (one preprocessing for training and inference)::

    Case.load() ──► Volume (C, K, J, I) ──► Model(network, description).prepare()  (normalise + resample to the model
        grid; the very function inference calls) ──► array (C, *grid) float32, cached per case
    label map (1, K, J, I) ──► contiguous class indices (lookup of label_values) ──► nearest resample to the grid
        ──► (*grid) uint8
    training: random patches of ``patch`` voxels (segmentation; a foreground voxel is the patch centre with
        probability 2/3) or the whole grid (classification), random flips (segmentation), small intensity jitter
    validation: Model.predict(volume) on each held-out case, in the input geometry, scored with
        :func:`MedXAILib.metrics.segmentation.segmentation_metrics` or
        :func:`MedXAILib.metrics.classification.classification_metrics`

Losses: segmentation (softmax over exclusive labels) uses MONAI ``DiceCELoss`` (soft Dice + cross-entropy, one-hot
targets; Milletari et al. 2016, Isensee et al. 2021); multi-label classification uses binary cross-entropy with
logits. Optimiser AdamW, cosine learning-rate decay after a short linear warm-up.

Layouts: ``grid`` is ``(K, J, I)`` in 3D and ``(J, I)`` in 2D (tensor order, as the model description); spacings
in millimetres; time in seconds.

Resuming: a fold whose ``model.json`` records the same configuration fingerprint (dataset, task, folds, seed,
architecture, schedule, preprocessing, train/val case ids) and whose weights exist is not retrained. Folds are
written into a temporary folder and renamed into place, so a killed run never leaves a half-written fold.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import random
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import InputError, ModelError
from .model_description import ModelDescription
from .progress import ProgressCallback, no_progress, scaled

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

    def check(self) -> None:
        """Refuse values that cannot work, with the reason (raises :class:`InputError`)."""
        if self.task not in TASKS:
            raise InputError(f"--task must be one of {', '.join(TASKS)}; got {self.task!r}")
        for name in ("epochs", "steps_per_epoch", "batch_size"):
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
def set_determinism(seed: int, device: torch.device | str = "cpu") -> None:
    """Seed Python, NumPy and torch (all devices) and use :data:`N_THREADS` CPU threads.

    The CPU kernels used here are deterministic; on CUDA, cuDNN is also asked for deterministic algorithms (and
    no benchmarking), which is all that is needed for the convolutions of these networks.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.set_num_threads(N_THREADS)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _fold_seed(seed: int, fold: int) -> int:
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


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Everything derived from the dataset and the config before any training (same for every fold).

    Attributes:
        dataset: the opened :class:`~MedXAILib.datasets.Dataset` (restricted to the cases with truth).
        task: ``segmentation`` or ``classification``.
        spatial_dims: 2 or 3.
        channel_names: input channels, in order.
        class_names: output names (segmentation: one per label value, background first; classification: findings).
        label_values: segmentation label value of each class index (e.g. BraTS 2021: 0, 1, 2, 4), else None.
        regions: evaluation regions (name → label values), including ``foreground`` (every non-zero value).
        preprocessing: the description's ``preprocessing`` block.
        patch: training patch (segmentation) in voxels, tensor order, or None.
        architecture: the resolved architecture.
        notes: sentences for the user about what was decided or skipped.
    """

    dataset: Any
    task: str
    spatial_dims: int
    channel_names: list[str]
    class_names: list[str]
    label_values: list[int] | None
    regions: dict[str, list[int]]
    preprocessing: dict[str, Any]
    patch: list[int] | None
    architecture: dict[str, Any]
    notes: list[str] = field(default_factory=list)


BRAIN_KINDS = ("brats2021", "brats2023", "msd", "deepmedic", "phantom", "phantom-brain")


def _has_truth(case: Any, task: str) -> bool:
    if case.generator is not None:
        return case.task == task
    if task == "segmentation":
        return case.label_path is not None
    return case.labels is not None


def plan_training(config: TrainConfig, cache: CaseCache | None = None) -> Plan:
    """Open the dataset, check it fits the task, and decide grids, labels, normalisation and the network.

    Reads one case (two for segmentation datasets without declared label values: all of them) to learn the
    image dimensionality.

    Raises:
        InputError: the dataset has no truth for the task, or an option does not fit the data.
    """
    from .datasets import BRAIN_CHANNELS, open_dataset

    config.check()
    ds = open_dataset(config.dataset)
    notes: list[str] = []
    if ds.task is not None and ds.task != config.task:
        other = "label maps" if ds.task == "segmentation" else "per-image labels"
        raise InputError(
            f"{ds.spec} is a {ds.task} dataset ({other}); it has no truth for {config.task}. "
            f"Use --task {ds.task}"
        )
    labelled = [c for c in ds.cases if _has_truth(c, config.task)]
    if not labelled:
        what = "reference label map" if config.task == "segmentation" else "per-image labels"
        raise InputError(f"{ds.spec}: no case has a {what}, so there is nothing to train {config.task} on")
    if len(labelled) < len(ds.cases):
        notes.append(
            f"{len(ds.cases) - len(labelled)} case(s) without truth left out "
            f"(e.g. {', '.join(c.case_id for c in ds.cases if c not in labelled)[:80]})."
        )
        ds = ds.subset([c.case_id for c in labelled])
    cache = cache or CaseCache()
    first_image, _ = cache.raw(ds.cases[0])
    spatial_dims = 2 if first_image.is_2d else 3
    channel_names = list(ds.channel_names or first_image.channel_names) or [
        f"channel{i}" for i in range(first_image.n_channels)
    ]
    if len(channel_names) != first_image.n_channels:
        channel_names = [f"channel{i}" for i in range(first_image.n_channels)]
    brain = ds.kind in BRAIN_KINDS or bool(set(channel_names) & set(BRAIN_CHANNELS))
    xray = spatial_dims == 2 and (ds.kind in ("chestxray14", "phantom-chest") or channel_names == ["xray"])

    pre: dict[str, Any]
    if brain and spatial_dims == 3:
        pre = {"normalize": "zscore_foreground"}
    elif xray or spatial_dims == 2:
        pre = {"normalize": "percentile", "percentiles": [0.5, 99.5]}
    else:
        pre = {"normalize": "zscore"}
    dims_word = "K,J,I" if spatial_dims == 3 else "J,I"

    def _check_len(name: str, value: Sequence[Any] | None) -> None:
        if value is not None and len(value) != spatial_dims:
            raise InputError(
                f"--{name} needs {spatial_dims} values ({dims_word}) for this {spatial_dims}D data; got {len(value)}"
            )

    _check_len("spacing", config.spacing)
    _check_len("patch", config.patch)
    _check_len("input-size", config.input_size)

    label_values: list[int] | None = None
    regions: dict[str, list[int]] = {}
    patch: list[int] | None = None
    if config.task == "segmentation":
        if config.input_size is not None:
            raise InputError("--input-size is for classification; segmentation keeps the physical grid (--spacing)")
        declared = sorted(int(v) for v in ds.label_names)
        if not declared:
            found: set[int] = {0}
            for c in ds.cases:
                _, ref = cache.raw(c)
                found.update(int(v) for v in np.unique(ref.array))
            declared = sorted(found)
            notes.append(f"label values read from the reference maps: {', '.join(map(str, declared))}.")
        if 0 not in declared:
            declared = [0, *declared]
        label_values = declared
        if len(label_values) < 2:
            raise InputError(f"{ds.spec}: the reference maps hold only background; there is nothing to segment")
        class_names = [str(ds.label_names.get(v, "background" if v == 0 else f"label {v}")) for v in label_values]
        nonzero = [v for v in label_values if v != 0]
        for name, members in (ds.regions or {}).items():
            kept = [int(v) for v in members if int(v) in nonzero]
            if kept and len(kept) > 1:
                regions[str(name)] = kept
        if len(nonzero) > 1 and not any(sorted(v) == nonzero for v in regions.values()):
            regions[FOREGROUND_REGION] = nonzero  # whole foreground, unless a named region already is (BraTS WT)
        if config.spacing is not None:
            pre["target_spacing"] = [float(s) for s in config.spacing]
        elif spatial_dims == 3:
            pre["target_spacing"] = [2.0, 2.0, 2.0]
        if config.patch is not None:
            patch = [int(p) for p in config.patch]
        else:
            patch = [32, 64, 64] if spatial_dims == 3 else [128, 128]
        n_out = len(label_values)
    else:
        if config.patch is not None:
            raise InputError("--patch is for segmentation; a classifier sees the whole image (--input-size)")
        findings = list(ds.findings)
        if not findings:
            _, ref = cache.raw(ds.cases[0])
            findings = list(ref) if isinstance(ref, dict) else []
        if not findings:
            raise InputError(f"{ds.spec}: no findings (label columns) to classify")
        class_names = findings
        if config.input_size is not None:
            pre["input_size"] = [int(s) for s in config.input_size]
        elif config.spacing is not None:
            pre["target_spacing"] = [float(s) for s in config.spacing]
        else:
            pre["input_size"] = [256, 256] if spatial_dims == 2 else [64, 64, 64]
        n_out = len(findings)
    architecture = resolve_architecture(config.architecture, config.task, spatial_dims, len(channel_names), n_out)
    if patch is not None:
        from .loaders import build_network
        from .models import Model

        probe = Model(build_network(architecture, "--architecture"), _description(
            "probe", config.task, spatial_dims, channel_names, class_names, pre, patch, architecture, None,
            label_values,
        ))
        div = probe.divisor()
        bad = [p for p in patch if p % div]
        if bad:
            raise InputError(
                f"--patch {','.join(map(str, patch))}: every size must be a multiple of {div} for this "
                f"{architecture['name']} (the product of its strides)"
            )
    return Plan(
        ds, config.task, spatial_dims, channel_names, class_names, label_values, regions, pre, patch, architecture,
        notes,
    )


def _description(
    name: str,
    task: str,
    spatial_dims: int,
    channel_names: list[str],
    class_names: list[str],
    preprocessing: dict[str, Any],
    patch: list[int] | None,
    architecture: dict[str, Any],
    cam_layer: str | None,
    label_values: list[int] | None,
    training: dict[str, Any] | None = None,
) -> ModelDescription:
    return ModelDescription(
        name=name,
        task=task,
        spatial_dims=spatial_dims,
        channel_names=list(channel_names),
        class_names=list(class_names),
        output="softmax" if task == "segmentation" else "sigmoid",
        preprocessing=json.loads(json.dumps(preprocessing)),
        patch_size=list(patch) if patch else None,
        architecture=json.loads(json.dumps(architecture)),
        cam_layer=cam_layer,
        weights="weights.pt",
        label_values=list(label_values) if label_values is not None else None,
        training=training or {},
    )


class CaseCache:
    """Loads cases on demand and keeps their prepared arrays (model grid) in memory across folds.

    Raw Volumes are dropped once a case is prepared or evaluated. Memory is therefore about one float32 copy of
    every training case on the model grid (e.g. 4 × 78 × 120 × 120 × 4 B ≈ 18 MB for a BraTS case at 2 mm).

    Prepared entries are ``(image (C, *grid) float32, target)`` with ``target`` the class-index map ``(*grid)``
    uint8 for segmentation or the 0/1 vector ``(L,)`` float32 for classification.
    """

    def __init__(self) -> None:
        self._raw: dict[str, tuple[Any, Any]] = {}
        self._prepared: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def raw(self, case: Any) -> tuple[Any, Any]:
        """``(image Volume, reference)`` of a case (loaded on first use)."""
        if case.case_id not in self._raw:
            image, ref = case.load()
            if ref is None:
                raise InputError(f"case {case.case_id} has no reference to train on")
            self._raw[case.case_id] = (image, ref)
        return self._raw[case.case_id]

    def prepared(self, case: Any, model: Any, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """The case on the model grid, through ``model.prepare`` (the inference path)."""
        if case.case_id in self._prepared:
            return self._prepared[case.case_id]
        from .preprocessing import resize
        from .volume import Volume

        image, ref = self.raw(case)
        image = Volume(image.array, image.ijk_to_ras, plan.channel_names)
        prepared = model.prepare(image)
        x = prepared.tensor[0].detach().cpu().numpy().astype(np.float32)
        if plan.task == "segmentation":
            assert plan.label_values is not None
            lab = np.asarray(ref.array[0])
            if np.issubdtype(lab.dtype, np.floating):
                lab = np.round(lab)
            lab = lab.astype(np.int64)
            values = np.unique(lab)
            unknown = [int(v) for v in values if int(v) not in plan.label_values]
            if unknown:
                raise InputError(
                    f"case {case.case_id}: label value(s) {', '.join(map(str, unknown))} are not among the dataset's "
                    f"labels ({', '.join(map(str, plan.label_values))})"
                )
            lut = np.zeros(int(max(max(plan.label_values), int(values.max()))) + 1, dtype=np.uint8)
            for idx, v in enumerate(plan.label_values):
                lut[v] = idx
            index = lut[lab]
            if plan.spatial_dims == 2:
                index = index[0]
            t = torch.from_numpy(index.astype(np.float32))[None, None]
            y = resize(t, prepared.grid.model_shape, "nearest")[0, 0].numpy().astype(np.uint8)
        else:
            y = np.asarray([float(ref.get(n, 0)) for n in plan.class_names], dtype=np.float32)
        self._prepared[case.case_id] = (x, y)
        self.forget_raw(case)  # training needs only the prepared arrays
        return x, y

    def forget_raw(self, case: Any) -> None:
        """Drop a case's raw Volume (it is read again if needed); keeps memory to the prepared arrays."""
        self._raw.pop(case.case_id, None)


# ---------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------
def _pad_to(x: np.ndarray, y: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``x (C, *grid)`` and ``y (*grid)`` at the end so every axis is at least ``patch``."""
    pads = [max(0, p - s) for p, s in zip(patch, y.shape)]
    if not any(pads):
        return x, y
    x = np.pad(x, [(0, 0)] + [(0, p) for p in pads])
    y = np.pad(y, [(0, p) for p in pads])
    return x, y


def sample_patch(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, patch: Sequence[int], flips: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``patch`` of ``x (C, *grid)`` and ``y (*grid)``; foreground-centred with probability 2/3.

    Each spatial axis is flipped with probability 1/2 when ``flips``.
    """
    x, y = _pad_to(x, y, patch)
    if rng.random() < FOREGROUND_PATCH_PROBABILITY and (y > 0).any():
        fg = np.argwhere(y > 0)
        centre = fg[rng.integers(len(fg))]
    else:
        centre = np.array([rng.integers(s) for s in y.shape])
    start = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, y.shape)]
    sl = tuple(slice(s, s + p) for s, p in zip(start, patch))
    xp, yp = x[(slice(None),) + sl], y[sl]
    if flips:
        for ax in range(y.ndim):
            if rng.random() < 0.5:
                xp, yp = np.flip(xp, axis=ax + 1), np.flip(yp, axis=ax)
    return np.ascontiguousarray(xp), np.ascontiguousarray(yp)


def _lr_at(base: float, step: int, total: int) -> float:
    warmup = max(1, min(20, total // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.03 + 0.97 * 0.5 * (1.0 + math.cos(math.pi * t)))


# ---------------------------------------------------------------------------------------------------------------
# One fold
# ---------------------------------------------------------------------------------------------------------------
def fingerprint(config: TrainConfig, plan: Plan, train_ids: Sequence[str], val_ids: Sequence[str]) -> str:
    """A hash of everything that determines a fold's weights (not the device, not the output folder)."""
    data = {
        "dataset": config.dataset,
        "task": config.task,
        "folds": config.folds,
        "seed": config.seed,
        "schedule": [config.epochs, config.steps_per_epoch, config.batch_size, float(config.lr)],
        "architecture": plan.architecture,
        "preprocessing": plan.preprocessing,
        "patch": plan.patch,
        "classes": [plan.class_names, plan.label_values],
        "channels": plan.channel_names,
        "train": sorted(train_ids),
        "val": sorted(val_ids),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _finished_fold(folder: Path, fp: str) -> dict[str, Any] | None:
    """The saved ``training`` block of a fold that matches the fingerprint ``fp`` (None: train it)."""
    try:
        data = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        return None
    training = data.get("training") if isinstance(data, dict) else None
    if not isinstance(training, dict) or training.get("fingerprint") != fp:
        return None
    if not (folder / str(data.get("weights") or "weights.pt")).is_file():
        return None
    return training


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate_fold(model: Any, plan: Plan, cases: Sequence[Any], cache: CaseCache,
                  progress: ProgressCallback = no_progress) -> dict[str, Any]:
    """Score ``model`` on held-out ``cases`` through :meth:`Model.predict` (the inference path, input geometry).

    Segmentation: per label/region (keyed by class name, plus the region names), the mean over cases of Dice, IoU
    and HD95 (mm; cases where it is undefined left out, counted in ``n_hd95``), and ``per_case``. Classification:
    :func:`~MedXAILib.metrics.classification.classification_metrics` over the held-out images.
    """
    from .metrics.classification import classification_metrics
    from .metrics.segmentation import segmentation_metrics
    from .volume import Volume

    if plan.task == "segmentation":
        assert plan.label_values is not None
        name_of = {str(v): n for v, n in zip(plan.label_values, plan.class_names)}
        per_case: dict[str, dict[str, dict[str, Any]]] = {}
        for n, case in enumerate(cases):
            image, ref = cache.raw(case)
            pred = model.predict(Volume(image.array, image.ijk_to_ras, plan.channel_names))
            present = sorted({int(v) for v in np.unique(pred.labels.array)} | {int(v) for v in np.unique(ref.array)})
            wanted = [v for v in plan.label_values if v != 0 and v in present]
            ref_vol = Volume(np.round(ref.array).astype(np.int16), ref.ijk_to_ras)
            res = segmentation_metrics(pred.labels, ref_vol, labels=wanted, regions=plan.regions)
            cache.forget_raw(case)
            row: dict[str, dict[str, Any]] = {}
            for key, m in res.items():
                row[name_of.get(key, key)] = {k: m[k] for k in SEG_METRICS}
            for v in plan.label_values:  # a label absent from both maps agrees perfectly
                if v != 0 and v not in present:
                    row[name_of[str(v)]] = {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0}
            per_case[case.case_id] = row
            progress((n + 1) / len(cases), f"evaluating {case.case_id}")
        keys = [n for n in plan.class_names[1:]] + list(plan.regions)
        summary: dict[str, dict[str, Any]] = {}
        for key in keys:
            rows = [r[key] for r in per_case.values() if key in r]
            summary[key] = {m: _mean_or_none([r[m] for r in rows]) for m in SEG_METRICS}
            summary[key]["n_hd95"] = sum(1 for r in rows if r["hd95_mm"] is not None)
        return {"labels": summary, "n_cases": len(cases), "per_case": per_case}
    y_true, y_score = [], []
    for n, case in enumerate(cases):
        image, ref = cache.raw(case)
        pred = model.predict(Volume(image.array, image.ijk_to_ras, plan.channel_names))
        y_true.append([int(ref.get(c, 0)) for c in plan.class_names])
        y_score.append([float(p) for p in pred.class_probabilities])
        cache.forget_raw(case)
        progress((n + 1) / len(cases), f"evaluating {case.case_id}")
    res = classification_metrics(np.asarray(y_true), np.asarray(y_score), plan.class_names)
    labels = {name: {m: v[m] for m in CLS_METRICS} for name, v in res["labels"].items()}  # type: ignore[union-attr]
    labels["macro"] = {m: res["macro"][m] for m in CLS_METRICS}  # type: ignore[index]
    per_case_scores = {c.case_id: dict(zip(plan.class_names, s)) for c, s in zip(cases, y_score)}
    return {"labels": labels, "n_cases": len(cases), "per_case": per_case_scores}


def train_fold(
    config: TrainConfig,
    plan: Plan,
    fold: Any,
    cache: CaseCache,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Train and evaluate one fold; write ``DIR/fold{k}/`` atomically. Returns the fold's ``training`` block."""
    from .loaders import build_network
    from .models import Model

    k = fold.index
    out = Path(config.output)
    by_id = {c.case_id: c for c in plan.dataset.cases}
    train_cases = [by_id[c] for c in fold.train]
    val_cases = [by_id[c] for c in fold.test]
    seed = _fold_seed(config.seed, k)
    from .models import resolve_device

    set_determinism(seed, resolve_device(config.device))
    rng = np.random.default_rng(seed)
    network = build_network(plan.architecture, "--architecture")
    if plan.task == "segmentation":
        example = (1, len(plan.channel_names), *plan.patch)  # type: ignore[misc]
    else:
        size = plan.preprocessing.get("input_size") or [64] * plan.spatial_dims
        example = (1, len(plan.channel_names), *size)
    cam_layer = pick_cam_layer(network, plan.task, example)
    desc = _description(
        f"{out.name or 'train'}-fold{k}", plan.task, plan.spatial_dims, plan.channel_names, plan.class_names,
        plan.preprocessing, plan.patch, plan.architecture, cam_layer, plan.label_values,
    )
    model = Model(network, desc, config.device)
    device = model.device
    # data (cached across folds: the preprocessing does not depend on the weights)
    n_load = len(train_cases)
    data = []
    for n, case in enumerate(train_cases):
        data.append(cache.prepared(case, model, plan))
        progress(0.1 * (n + 1) / n_load, f"fold {k}: preparing {case.case_id}")
    network = model.network
    network.train()
    opt = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-5)
    if plan.task == "segmentation":
        from monai.losses import DiceCELoss

        loss_fn: Any = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
        loss_name = "monai DiceCELoss(softmax, one-hot targets, batch Dice) — soft Dice + cross-entropy"
    else:
        loss_fn = torch.nn.BCEWithLogitsLoss()
        loss_name = "binary cross-entropy with logits (multi-label)"
    total = config.epochs * config.steps_per_epoch
    unit_range = plan.preprocessing.get("normalize") in ("percentile", "minmax", "hu_window")
    t0 = time.perf_counter()
    running = float("nan")
    epoch_losses: list[float] = []
    step = 0
    for epoch in range(config.epochs):
        losses = []
        for _ in range(config.steps_per_epoch):
            idx = rng.integers(len(data), size=config.batch_size)
            if plan.task == "segmentation":
                pairs = [sample_patch(rng, data[i][0], data[i][1], plan.patch) for i in idx]  # type: ignore[arg-type]
                xb = torch.from_numpy(np.stack([p[0] for p in pairs]))
                yb = torch.from_numpy(np.stack([p[1][None].astype(np.int64) for p in pairs]))
                # intensity jitter: per-sample, per-channel scale and shift
                scale = torch.from_numpy(rng.uniform(0.9, 1.1, size=(len(idx), xb.shape[1])).astype(np.float32))
                shift = torch.from_numpy(rng.uniform(-0.1, 0.1, size=(len(idx), xb.shape[1])).astype(np.float32))
                shape = (len(idx), xb.shape[1]) + (1,) * (xb.ndim - 2)
                xb = xb * scale.view(shape) + shift.view(shape)
            else:
                xb = torch.from_numpy(np.stack([data[i][0] for i in idx]))
                yb = torch.from_numpy(np.stack([data[i][1] for i in idx]))
                # exposure jitter (no flips: they would change the anatomy, e.g. the heart's side)
                shape = (len(idx),) + (1,) * (xb.ndim - 1)
                if unit_range:  # a random gamma on [0, 1]-scaled images
                    gam = torch.from_numpy(rng.uniform(0.8, 1.25, size=shape).astype(np.float32))
                    xb = xb.clamp(0.0, 1.0) ** gam
                else:
                    xb = xb * torch.from_numpy(rng.uniform(0.9, 1.1, size=shape).astype(np.float32))
            for g in opt.param_groups:
                g["lr"] = _lr_at(config.lr, step, total)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(network(xb.to(device)), yb.to(device))
            if not torch.isfinite(loss):
                raise ModelError(
                    f"fold {k}: the loss became {float(loss)} at step {step + 1}; lower --lr (now {config.lr})"
                )
            loss.backward()
            opt.step()
            value = float(loss.detach())
            losses.append(value)
            running = value if step == 0 else 0.9 * running + 0.1 * value
            step += 1
            progress(0.1 + 0.75 * step / total, f"fold {k}: epoch {epoch + 1}/{config.epochs}, loss {running:.3f}")
        epoch_losses.append(round(float(np.mean(losses)), 5))
    train_seconds = time.perf_counter() - t0
    network.eval()
    t1 = time.perf_counter()
    metrics = evaluate_fold(model, plan, val_cases, cache, scaled(progress, 0.85, 1.0))
    eval_seconds = time.perf_counter() - t1
    fp = fingerprint(config, plan, fold.train, fold.test)
    training = {
        "command": config.command(),
        "dataset": config.dataset,
        "seed": config.seed,
        "fold_seed": seed,
        "fold": k,
        "folds": config.folds,
        "train_case_ids": list(fold.train),
        "val_case_ids": list(fold.test),
        "train_patients": fold.train_patients,
        "val_patients": fold.test_patients,
        "schedule": {"epochs": config.epochs, "steps_per_epoch": config.steps_per_epoch,
                     "batch_size": config.batch_size, "lr": config.lr, "optimizer": "AdamW(weight_decay=1e-5)",
                     "lr_schedule": "linear warm-up then cosine decay to 3%"},
        "loss": loss_name,
        "epoch_losses": epoch_losses,
        "metrics": {"labels": metrics["labels"], "n_cases": metrics["n_cases"]},
        "per_case": metrics["per_case"],
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "versions": _versions(),
        "fingerprint": fp,
    }
    desc.training = training
    _write_fold(out, k, desc, network)
    return training


def _versions() -> dict[str, str]:
    import monai

    return {"torch": torch.__version__, "monai": monai.__version__}


def _write_fold(out: Path, k: int, desc: ModelDescription, network: torch.nn.Module) -> Path:
    """Write ``model.json`` + ``weights.pt`` into a temporary folder beside ``fold{k}`` and rename it into place."""
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"fold{k}"
    tmp = out / f".fold{k}.{os.getpid()}.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        state = {n: t.detach().cpu() for n, t in network.state_dict().items()}
        torch.save(state, tmp / "weights.pt")
        from .io import _json_default

        (tmp / "model.json").write_text(json.dumps(desc.to_dict(), indent=2, default=_json_default) + "\n")
        old = None
        if final.exists():
            old = out / f".fold{k}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------------------------
# The whole cross-validation
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CrossValResult:
    """What :func:`cross_validate` did.

    Attributes:
        output: the output folder.
        task: segmentation or classification.
        folds: one ``training`` block per fold (as stored in ``fold{k}/model.json``), plus ``skipped``.
        summary: label → metric → ``{"mean", "sd", "n", "values"}`` over folds (sd: sample sd, ddof = 1).
        notes: sentences for the user.
    """

    output: Path
    task: str
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, Any]]]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"output": str(self.output)}


def summarise(task: str, folds: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean ± sd over folds of each fold metric (None values left out; ``n`` says how many folds counted)."""
    metrics = SEG_METRICS if task == "segmentation" else CLS_METRICS
    labels: list[str] = []
    for f in folds:
        for name in f["metrics"]["labels"]:
            if name not in labels:
                labels.append(name)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in labels:
        out[name] = {}
        for m in metrics:
            values = [f["metrics"]["labels"].get(name, {}).get(m) for f in folds]
            vals = [float(v) for v in values if v is not None]
            out[name][m] = {
                "mean": float(np.mean(vals)) if vals else None,
                "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                "n": len(vals),
                "values": values,
            }
    return out


def write_summary_csv(result: CrossValResult, path: Path) -> Path:
    """``summary.csv``: one row per label × metric: ``label, metric, mean, sd, n_folds, fold0, fold1, ...``."""
    import csv
    import io as _io

    from .io import atomic_path

    buf = _io.StringIO()
    w = csv.writer(buf)
    k = len(result.folds)
    w.writerow(["label", "metric", "mean", "sd", "n_folds"] + [f"fold{i}" for i in range(k)])
    for label, per in result.summary.items():
        for metric, s in per.items():
            w.writerow([label, metric, _cell(s["mean"]), _cell(s["sd"]), s["n"]] + [_cell(v) for v in s["values"]])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def _cell(v: float | None) -> str:
    return "" if v is None else f"{float(v):.6g}"


def format_table(result: CrossValResult) -> str:
    """The summary as a fixed-width text table (mean ± sd over folds)."""
    metrics = SEG_METRICS if result.task == "segmentation" else CLS_METRICS
    head = ["label"] + list(metrics)
    rows = []
    for label, per in result.summary.items():
        cells = [label]
        for m in metrics:
            s = per[m]
            if s["mean"] is None:
                cells.append("n/a")
            elif s["sd"] is None:
                cells.append(f"{s['mean']:.3f}")
            else:
                cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def cross_validate(config: TrainConfig, progress: ProgressCallback = no_progress) -> CrossValResult:
    """Train ``config.folds`` models with patient-level folds and write ``DIR`` (see the module docstring).

    Writes ``DIR/splits.json``, ``DIR/fold{k}/{model.json,weights.pt}``, ``DIR/folds.json`` and ``DIR/summary.csv``.
    Folds already trained with the same configuration are kept (resume).

    Raises:
        InputError: the dataset or an option does not fit (no truth for the task, fewer patients than folds, ...).
    """
    from .io import write_json
    from .splits import patient_kfold, write_splits

    cache = CaseCache()
    progress(0.0, "reading the dataset")
    plan = plan_training(config, cache)
    folds = patient_kfold(plan.dataset.cases, config.folds, config.seed)
    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    write_splits(folds, out / "splits.json")
    records: list[dict[str, Any]] = []
    notes = list(plan.notes)
    for fold in folds:
        sub = scaled(progress, 0.02 + 0.97 * fold.index / len(folds), 0.02 + 0.97 * (fold.index + 1) / len(folds))
        fp = fingerprint(config, plan, fold.train, fold.test)
        done = _finished_fold(out / f"fold{fold.index}", fp)
        if done is not None:
            sub(1.0, f"fold {fold.index}: already trained, kept")
            records.append({**done, "skipped": True})
            continue
        for stale in out.glob(f".fold{fold.index}.*.part"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        training = train_fold(config, plan, fold, cache, sub)
        records.append({**training, "skipped": False})
    extra = sorted(
        (p.name for p in out.glob("fold*") if p.is_dir() and p.name[4:].isdigit() and int(p.name[4:]) >= len(folds)),
        key=lambda n: int(n[4:]),
    )
    if extra:
        notes.append(f"{', '.join(extra)} in {out} come from an earlier run with more folds; they are not part of "
                     "this cross-validation.")
    summary = summarise(config.task, records)
    result = CrossValResult(out, config.task, records, summary, notes)
    write_json(
        {
            "format": "medxai-train-folds",
            "version": 1,
            "command": config.command(),
            "task": config.task,
            "dataset": config.dataset,
            "seed": config.seed,
            "k": config.folds,
            "architecture": plan.architecture,
            "preprocessing": plan.preprocessing,
            "patch_size": plan.patch,
            "class_names": plan.class_names,
            "label_values": plan.label_values,
            "regions": plan.regions,
            "folds": [
                {key: r[key] for key in ("fold", "train_case_ids", "val_case_ids", "val_patients", "metrics",
                                         "train_seconds", "eval_seconds", "skipped", "fingerprint")}
                | {"model": f"fold{r['fold']}"}
                for r in records
            ],
            "summary": summary,
            "notes": notes,
        },
        out / "folds.json",
    )
    write_summary_csv(result, out / "summary.csv")
    progress(1.0, f"trained {len(folds)} folds into {out}")
    return result


__all__ = [
    "PRESETS",
    "CrossValResult",
    "Plan",
    "TrainConfig",
    "cross_validate",
    "format_table",
    "pick_cam_layer",
    "plan_training",
    "resolve_architecture",
    "summarise",
]
