"""Target scores of a sliding-window model function on perturbed inputs, recomputing only the windows that changed.

Perturbation methods (occlusion, KernelSHAP, LIME, the deletion / insertion curves) score many inputs that differ
from a few reference inputs (the input ``x``, the baseline) in part of the grid. When the model function is MONAI's
sliding window (:func:`~MedXAILib.explain.function_gradients.sliding_window_function`), with windows ``w``, importance
``g`` and normaliser ``N = Σ_w g`` on the padded grid (:mod:`MedXAILib.explain.windows`), the explained score
``S = Σ_v W(v) · Σ_w g f(x[w]) / N`` only involves:

- the windows whose share of the target ``W_w = (W g / N)[w]`` is not zero (*active* windows) — the others are never
  run;
- per active window, the network output ``f(x[w])``, which depends on the window's input only: a window whose input
  equals a reference's (compared voxel by voxel, padding included) takes the reference's output, computed once;
- for coalition methods (KernelSHAP, LIME: inputs ``b + z[labels] ⊙ (x − b)``, :meth:`WindowCache.use_features`),
  a window's input is fixed by the coalition's values on the features that have voxels in that window; a window
  whose restricted coalition was scored before takes that window's logit share again (each window sees only the few
  supervoxels it overlaps, so its restricted coalitions repeat).

Scores (``kind``):

- ``logit``: ``S = Σ_w Σ W_w ⊙ f(x[w])`` — each window's share is a number, cached per reference and window;
- ``probability``: ``Σ W ⊙ a(logits) / Σ W`` with ``a`` the model's output activation (softmax over classes or
  sigmoid) of the blended logits; at every voxel where ``W ≠ 0`` all the windows covering it are active, so blending
  the active windows' outputs (cached or recomputed) gives the function's logits there exactly.

The result is the sliding-window function's, computed with the same per-window outputs and blend (equal to MONAI's
``sliding_window_inference`` on the perturbed input up to float rounding; ``Testing/test_window_cache.py``). For a
model whose function is not MONAI's sliding window, or with ``exact=False``, every input is scored by one call of the
function (nothing to reuse; a 2D classifier's network runs on a channels-last copy, oneDNN's preferred layout).
``stats`` counts the window passes run and those an uncached evaluation would have run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..models import Model
from ..models.function import pad_for_plan
from .function_gradients import sliding_window_function

KINDS = ("logit", "probability")


@dataclass
class _Window:
    index: int
    src: tuple[slice, ...]  # the part of the window on the grid
    dst: tuple[slice, ...]  # where that part sits inside the window
    weights: torch.Tensor  # (1, N, *roi): W_w


@dataclass
class CacheStats:
    """Window network passes run, reused, skipped (no target share), and an uncached evaluation's count."""

    evaluations: int = 0
    window_passes: int = 0
    reused: int = 0
    uncached_window_passes: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        share = self.window_passes / self.uncached_window_passes if self.uncached_window_passes else 1.0
        return {"function_evaluations": self.evaluations, "window_passes": self.window_passes,
                "window_outputs_reused": self.reused, "uncached_window_passes": self.uncached_window_passes,
                "share_of_uncached_passes": round(share, 4), **self.details}


