"""``demo``: the whole pipeline on a built-in phantom case, with known truth.

Segmentation: a BraTS-like phantom → ``demo-brain-tumour`` → Grad-CAM of the predicted tumour → Dice / IoU / HD95
against the phantom's truth and localisation of the heat map → files and an overview figure. Classification: a
chest-X-ray phantom → ``demo-chest-xray`` → Grad-CAM of the top finding → probabilities vs truth.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import add_progress_argument
from ..errors import InputError
from ..io import write_json, write_volume
from ..output_names import WILDCARD, name_with
from ..outputs import OutputSpec, commit_staged
from ..progress import Progress

HELP = "run the whole pipeline (model, Grad-CAM, metrics, figure) on a built-in phantom case"


def _folder_files(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The files of ``--output DIR`` (input_<channel>.nii.gz: one per phantom channel)."""
    names = [name_with("input_", WILDCARD, ".nii.gz"), "heatmap.nrrd", "overview.png", "metrics.json"]
    names += ["reference.nii.gz", "prediction.nii.gz"] if args.task == "segmentation" else []
    names += ["methods.png"] if args.compare else []
    return [folder / n for n in names]


#: Checked by the CLI (see MedXAILib.outputs); every file in the folder is written as one set.
OUTPUTS = {"output": OutputSpec(folder=True, derived=_folder_files)}
DEMO_SEED = 20_261_126  # held out: the demo models were trained on seeds < 10 000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("segmentation", "classification"), default="segmentation")
    parser.add_argument("--output", default="demo-output", help="folder to write into (default ./demo-output)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="phantom seed")
    parser.add_argument("--method", default="gradcam", help="explanation method (default gradcam)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument(
        "--compare", metavar="METHODS",
        help="also explain with these methods (comma-separated, or 'all') and write methods.png comparing them; "
        "give parameters after colons, e.g. occlusion:window_mm=32:stride_mm=32",
    )
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    progress = Progress(args.progress)
    if args.task == "segmentation":
        summary = _segmentation(args, out, progress)
    else:
        summary = _classification(args, out, progress)
    commit_staged()  # every file is complete: move them into place, then list them
    if args.progress != "json":
        print(f"wrote {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
        for line in summary:
            print("  " + line)
    return 0


def _segmentation(args: argparse.Namespace, out: Path, progress: Progress) -> list[str]:
    from ..explain import explain
    from ..figures.overview import segmentation_overview
    from ..metrics.localisation import pointing_game, relevance_mass
    from ..metrics.segmentation import segmentation_metrics
    from ..models import load_model
    from ..phantoms import make_brain_phantom

    t0 = time.perf_counter()
    progress(0.0, "making a brain phantom")
    phantom = make_brain_phantom(args.seed)
    volume, reference = phantom.image, phantom.label
    model = load_model("demo-brain-tumour", device=args.device)
    prediction = model.predict(volume, progress=progress.sub(0.05, 0.3))
    assert prediction.labels is not None
    progress(0.3, f"explaining with {args.method}")
    expl = explain(model, volume, args.method, prediction=prediction, progress=progress.sub(0.3, 0.7))
    progress(0.7, "measuring")
    labels = segmentation_metrics(
        prediction.labels, reference, labels=[1, 2, 3], regions={"whole_tumour": [1, 2, 3], "tumour_core": [1, 3]}
    )
    heat = expl.heatmap.array[0]
    truth = phantom.whole_tumour
    explanation = {
        **expl.summary(),
        "pointing_game": pointing_game(heat, truth, spacing_kji=volume.spacing_kji),
        "relevance_mass": relevance_mass(heat, truth),
    }
    metrics: dict[str, Any] = {
        "model": model.name,
        "phantom_seed": args.seed,
        "class_names": model.description.class_names,
        "labels": labels,
        "explanation": explanation,
    }
    progress(0.75, "writing files")
    out.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(volume.channel_names):
        write_volume(volume.channel(c), out / f"input_{name}.nii.gz")
    write_volume(reference, out / "reference.nii.gz")
    write_volume(prediction.labels, out / "prediction.nii.gz")
    write_volume(expl.heatmap, out / "heatmap.nrrd")
    wt = labels["whole_tumour"]
    numbers = [
        f"whole tumour Dice {wt['dice']:.3f}",
        f"HD95 {wt['hd95_mm']:.1f} mm" if wt["hd95_mm"] is not None else "HD95 n/a",
        f"volume {wt['volume_ml_prediction']:.1f} mL (truth {wt['volume_ml_reference']:.1f})",
        f"pointing game {'hit' if explanation['pointing_game'] >= 0.5 else 'miss'}",
        f"relevance mass {explanation['relevance_mass'] or 0:.2f}",
        f"{expl.method} {expl.cost.seconds:.2f} s",
    ]
    progress(0.85, "drawing the overview")
    segmentation_overview(
        out / "overview.png", volume, expl.heatmap, prediction.labels, reference,
        title=f"MedXAI demo — {model.name}, {expl.method} of the predicted tumour (FLAIR)",
        numbers=numbers, anatomy_channel=volume.channel_names.index("flair"),
    )
    if args.compare:
        metrics["methods"] = _compare(
            args, out, model, volume, truth, progress, prediction=prediction,
            anatomy_channel=volume.channel_names.index("flair"),
        )
    metrics["seconds_total"] = round(time.perf_counter() - t0, 2)
    write_json(metrics, out / "metrics.json")
    progress(1.0, "demo done")
    return numbers + [f"total {metrics['seconds_total']:.1f} s"]


def _compare(
    args: argparse.Namespace, out: Path, model: Any, volume: Any, truth: np.ndarray | None, progress: Progress,
    anatomy_channel: int = 0, **explain_kwargs: Any,
) -> dict[str, Any]:
    """Explain the same target with several methods; write methods.png and return their costs and scores."""
    from ..explain import available_methods, explain
    from ..figures.compare import compare_methods_figure
    from ..metrics.localisation import pointing_game, relevance_mass

    specs = sorted(available_methods()) if args.compare == "all" else [m.strip() for m in args.compare.split(",")]
    explanations = []
    for n, spec in enumerate(specs):
        name, *pairs = spec.split(":")
        params = dict(p.split("=", 1) for p in pairs if "=" in p)
        progress(0.9 + 0.09 * n / len(specs), f"comparing: {name}")
        explanations.append(explain(model, volume, name, params=params, **explain_kwargs))
    names = [e.method for e in explanations]
    compare_methods_figure(
        out / "methods.png", volume, explanations, truth, anatomy_channel=anatomy_channel,
        title=f"{model.name}: the same target explained by {len(names)} methods",
    )
    result: dict[str, Any] = {}
    for e in explanations:
        heat = e.heatmap.array[0]
        heat = np.abs(heat) if e.display == "signed" else heat
        entry: dict[str, Any] = {"cost": e.cost.as_dict()}
        if truth is not None and truth.any():
            entry["pointing_game"] = pointing_game(heat, truth)
            entry["relevance_mass"] = relevance_mass(heat, truth)
        result[e.method] = entry
    return result


def _classification(args: argparse.Namespace, out: Path, progress: Progress) -> list[str]:
    from ..explain import explain
    from ..figures.overview import classification_overview
    from ..metrics.localisation import pointing_game, relevance_mass
    from ..models import load_model
    from ..phantoms import CHEST_FINDINGS, make_chest_phantom

    t0 = time.perf_counter()
    progress(0.0, "making a chest X-ray phantom")
    phantom = make_chest_phantom(args.seed, findings=(1, 1, 0) if args.seed == DEMO_SEED else None)
    volume = phantom.image
    model = load_model("demo-chest-xray", device=args.device)
    prediction = model.predict(volume, progress=progress.sub(0.05, 0.3))
    assert prediction.class_probabilities is not None
    probs = {n: float(p) for n, p in zip(model.description.class_names, prediction.class_probabilities)}
    top = int(np.argmax(prediction.class_probabilities))
    progress(0.3, f"explaining {model.description.class_names[top]} with {args.method}")
    expl = explain(model, volume, args.method, label=top, progress=progress.sub(0.3, 0.7))
    heat = expl.heatmap.array[0]
    finding = model.description.class_names[top]
    truth_mask = phantom.masks[CHEST_FINDINGS.index(finding)][None] if finding in CHEST_FINDINGS else None
    explanation: dict[str, Any] = expl.summary()
    if truth_mask is not None and truth_mask.any():
        explanation["pointing_game"] = pointing_game(heat, truth_mask, spacing_kji=volume.spacing_kji)
        explanation["relevance_mass"] = relevance_mass(heat, truth_mask)
    truth = {n: int(v) for n, v in zip(CHEST_FINDINGS, phantom.labels)}
    metrics = {
        "model": model.name, "phantom_seed": args.seed, "probabilities": probs, "truth": truth,
        "explained": finding, "explanation": explanation,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_volume(volume, out / "input_xray.nii.gz")
    write_volume(expl.heatmap, out / "heatmap.nrrd")
    numbers = [f"{n} {p:.2f} (truth {truth.get(n, '?')})" for n, p in probs.items()]
    classification_overview(
        out / "overview.png", volume, expl.heatmap, probs, truth, phantom.boxes,
        title=f"MedXAI demo — {model.name}, {expl.method}", explained=finding, numbers=numbers,
    )
    if args.compare:
        metrics["methods"] = _compare(args, out, model, volume, truth_mask, progress, label=top)
    metrics["seconds_total"] = round(time.perf_counter() - t0, 2)
    write_json(metrics, out / "metrics.json")
    progress(1.0, "demo done")
    return numbers + [f"total {metrics['seconds_total']:.1f} s"]
