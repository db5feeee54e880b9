"""``tradeoff``: what does explainability cost in accuracy? One model per right-for-the-right-reasons weight λ.

For each weight in ``--weights`` a model is trained on the same folds and seeds through ``train`` with
``--explanation-loss rrr --explanation-weight λ --explanation-mask annotation|artifact``
(:mod:`MedXAILib.training.explanation_loss`; λ = 0 is plain training, so ``tradeoff`` run in a ``shortcut``
folder reuses its confounded models). Each fold model is then measured on its held-out cases:

- accuracy: AUC (segmentation: mean Dice) on clean images and, with a planted artifact, on the swapped images
  (:mod:`.intervention`);
- per method, on the explained cases (the image with the artifact when there is one): its localisation (relevance
  mass inside the finding's annotation — the boxes of a positive case, the lesion of a segmentation — where one
  exists), its faithfulness (deletion and insertion AUC, :func:`MedXAILib.quality.deletion_insertion`) and its
  artifact mass.

``tradeoff.csv`` has one row per weight and fold (``weight, fold, auc, auc_swapped, n_cases`` or the ``dice``
columns, then ``METHOD_relevance_mass, METHOD_deletion_auc, METHOD_insertion_auc, METHOD_artifact_mass`` per method,
means over the fold's explained cases); ``tradeoff.json`` holds the settings and the mean ± SD over folds;
``tradeoff.png`` plots accuracy against the weight and against explanation quality with fold-wise error bars.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, no_progress, scaled
from .runner import ShortcutSettings, check_shortcut, explain_case, explained_cases, model_folder, train_config

QUALITY = ("relevance_mass", "deletion_auc", "insertion_auc", "artifact_mass")
FORMAT = "medxai-tradeoff"


@dataclass
class TradeoffSettings(ShortcutSettings):
    """A trade-off run: the shortcut options (``artifact`` may be None) plus the weights and the allowed region.

    Attributes:
        weights: the λ values (≥ 0). explanation_mask: ``annotation`` or ``artifact``.
        faithfulness_steps: deletion / insertion steps per map.
        Others: as :class:`~MedXAILib.shortcut.runner.ShortcutSettings`.
    """

    weights: list[float] = field(default_factory=lambda: [0.0, 1.0, 10.0, 100.0])
    explanation_mask: str = "artifact"
    faithfulness_steps: int = 10


def check_tradeoff(s: TradeoffSettings) -> tuple[Any, Any, Any]:
    """Refuse a trade-off run that cannot work, before anything is written (see :func:`check_shortcut`)."""
    from .confound import check_annotations, confound

    weights = [float(w) for w in s.weights]
    if not weights or any(not (math.isfinite(w) and w >= 0) for w in weights):
        raise InputError(f"--weights must be numbers ≥ 0; got {s.weights}")
    if len(set(weights)) != len(weights):
        raise InputError(f"--weights lists a weight twice: {s.weights}")
    names = [f"{w:g}" for w in weights]  # the model folders (…-w{λ:g}) and the summary keys
    if len(set(names)) != len(names):
        same = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"--weights {s.weights}: weights that agree to 6 significant digits would share one model "
                         f"folder and one row (w{same[0]}); give weights that differ within 6 digits")
    if s.explanation_mask not in ("annotation", "artifact"):
        raise InputError(f"--explanation-mask must be annotation or artifact; got {s.explanation_mask!r}")
    if s.explanation_mask == "artifact" and not s.artifact:
        raise InputError("--explanation-mask artifact needs a planted artifact (--artifact tag|patch|intensity)")
    if int(s.faithfulness_steps) < 1:
        raise InputError(f"--faithfulness-steps must be at least 1; got {s.faithfulness_steps}")
    ds, finding, spec = check_shortcut(s, s.methods)
    if s.explanation_mask == "annotation" and any(w > 0 for w in weights):
        check_annotations(confound(ds, None, finding, "clean"), finding)
    return ds, finding, spec


def _annotation(d: Any, finding: Any, case: Any) -> np.ndarray | None:
    """The finding's annotation on the explained image: boxes of a positive case, the lesion of a segmentation."""
    from ..training.explanation_loss import box_region
    from .confound import finding_region

    if finding.task == "segmentation":
        region = finding_region(d.truth, finding)
        return region if region.any() else None
    if not d.label:
        return None
    boxes = [b for k, b in d.boxes.items() if k.lower() == finding.name.lower()]
    ref = case.meta.get("box_image_size")
    if ref:
        sy, sx = d.image.shape[1] / ref[0], d.image.shape[2] / ref[1]
        boxes = [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in boxes]
    return box_region(d.image.shape, boxes) if boxes else None


def _quality_scorer(finding: Any, case: Any, steps: int, seed: int) -> Any:
    from ..metrics.localisation import relevance_mass
    from ..quality.faithfulness import deletion_insertion

    def score(model: Any, d: Any, heat: np.ndarray, target: Any) -> dict[str, Any]:
        region = _annotation(d, finding, case)
        f = deletion_insertion(model, d.image, heat, target, steps=steps, random_control=False, seed=seed)
        return {"relevance_mass": relevance_mass(heat, region) if region is not None else None,
                "deletion_auc": f.get("deletion_auc"), "insertion_auc": f.get("insertion_auc")}

    return score


