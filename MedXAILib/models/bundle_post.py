"""A MONAI bundle's postprocessing, run as MONAI runs it: the label map and the probabilities of a bundle.

**Label map** — the bundle's own postprocessing (every allowed step, in its order) applied to the logits on the model
grid, exactly as MONAI's evaluator applies it to ``pred``; when those steps contain no ``Invertd``, MONAI's
``Invertd`` of the preprocessing (nearest neighbour) is appended to bring the labels back to the input grid. A
result with one channel is the label map; one with several (e.g. BraTS's three sigmoid masks, whose ``Lambdad``
mapping is code and skipped) leaves the label map to MedXAI's rule on the probabilities (:class:`~.bundle.BundleModel`).

**Probabilities** — the bundle's own activation step when its postprocessing starts with one (``Activationsd``),
else ``softmax`` or ``sigmoid`` as the output type says: ``sigmoid`` when the postprocessing discretises by a
threshold without argmax (independent channels) or the network has one output channel, ``softmax`` otherwise. They
are mapped back with the bundle's own ``Invertd`` when it follows the activation (as in the Model Zoo's spleen and
BraTS bundles), else with MONAI's ``Invertd`` of the preprocessing with linear interpolation.

When the bundle's leading steps are ``Activationsd`` … ``Invertd`` the labels continue from the probabilities (the
same objects, computed once), which is what MONAI computes as well.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Steps that keep values continuous (an activation, the inverse, typing and device moves).
PROB_STEPS = ("Activationsd", "Activations", "Invertd", "EnsureTyped", "ToTensord", "ToDeviced", "CastToTyped")
ACTIVATIONS = ("Activationsd", "Activations")
DISCRETE = ("AsDiscreted", "AsDiscrete")


def _name(t: Any) -> str:
    return type(t).__name__


def _flags_raw(value: Any) -> list[Any]:
    """A MONAI per-key setting (one value, a tuple per key, or a dict) as a list."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _flags(value: Any) -> list[bool]:
    return [bool(v) for v in _flags_raw(value)]


@dataclass
class PostPlan:
    """What :func:`run_postprocessing` does (built once per bundle by :func:`plan_postprocessing`).

    Attributes:
        output: ``softmax`` or ``sigmoid`` (what the probabilities are).
        steps: the bundle's allowed postprocessing steps, in order (MONAI objects).
        shared: how many leading steps make the probabilities and start the labels (0: computed apart).
        default_activation: the activation MedXAI adds (None when the bundle names one).
        label_invert: whether MedXAI appends ``Invertd`` (nearest) to the label steps.
        notes: what was done, in words.
    """

    output: str
    steps: list[Any]
    shared: int
    default_activation: Any = None
    label_invert: bool = False
    notes: list[str] = field(default_factory=list)


def plan_postprocessing(steps: list[Any], n_out: int) -> PostPlan:
    """The :class:`PostPlan` of a bundle's allowed postprocessing ``steps`` for a network with ``n_out`` outputs."""
    from monai.transforms import Activationsd

    leading: list[Any] = []
    for t in steps:
        if _name(t) not in PROB_STEPS:
            break
        leading.append(t)
    act = next((t for t in leading if _name(t) in ACTIVATIONS), None)
    names = " → ".join(_name(t) for t in steps) or "nothing"
    notes: list[str] = []
    if act is not None:
        output = "sigmoid" if any(_flags(getattr(act, "sigmoid", False))) else "softmax"
        default = None
    else:
        disc = next((t for t in steps if _name(t) in DISCRETE), None)
        argmax = disc is not None and any(_flags(getattr(disc, "argmax", False)))
        threshold = disc is not None and any(v is not None for v in _flags_raw(getattr(disc, "threshold", None)))
        if n_out == 1 or (threshold and not argmax):
            output, why = "sigmoid", ("one output channel" if n_out == 1 else
                                      "the postprocessing thresholds each channel")
        else:
            output, why = "softmax", ("the postprocessing takes the argmax" if argmax else
                                      "several exclusive output channels")
        default = Activationsd(keys="pred", sigmoid=output == "sigmoid", softmax=output == "softmax")
        notes.append(f"the bundle's postprocessing ({names}) names no activation; the probabilities are the {output} "
                     f"of its outputs ({why}), mapped back with MONAI's Invertd (linear)")
    shared = len(leading) if act is not None and any(_name(t) == "Invertd" for t in leading) else 0
    label_invert = not any(_name(t) == "Invertd" for t in steps)
    if not steps:
        notes.append("the bundle has no postprocessing: the label map is MedXAI's rule on the probabilities")
    elif label_invert:
        notes.append(f"the label map is the bundle's postprocessing ({names}) on the model grid, then MONAI's Invertd "
                     "(nearest) to the input grid, as the postprocessing has no Invertd")
    elif act is None or shared == 0:
        notes.append(f"the label map is the bundle's own postprocessing ({names}) on the model grid's outputs")
    return PostPlan(output, list(steps), shared, default, label_invert, notes)


def run_postprocessing(plan: PostPlan, logits: torch.Tensor, data: dict[str, Any], image_key: str,
                       preprocessing: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(probabilities (N, I, J, K), labels (1, I, J, K) or None)`` on the input grid, in MONAI's axis order.

    ``logits`` is ``(N, *model grid)``; ``data`` the preprocessed dict (its ``image_key`` entry carries the applied
    operations ``Invertd`` undoes). ``labels`` is None when the bundle's postprocessing leaves several channels.
    """
    from monai.data import MetaTensor
    from monai.transforms import Compose, Invertd

    img = data[image_key]

    def start() -> dict[str, Any]:
        return {**data, "pred": MetaTensor(logits.detach().float().cpu(), meta=copy.deepcopy(img.meta))}

    def invert(nearest: bool) -> Any:
        return Invertd(keys="pred", transform=preprocessing, orig_keys=image_key, nearest_interp=nearest,
                       to_tensor=True)

    if plan.shared:
        work = Compose(plan.steps[:plan.shared])(start())
        probs = np.array(torch.as_tensor(work["pred"]).float().cpu().numpy(), copy=True)
        rest = plan.steps[plan.shared:]
        lab = Compose(rest)({**work})["pred"] if rest else None
    else:
        prob_steps = [plan.default_activation] if plan.default_activation is not None else [
            next(t for t in plan.steps if _name(t) in ACTIVATIONS)]
        work = Compose([*prob_steps, invert(False)])(start())
        probs = np.array(torch.as_tensor(work["pred"]).float().cpu().numpy(), copy=True)
        label_steps = list(plan.steps) + ([invert(True)] if plan.label_invert else [])
        lab = Compose(label_steps)(start())["pred"] if plan.steps else None
    if lab is None:
        return probs, None
    lab_np = torch.as_tensor(lab).cpu().numpy()
    return probs, (np.rint(lab_np) if lab_np.shape[0] == 1 else None)
