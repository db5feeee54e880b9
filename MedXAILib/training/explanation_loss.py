"""Training with an explanation constraint: "right for the right reasons" (Ross, Hughes & Doshi-Velez, IJCAI 2017).

The loss of a batch becomes ``task loss + λ · penalty`` with

    penalty = mean over samples n of  Σ_d  A_nd · (∂/∂x_nd  Σ_k log p_nk)²

where ``x`` is the network input on the model grid (every channel, every voxel d), ``p_nk`` the model's
probabilities (sigmoid outputs count as two-class distributions, ``log p + log(1 − p)``; softmax segmentation sums
``log p`` over classes and voxels) and ``A`` is 1 where the input must *not* matter:

- ``--explanation-mask artifact``: the planted artifact's footprint on each case (drawn or not, see
  :mod:`MedXAILib.shortcut.confound`), i.e. the allowed region is everywhere but the artifact;
- ``--explanation-mask annotation``: outside the finding's annotation — the union of its boxes on a positive
  classification case (a negative case is not constrained: it has no right place), the finding's region of the
  reference label map for segmentation.

Ross et al. sum over samples; the mean over the batch used here keeps λ independent of the batch size. The input
gradient is taken with ``create_graph=True`` so that the penalty is differentiated with respect to the weights (a
double backward: about two to three times the cost of a plain step). λ = 0 trains exactly as without the option.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

EXPLANATION_LOSSES = ("rrr",)
EXPLANATION_MASKS = ("annotation", "artifact")


def check_explanation_options(config: Any) -> None:
    """Refuse explanation-loss options that cannot work together (raises :class:`InputError`)."""
    loss, mask = config.explanation_loss, config.explanation_mask
    weight = float(config.explanation_weight)
    if loss is not None and loss not in EXPLANATION_LOSSES:
        raise InputError(f"--explanation-loss must be one of {', '.join(EXPLANATION_LOSSES)}; got {loss!r}")
    if not (math.isfinite(weight) and weight >= 0):
        raise InputError(f"--explanation-weight must be a number ≥ 0; got {config.explanation_weight}")
    if loss is None and (mask is not None or weight > 0):
        raise InputError("--explanation-mask and --explanation-weight need --explanation-loss rrr")
    if loss is None:
        return
    if mask not in EXPLANATION_MASKS:
        raise InputError(f"--explanation-loss {loss} needs --explanation-mask {' or '.join(EXPLANATION_MASKS)}")
    if mask == "artifact" and not config.artifact:
        raise InputError("--explanation-mask artifact needs a planted artifact (--artifact tag|patch|intensity)")
    if config.task == "classification" and not config.finding:
        raise InputError("--explanation-loss needs --finding (the finding whose reasons are constrained)")


def log_probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """``Σ_k log p_k`` per output element: sigmoid outputs as two-class distributions, softmax over axis 1."""
    if output == "sigmoid":
        return F.logsigmoid(logits) + F.logsigmoid(-logits)
    return F.log_softmax(logits, dim=1)


def rrr_penalty(logits: torch.Tensor, inputs: torch.Tensor, penalised: torch.Tensor, output: str) -> torch.Tensor:
    """The right-for-the-right-reasons penalty of one batch (see the module docstring).

    Args:
        logits: the network's output for ``inputs`` (built with ``inputs.requires_grad``).
        inputs: ``(B, C, *grid)`` network input.
        penalised: ``(B, 1, *grid)`` 0/1, where the input gradient is penalised (broadcast over channels).
        output: ``sigmoid`` or ``softmax``.

    Returns:
        a scalar tensor, differentiable with respect to the network's weights.
    """
    total = log_probabilities(logits, output).sum()
    (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
    return (penalised * grad.pow(2)).flatten(1).sum(1).mean()


def box_region(shape: tuple[int, int, int], boxes: Sequence[Sequence[float]]) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        region[:, int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))] = True
    return region


def penalised_region(case: Any, config: Any, finding: Any) -> tuple[Any, np.ndarray]:
    """``(image Volume as trained on, (K, J, I) bool penalised region)`` of one training case."""
    from ..shortcut.confound import drawn, finding_region

    d = drawn(case)
    if config.explanation_mask == "artifact":
        assert d.mask is not None
        return d.image, d.mask
    if finding.task == "segmentation":
        return d.image, ~finding_region(d.truth, finding)
    if not d.label:
        return d.image, np.zeros(d.image.shape, dtype=bool)
    shape_ji = d.image.shape[1:]
    ref = case.meta.get("box_image_size")
    boxes = [b for k, b in d.boxes.items() if k.lower() == finding.name.lower()]
    if ref:
        sy, sx = shape_ji[0] / ref[0], shape_ji[1] / ref[1]
        boxes = [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in boxes]
    if not boxes:
        raise InputError(f"case {case.case_id}: no annotation box of {finding.name} for --explanation-mask annotation")
    return d.image, ~box_region(d.image.shape, boxes)


def penalty_masks(cases: Sequence[Any], model: Any, plan: Any, config: Any) -> list[np.ndarray]:
    """The penalised region of each training case on the model grid: ``(*grid)`` float32 0/1 arrays.

    Mapped with :meth:`Model.mask_to_model_grid` (nearest, a region smaller than a model voxel keeps the voxels it
    touches), after the same :meth:`Model.prepare` as the image.
    """
    from ..shortcut.confound import resolve_finding
    from ..volume import Volume

    finding = resolve_finding(plan.dataset, config.finding, plan.task)
    out = []
    for case in cases:
        image, region = penalised_region(case, config, finding)
        prepared = model.prepare(Volume(image.array, image.ijk_to_ras, plan.channel_names))
        m = model.mask_to_model_grid(region[None].astype(np.float32), prepared)[0]
        out.append(m.detach().cpu().numpy().astype(np.float32))
    return out


def description(config: Any) -> dict[str, Any]:
    """The ``explanation_loss`` block of a fold's training record."""
    return {
        "kind": config.explanation_loss,
        "weight": float(config.explanation_weight),
        "mask": config.explanation_mask,
        "definition": "lambda * mean over the batch of sum over channels and voxels of A * (d/dx sum_k log p_k)^2 "
                      "(Ross et al. 2017); A = 1 on the penalised region",
    }


__all__ = ["EXPLANATION_LOSSES", "EXPLANATION_MASKS", "check_explanation_options", "description", "log_probabilities",
           "penalised_region", "penalty_masks", "rrr_penalty"]
