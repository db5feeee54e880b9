"""Intensity normalisation and grid changes between the input and the model.

Arrays are channel-first ``(C, K, J, I)`` (or ``(C, J, I)`` for 2D helpers) float32. All spatial sizes and spacings in
a model description are in tensor order: ``(K, J, I)`` in 3D and ``(J, I)`` in 2D, spacings in millimetres.

Grid changes (resampling to the model's spacing, resizing an X-ray to the network's input size) keep the physical
extent of the image: the new grid covers the same box of space, voxel corners to voxel corners. That is exactly what
``torch.nn.functional.interpolate(..., align_corners=False)`` computes, so a map computed on the model grid can be
brought back onto the input grid with the same call and lands on the same anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ModelError

NORMALIZERS = ("zscore_foreground", "zscore", "percentile", "hu_window", "minmax", "none")


def normalize(array: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Normalise intensities per channel as the model description's ``preprocessing`` says.

    Args:
        array: ``(C, ...)`` float array; it is not modified.
        spec: ``{"normalize": one of NORMALIZERS, "percentiles": [lo, hi], "hu_window": [lo, hi]}``.
            - ``zscore_foreground``: (x − mean) / std over the foreground — voxels where any channel is non-zero —
              and background set to 0 (BraTS-style skull-stripped inputs).
            - ``zscore``: over all voxels.
            - ``percentile``: clip to the given percentiles (default 0.5, 99.5), then scale to [0, 1].
            - ``hu_window``: clip to the window in Hounsfield units, then scale to [0, 1].
            - ``minmax``: scale to [0, 1].

    Returns:
        a new float32 array of the same shape.
    """
    mode = spec.get("normalize", "none")
    x = np.asarray(array, dtype=np.float32)
    out = np.empty_like(x)
    offset, scale = (list(map(float, v)) for v in intensity_affine(x, spec))  # Python floats keep float32
    if mode == "zscore_foreground":
        fg = foreground_of(x)
        for c in range(x.shape[0]):
            out[c] = np.where(fg, (x[c] - offset[c]) / scale[c], 0.0)
    elif mode == "zscore":
        for c in range(x.shape[0]):
            out[c] = (x[c] - offset[c]) / scale[c]
    elif mode in ("percentile", "hu_window", "minmax"):
        for c in range(x.shape[0]):
            lo = offset[c]
            out[c] = (np.clip(x[c], lo, lo + scale[c]) - lo) / scale[c]
    else:  # none
        out[...] = x
    return out


def foreground_of(array: np.ndarray) -> np.ndarray:
    """``zscore_foreground``'s foreground of a ``(C, ...)`` array: where any channel is non-zero (all if none)."""
    fg = np.any(array != 0, axis=0)
    return fg if fg.any() else np.ones(array.shape[1:], dtype=bool)


