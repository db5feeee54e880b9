"""Issue 17: every bad input the issue lists, at the CLI, refused cleanly (or run with a stated warning).

Each refusal obeys :func:`bad_inputs.assert_refused`: exit 2, one ``error:`` line and nothing else on stderr, no
traceback, inputs byte-identical (sha256), no file left behind.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import stat
import struct

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from bad_inputs import (
    assert_refused,
    make_world,
    model_variant,
    run,
    truncated,
    uncompressed,
    write_nifti,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def seg(w, *extra):
    return ["segment", "--model", w["seg"], "--input", w["c0"], "--input", w["c1"], *extra]


def expl(w, *extra):
    return ["explain", "--model", w["seg"], "--input", w["c0"], "--input", w["c1"], *extra]


# ---- 2. inputs destroyed / outputs colliding ---------------------------------------------------------------------
def test_explain_output_is_the_input(capfd, w):
    assert_refused(run(capfd, w["root"], *expl(w, "--output", w["c0"])), r"--output .*c0.nii.gz is the input")


def test_explain_normalized_is_the_input(capfd, w):
    out = w["root"] / "o-norm.nii.gz"
    r = run(capfd, w["root"], *expl(w, "--output", out, "--normalized", w["c1"]))
    assert_refused(r, r"--normalized .*c1.nii.gz is the input")


def test_segment_output_is_the_input(capfd, w):
    assert_refused(run(capfd, w["root"], *seg(w, "--output", w["c1"])), r"is the input")


def test_evaluate_output_is_the_reference(capfd, w):
    r = run(capfd, w["root"], "evaluate", "--prediction", w["pred"], "--reference", w["ref"], "--output", w["ref"])
    assert_refused(r, r"--output .*ref.nii.gz is the input .*--reference")


def test_output_reaching_the_input_through_symlink_dotdot_and_hard_link(capfd, w, tmp_path):
    link = w["root"] / "link.nii.gz"
    link.symlink_to(w["c0"])
    hard = w["root"] / "hard.nii.gz"
    os.link(w["c1"], hard)
    try:
        for out in (link, w["root"] / "seg-model" / ".." / "c0.nii.gz", hard):
            assert_refused(run(capfd, w["root"], *seg(w, "--output", out)), r"is the input")
    finally:
        link.unlink()
        hard.unlink()


def test_two_outputs_on_one_path(capfd, w):
    out = w["root"] / "same.nii.gz"
    assert_refused(run(capfd, w["root"], *seg(w, "--output", out, "--probabilities", out)), "are the same file")
    assert_refused(run(capfd, w["root"], *expl(w, "--output", out, "--normalized", out)), "are the same file")


def test_output_whose_sidecar_is_an_input(capfd, w):
    # the model is given as a description file named like the sidecar segment would write beside --output
    desc = json.loads((w["seg"] / "model.json").read_text())
    desc["weights"] = "seg-model/weights.pt"
    model = w["root"] / "o.nii.gz.json"
    model.write_text(json.dumps(desc))
    try:
        r = run(capfd, w["root"], *(["segment", "--model", model] + seg(w)[3:]), "--output", w["root"] / "o.nii.gz")
        assert_refused(r, r"the sidecar .*o.nii.gz.json written beside --output is the input .*\(--model\)")
    finally:
        model.unlink()


def test_mhd_output_and_its_data_file(capfd, w):
    r = run(capfd, w["root"], *seg(w, "--output", w["root"] / "p.mhd", "--probabilities", w["root"] / "p.nii.gz"))
    assert r.code == 0, r.err  # distinct names: fine
    for name in ("p.mhd", "p.zraw", "p.nii.gz", "p.mhd.json"):
        (w["root"] / name).unlink()


# ---- 3. truncated and corrupt files ---------------------------------------------------------------------------------
def test_truncated_nii_gz_refused_naming_the_file(capfd, w):
    bad = truncated(w["c0"], w["root"] / "half.nii.gz")
    try:
        r = run(capfd, w["root"], *seg(w, "--output", w["root"] / "o.nii.gz")[:-4], "--input", bad, "--input", w["c1"],
                "--output", w["root"] / "o.nii.gz")
        assert_refused(r, r"half.nii.gz.*truncated")
    finally:
        bad.unlink()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_truncated_2d_images_refused(capfd, w, suffix):
    """ITK reads a cut JPEG or BMP with the missing rows set to 0 (and libjpeg prints on stderr)."""
    whole = w["root"] / f"whole{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(w["xray"])), str(whole))
    cut = truncated(whole, w["root"] / f"cut{suffix}", 0.6)
    try:
        r = run(capfd, w["root"], "classify", "--model", w["cls"], "--input", cut)
        assert_refused(r, rf"cut{suffix}: .*truncated")
    finally:
        whole.unlink()
        cut.unlink()


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_label_maps_refused_by_evaluate(capfd, w, fraction):
    raw = uncompressed(w["pred"], w["root"] / "pred-raw.nii")
    bad = truncated(raw, w["root"] / "pred-cut.nii", fraction)
    try:
        for pred in (bad, truncated(w["pred"], w["root"] / "pred-cut.nii.gz", fraction)):
            r = run(capfd, w["root"], "evaluate", "--prediction", pred, "--reference", w["ref"],
                    "--output", w["root"] / "e.json")
            assert_refused(r, r"pred-cut.nii(.gz)?: .*(truncated|ends early|shorter)")
    finally:
        for name in ("pred-raw.nii", "pred-cut.nii", "pred-cut.nii.gz"):
            (w["root"] / name).unlink(missing_ok=True)


def test_corrupt_header_and_gzip_stream_refused(capfd, w):
    raw = bytearray(gzip.decompress(w["ref"].read_bytes()))
    cases = {}
    dims = bytearray(raw)
    dims[42:44] = struct.pack("<h", 40)  # dim[1] 16 -> 40: the data is far too short
    cases["dims.nii"] = bytes(dims)
    dtype = bytearray(raw)
    dtype[70:72] = struct.pack("<h", 77)  # no such data type
    cases["dtype.nii"] = bytes(dtype)
    zipped = bytearray(w["ref"].read_bytes())
    zipped[len(zipped) // 2] ^= 0xFF
    cases["crc.nii.gz"] = bytes(zipped)
    for name, data in cases.items():
        bad = w["root"] / name
        bad.write_bytes(data)
        try:
            r = run(capfd, w["root"], "evaluate", "--prediction", w["pred"], "--reference", bad,
                    "--output", w["root"] / "e.json")
            assert_refused(r, rf"{name}: .*(corrupt|truncated|unknown data type)")
        finally:
            bad.unlink()


def test_csv_benchmark_marks_a_truncated_case_failed(capfd, w, tmp_path):
    from MedXAILib.benchmark import BenchmarkSettings, run_benchmark

    truncated(w["c0"], tmp_path / "cut.nii.gz")
    (tmp_path / "cohort.csv").write_text(
        "case_id,patient_id,image:c0,image:c1,label\n"
        f"good,p1,{w['c0']},{w['c1']},{w['ref']}\n"
        f"cut,p2,cut.nii.gz,{w['c1']},{w['ref']}\n"
    )
    settings = BenchmarkSettings(
        dataset=f"csv:{tmp_path / 'cohort.csv'}", model=str(w["seg"]), methods=["gradcam"],
        output=str(tmp_path / "bench"), metrics=["complexity"], folds=2, seed=0,
    )
    run_benchmark(settings, workers=1)
    rows = (tmp_path / "bench" / "cases.csv").read_text().splitlines()
    cut = next(r for r in rows if r.startswith("cut,"))
    good = next(r for r in rows if r.startswith("good,"))
    assert "error" in cut and "truncated" in cut
    assert ",ok," in good or "ok" in good.split(",")


# ---- 5. partial outputs ---------------------------------------------------------------------------------------------
def test_second_output_checked_before_the_first_is_written(capfd, w):
    out = w["root"] / "first.nii.gz"
    r = run(capfd, w["root"], *seg(w, "--output", out, "--probabilities", w["root"] / "second.txt"))
    assert_refused(r, r"--probabilities .*must end with")
    r = run(capfd, w["root"], *expl(w, "--output", out, "--normalized", w["root"] / "c0.nii.gz" / "x.nii.gz"))
    assert_refused(r, r"is a file, not a folder")


def test_failure_while_writing_the_second_output_removes_the_first(capfd, w, monkeypatch):
    import MedXAILib.commands.explain as explain_cmd

    real = explain_cmd.write_volume
    calls = []

    def failing(vol, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(vol, path, *a, **k)

    monkeypatch.setattr(explain_cmd, "write_volume", failing)
    before = set(os.listdir(w["root"]))
    with pytest.raises(OSError):
        from MedXAILib.cli import main

        main([str(a) for a in expl(w, "--output", w["root"] / "h.nii.gz", "--normalized", w["root"] / "n.nii.gz",
                                   "--progress", "none")])
    assert len(calls) == 2
    assert set(os.listdir(w["root"])) == before  # neither h.nii.gz, nor its sidecar, nor a temporary file


# ---- 6. tracebacks that became one line ------------------------------------------------------------------------------
def test_output_path_os_errors(capfd, w, tmp_path):
    folder = w["root"] / "looks.nii.gz"
    folder.mkdir()
    try:
        assert_refused(run(capfd, w["root"], *seg(w, "--output", folder)), r"is a folder")
    finally:
        folder.rmdir()
    assert_refused(run(capfd, w["root"], *seg(w, "--output", w["c0"].with_name("c0.nii.gz") / "o.nii.gz")),
                   r"is a file, not a folder")
    assert_refused(run(capfd, w["root"], *seg(w, "--output", "/proc/medxai-out.nii.gz")), r"cannot write into")
    assert_refused(run(capfd, w["root"], "evaluate", "--prediction", w["pred"], "--reference", w["ref"],
                       "--output", "/dev/null/e.json"), r"not a folder|cannot write")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(capfd, w, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert_refused(run(capfd, w["root"], *seg(w, "--output", ro / "o.nii.gz")), r"cannot write into")
    finally:
        ro.chmod(stat.S_IRWXU)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("class_names", 5, r"class_names must be a list of names"),
        ("preprocessing", "zscore", r"preprocessing must be an object"),
        ("weights", 5, r"weights must be a string"),
        ("patch_size", "big", r"patch_size must be a list of 3 positive whole numbers"),
        ("channel_names", "t1ce", r"channel_names must be a list of names"),
        ("spatial_dims", "3", r"spatial_dims must be 2 or 3"),
        ("label_values", [1, 1, 2], r"label_values must be distinct"),
        ("architecture", "UNet", r"architecture must be an object"),
    ],
)
def test_description_fields_of_the_wrong_type(capfd, w, field, value, message):
    bad = model_variant(w, f"bad-{field}", **{field: value})
    r = run(capfd, w["root"], *seg(w, "--output", w["root"] / "o.nii.gz")[:2], bad, *seg(w)[3:],
            "--output", w["root"] / "o.nii.gz")
    assert_refused(r, message)


def test_class_names_that_do_not_match_the_outputs(capfd, w):
    bad = model_variant(w, "four-classes", class_names=["background", "a", "b", "c"])
    r = run(capfd, w["root"], "segment", "--model", bad, "--input", w["c0"], "--input", w["c1"],
            "--output", w["root"] / "o.nii.gz")
    line = assert_refused(r, r"4 class names for 3 network outputs")
    assert "channel names" not in line


def test_zero_byte_checkpoint(capfd, w):
    bad = model_variant(w, "zero-weights")
    (bad / "weights.pt").write_bytes(b"")
    r = run(capfd, w["root"], *(["segment", "--model", bad] + seg(w)[3:]), "--output", w["root"] / "o.nii.gz")
    assert_refused(r, r"weights.pt: the weights file is empty")


def _torchscript(w, name, network, example, desc_changes):
    folder = model_variant(w, name, **desc_changes)
    traced = torch.jit.trace(network.eval(), example)
    traced.save(str(folder / "model.ts"))
    desc = json.loads((folder / "model.json").read_text())
    desc["weights"] = "model.ts"
    (folder / "model.json").write_text(json.dumps(desc))
    return folder


def test_torchscript_of_the_wrong_architecture_or_output_rank(capfd, w):
    from helpers import tiny_classifier, tiny_unet_model

    one_channel = tiny_unet_model(channels=1, classes=3).network
    wrong_arch = _torchscript(w, "ts-one-channel", one_channel, torch.zeros(1, 1, 16, 16, 16), {})
    r = run(capfd, w["root"], "segment", "--model", wrong_arch, "--input", w["c0"], "--input", w["c1"],
            "--output", w["root"] / "o.nii.gz")
    assert_refused(r, r"the network fails on a test input of 2 channel")
    clf = tiny_classifier(classes=3).network
    wrong_rank = _torchscript(
        w, "ts-classifier", clf, torch.zeros(1, 1, 32, 32),
        {"channel_names": ["xray"], "spatial_dims": 2, "patch_size": None, "cam_layer": None},
    )
    r = run(capfd, w["root"], "segment", "--model", wrong_rank, "--input", w["xray"],
            "--output", w["root"] / "o.nii.gz")
    assert_refused(r, r"returns outputs of shape \(1, 3\).*segmentation model must return")


def test_ig_with_absurd_steps_refused_with_the_estimate(capfd, w):
    r = run(capfd, w["root"], *expl(w, "--method", "ig", "--param", "steps=1000000000000",
                                     "--output", w["root"] / "o.nii.gz"))
    assert_refused(r, r"ig( \(2000000000002 passes\)|: 1000000000000 integration steps) needs about .* more than the")
    r = run(capfd, w["root"], *expl(w, "--method", "ig", "--param", "steps=1000000000000", "--dry-run"))
    assert r.code == 0 and json.loads(r.out)["backward_passes"] >= 10**12


@pytest.mark.parametrize("method, param", [("kernelshap", "n_samples"), ("lime", "n_samples"),
                                           ("gradientshap", "n_samples"), ("saliency", "smoothgrad_samples")])
def test_sampling_methods_with_absurd_sample_counts(capfd, w, method, param, monkeypatch):
    monkeypatch.setenv("MEDXAI_MEMORY_LIMIT", "4G")
    r = run(capfd, w["root"], *expl(w, "--method", method, "--param", f"{param}=1000000000000",
                                     "--output", w["root"] / "o.nii.gz"))
    assert_refused(r, rf"{method} \(\d+ passes\) needs about [\d.]+ TiB, more than the 4.0 GiB")


def test_small_file_expanding_beyond_memory(capfd, w, monkeypatch):
    """A .nii.gz of 1200³ voxels (a few MB of zeros) is refused from its header, before it is decompressed."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 1200, 1200, 1200, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 4, 16)
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 0, 0, 0, 0)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    bomb = w["root"] / "bomb.nii.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as fh:
        fh.write(bytes(header) + b"\0" * 4)
        zeros = b"\0" * (1 << 22)
        for _ in range(8):  # the first 32 MiB of the 3.2 GiB: the header decides before any data is read
            fh.write(zeros)
    monkeypatch.setenv("MEDXAI_MEMORY_LIMIT", "8G")
    try:
        r = run(capfd, w["root"], "evaluate", "--prediction", bomb, "--reference", w["ref"],
                "--output", w["root"] / "e.json")
        assert_refused(r, r"bomb.nii.gz: reading this 1200 x 1200 x 1200 NIfTI image needs about \d+\.\d GiB, "
                          r"more than the 8.0 GiB")
    finally:
        bomb.unlink()


