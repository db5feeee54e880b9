"""Seeded, patient-level K-fold splits, written to and read back from JSON.

A fold is a held-out ``test`` set of case ids and the ``train`` set of all the others. Folds are cut by patient: all
the cases of one patient (follow-ups, time points, several X-rays) fall in the same fold, so a model is never tested
on a patient it has seen. Fold sizes are balanced by *case* count: patients are shuffled with the seed, then taken
largest group first and each is given to the fold that has the fewest cases so far (within its stratum when
stratifying). With the same cases and seed the folds are always the same.

The JSON file (``write_splits`` / ``read_splits``)::

    {"format": "medxai-splits", "version": 1, "k": 5, "seed": 0, "stratify": null,
     "patients": {case_id: patient_id, ...},
     "folds": [{"index": 0, "test": [case ids], "train": [case ids], "test_patients": [patient ids]}, ...]}
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from .errors import InputError

SPLITS_FORMAT = "medxai-splits"
SPLITS_VERSION = 1


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold.

    Attributes:
        index: 0-based fold number.
        k: the number of folds it belongs to (1 for a single official train/test split).
        train: case ids to train on (every case not in ``test``), sorted.
        test: held-out case ids, sorted.
        patients: case id → patient id for every case in ``train`` and ``test``.
        seed: the seed the folds were cut with (None for an official split).
        stratify: what the folds were stratified by, or None.
    """

    index: int
    k: int
    train: tuple[str, ...]
    test: tuple[str, ...]
    patients: Mapping[str, str] = field(default_factory=dict, repr=False)
    seed: int | None = None
    stratify: str | None = None

    @property
    def train_patients(self) -> list[str]:
        """The distinct patients of ``train``, sorted."""
        return sorted({self.patients[c] for c in self.train})

    @property
    def test_patients(self) -> list[str]:
        """The distinct patients of ``test``, sorted."""
        return sorted({self.patients[c] for c in self.test})

    def check(self) -> None:
        """Raise :class:`InputError` if a case or a patient is on both sides."""
        both = set(self.train) & set(self.test)
        if both:
            raise InputError(f"fold {self.index}: case(s) {', '.join(sorted(both)[:5])} are in both train and test")
        if self.patients:
            leak = set(self.train_patients) & set(self.test_patients)
            if leak:
                raise InputError(
                    f"fold {self.index}: patient(s) {', '.join(sorted(leak)[:5])} have cases in both train and test"
                )


def _case_table(cases: Iterable[Any]) -> list[tuple[str, str, Any]]:
    """``(case_id, patient_id, case)`` for every case; case ids must be unique."""
    out = []
    seen: set[str] = set()
    for c in cases:
        cid, pid = str(c.case_id), str(c.patient_id)
        if cid in seen:
            raise InputError(f"case id {cid!r} appears twice; case ids must be unique to be split")
        seen.add(cid)
        out.append((cid, pid, c))
    return out


def _stratum_fn(
    stratify: str | Callable[[Any], Hashable] | None,
) -> tuple[Callable[[Any], Hashable] | None, str | None]:
    if stratify is None:
        return None, None
    if callable(stratify):
        return stratify, getattr(stratify, "__name__", "custom")
    name = str(stratify)

    def by_label(case: Any) -> Hashable:
        labels = getattr(case, "labels", None)
        if labels is None:
            raise InputError(
                f"case {case.case_id} has no labels to stratify by {name!r} "
                "(phantom cases know their labels only after load())"
            )
        if name == "any":
            return int(any(int(v) for v in labels.values()))
        if name not in labels:
            raise InputError(f"case {case.case_id} has no label {name!r} (it has {', '.join(labels)})")
        return int(labels[name])

    return by_label, name


