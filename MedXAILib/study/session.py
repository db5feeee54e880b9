"""The reading loop: one reader works through their reading list, one case at a time.

:class:`ReaderSession` is the only code that writes reads. The Slicer module *MedXAIReaderStudy*, ``study
simulate`` and any programmatic reader all drive it the same way::

    with ReaderSession(load_study(folder), "r1") as session:
        while (reading := session.current()) is not None:
            session.show()                  # the case is on screen: the clock starts
            ...                             # session.pause() / session.resume() stop and restart it
            session.submit(Answer(rating=80, decision=1, confidence=4, trust=3))

A :class:`Reading` carries only what the reading's arm allows (the images; the AI's output in ``ai`` arms; each
method's map) under the reading's random id: no truth, no other arm, no case name. :meth:`ReaderSession.submit`
validates the answer against the protocol's form, measures the reading time from :meth:`~ReaderSession.show` to
submit without pauses, and writes the record durably (:func:`.records.append_record`) before it returns; a reader who
comes back resumes at the first unread case. A submitted read cannot be changed unless the protocol allows changes
(:meth:`ReaderSession.amend`), and then only by a new record that supersedes it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .protocol import Study, parse_arm
from .records import RECORD_VERSION, ReaderLock, append_record, read_records

MAX_COMMENT = 2000


@dataclass
class Answer:
    """A reader's answer to one case.

    Attributes:
        rating: confidence that the finding is present on the protocol's scale (default 0–100).
        decision: 1 = finding present, 0 = absent.
        confidence: confidence in the decision, 1–5.
        trust: trust in the AI's output, 1–5; required in arms that show the AI, absent otherwise.
        click_ras: where the reader located the finding, RAS millimetres, or None.
        comment: free text.
    """

    rating: float
    decision: int
    confidence: int
    trust: int | None = None
    click_ras: tuple[float, float, float] | None = None
    comment: str = ""


@dataclass
class Reading:
    """One case as one reader sees it in one arm (see the module docstring). Paths are absolute."""

    reading_id: str
    arm: str
    session: int
    position: int
    n_in_session: int
    n_sessions: int
    images: list[Path]
    channel_names: list[str]
    ai: dict[str, Any] | None = None
    maps: dict[str, Path] = field(default_factory=dict)
    counterfactual: list[Path] = field(default_factory=list)
    shows_ai: bool = False


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def validate_answer(answer: Answer, form: dict[str, Any], shows_ai: bool) -> None:
    """Refuse an answer outside the protocol's form (one InputError naming the field)."""
    lo, hi = form["rating"]
    if not isinstance(answer.rating, (int, float)) or not math.isfinite(answer.rating) or not lo <= answer.rating <= hi:
        raise InputError(f"rating {answer.rating!r}: give a number from {lo} to {hi}")
    if answer.decision not in (0, 1):
        raise InputError(f"decision {answer.decision!r}: 1 (finding present) or 0 (absent)")
    clo, chi = form["confidence"]
    if not isinstance(answer.confidence, int) or not clo <= answer.confidence <= chi:
        raise InputError(f"confidence {answer.confidence!r}: a whole number from {clo} to {chi}")
    tlo, thi = form["trust"]
    if shows_ai:
        if not isinstance(answer.trust, int) or not tlo <= answer.trust <= thi:
            raise InputError(f"trust {answer.trust!r}: in an arm that shows the AI, rate your trust in it from "
                             f"{tlo} to {thi}")
    elif answer.trust is not None:
        raise InputError("trust: this arm does not show the AI, so there is no trust rating")
    if answer.click_ras is not None:
        point = tuple(answer.click_ras)
        if len(point) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in point):
            raise InputError(f"location {answer.click_ras!r}: three finite RAS coordinates in millimetres")
    if not isinstance(answer.comment, str) or len(answer.comment) > MAX_COMMENT:
        raise InputError(f"comment: text of at most {MAX_COMMENT} characters")


