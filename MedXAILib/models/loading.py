"""``load_model``: one entry point that turns a built-in name, a file or a folder into a :class:`Model`.

Each model format has its own adapter module (:mod:`.monai_network`, :mod:`.torchscript`, :mod:`.bundle`); this
module only recognises the format and hands over.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .bundle import load_bundle
from .checkpoints import load_weights_into
from .description import ModelDescription
from .model import Model
from .monai_network import build_network
from .torchscript import is_torchscript, load_torchscript
from .validation import check_network_outputs

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin_models"


def builtin_model_names() -> list[str]:
    """Names of the demo models shipped with MedXAILib."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def _description_beside(path: Path) -> Path | None:
    for cand in (path.with_suffix(".json"), path.parent / f"{path.name}.json", path.parent / "model.json"):
        if cand.exists() and cand != path:
            return cand
    return None


def load_model(
    name_or_path: str | Path,
    device: str = "cpu",
    allow_unsafe_pickle: bool = False,
    description: ModelDescription | None = None,
) -> Model:
    """Load a built-in model by name, or a model file or folder.

    Accepted forms:
        - a built-in name (``demo-brain-tumour``, ``demo-chest-xray``);
        - a description ``.json`` whose ``weights`` names a state_dict (``.pt``/``.pth``/``.safetensors``) beside it;
        - a weights or TorchScript file with a description beside it (``<stem>.json`` or ``model.json``);
        - a folder holding ``model.json`` (e.g. a ``train`` output fold), or a MONAI bundle (``configs/``, ``models/``).

    Raises:
        ModelError: unknown name, missing or unreadable file, weights that need unsafe unpickling (unless allowed),
            weights that do not fit the described architecture, or a network whose outputs do not match the
            description on a dummy pass (:func:`~.validation.check_network_outputs`).
    """
    text = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text}.json"
    path = builtin if builtin.exists() else Path(text)
    if not path.exists():
        names = ", ".join(builtin_model_names()) or "none installed"
        raise ModelError(f"unknown model {text!r}: not a built-in model ({names}) and no such file or folder")
    if path.is_dir():
        if (path / "configs").is_dir():
            network, desc = load_bundle(path, allow_unsafe_pickle)
            return check_network_outputs(Model(network, description or desc, device))
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
        network = build_network(desc.architecture, str(path))
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
    network = build_network(description.architecture, str(path))
    load_weights_into(network, path, allow_unsafe_pickle)
    return check_network_outputs(Model(network, description, device))
