"""Reading and writing Volumes through SimpleITK.

On disk, files are in ITK's LPS convention; in memory a :class:`~MedXAILib.volume.Volume` carries an IJK→RAS
matrix. The conversion happens here and nowhere else. Supported: NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD,
2D PNG/JPEG/BMP/TIFF images (read as one slice) and DICOM (through :mod:`MedXAILib.dicom`: a series folder,
``FOLDER::SERIES_UID``, a single-frame or an enhanced multi-frame file).

Writes are atomic: the file is written under a temporary name in the destination folder and renamed into place,
so an interrupted write never leaves a half-written output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .integrity import check_image_file
from .outputs import (
    atomic_path,  # noqa: F401 - re-exported: writers import it from here
    file_suffix,
)
from .quiet import captured_native_stderr
from .volume import LPS_TO_RAS, Volume

if TYPE_CHECKING:  # io sits below models: the model is only duck-typed here
    from .models import Model

#: Voxel sizes outside this range (mm) come from a corrupt header, not from a scanner or microscope.
MIN_SPACING_MM, MAX_SPACING_MM = 1e-6, 1e6
IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _ijk_to_ras_from_image(img: sitk.Image) -> np.ndarray:
    dim = img.GetDimension()
    spacing = np.ones(3)
    origin = np.zeros(3)
    direction = np.eye(3)
    n = min(dim, 3)
    spacing[:n] = img.GetSpacing()[:n]
    origin[:n] = img.GetOrigin()[:n]
    d = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)
    direction[:n, :n] = d[:n, :n]
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * spacing[None, :]
    ijk_to_lps[:3, 3] = origin
    return LPS_TO_RAS @ ijk_to_lps


def _apply_geometry(img: sitk.Image, ijk_to_ras: np.ndarray) -> None:
    ijk_to_lps = LPS_TO_RAS @ ijk_to_ras
    lin = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    direction = lin / spacing[None, :]
    dim = img.GetDimension()
    if dim == 2:
        img.SetSpacing(tuple(float(s) for s in spacing[:2]))
        img.SetOrigin(tuple(float(o) for o in ijk_to_lps[:2, 3]))
        img.SetDirection(tuple(float(x) for x in direction[:2, :2].ravel()))
    else:
        img.SetSpacing(tuple(float(s) for s in spacing))
        img.SetOrigin(tuple(float(o) for o in ijk_to_lps[:3, 3]))
        img.SetDirection(tuple(float(x) for x in direction.ravel()))


def image_to_volume(img: sitk.Image, name: str | None = None) -> Volume:
    """Convert a SimpleITK image (2D, 3D, 4D or vector-valued) to a Volume (channels first).

    Raises:
        InputError: complex voxels, a vector-valued 4D image, or a geometry that is not finite and invertible.
    """
    what = name or "image"
    dim = img.GetDimension()
    ncomp = img.GetNumberOfComponentsPerPixel()
    if "complex" in img.GetPixelIDTypeAsString():
        raise InputError(f"{what} has complex-valued voxels; give a real-valued image (magnitude or phase)")
    if dim == 4 and ncomp > 1:
        raise InputError(f"{what} is a 4D image of {ncomp}-component vectors; give one value per voxel")
    ijk_to_ras = _ijk_to_ras_from_image(img)
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)
    if (not np.isfinite(ijk_to_ras).all() or not np.all((spacing >= MIN_SPACING_MM) & (spacing <= MAX_SPACING_MM))
            or not abs(np.linalg.det(direction)) > 1e-3):
        raise InputError(
            f"{what} has a corrupt geometry (spacing {spacing.tolist()} mm, direction {direction.ravel().tolist()}): "
            f"spacings must lie between {MIN_SPACING_MM:g} and {MAX_SPACING_MM:g} mm and the axes independent"
        )
    arr = sitk.GetArrayFromImage(img)
    if ncomp > 1:
        # vector pixels: move components to the channel axis
        arr = np.moveaxis(arr, -1, 0)
        if dim == 2:
            arr = arr[:, None]
    elif dim == 2:
        arr = arr[None, None]
    elif dim == 3:
        arr = arr[None]
    elif dim == 4:
        pass  # (T, K, J, I): the 4th axis is the channel axis
    else:
        raise InputError(f"{what} has {dim} dimensions; expected 2, 3 or 4")
    return Volume(arr, ijk_to_ras, [])


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _nifti_nonfinite(path: Path) -> np.ndarray | None:
    """Non-finite voxels of a float NIfTI file as a raw-order bool array ``(…, K, J, I)``, or None.

    ITK's NIfTI reader silently turns NaN and Inf voxels into 0, which would hide corrupt inputs, so float NIfTI
    files are scanned here from their raw bytes (NIfTI-1 header: ``dim`` at byte 40, ``datatype`` at 70,
    ``vox_offset`` at 108; the voxel order is i fastest, as in the array).
    """
    import gzip
    import struct

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            header = fh.read(348)
            if len(header) < 348:
                return None
            endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype = struct.unpack(endian + "h", header[70:72])[0]
            if datatype not in _NIFTI_FLOAT_TYPES:
                return None
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            fh.read(max(offset - 348, 0))
            shape = [max(int(d), 1) for d in dims[1 : 1 + max(int(dims[0]), 1)]]
            raw = np.frombuffer(fh.read(), dtype=endian + _NIFTI_FLOAT_TYPES[datatype], count=int(np.prod(shape)))
    except (OSError, EOFError, ValueError, struct.error):
        return None
    bad = ~np.isfinite(raw)
    if not bad.any():
        return None
    return bad.reshape(shape[::-1])


def _rgb_to_gray(vol: Volume) -> Volume:
    """RGB(A) → luminance (ITU-R 601); grey + alpha → the grey channel (alpha is not image content)."""
    arr = vol.array.astype(np.float32)
    if arr.shape[0] == 2:
        return vol.with_array(arr[:1], channel_names=[])
    if arr.shape[0] in (3, 4):
        gray = 0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2]
        return vol.with_array(gray[None], channel_names=[])
    return vol


def _read_grey_alpha_png(path: Path) -> sitk.Image:
    """A grey + alpha PNG (which ITK's PNG reader cannot type) as a 2-component image: grey, alpha.

    Read with Pillow (a matplotlib dependency); the pixel spacing comes from the ``pHYs`` chunk when it is in metres,
    as ITK does, else 1 mm.
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("LA", "La", "I;16", "L"):
            raise InputError(f"{path}: PNG pixel mode {im.mode} cannot be read")
        arr = np.asarray(im.convert("LA") if im.mode == "La" else im)
        dpi = im.info.get("dpi")
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=arr.ndim == 3)
    if dpi and all(d > 0 for d in dpi):
        img.SetSpacing(tuple(25.4 / float(d) for d in dpi))
    return img


