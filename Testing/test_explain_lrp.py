"""LRP: conservation on MONAI UNet / DenseNet / ResNet, rules against a hand computation, signs, bounds, refusals,
geometry.

Stated tolerances: with zero biases, folded BatchNorm, ``norm_rule=centered`` and ε = 1e-9,
``|Σ R − S| / |S| < 1e-3``. With biases, conservation is reported and the bookkeeping must close:
``|1 − conservation − absorbed − padding| < 1e-3``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.explain.lrp import lrp_relevance, resolve_composite
from MedXAILib.models import Model
from MedXAILib.models.description import ModelDescription
from MedXAILib.volume import Volume, make_ijk_to_ras


# ---- builders
def _unet(dims: int, channels: int) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(dims, channels, 3, (4, 8, 16), (2, 2), num_res_units=1)


def _densenet(dims: int, channels: int) -> nn.Module:
    from monai.networks.nets import DenseNet

    return DenseNet(dims, channels, 3, init_features=8, growth_rate=4, block_config=(2, 2), bn_size=2)


def _resnet(dims: int, channels: int) -> nn.Module:
    from monai.networks.nets import ResNet

    return ResNet("basic", [1, 1, 1, 1], [4, 8, 8, 16], spatial_dims=dims, n_input_channels=channels, num_classes=3)


def _randomise_batchnorm(net: nn.Module, zero_shift: bool) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.copy_(torch.zeros_like(m.running_mean) if zero_shift else torch.randn_like(m.running_mean))
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data = torch.zeros_like(m.bias) if zero_shift else 0.1 * torch.randn_like(m.bias)


def _zero_biases(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(getattr(m, "bias", None), nn.Parameter):
            nn.init.zeros_(m.bias)


def _class_score(c: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: logits[:, c].reshape(logits.shape[0], -1).sum(1)


ARCHS = {  # builder, input shape (B, C, *grid), divisor
    "unet3d": (lambda: _unet(3, 2), (1, 2, 16, 16, 12), 4),
    "unet2d": (lambda: _unet(2, 1), (1, 1, 30, 32), 4),
    "densenet2d": (lambda: _densenet(2, 1), (1, 1, 32, 32), 1),
    "resnet2d": (lambda: _resnet(2, 1), (1, 1, 32, 32), 1),
}


def _build(arch: str, zero: bool) -> tuple[nn.Module, torch.Tensor, int]:
    torch.manual_seed(0)
    make, shape, div = ARCHS[arch]
    net = make().eval()
    _randomise_batchnorm(net, zero_shift=zero)
    if zero:
        _zero_biases(net)
    return net, torch.randn(shape), div


# ---- conservation
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("composite", ["epsilon", "epsilon-gamma-box"])
def test_conservation_without_biases(arch: str, composite: str) -> None:
    net, x, div = _build(arch, zero=True)
    rel, d = lrp_relevance(net, x, _class_score(1), composite=composite, epsilon=1e-9, divisor=div)
    assert rel.shape == x.shape
    assert abs(float(rel.sum()) - d["score"]) / abs(d["score"]) < 1e-3, d["conservation"]
    assert abs(d["conservation"] - 1) < 1e-3
    if arch.startswith(("resnet", "densenet")):
        assert d["folded_batchnorms"], "BatchNorm after a conv must be folded"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_with_biases_the_gap_is_the_absorbed_relevance(arch: str) -> None:
    net, x, div = _build(arch, zero=False)
    for composite in ("epsilon", "epsilon-plus-flat"):
        _, d = lrp_relevance(net, x, _class_score(1), composite=composite, epsilon=1e-6, divisor=div)
        closure = 1 - d["conservation"] - d["absorbed_share"] - d["padding_share"]
        assert abs(closure) < 1e-3, (composite, d["conservation"], d["absorbed_share"])
        assert abs(sum(layer["absorbed"] for layer in d["layers"]) - d["absorbed"]) < 1e-6 * abs(d["score"]) + 1e-9


def test_instancenorm_affine_view_absorbs_relevance_centered_view_does_not() -> None:
    net, x, div = _build("unet3d", zero=True)
    _, centered = lrp_relevance(net, x, _class_score(1), composite="epsilon", epsilon=1e-9, divisor=div)
    _, affine = lrp_relevance(net, x, _class_score(1), composite="epsilon", epsilon=1e-9, divisor=div,
                              norm_rule="affine")
    assert abs(centered["conservation"] - 1) < 1e-3
    assert abs(affine["absorbed_share"]) > 1e-3  # −γμ/σ acts as an input-dependent bias
    assert abs(1 - affine["conservation"] - affine["absorbed_share"]) < 1e-3


# ---- hand-computed LRP
class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 2, 3, padding=1)
        self.act2 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2 * 5 * 5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.act2(self.conv2(self.act1(self.conv1(x))))))


def _jac(fn: Callable[[torch.Tensor], torch.Tensor], n_in: int) -> torch.Tensor:
    return torch.autograd.functional.jacobian(fn, torch.zeros(n_in, dtype=torch.float64))


def _stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).double()


def _manual(net: _Small, x: torch.Tensor, rules: dict[str, str], eps: float, gamma: float) -> torch.Tensor:
    """Textbook LRP with each layer written as a dense matrix (float64)."""
    c1, c2, fc = net.conv1, net.conv2, net.fc
    m1 = _jac(lambda v: F.conv2d(v.view(1, 2, 5, 5), c1.weight, None, padding=1).flatten(), 50)
    m2 = _jac(lambda v: F.conv2d(v.view(1, 3, 5, 5), c2.weight, None, padding=1).flatten(), 75)
    m3 = fc.weight.detach()
    b1 = c1.bias.detach().repeat_interleave(25)
    b2 = c2.bias.detach().repeat_interleave(25)
    a0 = x.flatten()
    z1 = m1 @ a0 + b1
    a1 = z1.clamp(min=0)
    z2 = m2 @ a1 + b2
    a2 = z2.clamp(min=0)
    z3 = m3 @ a2 + fc.bias.detach()
    r3 = torch.zeros_like(z3)
    r3[1] = z3[1]

    def backward(rule: str, m: torch.Tensor, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        mp, mn, ap, an = m.clamp(min=0), m.clamp(max=0), a.clamp(min=0), a.clamp(max=0)
        if rule == "epsilon":
            return a * (m.T @ (r / _stab(z, eps)))
        if rule == "zplus":
            s = r / _stab(mp @ ap + mn @ an, eps)
            return ap * (mp.T @ s) + an * (mn.T @ s)
        if rule == "gamma":
            up_p, up_n = m + gamma * mp, m + gamma * mn
            zu, zd = up_p @ ap + up_n @ an, up_n @ ap + up_p @ an
            pos = (m @ a) >= 0
            s = r / _stab(torch.where(pos, zu, zd), eps)
            su, sd = torch.where(pos, s, 0.0), torch.where(pos, 0.0, s)
            return ap * (up_p.T @ su + up_n.T @ sd) + an * (up_n.T @ su + up_p.T @ sd)
        if rule == "flat":
            ones = (m != 0).double()
            return ones.T @ (r / _stab(ones.sum(1), eps))
        assert rule == "zbox"
        lo = x.amin(dim=(0, 2, 3)).repeat_interleave(25)
        hi = x.amax(dim=(0, 2, 3)).repeat_interleave(25)
        s = r / _stab(m @ a - mp @ lo - mn @ hi, eps)
        return a * (m.T @ s) - lo * (mp.T @ s) - hi * (mn.T @ s)

    r2 = backward(rules["linear"], m3, a2, z3, r3)
    r1 = backward(rules["conv"], m2, a1, z2, r2)  # ReLU passes relevance unchanged
    r0 = backward(rules["first"], m1, a0, z1, r1)
    return r0.view(1, 2, 5, 5)


@pytest.mark.parametrize(
    "composite", ["epsilon", "epsilon-plus-flat", "epsilon-gamma-box", "first=zplus,conv=gamma,linear=epsilon"]
)
def test_equals_hand_computed_lrp_on_a_small_conv_net(composite: str) -> None:
    torch.manual_seed(3)
    net = _Small().double().eval()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    eps, gamma = 0.05, 0.5
    ours, d = lrp_relevance(net, x, _class_score(1), composite=composite, epsilon=eps, gamma=gamma)
    ref = _manual(net, x, resolve_composite(composite), eps, gamma)
    assert d["first_layers"] == ["conv1"]
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


# ---- signs and bounds
def _plain_convnet() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()


@pytest.mark.parametrize("composite,gamma", [("zplus", 0.25), ("gamma", 1e6)])
def test_zplus_and_large_gamma_give_non_negative_relevance(composite: str, gamma: float) -> None:
    net = _plain_convnet()
    _randomise_batchnorm(net, zero_shift=False)
    x = torch.randn(1, 1, 16, 16)
    logits = net(x)[0]
    c = int(logits.argmax())
    assert logits[c] > 0
    rel, d = lrp_relevance(net, x, _class_score(c), composite=composite, gamma=gamma)
    assert float(rel.min()) >= -1e-6 * float(rel.abs().max())
    assert float(rel.sum()) > 0


def test_unet_default_composite_is_finite_bounded_and_conserves() -> None:
    torch.manual_seed(1)
    net = _unet(3, 2).eval()  # with its biases
    x = torch.randn(1, 2, 16, 16, 16) * 3 + 1
    rel, d = lrp_relevance(net, x, _class_score(2), divisor=4)
    assert torch.isfinite(rel).all()
    assert d["max_abs_relevance_over_score"] < 1e6
    assert abs(d["conservation"] - 1) < 0.05, d["conservation"]


# ---- through explain(): geometry, channels, refusals
def _model(net: nn.Module, task: str, dims: int, channels: int, **pre: object) -> Model:
    desc = ModelDescription(
        name="tiny", task=task, spatial_dims=dims, channel_names=[f"c{i}" for i in range(channels)],
        class_names=["background", "a", "b"], output="softmax", preprocessing=dict(pre),
        architecture={"name": "UNet", "kwargs": {"strides": [2, 2]}} if task == "segmentation" else None,
    )
    return Model(net, desc)


def _oblique() -> np.ndarray:
    a = np.deg2rad(20)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return rz @ rx


def test_3d_unet_map_has_the_input_geometry_and_per_channel_shares() -> None:
    torch.manual_seed(0)
    model = _model(_unet(3, 2), "segmentation", 3, 2, normalize="zscore")
    arr = np.random.default_rng(0).normal(size=(2, 10, 14, 13)).astype(np.float32)
    vol = Volume(arr, make_ijk_to_ras((0.8, 1.1, 2.5), (-12.5, 30.0, 7.25), _oblique()))
    region = np.zeros(vol.shape, bool)
    region[3:7, 4:9, 4:9] = True
    e = explain(model, vol, "lrp", label=1, region=region)
    assert e.heatmap.shape == vol.shape
    np.testing.assert_array_equal(e.heatmap.ijk_to_ras, vol.ijk_to_ras)
    assert np.isfinite(e.heatmap.array).all()
    assert e.channel_maps is not None and e.channel_maps.array.shape == (2,) + vol.shape
    assert set(e.channel_importance["overall"]) == {"c0", "c1"}
    assert "inside_target" in e.channel_importance
    d = e.details  # with biases and padding (10×14×13 → 12×16×16) conservation is reported, and the books close
    assert abs(1 - d["conservation"] - d["absorbed_share"] - d["padding_share"]) < 1e-3
    assert d["max_abs_relevance_over_score"] < 1e6
    assert e.cost.backward_passes == 1


def test_2d_classifier_map_has_the_input_geometry() -> None:
    torch.manual_seed(0)
    model = _model(_resnet(2, 1), "classification", 2, 1, normalize="minmax", input_size=[32, 32])
    arr = np.random.default_rng(1).random((1, 1, 40, 48)).astype(np.float32)
    vol = Volume(arr, make_ijk_to_ras((0.7, 0.5, 1.0), (3.0, -2.0, 0.0), _oblique()))
    e = explain(model, vol, "lrp", label="a", params={"composite": "epsilon-gamma-box", "per_channel": "false"})
    assert e.heatmap.shape == vol.shape
    np.testing.assert_array_equal(e.heatmap.ijk_to_ras, vol.ijk_to_ras)
    assert e.channel_maps is None
    assert np.isfinite(e.heatmap.array).all()
    assert e.details["folded_batchnorms"]
    assert e.cost.forward_passes == 3  # BatchNorm detection + fold check + the explained pass


class _Gate(nn.Module):
    """A custom leaf with its own parameter: no LRP rule."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.scale * x)


