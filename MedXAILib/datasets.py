"""Dataset readers: the published on-disk layouts of public cohorts, listed as :class:`Case` records with patient IDs.

``open_dataset("KIND:PATH")`` lists a cohort without reading any image; :meth:`Case.load` reads one case through
:mod:`MedXAILib.io` (or generates it, for phantoms). Every case carries a ``patient_id`` so that cross-validation
folds can be cut per patient (:mod:`MedXAILib.splits`): several scans of one patient never end up on both sides
of a split.

Kinds (``KIND:PATH``):

- ``brats2021:DIR``: ``BraTS2021_xxxxx/BraTS2021_xxxxx_{t1,t1ce,t2,flair,seg}.nii.gz``; labels 1 necrotic core,
  2 oedema, 4 enhancing tumour.
- ``brats2023:DIR``: ``BraTS-GLI-xxxxx-yyy/BraTS-GLI-xxxxx-yyy-{t1n,t1c,t2w,t2f,seg}.nii.gz``; the patient is
  ``BraTS-GLI-xxxxx`` (``-yyy`` is the time point); labels 1 non-enhancing core, 2 oedema, 3 enhancing tumour.
- ``msd:DIR``: Medical Segmentation Decathlon Task01_BrainTumour (``dataset.json``, 4D ``imagesTr/``, ``labelsTr/``).
- ``chestxray14:DIR``: NIH ChestX-ray14 (``Data_Entry_2017*.csv[.gz]``, ``images/``, ``BBox_List_2017.csv[.gz]``,
  ``train_val_list.txt`` / ``test_list.txt``).
- ``deepmedic:DIR``: the BRATS 2015 example layout shipped with DeepMedic (FLAIR + T1c, ``OTMultiClass``).
- ``csv:FILE``: a generic manifest.
- ``phantom:N`` / ``phantom-brain:N`` / ``phantom-chest:N``: synthetic cases with known truth.

Brain images are always returned in the channel order ``t1, t1ce, t2, flair`` (the channels a dataset has, in that
order), whatever the file naming of the release.
"""

from __future__ import annotations

import csv
import gzip
import io as _io
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import InputError
from .volume import Volume

Box = tuple[float, float, float, float]
"""A box ``(x, y, w, h)`` in pixels of the image as stored on disk: x along columns (I), y along rows (J)."""

#: The canonical channel order of brain MRI inputs in MedXAI.
BRAIN_CHANNELS = ["t1", "t1ce", "t2", "flair"]

#: The 14 ChestX-ray14 findings, in the order of the NIH release and of CheXNet.
CHESTXRAY14_FINDINGS = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]

#: Seeds of phantom cases are ``PHANTOM_SEED_BASE + index``. The demo models are trained on phantoms with seeds
#: below 10 000, so a ``phantom:N`` cohort never contains a training image.
PHANTOM_SEED_BASE = 10_000

# ---- label conventions ------------------------------------------------------------------------------------------
BRATS2021_LABELS = {0: "background", 1: "necrotic tumour core", 2: "peritumoral oedema", 4: "enhancing tumour"}
BRATS2023_LABELS = {0: "background", 1: "non-enhancing tumour core", 2: "surrounding oedema", 3: "enhancing tumour"}
BRATS2015_LABELS = {0: "background", 1: "necrosis", 2: "oedema", 3: "non-enhancing tumour", 4: "enhancing tumour"}
MSD_BRAIN_LABELS = {0: "background", 1: "oedema", 2: "non-enhancing tumour", 3: "enhancing tumour"}

# Evaluation regions (whole tumour, tumour core, enhancing tumour) as the label values they are made of.
BRATS2021_REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
BRATS2023_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
BRATS2015_REGIONS = {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)}
MSD_BRAIN_REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}

