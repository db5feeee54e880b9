"""One explanation's quality: :func:`evaluate_explanation` runs any metric family on one heat map;
:func:`model_based_metrics` is the hook of ``python -m MedXAILib evaluate --heatmap H --model M --input …``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError, MethodError
from ..models import Model
from ..targets import FOREGROUND, Target, resolve_target
from ..volume import Volume
from .faithfulness import deletion_insertion
from .sanity import cascading_randomisation
from .stability import method_explainer, scale_invariance, stability

ALL_METRICS = ("localisation", "complexity", "faithfulness", "stability", "sanity", "msfi")
#: Families scored outside :func:`evaluate_explanation`: ``msfi`` needs per-channel maps and modality weights
#: (:func:`MedXAILib.metrics.msfi.msfi`; the benchmark computes it from the explanation).
EXTERNAL_METRICS = ("msfi",)
#: Affordable on a laptop CPU: no re-explanation needed.
DEFAULT_METRICS = ("localisation", "complexity", "faithfulness")
MODEL_METRICS = ("faithfulness", "stability", "sanity")
DEFAULT_TOPK = (1.0, 5.0, 10.0)


def parse_metrics(text: str | Iterable[str] | None, default: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """A metric-family list from ``"a,b"`` or an iterable (``all`` = every family); unknown names are refused."""
    if text is None:
        return list(default)
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t and t.strip()]
    if "all" in items:
        return list(ALL_METRICS)
    unknown = [t for t in items if t not in ALL_METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)} or all")
    return [m for m in ALL_METRICS if m in items]


def localisation(heatmap: np.ndarray, region: np.ndarray, spacing_kji: np.ndarray,
                 topk: Sequence[float] = DEFAULT_TOPK, tolerance_mm: float = 0.0) -> dict[str, Any]:
    """Localisation summary of one map (see :func:`MedXAILib.metrics.localisation.localisation_summary`)."""
    from ..metrics.localisation import localisation_summary

    return localisation_summary(heatmap, region, spacing_kji, topk, tolerance_mm)


def complexity(heatmap: np.ndarray) -> dict[str, float]:
    """Sparseness (Gini) and entropy (nats) of ``|h|`` (:func:`MedXAILib.metrics.complexity.complexity_summary`)."""
    from ..metrics.complexity import complexity_summary

    return complexity_summary(heatmap)


def _region(reference: Volume | np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if reference is None:
        return None
    arr = reference.array[0] if isinstance(reference, Volume) else np.asarray(reference)
    if arr.ndim == 4:
        arr = arr[0]
    if tuple(arr.shape) != tuple(shape):
        raise InputError(f"the reference has shape {arr.shape}, the heat map {shape} (K, J, I)")
    region = arr > 0
    return region if region.any() else None


def evaluate_explanation(
    model: Model,
    volume: Volume,
    explanation: Any,
    reference: Volume | np.ndarray | None = None,
    metrics: str | Iterable[str] | None = None,
    *,
    method: str | None = None,
    target: Target | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    faithfulness_options: dict[str, Any] | None = None,
    stability_options: dict[str, Any] | None = None,
    sanity_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every requested quality metric of one explanation, as one flat dict.

    Args:
        model: the explained model; volume: the explained input ``(C, K, J, I)``.
        explanation: an :class:`~MedXAILib.explain.Explanation` (its method, parameters and target are reused),
            a heat-map Volume ``(1, K, J, I)`` or a ``(K, J, I)`` array on the input grid.
        reference: a label map Volume or a ``(K, J, I)`` mask on the input grid (non-zero = the reference region),
            for localisation; localisation is skipped without one.
        metrics: families among ``localisation, complexity, faithfulness, stability, sanity`` (default: the first
            three, which need no re-explanation).
        method, target, params: needed by stability and sanity when ``explanation`` is a bare map.
        seed: seeds tie-breaking, noise and re-initialisation.
        *_options: keyword arguments of :func:`~.faithfulness.deletion_insertion`, :func:`~.stability.stability`
            and :func:`~.sanity.cascading_randomisation`.

    Returns:
        flat metric keys (``pointing_game``, ``deletion_auc``, ``stability_ssim``, ``sanity_passed`` …), curves and
        per-perturbation / per-stage lists, and ``quality_seconds`` per family.
    """
    families = parse_metrics(metrics)
    if hasattr(explanation, "heatmap"):
        heat = explanation.heatmap.array[0].astype(np.float64)
        method = method or explanation.method
        target = target or explanation.target
        params = params if params is not None else dict(explanation.params)
    elif isinstance(explanation, Volume):
        heat = explanation.array[0].astype(np.float64)
    else:
        heat = np.asarray(explanation, dtype=np.float64)
        heat = heat[0] if heat.ndim == 4 else heat
    if tuple(heat.shape) != tuple(volume.shape):
        raise InputError(f"the heat map has shape {heat.shape}, the input {volume.shape} (K, J, I); "
                         "it must lie on the input's voxel grid")
    out: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    needs_method = [f for f in families if f in ("stability", "sanity")]
    if needs_method and not method:
        raise MethodError(f"{' and '.join(needs_method)} re-run the explainer; say which method made the map")
    if target is None and any(f in MODEL_METRICS for f in families):
        target = resolve_target(model, volume)
    for fam in families:
        if fam in EXTERNAL_METRICS:
            continue
        t0 = time.perf_counter()
        if fam == "localisation":
            region = _region(reference, volume.shape)
            if region is None:
                continue
            out.update(localisation(heat, region, volume.spacing_kji))
        elif fam == "complexity":
            out.update(complexity(heat))
        elif fam == "faithfulness":
            opts = {"seed": seed, **(faithfulness_options or {})}
            out.update(deletion_insertion(model, volume, heat, target, **opts))
        elif fam == "stability":
            assert method is not None
            fn = method_explainer(model, method, target, params)
            opts = {"seed": seed, "invariant_reason": scale_invariance(model), **(stability_options or {})}
            out.update(stability(volume, fn, heat, **opts))
        elif fam == "sanity":
            assert method is not None
            out.update(cascading_randomisation(model, volume, method, target, params, heat,
                                               **{"seed": seed, **(sanity_options or {})}))
        seconds[fam] = round(time.perf_counter() - t0, 4)
    out["quality_seconds"] = seconds
    return out


