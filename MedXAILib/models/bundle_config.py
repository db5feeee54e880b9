"""Reading a MONAI bundle's configs safely: the allow-list, the consent rule, and what ``metadata.json`` says.

**A bundle config is code.** Its ``_target_`` entries name callables, ``$…`` strings are Python expressions, ``@id``
references pull in other entries (which may be expressions) and ``%file#id`` macros read other files. Without
``--trust-bundle-code`` MedXAI therefore:

- instantiates only ``_target_``s on the allow-list (:func:`allowed_targets`): the networks of
  ``monai.networks.nets``, the transforms of ``monai.transforms`` (less those that run a user function, call another
  library by name, or write files: ``Lambda*``, ``RandLambda*``, ``CuCIM*``, ``TorchVision*``, ``TorchIO*``,
  ``SaveImage*``) and the inferers of ``monai.inferers``; each is rewritten to its full ``monai.…`` path before MONAI
  parses it;
- evaluates no ``$`` expression, follows no ``@`` reference to one (references are followed through the whole config
  and checked too), expands no ``%`` macro and allows no ``_mode_: debug``;
- builds the :class:`monai.bundle.ConfigParser` from the checked entries only, so nothing else in the config (its
  ``imports``, ``device``, datalists, ``initialize`` …) is ever parsed.

An entry the function needs (network, preprocessing, inferer) that breaks a rule refuses the bundle with one line
naming the entry, the risk and the flag (:class:`BundleCodeError`). A postprocessing step that breaks one (BraTS's
``Lambdad`` label mapping) is skipped with a note; ``SaveImage*`` steps are always skipped (MedXAI writes outputs).
With ``trust_code=True`` the full config goes to MONAI as it is.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from pathlib import Path
from typing import Any

from ..errors import ModelError

TRUST_FLAG = "--trust-bundle-code"
_DENY_PREFIXES = ("Lambda", "RandLambda", "CuCIM", "RandCuCIM", "TorchVision", "RandTorchVision", "TorchIO",
                  "RandTorchIO", "SaveImage")
_REF_SEPS = ("::", "#")


class BundleCodeError(ModelError):
    """A bundle entry would run code that was not consented to."""


@functools.lru_cache(maxsize=1)
def allowed_targets() -> dict[str, str]:
    """Allow-listed ``_target_`` short names → full dotted paths (networks, transforms, inferers)."""
    import monai.inferers
    import monai.networks.nets
    import monai.transforms
    import torch

    out: dict[str, str] = {}
    for name, obj in vars(monai.networks.nets).items():
        if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and not name.startswith("_"):
            out[name] = f"monai.networks.nets.{name}"
    for name, obj in vars(monai.inferers).items():
        if inspect.isclass(obj) and issubclass(obj, monai.inferers.Inferer) and not name.startswith("_"):
            out[name] = f"monai.inferers.{name}"
    for name, obj in vars(monai.transforms).items():
        if (inspect.isclass(obj) and issubclass(obj, monai.transforms.Transform) and not name.startswith("_")
                and not name.startswith(_DENY_PREFIXES)):
            out[name] = f"monai.transforms.{name}"
    return out


def read_config(folder: Path, stem: str) -> dict[str, Any] | None:
    """``configs/<stem>.json`` / ``.yaml`` / ``.yml`` as a dict (None when absent)."""
    for ext in (".json", ".yaml", ".yml"):
        p = folder / "configs" / f"{stem}{ext}"
        if p.exists():
            try:
                if ext == ".json":
                    data = json.loads(p.read_text())
                else:
                    import yaml

                    data = yaml.safe_load(p.read_text())
            except Exception as exc:  # noqa: BLE001 - JSON and YAML raise different types
                raise ModelError(f"{p}: not a readable bundle config ({exc})") from None
            if not isinstance(data, dict):
                raise ModelError(f"{p}: a bundle config is a mapping of ids to entries")
            return data
    return None


def _lookup(config: dict[str, Any], ref: str) -> tuple[str, Any]:
    """``(top-level id, entry)`` for an ``@`` reference (``a::b::0`` or ``a#b#0``)."""
    parts = [ref]
    for sep in _REF_SEPS:
        if sep in ref:
            parts = ref.split(sep)
            break
    node: Any = config
    for p in parts:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and p.lstrip("-").isdigit() and -len(node) <= int(p) < len(node):
            node = node[int(p)]
        else:
            raise ModelError(f"bundle config: reference @{ref} points at nothing")
    return parts[0], node


class _Checker:
    """Walks entries, follows references, collects the top-level ids needed and the first rule broken."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.needed: set[str] = set()
        self._seen: set[int] = set()

    def problem(self, node: Any, where: str) -> str | None:
        if isinstance(node, str):
            if node.startswith("$"):
                return f"{where} is a Python expression ({node[:60]!r})"
            if node.startswith("%"):
                return f"{where} is a macro that reads another file ({node[:60]!r})"
            if node.startswith("@"):
                ref = node[1:]
                top, target = _lookup(self.config, ref)
                self.needed.add(top)
                if id(target) in self._seen:
                    return None
                self._seen.add(id(target))
                found = self.problem(target, f"{where} → @{ref}")
                return found
            return None
        if isinstance(node, list):
            for i, v in enumerate(node):
                found = self.problem(v, f"{where}[{i}]")
                if found:
                    return found
            return None
        if isinstance(node, dict):
            if "_target_" in node:
                target = node["_target_"]
                if not isinstance(target, str) or self._resolve_target(target) is None:
                    return (f"{where} instantiates {target!r}, which is not an allow-listed MONAI "
                            "network/transform/inferer")
                if node.get("_mode_", "default") not in ("default", "callable", "partial"):
                    return f"{where} asks for _mode_ {node.get('_mode_')!r}"
            for k, v in node.items():
                found = self.problem(v, f"{where}.{k}")
                if found:
                    return found
        return None

    @staticmethod
    def _resolve_target(target: str) -> str | None:
        allowed = allowed_targets()
        short = target.rsplit(".", 1)[-1]
        if short not in allowed:
            return None
        if "." in target:
            import pydoc

            if not target.startswith("monai.") or pydoc.locate(target) is not pydoc.locate(allowed[short]):
                return None
        return allowed[short]


def _qualify(node: Any) -> Any:
    """A copy with every ``_target_`` rewritten to its allow-listed full path."""
    if isinstance(node, list):
        return [_qualify(v) for v in node]
    if isinstance(node, dict):
        out = {k: _qualify(v) for k, v in node.items()}
        if isinstance(out.get("_target_"), str):
            out["_target_"] = _Checker._resolve_target(out["_target_"]) or out["_target_"]
        return out
    return node


def check_entry(config: dict[str, Any], entry_id: str) -> tuple[str | None, set[str]]:
    """``(first rule broken or None, top-level ids the entry needs)`` for the top-level entry ``entry_id``."""
    checker = _Checker(config)
    checker.needed.add(entry_id)
    found = checker.problem(config[entry_id], entry_id)
    return found, checker.needed


def refuse(folder: Path, found: str) -> BundleCodeError:
    return BundleCodeError(
        f"{folder}: bundle entry {found}; running it would execute code from the bundle. "
        f"Pass {TRUST_FLAG} only if you trust this bundle's author"
    )


def safe_parser(config: dict[str, Any], ids: set[str], folder: Path) -> Any:
    """A ``ConfigParser`` holding only the (already checked) top-level ``ids``, targets fully qualified."""
    from monai.bundle import ConfigParser

    sub = {k: _qualify(copy.deepcopy(config[k])) for k in sorted(ids)}
    return ConfigParser(sub)


def trusted_parser(config: dict[str, Any], folder: Path) -> Any:
    """A ``ConfigParser`` over the whole config (``--trust-bundle-code``), with ``bundle_root`` set to the folder."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(copy.deepcopy(config))
    parser["bundle_root"] = str(folder)
    return parser


def bundle_io(metadata: dict[str, Any], inference: dict[str, Any]) -> dict[str, Any]:
    """Task, dims, channel and class names from ``metadata.json`` (``network_data_format``)."""
    fmt = metadata.get("network_data_format", {}) or {}
    image_in = (fmt.get("inputs", {}) or {}).get("image", {}) or {}
    pred_out = (fmt.get("outputs", {}) or {}).get("pred", {}) or {}
    n_in = int(image_in.get("num_channels", 1) or 1)
    ch_def = image_in.get("channel_def", {}) or {}
    out_def = pred_out.get("channel_def", {}) or {}
    labels = metadata.get("label_classes") or pred_out.get("label_classes")
    n_out = int(pred_out.get("num_channels", len(out_def) or 2) or 2)
    classes = [str(out_def.get(str(i), f"class{i}")) for i in range(n_out)]
    if isinstance(labels, dict) and not out_def:
        classes = [str(labels.get(str(i), classes[i])) for i in range(n_out)]
    spatial = image_in.get("spatial_shape", []) or []
    is_image_out = pred_out.get("type") == "image" or pred_out.get("format") == "segmentation"
    return {
        "task": "segmentation" if is_image_out else "classification",
        "spatial_dims": 2 if len(spatial) == 2 else 3,
        "channels": [str(ch_def.get(str(i), f"channel{i}")) for i in range(n_in)],
        "classes": classes,
    }


def bundle_card(metadata: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The model card of a bundle from its ``metadata.json``."""
    return {
        "name": str(metadata.get("name", folder.name)),
        "version": str(metadata.get("version", "unknown")),
        "training_data": str(metadata.get("data_source", "unknown")),
        "intended_use": str(metadata.get("intended_use", "unknown")),
        "source": str(folder),
        "authors": metadata.get("authors"),
        "references": metadata.get("references"),
        "monai_version": metadata.get("monai_version"),
    }
