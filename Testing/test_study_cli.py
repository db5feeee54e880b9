"""``study`` end to end on the demo phantoms, and bad input (one ``error:`` line, exit 2, nothing written).

End to end: ``study create`` runs the real ``demo-chest-xray`` model on 16 chest phantoms (the nodule finding) with two
arms, ``ai`` and ``ai+ig`` (Integrated Gradients points inside the nodule on these phantoms; creation records where
each map's peak falls). Simulated readers who gain where the map points at the finding (a planted truth) must come
out of ``study analyse`` with a significant AUC gain for the map arm; readers who do not gain must not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from study_helpers import tiny_study

from MedXAILib.cli import main

DATA = Path(__file__).resolve().parent / "data" / "mrmc"
READERS = "r1,r2,r3,r4,r5,r6"


@pytest.fixture(scope="module")
def created(tmp_path_factory) -> Path:
    import torch

    out = tmp_path_factory.mktemp("e2e") / "study"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["study", "create", "--cases", "phantoms:chest:16", "--model", "demo-chest-xray", "--finding",
                     "nodule", "--arms", "ai,ai+ig", "--method-param", "ig:steps=8", "--readers", READERS, "--seed",
                     "3", "--output", str(out), "--progress", "none"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def simulate_and_analyse(created: Path, folder: Path, map_gain: float, seed: int) -> dict:
    study = folder / "study"
    shutil.copytree(created, study)
    assert main(["study", "simulate", "--study", str(study), "--skill", "1.0", "--ai-reliance", "0.2",
                 "--map-gain", str(map_gain), "--seed", str(seed)]) == 0
    assert main(["study", "analyse", "--study", str(study), "--output", str(folder / "analysis")]) == 0
    for name in ("mrmc.json", "report.html", "roc.png", "reader_auc.png"):
        assert (folder / "analysis" / name).is_file()
    return json.loads((folder / "analysis" / "mrmc.json").read_text())


def test_readers_who_gain_from_the_map_show_a_gain(created, tmp_path):
    result = simulate_and_analyse(created, tmp_path, map_gain=3.0, seed=1)
    assert result["modalities"] == ["ai", "ai+ig"] and result["readers"] == READERS.split(",")
    assert result["n_cases"] == 16 and result["design"] == "fully-crossed"
    diff = result["random_readers_random_cases"]["differences"][0]
    assert (diff["a"], diff["b"]) == ("ai", "ai+ig")
    assert diff["difference"] < 0 and diff["ci"][1] < 0 and diff["p"] < 0.05, diff  # the map arm is better
    assert result["fixed_readers_random_cases"]["p"] < 0.05
    hits = {arm: v["hit_rate"] for arm, v in result["localisation"].items()}
    assert hits["ai+ig"] > hits["ai"]  # readers click inside the nodule more often where the map shows it
    rel = result["reliance"]["ai"]
    assert 0 <= rel["follow_when_right"] <= 1 and rel["trust_when_right"] >= rel["trust_when_wrong"]
    timing = result["reading_time"]
    assert timing["arms"]["ai+ig"]["median"] > 0 and timing["random_readers_random_cases"]["differences"]
    # sensitivity and specificity recomputed straight from the reads files and the hidden truth
    study = tmp_path / "study"
    protocol = json.loads((study / "study.json").read_text())
    where = {it["reading_id"]: it["case"] for r in protocol["reading_lists"].values() for s in r for it in s}
    truth = {k: json.loads((study / "truth" / f"{k}.json").read_text())["truth"] for k in protocol["cases"]}
    for arm in ("ai", "ai+ig"):
        for reader in READERS.split(","):
            reads = [json.loads(x) for x in (study / "reads" / f"{reader}.jsonl").read_text().splitlines()]
            calls = [(r["decision"], truth[where[r["reading_id"]]]) for r in reads if r["arm"] == arm]
            sens = sum(d for d, t in calls if t) / sum(t for _, t in calls)
            spec = sum(1 - d for d, t in calls if not t) / sum(1 - t for _, t in calls)
            got = result["decisions"][arm]["readers"][reader]
            assert got["sensitivity"] == pytest.approx(sens) and got["specificity"] == pytest.approx(spec)


def test_readers_who_do_not_gain_show_no_gain(created, tmp_path):
    result = simulate_and_analyse(created, tmp_path, map_gain=0.0, seed=2)
    diff = result["random_readers_random_cases"]["differences"][0]
    assert diff["p"] > 0.05 and diff["ci"][0] < 0 < diff["ci"][1], diff


def test_power_analysis_writes_nothing(created, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(created, study)
    assert main(["study", "simulate", "--study", str(study), "--replicates", "3", "--map-gain", "3", "--skill",
                 "1.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replicates"] == 3 and "ai - ai+ig" in out["differences"]
    assert not list((study / "reads").iterdir())


# ---- bad input: one error line, exit 2, nothing written --------------------------------------------------------------
def _one_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


def _ratings(tmp_path: Path, edit) -> Path:
    lines = (DATA / "vandyke.csv").read_text().splitlines()
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


@pytest.mark.parametrize("case", [
    ("missing read", lambda ls: ls[:40] + ls[41:], [], "fully crossed design needs every reader"),
    ("unknown design", lambda ls: ls, ["--design", "latin-square"], "unknown design"),
    ("non-numeric", lambda ls: ls[:5] + [ls[5].rsplit(",", 1)[0] + ",high"] + ls[6:], [], "is not a number"),
    ("duplicate", lambda ls: ls + [ls[7]], [], "duplicate read"),
    ("truth differs", lambda ls: ls[:3] + [ls[3][:-3] + "1,2"] + ls[4:], [], "must be the same in every row"),
    ("one truth class", lambda ls: [ls[0]] + [x for x in ls[1:] if not (x.startswith("1,") and x.split(",")[3] == "0")],
     ["--design", "split-plot"], "read only cases with the finding"),
    ("missing column", lambda ls: [x.rsplit(",", 1)[0] for x in ls], [], "missing column(s) rating"),
], ids=lambda c: c[0])
def test_bad_ratings_are_refused(case, tmp_path, capsys):
    _, edit, extra, match = case
    out = tmp_path / "analysis"
    _one_error(capsys, ["study", "analyse", "--ratings", str(_ratings(tmp_path, edit)), "--output", str(out), *extra],
               match)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv"]


@pytest.fixture
def small_study(tmp_path_factory, tmp_path) -> Path:
    return tiny_study(tmp_path_factory, tmp_path / "study")


def test_bad_study_input_is_refused(small_study, tmp_path, capsys):
    reads = small_study / "reads"
    _one_error(capsys, ["study", "simulate", "--study", str(small_study), "--readers", "r1,r7"], "unknown reader 'r7'")
    _one_error(capsys, ["study", "simulate", "--study", str(small_study), "--ai-reliance", "1.5"], "--ai-reliance")
    assert not list(reads.iterdir())
    assert main(["study", "simulate", "--study", str(small_study), "--seed", "4"]) == 0
    files = sorted(p for p in small_study.rglob("*") if p.is_file())
    for inside in ("truth", "cases/analysis"):  # the hashed folders: the study would be refused afterwards
        _one_error(capsys, ["study", "analyse", "--study", str(small_study), "--output", str(small_study / inside)],
                   "inside the study's")
    assert sorted(p for p in small_study.rglob("*") if p.is_file()) == files
    assert not (small_study / "cases" / "analysis").exists()
    out = tmp_path / "analysis"
    line = (reads / "r1.jsonl").read_text().splitlines()[0]
    (reads / "r9.jsonl").write_text(line + "\n")
    _one_error(capsys, ["study", "analyse", "--study", str(small_study), "--output", str(out)], "unknown reader 'r9'")
    (reads / "r9.jsonl").unlink()
    record = json.loads(line)
    record["arm"] = "ai+lime"
    from MedXAILib.study.records import append_record

    shutil.copy(reads / "r2.jsonl", tmp_path / "r2.backup")
    append_record(reads / "r2.jsonl", {**record, "reader": "r2"})
    _one_error(capsys, ["study", "analyse", "--study", str(small_study), "--output", str(out)], "unknown arm")
    shutil.copy(tmp_path / "r2.backup", reads / "r2.jsonl")
    ai = next(small_study.glob("cases/*/ai.json"))
    ai.write_text(ai.read_text().replace("0.", "0.9", 1))  # the AI's output edited after creation
    _one_error(capsys, ["study", "analyse", "--study", str(small_study), "--output", str(out)], "changed since")
    _one_error(capsys, ["study", "simulate", "--study", str(small_study)], "changed since")
    assert not out.exists()


def test_bad_creation_input_writes_nothing(tmp_path, capsys):
    manifest = tmp_path / "cases.csv"
    manifest.write_text("id,input\na,x.nii.gz\n")
    out = tmp_path / "study"
    _one_error(capsys, ["study", "create", "--cases", str(manifest), "--model", "demo-chest-xray", "--arms", "image",
                        "--readers", "r1", "--output", str(out)], "missing column(s) truth")
    _one_error(capsys, ["study", "create", "--cases", "phantoms:chest:4", "--model", "demo-chest-xray", "--arms",
                        "image,ai+nosuchmethod", "--readers", "r1", "--output", str(out)], "unknown explanation method")
    _one_error(capsys, ["study", "create", "--cases", "phantoms:chest:4", "--model", "demo-chest-xray", "--arms",
                        "image,ai", "--readers", "r1,r1", "--output", str(out)], "name each reader once")
    _one_error(capsys, ["study", "create", "--cases", "phantoms:chest:4", "--model", "demo-chest-xray", "--arms",
                        "image,ai", "--readers", "r1", "--design", "crossover", "--output", str(out)], "--design")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.csv"]


def test_size_refuses_a_pilot_that_is_not_one(tmp_path, capsys):
    bad = tmp_path / "mrmc.json"
    bad.write_text(json.dumps({"readers": ["a"]}))
    _one_error(capsys, ["study", "size", "--pilot", str(bad), "--effect", "0.05", "--output",
                        str(tmp_path / "size.json")], "the pilot must be an mrmc.json")
    assert not (tmp_path / "size.json").exists()
