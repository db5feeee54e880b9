"""The overview figure: the anatomy, the heat map over it, and the contours of prediction and truth, with numbers.

3D: axial, coronal and sagittal slices through the lesion's centre (the reference's centre of mass, else the heat
map's peak), each drawn with its true physical aspect ratio. 2D: the X-ray with the heat map, reference boxes and
the class probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_path
from ..volume import Volume


def _plt():  # noqa: ANN202 - matplotlib's pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _centre(reference: np.ndarray | None, heat: np.ndarray) -> tuple[int, int, int]:
    if reference is not None and reference.any():
        idx = np.argwhere(reference)
        return tuple(int(round(v)) for v in idx.mean(axis=0))  # type: ignore[return-value]
    return tuple(int(v) for v in np.unravel_index(np.argmax(heat), heat.shape))  # type: ignore[return-value]


def _window(img: np.ndarray) -> tuple[float, float]:
    vals = img[img != 0] if np.any(img != 0) else img
    lo, hi = np.percentile(vals, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _slices(arr: np.ndarray, c: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial (k), coronal (j), sagittal (i) slices, oriented for display (superior / anterior up)."""
    k, j, i = c
    return [arr[k], arr[:, j, :][::-1], arr[:, :, i][::-1]]


def segmentation_overview(
    path: str | Path,
    anatomy: Volume,
    heat: Volume,
    prediction: Volume | None,
    reference: Volume | None,
    title: str,
    numbers: Sequence[str],
    anatomy_channel: int | None = None,
) -> Path:
    """Write a 2×3 figure: anatomy with contours (top) and the heat map over it (bottom), through the lesion."""
    plt = _plt()
    ch = anatomy_channel if anatomy_channel is not None else anatomy.n_channels - 1
    img = anatomy.array[ch].astype(np.float32)
    hm = np.maximum(heat.array[0], 0)
    hm = hm / hm.max() if hm.max() > 0 else hm
    body = np.any(anatomy.array != 0, axis=0)  # the heat map is shown inside the imaged body only
    ref = reference.array[0] > 0 if reference is not None else None
    pred = prediction.array[0] > 0 if prediction is not None else None
    centre = _centre(ref, hm)
    sp = anatomy.spacing_kji  # (k, j, i) mm
    aspects = [sp[1] / sp[2], sp[0] / sp[2], sp[0] / sp[1]]
    names = ["axial", "coronal", "sagittal"]
    lo, hi = _window(img)
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4), facecolor="black")
    for col, (im, aspect, name) in enumerate(zip(_slices(img, centre), aspects, names)):
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_facecolor("black")
        top, bottom = axes[0, col], axes[1, col]
        top.set_title(f"{name}", color="white", fontsize=11)
        if ref is not None:
            top.contour(_slices(ref.astype(float), centre)[col], levels=[0.5], colors=["#00ff66"], linewidths=1.4)
        if pred is not None:
            top.contour(_slices(pred.astype(float), centre)[col], levels=[0.5], colors=["#ff3b3b"], linewidths=1.2,
                        linestyles="--")
        h = _slices(hm, centre)[col]
        inside = _slices(body.astype(float), centre)[col] > 0
        bottom.imshow(np.ma.masked_where((h < 0.05) | ~inside, h), cmap="inferno", vmin=0, vmax=1, alpha=0.75,
                      aspect=aspect, interpolation="nearest")
        rows_, cols_ = h.shape
        for ax in (top, bottom):
            ax.set_xlim(-0.5, cols_ - 0.5)
            ax.set_ylim(rows_ - 0.5, -0.5)
        if ref is not None:
            bottom.contour(_slices(ref.astype(float), centre)[col], levels=[0.5], colors=["#00ff66"], linewidths=0.9)
    axes[0, 0].text(0.02, 0.02, "— truth", color="#00ff66", transform=axes[0, 0].transAxes, fontsize=10)
    axes[0, 0].text(0.30, 0.02, "-- prediction", color="#ff3b3b", transform=axes[0, 0].transAxes, fontsize=10)
    sm = plt.cm.ScalarMappable(cmap="inferno", norm=plt.Normalize(0, 1))
    cbar = fig.colorbar(sm, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01)
    cbar.set_label("relevance (normalised)", color="white")
    cbar.ax.yaxis.set_tick_params(color="white", labelcolor="white")
    fig.suptitle(title, color="white", fontsize=14, y=0.985)
    fig.text(0.01, 0.005, "   ".join(numbers), color="white", fontsize=10, family="monospace")
    fig.subplots_adjust(left=0.01, right=0.9, top=0.93, bottom=0.05, wspace=0.03, hspace=0.08)
    return _save(fig, path)


def classification_overview(
    path: str | Path,
    image: Volume,
    heat: Volume,
    probabilities: dict[str, float],
    truth: dict[str, int] | None,
    boxes: dict[str, Sequence[float]] | None,
    title: str,
    explained: str,
    numbers: Sequence[str] = (),
) -> Path:
    """Write the X-ray, the heat map over it with reference boxes, and a bar chart of class probabilities."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    img = image.array[0, 0].astype(np.float32)
    hm = np.maximum(heat.array[0, 0], 0)
    hm = hm / hm.max() if hm.max() > 0 else hm
    sp = image.spacing_kji
    aspect = sp[1] / sp[2]
    lo, hi = np.percentile(img, [0.5, 99.5])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1, 0.8]}, facecolor="white")
    axes[0].imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
    axes[0].set_title("input")
    axes[1].imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
    axes[1].imshow(np.ma.masked_less(hm, 0.05), cmap="inferno", alpha=0.6, vmin=0, vmax=1, aspect=aspect)
    axes[1].set_title(f"explaining: {explained}")
    for name, box in (boxes or {}).items():
        x, y, w, h = box
        axes[1].add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#00ff66", linewidth=1.5))
        axes[1].text(x, y - 3, name, color="#00ff66", fontsize=9)
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    names = list(probabilities)
    vals = [probabilities[n] for n in names]
    colors = ["#d62728" if (truth or {}).get(n) else "#7f7f7f" for n in names]
    axes[2].barh(names, vals, color=colors)
    axes[2].set_xlim(0, 1)
    axes[2].axvline(0.5, color="black", linestyle=":", linewidth=1)
    axes[2].set_title("probability (red: truly present)" if truth else "probability")
    axes[2].invert_yaxis()
    fig.suptitle(title, fontsize=13)
    if numbers:
        fig.text(0.01, 0.01, "   ".join(numbers), fontsize=9, family="monospace")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    plt = _plt()
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, dpi=110, facecolor=fig.get_facecolor(), format="png")
    plt.close(fig)
    return p
