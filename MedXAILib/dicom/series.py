"""Read one DICOM image series as a Volume, refusing series that do not form one regular grid.

Accepted inputs:

- a folder holding one series of single-frame slices (CT, MR, PET…), or several series plus a choice:
  ``FOLDER::SERIES_INSTANCE_UID`` (the same spelling works for ``--input`` and for :func:`read_dicom`);
- one enhanced (or legacy-converted) multi-frame CT/MR file, frames placed by their Plane Position / Orientation
  functional groups;
- one single-frame 2D image without patient geometry (CR, DX, secondary capture), placed at the origin with the
  identity direction and its pixel spacing, as SimpleITK does.

Checks (each refusal names the slice and the fix): every file in the folder is readable DICOM; all slices share rows,
columns, pixel spacing, orientation, frame of reference and photometric interpretation; every slice of a series has
an Image Position and Orientation (Patient), finite, with two orthogonal unit direction vectors; no two slices are
the same instance or sit at the same position; the slices lie on one line along the slice normal (no in-plane shift);
the spacing along the normal is uniform. A gap of whole missing slices is refused unless ``allow_gaps`` is set: then
the missing slices are filled by linear interpolation between their neighbours and a note says which.

Pixel data is checked like any other image before it is used: uncompressed pixel data must hold exactly rows ×
columns × frames × samples × bits allocated (one padding byte allowed), and compressed (encapsulated) frames must
decode to the declared rows × columns × frames × samples; a truncated or padded file is refused, never read with
zeros or with the bytes of the next element.

Pixel values are the modality values: Rescale Slope / Intercept (or a Modality LUT) applied, so CT is in HU. Each
slice is converted with its own attributes (bits, pixel representation, rescale), as the standard allows them to
differ between the images of a series; a note says when they did. MONOCHROME1 images are inverted so that larger
values are brighter, as in MONOCHROME2; a series that mixes the two is refused (no scanner writes one, and
inverting it as a whole would turn some slices upside down in intensity).

Array layout: ``(1, K, J, I)`` float32 with ``J`` = rows, ``I`` = columns, ``K`` = slices sorted along the normal
(row direction × column direction); ``ijk_to_ras`` maps voxel indices to RAS millimetres.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..volume import LPS_TO_RAS, Volume
from .pixels import count, modality_values, number, pixel_format, slope

SERIES_SEPARATOR = "::"
#: Files in a DICOM folder that are not expected to be DICOM and are skipped.
COMPANION_SUFFIXES = (".txt", ".md", ".json", ".csv", ".xml", ".html", ".pdf", ".png", ".jpg", ".jpeg", ".nii",
                      ".gz", ".nrrd", ".zip", ".py", ".log")
#: The photometric interpretations whose stored values are grey levels (a volume's voxels).
GREY_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
_ORIENTATION_TOL = 1e-4
_SPACING_REL_TOL = 1e-3
_UNIT_TOL = 1e-2  # direction cosines: unit length and orthogonal to 1 % (damage, not rounding, is what fails)


@dataclass
class DicomSource:
    """The source instances behind a Volume read from DICOM, for outputs that must reference them.

    Attributes:
        files: the instance files, in the order of ``sop_instance_uids``.
        sop_instance_uids / sop_class_uids: one per file.
        study_instance_uid, series_instance_uid, frame_of_reference_uid: of the series ('' / None when absent).
        modality: the source Modality (CT, MR, CR…).
        multiframe: True for one enhanced multi-frame file.
        slice_frames: for each slice ``k`` of the Volume, ``(file index, frame index)``; ``(-1, -1)`` for a slice
            filled in over a gap (it has no source instance).
        positions_lps: ``(K, 3)`` Image Position (Patient) of each slice in LPS mm (NaN for filled slices), or None
            for a 2D image without patient geometry.
        notes: what was done that the user should know (filled gaps, inverted MONOCHROME1, UIDs taken from the file
            meta header).
        missing: Type 1 attributes the source lacks (e.g. ``StudyInstanceUID`` blanked by an anonymiser).
    """

    files: list[Path]
    sop_instance_uids: list[str]
    sop_class_uids: list[str]
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str | None
    modality: str
    multiframe: bool
    slice_frames: list[tuple[int, int]]
    positions_lps: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def filled_slices(self) -> list[int]:
        """Indices ``k`` of slices filled over a gap (no source instance)."""
        return [k for k, (f, _) in enumerate(self.slice_frames) if f < 0]

    def header_datasets(self) -> list[Any]:
        """The source headers (pixel data not loaded) as pydicom Datasets, in ``files`` order.

        SOP Instance / Class UIDs blanked in the data set are taken from the file meta header (Part 10 requires them
        to be equal), so that references name the instances a PACS knows.
        """
        import pydicom

        out = []
        for path, uid, cls in zip(self.files, self.sop_instance_uids, self.sop_class_uids):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ds.SOPInstanceUID = uid
            ds.SOPClassUID = cls
            out.append(ds)
        return out


@dataclass
class _Slice:
    name: str
    file_index: int
    frame_index: int
    rows: int
    columns: int
    orientation: np.ndarray | None  # (6,) row then column direction cosines, LPS
    position: np.ndarray | None  # (3,) LPS mm
    spacing: np.ndarray | None  # (2,) row spacing, column spacing (mm)
    frame_of_reference: str | None
    slope: float = 1.0
    intercept: float = 0.0
    photometric: str = "MONOCHROME2"
    bits: tuple[int, int, int] = (16, 16, 0)  # bits allocated, bits stored, pixel representation


def split_series_spec(text: str | os.PathLike) -> tuple[Path, str | None]:
    """Split ``FOLDER::SERIES_INSTANCE_UID`` into the path and the UID (None when not given)."""
    s = str(text)
    if SERIES_SEPARATOR in s:
        path, uid = s.rsplit(SERIES_SEPARATOR, 1)
        return Path(path), uid.strip() or None
    return Path(s), None


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: str | os.PathLike) -> bool:
    """True for ``FOLDER::UID``, a folder (read as a DICOM series), or a file with the DICOM preamble or ``.dcm``."""
    text = str(path)
    p, uid = split_series_spec(text)
    if uid is not None or p.is_dir():
        return True
    return p.suffix.lower() in (".dcm", ".dicom") or (p.is_file() and _has_dicom_magic(p))


def _candidate_files(folder: Path) -> list[Path]:
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file() or entry.name.upper() == "DICOMDIR":
            continue
        if entry.name.lower().endswith(COMPANION_SUFFIXES):
            continue
        files.append(entry)
    return files


def _read_header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        ds = _read_without_preamble(path)
        if ds is not None:
            return ds
        where = ", in a folder read as a DICOM series; remove it or give the series' files their own folder" \
            if path.parent.is_dir() and len(list(path.parent.iterdir())) > 1 else ""
        raise InputError(f"{path}: not a DICOM file{where}") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for corrupt files
        raise InputError(f"{path}: unreadable DICOM file ({type(exc).__name__}: {str(exc)[:120]}); "
                         "replace it with an intact copy") from None


def _read_without_preamble(path: Path) -> Any:
    """A DICOM data set stored without the 128-byte preamble (older writers), or None when it is not one."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - not DICOM at all
        return None
    return ds if "SOPClassUID" in ds and "Rows" in ds else None


