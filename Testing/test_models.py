"""Models: safe loading, input checks, inference in the input geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import oblique_volume, tiny_classifier, tiny_unet_model

from MedXAILib.errors import InputError, ModelError
from MedXAILib.models import load_model
from MedXAILib.volume import Volume, make_ijk_to_ras


def _save_description(tmp_path, model, weights_name):
    desc = model.description.to_dict()
    desc["weights"] = weights_name
    (tmp_path / "model.json").write_text(json.dumps(desc))
    return tmp_path / "model.json"


def test_state_dict_round_trip(tmp_path):
    model = tiny_unet_model()
    torch.save(model.network.state_dict(), tmp_path / "w.pt")
    loaded = load_model(_save_description(tmp_path, model, "w.pt"))
    vol = oblique_volume()
    a = model.predict(vol).probabilities.array
    b = loaded.predict(vol).probabilities.array
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert load_model(tmp_path).name == "tiny-unet"  # a folder with model.json


def test_pickled_module_refused_without_opt_in(tmp_path):
    model = tiny_unet_model()
    torch.save(model.network, tmp_path / "w.pt")  # a whole pickled module
    path = _save_description(tmp_path, model, "w.pt")
    with pytest.raises(ModelError, match="--allow-unsafe-pickle"):
        load_model(path)
    assert load_model(path, allow_unsafe_pickle=True).name == "tiny-unet"


def test_torchscript_with_description(tmp_path):
    model = tiny_classifier()
    scripted = torch.jit.trace(model.network, torch.rand(1, 1, 32, 32))
    scripted.save(str(tmp_path / "net.ts"))
    desc = model.description.to_dict()
    desc["weights"] = None
    (tmp_path / "net.json").write_text(json.dumps(desc))
    loaded = load_model(tmp_path / "net.ts")
    vol = Volume(np.random.rand(1, 1, 32, 32).astype(np.float32))
    np.testing.assert_allclose(
        loaded.predict(vol).class_probabilities, model.predict(vol).class_probabilities, atol=1e-6
    )


def test_unreadable_and_unknown(tmp_path):
    with pytest.raises(ModelError, match="unknown model"):
        load_model("no-such-model")
    model = tiny_unet_model()
    (tmp_path / "w.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="unreadable checkpoint"):
        load_model(_save_description(tmp_path, model, "w.pt"))


def test_weights_that_do_not_fit(tmp_path):
    model = tiny_unet_model(classes=3)
    other = tiny_unet_model(classes=4)
    torch.save(other.network.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match="do not fit"):
        load_model(_save_description(tmp_path, model, "w.pt"))


def test_input_checks():
    seg = tiny_unet_model(channels=2)
    with pytest.raises(InputError, match="takes 2 channel"):
        seg.predict(oblique_volume(channels=3))
    with pytest.raises(InputError, match="3D model but the input is a 2D image"):
        seg.predict(Volume(np.zeros((2, 1, 8, 8), np.float32)))
    cls = tiny_classifier()
    with pytest.raises(InputError, match="2D model but the input is a 3D volume"):
        cls.predict(Volume(np.zeros((1, 4, 8, 8), np.float32)))


def test_prediction_has_input_geometry_after_resampling():
    model = tiny_unet_model()
    model.description.preprocessing["target_spacing"] = [3.0, 2.0, 2.0]
    vol = oblique_volume(shape=(13, 21, 17))
    pred = model.predict(vol)
    assert pred.labels.shape == vol.shape
    np.testing.assert_array_equal(pred.labels.ijk_to_ras, vol.ijk_to_ras)
    np.testing.assert_allclose(pred.probabilities.array.sum(0), 1.0, atol=1e-5)


def test_sliding_window_matches_whole_volume_shape():
    model = tiny_unet_model()
    model.description.patch_size = [8, 8, 8]
    vol = oblique_volume(shape=(12, 20, 18))
    assert model.uses_sliding_window((12, 20, 18))
    pred = model.predict(vol)
    assert pred.labels.shape == vol.shape


def test_classifier_input_size_resize():
    model = tiny_classifier(input_size=[32, 32])
    vol = Volume(np.random.rand(1, 1, 50, 70).astype(np.float32), make_ijk_to_ras((0.3, 0.2, 1)))
    pred = model.predict(vol)
    assert pred.class_probabilities.shape == (3,)
    assert all(0 <= p <= 1 for p in pred.class_probabilities)
