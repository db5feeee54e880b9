"""One figure comparing explanation methods on the same case: one panel per method, same slice, same scale rules.

3D: the axial slice through the reference's centre (else the first method's peak), the anatomy in grey, each
method's normalised positive relevance in ``inferno`` on top, the reference contour in green, and under each panel
the method's time and its pointing-game / relevance-mass scores against the reference.
2D: the same over the X-ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..explain.base import Explanation
from ..metrics.localisation import pointing_game, relevance_mass
from ..volume import Volume
from .overview import _centre, _plt, _save, _window


def compare_methods_figure(
    path: str | Path,
    anatomy: Volume,
    explanations: Sequence[Explanation],
    reference: np.ndarray | None = None,
    anatomy_channel: int = 0,
    title: str = "",
    columns: int = 4,
) -> Path:
    """Write a grid of panels, one per explanation, over the same slice of ``anatomy``.

    Args:
        anatomy: the input Volume ``(C, K, J, I)``.
        explanations: maps on ``anatomy``'s grid.
        reference: optional ``(K, J, I)`` bool truth region (contour + scores).
        anatomy_channel: which channel to show in grey.
    """
    plt = _plt()
    img = anatomy.array[anatomy_channel].astype(np.float32)
    first = np.maximum(explanations[0].heatmap.array[0], 0)
    k = _centre(reference, first)[0] if not anatomy.is_2d else 0
    sp = anatomy.spacing_kji
    aspect = sp[1] / sp[2]
    lo, hi = _window(img[k])
    body = np.any(anatomy.array[:, k] != 0, axis=0) if not anatomy.is_2d else np.ones(img.shape[1:], bool)
    n = len(explanations)
    cols = min(columns, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.6 * rows), facecolor="black", squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, e in zip(axes.ravel(), explanations):
        heat = e.normalized().array[0, k]
        if e.display == "signed":
            heat = np.abs(heat)
        ax.imshow(img[k], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        ax.imshow(np.ma.masked_where((heat < 0.05) | ~body, heat), cmap="inferno", vmin=0, vmax=1, alpha=0.75,
                  aspect=aspect, interpolation="nearest")
        ax.set_xlim(-0.5, heat.shape[1] - 0.5)
        ax.set_ylim(heat.shape[0] - 0.5, -0.5)
        label = f"{e.method}  {e.cost.seconds:.2f} s"
        if reference is not None and reference.any():
            ref_k = reference[k]
            if ref_k.any():
                ax.contour(ref_k.astype(float), levels=[0.5], colors=["#00ff66"], linewidths=0.9)
            full = e.heatmap.array[0]
            pg = pointing_game(np.abs(full) if e.display == "signed" else full, reference)
            rm = relevance_mass(np.abs(full) if e.display == "signed" else full, reference)
            label += f"\npointing {pg:.0f}  mass {rm or 0:.2f}"
        ax.set_title(label, color="white", fontsize=9)
    fig.suptitle(title, color="white", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)
