"""K-fold, patient-level training of a user's own segmentation U-Net or image classifier (the ``train`` command).

For each fold ``k`` of :func:`MedXAILib.splits.patient_kfold` (the same folds ``benchmark`` uses, written to
``DIR/splits.json``), a fresh network is trained on the other folds and evaluated on fold ``k``; the fold is saved as
``DIR/fold{k}/model.json`` (a full :class:`~MedXAILib.model_description.ModelDescription`) + ``weights.pt``
(a plain ``state_dict``), so ``load_model("DIR/fold0")`` and ``--model DIR/fold0`` work with ``segment``,
``classify`` and ``explain``.

Data flow (one preprocessing for training and inference)::

    Case.load() ──► Volume (C, K, J, I) ──► Model(network, description).prepare()  (normalise + resample to the model
        grid; the very function inference calls) ──► array (C, *grid) float32, cached per case
    label map (1, K, J, I) ──► contiguous class indices (lookup of label_values) ──► nearest resample to the grid
        ──► (*grid) uint8
    training: random patches of ``patch`` voxels (segmentation; a foreground voxel is the patch centre with
        probability 2/3) or the whole grid (classification), random flips (segmentation), small intensity jitter
    validation: Model.predict(volume) on each held-out case, in the input geometry, scored with
        :func:`MedXAILib.metrics.segmentation.segmentation_metrics` or
        :func:`MedXAILib.metrics.classification.classification_metrics`

Losses: segmentation (softmax over exclusive labels) uses MONAI ``DiceCELoss`` (soft Dice + cross-entropy, one-hot
targets; Milletari et al. 2016, Isensee et al. 2021); multi-label classification uses binary cross-entropy with
logits. Optimiser AdamW, cosine learning-rate decay after a short linear warm-up.

Layouts: ``grid`` is ``(K, J, I)`` in 3D and ``(J, I)`` in 2D (tensor order, as the model description); spacings
in millimetres; time in seconds.

Resuming: a fold whose ``model.json`` records the same configuration fingerprint (dataset, task, folds, seed,
architecture, schedule, preprocessing, train/val case ids) and whose weights exist is not retrained. Folds are
written into a temporary folder and renamed into place, so a killed run never leaves a half-written fold.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, no_progress, scaled
from .config import CLS_METRICS, SEG_METRICS, TrainConfig
from .data import CaseCache, plan_training
from .fold import fingerprint, finished_fold, train_fold


# ---------------------------------------------------------------------------------------------------------------
# The whole cross-validation
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CrossValResult:
    """What :func:`cross_validate` did.

    Attributes:
        output: the output folder.
        task: segmentation or classification.
        folds: one ``training`` block per fold (as stored in ``fold{k}/model.json``), plus ``skipped``.
        summary: label → metric → ``{"mean", "sd", "n", "values"}`` over folds (sd: sample sd, ddof = 1).
        notes: sentences for the user.
    """

    output: Path
    task: str
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, Any]]]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"output": str(self.output)}


def summarise(task: str, folds: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean ± sd over folds of each fold metric (None values left out; ``n`` says how many folds counted)."""
    metrics = SEG_METRICS if task == "segmentation" else CLS_METRICS
    labels: list[str] = []
    for f in folds:
        for name in f["metrics"]["labels"]:
            if name not in labels:
                labels.append(name)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in labels:
        out[name] = {}
        for m in metrics:
            values = [f["metrics"]["labels"].get(name, {}).get(m) for f in folds]
            vals = [float(v) for v in values if v is not None]
            out[name][m] = {
                "mean": float(np.mean(vals)) if vals else None,
                "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                "n": len(vals),
                "values": values,
            }
    return out


def output_files(folder: Path) -> list[Path]:
    """Every file :func:`cross_validate` writes under ``folder``: ``splits.json``, ``folds.json``, ``summary.csv``
    and the files of each ``fold{k}`` folder (a fold folder is replaced as a whole); the fold numbers and file names
    inside a fold are :data:`~MedXAILib.output_names.WILDCARD`."""
    from ..output_names import WILDCARD, name_with

    fold = folder / name_with("fold", WILDCARD)
    return [folder / "splits.json", folder / "folds.json", folder / "summary.csv", fold / WILDCARD]


def write_summary_csv(result: CrossValResult, path: Path) -> Path:
    """``summary.csv``: one row per label × metric: ``label, metric, mean, sd, n_folds, fold0, fold1, ...``."""
    import csv
    import io as _io

    from ..io import atomic_path

    buf = _io.StringIO()
    w = csv.writer(buf)
    k = len(result.folds)
    w.writerow(["label", "metric", "mean", "sd", "n_folds"] + [f"fold{i}" for i in range(k)])
    for label, per in result.summary.items():
        for metric, s in per.items():
            w.writerow([label, metric, _cell(s["mean"]), _cell(s["sd"]), s["n"]] + [_cell(v) for v in s["values"]])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def _cell(v: float | None) -> str:
    return "" if v is None else f"{float(v):.6g}"


