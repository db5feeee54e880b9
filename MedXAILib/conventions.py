"""Metric and explanation conventions: each one named, selectable, with its default and its anchor.

Several conventions that trusted tools disagree on change the numbers MedXAI reports. Each is listed here once, and
the same table is printed by ``python -m MedXAILib methods --json`` (key ``conventions``), copied into every result's
sidecar (the values actually used, key ``conventions``) and rendered in ``docs/conventions.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Convention:
    """One selectable convention.

    Attributes:
        name: the key used in sidecars. option: how to choose it (CLI flag or method parameter).
        default: the default choice. choices: the allowed values.
        ours: what the default does. anchors: what each alternative follows (paper, library).
    """

    name: str
    option: str
    default: str
    choices: tuple[str, ...]
    ours: str
    anchors: str

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "hd95", "evaluate --hd95", "monai", ("monai", "brats"),
        "larger of the two directed 95th percentiles; one mask empty → null, both empty → 0",
        "monai: MONAI compute_hausdorff_distance; brats: BraTS evaluation (panoptica), 95th percentile of both "
        "directions pooled, one mask empty → 373 mm, both empty → NaN (null in JSON)",
    ),
    Convention(
        "relevance_mass", "evaluate --relevance-mass", "positive", ("positive", "signed", "absolute"),
        "share of the positive relevance inside the reference, Σ_R max(h,0) / Σ max(h,0)",
        "signed: Quantus RelevanceMassAccuracy (Σ_R h / Σ h); absolute: CLEVR-XAI code (Σ_R |h| / Σ |h|)",
    ),
    Convention(
        "stability_scaling", "evaluate --stability-scaling", "auto", ("auto", "always", "never"),
        "intensity-scaling perturbations are skipped (and listed in stability_skipped) when the model's "
        "preprocessing normalises each channel (z-score, percentile, min-max), which makes the map invariant",
        "always: the 6 fixed perturbations of earlier versions (2 noise, 2 rotations, 2 scalings)",
    ),
    Convention(
        "max_sensitivity", "evaluate --max-sensitivity", "fixed", ("fixed", "quantus", "yeh"),
        "max ℓ2 change of the raw map over the fixed stability perturbations, divided by the map's norm",
        "quantus: Quantus MaxSensitivity (200 uniform draws in [−r, r], r = 0.2 in units of each channel's std; "
        "maps divided by max |h|; max ‖ĥ' − ĥ‖ / ‖x‖, the input's norm); yeh: Yeh et al. 2019 on the same draws, "
        "raw maps, no denominator (max ‖h' − h‖)",
    ),
    Convention(
        "faithfulness_curve", "evaluate --faithfulness-curve", "normalised", ("normalised", "rise"),
        "deletion/insertion curves y = f(x_s) / f(x)",
        "rise: RISE (Petsiuk 2018) unnormalised curves y = f(x_s)",
    ),
    Convention(
        "faithfulness_baseline", "evaluate --faithfulness-baseline", "blur", ("blur", "mean", "noise", "rise"),
        "one baseline for both curves: the input blurred with σ = 8 mm",
        "rise: RISE's baselines, constant 0 for deletion and the blurred input for insertion",
    ),
    Convention(
        "scorecam_weighting", "explain --method scorecam --param weighting=", "auto",
        ("auto", "softmax", "increase", "probability"),
        "auto: softmax over channels of the target logit (pytorch-grad-cam's rule) for class/voxel targets, "
        "score increase over the all-masked input for region targets",
        "probability: the authors' rule, the class probability of each masked input (Wang et al. 2020)",
    ),
    Convention(
        "lrp_bias", "explain --method lrp --param bias=", "false", ("false", "true"),
        "z⁺ and γ rules leave the layer bias out of the denominator",
        "true: Montavon et al. 2019 and zennit keep the bias in z⁺ / γ",
    ),
    Convention(
        "chestxray_box", "evaluate --box-mode / --box-threshold", "largest", ("largest", "each"),
        "map min–max normalised, thresholded at 0.5, box of the largest 8-connected component",
        "each: one box per connected component (Wang et al. 2017 drew a box around each), the best IoBB reported",
    ),
    Convention(
        "map_resampling", "explain --map-resampling", "interpolate", ("interpolate", "sum"),
        "maps are linearly interpolated from the model grid to the input grid; sums (IG completeness, LRP "
        "conservation) hold on the model grid and scale with the voxel-volume ratio on the input grid",
        "sum: values rescaled by input/model voxel volume so the map's sum is kept (relevance as mass)",
    ),
)


def conventions_table() -> list[dict[str, Any]]:
    """Every convention as a JSON-ready record (the ``methods --json`` key ``conventions``)."""
    return [c.as_dict() for c in CONVENTIONS]


def defaults() -> dict[str, str]:
    """``{convention name: default choice}``."""
    return {c.name: c.default for c in CONVENTIONS}


def get(name: str) -> Convention:
    for c in CONVENTIONS:
        if c.name == name:
            return c
    raise KeyError(name)


def markdown_table() -> str:
    """The conventions as a Markdown table (``docs/conventions.md`` embeds it; a test keeps them in step)."""
    lines = ["| convention | how to choose | default | choices | default does | alternatives follow |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in CONVENTIONS:
        ours, anchors = (t.replace("|", "\\|") for t in (c.ours, c.anchors))  # a bare | would split the cell
        lines.append(f"| `{c.name}` | `{c.option}` | `{c.default}` | {', '.join(f'`{v}`' for v in c.choices)} "
                     f"| {ours} | {anchors} |")
    return "\n".join(lines)
