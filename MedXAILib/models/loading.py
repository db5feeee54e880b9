"""``load_model``: one entry point that turns a built-in name, a file or a folder into a :class:`Model`.

Each model format has its own adapter module (:mod:`.monai_network`, :mod:`.torchscript`, :mod:`.bundle`); this
module only recognises the format and hands over.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .builtin import BUILTIN_DIR, builtin_model_names
from .bundle import load_bundle_model
from .catalogue import resolver_for
from .checkpoints import load_weights_into
from .description import ModelDescription
from .model import Model
from .monai_network import build_network
from .nnunet_folder import is_nnunet_folder
from .torchscript import is_torchscript, load_torchscript
from .validation import check_network_outputs

__all__ = ["BUILTIN_DIR", "builtin_model_names", "load_model"]


def _description_beside(path: Path) -> Path | None:
    for cand in (path.with_suffix(".json"), path.parent / f"{path.name}.json", path.parent / "model.json"):
        if cand.exists() and cand != path:
            return cand
    return None


def _nnunet_folder_and_folds(path: Path, options: dict[str, Any]) -> tuple[Path, list[int | str] | None] | None:
    """``(results folder, folds)`` for an nnU-Net folder or one of its ``fold_K`` folders, else None."""
    if is_nnunet_folder(path):
        return path, options.get("folds")
    if path.name.startswith("fold_") and is_nnunet_folder(path.parent):
        tail = path.name[len("fold_"):]
        fold: int | str = int(tail) if tail.isdigit() else tail
        if options.get("folds") not in (None, [fold]):
            raise ModelError(f"{path} is fold {fold}; --folds {options['folds']} contradicts it")
        return path.parent, [fold]
    return None


def load_model(
    name_or_path: str | Path,
    device: str = "cpu",
    allow_unsafe_pickle: bool = False,
    description: ModelDescription | None = None,
    trust_bundle_code: bool = False,
    options: dict[str, Any] | None = None,
    trust_model_code: bool = False,
) -> Model:
    """Load a built-in model by name, or a model file or folder.

    Accepted forms:
        - a built-in name (``demo-brain-tumour``, ``demo-chest-xray``);
        - a description ``.json`` whose ``weights`` names a state_dict (``.pt``/``.pth``/``.safetensors``) beside it;
        - a weights or TorchScript file with a description beside it (``<stem>.json`` or ``model.json``);
        - a folder holding ``model.json`` (e.g. a ``train`` output fold), or a MONAI bundle (``configs/``, ``models/``),
          run through MONAI (:mod:`.bundle`) after its config passes the typed schema of :mod:`.bundle_config`;
        - an nnU-Net v2 trained-model folder (``plans.json``, ``dataset.json``, ``fold_K/checkpoint_*.pth``), or one
          of its ``fold_K`` folders (that fold only), run as nnU-Net runs it (:mod:`.nnunet`);
        - ``SCHEME:NAME`` for a registered resolver (:mod:`.registry`), e.g. ``monai:spleen_ct_segmentation``
          (downloaded into the cache on first use, :mod:`.zoo`) or ``totalsegmentator:total`` (installed weights).

    Model files that are not pure weights (bundle configs and metadata, nnU-Net plans and dataset.json) are checked
    against typed schemas before anything they name is imported, called or downloaded; ``trust_model_code`` (the
    CLI's ``--trust-model-code``; ``trust_bundle_code`` is its old name and means the same) lets them run their own
    code instead (see ``docs/security.md``).

    ``options`` are format options: for nnU-Net ``folds`` (list, default every fold present), ``checkpoint``
    (``final``/``best``), ``tta`` (mirroring, default on where the checkpoint allows it); for TotalSegmentator also
    ``fast`` and ``target`` (the class whose part to load). Resolvers that take no options get none.

    Raises:
        ModelError: unknown name, missing or unreadable file, weights that need unsafe unpickling (unless allowed),
            weights that do not fit the described architecture, or a network whose outputs do not match the
            description on a dummy pass (:func:`~.validation.check_network_outputs`).
    """
    trust = bool(trust_model_code or trust_bundle_code)
    text = str(name_or_path)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    resolved = resolver_for(text) if not Path(text).exists() else None
    if resolved is not None:
        fn, name = resolved
        accepts = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
        return fn(name, device=device, trust_code=trust, allow_unsafe_pickle=allow_unsafe_pickle,
                  **(options if accepts else {}))
    builtin = BUILTIN_DIR / f"{text}.json"
    path = builtin if builtin.exists() else Path(text)
    if not path.exists():
        names = ", ".join(builtin_model_names()) or "none installed"
        raise ModelError(f"unknown model {text!r}: not a built-in model ({names}) and no such file or folder")
    if path.is_dir():
        nnunet = _nnunet_folder_and_folds(path, options)
        if nnunet is not None:
            from .nnunet import load_nnunet_model

            folder, folds = nnunet
            return load_nnunet_model(str(folder), device=device, folds=folds,
                                     checkpoint=options.get("checkpoint") or "final", tta=options.get("tta", True),
                                     allow_unsafe_pickle=allow_unsafe_pickle, trust_code=trust)
        if (path / "configs").is_dir():
            return check_network_outputs(load_bundle_model(path, device, trust, allow_unsafe_pickle))
        if (path / "model.json").exists():
            path = path / "model.json"
        else:
            raise ModelError(f"{path}: a model folder needs model.json or a MONAI bundle's configs/ and models/")
    if path.suffix == ".json":
        desc = description or ModelDescription.from_json(path)
        if not desc.weights:
            raise ModelError(f"{path}: the description names no weights file")
        weights = (path.parent / desc.weights).resolve()
        if weights.exists() and is_torchscript(weights):
            return check_network_outputs(Model(load_torchscript(weights), desc, device))
        network = build_network(desc.architecture, str(path), check=not trust)
        load_weights_into(network, weights, allow_unsafe_pickle)
        return check_network_outputs(Model(network, desc, device))
    # a weights / TorchScript file
    if description is None:
        beside = _description_beside(path)
        if beside is None:
            raise ModelError(
                f"{path}: no model description found beside it ({path.with_suffix('.json').name} or model.json); "
                "a description says the channels, classes and preprocessing"
            )
        description = ModelDescription.from_json(beside)
    if is_torchscript(path):
        return check_network_outputs(Model(load_torchscript(path), description, device))
    network = build_network(description.architecture, str(path), check=not trust)
    load_weights_into(network, path, allow_unsafe_pickle)
    return check_network_outputs(Model(network, description, device))