# ---- 7. messages -----------------------------------------------------------------------------------------------------
def test_checkpoint_with_blocked_globals_needs_the_flag_and_the_flag_works(capfd, w):
    from helpers import tiny_unet_model

    folder = model_variant(w, "pickled-config")
    state = tiny_unet_model(channels=2, classes=3).network.state_dict()
    torch.save({"state_dict": state, "config": argparse.Namespace(lr=0.1)}, folder / "weights.pt")
    out = w["root"] / "unsafe-out.nii.gz"
    argv = ["segment", "--model", folder, "--input", w["c0"], "--input", w["c1"], "--output", out]
    assert_refused(run(capfd, w["root"], *argv), r"needs arbitrary code to load .*argparse.Namespace.*"
                                                 r"--allow-unsafe-pickle")
    r = run(capfd, w["root"], *argv, "--allow-unsafe-pickle")
    assert r.code == 0, r.err
    out.unlink()
    out.with_name(out.name + ".json").unlink()


def test_malicious_checkpoint_payload_does_not_run(capfd, w, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = model_variant(w, "evil-weights")
    torch.save({"state_dict": {"x": torch.zeros(1)}, "p": Payload()}, folder / "weights.pt")
    r = run(capfd, w["root"], "segment", "--model", folder, "--input", w["c0"], "--input", w["c1"],
            "--output", w["root"] / "o.nii.gz")
    assert_refused(r, r"needs arbitrary code to load")
    assert not marker.exists()


def test_no_itk_chatter_before_the_error(capfd, w):
    bad = w["root"] / "notmeta.mha"  # a header MetaIO cannot type: ITK prints its complaints on stderr, then fails
    bad.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_NOSUCH\n"
                   "ElementDataFile = LOCAL\n")
    try:
        r = run(capfd, w["root"], "evaluate", "--prediction", bad, "--reference", w["ref"],
                "--output", w["root"] / "e.json")
        assert_refused(r, "notmeta.mha: cannot be read as an image")
        assert "MetaObject" not in r.err and "M_Read" not in r.err and "itk::" not in r.err.lower()
    finally:
        bad.unlink()