def _uid(ds: Any, keyword: str, meta_keyword: str | None = None) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    if not value and meta_keyword is not None:
        meta = getattr(ds, "file_meta", None)
        value = str(meta.get(meta_keyword, "") or "").strip() if meta is not None else ""
    return value


def _describe_series(uid: str, items: list[tuple[Path, Any]]) -> str:
    ds = items[0][1]
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    return f"{uid or '(no UID)'} [{ds.get('Modality', '?')}, {len(items)} file(s){', ' + desc if desc else ''}]"


def read_dicom(path: str | os.PathLike, series_uid: str | None = None,
               allow_gaps: bool = False) -> tuple[Volume, DicomSource]:
    """Read a DICOM series (see the module docstring) as a one-channel Volume and its :class:`DicomSource`.

    Args:
        path: a folder, ``FOLDER::SERIES_INSTANCE_UID``, or one DICOM file.
        series_uid: the Series Instance UID to read when the folder holds several (overrides a ``::`` suffix).
        allow_gaps: fill whole missing slices by linear interpolation instead of refusing the series.

    Raises:
        InputError: unreadable files, no or several series without a choice, or a series that is not one regular
            grid (the message names the slice and the fix).
    """
    p, spec_uid = split_series_spec(path)
    series_uid = series_uid or spec_uid
    if not p.exists():
        raise InputError(f"{p}: file or folder not found")
    files = _candidate_files(p) if p.is_dir() else [p]
    headers = [(f, _read_header(f)) for f in files]
    images = [(f, ds) for f, ds in headers if "Rows" in ds and "Columns" in ds and not _derived(ds)]
    if not images:
        raise InputError(f"{p}: no DICOM image found (the files hold no pixel data, or only segmentations / maps)")
    _refuse_cut_images(headers, images)
    skipped = len(headers) - len(images)
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for f, ds in images:
        groups.setdefault(_uid(ds, "SeriesInstanceUID"), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(f"{p}: no series with Series Instance UID {series_uid}; the folder holds "
                             + "; ".join(_describe_series(u, g) for u, g in groups.items()))
        chosen = groups[series_uid]
    elif len(groups) > 1:
        raise InputError(
            f"{p}: holds {len(groups)} DICOM series: "
            + "; ".join(_describe_series(u, g) for u, g in groups.items())
            + f". Choose one: {p}{SERIES_SEPARATOR}SERIES_INSTANCE_UID"
        )
    else:
        chosen = next(iter(groups.values()))
    multi = [f for f, ds in chosen
             if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds]
    if multi and len(chosen) > 1:
        raise InputError(f"{multi[0]}: a multi-frame file in a series of {len(chosen)} files; "
                         "give the multi-frame file on its own")
    if multi:
        slices = _multiframe_slices(chosen[0][0], chosen[0][1])
    else:
        slices = [_single_frame_slice(f, ds, i) for i, (f, ds) in enumerate(chosen)]
    volume, source = _assemble(chosen, slices, bool(multi), allow_gaps)
    if skipped:
        source.notes.append(f"{skipped} file(s) in {p.name} that are not images (segmentations, parametric maps, "
                            "structured reports…) were left out")
    return volume, source


def _refuse_cut_images(headers: list[tuple[Path, Any]], images: list[tuple[Path, Any]]) -> None:
    """A file of the same SOP class as the images but without Rows / Columns is an image whose header was cut (a
    truncated copy), not a report or a map to leave out: refuse it rather than read the series without that slice."""
    classes = {_uid(ds, "SOPClassUID", "MediaStorageSOPClassUID") for _, ds in images}
    for f, ds in headers:
        cls = _uid(ds, "SOPClassUID", "MediaStorageSOPClassUID")
        if not ("Rows" in ds and "Columns" in ds) and cls in classes:
            import pydicom

            kind = pydicom.uid.UID(cls).name if cls else "image"
            raise InputError(f"{f.name}: a {kind} instance without Rows / Columns; the file is truncated or damaged. "
                             "Replace it with an intact copy, or remove it")


def missing_series_uids(path: str | os.PathLike) -> list[str]:
    """Study / Series Instance UIDs blank in the first image header of ``path`` (a cheap check before any work)."""
    p, uid = split_series_spec(path)
    files = _candidate_files(p) if p.is_dir() else [p]
    for f in files:
        try:
            ds = _read_header(f)
        except InputError:
            continue
        if "Rows" in ds and (uid is None or _uid(ds, "SeriesInstanceUID") == uid):
            return [k for k in ("StudyInstanceUID", "SeriesInstanceUID") if not _uid(ds, k)]
    return []


#: SOP classes read as results, not as images: Segmentation, Parametric Map, RT Structure Set, presentation states,
#: structured reports and key objects, encapsulated documents.
_DERIVED_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.481.3",
                         "1.2.840.10008.5.1.4.1.1.11.", "1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.104.")


