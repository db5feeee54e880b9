"""The model function as a sum of network calls, for layer maps that are exact by construction.

Every model function MedXAI explains — :meth:`~MedXAILib.models.Model.infer` (MONAI's sliding window, a bundle's
inferer, nnU-Net's windows with test-time mirroring and fold averaging) or the whole-grid
:meth:`~MedXAILib.models.Model.network_pass` — is a *linear* combination of network calls::

    F(x) = Σ_c T_c( net_c( E_c x ) )

where call ``c`` gets an input ``E_c x`` cut from the model-grid tensor ``x`` (a window, padding, a flip, a slice of a
2D configuration) and its output is weighted, flipped back and accumulated by a linear map ``T_c`` (the inferer's
importance weights over their sum, 1/P for P mirrored passes, 1/F for F folds, a crop). For a target score
``S = Σ W ⊙ F(x)`` the *share* of call ``c`` is ``D_c = ∂S/∂out_c = T_cᵀ W`` and ``S = Σ_c Σ D_c ⊙ out_c``.

Steps:

1. :func:`record_function` — the forward pass (the *prediction's*): the function runs once, under ``no_grad``, with
   the layer's output replaced by a leaf tensor in every call of the network that holds the layer; gradient recording
   is switched on inside those calls only, and parameters are frozen, so each call keeps the autograd graph of its
   *tail* (layer → output) and nothing before the layer. Each call's output reaches the inferer detached, so the
   blend records nothing. Calls beyond a memory budget keep nothing and are recomputed in step 3.
2. :meth:`LayerRecord.compute_shares` — every ``D_c``. For a sliding window whose recorded calls match the model's
   plan (:class:`~MedXAILib.explain.windows.CallWindows`: each call's input checked against its window), from the
   plan: ``flip(W · g / N)[w] / (P · F)``. Otherwise, without re-deriving ``E_c`` or ``T_c``: the function runs
   again with every network call replaced by a zero tensor (the blend is linear, so its gradient does not depend on
   the outputs) and autograd of ``S`` through the adapter's own blend gives every ``D_c``.
3. :meth:`LayerRecord.place` — per call, ``G_c = ∂S/∂A_c`` by a backward pass through the kept tail with ``D_c``
   (recomputed calls run their network pass now), a per-call map ``M_c`` (a CAM's ``combine(A_c, G_c)``) upsampled
   to the call's input, placed where that input came from: at its window (flipped back) from the plan, or, in the
   generic case, by running the function a third time without the network and taking the gradient of
   ``Σ_c Σ (E_c x)[:, :1] ⊙ M_c`` with respect to ``x``, which is ``Σ_c E_cᵀ M_c``. Constant padding drops out (its
   voxels are not in ``x``).

A check comes free: the blend being linear, ``S = Σ_c Σ D_c ⊙ out_c``; the sidecar reports both sides (``score``,
``score_from_calls``, equal to float32 rounding — nnU-Net's float16 blend differs from it where its normaliser
underflows) when one network makes every call. The cost over the prediction is one backward pass through the
tails (convolutions there differentiated as forward convolutions, :mod:`.conv_adjoint`) and the per-call maps;
the number of calls, the kept bytes and the recomputed calls are reported.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from ..errors import MedXAIError, MethodError
from ..models import Model
from .conv_adjoint import fast_input_gradients
from .windows import CallWindows, match_calls

MapFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def frozen_parameters(network: torch.nn.Module) -> Iterator[None]:
    """Switch off ``requires_grad`` on every parameter for the block (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in network.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def called_networks(model: Model) -> list[torch.nn.Module]:
    """The modules the model function calls (nnU-Net: one per fold; otherwise the network)."""
    folds = getattr(model, "fold_networks", None)
    return list(folds()) if callable(folds) else [model.network]


def layer_network(model: Model, layer: torch.nn.Module) -> torch.nn.Module:
    """The called network that holds ``layer`` (a fold of an nnU-Net ensemble, else the network)."""
    for net in called_networks(model):
        if any(m is layer for m in net.modules()):
            return net
    raise MethodError("the layer is not inside a network the model function calls")


def mirrored_passes(model: Model) -> int:
    """How many mirrored passes each window runs (nnU-Net's test-time mirroring; 1 otherwise)."""
    passes = getattr(model, "tta_passes", None)
    return len(passes()) if callable(passes) else 1


def _checksum(t: torch.Tensor) -> float:
    return float(t.detach().sum(dtype=torch.float64))


@dataclass
class LayerCall:
    """One call of the layer's network during the function.

    Attributes:
        checksum: float64 sum of the call's input (the replays check they see the same calls in the same order).
        in_shape / out_shape / out_dtype: the call's input and output.
        acts: ``(B, K, *layer grid)`` leaf activations with the tail graph (None: recomputed in :meth:`place`).
        out: the call's output, the root of the kept tail graph.
        share: ``D_c = ∂S/∂out_c``, shaped like the output (after :meth:`LayerRecord.compute_shares`).
    """

    checksum: float
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...] = ()
    out_dtype: torch.dtype = torch.float32
    acts: torch.Tensor | None = None
    out: torch.Tensor | None = None
    share: torch.Tensor | None = None
    layer_runs: int = 0


