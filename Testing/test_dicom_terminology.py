"""Class names → coded terminology: SNOMED CT from the DICOM standard's table, a marked local code otherwise."""

from __future__ import annotations

import pytest

pytest.importorskip("pydicom")

from MedXAILib.dicom.terminology import LOCAL_SCHEME, term_for, terminology  # noqa: E402

# Code values checked by hand against SNOMED CT (and the DICOM standard's CID 7150 / 7151 / 7153 tables).
EXPECTED = {
    "liver": ("91723000", "10200004"),
    "Spleen": ("91723000", "78961009"),
    "lung_left": ("91723000", "39607008"),
    "necrotic core": ("49755003", "6574001"),
    "oedema": ("49755003", "79654002"),
    "Cardiomegaly": ("49755003", "287272002"),
    "pleural effusion": ("49755003", "60046008"),
    "nodule": ("49755003", "27925004"),
    "pneumothorax": ("49755003", "36118008"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_known_classes_get_snomed_ct(name):
    term = term_for(name)
    assert term.category[0] == term.type[0] == "SCT" and not term.local
    assert (term.category[1], term.type[1]) == EXPECTED[name]


def test_paired_organs_carry_a_laterality_modifier():
    assert term_for("lung_left").modifier == ("SCT", "7771000", "Left")
    assert term_for("right kidney").modifier == ("SCT", "24028007", "Right")
    assert term_for("liver").modifier is None


def test_unknown_and_unnamed_regions_get_a_marked_local_code():
    for name in ("enhancing rim", "whole tumour", "my structure"):
        term = term_for(name)
        assert term.type[0] == LOCAL_SCHEME and term.type[2] == name and term.local
        assert len(term.type[1]) <= 16  # a DICOM code value is at most 16 characters
    assert term_for("enhancing rim").category[1] == "49755003"  # still a morphologically abnormal structure
    assert term_for("my structure").category[0] == LOCAL_SCHEME
    assert term_for("a").type[1] != term_for("b").type[1]


def test_sidecar_form_skips_background():
    terms = terminology(["background", "liver", "tumour"])
    assert list(terms) == ["liver", "tumour"]
    assert terms["liver"] == {"category": ["SCT", "91723000", "Anatomical Structure"],
                              "type": ["SCT", "10200004", "Liver"]}
