"""Tests of the demo-model training helpers and of the committed built-in weights (:mod:`MedXAILib.training`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from MedXAILib.models.monai_network import build_network
from MedXAILib.phantoms import CHEST_FINDINGS, make_brain_phantom
from MedXAILib.training.demo_models import (
    BUILTIN_DIR,
    DEMO_NAMES,
    brain_description,
    chest_description,
    dice,
    evaluate_demo_classifier,
    evaluate_demo_segmentation,
    prepare_brain_input,
    prepare_chest_input,
    reproduce_command,
    roc_auc,
    train_demo_model,
)

MAX_WEIGHT_BYTES = 5 * 1024 * 1024


def _description(name: str) -> dict:
    return json.loads((BUILTIN_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_committed_weights_load_with_weights_only(name):
    desc = _description(name)
    path = BUILTIN_DIR / desc["weights"]
    assert path.stat().st_size <= MAX_WEIGHT_BYTES
    net = build_network(desc["architecture"], name)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    layers = dict(net.named_modules())
    assert desc["cam_layer"] in layers
    assert desc["training"]["command"] == reproduce_command(name, desc["training"]["seed"])
    held = desc["training"]["held_out"]
    if name == "demo-brain-tumour":
        assert held["whole_tumour_dice"] >= 0.85 and held["n_cases"] >= 20
    else:
        assert min(held[f"auc_{f}"] for f in CHEST_FINDINGS) >= 0.9 and held["n_cases"] >= 200


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_description_matches_code_and_model_loader(name):
    from MedXAILib.models.description import ModelDescription

    desc = _description(name)
    fresh = brain_description() if name == "demo-brain-tumour" else chest_description()
    for key in ("name", "task", "spatial_dims", "channel_names", "class_names", "output", "preprocessing",
                "patch_size", "architecture", "cam_layer", "weights"):
        assert desc[key] == fresh[key], key
    md = ModelDescription.from_dict(desc)
    assert md.n_classes == (4 if name == "demo-brain-tumour" else 3)


def test_readme_names_reproduce_commands():
    text = (BUILTIN_DIR / "README.md").read_text()
    for name in DEMO_NAMES:
        assert reproduce_command(name, 0) in text


def test_chest_classifier_accepts_other_sizes():
    desc = _description("demo-chest-xray")
    net = build_network(desc["architecture"], "chest").eval()
    with torch.no_grad():
        for size in (256, 512, 200):
            assert net(torch.zeros(1, 1, size, size)).shape == (1, 3)


def test_preprocessing_semantics():
    p = make_brain_phantom(0, shape=(16, 24, 24), spacing=8.0)
    x = prepare_brain_input(p.image.array)
    head = p.head_mask.array[0].astype(bool)
    assert (x[:, ~head] == 0).all()
    np.testing.assert_allclose(x[:, head].mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(x[:, head].std(axis=1), 1.0, atol=1e-3)
    img = np.linspace(-5.0, 5.0, 64 * 80, dtype=np.float32).reshape(1, 1, 64, 80)
    y = prepare_chest_input(img)
    assert y.shape == (1, 256, 256)
    assert y.min() == pytest.approx(0.0, abs=1e-6) and y.max() == pytest.approx(1.0, abs=1e-6)


def test_metric_helpers():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, 0] = True
    assert dice(a, b) == 0.0
    b[0, :2] = True
    assert dice(a, b) == pytest.approx(2 / 3)
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert np.isnan(roc_auc(np.array([0.5, 0.5]), np.array([1, 1])))


def test_unknown_demo_name(tmp_path: Path):
    with pytest.raises(ValueError):
        train_demo_model("demo-knee", tmp_path)


@pytest.mark.slow
def test_training_smoke(tmp_path: Path):
    """A few iterations of each trainer: files are written, loadable, and the JSON carries the metrics."""
    brain = train_demo_model("demo-brain-tumour", tmp_path, seed=1, iterations=2, n_train=1, n_held_out=1,
                             crop=[16, 32, 32])
    stages = [{"epochs": 1, "lr": 1e-3, "loss_weights": None}, {"epochs": 1, "lr": 1e-3, "loss_weights": [3, 1, 1]}]
    chest = train_demo_model("demo-chest-xray", tmp_path, seed=1, n_train=32, stages=stages, n_held_out=8)
    assert "whole_tumour_dice" in brain and "auc_mean" in chest
    for name in DEMO_NAMES:
        desc = json.loads((tmp_path / f"{name}.json").read_text())
        assert desc["training"]["seed"] == 1
        net = build_network(desc["architecture"], name)
        net.load_state_dict(torch.load(tmp_path / desc["weights"], weights_only=True))


@pytest.mark.slow
def test_brain_model_held_out_dice():
    result = evaluate_demo_segmentation(seeds=range(5))
    assert result["whole_tumour_dice"] >= 0.8, result


@pytest.mark.slow
def test_chest_model_held_out_auc():
    result = evaluate_demo_classifier(seeds=range(60))
    for f in CHEST_FINDINGS:
        assert result[f"auc_{f}"] >= 0.85, result
