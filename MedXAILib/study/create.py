"""``study create``: a study folder, every arm's material computed once with the real model.

The cases come from a manifest CSV (columns ``id``, ``input`` — one or more image files separated by ``;``, or a
DICOM folder, relative to the manifest — ``truth`` 0/1, and optionally ``reference`` — a label map of the finding on
the image grid — or ``box`` — ``x,y,w,h`` in pixels for a 2D image (x = first column, y = first row) or
``i,j,k,wi,wj,wk`` in voxels for 3D), or from the built-in phantoms (``phantoms:chest:N``). Every case is run through
MedXAI's public API with the study's model, once: :meth:`Model.predict` (the model's exact inference function) for
the probability and decision, :func:`MedXAILib.explain.explain` for each arm's map and the counterfactual. Nothing is
written until everything has been checked; the folder is built under a hidden name beside the output and renamed into
place only when complete, so a failed or cancelled creation leaves nothing.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..outputs import staged_folder
from ..progress import ProgressCallback, no_progress
from ..volume import Volume
from .protocol import FORMAT, check_name, hash_files, parse_arm, reading_lists

DEFAULT_FORM = {"rating": [0, 100], "confidence": [1, 5], "trust": [1, 5], "allow_changes": False}
PHANTOM_SEED_BASE = 30_000_000  # phantom cases: seeds far from the demo models' training (< 10 000 and 1e5 ranges)


@dataclass
class CaseSpec:
    """One manifest row after checking: where its image is and what is true about it."""

    case_id: str
    inputs: list[str] = field(default_factory=list)
    truth: int = 0
    reference: str | None = None
    box: tuple[int, ...] | None = None
    phantom_seed: int | None = None


def read_manifest(path: str | os.PathLike) -> list[CaseSpec]:
    """Read and check a case manifest (see the module docstring); every file must exist."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such manifest")
    base = p.parent
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in ("id", "input", "truth") if c not in header]
        if missing:
            raise InputError(f"{p}: missing column(s) {', '.join(missing)}; a manifest names id, input and truth")
        reader.fieldnames = header
        rows = list(reader)
    cases: list[CaseSpec] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        where = f"{p} line {n}"
        cid = (row.get("id") or "").strip()
        if not cid:
            raise InputError(f"{where}: the id is empty")
        if cid in seen:
            raise InputError(f"{where}: case id {cid!r} appears twice")
        seen.add(cid)
        truth = (row.get("truth") or "").strip()
        if truth not in ("0", "1"):
            raise InputError(f"{where}: truth must be 0 or 1; got {truth!r}")
        inputs = [str((base / s.strip()).resolve()) for s in (row.get("input") or "").split(";") if s.strip()]
        if not inputs:
            raise InputError(f"{where}: no input file")
        for f in inputs:
            if not Path(f.split("::", 1)[0]).exists():
                raise InputError(f"{where}: input {f} does not exist")
        spec = CaseSpec(cid, inputs, int(truth))
        ref = (row.get("reference") or "").strip()
        if ref:
            spec.reference = str((base / ref).resolve())
            if not Path(spec.reference).is_file():
                raise InputError(f"{where}: reference {spec.reference} does not exist")
        box = (row.get("box") or "").strip()
        if box:
            try:
                spec.box = tuple(int(v) for v in box.replace(" ", "").split(","))
            except ValueError:
                raise InputError(f"{where}: box {box!r} must be whole numbers x,y,w,h (2D) or i,j,k,wi,wj,wk (3D)")\
                    from None
            if len(spec.box) not in (4, 6) or any(v < 0 for v in spec.box) or min(spec.box[len(spec.box) // 2:]) < 1:
                raise InputError(f"{where}: box {box!r} must be x,y,w,h (2D) or i,j,k,wi,wj,wk (3D), sizes ≥ 1")
        if spec.reference and spec.box:
            raise InputError(f"{where}: give a reference mask or a box, not both")
        cases.append(spec)
    _check_both_classes(cases, str(p))
    return cases


def _check_both_classes(cases: Sequence[CaseSpec], source: str) -> None:
    if {c.truth for c in cases} != {0, 1}:
        raise InputError(f"{source}: a reader study needs cases with and without the finding")


def phantom_cases(spec: str) -> list[CaseSpec]:
    """``phantoms:chest:N[:SEED]`` → N chest X-ray phantoms, the finding present in every other case."""
    parts = spec.split(":")
    try:
        if len(parts) not in (3, 4) or parts[1] != "chest":
            raise ValueError
        n = int(parts[2])
        seed = int(parts[3]) if len(parts) == 4 else 0
    except ValueError:
        raise InputError(f"--cases {spec!r}: write phantoms:chest:N or phantoms:chest:N:SEED") from None
    if not 4 <= n <= 10_000:
        raise InputError(f"--cases {spec!r}: between 4 and 10000 phantom cases")
    return [CaseSpec(f"phantom-{PHANTOM_SEED_BASE + seed * 100_000 + i}", truth=i % 2,
                     phantom_seed=PHANTOM_SEED_BASE + seed * 100_000 + i) for i in range(n)]


def _box_mask(box: tuple[int, ...], volume: Volume) -> np.ndarray:
    K, J, I = volume.shape
    mask = np.zeros((K, J, I), dtype=np.uint8)
    if len(box) == 4:
        if K != 1:
            raise InputError(f"box {box}: x,y,w,h is for 2D images; give i,j,k,wi,wj,wk for a 3D image")
        x, y, w, h = box
        mask[0, y:y + h, x:x + w] = 1
    else:
        i, j, k, wi, wj, wk = box
        mask[k:k + wk, j:j + wj, i:i + wi] = 1
    if not mask.any():
        raise InputError(f"box {box} lies outside the image ({I} x {J} x {K} voxels)")
    return mask


@dataclass
class StudySettings:
    """What ``study create`` was asked for (the protocol's fixed part)."""

    arms: list[str]
    readers: list[str]
    design: str = "fully-crossed"
    sessions: int | None = None
    seed: int = 0
    groups: int = 2
    finding: str | None = None
    target: str | None = None
    threshold: float = 0.5
    method_params: dict[str, dict[str, str]] = field(default_factory=dict)
    form: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FORM))