def intensity_affine(array: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``offset`` and ``scale`` (input units) of the normalisation: ``normalised = (x − offset) / scale``.

    Where the normalisation clips (``percentile``, ``hu_window``, ``minmax``) this holds inside the window
    ``[offset, offset + scale]``; ``zscore_foreground`` sets the background to 0 besides. ``scale`` is therefore the
    number of input units per normalised unit, used to bring a change made on the model's input back to input units.

    Returns:
        two ``(C,)`` float64 arrays.
    """
    mode = spec.get("normalize", "none")
    x = np.asarray(array, dtype=np.float32)
    n = x.shape[0]
    offset, scale = np.zeros(n), np.ones(n)
    if mode in ("zscore_foreground", "zscore"):
        fg = foreground_of(x) if mode == "zscore_foreground" else None
        for c in range(n):
            vals = x[c][fg] if fg is not None else x[c]
            std = float(vals.std())
            offset[c], scale[c] = float(vals.mean()), (std if std > 1e-8 else 1.0)
    elif mode in ("percentile", "hu_window", "minmax"):
        for c in range(n):
            if mode == "percentile":
                lo, hi = np.percentile(x[c], spec.get("percentiles", [0.5, 99.5]))
            elif mode == "hu_window":
                lo, hi = spec.get("hu_window", [-1000.0, 1000.0])
            else:
                lo, hi = float(x[c].min()), float(x[c].max())
            offset[c], scale[c] = float(lo), (float(hi - lo) if hi > lo else 1.0)
    elif mode != "none":
        raise ModelError(
            f"unknown normalisation {mode!r} in the model description; use one of {', '.join(NORMALIZERS)}"
        )
    return offset, scale


@dataclass(frozen=True)
class GridChange:
    """How the input grid maps to the model grid (same physical box, different voxel counts).

    Attributes:
        input_shape: spatial shape of the input, tensor order.
        model_shape: spatial shape on the model grid, tensor order.
    """

    input_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    @property
    def identity(self) -> bool:
        return self.input_shape == self.model_shape

    def model_ijk_to_ras(self, ijk_to_ras: np.ndarray) -> np.ndarray:
        """IJK→RAS of the model grid given the input's (3D shapes, tensor order K, J, I)."""
        shape_in = np.asarray(self.input_shape[::-1], dtype=float)
        shape_out = np.asarray(self.model_shape[::-1], dtype=float)
        if shape_in.size == 2:
            shape_in = np.append(shape_in, 1.0)
            shape_out = np.append(shape_out, 1.0)
        scale = shape_in / shape_out  # new voxel size in old voxel units, per i, j, k
        m = np.array(ijk_to_ras, dtype=float)
        out = m.copy()
        out[:3, :3] = m[:3, :3] * scale[None, :]
        # voxel centre 0 of the new grid sits at old index (scale - 1) / 2
        out[:3, 3] = m[:3, :3] @ ((scale - 1.0) / 2.0) + m[:3, 3]
        return out


def grid_for_spacing(
    input_shape: Sequence[int], input_spacing: Sequence[float], target_spacing: Sequence[float] | None
) -> GridChange:
    """Model grid for a target spacing (tensor order, mm); None keeps the input grid."""
    shape = tuple(int(s) for s in input_shape)
    if target_spacing is None:
        return GridChange(shape, shape)
    new = tuple(
        max(1, int(round(n * s / t))) if t and t > 0 else n
        for n, s, t in zip(shape, input_spacing, target_spacing)
    )
    return GridChange(shape, new)


def resize(tensor: torch.Tensor, shape: Sequence[int], mode: str = "linear") -> torch.Tensor:
    """Resample a ``(B, C, *spatial)`` tensor to ``shape`` over the same physical box.

    ``mode`` is ``linear`` (bi/trilinear, align_corners=False) or ``nearest`` (for label maps).
    """
    shape = tuple(int(s) for s in shape)
    if tuple(tensor.shape[2:]) == shape:
        return tensor
    nd = tensor.ndim - 2
    if mode == "nearest":
        return F.interpolate(tensor, size=shape, mode="nearest-exact")
    interp = {1: "linear", 2: "bilinear", 3: "trilinear"}[nd]
    return F.interpolate(tensor, size=shape, mode=interp, align_corners=False)


def axis_moves(to_input: np.ndarray, tol: float = 1e-6) -> list[tuple[int, int, int]] | None:
    """Whether a model-grid → input-grid voxel map only permutes, flips and shifts axes by whole voxels.

    Args:
        to_input: 4×4 (or 3×4) affine from model voxel indices ``(a, b, c)`` to input voxel indices ``(i, j, k)``.

    Returns:
        For each input axis ``d`` (i, j, k): ``(model axis, sign ±1, offset)`` with ``index_d = sign · model index +
        offset``; None when the map is anything else (a resampling is needed).
    """
    rot, shift = np.asarray(to_input, dtype=float)[:3, :3], np.asarray(to_input, dtype=float)[:3, 3]
    r_int, t_int = np.rint(rot), np.rint(shift)
    if not (np.abs(rot - r_int).max() <= tol and np.abs(shift - t_int).max() <= tol):
        return None
    if not ((np.abs(r_int).sum(0) == 1).all() and (np.abs(r_int).sum(1) == 1).all()):
        return None
    return [(int(np.flatnonzero(r_int[d])[0]), int(r_int[d][np.flatnonzero(r_int[d])[0]]), int(t_int[d]))
            for d in range(3)]


def take_by_axis_moves(masks: np.ndarray, moves: list[tuple[int, int, int]], grid: Sequence[int]) -> np.ndarray:
    """Input-grid masks ``(M, K, J, I)`` read on the model grid ``(M, *grid)`` (float32) by :func:`axis_moves`'s
    voxel map: each model voxel takes the input voxel it lands on, or 0 outside the input (as nearest sampling with
    zero padding does, exactly, without interpolation)."""
    m = np.asarray(masks)
    n_in = m.shape[1:][::-1]  # (I, J, K)
    index, valid = [], []
    for d, (axis, sign, offset) in enumerate(moves):  # d: i, j, k
        idx = sign * np.arange(int(grid[axis])) + offset
        ok = (idx >= 0) & (idx < n_in[d])
        index.append(np.clip(idx, 0, n_in[d] - 1))
        valid.append(ok)
    # gather in input axis order (k, j, i), each along the model axis it comes from, then put model axes in order
    taken = m[np.ix_(np.arange(m.shape[0]), index[2], index[1], index[0])].astype(np.float32)
    keep = valid[2][:, None, None] & valid[1][None, :, None] & valid[0][None, None, :]
    taken *= keep[None]
    order = [moves[2][0], moves[1][0], moves[0][0]]  # the model axis of each gathered axis (k, j, i)
    return np.ascontiguousarray(taken.transpose(0, *[1 + order.index(a) for a in range(3)]))
