"""Standard (DICOM / SNOMED CT) terminology for predicted segments, as Slicer stores it.

Slicer keeps a segment's meaning in one string (``vtkSegment.SetTerminology``, the ``TerminologyEntry`` tag), the
format of ``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry``: seven ``~``-separated parts, each code a
``scheme^value^meaning`` triple::

    context~SCT^49755003^Morphologically Altered Structure~SCT^79654002^Edema~^^~anatomic context~^^~^^

(terminology context, category, type, type modifier, anatomic context, region, region modifier). Slicer's DICOM SEG
export reads the category and type codes from it.

Where the codes come from, first match wins:

1. the ``segment`` command's sidecar, ``"terminology": {class name: {"category": [scheme, code, meaning],
   "type": [scheme, code, meaning]}}`` (the model says what its classes are);
2. a short table of codes for the built-in demo classes, taken from Slicer's DICOM master list;
3. Slicer's own default for a new segment (category and type *Tissue*, SCT 85756007).

Pure Python: no Slicer import, so it is tested anywhere.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

Code = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)

DICOM_CONTEXT = "Segmentation category and type - DICOM master list"
SLICER_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

TISSUE: Code = ("SCT", "85756007", "Tissue")
ALTERED: Code = ("SCT", "49755003", "Morphologically Altered Structure")

#: Codes for the built-in demo classes (SNOMED CT, as listed in Slicer's DICOM master list).
KNOWN_CLASSES: dict[str, tuple[Code, Code]] = {
    "necrotic core": (ALTERED, ("SCT", "6574001", "Necrosis")),
    "necrosis": (ALTERED, ("SCT", "6574001", "Necrosis")),
    "oedema": (ALTERED, ("SCT", "79654002", "Edema")),
    "edema": (ALTERED, ("SCT", "79654002", "Edema")),
    "enhancing rim": (ALTERED, ("SCT", "108369006", "Neoplasm")),
    "tumour": (ALTERED, ("SCT", "108369006", "Neoplasm")),
    "tumor": (ALTERED, ("SCT", "108369006", "Neoplasm")),
}


def serialize(category: Code, type_: Code, context: str = DICOM_CONTEXT) -> str:
    """A Slicer ``TerminologyEntry`` string with a category and a type (no modifier, no anatomic region)."""
    for code in (category, type_):
        if len(code) != 3 or any("~" in part or "^" in part for part in code):
            raise ValueError(f"a terminology code is (scheme, value, meaning) without '~' or '^': {code!r}")
    return "~".join([context, "^".join(category), "^".join(type_), "^^", ANATOMIC_CONTEXT, "^^", "^^"])


def parse(entry: str) -> dict[str, Code] | None:
    """The category and type codes of a serialized entry (None when it is not one)."""
    parts = entry.split("~")
    if len(parts) != 7:
        return None
    category, type_ = (tuple(p.split("^")) for p in parts[1:3])
    if len(category) != 3 or len(type_) != 3 or not category[1]:
        return None
    return {"context": parts[0], "category": category, "type": type_}  # type: ignore[dict-item]


DEFAULT_ENTRY = serialize(TISSUE, TISSUE, SLICER_CONTEXT)


def _code(value: Any) -> Code | None:
    if isinstance(value, Mapping):  # {"scheme": …, "code": …, "meaning": …} is accepted too
        value = [value.get("scheme") or value.get("CodingSchemeDesignator"),
                 value.get("code") or value.get("CodeValue"), value.get("meaning") or value.get("CodeMeaning")]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        parts = tuple(str(v) for v in value)
        if all(parts) and not any("~" in p or "^" in p for p in parts):
            return parts  # type: ignore[return-value]
    return None


def entry_for(class_name: str, sidecar: Mapping[str, Any] | None = None) -> str:
    """The terminology entry of one class: from the sidecar, the demo table, or Slicer's default (Tissue)."""
    described = (sidecar or {}).get(class_name)
    if isinstance(described, Mapping):
        category, type_ = _code(described.get("category")), _code(described.get("type"))
        if category and type_:
            return serialize(category, type_)
    known = KNOWN_CLASSES.get(class_name.strip().lower())
    if known:
        return serialize(*known)
    return DEFAULT_ENTRY


def entries_for_labels(names: Mapping[int, str], sidecar: Mapping[str, Any] | None = None) -> dict[int, str]:
    """``{label value: terminology entry}`` for the named labels (see :func:`entry_for`)."""
    table = sidecar if isinstance(sidecar, Mapping) else None
    return {int(value): entry_for(str(name), table) for value, name in names.items()}
