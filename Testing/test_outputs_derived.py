"""Issue 22: every file a command writes, names derived from an option included, is declared and checked first.

``explain --counterfactual F`` also writes ``F_<channel>``, ``--series DIR`` writes ``step<NN>[_<channel>]``,
``compare --output DIR`` writes ``<method>.nrrd`` and ``consensus.nrrd``, ``report`` writes ``CASE.pdf`` unless
``--pdf`` says otherwise, and a benchmark run folder a report reads holds files a report must not replace. Each of
these met an input (or another output) and overwrote it before; each is now one clean refusal with every file
byte-identical (sha256) and nothing left behind (:func:`bad_inputs.assert_refused`). A command that writes a file it
did not declare fails in its own tests (:class:`MedXAILib.outputs.UndeclaredOutputError`).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pytest
from bad_inputs import assert_refused, make_world, run, snapshot

from MedXAILib import cli
from MedXAILib.output_names import WILDCARD, matches, may_overlap
from MedXAILib.outputs import (
    OutputSpec,
    UndeclaredOutputError,
    atomic_path,
    check_command_outputs,
    command_outputs,
    scratch_folder,
    staged_folder,
)


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("derived") / "world")


def _case(w, tmp_path: Path, *names: str) -> list[Path]:
    """Copies of the two channel files under ``tmp_path`` with the given names (the inputs of the case)."""
    out = []
    for src, name in zip((w["c0"], w["c1"]), names):
        dest = tmp_path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        out.append(Path(shutil.copy(src, dest)))
    return out


def _explain(w, inputs: list[Path], *extra) -> list:
    argv = ["explain", "--model", w["seg"]]
    for p in inputs:
        argv += ["--input", p]
    return argv + ["--method", "counterfactual", "--param", "steps=2", *extra]


# ---- the declaration is structural ---------------------------------------------------------------------------------
def test_every_folder_output_declares_its_files():
    for name in cli.COMMANDS:
        module = cli._load(name)
        for attr, spec in getattr(module, "OUTPUTS", {}).items():
            assert not spec.folder or spec.derived is not None, f"{name} --{attr}: a folder output declares no files"
    args = argparse.Namespace(output="somewhere")
    with pytest.raises(TypeError, match="declare no files"):
        check_command_outputs(args, {"output": OutputSpec(folder=True)})


def test_a_file_the_command_did_not_declare_is_refused_and_nothing_is_kept(tmp_path):
    args = argparse.Namespace(output=str(tmp_path / "out"))
    spec = {"output": OutputSpec(folder=True, derived=lambda p, a: [p / "a.json", p / f"step{WILDCARD}.nii.gz"])}
    with pytest.raises(UndeclaredOutputError, match="b.json"), command_outputs():
        check_command_outputs(args, spec)
        with atomic_path(tmp_path / "out" / "a.json") as tmp:
            tmp.write_text("{}")
        with atomic_path(tmp_path / "out" / "step07_t1.nii.gz") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "out" / "b.json") as tmp:
            tmp.write_text("{}")
    assert snapshot(tmp_path) == {} and not (tmp_path / "out").exists()


def test_a_set_written_inside_a_resumable_command_is_still_checked_against_its_plan(tmp_path):
    """shortcut and tradeoff (resumable) write their result files as one set in a nested command_outputs block:
    that block keeps the command's plan, so an undeclared file there is refused too (before, the inner block had no
    plan and let anything through) and the set's files are all discarded."""
    args = argparse.Namespace(output=str(tmp_path / "run"))
    spec = {"output": OutputSpec(folder=True, derived=lambda p, a: [p / "result.json", p / "masks" / WILDCARD])}
    with pytest.raises(UndeclaredOutputError, match="extra.csv"), command_outputs(staged=False):
        check_command_outputs(args, spec)
        with command_outputs():
            with atomic_path(tmp_path / "run" / "masks" / "k1.nii.gz") as tmp:
                tmp.write_text("x")
            with atomic_path(tmp_path / "run" / "result.json") as tmp:
                tmp.write_text("{}")
            with atomic_path(tmp_path / "run" / "extra.csv") as tmp:
                tmp.write_text("x")
    assert snapshot(tmp_path) == {}


def test_working_files_in_a_scratch_folder_are_not_outputs_and_are_removed(tmp_path):
    """speed's agreement case writes a map store of its own (through atomic_path) inside the command: a scratch
    folder sets the command's plan aside for the block, removes everything at the end, and the plan holds again
    after it."""
    args = argparse.Namespace(output=str(tmp_path / "speed.json"))
    spec = {"output": OutputSpec()}
    with command_outputs():
        check_command_outputs(args, spec)
        with scratch_folder() as work:
            with atomic_path(work / "maps" / "case000__gradcam.npz") as tmp:
                tmp.write_text("x")
            assert (work / "maps" / "case000__gradcam.npz").read_text() == "x"  # in place at once, not staged
        assert not work.exists()
        with pytest.raises(UndeclaredOutputError, match="stray.json"), atomic_path(tmp_path / "stray.json") as tmp:
            tmp.write_text("{}")
        with atomic_path(tmp_path / "speed.json") as tmp:
            tmp.write_text("{}")
    assert sorted(snapshot(tmp_path)) == ["speed.json"]


