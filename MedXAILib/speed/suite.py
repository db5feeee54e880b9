"""Running the benchmark: every row timed in this one process, maps compared, targets judged.

A *row* is one (case, method, implementation) with its median time (s) over ``runs`` timed runs after ``warmup``
untimed runs, its peak RSS (MB; see :mod:`MedXAILib.speed.timing`), and where it has one, its map's agreement with the
reference map (Spearman over at most 200 000 evenly strided model-grid voxels; the largest absolute difference
relative to the reference's largest |value| for occlusion).

MedXAI rows time ``Method.run`` on the case's prepared model-grid input — the engine's work minus mapping the map back
to the input geometry, which the reference libraries do not do either; non-gradient methods run under ``no_grad`` as
the engine runs them. The ``full`` case times the public API end to end (``Model.predict`` + ``explain``).
"""

from __future__ import annotations

import gc
from typing import Any, Callable

import numpy as np
import torch

from ..errors import MedXAIError
from ..explain.base import ExplainContext, get_method, parse_params
from ..explain.supervoxels import model_grid_spacing
from ..models import Model
from . import references as ref
from .cases import BenchCase, brain_case
from .config import LONG_METHODS, BenchConfig
from .measures import max_relative_difference, spearman
from .timing import Timing, time_call, time_interleaved

Log = Callable[[str], None]
CAMS_WITH_CAPTUM = ("gradcam", "gradcampp", "hirescam", "layercam")


def run_medxai(ctx: ExplainContext, name: str, params: dict[str, Any]) -> torch.Tensor:
    """Run MedXAI method ``name`` on the context as the engine does; ``(1, *grid)`` map (channels summed)."""
    method = get_method(name)
    merged = {**method.params, **parse_params(method, params)}
    method.check(ctx.model, ctx.target, merged)
    if method.needs_gradients:
        result = method.run(ctx, merged)
    else:
        with torch.no_grad():
            result = method.run(ctx, merged)
    maps = result.maps.detach().float()
    return maps.sum(0, keepdim=True) if result.per_channel else maps[:1]


