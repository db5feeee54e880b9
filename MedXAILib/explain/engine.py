"""``explain(model, volume, method, …)``: run one method and return an :class:`Explanation` in input geometry."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..models import Model, Prediction
from ..progress import ProgressCallback, no_progress, scaled
from ..resources import measure
from ..targets import Target, resolve_target
from ..volume import Volume
from .base import Cost, ExplainContext, Explanation, channel_importance, get_method, parse_params


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

    Returns:
        an Explanation whose heat map has exactly ``volume``'s geometry.
    """
    m = get_method(method)
    params = {**m.params, **parse_params(m, params or {})}
    with measure(model.device) as cost_measure:
        extra_forward = 0
        if target is None:
            progress(0.0, "resolving the target")
            needs_prediction = label is None or (model.task == "segmentation" and region is None and voxel is None)
            if prediction is None and needs_prediction:
                prediction = model.predict(volume)
                extra_forward = 1
            target = resolve_target(model, volume, label, region, voxel, prediction)
        m.check(model, target, params)
        prepared = model.prepare(volume)
        ctx = ExplainContext(model, prepared, target, scaled(progress, 0.05, 0.95))
        if m.needs_gradients:
            result = m.run(ctx, params)
        else:
            with torch.no_grad():
                result = m.run(ctx, params)
        progress(0.95, "mapping the map back to the input grid")
        maps = model.to_input_grid(result.maps, prepared)
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
        details=result.details,
        display=m.display,
    )
