"""Progress reporting for long commands.

Three modes: ``bar`` draws a progress bar with the stage name on stderr (for a person), ``json`` prints one JSON
object per line on stdout — ``{"stage": "...", "progress": 0.42}`` — for a program such as the Slicer panel, and
``none`` is silent. Library functions accept any callable ``(fraction, stage) -> None``; :class:`Progress` is one.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, TextIO

ProgressCallback = Callable[[float, str], None]


def no_progress(fraction: float, stage: str) -> None:  # noqa: ARG001
    """A progress callback that does nothing."""


class Progress:
    """Report ``(fraction in [0, 1], stage)`` to a person or a program."""

    def __init__(self, mode: str = "bar", stream: TextIO | None = None) -> None:
        if mode not in ("bar", "json", "none"):
            raise ValueError(f"progress mode must be bar, json or none; got {mode!r}")
        self.mode = mode
        self.stream = stream
        self._start = time.perf_counter()
        self._last_len = 0

    def __call__(self, fraction: float, stage: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self.mode == "json":
            out = self.stream or sys.stdout
            out.write(json.dumps({"stage": stage, "progress": round(fraction, 4)}) + "\n")
            out.flush()
        elif self.mode == "bar":
            out = self.stream or sys.stderr
            if not out.isatty() and fraction < 1.0 and self._last_len:
                return
            width = 30
            filled = int(round(fraction * width))
            elapsed = time.perf_counter() - self._start
            eta = f" eta {elapsed * (1 - fraction) / fraction:5.0f}s" if 0.02 < fraction < 1.0 else ""
            line = f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% {stage}{eta}"
            pad = " " * max(0, self._last_len - len(line))
            end = "\n" if fraction >= 1.0 or not out.isatty() else ""
            out.write("\r" + line + pad + end)
            out.flush()
            self._last_len = len(line)

    def sub(self, start: float, stop: float) -> ProgressCallback:
        """A callback that maps its own 0..1 onto ``[start, stop]`` of this one."""

        def report(fraction: float, stage: str) -> None:
            self(start + (stop - start) * fraction, stage)

        return report


def scaled(callback: ProgressCallback, start: float, stop: float) -> ProgressCallback:
    """Map a sub-task's 0..1 progress onto ``[start, stop]`` of ``callback``."""

    def report(fraction: float, stage: str) -> None:
        callback(start + (stop - start) * fraction, stage)

    return report
