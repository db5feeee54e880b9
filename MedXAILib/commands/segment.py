"""``segment``: run a segmentation model and write its label map in the input's geometry (or a DICOM SEG)."""

from __future__ import annotations

import argparse
import sys

from ..errors import ModelError
from ..io import read_inputs, write_json, write_volume
from ..models.cards import domain_check
from ..outputs import OutputSpec
from .common import (
    DICOM_OUTPUT_SUFFIXES,
    VOLUME_SUFFIXES,
    add_dicom_output_arguments,
    add_model_arguments,
    check_dicom_inputs,
    check_output_path,
    open_model,
    print_notes,
    progress_from,
)

HELP = "segment a volume; writes a label map with the input's exact geometry, or a DICOM SEG (.dcm)"
#: Output flags, checked by the CLI before any work (see MedXAILib.outputs); OUTPUT.json is the sidecar.
OUTPUTS = {
    "output": OutputSpec(DICOM_OUTPUT_SUFFIXES, sidecars=(".json",)),
    "probabilities": OutputSpec(VOLUME_SUFFIXES),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--output", required=True,
        help="label map to write (.nii.gz, .nrrd, .mha), or .dcm for a DICOM SEG referencing the DICOM input",
    )
    parser.add_argument(
        "--probabilities", metavar="FILE",
        help="also write the per-class probabilities (softmax or sigmoid, as the model says) as one 4-D image "
        "(x, y, z, class) in the input's geometry, classes in the model's order (see the sidecar)",
    )
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="a model option; repeatable (nnU-Net: tta=false turns mirroring off)",
    )
    parser.add_argument(
        "--target", metavar="CLASS",
        help="TotalSegmentator tasks made of several nnU-Net models (total, total_mr): run the model that holds this "
        "class (e.g. liver); its label map has that model's classes",
    )
    add_dicom_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..dicom.output import is_dicom_output, model_identity, require_dicom_source
    from ..dicom.terminology import terminology

    out = check_output_path(args.output, DICOM_OUTPUT_SUFFIXES)
    if args.probabilities:
        check_output_path(args.probabilities, VOLUME_SUFFIXES)
    check_dicom_inputs([args.output], args.input, args.dicom_fill_uids)
    progress = progress_from(args)
    model = open_model(args)
    if args.param:
        raise ModelError(f"unknown model option(s) {', '.join(args.param)}; segment takes tta=true|false")
    if model.task != "segmentation":
        raise ModelError(f"model {model.name!r} is a {model.task} model; use `classify`")
    volume = read_inputs(args.input, model, allow_dicom_gaps=args.allow_dicom_gaps)
    dicom_out = is_dicom_output(out)
    source = require_dicom_source(volume, out, args.input, args.dicom_fill_uids) if dicom_out else None
    prediction = model.predict(volume, progress=progress.sub(0.0, 0.9))
    assert prediction.labels is not None and prediction.probabilities is not None
    desc = model.description
    sidecar = {"model": model.name, "card": model.card(), **prediction.summary(),
               "terminology": terminology(desc.class_names),
               "function": model.function_info(tuple(prediction.logits_model_grid.shape[2:]))
               if prediction.logits_model_grid is not None else None}
    notes = list(prediction.notes) + (list(volume.dicom.notes) if volume.dicom is not None else [])
    warning = domain_check(model, volume)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
        sidecar["domain_warning"] = warning
    if dicom_out:
        from ..dicom.seg import masks_from_prediction, write_segmentation

        values = prediction.label_values or [desc.label_value(i) for i in range(desc.n_classes)]
        masks, names = masks_from_prediction(prediction, desc.class_names, values, desc.output)
        info = write_segmentation(out, masks, names, prediction.labels, source, model_identity(model),
                                  args.dicom_fill_uids)
        notes += info.pop("notes")
        sidecar["dicom"] = info
    else:
        write_volume(prediction.labels, out)
    if args.probabilities:
        prob_path = check_output_path(args.probabilities, VOLUME_SUFFIXES)
        write_volume(prediction.probabilities, prob_path, four_d=True)
        sidecar["probabilities"] = {"file": str(prob_path), "layout": "x, y, z, class",
                                    "classes": list(prediction.class_names), "activation": desc.output}
    if notes:
        sidecar["notes"] = notes
    write_json(sidecar, str(out) + ".json")
    print_notes(notes)
    progress(1.0, f"wrote {out}")
    return 0
