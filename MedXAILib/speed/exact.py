"""The exact rows of the 3D case: the model function (its sliding window) against the whole-grid approximation.

``explain`` explains the model function by default (``exact``); the reference libraries are given one whole-grid
network pass, so the suite's other rows time the approximation for both. These rows time, on the same case:

- ``inference`` (implementation ``function``): the model function once, under ``no_grad`` — the exact floor;
- ``gradcam`` (``medxai-exact``): Grad-CAM of the model function (the CAM implementation's own window handling);
- ``occlusion``, ``kernelshap``, ``lime``, ``deletion_insertion``: each twice, ``medxai-whole-grid`` (the
  approximation) and ``medxai-exact`` (the sliding window, scoring perturbed inputs through
  :class:`~MedXAILib.explain.window_cache.WindowCache`), with the same parameters. The exact row carries the window
  passes it ran and an uncached evaluation's count, and its map's Spearman to the approximation's.

``deletion_insertion`` is :func:`MedXAILib.quality.faithfulness.deletion_insertion` of the exact Grad-CAM map
(16 steps with the random-order control); its approximation is the same call on a copy of the model without a patch
size, whose function is one whole-grid pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from ..models import Model
from .cases import BenchCase
from .measures import spearman

PERTURBATION_METHODS = ("occlusion", "kernelshap", "lime")


def whole_grid_model(model: Model) -> Model:
    """The same network described without a patch size: its function is one whole-grid pass."""
    return Model(model.network, dataclasses.replace(model.description, patch_size=None), device=str(model.device))


def run_exact(bench: Any, case: BenchCase, run_method: Callable[..., torch.Tensor], spacing: tuple[float, ...],
              names: list[str]) -> None:
    """Time the exact rows of ``case`` with ``bench.time`` (see the module docstring)."""
    from ..explain.base import get_method, parse_params

    cfg = bench.config
    exact = case.context(exact=True)
    plan = case.model.window_plan(tuple(exact.x.shape[2:]))
    kind = f"a sliding window of {len(plan.slices)} windows" if plan is not None else "one whole-grid pass"
    bench.log(f"  exact rows: the model function is {kind}")

    def inference() -> torch.Tensor:
        with torch.no_grad():
            return case.model.infer(exact.x)

    bench.time(case, "inference", "function", inference)
    if "gradcam" in names:
        bench.time(case, "gradcam", "medxai-exact", lambda: run_method(case.context(exact=True), "gradcam", {}))
    for name in PERTURBATION_METHODS:
        if name not in names:
            continue
        params = {**cfg.method_params(name, case.tag, spacing)}
        if name in ("kernelshap", "lime"):
            params.update({"score_scale": 1.0, "scale_error_samples": 0})
        _, approx = bench.time(case, name, "medxai-whole-grid", lambda n=name, p=params: run_method(
            case.context(), n, p), params)
        holder: dict[str, Any] = {}

        def run_exact_method(n: str = name, p: dict[str, Any] = params, holder: dict[str, Any] = holder
                             ) -> torch.Tensor:
            ctx = case.context(exact=True)
            method = get_method(n)
            merged = {**method.params, **parse_params(method, p)}
            with torch.no_grad():
                result = method.run(ctx, merged)
            holder["cache"] = result.details.get("window_cache")
            maps = result.maps.detach().float()
            return maps.sum(0, keepdim=True) if result.per_channel else maps[:1]

        row, out = bench.time(case, name, "medxai-exact", run_exact_method, params)
        if holder.get("cache"):
            row["window_cache"] = holder["cache"]
        if out is not None and approx is not None:
            row["spearman_to_approximation"] = round(spearman(out, approx), 6)
    if "gradcam" in names:
        _faithfulness_rows(bench, case)


def _faithfulness_rows(bench: Any, case: BenchCase) -> None:
    from ..explain import explain
    from ..quality.faithfulness import deletion_insertion

    heat = explain(case.model, case.volume, "gradcam", target=case.target).heatmap.array[0]
    approx_model = whole_grid_model(case.model)
    kwargs = {"steps": 16, "baseline": "blur", "batch_size": 4}
    bench.time(case, "deletion_insertion", "medxai-whole-grid", lambda: deletion_insertion(
        approx_model, case.volume, heat, case.target, **kwargs), kwargs)
    row, out = bench.time(case, "deletion_insertion", "medxai-exact", lambda: deletion_insertion(
        case.model, case.volume, heat, case.target, **kwargs), kwargs)
    if out is not None:
        row["window_cache"] = out["faithfulness_settings"].get("window_cache")
        row["deletion_auc"] = round(float(out["deletion_auc"]), 6)
        row["insertion_auc"] = round(float(out["insertion_auc"]), 6)


def exact_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``method → exact seconds / whole-grid seconds`` for every method of the 3D case timed both ways."""
    def one(name: str, impl: str) -> dict[str, Any] | None:
        found = [r for r in rows if r["model"].startswith("3d:") and r["method"] == name
                 and r["implementation"] == impl and r.get("median_s") is not None]
        return found[0] if found else None

    out = {}
    for name in PERTURBATION_METHODS + ("deletion_insertion",):
        approx, exact = one(name, "medxai-whole-grid"), one(name, "medxai-exact")
        if approx is not None and exact is not None and approx["median_s"] > 0:
            out[name] = exact["median_s"] / approx["median_s"]
    return out
