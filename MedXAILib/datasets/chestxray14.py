"""NIH ChestX-ray14 (``chestxray14:DIR``): the official CSVs, boxes and split."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from .base import CHESTXRAY14_FINDINGS, LAYOUTS, Box, Case, Dataset, existing_dir, no_cases, open_text, register

LAYOUT = (
    'chestxray14:DIR expects DIR/Data_Entry_2017*.csv (or .csv.gz), the PNGs in DIR/images/ (or '
    'DIR/images_001/images/ ...), optionally DIR/BBox_List_2017.csv(.gz), DIR/train_val_list.txt, '
    'DIR/test_list.txt'
)


# ---- NIH ChestX-ray14 ------------------------------------------------------------------------------------------------
def _find_meta(root: Path, stem: str) -> list[Path]:
    out = []
    for p in sorted(root.iterdir()):
        low = p.name.lower()
        if low.startswith(stem.lower()) and (low.endswith(".csv") or low.endswith(".csv.gz")) and p.is_file():
            out.append(p)
    return out


def _index_images(root: Path) -> dict[str, Path]:
    """File name → path of every image in ``images/``, ``images_*/``, ``images_*/images/`` or ``root`` itself."""
    folders = [root, root / "images"]
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower().startswith("images_"):
            folders += [p, p / "images"]
    index: dict[str, Path] = {}
    for d in folders:
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for e in it:
                if e.name.lower().endswith(".png") and not e.name.startswith(".") and e.is_file():
                    index.setdefault(e.name, Path(e.path))
    return index


_BOX_FINDING_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017 spells one finding differently


def _read_chestxray14(kind: str, path: str) -> Dataset:
    root = existing_dir(kind, path)
    entries = _find_meta(root, "Data_Entry_2017")
    if not entries:
        raise InputError(f"{kind}:{root}: no Data_Entry_2017*.csv. {LAYOUTS[kind]}")
    entry_file = entries[-1]  # Data_Entry_2017_v2020 sorts after Data_Entry_2017
    notes: list[str] = []
    if len(entries) > 1:
        notes.append(f"Several Data_Entry files; used {entry_file.name}.")
    images = _index_images(root)
    rows: list[dict[str, str]] = []  # only the rows whose image is on disk
    n_listed = 0
    with open_text(entry_file) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        need = {"Image Index", "Finding Labels", "Patient ID"}
        if not need <= set(header):
            raise InputError(f"{entry_file}: expected the columns {', '.join(sorted(need))}; found {', '.join(header)}")
        i_name = header.index("Image Index")
        for row in reader:
            if len(row) <= i_name or not row[i_name].strip():
                continue
            n_listed += 1
            if row[i_name].strip() in images:
                rows.append(dict(zip(header, row)))
    boxes: dict[str, dict[str, Box]] = {}
    box_files = _find_meta(root, "BBox_List_2017")
    if box_files:
        with open_text(box_files[-1]) as fh:
            r = csv.reader(fh)
            header = next(r, [])
            if not header or header[0].strip() != "Image Index":
                raise InputError(f"{box_files[-1]}: expected a header starting with 'Image Index'; got {header[:3]}")
            # header reads "Image Index,Finding Label,Bbox [x,y,w,h],,," : the four numbers are columns 2-5
            for row in r:
                if len(row) < 6 or not row[0].strip():
                    continue
                finding = _BOX_FINDING_ALIASES.get(row[1].strip(), row[1].strip())
                try:
                    box = tuple(float(v) for v in row[2:6])
                except ValueError:
                    raise InputError(f"{box_files[-1]}: non-numeric box in row {row}") from None
                boxes.setdefault(row[0].strip(), {})[finding] = box  # type: ignore[assignment]
    cases: list[Case] = []
    unknown: set[str] = set()
    for row in rows:
        name = row["Image Index"].strip()
        img = images.get(name)
        if img is None:
            continue
        found = [f.strip() for f in row["Finding Labels"].split("|") if f.strip() and f.strip() != "No Finding"]
        unknown.update(f for f in found if f not in CHESTXRAY14_FINDINGS)
        pid = row["Patient ID"].strip()
        pid = str(int(pid)) if pid.isdigit() else pid
        meta: dict[str, Any] = {"task": "classification", "box_image_size": (1024, 1024)}
        for col, key in (
            ("Follow-up #", "follow_up"),
            ("Patient Age", "age"),
            ("Patient Gender", "sex"),
            ("View Position", "view"),
        ):
            if col in row and row[col] is not None:
                meta[key] = row[col].strip()
        cases.append(
            Case(
                case_id=name,
                patient_id=pid,
                image_paths=[img],
                channel_names=["xray"],
                labels={f: int(f in found) for f in CHESTXRAY14_FINDINGS},
                boxes=dict(boxes.get(name, {})),
                meta=meta,
            )
        )
    notes.insert(0, f"{entry_file.name} lists {n_listed} image(s); {len(cases)} found on disk.")
    if unknown:
        notes.append(f"Findings not among the 14 were ignored: {', '.join(sorted(unknown))}.")
    if not cases:
        raise no_cases(
            kind, root, f": {entry_file.name} lists {n_listed} image(s) but none of them is under {root}/images"
        )
    official: dict[str, list[str]] = {}
    have = {c.case_id for c in cases}
    for subset, fname in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        f = root / fname
        if f.is_file():
            names = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
            official[subset] = [n for n in names if n in have]
    cases.sort(key=lambda c: c.case_id)
    return Dataset(
        kind=kind,
        root=root,
        cases=cases,
        task="classification",
        channel_names=["xray"],
        findings=list(CHESTXRAY14_FINDINGS),
        official_split=official,
        n_listed=n_listed,
        notes=notes,
    )


register("chestxray14", LAYOUT, _read_chestxray14)
