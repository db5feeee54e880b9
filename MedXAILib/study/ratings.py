"""The ratings table of a reader study: who read which case under which arm, and what they said.

The long format MRMCaov and iMRMC read: one row per read, the columns ``reader, modality, case, truth, rating``
(a header row; extra columns are ignored unless named below). Optional columns:

- ``decision`` — the reader's binary call (0 = finding absent, 1 = present), for sensitivity and specificity;
- ``seconds`` — reading time from display to submit, pauses excluded.

:func:`read_ratings` checks everything before any number is computed and raises one
:class:`~MedXAILib.errors.InputError` naming the first problem: a missing column, a non-numeric or non-finite rating,
a truth that is not 0/1 or that differs between rows of the same case, a duplicate read, a missing read in a fully
crossed design, a reader with only one truth class among the cases read.

Array layout: ``scores[t, r, c]`` for modality ``t``, reader ``r``, case ``c`` (float, NaN where not read);
``truth[c]`` 0/1. Modality, reader and case names keep their order of first appearance in the file.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError

REQUIRED_COLUMNS = ("reader", "modality", "case", "truth", "rating")
OPTIONAL_COLUMNS = ("decision", "seconds")
DESIGNS = ("fully-crossed", "split-plot")


@dataclass
class Ratings:
    """A validated ratings table.

    Attributes:
        modalities: arm (modality, treatment) names, in order of first appearance.
        readers: reader names, in order of first appearance.
        cases: case names, in order of first appearance.
        truth: ``(C,)`` int8, 1 where the finding is present.
        scores: ``(T, R, C)`` float64 ratings (higher = more confident the finding is present); NaN = not read.
        decisions: ``(T, R, C)`` float64 0/1 calls, NaN where not given (all NaN when the column is absent).
        seconds: ``(T, R, C)`` float64 reading times in seconds, NaN where not given.
        source: where the table came from (for messages and the report).
    """

    modalities: list[str]
    readers: list[str]
    cases: list[str]
    truth: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray
    seconds: np.ndarray
    source: str = "ratings"
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.scores.shape  # type: ignore[return-value]

    def read_mask(self) -> np.ndarray:
        """``(T, R, C)`` bool: which reads exist."""
        return ~np.isnan(self.scores)

    def fully_crossed(self) -> bool:
        return bool(self.read_mask().all())

    def subset(self, modalities: Sequence[str]) -> Ratings:
        """The same table restricted to some modalities (in the order given)."""
        idx = [self.modalities.index(m) for m in modalities]
        return Ratings(list(modalities), list(self.readers), list(self.cases), self.truth.copy(),
                       self.scores[idx].copy(), self.decisions[idx].copy(), self.seconds[idx].copy(), self.source)


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {what} {text!r} is not a finite number")
    return value


def _binary(text: str, what: str, where: str) -> int:
    value = _number(text, what, where)
    if value not in (0.0, 1.0):
        raise InputError(f"{where}: {what} must be 0 or 1; got {text!r}")
    return int(value)


def _text(value: object) -> str:
    """A cell as text: None (a missing cell) is empty; 0 stays "0"."""
    return "" if value is None else str(value).strip()


def ratings_from_rows(
    rows: Iterable[Mapping[str, object]],
    source: str = "ratings",
    design: str = "fully-crossed",
    modalities: Sequence[str] | None = None,
    readers: Sequence[str] | None = None,
    row_names: Iterable[str] | None = None,
) -> Ratings:
    """Build and check a :class:`Ratings` from row mappings with the columns of the module docstring.

    Args:
        rows: one mapping per read (values may be strings or numbers).
        source: a name for messages (the file path).
        design: ``fully-crossed`` (every reader reads every case under every modality) or ``split-plot`` (a
            missing read is allowed; each reader must still read each of its cases under every modality).
        modalities, readers: when given (a study's protocol), every modality / reader in the rows must be one of
            these and the order follows them; otherwise order of first appearance.
        row_names: how to name each row in messages (default: ``SOURCE line N``, N counting the header as line 1).

    Raises:
        InputError: see the module docstring.
    """
    if design not in DESIGNS:
        raise InputError(f"{source}: unknown design {design!r}; use one of {', '.join(DESIGNS)}")
    names = iter(row_names) if row_names is not None else None
    reads: dict[tuple[str, str, str], tuple[float, float, float]] = {}
    truth: dict[str, int] = {}
    seen_t: dict[str, None] = {m: None for m in modalities} if modalities is not None else {}
    seen_r: dict[str, None] = {r: None for r in readers} if readers is not None else {}
    seen_c: dict[str, None] = {}
    first_line: dict[tuple[str, str, str], str] = {}
    for n, row in enumerate(rows, start=2):
        where = next(names) if names is not None else f"{source} line {n}"
        reader, modality, case = (_text(row.get(k)) for k in ("reader", "modality", "case"))
        for key, value in (("reader", reader), ("modality", modality), ("case", case)):
            if not value:
                raise InputError(f"{where}: the {key} is empty")
        if modalities is not None and modality not in seen_t:
            raise InputError(f"{where}: unknown arm {modality!r}; the protocol's arms are {', '.join(modalities)}")
        if readers is not None and reader not in seen_r:
            raise InputError(f"{where}: unknown reader {reader!r}; the protocol's readers are {', '.join(readers)}")
        t = _binary(_text(row.get("truth")), "truth", where)
        score = _number(_text(row.get("rating")), "rating", where)
        dtext = _text(row.get("decision"))
        decision = float(_binary(dtext, "decision", where)) if dtext else math.nan
        stext = _text(row.get("seconds"))
        secs = _number(stext, "seconds", where) if stext else math.nan
        if stext and secs < 0:
            raise InputError(f"{where}: seconds {stext!r} is negative")
        if case in truth and truth[case] != t:
            raise InputError(f"{where}: case {case!r} has truth {t} here but {truth[case]} in an earlier row; "
                             "the truth belongs to the case and must be the same in every row")
        key = (modality, reader, case)
        if key in reads:
            raise InputError(f"{where}: duplicate read: reader {reader!r} already rated case {case!r} under "
                             f"{modality!r} ({first_line[key]}); keep one row per read")
        truth[case] = t
        reads[key] = (score, decision, secs)
        first_line[key] = where
        seen_t.setdefault(modality)
        seen_r.setdefault(reader)
        seen_c.setdefault(case)
    if not reads:
        raise InputError(f"{source}: no reads")
    mods, rdrs, cases = list(seen_t), list(seen_r), list(seen_c)
    scores = np.full((len(mods), len(rdrs), len(cases)), np.nan)
    decisions = np.full_like(scores, np.nan)
    seconds = np.full_like(scores, np.nan)
    ti, ri, ci = ({n: i for i, n in enumerate(x)} for x in (mods, rdrs, cases))
    for (m, r, c), (s, d, sec) in reads.items():
        scores[ti[m], ri[r], ci[c]] = s
        decisions[ti[m], ri[r], ci[c]] = d
        seconds[ti[m], ri[r], ci[c]] = sec
    out = Ratings(mods, rdrs, cases, np.array([truth[c] for c in cases], dtype=np.int8), scores, decisions,
                  seconds, source)
    check_design(out, design)
    return out


def check_design(ratings: Ratings, design: str) -> None:
    """Refuse a table that the named design cannot analyse (see :func:`ratings_from_rows`)."""
    mask = ratings.read_mask()
    if design == "fully-crossed" and not mask.all():
        t, r, c = (int(v[0]) for v in np.nonzero(~mask))
        missing = int((~mask).sum())
        raise InputError(
            f"{ratings.source}: a fully crossed design needs every reader to read every case under every arm; "
            f"{missing} read(s) are missing, e.g. reader {ratings.readers[r]!r}, case {ratings.cases[c]!r}, arm "
            f"{ratings.modalities[t]!r}"
        )
    per_case = mask.any(axis=0)  # (R, C): cases each reader read under some arm
    partial = per_case & ~mask.all(axis=0)
    if partial.any():
        r, c = (int(v[0]) for v in np.nonzero(partial))
        raise InputError(f"{ratings.source}: reader {ratings.readers[r]!r} read case {ratings.cases[c]!r} under some "
                         "arms but not all; each reader reads each of its cases under every arm")
    for r, name in enumerate(ratings.readers):
        classes = set(ratings.truth[per_case[r]].tolist())
        if classes != {0, 1}:
            only = "with the finding" if classes == {1} else "without the finding"
            raise InputError(f"{ratings.source}: reader {name!r} read only cases {only}; an ROC analysis needs "
                             "cases with and without the finding for every reader")


def read_ratings(path: str | os.PathLike, design: str = "fully-crossed") -> Ratings:
    """Read and check a long-format ratings CSV (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such ratings file")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InputError(f"{p}: missing column(s) {', '.join(missing)}; the header must name "
                                 f"{', '.join(REQUIRED_COLUMNS)} (got {', '.join(header) or 'nothing'})")
            reader.fieldnames = header
            return ratings_from_rows(list(reader), source=str(p), design=design)
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a UTF-8 text (CSV) file") from None
    except csv.Error as exc:
        raise InputError(f"{p}: not a readable CSV file ({exc})") from None


def write_ratings(ratings: Ratings, path: str | os.PathLike) -> None:
    """Write a table in the long format (reads that exist only), through the atomic writer."""
    from ..outputs import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS))
        for t, m in enumerate(ratings.modalities):
            for r, rd in enumerate(ratings.readers):
                for c, case in enumerate(ratings.cases):
                    s = ratings.scores[t, r, c]
                    if np.isnan(s):
                        continue
                    d, sec = ratings.decisions[t, r, c], ratings.seconds[t, r, c]
                    w.writerow([rd, m, case, int(ratings.truth[c]), repr(float(s)),
                                "" if np.isnan(d) else int(d), "" if np.isnan(sec) else f"{sec:.3f}"])
