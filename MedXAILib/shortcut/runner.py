"""``shortcut``: does an explanation show the shortcut a model was proven to take?

1. **Check** everything that can be wrong before anything is written: the artifact (kind, strength in [0, 1], size
   against the first image), the finding, the methods, the folds (:func:`check_shortcut`).
2. **Train** two models with the same configuration, folds and seeds through ``train``
   (:func:`~MedXAILib.training.cross_validate`): ``DIR/train-clean`` on the original images and
   ``DIR/train-confounded`` on the images with the artifact confounded with the finding (:mod:`.confound`). Both
   resume like ``train`` (a rerun keeps finished folds).
3. **Intervene** on every held-out case with the fold models that never saw it (:mod:`.intervention`): AUC (Dice)
   clean and swapped, per-case effect of adding the artifact.
4. **Explain** the explained cases with every method and both fold models, through :func:`MedXAILib.explain.explain`
   (the model's one function): classification maps of the image with the artifact drawn, target the finding's
   class; segmentation maps of the swapped image (blob away from the lesion), target the model's predicted region
   of the finding. Each map is scored against the artifact mask (:mod:`.scoring`).
5. **Write** ``shortcut.json``, ``shortcut.csv`` (one row per explained case, model and method),
   ``interventions.csv`` (one row per held-out case and model), ``masks/`` (each held-out case's artifact mask, in
   its geometry), ``figures/`` and ``report.html`` (:mod:`.report`), as one set.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, MedXAIError
from ..progress import ProgressCallback, no_progress, scaled
from .artifacts import ArtifactSpec, check_fits
from .confound import Finding, draw_case, load_original, resolve_finding

ROLES = ("clean", "confounded")
FORMAT = "medxai-shortcut"


@dataclass
class ShortcutSettings:
    """Everything a shortcut run needs (JSON-ready).

    Attributes:
        dataset: ``KIND:PATH``. task: ``classification`` or ``segmentation``. finding: the label the artifact is
            confounded with (segmentation: a label or region name, default the whole foreground).
        artifact: the :class:`ArtifactSpec` as a dict (required by ``shortcut``; ``tradeoff`` may go without).
        methods: explanation methods. output: the output folder.
        folds, seed: patient-level folds and the seed of folds, weights, sampling and artifacts.
        architecture … device: the ``train`` options both models share (see :class:`~MedXAILib.training.TrainConfig`).
        explain_cases: how many held-out cases are explained (0: all), chosen by a seeded draw balanced over labels.
        params: per-method parameters, method → {key: value}.
    """

    dataset: str
    task: str
    finding: str | None
    artifact: dict[str, Any] | None
    methods: list[str]
    output: str
    folds: int = 5
    seed: int = 0
    architecture: str | None = None
    epochs: int = 20
    steps_per_epoch: int = 25
    batch_size: int = 2
    lr: float = 2e-3
    input_size: list[int] | None = None
    spacing: list[float] | None = None
    patch: list[int] | None = None
    threads: int = 2
    device: str = "cpu"
    explain_cases: int = 0
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_config(s: Any, role: str, folder: Path, weight: float = 0.0, mask: str | None = None) -> Any:
    """The ``train`` configuration of one model of a shortcut or trade-off run (same options for every role)."""
    from ..training import TrainConfig

    return TrainConfig(
        dataset=s.dataset, task=s.task, output=str(folder), folds=s.folds, seed=s.seed,
        architecture=s.architecture, epochs=s.epochs, steps_per_epoch=s.steps_per_epoch, patch=s.patch,
        spacing=s.spacing, input_size=s.input_size, lr=s.lr, batch_size=s.batch_size, device=s.device,
        threads=s.threads, finding=s.finding if s.finding is not None else None,
        artifact=dict(s.artifact) if role != "clean" else None,
        explanation_loss="rrr" if weight > 0 else None, explanation_weight=float(weight),
        explanation_mask=mask if weight > 0 else None,
    )


def model_folder(output: str | Path, role: str, weight: float = 0.0, mask: str | None = None) -> Path:
    """Where a role's fold models live: ``train-clean``, ``train-confounded``, ``train-confounded-rrr-artifact-w10``.

    Weight 0 is plain training, so ``tradeoff`` in a ``shortcut`` folder reuses its confounded models.
    """
    name = f"train-{role}"
    if weight > 0:
        name += f"-rrr-{mask}-w{weight:g}"
    return Path(output) / name


def check_shortcut(s: Any, methods: Sequence[str] = ()) -> tuple[Any, Finding, ArtifactSpec | None]:
    """Refuse a run that cannot work before anything is written; returns ``(dataset, finding, spec)``.

    Checks: the artifact spec (kind, strength in [0, 1], size and contrast), the task, the finding, the methods, the
    folds against the patients, and that the artifact fits in the first case's image.
    """
    from ..datasets import open_dataset
    from ..explain import available_methods
    from ..splits import patient_kfold

    spec = ArtifactSpec.from_dict(s.artifact) if s.artifact else None
    known = set(available_methods()) | {"random"}
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}")
    if len(set(methods)) != len(list(methods)):
        raise InputError("--methods lists a method twice")
    if int(s.folds) < 2:
        raise InputError(f"--folds must be 2 or more; got {s.folds}")
    if int(getattr(s, "explain_cases", 0)) < 0:
        raise InputError(f"--explain-cases must be 0 (all) or more; got {s.explain_cases}")
    ds = open_dataset(s.dataset)
    if ds.task is not None and ds.task != s.task:
        raise InputError(f"{ds.spec} is a {ds.task} dataset; it has no truth for --task {s.task}")
    finding = resolve_finding(ds, s.finding, s.task)
    patient_kfold(ds.cases, s.folds, s.seed)  # too few patients for the folds: refused here
    if spec is not None:
        image, _, _ = load_original(ds.cases[0])
        check_fits(spec, image, f"the images of {ds.spec} (case {ds.cases[0].case_id})")
    return ds, finding, spec


def explained_cases(ds: Any, finding: Finding, folds: Sequence[Any], n: int, seed: int) -> list[str]:
    """Every held-out case (n = 0), or n of them by a seeded draw, half positive and half negative where possible."""
    ids = [c for f in folds for c in f.test]
    if n <= 0 or n >= len(ids):
        return ids
    rng = np.random.default_rng([int(seed) % 2**32, 25])
    order = [ids[i] for i in rng.permutation(len(ids))]
    if finding.task != "classification":
        return sorted(order[:n], key=ids.index)
    by_id = {c.case_id: c for c in ds.cases}
    from .confound import finding_label

    label = {cid: finding_label(load_original(by_id[cid])[1], finding, cid) for cid in order}
    pos = [c for c in order if label[c]][: (n + 1) // 2]
    neg = [c for c in order if not label[c]][: n - len(pos)]
    pos += [c for c in order if label[c] and c not in pos][: n - len(pos) - len(neg)]
    return sorted(pos + neg, key=ids.index)


def _target(model: Any, image: Any, finding: Finding, prediction: Any, lesion: np.ndarray | None) -> Any:
    """Classification: the finding's class. Segmentation: the model's predicted region of the finding (each voxel
    its own predicted class), or the reference lesion of the finding's first class when nothing is predicted."""
    from ..targets import FOREGROUND, Target, _class_indices
    from .intervention import finding_classes

    idx = finding_classes(model, finding)
    if finding.task == "classification":
        return Target("class", idx[0], finding.name)
    labels = _class_indices(model, prediction)
    region = np.isin(labels, idx)
    if region.any():
        return Target("region", FOREGROUND, finding.name, region=region, label_map=labels)
    assert lesion is not None
    return Target("region", idx[0], finding.name, region=lesion)


