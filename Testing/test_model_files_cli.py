"""Issue 22: every attack class on model files, through every command that loads a model, refused cleanly.

Each refusal obeys the rules of ``bad_inputs.assert_refused``-style checks, measured here without MedXAI's code:
exit 2, exactly one ``error:`` line naming the entry, no traceback, every file that existed before byte-identical
(sha256), no file left behind (downloads land in ``$TORCH_HOME`` and ``tempfile`` files in the temporary folder,
both inside the watched folder), and a marker file proving the payload never ran. The payload is live: with
``--trust-model-code`` the same files do run it (so the marker test is not vacuous).

Paths covered: ``segment``, ``explain``, ``classify``, ``report``, ``compare``, ``report --benchmark`` (the model named
in a benchmark run's ``benchmark.json``), ``--model monai:NAME`` from the cache, and the real nnU-Net test folder with
each plan / dataset.json field nnU-Net imports by name. The ``models`` listing lists what it can and names a broken
cached bundle instead of failing.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from model_file_cases import (
    LOWER_READERS,
    PAYLOAD,
    bundle_inference,
    bundle_metadata,
    copy_nnunet,
    nnunet_name_mutations,
    write_bundle,
    write_json,
)
from test_fuzz_model_files import snapshot

from MedXAILib.cli import main


@pytest.fixture(scope="module")
def world(model_file_world: dict[str, Path]) -> dict[str, Path]:
    return model_file_world


@pytest.fixture()
def watched(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder whose every file is compared before and after (world, case, downloads, temporary files)."""
    for sub in ("torch_home", "tmp", "out", "case"):
        (tmp_path / sub).mkdir()
    monkeypatch.syspath_prepend(str(world["payload"]))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("MEDXAI_MODEL_CACHE", str(tmp_path / "case" / "cache"))
    yield tmp_path
    world["marker"].unlink(missing_ok=True)
    for name in (PAYLOAD, *LOWER_READERS):
        sys.modules.pop(name, None)


