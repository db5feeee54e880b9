"""Draw a :class:`~.case.CaseReport` as a one-page A4 PDF and as a self-contained HTML page.

Both show the same image panel:

- 3D: axial, coronal and sagittal slices through the centre of the predicted region (else the reference's, else the
  heat map's peak), drawn with their physical aspect ratio; top row the anatomy with the predicted classes' contours
  (and the reference dashed), bottom row the explanation (positive part, normalised) over the anatomy;
- 2D (an X-ray): the image with the prediction, the heat map over it, and for a classifier the class probabilities.

Axial slices are shown as stored (for the usual LPS-ordered DICOM: patient right on the left, anterior up).
The PDF goes through matplotlib's PDF backend; text is real text (searchable), images are embedded rasters.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from .case import CaseReport

A4_INCHES = (8.27, 11.69)
CLASS_COLOURS = ("#ff3b3b", "#3b9dff", "#ffd23b", "#c03bff", "#3bffd2", "#ff8c3b", "#9dff3b", "#ff3bb0")
REFERENCE_COLOUR = "#00ff66"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _centre(mask: np.ndarray | None, fallback: np.ndarray) -> tuple[int, ...]:
    if mask is not None and mask.any():
        return tuple(int(round(v)) for v in np.argwhere(mask).mean(axis=0))
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(fallback)), fallback.shape))


def _views(arr: np.ndarray, c: tuple[int, ...]) -> list[np.ndarray]:
    k, j, i = c
    return [arr[k], arr[:, j, :][::-1], arr[:, :, i][::-1]]


def _window(img: np.ndarray) -> tuple[float, float]:
    """Display window: 0.5th–99.9th percentile of the imaged voxels (exact zeros, e.g. outside a skull-stripped
    head, left out), so a bright lesion is not clipped to white."""
    vals = img[np.isfinite(img)]
    body = vals[vals != 0]
    vals = body if body.size > 0.05 * max(vals.size, 1) else vals
    lo, hi = np.percentile(vals, [0.5, 99.9]) if vals.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1)


def _heat(report: CaseReport) -> np.ndarray:
    hm = np.maximum(report.heatmap.array[0].astype(np.float32), 0)
    peak = float(hm.max())
    return hm / peak if peak > 0 else hm


def _contours(ax: Any, masks: list[tuple[np.ndarray, str, str]]) -> None:
    for mask, colour, style in masks:
        if mask.any() and mask.shape[0] > 1 and mask.shape[1] > 1:
            ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.0, linestyles=style)


def _class_masks(report: CaseReport) -> list[tuple[str, np.ndarray, str]]:
    if report.labels is None:
        return []
    from ..dicom.terminology import is_background

    out = []
    for n, (name, value) in enumerate((k, v) for k, v in report.class_values.items() if not is_background(k)):
        out.append((name, report.labels.array[0] == value, CLASS_COLOURS[n % len(CLASS_COLOURS)]))
    return out


def _axes(fig: Any, left: float, bottom: float, width: float, height: float) -> Any:
    ax = fig.add_axes([left + 0.004, bottom + 0.004, width - 0.008, height - 0.024])
    ax.set_facecolor("black")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def draw_images(fig: Any, box: tuple[float, float, float, float], report: CaseReport) -> None:
    """Draw the image panel into ``box`` = (left, bottom, width, height) in figure fractions."""
    img = report.image.array[report.display_channel].astype(np.float32)
    hm = _heat(report)
    classes = _class_masks(report)
    ref = report.reference.array[0] > 0 if report.reference is not None else None
    lo, hi = _window(img)
    left, bottom, width, height = box
    sp = report.image.spacing_kji
    if report.image.is_2d:
        ncol = 3 if report.task == "classification" else 2
        cell_w = width / ncol
        top = _axes(fig, left, bottom, cell_w, height)
        low = _axes(fig, left + cell_w, bottom, cell_w, height)
        views = [(top, low, img[0], hm[0], [m[0] for _, m, _ in classes], None if ref is None else ref[0],
                  sp[1] / sp[2], "image and prediction", "explanation")]
    else:
        fg = np.any([m for _, m, _ in classes], axis=0) if classes else None
        centre = _centre(fg if fg is not None and fg.any() else ref, hm)
        cell_w, cell_h = width / 3, height / 2
        aspects = [sp[1] / sp[2], sp[0] / sp[2], sp[0] / sp[1]]
        views = []
        for v, name in enumerate(("axial", "coronal", "sagittal")):
            views.append((
                _axes(fig, left + v * cell_w, bottom + cell_h, cell_w, cell_h),
                _axes(fig, left + v * cell_w, bottom, cell_w, cell_h),
                _views(img, centre)[v], _views(hm, centre)[v], [_views(m, centre)[v] for _, m, _ in classes],
                None if ref is None else _views(ref, centre)[v], aspects[v], name, "",
            ))
    for top, low, im, h, masks, r, aspect, title_top, title_low in views:
        for ax in (top, low):
            ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        _contours(top, [(m, c, "solid") for m, (_, _, c) in zip(masks, classes)])
        if r is not None:
            _contours(top, [(r, REFERENCE_COLOUR, "dashed")])
        low.imshow(np.ma.masked_less(h, 0.05), cmap="inferno", vmin=0, vmax=1, alpha=0.7, aspect=aspect,
                   interpolation="nearest")
        top.set_title(title_top, fontsize=8)
        if title_low:
            low.set_title(title_low, fontsize=8)
    if report.image.is_2d and report.boxes:
        from matplotlib.patches import Rectangle

        for ax in (views[0][0], views[0][1]):
            for name, (x, y, w, h) in report.boxes.items():
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=REFERENCE_COLOUR,
                                       linewidth=1.2))
                ax.text(x, y - 4, name, color=REFERENCE_COLOUR, fontsize=6, va="bottom")
    if report.task == "classification" and report.probabilities:
        cell_w = width / 3
        ax = fig.add_axes([left + 2 * cell_w + 0.10, bottom + 0.03, cell_w - 0.11, height - 0.07])
        names = list(report.probabilities)[:8]
        ax.barh(names, [report.probabilities[n] for n in names],
                color=["#d62728" if n in report.predicted else "#8c8c8c" for n in names])
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_title("probability (red: predicted)", fontsize=8)
    x = left
    for name, _, colour in classes:
        fig.text(x, bottom - 0.004, f"— {name}", color=colour, fontsize=7, va="top")
        x += 0.03 + 0.009 * len(name)
    if ref is not None or report.boxes:
        fig.text(x, bottom - 0.004, "-- reference" if ref is not None else "□ reference box", color="#009944",
                 fontsize=7, va="top")
    sm = _plt().cm.ScalarMappable(cmap="inferno", norm=_plt().Normalize(0, 1))
    cax = fig.add_axes([left + width - 0.2, bottom - 0.01, 0.19, 0.006])
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
    cb.set_label("relevance (positive part, normalised)", fontsize=6)
    cb.ax.tick_params(labelsize=6)


def _page(report: CaseReport) -> Any:
    plt = _plt()
    fig = plt.figure(figsize=A4_INCHES, facecolor="white")
    fig.text(0.04, 0.975, f"MedXAI case report: {report.case}", fontsize=15, weight="bold", va="top")
    fig.text(0.04, 0.952, f"{report.card['name']} ({report.card['version']})   ·   {report.explained}   ·   "
                          f"{report.created}", fontsize=8, va="top", color="#333333")
    banner_colour = "#b00020" if not report.card["diagnostic_use"] else "#1b5e20"
    fig.text(0.04, 0.936, report.card["statement"], fontsize=9, weight="bold", color=banner_colour, va="top")
    images_box = (0.04, 0.50, 0.92, 0.415) if not report.image.is_2d else (0.04, 0.56, 0.92, 0.355)
    draw_images(fig, images_box, report)
    y = images_box[1] - 0.04
    for title, rows in report.sections.items():
        fig.text(0.04, y, title, fontsize=10, weight="bold", va="top")
        y -= 0.017
        for label, value in rows:
            lines = textwrap.wrap(value, 95) or [""]
            fig.text(0.06, y, label, fontsize=7.5, va="top", color="#444444")
            for line in lines:
                fig.text(0.25, y, line, fontsize=7.5, va="top")
                y -= 0.0135
        y -= 0.006
    return fig


def write_pdf(report: CaseReport, path: str | Path) -> Path:
    """Write the report as one A4 page (PDF) atomically."""
    plt = _plt()
    fig = _page(report)
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"Title": f"MedXAI case report: {report.case}",
                                                  "Creator": f"MedXAI {report.software.get('MedXAI', '')}"})
    plt.close(fig)
    return p


def panel_png(report: CaseReport, dpi: int = 130) -> bytes:
    """The image panel alone, as PNG bytes (for the HTML page)."""
    plt = _plt()
    size = (8.27, 4.9) if not report.image.is_2d else (8.27, 3.6)
    fig = plt.figure(figsize=size, facecolor="white")
    draw_images(fig, (0.0, 0.08, 1.0, 0.9), report)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write_html(report: CaseReport, path: str | Path) -> Path:
    """Write the report as one self-contained HTML page (the image panel embedded as PNG) atomically."""
    e = html.escape
    image = base64.b64encode(panel_png(report)).decode()
    colour = "#b00020" if not report.card["diagnostic_use"] else "#1b5e20"
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>MedXAI case report: {e(report.case)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;color:#222}"
        "table{border-collapse:collapse;width:100%;margin-bottom:1em}td{padding:2px 6px;vertical-align:top;"
        "border-bottom:1px solid #ddd;font-size:90%}td.k{color:#555;width:22%}"
        f".banner{{color:{colour};font-weight:bold}}img{{width:100%}}</style></head><body>",
        f"<h1>MedXAI case report: {e(report.case)}</h1>",
        f"<p>{e(report.card['name'])} ({e(report.card['version'])}) · {e(report.explained)} · "
        f"{e(report.created)}</p>",
        f"<p class=\"banner\">{e(report.card['statement'])}</p>",
        f"<img alt=\"prediction and explanation\" src=\"data:image/png;base64,{image}\">",
    ]
    for title, rows in report.sections.items():
        parts.append(f"<h2>{e(title)}</h2><table>")
        parts += [f"<tr><td class=\"k\">{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    p = Path(path)
    with atomic_path(p) as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return p
