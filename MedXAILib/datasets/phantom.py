"""Synthetic cases with known truth (``phantom:N``, ``phantom-brain:N``, ``phantom-chest:N``)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .base import BRAIN_CHANNELS, LAYOUTS, PHANTOM_SEED_BASE, Case, Dataset, register
from .brats import BRATS2023_LABELS, BRATS2023_REGIONS

#: The most phantom cases one dataset declares. Each case is generated on load (about a second and 10 MB of
#: arrays for a brain phantom); a cohort larger than this is a typo, and its listing alone would exhaust memory.
MAX_PHANTOM_CASES = 100_000
LAYOUT = (
    f'phantom:N (or phantom-brain:N, phantom-chest:N) generates N synthetic cases, N a positive integer up to '
    f'{MAX_PHANTOM_CASES}; phantom:N means brain phantoms'
)


# ---- phantoms ------------------------------------------------------------------------------------------------------
def _brain_phantom(case: Case) -> tuple[Volume, Volume]:
    from .. import phantoms

    ph = phantoms.make_brain_phantom(case.meta["seed"])
    return ph.image, ph.label


def _chest_phantom(case: Case) -> tuple[Volume, dict[str, int]]:
    from .. import phantoms

    ph = phantoms.make_chest_phantom(case.meta["seed"])
    names = list(phantoms.CHEST_FINDINGS)
    labels = {n: int(v) for n, v in zip(names, np.asarray(ph.labels).ravel())}
    # the truth is only known once generated: record it on the case
    case.labels = dict(labels)
    case.boxes = {k: tuple(float(x) for x in b) for k, b in dict(ph.boxes).items()}  # type: ignore[misc]
    return ph.image, labels


def _read_phantom(kind: str, arg: str) -> Dataset:
    text = str(arg).strip()
    digits = text.isascii() and text.isdigit()
    n = (int(text) if len(text) <= 18 else MAX_PHANTOM_CASES + 1) if digits else 0  # no 5000-digit int()
    if n < 1:
        raise InputError(f"{kind}:{arg}: the number of phantom cases must be a positive integer. {LAYOUTS[kind]}")
    if n > MAX_PHANTOM_CASES:
        raise InputError(f"{kind}:{arg}: at most {MAX_PHANTOM_CASES} phantom cases (each is generated on load); "
                         "give a smaller N")
    chest = kind == "phantom-chest"
    width = max(3, len(str(n - 1)))
    cases = []
    for i in range(n):
        case_id = f"{kind}-{i:0{width}d}"
        cases.append(
            Case(
                case_id=case_id,
                patient_id=case_id,
                channel_names=["xray"] if chest else list(BRAIN_CHANNELS),
                meta={"seed": PHANTOM_SEED_BASE + i, "task": "classification" if chest else "segmentation"},
                generator=_chest_phantom if chest else _brain_phantom,  # type: ignore[arg-type]
            )
        )
    label_names: dict[int, str] = {}
    regions: dict[str, tuple[int, ...]] = {}
    findings: list[str] = []
    if chest:
        try:
            from .. import phantoms

            findings = list(phantoms.CHEST_FINDINGS)
        except ImportError:
            findings = []
    else:
        label_names = dict(BRATS2023_LABELS)
        regions = dict(BRATS2023_REGIONS)
        try:
            from .. import phantoms

            names = getattr(phantoms, "BRAIN_LABELS", None)
            if names:
                label_names = dict(enumerate(str(n) for n in names))
        except ImportError:
            pass
    note = (
        f"Synthetic cases generated on load with seeds {PHANTOM_SEED_BASE}..{PHANTOM_SEED_BASE + n - 1} "
        f"(demo models are trained on seeds below {PHANTOM_SEED_BASE}); each case is its own patient."
    )
    return Dataset(
        kind=kind,
        root=None,
        cases=cases,
        task="classification" if chest else "segmentation",
        channel_names=["xray"] if chest else list(BRAIN_CHANNELS),
        label_names=label_names,
        regions=regions,
        findings=findings,
        notes=[note],
    )


for _kind in ("phantom", "phantom-brain", "phantom-chest"):
    register(_kind, LAYOUT, _read_phantom)
