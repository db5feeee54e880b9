"""Coded terminology for class names: what a DICOM SEG segment and a Slicer segment say they are.

A class gets a *category* and a *type* (and for paired organs a *modifier*, left or right), each a triple
``(coding scheme, code value, code meaning)``:

- SNOMED CT (scheme ``SCT``) for the classes listed in :data:`_KNOWN`: the demo models' tumour sub-regions, organs
  of the MONAI bundles / nnU-Net / TotalSegmentator tasks (liver, spleen, lungs, kidneys, …) and chest findings. The
  code values are not typed in here: they are looked up by keyword in pydicom's copy of the DICOM standard's SNOMED CT
  concepts (``pydicom.sr.codedict.codes.SCT``), so they are the codes the standard uses.
- Everything else gets a clearly marked local code: scheme ``99MEDXAI`` (DICOM reserves ``99`` prefixes for private
  schemes), value ``MX`` + 10 hex digits of the class name's SHA-1, meaning the class name itself.

Class names are matched case-insensitively with ``_``/``-`` read as spaces (``lung_left`` = ``left lung``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

LOCAL_SCHEME = "99MEDXAI"
Code = tuple[str, str, str]

_ANATOMY = "AnatomicalStructure"
_ABNORMAL = "MorphologicallyAbnormalStructure"

# name -> (category keyword, type keyword or None for a local type, modifier keyword or None)
_KNOWN: dict[str, tuple[str, str | None, str | None]] = {
    # brain tumour sub-regions (BraTS labels and the demo model's names)
    "necrotic core": (_ABNORMAL, "Necrosis", None),
    "necrosis": (_ABNORMAL, "Necrosis", None),
    "necrotic tumour core": (_ABNORMAL, "Necrosis", None),
    "necrotic tumor core": (_ABNORMAL, "Necrosis", None),
    "ncr": (_ABNORMAL, "Necrosis", None),
    "ncr/net": (_ABNORMAL, "Necrosis", None),
    "oedema": (_ABNORMAL, "Edema", None),
    "edema": (_ABNORMAL, "Edema", None),
    "peritumoral edema": (_ABNORMAL, "Edema", None),
    "peritumoural oedema": (_ABNORMAL, "Edema", None),
    "ed": (_ABNORMAL, "Edema", None),
    "enhancing rim": (_ABNORMAL, None, None),
    "enhancing tumour": (_ABNORMAL, None, None),
    "enhancing tumor": (_ABNORMAL, None, None),
    "et": (_ABNORMAL, None, None),
    "tumour core": (_ABNORMAL, None, None),
    "tumor core": (_ABNORMAL, None, None),
    "tc": (_ABNORMAL, None, None),
    "whole tumour": (_ABNORMAL, None, None),
    "whole tumor": (_ABNORMAL, None, None),
    "wt": (_ABNORMAL, None, None),
    "tumour": (_ABNORMAL, "Neoplasm", None),
    "tumor": (_ABNORMAL, "Neoplasm", None),
    "neoplasm": (_ABNORMAL, "Neoplasm", None),
    "lesion": (_ABNORMAL, "Lesion", None),
    "cyst": (_ABNORMAL, "Cyst", None),
    # chest findings (ChestX-ray14 names and the demo model's)
    "nodule": (_ABNORMAL, "Nodule", None),
    "mass": (_ABNORMAL, "Mass", None),
    "cardiomegaly": (_ABNORMAL, "Cardiomegaly", None),
    "effusion": (_ABNORMAL, "Effusion", None),
    "pleural effusion": (_ABNORMAL, "PleuralEffusion", None),
    "pneumothorax": (_ABNORMAL, "Pneumothorax", None),
    "fibrosis": (_ABNORMAL, "Fibrosis", None),
    # organs (MONAI bundles, nnU-Net / MSD tasks, TotalSegmentator)
    "liver": (_ANATOMY, "Liver", None),
    "spleen": (_ANATOMY, "Spleen", None),
    "lung": (_ANATOMY, "Lung", None),
    "lungs": (_ANATOMY, "Lung", None),
    "left lung": (_ANATOMY, "Lung", "Left"),
    "right lung": (_ANATOMY, "Lung", "Right"),
    "lung left": (_ANATOMY, "Lung", "Left"),
    "lung right": (_ANATOMY, "Lung", "Right"),
    "kidney": (_ANATOMY, "Kidney", None),
    "left kidney": (_ANATOMY, "Kidney", "Left"),
    "right kidney": (_ANATOMY, "Kidney", "Right"),
    "kidney left": (_ANATOMY, "Kidney", "Left"),
    "kidney right": (_ANATOMY, "Kidney", "Right"),
    "adrenal gland": (_ANATOMY, "AdrenalGland", None),
    "adrenal gland left": (_ANATOMY, "AdrenalGland", "Left"),
    "adrenal gland right": (_ANATOMY, "AdrenalGland", "Right"),
    "pancreas": (_ANATOMY, "Pancreas", None),
    "gallbladder": (_ANATOMY, "Gallbladder", None),
    "stomach": (_ANATOMY, "Stomach", None),
    "heart": (_ANATOMY, "Heart", None),
    "aorta": (_ANATOMY, "Aorta", None),
    "inferior vena cava": (_ANATOMY, "InferiorVenaCava", None),
    "portal vein": (_ANATOMY, "PortalVein", None),
    "urinary bladder": (_ANATOMY, "Bladder", None),
    "bladder": (_ANATOMY, "Bladder", None),
    "brain": (_ANATOMY, "Brain", None),
    "esophagus": (_ANATOMY, "Esophagus", None),
    "oesophagus": (_ANATOMY, "Esophagus", None),
    "prostate": (_ANATOMY, "Prostate", None),
    "trachea": (_ANATOMY, "Trachea", None),
    "duodenum": (_ANATOMY, "Duodenum", None),
    "colon": (_ANATOMY, "Colon", None),
    "small intestine": (_ANATOMY, "SmallIntestine", None),
    "small bowel": (_ANATOMY, "SmallIntestine", None),
    "hippocampus": (_ANATOMY, "Hippocampus", None),
    "mediastinum": (_ANATOMY, "Mediastinum", None),
    "pleura": (_ANATOMY, "Pleura", None),
}

BACKGROUND_NAMES = ("background", "bg", "none", "other")


@dataclass(frozen=True)
class Term:
    """A class's coded meaning; ``local`` is True when the type is a 99MEDXAI code (no SNOMED CT code known)."""

    category: Code
    type: Code
    modifier: Code | None = None
    local: bool = False

    def as_dict(self) -> dict[str, list[str]]:
        """The sidecar form: ``{"category": [scheme, value, meaning], "type": [...]}`` (+ ``"modifier"``)."""
        out = {"category": list(self.category), "type": list(self.type)}
        if self.modifier is not None:
            out["modifier"] = list(self.modifier)
        return out


def normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", str(name))).strip().lower()


def _sct(keyword: str) -> Code:
    from pydicom.sr.codedict import codes

    code = getattr(codes.SCT, keyword)
    return ("SCT", str(code.value), str(code.meaning))


def local_code(name: str) -> Code:
    """The 99MEDXAI code of a class without a known SNOMED CT code."""
    digest = hashlib.sha1(normalise_name(name).encode()).hexdigest()[:10].upper()
    return (LOCAL_SCHEME, f"MX{digest}", str(name)[:64])


def is_background(name: str) -> bool:
    return normalise_name(name) in BACKGROUND_NAMES


def term_for(name: str) -> Term:
    """The coded meaning of a class name (SNOMED CT where known, else a local code; see the module docstring)."""
    key = normalise_name(name)
    known = _KNOWN.get(key)
    if known is None:
        return Term(category=(LOCAL_SCHEME, "MXCLASS", "Segmented class"), type=local_code(name), local=True)
    category, type_kw, modifier = known
    return Term(
        category=_sct(category),
        type=_sct(type_kw) if type_kw else local_code(name),
        modifier=_sct(modifier) if modifier else None,
        local=type_kw is None,
    )


def terminology(class_names: list[str]) -> dict[str, dict[str, list[str]]]:
    """``{class name: term}`` for every non-background class: the ``terminology`` entry of a segment sidecar."""
    return {name: term_for(name).as_dict() for name in class_names if not is_background(name)}
