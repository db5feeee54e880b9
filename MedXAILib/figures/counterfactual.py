"""The counterfactual figure: the input, the progressive series toward the goal, the counterfactual and the change.

One row of panels through the same slice (3D: the axial slice through the target region's centre; 2D: the image):
the input with the model's prediction (segmentation: its contour in green), up to three intermediate frames of the
series, the counterfactual, and the difference map (counterfactual − input, in input units, blue = darker, red =
brighter, symmetric scale). Under each image the target as the model's own function says about it (class
probability, or the predicted volume of the region in ml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..explain.base import Explanation
from ..models import Model
from ..volume import Volume
from .overview import _centre, _plt, _save, _window


def _target_text(model: Model, expl: Explanation, vol: Volume) -> tuple[str, np.ndarray | None]:
    pred = model.predict(vol)
    if model.task == "classification":
        assert pred.class_probabilities is not None
        p = float(pred.class_probabilities[expl.target.class_index])
        return f"p({expl.target.class_name}) = {p:.2f}", None
    assert pred.labels is not None
    fg = pred.labels.array[0] > 0
    region = expl.target.region if expl.target.region is not None else fg
    ml = float((fg & region).sum()) * vol.voxel_volume_ml
    return f"tumour in region {ml:.1f} ml", fg


def counterfactual_figure(
    path: str | Path, model: Model, volume: Volume, expl: Explanation, title: str = "", channel: int | None = None,
    frames: int = 3,
) -> Path:
    """Write the figure for a ``counterfactual`` (or ``sedc``) explanation of ``model`` on ``volume``.

    Args:
        channel: the channel shown in grey (default: the last, FLAIR for the brain models).
        frames: how many intermediate frames of the series to show (evenly picked).
    """
    plt = _plt()
    cf: Volume = expl.volumes["counterfactual"]
    series = list(expl.volumes.get("series", []))[:-1]
    if len(series) > frames:
        series = [series[int(round(i))] for i in np.linspace(0, len(series) - 1, frames)]
    ch = channel if channel is not None else volume.n_channels - 1
    panels: list[tuple[str, Volume]] = [("input", volume)]
    panels += [(f"step {n + 1}", s) for n, s in enumerate(series)]
    panels.append(("counterfactual", cf))
    texts = [_target_text(model, expl, v) for _, v in panels]
    diff = expl.channel_maps.array[ch] if expl.channel_maps is not None else expl.heatmap.array[0]
    k = 0 if volume.is_2d else _centre(expl.target.region, np.abs(diff))[0]
    img0 = volume.array[ch, k].astype(np.float32)
    lo, hi = _window(img0)
    sp = volume.spacing_kji
    aspect = sp[1] / sp[2]
    n = len(panels) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.6), facecolor="black", squeeze=False)
    for ax, (name, vol), (text, fg) in zip(axes[0], panels, texts):
        ax.imshow(vol.array[ch, k], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        if fg is not None and fg[k].any():
            ax.contour(fg[k].astype(float), levels=[0.5], colors=["#00ff66"], linewidths=0.9)
        ax.set_title(f"{name}\n{text}", color="white", fontsize=9)
        ax.axis("off")
    ax = axes[0, -1]
    d = diff[k]
    peak = float(np.abs(d).max()) or 1.0
    ax.imshow(img0, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
    ax.imshow(np.ma.masked_where(np.abs(d) < 0.02 * peak, d), cmap="RdBu_r", vmin=-peak, vmax=peak, alpha=0.85,
              aspect=aspect, interpolation="nearest")
    sparsity = expl.details.get("sparsity", {})
    ax.set_title(f"counterfactual − input (±{peak:.3g})\n{100 * sparsity.get('changed_fraction', 0):.1f} % of voxels "
                 "changed", color="white", fontsize=9)
    ax.axis("off")
    fig.suptitle(title, color="white", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return _save(fig, path)


def readme_figures(
    out_dir: str | Path, xray: str | Path, xray_label: str = "", brain_seed: int = 20_261_126
) -> dict[str, Any]:
    """The README's two counterfactual figures: a real NIH X-ray with the demo chest model and the demo brain case.

    Returns:
        the sidecar details of both runs (validity, proximity, sparsity, plausibility, cost).
    """
    from ..explain import explain
    from ..io import read_image
    from ..models import load_model
    from ..phantoms import make_brain_phantom

    out = Path(out_dir)
    result: dict[str, Any] = {}
    chest = load_model("demo-chest-xray")
    image = read_image(xray)
    e = explain(chest, image, "counterfactual")
    v = e.details["validity"]
    counterfactual_figure(
        out / "counterfactual-xray.png", chest, image, e,
        f"NIH {Path(xray).name}{f' (labelled {xray_label})' if xray_label else ''}: what would make the demo chest "
        f"model drop '{e.target.class_name}' ({v['before']['probability']:.2f} → {v['after']['probability']:.2f})"
        "\nthe model was trained on phantoms and is near chance on real X-rays: this shows the method, not a finding",
    )
    result["xray"] = {**e.details, "cost": e.cost.as_dict()}
    brain = load_model("demo-brain-tumour")
    phantom = make_brain_phantom(brain_seed)
    e = explain(brain, phantom.image, "counterfactual")
    v = e.details["validity"]
    counterfactual_figure(
        out / "counterfactual-brain.png", brain, phantom.image, e,
        f"demo brain case: the change that removes the predicted tumour "
        f"({v['before']['predicted_ml']:.1f} → {v['after']['predicted_ml']:.1f} ml in the region; FLAIR shown)",
    )
    result["brain"] = {**e.details, "cost": e.cost.as_dict()}
    return result
