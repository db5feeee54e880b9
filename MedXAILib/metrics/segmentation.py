"""Segmentation metrics: Dice, IoU, 95th-percentile Hausdorff distance (mm) and volumes (mL), per label.

Array layout: every mask is a spatial ``(K, J, I)`` array (2D images have ``K == 1``; plain 2D ``(J, I)`` arrays are
accepted too), and ``spacing_kji`` gives the voxel size in millimetres along those same axes (the order of
:attr:`MedXAILib.volume.Volume.spacing_kji`). An oblique direction matrix does not change distances measured on the
voxel grid, so only the spacing matters.

HD95 conventions (``hd95="monai"`` by default, or ``"brats"``; see ``docs/conventions.md``):

- ``monai`` — the larger of the two *directed* 95th percentiles (MONAI's ``compute_hausdorff_distance(percentile=95)``).
  Empty masks: both empty → ``0.0``; exactly one empty → ``None`` (a distance to a surface that does not exist is
  undefined, and a stand-in number would silently bias averages; MONAI itself gives NaN or inf).
- ``brats`` — the 95th percentile of both directed distance sets *pooled* (the official BraTS evaluation,
  ``brats-evaluation`` → panoptica ``np.percentile(np.hstack((d_pr, d_rp)), 95)``). Empty masks as BraTS scores
  them: exactly one empty → ``373.0`` mm (the diameter of the SRI-24 atlas box, BraTS's maximum penalty); both empty
  → NaN (written as ``null`` in JSON, with a note).

The two are not ordered: with numpy's linear interpolation between order statistics the pooled value can exceed
``monai``'s as well as fall below it. It never exceeds the larger directed 95th percentile taken at the next order
statistic (numpy ``method="higher"``), so any excess is below one gap between consecutive distances.

Dice and IoU with empty masks (both conventions): both empty → ``1.0``; exactly one empty → ``0.0``. The per-label
result carries a ``"note"`` saying which mask is empty.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volume import Volume

HD_PERCENTILE = 95.0
HD95_CONVENTIONS = ("monai", "brats")
#: BraTS's HD95 when exactly one mask is empty: the diameter (mm) of the SRI-24 atlas box.
BRATS_EMPTY_HD95_MM = 373.0


def check_hd95_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`HD95_CONVENTIONS`, else an InputError naming the choices."""
    if convention not in HD95_CONVENTIONS:
        raise InputError(f"unknown HD95 convention {convention!r}; use one of {', '.join(HD95_CONVENTIONS)}")
    return convention


def _as_bool(mask: np.ndarray) -> np.ndarray:
    """A boolean ``(K, J, I)`` view of a mask; ``(J, I)`` arrays get a leading K axis of 1."""
    arr = np.asarray(mask)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"a mask must be (K, J, I) or (J, I); got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = _as_bool(pred), _as_bool(ref)
    if p.shape != r.shape:
        raise InputError(f"prediction shape {p.shape} differs from reference shape {r.shape} (K, J, I)")
    return p, r


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice overlap ``2|P ∩ R| / (|P| + |R|)`` of two binary masks (any non-zero voxel is foreground).

    Both masks empty → 1.0; exactly one empty → 0.0 (see the module docstring).
    """
    p, r = _pair(pred, ref)
    denom = int(p.sum()) + int(r.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / denom


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard index) ``|P ∩ R| / |P ∪ R|``; both empty → 1.0, one empty → 0.0."""
    p, r = _pair(pred, ref)
    union = int(np.logical_or(p, r).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, r).sum()) / union