def check_settings(settings: StudySettings, model: Any) -> tuple[int, str]:
    """Check the protocol against the model before any work; return the target class index and the finding."""
    from ..explain import available_methods

    if len(settings.arms) != len(set(settings.arms)) or not settings.arms:
        raise InputError("--arms: name each arm once (e.g. image,ai,ai+gradcam)")
    methods = set(available_methods())
    for arm in settings.arms:
        check_name(arm, "arm")
        for m in parse_arm(arm).methods:
            if m not in methods:
                raise InputError(f"arm {arm!r}: unknown explanation method {m!r}; `python -m MedXAILib methods` "
                                 "lists them")
    if len(settings.readers) != len(set(settings.readers)) or not settings.readers:
        raise InputError("--readers: name each reader once (e.g. r1,r2,r3)")
    for r in settings.readers:
        check_name(r, "reader")
    if settings.design not in ("fully-crossed", "split-plot"):
        raise InputError(f"--design {settings.design!r}: use fully-crossed or split-plot")
    if not 0.0 < settings.threshold < 1.0:
        raise InputError(f"--threshold {settings.threshold}: a probability between 0 and 1")
    if model.task != "classification":
        raise InputError(f"model {model.name!r} is a {model.task} model; a reader study of a finding (present or "
                         "absent) needs a classification model")
    names = list(model.description.class_names)
    target = settings.target or settings.finding or names[0]
    if target not in names:
        raise InputError(f"target class {target!r} is not one of the model's classes ({', '.join(names)})")
    return names.index(target), settings.finding or target


