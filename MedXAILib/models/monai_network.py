"""Native MONAI networks: build one from a description's ``{"name": "UNet", "kwargs": {...}}``."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ModelError


def build_network(architecture: dict[str, Any] | None, where: str = "model") -> torch.nn.Module:
    """Instantiate a MONAI network from ``{"name": "UNet", "kwargs": {...}}``."""
    if not architecture or "name" not in architecture:
        raise ModelError(f"{where}: the description has no architecture (a MONAI network name and its kwargs)")
    import monai.networks.nets as nets

    name = architecture["name"]
    cls = getattr(nets, name, None)
    if cls is None or not callable(cls):
        raise ModelError(f"{where}: unknown MONAI network {name!r} (see monai.networks.nets)")
    try:
        return cls(**architecture.get("kwargs", {}))
    except TypeError as exc:
        raise ModelError(f"{where}: cannot build {name} with the given kwargs ({exc})") from None
