"""The data side of ``train``: which cases, which classes and channels (the :class:`Plan`), the model description
each fold is saved with, the per-case cache of prepared arrays and the patch sampler."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..models.description import ModelDescription
from .config import FOREGROUND_PATCH_PROBABILITY, FOREGROUND_REGION, TrainConfig, resolve_architecture


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
    from ..datasets import BRAIN_CHANNELS, open_dataset

    config.check()
    ds = open_dataset(config.dataset)
    notes: list[str] = []
    if config.finding is not None or config.artifact or config.explanation_loss:
        from ..shortcut.confound import check_annotations, for_training, resolve_finding

        ds = for_training(ds, config.finding, config.artifact, config.task)  # one finding, maybe an artifact
        if config.explained and config.explanation_mask == "annotation":  # refused before anything is written
            check_annotations(ds, resolve_finding(ds, config.finding, config.task))
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
    _check_batch_memory(config, patch or pre.get("input_size"), len(channel_names))
    architecture = resolve_architecture(config.architecture, config.task, spatial_dims, len(channel_names), n_out)
    if patch is not None:
        from ..models import Model
        from ..models.monai_network import build_network

        probe = Model(build_network(architecture, "--architecture"), fold_description(
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


def _check_batch_memory(config: TrainConfig, grid: Sequence[int] | None, n_channels: int) -> None:
    """Refuse a batch whose input tensors alone (float32 images and int64 labels, ``batch × grid`` voxels) cannot
    be allocated: ``--batch-size 1e9`` or a patch of 10⁵ voxels a side is a typo, not a training run."""
    from .. import memory

    if not grid:
        return
    voxels = math.prod(int(g) for g in grid)
    memory.require(config.batch_size * voxels * (4 * n_channels + 8),
                   f"--batch-size {config.batch_size} of {' x '.join(map(str, grid))}-voxel samples",
                   "choose a smaller --batch-size, --patch or --input-size")


def fold_description(
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
        from ..preprocessing import resize
        from ..volume import Volume

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


def lr_at(base: float, step: int, total: int) -> float:
    warmup = max(1, min(20, total // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.03 + 0.97 * 0.5 * (1.0 + math.cos(math.pi * t)))
