"""Sanity check: cascading model-parameter randomisation (Adebayo et al., "Sanity checks for saliency maps",
NeurIPS 2018), judged against the random-pair baseline of Arun et al. (Radiology: AI 2021).

Procedure:

1. The parameter-bearing modules of the network (modules that own parameters directly: convolutions, linear
   layers, affine norms, PReLUs) are listed in registration order, which for MONAI's networks follows the data path
   from input to output; the list is reversed so randomisation starts at the top (output) layer.
2. On a deep copy of the network (the model itself is never touched), stage ``s`` re-initialises the first
   ``n_s`` modules of the reversed list — *cascading*: each stage randomises everything the previous one did, plus
   the next layers down. Modules are re-initialised with their own ``reset_parameters()`` (PyTorch's default
   initialisation, seeded with ``seed + position``); a module without one gets N(0, 0.02²) weights and zero biases.
   With ``n_stages`` stages the cuts are ``n_1 = 1`` (the top layer only) and ``n_s = round(L · (s − 1)/(S − 1))``
   up to ``n_S = L`` (every layer randomised).
3. The explanation is recomputed at each stage for the *same target* (the trained model's target) and compared with
   the trained model's map by SSIM (normalised maps) and Spearman rank correlation.

Pass rule (stated precisely): a method **passes** when the SSIM between the trained map and the map of the fully
randomised network (the last stage) is **strictly below the baseline**. The baseline is, following Arun et al.,
the mean SSIM of random pairs of maps of *different images* (:func:`MedXAILib.metrics.similarity.random_pair_baseline`)
— in a cohort benchmark, the method's trained-model maps of different cases. For a single image, where no other
images are at hand, the default baseline is the mean SSIM between the trained map and copies of itself displaced
circularly by random offsets of a quarter to three quarters of the field of view along each axis (maps with the
same statistics but unrelated positions, ``baseline="shifted"``); this is stated in the result
(``sanity_baseline_kind``). A map that does not depend on the model (the ``random`` control with a fixed seed, an
edge detector) keeps SSIM 1 at every stage and fails.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import MethodError
from ..metrics.similarity import spearman, ssim
from ..models import Model
from ..targets import Target
from ..volume import Volume
from .stability import explain_map

DEFAULT_STAGES = 3


def parameter_modules(network: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(name, module)`` of every module owning parameters directly, from the top (output) layer down."""
    mods = [(n, m) for n, m in network.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return mods[::-1]


def stage_cuts(n_layers: int, n_stages: int = DEFAULT_STAGES) -> list[int]:
    """Cumulative numbers of randomised layers per stage: 1 (top layer), …, ``n_layers`` (all)."""
    if n_layers < 1:
        raise MethodError("the network has no parameters to randomise")
    n_stages = max(1, int(n_stages))
    if n_stages == 1:
        return [n_layers]
    cuts = [1] + [int(round(n_layers * s / (n_stages - 1))) for s in range(1, n_stages)]
    return sorted({max(1, min(n_layers, c)) for c in cuts})


def reinitialise(module: torch.nn.Module, seed: int) -> None:
    """Re-draw ``module``'s own parameters from its default initialisation, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        with torch.no_grad():
            for name, p in module.named_parameters(recurse=False):
                if name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, 0.02)


def randomised_model(model: Model, n_top: int, seed: int = 0) -> Model:
    """A copy of ``model`` whose top ``n_top`` parameter-bearing modules are re-initialised (the model is untouched)."""
    if isinstance(model.network, torch.jit.ScriptModule):
        raise MethodError("the randomisation sanity check needs a state_dict model; TorchScript modules cannot be "
                          "re-initialised layer by layer")
    network = copy.deepcopy(model.network)
    for pos, (_name, module) in enumerate(parameter_modules(network)[:n_top]):
        reinitialise(module, seed + pos)
    return model.with_network(network)


def shifted_baseline(heatmap: np.ndarray, n_pairs: int = 8, seed: int = 0) -> dict[str, float | int]:
    """Mean SSIM of a map against circularly displaced copies of itself (the single-image chance level)."""
    h = np.asarray(heatmap, dtype=np.float64)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(int(n_pairs)):
        shift = [int(rng.integers(max(1, n // 4), max(2, 3 * n // 4 + 1))) if n > 1 else 0 for n in h.shape]
        scores.append(ssim(h, np.roll(h, shift, axis=tuple(range(h.ndim)))))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "n_pairs": len(scores)}


def cascading_randomisation(
    model: Model,
    volume: Volume,
    method: str,
    target: Target | None = None,
    params: dict[str, Any] | None = None,
    trained_map: np.ndarray | None = None,
    *,
    n_stages: int = DEFAULT_STAGES,
    seed: int = 0,
    baseline: float | str = "shifted",
    maps_out: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Cascading randomisation of ``model`` and the similarity of ``method``'s maps (see the module docstring).

    Args:
        model, volume, method, target, params: what is explained (``target`` default: the model's default target).
        trained_map: the trained model's ``(K, J, I)`` map if already computed.
        n_stages: number of cascade stages. seed: re-initialisation seed.
        baseline: a number (e.g. a cohort's random-pair mean SSIM) or ``"shifted"`` (single-image fallback).
        maps_out: if given, each stage's map is appended to it.

    Returns:
        ``sanity_ssim`` / ``sanity_spearman`` (last, fully randomised stage), per-stage lists ``sanity_ssim_stages``,
        ``sanity_spearman_stages``, ``sanity_layers_randomised``, ``sanity_baseline_ssim``, ``sanity_passed``.
    """
    start = time.perf_counter()
    if target is None and method != "random":
        from ..targets import resolve_target

        target = resolve_target(model, volume)
    if trained_map is None:
        trained_map = explain_map(model, volume, method, target, params)
    base_map = np.asarray(trained_map, dtype=np.float64)
    if base_map.ndim == 4:
        base_map = base_map[0]
    layers = parameter_modules(model.network)
    cuts = stage_cuts(len(layers), n_stages)
    ssims: list[float] = []
    spears: list[float | None] = []
    for cut in cuts:
        rmodel = randomised_model(model, cut, seed)
        m = explain_map(rmodel, volume, method, target, params)
        if maps_out is not None:
            maps_out.append(m)
        ssims.append(ssim(base_map, m))
        spears.append(spearman(base_map, m))
    if isinstance(baseline, str):
        if baseline != "shifted":
            raise MethodError(f"unknown sanity baseline {baseline!r}; give a number or 'shifted'")
        b = shifted_baseline(base_map, seed=seed)
        baseline_value, kind = float(b["mean"]), "shifted copies of the trained map (single image)"
    else:
        baseline_value, kind = float(baseline), "given (random pairs of maps of different images)"
    return {
        "sanity_ssim": ssims[-1],
        "sanity_spearman": spears[-1],
        "sanity_ssim_stages": ssims,
        "sanity_spearman_stages": spears,
        "sanity_layers_randomised": cuts,
        "sanity_top_layers": [n for n, _ in layers[: min(3, len(layers))]],
        "sanity_baseline_ssim": baseline_value,
        "sanity_baseline_kind": kind,
        "sanity_passed": bool(ssims[-1] < baseline_value),
        "sanity_rule": "passed = SSIM(trained map, fully randomised map) < baseline SSIM",
        "sanity_seconds": round(time.perf_counter() - start, 4),
    }


def passes(last_stage_ssim: Sequence[float], baseline: float) -> bool:
    """The per-method cohort rule: mean last-stage SSIM over cases strictly below the random-pair baseline."""
    return bool(float(np.mean(list(last_stage_ssim))) < float(baseline))


__all__ = [
    "cascading_randomisation",
    "parameter_modules",
    "passes",
    "randomised_model",
    "reinitialise",
    "shifted_baseline",
    "stage_cuts",
]