class ReaderSession:
    """A reader's pass through their reading list (see the module docstring).

    Args:
        study: a verified :class:`~.protocol.Study` (``load_study(folder)``).
        reader: one of the protocol's readers.
        clock: seconds, monotonic (injected by tests and simulations).
        client: who reads (``slicer``, ``simulate``, ``python``), recorded with each read.
    """

    def __init__(self, study: Study, reader: str, clock: Callable[[], float] = time.monotonic,
                 client: str = "python") -> None:
        if reader not in study.readers:
            raise InputError(f"unknown reader {reader!r}; the protocol's readers are {', '.join(study.readers)}")
        self.study, self.reader, self.clock, self.client = study, reader, clock, client
        self.lists: list[list[dict[str, str]]] = study.protocol["reading_lists"][reader]
        self.form = study.protocol["answer_form"]
        self._lock = ReaderLock(study.folder / "reads" / f"{reader}.lock")
        self._lock.acquire()
        try:
            self.records = self._load_records()
        except BaseException:
            self._lock.release()
            raise
        self._shown_at: float | None = None
        self._displayed_iso: str | None = None
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._pauses = 0

    # ---- state -------------------------------------------------------------------------------------------------
    def _load_records(self) -> dict[str, dict[str, Any]]:
        path = self.study.reads_path(self.reader)
        expected = {item["reading_id"]: (s + 1, i + 1) for s, items in enumerate(self.lists)
                    for i, item in enumerate(items)}
        latest: dict[str, dict[str, Any]] = {}
        for n, rec in enumerate(read_records(path).records, start=1):
            rid = rec.get("reading_id")
            if rec.get("study") != self.study.study_id or rec.get("reader") != self.reader or rid not in expected:
                raise InputError(f"{path} record {n}: it does not belong to reader {self.reader!r} of this study")
            if rid in latest and rec.get("revision", 0) <= latest[rid].get("revision", 0):
                raise InputError(f"{path} record {n}: reading {rid} was submitted twice")
            latest[rid] = rec
        return latest

    def _next(self) -> tuple[int, int] | None:
        for s, items in enumerate(self.lists):
            for i, item in enumerate(items):
                if item["reading_id"] not in self.records:
                    return s, i
        return None

    def progress(self) -> dict[str, Any]:
        """``session`` and ``case`` (1-based, of the next read), their totals, and the reads done overall."""
        total = sum(len(items) for items in self.lists)
        nxt = self._next()
        out = {"done": len(self.records), "total": total, "n_sessions": len(self.lists), "finished": nxt is None}
        if nxt is not None:
            out.update({"session": nxt[0] + 1, "case": nxt[1] + 1, "n_cases": len(self.lists[nxt[0]])})
        return out

    def current(self) -> Reading | None:
        """The next unread case of this reader (None when the list is done)."""
        nxt = self._next()
        if nxt is None:
            return None
        s, i = nxt
        item = self.lists[s][i]
        return self._reading(item, s, i)

    def _reading(self, item: dict[str, str], s: int, i: int) -> Reading:
        case = self.study.case(item["case"])
        arm = parse_arm(item["arm"])
        folder = self.study.folder
        material = case["material"]
        reading = Reading(item["reading_id"], item["arm"], s + 1, i + 1, len(self.lists[s]), len(self.lists),
                          [folder / p for p in material["image"]], list(case["channel_names"]), shows_ai=arm.ai)
        if arm.ai:
            reading.ai = json.loads((folder / material["ai"]).read_text())
        for method in arm.methods:
            if method == "counterfactual":
                reading.counterfactual = [folder / p for p in material["counterfactual"]]
            else:
                reading.maps[method] = folder / material["maps"][method]
        return reading

    # ---- the clock ---------------------------------------------------------------------------------------------
    def show(self) -> None:
        """The current case is on screen: start its clock (once; a second call changes nothing)."""
        if self._shown_at is None:
            self._shown_at = self.clock()
            self._displayed_iso = _utc_now()

    def pause(self) -> None:
        """Stop the clock (the case should be hidden while paused)."""
        if self._shown_at is not None and self._paused_at is None:
            self._paused_at = self.clock()
            self._pauses += 1

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_total += self.clock() - self._paused_at
            self._paused_at = None

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def elapsed(self) -> float:
        """Reading time of the current case so far, in seconds, pauses excluded."""
        if self._shown_at is None:
            return 0.0
        end = self._paused_at if self._paused_at is not None else self.clock()
        return max(end - self._shown_at - self._paused_total, 0.0)

    # ---- answers -----------------------------------------------------------------------------------------------
    def submit(self, answer: Answer) -> dict[str, Any]:
        """Validate, time and durably write the answer to the current case; return the record written."""
        nxt = self._next()
        if nxt is None:
            raise InputError("this reader has read every case of the study")
        if self._shown_at is None:
            raise InputError("the case was not shown (call show() when it is on screen)")
        if self.paused:
            raise InputError("reading is paused; resume before submitting")
        s, i = nxt
        item = self.lists[s][i]
        validate_answer(answer, self.form, parse_arm(item["arm"]).ai)
        record = self._record(item, s, i, answer, revision=0)
        append_record(self.study.reads_path(self.reader), record)
        self.records[item["reading_id"]] = record
        self._shown_at = self._displayed_iso = self._paused_at = None
        self._paused_total, self._pauses = 0.0, 0
        return record

    def amend(self, reading_id: str, answer: Answer) -> dict[str, Any]:
        """Change a submitted read (only when the protocol allows it): a new record that supersedes the old."""
        if not self.form.get("allow_changes", False):
            raise InputError("the protocol does not allow changing a submitted read")
        old = self.records.get(reading_id)
        if old is None:
            raise InputError(f"reading {reading_id} has not been submitted")
        s, i = old["session"] - 1, old["position"] - 1
        item = self.lists[s][i]
        validate_answer(answer, self.form, parse_arm(item["arm"]).ai)
        record = self._record(item, s, i, answer, revision=old.get("revision", 0) + 1)
        record.update({"seconds": old["seconds"], "displayed_at": old["displayed_at"]})
        append_record(self.study.reads_path(self.reader), record)
        self.records[reading_id] = record
        return record

    def _record(self, item: dict[str, str], s: int, i: int, answer: Answer, revision: int) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION, "study": self.study.study_id, "reader": self.reader, "session": s + 1,
            "position": i + 1, "reading_id": item["reading_id"], "arm": item["arm"], "rating": float(answer.rating),
            "decision": int(answer.decision), "confidence": int(answer.confidence),
            "trust": None if answer.trust is None else int(answer.trust),
            "click_ras": None if answer.click_ras is None else [float(v) for v in answer.click_ras],
            "comment": answer.comment, "seconds": round(self.elapsed(), 3), "pauses": self._pauses,
            "displayed_at": self._displayed_iso, "submitted_at": _utc_now(), "revision": revision,
            "client": self.client,
        }

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> ReaderSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
