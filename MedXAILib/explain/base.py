"""The explanation engine: methods, their registry, the run context and the :class:`Explanation`.

A method sees the input on the model grid — a ``(1, C, *grid)`` tensor — and the target as a score function
``logits → (B,)``. It returns a map on the model grid (or on a layer's grid, for CAMs): ``(1, *spatial)`` for
a map over space, or ``(C, *spatial)`` when it attributes each input channel. The engine then brings the map back
onto the input grid (linear interpolation over the same physical box) and records what it cost.

Every method explains the same function, the one :meth:`~MedXAILib.models.Model.predict` uses: the model function
:meth:`~MedXAILib.models.Model.infer` (its sliding window, padding, test-time augmentation), through
:meth:`ExplainContext.logits` with ``ctx.exact`` True (the default). Layer methods (CAMs, LRP) explain a sliding-window
function window by window with the inferer's weights (:mod:`MedXAILib.explain.windows`). ``exact=False`` (the
``exact`` parameter every method accepts) explains one whole-grid network pass, or patches of it, instead: an
approximation whose deviation from the function the engine measures and reports.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, Prediction, PreparedInput
from ..progress import ProgressCallback, no_progress
from ..targets import Target, score
from ..volume import Volume


@dataclass
class Cost:
    """What an explanation cost: network passes, seconds, and peak memory in bytes (None where unknown)."""

    forward_passes: int = 0
    backward_passes: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    peak_cuda_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "seconds": round(self.seconds, 4),
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_cuda_bytes": self.peak_cuda_bytes,
        }


@dataclass
class MethodResult:
    """What a method returns.

    Attributes:
        maps: ``(1, *spatial)`` or ``(C, *spatial)`` float tensor (model grid, or a layer's grid for CAMs).
        per_channel: True when ``maps`` has one map per input channel.
        details: method-specific numbers (conservation, completeness gap, approximation error…).
        input_maps: ``(M, K, J, I)`` float32 maps already on the input grid (the engine then uses them instead of
            resampling ``maps``); counterfactual methods give the change in input units here.
        volumes: extra input-geometry outputs (e.g. ``counterfactual``: a Volume; ``series``: a list of Volumes).
    """

    maps: torch.Tensor
    per_channel: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    input_maps: np.ndarray | None = None
    volumes: dict[str, Any] = field(default_factory=dict)


class ExplainContext:
    """Everything a method needs, and the pass counters it must keep honest.

    Attributes:
        model: the model.
        prepared: the input on the model grid (``prepared.tensor`` is ``(1, C, *grid)``).
        target: what is explained.
        weights: the target's weight tensor on the model grid (see :mod:`MedXAILib.targets`).
        progress: callback ``(fraction, stage)``.
    """

    def __init__(
        self, model: Model, prepared: PreparedInput, target: Target, progress: ProgressCallback = no_progress
    ) -> None:
        self.model = model
        self.prepared = prepared
        self.target = target
        self.x: torch.Tensor = prepared.tensor
        self.weights = target.weights(model, prepared)
        self.progress = progress
        self.forward_passes = 0
        self.backward_passes = 0
        self.window: tuple[slice, ...] | None = None
        self.exact = True
        self.function_logits: torch.Tensor | None = None  # the function's logits on ``x``, if a method computed them

    def for_window(self, window: tuple[slice, ...], progress: ProgressCallback) -> ExplainContext:
        """A context over one window of the model grid: the input and the target weights cropped to it."""
        sub = ExplainContext.__new__(ExplainContext)
        sub.model, sub.prepared, sub.target = self.model, self.prepared, self.target
        index = (slice(None), slice(None)) + window
        sub.x = self.x[index]
        sub.weights = self.weights[index]
        sub.progress = progress
        sub.forward_passes = sub.backward_passes = 0
        sub.window = window
        sub.exact = False
        sub.function_logits = None
        return sub

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model function on a batch ``(B, C, *grid)`` (one network pass when not ``exact``); counts B passes."""
        self.forward_passes += int(x.shape[0])
        return self.model.run(x, exact=self.exact)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Target score per sample ``(B,)`` for a batch ``(B, C, *grid)``."""
        return score(self.logits(x), self.weights)

    def score_of_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return score(logits, self.weights)

    def count_backward(self, n: int = 1) -> None:
        self.backward_passes += n


class Method:
    """One explainer. Subclasses set the class attributes and implement :meth:`run`.

    Class attributes:
        name: the CLI name (``gradcam``…). title: a human name. reference: the paper.
        dims: spatial dims supported (2, 3). tasks: ``classification`` / ``segmentation``.
        target_kinds: ``class`` / ``region`` / ``voxel``. needs_gradients: whether it backpropagates.
        display: ``positive`` (show the positive part, e.g. CAMs) or ``signed``.
        params: default parameters (the CLI exposes them as ``--param key=value``).
        windowable: False when the method must see the whole grid (a counterfactual cannot be stitched from
            patches); the engine then never cuts the grid.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    dims: ClassVar[tuple[int, ...]] = (2, 3)
    tasks: ClassVar[tuple[str, ...]] = ("classification", "segmentation")
    target_kinds: ClassVar[tuple[str, ...]] = ("class", "region", "voxel")
    needs_gradients: ClassVar[bool] = True
    display: ClassVar[str] = "signed"
    params: ClassVar[dict[str, Any]] = {}
    cost_model: ClassVar[str] = ""
    windowable: ClassVar[bool] = True

    def check(self, model: Model, target: Target, params: dict[str, Any]) -> None:
        """Refuse, before running, what this method cannot do."""
        if model.spatial_dims not in self.dims:
            raise MethodError(f"{self.name} does not support {model.spatial_dims}D models")
        if model.task not in self.tasks:
            raise MethodError(f"{self.name} does not support {model.task} models")
        if target.kind not in self.target_kinds:
            raise MethodError(f"{self.name} cannot explain a {target.kind} target")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise MethodError(f"{self.name} has no parameter {', '.join(unknown)} (its parameters: {known})")

    def windowable_for(self, params: dict[str, Any]) -> bool:
        """Whether the engine may cut the grid into patches for this run (see ``windowable``)."""
        return self.windowable

    def prediction(self, model: Model, volume: Volume, params: dict[str, Any], exact: bool
                   ) -> tuple[Prediction, PreparedInput | None]:
        """The prediction a default target is resolved from: :meth:`Model.predict`. A method that can reuse that
        forward pass (the CAMs) runs it itself and also returns the prepared input, which the engine then reuses."""
        return model.predict(volume), None

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        """Forward and backward passes a run will need (for the cost estimate)."""
        return (1, 1 if self.needs_gradients else 0)

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        raise NotImplementedError


_REGISTRY: dict[str, type[Method]] = {}
#: Modules that define methods, imported on first use of the registry (so ``import MedXAILib`` stays light; a module
#: that is not present is simply not offered). Kept here, below the package, so the registry imports no module above.
METHOD_MODULES = (
    "cam",
    "scorecam",
    "gradients",
    "perturbation",
    "shapley",
    "partition",
    "lrp",
    "baselines",
    "counterfactual",
    "sedc",
)
_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    package = __name__.rpartition(".")[0]
    for name in METHOD_MODULES:
        try:
            importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
    _loaded = True


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its name."""
    if not cls.name:
        raise ValueError("a Method needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def available_methods() -> dict[str, type[Method]]:
    _load_all()
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    methods = available_methods()
    if name not in methods:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(sorted(methods))}")
    return methods[name]()


def parse_params(method: Method, raw: dict[str, Any]) -> dict[str, Any]:
    """Cast ``key=value`` strings to the type of each parameter's default."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in method.params:
            out[key] = value  # refused by check() with the list of known parameters
            continue
        default = method.params[key]
        if isinstance(value, str) and default is not None and not isinstance(default, str):
            try:
                if isinstance(default, bool):
                    value = value.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, (list, tuple)):
                    value = [type(default[0])(v) for v in value.split(",")] if default else value.split(",")
                else:
                    value = type(default)(value)
            except ValueError:
                kind = type(default).__name__
                raise MethodError(f"{method.name}: parameter {key}={value!r} is not a {kind}") from None
        out[key] = value
    return out