def _derived(ds: Any) -> bool:
    cls = _uid(ds, "SOPClassUID", "MediaStorageSOPClassUID")
    return any(cls == p or cls.startswith(p + ".") or (p.endswith(".") and cls.startswith(p))
               for p in _DERIVED_SOP_PREFIXES)


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n else None


def _pixel_spacing(ds: Any) -> np.ndarray | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        sp = _floats(ds.get(keyword), 2)
        if sp is not None:
            return sp
    return None


def _single_frame_slice(path: Path, ds: Any, index: int) -> _Slice:
    name = f"{path.name} (instance {ds.get('InstanceNumber', '?')})"
    photometric, bits = pixel_format(ds, name)
    return _Slice(
        name=name, file_index=index, frame_index=0,
        rows=count(ds, "Rows", name), columns=count(ds, "Columns", name),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3), spacing=_pixel_spacing(ds),
        frame_of_reference=_uid(ds, "FrameOfReferenceUID") or None,
        slope=slope(ds, name), intercept=number(ds, "RescaleIntercept", 0.0, name),
        photometric=photometric, bits=bits,
    )


def _group_item(per_frame: Any, shared: Any, sequence: str) -> Any:
    for fg in (per_frame, shared):
        if fg is not None and sequence in fg and len(fg[sequence].value) > 0:
            return fg[sequence].value[0]
    return None


