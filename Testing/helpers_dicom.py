"""Builders shared by the DICOM tests: where the real series live, an enhanced multi-frame copy, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CT_SERIES = Path("totalsegmentator") / "example_ct_dicom"
CHEST_DICOM = Path("torchxrayvision-tests") / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def data_path(relative: Path) -> Path:
    """A path in ``$MEDXAI_TEST_DATA`` (skips the test when the data is absent)."""
    root = Path(os.environ.get("MEDXAI_TEST_DATA", REPO / ".." / "shared" / "medxai-test-data"))
    path = root / relative
    if not path.exists():
        pytest.skip(f"real test data not found ({relative}): set MEDXAI_TEST_DATA to the medxai-test-data folder")
    return path


def enhanced_ct(series: Path, out: Path, reverse: bool = False) -> Path:
    """Convert the single-frame CT series into one Legacy Converted Enhanced CT file (highdicom)."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    study, series_uid = generate_uid(), generate_uid()
    datasets = []
    for f in sorted(series.iterdir()):
        ds = pydicom.dcmread(f)
        ds.decompress()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        datasets.append(ds)
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]), reverse=reverse)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(datasets, generate_uid(), 5, generate_uid(), 1)
    enhanced.save_as(out)
    return out


def tiny_model_folder(folder: Path, spatial_dims: int, class_names: list[str], target_spacing=None) -> Path:
    """A seeded one-channel MONAI UNet segmentation model saved as a model folder (model.json + weights.pt)."""
    import torch
    from helpers import save_model

    from MedXAILib.models import Model, ModelDescription
    from MedXAILib.models.monai_network import build_network

    torch.manual_seed(0)
    arch = {"name": "UNet", "kwargs": {"spatial_dims": spatial_dims, "in_channels": 1,
                                       "out_channels": len(class_names), "channels": [4, 8, 16],
                                       "strides": [2, 2], "num_res_units": 1}}
    pre: dict = {"normalize": "zscore"}
    if target_spacing:
        pre["target_spacing"] = list(target_spacing)
    desc = ModelDescription(name=f"tiny-unet-{spatial_dims}d", task="segmentation", spatial_dims=spatial_dims,
                            channel_names=["image"], class_names=list(class_names), architecture=arch,
                            cam_layer="model.1.submodule.1", preprocessing=pre)
    return save_model(Model(build_network(arch), desc), folder)
