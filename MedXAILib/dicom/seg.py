"""A DICOM Segmentation (SEG) of a prediction, referencing the source series' instances (via highdicom).

One segment per non-background class, numbered 1.. in the model's class order, each with coded terminology
(:mod:`.terminology`) and an algorithm identification naming the model and its version; MedXAI is the manufacturer
and software. The segmentation is BINARY (the type Slicer's QuantitativeReporting and most viewers read); frames
that hold no segment voxel are omitted, as highdicom does by default. Each frame's Image Position / Orientation and
Pixel Spacing come from the source slice it derives from, and the SEG's Study, Patient and Frame of Reference are the
source's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..volume import Volume
from .output import Identity, check_grid, conform, frames_in_source_order, save, source_headers
from .series import DicomSource
from .terminology import term_for

SEG_SERIES_NUMBER = 901


def masks_from_prediction(prediction: Any, class_names: Sequence[str], label_values: Sequence[int],
                          output: str, threshold: float = 0.5) -> tuple[np.ndarray, list[str]]:
    """Binary masks ``(S, K, J, I)`` and their names, one per non-background class.

    Softmax models: the label map's voxels equal to the class's label value (exactly the label map written as
    NIfTI). Sigmoid models (overlapping regions such as BraTS TC / WT / ET): probability ≥ ``threshold``.
    """
    from .terminology import is_background

    masks, names = [], []
    for c, name in enumerate(class_names):
        if is_background(name):
            continue
        if output == "softmax":
            masks.append(prediction.labels.array[0] == label_values[c])
        else:
            masks.append(prediction.probabilities.array[c] >= threshold)
        names.append(name)
    if not masks:
        from ..errors import ModelError

        raise ModelError(f"the model's classes ({', '.join(class_names)}) are all background; a DICOM SEG needs "
                         "at least one segment")
    return np.stack(masks).astype(bool), names


def _code(triple: Sequence[str]) -> Any:
    from highdicom.sr import CodedConcept

    scheme, value, meaning = triple
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def write_segmentation(path: str | os.PathLike, masks: np.ndarray, names: Sequence[str], grid: Volume,
                       source: DicomSource, identity: Identity, fill_missing_uids: bool = False) -> dict[str, Any]:
    """Write ``masks`` ``(S, K, J, I)`` (on ``grid``, the input's grid) as a DICOM SEG at ``path``.

    Returns a JSON-ready description: SOP Instance / Series UIDs of the SEG, segments with their terminology, the
    referenced source instances and notes on anything filled in.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    check_grid(grid, source, "segmentation")
    headers, notes = source_headers(source, fill_missing_uids)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=identity.model_name, family=codes.cid7162.ArtificialIntelligence, version=identity.model_version,
        source=f"MedXAI {identity.software_version}",
    )
    descriptions, segments = [], []
    for number, name in enumerate(names, start=1):
        term = term_for(name)
        item = hd.seg.SegmentDescription(
            segment_number=number, segment_label=str(name)[:64],
            segmented_property_category=_code(term.category), segmented_property_type=_code(term.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        )
        if term.modifier is not None:
            import pydicom

            modifier = pydicom.Dataset()
            modifier.CodeValue, modifier.CodingSchemeDesignator, modifier.CodeMeaning = term.modifier[1], \
                term.modifier[0], term.modifier[2]
            item.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
        descriptions.append(item)
        segments.append({"number": number, "label": str(name), **term.as_dict()})
    # (S, K, J, I) -> (K', rows, columns, S) in source order
    pixels = np.moveaxis(masks.astype(np.uint8), 0, -1)
    pixels = frames_in_source_order(pixels, source)
    seg = hd.seg.Segmentation(
        source_images=headers, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="MedXAI",
        manufacturer_model_name="MedXAI", software_versions=identity.software_version, device_serial_number="0",
        series_description=f"MedXAI {identity.model_name} segmentation"[:64],
        content_label="MEDXAI_SEG", content_description=f"{identity.model_name} ({identity.model_version})"[:64],
        omit_empty_frames=bool(masks.any()),
    )
    notes += conform(seg, headers[0])
    save(seg, path)
    return {
        "sop_instance_uid": str(seg.SOPInstanceUID), "series_instance_uid": str(seg.SeriesInstanceUID),
        "study_instance_uid": str(seg.StudyInstanceUID), "frames": int(seg.NumberOfFrames),
        "segments": segments, "referenced_instances": len(headers), "notes": notes,
        "path": str(Path(path)),
    }
