"""Faithfulness: does removing what the map calls relevant change the model's output, and revealing it restore it?

Deletion and insertion curves (Samek et al., "Evaluating the visualization of what a deep neural network has
learned", IEEE TNNLS 2017 — "pixel flipping" / MoRF; Petsiuk, Das & Saenko, "RISE", BMVC 2018 — deletion and
insertion metrics):

- the map is brought onto the model grid (linear interpolation over the same physical box) and its voxels are
  ranked, most relevant first (signed value by default; ``order="absolute"`` ranks by ``|h|``). Ties are broken by
  a seeded random permutation, so a flat map (a CAM plateau) is not scanned in array order;
- at step ``s = 0 … S`` the top ``n_s = round(s/S · N)`` voxels (all channels of a voxel together) are
  **deleted** — replaced by the baseline — or **inserted** — copied from the input into the baseline image;
  with ``unit="supervoxel"`` whole cubes of ``supervoxel_mm`` millimetres are ranked by their mean relevance and
  each cut is snapped to the nearest cube boundary;
- the curve's x is the fraction of voxels changed ``n_s / N`` ∈ [0, 1] (equal to the fraction of the physical
  volume, the grid being regular); its y is the target score normalised by the score of the unperturbed input,
  ``y_s = f(x_s) / f(x)``. ``f`` is the target's probability by default (``score="probability"``: the class
  probability for a class target, the mean probability of the target class(es) inside the target region for a region
  target — ``Σ W ⊙ p / Σ W``), or the explained logit sum ``Σ W ⊙ logits`` (``score="logit"``). When
  ``|f(x)| ≤ 1e-12`` the curve is left unnormalised and ``normalised`` is False. ``curve="rise"`` reports the
  unnormalised curve ``y_s = f(x_s)`` as RISE does (its AUC is then in the score's units);
- AUC is the trapezoidal area under ``y(x)``. A faithful map gives a **low deletion AUC** and a **high insertion
  AUC**. The same curves with a uniformly random voxel order (``*_random``) are the control a map must beat.

Baselines (``baseline``): ``blur`` — each channel Gaussian-blurred with σ = ``blur_sigma_mm`` millimetres
(converted per axis with the model grid's spacing, so anisotropic voxels blur isotropically in the patient);
``mean`` — each channel's mean; ``noise`` — Gaussian noise with each channel's mean and standard deviation (seeded).
``rise`` — RISE's pair of baselines: deletion replaces voxels by a constant 0 (of the normalised input: the channel
mean for a z-scored model), insertion reveals them over the blurred image (``blur_sigma_mm``); the curves then start
(insertion) and end (deletion) at different baseline scores, ``score_baseline_insertion`` and ``score_baseline``.
All values are of the normalised input on the model grid (what the network sees).

All masked passes are batched (``batch_size`` inputs per forward pass) and run under ``torch.inference_mode``; through
a sliding-window model function only the windows that hold part of the target and whose input a step changed are
run, the others reuse the input's or the baseline's window outputs (:mod:`MedXAILib.explain.window_cache`; the scores
are the function's, ``faithfulness_settings["window_cache"]`` counts the passes).
Array layouts: maps ``(K, J, I)`` on the input grid; the model grid is ``(K, J, I)`` in 3D and ``(J, I)`` in 2D.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..errors import InputError
from ..explain.window_cache import WindowCache
from ..models import Model, PreparedInput
from ..targets import Target, resolve_target
from ..volume import Volume

BASELINES = ("blur", "mean", "noise")
#: Baseline choices of :func:`deletion_insertion` (``rise``: zeros for deletion, blur for insertion).
FAITHFULNESS_BASELINES = BASELINES + ("rise",)
CURVES = ("normalised", "rise")
SCORES = ("probability", "logit")
UNITS = ("voxel", "supervoxel")
DEFAULT_STEPS = 16
DEFAULT_BLUR_SIGMA_MM = 8.0


def model_grid_spacing(prepared: PreparedInput, spatial_dims: int) -> np.ndarray:
    """Voxel size (mm) of the model grid in tensor order: ``(k, j, i)`` in 3D, ``(j, i)`` in 2D."""
    return prepared.model_spacing.copy()


def map_to_model_grid(heatmap: np.ndarray, model: Model, prepared: PreparedInput) -> np.ndarray:
    """A ``(K, J, I)`` input-grid map resampled (linear) onto the model grid, returned as ``(*grid)`` float64."""
    h = np.asarray(heatmap, dtype=np.float32)
    if h.ndim == 4:
        h = h[0]
    if tuple(h.shape) != tuple(prepared.volume.shape):
        raise InputError(f"the heat map has shape {h.shape}, the input {prepared.volume.shape} (K, J, I); "
                         "the map must lie on the input's voxel grid")
    if not np.isfinite(h).all():
        raise InputError("the heat map holds NaN or infinite values")
    return model.input_to_model_grid(h[None], prepared)[0].cpu().numpy().astype(np.float64)


def make_baseline(
    x: torch.Tensor, kind: str, spacing: np.ndarray, blur_sigma_mm: float = DEFAULT_BLUR_SIGMA_MM, seed: int = 0
) -> torch.Tensor:
    """The ``(1, C, *grid)`` baseline image that deleted voxels take (see the module docstring).

    Args:
        x: ``(1, C, *grid)`` normalised input on the model grid.
        spacing: model-grid voxel size (mm) per spatial axis, tensor order.
    """
    if kind not in BASELINES:
        raise InputError(f"unknown faithfulness baseline {kind!r}; use one of {', '.join(BASELINES)}")
    arr = x.detach().cpu().numpy().astype(np.float64)[0]
    out = np.empty_like(arr)
    if kind == "blur":
        if blur_sigma_mm <= 0:
            raise InputError(f"blur_sigma_mm must be positive; got {blur_sigma_mm}")
        sigma = [blur_sigma_mm / float(s) for s in spacing]
        for c in range(arr.shape[0]):
            out[c] = ndimage.gaussian_filter(arr[c], sigma=sigma, mode="nearest")
    elif kind == "mean":
        out[:] = arr.reshape(arr.shape[0], -1).mean(1).reshape((-1,) + (1,) * (arr.ndim - 1))
    else:
        rng = np.random.default_rng(seed)
        for c in range(arr.shape[0]):
            out[c] = rng.normal(float(arr[c].mean()), float(arr[c].std()), size=arr[c].shape)
    return torch.from_numpy(out.astype(np.float32))[None].to(x.device)


def relevance_order(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat indices of ``values`` from most to least relevant; ties broken by a seeded random permutation."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    perm = np.random.default_rng(seed).permutation(flat.size)
    return perm[np.argsort(-flat[perm], kind="stable")]


def cube_labels(shape: tuple[int, ...], spacing: np.ndarray, size_mm: float) -> np.ndarray:
    """Regular cubes of ``size_mm`` mm over a grid (tensor order): ``(*shape)`` int64 cube ids."""
    if size_mm <= 0:
        raise InputError(f"supervoxel_mm must be positive; got {size_mm}")
    ids = np.zeros(shape, dtype=np.int64)
    for axis, (n, sp) in enumerate(zip(shape, spacing)):
        cells = np.floor(np.arange(n) * float(sp) / size_mm).astype(np.int64)
        m = int(cells.max()) + 1
        ids = ids * m + cells.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return ids


def supervoxel_order(values: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Voxel order grouping whole supervoxels (ranked by mean relevance), and the cumulative voxel counts at which
    each supervoxel ends (the only allowed cuts)."""
    flat = labels.ravel()
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=np.asarray(values, dtype=np.float64).ravel()) / counts
    sv_rank = relevance_order(means, seed)  # supervoxel indices, most relevant first
    position = np.empty(uniq.size, dtype=np.int64)
    position[sv_rank] = np.arange(uniq.size)
    order = np.argsort(position[inverse], kind="stable")
    return order, np.concatenate([[0], np.cumsum(counts[sv_rank])])


