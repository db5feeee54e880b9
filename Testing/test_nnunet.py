"""nnU-Net v2 folders run exactly as nnU-Net runs them, loaded safely, explained; TotalSegmentator's layout.

The model folder is REAL: built once per session by ``nnunet_fixture.py`` with nnU-Net's own planner, preprocessor
and trainer checkpoint writer (untrained weights), on crops of the shared TotalSegmentator CT. The reference is
``nnUNetPredictor`` itself (Gaussian, step 0.5, mirroring as asked), computed in the test.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2", reason="nnU-Net v2 is not installed (pip install --no-deps -r requirements-nnunet.txt)")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nnunet_fixture  # noqa: E402

from MedXAILib.errors import ModelError  # noqa: E402
from MedXAILib.io import read_volume  # noqa: E402
from MedXAILib.models import load_model  # noqa: E402
from MedXAILib.volume import Volume  # noqa: E402

pytestmark = pytest.mark.slow
TARGET_SPACING = nnunet_fixture.TEST_TARGET_SPACING  # the session's folder (conftest.py ``nnunet_folder``)


@pytest.fixture(scope="module")
def ct(test_data_dir: Path) -> Volume:
    """A real CT crop (20 × 30 × 40 voxels at 3 mm; 4 windows on the model grid), geometry shifted to the crop."""
    vol = read_volume(test_data_dir / "totalsegmentator" / "example_ct_sm.nii.gz")
    k0, j0, i0 = 5, 30, 30
    m = vol.ijk_to_ras.copy()
    m[:3, 3] = (vol.ijk_to_ras @ np.array([i0, j0, k0, 1.0]))[:3]
    return Volume(np.ascontiguousarray(vol.array[:, k0:k0 + 20, j0:j0 + 30, i0:i0 + 40]), m)


@pytest.fixture(scope="module")
def test_data_dir() -> Path:  # module-scoped twin of conftest's fixture
    path = Path(os.environ.get("MEDXAI_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared"
                               / "medxai-test-data"))
    if not path.is_dir():
        pytest.skip("real test data not found: set MEDXAI_TEST_DATA to the medxai-test-data folder")
    return path


def _predictor(folder: Path, folds: tuple[int, ...], mirroring: bool):  # noqa: ANN202 - nnUNetPredictor
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                        perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), use_folds=folds, checkpoint_name="checkpoint_final.pth")
    return p


def _reference(folder: Path, volume: Volume, folds: tuple[int, ...], mirroring: bool) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's own prediction (segmentation, probabilities) with its defaults and the same weights."""
    p = _predictor(folder, folds, mirroring)
    props = {"spacing": [float(s) for s in volume.spacing_kji]}
    seg, probs = p.predict_single_npy_array(volume.array.astype(np.float32), props, None, None, True)
    return seg, probs


@pytest.mark.parametrize("mirroring,folds", [(True, (0,)), (False, (0, 1))])
def test_parity_with_nnunet_predictor(nnunet_folder: Path, ct: Volume, mirroring: bool, folds: tuple[int, ...],
                                      one_torch_thread: None) -> None:
    opts = {"tta": mirroring, "folds": list(folds) if len(folds) == 1 else None}  # None: every fold present (0, 1)
    model = load_model(nnunet_folder, options=opts)
    prepared = model.prepare(ct)
    plan = model.window_plan(prepared.model_shape)
    assert prepared.model_shape != ct.shape  # resampled to the plans' spacing
    assert len(plan.slices) > 1  # a real sliding window
    assert len(model.tta_passes()) == (8 if mirroring else 1)
    assert model.function_info()["folds"] == [str(f) for f in folds]
    ours = model.predict(ct)
    seg, probs = _reference(nnunet_folder, ct, folds, mirroring)
    assert ours.probabilities is not None and ours.labels is not None
    assert ours.probabilities.array.shape == probs.shape
    assert np.abs(ours.probabilities.array - probs).max() <= 1e-3
    assert (ours.labels.array[0] == seg).mean() >= 0.999
    assert np.allclose(ours.labels.ijk_to_ras, ct.ijk_to_ras)


def test_parity_2d_configuration(nnunet_folder: Path, ct: Volume, one_torch_thread: None) -> None:
    folder = nnunet_folder.parent / "nnUNetTrainer__nnUNetPlans__2d"
    model = load_model(folder)  # mirroring on: the 2D checkpoint allows axes (0, 1)
    prepared = model.prepare(ct)
    plan = model.window_plan(prepared.model_shape)
    assert plan.roi[0] == 1 and len(plan.slices) >= prepared.model_shape[0]  # slice-wise windows
    assert len(model.tta_passes()) == 4
    ours = model.predict(ct)
    seg, probs = _reference(folder, ct, (0,), True)
    assert ours.probabilities is not None and ours.labels is not None
    assert np.abs(ours.probabilities.array - probs).max() <= 1e-3
    assert (ours.labels.array[0] == seg).mean() >= 0.999


