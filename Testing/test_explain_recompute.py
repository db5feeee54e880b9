"""Recompute instead of store (issue 21): exact gradients window by window, checkpointed segments, LRP's recomputed
layers, and the memory simulation — each against a reference that does not use the code under test.

- Integrated Gradients of a sliding-window function — its input gradients taken window by window, with checkpointed
  network segments — equals captum's ``IntegratedGradients`` of the score through MONAI's own
  ``sliding_window_inference`` (Gaussian blend, padding of an axis shorter than the window, windows outside the
  target skipped): 1e-4 relative.
- LRP with recomputed layers in a checkpointed segment equals the hand-computed dense-matrix LRP of
  ``test_explain_lrp`` (1e-9, float64); on a MONAI UNet (PReLU, so the z⁺/γ rules see negative inputs) it conserves
  the score to 1e-3 with zero biases.
- The simulated tensor peak of a pass (``meta`` tensors) is checked against the kernel's count of a child process's
  resident memory over the same pass on real tensors (``VmHWM`` minus the resident memory before it, within 25 %),
  on a MONAI SegResNet without and with checkpointed segments; checkpointing lowers both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import tiny_unet_model
from test_explain_lrp import _class_score, _manual, _Small

from MedXAILib.explain.base import ExplainContext
from MedXAILib.explain.function_gradients import gradient_plan
from MedXAILib.explain.lrp import lrp_relevance, resolve_composite
from MedXAILib.explain.recompute import plan_memory
from MedXAILib.targets import resolve_target
from MedXAILib.volume import Volume, make_ijk_to_ras


def _windowed_case(seed: int = 0) -> tuple[ExplainContext, tuple[int, ...]]:
    """A tiny UNet whose function is a sliding window of 8³ over a 12 × 6 × 14 grid (the short axis is padded)."""
    model = tiny_unet_model(channels=2, classes=3, seed=seed)
    model.description.patch_size = [8, 8, 8]
    rng = np.random.default_rng(seed)
    vol = Volume(rng.normal(size=(2, 12, 6, 14)).astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0)))
    region = np.zeros(vol.shape, bool)
    region[1:5, 1:5, 1:6] = True  # windows at the far end of the grid hold none of it
    target = resolve_target(model, vol, label="l1", region=region)
    ctx = ExplainContext(model, model.prepare(vol), target)
    return ctx, (8, 8, 8)


def _monai_score(ctx: ExplainContext, roi: tuple[int, ...]):
    from monai.inferers import sliding_window_inference

    def f(x: torch.Tensor) -> torch.Tensor:
        logits = sliding_window_inference(x, roi_size=list(roi), sw_batch_size=1, predictor=ctx.model.network,
                                          overlap=0.25, mode="gaussian")
        return (logits * ctx.weights).flatten(1).sum(1)

    return f


def test_checkpointed_ig_equals_captum_through_monai_sliding_window() -> None:
    from captum.attr import IntegratedGradients

    from MedXAILib.explain.gradients import integrated_gradients

    ctx, roi = _windowed_case(seed=1)
    ours, details = integrated_gradients(ctx, torch.zeros_like(ctx.x), steps=4, internal_batch_size=2,
                                         checkpoint="true")
    assert details["memory"]["checkpoint"] is True and details["memory"]["segments"] > 0
    plan = ctx.model.window_plan(tuple(ctx.x.shape[2:]))
    assert plan is not None and len(plan.slices) > 2 and any(a or b for a, b in plan.pad)
    assert ctx.forward_passes == 4 + 2 and ctx.backward_passes == 4  # steps, and the two end points
    ref = IntegratedGradients(_monai_score(ctx, roi)).attribute(ctx.x, baselines=0.0, n_steps=4,
                                                                 method="gausslegendre", internal_batch_size=2)
    torch.testing.assert_close(ours, ref[0].float(), rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


class _Nested(nn.Module):
    """``_Small`` with its second convolution inside a block that can be checkpointed (same parameters)."""

    def __init__(self, small: _Small) -> None:
        super().__init__()
        self.conv1, self.act1 = small.conv1, small.act1
        self.block = nn.Sequential(small.conv2, small.act2, small.flat)
        self.fc = small.fc

    @property
    def conv2(self) -> nn.Module:
        return self.block[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(self.act1(self.conv1(x))))


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-plus-flat", "first=zplus,conv=gamma,linear=epsilon"])
def test_recomputed_layers_in_a_checkpointed_segment_equal_the_hand_computation(composite: str, monkeypatch) -> None:
    """Also with the recomputed convolutions and their input gradients cut into slabs of one row."""
    from MedXAILib.explain import lrp_rules

    monkeypatch.setattr(lrp_rules, "VJP_SLAB_ELEMENTS", 10)
    torch.manual_seed(3)
    net = _Nested(_Small().double().eval())
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    eps, gamma = 0.05, 0.5
    ours, d = lrp_relevance(net, x, _class_score(1), composite=composite, epsilon=eps, gamma=gamma,
                            segments=["block"])
    ref = _manual(net, x, resolve_composite(composite), eps, gamma)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    assert d["first_layers"] == ["conv1"] and abs(d["unexplained_share"]) < 1e-9


def test_checkpointed_lrp_conserves_on_a_unet_with_signed_inputs() -> None:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(3, 2, 3, (4, 8, 16), (2, 2), num_res_units=1).eval()
    for m in net.modules():
        if isinstance(getattr(m, "bias", None), nn.Parameter):
            nn.init.zeros_(m.bias)
    x = torch.randn(1, 2, 16, 16, 12)
    rel, d = lrp_relevance(net, x, _class_score(2), composite="epsilon-gamma-box", epsilon=1e-9, divisor=4,
                           checkpoint="true")
    assert d["memory"]["checkpoint"] is True and torch.isfinite(rel).all()
    assert abs(d["conservation"] - 1) < 1e-3, d["conservation"]


def test_the_plan_lowers_the_batch_first_and_checkpoints_only_at_batch_one() -> None:
    ctx, _ = _windowed_case()
    free = gradient_plan(ctx, 4)
    assert free.batch == 4 and not free.checkpoint
    half_of_one = free.plain_peak_bytes // 8  # not even one input fits without recomputation
    tight = plan_memory(ctx.model.network, _pass(ctx), "auto", 4, budget=half_of_one)
    assert tight.batch == 1 and tight.checkpoint and tight.peak_bytes < tight.plain_peak_bytes
    assert tight.describe()["estimated_process_peak_bytes"] > tight.peak_bytes


def _pass(ctx: ExplainContext):
    from MedXAILib.explain.recompute import checkpointed

    def pass_on(net: nn.Module, b: int, segments: list[str] | None):
        xb = torch.empty((b, 2, 8, 8, 8), device="meta", requires_grad=True)
        with checkpointed(net, segments or []):
            return torch.autograd.grad(net(xb).sum(), xb)

    return pass_on


_CHILD = textwrap.dedent("""
    import json, torch
    from monai.networks.nets import SegResNet
    from MedXAILib.explain.recompute import checkpointed, choose_segments, meta_copy, resident_bytes, simulate
    from MedXAILib.resources import measure
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = SegResNet(blocks_down=[1, 2, 2], blocks_up=[1, 1], init_filters=8, in_channels=2,
                    out_channels=2).eval().requires_grad_(False)
    shape = (1, 2, 64, 64, 48)

    def run(n, segments):
        x = torch.zeros(shape, device=next(n.parameters()).device, requires_grad=True)
        with checkpointed(n, segments):
            return torch.autograd.grad(n(x).sum(), x)

    segments = choose_segments(net, lambda n: run(n, []))[0]
    out = {"segments": segments}
    for key, segs in (("plain", []), ("checkpointed", segments)):
        simulated = simulate(lambda: run(meta_copy(net), segs))
        run(net, segs)  # warm-up: kernels and allocator
        before = resident_bytes()
        with measure() as m:
            run(net, segs)
        out[key] = [simulated, m.peak_rss_bytes - before]
    print(json.dumps(out))
