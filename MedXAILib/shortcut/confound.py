"""A dataset with an artifact confounded with the label: the same cases, drawn with or without the artifact.

:func:`confound` wraps any :class:`~MedXAILib.datasets.Dataset` (phantoms, ChestX-ray14, BraTS, a CSV manifest):
every case keeps its id and patient, and :meth:`Case.load` returns the original image with the artifact drawn as the
*mode* says, and the truth restricted to the finding:

- ``train`` (the confounded training data): classification — the artifact is drawn on a positive case with
  probability ``strength`` and on a negative one with ``1 − strength`` (the case's seeded draw decides, so the
  same cases carry it in every fold and run); segmentation — the blob is drawn inside the finding's region (the
  lesion) with probability ``strength`` and in the foreground away from it otherwise;
- ``clean``: no artifact (the clean model's data, and the clean test images);
- ``added``: the artifact on every case (classification; segmentation: inside the lesion);
- ``swapped``: the intervention of the reliance test — classification: the artifact on every negative and on no
  positive; segmentation: away from the lesion on every case.

An artifact's position and size depend only on ``(seed, case id)`` (:mod:`.artifacts`), so the masks of one case
agree between modes, folds and processes. :func:`draw_case` returns the image, the truth, the mask and the
placement, for training masks, interventions and scoring.

Original images are read once per process and kept (least recently used first out, :data:`CACHE_BYTES` in all),
because one shortcut run reads each case for two trainings, the interventions and the explanations.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .artifacts import STREAM_PLACE, STREAM_PLACE_OFF, ArtifactSpec, Placement, foreground, place, presence_draw, render

MODES = ("train", "clean", "added", "swapped")
TASKS = ("classification", "segmentation")
#: Bytes of original images kept in memory per process.
CACHE_BYTES = 768 * 2**20
_CACHE: OrderedDict[tuple[Any, ...], tuple[Volume, Any, dict[str, Any]]] = OrderedDict()


@dataclass(frozen=True)
class Finding:
    """What the label is: a classification finding, or the label values of a segmentation region.

    Attributes:
        name: the finding (classification) or the region / label name (segmentation), as the dataset spells it.
        task: ``classification`` or ``segmentation``.
        label_values: segmentation label values of the region; empty: every non-zero label (``foreground`` of a
            dataset that declares no label values), and for classification.
    """

    name: str
    task: str
    label_values: tuple[int, ...] = field(default_factory=tuple)


def resolve_finding(ds: Any, name: str | None, task: str) -> Finding:
    """The finding ``name`` of dataset ``ds`` (case-insensitive), or a clear error listing what it has.

    Segmentation: a label name, a region name (e.g. ``WT``) or ``foreground`` (every non-zero label; the default).
    Classification: one of the dataset's findings (required).
    """
    if task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    if task == "classification":
        findings = list(ds.findings)
        if not findings and ds.cases and ds.cases[0].labels:
            findings = list(ds.cases[0].labels)
        if not name:
            raise InputError(f"--finding is required for classification; {ds.spec} has {', '.join(findings)}")
        low = {f.lower(): f for f in findings}
        if name.lower() not in low:
            raise InputError(f"finding {name!r} is not in {ds.spec}; it has {', '.join(findings) or 'no findings'}")
        return Finding(low[name.lower()], task)
    labels = {str(v).lower(): (n, (int(k),)) for k, v in ds.label_names.items() for n in (str(v),) if int(k) != 0}
    regions = {str(k).lower(): (str(k), tuple(int(v) for v in vals)) for k, vals in (ds.regions or {}).items()}
    nonzero = tuple(sorted(int(k) for k in ds.label_names if int(k) != 0))
    if not name or name.lower() == "foreground":
        return Finding("foreground", task, nonzero)
    hit = regions.get(name.lower()) or labels.get(name.lower())
    if hit is None and name.strip().isdigit() and int(name) in nonzero:
        hit = (name.strip(), (int(name),))
    if hit is None:
        known = [str(v) for k, v in ds.label_names.items() if int(k) != 0] + list(ds.regions or {})
        raise InputError(f"finding {name!r} is not a label or region of {ds.spec}; it has "
                         f"{', '.join(known) or 'no named labels'} (or foreground)")
    return Finding(hit[0], task, hit[1])


# ---- the original images ---------------------------------------------------------------------------------------
def _key(case: Any) -> tuple[Any, ...]:
    return (case.case_id, tuple(str(p) for p in case.image_paths), str(case.label_path),
            repr(case.meta.get("seed")), tuple(case.channel_names))


def load_original(case: Any) -> tuple[Volume, Any, dict[str, Any]]:
    """``(image, truth, boxes)`` of the unmodified case, read once per process (see :data:`CACHE_BYTES`)."""
    key = _key(case)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    image, truth = case.load()
    item = (image, truth, dict(case.boxes))
    size = image.array.nbytes + (truth.array.nbytes if hasattr(truth, "array") else 0)
    if size <= CACHE_BYTES:
        _CACHE[key] = item
        total = sum(v[0].array.nbytes + (v[1].array.nbytes if hasattr(v[1], "array") else 0) for v in _CACHE.values())
        while total > CACHE_BYTES and len(_CACHE) > 1:
            _, old = _CACHE.popitem(last=False)
            total -= old[0].array.nbytes + (old[1].array.nbytes if hasattr(old[1], "array") else 0)
    return item


def clear_cache() -> None:
    """Forget the original images kept in memory."""
    _CACHE.clear()


# ---- one case ----------------------------------------------------------------------------------------------------
@dataclass
class DrawnCase:
    """One case as a mode draws it.

    Attributes:
        image: ``(C, K, J, I)`` with the artifact when ``present``.
        truth: classification ``{finding: 0/1}``; segmentation the label map Volume (unchanged).
        label: classification 0/1 of the finding; segmentation None.
        present: whether the artifact was drawn.
        mask: ``(K, J, I)`` bool, the artifact's voxels at this case's placement (also when not drawn: its footprint).
        placement: where it is; None without an artifact spec.
        boxes: the case's annotation boxes (pixels of the stored image).
    """

    image: Volume
    truth: Any
    label: int | None
    present: bool
    mask: np.ndarray | None
    placement: Placement | None
    boxes: dict[str, Any]


def finding_mask(labels: np.ndarray, finding: Finding) -> np.ndarray:
    """The voxels of an integer label array that belong to the finding (every non-zero one for ``foreground``)."""
    labels = np.asarray(labels)
    return np.isin(labels, finding.label_values) if finding.label_values else labels != 0


def finding_region(truth: Any, finding: Finding) -> np.ndarray:
    """Segmentation: the ``(K, J, I)`` voxels of the finding's labels in a label-map Volume."""
    return finding_mask(truth.array[0], finding)