@dataclass
class LayerRecord:
    """A function evaluation with the layer's activations kept (see the module docstring).

    Attributes:
        logits: the function's output ``(1, N, *grid)`` (what the prediction is made from).
        calls: the layer network's calls, in the order the function made them.
        other_calls: output shapes and dtypes of the calls of networks without the layer (other folds), in order.
        kept_bytes: bytes held by the kept tails (activations, saved tensors, outputs).
    """

    model: Model
    layer: torch.nn.Module
    layer_name: str
    x: torch.Tensor
    exact: bool
    logits: torch.Tensor
    calls: list[LayerCall] = field(default_factory=list)
    other_calls: dict[int, list[tuple[tuple[int, ...], torch.dtype]]] = field(default_factory=dict)
    kept_bytes: int = 0
    budget_bytes: int = 0
    layer_shape: list[int] = field(default_factory=list)
    layout: CallWindows | None = None
    score: float = 0.0

    # ---- replays ---------------------------------------------------------------------------------------------------
    def _function(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.run(x, exact=self.exact)

    @contextlib.contextmanager
    def _replay(self, on_layer_call: Callable[[int, LayerCall, torch.Tensor], torch.Tensor]) -> Iterator[list[int]]:
        """Replace every called network's forward: the layer network's k-th call runs ``on_layer_call``; other
        networks return zeros of their recorded shapes. Yields the number of layer-network calls seen."""
        net_of_layer = layer_network(self.model, self.layer)
        seen = [0]
        saved: list[tuple[torch.nn.Module, Any]] = []

        def layer_forward(inp: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            k = seen[0]
            seen[0] += 1
            if k >= len(self.calls) or tuple(inp.shape) != self.calls[k].in_shape or not _same(
                    _checksum(inp), self.calls[k].checksum):
                raise MethodError(f"{self.layer_name}: the model function did not repeat its network calls (call "
                                  f"{k + 1}); its layer maps cannot be placed")
            return on_layer_call(k, self.calls[k], inp)

        def other_forward(i: int) -> Callable[..., torch.Tensor]:
            count = [0]

            def forward(inp: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
                shape, dtype = self.other_calls[i][count[0]]
                count[0] += 1
                return torch.zeros(shape, dtype=dtype, device=inp.device)

            return forward

        for i, net in enumerate(called_networks(self.model)):
            saved.append((net, net.__dict__.get("forward")))
            net.forward = layer_forward if net is net_of_layer else other_forward(i)
        try:
            yield seen
        finally:
            for net, old in saved:
                if old is None:
                    del net.forward
                else:
                    net.forward = old
        if seen[0] != len(self.calls):
            raise MethodError(f"{self.layer_name}: the replayed function made {seen[0]} network calls, the recorded "
                              f"one {len(self.calls)}")

    def compute_shares(self, score: Callable[[torch.Tensor], torch.Tensor], weights: torch.Tensor) -> float:
        """Each call's share ``D_c = ∂S/∂out_c`` (see the module docstring) for the score ``score(logits)`` with
        target weights ``weights`` ``(1, N, *grid)``. Returns ``S`` of the recorded logits."""
        with torch.no_grad():
            self.score = float(score(self.logits).sum())
        if self.layout is not None:
            for call, d in zip(self.calls, self.layout.shares(weights, [c.out_shape for c in self.calls])):
                call.share = d.to(call.out_dtype)
            return self.score
        leaves: list[torch.Tensor] = []

        def zeros(k: int, call: LayerCall, inp: torch.Tensor) -> torch.Tensor:
            leaves.append(torch.zeros(call.out_shape, dtype=call.out_dtype, device=inp.device, requires_grad=True))
            return leaves[-1].clone()  # inferers weigh their outputs in place (MONAI)

        with frozen_parameters(self.model.network), torch.enable_grad():
            with self._replay(zeros):
                out = self._function(self.x.detach())
            s = score(out).sum()
            grads = torch.autograd.grad(s, leaves, allow_unused=True) if s.requires_grad else [None] * len(leaves)
        for call, g in zip(self.calls, grads):
            call.share = torch.zeros(call.out_shape, dtype=call.out_dtype) if g is None else g.detach()
        return self.score

    def place(self, map_fn: MapFn, progress: Callable[[float, str], None] | None = None
              ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``Σ_c E_cᵀ M_c`` on the model grid, ``(1, *grid)``, with ``M_c = map_fn(A_c, G_c)`` upsampled to the
        call's input (see the module docstring). Returns the map and counts for the sidecar.

        Calls whose share is zero contribute nothing and are skipped. Each kept tail is released once used."""
        counts: dict[str, Any] = {"network_calls": len(self.calls), "calls_explained": 0, "calls_recomputed": 0,
                                  "shares": "window plan" if self.layout is not None else "autograd of the function"}
        todo = {k for k, c in enumerate(self.calls) if c.share is not None and bool(c.share.abs().sum() > 0)}
        net_of_layer = layer_network(self.model, self.layer)
        original_forward = type(net_of_layer).forward.__get__(net_of_layer)
        from_calls = [0.0]

        def call_map(k: int, call: LayerCall, inp: Callable[[], torch.Tensor]) -> torch.Tensor:
            if progress is not None:
                progress(counts["calls_explained"] / max(len(todo), 1),
                         f"layer map of network call {counts['calls_explained'] + 1} of {len(todo)}")
            assert call.share is not None
            if call.acts is not None and call.out is not None:
                acts, out = call.acts, call.out
            else:  # not kept in the forward pass: its network pass runs again now
                with capture(self.layer, self.layer_name) as captured, fast_input_gradients(net_of_layer, lambda: True):
                    out = original_forward(inp().detach())
                if len(captured) != 1:
                    raise MethodError(_runs_message(self.layer_name, len(captured)))
                acts = captured[0]
                counts["calls_recomputed"] += 1
            share = call.share.to(out.dtype)
            (g,) = torch.autograd.grad(out, acts, grad_outputs=share)
            from_calls[0] += float((out.detach() * share).sum(dtype=torch.float64))
            call.acts = call.out = None
            counts["calls_explained"] += 1
            return self._upsampled(map_fn(acts.detach(), g.detach()), call.in_shape)

        with frozen_parameters(self.model.network), torch.enable_grad():
            try:
                if self.layout is not None:
                    layout, acc = self.layout, self.layout.canvas()
                    for k in sorted(todo):
                        layout.add(acc, k, call_map(k, self.calls[k], lambda k=k: layout.inputs(k)))
                        self.calls[k].share = None
                    placed = layout.crop(acc)
                else:
                    placed = self._place_by_replay(todo, call_map)
            finally:
                self.release()
        if len(called_networks(self.model)) == 1 and len(todo) == counts["calls_explained"]:
            counts["score"] = self.score
            counts["score_from_calls"] = from_calls[0]
        return placed, counts

    def _place_by_replay(self, todo: set[int], call_map: Callable[..., torch.Tensor]) -> torch.Tensor:
        """The generic placement: the gradient of ``Σ_c Σ (E_c x)[:, :1] ⊙ M_c`` with respect to ``x``."""
        objective: list[torch.Tensor] = []

        def place_call(k: int, call: LayerCall, inp: torch.Tensor) -> torch.Tensor:
            if k in todo:
                objective.append((inp[:, :1] * call_map(k, call, lambda: inp)).sum())
            call.acts = call.out = None
            return torch.zeros(call.out_shape, dtype=call.out_dtype, device=inp.device)

        x = self.x.detach().clone().requires_grad_(True)
        with self._replay(place_call):
            self._function(x)
        placed = torch.autograd.grad(torch.stack(objective).sum(), x)[0] if objective else torch.zeros_like(x)
        return placed.detach()[0, :1].float()

    @staticmethod
    def _upsampled(cam: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """``(B, 1, *layer grid)`` → ``(B, 1, *input spatial)`` (bi/trilinear, align_corners=False)."""
        size = tuple(in_shape[2:])
        if tuple(cam.shape[2:]) == size:
            return cam.float()
        mode = "bilinear" if cam.ndim == 4 else "trilinear" if cam.ndim == 5 else "linear"
        return F.interpolate(cam.float(), size=size, mode=mode, align_corners=False)

    def release(self) -> None:
        """Drop the kept tails (activations, graphs, outputs)."""
        for call in self.calls:
            call.acts = call.out = None
        self.kept_bytes = 0


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _runs_message(name: str, runs: int) -> str:
    return (f"layer {name!r} ran {runs} times in one network pass (1 expected); choose a layer that runs once per "
            "network pass")


@contextlib.contextmanager
def capture(layer: torch.nn.Module, name: str, leaf: bool = True) -> Iterator[list[torch.Tensor]]:
    """Collect ``layer``'s outputs during the block. With ``leaf`` each output is replaced by a detached leaf that
    requires grad (the network gets a copy, so residual blocks may add to it in place), so a backward pass stops
    there."""
    captured: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise MethodError(f"layer {name!r} does not output a single tensor")
        if not leaf:
            captured.append(output)
            return None
        captured.append(output.detach().requires_grad_(True))
        return captured[-1].clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _graph_bytes(root: torch.Tensor, seen: set[int]) -> int:
    """Bytes of the tensors the autograd graph behind ``root`` keeps for its backward pass (storages in ``seen``, e.g.
    parameters, or counted before, are skipped)."""
    total, stack, visited = 0, [root.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        saved = list(getattr(node, "saved_tensors", ()) if hasattr(node, "_forward_cls") else ())
        saved += [getattr(node, a) for a in dir(node) if a.startswith("_saved_")]
        total += sum(_storage_bytes(t, seen) for t in saved if isinstance(t, torch.Tensor))
        stack.extend(n for n, _ in node.next_functions)
    return total


def _storage_bytes(t: torch.Tensor, seen: set[int]) -> int:
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return int(t.numel() * t.element_size())
    ptr = storage.data_ptr()
    if ptr in seen:
        return 0
    seen.add(ptr)
    return int(storage.nbytes())


def record_function(model: Model, x: torch.Tensor, layer_name: str | None, exact: bool,
                    budget_bytes: int) -> LayerRecord:
    """Run the model function on ``x`` once, keeping each layer-network call's tail (see the module docstring).

    Args:
        x: ``(1, C, *grid)`` the prepared input. layer_name: a module name (None: the model's default CAM layer).
        exact: the function :meth:`Model.run` runs (``infer`` or the whole-grid ``network_pass``).
        budget_bytes: how much the kept tails may hold; calls beyond it keep nothing and are recomputed later.
    """
    if isinstance(model.network, torch.jit.ScriptModule):
        raise MethodError("layer methods need hooks, which TorchScript models do not support; load a state_dict model")
    name = layer_name or model.default_cam_layer() or ""
    layer = model.layer(layer_name)
    net_of_layer = layer_network(model, layer)
    others = [n for n in called_networks(model) if n is not net_of_layer]
    record = LayerRecord(model, layer, name, x.detach(), exact, torch.empty(0), budget_bytes=budget_bytes)
    state: dict[str, Any] = {"keep": False, "grad": False, "seen": set(), "bytes": 0, "last": 0, "tail": False}
    params = {p.untyped_storage().data_ptr() for p in model.network.parameters()}  # the model's, not the tail's

    def pre(_m: torch.nn.Module, args: Any) -> None:
        inp = args[0]
        record.calls.append(LayerCall(_checksum(inp), tuple(inp.shape)))
        state["keep"] = budget_bytes > 0 and record.kept_bytes + state["last"] <= budget_bytes
        state["seen"], state["bytes"] = set(params), 0
        state["grad"] = torch.is_grad_enabled()
        if state["keep"]:
            torch.set_grad_enabled(True)

    def at_layer(_m: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        call = record.calls[-1]
        call.layer_runs += 1
        if not isinstance(output, torch.Tensor):
            raise MethodError(f"layer {name!r} does not output a single tensor")
        if not record.layer_shape:
            record.layer_shape = [int(s) for s in output.shape[1:]]
        if not state["keep"] or call.layer_runs > 1:
            return None
        call.acts = output.detach().requires_grad_(True)
        state["bytes"] += _storage_bytes(call.acts, state["seen"])
        state["tail"] = True
        return call.acts.clone()

    def post(_m: torch.nn.Module, _args: Any, output: Any) -> Any:
        call = record.calls[-1]
        if call.layer_runs != 1:
            raise MethodError(_runs_message(name, call.layer_runs))
        if not isinstance(output, torch.Tensor):
            raise MethodError("layer maps need a network that returns one tensor")
        call.out_shape, call.out_dtype = tuple(output.shape), output.dtype
        torch.set_grad_enabled(state["grad"])
        state["tail"] = False
        if not state["keep"] or call.acts is None:
            call.acts = None
            return output.detach()
        call.out = output
        state["bytes"] += _storage_bytes(output, state["seen"]) + _graph_bytes(output, state["seen"])
        record.kept_bytes += state["bytes"]
        state["last"] = state["bytes"]
        return output.detach().clone()  # the inferer may weigh it in place; the kept graph's root stays intact

    def other_post(i: int) -> Callable[..., None]:
        def hook(_m: torch.nn.Module, _args: Any, output: Any) -> None:
            record.other_calls.setdefault(i, []).append((tuple(output.shape), output.dtype))

        return hook

    handles = [net_of_layer.register_forward_pre_hook(pre), layer.register_forward_hook(at_layer),
               net_of_layer.register_forward_hook(post)]
    nets = called_networks(model)
    handles += [n.register_forward_hook(other_post(nets.index(n))) for n in others]
    try:
        with frozen_parameters(model.network), torch.no_grad(), fast_input_gradients(
                net_of_layer, lambda: bool(state["tail"])):
            record.logits = model.run(x.detach(), exact=exact).detach()
    finally:
        for h in handles:
            h.remove()
    if not record.calls:
        raise MethodError(f"layer {name!r}: the model function never ran the network that holds it")
    record.layout = _call_windows(model, record, x) if exact else None
    return record


def _call_windows(model: Model, record: LayerRecord, x: torch.Tensor) -> CallWindows | None:
    """The windows of the model's sliding window behind the recorded calls, or None (see :func:`match_calls`)."""
    try:
        plan = model.window_plan(tuple(x.shape[2:]))
    except MedXAIError:
        return None
    if plan is None:
        return None
    passes = model.tta_passes() if callable(getattr(model, "tta_passes", None)) else [()]
    return match_calls(plan, passes, len(called_networks(model)), x, record.calls)
