"""Training and held-out evaluation of the two built-in demo models, on synthetic phantoms only.

* ``demo-brain-tumour`` — a 3D MONAI ``UNet`` (4 inputs ``t1, t1ce, t2, flair``; 4 softmax classes background,
  necrotic core, oedema, enhancing rim) trained on :func:`~MedXAILib.phantoms.make_brain_phantom` at its native 2 mm
  grid with Dice + cross-entropy on random (tumour-biased) crops.
* ``demo-chest-xray`` — a 2D MONAI ``ResNet`` with one basic block per stage (ResNet-10-like; a 7 × 7 stride-4
  stem instead of stride 2 + max-pool, which is the same 64 × 64 first-stage grid at a quarter of the cost; 1 input;
  3 sigmoid outputs, one per :data:`~MedXAILib.phantoms.CHEST_FINDINGS`) trained on
  :func:`~MedXAILib.phantoms.make_chest_phantom` at 256 × 256 with binary cross-entropy. It is fully convolutional
  up to a global average pooling, so it accepts other input sizes (``layer4`` is 8 × 8 at 256 × 256).

Training phantoms use seeds ``100000 + 10000·seed + i`` (brain) and ``200000 + 10000·seed + i`` (chest); held-out
evaluation uses seeds ``0 … n − 1``, which training never sees. Preprocessing is exactly the inference path's
(:func:`MedXAILib.preprocessing.normalize`): per-channel z-score over the head for the brain, per-image 0.5–99.5
percentile scaling to [0, 1] for the chest.

Reproduce the committed weights (one CPU thread, see :data:`N_THREADS`)::

    python -m MedXAILib.training --demo demo-brain-tumour --seed 0 --output MedXAILib/builtin_models
    python -m MedXAILib.training --demo demo-chest-xray --seed 0 --output MedXAILib/builtin_models
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models.loading import BUILTIN_DIR
from ..models.monai_network import build_network
from ..phantoms import BRAIN_CHANNELS, BRAIN_LABELS, CHEST_FINDINGS, make_brain_phantom, make_chest_phantom
from ..preprocessing import normalize, resize
from ..progress import ProgressCallback, no_progress
from .config import set_determinism as seed_everything

DEMO_NAMES = ("demo-brain-tumour", "demo-chest-xray")
BRAIN_TRAIN_SEED_BASE = 100_000
CHEST_TRAIN_SEED_BASE = 200_000
N_THREADS = 1  # one thread: on a shared, oversubscribed CPU it is several times more efficient than two

BRAIN_PREPROCESSING: dict[str, Any] = {"normalize": "zscore_foreground", "target_spacing": [2.0, 2.0, 2.0]}
CHEST_PREPROCESSING: dict[str, Any] = {"normalize": "percentile", "percentiles": [0.5, 99.5], "input_size": [256, 256]}

BRAIN_ARCHITECTURE: dict[str, Any] = {
    "name": "UNet",
    "kwargs": {
        "spatial_dims": 3,
        "in_channels": 4,
        "out_channels": 4,
        "channels": [16, 32, 64, 128],
        "strides": [2, 2, 2],
        "num_res_units": 1,
        "norm": "instance",
    },
}
CHEST_ARCHITECTURE: dict[str, Any] = {
    "name": "ResNet",
    "kwargs": {
        "block": "basic",
        "layers": [1, 1, 1, 1],
        "block_inplanes": [16, 32, 64, 128],
        "spatial_dims": 2,
        "n_input_channels": 1,
        "conv1_t_size": 7,
        "conv1_t_stride": 4,
        "no_max_pool": True,
        "num_classes": 3,
    },
}

# Default training schedules (what the committed weights used).
BRAIN_SCHEDULE: dict[str, Any] = {
    "n_train": 24,
    "iterations": 400,
    "batch_size": 2,
    "crop": [32, 64, 64],
    "lr": 3e-3,
    "foreground_crop_probability": 0.67,
}
CHEST_SCHEDULE: dict[str, Any] = {
    "n_train": 1600,
    "batch_size": 16,
    # stage 1 plain BCE; later stages restart the optimiser (cosine LR) with the nodule loss up-weighted, since a
    # small nodule is learnt last
    "stages": [
        {"epochs": 6, "lr": 2e-3, "loss_weights": None},
        {"epochs": 3, "lr": 1.5e-3, "loss_weights": [3.0, 1.0, 1.0]},
        {"epochs": 3, "lr": 1e-3, "loss_weights": [3.0, 1.0, 1.0]},
    ],
}


def reproduce_command(name: str, seed: int = 0, output: str = "MedXAILib/builtin_models") -> str:
    """The shell command that retrains a demo model (run from the repository root)."""
    return f"python -m MedXAILib.training --demo {name} --seed {seed} --output {output}"


def set_determinism(seed: int) -> None:
    """The seeding of ``train`` (:func:`.config.set_determinism`), plus torch's deterministic kernels."""
    seed_everything(seed, threads=N_THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)


