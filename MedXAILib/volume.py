"""The :class:`Volume`: an image array and where it sits in the patient.

Layout: ``array`` is channel-first ``(C, K, J, I)`` — the order of SimpleITK's ``GetArrayFromImage`` and of Slicer's
``arrayFromVolume`` with a channel axis in front. ``I`` is the fastest (column) index. A 2D image (an X-ray) is a
Volume with ``K == 1``.

Geometry: ``ijk_to_ras`` is a 4×4 homogeneous matrix mapping a voxel index ``(i, j, k, 1)`` to a point in
millimetres in RAS (right, anterior, superior) patient coordinates — the convention of Slicer's
``GetIJKToRASMatrix``. Files on disk use LPS (ITK); :mod:`MedXAILib.io` converts at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def make_ijk_to_ras(
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
) -> np.ndarray:
    """Build an IJK→RAS matrix.

    Args:
        spacing: voxel size along i, j, k in mm.
        origin: RAS position (mm) of voxel (0, 0, 0).
        direction: 3×3 matrix whose columns are the RAS unit vectors of the i, j, k axes (identity by default).
    """
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = d * np.asarray(spacing, dtype=float)[None, :]
    m[:3, 3] = np.asarray(origin, dtype=float)
    return m


@dataclass
class Volume:
    """An image (or map, or mask) with its voxel-to-physical transform.

    Attributes:
        array: ``(C, K, J, I)`` array; float32 for images and maps, an integer type for label maps.
        ijk_to_ras: 4×4 float64 matrix, voxel index (i, j, k) → RAS millimetres.
        channel_names: one name per channel (e.g. ``["t1", "t1ce", "t2", "flair"]``), or empty.
        dicom: the :class:`~MedXAILib.dicom.DicomSource` the image was read from (None otherwise); DICOM outputs
            reference its instances. Derived volumes (``with_array``, maps, masks) do not carry it.
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray = field(default_factory=lambda: np.eye(4))
    channel_names: list[str] = field(default_factory=list)
    dicom: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise InputError(f"a Volume array must be (C, K, J, I); got shape {arr.shape}")
        self.array = arr
        m = np.asarray(self.ijk_to_ras, dtype=np.float64)
        if m.shape != (4, 4):
            raise InputError(f"ijk_to_ras must be 4x4; got {m.shape}")
        self.ijk_to_ras = m
        self.channel_names = list(self.channel_names)
        if self.channel_names and len(self.channel_names) != arr.shape[0]:
            raise InputError(
                f"{len(self.channel_names)} channel names given for {arr.shape[0]} channels"
            )

    # ---- geometry -------------------------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(K, J, I)``."""
        return tuple(int(s) for s in self.array.shape[1:])  # type: ignore[return-value]

    @property
    def is_2d(self) -> bool:
        return self.array.shape[1] == 1

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along i, j, k."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def spacing_kji(self) -> np.ndarray:
        """Voxel size (mm) along the array axes k, j, i (the order of ``array``'s spatial axes)."""
        return self.spacing[::-1].copy()

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3×3 matrix of RAS unit vectors of the i, j, k axes (columns)."""
        return self.ijk_to_ras[:3, :3] / self.spacing[None, :]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm³)."""
        return float(abs(np.linalg.det(self.ijk_to_ras[:3, :3]))) / 1000.0

    def same_geometry(self, other: Volume, atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.ijk_to_ras, other.ijk_to_ras, atol=atol)

    def geometry_difference(self, other: Volume, atol: float = 1e-4) -> str | None:
        """Describe how ``other``'s grid differs from this one (None when they agree)."""
        if self.shape != other.shape:
            return f"size {other.shape[::-1]} (i, j, k) instead of {self.shape[::-1]}"
        if not np.allclose(self.spacing, other.spacing, atol=atol):
            return f"spacing {np.round(other.spacing, 4).tolist()} mm instead of {np.round(self.spacing, 4).tolist()}"
        if not np.allclose(self.origin, other.origin, atol=atol):
            return f"origin {np.round(other.origin, 3).tolist()} instead of {np.round(self.origin, 3).tolist()}"
        if not np.allclose(self.direction, other.direction, atol=atol):
            return "a different axis direction"
        return None

    # ---- construction helpers ----------------------------------------------------------------------------------
    def with_array(self, array: np.ndarray, channel_names: Sequence[str] | None = None) -> Volume:
        """A new Volume on the same grid with another array (``(C, K, J, I)`` or ``(K, J, I)``)."""
        arr = np.asarray(array)
        if arr.ndim == 3:
            arr = arr[None]
        if tuple(arr.shape[1:]) != self.shape:
            raise InputError(f"array spatial shape {arr.shape[1:]} does not match the grid {self.shape}")
        names = list(channel_names) if channel_names is not None else (
            self.channel_names if arr.shape[0] == self.n_channels else []
        )
        return Volume(arr, self.ijk_to_ras.copy(), names)

    def channel(self, index: int) -> Volume:
        name = [self.channel_names[index]] if self.channel_names else []
        return Volume(self.array[index : index + 1].copy(), self.ijk_to_ras.copy(), name)

    def copy(self) -> Volume:
        return Volume(self.array.copy(), self.ijk_to_ras.copy(), list(self.channel_names))

    def check_finite(self, what: str = "the input") -> None:
        """Raise :class:`InputError` if any voxel is NaN or infinite."""
        arr = self.array
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            ch = sorted({int(c) for c in np.nonzero(~np.isfinite(arr))[0][:1000]})
            names = [self.channel_names[c] if self.channel_names else str(c) for c in ch]
            raise InputError(
                f"{what} has {bad} NaN or infinite voxels (channel {', '.join(names)}); "
                "fix or mask them before running a model"
            )

    @staticmethod
    def stack(volumes: Sequence[Volume], names: Sequence[str] | None = None) -> Volume:
        """Concatenate single- or multi-channel volumes along the channel axis; grids must agree."""
        first = volumes[0]
        for i, v in enumerate(volumes[1:], start=1):
            diff = first.geometry_difference(v)
            if diff is not None:
                label = names[i] if names else f"channel {i}"
                raise InputError(f"{label} has {diff} than the first input; resample it onto the same grid")
        arr = np.concatenate([v.array for v in volumes], axis=0)
        chan: list[str] = []
        for v in volumes:
            chan.extend(v.channel_names or [""] * v.n_channels)
        return Volume(arr, first.ijk_to_ras.copy(), chan if all(chan) else [])