def patient_kfold(
    cases: Iterable[Any],
    k: int = 5,
    seed: int = 0,
    stratify: str | Callable[[Any], Hashable] | None = None,
) -> list[Fold]:
    """Cut ``cases`` into ``k`` patient-level folds.

    Args:
        cases: :class:`~MedXAILib.datasets.Case` records (or a Dataset), or anything with ``case_id`` and
            ``patient_id`` attributes.
        k: number of folds (2 or more, at most the number of patients).
        seed: shuffles the patients before assignment; the same seed gives the same folds.
        stratify: balance a class across folds as well as the case counts: a finding name (a patient is
            positive when any of its cases is), ``"any"`` (any finding positive), or a function case → stratum
            (a patient's stratum is the largest of its cases').

    Returns:
        ``k`` folds; each case is in exactly one ``test``, no patient is split, and fold sizes differ by at most the
        size of the largest patient group (per stratum when stratifying).

    Raises:
        InputError: ``k < 2``, ``k`` greater than the number of patients, or duplicate case ids.
    """
    table = _case_table(cases)
    if int(k) != k or k < 2:
        raise InputError(f"the number of folds must be an integer of 2 or more; got {k}")
    k = int(k)
    groups: dict[str, list[str]] = {}
    members: dict[str, list[Any]] = {}
    for cid, pid, c in table:
        groups.setdefault(pid, []).append(cid)
        members.setdefault(pid, []).append(c)
    if k > len(groups):
        raise InputError(
            f"cannot cut {k} patient-level folds from {len(groups)} patient(s) ({len(table)} case(s)); "
            f"use --folds {max(2, len(groups))} or fewer, or add cases"
        )
    fn, strat_name = _stratum_fn(stratify)
    stratum: dict[str, Hashable] = {}
    if fn is not None:
        for pid, cs in members.items():
            values = [fn(c) for c in cs]
            try:
                stratum[pid] = max(values)  # type: ignore[type-var]
            except TypeError:
                stratum[pid] = values[0]
    rng = random.Random(seed)
    order = sorted(groups)
    rng.shuffle(order)
    order.sort(key=lambda p: -len(groups[p]))  # stable: ties keep the seeded order
    totals = [0] * k
    per_stratum: dict[Hashable, list[int]] = {}
    fold_of: dict[str, int] = {}
    tie = list(range(k))
    rng.shuffle(tie)  # which fold wins a tie is seeded too
    for pid in order:
        counts = per_stratum.setdefault(stratum.get(pid), [0] * k)
        f = min(range(k), key=lambda i: (counts[i], totals[i], tie[i]))
        n = len(groups[pid])
        counts[f] += n
        totals[f] += n
        fold_of[pid] = f
    patients = {cid: pid for cid, pid, _ in table}
    folds = []
    for i in range(k):
        test = sorted(cid for cid, pid, _ in table if fold_of[pid] == i)
        train = sorted(cid for cid, pid, _ in table if fold_of[pid] != i)
        folds.append(Fold(i, k, tuple(train), tuple(test), patients, seed, strat_name))
    return folds


def official_split(dataset: Any) -> Fold:
    """The release's own train/test split as one fold (ChestX-ray14: ``train_val_list.txt`` / ``test_list.txt``).

    Only the cases the dataset found on disk are included. The split is checked for patient leakage.

    Raises:
        InputError: the dataset has no official test list.
    """
    official: dict[str, list[str]] = getattr(dataset, "official_split", {}) or {}
    if "test" not in official:
        where = getattr(dataset, "spec", "this dataset")
        hint = (
            " (put train_val_list.txt and test_list.txt next to Data_Entry_2017.csv)"
            if getattr(dataset, "kind", "") == "chestxray14"
            else ""
        )
        raise InputError(f"{where} has no official test list{hint}; use patient_kfold instead")
    table = _case_table(dataset)
    patients = {cid: pid for cid, pid, _ in table}
    test = set(official["test"])
    listed = {c for subset in official.values() for c in subset}
    train = sorted(c for c in listed if c not in test and c in patients)
    fold = Fold(0, 1, tuple(train), tuple(sorted(c for c in test if c in patients)), patients, None, None)
    fold.check()
    return fold


def write_splits(folds: Sequence[Fold], path: str | os.PathLike) -> Path:
    """Write ``folds`` as JSON, atomically (see the module docstring for the format)."""
    from .io import write_json

    if not folds:
        raise InputError("no folds to write")
    patients: dict[str, str] = {}
    for f in folds:
        f.check()
        patients.update(f.patients)
    data = {
        "format": SPLITS_FORMAT,
        "version": SPLITS_VERSION,
        "k": folds[0].k,
        "seed": folds[0].seed,
        "stratify": folds[0].stratify,
        "patients": dict(sorted(patients.items())),
        "folds": [
            {"index": f.index, "test": list(f.test), "train": list(f.train), "test_patients": f.test_patients}
            for f in folds
        ],
    }
    return write_json(data, path)


def read_splits(path: str | os.PathLike) -> list[Fold]:
    """Read folds written by :func:`write_splits`, checking they still hold no patient on both sides.

    Raises:
        InputError: missing or malformed file, or a fold that leaks a case or a patient.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: splits file not found")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: not a JSON splits file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SPLITS_FORMAT or "folds" not in data:
        raise InputError(f"{p}: not a MedXAI splits file (expected 'format': '{SPLITS_FORMAT}')")
    patients = {str(c): str(pid) for c, pid in (data.get("patients") or {}).items()}
    folds = []
    try:
        for entry in data["folds"]:
            fold = Fold(
                index=int(entry["index"]),
                k=int(data["k"]),
                train=tuple(str(c) for c in entry["train"]),
                test=tuple(str(c) for c in entry["test"]),
                patients=patients,
                seed=data.get("seed"),
                stratify=data.get("stratify"),
            )
            unknown = [c for c in (*fold.train, *fold.test) if c not in patients]
            if patients and unknown:
                raise InputError(f"{p}: fold {fold.index} names case(s) without a patient: {', '.join(unknown[:5])}")
            fold.check()
            folds.append(fold)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{p}: malformed splits file ({exc!r})") from None
    tests = [c for f in folds for c in f.test]
    if len(tests) != len(set(tests)):
        raise InputError(f"{p}: a case is held out in more than one fold")
    return folds


__all__ = ["Fold", "official_split", "patient_kfold", "read_splits", "write_splits"]