def read_image(path: str | os.PathLike, grayscale_2d: bool = True, allow_dicom_gaps: bool = False) -> Volume:
    """Read one file (or DICOM folder) as a Volume.

    Args:
        path: a NIfTI/NRRD/MHA file, a 2D image, or DICOM: a folder with one series, ``FOLDER::SERIES_UID``, one
            single-frame or enhanced multi-frame file (read and checked by :func:`MedXAILib.dicom.read_dicom`; the
            Volume's ``dicom`` then holds the source instances).
        grayscale_2d: convert RGB(A) 2D images to one luminance channel (X-rays stored as RGB).
        allow_dicom_gaps: fill whole missing DICOM slices by interpolation instead of refusing the series.

    Raises:
        InputError: the path does not exist or cannot be read as an image.
    """
    from .dicom import is_dicom_path, read_dicom, split_series_spec

    if is_dicom_path(path) and split_series_spec(path)[0].exists():
        vol, source = read_dicom(path, allow_gaps=allow_dicom_gaps)
        return Volume(vol.array, vol.ijk_to_ras, [], dicom=source)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    check_image_file(p)
    with captured_native_stderr() as said:
        failure: RuntimeError | None = None
        try:
            img = sitk.ReadImage(str(p))
        except RuntimeError as exc:
            failure = exc
            if file_suffix(p) == ".png" and "Unknown PixelType" in str(exc):
                img, failure = _read_grey_alpha_png(p), None
    if failure is not None:
        first = str(failure).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "Unable" in line), first[0] if first else "")
        detail = detail.split("ERROR:", 1)[-1].strip() or next(iter(said.lines()), "")
        raise InputError(f"{p}: cannot be read as an image ({detail[:160]})")
    said.warn(str(p))
    vol = image_to_volume(img, name=str(p))
    if p.is_file() and file_suffix(p) in (".nii", ".nii.gz") and np.issubdtype(vol.array.dtype, np.floating):
        bad = _nifti_nonfinite(p)
        if bad is not None and bad.size == vol.array.size:
            arr = vol.array.copy()
            arr[bad.reshape(arr.shape)] = np.nan
            vol = vol.with_array(arr)
    if grayscale_2d and vol.is_2d and vol.n_channels in (2, 3, 4):
        vol = _rgb_to_gray(vol)
    if vol.n_channels == 1 and np.issubdtype(vol.array.dtype, np.floating):
        vol = vol.with_array(vol.array.astype(np.float32, copy=False))
    return vol


