"""Measuring what a computation costs: wall time and peak memory.

Peak memory is the process's peak resident set size (Linux ``VmHWM``), reset at the start of the measurement through
``/proc/self/clear_refs`` where the kernel allows it, so the number is the peak reached during the measured block.
On CUDA the peak allocated device memory is reported as well. Where neither is available the value is ``None``.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch


def _read_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_bytes() -> int:
    """The process's resident set size now (Linux ``VmRSS``), in bytes; 0 where unknown."""
    kb = _read_status_kb("VmRSS")
    return kb * 1024 if kb is not None else 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process; True when it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (or since start), in bytes."""
    kb = _read_status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class Measurement:
    """Seconds elapsed and peak memory (bytes) of a measured block."""

    seconds: float = 0.0
    peak_rss_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    _start: float = field(default=0.0, repr=False)


class measure:  # noqa: N801 - used as a context manager, reads like a verb
    """``with measure() as m: ...`` then ``m.seconds``, ``m.peak_rss_bytes``, ``m.peak_cuda_bytes``."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.result = Measurement()

    def __enter__(self) -> Measurement:
        reset_peak_rss()
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.result._start = time.perf_counter()
        return self.result

    def __exit__(self, *exc: object) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result.peak_cuda_bytes = int(torch.cuda.max_memory_allocated(self.device))
        self.result.seconds = time.perf_counter() - self.result._start
        self.result.peak_rss_bytes = peak_rss_bytes()