class Bench:
    """Collects rows for one run; see the module docstring."""

    def __init__(self, config: BenchConfig, log: Log = print) -> None:
        self.config = config
        self.log = log
        self.rows: list[dict[str, Any]] = []
        self.scaling: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._captum_cam: Any = None

    # ---- one row ----------------------------------------------------------------------------------------------
    def time(self, case: BenchCase, method: str, implementation: str, fn: Callable[[], Any],
             params: dict[str, Any] | None = None, runs: int | None = None) -> tuple[dict[str, Any], Any]:
        return self.time_row(case.label, case.input_shape, method, implementation, fn, params, runs,
                             case.model_grid, case.model.network)

    def time_row(self, label: str, input_shape: list[int], method: str, implementation: str, fn: Callable[[], Any],
                 params: dict[str, Any] | None = None, runs: int | None = None, model_grid: list[int] | None = None,
                 network: torch.nn.Module | None = None) -> tuple[dict[str, Any], Any]:
        """Time one row (see the module docstring); ``network``'s train/eval mode is restored if ``fn`` flips it."""
        long = method in LONG_METHODS and implementation != "torch"
        warmup = self.config.warmup_long if long else self.config.warmup
        runs = runs or (self.config.runs_long if long else self.config.runs)
        row: dict[str, Any] = {"model": label, "input_shape": input_shape, "method": method,
                               "implementation": implementation}
        if model_grid is not None:
            row["model_grid"] = model_grid
        if method in self.config.single_run_methods and implementation.startswith("medxai"):
            runs, warmup = 1, 0
            row["note"] = "one run, no warm-up (a search of minutes with no reference implementation)"
        if params:
            row["params"] = params
        was_training = network.training if network is not None else None
        try:
            t: Timing = time_call(fn, runs=runs, warmup=warmup)
        except (MedXAIError, RuntimeError, ValueError, NotImplementedError) as exc:
            row.update({"median_s": None, "peak_mb": None, "error": f"{type(exc).__name__}: {exc}"[:300]})
            self.rows.append(row)
            self.log(f"  {method:<18} {implementation:<17} FAILED {row['error']}")
            return row, None
        finally:
            if network is not None and network.training != was_training:  # a library switched the mode
                network.train(bool(was_training))
                row["note"] = "this implementation left the network in the other train/eval mode; restored"
        row.update({"median_s": round(t.median_s, 4), "peak_mb": None if t.peak_mb is None else round(t.peak_mb, 1),
                    "times_s": [round(v, 4) for v in t.times], "warmup_runs": warmup})
        self.rows.append(row)
        self.log(f"  {method:<18} {implementation:<17} {t.median_s:9.3f} s  peak {row['peak_mb']} MB")
        gc.collect()
        return row, t.result

    def skip(self, case: BenchCase, method: str, implementation: str, reason: str) -> None:
        self.rows.append({"model": case.label, "input_shape": case.input_shape, "model_grid": case.model_grid,
                          "method": method, "implementation": implementation, "median_s": None, "peak_mb": None,
                          "skipped": reason})
        self.log(f"  {method:<18} {implementation:<17} skipped: {reason}")

    # ---- a spatial case (3d / 2d) -----------------------------------------------------------------------------
    def run_case(self, case: BenchCase) -> None:
        cfg = self.config
        self.log(f"[{case.label}] {case.note}; model grid {case.model_grid}")
        ctx = case.context()
        is3d = case.tag != "2d"
        spacing = tuple(float(s) for s in model_grid_spacing(ctx.prepared.model_ijk_to_ras, ctx.x.ndim - 2))
        from ..explain import available_methods

        batches = sorted({1, cfg.occlusion_batch, cfg.shap_batch, cfg.scorecam_batch, cfg.ig_batch})
        self.log(f"  case warm-up: forward at batch sizes {batches}, forward+backward at batch {cfg.ig_batch}")
        ref.warm_up(ctx, batches, cfg.ig_batch)
        ours: dict[str, torch.Tensor] = {}
        names = sorted(available_methods())
        if cfg.methods is not None:
            names = [n for n in names if n in cfg.methods]
        if is3d and cfg.single_run_shape_3d:  # timed on the smaller case instead (run_single)
            names = [n for n in names if n not in cfg.single_run_methods]
        # the rows whose ratios are targets run interleaved (see time_interleaved): floors, Grad-CAM(++), captum's
        group: list[tuple[str, str, Callable[[], Any]]] = [
            ("forward", "torch", lambda: ref.forward(ctx)),
            ("forward_backward", "torch", lambda: ref.forward_backward(ctx)),
        ]
        group += [(m, "medxai", lambda m=m: run_medxai(ctx, m, {})) for m in ("gradcam", "gradcampp") if m in names]
        if "gradcam" in names or "gradcampp" in names:
            group.append(("gradcam", "captum", lambda: ref.captum_layergradcam(ctx)))
        for (method, impl, _), t in zip(group, time_interleaved([g[2] for g in group], cfg.runs, cfg.warmup,
                                                                     min_total_s=cfg.interleaved_min_s)):
            row = {"model": case.label, "input_shape": case.input_shape, "model_grid": case.model_grid,
                   "method": method, "implementation": impl, "median_s": round(t.median_s, 4),
                   "peak_mb": None if t.peak_mb is None else round(t.peak_mb, 1),
                   "times_s": [round(v, 4) for v in t.times], "interleaved": True}
            self.rows.append(row)
            self.log(f"  {method:<18} {impl:<17} {t.median_s:9.3f} s  peak {row['peak_mb']} MB (interleaved)")
            if impl == "medxai":
                ours[method] = t.result.detach().float()
            elif impl == "captum":
                self._captum_cam = t.result
        for name in names:
            if name in ("gradcam", "gradcampp"):
                continue
            cls = available_methods()[name]
            if case.model.spatial_dims not in cls.dims or case.model.task not in cls.tasks \
                    or case.target.kind not in cls.target_kinds:
                self.skip(case, name, "medxai", "not supported for this model/target")
                continue
            params = cfg.method_params(name, case.tag, spacing)
            shap = cfg.shap_variants_3d if is3d else cfg.shap_variants_2d
            cams = cfg.scorecam_variants if is3d else cfg.scorecam_variants_2d
            variants = {"scorecam": cams, "kernelshap": shap, "lime": shap}.get(name)
            if variants is not None:
                for i, variant in enumerate(variants):
                    p = {**params, **variant}
                    row, out = self.time(case, name, "medxai", lambda n=name, p=p: run_medxai(ctx, n, p), p)
                    row["variant"] = i
                    if out is not None:
                        ours[f"{name}@{i}"] = out
                continue
            row, out = self.time(case, name, "medxai", lambda n=name, p=params: run_medxai(ctx, n, p), params)
            if out is not None:
                ours[name] = out
        self.references(case, ctx, ours, spacing, is3d)
        if is3d and cfg.exact_3d:
            from .exact import run_exact

            run_exact(self, case, run_medxai, spacing, names)

    def references(self, case: BenchCase, ctx: ExplainContext, ours: dict[str, torch.Tensor],
                   spacing: tuple[float, ...], is3d: bool) -> None:
        cfg = self.config
        names = set(ours) | {n.split("@")[0] for n in ours}

        def compare(row: dict[str, Any], theirs: Any, key: str, relu: bool = False, exact: bool = False) -> None:
            if theirs is None or key not in ours:
                return
            a, b = ours[key], torch.as_tensor(theirs).float().reshape(ours[key].shape)
            if relu:
                a = torch.relu(a)
            row["spearman_to_medxai"] = round(spearman(b, a), 6)
            if exact:
                row["max_rel_diff_to_medxai"] = float(f"{max_relative_difference(a, b):.3g}")

        def medxai_row(method: str, variant: int) -> list[dict[str, Any]]:
            return [r for r in self.rows if r["model"] == case.label and r["method"] == method
                    and r["implementation"] == "medxai" and r.get("median_s") is not None
                    and r.get("variant") == variant]

        if "gradcam" in names or "gradcampp" in names:
            row = next(r for r in self.rows if r["model"] == case.label and r["method"] == "gradcam"
                       and r["implementation"] == "captum")
            compare(row, self._captum_cam, "gradcam", exact=True)
            for plus, name in ((False, "gradcam"), (True, "gradcampp")):
                row, out = self.time(case, name, "monai", lambda plus=plus: ref.monai_cam(ctx, plus))
                if out is not None:
                    raw = out[1]
                    if not bool(torch.isfinite(raw).all()):
                        row["note"] = "MONAI's map has NaN/inf (its Grad-CAM++ exponentiates the score)"
                    else:
                        compare(row, raw, name, relu=True)
            status = ref.pytorch_grad_cam_status()
            if case.model.spatial_dims != 2:
                self.skip(case, "gradcam", "pytorch-grad-cam", "run in 2D only")
            elif status is not None:
                self.skip(case, "gradcam", "pytorch-grad-cam", status)
                self.notes.append(f"pytorch-grad-cam skipped: {status}")
            else:
                row, m = self.time(case, "gradcam", "pytorch-grad-cam", lambda: ref.pytorch_grad_cam(ctx))
                compare(row, m, "gradcam", relu=True)
        if "scorecam" in names:
            row, m = self.time(case, "scorecam", "naive", lambda: ref.naive_scorecam(ctx))
            if m is not None:
                for key in [k for k in ours if k.startswith("scorecam@")]:
                    for r in medxai_row("scorecam", int(key.split("@")[1])):
                        r["reference"] = "naive"
                        r["spearman_to_reference"] = round(spearman(ours[key], m), 6)
                        r["max_rel_diff_to_reference"] = float(f"{max_relative_difference(ours[key], m):.3g}")
        if "occlusion" in names:
            w = cfg.occlusion_window_3d if is3d else cfg.occlusion_window_2d
            s = cfg.occlusion_stride_3d if is3d else cfg.occlusion_stride_2d
            nd = len(spacing)
            row, m = self.time(case, "occlusion", "captum", lambda: ref.captum_occlusion(
                ctx, (w,) * nd, (s,) * nd, 0.0, cfg.occlusion_batch),
                {"window_voxels": w, "stride_voxels": s, "perturbations_per_eval": cfg.occlusion_batch})
            compare(row, m, "occlusion", exact=True)
            self._mark_reference(case, "occlusion", "captum", m, ours)
        if "ig" in names:
            row, m = self.time(case, "ig", "captum", lambda: ref.captum_integrated_gradients(
                ctx, cfg.ig_steps, cfg.ig_batch), {"steps": cfg.ig_steps, "internal_batch_size": cfg.ig_batch})
            compare(row, m, "ig", exact=True)
            self._mark_reference(case, "ig", "captum", m, ours)
        for name in ("kernelshap", "lime"):
            if name not in names:
                continue
            params = {**get_method(name).params, **cfg.method_params(name, case.tag, spacing)}
            row, m = self.time(case, name, "captum", lambda n=name, p=params: ref.captum_supervoxel(ctx, n, p),
                               {k: params[k] for k in ("n_samples", "segmentation", "n_segments", "supervoxel_mm",
                                                       "batch_size", "baseline")})
            compare(row, m, f"{name}@0")
            self._mark_reference(case, name, "captum", m, ours)
            high = int(cfg.shap_high_samples_3d if is3d else cfg.shap_high_samples_2d)
            self.log(f"  {name}: high-sample reference, {high} samples (ours, exact full-grid scoring, "
                     f"seed {cfg.seed + 1}; not timed)")
            try:
                hi = run_medxai(ctx, name, {**params, "n_samples": high, "seed": cfg.seed + 1, "score_scale": 1.0})
            except (MedXAIError, RuntimeError) as exc:
                self.log(f"  {name}: high-sample reference failed: {exc}")
                continue
            for r in self.rows:
                if r["model"] == case.label and r["method"] == name and r.get("median_s") is not None:
                    mp = ours.get(f"{name}@{r.get('variant', 0)}") if r["implementation"] == "medxai" else m
                    if mp is not None:
                        r["agreement_to_high_sample"] = round(spearman(mp, hi), 6)
                        r["high_sample_reference"] = (f"medxai {name}, {high} samples, exact full-grid scoring, "
                                                      f"seed {cfg.seed + 1}")

    def _mark_reference(self, case: BenchCase, method: str, implementation: str, theirs: Any,
                        ours: dict[str, torch.Tensor]) -> None:
        if theirs is None:
            return
        for r in self.rows:
            if r["model"] == case.label and r["method"] == method and r["implementation"] == "medxai":
                mine = ours.get(f"{method}@{r['variant']}" if "variant" in r else method)
                if mine is None:
                    continue
                b = torch.as_tensor(theirs).float().reshape(mine.shape)
                r["reference"] = implementation
                r["spearman_to_reference"] = round(spearman(mine, b), 6)
                r["max_rel_diff_to_reference"] = float(f"{max_relative_difference(mine, b):.3g}")

    # ---- the minutes-long methods on a smaller case -------------------------------------------------------------
    def run_single(self, model: Model) -> None:
        """The single-run methods (a counterfactual search, SEDC, PartitionSHAP) on a brain phantom of
        ``single_run_shape_3d``, once each (``--quick``: one such search on the 128³ case takes minutes)."""
        cfg = self.config
        from ..explain import available_methods

        case = brain_case(model, cfg.single_run_shape_3d, seed=cfg.seed, tag="3d-small")
        self.log(f"[{case.label}] {case.note}; the single-run methods")
        spacing = tuple(float(s) for s in model_grid_spacing(case.context().prepared.model_ijk_to_ras, 3))
        for name in cfg.single_run_methods:
            if name not in available_methods() or (cfg.methods is not None and name not in cfg.methods):
                continue
            params = cfg.method_params(name, case.tag, spacing)
            self.time(case, name, "medxai", lambda n=name, p=params: run_medxai(case.context(), n, p), params)

    # ---- the full BraTS-size case -----------------------------------------------------------------------------
    def run_full(self, case: BenchCase) -> None:
        from ..errors import TargetError
        from ..explain import explain

        self.log(f"[{case.label}] {case.note}")

        def segment_and_explain() -> Any:
            pred = case.model.predict(case.volume)
            try:
                return explain(case.model, case.volume, "gradcam", prediction=pred)
            except TargetError:
                return explain(case.model, case.volume, "gradcam", target=case.target)

        row, out = self.time(case, "segment+gradcam", "medxai", segment_and_explain)
        if out is not None:
            row["target"] = out.target.describe()
            row["heatmap_shape"] = list(out.heatmap.array.shape)

    # ---- scaling ----------------------------------------------------------------------------------------------
    def run_scaling(self, model: Model) -> None:
        self.log("[scaling] forward and Grad-CAM of the 3D UNet at three volume sizes")
        for shape in self.config.scaling_shapes:
            self._scale_one(model, tuple(int(v) for v in shape))
            gc.collect()

    def _scale_one(self, model: Model, shape: tuple[int, ...]) -> None:
        case = brain_case(model, shape, tag=f"scaling-{'x'.join(str(s) for s in shape)}")
        ctx = case.context()
        for method, impl, fn in (
            ("forward", "torch", lambda: ref.forward(ctx)),
            ("forward_backward", "torch", lambda: ref.forward_backward(ctx)),
            ("gradcam", "medxai", lambda: run_medxai(ctx, "gradcam", {})),
        ):
            row, _ = self.time(case, method, impl, fn)
            self.rows.remove(row)
            row["voxels"] = int(np.prod(shape))
            self.scaling.append(row)


