"""A DICOM Parametric Map of a heat map, referencing the source series' instances (via highdicom).

The pixel data are the map's float32 values unchanged (Float Pixel Data), one frame per source slice (or the one
X-ray frame), each with the source slice's Image Position / Orientation. A Real World Value Mapping (identity: slope
1, intercept 0) labels the values ``relevance`` in arbitrary units (UCUM ``[arb'U]``) and names the method; the
quantity is a local ``99MEDXAI`` code. A window spanning the map's range is the default display. The normalised
display map (``--normalized``) is written the same way, labelled ``relevance (normalised)``.

A Parametric Map must have a Frame of Reference and plane geometry. A single-frame X-ray without them (CR, most DX,
secondary capture) gets the geometry MedXAI reads it with, stated in a note: a new Frame of Reference (derived from
the source's SOP Instance UID), the image plane at the origin with the identity orientation, the source's pixel
spacing and a nominal 1 mm thickness. The map is still registered pixel for pixel to the referenced source image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..volume import Volume
from .output import Identity, check_grid, conform, frames_in_source_order, save, source_headers
from .series import DicomSource

PMAP_SERIES_NUMBER = 902
ARBITRARY_UNIT = ("[arb'U]", "UCUM", "arbitrary unit")
RELEVANCE = ("MXRELEVANCE", "99MEDXAI", "Relevance (explanation heat map)")


def write_parametric_map(path: str | os.PathLike, heatmap: Volume, source: DicomSource, identity: Identity,
                         method: str, normalized: bool = False, fill_missing_uids: bool = False) -> dict[str, Any]:
    """Write ``heatmap`` (``(1, K, J, I)`` on the input's grid) as a DICOM Parametric Map at ``path``.

    Returns a JSON-ready description (UIDs, frames, value range, notes).
    """
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.uid import generate_uid

    check_grid(heatmap, source, "heat map")
    headers, notes = source_headers(source, fill_missing_uids)
    if "FrameOfReferenceUID" not in headers[0] or "ImagePositionPatient" not in headers[0]:
        notes.append(_place_projection_image(headers[0], heatmap))
    values = frames_in_source_order(np.asarray(heatmap.array[0], dtype=np.float32), source)
    lo, hi = float(values.min()), float(values.max())
    label = "relevance norm" if normalized else "relevance"
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label, lut_explanation=f"{method} relevance{' normalised' if normalized else ''}, arbitrary units",
        unit=CodedConcept(*ARBITRARY_UNIT), value_range=(lo, hi), slope=1.0, intercept=0.0,
        quantity_definition=CodedConcept(*RELEVANCE),
    )
    width = max(hi - lo, 1e-6)
    pmap = hd.pm.ParametricMap(
        source_images=headers, pixel_array=values, series_instance_uid=generate_uid(),
        series_number=PMAP_SERIES_NUMBER + int(normalized), sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="MedXAI", manufacturer_model_name="MedXAI", software_versions=identity.software_version,
        device_serial_number="0", contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(
            window_center=(lo + hi) / 2, window_width=width, window_explanation="full range",
            voi_lut_function="LINEAR_EXACT",  # maps can span less than 1 (normalised: [-1, 1])
        )],
        series_description=f"MedXAI {method} {identity.model_name}{' normalised' if normalized else ''}"[:64],
        content_label="MEDXAI_MAP", content_description=f"{identity.model_name} ({identity.model_version})"[:64],
    )
    notes += conform(pmap, headers[0], laterality=True)
    save(pmap, path)
    return {
        "sop_instance_uid": str(pmap.SOPInstanceUID), "series_instance_uid": str(pmap.SeriesInstanceUID),
        "study_instance_uid": str(pmap.StudyInstanceUID), "frames": int(pmap.NumberOfFrames),
        "value_range": [lo, hi], "unit": list(ARBITRARY_UNIT), "referenced_instances": len(headers),
        "notes": notes, "path": str(Path(path)),
    }


def _place_projection_image(header: Any, heatmap: Volume) -> str:
    """Give a 2D source header without patient geometry the geometry of the Volume read from it (see above)."""
    from pydicom.uid import generate_uid

    from ..volume import LPS_TO_RAS

    if heatmap.shape[0] != 1:
        raise ValueError("only a single-frame image can lack patient geometry")
    ijk_to_lps = LPS_TO_RAS @ heatmap.ijk_to_ras
    spacing = heatmap.spacing
    direction = ijk_to_lps[:3, :3] / spacing[None, :]
    header.FrameOfReferenceUID = generate_uid(entropy_srcs=["frame of reference", str(header.SOPInstanceUID)])
    header.PositionReferenceIndicator = None
    header.ImagePositionPatient = [float(v) for v in ijk_to_lps[:3, 3]]
    header.ImageOrientationPatient = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    header.PixelSpacing = [float(spacing[1]), float(spacing[0])]
    header.SliceThickness = float(spacing[2])
    return ("the source image has no patient geometry (Frame of Reference, Image Position / Orientation), which a "
            "Parametric Map needs: the map has a new Frame of Reference with the image plane at the origin and "
            "the source's pixel spacing; it stays registered pixel for pixel to the referenced source image")
