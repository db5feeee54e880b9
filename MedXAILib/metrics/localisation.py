"""Localisation metrics of an explanation: does the heat map point at the reference region?

Array layout: a heat map and a reference mask are spatial ``(K, J, I)`` arrays on the same voxel grid (a 2D image
has ``K == 1``; plain ``(J, I)`` arrays are accepted). ``spacing_kji`` is the voxel size in mm along k, j, i.
Heat-map values are signed relevance as the explainer produced them; each metric says how it treats the sign.

Ties. Several voxels can share a value (a flat map, a quantised CAM). Metrics that pick "the highest voxels" score the
*expected* value under a uniformly random choice among tied voxels, so a constant map scores at chance level rather
than perfectly. A map with a unique maximum / no ties at the cut is unaffected.

Bounding boxes (ChestX-ray14 protocol) are ``(x, y, w, h)`` in pixels: ``x`` along the image columns (array axis
I), ``y`` along the rows (axis J), the box covering ``[x, x + w) × [y, y + h)`` in pixel-edge coordinates, so the
pixel with index ``(j, i)`` covers ``[i, i + 1) × [j, j + 1)``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)


def _spatial(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"{what} must be (K, J, I) or (J, I); got shape {arr.shape}")
    return arr


def _map_and_mask(heatmap: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = _spatial(heatmap, "the heat map").astype(np.float64, copy=False)
    r = _spatial(reference, "the reference").astype(bool, copy=False)
    if h.shape != r.shape:
        raise InputError(f"heat map shape {h.shape} differs from reference shape {r.shape} (K, J, I)")
    if not np.isfinite(h).all():
        raise InputError("the heat map holds NaN or infinite values")
    if not r.any():
        raise InputError("the reference region is empty; localisation needs a non-empty reference")
    return h, r


def dilate_mm(mask: np.ndarray, distance_mm: float, spacing_kji: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Grow a mask by a physical distance: every voxel whose centre lies within ``distance_mm`` of the mask.

    Anisotropic voxels are handled through the Euclidean distance transform with ``sampling=spacing_kji``.
    """
    m = _spatial(mask, "the mask").astype(bool)
    if distance_mm <= 0 or not m.any():
        return m.copy()
    dist = ndimage.distance_transform_edt(~m, sampling=np.asarray(spacing_kji, dtype=float))
    return dist <= distance_mm


def pointing_game(
    heatmap: np.ndarray,
    reference: np.ndarray,
    tolerance_mm: float = 0.0,
    spacing_kji: Sequence[float] = (1.0, 1.0, 1.0),
) -> float:
    """Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016 / IJCV 2018).

    A hit when the voxel of maximal (signed) relevance lies inside the reference region, or within
    ``tolerance_mm`` of it (the reference dilated by that physical distance; Zhang et al. used 15 pixels).

    Returns:
        1.0 for a hit, 0.0 for a miss. When several voxels share the maximum, the fraction of them inside — the
        expected hit under a random choice among them (a constant map scores the reference's share of the image).
    """
    h, r = _map_and_mask(heatmap, reference)
    if tolerance_mm > 0:
        r = dilate_mm(r, tolerance_mm, spacing_kji)
    top = h == h.max()
    return float(np.count_nonzero(top & r)) / float(np.count_nonzero(top))


RELEVANCE_MASS_MODES = ("positive", "signed", "absolute")


def relevance_mass(heatmap: np.ndarray, reference: np.ndarray, mode: str = "positive") -> float | None:
    """Relevance mass accuracy (Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022): the share of the
    relevance that falls inside the reference, ``Σ_{v∈R} g(h_v) / Σ_v g(h_v)``, with ``g`` by ``mode``:

    - ``positive`` (default): ``g(h) = max(h, 0)`` — the positive evidence only;
    - ``signed``: ``g(h) = h`` — Quantus' ``RelevanceMassAccuracy`` (it sums the raw values; its default rescaling by
      ``max |h|`` cancels in the ratio). Can leave [0, 1] when the map has negative values;
    - ``absolute``: ``g(h) = |h|`` — the CLEVR-XAI code.

    Returns None when the denominator is zero (e.g. no positive relevance in ``positive`` mode): the ratio is undefined.
    """
    if mode not in RELEVANCE_MASS_MODES:
        raise InputError(f"unknown relevance-mass mode {mode!r}; use one of {', '.join(RELEVANCE_MASS_MODES)}")
    h, r = _map_and_mask(heatmap, reference)
    g = np.clip(h, 0.0, None) if mode == "positive" else np.abs(h) if mode == "absolute" else h
    total = float(g.sum())
    if total == 0.0 or (mode != "signed" and total <= 0.0):
        return None
    return float(g[r].sum()) / total