def test_a_folder_built_as_one_unit_is_checked_as_its_final_files(tmp_path):
    """staged_folder (a study folder): files written into the hidden folder are checked against the plan as the
    files they become; the folder appears with one rename on success and not at all on failure."""
    args = argparse.Namespace(output=str(tmp_path / "study"))
    spec = {"output": OutputSpec(folder=True, derived=lambda p, a: [p / "study.json", p / "cases" / WILDCARD])}
    with command_outputs():
        check_command_outputs(args, spec)
        with staged_folder(tmp_path / "study") as hidden:
            with atomic_path(hidden / "cases" / "k1.nii.gz") as tmp:
                tmp.write_text("x")
            assert (hidden / "cases" / "k1.nii.gz").read_text() == "x"  # in the hidden folder at once
            (hidden / "study.json").write_text("{}")
            assert not (tmp_path / "study").exists()
    assert sorted(snapshot(tmp_path)) == ["study/cases/k1.nii.gz", "study/study.json"]
    other = argparse.Namespace(output=str(tmp_path / "other"))
    with pytest.raises(UndeclaredOutputError, match="notes.txt"), command_outputs():
        check_command_outputs(other, spec)
        with staged_folder(tmp_path / "other") as hidden, atomic_path(hidden / "notes.txt") as tmp:
            tmp.write_text("x")
    assert not (tmp_path / "other").exists() and sorted(snapshot(tmp_path)) == ["study/cases/k1.nii.gz",
                                                                                  "study/study.json"]


def test_wildcard_names_match_and_overlap_like_the_files_they_stand_for(tmp_path):
    cf = tmp_path / f"cf_{WILDCARD}.nii.gz"
    assert matches(cf, tmp_path / "cf_t1.nii.gz") and matches(cf, tmp_path / "cf_.nii.gz")
    assert not matches(cf, tmp_path / "cf_t1.nii.gz.json") and not matches(cf, tmp_path / "sub" / "cf_t1.nii.gz")
    assert not matches(cf, tmp_path / "cf.nii.gz")
    assert may_overlap(cf, tmp_path / f"cf_t{WILDCARD}") and not may_overlap(cf, tmp_path / f"step{WILDCARD}.nii.gz")
    assert matches(tmp_path / "a*b[1].nrrd", tmp_path / "a*b[1].nrrd")  # * and [ in a user's name are literal
    assert not matches(tmp_path / "a*b.nrrd", tmp_path / "aXb.nrrd")


# ---- derived names against the inputs ------------------------------------------------------------------------------
def test_counterfactual_channel_files_that_are_the_inputs(capfd, w, tmp_path):
    inputs = _case(w, tmp_path, "cf_c0.nii.gz", "cf_c1.nii.gz")
    r = run(capfd, tmp_path, *_explain(w, inputs, "--output", tmp_path / "h.nii.gz",
                                       "--counterfactual", tmp_path / "cf.nii.gz"))
    assert_refused(r, r"--counterfactual .*cf\.nii\.gz also writes files named .*cf_\*\.nii\.gz.* the input")


def test_series_step_files_that_are_the_inputs(capfd, w, tmp_path):
    inputs = _case(w, tmp_path, "s/step00_c0.nii.gz", "s/step00_c1.nii.gz")
    r = run(capfd, tmp_path, *_explain(w, inputs, "--output", tmp_path / "h.nii.gz", "--series", tmp_path / "s"))
    assert_refused(r, r"--series .* also writes files named .*step\*\.nii\.gz.* the input")


def test_series_folder_beside_inputs_with_other_names_is_fine(capfd, w, tmp_path):
    inputs = _case(w, tmp_path, "s/t1.nii.gz", "s/flair.nii.gz")
    r = run(capfd, tmp_path, *_explain(w, inputs, "--output", tmp_path / "h.nii.gz", "--series", tmp_path / "s",
                                       "--dry-run"))
    assert r.code == 0 and r.new_files == [] and r.changed_inputs == [], r.err


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_step_file_that_links_to_an_input(capfd, w, tmp_path, link):
    inputs = _case(w, tmp_path, "in/a.nii.gz", "in/b.nii.gz")
    (tmp_path / "s").mkdir()
    (os.symlink if link == "symlink" else os.link)(inputs[1], tmp_path / "s" / "step03.nii.gz")
    r = run(capfd, tmp_path, *_explain(w, inputs, "--output", tmp_path / "h.nii.gz", "--series", tmp_path / "s"))
    assert_refused(r, r"step03\.nii\.gz is such a file: the input .*b\.nii\.gz")


