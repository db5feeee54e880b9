"""From a study's reading records to the ratings table, and what the records say beyond AUC.

- :func:`study_ratings` — the records of every reader, checked against the protocol (unknown readers or arms,
  records of another study, missing reads in a fully crossed design), as a :class:`~.ratings.Ratings` table;
- :func:`reliance_summary` — how often readers follow the AI when it is right and override it when it is wrong, per
  arm (arms that do not show the AI give the baseline: agreement with an AI the reader did not see), and whether
  trust ratings track the AI's correctness (mean trust when right and when wrong; the AUC of trust for telling
  right from wrong, 0.5 = no relation);
- :func:`localisation_summary` — where readers clicked: of the reads that call a present finding, the fraction
  with a click, and of those the fraction inside the reference mask (or box).

Rates are given per reader and as the mean over readers (each reader counts once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .auc import empirical_auc
from .protocol import Study, parse_arm
from .ratings import Ratings, ratings_from_rows
from .records import read_records


def latest_records(study: Study) -> list[dict[str, Any]]:
    """Every reader's current records (a changed read's last revision), each with its ``case`` key added."""
    reads = study.folder / "reads"
    if reads.is_dir():
        for p in sorted(reads.glob("*.jsonl")):
            if p.stem not in study.readers:
                raise InputError(f"{p}: unknown reader {p.stem!r}; the protocol's readers are "
                                 f"{', '.join(study.readers)}")
    out: list[dict[str, Any]] = []
    for reader in study.readers:
        items = {it["reading_id"]: it for s in study.protocol["reading_lists"][reader] for it in s}
        latest: dict[str, dict[str, Any]] = {}
        path = study.reads_path(reader)
        for n, rec in enumerate(read_records(path).records, start=1):
            rid = rec.get("reading_id")
            if rec.get("study") != study.study_id:
                raise InputError(f"{path} record {n}: it belongs to another study ({rec.get('study')})")
            if rec.get("reader") != reader:
                raise InputError(f"{path} record {n}: unknown reader {rec.get('reader')!r} in reader {reader}'s file")
            if rec.get("arm") not in study.arms:
                raise InputError(f"{path} record {n}: unknown arm {rec.get('arm')!r}; the protocol's arms are "
                                 f"{', '.join(study.arms)}")
            if rid not in items or items[rid]["arm"] != rec.get("arm"):
                raise InputError(f"{path} record {n}: reading {rid!r} is not in reader {reader}'s list")
            if rid not in latest or rec.get("revision", 0) > latest[rid].get("revision", 0):
                latest[rid] = {**rec, "case": items[rid]["case"]}
            elif rec.get("revision", 0) == latest[rid].get("revision", 0):
                raise InputError(f"{path} record {n}: duplicate read of reading {rid}")
        out.extend(latest.values())
    return out


def study_ratings(study: Study, records: list[dict[str, Any]] | None = None) -> Ratings:
    """The ratings table of a study (case names: the manifest ids; modalities: the arms)."""
    records = latest_records(study) if records is None else records
    truth = study.truth()
    rows = [{"reader": r["reader"], "modality": r["arm"], "case": truth[r["case"]]["case"],
             "truth": truth[r["case"]]["truth"], "rating": r["rating"], "decision": r["decision"],
             "seconds": r["seconds"]} for r in records]
    names = [f"{study.reads_path(r['reader']).name} reading {r['reading_id']}" for r in records]
    return ratings_from_rows(rows, source=str(study.folder), design=study.protocol["design"],
                             modalities=study.arms, readers=study.readers, row_names=names)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def reliance_summary(study: Study, records: list[dict[str, Any]]) -> dict[str, Any]:
    """See the module docstring; per arm: ``follow_when_right``, ``override_when_wrong``, trust."""
    truth = study.truth()
    out: dict[str, Any] = {}
    for arm in study.arms:
        shows_ai = parse_arm(arm).ai
        per_reader: dict[str, Any] = {}
        for reader in study.readers:
            recs = [r for r in records if r["arm"] == arm and r["reader"] == reader]
            if not recs:
                continue
            right = [r for r in recs if truth[r["case"]]["ai_decision"] == truth[r["case"]]["truth"]]
            wrong = [r for r in recs if truth[r["case"]]["ai_decision"] != truth[r["case"]]["truth"]]
            entry: dict[str, Any] = {
                "n_ai_right": len(right), "n_ai_wrong": len(wrong),
                "follow_when_right": _mean([float(r["decision"] == truth[r["case"]]["ai_decision"]) for r in right]),
                "override_when_wrong": _mean([float(r["decision"] != truth[r["case"]]["ai_decision"])
                                              for r in wrong]),
            }
            if shows_ai:
                t_right = [float(r["trust"]) for r in right if r.get("trust") is not None]
                t_wrong = [float(r["trust"]) for r in wrong if r.get("trust") is not None]
                entry.update({"trust_when_right": _mean(t_right), "trust_when_wrong": _mean(t_wrong),
                              "trust_auc": empirical_auc(np.array(t_wrong), np.array(t_right))
                              if t_right and t_wrong else None})
            per_reader[reader] = entry
        if not per_reader:
            continue
        keys = ["follow_when_right", "override_when_wrong"] + (
            ["trust_when_right", "trust_when_wrong", "trust_auc"] if shows_ai else [])
        out[arm] = {"shows_ai": shows_ai,
                    **{k: _mean([v[k] for v in per_reader.values() if v.get(k) is not None]) for k in keys},
                    "readers": per_reader}
    return out


def _inside(mask_volume: Any, point_ras: list[float]) -> bool:
    ijk = np.linalg.inv(mask_volume.ijk_to_ras) @ np.array([*point_ras, 1.0])
    i, j, k = (int(round(v)) for v in ijk[:3])
    arr = mask_volume.array[0]
    K, J, I = arr.shape
    return 0 <= i < I and 0 <= j < J and 0 <= k < K and bool(arr[k, j, i] > 0)


def localisation_summary(study: Study, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """See the module docstring; None when no case has a reference region."""
    from ..io import read_label_map

    truth = study.truth()
    masks = {k: read_label_map(Path(study.folder) / t["reference"]) for k, t in truth.items() if t.get("reference")}
    if not masks:
        return None
    out: dict[str, Any] = {}
    for arm in study.arms:
        per_reader: dict[str, Any] = {}
        for reader in study.readers:
            calls = [r for r in records if r["arm"] == arm and r["reader"] == reader and r["decision"] == 1
                     and r["case"] in masks and truth[r["case"]]["truth"] == 1]
            clicked = [r for r in calls if r.get("click_ras")]
            hits = [_inside(masks[r["case"]], r["click_ras"]) for r in clicked]
            per_reader[reader] = {"n_calls": len(calls), "click_rate": len(clicked) / len(calls) if calls else None,
                                  "hit_rate": float(np.mean(hits)) if hits else None}
        out[arm] = {"click_rate": _mean([v["click_rate"] for v in per_reader.values() if v["click_rate"] is not None]),
                    "hit_rate": _mean([v["hit_rate"] for v in per_reader.values() if v["hit_rate"] is not None]),
                    "readers": per_reader}
    return out
