"""``report``: a one-page case report (HTML + PDF) of a prediction, its explanation and how far to trust it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import read_inputs, read_label_map, write_json
from ..outputs import OutputSpec
from .common import add_model_arguments, check_output_path, open_model, print_notes, progress_from

HELP = "write a one-page case report (HTML + PDF): images with prediction and explanation, numbers, model card"


def default_pdf(html: Path) -> Path:
    """The PDF written beside ``CASE.html`` when ``--pdf`` is not given: ``CASE.pdf``."""
    return html.with_suffix(".pdf")


def _default_pdf(html: Path, args: argparse.Namespace) -> list[Path]:
    return [] if args.pdf else [default_pdf(html)]


#: Every file report writes, checked by the CLI before any work (see MedXAILib.outputs): CASE.html.json is the
#: sidecar, CASE.pdf the PDF when --pdf does not name another.
OUTPUTS = {"output": OutputSpec((".html", ".htm"), sidecars=(".json",), derived=_default_pdf),
           "pdf": OutputSpec((".pdf",))}
DESCRIPTION = (
    "Either run the model on one case (--model, --input) or take a case of a finished benchmark run (--benchmark "
    "RUN --case ID). Run the model on one case, explain it, check the explanation (cascading-randomisation sanity "
    "check and stability by default) and write CASE.html and CASE.pdf: three orthogonal views (or the X-ray) with the "
    "prediction and the explanation overlaid, per-class volumes and Dice / HD95 against --reference, the top classes "
    "(classification), the method with its sanity verdict and stability, the model card and the software versions. "
    "Beside them CASE.html.json holds the same numbers."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    for action in parser._actions:  # --model / --input are not needed with --benchmark
        if action.dest in ("model", "input"):
            action.required = False
    parser.add_argument("--output", required=True, help="the HTML report to write (CASE.html)")
    parser.add_argument("--pdf", help="the PDF to write (default: the --output path with .pdf)")
    parser.add_argument("--case", help="the case's name in the report (default: the first input's name); with "
                        "--benchmark, the case ID to report")
    parser.add_argument("--benchmark", metavar="RUN", help="a benchmark output folder: report its --case from the "
                        "stored map and quality numbers (the model and dataset named by the run)")
    parser.add_argument("--reference", metavar="LABELS", help="reference label map on the input grid (segmentation)")
    parser.add_argument("--box", action="append", default=[], metavar="FINDING:X,Y,W,H",
                        help="a reference box on a 2D image, in pixels (x = column, y = row); repeatable")
    parser.add_argument("--method", help="explanation method (default gradcam; with --benchmark, the run's first)")
    parser.add_argument("--target", metavar="LABEL", help="class name or index to explain (default: the model's)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a method parameter")
    parser.add_argument(
        "--quality", default="sanity,stability",
        help="quality checks to run: sanity, stability, faithfulness (comma-separated), or none (default "
        "sanity,stability; localisation is added with --reference)",
    )


def _boxes(items: list[str]) -> dict[str, tuple[float, float, float, float]]:
    boxes = {}
    for item in items:
        name, _, numbers = item.rpartition(":")
        try:
            x, y, w, h = (float(v) for v in numbers.split(","))
        except ValueError:
            raise InputError(f"--box {item!r}: write FINDING:X,Y,W,H in pixels (e.g. nodule:410,300,60,55)") from None
        if not name or w <= 0 or h <= 0:
            raise InputError(f"--box {item!r}: give a finding name and a positive width and height")
        boxes[name] = (x, y, w, h)
    return boxes


def _case_name(path: str) -> str:
    name = Path(str(path).split("::")[0]).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def run(args: argparse.Namespace) -> int:
    from ..explain import explain
    from ..quality import parse_metrics
    from ..report import build_case_report, write_html, write_pdf

    out = check_output_path(args.output, (".html", ".htm"))
    pdf = check_output_path(args.pdf, (".pdf",)) if args.pdf else default_pdf(out)
    quality = [] if args.quality.strip().lower() == "none" else parse_metrics(args.quality)
    params: dict[str, str] = {}
    for item in args.param:
        if "=" not in item:
            raise InputError(f"--param {item!r}: write KEY=VALUE")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    progress = progress_from(args)
    if args.benchmark:
        return _from_benchmark(args, out, pdf, progress)
    if not args.model or not args.input:
        raise InputError("give --model and --input (one case), or --benchmark RUN --case ID")
    model = open_model(args)
    volume = read_inputs(args.input, model, allow_dicom_gaps=args.allow_dicom_gaps)
    reference = read_label_map(args.reference, reference=volume) if args.reference else None
    progress(0.05, "predicting")
    prediction = model.predict(volume, progress=progress.sub(0.05, 0.2))
    expl = explain(model, volume, args.method or "gradcam", label=args.target, params=params,
                   progress=progress.sub(0.2, 0.4))
    progress(0.4, f"checking the explanation ({', '.join(quality) or 'no checks'})")
    case = args.case or _case_name(args.input[0])
    report = build_case_report(model, volume, prediction, expl, reference, case=case, quality=quality,
                               boxes=_boxes(args.box))
    progress(0.9, "drawing")
    write_pdf(report, pdf)
    write_html(report, out)
    write_json({**report.summary(), "pdf": str(pdf), "html": str(out)}, str(out) + ".json")
    print_notes(volume.dicom.notes if volume.dicom is not None else [])
    progress(1.0, f"wrote {out} and {pdf}")
    return 0


def _from_benchmark(args: argparse.Namespace, out: Path, pdf: Path, progress: Any) -> int:
    from ..report import write_html, write_pdf
    from ..report.from_benchmark import benchmark_case_report

    if not args.case:
        raise InputError("--benchmark needs --case ID: the case to report")
    progress(0.1, f"reading case {args.case} of {args.benchmark}")
    report, _ = benchmark_case_report(args.benchmark, args.case, args.method, device=args.device)
    progress(0.8, "drawing")
    write_pdf(report, pdf)
    write_html(report, out)
    write_json({**report.summary(), "pdf": str(pdf), "html": str(out)}, str(out) + ".json")
    progress(1.0, f"wrote {out} and {pdf}")
    return 0

