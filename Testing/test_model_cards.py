"""Model cards, the domain check, the default CAM layer, the model catalogue and Model Zoo downloads (issue 10)."""

from __future__ import annotations

import copy
import json
import shutil
import zipfile

import numpy as np
import pytest
from bundle_helpers import TINY_INFERENCE, TINY_METADATA, write_bundle
from helpers import tiny_unet_model

from MedXAILib.cli import main
from MedXAILib.io import write_volume
from MedXAILib.models import load_model
from MedXAILib.models.cards import domain_check, pick_cam_layer
from MedXAILib.phantoms import make_brain_phantom


def test_demo_cards_say_synthetic_phantoms():
    for name in ("demo-brain-tumour", "demo-chest-xray"):
        card = load_model(name).card()
        assert "synthetic phantoms" in card["training_data"] and "not for real scans" in card["intended_use"]
        assert card["version"].startswith("1") and card["domain"]["spacing_mm"]
        assert card["cam_layer"] == load_model(name).description.cam_layer


def test_domain_check_warns_outside_the_training_domain_only():
    model = load_model("demo-brain-tumour")
    inside = make_brain_phantom(100001).image
    assert domain_check(model, inside) is None
    assert domain_check(model, inside.with_array(inside.array * 40.0)) is None  # z-scored: scale is no shift
    real_like = make_brain_phantom(100001, shape=(40, 60, 60), spacing=1.0).image
    warning = domain_check(model, real_like)
    assert warning is not None and "\n" not in warning
    assert "spacing 1 mm" in warning and "size 40" in warning and "intensities" not in warning
    arr = inside.array.copy()
    head = arr[0] != 0
    arr[0][head] = np.random.default_rng(0).lognormal(0.0, 2.0, int(head.sum()))  # a very skewed channel
    warning = domain_check(model, inside.with_array(arr))
    assert warning is not None and "t1 intensities p99 over median" in warning and "spacing" not in warning


def test_cli_prints_the_domain_warning_and_records_it(tmp_path, capsys):
    vol = make_brain_phantom(5, shape=(40, 48, 48), spacing=1.0).image
    inputs = [write_volume(vol.with_array(vol.array[c : c + 1]), tmp_path / f"c{c}.nii.gz") for c in range(4)]
    out = tmp_path / "seg.nii.gz"
    args = ["segment", "--progress", "none", "--model", "demo-brain-tumour", "--output", str(out)]
    for p in inputs:
        args += ["--input", str(p)]
    assert main(args) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(err) == 1 and "training domain" in err[0]
    side = json.loads((tmp_path / "seg.nii.gz.json").read_text())
    assert side["domain_warning"] == err[0][len("warning: "):]
    assert "synthetic phantoms" in side["card"]["training_data"]


def test_default_cam_layer_is_a_decoder_convolution_at_quarter_resolution_or_finer():
    model = tiny_unet_model(classes=3)
    model.description.cam_layer = None
    layer = pick_cam_layer(model)
    assert layer and layer.startswith("model.1.submodule.2"), layer  # the decoder block at half resolution
    card = model.card()
    assert card["cam_layer"] == layer and "1/4" in card["cam_layer_rule"]


def test_models_json_contract(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDXAI_MODEL_CACHE", str(tmp_path / "cache"))
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    keys = {"name", "source", "task", "spatial_dims", "channels", "classes", "card", "label_values", "load"}
    assert all(keys <= set(m) for m in models)
    by_name = {m["name"]: m for m in models}
    assert by_name["demo-brain-tumour"]["source"] == "builtin"
    assert by_name["monai:spleen_ct_segmentation"]["source"] == "zoo"
    assert all(m["name"] == m["load"] for m in models)  # name is what --model takes
    for m in models:
        assert m["source"] in ("builtin", "cached", "zoo", "bundle", "nnunet", "totalsegmentator", "file")
        assert {"name", "version", "training_data", "intended_use"} <= set(m["card"])


def test_monai_name_downloads_once_into_the_cache_offline(tmp_path, monkeypatch, capsys):
    """``--model monai:NAME`` goes through ``monai.bundle.download`` against a local archive (no network)."""
    src = write_bundle(tmp_path / "src" / "tiny_zoo_bundle", copy.deepcopy(TINY_INFERENCE), TINY_METADATA)
    archive = tmp_path / "mirror" / "tiny_zoo_bundle.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        for f in src.rglob("*"):
            z.write(f, f.relative_to(src.parent))
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDXAI_MODEL_CACHE", str(cache))
    monkeypatch.setenv("MEDXAI_ZOO_URL", f"file://{tmp_path}/mirror/{{name}}.zip")
    model = load_model("monai:tiny_zoo_bundle")
    assert (cache / "tiny_zoo_bundle" / "configs").is_dir() and model.card()["version"] == "0.1.0"
    archive.unlink()  # the second use never downloads
    shutil.rmtree(src.parent)
    assert load_model("monai:tiny_zoo_bundle").name == "tiny-bundle"
    assert main(["models", "--json"]) == 0
    cached = [m for m in json.loads(capsys.readouterr().out)["models"] if m["source"] == "cached"]
    assert [m["load"] for m in cached] == ["monai:tiny_zoo_bundle"] and cached[0]["classes"] == ["background", "organ"]
    with pytest.raises(Exception, match="could not download"):
        load_model("monai:no_such_bundle")


def test_model_sources_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from MedXAILib.models import registry
    from MedXAILib.models.catalogue import list_models
    from MedXAILib.models.registry import entry, register_model_source

    monkeypatch.setattr(registry, "EXTRA_SOURCES", [])  # the extra source dies with this test

    @register_model_source
    def extra():
        return [entry("x-net", "nnunet", "segmentation", 3, ["ct"], ["bg", "liver"], {"name": "x-net"}, "/x")]

    assert any(m["name"] == "x-net" and m["source"] == "nnunet" for m in list_models())
