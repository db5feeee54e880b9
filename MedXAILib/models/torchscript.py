"""TorchScript models: recognise and load a TorchScript archive (no unpickling of Python objects)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from ..errors import ModelError


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a ``code/`` folder and ``constants.pkl``."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    has_code = any("/code/" in n or n.startswith("code/") for n in names)
    return has_code and any(n.endswith("constants.pkl") for n in names)


def load_torchscript(path: Path) -> torch.nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, ValueError, zip errors… for damaged archives
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ModelError(f"{path}: unreadable TorchScript file, damaged or from a newer torch ({first[:160]})") \
            from None
