"""Planted artifacts and the confounded dataset: seeded placement, masks that are exactly what changed, the
confounding rates, the intervention modes, the right-for-the-right-reasons penalty, and refusals.

Truth here is planted or computed by hand: the voxels an artifact changed are compared with its mask, the share of
positive cases that carry it with the strength (a binomial bound), the penalty with the closed-form input gradient
of a linear model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedXAILib.datasets import open_dataset
from MedXAILib.errors import InputError
from MedXAILib.shortcut.artifacts import ArtifactSpec, blob, check_fits, place, render
from MedXAILib.shortcut.confound import confound, draw_case, drawn, resolve_finding
from MedXAILib.training.explanation_loss import rrr_penalty
from MedXAILib.volume import Volume, make_ijk_to_ras


def _image(shape=(1, 64, 64), channels=1, spacing=(1.0, 1.0, 1.0), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.normal(100.0, 10.0, (channels, *shape)).astype(np.float32)
    return Volume(arr, make_ijk_to_ras(spacing[::-1], (0.0, 0.0, 0.0)))


@pytest.mark.parametrize("kind", ["tag", "patch", "intensity"])
@pytest.mark.parametrize("shape", [(1, 64, 64), (24, 40, 40)], ids=["2d", "3d"])
def test_mask_is_exactly_what_changed_and_placement_is_seeded(kind, shape):
    image = _image(shape, channels=2)
    spec = ArtifactSpec(kind, seed=3)
    p = place(spec, image, "case-a")
    assert p == place(ArtifactSpec(kind, seed=3), image, "case-a")  # same seed and case: same artifact
    assert p != place(ArtifactSpec(kind, seed=4), image, "case-a") or kind == "intensity" and shape[0] == 1
    drawn_image, mask = render(spec, image, p)
    assert mask.shape == image.shape and mask.any()
    changed = np.any(drawn_image.array != image.array, axis=0)
    if kind == "intensity":
        g = blob(image.shape, p)
        assert (mask == (g >= 0.1)).all()  # the blob's 10 %-of-peak region (no background in this image)
        assert not (changed & (g == 0)).any()  # nothing changed where the blob has no support
        peak_gain = (drawn_image.array - image.array).max(axis=(1, 2, 3))
        sd = image.array.reshape(2, -1).std(axis=1)
        np.testing.assert_allclose(peak_gain, 2.0 * sd, rtol=0.02)  # contrast 2 SD at the centre voxel
    else:
        assert (changed == mask).all()  # nothing outside the mask changed, everything inside did
        expected = np.percentile(image.array.reshape(2, -1), 99.5, axis=1)
        np.testing.assert_allclose(drawn_image.array[:, mask].mean(axis=1), expected, rtol=1e-5)
    assert (image.array == _image(shape, channels=2).array).all()  # the input is not modified


def test_tag_is_a_letter_near_an_upper_corner():
    image = _image((1, 100, 100))
    p = place(ArtifactSpec("tag", seed=1, size_mm=12.0), image, "x")
    _, mask = render(ArtifactSpec("tag", seed=1, size_mm=12.0), image, p)
    rows, cols = np.nonzero(mask[0])
    assert rows.max() < 25 and (cols.max() < 25 or cols.min() > 75)  # within the upper 25 % near a side
    assert rows.max() - rows.min() + 1 == 12  # letter height = size in mm at 1 mm pixels
    assert 0.3 < mask.sum() / (12 * 10) < 0.7  # strokes, not a filled box
    assert p.letter in ("L", "R")


def test_too_large_artifact_is_refused():
    image = _image((1, 64, 64))
    with pytest.raises(InputError, match="does not fit"):
        check_fits(ArtifactSpec("patch", size_mm=64.0), image)
    with pytest.raises(InputError, match="strength"):
        ArtifactSpec("tag", strength=1.5).check()
    with pytest.raises(InputError, match="--artifact must be one of"):
        ArtifactSpec("sticker").check()


def test_confounding_rates_and_intervention_modes():
    """Positives carry the tag at rate ≈ strength, negatives at ≈ 1 − strength; swapped: negatives only."""
    ds = open_dataset("phantom-chest:40")
    finding = resolve_finding(ds, "effusion", "classification")
    spec = ArtifactSpec("tag", strength=0.9, seed=0)
    train = confound(ds, spec, finding, "train")
    stats = {0: [], 1: []}
    for case in train.cases:
        d = drawn(case)
        stats[d.label].append(d.present)
        image, truth = case.load()  # the generator returns the drawn image and the restricted truth
        assert truth == {"effusion": d.label} and np.array_equal(image.array, d.image.array)
    # binomial: with 40 cases at p = 0.9, the observed share lies within ±0.3 of p with overwhelming probability
    assert abs(np.mean(stats[1]) - 0.9) < 0.3 and abs(np.mean(stats[0]) - 0.1) < 0.3
    for case in ds.cases[:6]:
        modes = {m: draw_case(case, spec, finding, m) for m in ("clean", "added", "swapped")}
        assert not modes["clean"].present and modes["added"].present
        assert modes["swapped"].present == (modes["clean"].label == 0)
        assert all(np.array_equal(modes["clean"].mask, d.mask) for d in modes.values())  # one footprint per case
        assert np.array_equal(modes["clean"].image.array, case.load()[0].array)  # clean = the original


def test_missing_finding_is_refused():
    ds = open_dataset("phantom-chest:4")
    with pytest.raises(InputError, match="not in phantom-chest:4"):
        resolve_finding(ds, "pneumonia", "classification")
    brain = open_dataset("phantom:2")
    assert resolve_finding(brain, None, "segmentation").label_values  # default: the whole foreground


def test_rrr_penalty_equals_the_closed_form_of_a_linear_model():
    """logit z = w·x + b: d/dx [log σ(z) + log σ(−z)] = (1 − 2σ(z)) w, so the penalty is Σ_d A_d ((1 − 2p) w_d)²."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 1)
    x = torch.randn(3, 12, requires_grad=True)
    mask = (torch.rand(3, 12) > 0.5).float()
    out = lin(x)
    got = rrr_penalty(out, x, mask, "sigmoid")
    p = torch.sigmoid(out.detach())
    expected = (mask * ((1 - 2 * p) * lin.weight.detach()) ** 2).sum(1).mean()
    torch.testing.assert_close(got, expected)
    got.backward()  # differentiable with respect to the weights (double backward)
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


