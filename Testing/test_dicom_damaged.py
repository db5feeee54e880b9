"""Issue 22: DICOM pixel data is checked like any other image, and damaged headers are refused cleanly.

Damaged copies of the real data (the TotalSegmentator CT series, the SIIM chest CR) are made with pydicom in
``tmp_path``. The CT series is cut to four consecutive slices cropped to 64 × 64 and stored uncompressed, so a case
costs a fraction of a second; the geometry attributes stay those of the scanner. Before this issue a CR missing half
its pixel data was read with zeros and a CT slice with garbage (exit 0), a series with one MONOCHROME1 slice was
inverted as a whole, and a slice without Image Position (Patient) raised a traceback. Each refusal here: exit 2, one
``error:`` line naming the slice, every file byte-identical (sha256), nothing written. The values of an intact read
are compared with the stored integers scaled by hand (numpy on the raw pixel bytes), not with the reader's own code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import assert_refused, run
from helpers import save_model, tiny_classifier
from helpers_dicom import CHEST_DICOM, CT_SERIES, data_path, tiny_model_folder

from MedXAILib.dicom import read_dicom

pydicom = pytest.importorskip("pydicom")
SIDE = 64  # the cropped CT slices are SIDE x SIDE


def small_ct_series(src: Path, dest: Path, n: int = 4, side: int = SIDE) -> list[Path]:
    """``n`` consecutive slices of the real CT series, cropped to ``side``² from the top-left corner (Image Position
    still names the first pixel) and stored uncompressed (explicit VR little endian); returned in slice order."""
    dest.mkdir(parents=True)
    headers = sorted(src.iterdir(), key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True)
                                                        .ImagePositionPatient[2]))
    out = []
    for f in headers[:n]:
        ds = pydicom.dcmread(f)
        ds.decompress()
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:side, :side]).tobytes()
        ds.Rows = ds.Columns = side
        out.append(dest / f.name)
        ds.save_as(out[-1], enforce_file_format=True)
    return out


def small_cr(src: Path, dest: Path, side: int = 128) -> Path:
    """The real chest CR, decoded, cropped to ``side``² and stored uncompressed."""
    ds = pydicom.dcmread(src)
    ds.decompress()
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:side, :side]).tobytes()
    ds.Rows = ds.Columns = side
    ds.save_as(dest, enforce_file_format=True)
    return dest


def edit(path: Path, **values) -> None:
    ds = pydicom.dcmread(path)
    for key, value in values.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def patch_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace a value in the file's bytes (values pydicom refuses to write: a slope of 'abc', a NaN position)."""
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom-models")
    return {"ct": tiny_model_folder(root / "ct", 3, ["background", "liver"]),
            "cr": save_model(tiny_classifier(classes=3, input_size=[32, 32]), root / "cr")}


@pytest.fixture()
def ct(tmp_path) -> list[Path]:
    return small_ct_series(data_path(CT_SERIES), tmp_path / "ct")


def _segment(capfd, tmp_path: Path, models, folder: Path):
    return run(capfd, tmp_path, "segment", "--model", models["ct"], "--input", folder,
               "--output", tmp_path / "seg.nii.gz")


def _classify(capfd, tmp_path: Path, models, path: Path):
    return run(capfd, tmp_path, "classify", "--model", models["cr"], "--input", path, "--output", tmp_path / "p.json")


def test_the_small_series_is_read_exactly(ct):
    vol, source = read_dicom(ct[0].parent)
    want = []
    for f in ct:  # the modality values by hand: stored integers of the declared type, times slope, plus intercept
        ds = pydicom.dcmread(f)
        dtype = np.int16 if int(ds.PixelRepresentation) else np.uint16
        stored = np.frombuffer(ds.PixelData, dtype=dtype).reshape(SIDE, SIDE)
        want.append(stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    np.testing.assert_array_equal(vol.array[0], np.stack(want).astype(np.float32))
    assert not any("differ" in n for n in source.notes)


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_cr_missing_part_of_its_pixel_data(capfd, tmp_path, models, fraction):
    """Before: read with the missing half as zeros, exit 0."""
    cr = small_cr(data_path(CHEST_DICOM), tmp_path / "cr.dcm")
    ds = pydicom.dcmread(cr)
    ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * fraction) // 2 * 2]
    ds.save_as(cr)
    assert_refused(_classify(capfd, tmp_path, models, cr), r"cr\.dcm.*pixel data holds \d+ bytes where 128 rows x "
                   r"128 columns x 1 frame\(s\) x 1 sample\(s\) x 8 bits declare 16384; the file is truncated")


def test_cr_whose_header_declares_fewer_rows_than_its_pixel_data(capfd, tmp_path, models):
    cr = small_cr(data_path(CHEST_DICOM), tmp_path / "cr.dcm")
    edit(cr, Rows=120)
    assert_refused(_classify(capfd, tmp_path, models, cr), r"longer than its header says")


def test_compressed_cr_whose_frame_is_cut(capfd, tmp_path, models):
    from pydicom.encaps import encapsulate, get_frame

    cr = tmp_path / "cr.dcm"
    ds = pydicom.dcmread(data_path(CHEST_DICOM))
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    ds.save_as(cr)
    assert_refused(_classify(capfd, tmp_path, models, cr), r"cr\.dcm.*pixel data cannot be decoded")


