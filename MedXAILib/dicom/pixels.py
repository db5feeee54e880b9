"""DICOM pixel data: the numeric header attributes it depends on, its check against the declared size, decoding,
and conversion to modality values (see :mod:`.series` for the rules a series follows).

Uncompressed pixel data must hold exactly rows × columns × frames × samples × bits allocated (one trailing padding
byte allowed); compressed (encapsulated) frames must decode to the declared rows × columns × frames × samples. Values
come back as float32 modality values ``(K, rows, columns)``: each slice's stored integers through its own rescale
(or modality LUT); MONOCHROME1 inverted so that larger values are brighter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError


def number(item: Any, keyword: str, default: float, name: str) -> float:
    """A numeric attribute (``default`` when absent or empty); a value that is not a finite number is refused."""
    value = item.get(keyword, None) if item is not None else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise InputError(f"{name}: {keyword} is {str(value)[:40]!r}, not a finite number; the header is damaged")
    return number


def slope(item: Any, name: str) -> float:
    """The rescale slope (1 when absent); 0 is refused: it would give every pixel the intercept's value."""
    value = number(item, "RescaleSlope", 1.0, name)
    if value == 0.0:
        raise InputError(f"{name}: RescaleSlope is 0, which would give every pixel the value of the intercept; the "
                         "header is damaged. Replace the file with an intact copy")
    return value


def check_modality_lut(ds: Any, name: str) -> None:
    """A Modality LUT must hold as many entries as its descriptor declares (0 declares 65536); pydicom would clip
    every stored value beyond a short table to its last entry."""
    if "ModalityLUTSequence" not in ds or not len(ds.ModalityLUTSequence):
        return
    item = ds.ModalityLUTSequence[0]
    descriptor = item.get("LUTDescriptor", None)
    data = item.get("LUTData", None)
    try:
        declared = int(descriptor[0]) or 65536
    except (TypeError, ValueError, IndexError):
        declared = -1
    if data is None or declared < 1:
        raise InputError(f"{name}: its Modality LUT has no usable LUT Descriptor or LUT Data; the header is damaged")
    entries = len(data)
    if isinstance(data, bytes):  # OW: 16-bit words, or bytes for an 8-bit table
        bits = int(descriptor[2]) if len(descriptor) > 2 else 16
        entries = len(data) // (2 if bits > 8 else 1)
    if entries != declared:
        raise InputError(f"{name}: its Modality LUT holds {entries} entries where its descriptor declares {declared}; "
                         "the header is damaged. Replace the file with an intact copy")


def count(ds: Any, keyword: str, name: str, default: int | None = None) -> int:
    """A positive integer attribute (Rows, Columns, NumberOfFrames…); anything else is refused."""
    value = ds.get(keyword, None)
    if (value is None or value == "") and default is not None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or number != value and str(number) != str(value).strip():
        raise InputError(f"{name}: {keyword} is {str(value)[:40]!r}; it must be a positive whole number")
    return number


def pixel_format(ds: Any, name: str) -> tuple[str, tuple[int, int, int]]:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    bits = (count(ds, "BitsAllocated", name, 16), count(ds, "BitsStored", name, 16),
            int(number(ds, "PixelRepresentation", 0, name)))
    return photometric, bits


def _is_encapsulated(ds: Any) -> bool:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return bool(getattr(syntax, "is_encapsulated", False)) if syntax is not None else False


def declared_pixels(ds: Any, name: str) -> tuple[int, int, int, int, int]:
    """``(frames, rows, columns, samples, bits allocated)`` the header declares for the pixel data."""
    frames = count(ds, "NumberOfFrames", name, 1)
    samples = count(ds, "SamplesPerPixel", name, 1)
    return frames, count(ds, "Rows", name), count(ds, "Columns", name), samples, count(ds, "BitsAllocated", name)


def _check_native_length(ds: Any, name: str) -> None:
    """Uncompressed pixel data must hold exactly what the header declares (one trailing padding byte allowed)."""
    frames, rows, columns, samples, bits = declared_pixels(ds, name)
    per_pixel = 2 if samples == 3 and str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422" \
        else samples
    expected = (rows * columns * frames * per_pixel * bits + 7) // 8
    actual = len(ds.PixelData)
    if actual != expected and not (actual == expected + 1 and expected % 2):
        shortfall = "truncated (an interrupted copy?)" if actual < expected else "longer than its header says"
        raise InputError(
            f"{name}: the pixel data holds {actual} bytes where {rows} rows x {columns} columns x {frames} frame(s) "
            f"x {samples} sample(s) x {bits} bits declare {expected}; the file is {shortfall}. Replace it with an "
            "intact copy"
        )


