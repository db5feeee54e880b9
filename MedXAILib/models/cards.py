"""Model cards, the default CAM layer, and the domain check.

A **model card** is a JSON-ready dict that every model shows (in ``models``, in sidecars, in Slicer before it runs)::

    {"name": str, "version": str, "training_data": str, "intended_use": str, "source": str,
     "cam_layer": str | None, "cam_layer_rule": str, "domain": {...} | None, "limitations": str | None}

It comes from the description's ``card`` entry (built-in models, ``model.json``), a MONAI bundle's
``metadata.json`` (``version``, ``data_source``, ``intended_use``), or an adapter; missing entries read "unknown".

The **domain** (``card["domain"]``) records what the model saw at training, per input channel::

    {"spacing_mm": [[lo, hi] per axis, tensor order], "size": [[lo, hi] per axis],
     "intensity": {channel: {"p1": float, "p99": float, "mean": float}}}

:func:`domain_check` compares an input with it and returns one line of warning (or None): a spacing or size outside
the recorded range by more than 25 %, or a channel whose median or 99th percentile lies outside the recorded
[p1, p99] band widened by half its width.

**Default CAM layer** (:func:`pick_cam_layer`): with no ``cam_layer`` in the description and no ``--layer``, one
dummy pass records every convolution that runs exactly once and the spatial size of its output; the choice is the
last one whose output keeps at least ¼ of the input resolution on every axis and is not the network's output
convolution (segmentation: the last decoder convolution at ≥ ¼ resolution), or the last convolution overall for a
classifier. The rule and the choice are recorded in the card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..volume import Volume
    from .model import Model

CAM_RULE = "last convolution run once whose output keeps >= 1/4 of the input resolution (not the output layer)"
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
    order: list[str] = []
    handles = []
    for name, mod in net.named_modules():
        if name and isinstance(mod, _CONV):
            def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    calls.setdefault(name, []).append(tuple(out.shape[2:]))
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
        candidates = [n for n in once if all(s * 4 >= side for s in calls[n][0])]
        if candidates and candidates[-1] == order[-1]:
            candidates = candidates[:-1]  # the output convolution gives the logits themselves
        choice = candidates[-1] if candidates else None
    model._default_cam_layer = choice  # type: ignore[attr-defined]
    return choice


def domain_stats(volume: Volume) -> dict[str, Any]:
    """Spacing, size and per-channel intensity statistics of an input (the quantities :func:`domain_check` uses)."""
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
        inten[name] = {"p1": float(np.percentile(v, 1)), "median": float(np.median(v)),
                       "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}
    stats["intensity"] = inten
    return stats


def domain_check(model: Model, volume: Volume) -> str | None:
    """One line saying how ``volume`` lies outside the model's recorded training domain, or None."""
    domain = (card_of(model).get("domain") or {}) if model is not None else {}
    if not domain:
        return None
    seen = domain_stats(volume)
    problems: list[str] = []
    for key, unit in (("spacing_mm", " mm"), ("size", "")):
        rng = domain.get(key)
        if not rng:
            continue
        values = seen[key][-len(rng):]
        for axis, (v, (lo, hi)) in enumerate(zip(values, rng)):
            if v < 0.75 * float(lo) or v > 1.25 * float(hi):
                problems.append(f"{key.replace('_mm', '')} {v:g}{unit} on axis {axis} (trained {lo:g}–{hi:g}{unit})")
                break
    names = list(model.description.channel_names)
    for c, name in enumerate(names):
        ref = (domain.get("intensity") or {}).get(name)
        got = list(seen["intensity"].values())[c] if c < len(seen["intensity"]) else None
        if not ref or got is None:
            continue
        lo, hi = float(ref["p1"]), float(ref["p99"])
        slack = 0.5 * max(hi - lo, 1e-6)
        if not (lo - slack <= got["median"] <= hi + slack and lo - slack <= got["p99"] <= hi + slack):
            problems.append(f"{name} intensities median {got['median']:.3g}, p99 {got['p99']:.3g} "
                            f"(trained p1–p99 {lo:.3g}–{hi:.3g})")
    if not problems:
        return None
    return f"input outside model {model.name!r}'s training domain: " + "; ".join(problems)