def test_masks_voxels_and_maps_round_trip_through_the_model_grid(nnunet_folder: Path, ct: Volume) -> None:
    model = load_model(nnunet_folder, options={"folds": [0]})
    prepared = model.prepare(ct)
    mask = np.zeros((1,) + ct.shape, dtype=np.float32)
    mask[0, 2:9, 4:20, 25:38] = 1  # an asymmetric box: a wrong transpose or flip would move it
    on_model = model.mask_to_model_grid(mask, prepared)
    assert tuple(on_model.shape[1:]) == prepared.model_shape
    back = model.to_input_grid(on_model, prepared)[0] > 0.5
    dice = 2 * (back & (mask[0] > 0)).sum() / (back.sum() + mask.sum())
    assert dice > 0.8
    idx = model.voxel_to_model_grid((30, 10, 5), prepared)  # (i, j, k) inside the box
    assert on_model[(0,) + idx] == 1
    corner = model._model_to_input_ijk(prepared) @ np.array([0.0, 0.0, 0.0, 1.0])
    assert np.all(corner[:3] > -1.0) and np.all(corner[:3] < 1.0)  # model voxel 0 sits near input voxel 0


def test_infer_is_differentiable_and_network_pass_is_close(nnunet_folder: Path, ct: Volume,
                                                           one_torch_thread: None) -> None:
    model = load_model(nnunet_folder, options={"folds": [0], "tta": False})
    x = model.prepare(ct).tensor.clone().requires_grad_(True)
    logits = model.infer(x)
    logits[0, 5].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        approx = model.network_pass(x)
    assert approx.shape == logits.shape


# ---- CAMs of nnU-Net's function --------------------------------------------------------------------------------
def _region(ct: Volume) -> np.ndarray:
    region = np.zeros(ct.shape, bool)
    region[4:16, 8:24, 10:32] = True
    return region


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_cams_equal_the_reference_built_from_nnunets_predictor(nnunet_folder: Path, ct: Volume, configuration: str,
                                                               one_torch_thread: None) -> None:
    """Grad-CAM and HiResCAM of nnU-Net's function (windows, Gaussian, test-time mirroring) equal the definition
    computed from nnU-Net's own predictor — its network, window slicers, Gaussian and mirror axes — with autograd.
    The 2d configuration (a 2D network over one-slice windows, 4 mirrored passes) runs and matches the reference,
    which is built slice by slice and stacked."""
    from cam_reference import nnunet_reference

    from MedXAILib.explain import explain

    folder = nnunet_folder if configuration == "3d_fullres" else nnunet_folder.parent / "nnUNetTrainer__nnUNetPlans__2d"
    model = load_model(folder, options={"folds": [0]})  # mirroring on, as the checkpoint allows
    assert len(model.tta_passes()) == (8 if configuration == "3d_fullres" else 4)
    methods = ["gradcam", "hirescam"]
    ours = {m: explain(model, ct, m, label="liver", region=_region(ct)) for m in methods}
    prepared = model.prepare(ct)
    predictor = _predictor(folder, (0,), True)
    weights = ours["gradcam"].target.weights(model, prepared)
    refs, logits, norm = nnunet_reference(predictor, prepared.tensor, weights, str(model.default_cam_layer()),
                                          methods)
    theirs = predictor.predict_sliding_window_return_logits(prepared.tensor[0]).float()
    valid = norm > 1e-2 * float(norm.max())  # nnU-Net's float16 blend underflows in the corners only one window reaches
    assert float((logits[0] - theirs).abs()[:, valid].max()) <= 2e-2 * float(theirs.abs().max())  # it is nnU-Net's
    for m in methods:
        assert ours[m].details["network_calls"] == len(model.window_plan(prepared.model_shape).slices) * len(
            model.tta_passes())
        assert ours[m].details["shares"] == "window plan" and ours[m].details["forward_reused"] is False
        expected = model.to_input_grid(refs[m], prepared)[0]
        scale = float(np.abs(expected).max())
        assert scale > 0
        np.testing.assert_allclose(ours[m].heatmap.array[0], expected, rtol=0, atol=1e-4 * scale, err_msg=m)


