"""``explain(model, volume, method, …)``: run one method and return an :class:`Explanation` in input geometry.

The explained function. By default (``exact=True``, a parameter every method takes: ``--param exact=false``) the
method explains the model function itself, :meth:`~MedXAILib.models.Model.infer`, the function ``predict`` and the
quality metrics use; ``details["function"]`` records it (``exact: true``, the inferer and its settings, and the
explained score ``S`` computed by one extra function pass, ``record_passes``, which the cost's pass counts leave out
and its seconds include). With ``exact=False`` the method explains one whole-grid
network pass (or, on grids above ``max_voxels``, the patches described below) and ``details["function"]`` reports
the measured deviation of that approximation from the function on this input: ``delta_score`` (relative
``|S_approx − S| / |S|``) and ``argmax_dice`` (Dice of the two argmax/threshold label maps on the model grid, mean
over the classes present in either).

Large volumes (approximation only, ``exact=False``).
A method normally sees the whole model grid in one pass. When a segmentation model's grid holds more
than ``max_voxels`` voxels (default 128³ = 2 097 152, the size the demo U-Net explains in about 2–3 GB on a CPU), the
grid is cut into the model's sliding-window patches (``patch_size``, overlap 25 %) and the method runs on each patch
whose window holds part of the target. Each patch explains the target restricted to that patch (its score is the
target's weighted logit sum inside the patch, with the network seeing the patch only, as in sliding-window
inference). The patch maps are stitched by Gaussian-weighted averaging (σ = patch/8 per axis, MONAI's importance
map): ``map(v) = Σ_w g_w(v) m_w(v) / Σ_w g_w(v)`` over the patches that were run; voxels no such patch covers get 0.
Peak memory is then bounded by one patch's explanation, whatever the volume size. ``windowed=True/False`` forces
either mode. Methods that must see the whole grid (counterfactuals, which cannot be stitched from patches; IG with
``baseline=counterfactual``) say so (``Method.windowable_for``) and always run on the whole grid.

Map resampling (``map_resampling``; the ``map_resampling`` convention). A map is computed on the model grid and
brought onto the input grid by linear interpolation over the same physical box (``interpolate``, default): values
are kept, so where the two grids' voxel counts differ the map's *sum* changes by the ratio ``N_input / N_model``
(8.00x for a 1 mm input and a 2 mm model grid). Sum rules (IG completeness, LRP conservation, KernelSHAP
efficiency) therefore hold on the model grid, and ``details["map_resampling"]`` records both sums and the ratio.
``sum`` multiplies the interpolated map by ``N_model / N_input`` so that relevance is carried as mass and the sum on
the input grid matches the model grid's (to interpolation error). Methods that give their map on the input grid
themselves (counterfactuals: counterfactual − input, in input units) are not resampled (mode ``none``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, Prediction
from ..progress import ProgressCallback, no_progress, scaled
from ..resources import measure
from ..targets import Target, resolve_target
from ..volume import Volume
from .base import Cost, ExplainContext, Explanation, Method, MethodResult, channel_importance, get_method, parse_params

MAX_WHOLE_GRID_VOXELS = 128**3
WINDOW_OVERLAP = 0.25
MAP_RESAMPLING = ("interpolate", "sum")


def explain(
    model: Model,
    volume: Volume,
    method: str = "gradcam",
    target: Target | None = None,
    label: str | int | None = None,
    region: Volume | np.ndarray | None = None,
    voxel: Sequence[int] | None = None,
    prediction: Prediction | None = None,
    params: dict[str, Any] | None = None,
    progress: ProgressCallback = no_progress,
    windowed: bool | None = None,
    max_voxels: int = MAX_WHOLE_GRID_VOXELS,
    map_resampling: str = "interpolate",
) -> Explanation:
    """Explain ``model``'s output on ``volume`` with ``method``.

    Args:
        model: a loaded :class:`~MedXAILib.models.Model`.
        volume: the input, ``(C, K, J, I)`` with the model's channels.
        method: a registered method name (``python -m MedXAILib methods`` lists them).
        target: an already resolved target; otherwise built from ``label`` / ``region`` / ``voxel`` (defaults: the top
            class for classification, the predicted foreground for segmentation).
        prediction: a prediction already made on ``volume`` (saves a forward pass when resolving the default target).
        params: method parameters (strings are cast to each parameter's type).
        windowed: explain patch by patch (True), on the whole grid (False), or decide by size (None; see above).
        max_voxels: model-grid size above which ``windowed=None`` switches to patches.
        map_resampling: ``interpolate`` (default) or ``sum`` (sum-preserving; see the module docstring).

    Returns:
        an Explanation whose heat map has exactly ``volume``'s geometry.
    """
    if map_resampling not in MAP_RESAMPLING:
        raise MethodError(f"unknown map resampling {map_resampling!r}; use one of {', '.join(MAP_RESAMPLING)}")
    m = get_method(method)
    raw = dict(params or {})
    exact = _as_bool(raw.pop("exact", True))
    params = {**m.params, **parse_params(m, raw)}
    with measure(model.device) as cost_measure:
        extra_forward = 0
        prepared = None
        if target is None:
            progress(0.0, "resolving the target")
            needs_prediction = label is None or (model.task == "segmentation" and region is None and voxel is None)
            if prediction is None and needs_prediction:
                prediction, prepared = m.prediction(model, volume, params, exact)
                extra_forward = 1
            target = resolve_target(model, volume, label, region, voxel, prediction)
        m.check(model, target, params)
        if prepared is None:
            prepared = model.prepare(volume)
        ctx = ExplainContext(model, prepared, target, scaled(progress, 0.05, 0.95))
        ctx.exact = exact
        grid = tuple(prepared.model_shape)
        if exact and windowed:
            raise MethodError("windowed=True explains patches of the grid, an approximation; pass exact=false too")
        if windowed is None:
            windowed = not exact and model.task == "segmentation" and int(np.prod(grid)) > max_voxels
        if windowed and model.task == "segmentation" and m.windowable_for(params):
            result = _run_windowed(m, ctx, params)
        else:
            result = _run(m, ctx, params)
        result.details["function"] = function_record(ctx, exact, bool(windowed))
        progress(0.95, "mapping the map back to the input grid")
        if result.input_maps is not None:  # counterfactuals: already on the input grid, in input units
            maps = result.input_maps.astype(np.float32, copy=False)
            resampling: dict[str, Any] = {"mode": "none", "note": "the method gives its map on the input grid"}
        else:
            maps = model.to_input_grid(result.maps, prepared)
            resampling = _resampling_record(maps, result, prepared, map_resampling)
            if map_resampling == "sum":
                maps = maps * np.float32(resampling["sum_ratio_model_to_input_voxels"])
    heat = maps.sum(axis=0, keepdims=True) if result.per_channel else maps[:1]
    names = list(model.description.channel_names)
    channel_maps = volume.with_array(maps, channel_names=names) if result.per_channel else None
    importance = channel_importance(maps, names, target.region) if result.per_channel else None
    cost = Cost(
        forward_passes=ctx.forward_passes + extra_forward,
        backward_passes=ctx.backward_passes,
        seconds=cost_measure.seconds,
        peak_memory_bytes=cost_measure.peak_rss_bytes,
        peak_cuda_bytes=cost_measure.peak_cuda_bytes,
    )
    progress(1.0, "explanation done")
    return Explanation(
        heatmap=volume.with_array(heat.astype(np.float32), channel_names=["relevance"]),
        method=m.name,
        params=params,
        target=target,
        cost=cost,
        channel_maps=channel_maps,
        channel_importance=importance,
        details={**result.details, "map_resampling": resampling},
        display=m.display,
        volumes=result.volumes,
    )


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise MethodError(f"parameter exact={value!r}: give true or false")


def function_record(ctx: ExplainContext, exact: bool, windowed: bool) -> dict[str, Any]:
    """What function was explained; for an approximation, its measured deviation from the exact function."""
    model = ctx.model
    grid = tuple(ctx.x.shape[2:])
    record: dict[str, Any] = {"exact": exact, **model.function_info(grid)}
    with torch.no_grad():
        logits = getattr(ctx, "function_logits", None)
        reuse = exact and logits is not None  # the method already evaluated the function on ctx.x
        exact_logits = logits if reuse else model.infer(ctx.x)
        s_exact = float(ctx.score_of_logits(exact_logits)[0])
        record["score"] = s_exact
        record["record_passes"] = 0 if reuse else 1
        if exact:
            return record
        record["approximation"] = "patches of the grid, Gaussian-stitched" if windowed else "one whole-grid pass"
        approx = model.network_pass(ctx.x)
        record["record_passes"] = 2
    s_approx = float(ctx.score_of_logits(approx)[0])
    record["approximate_score"] = s_approx
    record["delta_score"] = abs(s_approx - s_exact) / max(abs(s_exact), 1e-12)
    if model.task == "segmentation":
        record["argmax_dice"] = _label_dice(model, exact_logits, approx)
    else:
        record["same_top_class"] = bool(int(exact_logits.argmax(1)[0]) == int(approx.argmax(1)[0]))
    return record


def _label_dice(model: Model, a: torch.Tensor, b: torch.Tensor) -> float:
    if model.description.output == "softmax":
        la, lb = a.argmax(1), b.argmax(1)
        classes = [c for c in range(1, a.shape[1]) if bool((la == c).any() or (lb == c).any())]
        pairs = [((la == c), (lb == c)) for c in classes]
    else:
        pairs = [((a[:, c] > 0), (b[:, c] > 0)) for c in range(a.shape[1])]
        pairs = [(p, q) for p, q in pairs if bool(p.any() or q.any())]
    if not pairs:
        return 1.0
    dice = [float(2 * (p & q).sum()) / max(float(p.sum() + q.sum()), 1.0) for p, q in pairs]
    return float(np.mean(dice))


def _resampling_record(maps: np.ndarray, result: MethodResult, prepared: Any, mode: str) -> dict[str, Any]:
    """How the map reached the input grid, and its sum on both grids (see the module docstring)."""
    n_model = float(np.prod(prepared.grid.model_shape))
    n_input = float(np.prod(prepared.grid.input_shape))
    on_model_grid = tuple(result.maps.shape[1:]) == tuple(prepared.grid.model_shape)
    model_sum = float(result.maps.detach().double().sum()) if on_model_grid else None
    factor = n_model / n_input if mode == "sum" else 1.0
    note = (f"values interpolated: sums (completeness, conservation) hold on the model grid and are "
            f"{n_input / n_model:.4g}x larger on the input grid" if mode == "interpolate"
            else "values scaled by N_model / N_input after interpolation: the input-grid sum keeps the model grid's")
    return {
        "mode": mode,
        "sum_ratio_model_to_input_voxels": n_model / n_input,
        "sum_model_grid": model_sum,
        "sum_input_grid": float(maps.astype(np.float64).sum()) * factor,
        "note": note,
    }


def _run(m: Method, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
    if m.needs_gradients:
        return m.run(ctx, params)
    with torch.no_grad():
        return m.run(ctx, params)


def sliding_windows(
    grid: Sequence[int], patch: Sequence[int], overlap: float = WINDOW_OVERLAP
) -> list[tuple[slice, ...]]:
    """Windows of size ``patch`` (clipped to ``grid``) covering ``grid`` with the given fractional overlap."""
    starts_per_axis = []
    for g, p in zip(grid, patch):
        p = min(int(p), int(g))
        step = max(1, int(p * (1 - overlap)))
        starts = list(range(0, max(g - p, 0) + 1, step))
        if starts[-1] != g - p:
            starts.append(g - p)
        starts_per_axis.append([(s, s + p) for s in starts])
    windows: list[tuple[slice, ...]] = [()]
    for axis in starts_per_axis:
        windows = [w + (slice(a, b),) for w in windows for a, b in axis]
    return windows


def gaussian_importance(shape: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Separable Gaussian weights over a patch (peak 1 at the centre, σ = ``sigma_scale`` × size per axis)."""
    weight = torch.ones(())
    for n in shape:
        c = (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-3)
        g = torch.exp(-0.5 * ((torch.arange(n, dtype=torch.float32) - c) / sigma) ** 2)
        weight = weight[..., None] * g
    return weight.clamp_min(1e-3)


def _run_windowed(m: Method, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
    """Explain patch by patch and stitch with Gaussian weights (see the module docstring)."""
    grid = tuple(ctx.x.shape[2:])
    patch = ctx.model.description.patch_size or [96] * len(grid)
    div = ctx.model.divisor()
    patch = [max(div, (min(int(p), g) // div) * div) if g >= div else g for p, g in zip(patch, grid)]
    windows = [w for w in sliding_windows(grid, patch) if ctx.weights[(slice(None), slice(None)) + w].abs().sum() > 0]
    acc: torch.Tensor | None = None
    norm = torch.zeros(grid, device=ctx.x.device)
    details: list[dict[str, Any]] = []
    per_channel = False
    for n, window in enumerate(windows):
        sub = ctx.for_window(window, scaled(ctx.progress, n / len(windows), (n + 1) / len(windows)))
        result = _run(m, sub, params)
        ctx.forward_passes += sub.forward_passes
        ctx.backward_passes += sub.backward_passes
        maps = result.maps.detach().float()
        if acc is None:
            acc = torch.zeros((maps.shape[0],) + grid, device=ctx.x.device)
            per_channel = result.per_channel
        g = gaussian_importance(maps.shape[1:]).to(maps.device)
        acc[(slice(None),) + window] += maps * g
        norm[window] += g
        details.append({"window": [[s.start, s.stop] for s in window], **result.details})
    if acc is None:
        raise RuntimeError("no window holds the target")  # unreachable: resolve_target refuses empty targets
    stitched = torch.where(norm > 0, acc / norm.clamp_min(1e-12), torch.zeros_like(acc))
    return MethodResult(stitched, per_channel=per_channel, details={"windowed": True, "patch": patch,
                                                                    "n_windows": len(windows), "windows": details})
