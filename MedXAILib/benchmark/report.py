"""Aggregating a benchmark: ``cases.csv``, ``summary.csv``, ``folds.csv`` and a self-contained ``report.html``.

- ``cases.csv``: one row per (case, method) — fold, status, seconds, the worker that computed it (``host/name``
  on Dask, ``host/pid…`` locally), the model's task performance on the case and every scalar metric (curves and
  per-stage lists stay in the unit records).
- ``summary.csv`` (long format): per method and metric, the mean over folds of the per-fold means and their
  standard deviation over folds (sample SD, ddof = 1; 0 with one fold), the number of folds and cases. Task
  performance rows have ``method = (model)``: segmentation Dice / IoU / HD95 (mm) of the whole foreground averaged
  over a fold's cases; classification accuracy, precision, recall, F1 and AUC-ROC (macro over the model's classes)
  computed from the predictions over each fold's cases.
- ``folds.csv``: per fold, its size and task performance.
- ``agreement.csv``: per method pair and measure (Spearman ρ, SSIM, top-5 % IoU), the mean pairwise agreement of
  the two methods' maps over the cases where both exist (:mod:`.agreement`), also shown as matrices in the report.
- ``conventions.json``: the metric conventions the units used (the defaults of :mod:`MedXAILib.conventions`).
- ``figures/*.png``: the report's figures as files.
- ``report.html``: settings, task-performance and methods tables, deletion/insertion curves (mean over cases, the
  random-order control dashed), accuracy versus faithfulness (per case and per fold), and one example figure per
  method on the same case. Figures are PNGs embedded as base64, so the file stands alone.

A run in which no unit succeeded writes ``cases.csv`` only (its rows say why each unit failed): a summary, figures
or a report of nothing would look like a finished benchmark.

Sanity (when measured): the per-case records hold SSIM against the single-image "shifted" baseline; here the
cohort baseline of Arun et al. — mean SSIM of random pairs of one method's trained-model maps of *different cases*
— is computed per method, each case's ``sanity_passed`` is re-judged against it (``sanity_baseline_cohort``), and a
method passes (``sanity_method_passed``) when its mean last-stage SSIM over cases is strictly below that baseline.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..output_names import WILDCARD
from .store import UnitStore

FIRST_COLUMNS = ["case_id", "patient_id", "fold", "method", "status", "error", "seconds", "seconds_predict",
                 "seconds_explain", "seconds_metrics", "worker"]
KEY_METRICS = ["deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random", "pointing_game",
               "relevance_mass", "msfi", "relevance_rank", "topk_dice_5pct", "sparseness_gini", "stability_ssim",
               "stability_spearman", "max_sensitivity", "sanity_ssim", "sanity_spearman", "sanity_passed",
               "seconds_explain", "seconds"]
TASK_SEG = ["task_dice", "task_iou", "task_hd95_mm", "task_dice_labels_mean"]
TASK_CLS = ["accuracy", "precision", "recall", "f1", "auc_roc"]
MODEL_ROW = "(model)"
CASES_FILE = "cases.csv"
#: Every file :func:`write_outputs` may write under a benchmark folder (``figures/`` holds one PNG per figure).
REPORT_FILES = (CASES_FILE, "summary.csv", "folds.csv", "agreement.csv", "conventions.json", "summary.md",
                "report.html", f"figures/{WILDCARD}.png")


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(float(v)):
        return float(v)
    return None


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample SD (ddof 1; 0.0 for one value) of the non-missing values, and their count."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None, 0
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return float(np.mean(vals)), sd, len(vals)


def fmt(mean: float | None, sd: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if sd is not None else f"{mean:.{digits}f}"


# ---- aggregation ---------------------------------------------------------------------------------------------------
def _sanity_cohort(store: UnitStore, records: list[dict[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    """Per method: the random-pair baseline over its maps of different cases, and the method-level decision."""
    from ..metrics.similarity import random_pair_baseline, ssim

    out: dict[str, dict[str, Any]] = {}
    methods = sorted({r["method"] for r in records if r.get("status") == "ok" and "sanity_ssim" in r})
    for m in methods:
        recs = [r for r in records if r["method"] == m and r.get("status") == "ok" and "sanity_ssim" in r]
        maps = [store.read_map(r["case_id"], m) for r in recs]
        maps = [x for x in maps if x is not None]
        shapes = {x.shape for x in maps}
        if len(maps) < 2 or len(shapes) != 1:
            continue
        n_pairs = min(20, len(maps) * (len(maps) - 1))
        base = random_pair_baseline(maps, ssim, n_pairs=n_pairs, seed=seed)
        last = [float(r["sanity_ssim"]) for r in recs]
        out[m] = {"baseline": base["mean"], "baseline_sd": base["std"], "n_pairs": base["n_pairs"],
                  "mean_last_ssim": float(np.mean(last)), "passed": bool(np.mean(last) < base["mean"])}
    return out


def _classification_fold(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    from ..metrics.classification import classification_metrics

    rows = [r for r in rows if r.get("class_probabilities") and r.get("class_truth")]
    if not rows:
        return {}
    names = [n for n in rows[0]["class_probabilities"] if all(r["class_truth"].get(n) is not None for r in rows)]
    if not names:
        return {}
    y = np.array([[int(r["class_truth"][n]) for n in names] for r in rows])
    s = np.array([[float(r["class_probabilities"][n]) for n in names] for r in rows])
    macro = classification_metrics(y, s, names)["macro"]
    return {k: _num(macro.get(k)) for k in TASK_CLS}  # type: ignore[union-attr]


def aggregate(root: str | Path) -> dict[str, Any]:
    """Read the store and compute the rows, per-fold task performance, summary and sanity decisions."""
    root = Path(root)
    settings = json.loads((root / "benchmark.json").read_text())
    store = UnitStore(root)
    wanted = {(m) for m in settings["methods"]}
    records = [r for r in store.records() if r.get("method") in wanted]
    records.sort(key=lambda r: (str(r["case_id"]), settings["methods"].index(r["method"])))
    sanity = _sanity_cohort(store, records, int(settings.get("seed", 0)))
    for r in records:
        s = sanity.get(r["method"])
        if s is not None and "sanity_ssim" in r:
            r["sanity_baseline_cohort"] = s["baseline"]
            r["sanity_passed"] = bool(float(r["sanity_ssim"]) < s["baseline"])
    folds = sorted({int(r["fold"]) for r in records})
    # task performance per fold (method-independent: one record per case)
    per_case: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("status") == "ok":
            per_case.setdefault(r["case_id"], r)
    fold_rows = []
    for f in folds:
        cases = [r for r in per_case.values() if int(r["fold"]) == f]
        row: dict[str, Any] = {"fold": f, "n_cases": len(cases)}
        if any("task_dice" in r for r in cases):
            for k in TASK_SEG:
                row[k] = mean_sd(_num(r.get(k)) for r in cases)[0]
        else:
            row.update(_classification_fold(cases))
        fold_rows.append(row)
    task_keys = [k for k in (TASK_SEG + TASK_CLS) if any(k in fr for fr in fold_rows)]
    summary = []
    for k in task_keys:
        m, sd, n = mean_sd(_num(fr.get(k)) for fr in fold_rows)
        summary.append({"method": MODEL_ROW, "metric": k, "mean": m, "sd": sd, "n_folds": n,
                        "n_cases": len(per_case), "text": fmt(m, sd)})
    metric_keys = [k for k in _metric_columns(records) if not k.startswith("task_")]  # task rows: (model)
    for method in settings["methods"]:
        recs = [r for r in records if r["method"] == method and r.get("status") == "ok"]
        for k in metric_keys:
            fold_means = []
            for f in folds:
                vals = [_num(r.get(k)) for r in recs if int(r["fold"]) == f]
                fold_means.append(mean_sd(vals)[0])
            m, sd, n = mean_sd(fold_means)
            if n:
                summary.append({"method": method, "metric": k, "mean": m, "sd": sd, "n_folds": n,
                                "n_cases": sum(_num(r.get(k)) is not None for r in recs), "text": fmt(m, sd)})
        if method in sanity:
            s = sanity[method]
            summary.append({"method": method, "metric": "sanity_method_passed", "mean": float(s["passed"]),
                            "sd": None, "n_folds": len(folds), "n_cases": len(recs),
                            "text": f"{'pass' if s['passed'] else 'fail'} (mean SSIM {s['mean_last_ssim']:.3f} vs "
                                    f"baseline {s['baseline']:.3f})"})
    from .agreement import cohort_agreement

    agreement = cohort_agreement(store, records, list(settings["methods"]))
    return {"settings": settings, "records": records, "folds": fold_rows, "summary": summary, "sanity": sanity,
            "store": store, "agreement": agreement}


def _metric_columns(records: list[dict[str, Any]]) -> list[str]:
    skip = set(FIRST_COLUMNS) | {"score_input", "score_baseline", "sanity_seconds"}
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k in skip or not _is_scalar(v) or isinstance(v, str):
                continue
            keys.setdefault(k, None)
    ordered = [k for k in KEY_METRICS if k in keys and k not in FIRST_COLUMNS]
    ordered += [k for k in TASK_SEG if k in keys]
    ordered += sorted(k for k in keys if k not in ordered)
    ordered += [k for k in ("seconds_explain", "seconds") if k not in ordered]
    return ordered


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return path


def write_outputs(root: str | Path) -> dict[str, Path]:
    """Write ``cases.csv``, ``summary.csv``, ``folds.csv``, ``agreement.csv``, ``conventions.json``, ``summary.md``
    and ``report.html`` (with ``figures/``) from the store; only ``cases.csv`` when no unit succeeded."""
    root = Path(root)
    agg = aggregate(root)
    records = agg["records"]
    cols = FIRST_COLUMNS + [k for k in _metric_columns(records) if k not in FIRST_COLUMNS]
    cols += ["target_note"]
    cases = _write_csv(root / CASES_FILE, records, cols)
    if not any(r.get("status") == "ok" for r in records):
        return {"cases": cases}
    out = {
        "cases": cases,
        "summary": _write_csv(root / "summary.csv", agg["summary"],
                              ["method", "metric", "mean", "sd", "n_folds", "n_cases", "text"]),
        "folds": _write_csv(root / "folds.csv", agg["folds"],
                            ["fold", "n_cases"] + [k for k in TASK_SEG + TASK_CLS
                                                   if any(k in f for f in agg["folds"])]),
    }
    out["agreement"] = _write_csv(root / "agreement.csv", agg["agreement"]["rows"],
                                  ["method_a", "method_b", "measure", "mean", "sd", "n_cases"])
    from ..conventions import defaults
    from ..io import write_json

    out["conventions"] = write_json({"conventions": defaults(), "note": "benchmark units use every default; see "
                                     "docs/conventions.md"}, root / "conventions.json")
    from ..io import atomic_path

    with atomic_path(root / "summary.md") as tmp:
        tmp.write_text(summary_markdown(agg))
    out["summary_md"] = root / "summary.md"
    with atomic_path(root / "report.html") as tmp:
        tmp.write_text(render_html(agg, root / "figures"))
    out["report"] = root / "report.html"
    return out


def summary_markdown(agg: dict[str, Any]) -> str:
    """The task-performance and methods tables as Markdown (mean ± sd over folds), for a README."""

    def md(header: list[str], rows: list[list[Any]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)

    task = [[x["metric"], x["text"]] for x in agg["summary"] if x["method"] == MODEL_ROW]
    header, rows = methods_table(agg)
    parts = []
    if task:
        parts += ["Task performance of the model (mean ± sd over folds):", "", md(["metric", "mean ± sd"], task), ""]
    parts += ["Explanation methods (mean ± sd over folds):", "", md(header, rows), ""]
    return "\n".join(parts)


# ---- figures -------------------------------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colours(methods: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def figure_curves(agg: dict[str, Any]) -> Any | None:
    """Mean deletion and insertion curves per method, with the random-order control dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in agg["records"] if r.get("status") == "ok" and r.get("deletion_curve")]
    if not recs:
        return None
    methods = [m for m in agg["settings"]["methods"] if any(r["method"] == m for r in recs)]
    col = _colours(agg["settings"]["methods"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for m in methods:
            rs = [r for r in recs if r["method"] == m]
            x = np.asarray(rs[0]["curve_fractions"])
            y = np.mean([r[f"{kind}_curve"] for r in rs], axis=0)
            auc_m = np.mean([r[f"{kind}_auc"] for r in rs])
            ax.plot(x, y, color=col[m], lw=2, label=f"{m} (AUC {auc_m:.3f})")
        rnd = [r[f"{kind}_curve_random"] for r in recs if r.get(f"{kind}_curve_random")]
        if rnd and "curve_fractions_random" not in recs[0]:
            ax.plot(x, np.mean(rnd, axis=0), color="grey", ls="--", lw=1.5, label="random order (control)")
        ax.set_xlabel("fraction of voxels " + ("removed" if kind == "deletion" else "revealed"))
        ax.set_ylabel("target score / score of the input")
        ax.set_title(f"{kind.capitalize()} ({'lower' if kind == 'deletion' else 'higher'} is more faithful)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def figure_accuracy_vs_faithfulness(agg: dict[str, Any]) -> Any | None:
    """Per case: the model's task score (x) against insertion AUC − deletion AUC (y); fold means as large marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in agg["records"] if r.get("status") == "ok" and "deletion_auc" in r]
    if not recs:
        return None
    seg = any("task_dice" in r for r in recs)
    col = _colours(agg["settings"]["methods"])

    def task(r: dict[str, Any]) -> float | None:
        if seg:
            return _num(r.get("task_dice"))
        probs, truth = r.get("class_probabilities") or {}, r.get("class_truth") or {}
        name = (r.get("target") or {}).get("class_name")
        if name in probs and truth.get(name) is not None:  # probability given to the truth of the explained class
            return probs[name] if truth[name] else 1.0 - probs[name]
        return None

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in agg["settings"]["methods"]:
        rs = [r for r in recs if r["method"] == m and task(r) is not None]
        if not rs:
            continue
        xs = [task(r) for r in rs]
        ys = [r["insertion_auc"] - r["deletion_auc"] for r in rs]
        ax.scatter(xs, ys, color=col[m], alpha=0.6, s=22, label=m)
        for f in sorted({int(r["fold"]) for r in rs}):
            fx = [x for x, r in zip(xs, rs) if int(r["fold"]) == f]
            fy = [y for y, r in zip(ys, rs) if int(r["fold"]) == f]
            ax.scatter([np.mean(fx)], [np.mean(fy)], color=col[m], marker="D", s=70, edgecolor="black")
    ax.axhline(0.0, color="grey", lw=1, ls=":")
    ax.set_xlabel("task score per case: " + ("Dice of the whole foreground" if seg
                                             else "probability given to the true label"))
    ax.set_ylabel("insertion AUC − deletion AUC")
    ax.set_title("Accuracy versus faithfulness (◆ = fold means)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _example_case(agg: dict[str, Any]) -> str | None:
    methods = agg["settings"]["methods"]
    by_case: dict[str, set[str]] = {}
    for r in agg["records"]:
        if r.get("status") == "ok":
            by_case.setdefault(r["case_id"], set()).add(r["method"])
    full = sorted(c for c, ms in by_case.items() if set(methods) <= ms)
    return full[0] if full else (sorted(by_case)[0] if by_case else None)


def figure_examples(agg: dict[str, Any]) -> tuple[Any, str] | None:
    """One panel per method on the same case: the image, the map (scaled by its max |h|; a map with negative values
    in a blue-white-red scale, otherwise in a heat scale) and the reference outline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..datasets import open_dataset

    case_id = _example_case(agg)
    if case_id is None:
        return None
    store: UnitStore = agg["store"]
    methods = [m for m in agg["settings"]["methods"] if store.read_map(case_id, m) is not None]
    if not methods:
        return None
    try:
        image, truth = open_dataset(agg["settings"]["dataset"])[case_id].load()
    except Exception:  # the figure is optional; the numbers are not
        return None
    ref = truth.array[0] > 0 if hasattr(truth, "array") else None
    maps = {m: store.read_map(case_id, m) for m in methods}
    if ref is not None and ref.any():
        k = int(round(np.argwhere(ref)[:, 0].mean()))
    else:
        first = maps[methods[0]]
        k = int(np.unravel_index(np.argmax(first), first.shape)[0])
    names = [n.lower() for n in image.channel_names]
    ch = names.index("flair") if "flair" in names else 0
    sp = image.spacing_kji
    aspect = float(sp[1] / sp[2])
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(3.2 * (len(methods) + 1), 3.4))
    axes = np.atleast_1d(axes)
    img = image.array[ch, k]
    axes[0].imshow(img, cmap="gray", aspect=aspect)
    if ref is not None and ref[k].any():
        axes[0].contour(ref[k], levels=[0.5], colors="lime", linewidths=1)
    axes[0].set_title(f"{case_id}\n{image.channel_names[ch] if image.channel_names else 'image'}, slice k={k}",
                      fontsize=8)
    for ax, m in zip(axes[1:], methods):
        h = maps[m][k].astype(np.float64)
        peak = float(np.abs(maps[m]).max())
        h = h / peak if peak > 0 else h
        signed = bool((maps[m] < 0).any())  # negative relevance is shown, not clipped away (blue < 0 < red)
        ax.imshow(img, cmap="gray", aspect=aspect)
        ax.imshow(h, cmap="RdBu_r" if signed else "inferno", alpha=0.55, vmin=-1 if signed else 0, vmax=1,
                  aspect=aspect)
        if ref is not None and ref[k].any():
            ax.contour(ref[k], levels=[0.5], colors="lime", linewidths=1)
        rec = next((r for r in agg["records"] if r["case_id"] == case_id and r["method"] == m), {})
        sub = f"del {rec.get('deletion_auc', float('nan')):.3f} / ins {rec.get('insertion_auc', float('nan')):.3f}"
        ax.set_title(f"{m}\n{sub}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    return fig, case_id


# ---- HTML ----------------------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def methods_table(agg: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows = methods, columns = the key metrics present (mean ± sd over folds)."""
    by = {(s["method"], s["metric"]): s for s in agg["summary"]}
    cols = [k for k in KEY_METRICS if any((m, k) in by for m in agg["settings"]["methods"])]
    rows = []
    for m in agg["settings"]["methods"]:
        row = [m] + [by[(m, k)]["text"] if (m, k) in by else "–" for k in cols]
        if (m, "sanity_method_passed") in by:
            row.append(by[(m, "sanity_method_passed")]["text"])
        rows.append(row)
    header = ["method"] + cols + (["sanity (cohort)"] if any(len(r) > len(cols) + 1 for r in rows) else [])
    return header, rows


def render_html(agg: dict[str, Any], figures_dir: str | Path | None = None) -> str:
    """The self-contained HTML report (figures embedded; also saved as PNGs in ``figures_dir`` when given)."""
    s = agg["settings"]
    ok = sum(r.get("status") == "ok" for r in agg["records"])
    errs = [r for r in agg["records"] if r.get("status") != "ok"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>MedXAI benchmark</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f0f0f0}img{max-width:100%}code{background:#f5f5f5;padding:1px 4px}",
        "</style></head><body>",
        "<h1>MedXAI benchmark</h1>",
        f"<p>Dataset <code>{html.escape(s['dataset'])}</code>, model <code>{html.escape(s['model'])}</code>, "
        f"methods {html.escape(', '.join(s['methods']))}; metrics {html.escape(', '.join(s['metrics']))}; "
        f"{s['folds']} patient-level folds (seed {s['seed']}). {ok} of {len(agg['records'])} units finished. "
        f"Faithfulness: {s['steps']} steps, baseline {html.escape(s['baseline'])}"
        f"{' σ = ' + format(s['blur_sigma_mm'], 'g') + ' mm' if s['baseline'] == 'blur' else ''}; "
        "curves normalised by the score of the unperturbed input. Generated "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p>",
        "<h2>Task performance (mean ± sd over folds)</h2>",
    ]
    task = [[x["metric"], x["text"]] for x in agg["summary"] if x["method"] == MODEL_ROW]
    parts.append(_table(["metric", "mean ± sd"], task) if task else "<p>No task reference available.</p>")
    if agg["folds"]:
        keys = [k for k in TASK_SEG + TASK_CLS if any(k in f for f in agg["folds"])]
        rows = [[f["fold"], f["n_cases"]] + ["–" if f.get(k) is None else f"{f[k]:.3f}" for k in keys]
                for f in agg["folds"]]
        parts.append(_table(["fold", "cases"] + keys, rows))
    header, rows = methods_table(agg)
    parts += ["<h2>Methods (mean ± sd over folds)</h2>", _table(header, rows)]
    if agg["sanity"]:
        parts.append("<p>Sanity rule: a method passes when its mean SSIM between the trained-model map and the map "
                     "of the fully randomised network is below the mean SSIM of random pairs of its maps of different "
                     "cases (Arun et al. 2021).</p>")
    if agg.get("agreement", {}).get("rows"):
        from .agreement import agreement_html_tables

        parts.append("<h2>Agreement between methods (mean over cases)</h2><p>Each pair of methods' maps of the same "
                     "case compared as displayed (positive part or |h|), then averaged over the cases where both "
                     "exist; per-pair SD and counts in <code>agreement.csv</code>.</p>")
        for title, header, rows in agreement_html_tables(agg["agreement"]):
            parts += [f"<h3>{html.escape(title)}</h3>", _table(header, rows)]
    figures = [("Deletion and insertion curves", figure_curves(agg)),
               ("Accuracy versus faithfulness", figure_accuracy_vs_faithfulness(agg))]
    ex = figure_examples(agg)
    if ex is not None:
        figures.append((f"Example: every method on case {ex[1]}", ex[0]))
    names = ["curves", "accuracy_vs_faithfulness", "examples"]
    for name, (title, fig) in zip(names, figures):
        if fig is None:
            continue
        data = _png(fig)
        if figures_dir is not None:
            from ..io import atomic_path

            with atomic_path(Path(figures_dir) / f"{name}.png") as tmp:
                tmp.write_bytes(base64.b64decode(data))
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{data}'>")
    if errs:
        parts.append("<h2>Units that failed</h2>")
        parts.append(_table(["case", "method", "error"], [[r["case_id"], r["method"], r.get("error", "")]
                                                           for r in errs]))
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["aggregate", "mean_sd", "render_html", "write_outputs"]