def _write_json(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _case_material(model: Any, spec: CaseSpec, settings: StudySettings, target: int, finding: str,
                   folder: Path, key: str) -> dict[str, Any]:
    """Run the model once on one case and write what every arm needs (and its hidden truth)."""
    from ..explain import explain
    from ..io import read_inputs, read_label_map, write_volume
    from ..metrics.localisation import pointing_game

    reference: np.ndarray | None = None
    if spec.phantom_seed is not None:
        from ..phantoms import CHEST_FINDINGS, make_chest_phantom

        rng = np.random.default_rng(spec.phantom_seed)
        flags = [int(rng.random() < 0.5) for _ in CHEST_FINDINGS]
        if finding in CHEST_FINDINGS:
            flags[CHEST_FINDINGS.index(finding)] = spec.truth
        phantom = make_chest_phantom(spec.phantom_seed, findings=flags)
        volume = Volume(phantom.image.array, phantom.image.ijk_to_ras, list(model.description.channel_names))
        if finding in CHEST_FINDINGS:
            reference = phantom.masks[CHEST_FINDINGS.index(finding)][None].astype(np.uint8)
        model.check_input(volume)
    else:
        volume = read_inputs(spec.inputs, model)
        if spec.reference:
            reference = (read_label_map(spec.reference, reference=volume, what="reference").array[0] > 0)
            reference = reference.astype(np.uint8)
        elif spec.box:
            reference = _box_mask(spec.box, volume)
    case_dir = folder / "cases" / key
    images = []
    for c, name in enumerate(volume.channel_names):
        images.append(f"cases/{key}/image_{name}.nii.gz")
        write_volume(volume.channel(c), folder / images[-1])
    material: dict[str, Any] = {"image": images, "maps": {}}
    arms = [parse_arm(a) for a in settings.arms]
    prediction = model.predict(volume, threshold=settings.threshold)
    probability = float(prediction.class_probabilities[target])
    if any(a.ai for a in arms):
        material["ai"] = f"cases/{key}/ai.json"
        _write_json({"finding": finding, "probability": probability, "decision": int(probability >= settings.threshold),
                     "threshold": settings.threshold, "model": model.name}, case_dir / "ai.json")
    hits: dict[str, float | None] = {}
    methods = sorted({m for a in arms for m in a.methods})
    for method in methods:
        params = settings.method_params.get(method, {})
        expl = explain(model, volume, method, label=target, prediction=prediction, params=params)
        if method == "counterfactual":
            cf = expl.volumes["counterfactual"]
            material["counterfactual"] = []
            for c, name in enumerate(cf.channel_names):
                material["counterfactual"].append(f"cases/{key}/counterfactual_{name}.nii.gz")
                write_volume(cf.channel(c), folder / material["counterfactual"][-1])
            continue
        material["maps"][method] = f"cases/{key}/map_{method}.nrrd"
        write_volume(expl.heatmap, folder / material["maps"][method])
        heat = expl.heatmap.array[0]
        hits[method] = (pointing_game(np.abs(heat) if expl.display == "signed" else heat, reference.astype(bool),
                                      spacing_kji=volume.spacing_kji)
                        if reference is not None and reference.any() else None)
    truth_file: dict[str, Any] = {"case": spec.case_id, "truth": spec.truth, "ai_probability": probability,
                                  "ai_decision": int(probability >= settings.threshold), "map_hits": hits,
                                  "reference": None}
    if reference is not None and reference.any():
        truth_file["reference"] = f"truth/{key}.nii.gz"
        write_volume(volume.with_array(reference[None], ["reference"]), folder / truth_file["reference"])
    _write_json(truth_file, folder / "truth" / f"{key}.json")
    return {"channel_names": list(volume.channel_names), "material": material}  # the case's name and truth: truth/


def create_study(cases: Sequence[CaseSpec], model: Any, model_source: str, settings: StudySettings,
                 output: str | os.PathLike, progress: ProgressCallback = no_progress) -> Path:
    """Build a study folder at ``output`` (which must not exist or be an empty folder); see the module docstring.

    Args:
        cases: from :func:`read_manifest` or :func:`phantom_cases`.
        model: a loaded classification :class:`~MedXAILib.models.Model`.
        model_source: how the model was named (built-in name, path), recorded in the protocol.
        settings: arms, readers, design, sessions, seed, finding, threshold.
    """
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder; a study is created in a new folder")
    target, finding = check_settings(settings, model)
    _check_both_classes(cases, "the cases")
    sessions = settings.sessions or len(settings.arms)
    rng = np.random.default_rng(settings.seed)
    keys = [f"k{v:06x}" for v in rng.choice(16**6, size=len(cases), replace=False)]
    truth = {k: c.truth for k, c in zip(keys, cases)}
    lists, groups = reading_lists(settings.readers, settings.arms, keys, truth, settings.design, sessions,
                                  settings.seed, settings.groups)
    with staged_folder(out) as tmp:
        protocol_cases: dict[str, Any] = {}
        for n, (key, spec) in enumerate(zip(keys, cases)):
            progress(n / len(cases), f"case {n + 1} of {len(cases)}")
            protocol_cases[key] = _case_material(model, spec, settings, target, finding, tmp, key)
        (tmp / "reads").mkdir()
        from .. import __version__

        protocol = {
            "format": FORMAT, "study_id": str(uuid.uuid4()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "software": {"medxai": __version__},
            "finding": finding, "target_class": model.description.class_names[target],
            "model": {"source": model_source, "name": model.name, "threshold": settings.threshold,
                      "card": model.card()},
            "arms": list(settings.arms), "method_params": settings.method_params, "readers": list(settings.readers),
            "design": settings.design, "groups": settings.groups if settings.design == "split-plot" else 1,
            "reader_group": groups, "sessions": sessions, "seed": settings.seed, "answer_form": settings.form,
            "cases": protocol_cases, "reading_lists": lists,
        }
        protocol["files"] = hash_files(tmp)
        _write_json(protocol, tmp / "study.json")
        progress(1.0, "study created")
    return out