def finding_label(truth: Any, finding: Finding, case_id: str) -> int:
    """Classification: the case's 0/1 for the finding (case-insensitive name)."""
    values = {str(k).lower(): v for k, v in dict(truth or {}).items()}
    if finding.name.lower() not in values:
        raise InputError(f"case {case_id} has no label for {finding.name}")
    return int(values[finding.name.lower()])


def draw_case(case: Any, spec: ArtifactSpec | None, finding: Finding, mode: str) -> DrawnCase:
    """Read the original case and draw it as ``mode`` says (see the module docstring)."""
    if mode not in MODES:
        raise InputError(f"unknown artifact mode {mode!r}; use one of {', '.join(MODES)}")
    image, truth, boxes = load_original(case)
    if finding.task == "classification":
        label = finding_label(truth, finding, case.case_id)
        truth_out: Any = {finding.name: label}
        if spec is None:
            return DrawnCase(image, truth_out, label, False, None, None, boxes)
        placement = place(spec, image, case.case_id)
        u = presence_draw(spec, case.case_id)
        present = {"train": u < (spec.strength if label else 1.0 - spec.strength), "clean": False,
                   "added": True, "swapped": label == 0}[mode]
    else:
        if truth is None or not hasattr(truth, "array"):
            raise InputError(f"case {case.case_id} has no reference label map")
        label, truth_out = None, truth
        if spec is None:
            return DrawnCase(image, truth_out, None, False, None, None, boxes)
        lesion = finding_region(truth, finding)
        at_lesion = {"train": presence_draw(spec, case.case_id) < spec.strength, "clean": True, "added": True,
                     "swapped": False}[mode]
        if at_lesion and lesion.any():
            allowed = lesion & foreground(image)
            placement = place(spec, image, case.case_id, allowed=allowed if allowed.any() else lesion,
                              stream=STREAM_PLACE)
        else:
            placement = place(spec, image, case.case_id, avoid=lesion, stream=STREAM_PLACE_OFF)
        present = mode != "clean"
    drawn, mask = render(spec, image, placement)
    return DrawnCase(drawn if present else image, truth_out, label, present, mask, placement, boxes)


