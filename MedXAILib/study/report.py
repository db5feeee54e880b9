"""``study analyse``'s outputs: ``mrmc.json``, ``report.html`` and the figures.

- ``roc.png`` — empirical ROC curves per arm: each reader's curve (thin) and the reader average (thick; true-positive
  fractions averaged over readers at each false-positive fraction, "vertical averaging");
- ``reader_auc.png`` — each reader's AUC in each arm (one line per reader) with the arm's mean and its random-reader
  random-case 95 % CI;
- ``report.html`` — the analysis as tables (the figures beside it), self-describing: the design, the tests and
  their formulas' names, the variance components, decisions, reading times, reliance and localisation.

Every file goes through :func:`MedXAILib.outputs.atomic_path`, so the command writes them as one set.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..figures.overview import _plt, _save
from ..outputs import atomic_path

ARM_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
ANALYSIS_TITLES = {
    "random_readers_random_cases": "Random readers, random cases (OR with Hillis 2007 df)",
    "fixed_readers_random_cases": "Fixed readers, random cases (chi-square)",
    "random_readers_fixed_cases": "Random readers, fixed cases",
}


def _averaged_roc(curves: dict[str, Any], grid: np.ndarray) -> np.ndarray:
    tprs = []
    for c in curves.values():
        fpr, tpr = np.asarray(c["fpr"]), np.asarray(c["tpr"])
        tprs.append(np.interp(grid, fpr, tpr))  # the curve through the operating points (trapezoidal)
    return np.mean(tprs, axis=0)


def roc_figure(path: str | Path, mrmc: dict[str, Any], curves: dict[str, Any], title: str = "") -> Path:
    """Reader-averaged and per-reader empirical ROC curves, one colour per arm."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    grid = np.linspace(0, 1, 201)
    for t, arm in enumerate(mrmc["modalities"]):
        colour = ARM_COLOURS[t % len(ARM_COLOURS)]
        for c in curves[arm].values():
            ax.plot(c["fpr"], c["tpr"], color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(grid, _averaged_roc(curves[arm], grid), color=colour, linewidth=2.4,
                label=f"{arm}: mean AUC {mrmc['mean_auc'][arm]:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive fraction (1 − specificity)")
    ax.set_ylabel("true-positive fraction (sensitivity)")
    ax.set_title(title or f"ROC curves: {len(mrmc['readers'])} readers (thin), reader average (thick)", fontsize=10)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def reader_auc_figure(path: str | Path, mrmc: dict[str, Any]) -> Path:
    """Each reader's AUC per arm, with each arm's mean and RRRC 95 % CI."""
    plt = _plt()
    arms, readers = mrmc["modalities"], mrmc["readers"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(arms), 4.6))
    x = np.arange(len(arms))
    for r in readers:
        ax.plot(x, [mrmc["auc"][a][r] for a in arms], color="grey", alpha=0.6, marker="o", markersize=4,
                linewidth=0.9)
    rrrc = mrmc.get("random_readers_random_cases") or mrmc["fixed_readers_random_cases"]
    for t, a in enumerate(arms):
        m = rrrc["modalities"][a]
        lo, hi = m["ci"]
        ax.errorbar([t + 0.12], [m["auc"]], yerr=[[m["auc"] - lo], [hi - m["auc"]]], color="black", marker="D",
                    capsize=5, markersize=6, zorder=5)
    ax.set_xticks(x, arms)
    ax.set_xlim(-0.5, len(arms) - 0.5)
    ax.set_ylabel("empirical AUC")
    ax.set_title("AUC per reader (grey) and arm mean with 95% CI", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x, digits) for x in v) + ")"
    return html.escape(str(v))


def _p(p: float | None) -> str:
    return "–" if p is None else "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _differences(rows: list[dict[str, Any]], stat: str) -> str:
    return _table(["comparison", "difference", "std. error", "df", stat, "p", "95% CI"],
                  [[f"{d['a']} − {d['b']}", d["difference"], d["stderr"], d.get("df", "–"), d.get(stat),
                    _p(d["p"]), d["ci"]] for d in rows])


def _analysis_section(key: str, a: dict[str, Any] | None) -> str:
    if a is None:
        return f"<h3>{ANALYSIS_TITLES[key]}</h3><p>Not applicable to this design.</p>"
    parts = [f"<h3>{ANALYSIS_TITLES[key]}</h3>"]
    if key == "fixed_readers_random_cases":
        if a.get("chi2") is not None:
            parts.append(f"<p>Global test: X² = {_fmt(a['chi2'])} on {a['df']} df, p = {_p(a['p'])}</p>")
        parts.append(_differences(a["differences"], "z"))
        rows = [[m, v["auc"], v["stderr"], v["ci"]] for m, v in a["modalities"].items()]
    else:
        if a.get("f") is not None:
            parts.append(f"<p>Global test: F = {_fmt(a['f'])} on {a['df1']} and {_fmt(a['df2'], 2)} df, "
                         f"p = {_p(a['p'])}</p>")
        parts.append(_differences(a["differences"], "t"))
        rows = [[m, v["auc"], v["stderr"], v.get("df"), v["ci"]] for m, v in a["modalities"].items()]
    header = ["arm", "AUC", "std. error"] + ([] if key == "fixed_readers_random_cases" else ["df"]) + ["95% CI"]
    parts.append("<p>Single-arm confidence intervals:</p>" + _table(header, rows))
    return "".join(parts)