def refused(capfd: pytest.CaptureFixture, roots: list[Path], marker: Path, argv: list[str]) -> str:
    """Run ``argv``; assert every refusal rule; return the error line."""
    capfd.readouterr()
    before = {str(r): snapshot(r) for r in roots}
    try:
        code = main([*argv, "--progress", "none"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    _out, err = capfd.readouterr()
    after = {str(r): snapshot(r) for r in roots}
    assert "Traceback" not in err, err
    assert not marker.exists(), "the payload ran"
    assert code == 2, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for r in roots:
        changed = [k for k, v in before[str(r)].items() if after[str(r)].get(k) != v]
        new = sorted(set(after[str(r)]) - set(before[str(r)]))
        assert not changed, f"inputs modified: {changed}"
        assert not new, f"left behind: {new}"
    return lines[0]


# ---- bundle attacks -----------------------------------------------------------------------------------------------
def _expr(world: dict[str, Path]) -> str:
    return f"$__import__('pathlib').Path({str(world['marker'])!r}).touch() or 'image'"


def _set(path: list[Any], value: Any) -> Callable[[dict, dict, dict], None]:
    def mutate(i: dict, m: dict, w: dict) -> None:
        node: Any = i
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value(w) if callable(value) else value
    return mutate


def _ref(form: str) -> Callable[[dict, dict, dict], None]:
    def mutate(i: dict, m: dict, w: dict) -> None:
        i["a"] = {"b": {"c": _expr(w)}, "b#c": "image"}  # the old check read the key "b#c"; MONAI reads a::b::c
        i["evil"] = _expr(w)
        i["preprocessing"]["transforms"][4]["keys"] = form
    return mutate


def _url(i: dict, m: dict, w: dict) -> None:
    i["network_def"] = {"_target_": "HoVerNet", "in_channels": 1, "np_out_channels": 2,
                        "pretrained_url": f"file://{w['payload'] / 'weights.pth'}"}


BUNDLE_ATTACKS: dict[str, tuple[Callable[[dict, dict, dict], None], str]] = {
    "reader-module": (_set(["preprocessing", "transforms", 0, "reader"], f"{PAYLOAD}.Reader"), "reader"),
    "reader-lowercase": (_set(["preprocessing", "transforms", 0, "reader"], "itkreader"), "reader"),
    "reader-stdlib-callable": (_set(["preprocessing", "transforms", 0, "reader"], "tempfile.mkstemp"), "reader"),
    "merger-cls": (_set(["inferer"], {"_target_": "PatchInferer", "merger_cls": f"{PAYLOAD}.Merger"}), "merger_cls"),
    "nested-target-in-act": (_set(["network_def", "act"], {"_target_": "LoadImage", "reader": f"{PAYLOAD}.Reader"}),
                             "act"),
    "nested-target-in-inferer-kwarg": (_set(["inferer", "progress"], {"_target_": f"{PAYLOAD}.fn"}), "progress"),
    "reference-hash-separator": (_ref("@a::b#c"), "@a::b::c"),
    "reference-relative": (_ref("@::::::::evil"), "@evil"),
    "url-download": (_url, "URL"),
    "pretrained-download": (_set(["network_def"], {"_target_": "DenseNet121", "spatial_dims": 3, "in_channels": 1,
                                                   "out_channels": 2, "pretrained": True}), "pretrained"),
    "expression": (_set(["preprocessing", "transforms", 4, "nonzero"], lambda w: _expr(w)), "expression"),
    "huge-spacing-grid": (_set(["preprocessing", "transforms", 3, "pixdim"], [1e-6, 1e-6, 1e-6]), "pixdim"),
}


def _attack_bundle(case_dir: Path, world: dict[str, Path], mutate: Callable[[dict, dict, dict], None]) -> Path:
    inference, metadata = bundle_inference(), bundle_metadata()
    mutate(inference, metadata, world)
    return write_bundle(case_dir / "bundle", inference, metadata, world)


@pytest.mark.parametrize("attack", sorted(BUNDLE_ATTACKS))
def test_bundle_attack_is_refused_by_segment(attack: str, world: dict[str, Path], watched: Path,
                                             capfd: pytest.CaptureFixture) -> None:
    mutate, entry = BUNDLE_ATTACKS[attack]
    folder = _attack_bundle(watched / "case", world, mutate)
    line = refused(capfd, [world["root"], watched], world["marker"],
                   ["segment", "--model", str(folder), "--input", str(world["ct"]), "--output",
                    str(watched / "out" / "seg.nii.gz")])
    assert entry in line and "--trust-model-code" in line, line


FILE_ATTACKS: dict[str, Callable[[Path, dict[str, Path]], Path]] = {}


def _file_attack(name: str) -> Callable:
    def register(fn: Callable[[Path, dict[str, Path]], Path]) -> Callable:
        FILE_ATTACKS[name] = fn
        return fn
    return register


@_file_attack("yaml-alias-bomb")
def _yaml_bomb(case: Path, world: dict[str, Path]) -> Path:
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{n}: &l{n} [*l{n - 1}, *l{n - 1}]" for n in range(1, 34)]  # 2^36 leaves when expanded
    text = "\n".join(lines) + "\n" + "\n".join(f"{k}: {json.dumps(v)}" for k, v in bundle_inference().items())
    return write_bundle(case / "bundle", text + "\n", bundle_metadata(), world, "inference.yaml")


@_file_attack("960-deep-metadata")
def _deep(case: Path, world: dict[str, Path]) -> Path:
    text = json.dumps(bundle_metadata())[:-1] + ', "references": ' + "[" * 960 + "]" * 960 + "}"
    return write_bundle(case / "bundle", bundle_inference(), text, world)


@_file_attack("metadata-wrong-type")
def _meta_type(case: Path, world: dict[str, Path]) -> Path:
    meta = bundle_metadata()
    meta["network_data_format"]["inputs"] = ["image"]
    return write_bundle(case / "bundle", bundle_inference(), meta, world)


@_file_attack("metadata-billion-channels")
def _meta_channels(case: Path, world: dict[str, Path]) -> Path:
    meta = bundle_metadata()
    meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 10**9
    return write_bundle(case / "bundle", bundle_inference(), meta, world)


@_file_attack("config-named-pipe")
def _fifo(case: Path, world: dict[str, Path]) -> Path:
    import os

    folder = write_bundle(case / "bundle", bundle_inference(), bundle_metadata(), world)
    (folder / "configs" / "inference.json").unlink()
    os.mkfifo(folder / "configs" / "inference.json")
    return folder


@_file_attack("metadata-dev-zero")
def _zero(case: Path, world: dict[str, Path]) -> Path:
    folder = write_bundle(case / "bundle", bundle_inference(), bundle_metadata(), world)
    (folder / "configs" / "metadata.json").unlink()
    (folder / "configs" / "metadata.json").symlink_to("/dev/zero")
    return folder


@pytest.mark.parametrize("attack", sorted(FILE_ATTACKS))
def test_unbounded_or_mistyped_model_file_is_refused_before_allocating(
        attack: str, world: dict[str, Path], watched: Path, capfd: pytest.CaptureFixture) -> None:
    folder = FILE_ATTACKS[attack](watched / "case", world)
    line = refused(capfd, [world["root"], watched], world["marker"],
                   ["segment", "--model", str(folder), "--input", str(world["ct"]), "--output",
                    str(watched / "out" / "seg.nii.gz")])
    assert str(folder) in line, line


def _benchmark_run(folder: Path, model: Path) -> tuple[Path, str]:
    """A benchmark run folder whose ``benchmark.json`` names ``model`` and which holds one finished unit."""
    from MedXAILib.benchmark import UnitStore
    from MedXAILib.datasets import open_dataset

    case_id = next(iter(open_dataset("phantom:2"))).case_id
    store = UnitStore(folder)
    store.prepare()
    write_json(folder / "benchmark.json", {"dataset": "phantom:2", "model": str(model), "methods": ["gradcam"],
                                           "metrics": [], "folds": 2, "seed": 0})
    store.write({"case_id": case_id, "method": "gradcam", "fold": 0, "status": "ok"},
                np.zeros((8, 8, 8), np.float32))
    return folder, case_id


@pytest.mark.parametrize("command", ["explain", "classify", "report", "compare", "report-benchmark", "monai-cache"])
@pytest.mark.parametrize("attack", ["reader-module", "reference-hash-separator", "url-download"])
def test_every_command_that_loads_a_model_refuses(command: str, attack: str, world: dict[str, Path], watched: Path,
                                                 capfd: pytest.CaptureFixture) -> None:
    mutate, entry = BUNDLE_ATTACKS[attack]
    out = watched / "out"
    model = str(_attack_bundle(watched / "case", world, mutate))
    common = ["--input", str(world["ct"])]
    if command == "monai-cache":
        cached = watched / "case" / "cache" / "evil_bundle"
        shutil.copytree(model, cached)
        argv = ["segment", "--model", "monai:evil_bundle", *common, "--output", str(out / "seg.nii.gz")]
    elif command == "report-benchmark":
        run, case_id = _benchmark_run(watched / "case" / "run", Path(model))
        argv = ["report", "--benchmark", str(run), "--case", case_id, "--output", str(out / "r.html")]
    else:
        argv = {"explain": ["explain", "--model", model, *common, "--method", "gradcam", "--output",
                            str(out / "h.nii.gz")],
                "classify": ["classify", "--model", model, *common, "--output", str(out / "c.json")],
                "report": ["report", "--model", model, *common, "--output", str(out / "r.html")],
                "compare": ["compare", "--model", model, *common, "--methods", "gradcam,occlusion", "--output",
                            str(out / "cmp")]}[command]
    line = refused(capfd, [world["root"], watched], world["marker"], argv)
    assert entry in line, line


def test_the_payload_is_live_with_the_trust_flag(world: dict[str, Path], watched: Path) -> None:
    """The same reader payload runs when its author is trusted: the marker tests above are not vacuous."""
    from MedXAILib.errors import MedXAIError
    from MedXAILib.models import load_model

    folder = _attack_bundle(watched / "case", world, BUNDLE_ATTACKS["reader-module"][0])
    with pytest.raises(MedXAIError):
        load_model(folder)
    assert not world["marker"].exists()
    try:
        load_model(folder, trust_model_code=True)
    except MedXAIError:
        pass  # the payload's "reader" is no reader; what matters is that it was imported
    assert world["marker"].exists()


def test_models_lists_what_it_can_and_names_a_broken_cached_bundle(world: dict[str, Path], watched: Path,
                                                                  capfd: pytest.CaptureFixture) -> None:
    cache = watched / "case" / "cache"
    write_bundle(cache / "good_bundle", bundle_inference(), bundle_metadata(), world)
    meta = bundle_metadata()
    meta["network_data_format"] = "not a mapping"
    write_bundle(cache / "broken_bundle", bundle_inference(), meta, world)
    capfd.readouterr()
    assert main(["models", "--json"]) == 0
    out, _err = capfd.readouterr()
    data = json.loads(out)
    cached = [m["name"] for m in data["models"] if m["source"] == "cached"]
    assert cached == ["monai:good_bundle"]
    skipped = {s["name"]: s["reason"] for s in data["skipped"]}
    assert "network_data_format" in skipped["monai:broken_bundle"]
    assert main(["models"]) == 0
    out, err = capfd.readouterr()
    assert "monai:good_bundle" in out and "Traceback" not in err
    assert any(ln.startswith("warning: skipped monai:broken_bundle") for ln in err.splitlines())


# ---- the real nnU-Net test folder ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_ct(world: dict[str, Path], test_data_dir_module: Path) -> Path:
    """A crop of the shared TotalSegmentator CT (the nnU-Net folder's domain), written as NIfTI."""
    from MedXAILib.io import read_volume, write_volume
    from MedXAILib.volume import Volume

    vol = read_volume(test_data_dir_module / "totalsegmentator" / "example_ct_sm.nii.gz")
    m = vol.ijk_to_ras.copy()
    m[:3, 3] = (vol.ijk_to_ras @ np.array([30, 30, 5, 1.0]))[:3]
    crop = Volume(np.ascontiguousarray(vol.array[:, 5:25, 30:60, 30:70]), m)
    return write_volume(crop, world["root"] / "ct_crop.nii.gz")


@pytest.fixture(scope="module")
def test_data_dir_module() -> Path:
    import os

    path = Path(os.environ.get("MEDXAI_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared"
                               / "medxai-test-data"))
    if not path.is_dir():
        pytest.skip("real test data not found: set MEDXAI_TEST_DATA to the medxai-test-data folder")
    return path


NNUNET_FIELDS = [name for name, _ in nnunet_name_mutations()]


@pytest.mark.slow
@pytest.mark.parametrize("field", NNUNET_FIELDS)
def test_real_nnunet_folder_with_each_dangerous_plan_field_is_refused(
        field: str, nnunet_folder: Path, real_ct: Path, world: dict[str, Path], watched: Path,
        capfd: pytest.CaptureFixture) -> None:
    mutate = dict(nnunet_name_mutations())[field]
    folder = copy_nnunet(nnunet_folder, watched / "case" / "Dataset511_MedXAITiny" / nnunet_folder.name)
    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    mutate(plans, dataset)
    write_json(folder / "plans.json", plans)
    write_json(folder / "dataset.json", dataset)
    line = refused(capfd, [world["root"], watched, nnunet_folder], world["marker"],
                   ["segment", "--model", str(folder), "--input", str(real_ct), "--output",
                    str(watched / "out" / "seg.nii.gz")])
    assert field in line and ("--trust-model-code" in line or "not a plan nnU-Net can run" in line), line


@pytest.mark.slow
def test_real_nnunet_folder_runs_and_its_payload_is_live_only_with_the_trust_flag(
        nnunet_folder: Path, real_ct: Path, world: dict[str, Path], watched: Path) -> None:
    """The intact folder passes the schema; with the trust flag nnU-Net imports what ``nonlin`` names."""
    from MedXAILib.errors import MedXAIError
    from MedXAILib.models import load_model

    assert load_model(nnunet_folder, options={"folds": [0]}).description.n_classes == 6
    folder = copy_nnunet(nnunet_folder, watched / "case" / "Dataset511_MedXAITiny" / nnunet_folder.name)
    plans = json.loads((folder / "plans.json").read_text())
    dict(nnunet_name_mutations())["nonlin"](plans, {})
    write_json(folder / "plans.json", plans)
    with pytest.raises(MedXAIError, match="nonlin"):
        load_model(folder, options={"folds": [0]})
    assert not world["marker"].exists()
    try:
        load_model(folder, options={"folds": [0]}, trust_model_code=True)
    except MedXAIError:
        pass
    assert world["marker"].exists()
