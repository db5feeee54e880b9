"""A generic CSV manifest (``csv:FILE``): one row per case, image paths relative to the CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .base import LAYOUTS, Box, Case, Dataset, open_text, register

LAYOUT = (
    'csv:FILE expects a CSV with columns case_id, patient_id, and image (or image:t1, image:t2, ... one '
    'per channel in model order), optionally label (a segmentation file), finding columns of 0/1, and '
    "box:FINDING columns holding 'x y w h'; paths are relative to the CSV's folder"
)


# ---- generic CSV manifest ------------------------------------------------------------------------------------------
def _read_csv(kind: str, path: str) -> Dataset:
    f = Path(path).expanduser()
    if not f.is_file():
        raise InputError(f"{kind}:{path}: file not found. {LAYOUTS[kind]}")
    base = f.parent
    with open_text(f) as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        rows = list(reader)
    image_cols = [c for c in columns if c == "image" or c.startswith("image:")]
    for need in ("case_id", "patient_id"):
        if need not in columns:
            raise InputError(f"{f}: no {need!r} column (columns: {', '.join(columns)}). {LAYOUTS[kind]}")
    if not image_cols:
        raise InputError(f"{f}: no 'image' or 'image:NAME' column (columns: {', '.join(columns)}). {LAYOUTS[kind]}")
    if "image" in image_cols and len(image_cols) > 1:
        raise InputError(f"{f}: give either one 'image' column or 'image:NAME' columns, not both")
    channel_names = [c.split(":", 1)[1].strip() for c in image_cols if c != "image"]
    box_cols = [c for c in columns if c.startswith("box:")]
    reserved = {"case_id", "patient_id", "label", *image_cols, *box_cols}
    other = [c for c in columns if c and c not in reserved]
    # a finding column holds only 0/1 (blank allowed); anything else is kept as metadata
    findings = [c for c in other if rows and all((r.get(c) or "").strip() in ("0", "1", "") for r in rows)]
    meta_cols = [c for c in other if c not in findings]

    def resolve(value: str) -> Path:
        p = Path(value.strip()).expanduser()
        return p if p.is_absolute() else base / p

    cases: list[Case] = []
    missing: list[str] = []
    for n, row in enumerate(rows, start=2):
        case_id = (row.get("case_id") or "").strip()
        patient_id = (row.get("patient_id") or "").strip()
        if not case_id or not patient_id:
            raise InputError(f"{f}, line {n}: case_id and patient_id must not be empty")
        paths = []
        for c in image_cols:
            value = (row.get(c) or "").strip()
            if not value:
                raise InputError(f"{f}, line {n}: empty {c!r} for case {case_id}")
            paths.append(resolve(value))
        label_value = (row.get("label") or "").strip()
        label_path = resolve(label_value) if label_value else None
        for p in [*paths, *([label_path] if label_path else [])]:
            if not p.exists():
                missing.append(str(p))
        labels = {c: int((row.get(c) or "0").strip() or 0) for c in findings} if findings else None
        boxes: dict[str, Box] = {}
        for c in box_cols:
            value = (row.get(c) or "").strip()
            if value:
                nums = [v for v in re.split(r"[\s;]+", value) if v]
                try:
                    box = tuple(float(v) for v in nums)
                except ValueError:
                    box = ()
                if len(box) != 4:
                    raise InputError(f"{f}, line {n}: {c!r} must hold four numbers 'x y w h'; got {value!r}")
                boxes[c.split(":", 1)[1].strip()] = box  # type: ignore[assignment]
        meta: dict[str, Any] = {c: (row.get(c) or "").strip() for c in meta_cols}
        if label_path is not None:
            meta["task"] = "segmentation"
        elif labels is not None:
            meta["task"] = "classification"
        cases.append(
            Case(
                case_id=case_id,
                patient_id=patient_id,
                image_paths=paths,
                channel_names=channel_names,
                label_path=label_path,
                labels=labels,
                boxes=boxes,
                meta=meta,
            )
        )
    if missing:
        raise InputError(
            f"{f}: {len(missing)} file(s) named in the manifest do not exist, e.g. {', '.join(missing[:3])} "
            f"(paths are relative to {base})"
        )
    if not cases:
        raise InputError(f"{f}: the manifest has no rows. {LAYOUTS[kind]}")
    tasks = {c.task for c in cases}
    task = tasks.pop() if len(tasks) == 1 else None
    return Dataset(
        kind=kind, root=f, cases=cases, task=task, channel_names=channel_names, findings=findings, n_listed=len(rows)
    )


register("csv", LAYOUT, _read_csv)
