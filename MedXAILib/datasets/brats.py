"""BraTS 2021 and BraTS 2023 (``brats2021:DIR``, ``brats2023:DIR``): one folder per case."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .base import BRAIN_CHANNELS, NIFTI_SUFFIX, Case, Dataset, existing_dir, no_cases, register, walk_files

BRATS2021_LABELS = {0: "background", 1: "necrotic tumour core", 2: "peritumoral oedema", 4: "enhancing tumour"}
BRATS2023_LABELS = {0: "background", 1: "non-enhancing tumour core", 2: "surrounding oedema", 3: "enhancing tumour"}

BRATS2021_REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
BRATS2023_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}

LAYOUT_2021 = (
    'brats2021:DIR expects DIR/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz (one folder '
    'per case, or the files directly in DIR; seg optional)'
)
LAYOUT_2023 = (
    'brats2023:DIR expects DIR/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz (one '
    'folder per case, or the files directly in DIR; seg optional; other BraTS-XXX- cohorts too)'
)


# ---- BraTS 2021 / 2023 ---------------------------------------------------------------------------------------------
def _read_brats(
    kind: str,
    path: str,
    pattern: re.Pattern[str],
    modality_to_channel: dict[str, str],
    patient_of: Callable[[str], str],
    label_names: dict[int, str],
    regions: dict[str, tuple[int, ...]],
) -> Dataset:
    root = existing_dir(kind, path)
    found: dict[str, dict[str, Path]] = {}
    for f in walk_files(root):
        m = pattern.match(f.name)
        if m:
            files = found.setdefault(m.group("case"), {})
            mod = m.group("mod").lower()
            if mod in files and files[mod] != f:
                raise InputError(f"{kind}:{root}: case {m.group('case')} has two {mod} files: {files[mod]} and {f}")
            files[mod] = f
    if not found:
        raise no_cases(kind, root)
    cases: list[Case] = []
    skipped: list[str] = []
    wanted = list(modality_to_channel)
    for case_id in sorted(found):
        files = found[case_id]
        missing = [m for m in wanted if m not in files]
        if missing:
            skipped.append(f"{case_id} (no {', '.join(missing)})")
            continue
        # model order t1, t1ce, t2, flair whatever the release calls them
        mods = sorted(wanted, key=lambda m: BRAIN_CHANNELS.index(modality_to_channel[m]))
        cases.append(
            Case(
                case_id=case_id,
                patient_id=patient_of(case_id),
                image_paths=[files[m] for m in mods],
                channel_names=[modality_to_channel[m] for m in mods],
                label_path=files.get("seg"),
                meta={"task": "segmentation"},
            )
        )
    notes = []
    if skipped:
        notes.append(
            f"Skipped {len(skipped)} case(s) with a missing modality: {', '.join(skipped[:5])}"
            f"{'...' if len(skipped) > 5 else ''}."
        )
    n_noseg = sum(1 for c in cases if c.label_path is None)
    if n_noseg:
        notes.append(f"{n_noseg} case(s) have no seg file (no reference).")
    if not cases:
        raise no_cases(kind, root, f" with all of {', '.join(wanted)} ({'; '.join(skipped[:3])})")
    return Dataset(
        kind=kind,
        root=root,
        cases=cases,
        task="segmentation",
        channel_names=list(BRAIN_CHANNELS),
        label_names=dict(label_names),
        regions=dict(regions),
        n_listed=len(found),
        notes=notes,
    )


_BRATS2021_RE = re.compile(rf"^(?P<case>BraTS2021_\d+)_(?P<mod>t1|t1ce|t2|flair|seg){NIFTI_SUFFIX}$", re.IGNORECASE)
_BRATS2023_RE = re.compile(
    rf"^(?P<case>(?P<patient>BraTS-[A-Za-z]+-\d+)-\d+)-(?P<mod>t1n|t1c|t2w|t2f|seg){NIFTI_SUFFIX}$", re.IGNORECASE
)


def _read_brats2021(kind: str, path: str) -> Dataset:
    return _read_brats(
        kind,
        path,
        _BRATS2021_RE,
        {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"},
        lambda case_id: case_id,
        BRATS2021_LABELS,
        BRATS2021_REGIONS,
    )


def _read_brats2023(kind: str, path: str) -> Dataset:
    return _read_brats(
        kind,
        path,
        _BRATS2023_RE,
        {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"},
        lambda case_id: case_id.rsplit("-", 1)[0],
        BRATS2023_LABELS,
        BRATS2023_REGIONS,
    )


register("brats2021", LAYOUT_2021, _read_brats2021)
register("brats2023", LAYOUT_2023, _read_brats2023)