def _summary_table(block: dict[str, Any] | None, keys: list[str], title: str) -> str:
    if not block:
        return ""
    rows = [[arm] + [v.get(k) for k in keys] for arm, v in block.items()]
    return f"<h2>{title}</h2>" + _table(["arm"] + [k.replace("_", " ") for k in keys], rows)


CSS = ("body{font-family:sans-serif;max-width:62em;margin:2em auto;color:#222}table{border-collapse:collapse;"
       "margin:.5em 0 1.2em}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}th{background:#eee}"
       "td:first-child{text-align:left}img{max-width:48%;margin-right:1%}")


def render_html(mrmc: dict[str, Any], figures: list[str]) -> str:
    """The report page (figures referenced by file name, beside it)."""
    arms, readers = mrmc["modalities"], mrmc["readers"]
    cov = mrmc["covariance"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>MRMC analysis</title><style>{CSS}</style>"
             "</head><body><h1>Multi-reader multi-case ROC analysis</h1>",
             f"<p>{len(readers)} readers, {len(arms)} arms, {mrmc['n_cases']} cases "
             f"({mrmc['n_cases_with_finding']} with the finding); design: {html.escape(mrmc['design'])}; "
             f"empirical (trapezoidal) AUC; Obuchowski–Rockette analysis with {html.escape(cov['method'])} "
             f"covariances; α = {mrmc['alpha']}. Differences are a − b.</p>",
             "".join(f"<img src='{html.escape(f)}' alt='{html.escape(f)}'>" for f in figures),
             "<h2>AUC per reader and arm</h2>",
             _table(["reader"] + arms, [[r] + [mrmc["auc"][a][r] for a in arms] for r in readers]
                    + [["mean"] + [mrmc["mean_auc"][a] for a in arms]])]
    parts += [_analysis_section(k, mrmc.get(k)) for k in ANALYSIS_TITLES]
    parts.append("<h2>Obuchowski–Rockette variance components</h2>" + _table(
        ["var(R)", "var(T×R)", "error variance", "Cov1", "Cov2", "Cov3"],
        [[cov["var_r"], cov["var_tr"], cov["var_error"], cov["cov1"], cov["cov2"], cov["cov3"]]]))
    if mrmc.get("decisions"):
        parts.append(_summary_table(mrmc["decisions"], ["mean_sensitivity", "mean_specificity"],
                                    "Sensitivity and specificity at the readers' decisions (mean over readers)"))
    timing = mrmc.get("reading_time")
    if timing and "arms" in timing:
        parts.append(_summary_table(timing["arms"], ["median", "mean", "quartiles"], "Reading time (seconds)"))
        if timing.get("random_readers_random_cases"):
            parts.append("<p>Difference in mean reading time (random readers and cases):</p>"
                         + _differences(timing["random_readers_random_cases"]["differences"], "t"))
    parts.append(_summary_table(mrmc.get("reliance"), ["follow_when_right", "override_when_wrong",
                                                        "trust_when_right", "trust_when_wrong", "trust_auc"],
                                "Reliance on the AI (arms without the AI: agreement with the unseen AI)"))
    parts.append(_summary_table(mrmc.get("localisation"), ["click_rate", "hit_rate"],
                                "Localisation of called findings (clicks inside the reference region)"))
    parts.append("</body></html>")
    return "\n".join(parts)


#: Every file :func:`write_outputs` writes into its folder.
OUTPUT_FILES = ("mrmc.json", "report.html", "roc.png", "reader_auc.png")


def write_outputs(folder: str | Path, mrmc: dict[str, Any], curves: dict[str, Any]) -> list[Path]:
    """Write mrmc.json, roc.png, reader_auc.png and report.html into ``folder``."""
    out = Path(folder)
    written = [roc_figure(out / "roc.png", mrmc, curves), reader_auc_figure(out / "reader_auc.png", mrmc)]
    with atomic_path(out / "mrmc.json") as tmp:
        tmp.write_text(json.dumps(mrmc, indent=2) + "\n")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(render_html(mrmc, [p.name for p in written]))
    return [out / "mrmc.json", out / "report.html", *written]