def format_table(result: CrossValResult) -> str:
    """The summary as a fixed-width text table (mean ± sd over folds)."""
    metrics = SEG_METRICS if result.task == "segmentation" else CLS_METRICS
    head = ["label"] + list(metrics)
    rows = []
    for label, per in result.summary.items():
        cells = [label]
        for m in metrics:
            s = per[m]
            if s["mean"] is None:
                cells.append("n/a")
            elif s["sd"] is None:
                cells.append(f"{s['mean']:.3f}")
            else:
                cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _fold_progress(progress: ProgressCallback, k: int, n: int) -> ProgressCallback:
    return scaled(progress, 0.02 + 0.97 * k / n, 0.02 + 0.97 * (k + 1) / n)


def cross_validate(config: TrainConfig, progress: ProgressCallback = no_progress,
                   cluster: str | None = None) -> CrossValResult:
    """Train ``config.folds`` models with patient-level folds and write ``DIR`` (see the module docstring).

    Writes ``DIR/fold{k}/{model.json,weights.pt}`` as each fold is trained, then ``DIR/splits.json``,
    ``DIR/folds.json`` and ``DIR/summary.csv``. Everything is checked (the dataset, the options, the cluster address
    and that its scheduler answers) before the first file is written.
    Folds already trained with the same configuration are kept (resume). With ``cluster`` (``local:N`` or a Dask
    scheduler address) the folds to train run in parallel, one per worker (:mod:`.distributed`); the folds, seeds
    and thread count are the same, so are the weights and metrics.

    Raises:
        InputError: the dataset or an option does not fit (no truth for the task, fewer patients than folds, ...).
    """
    from ..cluster import parse_address, session
    from ..io import write_json
    from ..outputs import make_folder
    from ..splits import patient_kfold, write_splits

    if cluster is not None:
        parse_address(cluster)  # before anything is read or written
    cache = CaseCache()
    progress(0.0, "reading the dataset")
    plan = plan_training(config, cache)
    folds = patient_kfold(plan.dataset.cases, config.folds, config.seed)
    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out}: exists and is not a folder")
    records: list[dict[str, Any]] = []
    to_train: list[tuple[Any, str]] = []
    notes = list(plan.notes)
    for fold in folds:
        fp = fingerprint(config, plan, fold.train, fold.test)
        done = finished_fold(out / f"fold{fold.index}", fp)
        if done is None:
            to_train.append((fold, fp))
        else:
            _fold_progress(progress, fold.index, len(folds))(1.0, f"fold {fold.index}: already trained, kept")
            records.append({**done, "skipped": True})
    # an unreachable scheduler is refused here, before the first file is written
    with session(cluster if to_train else None, device=config.device, worker_threads=config.threads) as client:
        make_folder(out)
        for fold, _fp in to_train:
            for stale in out.glob(f".fold{fold.index}.*.part"):  # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
            if client is None:
                training = train_fold(config, plan, fold, cache, _fold_progress(progress, fold.index, len(folds)))
                records.append({**training, "skipped": False})
        if client is not None:
            from .distributed import train_on_cluster

            train_on_cluster(config, to_train, str(cluster),
                             lambda _k, training: records.append({**training, "skipped": False}), progress,
                             client=client)
    records.sort(key=lambda r: int(r["fold"]))
    write_splits(folds, out / "splits.json")  # with the summaries: a run whose folds all failed leaves none
    extra = sorted(
        (p.name for p in out.glob("fold*") if p.is_dir() and p.name[4:].isdigit() and int(p.name[4:]) >= len(folds)),
        key=lambda n: int(n[4:]),
    )
    if extra:
        notes.append(f"{', '.join(extra)} in {out} come from an earlier run with more folds; they are not part of "
                     "this cross-validation.")
    summary = summarise(config.task, records)
    result = CrossValResult(out, config.task, records, summary, notes)
    write_json(
        {
            "format": "medxai-train-folds",
            "version": 1,
            "command": config.command(),
            "task": config.task,
            "dataset": config.dataset,
            "seed": config.seed,
            "k": config.folds,
            "architecture": plan.architecture,
            "preprocessing": plan.preprocessing,
            "patch_size": plan.patch,
            "class_names": plan.class_names,
            "label_values": plan.label_values,
            "regions": plan.regions,
            "folds": [
                {key: r[key] for key in ("fold", "train_case_ids", "val_case_ids", "val_patients", "metrics",
                                         "train_seconds", "eval_seconds", "skipped", "fingerprint")}
                | {"model": f"fold{r['fold']}"}
                for r in records
            ],
            "summary": summary,
            "notes": notes,
        },
        out / "folds.json",
    )
    write_summary_csv(result, out / "summary.csv")
    progress(1.0, f"trained {len(folds)} folds into {out}")
    return result