def _top_n_weights(values: np.ndarray, n: int) -> np.ndarray:
    """Weights (0..1) selecting the ``n`` largest values; tied values at the cut share the remaining places equally.

    The weights sum to ``n`` exactly; ``values`` is flat.
    """
    n = int(min(max(n, 0), values.size))
    w = np.zeros(values.size)
    if n == 0:
        return w
    cut = np.partition(values, values.size - n)[values.size - n]  # the n-th largest value
    above = values > cut
    tied = values == cut
    w[above] = 1.0
    w[tied] = (n - int(above.sum())) / float(tied.sum())
    return w


def relevance_rank(heatmap: np.ndarray, reference: np.ndarray) -> float:
    """Relevance rank accuracy (Arras, Osman & Samek 2022).

    With ``|R|`` the number of reference voxels: the fraction of the ``|R|`` highest-relevance voxels that lie inside
    the reference. Ties at the cut are shared (expected value under random tie-breaking).
    """
    h, r = _map_and_mask(heatmap, reference)
    n = int(r.sum())
    w = _top_n_weights(h.ravel(), n)
    return float(w[r.ravel()].sum()) / n


def topk_overlap(heatmap: np.ndarray, reference: np.ndarray, percent: float) -> dict[str, float]:
    """Dice and IoU between the top ``percent`` % of the map's voxels (highest signed relevance) and the reference.

    The selection holds ``round(percent / 100 · N)`` voxels (at least 1) of the N in the map; tied voxels at the cut
    count fractionally, so Dice is its expected value under random tie-breaking. Returns ``{"dice", "iou"}``.
    """
    if not 0 < percent <= 100:
        raise InputError(f"the top-k percentage must be in (0, 100]; got {percent}")
    h, r = _map_and_mask(heatmap, reference)
    n = max(1, int(round(percent / 100.0 * h.size)))
    w = _top_n_weights(h.ravel(), n)
    inter = float(w[r.ravel()].sum())
    size_r = float(r.sum())
    return {"dice": 2.0 * inter / (n + size_r), "iou": inter / (n + size_r - inter)}


# ---- ChestX-ray14 bounding-box protocol ------------------------------------------------------------------------
def normalise_map(heatmap: np.ndarray) -> np.ndarray:
    """Min–max rescale a map to [0, 1] (a constant map becomes all zeros)."""
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    if hi <= lo:
        return np.zeros_like(h)
    return (h - lo) / (hi - lo)


BOX_MODES = ("largest", "each")