""")


def test_simulated_peak_matches_the_resident_memory_of_a_real_pass() -> None:
    """A child process with glibc's mmap threshold fixed at 64 KiB, so that a freed tensor leaves the resident set
    at once (with the default, glibc keeps mid-size blocks for reuse and the count would not follow the tensors)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["segments"]
    for key in ("plain", "checkpointed"):
        simulated, measured = out[key]
        assert 0.8 * measured <= simulated <= 1.25 * measured, (key, simulated, measured)
    assert out["checkpointed"][1] < out["plain"][1] and out["checkpointed"][0] < out["plain"][0]


def test_dry_run_reports_the_memory_plan_without_running_the_method() -> None:
    """``explain --dry-run``'s estimate for LRP and IG is the plan the method follows (same simulated peak), and
    making it runs no explanation pass."""
    from MedXAILib.explain.estimate import estimate_cost
    from MedXAILib.explain.gradients import integrated_gradients

    ctx, _ = _windowed_case(seed=4)
    vol, target = ctx.prepared.volume, ctx.target
    for method in ("lrp", "ig"):
        est = estimate_cost(ctx.model, vol, method, target=target, params={"checkpoint": "true", "steps": "2"}
                            if method == "ig" else {"checkpoint": "true"})
        memory = est["memory"]
        assert memory["checkpoint"] is True and memory["segments"] > 0
        assert est["estimated_peak_memory_bytes"] == memory["estimated_process_peak_bytes"] > 0
        assert est["calibration"]["passes_per_function"] == len(ctx.model.window_plan((12, 6, 14)).slices)
    _, details = integrated_gradients(ctx, torch.zeros_like(ctx.x), steps=2, checkpoint="true")
    assert details["memory"]["estimated_tensor_peak_bytes"] == memory["estimated_tensor_peak_bytes"]
