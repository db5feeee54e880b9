"""Supervoxels: the features that KernelSHAP and LIME switch on and off.

A perturbation explainer over single voxels would need millions of coalitions; over a few dozen supervoxels it needs
hundreds. Two partitions of the model grid are offered:

- **SLIC** (Achanta et al., IEEE TPAMI 2012) on the normalised multi-channel input, in 2D or 3D, through
  scikit-image's :func:`~skimage.segmentation.slic` with ``channel_axis=0``. Each channel is first rescaled to
  [0, 1] between its 1st and 99th percentile so ``compactness`` means the same whatever the intensity normalisation:
  the clustering distance is ``(Δintensity / compactness)² + (Δposition / S)²`` with ``S`` the seed spacing, and
  positions are measured in millimetres (``spacing``), so anisotropic voxels give supervoxels that are compact in
  the patient, not in the array.
- **grid**: a regular partition into cubes (squares in 2D) of ``size_mm`` millimetres, aligned with the grid's first
  voxel. It ignores the image entirely (useful as a control and when SLIC is too slow).

Both return a ``(*grid)`` int64 label array with consecutive ids ``0 … M−1`` (ordered by first appearance in C order),
and both are deterministic: the same image and parameters give the same labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import MethodError

SEGMENTATIONS = ("slic", "grid")


def consecutive_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel an integer array to ``0 … M−1`` in order of first appearance (C order); returns int64."""
    flat = labels.reshape(-1)
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each unique value by first appearance
    return order[inverse].reshape(labels.shape).astype(np.int64)


