"""TotalSegmentator's installed weights as nnU-Net models: ``--model totalsegmentator:TASK`` (and the catalogue).

TotalSegmentator keeps one nnU-Net v2 results folder per dataset id under its weights folder::

    $TOTALSEG_WEIGHTS_PATH  (else $TOTALSEG_HOME_DIR/nnunet/results, else ~/.totalsegmentator/nnunet/results)
        Dataset291_TotalSegmentator_part1_organs_1559subj/nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres/
            plans.json  dataset.json  fold_0/checkpoint_final.pth
        Dataset292_…part2_vertebrae…/  …  Dataset297_TotalSegmentator_total_3mm_1559subj/ …

A task maps to dataset ids (:data:`TASKS`; ``--fast`` picks the low-resolution model). A task with several parts
(``total`` = 291–295) is explained one part at a time: the part whose ``dataset.json`` has the target class
(``--target liver`` → part 1). The part's folder is loaded by :mod:`.nnunet`, exactly as nnU-Net runs it.

Not reproduced (TotalSegmentator's own wrapper around nnU-Net): resampling the input to the model's spacing before
nnU-Net (nnU-Net's preprocessor resamples to the plans' spacing instead), cropping to the body or to organs for the
sub-tasks that crop, merging the parts into one label map, and its post-processing.
MedXAI never downloads weights; install them with TotalSegmentator (see :data:`INSTALL_HINT`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .nnunet_folder import is_nnunet_folder

# task -> (dataset ids of the default model's parts, dataset ids of the --fast model)
TASKS: dict[str, tuple[list[int], list[int]]] = {
    "total": ([291, 292, 293, 294, 295], [297]),
    "total_mr": ([850, 851], [852]),
    "body": ([299], [300]),
    "body_mr": ([597], [598]),
    "lung_vessels": ([258], []),
    "cerebral_bleed": ([150], []),
    "hip_implant": ([260], []),
    "pleural_pericard_effusion": ([315], []),
    "vertebrae_mr": ([756], []),
    "head_glands_cavities": ([775], []),
    "headneck_bones_vessels": ([776], []),
    "head_muscles": ([777], []),
    "liver_vessels": ([8], []),
    "heartchambers_highres": ([301], []),
    "appendicular_bones": ([304], []),
    "tissue_types": ([481], []),
    "face": ([303], []),
    "brain_structures": ([409], []),
    "coronary_arteries": ([507], []),
    "liver_segments": ([570], []),
}
INSTALL_HINT = (
    "install TotalSegmentator (pip install TotalSegmentator, or the TotalSegmentator Slicer extension) and fetch the "
    "weights once with `totalseg_download_weights -t {task}` (or run TotalSegmentator on any image); if the weights "
    "are elsewhere, set TOTALSEG_WEIGHTS_PATH or TOTALSEG_HOME_DIR. MedXAI never downloads them itself"
)


def weights_dir() -> Path:
    """Where TotalSegmentator keeps its nnU-Net results folders (its own environment variables first)."""
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"]).expanduser()
    if os.environ.get("TOTALSEG_HOME_DIR"):
        return Path(os.environ["TOTALSEG_HOME_DIR"]).expanduser() / "nnunet" / "results"
    return Path.home() / ".totalsegmentator" / "nnunet" / "results"


def dataset_folder(dataset_id: int, root: Path | None = None) -> Path | None:
    """The trained-model folder (``<trainer>__<plans>__<config>``) of a dataset id, preferring 3d_fullres."""
    root = root or weights_dir()
    if not root.is_dir():
        return None
    pattern = re.compile(rf"^Dataset0*{dataset_id}(_|$)")
    candidates: list[Path] = []
    for ds in sorted(p for p in root.iterdir() if p.is_dir() and pattern.match(p.name)):
        candidates += [m for m in sorted(ds.iterdir()) if m.is_dir() and is_nnunet_folder(m)]
        nested = ds / ds.name  # some zips unpack one level deeper
        if nested.is_dir():
            candidates += [m for m in sorted(nested.iterdir()) if m.is_dir() and is_nnunet_folder(m)]
    if not candidates:
        return None
    full = [c for c in candidates if c.name.endswith("__3d_fullres")]
    return (full or candidates)[0]


def class_names_of(folder: Path) -> list[str]:
    """Class names of a part (its checked ``dataset.json`` labels, by value; regions after the labels)."""
    from .nnunet_schema import label_names, read_dataset_json

    return label_names(read_dataset_json(folder))


def parse_name(name: str) -> tuple[str, bool]:
    """``total`` → (``total``, False); ``total_fast`` or ``total:fast`` → (``total``, True)."""
    text = name.strip().lower()
    for suffix in (":fast", "_fast", "-fast"):
        if text.endswith(suffix) and text[: -len(suffix)] in TASKS:
            return text[: -len(suffix)], True
    return text, False


def resolve_parts(task: str, fast: bool, root: Path | None = None) -> list[Path]:
    """The installed part folders of a task (error with the install command when some are missing)."""
    root = root or weights_dir()
    if task.isdigit():
        ids = [int(task)]
    elif task in TASKS:
        ids = TASKS[task][1] if fast else TASKS[task][0]
        if fast and not ids:
            raise ModelError(f"TotalSegmentator task {task!r} has no --fast model")
    else:
        raise ModelError(
            f"unknown TotalSegmentator task {task!r}; known: {', '.join(sorted(TASKS))} (or a dataset id, e.g. "
            "totalsegmentator:291)"
        )
    found = {i: dataset_folder(i, root) for i in ids}
    missing = [i for i, f in found.items() if f is None]
    if missing:
        what = f"{task}{'_fast' if fast else ''}" if not task.isdigit() else "total"
        raise ModelError(
            f"TotalSegmentator weights for {task!r}{' (--fast)' if fast else ''} are not installed: no folder for "
            f"dataset(s) {', '.join(map(str, missing))} under {root}. " + INSTALL_HINT.format(task=what)
        )
    return [f for f in found.values() if f is not None]


def _dataset_id(folder: Path) -> str:
    m = re.match(r"Dataset0*(\d+)", folder.parent.name)
    return m.group(1) if m else folder.parent.name


def pick_part(parts: list[Path], target: str | None, task: str) -> Path:
    """The part holding ``target`` (a class name); a one-part task needs no target."""
    if len(parts) == 1:
        return parts[0]
    if target is None or str(target).strip().lstrip("-").isdigit():
        lines = "; ".join(f"{p.parent.name}: {', '.join(class_names_of(p)[1:4])}, …" for p in parts)
        raise ModelError(
            f"TotalSegmentator {task!r} is {len(parts)} nnU-Net models, each for some classes ({lines}); name the "
            "class to explain with --target NAME (e.g. --target liver) so the part that holds it is used, or pick a "
            f"part by its dataset id (e.g. totalsegmentator:{_dataset_id(parts[0])})"
        )
    want = str(target).strip().lower()
    for p in parts:
        if want in (n.lower() for n in class_names_of(p)):
            return p
    raise ModelError(f"no part of TotalSegmentator {task!r} has a class {target!r}")


def load_totalsegmentator(name: str, device: str = "cpu", trust_code: bool = False,
                          allow_unsafe_pickle: bool = False, **options: Any) -> Any:
    """Resolver for ``--model totalsegmentator:TASK`` (options: ``fast``, ``target``, ``folds``, ``checkpoint``,
    ``tta``)."""
    from .nnunet import load_nnunet_model

    task, fast = parse_name(name)
    fast = fast or bool(options.get("fast"))
    parts = resolve_parts(task, fast)
    folder = pick_part(parts, options.get("target"), task)
    model = load_nnunet_model(str(folder), device=device, folds=options.get("folds"),
                              checkpoint=options.get("checkpoint") or "final", tta=options.get("tta", True),
                              allow_unsafe_pickle=allow_unsafe_pickle, trust_code=trust_code)
    model.description.card = {**(model.description.card or {}), "name": f"TotalSegmentator {task}",
                              "totalsegmentator_task": task, "fast": fast, "part": folder.parent.name,
                              "intended_use": "TotalSegmentator anatomical segmentation (research use)"}
    return model


def installed_tasks(root: Path | None = None) -> list[dict[str, Any]]:
    """Catalogue entries (``models --json``) for every task whose parts are all installed."""
    from .registry import entry, skipped

    root = root or weights_dir()
    if not root.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for task, (ids, fast_ids) in sorted(TASKS.items()):
        for is_fast, group in ((False, ids), (True, fast_ids)):
            if not group:
                continue
            folders = [dataset_folder(i, root) for i in group]
            if any(f is None for f in folders):
                continue
            classes: list[str] = []
            load = f"totalsegmentator:{task}{'_fast' if is_fast else ''}"
            try:
                for f in folders:
                    classes += [c for c in class_names_of(f) if c != "background" and c not in classes]
            except ModelError as exc:
                out.append(skipped(load, "totalsegmentator", str(exc)))
                continue
            out.append(entry(load.split(":", 1)[1], "totalsegmentator", "segmentation", 3, ["CT" if "mr" not in task
                             else "MR"], ["background", *classes],
                             {"name": f"TotalSegmentator {task}", "parts": [f.parent.name for f in folders if f],
                              "source": str(root)}, load))
    return out
