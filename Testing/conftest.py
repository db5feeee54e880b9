"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def test_data_dir() -> Path:
    """The ``medxai-test-data`` folder (``$MEDXAI_TEST_DATA``, else ``../shared/medxai-test-data`` beside the repo)."""
    path = Path(os.environ.get("MEDXAI_TEST_DATA", REPO / ".." / "shared" / "medxai-test-data"))
    if not path.is_dir():
        pytest.skip("real test data not found: set MEDXAI_TEST_DATA to the medxai-test-data folder")
    return path


@pytest.fixture
def one_torch_thread():
    """Tiny networks run fastest on one thread (and do not fight over the shared cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def nnunet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A REAL nnU-Net v2 trained-model folder (3d_fullres, folds 0 and 1; a 2d folder beside it), built once per
    session by ``nnunet_fixture.py`` with nnU-Net's own planner, preprocessor and checkpoint writer."""
    pytest.importorskip("nnunetv2", reason="nnU-Net v2 is not installed (pip install --no-deps -r "
                        "requirements-nnunet.txt)")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import nnunet_fixture

    data = Path(os.environ.get("MEDXAI_TEST_DATA", REPO / ".." / "shared" / "medxai-test-data"))
    if not (data / "totalsegmentator" / "example_ct_sm.nii.gz").exists():
        pytest.skip("real test data not found: set MEDXAI_TEST_DATA to the medxai-test-data folder")
    prebuilt = os.environ.get("MEDXAI_NNUNET_FIXTURE")  # a folder built earlier by nnunet_fixture.py (development)
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp("nnunet")
    return nnunet_fixture.build_in_subprocess(out, data, folds="0,1", target_spacing=nnunet_fixture.TEST_TARGET_SPACING)


@pytest.fixture(scope="session")
def model_file_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The intact model files the issue-22 tests mutate (``model_file_cases.make_world``), built once, read only."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_file_cases import make_world

    return make_world(tmp_path_factory.mktemp("model-files") / "world")
