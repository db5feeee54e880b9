"""The reading loop of the core (MedXAILib.study): protocol, counterbalanced lists, sessions, durable records."""

from __future__ import annotations

import json
from collections import Counter
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
from study_helpers import tiny_study

from MedXAILib.errors import InputError
from MedXAILib.study.protocol import load_study, parse_arm, reading_lists, williams_orders
from MedXAILib.study.records import append_record, read_records
from MedXAILib.study.session import Answer, ReaderSession


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def study(tmp_path_factory, tmp_path):
    return load_study(tiny_study(tmp_path_factory, tmp_path / "study"))


def test_williams_orders_balance_position_and_carry_over():
    for n in (2, 3, 4, 5):
        rows = williams_orders(n)
        assert all(sorted(r) == list(range(n)) for r in rows)
        for pos in range(n):  # each arm equally often in each position
            assert len(set(Counter(r[pos] for r in rows).values())) == 1
        pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(n - 1))  # each ordered pair equally often
        assert set(pairs) == set(permutations(range(n), 2)) and len(set(pairs.values())) == 1


def test_reading_lists_fully_crossed_and_split_plot():
    cases = [f"c{i}" for i in range(12)]
    truth = {c: i % 2 for i, c in enumerate(cases)}
    readers = ["a", "b", "c", "d"]
    lists, _ = reading_lists(readers, ["image", "ai"], cases, truth, "fully-crossed", 4, seed=5)
    ids = [it["reading_id"] for r in readers for s in lists[r] for it in s]
    assert len(ids) == len(set(ids)) == 4 * 2 * 12  # one random id per reader, arm and case
    for r in readers:
        sessions = lists[r]
        assert len(sessions) == 4 and all(len({it["arm"] for it in s}) == 1 for s in sessions)  # arms apart
        reads = Counter((it["arm"], it["case"]) for s in sessions for it in s)
        assert set(reads.values()) == {1} and len(reads) == 24  # every case once under every arm
    first_arm = Counter(lists[r][0][0]["arm"] for r in readers)
    assert first_arm["image"] == first_arm["ai"] == 2  # arm order balanced across readers
    orders = {tuple(it["case"] for it in lists[r][0]) for r in readers}
    assert len(orders) > 1  # case order randomised
    again, _ = reading_lists(readers, ["image", "ai"], cases, truth, "fully-crossed", 4, seed=5)
    assert again == lists  # seeded
    split, group = reading_lists(readers, ["image", "ai"], cases, truth, "split-plot", 2, seed=5, groups=2)
    blocks = {g: {it["case"] for r in readers if group[r] == g for s in split[r] for it in s} for g in (0, 1)}
    assert not blocks[0] & blocks[1] and blocks[0] | blocks[1] == set(cases)
    for g in (0, 1):
        assert {truth[c] for c in blocks[g]} == {0, 1}
    with pytest.raises(InputError, match="multiple of the number of arms"):
        reading_lists(readers, ["image", "ai"], cases, truth, "fully-crossed", 3, seed=5)


def test_parse_arm():
    assert parse_arm("ai+gradcam").ai and parse_arm("ai+gradcam").methods == ("gradcam",)
    assert not parse_arm("image").ai
    for bad in ("gradcam", "ai+", "ai+ai", "image+x+x"):
        with pytest.raises(InputError):
            parse_arm(bad)


def test_a_reading_shows_only_what_its_arm_allows(study):
    truth_words = {"truth", "case", "id", "reference", "map_hits"}
    with ReaderSession(study, "r1", clock=Clock()) as session:
        seen = set()
        while (reading := session.current()) is not None:
            arm = parse_arm(reading.arm)
            assert (reading.ai is not None) == arm.ai
            assert set(reading.maps) == set(arm.methods)
            assert not truth_words & set(vars(reading)) and not truth_words & set(reading.ai or {})
            for p in [*reading.images, *reading.maps.values()]:
                assert p.is_file() and "truth" not in p.parts
                assert not any(t["case"] in str(p) for t in study.truth().values())
            seen.add(reading.reading_id)
            session.show()
            session.submit(Answer(50.0, 1, 3, 3 if arm.ai else None))
        assert len(seen) == 8 and session.progress()["finished"]


