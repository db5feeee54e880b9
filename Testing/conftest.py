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