def _mean_sd(values: Sequence[Any]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def run_tradeoff(settings: TradeoffSettings, progress: ProgressCallback = no_progress) -> dict[str, Any]:
    """Train one model per weight and measure accuracy and explanation quality per fold (module docstring)."""
    from ..cluster import set_torch_threads
    from ..models import load_model
    from ..resources import peak_rss_bytes
    from ..splits import read_splits
    from ..training import cross_validate
    from .intervention import RELIANCE_KEYS, measure_case, summarise_reliance

    t_start = time.perf_counter()
    ds, finding, spec = check_tradeoff(settings)
    out = Path(settings.output)
    role = "confounded" if spec is not None else "clean"
    weights = [float(w) for w in settings.weights]
    metric = RELIANCE_KEYS[finding.task][0]
    by_id = {c.case_id: c for c in ds.cases}
    rows: list[dict[str, Any]] = []
    maps: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    span = 1.0 / len(weights)
    for n, w in enumerate(weights):
        sub = scaled(progress, n * span, (n + 0.6) * span)
        folder = model_folder(out, role, w, settings.explanation_mask)
        t0 = time.perf_counter()
        cross_validate(train_config(settings, role, folder, w, settings.explanation_mask), sub)
        timing[f"train_w{w:g}_s"] = round(time.perf_counter() - t0, 2)
        folds = read_splits(folder / "splits.json")
        explained = set(explained_cases(ds, finding, folds, int(settings.explain_cases), settings.seed))
        set_torch_threads(settings.threads)
        t0 = time.perf_counter()
        for fold in folds:
            model = load_model(folder / f"fold{fold.index}", device=settings.device)
            records = [measure_case(model, role, by_id[c], spec, finding, fold.index) for c in fold.test] \
                if spec is not None else [_clean_record(model, by_id[c], finding, fold.index) for c in fold.test]
            rel = summarise_reliance(records, finding.task)[role]
            row: dict[str, Any] = {"weight": w, "fold": fold.index, metric: rel[metric],
                                   f"{metric}_swapped": rel.get(f"{metric}_swapped") if spec is not None else None,
                                   "n_cases": rel["n_cases"]}
            effect = {r["case_id"]: r.get("effect") for r in records}
            for cid in [c for c in fold.test if c in explained]:
                r, _ = explain_case(model, role, by_id[cid], spec, finding, settings.methods, settings.params,
                                    effect.get(cid), fold.index,
                                    extra=_quality_scorer(finding, by_id[cid], settings.faithfulness_steps,
                                                          settings.seed))
                maps += [{**x, "weight": w} for x in r]
            for m in settings.methods:
                mine = [x for x in maps if x["weight"] == w and x["fold"] == fold.index and x["method"] == m
                        and x.get("status") == "ok"]
                for q in QUALITY:
                    row[f"{m}_{q}"] = _mean_sd([x.get(q) for x in mine])[0]
            rows.append(row)
            progress((n + 0.6 + 0.4 * (fold.index + 1) / len(folds)) * span, f"weight {w:g}: fold {fold.index} scored")
        timing[f"measure_w{w:g}_s"] = round(time.perf_counter() - t0, 2)
    summary = {}
    for w in weights:
        mine = [r for r in rows if r["weight"] == w]
        keys = [k for k in mine[0] if k not in ("weight", "fold", "n_cases")]
        summary[f"{w:g}"] = {k: dict(zip(("mean", "sd"), _mean_sd([r[k] for r in mine]))) for k in keys}
    timing["total_s"] = round(time.perf_counter() - t_start, 2)
    result = {"format": FORMAT, "version": 1, "settings": settings.as_dict(), "metric": metric, "role": role,
              "rows": rows, "summary": summary, "timing": timing, "peak_rss_bytes": peak_rss_bytes()}
    result["recovery"] = recovery(rows, metric) if spec is not None else None
    result["outputs"] = write_tradeoff_outputs(out, result, maps)
    progress(1.0, "tradeoff done")
    return result


def _clean_record(model: Any, case: Any, finding: Any, fold: int) -> dict[str, Any]:
    """Accuracy record of a case without a planted artifact (annotation-mask trade-off)."""
    from ..metrics.segmentation import dice
    from .confound import draw_case, finding_mask, finding_region
    from .intervention import finding_classes

    d = draw_case(case, None, finding, "clean")
    pred = model.predict(d.image)
    rec: dict[str, Any] = {"case_id": case.case_id, "fold": fold, "model": "clean"}
    if finding.task == "classification":
        p = float(pred.class_probabilities[finding_classes(model, finding)[0]])
        rec.update(label=int(d.label or 0), score_clean=p, score_swapped=p, score_confounded_data=p, effect=None)
    else:
        lesion = finding_region(d.truth, finding)
        dc = dice(finding_mask(pred.labels.array[0], finding), lesion)
        rec.update(dice_clean=dc, dice_swapped=dc, dice_confounded_data=dc, effect=None)
    return rec


def recovery(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """How much of the smallest weight's swapped loss the largest weight recovers (means over folds of the per-fold
    accuracies).

    ``loss = clean − swapped`` at the smallest weight; ``recovered = (swapped at the largest − swapped at the
    smallest) / loss``; also the clean accuracy each gives up.
    """
    weights = sorted({r["weight"] for r in rows})
    if len(weights) < 2:
        return None

    def mean(w: float, key: str) -> float | None:
        return _mean_sd([r[key] for r in rows if r["weight"] == w])[0]

    lo, hi = weights[0], weights[-1]
    a0, s0, a1, s1 = mean(lo, metric), mean(lo, f"{metric}_swapped"), mean(hi, metric), mean(hi, f"{metric}_swapped")
    if None in (a0, s0, a1, s1):
        return None
    loss = a0 - s0  # type: ignore[operator]
    return {"from_weight": lo, "to_weight": hi, "swapped_loss": loss, "swapped_gain": s1 - s0,  # type: ignore[operator]
            "recovered_fraction": (s1 - s0) / loss if loss > 0 else None,  # type: ignore[operator]
            "clean_change": a1 - a0}  # type: ignore[operator]


def write_tradeoff_outputs(out: Path, result: dict[str, Any], maps: list[dict[str, Any]]) -> dict[str, str]:
    """``tradeoff.csv``, ``tradeoff_maps.csv``, ``tradeoff.json`` and ``tradeoff.png``, written as one set."""
    from ..io import atomic_path, write_json
    from ..outputs import command_outputs
    from .report import write_csv

    metric = result["metric"]
    methods = result["settings"]["methods"]
    columns = ["weight", "fold", metric, f"{metric}_swapped", "n_cases"] + [f"{m}_{q}" for m in methods
                                                                           for q in QUALITY]
    with command_outputs():
        write_csv(out / "tradeoff.csv", result["rows"], columns)
        write_csv(out / "tradeoff_maps.csv", maps, ["weight", "case_id", "fold", "method", "label", "status", "effect",
                                                    *QUALITY, "topk_iou", "seconds", "error"])
        fig = tradeoff_figure(result)
        with atomic_path(out / "tradeoff.png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        write_json(result, out / "tradeoff.json")
    return {"csv": str(out / "tradeoff.csv"), "maps": str(out / "tradeoff_maps.csv"),
            "json": str(out / "tradeoff.json"), "figure": str(out / "tradeoff.png")}


def tradeoff_figure(result: dict[str, Any]) -> Any:
    """Left: accuracy (clean and swapped) against λ. Right: clean accuracy against explanation quality per method
    (1 − artifact mass with an artifact, else relevance mass in the annotation), one point per λ; error bars: SD over
    folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result["metric"]
    summ = result["summary"]
    weights = [float(w) for w in summ]
    xs = np.arange(len(weights))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in ((metric, f"{metric} (clean)"), (f"{metric}_swapped", f"{metric} (swapped)")):
        mean = [summ[f"{w:g}"].get(key, {}).get("mean") for w in weights]
        sd = [summ[f"{w:g}"].get(key, {}).get("sd") or 0.0 for w in weights]
        if any(v is not None for v in mean):
            ax0.errorbar(xs, [np.nan if v is None else v for v in mean], yerr=sd, marker="o", capsize=3, label=label)
    ax0.set_xticks(xs, [f"{w:g}" for w in weights])
    ax0.set_xlabel("explanation weight λ")
    ax0.set_ylabel(metric)
    ax0.legend(fontsize=8)
    use_artifact = result["settings"].get("artifact") is not None
    quality = "artifact_mass" if use_artifact else "relevance_mass"
    for m in result["settings"]["methods"]:
        qx, qsd, ay, asd, labels = [], [], [], [], []
        for w in weights:
            q = summ[f"{w:g}"].get(f"{m}_{quality}", {})
            a = summ[f"{w:g}"].get(metric, {})
            if q.get("mean") is None or a.get("mean") is None:
                continue
            qx.append(1.0 - q["mean"] if use_artifact else q["mean"])
            qsd.append(q.get("sd") or 0.0)
            ay.append(a["mean"])
            asd.append(a.get("sd") or 0.0)
            labels.append(f"λ={w:g}")
        if qx:
            ax1.errorbar(qx, ay, xerr=qsd, yerr=asd, marker="o", capsize=3, label=m)
            for x, y, t in zip(qx, ay, labels):
                ax1.annotate(t, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax1.set_xlabel("1 − artifact mass (explanation off the artifact)" if use_artifact
                   else "relevance mass in the annotation")
    ax1.set_ylabel(f"{metric} (clean test data)")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["QUALITY", "TradeoffSettings", "check_tradeoff", "recovery", "run_tradeoff", "tradeoff_figure"]