def test_rrr_penalty_of_a_softmax_segmentation_equals_the_closed_form():
    """Per-voxel softmax of a linear (1 × 1 convolution) model z_k = Σ_c W_kc x_c + b_k: the input gradient of
    Σ_voxels Σ_k log p_k is Σ_k W_kc − K Σ_j p_j W_jc at each voxel, so the penalty is known by hand."""
    torch.manual_seed(1)
    conv = torch.nn.Conv3d(2, 3, 1)
    x = torch.randn(2, 2, 3, 4, 5, requires_grad=True)
    mask = (torch.rand(2, 1, 3, 4, 5) > 0.4).float()
    out = conv(x)
    got = rrr_penalty(out, x, mask, "softmax")
    w = conv.weight.detach()[:, :, 0, 0, 0]  # (K, C)
    p = torch.softmax(out.detach(), dim=1)  # (B, K, k, j, i)
    grad = w.sum(0).view(1, 2, 1, 1, 1) - 3 * torch.einsum("bkzyx,kc->bczyx", p, w)
    expected = (mask * grad ** 2).flatten(1).sum(1).mean()
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("options, message", [
    ({"explanation_mask": "artifact"}, "need --explanation-loss rrr"),
    ({"explanation_loss": "rrr", "explanation_weight": 1.0}, "needs --explanation-mask"),
    ({"explanation_loss": "rrr", "explanation_weight": 1.0, "explanation_mask": "artifact"},
     "needs a planted artifact"),
    ({"explanation_loss": "rrr", "explanation_weight": -1.0, "explanation_mask": "annotation"}, "≥ 0"),
    ({"explanation_loss": "rrr", "explanation_weight": 1.0, "explanation_mask": "annotation", "finding": None},
     "needs --finding"),
])
def test_explanation_loss_options_are_checked(options, message):
    from MedXAILib.training import TrainConfig

    cfg = TrainConfig(dataset="phantom-chest:4", task="classification", output="out",
                      **{"finding": "effusion", **options})
    with pytest.raises(InputError, match=message):
        cfg.check()


