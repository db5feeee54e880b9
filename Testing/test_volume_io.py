"""Volumes and files: geometry kept exactly (LPS on disk, RAS in memory), atomic writes, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import oblique_direction, oblique_volume

from MedXAILib.errors import InputError
from MedXAILib.io import read_image, read_label_map, read_volume, write_volume
from MedXAILib.volume import LPS_TO_RAS, Volume, make_ijk_to_ras


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_round_trip_keeps_oblique_anisotropic_geometry(tmp_path, suffix):
    vol = oblique_volume(channels=1)
    path = write_volume(vol, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-5)
    np.testing.assert_array_equal(back.array, vol.array)


def test_lps_on_disk_ras_in_memory(tmp_path):
    vol = Volume(np.zeros((1, 3, 4, 5), np.float32), make_ijk_to_ras((1, 2, 3), (10, 20, 30)))
    write_volume(vol, tmp_path / "v.nrrd")
    img = sitk.ReadImage(str(tmp_path / "v.nrrd"))
    # RAS (10, 20, 30) is LPS (-10, -20, 30)
    np.testing.assert_allclose(img.GetOrigin(), (-10, -20, 30))
    np.testing.assert_allclose(img.GetSpacing(), (1, 2, 3))
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), LPS_TO_RAS[:3, :3])


def test_multichannel_from_several_files_and_4d(tmp_path):
    vol = oblique_volume(channels=3)
    paths = []
    for c in range(3):
        paths.append(write_volume(vol.channel(c), tmp_path / f"c{c}.nii.gz"))
    stacked = read_volume(paths, channel_names=["a", "b", "c"])
    np.testing.assert_array_equal(stacked.array, vol.array)
    assert stacked.channel_names == ["a", "b", "c"]
    img = sitk.JoinSeries([sitk.ReadImage(str(p)) for p in paths])
    sitk.WriteImage(img, str(tmp_path / "four.nii.gz"))
    four = read_volume(tmp_path / "four.nii.gz")
    assert four.n_channels == 3
    np.testing.assert_allclose(four.array, vol.array)


def test_geometry_mismatch_names_the_file(tmp_path):
    a = oblique_volume(channels=1)
    b = Volume(a.array, make_ijk_to_ras((0.8, 1.1, 3.0), a.origin, oblique_direction()))
    write_volume(a, tmp_path / "t1.nii.gz")
    write_volume(b, tmp_path / "flair.nii.gz")
    with pytest.raises(InputError, match=r"flair\.nii\.gz has spacing"):
        read_volume([tmp_path / "t1.nii.gz", tmp_path / "flair.nii.gz"])


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read|not a NIfTI file"):
        read_image(bad)


def test_label_map_refuses_an_image(tmp_path):
    vol = oblique_volume(channels=1)
    write_volume(vol, tmp_path / "img.nii.gz")
    with pytest.raises(InputError, match="not a label map"):
        read_label_map(tmp_path / "img.nii.gz")


def test_nan_voxels_refused():
    vol = oblique_volume(channels=2)
    vol.array[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        vol.check_finite()


def test_2d_png_is_one_slice(tmp_path):
    arr = (np.arange(30 * 40).reshape(30, 40) % 255).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.7))
    sitk.WriteImage(img, str(tmp_path / "x.png"))
    vol = read_image(tmp_path / "x.png")
    assert vol.array.shape == (1, 1, 30, 40) and vol.is_2d
    np.testing.assert_array_equal(vol.array[0, 0], arr)


def test_rgb_png_becomes_grayscale(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 100
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
    vol = read_image(tmp_path / "rgb.png")
    assert vol.array.shape == (1, 1, 10, 12)
    np.testing.assert_allclose(vol.array, 29.9, atol=0.01)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    vol = oblique_volume(channels=1, shape=(3, 4, 5))
    with pytest.raises(InputError):
        write_volume(vol, tmp_path / "x.png")  # a 3D volume cannot be a PNG
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_real_files_round_trip(test_data_dir, tmp_path):
    cases = [
        test_data_dir / "pyradiomics" / "brain1_image.nrrd",
        test_data_dir / "brainlesion-tutorials" / "TCGA-DU-7294" / "TCGA-DU-7294_fla_bet.nii.gz",
        test_data_dir / "totalsegmentator" / "example_ct_dicom",
        test_data_dir / "torchxrayvision-tests" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
        test_data_dir / "nih-chestxray14" / "images" / "00000075_000.png",
    ]
    for path in cases:
        vol = read_image(path)
        ref = sitk.ReadImage(str(path)) if path.is_file() else None
        if ref is not None and ref.GetDimension() == 3:
            np.testing.assert_allclose(vol.spacing, ref.GetSpacing())
            np.testing.assert_allclose(vol.origin, np.array(ref.GetOrigin()) * [-1, -1, 1])
        out = write_volume(vol, tmp_path / (path.name.replace(".", "_") + ".nrrd"))
        back = read_image(out)
        np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-5)
        np.testing.assert_array_equal(back.array, vol.array)
    thick = read_image(cases[0])
    np.testing.assert_allclose(thick.spacing, [0.78125, 0.78125, 6.5])
    dicom = read_image(cases[2])
    assert dicom.shape == (20, 512, 512)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_non_finite_voxels_survive_reading(tmp_path, suffix):
    """ITK's NIfTI reader turns NaN/Inf into 0; MedXAI must still see them to refuse the input."""
    vol = oblique_volume(channels=1)
    vol.array[0, 2, 3, 4] = np.nan
    vol.array[0, 5, 6, 7] = np.inf
    back = read_volume(write_volume(vol, tmp_path / f"bad{suffix}"))
    assert (~np.isfinite(back.array)).sum() == 2
    assert not np.isfinite(back.array[0, 2, 3, 4]) and not np.isfinite(back.array[0, 5, 6, 7])
    with pytest.raises(InputError, match="NaN or infinite"):
        back.check_finite()
