"""Tiny reader studies for the tests: made once per session with the real demo model, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

_MADE: dict[tuple, Path] = {}


def tiny_study(tmp_path_factory, dest: Path, arms: tuple[str, ...] = ("image", "ai+gradcam"), n_cases: int = 4,
               readers: tuple[str, ...] = ("r1", "r2"), **settings) -> Path:
    """A study of ``n_cases`` chest phantoms (the nodule finding) with ``arms`` and ``readers``, copied to ``dest``.

    The first call with given arguments runs ``study create``'s library function with the built-in
    ``demo-chest-xray`` model (one torch thread); later calls copy that folder.
    """
    import torch

    from MedXAILib.models import load_model
    from MedXAILib.study.create import StudySettings, create_study, phantom_cases

    key = (arms, n_cases, readers, repr(sorted(settings.items())))
    if key not in _MADE:
        folder = tmp_path_factory.mktemp("study") / "study"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            create_study(phantom_cases(f"phantoms:chest:{n_cases}"), load_model("demo-chest-xray"), "demo-chest-xray",
                         StudySettings(arms=list(arms), readers=list(readers), seed=7, finding="nodule", **settings),
                         folder)
        finally:
            torch.set_num_threads(threads)
        _MADE[key] = folder
    shutil.copytree(_MADE[key], dest)
    return dest
