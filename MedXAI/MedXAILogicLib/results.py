"""Turning the CLI's JSON outputs into table rows and one-line texts for the panel (no Qt; MRML only for tables)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from . import bridge

#: The keys of an ``explain`` sidecar that say how to make the same heat map again (kept on the heat-map node).
EXPLANATION_KEYS = ("model", "method", "params", "target")


def quality_numbers(data: Mapping[str, Any]) -> dict[str, float]:
    """The scalar metrics of ``evaluate --heatmap``'s JSON, in its order (curves, settings and inputs left out;
    a yes/no such as ``sanity_passed`` becomes 1 or 0)."""
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            out[str(key)] = 1.0 if value else 0.0
        elif isinstance(value, (int, float)) and value is not None:
            out[str(key)] = float(value)
    return out


METRIC_COLUMNS = ("dice", "iou", "hd95_mm", "volume_ml_prediction", "volume_ml_reference")


def metrics_table(scene: Any, metrics: Mapping[str, Any], names: Mapping[int, str], title: str,
                  table_node: Any = None) -> Any:
    """A table node (``table_node``, replaced, or a new one) with one row per label: segment, Dice, IoU, HD95 (mm),
    volumes (mL)."""
    rows = []
    for key, values in (metrics.get("labels") or {}).items():
        label = int(key) if str(key).isdigit() else key
        row: list[object] = [names.get(label, str(key)) if isinstance(label, int) else str(key)]
        for column in METRIC_COLUMNS:
            value = values.get(column) if isinstance(values, dict) else None
            row.append(float(value) if isinstance(value, (int, float)) and value is not None else None)
        rows.append(row)
    return bridge.add_table_node(scene, title, ["segment", "Dice", "IoU", "HD95 (mm)",
                                                "volume prediction (mL)", "volume reference (mL)"], rows, table_node)


def _default_pairs(prediction: Any, reference: Any) -> list[tuple[Any, Any]]:
    p_names = {prediction.GetSegmentation().GetSegment(s).GetName(): s for s in bridge.segment_ids(prediction)}
    r_names = {reference.GetSegmentation().GetSegment(s).GetName(): s for s in bridge.segment_ids(reference)}
    pairs = [(name, name) for name in p_names if name in r_names]
    if pairs:
        return pairs
    return [(list(p_names.values()), list(r_names.values()))]


def _numbers(data: Any) -> dict[str, float]:
    """A flat ``name → number`` dict from a dict or list (tolerant of the CLI's exact JSON layout)."""
    if isinstance(data, dict):
        return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if isinstance(data, list):
        out = {}
        for index, item in enumerate(data):
            if isinstance(item, (int, float)):
                out[str(index)] = float(item)
            elif isinstance(item, dict):
                name = item.get("name", item.get("class", index))
                value = item.get("probability", item.get("score", item.get("value")))
                if isinstance(value, (int, float)):
                    out[str(name)] = float(value)
        return out
    return {}


def _importance(sidecar: Mapping[str, Any], node_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-sequence importance as ``{column: {sequence: share}}`` (e.g. ``overall`` and ``inside target``).

    Accepts ``{"overall": {...}, "inside_target": {...}}`` (the CLI's sidecar), a flat ``{sequence: value}``
    dict, or a list in channel order.
    """
    for key in ("channel_importance", "per_channel_importance", "importance", "sequence_importance"):
        value = sidecar.get(key)
        if value is None:
            continue
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            return {str(k).replace("_", " "): _numbers(v) for k, v in value.items() if isinstance(v, dict)}
        values = _numbers(value)
        if isinstance(value, list) and len(values) == len(node_names):
            values = {node_names[i]: v for i, v in enumerate(values.values())}
        return {"importance": values} if values else {}
    return {}


def format_cost(cost: Mapping[str, Any]) -> str:
    """A one-line human description of an explanation's (estimated) cost."""
    parts = []
    for key, label in (("forward_passes", "forward passes"), ("backward_passes", "backward passes")):
        if key in cost:
            parts.append(f"{cost[key]} {label}")
    seconds = ("seconds", "estimated_seconds", "time_s")
    memory = ("peak_memory_bytes", "estimated_peak_memory_bytes", "memory_bytes")
    for key in seconds:
        if isinstance(cost.get(key), (int, float)):
            parts.append(f"about {float(cost[key]):.1f} s")
            break
    for key in memory:
        if isinstance(cost.get(key), (int, float)):
            parts.append(f"{float(cost[key]) / 2**20:.0f} MiB peak memory")
            break
    if "method" in cost:
        parts.insert(0, str(cost["method"]))
    return ", ".join(parts) or ", ".join(f"{k}: {v}" for k, v in cost.items())
