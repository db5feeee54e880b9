"""DICOM input done properly: the real TotalSegmentator CT series, and broken copies of it that must be refused.

Every refusal goes through the CLI as a user meets it: exit status 2, one ``error:`` line naming the slice, and the
input files unchanged. Broken copies are made with pydicom in ``tmp_path``; the shared data is never written.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers_dicom import CT_SERIES, data_path, enhanced_ct, tiny_model_folder

from MedXAILib.cli import main
from MedXAILib.dicom import read_dicom
from MedXAILib.errors import InputError
from MedXAILib.io import image_to_volume, read_image

pydicom = pytest.importorskip("pydicom")

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def ct_folder() -> Path:
    return data_path(CT_SERIES)


@pytest.fixture(scope="module")
def ct_read(ct_folder):
    return read_dicom(ct_folder)


@pytest.fixture(scope="module")
def tiny_ct_model(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny-ct", 3, ["background", "liver", "spleen"],
                             target_spacing=(8.0, 8.0, 8.0))


def _copy(ct_folder: Path, dest: Path) -> list[Path]:
    dest.mkdir()
    for f in sorted(ct_folder.iterdir()):
        shutil.copy(f, dest / f.name)
    return _sorted_by_z(dest)


def _sorted_by_z(folder: Path) -> list[Path]:
    files = sorted(folder.iterdir())
    return sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def _digest(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def _edit(path: Path, **values) -> None:
    ds = pydicom.dcmread(path)
    for k, v in values.items():
        setattr(ds, k, v)
    ds.save_as(path)


def _refused(folder: Path, model: Path, tmp_path: Path, capsys, *match: str, extra: tuple = ()) -> None:
    """The CLI refuses the series: exit 2, one error line containing ``match``, inputs unchanged, no output."""
    before = _digest(folder)
    out = tmp_path / "seg.nii.gz"
    capsys.readouterr()
    rc = main(["segment", "--model", str(model), "--input", str(folder), "--output", str(out),
               "--progress", "none", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for m in match:
        assert m in err[0], err[0]
    assert _digest(folder) == before
    assert not out.exists()


def test_real_ct_series_matches_itk_and_keeps_its_instances(ct_folder, ct_read):
    vol, source = ct_read
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(ct_folder)))
    ref = image_to_volume(reader.Execute())
    assert vol.shape == ref.shape == (20, 512, 512)
    np.testing.assert_array_equal(vol.array, ref.array.astype(np.float32))  # rescaled to HU by both
    np.testing.assert_allclose(vol.ijk_to_ras, ref.ijk_to_ras, atol=1e-6)
    assert vol.array.dtype == np.float32 and vol.array.min() == -1024.0  # air in HU: slope 1, intercept -1024
    # the source: 20 instances, UIDs from the file meta header (the data sets' were blanked by the anonymiser)
    assert len(source.sop_instance_uids) == 20 and all(source.sop_instance_uids)
    assert {f.name for f in source.files} == {f"CT.{u}" for u in source.sop_instance_uids}
    assert source.missing == ["StudyInstanceUID", "SeriesInstanceUID"]
    assert source.positions_lps[:, 2].tolist() == [-804.5 + 2 * k for k in range(20)]


def test_rescale_slope_and_intercept_are_applied(ct_folder, ct_read, tmp_path):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    _edit(files[7], RescaleSlope=2, RescaleIntercept=-1000)
    vol, _ = read_dicom(folder)
    stored = pydicom.dcmread(files[7]).pixel_array.astype(np.float32)
    np.testing.assert_array_equal(vol.array[0, 7], stored * 2 - 1000)
    np.testing.assert_array_equal(vol.array[0, 6], ct_read[0].array[0, 6])


def test_missing_slice_refused_and_gap_option_fills_it(ct_folder, tiny_ct_model, tmp_path, capsys):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    files[9].unlink()
    _refused(folder, tiny_ct_model, tmp_path, capsys, "1 slice(s) missing between", files[8].name, files[10].name,
             "--allow-dicom-gaps")
    vol, source = read_dicom(folder, allow_gaps=True)
    full, _ = read_dicom(ct_folder)
    assert vol.shape == (20, 512, 512) and source.filled_slices == [9]
    np.testing.assert_allclose(vol.ijk_to_ras, full.ijk_to_ras)
    np.testing.assert_allclose(vol.array[0, 9], (full.array[0, 8] + full.array[0, 10]) / 2, atol=0.51)
    assert any("filled 1 missing slice" in n for n in source.notes)


def test_duplicate_slice_refused(ct_folder, tiny_ct_model, tmp_path, capsys):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    shutil.copy(files[4], folder / "copy-of-slice")
    _refused(folder, tiny_ct_model, tmp_path, capsys, "same position", "copy-of-slice")


def test_other_pixel_spacing_refused(ct_folder, tiny_ct_model, tmp_path, capsys):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    _edit(files[5], PixelSpacing=[0.8, 0.8])
    _refused(folder, tiny_ct_model, tmp_path, capsys, files[5].name, "pixel spacing")


def test_other_orientation_refused(ct_folder, tiny_ct_model, tmp_path, capsys):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    _edit(files[3], ImageOrientationPatient=[1, 0, 0, 0, 0.9848, -0.1736])
    _refused(folder, tiny_ct_model, tmp_path, capsys, files[3].name, "orientation")


def test_non_uniform_spacing_refused(ct_folder, tiny_ct_model, tmp_path, capsys):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    ds = pydicom.dcmread(files[12])
    pos = [float(v) for v in ds.ImagePositionPatient]
    _edit(files[12], ImagePositionPatient=[pos[0], pos[1], pos[2] + 0.7])
    _refused(folder, tiny_ct_model, tmp_path, capsys, "non-uniform slice spacing", files[12].name)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_slice_refused(ct_folder, tiny_ct_model, tmp_path, capsys, damage):
    folder = tmp_path / "ct"
    files = _copy(ct_folder, folder)
    data = files[6].read_bytes()
    files[6].write_bytes(b"\x00junk" * 1000 if damage == "garbage" else data[: len(data) // 2])
    _refused(folder, tiny_ct_model, tmp_path, capsys, files[6].name)


def test_series_chosen_by_uid(ct_folder, tmp_path, capsys):
    folder = tmp_path / "two"
    folder.mkdir()
    for tag, uid in (("a", "1.2.826.0.1.3680043.8.498.1"), ("b", "1.2.826.0.1.3680043.8.498.2")):
        for i, f in enumerate(sorted(ct_folder.iterdir())):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}.{i + 1}"
            ds.save_as(folder / f"{tag}{i:02d}.dcm")
    with pytest.raises(InputError, match="holds 2 DICOM series") as exc:
        read_dicom(folder)
    assert "1.2.826.0.1.3680043.8.498.2" in str(exc.value) and "::SERIES_INSTANCE_UID" in str(exc.value)
    vol = read_image(f"{folder}::1.2.826.0.1.3680043.8.498.2")
    assert vol.shape == (20, 512, 512)
    assert vol.dicom.series_instance_uid == "1.2.826.0.1.3680043.8.498.2"
    assert all(f.name.startswith("b") for f in vol.dicom.files)
    with pytest.raises(InputError, match="no series with Series Instance UID 9.9"):
        read_dicom(f"{folder}::9.9")


def test_enhanced_multiframe_ct_reads_like_the_series(ct_folder, ct_read, tmp_path):
    path = enhanced_ct(ct_folder, tmp_path / "enhanced.dcm", reverse=True)
    vol, source = read_dicom(path)
    assert source.multiframe and len(source.files) == 1
    assert source.slice_frames[0] == (0, 19)  # frames stored top-down, slices sorted bottom-up
    np.testing.assert_array_equal(vol.array, ct_read[0].array)
    np.testing.assert_allclose(vol.ijk_to_ras, ct_read[0].ijk_to_ras, atol=1e-6)
