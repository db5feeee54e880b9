"""The ``compare`` figure: each method's map and the consensus over one slice, and the agreement matrices.

Top row: the anatomy in grey with each method's importance (as displayed: positive part or |h|, each scaled to its
own maximum) in ``inferno``, then the consensus map and the per-voxel agreement. 3D volumes are cut through the
consensus peak's axial slice; 2D images are shown whole. Bottom row: Spearman ρ, SSIM and top-k IoU as
``M × M`` heat maps with their values written in each cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..volume import Volume
from .overview import _plt, _save, _window


def _matrix_panel(ax: Any, matrix: list[list[Any]], names: list[str], title: str, vmin: float) -> None:
    arr = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix])
    ax.imshow(arr, cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", color="white", fontsize=8)
    ax.set_yticks(range(len(names)), names, color="white", fontsize=8)
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            text = "–" if np.isnan(arr[i, j]) else f"{arr[i, j]:.2f}"
            dark = np.isnan(arr[i, j]) or arr[i, j] > vmin + 0.6 * (1 - vmin)
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if dark else "white")
    ax.set_title(title, color="white", fontsize=10)


def agreement_figure(path: str | Path, anatomy: Volume, comparison: Any, anatomy_channel: int | None = None) -> Path:
    """Write the figure for a :class:`MedXAILib.compare.Comparison` of maps on ``anatomy``'s grid (PNG)."""
    from ..metrics.agreement import importance

    plt = _plt()
    report = comparison.report
    names = list(report["methods"])
    cons = comparison.consensus.array[0]
    per_voxel = comparison.agreement.array[0]
    k = 0 if anatomy.is_2d else int(np.unravel_index(np.argmax(cons), cons.shape)[0])
    ch = anatomy_channel if anatomy_channel is not None else anatomy.n_channels - 1
    img = anatomy.array[ch, k].astype(np.float32)
    lo, hi = _window(img)
    sp = anatomy.spacing_kji
    aspect = sp[1] / sp[2]
    body = np.any(anatomy.array[:, k] != 0, axis=0) if not anatomy.is_2d else np.ones(img.shape, bool)
    panels = [(n, importance(comparison.explanations[n].heatmap.array[0], comparison.explanations[n].display)[k])
              for n in names]
    tiles = panels + [("consensus", cons[k]), ("agreement per voxel", per_voxel[k])]
    cols = min(5, len(tiles))
    rows = int(np.ceil(len(tiles) / cols))
    width = max(3.0 * cols, 15.0)
    fig = plt.figure(figsize=(width, 2.9 * rows + 5.4), facecolor="black")
    top_fig, bottom_fig = fig.subfigures(2, 1, height_ratios=[2.9 * rows, 5.4])
    top_fig.set_facecolor("black")
    bottom_fig.set_facecolor("black")
    axes = top_fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, heat) in zip(axes.ravel(), tiles):
        peak = float(heat.max())
        shown = heat / peak if peak > 0 else heat
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        cmap = "viridis" if title == "agreement per voxel" else "inferno"
        ax.imshow(np.ma.masked_where(~body | (shown < 0.05), shown), cmap=cmap, vmin=0, vmax=1, alpha=0.75,
                  aspect=aspect, interpolation="nearest")
        if title in comparison.explanations:
            rho = report["consensus"]["spearman"][names.index(title)]
            title = f"{title}\nρ to consensus {rho:.2f}" if rho is not None else title
        ax.set_title(title, color="white", fontsize=9)
    matrix_axes = bottom_fig.subplots(1, 3)
    bottom_fig.subplots_adjust(left=0.07, right=0.99, wspace=0.45, bottom=0.2, top=0.9)
    top_fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, hspace=0.25)
    for ax, (key, label, vmin) in zip(matrix_axes, (("spearman", "Spearman ρ", -1.0), ("ssim", "SSIM", 0.0),
                                                    ("topk_iou", f"top-{report['settings']['topk_percent']:g}% IoU",
                                                     0.0))):
        _matrix_panel(ax, report[key], names, label, vmin)
    region = report["settings"].get("region", "all")
    fig.suptitle(f"agreement between methods (same case, same target; voxels compared: {region})", color="white",
                 fontsize=12)
    return _save(fig, path)