@dataclass
class Explanation:
    """A heat map in the input's geometry, with what it explains and what it cost.

    Attributes:
        heatmap: ``(1, K, J, I)`` float32 Volume of signed raw relevance on the input grid.
        method: method name; params: the parameters used (defaults filled in).
        target: the explained target.
        cost: passes, seconds and peak memory actually paid.
        channel_maps: ``(C, K, J, I)`` per-input-channel relevance when the method attributes inputs, else None.
        channel_importance: each input channel's share of total |relevance| (overall and inside the target region).
        details: method-specific diagnostics.
        display: ``positive`` or ``signed`` — how :meth:`normalized` shows the map.
        volumes: extra outputs in the input's geometry (counterfactual methods: ``counterfactual`` and ``series``).
    """

    heatmap: Volume
    method: str
    params: dict[str, Any]
    target: Target
    cost: Cost
    channel_maps: Volume | None = None
    channel_importance: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    display: str = "signed"
    volumes: dict[str, Any] = field(default_factory=dict)

    def normalized(self) -> Volume:
        """A display view: ``positive`` maps → the positive part scaled to [0, 1]; ``signed`` → [−1, 1] by max |x|."""
        arr = self.heatmap.array.astype(np.float32)
        if self.display == "positive":
            arr = np.maximum(arr, 0)
        peak = float(np.abs(arr).max())
        return self.heatmap.with_array(arr / peak if peak > 0 else arr)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (everything but the arrays)."""
        return {
            "method": self.method,
            "params": self.params,
            "target": self.target.describe(),
            "cost": self.cost.as_dict(),
            "channel_importance": self.channel_importance,
            "details": self.details,
            "display": self.display,
        }


def channel_importance(maps: np.ndarray, names: list[str], region: np.ndarray | None) -> dict[str, Any]:
    """Each channel's share of total |relevance|, overall and inside ``region``.

    Args:
        maps: ``(C, K, J, I)`` per-channel relevance on the input grid.
        region: ``(K, J, I)`` bool or None.
    """
    mag = np.abs(maps.astype(np.float64))
    totals = mag.reshape(mag.shape[0], -1).sum(1)
    out: dict[str, Any] = {"overall": _shares(totals, names)}
    if region is not None and region.any():
        inside = mag[:, region].sum(1)
        out["inside_target"] = _shares(inside, names)
    return out


def _shares(values: np.ndarray, names: list[str]) -> dict[str, float]:
    total = float(values.sum())
    return {n: (float(v) / total if total > 0 else 0.0) for n, v in zip(names, values)}


def call_with_params(fn: Callable[..., Any], params: dict[str, Any]) -> Any:
    sig = inspect.signature(fn)
    return fn(**{k: v for k, v in params.items() if k in sig.parameters})
