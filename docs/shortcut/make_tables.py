"""Markdown tables of a ``shortcut`` / ``tradeoff`` run folder, as published in docs/shortcut/README.md.

    python docs/shortcut/make_tables.py RUN_DIR [RUN_DIR ...]

Reads ``RUN_DIR/shortcut.json`` and, when present, ``RUN_DIR/tradeoff.json``; prints the reliance table, the methods
table and the trade-off table (mean ± SD over folds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v: object, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _md(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def shortcut_tables(data: dict) -> str:
    metric = "auc" if data["finding"]["task"] == "classification" else "dice"
    rel = data["reliance"]
    rows = []
    for role, r in rel.items():
        folds = ", ".join(f"{f[metric]:.2f} → {f[metric + '_swapped']:.2f}" for f in r["per_fold"]
                          if f[metric] is not None and f[metric + "_swapped"] is not None)
        rows.append([role, r[metric], r[metric + "_swapped"], r[metric + "_drop"], r[metric + "_confounded_data"],
                     r["n_cases"], folds])
    parts = [_md(["model", metric, f"{metric} swapped", "drop", f"{metric} on confounded data", "cases",
                  "per fold (clean → swapped)"], rows)]
    keys = ["artifact_mass_clean", "artifact_mass_confounded", "mass_ratio", "topk_iou_clean", "topk_iou_confounded",
            "detection_auc", "effect_spearman", "effect_spearman_confounded", "seconds_per_map"]
    parts.append(_md(["method", "artifact mass (clean)", "artifact mass (confounded)", "ratio", "top-k IoU (clean)",
                      "top-k IoU (confounded)", "detection AUC", "effect ρ (both)", "effect ρ (confounded)",
                      "s / map"], [[m] + [v.get(k) for k in keys] for m, v in data["methods"].items()]))
    t = data["timing"]
    peak = data.get("peak_rss_bytes")
    parts.append("Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items())
                 + (f"; peak RSS {peak / 2**30:.2f} GiB" if peak else ""))
    return "\n\n".join(parts)


def tradeoff_table(data: dict) -> str:
    metric = data["metric"]
    methods = data["settings"]["methods"]
    header = ["λ", metric, f"{metric} swapped"] + [f"{m} {q}" for m in methods
                                                   for q in ("artifact mass", "relevance mass", "deletion AUC")]
    def ms(s: dict, key: str) -> str:
        v = s.get(key, {})
        return "–" if v.get("mean") is None else f"{v['mean']:.3f} ± {v['sd']:.3f}"

    rows = []
    for w, s in data["summary"].items():
        rows.append([w, ms(s, metric), ms(s, f"{metric}_swapped")] + [
            ms(s, f"{m}_{q}") for m in methods for q in ("artifact_mass", "relevance_mass", "deletion_auc")])
    text = _md(header, rows)
    rec = data.get("recovery")
    if rec and rec.get("recovered_fraction") is not None:
        text += (f"\n\nλ = {rec['to_weight']:g} recovers {100 * rec['recovered_fraction']:.0f} % of the swapped "
                 f"{metric} loss of λ = {rec['from_weight']:g} ({rec['swapped_loss']:.3f}); clean {metric} changes by "
                 f"{rec['clean_change']:+.3f}.")
    t = data["timing"]
    text += "\n\nTime: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items())
    return text


def main(argv: list[str]) -> None:
    for folder in map(Path, argv):
        print(f"## {folder}\n")
        if (folder / "shortcut.json").exists():
            print(shortcut_tables(json.loads((folder / "shortcut.json").read_text())) + "\n")
        if (folder / "tradeoff.json").exists():
            print(tradeoff_table(json.loads((folder / "tradeoff.json").read_text())) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
