"""The reader's loop in Slicer, without widgets: open a study as a reader, show cases, pause, submit.

:class:`ReadingLogic` owns one :class:`MedXAILib.study.session.ReaderSession` (which validates, times and durably
writes every read) and the MRML nodes of the case on screen. The panel calls, in order: :meth:`~ReadingLogic.open`
(the study's files are checked against their hashes; the reader's earlier reads are read back, so the session
resumes at the first unread case), :meth:`~ReadingLogic.show_next` (the previous case's nodes go, the next case's
come, the clock starts), :meth:`~ReadingLogic.pause` / :meth:`~ReadingLogic.resume`, and
:meth:`~ReadingLogic.submit` with the answer form's values and the location point. What the panel may display
about a case is :meth:`~ReadingLogic.case_info`: the reading id, progress and, in arms that show the AI, its
probability and decision. Never the truth, the case's name or another arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import slicer

from . import ensure_core_importable
from .scene import ReadingNodes, clear_location, load_reading, location_node, location_ras, remove_reading_nodes

ensure_core_importable()


class ReadingLogic:
    """One reader's session on one study, shown in ``scene`` (see the module docstring)."""

    def __init__(self, scene: slicer.vtkMRMLScene, clock: Callable[[], float] | None = None) -> None:
        self.scene = scene
        self.clock = clock
        self.session = None
        self.reading = None
        self.nodes: ReadingNodes | None = None

    @staticmethod
    def readers(folder: str) -> list[str]:
        """The protocol's readers (read without checking hashes: this only fills the reader list)."""
        from MedXAILib.study.protocol import load_study

        return load_study(folder, verify=False).readers

    def open(self, folder: str, reader: str) -> dict[str, Any]:
        """Open the study as ``reader`` (files checked, earlier reads resumed); return the progress."""
        import time

        from MedXAILib.study.protocol import load_study
        from MedXAILib.study.session import ReaderSession

        self.close()
        study = load_study(Path(folder))
        self.session = ReaderSession(study, reader, clock=self.clock or time.monotonic, client="slicer")
        return self.session.progress()

    def close(self) -> None:
        remove_reading_nodes(self.scene)
        clear_location(self._location_if_any())
        self.nodes, self.reading = None, None
        if self.session is not None:
            self.session.close()
            self.session = None

    def _location_if_any(self) -> Any:
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")):
            node = self.scene.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
            if node.GetAttribute("MedXAIReaderStudy.Role") == "location":
                return node
        return None

    def _require(self) -> Any:
        if self.session is None:
            from MedXAILib.errors import InputError

            raise InputError("open a study as a reader first")
        return self.session

    def show_next(self) -> ReadingNodes | None:
        """Replace the case on screen by the reader's next unread case and start its clock (None when done)."""
        session = self._require()
        remove_reading_nodes(self.scene)
        clear_location(self._location_if_any())
        self.reading = session.current()
        self.nodes = None
        if self.reading is None:
            return None
        self.nodes = load_reading(self.scene, self.reading)
        session.show()
        return self.nodes

    def location_node(self) -> Any:
        return location_node(self.scene)

    def case_info(self) -> dict[str, Any]:
        """What the panel may show about the case on screen: id, progress, arm's AI output, which maps."""
        session = self._require()
        progress = session.progress()
        if self.reading is None:
            return {"finished": progress["finished"], "progress": progress}
        r = self.reading
        info: dict[str, Any] = {"finished": False, "reading_id": r.reading_id, "session": r.session,
                                "n_sessions": r.n_sessions, "position": r.position, "n_in_session": r.n_in_session,
                                "shows_ai": r.shows_ai, "maps": sorted(r.maps),
                                "counterfactual": bool(r.counterfactual), "progress": progress}
        if r.ai is not None:
            info["ai"] = {"finding": r.ai["finding"], "probability": r.ai["probability"], "decision": r.ai["decision"]}
        return info

    def pause(self) -> None:
        self._require().pause()

    def resume(self) -> None:
        self._require().resume()

    def elapsed(self) -> float:
        return self._require().elapsed()

    def submit(self, rating: float, decision: int, confidence: int, trust: int | None = None,
               comment: str = "") -> dict[str, Any]:
        """Write the answer to the case on screen (with the location point, if placed); return the record.

        The record is on disk (fsync'd) when this returns; the case's nodes stay until :meth:`show_next`.
        """
        from MedXAILib.study.session import Answer

        session = self._require()
        if self.reading is None:
            from MedXAILib.errors import InputError

            raise InputError("no case is on screen")
        answer = Answer(rating=float(rating), decision=int(decision), confidence=int(confidence),
                        trust=None if trust is None else int(trust),
                        click_ras=location_ras(self._location_if_any()), comment=comment)
        record = session.submit(answer)
        self.reading = None
        return record
