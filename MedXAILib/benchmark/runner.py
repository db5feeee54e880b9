"""Running a benchmark: plan the (case, method) units, run the missing ones, in one process, a process pool or
on a Dask cluster.

A unit is a pure function of the settings and its (case, method): :func:`compute_unit` reads the case, predicts,
explains and scores, and returns the record (with the ``worker`` that computed it) and the heat map;
:func:`commit_unit` writes them to the :class:`~.store.UnitStore`. It needs nothing from the process that planned it
but the settings dict (JSON-ready), so the same call is shipped to a Dask worker unchanged (:mod:`.distributed`,
where the client commits). Locally, :func:`run_unit` computes and commits in the worker; ``workers > 1`` uses a
``ProcessPoolExecutor`` with the ``spawn`` start method (safe with torch threads). Each process loads the dataset
listing and the model once (:func:`_context`).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, MedXAIError
from ..progress import ProgressCallback, no_progress
from .store import UnitStore

DEFAULT_METRICS = ("localisation", "faithfulness", "complexity")
SETTINGS_FILE = "benchmark.json"
#: Settings a rerun in the same folder must share (methods may be added).
FIXED_SETTINGS = ("dataset", "model", "metrics", "folds", "seed", "steps", "baseline", "blur_sigma_mm",
                  "stability_snr_db", "stability_rotations_deg", "stability_scales", "sanity_stages", "msfi")


@dataclass
class BenchmarkSettings:
    """Everything a unit needs (JSON-ready, so it can travel to another process or machine).

    Attributes:
        dataset: ``KIND:PATH`` spec. model: built-in name or model path. methods: method names.
        metrics: families (localisation, complexity, faithfulness, stability, sanity).
        folds: K of the patient-level K-fold. seed: folds, tie-breaking, noise, randomisation.
        output: the output folder. steps / baseline / blur_sigma_mm / batch_size: faithfulness options.
        stability_*: perturbations. sanity_stages: cascade stages. threads: torch threads per worker.
        params: per-method parameters, method → {key: value}.
        msfi: modality → clinician importance for the ``msfi`` metric family (:mod:`MedXAILib.metrics.msfi`).
    """

    dataset: str
    model: str
    methods: list[str]
    output: str
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    folds: int = 5
    seed: int = 0
    steps: int = 10
    baseline: str = "blur"
    blur_sigma_mm: float = 8.0
    batch_size: int = 8
    stability_snr_db: list[float] = field(default_factory=lambda: [20.0, 30.0])
    stability_rotations_deg: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    stability_scales: list[float] = field(default_factory=lambda: [0.9, 1.1])
    sanity_stages: int = 3
    threads: int = 1
    device: str = "cpu"
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    msfi: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- per-process context ---------------------------------------------------------------------------------------
_CTX: dict[str, Any] = {}


TRAIN_FOLDS_FORMAT = "medxai-train-folds"


def train_run(spec: str) -> Path | None:
    """The ``train`` output folder when ``spec`` is one (it holds ``folds.json``), else None.

    Such a ``--model`` means one model per fold: a case of test fold k is explained with ``DIR/fold{k}``, the
    model that never saw it (the cross-validation protocol).
    """
    folder = Path(spec)
    marker = folder / "folds.json"
    if not marker.is_file():
        return None
    import json

    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return folder if isinstance(data, dict) and data.get("format") == TRAIN_FOLDS_FORMAT else None


def _context(settings: dict[str, Any]) -> dict[str, Any]:
    """Dataset listing and model(s), loaded once per process (keyed by dataset, model and device)."""
    key = (settings["dataset"], settings["model"], settings.get("device", "cpu"))
    if _CTX.get("key") != key:
        from ..datasets import open_dataset

        _CTX.clear()
        _CTX.update(key=key, dataset=open_dataset(settings["dataset"]), per_fold=train_run(settings["model"]),
                    models={})
        _model_for(_CTX, settings, 0)
    return _CTX


def _model_for(ctx: dict[str, Any], settings: dict[str, Any], fold: int) -> Any:
    """The model that explains a case of test fold ``fold`` (the same model for every fold unless per-fold)."""
    from ..models import load_model

    folder = ctx["per_fold"]
    key = int(fold) if folder is not None else 0
    if key not in ctx["models"]:
        if folder is not None:
            ctx["models"].clear()  # one fold's model at a time per process
        ctx["models"][key] = load_model(folder / f"fold{key}" if folder is not None else settings["model"],
                                        device=settings.get("device", "cpu"))
    return ctx["models"][key]


def _init_worker(threads: int) -> None:
    from ..cluster import set_torch_threads

    set_torch_threads(threads)


def _load_case(ctx: dict[str, Any], case_id: str) -> tuple[Any, Any, Any]:
    """``(case, image, truth)`` with the last case kept in memory (units of one case usually follow each other)."""
    cached = ctx.get("case")
    if cached is not None and cached[0].case_id == case_id:
        return cached
    case = ctx["dataset"][case_id]
    image, truth = case.load()
    ctx["case"] = (case, image, truth)
    return ctx["case"]


# ---- task performance and targets ------------------------------------------------------------------------------
def segmentation_task(prediction: Any, reference: Any) -> dict[str, Any]:
    """Dice, IoU and HD95 (mm) of the whole predicted foreground against the reference, and mean Dice over the
    reference's labels."""
    from ..metrics.segmentation import segmentation_metrics

    pred, ref = prediction.labels, reference
    present = sorted({int(v) for v in np.unique(pred.array) if v} | {int(v) for v in np.unique(ref.array) if v})
    if not present:
        return {"task_dice": None, "task_iou": None, "task_hd95_mm": None, "task_dice_labels_mean": None}
    scores = segmentation_metrics(pred, ref, labels=present, regions={"whole": present})
    whole = scores["whole"]
    ref_labels = [str(v) for v in np.unique(ref.array) if v]
    dices = [scores[k]["dice"] for k in ref_labels if k in scores and scores[k]["dice"] is not None]
    return {
        "task_dice": whole["dice"],
        "task_iou": whole["iou"],
        "task_hd95_mm": whole["hd95_mm"],
        "task_dice_labels_mean": float(np.mean(dices)) if dices else None,
    }