def rescale_channels(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Each channel of a ``(C, *grid)`` array clipped to its [low, high] percentiles and mapped to [0, 1]."""
    out = np.empty(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        ch = image[c].astype(np.float32, copy=False)
        lo, hi = np.percentile(ch, [low, high])
        if hi - lo <= 1e-12:
            out[c] = 0.0
        else:
            out[c] = np.clip((ch - lo) / (hi - lo), 0.0, 1.0)
    return out


def grid_supervoxels(shape: Sequence[int], spacing: Sequence[float], size_mm: float) -> np.ndarray:
    """Regular cubes of ``size_mm`` millimetres over a grid of ``shape`` voxels of ``spacing`` mm (same axis order).

    Returns:
        ``(*shape)`` int64 labels ``0 … M−1``.
    """
    if size_mm <= 0:
        raise MethodError(f"supervoxel size must be positive (got {size_mm} mm)")
    shape = tuple(int(s) for s in shape)
    ids = np.zeros(shape, dtype=np.int64)
    stride = 1
    for axis in reversed(range(len(shape))):
        cells = np.floor(np.arange(shape[axis]) * float(spacing[axis]) / size_mm).astype(np.int64)
        n_cells = int(cells[-1]) + 1
        view = [1] * len(shape)
        view[axis] = shape[axis]
        ids = ids + cells.reshape(view) * stride
        stride *= n_cells
    return consecutive_labels(ids)


def slic_supervoxels(
    image: np.ndarray,
    spacing: Sequence[float],
    n_segments: int = 64,
    compactness: float = 0.1,
    max_num_iter: int = 10,
    max_voxels: int = 2**18,
) -> np.ndarray:
    """SLIC supervoxels of a ``(C, *grid)`` image (2D grid ``(J, I)`` or 3D ``(K, J, I)``).

    Args:
        image: the model-grid input, channel first.
        spacing: voxel size in mm along each grid axis (same order as the grid).
        n_segments: approximate number of supervoxels.
        compactness: balance of intensity against position (intensities rescaled to [0, 1]; larger = more regular).
        max_num_iter: SLIC iterations.
        max_voxels: grids larger than this are clustered on block means (an integer factor per axis) and the labels
            repeated back to full size: supervoxels hold thousands of voxels, so this loses nothing visible and
            keeps SLIC near one second on a 128³ grid.

    If SLIC collapses (fewer than ``n_segments / 8`` supervoxels, as on pure noise) the grid partition with about
    ``n_segments`` cubes is returned instead.

    Returns:
        ``(*grid)`` int64 labels ``0 … M−1``.
    """
    from skimage.segmentation import slic

    if n_segments < 1:
        raise MethodError(f"n_segments must be at least 1 (got {n_segments})")
    if compactness <= 0:
        raise MethodError(f"compactness must be positive (got {compactness})")
    image = np.asarray(image)
    grid = tuple(int(s) for s in image.shape[1:])
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    factor = _shrink_factor(grid, max_voxels)
    small = _block_mean(image, factor) if factor > 1 else image
    labels = slic(
        rescale_channels(small),
        n_segments=int(n_segments),
        compactness=float(compactness),
        max_num_iter=int(max_num_iter),
        spacing=spacing_arr * factor,
        channel_axis=0,
        start_label=0,
        enforce_connectivity=True,
    )
    labels = np.asarray(labels)
    if factor > 1:
        for axis in range(labels.ndim):
            labels = np.repeat(labels, factor, axis=axis)
        labels = labels[tuple(slice(0, g) for g in grid)]
    labels = consecutive_labels(labels)
    if int(labels.max()) + 1 < max(2, n_segments // 8) and n_segments >= 2:
        # SLIC collapses on featureless or pure-noise images; fall back to cubes giving about n_segments features.
        extent = float(np.prod(np.asarray(grid) * spacing_arr))
        size = (extent / n_segments) ** (1.0 / len(grid))
        labels = grid_supervoxels(grid, spacing_arr, size)
    return labels


def _shrink_factor(grid: Sequence[int], max_voxels: int) -> int:
    n = float(np.prod(grid))
    if n <= max_voxels:
        return 1
    return int(np.ceil((n / max_voxels) ** (1.0 / len(grid))))


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """``(C, *grid)`` → block means over ``factor``-sized blocks (edge-padded to a multiple of ``factor``)."""
    grid = image.shape[1:]
    pads = [(0, 0)] + [(0, (-g) % factor) for g in grid]
    padded = np.pad(image.astype(np.float32, copy=False), pads, mode="edge")
    shape: list[int] = [image.shape[0]]
    for g in padded.shape[1:]:
        shape += [g // factor, factor]
    out = padded.reshape(shape)
    return out.mean(axis=tuple(range(2, out.ndim, 2)))


def supervoxels(
    image: np.ndarray,
    spacing: Sequence[float],
    segmentation: str = "slic",
    n_segments: int = 64,
    compactness: float = 0.1,
    size_mm: float = 16.0,
) -> np.ndarray:
    """Partition a ``(C, *grid)`` model-grid image into supervoxels (``slic`` or ``grid``); see the module docstring.

    Args:
        image: ``(C, J, I)`` or ``(C, K, J, I)`` float array (the normalised network input).
        spacing: voxel size in mm per grid axis.
        segmentation: ``slic`` or ``grid``.
        n_segments, compactness: SLIC parameters.
        size_mm: cube edge of the ``grid`` partition, in mm.

    Returns:
        ``(*grid)`` int64 labels ``0 … M−1``.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise MethodError(f"supervoxels need a (C, J, I) or (C, K, J, I) image; got shape {image.shape}")
    if len(spacing) != image.ndim - 1:
        raise MethodError(f"{len(spacing)} spacings given for a {image.ndim - 1}D grid")
    if segmentation == "slic":
        return slic_supervoxels(image, spacing, n_segments, compactness)
    if segmentation == "grid":
        return grid_supervoxels(image.shape[1:], spacing, size_mm)
    raise MethodError(f"unknown segmentation {segmentation!r}; use one of {', '.join(SEGMENTATIONS)}")


def model_grid_spacing(ijk_to_ras: np.ndarray, n_dims: int) -> tuple[float, ...]:
    """Voxel size in mm along the model grid's tensor axes (``(K, J, I)`` in 3D, ``(J, I)`` in 2D)."""
    sp_ijk = np.linalg.norm(np.asarray(ijk_to_ras, dtype=float)[:3, :3], axis=0)
    sp = sp_ijk[::-1]  # k, j, i
    return tuple(float(s) for s in (sp if n_dims == 3 else sp[1:]))