def test_train_command_line_round_trips_the_new_options():
    """The command a fold records reruns the same training: parsed back, it gives the same configuration."""
    import argparse
    import shlex

    from MedXAILib.commands import train
    from MedXAILib.training import TrainConfig

    cfg = TrainConfig(dataset="phantom-chest:8", task="classification", output="out", folds=2, seed=3,
                      finding="effusion", artifact=ArtifactSpec("tag", 0.9, 3, 20.0).as_dict(),
                      explanation_loss="rrr", explanation_weight=10.0, explanation_mask="artifact")
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(shlex.split(cfg.command())[4:])
    again = train.config_from_args(args)
    assert again == cfg
    plain = TrainConfig(dataset="phantom-chest:8", task="classification", output="out")
    assert "--finding" not in plain.command() and "--explanation" not in plain.command()


def test_train_refuses_annotation_mask_without_annotations_before_writing(tmp_path, capsys):
    from MedXAILib.cli import main
    from MedXAILib.io import write_volume

    rows = ["case_id,patient_id,image,effusion"]
    for n in range(4):
        write_volume(_image((1, 16, 16), seed=n), tmp_path / f"x{n}.nrrd")
        rows.append(f"x{n},p{n},x{n}.nrrd,{n % 2}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "train"
    assert main(["train", "--dataset", f"csv:{tmp_path / 'cases.csv'}", "--task", "classification", "--folds", "2",
                 "--finding", "effusion", "--explanation-loss", "rrr", "--explanation-weight", "1",
                 "--explanation-mask", "annotation", "--output", str(out), "--progress", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "annotation of effusion" in err
    assert not out.exists()


def test_cases_whose_ids_share_a_file_name_keep_their_own_masks(tmp_path):
    """``a b``, ``a-b`` and ``A-B`` all become the file stem ``a-b`` (or collide on a case-insensitive file system):
    each case must still get its own mask file, equal to the voxels its artifact changed."""
    from MedXAILib.io import read_image, write_volume
    from MedXAILib.shortcut.report import mask_stems, write_masks

    ids = ["a b", "a-b", "A-B", "other"]
    rows = ["case_id,patient_id,image,effusion"]
    for n, cid in enumerate(ids):
        write_volume(_image((1, 40, 40), seed=n), tmp_path / f"x{n}.nrrd")
        rows.append(f"{cid},p{n},x{n}.nrrd,{n % 2}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    ds = open_dataset(f"csv:{tmp_path / 'cases.csv'}")
    finding = resolve_finding(ds, "effusion", "classification")
    spec = ArtifactSpec("tag", seed=0)
    stems = mask_stems(ids)
    assert len({s.casefold() for s in stems.values()}) == 4 and stems["other"] == "other"
    written = write_masks(tmp_path / "run", ds, spec, finding, ids)
    assert len(set(written)) == 4
    for cid in ids:
        case = next(c for c in ds.cases if c.case_id == cid)
        clean, added = draw_case(case, spec, finding, "clean"), draw_case(case, spec, finding, "added")
        changed = np.any(added.image.array != clean.image.array, axis=0)
        stored = read_image(tmp_path / "run" / "masks" / f"{stems[cid]}.nii.gz").array[0] > 0
        assert np.array_equal(stored, changed), cid
