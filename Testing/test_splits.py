"""Patient-level K-fold splits: no leakage, determinism, balance, JSON round trip, the official split."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from MedXAILib.datasets import Case, Dataset, open_dataset
from MedXAILib.errors import InputError
from MedXAILib.splits import Fold, official_split, patient_kfold, read_splits, write_splits

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = Path(os.environ.get("MEDXAI_TEST_DATA", REPO.parent / "shared" / "medxai-test-data"))


def cohort(n_patients: int, rng: random.Random, max_cases: int = 4, positive_rate: float = 0.3) -> list[Case]:
    """Patients with 1..max_cases cases each; a patient is positive for 'Mass' on all its cases or on none."""
    cases = []
    for p in range(n_patients):
        pos = int(rng.random() < positive_rate)
        for j in range(rng.randint(1, max_cases)):
            cases.append(Case(f"p{p:03d}_{j}", f"p{p:03d}", labels={"Mass": pos, "Edema": int(rng.random() < 0.5)}))
    rng.shuffle(cases)
    return cases


def check_partition(cases: list[Case], folds: list[Fold], k: int) -> None:
    ids = {c.case_id for c in cases}
    patient = {c.case_id: c.patient_id for c in cases}
    assert len(folds) == k and [f.index for f in folds] == list(range(k))
    held = [cid for f in folds for cid in f.test]
    assert sorted(held) == sorted(ids)  # every case held out exactly once
    seen_patients: set[str] = set()
    for f in folds:
        assert set(f.train) | set(f.test) == ids and not set(f.train) & set(f.test)
        test_patients = {patient[c] for c in f.test}
        assert not test_patients & {patient[c] for c in f.train}  # no patient on both sides
        assert not test_patients & seen_patients  # no patient held out in two folds
        seen_patients |= test_patients
        assert f.test_patients == sorted(test_patients)


def test_no_patient_leakage_and_balanced_over_many_seeds() -> None:
    for seed in range(150):
        rng = random.Random(seed)
        k = rng.randint(2, 7)
        cases = cohort(rng.randint(k, 40), rng)
        folds = patient_kfold(cases, k=k, seed=seed)
        check_partition(cases, folds, k)
        sizes = [len(f.test) for f in folds]
        largest_group = max(sum(1 for c in cases if c.patient_id == p) for p in {c.patient_id for c in cases})
        assert max(sizes) - min(sizes) <= largest_group, (seed, sizes)
        assert all(len(f.test_patients) >= 1 for f in folds)


def test_stratified_folds_balance_the_class() -> None:
    for seed in range(60):
        rng = random.Random(1000 + seed)
        cases = cohort(rng.randint(10, 50), rng, max_cases=3)
        folds = patient_kfold(cases, k=5, seed=seed, stratify="Mass")
        check_partition(cases, folds, 5)
        positives = [sum(1 for c in cases if c.case_id in set(f.test) and c.labels["Mass"]) for f in folds]
        assert max(positives) - min(positives) <= 3, (seed, positives)  # at most one patient group apart
        assert folds[0].stratify == "Mass"
    # a callable works too, and "any" means any finding
    folds = patient_kfold(cases, k=3, seed=1, stratify=lambda c: c.labels["Edema"])
    check_partition(cases, folds, 3)
    check_partition(cases, patient_kfold(cases, k=3, seed=1, stratify="any"), 3)
    with pytest.raises(InputError, match="no label 'Nodule'"):
        patient_kfold(cases, k=3, seed=1, stratify="Nodule")


def test_deterministic_per_seed_and_independent_of_input_order() -> None:
    cases = cohort(30, random.Random(5))
    a = patient_kfold(cases, k=5, seed=42)
    b = patient_kfold(list(reversed(cases)), k=5, seed=42)
    assert [f.test for f in a] == [f.test for f in b]
    others = {tuple(f.test for f in patient_kfold(cases, k=5, seed=s)) for s in range(10)}
    assert len(others) > 1  # the seed matters
    assert all(f.seed == 42 and f.k == 5 for f in a)


def test_follow_ups_of_one_patient_stay_together() -> None:
    cases = [Case(f"0000000{p}_00{j}.png", str(p)) for p in range(1, 5) for j in range(p)]
    for seed in range(20):
        for f in patient_kfold(cases, k=4, seed=seed):
            assert len(f.test_patients) == 1  # 4 patients, 4 folds: one patient each, all its images
            assert len(f.test) == int(f.test_patients[0])


def test_refusals() -> None:
    cases = [Case("a", "1"), Case("b", "1"), Case("c", "2"), Case("d", "3")]
    with pytest.raises(InputError, match="cannot cut 4 patient-level folds from 3 patient"):
        patient_kfold(cases, k=4, seed=0)
    with pytest.raises(InputError, match="2 or more"):
        patient_kfold(cases, k=1, seed=0)
    with pytest.raises(InputError, match="twice"):
        patient_kfold([*cases, Case("a", "9")], k=2, seed=0)
    check_partition(cases, patient_kfold(cases, k=3, seed=0), 3)


def test_write_read_round_trip(tmp_path: Path) -> None:
    cases = cohort(12, random.Random(3))
    folds = patient_kfold(cases, k=3, seed=7, stratify="Mass")
    path = write_splits(folds, tmp_path / "out" / "splits.json")
    data = json.loads(path.read_text())
    assert data["format"] == "medxai-splits" and data["k"] == 3 and data["seed"] == 7
    assert data["patients"]["p000_0"] == "p000"
    back = read_splits(path)
    assert [(f.index, f.train, f.test, f.seed, f.stratify) for f in back] == [
        (f.index, f.train, f.test, f.seed, f.stratify) for f in folds
    ]
    assert [f.test_patients for f in back] == [f.test_patients for f in folds]
    assert not list((tmp_path / "out").glob(".*part*"))  # atomic write left no temporary file


def test_read_splits_refuses_leaky_or_foreign_files(tmp_path: Path) -> None:
    cases = [Case("a", "1"), Case("b", "1"), Case("c", "2"), Case("d", "3")]
    path = write_splits(patient_kfold(cases, k=2, seed=0), tmp_path / "s.json")
    data = json.loads(path.read_text())
    fold = next(f for f in data["folds"] if "a" in f["test"])
    # move one of patient 1's cases to the other side
    mover = "a"
    fold["test"].remove(mover)
    fold["train"].append(mover)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="both train and test"):
        read_splits(path)
    path.write_text(json.dumps({"folds": []}))
    with pytest.raises(InputError, match="not a MedXAI splits file"):
        read_splits(path)
    path.write_text("{")
    with pytest.raises(InputError, match="not a JSON splits file"):
        read_splits(path)
    with pytest.raises(InputError, match="not found"):
        read_splits(tmp_path / "none.json")


def test_official_split() -> None:
    cases = [Case("x1.png", "1"), Case("x2.png", "1"), Case("y1.png", "2"), Case("z1.png", "3")]
    ds = Dataset("chestxray14", Path("/d"), cases, official_split={"train_val": ["x1.png", "x2.png", "z1.png"],
                                                                    "test": ["y1.png"]})  # fmt: skip
    fold = official_split(ds)
    assert fold.k == 1 and fold.test == ("y1.png",) and fold.train == ("x1.png", "x2.png", "z1.png")
    leaky = Dataset("chestxray14", Path("/d"), cases, official_split={"train_val": ["x1.png"], "test": ["x2.png"]})
    with pytest.raises(InputError, match="both train and test"):
        official_split(leaky)
    with pytest.raises(InputError, match="train_val_list.txt"):
        official_split(Dataset("chestxray14", Path("/d"), cases))


def test_real_chestxray14_five_folds() -> None:
    root = TEST_DATA / "nih-chestxray14"
    if not root.is_dir():
        pytest.skip(f"real test data {root} not present (set MEDXAI_TEST_DATA to the medxai-test-data folder)")
    ds = open_dataset(f"chestxray14:{root}")
    folds = patient_kfold(ds, k=5, seed=0)
    check_partition(ds.cases, folds, 5)
    assert [len(f.test) for f in folds] == [10] * 5  # 50 images of 50 distinct patients