def read_volume(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    channel_names: Sequence[str] | None = None,
    dtype: type = np.float32,
    allow_dicom_gaps: bool = False,
) -> Volume:
    """Read a (multi-channel) input: one file per channel, or one 4D file whose last axis is the channel.

    Args:
        paths: one path or several; several files must share one voxel grid.
        channel_names: names to give the channels (e.g. ``["t1", "t1ce", "t2", "flair"]``).
        dtype: array type of the result (float32 for images).
        allow_dicom_gaps: fill whole missing DICOM slices by interpolation instead of refusing the series.

    Raises:
        InputError: a file is missing or unreadable, or the files' grids differ (the message names the file).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise InputError("no input file given")
    vols = [read_image(p, allow_dicom_gaps=allow_dicom_gaps) for p in paths]
    first = vols[0]
    for p, v in zip(paths[1:], vols[1:]):
        diff = first.geometry_difference(v)
        if diff is not None:
            raise InputError(
                f"{p} has {diff} than {paths[0]}; all channel files must share one voxel grid "
                "(resample them onto the same grid first)"
            )
    arr = np.concatenate([v.array for v in vols], axis=0).astype(dtype, copy=False)
    names = list(channel_names) if channel_names else []
    if names and len(names) != arr.shape[0]:
        raise InputError(f"{len(names)} channel names for {arr.shape[0]} channels read from {len(paths)} file(s)")
    return Volume(arr, first.ijk_to_ras, names, dicom=first.dicom)


def read_label_map(path: str | os.PathLike, reference: Volume | None = None, what: str = "reference") -> Volume:
    """Read an integer label map (one channel) and optionally check it lies on ``reference``'s grid.

    Raises:
        InputError: unreadable, not a label map (non-integer values or several channels), or a grid mismatch.
    """
    vol = read_image(path, grayscale_2d=False)
    if vol.n_channels != 1:
        raise InputError(f"{path}: the {what} has {vol.n_channels} channels; a label map has one")
    arr = vol.array
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.allclose(arr, np.round(arr)):
            raise InputError(
                f"{path}: the {what} holds non-integer values, so it is not a label map "
                "(give a segmentation with integer labels, not an image or a heat map)"
            )
        arr = np.round(arr)
    if arr.min() < 0:
        raise InputError(
            f"{path}: the {what} has negative labels; a label map uses 0 for background and 1.. for labels"
        )
    if arr.max() > np.iinfo(np.int32).max:
        raise InputError(
            f"{path}: the {what} has the label {arr.max():.0f}, beyond the largest label value "
            f"{np.iinfo(np.int32).max}; this is not a label map"
        )
    vol = vol.with_array(arr.astype(np.int16 if arr.max() < 32767 else np.int32))
    if reference is not None:
        diff = reference.geometry_difference(vol)
        if diff is not None:
            raise InputError(f"{path}: the {what} has {diff} than the image; it must lie on the image's voxel grid")
    return vol


def volume_to_image(vol: Volume, channel: int | None = None, force_2d: bool = False) -> sitk.Image:
    """Convert a Volume to a SimpleITK image (one channel → scalar image; several → vector image)."""
    arr = vol.array if channel is None else vol.array[channel : channel + 1]
    two_d = force_2d and vol.is_2d
    if arr.shape[0] == 1:
        data = arr[0, 0] if two_d else arr[0]
        img = sitk.GetImageFromArray(np.ascontiguousarray(data))
    else:
        data = np.moveaxis(arr, 0, -1)
        img = sitk.GetImageFromArray(np.ascontiguousarray(data[0] if two_d else data), isVector=True)
    _apply_geometry(img, vol.ijk_to_ras)
    return img


def write_volume(vol: Volume, path: str | os.PathLike, compress: bool = True, four_d: bool = False) -> Path:
    """Write a Volume atomically; the format follows the extension (.nii.gz, .nrrd, .mha, .png…).

    Multi-channel volumes are written as vector images (NRRD/MHA/NIfTI), or with ``four_d`` as one 4-D scalar image
    ``(x, y, z, channel)`` whose first three axes carry the volume's geometry (the 4th: spacing 1, origin 0).
    A 2D image format needs ``K == 1``.
    """
    p = Path(path)
    suffix = file_suffix(p)
    is_2d_format = suffix in IMAGE_2D_SUFFIXES
    if is_2d_format and not vol.is_2d:
        raise InputError(f"{p}: a {suffix} file holds one 2D slice; this volume has {vol.shape[0]} slices")
    if four_d and not is_2d_format and vol.n_channels > 1:
        img = sitk.JoinSeries([volume_to_image(vol, channel=c) for c in range(vol.n_channels)])
    else:
        img = volume_to_image(vol, force_2d=is_2d_format)
    with atomic_path(p) as tmp, captured_native_stderr():
        try:
            sitk.WriteImage(img, str(tmp), useCompression=compress and not is_2d_format)
        except RuntimeError as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            detail = next((ln for ln in lines if "ERROR" in ln), lines[-1]).split("ERROR:", 1)[-1].strip()
            raise InputError(f"{p}: cannot be written ({detail[:160]})") from None
    return p


def write_json(data: object, path: str | os.PathLike) -> Path:
    """Write JSON atomically (indent 2, keys in insertion order)."""
    import json

    p = Path(path)
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return p


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_inputs(paths: Sequence[str], model: Model, allow_dicom_gaps: bool = False) -> Volume:
    """Read a model's input files (one per channel in the model's order, or one multi-channel file) as one Volume
    named with the model's channel names and checked by ``model.check_input`` (channel count, 2D/3D, finite).
    A DICOM input's :class:`~MedXAILib.dicom.DicomSource` stays attached (``volume.dicom``)."""
    vol = read_volume(list(paths), allow_dicom_gaps=allow_dicom_gaps)
    names = model.description.channel_names
    if vol.n_channels != len(names):
        raise InputError(
            f"model {model.name!r} takes {len(names)} channel(s) ({', '.join(names)}); "
            f"{len(paths)} file(s) gave {vol.n_channels}. Give one --input per channel in that order"
        )
    vol = Volume(vol.array, vol.ijk_to_ras, names, dicom=vol.dicom)
    model.check_input(vol)
    from .input_checks import questionable_input, warn

    warn(questionable_input(vol, ", ".join(map(str, paths)), model.description.preprocessing.get("input_size")))
    return vol
