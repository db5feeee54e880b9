"""Model cards, the default CAM layer, and the domain check.

A **model card** is a JSON-ready dict that every model shows (in ``models``, in sidecars, in Slicer before it runs)::

    {"name": str, "version": str, "training_data": str, "intended_use": str, "source": str,
     "cam_layer": str | None, "cam_layer_rule": str, "domain": {...} | None, "limitations": str | None}

It comes from the description's ``card`` entry (built-in models, ``model.json``), a MONAI bundle's
``metadata.json`` (``version``, ``data_source``, ``intended_use``), or an adapter; missing entries read "unknown".

The **domain** (``card["domain"]``) records what the model saw at training, per input channel::

    {"spacing_mm": [[lo, hi] per axis, tensor order], "size": [[lo, hi] per axis], "scale_free": bool,
     "intensity": {channel: {"median": [lo, hi], "p99": [lo, hi], "p99_over_median": [lo, hi]}}}

:func:`domain_check` compares an input with it and returns one line of warning (or None); see its docstring.

**Default CAM layer** (:func:`pick_cam_layer`): with no ``cam_layer`` in the description and no ``--layer``, one
dummy pass records every convolution that runs exactly once and the spatial size of its output; the choice is the
last one whose output keeps at least ¼ of the input resolution on every axis and has more channels than the network
has outputs, which rules out the output convolutions (segmentation: the last decoder convolution at ≥ ¼
resolution), or the last convolution overall for a classifier. The rule and the choice are recorded in the card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..volume import Volume


class Model(Protocol):
    """What this module needs of a :class:`~.model.Model` (which delegates ``card()`` and ``default_cam_layer()``
    here); a protocol, so that this module sits below :mod:`.model` and never imports it."""

    description: Any
    network: torch.nn.Module
    device: Any

    @property
    def name(self) -> str: ...

    def divisor(self) -> int: ...

    def default_cam_layer(self) -> str | None: ...

CAM_RULE = ("last convolution run once whose output keeps >= 1/4 of the input resolution and has more channels than "
            "the network has outputs (so not the output layers)")
_CONV = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def card_of(model: Model) -> dict[str, Any]:
    """The card of ``model`` (see the module docstring); never raises."""
    d = model.description
    given = dict(getattr(d, "card", None) or {})
    training = d.training or {}
    card: dict[str, Any] = {
        "name": given.get("name", d.name),
        "version": str(given.get("version", "unknown")),
        "training_data": given.get("training_data", training.get("data", "unknown")),
        "intended_use": given.get("intended_use", "unknown"),
        "source": given.get("source", d.source or "unknown"),
    }
    for key, value in given.items():
        card.setdefault(key, value)
    if d.cam_layer:
        card["cam_layer"], card["cam_layer_rule"] = d.cam_layer, "given by the model description"
    else:
        try:
            card["cam_layer"] = model.default_cam_layer()
        except Exception:  # noqa: BLE001 - a card must always be shown
            card["cam_layer"] = None
        card["cam_layer_rule"] = CAM_RULE
    card.setdefault("domain", None)
    return card


def pick_cam_layer(model: Model) -> str | None:
    """The default CAM layer by :data:`CAM_RULE` (one dummy pass on a small input; cached on the model)."""
    cached = getattr(model, "_default_cam_layer", "")
    if cached != "":
        return cached
    net = model.network
    if isinstance(net, torch.jit.ScriptModule):
        model._default_cam_layer = None  # type: ignore[attr-defined]
        return None
    d = model.description
    div = max(model.divisor(), 1) if d.task == "segmentation" else 1
    side = max(4 * div, 32 if d.task == "classification" else 16)
    shape = (1, d.n_channels) + (side,) * d.spatial_dims
    calls: dict[str, list[tuple[int, ...]]] = {}
    channels: dict[str, int] = {}
    order: list[str] = []
    handles = []
    for name, mod in net.named_modules():
        if name and isinstance(mod, _CONV):
            def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    calls.setdefault(name, []).append(tuple(out.shape[2:]))
                    channels[name] = int(out.shape[1])
                    order.append(name)
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(torch.zeros(shape, device=model.device))
    except Exception:  # noqa: BLE001 - a network that rejects the probe simply gets no default
        order = []
    finally:
        for h in handles:
            h.remove()
    once = [n for n in dict.fromkeys(order) if len(calls[n]) == 1]
    choice: str | None = None
    if d.task == "classification":
        choice = once[-1] if once else None
    else:
        n_out = d.n_classes
        candidates = [n for n in once if all(s * 4 >= side for s in calls[n][0]) and channels[n] > n_out]
        choice = candidates[-1] if candidates else None
    model._default_cam_layer = choice  # type: ignore[attr-defined]
    return choice


SCALE_FREE = ("zscore", "zscore_foreground", "percentile", "minmax")


def domain_stats(volume: Volume) -> dict[str, Any]:
    """Spacing, size and per-channel intensity statistics of an input (the quantities :func:`domain_check` uses).

    Intensities are taken over non-zero voxels when they are at least 1 % of the image (skull-stripped MRI)."""
    arr = volume.array
    stats: dict[str, Any] = {"spacing_mm": [float(s) for s in volume.spacing_kji], "size": list(volume.shape)}
    inten: dict[str, Any] = {}
    names = volume.channel_names or [f"channel{i}" for i in range(arr.shape[0])]
    for c, name in enumerate(names):
        vals = arr[c].astype(np.float32).ravel()
        if vals.size > 200_000:
            vals = vals[:: vals.size // 200_000]
        nz = vals[vals != 0]
        v = nz if nz.size > 0.01 * vals.size else vals
        p1, med, p99 = (float(x) for x in np.percentile(v, [1, 50, 99]))
        inten[name] = {"p1": p1, "median": med, "p99": p99,
                       "p99_over_median": p99 / med if abs(med) > 1e-6 else None}
    stats["intensity"] = inten
    return stats


def domain_of(volumes: list[Volume], normalize: str, note: str) -> dict[str, Any]:
    """The training domain of a model from volumes it was trained on (ranges over the volumes)."""
    stats = [domain_stats(v) for v in volumes]
    dims = len(stats[0]["spacing_mm"])

    def rng(values: list[float]) -> list[float]:
        return [float(min(values)), float(max(values))]

    names = list(stats[0]["intensity"])
    return {
        "spacing_mm": [rng([st["spacing_mm"][a] for st in stats]) for a in range(dims)],
        "size": [rng([st["size"][a] for st in stats]) for a in range(dims)],
        "scale_free": normalize in SCALE_FREE,
        "intensity": {c: {k: rng([st["intensity"][c][k] for st in stats]) for k in ("median", "p99")}
                      | ({"p99_over_median": rng([st["intensity"][c]["p99_over_median"] for st in stats])}
                         if all(st["intensity"][c]["p99_over_median"] is not None for st in stats) else {})
                      for c in names},
        "measured_on": note,
    }


def _outside(value: float, band: list[float]) -> bool:
    lo, hi = float(band[0]), float(band[1])
    slack = 0.5 * max(hi - lo, abs(hi), abs(lo))
    return not (lo - slack <= value <= hi + slack)


def domain_check(model: Model, volume: Volume) -> str | None:
    """One line saying how ``volume`` lies outside the model's recorded training domain, or None.

    Spacing and size: more than 25 % outside the trained range on an axis. Intensities (per channel): for a model
    that normalises scale away (z-score, percentile, min-max), the spread ``p99 / median`` outside the trained range
    widened by half its magnitude; otherwise the median or the 99th percentile outside theirs.
    """
    domain = card_of(model).get("domain") or {}
    if not domain:
        return None
    seen = domain_stats(volume)
    problems: list[str] = []
    for key, unit in (("spacing_mm", " mm"), ("size", "")):
        bands = domain.get(key)
        if not bands:
            continue
        values = seen[key][-len(bands):]
        for axis, (v, (lo, hi)) in enumerate(zip(values, bands)):
            if v < 0.75 * float(lo) or v > 1.25 * float(hi):
                problems.append(f"{key.replace('_mm', '')} {v:g}{unit} on axis {axis} (trained {lo:g}-{hi:g}{unit})")
                break
    got_all = list(seen["intensity"].values())
    for c, name in enumerate(model.description.channel_names):
        ref = (domain.get("intensity") or {}).get(name)
        if not ref or c >= len(got_all):
            continue
        got = got_all[c]
        keys = ["p99_over_median"] if domain.get("scale_free") and "p99_over_median" in ref else ["median", "p99"]
        for k in keys:
            if got.get(k) is not None and _outside(float(got[k]), ref[k]):
                lo, hi = ref[k]
                problems.append(f"{name} intensities {k.replace('_', ' ')} {got[k]:.3g} (trained {lo:.3g}-{hi:.3g})")
                break
    if not problems:
        return None
    return f"input outside model {model.name!r}'s training domain: " + "; ".join(problems)
