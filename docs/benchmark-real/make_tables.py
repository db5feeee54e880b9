"""Tables and the per-patient figure of docs/benchmark-real from a `train` run (and a `benchmark` run when given).

    python docs/benchmark-real/make_tables.py TRAIN_DIR DEST [BENCH_DIR]

Writes DEST/folds_per_patient.csv, DEST/folds_table.md, DEST/folds_dice_hd95.png, copies the train run's folds.json
and summary.csv, and the benchmark's cases/summary/folds CSVs and figures.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REGIONS = ("WT", "TC")


def cell(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def main(train: Path, dest: Path, bench: Path | None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    folds = json.loads((train / "folds.json").read_text())["folds"]
    rows = []
    for f in folds:
        lab = f["metrics"]["labels"]
        row = {"fold": f["fold"], "patient": ",".join(f["val_patients"]), "case": ",".join(f["val_case_ids"])}
        row.update({f"{r}_{m}": lab.get(r, {}).get(m) for r in REGIONS for m in ("dice", "hd95_mm")})
        row.update(train_s=f["train_seconds"], eval_s=f["eval_seconds"])
        rows.append(row)
    with open(dest / "folds_per_patient.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| fold | held-out patient | WT Dice | WT HD95 (mm) | TC Dice | TC HD95 (mm) | train s | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['case']} | {cell(r['WT_dice'])} | {cell(r['WT_hd95_mm'], 1)} | "
                     f"{cell(r['TC_dice'])} | {cell(r['TC_hd95_mm'], 1)} | {r['train_s']:.0f} | {r['eval_s']:.0f} |")
    for key in ("WT_dice", "TC_dice", "WT_hd95_mm", "TC_hd95_mm"):
        vals = [r[key] for r in rows if r[key] is not None]
        lines.append(f"<!-- {key}: mean {np.mean(vals):.3f} sd {np.std(vals, ddof=1):.3f} "
                     f"median {np.median(vals):.3f} n {len(vals)} -->")
    (dest / "folds_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    x = np.arange(len(rows))
    names = [r["case"].replace("brats_2013_", "").replace("_1", "") for r in rows]
    for ax, metric, title in ((axes[0], "dice", "Dice (held-out patient)"), (axes[1], "hd95_mm", "HD95 (mm)")):
        for off, reg, col in ((-0.2, "WT", "#1f77b4"), (0.2, "TC", "#d62728")):
            vals = [np.nan if r[f"{reg}_{metric}"] is None else r[f"{reg}_{metric}"] for r in rows]
            ax.bar(x + off, vals, 0.4, label=reg, color=col)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, fontsize=8)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dest / "folds_dice_hd95.png", dpi=110)
    shutil.copy(train / "folds.json", dest / "train_folds.json")
    shutil.copy(train / "summary.csv", dest / "train_summary.csv")
    if bench is not None and (bench / "cases.csv").exists():
        for name in ("cases.csv", "summary.csv", "folds.csv", "summary.md"):
            if (bench / name).exists():
                shutil.copy(bench / name, dest / f"benchmark_{name}")
        for png in (bench / "figures").glob("*.png"):
            shutil.copy(png, dest / f"benchmark_{png.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