def _multiframe_slices(path: Path, ds: Any) -> list[_Slice]:
    n = count(ds, "NumberOfFrames", path.name, 1)
    photometric, bits = pixel_format(ds, path.name)
    rows, columns = count(ds, "Rows", path.name), count(ds, "Columns", path.name)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per = list(ds.PerFrameFunctionalGroupsSequence) if "PerFrameFunctionalGroupsSequence" in ds else [None] * n
    if len(per) != n:
        raise InputError(f"{path}: {n} frames but {len(per)} per-frame functional groups; the file is inconsistent")
    out = []
    for f in range(n):
        pos = _group_item(per[f], shared, "PlanePositionSequence")
        ori = _group_item(per[f], shared, "PlaneOrientationSequence")
        meas = _group_item(per[f], shared, "PixelMeasuresSequence")
        pvt = _group_item(per[f], shared, "PixelValueTransformationSequence")
        name = f"{path.name} frame {f + 1}"
        rescale = pvt if pvt is not None else ds
        out.append(_Slice(
            name=name, file_index=0, frame_index=f, rows=rows, columns=columns,
            orientation=_floats(ori.get("ImageOrientationPatient") if ori is not None else None, 6),
            position=_floats(pos.get("ImagePositionPatient") if pos is not None else None, 3),
            spacing=_floats(meas.get("PixelSpacing") if meas is not None else None, 2),
            frame_of_reference=_uid(ds, "FrameOfReferenceUID") or None,
            slope=slope(rescale, name),
            intercept=number(rescale, "RescaleIntercept", 0.0, name), photometric=photometric, bits=bits,
        ))
    return out


