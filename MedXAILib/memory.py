"""Memory bounds checked before allocating.

A decompression bomb (a 1.7 MB ``.nii.gz`` whose header says 1200³ voxels) or a parameter typo (``ig steps=1e12``)
must be refused with the estimate instead of dying in ``MemoryError`` or being killed by the kernel.
:func:`require` compares an estimate in bytes with what this process may use: the machine's available memory
(Linux ``MemAvailable``), or ``MEDXAI_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix) when set.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError, MedXAIError

LIMIT_ENV = "MEDXAI_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"512M"`` → 536870912 (bytes; K/M/G/T are powers of 1024; a trailing B/iB is ignored)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in _UNITS else ""
    number = t[: len(t) - len(unit)] if unit else t
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise InputError(f"{LIMIT_ENV}={text!r}: give a size such as 8G or 512M") from None
    if not value > 0:
        raise InputError(f"{LIMIT_ENV}={text!r}: the limit must be positive")
    return int(value)


def available_bytes() -> int:
    """Bytes this process may still allocate: ``MEDXAI_MEMORY_LIMIT`` if set, else the available physical memory."""
    env = os.environ.get(LIMIT_ENV)
    if env:
        return parse_size(env)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def human(nbytes: float) -> str:
    """``1.5e9`` → ``"1.4 GiB"``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"


def require(nbytes: float, what: str, fix: str, error: type[MedXAIError] = InputError) -> None:
    """Raise ``error`` when ``what`` would need more than :func:`available_bytes`.

    Args:
        nbytes: the estimate in bytes.
        what: what needs it, e.g. ``"reading scan.nii.gz (1200 x 1200 x 1200 int16)"``.
        fix: what the user can do about it.
    """
    limit = available_bytes()
    if nbytes > limit:
        source = f"{LIMIT_ENV}={os.environ[LIMIT_ENV]}" if os.environ.get(LIMIT_ENV) else "available memory"
        raise error(f"{what} needs about {human(nbytes)}, more than the {human(limit)} of {source}; {fix}")