def _bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Slices of the smallest box holding every true voxel, grown by ``margin`` and clipped to the array."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask: foreground voxels with a face-neighbour (6-connectivity in 3D) outside it.

    Voxels beyond the array edge count as background, so a mask touching the edge has its edge voxels on its
    boundary. This is MONAI's ``get_mask_edges`` without sub-voxel areas: ``binary_erosion(mask) ^ mask``.
    """
    m = np.asarray(mask, dtype=bool)
    return m & ~ndimage.binary_erosion(m, border_value=0)


def surface_distances_mm(
    pred: np.ndarray, ref: np.ndarray, spacing_kji: Sequence[float] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances (mm) between two non-empty masks.

    A single-slice array (``K == 1``, a 2D image) is treated as 2D: boundaries use 4-connectivity in the (J, I)
    plane, and the k spacing is ignored.

    Returns:
        ``(pred_to_ref, ref_to_pred)``: for every boundary voxel of the prediction, the Euclidean distance in mm
        (voxel centres, anisotropic spacing) to the nearest boundary voxel of the reference; and the reverse.

    Raises:
        InputError: either mask is empty (the distances are undefined).
    """
    p, r = _pair(pred, ref)
    if not p.any() or not r.any():
        raise InputError("surface distances need two non-empty masks")
    spacing = _spacing(spacing_kji, p.ndim)
    if p.shape[0] == 1:  # a 2D image (K == 1): boundaries and distances live in the (J, I) plane
        p, r, spacing = p[0], r[0], spacing[1:]
    box = _bounding_box(p | r, margin=1)
    p, r = p[box], r[box]
    bp, br = boundary(p), boundary(r)
    # Every boundary voxel lies in the box, so the distance transform restricted to it is exact.
    to_ref = ndimage.distance_transform_edt(~br, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)
    return to_ref[bp], to_pred[br]


def _spacing(spacing_kji: Sequence[float], ndim: int) -> np.ndarray:
    s = np.asarray(spacing_kji, dtype=float).ravel()
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim or not np.all(s > 0):
        raise InputError(f"spacing must hold {ndim} positive values in mm (k, j, i); got {s.tolist()}")
    return s


def hd95_mm(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing_kji: Sequence[float] = (1.0, 1.0, 1.0),
    percentile: float = HD_PERCENTILE,
    convention: str = "monai",
) -> float | None:
    """95th-percentile (symmetric) Hausdorff distance in millimetres.

    Take the boundary voxels of each mask (:func:`boundary`); for each boundary voxel of one mask, the Euclidean
    distance in mm to the nearest boundary voxel of the other. Then (percentiles with linear interpolation between
    order statistics, as ``numpy.percentile`` / ``torch.quantile``):

    - ``convention="monai"``: the larger of the two directed 95th percentiles (MONAI's
      ``compute_hausdorff_distance(percentile=95, spacing=...)``);
    - ``convention="brats"``: the 95th percentile of both directed sets pooled (the BraTS evaluation).

    Args:
        pred, ref: binary masks ``(K, J, I)`` (or ``(J, I)``); non-zero is foreground.
        spacing_kji: voxel size in mm along k, j, i (a scalar means isotropic).
        percentile: 95 by default; 100 gives the classical Hausdorff distance (both conventions agree there).
        convention: ``monai`` or ``brats`` (see the module docstring, also for empty masks).

    Returns:
        The distance in mm. Empty masks: ``monai`` → ``0.0`` (both) / ``None`` (one); ``brats`` → NaN (both) /
        ``373.0`` (one).
    """
    check_hd95_convention(convention)
    p, r = _pair(pred, ref)
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return float("nan") if convention == "brats" else 0.0
    if has_p != has_r:
        return BRATS_EMPTY_HD95_MM if convention == "brats" else None
    d_pr, d_rp = surface_distances_mm(p, r, spacing_kji)
    if convention == "brats":
        return float(np.percentile(np.concatenate([d_pr, d_rp]), percentile))
    return float(max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile)))


def volume_ml(mask: np.ndarray, voxel_volume_ml: float) -> float:
    """Volume of a binary mask in millilitres: foreground voxel count × the volume of one voxel (mL)."""
    return float(np.count_nonzero(mask)) * float(voxel_volume_ml)


def empty_note(pred: np.ndarray, ref: np.ndarray, convention: str = "monai") -> str | None:
    """The note attached to a result when a mask is empty (None otherwise)."""
    has_p, has_r = bool(np.any(pred)), bool(np.any(ref))
    if convention == "brats":
        if not has_p and not has_r:
            return "both masks are empty here: dice and iou are 1 and hd95_mm is NaN (null), as BraTS scores it"
        if has_p != has_r:
            which = "reference" if has_p else "prediction"
            return f"the {which} is empty here: dice and iou are 0 and hd95_mm is BraTS's 373 mm penalty"
        return None
    if has_p and not has_r:
        return "the reference is empty here: dice and iou are 0 and hd95_mm is undefined (null)"
    if has_r and not has_p:
        return "the prediction is empty here: dice and iou are 0 and hd95_mm is undefined (null)"
    return None


