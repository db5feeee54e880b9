"""The result store of a benchmark: one JSON file per unit of work, written atomically.

Layout under the output folder::

    DIR/benchmark.json            settings of the run (a rerun must match them)
    DIR/splits.json               the patient-level folds (MedXAILib.splits format)
    DIR/units/<case>__<method>.json   one finished unit: its row, curves and per-stage lists
    DIR/maps/<case>__<method>.npz     its heat map (float16, input grid), for figures and the sanity baseline
    DIR/controls/<case>__random-order.json   the case's random-order faithfulness control (a cache: it does not
                                  depend on the method, so the first unit of a case computes it and the others reuse
                                  it; two units racing both compute the same values)

Why files and not SQLite: a unit is committed by one ``os.replace`` of a fully written temporary file in the same
folder, which POSIX makes atomic — a reader sees either no file or the whole record, whatever moment a writer is
killed at. Writers never share a file (each unit has its own name), so any number of processes, on one machine or on
the nodes of a Dask or Ray cluster sharing a file system, can write at once with no lock, and where SQLite's
file locking is unreliable (network file systems) nothing changes. A unit's file is its commit marker: a rerun skips
the units whose file exists, so no row is lost or duplicated, and a unit computed twice (two workers racing)
writes the same content under the same name. The map is written before the record, so a record never points to a
missing map. Temporary files left by a killed writer start with ``.`` and are ignored (and removed when stale).
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..io import atomic_path, write_json

UNITS_DIR = "units"
MAPS_DIR = "maps"
CONTROLS_DIR = "controls"
STALE_SECONDS = 3600.0


def unit_key(case_id: str, method: str) -> str:
    """File-system-safe key of a (case, method) unit (reversible enough to read: ``case__method``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{case_id}__{method}")
    return safe.lstrip(".") or "unit"


class UnitStore:
    """One JSON record (and one map) per unit under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.units = self.root / UNITS_DIR
        self.maps = self.root / MAPS_DIR

    def prepare(self) -> None:
        self.units.mkdir(parents=True, exist_ok=True)
        self.maps.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for folder in (self.units, self.maps):
            for p in folder.glob(".*.part*"):
                try:
                    if now - p.stat().st_mtime > STALE_SECONDS:
                        p.unlink()
                except OSError:
                    pass

    def record_path(self, case_id: str, method: str) -> Path:
        return self.units / f"{unit_key(case_id, method)}.json"

    def map_path(self, case_id: str, method: str) -> Path:
        return self.maps / f"{unit_key(case_id, method)}.npz"

    def has(self, case_id: str, method: str) -> bool:
        """True when the unit is finished (its record exists and has status ``ok``)."""
        rec = self.read(case_id, method)
        return rec is not None and rec.get("status") == "ok"

    def read(self, case_id: str, method: str) -> dict[str, Any] | None:
        p = self.record_path(case_id, method)
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def encode_map(heatmap: np.ndarray) -> bytes:
        """The stored form of a ``(K, J, I)`` map: a compressed ``.npz`` holding it as float16 (about 1 s of CPU for a
        BraTS-size map, so a Dask worker does it, not the client)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, heatmap=np.asarray(heatmap, dtype=np.float16))
        return buf.getvalue()

    def write(self, record: dict[str, Any], heatmap: np.ndarray | None = None, map_npz: bytes | None = None) -> Path:
        """Commit one unit: its map first (if any; an array, or already encoded by :meth:`encode_map`), then its
        record."""
        case_id, method = str(record["case_id"]), str(record["method"])
        if heatmap is not None and map_npz is None:
            map_npz = self.encode_map(heatmap)
        if map_npz is not None:
            with atomic_path(self.map_path(case_id, method)) as tmp:
                tmp.write_bytes(map_npz)
        return write_json(record, self.record_path(case_id, method))

    def control_path(self, case_id: str) -> Path:
        return self.root / CONTROLS_DIR / f"{unit_key(case_id, 'random-order')}.json"

    def read_control(self, case_id: str) -> dict[str, Any] | None:
        """The case's cached random-order control curves (None when not computed yet)."""
        try:
            return json.loads(self.control_path(case_id).read_text())
        except (OSError, ValueError):
            return None

    def write_control(self, case_id: str, data: dict[str, Any]) -> Path:
        """Cache the random-order control of a case: it depends on the case, model and settings, not the method."""
        return write_json(data, self.control_path(case_id))

    def read_map(self, case_id: str, method: str) -> np.ndarray | None:
        """The stored ``(K, J, I)`` map as float32 (None when absent)."""
        try:
            with np.load(self.map_path(case_id, method)) as data:
                return data["heatmap"].astype(np.float32)
        except (OSError, KeyError, ValueError):
            return None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed record (temporary files are skipped), in file-name order."""
        if not self.units.is_dir():
            return
        for p in sorted(self.units.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                yield json.loads(p.read_text())
            except (OSError, ValueError):
                continue


__all__ = ["UnitStore", "unit_key"]