LAYOUTS: dict[str, str] = {
    "brats2021": (
        "brats2021:DIR expects DIR/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz "
        "(one folder per case, or the files directly in DIR; seg optional)"
    ),
    "brats2023": (
        "brats2023:DIR expects DIR/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz "
        "(one folder per case, or the files directly in DIR; seg optional; other BraTS-XXX- cohorts too)"
    ),
    "msd": (
        "msd:DIR expects the Decathlon Task01_BrainTumour folder: DIR/dataset.json, DIR/imagesTr/BRATS_001.nii.gz "
        "(4D: FLAIR, T1w, t1gd, T2w), DIR/labelsTr/BRATS_001.nii.gz"
    ),
    "chestxray14": (
        "chestxray14:DIR expects DIR/Data_Entry_2017*.csv (or .csv.gz), the PNGs in DIR/images/ "
        "(or DIR/images_001/images/ ...), optionally DIR/BBox_List_2017.csv(.gz), DIR/train_val_list.txt, "
        "DIR/test_list.txt"
    ),
    "deepmedic": (
        "deepmedic:DIR expects DIR/[train|validation|test/]brats_2013_pat0001_1/"
        "{Flair,T1c}_subtrMeanDivStd.nii.gz and OTMultiClass.nii.gz"
    ),
    "csv": (
        "csv:FILE expects a CSV with columns case_id, patient_id, and image (or image:t1, image:t2, ... one per "
        "channel in model order), optionally label (a segmentation file), finding columns of 0/1, and "
        "box:FINDING columns holding 'x y w h'; paths are relative to the CSV's folder"
    ),
    "phantom": (
        "phantom:N (or phantom-brain:N, phantom-chest:N) generates N synthetic cases, N a positive integer; "
        "phantom:N means brain phantoms"
    ),
}
LAYOUTS["phantom-brain"] = LAYOUTS["phantom"]
LAYOUTS["phantom-chest"] = LAYOUTS["phantom"]

_NIFTI = r"\.nii(?:\.gz)?"


