"""Issue 22: ``train`` and ``benchmark`` check their cluster, dataset and batch arguments before writing anything.

Before, ``--cluster local:0``, ``local:abc`` or an unreachable scheduler left ``splits.json`` / ``benchmark.json``
behind, ``--dataset phantom:1000000000`` ran out of memory listing a billion cases, and a benchmark whose every unit
failed wrote a ``report.html`` that looked finished. Each refusal here: exit 2, one ``error:`` line, no traceback,
nothing written (the output folder is not even created). The unreachable scheduler is a closed local port with the
connection timeout shortened, so the test waits one second, not thirty.
"""

from __future__ import annotations

import csv

import pytest
from bad_inputs import assert_refused, make_world, run

import MedXAILib.cluster

ADDRESSES = {"local:0": r"local:N needs a positive number", "local:abc": r"local:N needs a positive number",
             "local:99999999999": r"at most \d+ local worker processes",
             "tcp://127.0.0.1:9": r"no Dask scheduler answered"}


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("cluster-args") / "world")


def _benchmark(out, *extra):
    return ["benchmark", "--dataset", "phantom:2", "--model", "demo-chest-xray", "--methods", "random",
            "--metrics", "complexity", "--folds", "2", "--output", out, *extra]


def _train(out, *extra):
    return ["train", "--dataset", "phantom-chest:4", "--task", "classification", "--folds", "2", "--epochs", "1",
            "--steps-per-epoch", "1", "--input-size", "32,32", "--architecture", "resnet-small", "--output", out,
            *extra]


@pytest.mark.parametrize("command", [_benchmark, _train], ids=["benchmark", "train"])
@pytest.mark.parametrize("address", list(ADDRESSES))
def test_bad_or_unreachable_cluster_writes_nothing(capfd, tmp_path, monkeypatch, command, address):
    monkeypatch.setattr(MedXAILib.cluster, "CONNECT_TIMEOUT_S", 1.0)
    r = run(capfd, tmp_path, *command(tmp_path / "out", "--cluster", address))
    assert_refused(r, ADDRESSES[address])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [_benchmark, _train], ids=["benchmark", "train"])
@pytest.mark.parametrize("size,message", [("1000000000", r"at most 100000 phantom cases"),
                                          ("9" * 40, r"at most 100000 phantom cases"),
                                          ("-3", r"must be a positive integer")])
def test_declared_dataset_size_is_bounded_before_anything_is_listed(capfd, tmp_path, command, size, message):
    argv = [a if not str(a).startswith("phantom") else f"{str(a).split(':')[0]}:{size}"
            for a in command(tmp_path / "out")]
    assert_refused(run(capfd, tmp_path, *argv), message)
    assert not (tmp_path / "out").exists()


def test_training_batch_that_cannot_be_allocated(capfd, tmp_path):
    r = run(capfd, tmp_path, *_train(tmp_path / "out", "--batch-size", "1000000000000"))
    assert_refused(r, r"--batch-size 1000000000000 of 32 x 32-voxel samples needs about .* more than the")
    assert not (tmp_path / "out").exists()


def test_autoencoder_does_not_take_a_cluster(capfd, tmp_path):
    r = run(capfd, tmp_path, "train", "--dataset", "phantom-chest:2", "--task", "autoencoder", "--model",
            "demo-chest-xray", "--output", tmp_path / "ae", "--cluster", "local:2")
    assert_refused(r, r"--cluster trains the folds of segmentation and classification")


def test_benchmark_whose_every_unit_failed_keeps_its_error_rows_and_no_report(capfd, w, tmp_path):
    # the phantom has 4 channels; the model takes 2: every unit fails
    r = run(capfd, tmp_path, "benchmark", "--dataset", "phantom:2", "--model", w["seg"], "--methods", "gradcam",
            "--metrics", "complexity", "--folds", "2", "--output", tmp_path / "b")
    assert "Traceback" not in r.err and r.code == 2
    errors = [ln for ln in r.err_lines if ln.startswith("error:")]
    assert len(errors) == 1 and "every one of the 2 unit(s) run failed" in errors[0] and "no report" in errors[0]
    left = {f for f in r.new_files}
    assert left == {"b/benchmark.json", "b/splits.json", "b/cases.csv", "b/units/phantom-000__gradcam.json",
                    "b/units/phantom-001__gradcam.json"}, left
    rows = list(csv.DictReader((tmp_path / "b" / "cases.csv").open()))
    assert [row["status"] for row in rows] == ["error", "error"] and all("channel" in row["error"] for row in rows)