class WindowCache:
    """Exact target scores ``(B,)`` of ``(B, C, *grid)`` inputs (see the module docstring).

    Args:
        model: the model; weights: the target's ``(1, N, *grid)`` weights on the model grid.
        references: ``(1, C, *grid)`` inputs whose window outputs are reused where a scored input's window equals
            theirs (e.g. the input and the baseline).
        kind: ``logit`` or ``probability``. exact: explain the model function (False: one whole-grid pass).
        batch_size: window passes per network call on a GPU. On the CPU windows run one per call, as the model
            function runs them (``Model.infer``: MONAI's ``sw_batch_size=1``): four 64×96×96 windows of the demo U-Net
            per call cost 84 ms a window against 64 ms one at a time (2 cores, oneDNN).
    """

    def __init__(self, model: Model, weights: torch.Tensor, references: Sequence[torch.Tensor] = (),
                 kind: str = "logit", exact: bool = True, batch_size: int = 4) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown score kind {kind!r}; use one of {', '.join(KINDS)}")
        self.model = model
        self.kind = kind
        self.exact = exact
        self.batch_size = max(1, int(batch_size)) if weights.device.type != "cpu" else 1
        self.weights = weights.detach().as_subclass(torch.Tensor)
        self.refs = [r.detach().as_subclass(torch.Tensor) for r in references]
        grid = tuple(int(s) for s in self.weights.shape[2:])
        self.plan = sliding_window_function(model, grid) if exact else None
        self.stats = CacheStats()
        self.windows: list[_Window] = []
        self._cache: dict[tuple[int, int], Any] = {}
        self._features: dict[int, torch.Tensor] | None = None  # window index -> feature ids with voxels in it
        self._seen: dict[tuple[int, bytes], float] = {}  # (window, restricted coalition) -> its logit share
        self._channels_last = self._channels_last_copy() if self.plan is None else None
        if self.plan is not None:
            self._prepare()

    def _channels_last_copy(self) -> torch.nn.Module | None:
        """A channels-last copy of a 2D classifier's network (oneDNN's preferred layout on CPU: about 1.5× faster
        per batch, the same function to float rounding), when the model's function is its plain network pass."""
        model = self.model
        if model.spatial_dims != 2 or model.task != "classification":
            return None
        if isinstance(model.network, torch.jit.ScriptModule):
            return None
        if type(model).infer is not Model.infer or type(model).network_pass is not Model.network_pass:
            return None
        import copy

        return copy.deepcopy(model.network).to(memory_format=torch.channels_last).eval()

    # ---- the windows and their shares of the target
    def _prepare(self) -> None:
        plan, w = self.plan, self.weights
        g = plan.importance.to(w.device, w.dtype)
        norm = torch.zeros(plan.padded, dtype=w.dtype, device=w.device)
        for sl in plan.slices:
            norm[sl] += g
        for i, sl in enumerate(plan.slices):
            src = tuple(slice(max(s.start - a, 0), min(s.stop - a, n)) for s, (a, _), n in
                        zip(sl, plan.pad, plan.grid))
            dst = tuple(slice(r.start - (s.start - a), r.stop - (s.start - a)) for r, s, (a, _) in
                        zip(src, sl, plan.pad))
            ww = torch.zeros((1, w.shape[1]) + tuple(plan.roi), dtype=w.dtype, device=w.device)
            ww[(slice(None), slice(None)) + dst] = w[(slice(None), slice(None)) + src]
            ww *= g / norm[sl]
            if bool(ww.abs().sum() > 0):
                self.windows.append(_Window(i, src, dst, ww))
        self._norm = norm
        self.stats.details["windows"] = len(plan.slices)
        self.stats.details["active_windows"] = len(self.windows)

    def _window_input(self, x: torch.Tensor, win: _Window) -> torch.Tensor:
        """``(B, C, *roi)``: the window of the padded input, padded as the inferer pads (its constant, or reflect /
        replicate). An axis is padded only where the grid is shorter than the window, and there the one window spans
        the whole axis, so padding the window's part of the grid gives the window."""
        return pad_for_plan(x[(slice(None), slice(None)) + win.src], self.plan)

    def _run(self, inputs: torch.Tensor, win: _Window) -> list[Any]:
        """Each window input's value: its share of the logit score, or its network output ``(N, *roi)``."""
        out: list[Any] = []
        network = self.model.network
        for start in range(0, inputs.shape[0], self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            with torch.inference_mode():
                y = network(chunk).as_subclass(torch.Tensor)
            self.stats.window_passes += int(chunk.shape[0])
            if self.kind == "logit":
                out.extend((y * win.weights).flatten(1).sum(1).double().tolist())
            else:
                out.extend(y.unbind(0))
        return out

    def use_features(self, index: torch.Tensor) -> None:
        """Key window outputs by coalition: ``index`` ``(R, *grid)`` (or ``(R, G)`` flattened) holds the feature id
        of every voxel (R = 1, or one row per input channel) of the inputs ``b + z[index] ⊙ (x − b)`` that
        :meth:`__call__` will be given with their coalitions ``z``."""
        if self.plan is None or self.kind != "logit":
            return
        rows = index.reshape((index.shape[0],) + tuple(self.plan.grid))
        self._features = {win.index: torch.unique(rows[(slice(None),) + win.src]).cpu() for win in self.windows}

    # ---- scoring
    def __call__(self, batch: torch.Tensor, coalitions: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(B,)`` float64 of a batch ``(B, C, *grid)`` (one function evaluation each); ``coalitions``
        ``(B, M)``: the coalition each input was made from, after :meth:`use_features`."""
        x = batch.detach().as_subclass(torch.Tensor)
        b = int(x.shape[0])
        self.stats.evaluations += b
        if self.plan is None:
            with torch.inference_mode():
                if self._channels_last is not None:
                    logits = self._channels_last(x.contiguous(memory_format=torch.channels_last))
                else:
                    logits = self.model.run(x, exact=self.exact).as_subclass(torch.Tensor)
            return self._score(logits, self.weights)
        self.stats.uncached_window_passes += b * len(self.plan.slices)
        values: list[list[Any]] = [[None] * len(self.windows) for _ in range(b)]
        for k, win in enumerate(self.windows):
            todo: list[int] = []
            for i in range(b):
                ref = self._matching_reference(x[i : i + 1], win)
                if ref is None:
                    todo.append(i)
                else:
                    values[i][k] = self._reference_value(ref, win)
                    self.stats.reused += 1
            if todo and coalitions is not None and self._features is not None:
                self._from_coalitions(x, coalitions, todo, win, values, k)
            elif todo:
                for i, v in zip(todo, self._run(self._window_input(x[todo], win), win)):
                    values[i][k] = v
        if self.kind == "logit":
            return torch.tensor([sum(v) for v in values], dtype=torch.float64)
        return torch.stack([self._probability(v) for v in values])

    def _from_coalitions(self, x: torch.Tensor, coalitions: torch.Tensor, todo: list[int], win: _Window,
                         values: list[list[Any]], k: int) -> None:
        """Fill ``values[i][k]`` of ``todo`` from restricted coalitions scored before (or twice in this batch: run
        once)."""
        assert self._features is not None
        feats = self._features[win.index].to(coalitions.device)
        keys = [(win.index, (coalitions[i].index_select(0, feats) != 0).cpu().numpy().tobytes()) for i in todo]
        first: dict[tuple[int, bytes], int] = {}  # restricted coalition not scored yet -> the sample that runs it
        for i, key in zip(todo, keys):
            if key not in self._seen and key not in first:
                first[key] = i
        if first:
            run = list(first.values())
            for key, v in zip(first, self._run(self._window_input(x[run], win), win)):
                self._seen[key] = v
        self.stats.reused += len(todo) - len(first)
        for i, key in zip(todo, keys):
            values[i][k] = self._seen[key]

    def _matching_reference(self, xi: torch.Tensor, win: _Window) -> int | None:
        index = (slice(None), slice(None)) + win.src
        for r, ref in enumerate(self.refs):
            if torch.equal(xi[index], ref[index]):
                return r
        return None

    def _reference_value(self, r: int, win: _Window) -> Any:
        key = (r, win.index)
        if key not in self._cache:
            self._cache[key] = self._run(self._window_input(self.refs[r], win), win)[0]
        return self._cache[key]

    def _probability(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """``Σ W ⊙ a(logits) / Σ W`` from the active windows' outputs, blended as the inferer blends them."""
        plan = self.plan
        n = int(self.weights.shape[1])
        acc = torch.zeros((1, n) + plan.padded, dtype=outputs[0].dtype, device=outputs[0].device)
        g = plan.importance.to(acc.device, acc.dtype)
        for win, o in zip(self.windows, outputs):
            acc[(slice(None), slice(None)) + plan.slices[win.index]] += o[None] * g
        crop = (slice(None), slice(None)) + tuple(slice(a, a + s) for s, (a, _) in zip(plan.grid, plan.pad))
        norm = self._norm[crop[2:]]
        logits = acc[crop] / norm.clamp_min(1e-12)
        return self._score(logits, self.weights)[0]

    def _score(self, logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.kind == "logit":
            return (logits * weights).flatten(1).sum(1).double()
        p = self.model.activation(logits.float())
        total = weights.flatten(1).sum(1).clamp_min(1e-12)
        return ((p * weights).flatten(1).sum(1) / total).double()


class ContextScorer:
    """:class:`WindowCache` on an :class:`~MedXAILib.explain.base.ExplainContext`: ``ctx.score`` with reuse, counting
    one forward pass per scored input in the context (as ``ctx.score`` does)."""

    def __init__(self, ctx: Any, references: Sequence[torch.Tensor] = (), batch_size: int = 4) -> None:
        self.ctx = ctx
        self.cache = WindowCache(ctx.model, ctx.weights, references, "logit", bool(ctx.exact), batch_size)

    takes_coalitions = True  # MaskedScorer passes each input's coalition (see WindowCache.use_features)

    def use_features(self, index: torch.Tensor) -> None:
        self.cache.use_features(index)

    def __call__(self, batch: torch.Tensor, coalitions: torch.Tensor | None = None) -> torch.Tensor:
        self.ctx.forward_passes += int(batch.shape[0])
        return self.cache(batch, coalitions)

    def describe(self) -> dict[str, Any]:
        return self.cache.stats.describe()
