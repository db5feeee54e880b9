"""The records every dataset layout produces (:class:`Case`, :class:`Dataset`), the registry that
``open_dataset("KIND:PATH")`` reads, and the helpers the layouts share."""

from __future__ import annotations

import gzip
import io as _io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import InputError
from ..volume import Volume

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

Box = tuple[float, float, float, float]
"""A box ``(x, y, w, h)`` in pixels of the image as stored on disk: x along columns (I), y along rows (J)."""

NIFTI_SUFFIX = r"\.nii(?:\.gz)?"

#: KIND -> the layout it expects, in one sentence for error messages (filled by :func:`register`).
LAYOUTS: dict[str, str] = {}
_READERS: dict[str, Callable[[str, str], Dataset]] = {}


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
        from ..io import read_volume

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
        from ..io import read_label_map

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


# ---- the registry --------------------------------------------------------------------------------------------------
def register(kind: str, layout: str, reader: Callable[[str, str], Dataset]) -> None:
    """Make ``open_dataset("KIND:…")`` call ``reader(kind, rest)``; ``layout`` is shown when the folder is wrong."""
    LAYOUTS[kind] = layout
    _READERS[kind] = reader


def kinds() -> tuple[str, ...]:
    """The dataset kinds :func:`open_dataset` understands."""
    return tuple(_READERS)


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


def existing_dir(kind: str, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{kind}:{path}: folder not found. {LAYOUTS[kind]}")
    if not p.is_dir():
        raise InputError(f"{kind}:{path}: is a file, not a folder. {LAYOUTS[kind]}")
    return p


def no_cases(kind: str, root: Path, extra: str = "") -> InputError:
    return InputError(f"{kind}:{root}: no case found{extra}. {LAYOUTS[kind]}")


def walk_files(root: Path, max_depth: int = 3) -> Iterator[Path]:
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


def open_text(path: Path) -> _io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")  # type: ignore[return-value]
    return open(path, newline="", encoding="utf-8-sig")