def step_counts(n: int, steps: int, boundaries: np.ndarray | None = None) -> np.ndarray:
    """Voxel counts ``n_s = round(s/S · N)`` for ``s = 0 … S`` (snapped to the nearest boundary if given)."""
    counts = np.rint(np.linspace(0, n, steps + 1)).astype(np.int64)
    if boundaries is not None:
        idx = np.abs(boundaries[None, :] - counts[:, None]).argmin(1)
        counts = boundaries[idx]
    return counts


def target_score(model: Model, logits: torch.Tensor, weights: torch.Tensor, kind: str) -> torch.Tensor:
    """``(B,)`` target score of a batch of logits: probability (weighted mean) or logit sum (see module docstring)."""
    if kind == "logit":
        return (logits * weights).flatten(1).sum(1)
    if kind != "probability":
        raise InputError(f"unknown faithfulness score {kind!r}; use one of {', '.join(SCORES)}")
    p = model.activation(logits.float())
    total = weights.flatten(1).sum(1).clamp_min(1e-12)
    return (p * weights).flatten(1).sum(1) / total


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under ``values(fractions)``."""
    f, v = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return float(np.sum((f[1:] - f[:-1]) * (v[1:] + v[:-1]) / 2.0))


def deletion_insertion(
    model: Model,
    volume: Volume,
    heatmap: np.ndarray | Volume,
    target: Target | None = None,
    *,
    steps: int = DEFAULT_STEPS,
    baseline: str = "blur",
    blur_sigma_mm: float = DEFAULT_BLUR_SIGMA_MM,
    unit: str = "voxel",
    supervoxel_mm: float = 16.0,
    order: str = "signed",
    score: str = "probability",
    batch_size: int = 8,
    random_control: bool = True,
    seed: int = 0,
    curve: str = "normalised",
) -> dict[str, Any]:
    """Deletion and insertion curves of a heat map and their AUCs (see the module docstring for the definitions).

    Args:
        model: the explained model.
        volume: the explained input ``(C, K, J, I)``.
        heatmap: ``(K, J, I)`` (or ``(1, K, J, I)`` / a Volume) relevance on the input grid.
        target: what was explained (default: the model's default target for this input).
        steps: number of steps S (S + 1 points per curve).
        baseline: ``blur``, ``mean``, ``noise`` or ``rise`` (zeros / blur). blur_sigma_mm: the blur's σ in mm.
        curve: ``normalised`` (``f(x_s) / f(x)``, default) or ``rise`` (unnormalised ``f(x_s)``, as RISE reports).
        unit: ``voxel`` (voxel percentiles) or ``supervoxel`` (cubes of ``supervoxel_mm`` mm).
        order: ``signed`` (most positive first) or ``absolute`` (largest ``|h|`` first).
        score: ``probability`` or ``logit``. batch_size: inputs per forward pass.
        random_control: also compute the curves of a random voxel order. seed: tie-breaking, noise, random order.

    Returns:
        ``deletion_auc``, ``insertion_auc`` (and ``deletion_auc_random``, ``insertion_auc_random``), the curves
        (``curve_fractions``, ``deletion_curve``, ``insertion_curve``, …), the unperturbed and baseline scores
        (``score_input``, ``score_baseline``) and ``faithfulness_settings`` (what was done, passes and seconds).
    """
    start = time.perf_counter()
    if steps < 1:
        raise InputError(f"faithfulness needs at least one step; got {steps}")
    if unit not in UNITS:
        raise InputError(f"unknown faithfulness unit {unit!r}; use one of {', '.join(UNITS)}")
    if order not in ("signed", "absolute"):
        raise InputError(f"unknown relevance order {order!r}; use signed or absolute")
    if score not in SCORES:
        raise InputError(f"unknown faithfulness score {score!r}; use one of {', '.join(SCORES)}")
    if curve not in CURVES:
        raise InputError(f"unknown faithfulness curve {curve!r}; use one of {', '.join(CURVES)}")
    if baseline not in FAITHFULNESS_BASELINES:
        raise InputError(f"unknown faithfulness baseline {baseline!r}; use one of {', '.join(FAITHFULNESS_BASELINES)}")
    heat = heatmap.array if isinstance(heatmap, Volume) else heatmap
    if target is None:
        target = resolve_target(model, volume)
    prepared = model.prepare(volume)
    x = prepared.tensor
    grid = tuple(x.shape[2:])
    spacing = model_grid_spacing(prepared, model.spatial_dims)
    values = map_to_model_grid(heat, model, prepared)
    if order == "absolute":
        values = np.abs(values)
    weights = target.weights(model, prepared)
    if baseline == "rise":
        base = torch.zeros_like(x)
        base_ins = make_baseline(x, "blur", spacing, blur_sigma_mm, seed)
    else:
        base = base_ins = make_baseline(x, baseline, spacing, blur_sigma_mm, seed)
    n = int(np.prod(grid))

    orders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if unit == "supervoxel":
        labels = cube_labels(grid, spacing, supervoxel_mm)
        vox_order, bounds = supervoxel_order(values, labels, seed)
        orders["map"] = (vox_order, step_counts(n, steps, bounds))
        if random_control:
            rnd_order, rnd_bounds = supervoxel_order(np.random.default_rng(seed + 1).random(values.shape), labels, seed)
            orders["random"] = (rnd_order, step_counts(n, steps, rnd_bounds))
    else:
        counts = step_counts(n, steps)
        orders["map"] = (relevance_order(values, seed), counts)
        if random_control:
            orders["random"] = (np.random.default_rng(seed + 1).permutation(n), counts)

    # Jobs: (key, order, count, kind); the unperturbed input and the baseline are scored once.
    jobs: list[tuple[str, np.ndarray | None, int, str]] = [("input", None, 0, "x"), ("baseline", None, 0, "b")]
    if base_ins is not base:
        jobs.append(("baseline_insertion", None, 0, "bi"))
    for name, (ordr, counts) in orders.items():
        for s, c in enumerate(counts):
            if 0 < c < n:
                jobs.append((f"{name}/deletion/{s}", ordr, int(c), "deletion"))
                jobs.append((f"{name}/insertion/{s}", ordr, int(c), "insertion"))
    scores: dict[str, float] = {}
    forward = 0
    bs = max(1, int(batch_size))
    # the model function predict and explain use; through a sliding window only the windows a step changed are rerun
    cache = WindowCache(model, weights, [x, base] + ([base_ins] if base_ins is not base else []), score, True, bs)
    with torch.inference_mode():
        for i in range(0, len(jobs), bs):
            chunk = jobs[i : i + bs]
            batch = []
            for _key, ordr, c, kind in chunk:
                if kind == "x":
                    batch.append(x)
                elif kind == "b":
                    batch.append(base)
                elif kind == "bi":
                    batch.append(base_ins)
                else:
                    assert ordr is not None
                    flat = np.zeros(n, dtype=bool)
                    flat[ordr[:c]] = True
                    mask = torch.from_numpy(flat.reshape((1, 1) + grid)).to(x.device)
                    batch.append(torch.where(mask, base, x) if kind == "deletion" else torch.where(mask, x, base_ins))
            vals = cache(torch.cat(batch, 0)).float().cpu().numpy()
            forward += len(chunk)
            for (key, *_), v in zip(chunk, vals):
                scores[key] = float(v)

    f_x, f_b = scores["input"], scores["baseline"]
    f_bi = scores.get("baseline_insertion", f_b)
    normalised = abs(f_x) > 1e-12 and curve == "normalised"
    denom = f_x if normalised else 1.0
    out: dict[str, Any] = {}
    fractions_of: dict[str, list[float]] = {}
    for name, (_ordr, counts) in orders.items():
        suffix = "" if name == "map" else "_random"
        fr = counts.astype(np.float64) / n
        dele = [f_x if c == 0 else f_b if c == n else scores[f"{name}/deletion/{s}"] for s, c in enumerate(counts)]
        ins = [f_bi if c == 0 else f_x if c == n else scores[f"{name}/insertion/{s}"] for s, c in enumerate(counts)]
        dele_n = np.asarray(dele) / denom
        ins_n = np.asarray(ins) / denom
        out[f"deletion_auc{suffix}"] = auc(fr, dele_n)
        out[f"insertion_auc{suffix}"] = auc(fr, ins_n)
        out[f"deletion_curve{suffix}"] = [float(v) for v in dele_n]
        out[f"insertion_curve{suffix}"] = [float(v) for v in ins_n]
        fractions_of[name] = [float(v) for v in fr]
    out["curve_fractions"] = fractions_of["map"]
    if "random" in fractions_of and unit == "supervoxel":
        out["curve_fractions_random"] = fractions_of["random"]
    out["score_input"] = f_x
    out["score_baseline"] = f_b
    if baseline == "rise":
        out["score_baseline_insertion"] = f_bi
    out["faithfulness_settings"] = {
        "steps": int(steps),
        "baseline": baseline,
        "blur_sigma_mm": float(blur_sigma_mm) if baseline in ("blur", "rise") else None,
        "curve": curve,
        "unit": unit,
        "supervoxel_mm": float(supervoxel_mm) if unit == "supervoxel" else None,
        "order": order,
        "score": score,
        "normalised": bool(normalised),
        "x": "fraction of model-grid voxels changed, most relevant first",
        "y": "f(x_s) / f(x)" if normalised else ("f(x_s) (unnormalised, as RISE)" if curve == "rise"
                                                 else "f(x_s) (f(x) ~ 0: not normalised)"),
        "forward_passes": forward,
        "window_cache": cache.stats.describe(),
        "seconds": round(time.perf_counter() - start, 4),
        "seed": int(seed),
    }
    if not math.isfinite(out["deletion_auc"]) or not math.isfinite(out["insertion_auc"]):
        raise InputError("the faithfulness curves are not finite (the model returned NaN or infinite scores)")
    return out


__all__ = [
    "BASELINES",
    "CURVES",
    "FAITHFULNESS_BASELINES",
    "auc",
    "cube_labels",
    "deletion_insertion",
    "make_baseline",
    "map_to_model_grid",
    "model_grid_spacing",
    "relevance_order",
    "step_counts",
    "target_score",
]