def test_timing_excludes_pauses_and_resume_continues(study):
    clock = Clock()
    with ReaderSession(study, "r1", clock=clock) as session:
        first = session.current()
        session.show()
        clock.now += 10
        session.pause()
        clock.now += 600  # a coffee
        session.resume()
        clock.now += 5
        with pytest.raises(InputError, match="trust"):
            session.submit(Answer(70, 1, 4, None if parse_arm(first.arm).ai else 3))
        rec = session.submit(Answer(70, 1, 4, 2 if parse_arm(first.arm).ai else None, (1.0, 2.0, 3.0), "ok"))
        assert rec["seconds"] == pytest.approx(15.0) and rec["pauses"] == 1
        assert session.progress()["done"] == 1
    with ReaderSession(study, "r1", clock=clock) as session:  # resume where the reader stopped
        assert session.current().reading_id != first.reading_id
        assert session.progress()["done"] == 1 and session.progress()["case"] == 2
        with pytest.raises(InputError, match="not allow"):
            session.amend(first.reading_id, Answer(10, 0, 1, 2 if parse_arm(first.arm).ai else None))
    records = read_records(study.reads_path("r1")).records
    assert len(records) == 1 and records[0]["click_ras"] == [1.0, 2.0, 3.0] and records[0]["comment"] == "ok"


def test_answers_outside_the_form_are_refused(study):
    with ReaderSession(study, "r2", clock=Clock()) as session:
        reading = session.current()
        trust = 3 if parse_arm(reading.arm).ai else None
        with pytest.raises(InputError, match="not shown"):
            session.submit(Answer(50, 1, 3, trust))
        session.show()
        for bad, match in ((Answer(101, 1, 3, trust), "rating"), (Answer(float("nan"), 1, 3, trust), "rating"),
                           (Answer(50, 2, 3, trust), "decision"), (Answer(50, 1, 6, trust), "confidence"),
                           (Answer(50, 1, 3, trust, (1.0, float("inf"), 0.0)), "location")):
            with pytest.raises(InputError, match=match):
                session.submit(bad)
        assert not study.reads_path("r2").exists()  # nothing was written


def test_changes_only_when_the_protocol_allows(tmp_path_factory, tmp_path):
    from MedXAILib.study.create import DEFAULT_FORM

    folder = tiny_study(tmp_path_factory, tmp_path / "s", arms=("image",), readers=("r1",),
                        form={**DEFAULT_FORM, "allow_changes": True})
    study = load_study(folder)
    with ReaderSession(study, "r1", clock=Clock()) as session:
        rid = session.current().reading_id
        session.show()
        session.submit(Answer(20, 0, 2))
        session.amend(rid, Answer(90, 1, 5))
    from MedXAILib.study.summaries import latest_records

    latest = [r for r in latest_records(study) if r["reading_id"] == rid]
    assert len(latest) == 1 and latest[0]["rating"] == 90 and latest[0]["revision"] == 1
    assert len(read_records(study.reads_path("r1")).records) == 2  # append-only: the first answer is kept


def test_one_session_per_reader_and_readers_share_a_folder(study):
    with ReaderSession(study, "r1", clock=Clock()):
        with pytest.raises(InputError, match="open in another program"):
            ReaderSession(study, "r1")
        with ReaderSession(study, "r2", clock=Clock()) as other:  # another reader, another file
            reading = other.current()
            other.show()
            other.submit(Answer(40, 0, 3, 3 if reading.shows_ai else None))
    assert study.reads_path("r2").exists() and not study.reads_path("r1").exists()
    with pytest.raises(InputError, match="unknown reader"):
        ReaderSession(study, "r9")