def _classification_target(model: Any, prediction: Any, truth: dict[str, int] | None) -> tuple[int, str]:
    """The explained class: the first finding that is present in the truth and known to the model, else the top."""
    names = [n.lower() for n in model.description.class_names]
    for finding, value in (truth or {}).items():
        if int(value) and finding.lower() in names:
            return names.index(finding.lower()), "first positive finding"
    return int(np.argmax(prediction.class_probabilities)), "top predicted class"


def _box_region(case: Any, image: Any, finding: str) -> np.ndarray | None:
    boxes = {k.lower(): v for k, v in case.boxes_for(image.shape[1:]).items()} if case.boxes else {}
    box = boxes.get(finding.lower())
    if box is None:
        return None
    x, y, w, h = box
    region = np.zeros(image.shape, dtype=bool)
    region[0, int(round(y)) : int(round(y + h)), int(round(x)) : int(round(x + w))] = True
    return region if region.any() else None


# ---- one unit --------------------------------------------------------------------------------------------------
def compute_unit(
    settings: dict[str, Any], case_id: str, method: str, fold: int
) -> tuple[dict[str, Any], np.ndarray | None, dict[str, Any] | None]:
    """Compute one (case, method) unit without writing anything.

    Returns ``(record, heat map (K, J, I) or None on error, control)``: ``control`` is the case's random-order
    faithfulness control when this unit had to compute it (it was not in the store yet), else None; the caller
    commits all three (:func:`commit_unit`). The store is only read (the cached control), so a Dask worker needs no
    write access to the output. A user error (:class:`MedXAIError`: unreadable case, no target…) or a bug becomes a
    record with ``status = "error"`` and its message: nothing is raised, so the unit is never retried in a loop.
    """
    from ..cluster import worker_label

    store = UnitStore(settings["output"])
    t_start = time.perf_counter()
    record: dict[str, Any] = {"case_id": case_id, "method": method, "fold": int(fold), "worker": worker_label()}
    heat: np.ndarray | None = None
    new_control: dict[str, Any] | None = None
    try:
        from ..quality import evaluate_explanation
        from ..quality.stability import explain_map
        from ..targets import Target, resolve_target

        ctx = _context(settings)
        model = _model_for(ctx, settings, fold)
        case, image, truth = _load_case(ctx, case_id)
        record["patient_id"] = case.patient_id
        t0 = time.perf_counter()
        prediction = model.predict(image)
        record["seconds_predict"] = round(time.perf_counter() - t0, 4)
        region = None
        if model.task == "segmentation":
            if truth is not None and hasattr(truth, "array"):
                record.update(segmentation_task(prediction, truth))
                region = truth.array[0] > 0
            try:
                target = resolve_target(model, image, prediction=prediction)
            except MedXAIError:
                if region is None or not region.any():
                    raise
                target = Target("region", 1, model.description.class_names[1], region=region)
                record["target_note"] = "no predicted foreground: the reference region, class 1"
        else:
            idx, why = _classification_target(model, prediction, truth if isinstance(truth, dict) else None)
            target = Target("class", idx, model.description.class_names[idx])
            record["target_note"] = why
            probs = prediction.class_probabilities
            record["class_probabilities"] = {n: float(p) for n, p in zip(model.description.class_names, probs)}
            if isinstance(truth, dict):
                lower = {k.lower(): int(v) for k, v in truth.items()}
                record["class_truth"] = {n: lower.get(n.lower()) for n in model.description.class_names}
            region = _box_region(case, image, target.class_name)
        record["target"] = target.describe()
        params = dict(settings.get("params", {}).get(method, {}))
        t0 = time.perf_counter()
        channel_maps = None
        if "msfi" in settings["metrics"] and method != "random":  # MSFI needs the per-channel maps
            from ..explain import explain

            expl = explain(model, image, method, target=target, params=params)
            heat = expl.heatmap.array[0].astype(np.float64)
            channel_maps = expl.channel_maps.array if expl.channel_maps is not None else None
        else:
            heat = explain_map(model, image, method, target, params)
        record["seconds_explain"] = round(time.perf_counter() - t0, 4)
        if "msfi" in settings["metrics"] and region is not None and settings.get("msfi"):
            from ..metrics.msfi import msfi

            found = msfi(channel_maps if channel_maps is not None else heat[None],
                         list(model.description.channel_names), settings["msfi"], region)
            record.update(msfi=found["msfi"], msfi_maps=found["msfi_maps"],
                          **{f"msfi_portion_{m}": p for m, p in found["msfi_portions"].items()})
        t0 = time.perf_counter()
        control = store.read_control(case_id) if "faithfulness" in settings["metrics"] else None
        quality = evaluate_explanation(
            model, image, heat, region, settings["metrics"], method=method, target=target, params=params,
            seed=int(settings.get("seed", 0)),
            faithfulness_options={"steps": settings["steps"], "baseline": settings["baseline"],
                                  "blur_sigma_mm": settings["blur_sigma_mm"], "batch_size": settings["batch_size"],
                                  "random_control": control is None},
            stability_options={"snr_db": settings["stability_snr_db"],
                               "rotations_deg": settings["stability_rotations_deg"],
                               "scales": settings["stability_scales"]},
            sanity_options={"n_stages": settings["sanity_stages"]},
        )
        record["seconds_metrics"] = round(time.perf_counter() - t0, 4)
        if "faithfulness" in settings["metrics"]:
            if control is None:
                control = new_control = {k: v for k, v in quality.items() if k.endswith("_random")}
            quality.update(control)
        record["quality_seconds"] = quality.pop("quality_seconds", {})
        record.update(quality)
        record["status"] = "ok"
    except MedXAIError as exc:
        record.update(status="error", error=str(exc))
    except Exception as exc:  # a bug: keep the traceback in the record, let the rest of the cohort run
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    record["seconds"] = round(time.perf_counter() - t_start, 4)
    if record["status"] != "ok":
        heat, new_control = None, None
    return record, heat, new_control