class _Attention(nn.Module):
    """Known leaves, but multiplies two input-dependent tensors (an attention gate)."""

    def __init__(self) -> None:
        super().__init__()
        self.key = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.key(x)


def _classifier_with(block: nn.Module) -> Model:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Sequential(nn.ReLU(), block), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    return _model(net, "classification", 2, 1)


def test_unsupported_layers_are_refused_by_name() -> None:
    vol = Volume(np.random.default_rng(0).random((1, 1, 16, 16)).astype(np.float32))
    with pytest.raises(MethodError, match=r"no rule for layer '1\.1' \(_Gate\)"):
        explain(_classifier_with(_Gate()), vol, "lrp", label="a")
    with pytest.raises(MethodError, match=r"no rule for layer '1\.1' \(_Attention\).*mul"):
        explain(_classifier_with(_Attention()), vol, "lrp", label="a")


def test_unknown_composite_and_rule_are_refused() -> None:
    model = _classifier_with(nn.Identity())
    vol = Volume(np.random.default_rng(0).random((1, 1, 16, 16)).astype(np.float32))
    with pytest.raises(MethodError, match="unknown composite"):
        explain(model, vol, "lrp", label="a", params={"composite": "nope"})
    with pytest.raises(MethodError, match="first layer only"):
        resolve_composite("conv=flat")
    assert resolve_composite("first=box,conv=plus") == {"first": "zbox", "conv": "zplus", "linear": "epsilon"}
