"""Sanity check: cascading randomisation from the top layer down, and the pass rule with its controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import oblique_volume, tiny_unet_model

from MedXAILib.quality.sanity import (
    cascading_randomisation,
    parameter_modules,
    randomised_model,
    shifted_baseline,
    stage_cuts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stages_cascade_from_the_top_layer_on_a_copy() -> None:
    assert stage_cuts(10, 3) == [1, 5, 10] and stage_cuts(1, 3) == [1] and stage_cuts(7, 1) == [7]
    model = tiny_unet_model(channels=2)
    layers = parameter_modules(model.network)
    assert layers[0][0] == [n for n, m in model.network.named_modules() if list(m.parameters(False))][-1]
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    r1 = randomised_model(model, 1, seed=3)
    top = layers[0][0]
    changed = {k for k, v in r1.network.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(top + ".") for k in changed)  # only the top layer was re-drawn
    assert all(torch.equal(v, before[k]) for k, v in model.network.state_dict().items())  # original untouched
    again = randomised_model(model, 1, seed=3)
    assert all(torch.equal(v, again.network.state_dict()[k]) for k, v in r1.network.state_dict().items())


def test_gradcam_changes_under_randomisation_and_the_random_control_fails() -> None:
    model = tiny_unet_model(channels=2)
    vol = oblique_volume(channels=2, shape=(12, 16, 16))
    res = cascading_randomisation(model, vol, "gradcam", n_stages=3, seed=0, baseline=0.5)
    assert res["sanity_layers_randomised"][-1] == len(parameter_modules(model.network))
    assert len(res["sanity_ssim_stages"]) == len(res["sanity_layers_randomised"])
    assert res["sanity_ssim"] < 0.5 and res["sanity_passed"] is True
    ctl = cascading_randomisation(model, vol, "random", n_stages=2, seed=0)
    assert ctl["sanity_ssim_stages"] == pytest.approx([1.0] * len(ctl["sanity_ssim_stages"]))
    assert ctl["sanity_passed"] is False and ctl["sanity_baseline_ssim"] < 0.2  # shifted noise is unrelated


def test_shifted_baseline_is_low_for_unrelated_positions() -> None:
    h = np.zeros((1, 40, 40))
    h[0, 5:12, 5:12] = 1.0  # a compact blob: displaced copies do not overlap, the shared background still counts
    assert 0.3 < shifted_baseline(h)["mean"] < 0.9
    noise = np.random.default_rng(0).random((6, 20, 20))
    assert abs(shifted_baseline(noise)["mean"]) < 0.05
    assert shifted_baseline(np.ones((4, 8, 8)))["mean"] == pytest.approx(1.0)
