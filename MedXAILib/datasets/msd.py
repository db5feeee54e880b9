"""The Medical Segmentation Decathlon's Task01_BrainTumour (``msd:DIR``)."""

from __future__ import annotations

import json

from ..errors import InputError
from .base import BRAIN_CHANNELS, LAYOUTS, Case, Dataset, existing_dir, no_cases, register

MSD_BRAIN_LABELS = {0: "background", 1: "oedema", 2: "non-enhancing tumour", 3: "enhancing tumour"}
MSD_BRAIN_REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}

LAYOUT = (
    'msd:DIR expects the Decathlon Task01_BrainTumour folder: DIR/dataset.json, '
    'DIR/imagesTr/BRATS_001.nii.gz (4D: FLAIR, T1w, t1gd, T2w), DIR/labelsTr/BRATS_001.nii.gz'
)


# ---- Medical Segmentation Decathlon, Task01_BrainTumour --------------------------------------------------------------
_MODALITY_ALIASES = {
    "t1": "t1", "t1w": "t1", "t1n": "t1",
    "t1gd": "t1ce", "t1ce": "t1ce", "t1c": "t1ce", "t1-gd": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2f": "flair", "t2-flair": "flair",
}  # fmt: skip


def _read_msd(kind: str, path: str) -> Dataset:
    root = existing_dir(kind, path)
    meta_file = root / "dataset.json"
    if not meta_file.is_file():
        raise InputError(f"{kind}:{root}: no dataset.json. {LAYOUTS[kind]}")
    try:
        info = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{meta_file}: cannot be read as JSON ({exc})") from None
    modality = info.get("modality") or {}
    try:
        file_channels = [str(modality[k]) for k in sorted(modality, key=lambda s: int(s))]
    except (ValueError, TypeError):
        raise InputError(f"{meta_file}: 'modality' must map channel numbers to names, got {modality!r}") from None
    if not file_channels:
        raise InputError(f"{meta_file}: no 'modality' entry; cannot tell which channel is which. {LAYOUTS[kind]}")
    names = [_MODALITY_ALIASES.get(n.strip().lower(), n.strip().lower()) for n in file_channels]
    if sorted(names) == sorted(BRAIN_CHANNELS):
        order = [names.index(c) for c in BRAIN_CHANNELS]
    else:
        order = list(range(len(names)))
    channel_names = [names[i] for i in order]
    labels_raw = info.get("labels") or {}
    try:
        label_names = {int(k): str(v) for k, v in labels_raw.items()} or dict(MSD_BRAIN_LABELS)
    except (ValueError, AttributeError):
        label_names = dict(MSD_BRAIN_LABELS)
    training = info.get("training") or []
    cases: list[Case] = []
    missing: list[str] = []
    for entry in training:
        if not isinstance(entry, dict) or "image" not in entry:
            continue
        img = (root / str(entry["image"])).resolve()
        lab = (root / str(entry["label"])).resolve() if entry.get("label") else None
        case_id = img.name.split(".")[0]
        if not img.is_file():
            missing.append(case_id)
            continue
        cases.append(
            Case(
                case_id=case_id,
                # MSD gives no patient key; each Task01 case is one BraTS 2016/2017 subject.
                patient_id=case_id,
                image_paths=[img],
                channel_names=channel_names,
                channel_indices=order,
                label_path=lab if lab is not None and lab.is_file() else None,
                meta={"task": "segmentation", "subset": "training"},
            )
        )
    notes = [
        "MSD has no patient key: each case is taken as its own patient.",
    ]
    if missing:
        notes.append(f"{len(missing)} of {len(training)} training images listed in dataset.json are not on disk.")
    n_test = len(info.get("test") or [])
    if n_test:
        notes.append(f"The {n_test} unlabelled test images are not listed.")
    if not cases:
        raise no_cases(kind, root, f" ({len(training)} listed in dataset.json, none on disk)")
    regions = dict(MSD_BRAIN_REGIONS) if set(label_names) == {0, 1, 2, 3} else {}
    return Dataset(
        kind=kind,
        root=root,
        cases=sorted(cases, key=lambda c: c.case_id),
        task="segmentation",
        channel_names=channel_names,
        label_names=label_names,
        regions=regions,
        n_listed=len(training),
        notes=notes,
    )


register("msd", LAYOUT, _read_msd)