def _check_decoded(arr: np.ndarray, ds: Any, name: str) -> np.ndarray:
    frames, rows, columns, samples, _bits = declared_pixels(ds, name)
    if arr.size != frames * rows * columns * samples:
        raise InputError(f"{name}: the pixel data decodes to {arr.size} values where {rows} rows x {columns} "
                         f"columns x {frames} frame(s) x {samples} sample(s) are declared; the file is damaged")
    return arr


def decode(path: Path, name: str) -> tuple[np.ndarray, Any]:
    """Stored pixel values (frames × rows × columns, or rows × columns) and the full data set, after checking the
    pixel data against the declared size (see the module docstring)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{name}: unreadable DICOM file ({type(exc).__name__}: {str(exc)[:120]})") from None
    if "PixelData" not in ds:
        raise InputError(f"{name}: the file holds no pixel data")
    encapsulated = _is_encapsulated(ds)
    if not encapsulated:
        _check_native_length(ds, name)
    try:
        return _check_decoded(np.asarray(ds.pixel_array), ds, name), ds
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - no pydicom decoder for this compression: let GDCM (through ITK) try
        if not encapsulated:  # pydicom reads every uncompressed layout; a failure here is a damaged header
            raise InputError(f"{name}: its pixel data cannot be read ({type(exc).__name__}: {str(exc)[:120]}); "
                             "the header's pixel description is damaged") from None
        try:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            arr = sitk.GetArrayFromImage(reader.Execute())
        except RuntimeError:
            raise InputError(f"{name}: its pixel data cannot be decoded ({type(exc).__name__}: {str(exc)[:120]}); "
                             "the file is truncated, corrupt or in an unsupported compression") from None
        _check_decoded(arr, ds, name)
        # GDCM has already applied the rescale: mark it by returning a data set without one
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.medxai_rescaled = True  # a plain attribute (lower case: not a DICOM keyword); the multi-frame path reads it
        return (arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr), ds


def modality_values(chosen: Sequence[tuple[Path, Any]], ordered: Sequence[Any], multiframe: bool,
                    notes: list[str]) -> np.ndarray:
    """``(K, rows, columns)`` float32 modality values of the slices ``ordered`` (the series reader's slices: their
    ``file_index`` into ``chosen`` (path, header) pairs, ``frame_index``, ``slope``, ``intercept`` and ``name``), in
    that order. A MONOCHROME1 series is inverted (its range mirrored) and a note says so."""
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2 (e.g. the copy Slicer ships)
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    if multiframe:
        path = chosen[0][0]
        stored, ds = decode(path, path.name)
        frames, rows, columns, samples, _bits = declared_pixels(ds, path.name)
        if samples != 1:
            raise InputError(f"{path.name}: {samples} samples per pixel; a multi-frame volume holds one grey level "
                             "per voxel")
        stored = stored.reshape((frames, rows, columns))
        if getattr(ds, "medxai_rescaled", False):  # decoded by GDCM, which applied the rescale already
            if len({(s.slope, s.intercept) for s in ordered}) > 1:
                raise InputError(f"{path.name}: its frames have their own rescale slope / intercept, but its "
                                 "compression is only decoded through GDCM, which applies one rescale to every frame; "
                                 "convert the file to an uncompressed or JPEG 2000 transfer syntax first")
            out = np.stack([stored[s.frame_index].astype(np.float32) for s in ordered])
        else:
            out = np.stack([stored[s.frame_index].astype(np.float32) * s.slope + s.intercept for s in ordered])
    else:
        planes = []
        for s in ordered:
            path = chosen[s.file_index][0]
            stored, ds = decode(path, s.name)
            if stored.ndim != 2:
                raise InputError(f"{s.name}: {stored.shape} pixels; a slice of a series holds one grey-level plane")
            check_modality_lut(ds, s.name)
            planes.append(np.asarray(apply_modality_lut(stored, ds), dtype=np.float32))
        out = np.stack(planes)
    if str(chosen[0][1].get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = (float(out.max()) + float(out.min())) - out
        notes.append("MONOCHROME1 image inverted so that larger values are brighter")
    return out.astype(np.float32, copy=False)