def test_grey_alpha_png_is_read(capfd, w):
    arr = np.stack([(np.arange(40 * 48).reshape(40, 48) % 200).astype(np.uint8), np.full((40, 48), 255, np.uint8)], -1)
    png = w["root"] / "la.png"
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(png))
    try:
        r = run(capfd, w["root"], "classify", "--model", w["cls"], "--input", png)
        assert r.code == 0, r.err
        assert set(json.loads(r.out)["probabilities"]) == {"f0", "f1", "f2"}
    finally:
        png.unlink()


# ---- 8. unchecked options --------------------------------------------------------------------------------------------
def test_speed_unknown_method(capfd, w):
    assert_refused(run(capfd, w["root"], "speed", "--methods", "nosuch"), r"unknown method\(s\) nosuch")
    assert_refused(run(capfd, w["root"], "bench", "--methods", "nosuch"), r"unknown method")


@pytest.mark.parametrize("value", ["-1", "nan", "1.5"])
def test_classify_threshold_out_of_range(capfd, w, value):
    r = run(capfd, w["root"], "classify", "--model", w["cls"], "--input", w["xray"], f"--threshold={value}")
    assert_refused(r, r"--threshold .* between 0 and 1")


def test_benchmark_batch_size(capfd, w, tmp_path):
    r = run(capfd, w["root"], "benchmark", "--dataset", "phantom:2", "--model", w["seg"], "--methods", "gradcam",
            "--output", tmp_path / "b", "--batch-size", "-1")
    assert_refused(r, r"--batch-size must be at least 1")


