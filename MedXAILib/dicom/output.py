"""What every DICOM output shares: the source headers it references, its identity, and the checks before any work.

Used by :mod:`.seg` and :mod:`.pmap`. Nothing here writes a file.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .series import DicomSource

DICOM_SUFFIXES = (".dcm",)
_AGE = re.compile(r"^\d{3}[DWMY]$")


def is_dicom_output(path: str | os.PathLike | None) -> bool:
    """True when an output path asks for DICOM (``.dcm``)."""
    return path is not None and str(path).lower().endswith(DICOM_SUFFIXES)


def require_dicom_source(volume: Volume, output: str | os.PathLike, inputs: Sequence[str],
                         fill_missing_uids: bool = False) -> DicomSource:
    """The input's :class:`DicomSource`, or a clear error when a DICOM output cannot reference its source.

    Call it right after reading the inputs, before the model runs.

    Raises:
        InputError: the input was not DICOM; the source lacks Study / Series Instance UIDs and
            ``fill_missing_uids`` is off; or slices were filled over a gap in a multi-frame source.
    """
    source = volume.dicom
    if source is None:
        raise InputError(
            f"{output}: a DICOM output must reference its source images, but the input "
            f"({', '.join(map(str, inputs))}) is not DICOM; write .nii.gz / .nrrd instead, or give the DICOM series"
        )
    if "SOPInstanceUID" in source.missing:
        raise InputError(f"{output}: the source instances have no SOP Instance UID, so nothing can reference them")
    if not fill_missing_uids:
        refuse_missing_uids(source.missing, output)
    if source.multiframe and source.filled_slices:
        raise InputError(f"{output}: slices were filled over a gap in a multi-frame source; a DICOM output can only "
                         "reference frames that exist (write .nii.gz instead)")
    return source


def refuse_missing_uids(missing: Sequence[str], output: str | os.PathLike) -> None:
    """Refuse a DICOM output whose source lacks Study / Series Instance UIDs (unless the caller fills them)."""
    missing = [m for m in missing if m != "SOPInstanceUID"]
    if missing:
        raise InputError(
            f"{output}: the source series has no {' or '.join(missing)} (blanked by an anonymiser?), and a DICOM "
            "output must name its source's study and series. Pass --dicom-fill-uids to give them new UIDs in the "
            "output (a PACS then files it apart from the source)"
        )


@dataclass
class Identity:
    """Who made an output: the model's name and version, and MedXAI's version."""

    model_name: str
    model_version: str
    software_version: str


def model_identity(model: Any) -> Identity:
    """The model's declared version, else a fingerprint of its weights (``weights sha256:<12 hex>``)."""
    from .. import __version__

    desc = model.description
    version = getattr(desc, "version", None) or (getattr(desc, "training", None) or {}).get("version")
    if not version:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.network.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        version = f"weights sha256:{digest.hexdigest()[:12]}"
    return Identity(model_name=str(model.name)[:64], model_version=str(version)[:64], software_version=__version__)


def source_headers(source: DicomSource, fill_missing_uids: bool) -> tuple[list[Any], list[str]]:
    """The source headers in slice order (filled slices left out), and notes on what was filled in.

    Single-frame sources: one header per real slice ``k``, in ``k`` order. A multi-frame source: its one header.
    Filled-in Study / Series UIDs are derived from the source's SOP Instance UIDs, so every output made from the
    same source (SEG, maps) names the same study and series.
    """
    from pydicom.uid import generate_uid

    headers = source.header_datasets()
    notes: list[str] = []
    if fill_missing_uids and source.missing:
        fills = {kw: generate_uid(entropy_srcs=[kw, *source.sop_instance_uids])
                 for kw in source.missing if kw != "SOPInstanceUID"}
        for ds in headers:
            for kw, uid in fills.items():
                setattr(ds, kw, uid)
        notes.append(f"new {', '.join(fills)} given to the output: the source had none")
    if source.multiframe:
        return headers[:1], notes
    return [headers[f] for f, _ in source.slice_frames if f >= 0], notes


def frames_in_source_order(array: np.ndarray, source: DicomSource) -> np.ndarray:
    """Reorder ``(K, …)`` slices into the order of :func:`source_headers` (multi-frame: the file's frame order)."""
    keep = [k for k, (f, _) in enumerate(source.slice_frames) if f >= 0]
    if not source.multiframe:
        return array[keep]
    out = np.empty_like(array[keep])
    for k in keep:
        out[source.slice_frames[k][1]] = array[k]
    return out


def conform(ds: Any, source_first: Any, laterality: bool = False) -> list[str]:
    """Fix Type 2C / invalid attributes that highdicom copies or omits; return what was changed.

    - Patient's Age copied from the source is dropped when it is not a valid AS value (``062Y``), rather than
      carried into the output as an invalid value;
    - Patient Orientation (Type 2C when there is no Frame of Reference) is copied from the source or left empty;
    - Laterality (General Series, Type 2C) is copied from the source or left empty (``laterality=True``);
    - without a Frame of Reference (a secondary-capture X-ray), a Pixel Measures item without Slice Thickness is
      dropped: such an output is registered pixel for pixel to its source, whose header holds the spacing, and
      highdicom's own reader (0.28) refuses Pixel Measures without Slice Thickness.
    """
    changed = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if "FrameOfReferenceUID" not in ds and shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures and "SliceThickness" not in measures[0]:
            del shared[0].PixelMeasuresSequence
    age = str(ds.get("PatientAge", "") or "")
    if age and not _AGE.match(age):
        del ds.PatientAge
        changed.append(f"the source's Patient's Age {age!r} is not a valid DICOM age; it was left out")
    if "FrameOfReferenceUID" not in ds and "PatientOrientation" not in ds:
        ds.PatientOrientation = source_first.get("PatientOrientation", None) or None
    if laterality and "Laterality" not in ds:
        ds.Laterality = source_first.get("Laterality", None) or None
    return changed


def save(ds: Any, path: str | os.PathLike) -> Path:
    """Write a data set atomically."""
    from ..io import atomic_path

    p = Path(path)
    with atomic_path(p) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return p


def check_grid(volume: Volume, source: DicomSource, what: str) -> None:
    """The array must be on the source's grid: one slice per source slice."""
    if volume.shape[0] != len(source.slice_frames):
        raise InputError(f"the {what} has {volume.shape[0]} slices but the DICOM source has "
                         f"{len(source.slice_frames)}; it must lie on the input's grid")
