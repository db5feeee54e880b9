"""DICOM out: SEG and Parametric Map from the real CT series and the real chest DICOM, read back with highdicom.

Each output is compared voxel for voxel with the NIfTI the same command writes, its frame positions with the source
slices', its referenced SOP Instance UIDs with the source files' own, and it is checked by ``dciodvfy`` (dicom3tools)
where that is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers_dicom import CHEST_DICOM, CT_SERIES, data_path, enhanced_ct, tiny_model_folder

from MedXAILib.cli import main
from MedXAILib.io import read_image

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ct() -> Path:
    return data_path(CT_SERIES)


@pytest.fixture(scope="module")
def xray() -> Path:
    return data_path(CHEST_DICOM)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "ct": tiny_model_folder(root / "ct", 3, ["background", "liver", "spleen"], target_spacing=(8.0, 8.0, 8.0)),
        "xray": tiny_model_folder(root / "xray", 2, ["background", "lung"], target_spacing=(4.0, 4.0)),
    }


def _run(*args: str) -> None:
    assert main([*args, "--progress", "none"]) == 0


def _source_headers(paths: list[Path]) -> dict[str, object]:
    """SOP Instance UID (from the file meta header, as a PACS knows it) -> header."""
    out = {}
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        out[str(ds.file_meta.MediaStorageSOPInstanceUID)] = ds
    return out


def _frame_sources(ds) -> list[tuple[str, int | None]]:
    refs = []
    for fg in ds.PerFrameFunctionalGroupsSequence:
        src = fg.DerivationImageSequence[0].SourceImageSequence[0]
        frame = src.get("ReferencedFrameNumber")
        refs.append((str(src.ReferencedSOPInstanceUID), None if frame is None else int(frame)))
    return refs


def _referenced_uids(ds) -> set[str]:
    return {str(item.ReferencedSOPInstanceUID)
            for series in ds.ReferencedSeriesSequence for item in series.ReferencedInstanceSequence}


def _dciodvfy(path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        return  # reported by test_dciodvfy_available
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def test_dciodvfy_available():
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools); outputs not validated by it")


def _slice_order(volume) -> list[str]:
    src = volume.dicom
    return [src.sop_instance_uids[f] for f, _ in src.slice_frames]


def test_ct_seg_matches_nifti_and_references_the_series(ct, models, tmp_path, capsys):
    seg_path, nii_path = tmp_path / "seg.dcm", tmp_path / "seg.nii.gz"
    capsys.readouterr()
    assert main(["segment", "--model", str(models["ct"]), "--input", str(ct), "--output", str(seg_path),
                 "--progress", "none"]) == 2
    assert "--dicom-fill-uids" in capsys.readouterr().err and not seg_path.exists()
    _run("segment", "--model", str(models["ct"]), "--input", str(ct), "--output", str(seg_path), "--dicom-fill-uids")
    _run("segment", "--model", str(models["ct"]), "--input", str(ct), "--output", str(nii_path))
    labels = read_image(nii_path).array[0]
    assert set(np.unique(labels)) == {0, 1, 2}  # both classes present: the comparison can fail

    seg = hd.seg.segread(seg_path)
    source = read_image(ct)
    order = _slice_order(source)
    pixels = seg.get_pixels_by_source_instance(order, combine_segments=True, skip_overlap_checks=True)
    np.testing.assert_array_equal(pixels, labels)
    headers = _source_headers(source.dicom.files)
    assert _referenced_uids(seg) == set(headers) == {f.name[3:] for f in ct.iterdir()}
    for i, (uid, _) in enumerate(_frame_sources(seg)):
        position = seg.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient
        assert [float(v) for v in position] == [float(v) for v in headers[uid].ImagePositionPatient]
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert [float(v) for v in orientation] == [1, 0, 0, 0, 1, 0]
    assert seg.FrameOfReferenceUID == headers[order[0]].FrameOfReferenceUID
    first = seg.SegmentSequence[0]
    assert first.SegmentLabel == "liver"
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert first.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    algorithm = first.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "tiny-unet-3d" and algorithm.AlgorithmVersion.startswith("weights sha256:")
    assert seg.Manufacturer == "MedXAI"
    sidecar = __import__("json").loads((tmp_path / "seg.dcm.json").read_text())
    assert sidecar["terminology"]["spleen"]["type"] == ["SCT", "78961009", "Spleen"]
    assert sidecar["dicom"]["study_instance_uid"] == seg.StudyInstanceUID
    _dciodvfy(seg_path)

    # the SEG stored beside its series does not turn the folder into two series
    beside = tmp_path / "ct-with-seg"
    shutil.copytree(ct, beside)
    shutil.copy(seg_path, beside / "seg.dcm")
    again = read_image(beside)
    np.testing.assert_array_equal(again.array, source.array)
    assert any("not images" in n for n in again.dicom.notes) and len(again.dicom.files) == 20


def test_ct_parametric_map_matches_nifti(ct, models, tmp_path):
    common = ["explain", "--model", str(models["ct"]), "--input", str(ct), "--target", "liver"]
    _run(*common, "--output", str(tmp_path / "heat.dcm"), "--normalized", str(tmp_path / "norm.dcm"),
         "--dicom-fill-uids")
    _run(*common, "--output", str(tmp_path / "heat.nii.gz"), "--normalized", str(tmp_path / "norm.nii.gz"))
    source = read_image(ct)
    headers = _source_headers(source.dicom.files)
    order = _slice_order(source)
    for name in ("heat", "norm"):
        ds = pydicom.dcmread(tmp_path / f"{name}.dcm")
        pmap = hd.pm.ParametricMap.from_dataset(ds)
        expected = read_image(tmp_path / f"{name}.nii.gz").array[0]
        assert np.abs(expected).max() > 0
        frames = pmap.pixel_array
        assert frames.dtype == np.float32 and frames.shape == expected.shape
        refs = _frame_sources(pmap)
        assert sorted(u for u, _ in refs) == sorted(order)
        for i, (uid, _) in enumerate(refs):
            np.testing.assert_array_equal(frames[i], expected[order.index(uid)])
            position = pmap.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient
            assert [float(v) for v in position] == [float(v) for v in headers[uid].ImagePositionPatient]
        assert _referenced_uids(pmap) == set(headers)
        mapping = pmap.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "[arb'U]"
        assert float(mapping.RealWorldValueSlope) == 1.0 and float(mapping.RealWorldValueIntercept) == 0.0
        _dciodvfy(tmp_path / f"{name}.dcm")
    seg_study = pydicom.dcmread(tmp_path / "heat.dcm").StudyInstanceUID
    assert seg_study == pydicom.dcmread(tmp_path / "norm.dcm").StudyInstanceUID  # filled UIDs agree across outputs


def test_chest_xray_seg_and_parametric_map(xray, models, tmp_path):
    uid = str(pydicom.dcmread(xray, stop_before_pixels=True).SOPInstanceUID)
    _run("segment", "--model", str(models["xray"]), "--input", str(xray), "--output", str(tmp_path / "seg.dcm"))
    _run("segment", "--model", str(models["xray"]), "--input", str(xray), "--output", str(tmp_path / "seg.nii.gz"))
    labels = read_image(tmp_path / "seg.nii.gz").array[0]
    assert 0 < labels.mean() < 1
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(seg.get_pixels_by_source_instance([uid], combine_segments=True), labels)
    assert _referenced_uids(seg) == {uid}
    assert "FrameOfReferenceUID" not in seg  # the secondary-capture source has no patient geometry to copy
    assert "PlanePositionSequence" not in seg.SharedFunctionalGroupsSequence[0]
    assert (seg.Rows, seg.Columns) == (1024, 1024)
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"  # lung
    _dciodvfy(tmp_path / "seg.dcm")

    common = ["explain", "--model", "demo-chest-xray", "--input", str(xray), "--method", "gradcam"]
    _run(*common, "--output", str(tmp_path / "heat.dcm"))
    _run(*common, "--output", str(tmp_path / "heat.nii.gz"))
    pmap = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(tmp_path / "heat.dcm"))
    expected = read_image(tmp_path / "heat.nii.gz").array[0]
    assert np.abs(expected).max() > 0
    np.testing.assert_array_equal(pmap.pixel_array.reshape(expected.shape), expected)
    assert _referenced_uids(pmap) == {uid}
    # the X-ray has no patient geometry: the map states the one MedXAI read it with (origin, 0.168 mm pixels)
    frame = pmap.PerFrameFunctionalGroupsSequence[0]
    assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == [0.0, 0.0, 0.0]
    spacing = pmap.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == [0.168, 0.168]
    sidecar = __import__("json").loads((tmp_path / "heat.dcm.json").read_text())
    assert any("no patient geometry" in n for n in sidecar["notes"])
    _dciodvfy(tmp_path / "heat.dcm")


def test_seg_of_enhanced_multiframe_source_references_its_frames(ct, models, tmp_path):
    source_path = enhanced_ct(ct, tmp_path / "enhanced.dcm", reverse=True)
    _run("segment", "--model", str(models["ct"]), "--input", str(source_path), "--output", str(tmp_path / "s.dcm"))
    _run("segment", "--model", str(models["ct"]), "--input", str(source_path), "--output",
         str(tmp_path / "s.nii.gz"))
    labels = read_image(tmp_path / "s.nii.gz").array[0]
    src = pydicom.dcmread(source_path, stop_before_pixels=True)
    seg = hd.seg.segread(tmp_path / "s.dcm")
    frames = list(range(1, int(src.NumberOfFrames) + 1))
    pixels = seg.get_pixels_by_source_frame(str(src.SOPInstanceUID), frames, combine_segments=True)
    np.testing.assert_array_equal(pixels[::-1], labels)  # frames stored top-down, slices bottom-up
    for i, (uid, frame) in enumerate(_frame_sources(seg)):
        assert uid == src.SOPInstanceUID
        position = seg.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient
        want = src.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0].ImagePositionPatient
        assert [float(v) for v in position] == [float(v) for v in want]
    assert _referenced_uids(seg) == {str(src.SOPInstanceUID)}
    _dciodvfy(tmp_path / "s.dcm")


def test_dicom_output_from_non_dicom_input_refused_before_any_work(tmp_path, capsys):
    image = tmp_path / "image.nii.gz"
    from helpers import oblique_volume

    from MedXAILib.io import write_volume

    write_volume(oblique_volume(channels=1, shape=(4, 5, 6)), image)
    for argv in (["segment", "--output", str(tmp_path / "s.dcm")],
                 ["explain", "--output", str(tmp_path / "h.nii.gz"), "--normalized", str(tmp_path / "n.dcm")]):
        capsys.readouterr()
        # the model does not exist: the DICOM check must come first
        rc = main([argv[0], "--model", str(tmp_path / "no-model"), "--input", str(image), *argv[1:],
                   "--progress", "none"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "is not DICOM" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz"]
