"""``python -m MedXAILib benchmark``: explanation methods over a cohort, with patient-level folds.

``--dataset KIND:PATH --model M --methods a,b --folds K --output DIR`` runs every (case, method) unit that is not
yet in ``DIR/units/`` (so a killed run resumes where it stopped), then writes ``DIR/cases.csv``,
``DIR/summary.csv``, ``DIR/folds.csv`` and ``DIR/report.html`` (see :mod:`MedXAILib.benchmark`).
``--cluster local:N | tcp://host:port`` runs the units on Dask workers (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import cli
from ..errors import InputError
from ..output_names import WILDCARD
from ..outputs import OutputSpec

HELP = "cohort evaluation of explanation quality: every method over a dataset's cases, per patient-level fold"
DESCRIPTION = (
    "Run explanation methods over every case of a dataset with a given model, score each map, and write "
    "cases.csv (one row per case x method), summary.csv (mean ± sd over patient-level folds) and report.html. "
    "Resumable: rerun the same command to continue after an interruption."
)


def _folder_files(folder: Path, _args: argparse.Namespace) -> list[Path]:
    """The files of ``--output DIR`` (see :mod:`MedXAILib.benchmark.store` and :mod:`MedXAILib.benchmark.report`)."""
    from ..benchmark.report import REPORT_FILES
    from ..benchmark.runner import SETTINGS_FILE
    from ..benchmark.store import CONTROLS_DIR, MAPS_DIR, UNITS_DIR

    each = [f"{UNITS_DIR}/{WILDCARD}.json", f"{MAPS_DIR}/{WILDCARD}.npz", f"{CONTROLS_DIR}/{WILDCARD}.json"]
    return [folder / n for n in (SETTINGS_FILE, "splits.json", *each, *REPORT_FILES)]


#: Every file benchmark writes, checked before any work (see MedXAILib.outputs); units persist one by one so that
#: a killed run resumes.
OUTPUTS = {"output": OutputSpec(folder=True, derived=_folder_files)}
RESUMABLE = True


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers; got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="KIND:PATH, e.g. phantom:6 or brats2021:/data/BraTS2021")
    parser.add_argument("--model", required=True,
                        help="a built-in model name, a model file or folder, or a `train` output folder (one model "
                             "per fold: each case is explained by the fold model that did not see it; use the same "
                             "--folds and --seed as that train run)")
    parser.add_argument("--methods", required=True, help="comma-separated methods, e.g. gradcam,random")
    parser.add_argument(
        "--metrics", default="localisation,faithfulness,complexity",
        help="metric families: localisation, complexity, faithfulness, stability, sanity, or all "
             "(default localisation,faithfulness,complexity: affordable on a laptop CPU)",
    )
    parser.add_argument("--folds", type=int, default=5, help="number of patient-level folds (default 5)")
    parser.add_argument("--output", required=True, help="output folder (reuse it to resume)")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--threads", "--worker-threads", dest="threads", type=int, default=1,
                        help="torch threads per worker process (default 1)")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="run the units on Dask: local:N (N worker processes on this machine) or a scheduler "
                             "address such as tcp://10.0.0.5:8786; workers must see the dataset and model paths "
                             "(docs/cluster.md). Records come back here and are written to --output")
    parser.add_argument("--seed", type=int, default=0, help="seed of folds, tie-breaking, noise (default 0)")
    parser.add_argument("--steps", type=int, default=10, help="deletion/insertion steps (default 10)")
    parser.add_argument("--baseline", default="blur", choices=("blur", "mean", "noise"),
                        help="what deleted voxels become (default blur)")
    parser.add_argument("--blur-sigma-mm", type=float, default=8.0, help="σ of the blur baseline in mm (default 8)")
    parser.add_argument("--batch-size", type=int, default=8, help="masked inputs per forward pass (default 8)")
    parser.add_argument("--snr-db", default="20,30", help="stability noise levels in dB (default 20,30)")
    parser.add_argument("--rotations-deg", default="-5,5", help="stability rotations in degrees, |a| <= 5")
    parser.add_argument("--scales", default="0.9,1.1", help="stability intensity factors (default 0.9,1.1)")
    parser.add_argument("--sanity-stages", type=int, default=3, help="cascading randomisation stages (default 3)")
    parser.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE",
                        help="a method parameter, e.g. occlusion:window_mm=16; repeatable")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    parser.add_argument("--msfi", metavar="MODALITY:WEIGHT,...",
                        help="the msfi metric: clinician modality importances summing to 1, e.g. "
                             "t1ce:0.5,flair:0.3,t2:0.2,t1:0 (adds msfi to --metrics)")
    cli.add_progress_argument(parser)


def _params(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        method, sep, kv = item.partition(":")
        key, eq, value = kv.partition("=")
        if not sep or not eq or not method.strip() or not key.strip():
            raise InputError(f"--param {item!r}: write METHOD:KEY=VALUE")
        out.setdefault(method.strip(), {})[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from ..benchmark import BenchmarkSettings, run_benchmark
    from ..progress import Progress
    from ..quality import parse_metrics

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or len(set(methods)) != len(methods):
        raise InputError(f"--methods needs distinct method names; got {args.methods!r}")
    if args.workers < 1 or args.threads < 1:
        raise InputError("--workers and --threads must be at least 1")
    if args.cluster and args.workers > 1:
        raise InputError("--workers is for a local process pool; with --cluster give local:N instead")
    if args.steps < 1:
        raise InputError("--steps must be at least 1")
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--folds", args.folds, 2),
                             ("--sanity-stages", args.sanity_stages, 1)):
        if value < low:
            raise InputError(f"{flag} must be at least {low}; got {value}")
    if not args.blur_sigma_mm > 0:
        raise InputError(f"--blur-sigma-mm must be a positive number of mm; got {args.blur_sigma_mm}")
    metrics = parse_metrics(args.metrics)
    importance = None
    if args.msfi:
        from ..metrics.msfi import parse_importance

        importance = parse_importance(args.msfi)
        metrics = parse_metrics([*metrics, "msfi"])
    elif "msfi" in metrics and "all" in args.metrics.replace(" ", "").split(","):
        metrics.remove("msfi")  # "all" means every family that needs no extra input
    elif "msfi" in metrics:
        raise InputError("the msfi metric needs --msfi MODALITY:WEIGHT,... (e.g. t1ce:0.5,flair:0.3,t2:0.2,t1:0)")
    settings = BenchmarkSettings(
        dataset=args.dataset, model=args.model, methods=methods, output=str(args.output),
        metrics=metrics, msfi=importance, folds=args.folds, seed=args.seed, steps=args.steps,
        baseline=args.baseline, blur_sigma_mm=args.blur_sigma_mm, batch_size=args.batch_size,
        stability_snr_db=_floats(args.snr_db, "--snr-db"),
        stability_rotations_deg=_floats(args.rotations_deg, "--rotations-deg"),
        stability_scales=_floats(args.scales, "--scales"), sanity_stages=args.sanity_stages,
        threads=args.threads, device=args.device, params=_params(args.param),
    )
    progress = Progress(args.progress)
    result = run_benchmark(settings, workers=args.workers, progress=progress, cluster=args.cluster)
    cases = result["outputs"]["cases"]
    if result["errors"] and result["errors"] >= result["computed"]:
        written = "" if "report" in result["outputs"] else " (no report: no unit of the run succeeded)"
        raise InputError(
            f"every one of the {result['computed']} unit(s) run failed; the errors are in the 'error' column of "
            f"{cases}{written}"
        )
    if result["errors"]:
        print(f"warning: {result['errors']} of {result['computed']} unit(s) failed; see the 'error' column of "
              f"{cases}", file=sys.stderr)
    if args.progress == "json":
        print(json.dumps({"result": result}))
    else:
        where = f" on {len(result['workers'])} Dask worker(s)" if args.cluster else ""
        print(f"{result['computed']} unit(s) run{where}, {result['skipped']} already done, {result['errors']} failed; "
              f"wrote {result['outputs']['report']}")
    return 0