def test_torn_last_line_is_the_unsubmitted_read(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": 1})
    append_record(path, {"a": 2})
    data = path.read_bytes()
    path.write_bytes(data + data.splitlines(keepends=True)[0][:17])  # a crash in the middle of a third write
    got = read_records(path)
    assert [r["a"] for r in got.records] == [1, 2] and got.torn_tail
    lines = data.splitlines(keepends=True)
    path.write_bytes(lines[0].replace(b'"a": 1', b'"a": 7') + lines[1])  # an edited record
    with pytest.raises(InputError, match="damaged"):
        read_records(path)


def _read_one(study, reader="r1", rating=60.0):
    with ReaderSession(load_study(study.folder), reader) as session:
        reading = session.current()
        session.show()
        return session.submit(Answer(rating, 1, 3, 3 if reading.shows_ai else None))


def test_a_read_after_a_crash_mid_write_is_kept_and_the_file_stays_readable(study):
    """A crash tears the third record; the reader resumes, reads that case again and goes on. Every read that
    ``submit`` returned must be in the file, in order, and the file must stay readable (the analysis reads it too)."""
    from MedXAILib.study.summaries import latest_records

    path = study.reads_path("r1")
    first = [_read_one(study, rating=r)["reading_id"] for r in (10.0, 20.0)]
    before = path.read_bytes()
    third = _read_one(study, rating=30.0)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(before) + (len(whole) - len(before)) // 2])  # the third write cut by a crash
    assert [r["reading_id"] for r in read_records(path).records] == first
    again = _read_one(study, rating=31.0)  # resumed: the same case again (its first submit never returned)
    assert again["reading_id"] == third["reading_id"]
    fourth = _read_one(study, rating=40.0)
    got = read_records(path)
    assert [r["reading_id"] for r in got.records] == [*first, again["reading_id"], fourth["reading_id"]]
    assert [r["rating"] for r in got.records] == [10.0, 20.0, 31.0, 40.0] and not got.torn_tail
    assert path.read_bytes().count(b"\n") == 4 and path.read_bytes().endswith(b"\n")
    assert len([r for r in latest_records(load_study(study.folder)) if r["reader"] == "r1"]) == 4


def test_a_record_glued_to_a_torn_fragment_is_recovered(tmp_path):
    """Files written before torn tails were cut: a whole record after a fragment on one line is still read."""
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": 1})
    append_record(path, {"a": 2})
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1][:9] + lines[1] + lines[0])  # fragment, then a whole record, then another
    assert [r["a"] for r in read_records(path).records] == [1, 2, 1]
    path.write_bytes(lines[0] + lines[1][:9] + lines[1][12:] + lines[0])  # no whole record after the fragment
    with pytest.raises(InputError, match="line 2: the record is damaged"):
        read_records(path)


def test_changed_study_files_are_refused(study):
    case = next(iter(study.protocol["cases"].values()))
    target = study.folder / case["material"]["image"][0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    target.write_bytes(bytes(data))
    with pytest.raises(InputError, match="changed since the study was created"):
        load_study(study.folder)
    (study.folder / "truth" / "extra.json").write_text("{}")
    target.unlink()
    with pytest.raises(InputError, match="missing"):
        load_study(study.folder)


@pytest.mark.parametrize("edit, said", [
    (lambda pr: pr["readers"].append("../../outside"), "reader '../../outside'"),
    (lambda pr: pr["reading_lists"].update({"ghost": []}), "a reader the protocol does not have"),
    (lambda pr: next(iter(pr["cases"].values()))["material"].update(ai="../../secret.json"), "outside the study"),
    (lambda pr: next(iter(pr["cases"].values()))["material"]["image"].insert(0, "/etc/hostname"), "outside the study"),
    (lambda pr: pr["cases"].update({"../k": {}}), "case key"),
])
def test_an_edited_protocol_cannot_point_outside_the_study(study, edit, said):
    """study.json holds the hashes, so it is not hashed itself: what it names is checked on every load, and the
    reading loop can neither write a reader's reads nor read material outside the study folder."""
    protocol = json.loads((study.folder / "study.json").read_text())
    edit(protocol)
    (study.folder / "study.json").write_text(json.dumps(protocol))
    with pytest.raises(InputError, match="changed after `study create`") as info:
        load_study(study.folder, verify=False)
    assert said in str(info.value)


def test_protocol_records_model_card_arms_and_hashes(study):
    p = json.loads((study.folder / "study.json").read_text())
    assert p["model"]["name"] == "demo-chest-xray" and "intended_use" in json.dumps(p["model"]["card"])
    assert p["arms"] == ["image", "ai+gradcam"] and p["finding"] == "nodule" and p["design"] == "fully-crossed"
    files = [f for f in Path(study.folder).rglob("*") if f.is_file() and f.parts[-3] in ("cases",) or
             (f.is_file() and f.parent.name == "truth")]
    assert {f.relative_to(study.folder).as_posix() for f in files} == set(p["files"])
    # the AI's probability is the model's own prediction on the stored image (an independent re-run)
    from MedXAILib.io import read_image
    from MedXAILib.models import load_model

    model = load_model("demo-chest-xray")
    key, case = next(iter(p["cases"].items()))
    ai = json.loads((study.folder / case["material"]["ai"]).read_text())
    image = read_image(study.folder / case["material"]["image"][0])
    probs = model.predict(image.with_array(image.array, ["xray"])).class_probabilities
    assert ai["probability"] == pytest.approx(float(probs[0]), abs=1e-5)
    assert np.isfinite(ai["probability"]) and ai["decision"] == int(ai["probability"] >= 0.5)
