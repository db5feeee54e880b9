"""A DICOM Parametric Map of a heat map, referencing the source series' instances (via highdicom).

The pixel data are the map's float32 values unchanged (Float Pixel Data), one frame per source slice (or the one
X-ray frame), each with the source slice's Image Position / Orientation. A Real World Value Mapping (identity: slope
1, intercept 0) labels the values ``relevance`` in arbitrary units (UCUM ``[arb'U]``) and names the method; the
quantity is a local ``99MEDXAI`` code. A window spanning the map's range is the default display. The normalised
display map (``--normalized``) is written the same way, labelled ``relevance (normalised)``.
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
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=(lo + hi) / 2, window_width=width)],
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
