"""Registers nnU-Net and TotalSegmentator with the model catalogue and the ``totalsegmentator:`` scheme.

- source ``nnunet``: every trained-model folder under ``$nnUNet_results`` (``DatasetXXX/<trainer>__<plans>__<cfg>``);
- source ``totalsegmentator``: every TotalSegmentator task whose weights are installed (:mod:`.totalsegmentator`);
- ``--model totalsegmentator:TASK`` resolves through :func:`.totalsegmentator.load_totalsegmentator`.

Sources only read small JSON files; they never import nnU-Net or touch the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import zoo  # noqa: F401 - registered first, so built-in models are listed first
from .nnunet_folder import available_folds, is_nnunet_folder
from .registry import entry, register_model_source, register_resolver
from .totalsegmentator import installed_tasks, load_totalsegmentator


def nnunet_entry(folder: Path) -> dict[str, Any]:
    """One catalogue entry for an nnU-Net trained-model folder (from its dataset.json and folds)."""
    dj = json.loads((folder / "dataset.json").read_text())
    channels = dj.get("channel_names", dj.get("modality", {}))
    labels = dj.get("labels", {})
    classes = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1] if isinstance(kv[1], int) else 10**6)]
    config = folder.name.split("__")[-1]
    card = {"name": folder.parent.name, "version": folder.name, "configuration": config,
            "folds": [str(f) for f in available_folds(folder)], "training_data": folder.parent.name}
    return entry(f"{folder.parent.name}/{folder.name}", "nnunet", "segmentation", 3,
                 [str(channels[k]) for k in sorted(channels, key=lambda s: int(s))], classes, card, str(folder))


@register_model_source
def nnunet_results_models() -> list[dict[str, Any]]:
    root = os.environ.get("nnUNet_results")
    if not root or not Path(root).is_dir():
        return []
    out = []
    for ds in sorted(Path(root).glob("Dataset*")):
        for folder in sorted(p for p in ds.iterdir() if p.is_dir() and is_nnunet_folder(p)):
            try:
                out.append(nnunet_entry(folder))
            except (OSError, ValueError, KeyError):
                continue
    return out


@register_model_source
def totalsegmentator_models() -> list[dict[str, Any]]:
    try:
        return installed_tasks()
    except (OSError, ValueError, KeyError):
        return []


register_resolver("totalsegmentator", load_totalsegmentator)
