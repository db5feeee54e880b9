"""The files a ``shortcut`` run writes: JSON, CSV, per-case masks, figures and a self-contained HTML report.

Layouts: images and maps are ``(C, K, J, I)`` / ``(K, J, I)`` on the case's input grid; a 3D figure shows the axial
slice (index k) where the artifact mask is largest.
"""

from __future__ import annotations

import base64
import csv
import html
import io as _io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CASE_COLUMNS = ["case_id", "fold", "model", "method", "label", "status", "artifact_mass", "topk_iou", "effect",
                "seconds", "error"]
INTERVENTION_COLUMNS = ["case_id", "patient_id", "fold", "model", "label", "artifact_in_training_draw", "score_clean",
                        "score_added", "score_swapped", "score_confounded_data", "effect", "dice_clean",
                        "dice_swapped", "dice_confounded_data", "placement", "mask"]
_IMAGE_SUFFIX = re.compile(r"\.(png|jpe?g|dcm|nii(\.gz)?|nrrd|mha|mhd)$", re.IGNORECASE)


def safe_name(case_id: str) -> str:
    """A file-name stem for a case id (image suffix dropped, anything but letters, digits, ``._-`` replaced)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", _IMAGE_SUFFIX.sub("", str(case_id))) or "case"


def mask_stems(case_ids: Sequence[str]) -> dict[str, str]:
    """A file-name stem per case id for ``masks/``: :func:`safe_name`, made unique. Ids that would share a stem
    (``a b`` and ``a-b``, ``x.png`` and ``x.nii.gz``, or ``Case1`` and ``case1`` on a case-insensitive file system)
    each get ``-`` and the 8 hex digits of their id's CRC-32 appended, so no case's mask replaces another's."""
    import zlib

    stems = {cid: safe_name(cid) for cid in dict.fromkeys(case_ids)}
    count: dict[str, int] = {}
    for stem in stems.values():
        count[stem.casefold()] = count.get(stem.casefold(), 0) + 1
    out = {cid: stem if count[stem.casefold()] == 1 else f"{stem}-{zlib.crc32(cid.encode('utf-8')):08x}"
           for cid, stem in stems.items()}
    if len({v.casefold() for v in out.values()}) != len(out):  # a hashed stem met another id's plain stem
        out = {cid: f"{stem}-{n:05d}" for n, (cid, stem) in enumerate(out.items())}
    return out


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Rows as CSV (missing cells empty; dicts and lists as JSON-like text), written atomically."""
    from ..io import atomic_path

    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def png_data(fig: Any) -> str:
    """A matplotlib figure as base64 PNG text (the figure is closed)."""
    from ..benchmark.report import _png

    return _png(fig)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slice_of(mask: np.ndarray) -> int:
    return int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))


def example_figure(examples: dict[str, Any], methods: Sequence[str], title: str) -> Any:
    """Rows = methods; columns: the explained image with the artifact outlined, the clean model's map, the
    confounded model's map (positive part, each scaled to its own maximum)."""
    plt = _plt()
    first = next(iter(examples.values()))
    k = _slice_of(first["mask"])
    image = first["image"][-1, k]
    mask = first["mask"][k]
    lo, hi = np.percentile(image, [1, 99.5])
    fig, axes = plt.subplots(len(methods), 3, figsize=(9, 3 * len(methods)), squeeze=False)
    for row, m in enumerate(methods):
        axes[row, 0].imshow(image, cmap="gray", vmin=lo, vmax=hi)
        axes[row, 0].contour(mask, levels=[0.5], colors="red", linewidths=0.8)
        axes[row, 0].set_ylabel(m)
        for col, role in ((1, "clean"), (2, "confounded")):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
            heat = examples.get(role, {}).get("maps", {}).get(m)
            if heat is not None:
                pos = np.clip(heat[k], 0, None)
                peak = float(pos.max())
                ax.imshow(pos / peak if peak > 0 else pos, cmap="hot", alpha=0.55, vmin=0, vmax=1)
            ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.6)
            if row == 0:
                ax.set_title(f"{role} model")
        if row == 0:
            axes[row, 0].set_title("image with artifact")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def scatter_figure(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> Any:
    """Per method: artifact mass of each map against the measured |effect| of the artifact (both models)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.3), squeeze=False)
    for ax, m in zip(axes[0], methods):
        for role, colour in (("clean", "tab:blue"), ("confounded", "tab:red")):
            pts = [(abs(float(r["effect"])), float(r["artifact_mass"])) for r in rows
                   if r["method"] == m and r["model"] == role and r.get("artifact_mass") is not None
                   and r.get("effect") is not None]
            if pts:
                x, y = np.array(pts).T
                ax.scatter(x, y, s=12, alpha=0.7, color=colour, label=f"{role} model")
        ax.set_title(m)
        ax.set_xlabel("|effect of the artifact| (measured)")
        ax.set_ylabel("artifact relevance mass")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def reliance_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The reliance table: one row per model."""
    metric = "auc" if result["finding"]["task"] == "classification" else "dice"
    header = ["model", metric, f"{metric} swapped", "drop", f"{metric} on confounded data", "cases"]
    rows = [[role, r.get(metric), r.get(f"{metric}_swapped"), r.get(f"{metric}_drop"),
             r.get(f"{metric}_confounded_data"), r.get("n_cases")] for role, r in result["reliance"].items()]
    return header, rows


def methods_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The methods table: one row per method."""
    header = ["method", "artifact mass (clean)", "artifact mass (confounded)", "ratio", "top-k IoU (clean)",
              "top-k IoU (confounded)", "detection AUC", "effect Spearman", "s / map"]
    keys = ["artifact_mass_clean", "artifact_mass_confounded", "mass_ratio", "topk_iou_clean", "topk_iou_confounded",
            "detection_auc", "effect_spearman", "seconds_per_map"]
    return header, [[m] + [v.get(k) for k in keys] for m, v in result["methods"].items()]


def render_html(result: dict[str, Any], figures: dict[str, tuple[str, str]]) -> str:
    s = result["settings"]
    a = s["artifact"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>MedXAI shortcut benchmark</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}</style></head><body>",
        "<h1>Does an explanation show what the model relies on?</h1>",
        f"<p>Dataset <code>{html.escape(s['dataset'])}</code>, task {html.escape(s['task'])}, finding "
        f"<b>{html.escape(result['finding']['name'])}</b>. A <b>{html.escape(a['kind'])}</b> artifact accompanies "
        f"the positive label with probability {a['strength']:g} in the confounded model's training data (seed "
        f"{a['seed']}). Two models were trained alike on {s['folds']} patient-level folds; every number below is "
        "measured on held-out cases, each by the fold model that never saw it.</p>",
        "<h2>Reliance, measured by intervention</h2>",
        "<p><i>swapped</i>: the artifact added to every negative and removed from every positive (segmentation: the "
        "blob moved away from the lesion). A model that relies on the artifact loses accuracy there.</p>",
        _table(*reliance_rows(result)),
        "<h2>Which methods reveal it</h2>",
        "<p>Artifact mass: share of positive relevance inside the artifact mask; top-k IoU: IoU of the map's |A| "
        "highest voxels with the artifact; detection AUC: artifact mass as a detector of the confounded model's maps "
        "against the clean model's maps of the same images; effect Spearman: rank correlation between artifact mass "
        "and the measured |effect| of the artifact, over both models' maps.</p>",
        _table(*methods_rows(result)),
    ]
    for name, (title, data) in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(name)}' style='max-width:100%' "
                     f"src='data:image/png;base64,{data}'>")
    t = result["timing"]
    peak = result.get("peak_rss_bytes")
    parts.append(f"<p>Time: {t.get('total_s', 0):.0f} s in all ({', '.join(f'{k} {v:.0f} s' for k, v in t.items())})"
                 + (f"; peak memory {peak / 2**30:.2f} GiB" if peak else "") + ".</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_masks(out: Path, ds: Any, spec: Any, finding: Any, case_ids: Sequence[str]) -> list[str]:
    """``masks/CASE.nii.gz`` (classification) or ``masks/CASE_swapped.nii.gz`` + ``masks/CASE_training.nii.gz``
    (segmentation): each held-out case's artifact mask as uint8 in the case's geometry (``CASE``: the case id's
    :func:`mask_stems` stem; the ``mask`` column of ``interventions.csv`` names each case's first file)."""
    from ..io import write_volume
    from .confound import draw_case

    by_id = {c.case_id: c for c in ds.cases}
    written = []
    modes = [("", "added")] if finding.task == "classification" else [("_swapped", "swapped"), ("_training", "train")]
    stems = mask_stems(case_ids)
    for cid in case_ids:
        for suffix, mode in modes:
            d = draw_case(by_id[cid], spec, finding, mode)
            assert d.mask is not None
            path = out / "masks" / f"{stems[cid]}{suffix}.nii.gz"
            write_volume(d.image.with_array(d.mask[None].astype(np.uint8), channel_names=["artifact"]), path)
            written.append(str(path))
    return written


def write_shortcut_outputs(out: Path, result: dict[str, Any], records: list[dict[str, Any]],
                           rows: list[dict[str, Any]], examples: dict[str, Any], ds: Any, spec: Any, finding: Any,
                           fold_of: dict[str, int]) -> dict[str, str]:
    """Write every output of a shortcut run as one set; returns name → path."""
    from ..io import atomic_path, write_json
    from ..outputs import command_outputs

    methods = list(result["settings"]["methods"])
    with command_outputs():
        figures: dict[str, tuple[str, str]] = {}
        if examples:
            ex = next(iter(examples.values()))
            title = (f"case {ex['case_id']} (the largest measured effect on the confounded model)"
                     + (f", label {ex['label']}" if ex["label"] is not None else ""))
            figures["examples"] = ("Example maps of both models", png_data(example_figure(examples, methods, title)))
        figures["mass_vs_effect"] = ("Artifact mass against the measured effect",
                                     png_data(scatter_figure(rows, methods)))
        for name, (_, data) in figures.items():
            with atomic_path(out / "figures" / f"{name}.png") as tmp:
                tmp.write_bytes(base64.b64decode(data))
        masks = write_masks(out, ds, spec, finding, sorted(fold_of))
        write_csv(out / "shortcut.csv", rows, CASE_COLUMNS)
        stems = mask_stems(sorted(fold_of))
        first = "" if finding.task == "classification" else "_swapped"
        write_csv(out / "interventions.csv", [{**r, "mask": f"masks/{stems[r['case_id']]}{first}.nii.gz"}
                                              for r in records], INTERVENTION_COLUMNS)
        write_json(result, out / "shortcut.json")
        with atomic_path(out / "report.html") as tmp:
            tmp.write_text(render_html(result, figures))
    return {"json": str(out / "shortcut.json"), "csv": str(out / "shortcut.csv"),
            "interventions": str(out / "interventions.csv"), "report": str(out / "report.html"),
            "masks": str(out / "masks"), "n_masks": str(len(masks))}


__all__ = ["CASE_COLUMNS", "INTERVENTION_COLUMNS", "example_figure", "mask_stems", "render_html", "safe_name",
           "scatter_figure", "write_csv", "write_masks", "write_shortcut_outputs"]