def brain_description(
    held_out: dict[str, Any] | None = None, seed: int = 0, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON model description of ``demo-brain-tumour`` (see :mod:`MedXAILib.model_description`)."""
    training = {
        "command": reproduce_command("demo-brain-tumour", seed),
        "seed": seed,
        "data": "MedXAILib.phantoms.make_brain_phantom, 64 x 96 x 96 at 2 mm",
        "train_seeds": _seed_range(BRAIN_TRAIN_SEED_BASE, seed, BRAIN_SCHEDULE["n_train"]),
        "schedule": dict(BRAIN_SCHEDULE),
        "loss": "monai DiceCELoss(softmax, one-hot, batch Dice)",
    }
    if held_out is not None:
        training["held_out"] = held_out
    training.update(extra or {})
    return {
        "name": "demo-brain-tumour",
        "task": "segmentation",
        "spatial_dims": 3,
        "channel_names": list(BRAIN_CHANNELS),
        "class_names": list(BRAIN_LABELS),
        "output": "softmax",
        "preprocessing": dict(BRAIN_PREPROCESSING),
        "patch_size": [64, 96, 96],
        "architecture": json.loads(json.dumps(BRAIN_ARCHITECTURE)),
        # The decoder block at quarter resolution (32 channels): on 10 held-out phantoms every gradient CAM's maximum
        # fell inside the (4 mm dilated) tumour there; at the half-resolution block Grad-CAM's map was negative
        # everywhere (see Testing/test_localisation_phantoms.py).
        "cam_layer": "model.1.submodule.1.submodule.2",
        "weights": "demo-brain-tumour.pt",
        "training": training,
    }


def chest_description(
    held_out: dict[str, Any] | None = None, seed: int = 0, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON model description of ``demo-chest-xray`` (see :mod:`MedXAILib.model_description`)."""
    training = {
        "command": reproduce_command("demo-chest-xray", seed),
        "seed": seed,
        "data": "MedXAILib.phantoms.make_chest_phantom, 256 x 256 at 1.4 mm",
        "train_seeds": _seed_range(CHEST_TRAIN_SEED_BASE, seed, CHEST_SCHEDULE["n_train"]),
        "schedule": dict(CHEST_SCHEDULE),
        "loss": "binary cross-entropy with logits",
    }
    if held_out is not None:
        training["held_out"] = held_out
    training.update(extra or {})
    return {
        "name": "demo-chest-xray",
        "task": "classification",
        "spatial_dims": 2,
        "channel_names": ["xray"],
        "class_names": list(CHEST_FINDINGS),
        "output": "sigmoid",
        "preprocessing": dict(CHEST_PREPROCESSING),
        "patch_size": None,
        "architecture": json.loads(json.dumps(CHEST_ARCHITECTURE)),
        "cam_layer": "layer4",
        "weights": "demo-chest-xray.pt",
        "training": training,
    }


def _seed_range(base: int, seed: int, n: int) -> list[int]:
    first = base + 10_000 * seed
    return [first, first + n - 1]


# ---------------------------------------------------------------------------------------------------------------
# Data preparation (exactly the inference path's preprocessing)
# ---------------------------------------------------------------------------------------------------------------
def prepare_brain_input(image: np.ndarray) -> np.ndarray:
    """``(4, K, J, I)`` raw phantom intensities → z-scored over the head, background 0, float32 (same layout)."""
    return normalize(image, BRAIN_PREPROCESSING)


def prepare_chest_input(image: np.ndarray, size: Sequence[int] = (256, 256)) -> np.ndarray:
    """``(1, 1, J, I)`` raw radiograph → ``(1, size[0], size[1])`` percentile-scaled to [0, 1], bilinear resize."""
    x = normalize(image, CHEST_PREPROCESSING)[:, 0]
    t = resize(torch.from_numpy(np.ascontiguousarray(x))[None], tuple(size), "linear")
    return t[0].numpy()


def _brain_arrays(seeds: Sequence[int], progress: ProgressCallback) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for n, s in enumerate(seeds):
        p = make_brain_phantom(int(s))
        images.append(prepare_brain_input(p.image.array))
        labels.append(p.label.array[0].astype(np.int64))
        progress((n + 1) / len(seeds), "making brain phantoms")
    return np.stack(images), np.stack(labels)


def _crop_start(rng: np.random.Generator, label: np.ndarray, crop: Sequence[int], fg_p: float) -> list[int]:
    shape = label.shape
    if rng.random() < fg_p and (label > 0).any():
        idx = np.argwhere(label > 0)
        centre = idx[rng.integers(len(idx))]
    else:
        centre = np.array([rng.integers(s) for s in shape])
    return [int(np.clip(c - k // 2, 0, s - k)) for c, k, s in zip(centre, crop, shape)]


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------
def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    p, t = pred.astype(bool), truth.astype(bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * float((p & t).sum()) / denom


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with tie correction); NaN if only one class is present."""
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------
def build_demo_network(name: str) -> torch.nn.Module:
    """An untrained network with a demo model's architecture."""
    if name == "demo-brain-tumour":
        return build_network(BRAIN_ARCHITECTURE, name)
    if name == "demo-chest-xray":
        return build_network(CHEST_ARCHITECTURE, name)
    raise ValueError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_NAMES)}")


def load_demo_network(name: str, model_dir: str | Path | None = None) -> torch.nn.Module:
    """Build a demo model's architecture from its JSON and load its committed weights (``weights_only=True``)."""
    folder = Path(model_dir) if model_dir is not None else BUILTIN_DIR
    desc = json.loads((folder / f"{name}.json").read_text())
    net = build_network(desc["architecture"], name)
    state = torch.load(folder / desc["weights"], map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def segment_brain(network: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Label map ``(K, J, I)`` int16 for a raw ``(4, K, J, I)`` phantom image at 2 mm (spatial sizes divisible by 8)."""
    x = torch.from_numpy(prepare_brain_input(image))[None]
    with torch.no_grad():
        logits = network.eval()(x)
    return logits[0].argmax(0).numpy().astype(np.int16)


def classify_chest(network: torch.nn.Module, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Sigmoid probabilities ``(N, 3)`` for raw ``(1, 1, J, I)`` radiographs."""
    out = []
    network.eval()
    for b in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack([prepare_chest_input(im) for im in images[b : b + batch_size]]))
        with torch.no_grad():
            out.append(torch.sigmoid(network(x)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation
# ---------------------------------------------------------------------------------------------------------------
def evaluate_demo_segmentation(
    network: torch.nn.Module | None = None,
    seeds: Sequence[int] | None = None,
    n: int = 20,
    model_dir: str | Path | None = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Dice of ``demo-brain-tumour`` on held-out brain phantoms (seeds ``0 … n − 1`` unless ``seeds`` is given).

    Returns the mean over cases of the Dice of the whole tumour (labels 1–3), tumour core (1 and 3), enhancing rim
    (3), oedema (2) and necrotic core (1; averaged over the cases that have one, since an absent core predicted
    absent scores 1 by convention), plus the per-case whole-tumour Dice and the seeds.
    """
    net = network if network is not None else load_demo_network("demo-brain-tumour", model_dir)
    seeds = list(range(n)) if seeds is None else [int(s) for s in seeds]
    rows: dict[str, list[float]] = {k: [] for k in ("wt", "tc", "et", "oed", "nec")}
    for c, s in enumerate(seeds):
        p = make_brain_phantom(s)
        pred = segment_brain(net, p.image.array)
        lab = p.label.array[0]
        rows["wt"].append(dice(pred > 0, lab > 0))
        rows["tc"].append(dice(np.isin(pred, (1, 3)), np.isin(lab, (1, 3))))
        rows["et"].append(dice(pred == 3, lab == 3))
        rows["oed"].append(dice(pred == 2, lab == 2))
        if (lab == 1).any():
            rows["nec"].append(dice(pred == 1, lab == 1))
        progress((c + 1) / len(seeds), "evaluating on held-out brain phantoms")
    return {
        "whole_tumour_dice": float(np.mean(rows["wt"])),
        "tumour_core_dice": float(np.mean(rows["tc"])),
        "enhancing_rim_dice": float(np.mean(rows["et"])),
        "oedema_dice": float(np.mean(rows["oed"])),
        "necrotic_core_dice": float(np.mean(rows["nec"])) if rows["nec"] else float("nan"),
        "whole_tumour_dice_min": float(np.min(rows["wt"])),
        "whole_tumour_dice_per_case": [round(v, 4) for v in rows["wt"]],
        "n_cases": len(seeds),
        "seeds": [seeds[0], seeds[-1]] if seeds == list(range(seeds[0], seeds[0] + len(seeds))) else seeds,
    }


def evaluate_demo_classifier(
    network: torch.nn.Module | None = None,
    seeds: Sequence[int] | None = None,
    n: int = 200,
    model_dir: str | Path | None = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Per-finding ROC AUC of ``demo-chest-xray`` on held-out chest phantoms (seeds ``0 … n − 1`` by default).

    Also reports the accuracy at a 0.5 threshold per finding and the number of positives.
    """
    net = network if network is not None else load_demo_network("demo-chest-xray", model_dir)
    seeds = list(range(n)) if seeds is None else [int(s) for s in seeds]
    images, labels = [], []
    for c, s in enumerate(seeds):
        p = make_chest_phantom(s)
        images.append(p.image.array)
        labels.append(p.labels)
        progress(0.5 * (c + 1) / len(seeds), "making held-out chest phantoms")
    y = np.stack(labels)
    prob = classify_chest(net, images)
    progress(1.0, "evaluating on held-out chest phantoms")
    out: dict[str, Any] = {}
    for f, name in enumerate(CHEST_FINDINGS):
        out[f"auc_{name}"] = roc_auc(prob[:, f], y[:, f])
        out[f"accuracy_{name}"] = float(((prob[:, f] > 0.5) == (y[:, f] > 0)).mean())
        out[f"positives_{name}"] = int(y[:, f].sum())
    out["auc_mean"] = float(np.mean([out[f"auc_{n_}"] for n_ in CHEST_FINDINGS]))
    out["n_cases"] = len(seeds)
    out["seeds"] = [seeds[0], seeds[-1]] if seeds == list(range(seeds[0], seeds[0] + len(seeds))) else seeds
    return out


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def _cosine_lr(base: float, step: int, total: int, warmup: int = 20) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.03 * base + 0.97 * base * 0.5 * (1.0 + math.cos(math.pi * t))


def train_brain(
    output_dir: str | Path,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    n_held_out: int = 20,
    **schedule: Any,
) -> dict[str, Any]:
    """Train ``demo-brain-tumour`` and write ``demo-brain-tumour.pt`` and ``.json`` into ``output_dir``.

    ``schedule`` overrides entries of :data:`BRAIN_SCHEDULE` (``n_train``, ``iterations``, ``batch_size``, ``crop``
    (K, J, I voxels), ``lr``, ``foreground_crop_probability``). Returns the held-out metrics and training time.
    """
    from monai.losses import DiceCELoss

    cfg = {**BRAIN_SCHEDULE, **schedule}
    set_determinism(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    first = BRAIN_TRAIN_SEED_BASE + 10_000 * seed
    images, labels = _brain_arrays(range(first, first + int(cfg["n_train"])), lambda f, s: progress(0.1 * f, s))
    net = build_demo_network("demo-brain-tumour")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    crop = [int(c) for c in cfg["crop"]]
    iters, bs = int(cfg["iterations"]), int(cfg["batch_size"])
    net.train()
    running = 0.0
    for it in range(iters):
        xb, yb = [], []
        for _ in range(bs):
            n = int(rng.integers(len(images)))
            k0, j0, i0 = _crop_start(rng, labels[n], crop, float(cfg["foreground_crop_probability"]))
            sl = (slice(k0, k0 + crop[0]), slice(j0, j0 + crop[1]), slice(i0, i0 + crop[2]))
            x = images[n][(slice(None),) + sl]
            y = labels[n][sl]
            for ax in range(3):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis=ax + 1), np.flip(y, axis=ax)
            # small per-channel intensity jitter on the head, so the model does not rely on exact z-scores
            fg = np.any(x != 0, axis=0)
            scale = rng.uniform(0.9, 1.1, size=(4, 1, 1, 1)).astype(np.float32)
            shift = rng.uniform(-0.1, 0.1, size=(4, 1, 1, 1)).astype(np.float32)
            x = np.where(fg[None], x * scale + shift, 0.0).astype(np.float32)
            xb.append(np.ascontiguousarray(x))
            yb.append(np.ascontiguousarray(y)[None])
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(float(cfg["lr"]), it, iters)
        xt, yt = torch.from_numpy(np.stack(xb)), torch.from_numpy(np.stack(yb))
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()
        running = 0.95 * running + 0.05 * float(loss.detach()) if it else float(loss.detach())
        progress(0.1 + 0.8 * (it + 1) / iters, f"training demo-brain-tumour, loss {running:.3f}")
    return _evaluate_and_save(net, "demo-brain-tumour", evaluate_demo_segmentation, brain_description, output_dir,
                              seed, n_held_out, time.perf_counter() - t0, running, cfg, progress)


def train_chest(
    output_dir: str | Path,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    n_held_out: int = 200,
    resume: tuple[str | Path, int] | None = None,
    **schedule: Any,
) -> dict[str, Any]:
    """Train ``demo-chest-xray`` and write ``demo-chest-xray.pt`` and ``.json`` into ``output_dir``.

    Trains in ``stages`` (see :data:`CHEST_SCHEDULE`): plain binary cross-entropy first (cardiomegaly and effusion
    are learnt here), then stages that restart the optimiser with the nodule loss up-weighted, since a small nodule
    is learnt last. ``schedule`` overrides entries of :data:`CHEST_SCHEDULE`. ``resume=(state_dict_path, n)``
    continues from weights saved after the first ``n`` stages of the same seed and schedule.
    Returns the held-out metrics and training time.
    """
    cfg = {**CHEST_SCHEDULE, **schedule}
    set_determinism(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    first = CHEST_TRAIN_SEED_BASE + 10_000 * seed
    n_train = int(cfg["n_train"])
    xs = np.empty((n_train, 1, 256, 256), dtype=np.float16)
    ys = np.empty((n_train, 3), dtype=np.float32)
    for n in range(n_train):
        p = make_chest_phantom(first + n)
        xs[n] = prepare_chest_input(p.image.array)
        ys[n] = p.labels
        if n % 50 == 0 or n == n_train - 1:
            progress(0.2 * (n + 1) / n_train, "making chest phantoms")
    net = build_demo_network("demo-chest-xray")
    bs = int(cfg["batch_size"])
    stages = list(cfg["stages"])
    done = 0
    if resume is not None:
        # a state_dict saved after the first ``resume[1]`` stages of this seed and schedule
        net.load_state_dict(torch.load(resume[0], map_location="cpu", weights_only=True))
        done = int(resume[1])
    running = float("nan")
    for k in range(done, len(stages)):
        st = stages[k]
        if k == 0:
            stage_rng = rng
        else:
            set_determinism(seed + k)
            stage_rng = np.random.default_rng([seed, k + 1])
        lw = torch.tensor([float(w) for w in st["loss_weights"]]) if st.get("loss_weights") else None
        p0 = 0.2 + 0.7 * k / len(stages)
        running = _fit_chest(
            net, xs, ys, stage_rng, int(st["epochs"]), bs, float(st["lr"]), lw, progress, p0, p0 + 0.7 / len(stages)
        )
    return _evaluate_and_save(net, "demo-chest-xray", evaluate_demo_classifier, chest_description, output_dir,
                              seed, n_held_out, time.perf_counter() - t0, running, cfg, progress)


def _evaluate_and_save(
    net: torch.nn.Module,
    name: str,
    evaluate: Callable[..., dict[str, Any]],
    describe: Callable[..., dict[str, Any]],
    output_dir: str | Path,
    seed: int,
    n_held_out: int,
    train_s: float,
    final_loss: float,
    cfg: dict[str, Any],
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Score a trained demo network on held-out phantoms, write ``<name>.pt`` and ``<name>.json`` into
    ``output_dir``, and return the held-out metrics with the training time (s), threads and final loss."""
    net.eval()
    held = evaluate(net, n=n_held_out, progress=lambda f, s: progress(0.9 + 0.1 * f, s))
    held = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in held.items()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.pt"
    torch.save(net.state_dict(), weights)
    extra = {"train_seconds": round(train_s, 1), "threads": N_THREADS, "final_loss": round(final_loss, 4)}
    desc = describe(held, seed, {**extra, "schedule": cfg})
    (out / f"{name}.json").write_text(json.dumps(desc, indent=2) + "\n")
    return {**held, **extra, "weights_bytes": weights.stat().st_size}


def _fit_chest(
    net: torch.nn.Module,
    xs: np.ndarray,
    ys: np.ndarray,
    rng: np.random.Generator,
    epochs: int,
    bs: int,
    lr: float,
    loss_weights: torch.Tensor | None,
    progress: ProgressCallback,
    p0: float,
    p1: float,
) -> float:
    """Train ``net`` in place on ``xs`` ``(N, 1, 256, 256)`` float16 in [0, 1] and ``ys`` ``(N, 3)``; cosine LR."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n_train = len(xs)
    steps_per_epoch = n_train // bs
    total = steps_per_epoch * epochs
    net.train()
    running, step = 0.0, 0
    for _ in range(epochs):
        order = rng.permutation(n_train)
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * bs : (b + 1) * bs])
            x = torch.from_numpy(xs[idx].astype(np.float32))
            # exposure jitter: a random gamma keeps the model from relying on the exact grey levels
            gam = torch.from_numpy(rng.uniform(0.8, 1.25, size=(len(idx), 1, 1, 1)).astype(np.float32))
            x = x.clamp(0.0, 1.0) ** gam
            y = torch.from_numpy(ys[idx])
            for g in opt.param_groups:
                g["lr"] = _cosine_lr(lr, step, total)
            opt.zero_grad(set_to_none=True)
            logits = net(x)
            if loss_weights is None:
                loss = F.binary_cross_entropy_with_logits(logits, y)
            else:
                per = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=0)
                loss = (per * loss_weights).sum() / loss_weights.sum()
            loss.backward()
            opt.step()
            running = 0.95 * running + 0.05 * float(loss.detach()) if step else float(loss.detach())
            step += 1
            progress(p0 + (p1 - p0) * step / total, f"training demo-chest-xray, loss {running:.3f}")
    net.eval()
    return running


def train_demo_model(
    name: str,
    output_dir: str | Path = BUILTIN_DIR,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    **schedule: Any,
) -> dict[str, Any]:
    """Train one built-in demo model from scratch on phantoms, save weights + description, return held-out metrics.

    Args:
        name: ``demo-brain-tumour`` or ``demo-chest-xray``.
        output_dir: folder receiving ``<name>.pt`` (a plain state_dict) and ``<name>.json`` (its description).
        seed: seeds the weights' initialisation, the sampling and the training phantoms.
        progress: optional ``(fraction, stage)`` callback.
        schedule: overrides of :data:`BRAIN_SCHEDULE` / :data:`CHEST_SCHEDULE` (for quick tests).
    """
    cb: Callable[[float, str], None] = progress or no_progress
    if name == "demo-brain-tumour":
        return train_brain(output_dir, seed, cb, **schedule)
    if name == "demo-chest-xray":
        return train_chest(output_dir, seed, cb, **schedule)
    raise ValueError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_NAMES)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m MedXAILib.training --demo NAME --seed 0 --output DIR``: retrain a demo model."""
    parser = argparse.ArgumentParser(prog="python -m MedXAILib.training", description=main.__doc__)
    parser.add_argument("--demo", required=True, choices=DEMO_NAMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(BUILTIN_DIR), help="folder for <name>.pt and <name>.json")
    parser.add_argument("--evaluate-only", action="store_true", help="only measure the saved model in --output")
    parser.add_argument("--held-out", type=int, default=None, help="number of held-out phantoms to evaluate")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    parser.add_argument("--resume", default=None, help="demo-chest-xray: a state_dict saved after --resume-stages")
    parser.add_argument("--resume-stages", type=int, default=1, help="how many stages --resume has completed")
    args = parser.parse_args(argv)
    from ..progress import Progress

    prog = Progress(args.progress)
    if args.evaluate_only:
        if args.demo == "demo-brain-tumour":
            result = evaluate_demo_segmentation(n=args.held_out or 20, model_dir=args.output, progress=prog)
        else:
            result = evaluate_demo_classifier(n=args.held_out or 200, model_dir=args.output, progress=prog)
    else:
        kwargs: dict[str, Any] = {"n_held_out": args.held_out} if args.held_out else {}
        if args.resume:
            kwargs["resume"] = (args.resume, args.resume_stages)
        result = train_demo_model(args.demo, args.output, args.seed, prog, **kwargs)
    print(json.dumps(result, indent=2), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