def test_output_that_is_a_derived_counterfactual_name(capfd, w, tmp_path):
    """Before: the heat map was written, then replaced by the counterfactual of channel c0 (exit 0)."""
    r = run(capfd, tmp_path, *_explain(w, [w["c0"], w["c1"]], "--output", tmp_path / "cf_c0.nii.gz",
                                       "--counterfactual", tmp_path / "cf.nii.gz"))
    assert_refused(r, r"also writes files named .*cf_\*\.nii\.gz.* and --output .*cf_c0\.nii\.gz can be the same")


def test_counterfactual_run_writes_exactly_the_declared_files(capfd, w, tmp_path):
    r = run(capfd, tmp_path, *_explain(w, [w["c0"], w["c1"]], "--output", tmp_path / "h.nii.gz",
                                       "--counterfactual", tmp_path / "cf.nii.gz", "--series", tmp_path / "s"))
    assert r.code == 0, r.err
    steps = [f for f in r.new_files if f.startswith("s/")]
    assert sorted(set(r.new_files) - set(steps)) == ["cf_c0.nii.gz", "cf_c1.nii.gz", "h.nii.gz", "h.nii.gz.json"]
    assert steps and all(Path(f).name.startswith("step") and f.endswith(".nii.gz") for f in steps), steps


@pytest.mark.parametrize("name", ["gradcam.nrrd", "consensus.nrrd", "saliency.nrrd.json", "agreement.json"])
def test_compare_folder_files_that_are_inputs(capfd, w, tmp_path, name):
    inputs = _case(w, tmp_path, "c0.nii.gz", "c1.nii.gz")
    target = tmp_path / name
    shutil.copy(inputs[0], target) if name.endswith(".nrrd") else target.write_text("{}")
    argv = ["compare", "--model", w["seg"], "--input", target if name.endswith(".nrrd") else inputs[0],
            "--input", inputs[1], "--methods", "gradcam,saliency", "--output", tmp_path, "--no-figure"]
    if not name.endswith(".nrrd"):  # a region mask is an input too
        argv += ["--region", target]
    r = run(capfd, tmp_path, *argv)
    assert_refused(r, rf"the file .*{name.replace('.', r'[.]')} that --output .* writes is the input")


def test_report_default_pdf_that_is_an_input(capfd, w, tmp_path):
    src = Path(shutil.copy(w["xray"], tmp_path / "case.pdf"))  # an odd name, but an input all the same
    r = run(capfd, tmp_path, "report", "--model", w["cls"], "--input", src, "--output", tmp_path / "case.html")
    assert_refused(r, r"the file .*case\.pdf that --output .*case\.html writes is the input")


def test_report_cannot_replace_the_benchmark_run_it_reads(capfd, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "report.html").write_text("<html>the benchmark's report</html>")
    r = run(capfd, tmp_path, "report", "--benchmark", run_dir, "--case", "c1", "--output", run_dir / "report.html")
    assert_refused(r, r"--output .*report\.html is the input .*report\.html \(--benchmark\)")


def test_train_would_replace_a_fold_folder_holding_the_dataset(capfd, tmp_path):
    """``train`` replaces each ``fold<k>`` folder as a whole: a dataset kept inside one would be deleted."""
    manifest = tmp_path / "run" / "fold1" / "data" / "cohort.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("case_id,image,label\n")
    r = run(capfd, tmp_path, "train", "--dataset", f"csv:{manifest}", "--task", "segmentation",
            "--output", tmp_path / "run")
    assert_refused(r, r"fold1/data would be replaced with everything in it, the input .*cohort\.csv .* included")


def test_outputs_that_differ_only_in_letter_case_are_refused(tmp_path):
    """On a case-insensitive file system (macOS, Windows) Heat.nrrd and heat.nrrd are one file: the second output
    written replaced the first. Refused everywhere, also for a derived name (cf_T1 against --output cf_t1)."""
    from MedXAILib.errors import InputError
    from MedXAILib.outputs import check_outputs

    spec = OutputSpec((".nrrd", ".nii.gz"))
    with pytest.raises(InputError, match="differ only in letter case"):
        check_outputs({"--output": (tmp_path / "Heat.nrrd", spec), "--normalized": (tmp_path / "heat.nrrd", spec)})
    cf = OutputSpec((".nii.gz",), derived=lambda p, a: [p.with_name(f"CF_{WILDCARD}.nii.gz")])
    with pytest.raises(InputError, match="differ only in letter case"):
        check_outputs({"--counterfactual": (tmp_path / "CF.nii.gz", cf), "--output": (tmp_path / "cf_t1.nii.gz", spec)},
                      args=argparse.Namespace())
    plan = check_outputs({"--output": (tmp_path / "heat.nrrd", spec), "--normalized": (tmp_path / "norm.nrrd", spec)})
    assert len(plan.paths) == 2