def boxes_from_map(heatmap: np.ndarray, threshold: float = 0.5) -> list[tuple[float, float, float, float]]:
    """Every connected region's box of a 2D heat map, largest region first (see :func:`box_from_map`).

    The map is min–max normalised to [0, 1] and thresholded at ``>= threshold``; each 8-connected component gives the
    ``(x, y, w, h)`` box (pixels, pixel-edge coordinates) of its pixels. Components are ordered by pixel count
    (descending), ties by first pixel in C order. Empty when nothing passes the threshold (a constant map).
    """
    h = _spatial(heatmap, "the heat map")
    if h.shape[0] != 1:
        raise InputError(f"the box protocol is for 2D maps; this map has {h.shape[0]} slices")
    norm = normalise_map(h[0])
    if norm.max() <= 0:
        return []
    labels, count = ndimage.label(norm >= threshold, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = sorted(range(count), key=lambda c: (-int(sizes[c]), c))
    out: list[tuple[float, float, float, float]] = []
    for slc_index in order:
        rows, cols = np.nonzero(labels == slc_index + 1)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        out.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    return out


def box_from_map(heatmap: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float, float] | None:
    """The detected box of a 2D heat map (Wang et al., "ChestX-ray8", CVPR 2017).

    How the box is made: the map is min–max normalised to [0, 1] (signed values as they are, so negative relevance is
    low), thresholded at ``>= threshold`` (default 0.5), split into 8-connected components, and the bounding box of
    the **largest** component (most pixels) is returned as ``(x, y, w, h)`` pixels (pixel-edge coordinates, see the
    module docstring). Wang et al. drew a box around each component; :func:`boxes_from_map` gives them all
    (``box_mode="each"`` in :func:`box_localisation`). None when nothing passes the threshold (a constant map).
    """
    boxes = boxes_from_map(heatmap, threshold)
    return boxes[0] if boxes else None


def box_overlap(detected: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """IoBB and IoU of two ``(x, y, w, h)`` boxes.

    IoBB (Wang et al. 2017) = intersection area / detected box area; IoU = intersection / union.
    """
    dx, dy, dw, dh = (float(v) for v in detected)
    rx, ry, rw, rh = (float(v) for v in reference)
    iw = max(0.0, min(dx + dw, rx + rw) - max(dx, rx))
    ih = max(0.0, min(dy + dh, ry + rh) - max(dy, ry))
    inter = iw * ih
    a_det, a_ref = dw * dh, rw * rh
    union = a_det + a_ref - inter
    return {"iobb": inter / a_det if a_det > 0 else 0.0, "iou": inter / union if union > 0 else 0.0}


def box_localisation(
    heatmap: np.ndarray, reference_box: Sequence[float], map_threshold: float = 0.5, box_mode: str = "largest"
) -> dict[str, object]:
    """One image of the ChestX-ray14 protocol: ``{"box": (x, y, w, h) | None, "iobb", "iou"}``.

    ``reference_box`` must be in the heat map's pixel coordinates (scale the 1024×1024 ChestX-ray14 boxes first,
    :func:`scale_box`). No detected box scores IoBB = IoU = 0.

    ``box_mode``: ``largest`` (default) scores the box of the largest thresholded component; ``each`` makes one box
    per connected component, scores each, and reports the best-IoBB box as ``box`` (ties: the larger component) with
    every box and its scores under ``boxes``.
    """
    if box_mode not in BOX_MODES:
        raise InputError(f"unknown box mode {box_mode!r}; use one of {', '.join(BOX_MODES)}")
    if box_mode == "largest":
        box = box_from_map(heatmap, map_threshold)
        if box is None:
            return {"box": None, "iobb": 0.0, "iou": 0.0}
        return {"box": list(box), **box_overlap(box, reference_box)}
    scored = [{"box": list(b), **box_overlap(b, reference_box)} for b in boxes_from_map(heatmap, map_threshold)]
    if not scored:
        return {"box": None, "iobb": 0.0, "iou": 0.0, "boxes": []}
    best = max(range(len(scored)), key=lambda n: (scored[n]["iobb"], -n))
    return {**scored[best], "boxes": scored}


def scale_box(box: Sequence[float], from_size_ji: Sequence[int], to_size_ji: Sequence[int]) -> tuple[float, ...]:
    """Rescale an ``(x, y, w, h)`` box from an image of ``(rows, cols)`` to another (e.g. 1024×1024 → 224×224)."""
    sy = float(to_size_ji[0]) / float(from_size_ji[0])
    sx = float(to_size_ji[1]) / float(from_size_ji[1])
    x, y, w, h = (float(v) for v in box)
    return x * sx, y * sy, w * sx, h * sy


def box_accuracy(iobbs: Iterable[float], thresholds: Sequence[float] = IOBB_THRESHOLDS) -> dict[str, float]:
    """Localisation accuracy over a set of images (Wang et al. 2017): the fraction with ``IoBB > T`` for each T.

    Keys are ``"T=0.1"``, ``"T=0.25"``, …
    """
    vals = np.asarray(list(iobbs), dtype=float)
    if vals.size == 0:
        raise InputError("no images to score")
    return {f"T={t:g}": float(np.mean(vals > t)) for t in thresholds}


def localisation_summary(
    heatmap: np.ndarray,
    region: np.ndarray,
    spacing_kji: Sequence[float],
    topk: Sequence[float] = (1.0, 5.0, 10.0),
    tolerance_mm: float = 0.0,
    relevance_mass_mode: str = "positive",
) -> dict[str, float | None]:
    """Pointing game, relevance mass / rank accuracy and top-k% Dice/IoU of one map against a boolean region.

    ``relevance_mass_mode`` is the relevance-mass convention (``positive``, ``signed`` or ``absolute``; see
    :func:`relevance_mass`).

    With ``tolerance_mm > 0`` the pointing game is also scored against the region dilated by that distance
    (key ``pointing_game_tol{mm}mm``). Keys: ``pointing_game``, ``relevance_mass``, ``relevance_rank``,
    ``topk_dice_{k}pct``, ``topk_iou_{k}pct``.
    """
    out: dict[str, float | None] = {"pointing_game": pointing_game(heatmap, region, 0.0, spacing_kji)}
    if tolerance_mm > 0:
        out[f"pointing_game_tol{tolerance_mm:g}mm"] = pointing_game(heatmap, region, tolerance_mm, spacing_kji)
    out["relevance_mass"] = relevance_mass(heatmap, region, relevance_mass_mode)
    out["relevance_rank"] = relevance_rank(heatmap, region)
    for k in topk:
        overlap = topk_overlap(heatmap, region, k)
        out[f"topk_dice_{k:g}pct"] = overlap["dice"]
        out[f"topk_iou_{k:g}pct"] = overlap["iou"]
    return out