def test_benchmark_fails_when_every_unit_failed(capfd, w, tmp_path):
    # the phantom has 4 channels; the model takes 2: every unit fails
    r = run(capfd, tmp_path, "benchmark", "--dataset", "phantom:2", "--model", w["seg"], "--methods", "gradcam",
            "--metrics", "complexity", "--folds", "2", "--output", tmp_path / "b")
    assert "Traceback" not in r.err
    assert r.code == 2
    assert [ln for ln in r.err_lines if ln.startswith("error:")] == [
        ln for ln in r.err_lines if "every one of the 2 unit(s) run failed" in ln
    ]


def test_voxel_with_region(capfd, w):
    r = run(capfd, w["root"], *expl(w, "--region", w["ref"], "--voxel", "1,2,3", "--output", w["root"] / "o.nii.gz"))
    assert_refused(r, r"either --region .* or --voxel")


def test_label_beyond_int32(capfd, w):
    big = w["root"] / "big-label.nii.gz"
    arr = np.zeros((16, 16, 16), np.float64)
    arr[2, 2, 2] = 3e9
    write_nifti(big, arr)
    try:
        r = run(capfd, w["root"], "evaluate", "--prediction", big, "--reference", w["ref"],
                "--output", w["root"] / "e.json")
        assert_refused(r, r"big-label.nii.gz: the prediction has the label 3000000000")
    finally:
        big.unlink()


