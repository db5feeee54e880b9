"""DeepMedic's BRATS 2015 example layout (``deepmedic:DIR``): FLAIR + T1c and ``OTMultiClass``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Case, Dataset, existing_dir, no_cases, register, walk_files

BRATS2015_LABELS = {0: "background", 1: "necrosis", 2: "oedema", 3: "non-enhancing tumour", 4: "enhancing tumour"}
BRATS2015_REGIONS = {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)}

LAYOUT = (
    'deepmedic:DIR expects '
    'DIR/[train|validation|test/]brats_2013_pat0001_1/{Flair,T1c}_subtrMeanDivStd.nii.gz and '
    'OTMultiClass.nii.gz'
)


# ---- DeepMedic's BRATS 2015 example --------------------------------------------------------------------------------
_DEEPMEDIC_FILES = {"flair": "Flair_subtrMeanDivStd", "t1ce": "T1c_subtrMeanDivStd"}


def _read_deepmedic(kind: str, path: str) -> Dataset:
    root = existing_dir(kind, path)
    folders = sorted({f.parent for f in walk_files(root) if f.name.startswith(_DEEPMEDIC_FILES["flair"] + ".nii")})
    cases: list[Case] = []
    skipped: list[str] = []
    official: dict[str, list[str]] = {}

    def nifti(folder: Path, stem: str) -> Path | None:
        for ext in (".nii.gz", ".nii"):
            if (folder / (stem + ext)).is_file():
                return folder / (stem + ext)
        return None

    for folder in folders:
        paths = {ch: nifti(folder, stem) for ch, stem in _DEEPMEDIC_FILES.items()}
        if any(p is None for p in paths.values()):
            skipped.append(folder.name)
            continue
        # brats_2013_pat0001_1 / brats_tcia_pat123_0083: the last number is the scan, the rest the patient
        head, _, tail = folder.name.rpartition("_")
        patient = head if head and tail.isdigit() else folder.name
        subset = folder.parent.name if folder.parent != root else ""
        meta: dict[str, Any] = {"task": "segmentation"}
        if subset:
            meta["subset"] = subset
            official.setdefault(subset, []).append(folder.name)
        mask = nifti(folder, "brainmask")
        if mask is not None:
            meta["brain_mask_path"] = mask
        cases.append(
            Case(
                case_id=folder.name,
                patient_id=patient,
                image_paths=[paths["flair"], paths["t1ce"]],  # type: ignore[list-item]
                channel_names=["flair", "t1ce"],
                label_path=nifti(folder, "OTMultiClass"),
                meta=meta,
            )
        )
    if not cases:
        raise no_cases(kind, root)
    notes = ["BRATS 2015 labels: 1 necrosis, 2 oedema, 3 non-enhancing tumour, 4 enhancing tumour."]
    if skipped:
        notes.append(f"Skipped {len(skipped)} folder(s) without T1c: {', '.join(skipped[:5])}.")
    cases.sort(key=lambda c: c.case_id)
    return Dataset(
        kind=kind,
        root=root,
        cases=cases,
        task="segmentation",
        channel_names=["flair", "t1ce"],
        label_names=dict(BRATS2015_LABELS),
        regions=dict(BRATS2015_REGIONS),
        official_split=official if len(official) > 1 else {},
        n_listed=len(folders),
        notes=notes,
    )


register("deepmedic", LAYOUT, _read_deepmedic)
