"""What the benchmark runs: sizes, sample counts and method parameters, for ``--quick`` and for the full run.

Windows and strides are given in model-grid voxels (turned into millimetres with the model grid's spacing for
MedXAI's ``occlusion``, whose parameters are in mm). Every number here is printed at the start of a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BenchConfig:
    """Benchmark settings.

    Attributes:
        quick: the ``--quick`` settings (fewer windows and samples; same inputs).
        runs, warmup: timed runs (the median is reported) and untimed warm-up runs per row.
        shape_3d: the 3D case (K, J, I) voxels at 2 mm. size_2d: the 2D case side (pixels).
        full_shape: the BraTS-size case (K, J, I) at 1 mm.
        occlusion_window_3d / _stride_3d, occlusion_window_2d / _stride_2d: voxels per axis.
        occlusion_batch: masked inputs per forward pass (ours and captum's ``perturbations_per_eval``).
        scorecam_top_k: the pruned Score-CAM settings timed beside the exact one (0 = no pruning).
        shap_samples_*: KernelSHAP / LIME samples (ours and captum's); shap_high_samples_*: the high-sample reference.
        shap_segments_*: SLIC supervoxels asked for. shap_batch: masked inputs per forward pass.
        ig_steps, ig_batch: Integrated Gradients steps and internal batch size (ours and captum's).
        scaling_shapes: the (K, J, I) volumes of the scaling table.
        cases: which cases to run (``full``, ``3d``, ``2d``). methods: MedXAI methods to run (None = all).
    """

    quick: bool = True
    runs: int = 3
    warmup: int = 1
    shape_3d: tuple[int, int, int] = (128, 128, 128)
    size_2d: int = 512
    full_shape: tuple[int, int, int] = (155, 240, 240)
    occlusion_window_3d: int = 32
    occlusion_stride_3d: int = 32
    occlusion_window_2d: int = 64
    occlusion_stride_2d: int = 64
    occlusion_batch: int = 4
    scorecam_top_k: tuple[int, ...] = (2, 4)
    scorecam_batch: int = 4
    shap_samples_3d: int = 32
    shap_high_samples_3d: int = 256
    shap_segments_3d: int = 32
    shap_samples_2d: int = 64
    shap_high_samples_2d: int = 512
    shap_segments_2d: int = 64
    shap_batch: int = 8
    ig_steps: int = 8
    ig_batch: int = 2
    gradientshap_samples: int = 4
    scaling_shapes: tuple[tuple[int, int, int], ...] = ((64, 64, 64), (96, 96, 96), (128, 128, 128))
    cases: tuple[str, ...] = ("full", "3d", "2d", "scaling")
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
                    "n_segments": self.shap_segments_3d if is3d else self.shap_segments_2d,
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
    """``bench --quick``: under 25 minutes on 2 CPU cores."""
    return BenchConfig(quick=True)


def full_config() -> BenchConfig:
    """``bench``: the issue's sizes with the methods' default-like sample counts (hours on 2 CPU cores)."""
    return BenchConfig(
        quick=False, runs=5, occlusion_window_3d=16, occlusion_stride_3d=16, occlusion_window_2d=32,
        occlusion_stride_2d=32, scorecam_top_k=(4, 8), shap_samples_3d=128, shap_high_samples_3d=1024,
        shap_segments_3d=64, shap_samples_2d=256, shap_high_samples_2d=4096, ig_steps=32, gradientshap_samples=16,
        scaling_shapes=((64, 64, 64), (96, 96, 96), (128, 128, 128), (160, 160, 160)),
    )