class _Loader:
    """``Case.generator`` of a wrapped case (a picklable callable, so folds can train on other processes)."""

    def __init__(self, original: Any, spec: ArtifactSpec | None, finding: Finding, mode: str) -> None:
        self.original, self.spec, self.finding, self.mode = original, spec, finding, mode

    def __call__(self, case: Any) -> tuple[Volume, Any]:
        d = draw_case(self.original, self.spec, self.finding, self.mode)
        if self.finding.task == "classification":  # known once read (phantoms): recorded on the case
            case.labels = dict(d.truth)
        case.boxes = dict(d.boxes)
        return d.image, d.truth

    def drawn(self) -> DrawnCase:
        return draw_case(self.original, self.spec, self.finding, self.mode)


def confound(ds: Any, spec: ArtifactSpec | None, finding: Finding, mode: str = "train") -> Any:
    """The dataset ``ds`` with every case drawn as ``mode`` says and the truth restricted to ``finding``.

    ``spec`` None restricts the truth only (a single-finding dataset without artifact).
    """
    if spec is not None:
        spec.check()
    if mode not in MODES:
        raise InputError(f"unknown artifact mode {mode!r}; use one of {', '.join(MODES)}")
    cases = []
    for c in ds.cases:
        labels = c.labels
        if finding.task == "classification" and labels is not None:
            labels = {finding.name: finding_label(labels, finding, c.case_id)}
        cases.append(replace(c, labels=labels, generator=_Loader(c, spec, finding, mode),
                             meta={**c.meta, "task": finding.task, "artifact_mode": mode}))
    notes = list(ds.notes)
    if spec is not None:
        notes.append(f"A {spec.kind} artifact is planted ({mode} mode, strength {spec.strength:g}, seed {spec.seed}) "
                     f"for {finding.name}.")
    return replace(ds, cases=cases, findings=[finding.name] if finding.task == "classification" else ds.findings,
                   task=finding.task, n_listed=ds.n_listed, notes=notes)


def drawn(case: Any) -> DrawnCase:
    """The :class:`DrawnCase` of a case of a :func:`confound`-ed dataset."""
    loader = case.generator
    if not isinstance(loader, _Loader):
        raise InputError(f"case {case.case_id} is not part of a dataset with a planted artifact")
    return loader.drawn()


def for_training(ds: Any, finding_name: str | None, artifact: dict[str, Any] | None, task: str) -> Any:
    """What ``train --finding F [--artifact …]`` trains on: ``ds`` restricted to the finding, confounded if asked."""
    finding = resolve_finding(ds, finding_name, task)
    spec = ArtifactSpec.from_dict(artifact) if artifact else None
    return confound(ds, spec, finding, "train")


def check_annotations(ds: Any, finding: Finding, case_ids: Sequence[str] | None = None) -> None:
    """Refuse ``--explanation-mask annotation`` when a positive case has no annotation of the finding.

    Classification: every positive case needs a box of the finding; segmentation: every case its label map.
    Phantom truth is only known once generated, so such cases are read (and kept, see :data:`CACHE_BYTES`).
    """
    wanted = set(case_ids) if case_ids is not None else None
    missing: list[str] = []
    for c in ds.cases:
        if wanted is not None and c.case_id not in wanted:
            continue
        if finding.task == "segmentation":
            if c.label_path is None and c.generator is None:
                missing.append(c.case_id)
            continue
        original = c.generator.original if isinstance(c.generator, _Loader) else c
        if original.labels is None or original.generator is not None:
            _, truth, boxes = load_original(original)
        else:
            truth, boxes = original.labels, dict(original.boxes)
        if finding_label(truth, finding, c.case_id) and finding.name.lower() not in {k.lower() for k in boxes}:
            missing.append(c.case_id)
    if missing:
        raise InputError(
            f"--explanation-mask annotation needs an annotation of {finding.name} on every positive case; "
            f"{len(missing)} have none (e.g. {', '.join(missing[:3])}). Use --explanation-mask artifact, or a "
            "dataset with boxes or label maps"
        )


__all__ = ["CACHE_BYTES", "MODES", "DrawnCase", "Finding", "check_annotations", "clear_cache", "confound", "draw_case",
           "drawn", "finding_label", "finding_mask", "finding_region", "for_training", "load_original",
           "resolve_finding"]