def _flip_equivariant_network(channels: int, classes: int) -> torch.nn.Module:
    """Two 3×3×3 convolutions with kernels symmetric under every flip, zero padding: ``f(flip x) = flip f(x)``."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv3d(channels, 6, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv3d(6, classes, 3, padding=1))
    flips = [d for n in range(4) for d in itertools.combinations((2, 3, 4), n)]
    with torch.no_grad():
        for conv in (net[0], net[2]):
            conv.weight.copy_(sum(torch.flip(conv.weight, list(d)) if d else conv.weight for d in flips) / len(flips))
    return net


def test_a_flip_equivariant_network_gives_the_same_cam_with_and_without_mirroring(
        nnunet_folder: Path, ct: Volume, one_torch_thread: None) -> None:
    """nnU-Net's function is the same with and without mirroring for a flip-equivariant network, and so is every
    CAM (mirrored passes each carry 1/8 of the target; their maps are summed, not averaged again)."""
    from MedXAILib.explain import explain

    base = load_model(nnunet_folder, options={"folds": [0]})
    net = _flip_equivariant_network(1, base.label_manager.num_segmentation_heads)
    mirrored, plain = base.with_network(net), base.with_network(net)
    plain.tta = False
    assert len(mirrored.tta_passes()) == 8 and len(plain.tta_passes()) == 1
    x = base.prepare(ct).tensor
    with torch.no_grad():
        torch.testing.assert_close(mirrored.infer(x), plain.infer(x), rtol=0, atol=1e-2)  # float16 accumulation
    for m in ("gradcam", "gradcampp", "hirescam", "layercam"):
        kwargs = {"label": "liver", "region": _region(ct), "params": {"layer": "1"}}
        a, b = explain(mirrored, ct, m, **kwargs), explain(plain, ct, m, **kwargs)
        scale = float(np.abs(b.heatmap.array).max())
        assert scale > 0
        np.testing.assert_allclose(a.heatmap.array, b.heatmap.array, rtol=0, atol=1e-4 * scale, err_msg=m)


def test_checkpoint_loads_with_weights_only_and_numpy_allow_list(nnunet_folder: Path) -> None:
    from MedXAILib.models.nnunet_folder import load_checkpoint

    ckpt_path = nnunet_folder / "fold_0" / "checkpoint_final.pth"
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses the numpy scalars of the log
        torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ckpt = load_checkpoint(ckpt_path)
    assert isinstance(ckpt["logging"]["mean_fg_dice"][0], np.floating)
    assert ckpt["trainer_name"] == "nnUNetTrainer" and ckpt["inference_allowed_mirroring_axes"] == (0, 1, 2)


class _Evil:
    def __reduce__(self):  # noqa: D105 - what an attacker's checkpoint does
        return (os.system, (f"touch {os.environ.get('MEDXAI_EVIL_MARK', '/nonexistent/x')}",))


def test_malicious_checkpoint_in_nnunet_folder_is_refused(nnunet_folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad_model"
    shutil.copytree(nnunet_folder, bad, ignore=shutil.ignore_patterns("fold_1", "*.png", "*.txt"))
    mark = tmp_path / "pwned"
    monkeypatch.setenv("MEDXAI_EVIL_MARK", str(mark))
    torch.save({"network_weights": {}, "payload": _Evil()}, bad / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ModelError, match="--allow-unsafe-pickle"):
        load_model(bad)
    assert not mark.exists()


def test_fold_folder_checkpoint_best_and_bad_folds(nnunet_folder: Path) -> None:
    m = load_model(nnunet_folder / "fold_1", options={"checkpoint": "best"})
    assert m.function_info()["folds"] == ["1"] and m.function_info()["checkpoint"] == "best"
    with pytest.raises(ModelError, match="fold"):
        load_model(nnunet_folder, options={"folds": [3]})
    assert m.description.class_names[5] == "liver" and m.description.class_index("liver") == 5
    assert m.description.channel_names == ["CT"]


def test_trainer_variants_resolve() -> None:
    from MedXAILib.models.nnunet_folder import find_trainer_class

    cls, note = find_trainer_class("nnUNetTrainerNoMirroring")
    assert cls.__name__ == "nnUNetTrainerNoMirroring" and note is None
    cls, note = find_trainer_class("nnUNetTrainerSomebodysCustom")
    assert cls.__name__ == "nnUNetTrainer" and note and "not among" in note


@pytest.mark.parametrize("method,target,tta", [("gradcam", "liver", "true"), ("gradcam", "5", "false"),
                                               ("ig", "5", "false"), ("occlusion", "liver", "false"),
                                               ("lrp", "liver", "false")])
def test_cli_explain_on_nnunet_folder(nnunet_folder: Path, ct: Volume, tmp_path: Path, method: str, target: str,
                                      tta: str, one_torch_thread: None) -> None:
    from MedXAILib.cli import main
    from MedXAILib.io import write_volume

    src = tmp_path / "ct.nii.gz"
    write_volume(ct, src)
    out = tmp_path / f"{method}.nii.gz"
    args = ["explain", "--model", str(nnunet_folder), "--folds", "0", "--input", str(src), "--method", method,
            "--target", target, "--param", f"tta={tta}", "--output", str(out), "--progress", "none"]
    if method == "ig":
        args += ["--param", "steps=4"]
    if method == "occlusion":
        args += ["--param", "window_mm=60", "--param", "stride_mm=60"]
    assert main(args) == 0
    heat = read_volume(out)
    assert heat.shape == ct.shape and np.allclose(heat.ijk_to_ras, read_volume(src).ijk_to_ras, atol=1e-4)
    side = json.loads(Path(str(out) + ".json").read_text())
    fn = side["details"]["function"]
    assert fn["exact"] is True and fn["kind"] == "nnunet_sliding_window" and fn["n_windows"] == 4
    assert fn["folds"] == ["0"] and fn["mirroring_allowed_by_checkpoint"] == [0, 1, 2]
    assert fn["mirroring"] == ([0, 1, 2] if tta == "true" else None)


# ---- TotalSegmentator's layout -----------------------------------------------------------------------------------
def _fake_part(root: Path, src: Path, dataset: str, names: list[str]) -> Path:
    """A TotalSegmentator-style part: the real nnU-Net folder under its dataset/trainer names, classes renamed."""
    dst = root / dataset / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("fold_1", "*.png", "*.txt", "checkpoint_best.pth"))
    dj = json.loads((dst / "dataset.json").read_text())
    dj["labels"] = {n: i for i, n in enumerate(["background", *names])}
    (dst / "dataset.json").write_text(json.dumps(dj))
    return dst


def test_totalsegmentator_parts_and_errors(nnunet_folder: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from MedXAILib.models.catalogue import list_models

    root = tmp_path / "ts" / "nnunet" / "results"
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "ts"))
    with pytest.raises(ModelError, match="totalseg_download_weights -t total"):
        load_model("totalsegmentator:total", options={"target": "liver"})
    organs = ["spleen", "kidney_right", "kidney_left", "gallbladder", "liver"]
    _fake_part(root, nnunet_folder, "Dataset291_TotalSegmentator_part1_organs_1559subj", organs)
    for n, part in ((292, "vertebrae"), (293, "cardiac"), (294, "muscles"), (295, "ribs")):
        _fake_part(root, nnunet_folder, f"Dataset{n}_TotalSegmentator_part{n - 290}_{part}_1559subj",
                   [f"{part}_{i}" for i in range(1, 6)])
    m = load_model("totalsegmentator:total", options={"target": "liver"})
    assert "Dataset291" in m.description.source and m.description.class_index("liver") == 5
    m2 = load_model("totalsegmentator:total", options={"target": "ribs_3"})
    assert "Dataset295" in m2.description.source
    with pytest.raises(ModelError, match="--target NAME.*totalsegmentator:291"):
        load_model("totalsegmentator:total")
    assert "Dataset292" in load_model("totalsegmentator:292").description.source  # one part by its dataset id
    with pytest.raises(ModelError, match="totalseg_download_weights -t total_fast"):
        load_model("totalsegmentator:total", options={"fast": True})
    listed = [e for e in list_models() if e["source"] == "totalsegmentator"]
    assert [e["load"] for e in listed] == ["totalsegmentator:total"]
    assert "liver" in listed[0]["classes"] and "ribs_5" in listed[0]["classes"]


def test_models_listing_has_nnunet_results_folders(nnunet_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from MedXAILib.models.catalogue import list_models

    monkeypatch.setenv("nnUNet_results", str(nnunet_folder.parent.parent))
    entries = {e["load"]: e for e in list_models() if e["source"] == "nnunet"}
    assert set(entries) == {str(nnunet_folder), str(nnunet_folder.parent / "nnUNetTrainer__nnUNetPlans__2d")}
    e = entries[str(nnunet_folder)]
    assert e["classes"][5] == "liver" and e["channels"] == ["CT"] and e["card"]["folds"] == ["0", "1"]
