"""The nnU-Net and TotalSegmentator catalogue sources (listed in :mod:`.catalogue`).

- source ``nnunet``: every trained-model folder under ``$nnUNet_results`` (``DatasetXXX/<trainer>__<plans>__<cfg>``);
- source ``totalsegmentator``: every TotalSegmentator task whose weights are installed (:mod:`.totalsegmentator`).

Sources only read small JSON files, bounded and checked (:mod:`.nnunet_schema`); they never import nnU-Net or touch
the network. A folder that cannot be read is a skipped record naming why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .nnunet_folder import available_folds, is_nnunet_folder
from .nnunet_schema import check_dataset_json, label_names, read_dataset_json
from .registry import entry, skipped
from .totalsegmentator import installed_tasks


def nnunet_entry(folder: Path) -> dict[str, Any]:
    """One catalogue entry for an nnU-Net trained-model folder (from its checked dataset.json and folds).

    Raises:
        ModelError: the dataset.json is unreadable or breaks its schema.
    """
    dj = read_dataset_json(folder)
    channels = check_dataset_json(dj, str(folder / "dataset.json"))
    config = folder.name.split("__")[-1]
    card = {"name": folder.parent.name, "version": folder.name, "configuration": config,
            "folds": [str(f) for f in available_folds(folder)], "training_data": folder.parent.name}
    return entry(f"{folder.parent.name}/{folder.name}", "nnunet", "segmentation", 3, [str(c) for c in channels],
                 label_names(dj), card, str(folder))


def nnunet_results_models() -> list[dict[str, Any]]:
    """Entries of the trained-model folders under ``$nnUNet_results`` (skipped records for unreadable ones)."""
    root = os.environ.get("nnUNet_results")
    if not root or not Path(root).is_dir():
        return []
    out = []
    for ds in sorted(Path(root).glob("Dataset*")):
        if not ds.is_dir():
            continue
        for folder in sorted(p for p in ds.iterdir() if p.is_dir() and is_nnunet_folder(p)):
            try:
                out.append(nnunet_entry(folder))
            except (ModelError, OSError) as exc:
                out.append(skipped(f"{ds.name}/{folder.name}", "nnunet", str(exc)))
    return out


def totalsegmentator_models() -> list[dict[str, Any]]:
    """Entries of the installed TotalSegmentator tasks (:func:`.totalsegmentator.installed_tasks`)."""
    return installed_tasks()