def commit_unit(store: UnitStore, record: dict[str, Any], heat: np.ndarray | None,
                control: dict[str, Any] | None = None, map_npz: bytes | None = None) -> None:
    """Write a computed unit: the case's control (when new and not yet stored), the map (an array, or ``map_npz``
    already encoded by :meth:`UnitStore.encode_map`), then the record."""
    if control and store.read_control(str(record["case_id"])) is None:
        store.write_control(str(record["case_id"]), control)
    ok = record.get("status") == "ok"
    store.write(record, heat if ok else None, map_npz if ok else None)


def run_unit(settings: dict[str, Any], case_id: str, method: str, fold: int) -> dict[str, Any]:
    """Compute and commit one (case, method) unit; returns its record (the stored one if already finished)."""
    store = UnitStore(settings["output"])
    done = store.read(case_id, method)
    if done is not None and done.get("status") == "ok":
        return done
    record, heat, control = compute_unit(settings, case_id, method, fold)
    commit_unit(store, record, heat, control)
    return record


# ---- planning and running --------------------------------------------------------------------------------------
def settings_to_write(output: Path, settings: BenchmarkSettings) -> dict[str, Any]:
    """What ``benchmark.json`` will hold: the settings, or, for a rerun in the same folder, the stored ones with the
    new methods added (nothing is written here).

    Raises:
        InputError: the folder holds a run with other fixed settings (:data:`FIXED_SETTINGS`).
    """
    path = output / SETTINGS_FILE
    new = settings.as_dict()
    if path.exists():
        import json

        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        old = old if isinstance(old, dict) else {}
        diff = [k for k in FIXED_SETTINGS if old.get(k) != new.get(k)]
        if diff:
            raise InputError(
                f"{output} holds a benchmark run with different {', '.join(diff)} "
                f"({', '.join(f'{k}={old.get(k)!r}' for k in diff)}); rerun with the same settings to resume, "
                "or choose another --output"
            )
        stored = old.get("methods") if isinstance(old.get("methods"), list) else []
        new["methods"] = list(dict.fromkeys([*map(str, stored), *settings.methods]))
    return new