def mask_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing_kji: Sequence[float], voxel_volume_ml: float,
    hd95: str = "monai",
) -> dict[str, object]:
    """All metrics of one binary mask pair: ``dice, iou, hd95_mm, volume_ml_prediction, volume_ml_reference``.

    ``hd95`` is the HD95 convention (``monai`` or ``brats``). A ``note`` key is added when a mask is empty and the
    convention gives it a special value. A NaN HD95 (``brats``, both empty) is returned as None (JSON null).
    """
    p, r = _pair(pred, ref)
    hd = hd95_mm(p, r, spacing_kji, convention=hd95)
    out: dict[str, object] = {
        "dice": dice(p, r),
        "iou": iou(p, r),
        "hd95_mm": None if hd is not None and np.isnan(hd) else hd,
        "volume_ml_prediction": volume_ml(p, voxel_volume_ml),
        "volume_ml_reference": volume_ml(r, voxel_volume_ml),
    }
    note = empty_note(p, r, hd95)
    if note:
        out["note"] = note
    return out


def labels_present(*arrays: np.ndarray) -> list[int]:
    """Sorted non-zero label values found in any of the arrays."""
    found: set[int] = set()
    for a in arrays:
        found.update(int(v) for v in np.unique(a) if v != 0)
    return sorted(found)


def _label_array(vol: Volume, what: str) -> np.ndarray:
    if vol.n_channels != 1:
        raise InputError(f"the {what} has {vol.n_channels} channels; a label map has one")
    arr = vol.array[0]
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.allclose(arr, np.round(arr)):
            raise InputError(f"the {what} holds non-integer values, so it is not a label map")
        arr = np.round(arr).astype(np.int64)
    return arr


def segmentation_metrics(
    prediction: Volume,
    reference: Volume,
    labels: Iterable[int] | None = None,
    regions: Mapping[str, Iterable[int]] | None = None,
    hd95: str = "monai",
) -> dict[str, dict[str, object]]:
    """Per-label Dice, IoU, HD95 (mm) and volumes (mL) of a predicted label map against a reference.

    Args:
        prediction, reference: one-channel integer label maps (0 = background) on the same voxel grid.
        labels: label values to score; by default every non-zero value found in either map.
        regions: optional aggregate regions, name → label values merged into one mask (for example
            ``{"whole_tumour": [1, 2, 3, 4]}``); scored like a label and keyed by the name.
        hd95: the HD95 convention, ``monai`` (default) or ``brats`` (see the module docstring).

    Returns:
        ``{"1": {"dice", "iou", "hd95_mm", "volume_ml_prediction", "volume_ml_reference"[, "note"]}, ...}``, keyed by
        the label value as a string (then the region names). Empty-mask conventions: see the module docstring.

    Raises:
        InputError: the grids differ (the message says how), a map is not a label map, or a requested label is in
            neither map.
    """
    check_hd95_convention(hd95)
    diff = reference.geometry_difference(prediction)
    if diff is not None:
        raise InputError(
            f"the prediction has {diff} than the reference; both must lie on the same voxel grid (resample first)"
        )
    pred = _label_array(prediction, "prediction")
    ref = _label_array(reference, "reference")
    present = labels_present(pred, ref)
    wanted = present if labels is None else [int(v) for v in labels]
    if 0 in wanted:
        raise InputError("label 0 is the background and is not scored; ask for labels 1 and up")
    missing = [v for v in wanted if v not in present]
    if missing:
        raise InputError(
            f"label {', '.join(map(str, missing))} is in neither the prediction nor the reference "
            f"(labels present: {', '.join(map(str, present)) or 'none'})"
        )
    spacing = reference.spacing_kji
    vml = reference.voxel_volume_ml
    out: dict[str, dict[str, object]] = {}
    for value in wanted:
        out[str(value)] = mask_metrics(pred == value, ref == value, spacing, vml, hd95)
    for name, members in (regions or {}).items():
        vals = [int(v) for v in members]
        out[str(name)] = mask_metrics(np.isin(pred, vals), np.isin(ref, vals), spacing, vml, hd95)
    return out