def explain_case(model: Any, role: str, case: Any, spec: ArtifactSpec | None, finding: Finding,
                 methods: Sequence[str], params: dict[str, dict[str, Any]], effect: float | None, fold: int,
                 keep: bool = False, extra: Callable[..., dict[str, Any]] | None = None,
                 ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Explain one case with one model and every method; returns the rows and (``keep``) the maps for a figure.

    The explained image carries the artifact (classification: ``added``; segmentation: ``swapped``, away from the
    lesion); without an artifact spec it is the clean image. ``extra(model, drawn_case, heat, target)`` adds columns
    to each row (the trade-off's localisation and faithfulness).
    """
    from ..quality.stability import explain_map
    from .confound import finding_region
    from .scoring import artifact_mass, topk_iou

    mode = "clean" if spec is None else "added" if finding.task == "classification" else "swapped"
    d = draw_case(case, spec, finding, mode)
    prediction = model.predict(d.image)
    lesion = finding_region(d.truth, finding) if finding.task == "segmentation" else None
    target = _target(model, d.image, finding, prediction, lesion)
    rows, maps = [], {}
    for m in methods:
        row: dict[str, Any] = {"case_id": case.case_id, "fold": fold, "model": role, "method": m,
                               "label": d.label, "effect": effect}
        t0 = time.perf_counter()
        try:
            heat = explain_map(model, d.image, m, target, dict(params.get(m, {})))
        except MedXAIError as exc:
            row.update(status="error", error=str(exc))
            rows.append(row)
            continue
        row.update(status="ok", seconds=round(time.perf_counter() - t0, 4))
        if d.mask is not None:
            row.update(artifact_mass=artifact_mass(heat, d.mask), topk_iou=topk_iou(heat, d.mask))
        if extra is not None:
            row.update(extra(model, d, heat, target))
        rows.append(row)
        if keep:
            maps[m] = heat.astype(np.float32)
    example = {"image": d.image.array, "mask": d.mask, "maps": maps, "case_id": case.case_id,
               "label": d.label} if keep else None
    return rows, example


def run_shortcut(settings: ShortcutSettings, progress: ProgressCallback = no_progress) -> dict[str, Any]:
    """Run the whole benchmark (see the module docstring); returns the ``shortcut.json`` content plus ``outputs``."""
    from ..cluster import set_torch_threads
    from ..models import load_model
    from ..resources import peak_rss_bytes
    from ..splits import read_splits
    from ..training import cross_validate
    from .intervention import measure_case, summarise_reliance
    from .report import write_shortcut_outputs
    from .scoring import summarise_methods

    t_start = time.perf_counter()
    if not settings.artifact:
        raise InputError("shortcut needs a planted artifact (--artifact tag|patch|intensity)")
    ds, finding, spec = check_shortcut(settings, settings.methods)
    assert spec is not None
    out = Path(settings.output)
    timing: dict[str, float] = {}
    for n, role in enumerate(ROLES):
        t0 = time.perf_counter()
        cfg = train_config(settings, role, model_folder(out, role))
        cross_validate(cfg, scaled(progress, 0.3 * n, 0.3 * (n + 1)))
        timing[f"train_{role}_s"] = round(time.perf_counter() - t0, 2)
    folds = read_splits(model_folder(out, "clean") / "splits.json")
    by_id = {c.case_id: c for c in ds.cases}
    set_torch_threads(settings.threads)
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    models: dict[tuple[str, int], Any] = {}
    n_total = sum(len(f.test) for f in folds) * len(ROLES)
    for fold in folds:
        for role in ROLES:
            model = load_model(model_folder(out, role) / f"fold{fold.index}", device=settings.device)
            models[(role, fold.index)] = model
            for cid in fold.test:
                records.append(measure_case(model, role, by_id[cid], spec, finding, fold.index))
                progress(0.6 + 0.1 * len(records) / n_total, f"intervention {len(records)}/{n_total}")
    timing["interventions_s"] = round(time.perf_counter() - t0, 2)
    reliance = summarise_reliance(records, finding.task)
    explained = explained_cases(ds, finding, folds, int(settings.explain_cases), settings.seed)
    fold_of = {cid: f.index for f in folds for cid in f.test}
    effect = {(r["model"], r["case_id"]): r["effect"] for r in records}
    example_id = max(explained, key=lambda c: abs(effect.get(("confounded", c)) or 0.0))
    rows: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}
    t0 = time.perf_counter()
    for n, cid in enumerate(explained):
        for role in ROLES:
            k = fold_of[cid]
            r, ex = explain_case(models[(role, k)], role, by_id[cid], spec, finding, settings.methods,
                                 settings.params, effect.get((role, cid)), k, keep=cid == example_id)
            rows += r
            if ex is not None:
                examples[role] = ex
        progress(0.7 + 0.27 * (n + 1) / len(explained), f"explained {n + 1}/{len(explained)} cases")
    timing["explanations_s"] = round(time.perf_counter() - t0, 2)
    methods = summarise_methods(rows, settings.methods)
    timing["total_s"] = round(time.perf_counter() - t_start, 2)
    result = {
        "format": FORMAT, "version": 1,
        "settings": settings.as_dict(), "finding": asdict(finding),
        "reliance": reliance, "methods": methods,
        "n_held_out": len(fold_of), "n_explained": len(explained), "explained_cases": explained,
        "models": {role: str(model_folder(out, role)) for role in ROLES},
        "timing": timing, "peak_rss_bytes": peak_rss_bytes(),
    }
    progress(0.98, "writing shortcut.json, shortcut.csv, report.html")
    result["outputs"] = write_shortcut_outputs(out, result, records, rows, examples, ds, spec, finding, fold_of)
    progress(1.0, "shortcut done")
    return result


__all__ = ["ROLES", "ShortcutSettings", "check_shortcut", "explain_case", "model_folder", "run_shortcut",
           "train_config"]