def check_settings(output: Path, settings: BenchmarkSettings) -> None:
    """Write ``benchmark.json``, or check a rerun uses the same settings (methods may be added)."""
    from ..io import write_json

    write_json(settings_to_write(output, settings), output / SETTINGS_FILE)


def plan(settings: BenchmarkSettings) -> tuple[Any, list[Any], list[tuple[str, str, int]]]:
    """``(dataset, folds, units)``: units = cases × methods. Nothing is written: the folds are checked against an
    existing ``splits.json`` (:func:`run_benchmark` writes it when there is none)."""
    from ..datasets import open_dataset
    from ..splits import patient_kfold, read_splits

    dataset = open_dataset(settings.dataset)
    out = Path(settings.output)
    split_file = out / "splits.json"
    folds = patient_kfold(dataset, settings.folds, settings.seed)
    if split_file.exists():
        stored = read_splits(split_file)
        if [f.test for f in stored] != [f.test for f in folds]:
            raise InputError(f"{split_file} does not match the folds of this dataset and seed; use another --output")
    trained = train_run(settings.model)
    if trained is not None:
        theirs = read_splits(trained / "splits.json") if (trained / "splits.json").is_file() else []
        if [sorted(f.test) for f in theirs] != [sorted(f.test) for f in folds]:
            raise InputError(
                f"--model {trained} holds one model per fold of a train run whose folds differ from this benchmark's "
                f"({settings.folds} folds, seed {settings.seed}); use the --folds and --seed of that train run"
            )
    fold_of = {cid: f.index for f in folds for cid in f.test}
    units = [(c.case_id, m, fold_of[c.case_id]) for c in dataset for m in settings.methods]
    return dataset, folds, units


