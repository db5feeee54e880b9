"""``python -m MedXAILib methods``: every registered method is listed, in the table and in the JSON form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from MedXAILib.cli import main
from MedXAILib.explain import available_methods

REPO = Path(__file__).resolve().parents[1]


def test_table_lists_every_registered_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    names = set(available_methods())
    assert {"gradcam", "kernelshap", "lime"} <= names
    header, rule, *rows = out.splitlines()
    assert header.split()[:2] == ["name", "title"] and set(rule) <= {"-", " "}
    listed = {line.split()[0] for line in rows[: len(names)]}
    assert listed == names
    for name in names:
        assert f"\n{name}:\n" in out  # each method's parameters / cost / reference block
    assert "n_samples=256" in out and "Lundberg & Lee" in out


def test_json_records_match_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    records = {r["name"]: r for r in data["methods"]}
    methods = available_methods()
    assert set(records) == set(methods)
    for name, cls in methods.items():
        r = records[name]
        assert r["dims"] == list(cls.dims) and r["tasks"] == list(cls.tasks)
        assert r["needs_gradients"] == cls.needs_gradients and r["cost_model"] == cls.cost_model
        assert set(r["params"]) == set(cls.params) | {"exact"}  # exact: the engine-level parameter of every method
    ks = records["kernelshap"]
    assert ks["needs_gradients"] is False and ks["params"]["baseline"] == "mean"
    assert ks["target_kinds"] == ["class", "region", "voxel"]


def test_methods_runs_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "MedXAILib", "methods", "--json"], cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kernelshap" in {r["name"] for r in json.loads(proc.stdout)["methods"]}


def test_unknown_method_refusal_points_to_the_list() -> None:
    from MedXAILib.errors import MethodError
    from MedXAILib.explain import get_method

    with pytest.raises(MethodError, match="available: .*kernelshap"):
        get_method("shapley")
