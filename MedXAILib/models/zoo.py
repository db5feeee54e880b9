"""Built-in, cached and MONAI Model Zoo models: catalogue sources and the ``monai:NAME`` resolver.

``--model monai:NAME`` loads the bundle ``NAME`` from the cache (``$MEDXAI_MODEL_CACHE``, default
``~/.cache/medxai/bundles``), downloading it on first use with MONAI's own ``monai.bundle.download``. The download
source is MONAI's default (its hosting) unless ``$MEDXAI_ZOO_URL`` gives a URL template with ``{name}`` (e.g. a
``file:///…/{name}.zip`` mirror: how the tests run offline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .registry import entry, skipped

# Zoo bundles known to run as MONAI runs them (standard transforms and inferers); shown by ``models`` before download.
KNOWN_ZOO: dict[str, dict[str, Any]] = {
    "brats_mri_segmentation": {"task": "segmentation", "spatial_dims": 3, "channels": ["T1c", "T1", "T2", "FLAIR"],
                               "classes": ["Tumor core", "Whole tumor", "Enhancing tumor"],
                               "training_data": "BraTS 2018 (MONAI Model Zoo)"},
    "spleen_ct_segmentation": {"task": "segmentation", "spatial_dims": 3, "channels": ["image"],
                               "classes": ["background", "spleen"],
                               "training_data": "Medical Segmentation Decathlon Task09_Spleen (MONAI Model Zoo)"},
}


def cache_dir() -> Path:
    """Where downloaded bundles live (``$MEDXAI_MODEL_CACHE`` or ``~/.cache/medxai/bundles``)."""
    env = os.environ.get("MEDXAI_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medxai" / "bundles"


def builtin_entries() -> list[dict[str, Any]]:
    """Catalogue entries of the demo models shipped with MedXAILib."""
    from .builtin import BUILTIN_DIR, builtin_model_names
    from .description import ModelDescription

    out = []
    for name in builtin_model_names():
        try:
            d = ModelDescription.from_json(BUILTIN_DIR / f"{name}.json")
        except ModelError as exc:
            out.append(skipped(name, "builtin", str(exc)))
            continue
        card = {"name": d.name, "version": "unknown", "training_data": d.training.get("data", "unknown"),
                "intended_use": "unknown", **(d.card or {})}
        out.append(entry(name, "builtin", d.task, d.spatial_dims, d.channel_names, d.class_names, card, name,
                         d.label_values))
    return out


def bundle_entry(folder: Path, source: str, load: str) -> dict[str, Any]:
    """A catalogue entry read from a bundle folder's ``metadata.json`` (nothing is executed).

    Raises:
        ModelError: the metadata is unreadable, too large, or of the wrong types (:mod:`.bundle_metadata`).
    """
    from .bundle_metadata import bundle_card, bundle_io, read_metadata

    meta = read_metadata(folder)
    io = bundle_io(meta, folder)
    return entry(load, source, io["task"], io["spatial_dims"], io["channels"], io["classes"],
                 bundle_card(meta, folder), load)


def cached_entries() -> list[dict[str, Any]]:
    """Catalogue entries of the bundles in the cache; a bundle that cannot be read is a :func:`skipped` record."""
    root = cache_dir()
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if not (p / "configs").is_dir():
            continue
        try:
            out.append(bundle_entry(p, "cached", f"monai:{p.name}"))
        except (ModelError, OSError) as exc:
            out.append(skipped(f"monai:{p.name}", "cached", str(exc)))
    return out


def zoo_entries() -> list[dict[str, Any]]:
    """Known Model Zoo bundles that are not in the cache yet (shown before download)."""
    cached = {p.name for p in cache_dir().iterdir()} if cache_dir().is_dir() else set()
    out = []
    for name, info in KNOWN_ZOO.items():
        if name in cached:
            continue
        card = {"name": name, "version": "not downloaded", "training_data": info["training_data"],
                "intended_use": "research example from the MONAI Model Zoo; not for diagnostic use"}
        out.append(entry(f"monai:{name}", "zoo", info["task"], info["spatial_dims"], info["channels"],
                         info["classes"], card))
    return out


def fetch_bundle(name: str) -> Path:
    """The cached bundle folder for ``name``, downloaded with ``monai.bundle.download`` on first use."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ModelError(f"monai:{name}: not a Model Zoo bundle name (e.g. monai:spleen_ct_segmentation)")
    root = cache_dir()
    folder = root / name
    if (folder / "configs").is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    from monai.bundle import download

    url = os.environ.get("MEDXAI_ZOO_URL")
    try:
        if url:
            download(name=name, bundle_dir=str(root), url=url.format(name=name), progress=False)
        else:
            download(name=name, bundle_dir=str(root), progress=False)
    except Exception as exc:  # noqa: BLE001 - network and archive errors come in many types
        raise ModelError(
            f"monai:{name}: could not download the bundle into {root} ({type(exc).__name__}: {exc}); check the name "
            "and the network, or give the bundle folder itself to --model"
        ) from None
    (root / f"{name}.zip").unlink(missing_ok=True)  # MONAI keeps the archive beside the extracted folder
    if not (folder / "configs").is_dir():
        raise ModelError(f"monai:{name}: the download did not produce {folder}/configs")
    return folder


def resolve_monai(name: str, device: str = "cpu", trust_code: bool = False,
                  allow_unsafe_pickle: bool = False) -> Any:
    """Resolver for ``--model monai:NAME``: the cached bundle (downloaded on first use), under the same checks as a
    bundle folder given by path (:mod:`.bundle_config`)."""
    from .bundle import load_bundle_model

    return load_bundle_model(fetch_bundle(name), device=device, trust_code=trust_code,
                             allow_unsafe_pickle=allow_unsafe_pickle)