@pytest.mark.parametrize("kind", ["one-pixel", "constant", "zero"])
def test_questionable_xrays_are_classified_with_a_warning(capfd, w, kind):
    arr = {"one-pixel": np.full((1, 1), 90, np.uint8), "constant": np.full((40, 48), 90, np.uint8),
           "zero": np.zeros((40, 48), np.uint8)}[kind]
    png = w["root"] / f"q-{kind}.png"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(png))
    try:
        r = run(capfd, w["root"], "classify", "--model", w["cls"], "--input", png)
        assert r.code == 0, r.err
        warnings = [ln for ln in r.err_lines if ln.startswith("warning:")]
        assert warnings and all(f"q-{kind}.png" in ln for ln in warnings), r.err
        assert any(word in " ".join(warnings) for word in ("only 1 x 1", "constant", "all zero"))
    finally:
        png.unlink()


# ---- 9. smaller points ---------------------------------------------------------------------------------------------
def test_mhd_output_names_its_real_data_file_and_outputs_get_the_umask(capfd, w, tmp_path):
    old = os.umask(0o022)
    try:
        r = run(capfd, tmp_path, *seg(w, "--output", tmp_path / "lab.mhd"))
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    assert sorted(os.listdir(tmp_path)) == ["lab.mhd", "lab.mhd.json", "lab.zraw"]
    assert "ElementDataFile = lab.zraw" in (tmp_path / "lab.mhd").read_text()
    assert sitk.ReadImage(str(tmp_path / "lab.mhd")).GetSize() == (16, 16, 16)
    for name in os.listdir(tmp_path):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_ig_quadrature_is_bounded_in_the_python_api_too():
    from MedXAILib.errors import MethodError
    from MedXAILib.explain.gradients import integration_rule

    with pytest.raises(MethodError, match=r"ig: 10000000 integration steps needs about [\d.]+ PiB"):
        integration_rule("gausslegendre", 10**7)
    assert len(integration_rule("gausslegendre", 64)[0]) == 64
