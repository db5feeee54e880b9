"""Running a benchmark: plan the (case, method) units, run the missing ones, in one process, a process pool or
on a Dask cluster.

A unit (:mod:`.units`: :func:`compute_unit`, :func:`commit_unit`) is a pure function of the settings and its
(case, method), so the same call is shipped to a Dask worker unchanged (:mod:`.distributed`, where the client
commits). Locally, :func:`run_unit` computes and commits in the worker; ``workers > 1`` uses a ``ProcessPoolExecutor``
with the ``spawn`` start method (safe with torch threads).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..progress import ProgressCallback, no_progress
from .store import UnitStore
from .units import _context, _init_worker, commit_unit, compute_unit, run_unit, segmentation_task, train_run

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