def run_bench(config: BenchConfig, models: dict[str, Model], log: Log = print) -> dict[str, Any]:
    """Run every case in ``config.cases`` with ``models`` (keys ``3d`` and ``2d``); returns the JSON document."""
    from .cases import chest_case, full_case
    from .report import evaluate_targets

    torch.manual_seed(config.seed)
    bench = Bench(config, log)
    if "full" in config.cases and "3d" in models:
        bench.run_full(full_case(models["3d"], config.full_shape))
        gc.collect()
    if "3d" in config.cases and "3d" in models:
        case = brain_case(models["3d"], config.shape_3d, seed=config.seed)
        bench.run_case(case)
        del case
        gc.collect()
        if config.single_run_shape_3d:
            bench.run_single(models["3d"])
            gc.collect()
    if "2d" in config.cases and "2d" in models:
        bench.run_case(chest_case(models["2d"], config.size_2d, seed=config.seed, real=config.real_2d))
    if "scaling" in config.cases and "3d" in models:
        bench.run_scaling(models["3d"])
    if "agreement" in config.cases:
        from .cohort import run_agreement

        run_agreement(bench, log)
    if "bundles" in config.cases:
        from pathlib import Path

        from .bundles import run_bundles

        def timer(label: str, shape: list[int], method: str, impl: str, fn: Callable[[], Any]
                  ) -> tuple[dict[str, Any], Any]:
            return bench.time_row(label, shape, method, impl, fn)

        bench.rows.extend(run_bundles(timer, log, Path(config.bundle_zoo) if config.bundle_zoo else None,
                                      methods=tuple(config.methods) if config.methods is not None else None))
    return {
        "config": config.as_dict(),
        "cases": bench.rows,
        "scaling": bench.scaling,
        "targets": evaluate_targets(bench.rows),
        "notes": bench.notes,
    }