def run_benchmark(
    settings: BenchmarkSettings,
    workers: int = 1,
    progress: ProgressCallback = no_progress,
    on_unit: Callable[[dict[str, Any]], None] | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Run every missing unit, then write ``cases.csv``, ``summary.csv``, ``folds.csv`` and ``report.html``.

    Units run in this process (``workers`` 1), a local process pool (``workers`` > 1), or on a Dask cluster
    (``cluster`` = ``local:N`` or a scheduler address; see :mod:`.distributed`): there the records come back to
    this process, which commits them to the store.

    Returns ``{"units": N, "computed": n, "skipped": N − n, "errors": e, "seconds": s, "outputs": {...},
    "workers": [labels of the workers that computed units]}``.
    """
    from ..cluster import parse_address, session
    from ..explain import available_methods

    start = time.perf_counter()
    if cluster is not None:
        parse_address(cluster)  # a malformed address fails before anything is loaded or written
    known = set(available_methods()) | {"random"}
    unknown = [m for m in settings.methods if m not in known]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}")
    out = Path(settings.output)
    stored_settings = settings_to_write(out, settings)
    # fail early (unknown model, unreadable dataset, other folds) before anything is written; a cluster's GPUs are
    # on its workers
    _context({**settings.as_dict(), "device": "cpu" if cluster else settings.device})
    _dataset, folds, units = plan(settings)
    store = UnitStore(out)
    pending = [u for u in units if not store.has(u[0], u[1])]
    # an unreachable scheduler, or workers without MedXAI, are refused here, before the first file is written
    with session(cluster if pending else None, device=settings.device, worker_threads=settings.threads) as client:
        _write_plan(out, stored_settings, folds, store)
        return _run_units(settings, units, pending, workers, progress, on_unit, cluster, client, start)


def _write_plan(out: Path, stored_settings: dict[str, Any], folds: list[Any], store: UnitStore) -> None:
    """The run's folder: ``benchmark.json``, ``splits.json`` (when new) and the store's folders."""
    from ..io import write_json
    from ..outputs import make_folder
    from ..splits import write_splits

    make_folder(out)
    write_json(stored_settings, out / SETTINGS_FILE)
    if not (out / "splits.json").exists():
        write_splits(folds, out / "splits.json")
    store.prepare()


def _run_units(settings: BenchmarkSettings, units: list[tuple[str, str, int]], pending: list[tuple[str, str, int]],
               workers: int, progress: ProgressCallback, on_unit: Callable[[dict[str, Any]], None] | None,
               cluster: str | None, client: Any, start: float) -> dict[str, Any]:
    from .report import write_outputs

    out = Path(settings.output)
    total = len(pending)
    progress(0.0, f"{len(units) - total} of {len(units)} units already done; {total} to run")
    cfg = settings.as_dict()
    errors = 0
    done = 0
    seen: set[str] = set()

    def finished(rec: dict[str, Any]) -> None:
        nonlocal errors, done
        done += 1
        errors += rec.get("status") != "ok"
        if rec.get("worker"):
            seen.add(str(rec["worker"]))
        if on_unit is not None:
            on_unit(rec)
        where = f" on {rec['worker']}" if cluster and rec.get("worker") else ""
        progress(0.97 * done / max(total, 1), f"{rec['case_id']} × {rec['method']}{where} ({done}/{total})")

    if cluster is not None:
        from .distributed import run_on_cluster

        if pending:
            run_on_cluster(cfg, pending, cluster, finished, progress, client=client)
    elif workers <= 1 or total <= 1:
        _init_worker(settings.threads)
        for case_id, method, fold in pending:
            finished(run_unit(cfg, case_id, method, fold))
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx, initializer=_init_worker,
                                    initargs=(settings.threads,)) as pool:
            futures = [pool.submit(run_unit, cfg, c, m, f) for c, m, f in pending]
            for fut in cf.as_completed(futures):
                finished(fut.result())
    progress(0.97, "writing cases.csv, summary.csv and report.html")
    outputs = write_outputs(out)
    progress(1.0, "benchmark done")
    return {"units": len(units), "computed": total, "skipped": len(units) - total, "errors": errors,
            "seconds": round(time.perf_counter() - start, 2), "outputs": {k: str(v) for k, v in outputs.items()},
            "pid": os.getpid(), "workers": sorted(seen), "cluster": cluster}


__all__ = ["BenchmarkSettings", "DEFAULT_METRICS", "commit_unit", "compute_unit", "plan", "run_benchmark", "run_unit",
           "segmentation_task"]
