"""What the benchmark runs: sizes, sample counts and method parameters, for ``--quick`` and for the full run.

Windows and strides are given in model-grid voxels (turned into millimetres with the model grid's spacing for
MedXAI's ``occlusion``, whose parameters are in mm). Every number here is printed at the start of a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LONG_METHODS = ("occlusion", "kernelshap", "lime", "ig", "gradientshap", "scorecam", "deletion_insertion")
"""Methods whose runs are tens of network passes each (see ``BenchConfig.warmup_long``)."""
CASES = ("full", "3d", "2d", "scaling", "agreement", "bundles")
"""Every case name; ``bundles`` (the full-size Model Zoo bundles, tens of minutes) runs only when asked for."""


@dataclass
class BenchConfig:
    """Benchmark settings.

    Attributes:
        quick: the ``--quick`` settings (fewer windows and samples; same inputs).
        runs, warmup: timed runs (the median is reported) and untimed warm-up runs per row.
        interleaved_min_s: the interleaved rows (floors, Grad-CAM, Grad-CAM++, captum's LayerGradCam) get more than
            ``runs`` runs (up to 51) until their timed rounds take about this many seconds: Grad-CAM and captum's
            LayerGradCam do the same work, so "no slower" is decided by a few per cent.
        warmup_long: warm-up runs of the long rows (:data:`LONG_METHODS`: each run is tens of network passes). With
            0 they rely on the case warm-up (one forward at every batch size the case's rows use, one forward +
            backward), which loads the same kernels; a first-call cost of ~0.1 s does not move a run of 10-60 s.
        shape_3d: the 3D case (K, J, I) voxels at 2 mm. size_2d: the 2D phantom's side (pixels), used when
            ``real_2d`` is off or the real radiograph is absent (:func:`~MedXAILib.speed.cases.chest_case`).
        runs_long: timed runs of the long rows (:data:`LONG_METHODS` and their references); the median is reported.
        single_run_methods: methods timed by one run without warm-up (a counterfactual search takes minutes and has
            no reference implementation to be compared with). single_run_shape_3d: with a shape, they are timed on a
            brain phantom of that (K, J, I) size instead of the 3D case (``3d-small``); None: on the 3D case.
        full_shape: the BraTS-size case (K, J, I) at 1 mm.
        occlusion_window_3d / _stride_3d, occlusion_window_2d / _stride_2d: voxels per axis.
        occlusion_batch: masked inputs per forward pass (ours and captum's ``perturbations_per_eval``).
        scorecam_variants, scorecam_variants_2d: the MedXAI Score-CAM settings timed in 3D / 2D (each against the
            naive loop's map): ``{}`` is the exact batched path; ``mask_scale`` scores the masked inputs on a coarser
            grid; ``top_k`` prunes channels.
        shap_samples_*: KernelSHAP / LIME samples (ours and captum's); shap_high_samples_*: the high-sample reference
            (ours, exact full-grid scoring, another seed; with 2^M − 2 ≤ samples, KernelSHAP's reference is the exact
            Shapley vector). shap_segmentation_3d, shap_segments_*, shap_supervoxel_mm_3d: the features (``grid``
            cubes of that edge, or about that many SLIC supervoxels). shap_batch: masked inputs per forward pass
            (ours, and captum's ``perturbations_per_eval``).
        shap_variants_3d / _2d: the MedXAI KernelSHAP / LIME settings timed: ``{}`` is exact; ``score_scale`` scores
            the masked inputs on a coarser grid (its agreement with the full-grid reference decides whether it counts).
        ig_steps, ig_batch: Integrated Gradients steps and internal batch size (ours and captum's).
        scaling_shapes: the (K, J, I) volumes of the scaling table.
        cases: which cases to run (``full``, ``3d``, ``2d``, ``scaling``, ``agreement``, ``bundles``; see
            :data:`CASES`). methods: MedXAI methods to run (None = all).
        exact_3d: time the exact rows of the 3D case (the model function, its sliding window) beside the
            whole-grid approximation: ``inference``, Grad-CAM, occlusion, KernelSHAP, LIME and the deletion /
            insertion curves.
        agreement_cases, agreement_methods, agreement_shape: the cohort-agreement case (cases × methods stored maps
            of that (K, J, I) shape).
        bundle_zoo: the Model Zoo folder of the ``bundles`` case (None: ``$MEDXAI_TEST_DATA/monai-model-zoo``).
    """

    quick: bool = True
    runs: int = 3
    warmup: int = 1
    warmup_long: int = 0
    interleaved_min_s: float = 40.0
    shape_3d: tuple[int, int, int] = (128, 128, 128)
    size_2d: int = 256
    real_2d: bool = True
    runs_long: int = 3
    single_run_methods: tuple[str, ...] = ("counterfactual", "sedc", "partitionshap")
    single_run_shape_3d: tuple[int, int, int] | None = None
    full_shape: tuple[int, int, int] = (155, 240, 240)
    occlusion_window_3d: int = 32
    occlusion_stride_3d: int = 32
    occlusion_window_2d: int = 64
    occlusion_stride_2d: int = 64
    occlusion_batch: int = 4
    scorecam_variants: tuple[dict[str, Any], ...] = ({"mask_scale": 0.5, "error_samples": 0},)
    scorecam_variants_2d: tuple[dict[str, Any], ...] = ({"mask_scale": 0.5, "error_samples": 0},
                                                        {"mask_scale": 0.375, "error_samples": 0})
    scorecam_batch: int = 4
    shap_samples_3d: int = 32
    shap_high_samples_3d: int = 256
    shap_segmentation_3d: str = "grid"
    shap_segments_3d: int = 8
    shap_supervoxel_mm_3d: float = 128.0
    shap_samples_2d: int = 256
    shap_high_samples_2d: int = 2048
    shap_segments_2d: int = 32
    shap_batch: int = 8
    shap_variants_3d: tuple[dict[str, Any], ...] = ({"score_scale": 0.5, "scale_error_samples": 0},
                                                    {"score_scale": 0.75, "scale_error_samples": 0})
    shap_variants_2d: tuple[dict[str, Any], ...] = ({}, {"score_scale": 0.5, "scale_error_samples": 0})
    ig_steps: int = 4
    ig_batch: int = 2
    gradientshap_samples: int = 2
    scaling_shapes: tuple[tuple[int, int, int], ...] = ((64, 64, 64), (96, 96, 96), (128, 128, 128))
    cases: tuple[str, ...] = ("full", "3d", "2d", "scaling", "agreement")
    exact_3d: bool = True
    agreement_cases: int = 10
    agreement_methods: tuple[str, ...] = ("gradcam", "ig", "occlusion")
    agreement_shape: tuple[int, int, int] = (155, 240, 240)
    bundle_zoo: str | None = None
    methods: tuple[str, ...] | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def method_params(self, method: str, tag: str, spacing: tuple[float, ...]) -> dict[str, Any]:
        """MedXAI parameters for ``method`` on case ``tag`` (model-grid ``spacing`` in mm per axis)."""
        is3d = tag != "2d"
        if method == "occlusion":
            w = self.occlusion_window_3d if is3d else self.occlusion_window_2d
            s = self.occlusion_stride_3d if is3d else self.occlusion_stride_2d
            return {"window_mm": [w * float(sp) for sp in spacing], "stride_mm": [s * float(sp) for sp in spacing],
                    "baseline": 0.0, "batch_size": self.occlusion_batch}
        if method in ("kernelshap", "lime"):
            return {"n_samples": self.shap_samples_3d if is3d else self.shap_samples_2d,
                    "segmentation": self.shap_segmentation_3d if is3d else "slic",
                    "n_segments": self.shap_segments_3d if is3d else self.shap_segments_2d,
                    "supervoxel_mm": self.shap_supervoxel_mm_3d,
                    "batch_size": self.shap_batch, "baseline": "mean", "seed": self.seed}
        if method == "scorecam":
            return {"batch_size": self.scorecam_batch}
        if method == "ig":
            return {"steps": self.ig_steps, "internal_batch_size": self.ig_batch, "baseline": "zeros"}
        if method == "gradientshap":
            return {"n_samples": self.gradientshap_samples, "batch_size": self.ig_batch}
        if method == "saliency":
            return {"batch_size": self.ig_batch}
        return {}


def quick_config() -> BenchConfig:
    """``speed --quick``: under 25 minutes on 2 CPU cores (long rows timed once)."""
    return BenchConfig(quick=True, runs_long=1, single_run_shape_3d=(64, 64, 64))


def full_config() -> BenchConfig:
    """``speed``: the issue's sizes with the methods' default-like sample counts (hours on 2 CPU cores)."""
    return BenchConfig(
        quick=False, runs=5, warmup_long=1, occlusion_window_3d=16, occlusion_stride_3d=16, occlusion_window_2d=32,
        occlusion_stride_2d=32,
        scorecam_variants=({}, {"mask_scale": 0.5, "error_samples": 2}, {"top_k": 8, "error_samples": 2}),
        scorecam_variants_2d=({}, {"mask_scale": 0.375, "error_samples": 2}, {"top_k": 32, "error_samples": 2}),
        shap_samples_3d=128, shap_high_samples_3d=1024, shap_segmentation_3d="slic", shap_segments_3d=64,
        shap_variants_3d=({}, {"score_scale": 0.5}), shap_samples_2d=512, shap_high_samples_2d=8192,
        shap_segments_2d=64, ig_steps=32, gradientshap_samples=16,
        scaling_shapes=((64, 64, 64), (96, 96, 96), (128, 128, 128), (160, 160, 160)), runs_long=5,
    )
