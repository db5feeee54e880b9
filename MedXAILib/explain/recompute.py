"""Recompute instead of store: checkpointed network segments, and the tensor memory a pass needs, simulated first.

Why. A backward pass needs what each operation saved in the forward pass (a convolution's input, a normalisation's
input, an activation's output), and autograd keeps all of it until the backward pass has used it. On a full-size BraTS
case (SegResNet, 16 channels on 4 × 240 × 240 × 160 voxels, 590 MB per full-resolution feature map) one forward +
backward keeps about 10 GB of such tensors.

Checkpointed segments. A *segment* is a module whose forward runs under ``torch.utils.checkpoint`` (non-reentrant):
the forward pass keeps only the segment's inputs, and when the backward pass reaches the segment its forward is run
again to rebuild what it saved. The values are the same (the same operations on the same inputs), the cost is one
more forward pass of the checkpointed segments, and the memory is the segments' inputs, plus what operations outside
any segment save, plus the largest single segment's own saved tensors while it is being recomputed.

Choosing the segments (:func:`choose_segments`). One forward pass with gradients on a copy of the network on
PyTorch's ``meta`` device (shapes, no data, no arithmetic) records for every module the bytes its operations save for
the backward pass (*internal* bytes) and the bytes of its inputs. Starting from the whole network as one segment, the
segment with the most internal bytes is replaced by its children (list and dict containers are looked through; a child
with a single leaf layer is never a segment: it would recompute nothing) as long as the estimate ::

    stored = Σ_segments input bytes + bytes saved outside every segment;   peak ≈ stored + max_segment internal bytes

decreases.

Simulated peak (:class:`TensorMemory`, :func:`simulate`). The computation that will run is run once more on ``meta``
tensors under a dispatch mode that adds the bytes of every new storage and subtracts them when the storage is freed
(its last reference goes, as in the real run); the largest total is the tensor memory the real run allocates, for the
real shapes, in about a second. The process's own memory (interpreter, libraries, model, input) comes on top
(:func:`resident_bytes`). ``explain --dry-run`` reports it, and the methods use it to pick their batch and whether
to checkpoint (:func:`memory_budget`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from ..resources import resident_bytes

#: The process peak an explanation plans for when ``MEDXAI_MEMORY_LIMIT`` is not set (bytes): a full-size case on a
#: 24 GiB, 2-core machine shared with other work. Half of the machine's available memory when that is less.
DEFAULT_PROCESS_LIMIT = 8 * 1024**3
AVAILABLE_SHARE = 0.5
CHECKPOINT_CHOICES = ("auto", "true", "false")


# ---- tensor memory, simulated ----------------------------------------------------------------------------------------
class TensorMemory(TorchDispatchMode):
    """Bytes of tensor storage alive during a block, and their peak (``with TensorMemory() as mem: …; mem.peak``).

    Every storage an operation creates is counted once, when it appears, and released when Python frees it (a weak
    reference's callback), so the count follows the real run's allocations. Storages that existed before the block
    (parameters, inputs) are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.current = 0
        self.peak = 0

    def _release(self, nbytes: int) -> None:
        self.current -= nbytes

    def _track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st in self._seen:
            return
        n = int(st.nbytes())
        self._seen[st] = weakref.ref(st, lambda _r, n=n: self._release(n))
        self.current += n
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        name = getattr(getattr(func, "overloadpacket", None), "__name__", "")
        if name in ("convolution", "convolution_backward"):  # the kernel's working copies live during the call only
            self.peak = max(self.peak, self.current + convolution_workspace(name, args, out))
        return out


def convolution_workspace(name: str, args: Any, out: Any) -> int:
    """Bytes a CPU convolution call allocates for itself beyond its outputs (not seen as tensors).

    Measured with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed, so that freed memory leaves the resident set: a
    convolution (oneDNN) holds one output-sized reordered copy during its forward pass and two input-sized ones while
    it computes its input gradient; a transposed convolution unfolds its input into a column buffer of
    ``C_out · kernel volume × input voxels`` values.
    """
    tensors = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    if not tensors:
        return 0
    forward = name == "convolution"
    x, w = (args[0], args[1]) if forward else (args[1], args[2])
    transposed = bool(args[6] if forward else args[7])
    if transposed:
        groups = int(args[8] if forward else args[9])
        per_sample = w.shape[1] * groups * int(torch.Size(w.shape[2:]).numel()) * int(torch.Size(x.shape[2:]).numel())
        return int(per_sample * x.element_size())
    return int((1 if forward else 2) * tensors[0].untyped_storage().nbytes())


def meta_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` on the ``meta`` device (parameters frozen): shapes without data."""
    net = copy.deepcopy(network).to("meta")
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def simulate(fn: Callable[[], Any]) -> int:
    """Peak bytes of tensor storage ``fn`` allocates (run it on ``meta`` tensors to allocate nothing)."""
    with TensorMemory() as mem:
        fn()
    return int(mem.peak)


def memory_budget() -> int:
    """Bytes an explanation may plan to add to this process: ``MEDXAI_MEMORY_LIMIT`` (a limit on the whole process)
    minus what the process holds now; without it, the smaller of :data:`DEFAULT_PROCESS_LIMIT` minus what the
    process holds and :data:`AVAILABLE_SHARE` of the machine's available memory."""
    from ..memory import LIMIT_ENV, available_bytes

    held = resident_bytes()
    if os.environ.get(LIMIT_ENV):
        return max(available_bytes() - held, 0)
    return max(min(DEFAULT_PROCESS_LIMIT - held, int(AVAILABLE_SHARE * available_bytes())), 0)


# ---- which modules to checkpoint -------------------------------------------------------------------------------------
@dataclass
class _Census:
    internal: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, int] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    leaves: dict[str, int] = field(default_factory=dict)


def _nbytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


def _called_children(module: nn.Module, prefix: str) -> list[str]:
    """Direct children, looking through ModuleList / ModuleDict containers (which are never called themselves)."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            out.extend(_called_children(child, full))
        else:
            out.append(full)
    return out


def census(network: nn.Module, run: Callable[[nn.Module], Any]) -> _Census:
    """Internal and input bytes of every module during ``run(meta network)`` (a forward pass with gradients)."""
    net = meta_copy(network)
    modules = dict(net.named_modules())
    info = _Census()
    for name, m in modules.items():
        info.children[name] = _called_children(m, name)
        info.leaves[name] = sum(1 for c in m.modules() if next(iter(c.children()), None) is None)
    stack: list[str] = []
    seen: dict[str, set[int]] = {}

    def pre(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: Any, kwargs: Any) -> None:
            stack.append(name)
            tensors = {t.untyped_storage()._cdata: _nbytes(t) for t in tree_leaves((args, kwargs))
                       if isinstance(t, torch.Tensor)}
            info.inputs[name] = info.inputs.get(name, 0) + sum(tensors.values())
        return hook

    def post(_m: nn.Module, _a: Any, _o: Any) -> None:
        stack.pop()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage()._cdata
        for name in stack:
            keys = seen.setdefault(name, set())
            if key not in keys:
                keys.add(key)
                info.internal[name] = info.internal.get(name, 0) + _nbytes(t)
        return t

    handles = []
    for name, m in modules.items():
        handles.append(m.register_forward_pre_hook(pre(name), with_kwargs=True))
        handles.append(m.register_forward_hook(post))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            run(net)
    finally:
        for h in handles:
            h.remove()
    return info


def _estimate(info: _Census, segments: list[str]) -> int:
    root = info.internal.get("", 0)
    inside = sum(info.internal.get(s, 0) for s in segments)
    stored = sum(info.inputs.get(s, 0) for s in segments) + max(root - inside, 0)
    return stored + max((info.internal.get(s, 0) for s in segments), default=0)


def choose_segments(network: nn.Module, run: Callable[[nn.Module], Any]) -> tuple[list[str], int, int]:
    """The modules to checkpoint (see the module docstring), with the census estimates of the plain and the
    checkpointed peak of saved tensors (bytes). ``run(net)`` makes one forward pass of ``net`` on meta inputs.

    A module with a single called child (a wrapper such as MONAI's ``UNet.model`` or ``SkipConnection``) is split
    without being judged on its own: only the split below it can lower the estimate."""
    info = census(network, run)
    plain = info.internal.get("", 0)
    segments = [""]
    best, best_value = list(segments), _estimate(info, segments)
    while True:
        splittable = [s for s in segments if info.children.get(s)]
        if not splittable:
            break
        top = max(splittable, key=lambda s: info.internal.get(s, 0))
        kids = [c for c in info.children[top] if c in info.internal and info.leaves.get(c, 0) >= 2]
        trial = [s for s in segments if s != top] + kids
        value = _estimate(info, trial)
        wrapper = len([c for c in info.children[top] if c in info.internal]) == 1
        if value >= best_value and not wrapper:
            break
        segments = trial
        if value < best_value:
            best, best_value = list(trial), value
    return [s for s in best if s], plain, best_value


# ---- running with checkpointed segments ------------------------------------------------------------------------------
@dataclass
class Recompute:
    """Live state of :func:`checkpointed`: ``depth`` > 0 while a segment's forward is being recomputed."""

    depth: int = 0

    @property
    def active(self) -> bool:
        return self.depth > 0


@contextlib.contextmanager
def checkpointed(network: nn.Module, segments: list[str]) -> Iterator[Recompute]:
    """Run the named submodules of ``network`` as checkpointed segments inside the block (restored afterwards).

    Hooks that keep state (LRP's records) read ``state.active`` to tell the recomputation from the first forward.
    """
    from torch.utils.checkpoint import checkpoint

    state = Recompute()
    patched: list[tuple[nn.Module, Any]] = []

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            calls = [0]

            def body(*a: Any, **k: Any) -> Any:
                calls[0] += 1
                if calls[0] == 1:
                    return original(*a, **k)
                state.depth += 1
                try:
                    return original(*a, **k)
                finally:
                    state.depth -= 1

            if not torch.is_grad_enabled():
                return original(*args, **kwargs)
            return checkpoint(body, *args, use_reentrant=False, **kwargs)
        return forward

    try:
        for name in segments:
            module = network.get_submodule(name)
            patched.append((module, module.__dict__.get("forward")))
            module.forward = wrap(module.forward)  # type: ignore[method-assign]
        yield state
    finally:
        for module, before in reversed(patched):
            if before is None:
                del module.forward
            else:
                module.forward = before  # type: ignore[method-assign]


@dataclass
class MemoryPlan:
    """How one method's passes will run: whether checkpointed, which segments, at what batch, and the estimates.

    Attributes:
        checkpoint: segments are recomputed. segments: their module names. batch: inputs per pass.
        peak_bytes: simulated tensor peak of one pass as it will run, plus the method's own buffers (bytes).
            plain_peak_bytes: the same without checkpointing (at the same batch). budget_bytes: what the plan had to
            fit (:func:`memory_budget`).
        baseline_bytes: the process's resident memory when the plan was made.
    """

    checkpoint: bool
    segments: list[str]
    batch: int
    peak_bytes: int
    plain_peak_bytes: int
    budget_bytes: int
    baseline_bytes: int
    reason: str = ""

    @property
    def estimated_process_peak_bytes(self) -> int:
        return self.baseline_bytes + self.peak_bytes

    def describe(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "segments": len(self.segments),
            "batch": self.batch,
            "estimated_tensor_peak_bytes": self.peak_bytes,
            "estimated_tensor_peak_without_checkpoint_bytes": self.plain_peak_bytes,
            "estimated_process_peak_bytes": self.estimated_process_peak_bytes,
            "budget_bytes": self.budget_bytes,
            "reason": self.reason,
        }


def parse_checkpoint(value: Any) -> str:
    """``checkpoint`` parameter → ``auto`` / ``true`` / ``false``."""
    from ..errors import MethodError

    text = str(value).strip().lower()
    text = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}.get(text, text)
    if text not in CHECKPOINT_CHOICES:
        raise MethodError(f"checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {value!r}")
    return text


def plan_memory(
    network: nn.Module, pass_on: Callable[[nn.Module, int, list[str] | None], Any], mode: str = "auto",
    max_batch: int = 1,
    budget: int | None = None,
    extra_bytes: int = 0,
) -> MemoryPlan:
    """Pick the batch and whether to checkpoint so that one pass fits ``budget`` (default :func:`memory_budget`).

    Args:
        network: the real network (copied to ``meta`` for the simulation).
        pass_on: ``pass_on(meta_network, batch, segments)`` runs one pass as the method will (forward and backward)
            on meta tensors of the real shapes: without recomputation when ``segments`` is None, else recomputing
            as it would when checkpointed, with the named segments (``[]`` while the segments are being chosen).
        mode: ``auto`` (checkpoint only when the largest batch that fits without it is 1 and still over budget),
            ``true`` or ``false``.
        max_batch: the largest batch the method asks for; halved until the estimate fits (never below 1).
        extra_bytes: what the method holds beside one pass (accumulators, baselines), added to the estimate.
    """
    mode = parse_checkpoint(mode)
    budget = memory_budget() if budget is None else int(budget)
    base = resident_bytes()
    net = meta_copy(network)
    batch = max(1, int(max_batch))

    def peak(b: int, segments: list[str] | None) -> int:
        return simulate(lambda: pass_on(net, b, segments)) + int(extra_bytes)

    segments: list[str] | None = None
    while True:
        plain = peak(batch, None)
        wanted = mode == "true" or (mode == "auto" and plain > budget and batch == 1)
        if wanted and segments is None:
            segments = choose_segments(network, lambda n: pass_on(n, 1, []))[0]
        if wanted and segments:
            use, value = True, peak(batch, segments)
        else:
            use, value = False, plain  # a smaller batch costs no extra pass; checkpointing costs one forward
        if value <= budget or batch == 1:
            break
        batch = max(1, batch // 2)
    if mode == "auto":
        reason = ("the pass fits without checkpointing" if not use else
                  "without checkpointing one pass would exceed the budget")
    else:
        reason = f"checkpoint={mode}"
    return MemoryPlan(use, list(segments or []) if use else [], batch, value, plain, budget, base, reason)
