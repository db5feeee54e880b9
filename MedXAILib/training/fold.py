"""One fold of ``train``: fit a fresh network on the training cases, evaluate it on the held-out ones, save it
atomically (resumable through a configuration fingerprint)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ModelError
from ..models.description import ModelDescription
from ..progress import ProgressCallback, no_progress, scaled
from .config import CLS_METRICS, SEG_METRICS, TrainConfig, fold_seed, pick_cam_layer, set_determinism
from .data import CaseCache, Plan, fold_description, lr_at, sample_patch


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
    # keys that change the weights only when set, so that folds trained before they existed keep their fingerprint
    if config.finding is not None:
        data["finding"] = config.finding
    if config.artifact:
        data["artifact"] = dict(sorted(config.artifact.items()))
    if config.explained:
        data["explanation"] = [config.explanation_loss, float(config.explanation_weight), config.explanation_mask]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def finished_fold(folder: Path, fp: str) -> dict[str, Any] | None:
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
    from ..metrics.classification import classification_metrics
    from ..metrics.segmentation import segmentation_metrics
    from ..volume import Volume

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
    training, desc, state = fit_fold(config, plan, fold, cache, progress)
    write_fold(Path(config.output), fold.index, desc, state)
    return training


def fit_fold(
    config: TrainConfig,
    plan: Plan,
    fold: Any,
    cache: CaseCache,
    progress: ProgressCallback = no_progress,
) -> tuple[dict[str, Any], ModelDescription, dict[str, torch.Tensor]]:
    """Train and evaluate one fold without writing anything (a Dask worker needs no write access).

    Returns ``(training block, the fold's description with that block, state_dict on the CPU)``; seeded by
    :func:`~.config.fold_seed` and run on ``config.threads`` CPU threads, so the same fold gives the same weights
    in any process.
    """
    from ..cluster import worker_label
    from ..models import Model
    from ..models.monai_network import build_network

    k = fold.index
    out = Path(config.output)
    by_id = {c.case_id: c for c in plan.dataset.cases}
    train_cases = [by_id[c] for c in fold.train]
    val_cases = [by_id[c] for c in fold.test]
    seed = fold_seed(config.seed, k)
    from ..models import resolve_device

    set_determinism(seed, resolve_device(config.device), int(config.threads))
    rng = np.random.default_rng(seed)
    network = build_network(plan.architecture, "--architecture")
    if plan.task == "segmentation":
        example = (1, len(plan.channel_names), *plan.patch)  # type: ignore[misc]
    else:
        size = plan.preprocessing.get("input_size") or [64] * plan.spatial_dims
        example = (1, len(plan.channel_names), *size)
    cam_layer = pick_cam_layer(network, plan.task, example)
    desc = fold_description(
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
    penalised = None
    if config.explained:  # right for the right reasons: where the input gradient is penalised, per case
        from .explanation_loss import penalty_masks

        penalised = penalty_masks(train_cases, model, plan, config)
        progress(0.1, f"fold {k}: {len(penalised)} explanation masks ready")
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
    epoch_penalties: list[float] = []
    step = 0
    mb = None
    for epoch in range(config.epochs):
        losses, penalties = [], []
        for _ in range(config.steps_per_epoch):
            idx = rng.integers(len(data), size=config.batch_size)
            if plan.task == "segmentation":
                # the penalised region travels as one more channel, so it is cut and flipped with the image
                pairs = [sample_patch(rng, data[i][0] if penalised is None else np.concatenate(
                    [data[i][0], penalised[i][None]]), data[i][1], plan.patch) for i in idx]  # type: ignore[arg-type]
                xb = torch.from_numpy(np.stack([p[0] for p in pairs]))
                if penalised is not None:
                    xb, mb = xb[:, :-1], xb[:, -1:]
                yb = torch.from_numpy(np.stack([p[1][None].astype(np.int64) for p in pairs]))
                # intensity jitter: per-sample, per-channel scale and shift
                scale = torch.from_numpy(rng.uniform(0.9, 1.1, size=(len(idx), xb.shape[1])).astype(np.float32))
                shift = torch.from_numpy(rng.uniform(-0.1, 0.1, size=(len(idx), xb.shape[1])).astype(np.float32))
                shape = (len(idx), xb.shape[1]) + (1,) * (xb.ndim - 2)
                xb = xb * scale.view(shape) + shift.view(shape)
            else:
                xb = torch.from_numpy(np.stack([data[i][0] for i in idx]))
                yb = torch.from_numpy(np.stack([data[i][1] for i in idx]))
                if penalised is not None:
                    mb = torch.from_numpy(np.stack([penalised[i][None] for i in idx]))
                # exposure jitter (no flips: they would change the anatomy, e.g. the heart's side)
                shape = (len(idx),) + (1,) * (xb.ndim - 1)
                if unit_range:  # a random gamma on [0, 1]-scaled images
                    gam = torch.from_numpy(rng.uniform(0.8, 1.25, size=shape).astype(np.float32))
                    xb = xb.clamp(0.0, 1.0) ** gam
                else:
                    xb = xb * torch.from_numpy(rng.uniform(0.9, 1.1, size=shape).astype(np.float32))
            for g in opt.param_groups:
                g["lr"] = lr_at(config.lr, step, total)
            opt.zero_grad(set_to_none=True)
            xb = xb.to(device)
            if penalised is None:
                loss = loss_fn(network(xb), yb.to(device))
            else:
                from .explanation_loss import rrr_penalty

                xb.requires_grad_(True)
                out = network(xb)
                penalty = rrr_penalty(out, xb, mb.to(device), "softmax" if plan.task == "segmentation" else "sigmoid")
                loss = loss_fn(out, yb.to(device)) + float(config.explanation_weight) * penalty
                penalties.append(float(penalty.detach()))
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
        if penalties:
            epoch_penalties.append(float(f"{np.mean(penalties):.5g}"))
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
        "worker": worker_label(),
        "versions": _versions(),
        "fingerprint": fp,
    }
    if config.finding is not None:
        training["finding"] = config.finding
    if config.artifact:
        training["artifact"] = dict(config.artifact)
    if config.explained:
        from .explanation_loss import description as explanation_description

        training["explanation_loss"] = {**explanation_description(config), "epoch_penalties": epoch_penalties}
        training["loss"] = f"{loss_name} + lambda * right-for-the-right-reasons penalty"
    desc.training = training
    state = {n: t.detach().cpu() for n, t in network.state_dict().items()}
    return training, desc, state


def _versions() -> dict[str, str]:
    import monai

    return {"torch": torch.__version__, "monai": monai.__version__}


def write_fold(out: Path, k: int, desc: ModelDescription, state: dict[str, torch.Tensor]) -> Path:
    """Write ``model.json`` + ``weights.pt`` (``state``, a CPU ``state_dict``) into a temporary folder beside
    ``fold{k}`` and rename it into place."""
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"fold{k}"
    tmp = out / f".fold{k}.{os.getpid()}.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        torch.save(state, tmp / "weights.pt")
        from ..io import _json_default

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
