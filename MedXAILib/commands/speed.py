"""``speed`` (formerly ``bench``): time every explainer against the reference libraries on the demo models and
judge the speed targets."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelError
from ..outputs import OutputSpec

HELP = "speed: time the explainers against captum, MONAI, pytorch-grad-cam and naive loops on the same model and input"
DESCRIPTION = (
    "Time, in this one process, forward and forward+backward passes, every MedXAI method and the reference "
    "implementations (captum LayerGradCam / IntegratedGradients / Occlusion / KernelShap / Lime, MONAI GradCAM / "
    "GradCAMpp, pytorch-grad-cam when it imports, a plain Score-CAM loop) on the demo 3D UNet at 4x128^3 (also "
    "exactly, through its sliding window, against the whole-grid approximation), the demo 2D classifier on a real "
    "NIH radiograph and a BraTS-size 4x155x240x240 case; time benchmark's method agreement over 30 BraTS-size "
    "units; with --bundles, the MONAI Model Zoo spleen and BraTS bundles at full size (exact Grad-CAM against "
    "inference, LRP and IG peak memory). Report medians of runs after a warm-up, peak memory, map agreement, a "
    "scaling table and each target's pass/fail."
)


OUTPUTS = {"json": OutputSpec((".json",))}  # checked by the CLI before the (long) run starts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="fewer windows and samples, long rows timed once (under 25 min on 2 cores)")
    parser.add_argument("--bundles", action="store_true",
                        help="add the full-size Model Zoo bundle rows (spleen and BraTS: exact Grad-CAM / inference, "
                             "LRP and IG peak memory; tens of minutes)")
    parser.add_argument("--bundle-zoo", metavar="DIR", default=None,
                        help="folder with spleen_ct_segmentation/ and brats_mri_segmentation/ (default: "
                             "$MEDXAI_TEST_DATA/monai-model-zoo; configs without weights get seeded random weights)")
    parser.add_argument("--json", metavar="FILE", help="write {\"cases\": [...], \"targets\": [...], ...} to FILE")
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of full,3d,2d,scaling,agreement,bundles (default: all but "
                             "bundles)")
    parser.add_argument("--methods", default=None, help="comma-separated MedXAI methods to run (default: all)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per row (default 3 quick, 5 full)")
    parser.add_argument("--untrained", action="store_true",
                        help="use randomly initialised demo architectures if the demo weights are not installed")


def machine() -> dict[str, Any]:
    """The CPU model, core counts, torch threads and load average (for the report)."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "load_average": [round(v, 2) for v in load]}


def demo_models(untrained: bool, cases: tuple[str, ...] = ("full", "3d", "2d", "scaling")) -> dict[str, Any]:
    """``{"3d": demo-brain-tumour, "2d": demo-chest-xray}`` for the cases asked; random weights with ``untrained``."""
    from ..models import load_model

    out: dict[str, Any] = {}
    wanted = [("3d", "demo-brain-tumour")] if set(cases) & {"full", "3d", "scaling"} else []
    if "2d" in cases:
        wanted.append(("2d", "demo-chest-xray"))
    for tag, name in wanted:
        try:
            out[tag] = load_model(name)
        except ModelError:
            if not untrained:
                raise ModelError(f"the demo model {name!r} is not installed; train it (python -m MedXAILib.training "
                                 f"--demo {name}) or run speed --untrained for random weights") from None
            out[tag] = untrained_model(name)
    return out


def untrained_model(name: str) -> Any:
    """A demo architecture with random weights (seed 0), described as the demo model is."""
    import torch

    from ..models import Model
    from ..models.description import ModelDescription
    from ..models.monai_network import build_network

    try:
        from ..training import demo_models as training
    except ImportError as exc:
        raise ModelError(f"cannot build an untrained {name!r}: {exc}") from None
    desc = training.brain_description() if name == "demo-brain-tumour" else training.chest_description()
    torch.manual_seed(0)
    description = ModelDescription.from_dict({**desc, "name": f"{name}-untrained"})
    return Model(build_network(description.architecture, name), description)


def run(args: argparse.Namespace) -> int:
    from ..speed import full_config, quick_config, run_bench
    from ..speed.config import CASES
    from ..speed.report import ratio_table, scaling_table, targets_table

    config = quick_config() if args.quick else full_config()
    if args.cases:
        cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
        unknown = set(cases) - set(CASES)
        if unknown:
            raise InputError(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
        config.cases = cases
    if args.bundles and "bundles" not in config.cases:
        config.cases = tuple(config.cases) + ("bundles",)
    if args.bundle_zoo:
        if not Path(args.bundle_zoo).is_dir():
            raise InputError(f"--bundle-zoo {args.bundle_zoo}: no such folder")
        config.bundle_zoo = args.bundle_zoo
    if args.methods:
        from ..explain import available_methods

        config.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        unknown = sorted(set(config.methods) - set(available_methods()))
        if unknown or not config.methods:
            raise InputError(f"unknown method(s) {', '.join(unknown) or repr(args.methods)}; choose from "
                             f"{', '.join(sorted(available_methods()))}")
    if args.runs is not None:
        if args.runs < 3:
            raise InputError("--runs must be at least 3 (the median of at least 3 runs is reported)")
        config.runs = args.runs
    info = machine()
    print(f"MedXAI speed ({'quick' if config.quick else 'full'}) on {info['cpu']}, {info['cores']} cores, "
          f"torch {info['torch']} with {info['torch_threads']} threads, load average {info['load_average']}")
    print("settings: " + json.dumps({k: v for k, v in config.as_dict().items() if k != "extra"}))
    start = time.perf_counter()
    models = demo_models(args.untrained, tuple(config.cases))
    doc = run_bench(config, models)
    doc["machine"] = info
    doc["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    doc["total_seconds"] = round(time.perf_counter() - start, 1)
    doc["command"] = "python -m MedXAILib speed" + (" --quick" if args.quick else "") + \
        (" --bundles" if args.bundles else "")
    print()
    print(ratio_table(doc["cases"]))
    if doc["scaling"]:
        print()
        print(scaling_table(doc["scaling"]))
    for note in doc["notes"]:
        print(f"note: {note}")
    print()
    print(targets_table(doc["targets"]))
    print(f"total {doc['total_seconds']:.0f} s")
    if args.json:
        from ..io import atomic_path

        path = Path(args.json)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=1, default=str))
        print(f"wrote {path}")
    return 0