def test_ct_slice_missing_half_its_pixel_data(capfd, tmp_path, models, ct):
    """Before: the slice was read with the bytes that were there and whatever followed (exit 0)."""
    ds = pydicom.dcmread(ct[2])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(ct[2])
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent),
                   rf"{ct[2].name} \(instance \d+\): the pixel data holds 4096 bytes where 64 rows x 64 columns .* "
                   r"x 16 bits declare 8192")


def test_ct_series_with_one_monochrome1_slice(capfd, tmp_path, models, ct):
    """Before: the whole series was inverted because its first slice was MONOCHROME1 (exit 0, one note)."""
    edit(ct[0], PhotometricInterpretation="MONOCHROME1")
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent),
                   rf"{ct[0].name} .*photometric interpretation MONOCHROME1 where the rest of the series has "
                   "MONOCHROME2")


@pytest.mark.parametrize("slice_index", [0, 2])
@pytest.mark.parametrize("missing", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_slice_without_position_or_orientation(capfd, tmp_path, models, ct, slice_index, missing):
    """Before: a slice other than the first without Image Position (Patient) raised a TypeError traceback."""
    edit(ct[slice_index], **{missing: None})
    word = "Position" if missing == "ImagePositionPatient" else "Orientation"
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent),
                   rf"{ct[slice_index].name} .*no Image {word} \(Patient\), so the slice cannot be placed in 3D")


def test_position_that_is_not_a_number_and_orientation_that_is_not_orthonormal(capfd, tmp_path, models, ct):
    edit(ct[1], ImagePositionPatient=["1.11111", "0", "0"])
    patch_bytes(ct[1], b"1.11111", b"nan    ")
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent), r"not finite numbers")
    edit(ct[1], ImagePositionPatient=pydicom.dcmread(ct[2]).ImagePositionPatient, ImageOrientationPatient=[0] * 6)
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent), r"is not two orthogonal unit vectors")


@pytest.mark.parametrize("keyword", ["RescaleSlope", "RescaleIntercept"])
def test_rescale_that_is_not_a_number(capfd, tmp_path, models, ct, keyword):
    edit(ct[3], **{keyword: "7.77777"})
    patch_bytes(ct[3], b"7.77777", b"abc.xyz")
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent), rf"{keyword} is 'abc.xyz', not a finite number")


@pytest.mark.parametrize("keyword,value", [("Rows", 0), ("BitsAllocated", 8), ("SamplesPerPixel", 3)])
def test_pixel_description_that_does_not_fit_the_data(capfd, tmp_path, models, ct, keyword, value):
    for f in ct:  # the whole series, so that the per-series checks agree and the pixel data check speaks
        edit(f, **{keyword: value})
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent), rf"{ct[0].name}|{keyword}")


def _short_modality_lut(path: Path) -> None:
    """A Modality LUT whose descriptor declares 4096 entries but whose data holds 10 (pydicom would clip every stored
    value above 9 to the last entry: a silently flat slice)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "HU"
    item.add_new(0x00283006, "US", list(range(10)))
    ds.ModalityLUTSequence = Sequence([item])
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(path)


@pytest.mark.parametrize("damage, message", [
    ("slope0", "RescaleSlope is 0"),
    ("short_lut", "Modality LUT holds 10 entries where its descriptor declares 4096"),
    ("palette", "photometric interpretation PALETTE COLOR"),
])
def test_headers_that_would_give_wrong_values_silently(capfd, tmp_path, models, ct, damage, message):
    """Found in review: a slope of 0 on one slice (every voxel became the intercept, no note), a Modality LUT shorter
    than its descriptor (values clipped), and PALETTE COLOR indices read as intensities: each read with exit 0."""
    if damage == "slope0":
        edit(ct[2], RescaleSlope=0)
    elif damage == "short_lut":
        _short_modality_lut(ct[1])
    else:
        for f in ct:
            edit(f, PhotometricInterpretation="PALETTE COLOR")
    assert_refused(_segment(capfd, tmp_path, models, ct[0].parent), message)


def test_slices_with_their_own_rescale_are_each_converted_with_it(capfd, tmp_path, models, ct):
    edit(ct[1], RescaleSlope=2, RescaleIntercept=-3000)
    vol, source = read_dicom(ct[0].parent)
    ds = pydicom.dcmread(ct[1])
    stored = np.frombuffer(ds.PixelData, dtype=np.int16 if int(ds.PixelRepresentation) else np.uint16)
    np.testing.assert_array_equal(vol.array[0, 1], (stored.reshape(SIDE, SIDE) * 2.0 - 3000).astype(np.float32))
    assert any("each slice was converted to modality values with its own" in n for n in source.notes)
    r = _segment(capfd, tmp_path, models, ct[0].parent)
    assert r.code == 0 and "each slice was converted" in r.err, r.err
    assert r.changed_inputs == []


def test_series_folder_is_untouched_by_a_refusal_of_a_copy_in_place(capfd, tmp_path, models, ct):
    """An output inside the series folder is refused before the damaged slice is even read."""
    shutil.copy(ct[0], ct[0].parent / "extra.dcm")
    r = run(capfd, tmp_path, "segment", "--model", models["ct"], "--input", ct[0].parent,
            "--output", ct[0].parent / "seg.nii.gz")
    assert_refused(r, r"lies inside the input folder")
