"""Native MONAI networks: build one from a description's ``{"name": "UNet", "kwargs": {...}}``."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ModelError


def build_network(architecture: dict[str, Any] | None, where: str = "model", check: bool = False) -> torch.nn.Module:
    """Instantiate a MONAI network from ``{"name": "UNet", "kwargs": {...}}``.

    With ``check`` (a description read from a model file, without the trust flag), the name and arguments must fit
    the typed network schema of a bundle's ``network_def`` (:mod:`.bundle_schema`: known networks, typed arguments,
    layer names from MONAI's factories, nothing that downloads), checked before MONAI is imported.

    Raises:
        ModelError: no architecture, an unknown network, arguments that do not build it, or (a
            :class:`~.bundle_config.BundleCodeError`) a description that breaks the schema.
    """
    if not isinstance(architecture, dict) or "name" not in architecture:
        raise ModelError(f"{where}: the description has no architecture (a MONAI network name and its kwargs)")
    if check:
        from .bundle_config import check_architecture, refuse

        found = check_architecture(architecture["name"], architecture.get("kwargs", {}))
        if found is not None:
            raise refuse(where, found, "model description")
    import monai.networks.nets as nets

    name = architecture["name"]
    cls = getattr(nets, name, None)
    if cls is None or not callable(cls):
        raise ModelError(f"{where}: unknown MONAI network {name!r} (see monai.networks.nets)")
    try:
        return cls(**architecture.get("kwargs", {}))
    except TypeError as exc:
        raise ModelError(f"{where}: cannot build {name} with the given kwargs ({exc})") from None