# ---- the `evaluate` command hook -----------------------------------------------------------------------------------
def _sidecar(heatmap_path: Path | None) -> dict[str, Any]:
    """The ``H.json`` the ``explain`` command writes beside a heat map (empty if absent or unreadable)."""
    if heatmap_path is None:
        return {}
    p = Path(str(heatmap_path) + ".json")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _target_from(described: dict[str, Any] | None, model: Model, volume: Volume) -> Target | None:
    """Rebuild a target from ``Target.describe()`` (a region drawn by the user is re-resolved as the predicted
    region of its class)."""
    if not described:
        return None
    kind, idx = described.get("kind"), int(described.get("class_index", FOREGROUND))
    name = model.description.class_names[idx] if 0 <= idx < model.description.n_classes else "foreground"
    if kind == "class":
        return Target("class", idx, name)
    if kind == "voxel" and described.get("voxel_ijk"):
        return resolve_target(model, volume, label=idx, voxel=described["voxel_ijk"])
    if kind == "region" and idx != FOREGROUND:
        return resolve_target(model, volume, label=idx)
    return None


def model_based_metrics(args: Any, heatmap: Volume, reference: Volume | None) -> dict[str, Any]:
    """Faithfulness, stability and sanity of a heat-map file, for ``python -m MedXAILib evaluate``.

    Reads ``args.model`` and ``args.input`` (one file per channel, or one multi-channel file). The method, its
    parameters and the target come from ``args.method`` (``--method``) or else from the ``H.json`` sidecar written
    by ``explain``. ``args.quality`` (``--quality``, comma-separated) picks the families (default: all three;
    without a known method, faithfulness only, and ``quality_skipped`` says why).
    """
    from ..io import read_inputs
    from ..models import load_model

    model = load_model(args.model, device=getattr(args, "device", None) or "cpu",
                       allow_unsafe_pickle=bool(getattr(args, "allow_unsafe_pickle", False)))
    volume = read_inputs([str(p) for p in args.input], model)
    diff = volume.geometry_difference(heatmap)
    if diff is not None:
        raise InputError(f"the heat map has {diff} than the input; it must lie on the input's voxel grid")
    side = _sidecar(getattr(args, "heatmap", None))
    method = getattr(args, "method", None) or side.get("method")
    params = side.get("params") if side.get("method") == method else None
    target = _target_from(side.get("target"), model, volume) if side.get("method") == method else None
    wanted = parse_metrics(getattr(args, "quality", None), MODEL_METRICS)
    wanted = [m for m in wanted if m in MODEL_METRICS]
    skipped: dict[str, str] = {}
    if not method:
        for fam in ("stability", "sanity"):
            if fam in wanted:
                skipped[fam] = "the method that made the map is unknown: pass --method or keep the explain sidecar"
        wanted = [m for m in wanted if m not in skipped]
    faith = {k: v for k, v in (("baseline", getattr(args, "faithfulness_baseline", None)),
                               ("curve", getattr(args, "faithfulness_curve", None))) if v}
    stab = {k: v for k, v in (("scaling", getattr(args, "stability_scaling", None)),
                              ("sensitivity", getattr(args, "max_sensitivity", None))) if v}
    result = evaluate_explanation(model, volume, heatmap, None, wanted, method=method, target=target,
                                  params=params, faithfulness_options=faith, stability_options=stab)
    result.pop("quality_seconds", None)
    if skipped:
        result["quality_skipped"] = skipped
    result["quality_inputs"] = {"model": str(args.model), "method": method, "metrics": wanted}
    return result