# ---- records ------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One case of a cohort: where its files are, whose they are, and what the truth is.

    Attributes:
        case_id: unique within the dataset (the file or folder name the release uses).
        patient_id: the person the case belongs to; several cases may share one (follow-ups, time points).
        image_paths: one file per channel in ``channel_names`` order, or one multi-channel (4D) file.
        channel_names: the names of the channels ``load()`` returns (e.g. ``t1, t1ce, t2, flair``), or empty.
        channel_indices: for a multi-channel file, which of its channels to take, in ``channel_names`` order
            (None: all of them, in file order).
        label_path: the reference segmentation (an integer label map), or None.
        labels: classification truth, finding → 0/1, or None.
        boxes: reference boxes, finding → ``(x, y, w, h)`` in pixels of the image as stored on disk.
        meta: anything else the release says about the case (subset, age, view, seed...).
    """

    case_id: str
    patient_id: str
    image_paths: list[Path] = field(default_factory=list)
    channel_names: list[str] = field(default_factory=list)
    channel_indices: list[int] | None = None
    label_path: Path | None = None
    labels: dict[str, int] | None = None
    boxes: dict[str, Box] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    generator: Callable[[Case], tuple[Volume, Volume | dict[str, int] | None]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def task(self) -> str | None:
        """``"segmentation"`` when a label map is known, ``"classification"`` when labels are, else None."""
        if self.label_path is not None or self.meta.get("task") == "segmentation":
            return "segmentation"
        if self.labels is not None or self.meta.get("task") == "classification":
            return "classification"
        return None

    def load_image(self) -> Volume:
        """Read the image (channels in ``channel_names`` order) as a float32 Volume."""
        if self.generator is not None:
            return self.generator(self)[0]
        from .io import read_volume

        vol = read_volume(self.image_paths)
        if self.channel_indices is not None:
            n = vol.n_channels
            bad = [i for i in self.channel_indices if not 0 <= i < n]
            if bad:
                raise InputError(
                    f"{self.image_paths[0]}: has {n} channels; channel(s) {bad} were expected "
                    f"({', '.join(self.channel_names)})"
                )
            vol = Volume(vol.array[self.channel_indices], vol.ijk_to_ras, [])
        if self.channel_names:
            if len(self.channel_names) != vol.n_channels:
                raise InputError(
                    f"case {self.case_id}: {vol.n_channels} channels read from {len(self.image_paths)} file(s), "
                    f"but {len(self.channel_names)} expected ({', '.join(self.channel_names)})"
                )
            vol = Volume(vol.array, vol.ijk_to_ras, self.channel_names)
        return vol

    def load(self) -> tuple[Volume, Volume | dict[str, int] | None]:
        """Read (or generate) the case.

        Returns:
            ``(image, reference)``: the image Volume ``(C, K, J, I)`` float32 with ``channel_names``; the reference
            is the label map Volume (int16, on the image's grid) for segmentation, the ``labels`` dict for
            classification, or None when the case has no truth.

        Raises:
            InputError: a file is missing or unreadable, or the label map is not on the image's grid.
        """
        if self.generator is not None:
            return self.generator(self)
        from .io import read_label_map

        image = self.load_image()
        if self.label_path is not None:
            return image, read_label_map(self.label_path, reference=image, what=f"reference of case {self.case_id}")
        if self.labels is not None:
            return image, dict(self.labels)
        return image, None

    def with_channels(self, names: Sequence[str]) -> Case:
        """The same case with its channels picked and reordered to ``names`` (e.g. a model's channel order).

        Raises:
            InputError: a requested channel is not in this case (the message lists what it has).
        """
        names = list(names)
        if self.generator is not None:
            raise InputError("a phantom case's channels cannot be reordered before it is generated; reorder the Volume")
        missing = [n for n in names if n not in self.channel_names]
        if missing:
            raise InputError(
                f"case {self.case_id} has no {', '.join(missing)} channel (it has {', '.join(self.channel_names)})"
            )
        pos = [self.channel_names.index(n) for n in names]
        if self.channel_indices is not None:
            return replace(self, channel_names=names, channel_indices=[self.channel_indices[p] for p in pos])
        if len(self.image_paths) == len(self.channel_names):
            return replace(self, channel_names=names, image_paths=[self.image_paths[p] for p in pos])
        return replace(self, channel_names=names, channel_indices=pos)

    def boxes_for(self, shape_ji: tuple[int, int]) -> dict[str, Box]:
        """The boxes rescaled to an image of ``(rows, columns)`` = ``shape_ji`` (e.g. after resizing a 1024² X-ray)."""
        ref = self.meta.get("box_image_size")  # (rows, columns) the boxes were drawn on
        if not ref:
            return dict(self.boxes)
        sy, sx = shape_ji[0] / ref[0], shape_ji[1] / ref[1]
        return {k: (x * sx, y * sy, w * sx, h * sy) for k, (x, y, w, h) in self.boxes.items()}


@dataclass
class Dataset:
    """A listed cohort: its cases (nothing read yet) and what the release says about them.

    Attributes:
        kind: the reader (``brats2021``, ``chestxray14``, ...).
        root: the folder or file it was read from (None for phantoms).
        cases: the cases, sorted by case id (phantoms: by index).
        task: ``"segmentation"`` or ``"classification"`` (or None for an image-only manifest).
        channel_names: the channels every case's image has, in order.
        label_names: label value → meaning, for segmentation.
        regions: evaluation regions as label values, e.g. ``{"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}``.
        findings: the classification findings, in order.
        official_split: the release's own split, subset name → case ids (only cases that were found).
        n_listed: how many cases the metadata lists (may exceed ``len(cases)`` when images are missing).
        notes: what was skipped and why, in sentences for the user.
    """

    kind: str
    root: Path | None
    cases: list[Case]
    task: str | None = None
    channel_names: list[str] = field(default_factory=list)
    label_names: dict[int, str] = field(default_factory=dict)
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    official_split: dict[str, list[str]] = field(default_factory=dict)
    n_listed: int | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for c in self.cases:
            if c.case_id in seen:
                raise InputError(f"{self.spec}: case id {c.case_id!r} appears twice; case ids must be unique")
            seen.add(c.case_id)
        if self.n_listed is None:
            self.n_listed = len(self.cases)

    @property
    def spec(self) -> str:
        """The ``KIND:PATH`` spec this dataset answers to."""
        if self.root is None:
            return f"{self.kind}:{len(self.cases)}"
        return f"{self.kind}:{self.root}"

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __getitem__(self, key: int | str) -> Case:
        if isinstance(key, str):
            for c in self.cases:
                if c.case_id == key:
                    return c
            raise InputError(f"{self.spec}: no case {key!r}")
        return self.cases[key]

    @property
    def patient_ids(self) -> list[str]:
        """The distinct patients, in order of first appearance."""
        return list(dict.fromkeys(c.patient_id for c in self.cases))

    def subset(self, case_ids: Sequence[str]) -> Dataset:
        """The same dataset restricted to ``case_ids`` (in the given order)."""
        by_id = {c.case_id: c for c in self.cases}
        missing = [i for i in case_ids if i not in by_id]
        if missing:
            raise InputError(f"{self.spec}: no case(s) {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}")
        return replace(self, cases=[by_id[i] for i in case_ids], n_listed=len(case_ids), notes=list(self.notes))

    def describe(self) -> str:
        """One paragraph for a person: kind, counts, channels, truth, and anything skipped."""
        parts = [f"{self.spec}: {len(self.cases)} case(s) from {len(self.patient_ids)} patient(s)"]
        if self.n_listed is not None and self.n_listed != len(self.cases):
            parts.append(f"{self.n_listed} listed, {len(self.cases)} found on disk")
        if self.channel_names:
            parts.append("channels " + ", ".join(self.channel_names))
        if self.task:
            parts.append(self.task)
        n_box = sum(1 for c in self.cases if c.boxes)
        if n_box:
            parts.append(f"{n_box} with boxes")
        text = "; ".join(parts) + "."
        if self.notes:
            text += " " + " ".join(self.notes)
        return text


# ---- spec parsing ------------------------------------------------------------------------------------------------
def open_dataset(spec: str) -> Dataset:
    """List a cohort given as ``KIND:PATH`` (e.g. ``brats2021:/data/BraTS2021``, ``phantom:6``); reads no image.

    Raises:
        InputError: unknown kind, missing folder or file, or no case found (the message gives the expected layout).
    """
    text = str(spec).strip()
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in _READERS:
        raise InputError(
            f"dataset {text!r}: give it as KIND:PATH with KIND one of {', '.join(sorted(_READERS))}. Layouts:\n"
            + "\n".join(f"  {LAYOUTS[k]}" for k in sorted(_READERS))
        )
    rest = rest.strip()
    if not rest:
        raise InputError(f"dataset {text!r}: nothing after '{kind}:'. {LAYOUTS[kind]}")
    return _READERS[kind](kind, rest)


def _existing_dir(kind: str, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{kind}:{path}: folder not found. {LAYOUTS[kind]}")
    if not p.is_dir():
        raise InputError(f"{kind}:{path}: is a file, not a folder. {LAYOUTS[kind]}")
    return p


def _no_cases(kind: str, root: Path, extra: str = "") -> InputError:
    return InputError(f"{kind}:{root}: no case found{extra}. {LAYOUTS[kind]}")


def _walk_files(root: Path, max_depth: int = 3) -> Iterator[Path]:
    """Files under ``root`` up to ``max_depth`` folders down, sorted, hidden files (``._x``, ``.x``) left out."""
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if len(here.parts) - root_depth >= max_depth:
            dirnames[:] = []
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


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
    root = _existing_dir(kind, path)
    found: dict[str, dict[str, Path]] = {}
    for f in _walk_files(root):
        m = pattern.match(f.name)
        if m:
            files = found.setdefault(m.group("case"), {})
            mod = m.group("mod").lower()
            if mod in files and files[mod] != f:
                raise InputError(f"{kind}:{root}: case {m.group('case')} has two {mod} files: {files[mod]} and {f}")
            files[mod] = f
    if not found:
        raise _no_cases(kind, root)
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
        raise _no_cases(kind, root, f" with all of {', '.join(wanted)} ({'; '.join(skipped[:3])})")
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


_BRATS2021_RE = re.compile(rf"^(?P<case>BraTS2021_\d+)_(?P<mod>t1|t1ce|t2|flair|seg){_NIFTI}$", re.IGNORECASE)
_BRATS2023_RE = re.compile(
    rf"^(?P<case>(?P<patient>BraTS-[A-Za-z]+-\d+)-\d+)-(?P<mod>t1n|t1c|t2w|t2f|seg){_NIFTI}$", re.IGNORECASE
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


# ---- Medical Segmentation Decathlon, Task01_BrainTumour --------------------------------------------------------------
_MODALITY_ALIASES = {
    "t1": "t1", "t1w": "t1", "t1n": "t1",
    "t1gd": "t1ce", "t1ce": "t1ce", "t1c": "t1ce", "t1-gd": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2f": "flair", "t2-flair": "flair",
}  # fmt: skip


def _read_msd(kind: str, path: str) -> Dataset:
    root = _existing_dir(kind, path)
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
        raise _no_cases(kind, root, f" ({len(training)} listed in dataset.json, none on disk)")
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


# ---- NIH ChestX-ray14 ------------------------------------------------------------------------------------------------
def _open_text(path: Path) -> _io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")  # type: ignore[return-value]
    return open(path, newline="", encoding="utf-8-sig")


def _find_meta(root: Path, stem: str) -> list[Path]:
    out = []
    for p in sorted(root.iterdir()):
        low = p.name.lower()
        if low.startswith(stem.lower()) and (low.endswith(".csv") or low.endswith(".csv.gz")) and p.is_file():
            out.append(p)
    return out


def _index_images(root: Path) -> dict[str, Path]:
    """File name → path of every image in ``images/``, ``images_*/``, ``images_*/images/`` or ``root`` itself."""
    folders = [root, root / "images"]
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower().startswith("images_"):
            folders += [p, p / "images"]
    index: dict[str, Path] = {}
    for d in folders:
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for e in it:
                if e.name.lower().endswith(".png") and not e.name.startswith(".") and e.is_file():
                    index.setdefault(e.name, Path(e.path))
    return index


_BOX_FINDING_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017 spells one finding differently


def _read_chestxray14(kind: str, path: str) -> Dataset:
    root = _existing_dir(kind, path)
    entries = _find_meta(root, "Data_Entry_2017")
    if not entries:
        raise InputError(f"{kind}:{root}: no Data_Entry_2017*.csv. {LAYOUTS[kind]}")
    entry_file = entries[-1]  # Data_Entry_2017_v2020 sorts after Data_Entry_2017
    notes: list[str] = []
    if len(entries) > 1:
        notes.append(f"Several Data_Entry files; used {entry_file.name}.")
    images = _index_images(root)
    rows: list[dict[str, str]] = []  # only the rows whose image is on disk
    n_listed = 0
    with _open_text(entry_file) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        need = {"Image Index", "Finding Labels", "Patient ID"}
        if not need <= set(header):
            raise InputError(f"{entry_file}: expected the columns {', '.join(sorted(need))}; found {', '.join(header)}")
        i_name = header.index("Image Index")
        for row in reader:
            if len(row) <= i_name or not row[i_name].strip():
                continue
            n_listed += 1
            if row[i_name].strip() in images:
                rows.append(dict(zip(header, row)))
    boxes: dict[str, dict[str, Box]] = {}
    box_files = _find_meta(root, "BBox_List_2017")
    if box_files:
        with _open_text(box_files[-1]) as fh:
            r = csv.reader(fh)
            header = next(r, [])
            if not header or header[0].strip() != "Image Index":
                raise InputError(f"{box_files[-1]}: expected a header starting with 'Image Index'; got {header[:3]}")
            # header reads "Image Index,Finding Label,Bbox [x,y,w,h],,," : the four numbers are columns 2-5
            for row in r:
                if len(row) < 6 or not row[0].strip():
                    continue
                finding = _BOX_FINDING_ALIASES.get(row[1].strip(), row[1].strip())
                try:
                    box = tuple(float(v) for v in row[2:6])
                except ValueError:
                    raise InputError(f"{box_files[-1]}: non-numeric box in row {row}") from None
                boxes.setdefault(row[0].strip(), {})[finding] = box  # type: ignore[assignment]
    cases: list[Case] = []
    unknown: set[str] = set()
    for row in rows:
        name = row["Image Index"].strip()
        img = images.get(name)
        if img is None:
            continue
        found = [f.strip() for f in row["Finding Labels"].split("|") if f.strip() and f.strip() != "No Finding"]
        unknown.update(f for f in found if f not in CHESTXRAY14_FINDINGS)
        pid = row["Patient ID"].strip()
        pid = str(int(pid)) if pid.isdigit() else pid
        meta: dict[str, Any] = {"task": "classification", "box_image_size": (1024, 1024)}
        for col, key in (
            ("Follow-up #", "follow_up"),
            ("Patient Age", "age"),
            ("Patient Gender", "sex"),
            ("View Position", "view"),
        ):
            if col in row and row[col] is not None:
                meta[key] = row[col].strip()
        cases.append(
            Case(
                case_id=name,
                patient_id=pid,
                image_paths=[img],
                channel_names=["xray"],
                labels={f: int(f in found) for f in CHESTXRAY14_FINDINGS},
                boxes=dict(boxes.get(name, {})),
                meta=meta,
            )
        )
    notes.insert(0, f"{entry_file.name} lists {n_listed} image(s); {len(cases)} found on disk.")
    if unknown:
        notes.append(f"Findings not among the 14 were ignored: {', '.join(sorted(unknown))}.")
    if not cases:
        raise _no_cases(
            kind, root, f": {entry_file.name} lists {n_listed} image(s) but none of them is under {root}/images"
        )
    official: dict[str, list[str]] = {}
    have = {c.case_id for c in cases}
    for subset, fname in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        f = root / fname
        if f.is_file():
            names = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
            official[subset] = [n for n in names if n in have]
    cases.sort(key=lambda c: c.case_id)
    return Dataset(
        kind=kind,
        root=root,
        cases=cases,
        task="classification",
        channel_names=["xray"],
        findings=list(CHESTXRAY14_FINDINGS),
        official_split=official,
        n_listed=n_listed,
        notes=notes,
    )


# ---- DeepMedic's BRATS 2015 example --------------------------------------------------------------------------------
_DEEPMEDIC_FILES = {"flair": "Flair_subtrMeanDivStd", "t1ce": "T1c_subtrMeanDivStd"}


def _read_deepmedic(kind: str, path: str) -> Dataset:
    root = _existing_dir(kind, path)
    folders = sorted({f.parent for f in _walk_files(root) if f.name.startswith(_DEEPMEDIC_FILES["flair"] + ".nii")})
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
        raise _no_cases(kind, root)
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


# ---- generic CSV manifest ------------------------------------------------------------------------------------------
def _read_csv(kind: str, path: str) -> Dataset:
    f = Path(path).expanduser()
    if not f.is_file():
        raise InputError(f"{kind}:{path}: file not found. {LAYOUTS[kind]}")
    base = f.parent
    with _open_text(f) as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        rows = list(reader)
    image_cols = [c for c in columns if c == "image" or c.startswith("image:")]
    for need in ("case_id", "patient_id"):
        if need not in columns:
            raise InputError(f"{f}: no {need!r} column (columns: {', '.join(columns)}). {LAYOUTS[kind]}")
    if not image_cols:
        raise InputError(f"{f}: no 'image' or 'image:NAME' column (columns: {', '.join(columns)}). {LAYOUTS[kind]}")
    if "image" in image_cols and len(image_cols) > 1:
        raise InputError(f"{f}: give either one 'image' column or 'image:NAME' columns, not both")
    channel_names = [c.split(":", 1)[1].strip() for c in image_cols if c != "image"]
    box_cols = [c for c in columns if c.startswith("box:")]
    reserved = {"case_id", "patient_id", "label", *image_cols, *box_cols}
    other = [c for c in columns if c and c not in reserved]
    # a finding column holds only 0/1 (blank allowed); anything else is kept as metadata
    findings = [c for c in other if rows and all((r.get(c) or "").strip() in ("0", "1", "") for r in rows)]
    meta_cols = [c for c in other if c not in findings]

    def resolve(value: str) -> Path:
        p = Path(value.strip()).expanduser()
        return p if p.is_absolute() else base / p

    cases: list[Case] = []
    missing: list[str] = []
    for n, row in enumerate(rows, start=2):
        case_id = (row.get("case_id") or "").strip()
        patient_id = (row.get("patient_id") or "").strip()
        if not case_id or not patient_id:
            raise InputError(f"{f}, line {n}: case_id and patient_id must not be empty")
        paths = []
        for c in image_cols:
            value = (row.get(c) or "").strip()
            if not value:
                raise InputError(f"{f}, line {n}: empty {c!r} for case {case_id}")
            paths.append(resolve(value))
        label_value = (row.get("label") or "").strip()
        label_path = resolve(label_value) if label_value else None
        for p in [*paths, *([label_path] if label_path else [])]:
            if not p.exists():
                missing.append(str(p))
        labels = {c: int((row.get(c) or "0").strip() or 0) for c in findings} if findings else None
        boxes: dict[str, Box] = {}
        for c in box_cols:
            value = (row.get(c) or "").strip()
            if value:
                nums = [v for v in re.split(r"[\s;]+", value) if v]
                try:
                    box = tuple(float(v) for v in nums)
                except ValueError:
                    box = ()
                if len(box) != 4:
                    raise InputError(f"{f}, line {n}: {c!r} must hold four numbers 'x y w h'; got {value!r}")
                boxes[c.split(":", 1)[1].strip()] = box  # type: ignore[assignment]
        meta: dict[str, Any] = {c: (row.get(c) or "").strip() for c in meta_cols}
        if label_path is not None:
            meta["task"] = "segmentation"
        elif labels is not None:
            meta["task"] = "classification"
        cases.append(
            Case(
                case_id=case_id,
                patient_id=patient_id,
                image_paths=paths,
                channel_names=channel_names,
                label_path=label_path,
                labels=labels,
                boxes=boxes,
                meta=meta,
            )
        )
    if missing:
        raise InputError(
            f"{f}: {len(missing)} file(s) named in the manifest do not exist, e.g. {', '.join(missing[:3])} "
            f"(paths are relative to {base})"
        )
    if not cases:
        raise InputError(f"{f}: the manifest has no rows. {LAYOUTS[kind]}")
    tasks = {c.task for c in cases}
    task = tasks.pop() if len(tasks) == 1 else None
    return Dataset(
        kind=kind, root=f, cases=cases, task=task, channel_names=channel_names, findings=findings, n_listed=len(rows)
    )


# ---- phantoms ------------------------------------------------------------------------------------------------------
def _brain_phantom(case: Case) -> tuple[Volume, Volume]:
    from . import phantoms

    ph = phantoms.make_brain_phantom(case.meta["seed"])
    return ph.image, ph.label


def _chest_phantom(case: Case) -> tuple[Volume, dict[str, int]]:
    from . import phantoms

    ph = phantoms.make_chest_phantom(case.meta["seed"])
    names = list(phantoms.CHEST_FINDINGS)
    labels = {n: int(v) for n, v in zip(names, np.asarray(ph.labels).ravel())}
    # the truth is only known once generated: record it on the case
    case.labels = dict(labels)
    case.boxes = {k: tuple(float(x) for x in b) for k, b in dict(ph.boxes).items()}  # type: ignore[misc]
    return ph.image, labels


def _read_phantom(kind: str, arg: str) -> Dataset:
    try:
        n = int(arg)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{kind}:{arg}: the number of phantom cases must be a positive integer. {LAYOUTS[kind]}")
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
            from . import phantoms

            findings = list(phantoms.CHEST_FINDINGS)
        except ImportError:
            findings = []
    else:
        label_names = dict(BRATS2023_LABELS)
        regions = dict(BRATS2023_REGIONS)
        try:
            from . import phantoms

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


_READERS: dict[str, Callable[[str, str], Dataset]] = {
    "brats2021": _read_brats2021,
    "brats2023": _read_brats2023,
    "msd": _read_msd,
    "chestxray14": _read_chestxray14,
    "deepmedic": _read_deepmedic,
    "csv": _read_csv,
    "phantom": _read_phantom,
    "phantom-brain": _read_phantom,
    "phantom-chest": _read_phantom,
}

#: The dataset kinds ``open_dataset`` understands.
KINDS = tuple(_READERS)

__all__ = [
    "BRAIN_CHANNELS",
    "CHESTXRAY14_FINDINGS",
    "KINDS",
    "LAYOUTS",
    "PHANTOM_SEED_BASE",
    "Box",
    "Case",
    "Dataset",
    "open_dataset",
]