def _majority(slices: Sequence[_Slice], key: Any, what: str, fix: str) -> None:
    values = [key(s) for s in slices]
    common, _ = Counter(values).most_common(1)[0]
    odd = [s for s, v in zip(slices, values) if v != common]
    if odd:
        shown = ", ".join(s.name for s in odd[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
        raise InputError(f"{shown}: {what} {key(odd[0])} where the rest of the series has {common}; {fix}")


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(values, 4))


def _check_consistent(slices: Sequence[_Slice]) -> list[str]:
    """Refuse slices that cannot form one image; return notes on what differs but is handled per slice."""
    _majority(slices, lambda s: (s.rows, s.columns), "rows x columns", "every slice must have the same size")
    _majority(slices, lambda s: None if s.spacing is None else _rounded(s.spacing), "pixel spacing",
              "every slice must have the same pixel spacing (mixed series? choose one with FOLDER::UID)")
    _majority(slices, lambda s: None if s.orientation is None else _rounded(s.orientation),
              "image orientation", "every slice must have the same orientation (a localizer or a reformat mixed in?)")
    _majority(slices, lambda s: s.frame_of_reference, "frame of reference", "the slices come from different scans")
    _majority(slices, lambda s: s.photometric, "photometric interpretation",
              "a series must be all MONOCHROME2 or all MONOCHROME1 (inverting only some slices would make their "
              "values disagree); replace the odd slice with an intact copy")
    if slices[0].photometric not in GREY_PHOTOMETRIC:
        raise InputError(f"{slices[0].name}: photometric interpretation {slices[0].photometric}, but a volume is read "
                         "as grey levels (MONOCHROME1 or MONOCHROME2); its stored values are not intensities")
    if len(slices) > 1 and len({(s.slope, s.intercept, s.bits) for s in slices}) > 1:
        return ["the slices differ in rescale slope / intercept or bits stored; each slice was converted to "
                "modality values with its own"]
    return []


def _assemble(chosen: list[tuple[Path, Any]], slices: list[_Slice], multiframe: bool,
              allow_gaps: bool) -> tuple[Volume, DicomSource]:
    first_ds = chosen[0][1]
    s0 = slices[0]
    no_geometry = s0.orientation is None or s0.position is None
    if len(slices) > 1:
        for s in slices:
            _check_placement(s)
    elif not no_geometry:
        _check_placement(s0)
    notes: list[str] = _check_consistent(slices)
    spacing_rc = s0.spacing if s0.spacing is not None else np.ones(2)
    if s0.spacing is None:
        notes.append("the image has no Pixel Spacing; 1 mm pixels were assumed")
    if not np.all(spacing_rc > 0) or not np.all(np.isfinite(spacing_rc)):
        raise InputError(f"{s0.name}: Pixel Spacing {spacing_rc.tolist()} mm; spacings must be positive")
    if no_geometry:
        row_dir, col_dir, normal = np.eye(3)
        order = [0]
        origin = np.zeros(3)
        slice_spacing = 1.0
        positions = None
        gaps: list[tuple[int, int]] = []
    else:
        row_dir, col_dir = s0.orientation[:3], s0.orientation[3:]
        normal = np.cross(row_dir, col_dir)
        dist = np.asarray([float(s.position @ normal) for s in slices])
        order = list(np.argsort(dist, kind="stable"))
        slices_sorted = [slices[i] for i in order]
        positions = np.asarray([s.position for s in slices_sorted])
        slice_spacing, gaps = _check_stack(slices_sorted, dist[order], normal, first_ds)
        origin = positions[0]
    lin = np.stack([row_dir * spacing_rc[1], col_dir * spacing_rc[0], normal * slice_spacing], axis=1)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = lin
    ijk_to_lps[:3, 3] = origin
    if gaps and not allow_gaps:
        before, missing_n = gaps[0]
        a, b = slices[order[before]], slices[order[before + 1]]
        raise InputError(
            f"{missing_n} slice(s) missing between {a.name} and {b.name} (a gap of "
            f"{(missing_n + 1) * slice_spacing:.3g} mm where the series spacing is {slice_spacing:.3g} mm); "
            "find the missing files, or pass --allow-dicom-gaps to fill them by linear interpolation"
        )
    array = modality_values(chosen, [slices[i] for i in order], multiframe, notes)
    slice_frames = [(slices[i].file_index, slices[i].frame_index) for i in order]
    if gaps:
        array, slice_frames, positions = _fill_gaps(array, slice_frames, positions, gaps)
        filled = sum(n for _, n in gaps)
        notes.append(f"filled {filled} missing slice(s) in {len(gaps)} gap(s) by linear interpolation between "
                     "their neighbours; they reference no source instance")
    meta_uids = [_uid(ds, "SOPInstanceUID") for _, ds in chosen]
    source = DicomSource(
        files=[f for f, _ in chosen],
        sop_instance_uids=[_uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID") for _, ds in chosen],
        sop_class_uids=[_uid(ds, "SOPClassUID", "MediaStorageSOPClassUID") for _, ds in chosen],
        study_instance_uid=_uid(first_ds, "StudyInstanceUID"),
        series_instance_uid=_uid(first_ds, "SeriesInstanceUID"),
        frame_of_reference_uid=s0.frame_of_reference,
        modality=str(first_ds.get("Modality", "") or ""),
        multiframe=multiframe,
        slice_frames=slice_frames,
        positions_lps=positions,
        notes=notes,
    )
    if not all(meta_uids):
        notes.append("SOP Instance / Class UIDs are blank in the data sets; the file meta header's were used")
    source.missing = [k for k, v in (("StudyInstanceUID", source.study_instance_uid),
                                      ("SeriesInstanceUID", source.series_instance_uid)) if not v]
    if not all(source.sop_instance_uids):
        source.missing.append("SOPInstanceUID")
    return Volume(array[None], LPS_TO_RAS @ ijk_to_lps), source


def _check_placement(s: _Slice) -> None:
    """A slice of a series needs a finite position and two orthogonal unit direction vectors."""
    if s.orientation is None or s.position is None:
        missing = " and ".join(k for k, v in (("Image Position", s.position), ("Image Orientation", s.orientation))
                               if v is None)
        raise InputError(f"{s.name}: no {missing} (Patient), so the slice cannot be placed in 3D; this series cannot "
                         "be read as a volume (replace the file with an intact copy, or remove it)")
    if not (np.all(np.isfinite(s.position)) and np.all(np.isfinite(s.orientation))):
        raise InputError(f"{s.name}: Image Position / Orientation (Patient) holds values that are not finite numbers; "
                         "the header is damaged")
    row, col = s.orientation[:3], s.orientation[3:]
    if (abs(np.linalg.norm(row) - 1) > _UNIT_TOL or abs(np.linalg.norm(col) - 1) > _UNIT_TOL
            or abs(float(row @ col)) > _UNIT_TOL):
        raise InputError(f"{s.name}: Image Orientation (Patient) {np.round(s.orientation, 4).tolist()} is not two "
                         "orthogonal unit vectors; the header is damaged")


def _check_stack(slices: list[_Slice], dist: np.ndarray, normal: np.ndarray, ds: Any) -> tuple[float, list]:
    """Refuse duplicate, shifted or irregular slices; return the slice spacing and the gaps ``(before, missing)``."""
    if len(slices) == 1:
        thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        return float(thickness), []
    steps = np.diff(dist)
    pixel = float(np.min(slices[0].spacing)) if slices[0].spacing is not None else 1.0
    for k, step in enumerate(steps):
        if step < 1e-3 * pixel:
            a, b = slices[k], slices[k + 1]
            raise InputError(f"{a.name} and {b.name} are at the same position ({np.round(a.position, 3).tolist()} "
                             "mm); a duplicate slice or two series mixed: remove one, or choose a series with "
                             "FOLDER::UID")
    origin = slices[0].position
    for s in slices[1:]:
        offset = s.position - origin
        shift = offset - (offset @ normal) * normal
        if np.linalg.norm(shift) > max(0.01, 0.01 * pixel):
            raise InputError(f"{s.name} is shifted {np.linalg.norm(shift):.3g} mm in-plane from the first slice "
                             "(a tilted gantry or a sheared stack); resample the series onto a regular grid first")
    base = float(np.median(steps))
    tol = max(0.01, _SPACING_REL_TOL * base)
    multiples = np.round(steps / base)
    regular = np.abs(steps - multiples * base) <= tol * np.maximum(multiples, 1)
    bad = [k for k in range(len(steps)) if not regular[k] or multiples[k] < 1]
    if bad:
        k = bad[0]
        raise InputError(
            f"non-uniform slice spacing: {steps[k]:.4g} mm between {slices[k].name} and {slices[k + 1].name} "
            f"where the series spacing is {base:.4g} mm; MedXAI needs one regular grid (resample the series first)"
        )
    gaps = [(k, int(multiples[k]) - 1) for k in range(len(steps)) if multiples[k] > 1]
    return base, gaps


def _fill_gaps(array: np.ndarray, slice_frames: list[tuple[int, int]], positions: np.ndarray,
               gaps: list[tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    missing = dict(gaps)
    planes, frames, pos = [], [], []
    for k in range(array.shape[0]):
        planes.append(array[k])
        frames.append(slice_frames[k])
        pos.append(positions[k])
        for m in range(1, missing.get(k, 0) + 1):
            w = m / (missing[k] + 1)
            planes.append(((1 - w) * array[k] + w * array[k + 1]).astype(array.dtype))
            frames.append((-1, -1))
            pos.append(np.full(3, np.nan))
    return np.stack(planes), frames, np.asarray(pos)
