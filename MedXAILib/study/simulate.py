"""Simulated readers: the reading loop driven by a model of a reader instead of a person.

Each simulated reader works through their reading list with the same :class:`~.session.ReaderSession` the Slicer
module uses (so every read is validated, timed and written as a person's would be). A reader's evidence that the
finding is present in case ``c`` read in an arm (a binormal model with a shared case difficulty, as in
Roe & Metz 1997) is::

    z = skill_r · truth_c + sqrt(ρ) · u_c + sqrt(1 − ρ) · e        u_c, e ~ N(0, 1); skill_r ~ N(skill, skill_sd²)

In an arm with a map, a case whose map points inside the reference region (the map's peak, recorded at creation)
adds ``map_gain`` to the evidence of a case with the finding: readers who *gain from the map* (``map_gain > 0``) see
the finding better where the map shows it. In an arm that shows the AI, readers lean on the model's output by the
weight ``ai_reliance``: ``(1 − w)·z + w·a_c``, where ``a_c`` is the model's logit scaled to the same units (its
cases' logits standardised, then scaled to the reader's skill). The rating is ``100·sigmoid(evidence − skill/2)``;
the decision is rating ≥ 50; confidence grows with the distance from 50; trust is high when the reader's own
evidence agrees with the AI; a reader who calls the finding clicks inside the reference region with probability
``localise`` (0.95 where the shown map points at it); reading time is lognormal around ``seconds`` (longer with more
material on screen). Randomness comes from ``seed`` only.

:func:`simulate_power` runs whole simulated studies in memory (nothing written) and reports how often the
random-reader random-case test finds each difference: a power analysis for a planned design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .protocol import Study, parse_arm
from .ratings import Ratings
from .session import Answer, ReaderSession


@dataclass
class ReaderModel:
    """Parameters of the simulated readers (see the module docstring)."""

    skill: float = 1.5
    skill_sd: float = 0.3
    ai_reliance: float = 0.3
    map_gain: float = 0.0
    case_correlation: float = 0.3
    localise: float = 0.7
    seconds: float = 30.0

    def check(self) -> None:
        if not 0.0 <= self.ai_reliance <= 1.0:
            raise InputError(f"--ai-reliance {self.ai_reliance}: a weight from 0 to 1")
        if not 0.0 <= self.case_correlation < 1.0:
            raise InputError(f"--case-correlation {self.case_correlation}: from 0 to below 1")
        if not 0.0 <= self.localise <= 1.0:
            raise InputError(f"--localise {self.localise}: a probability from 0 to 1")
        if self.skill_sd < 0 or self.seconds <= 0 or not all(
                math.isfinite(v) for v in (self.skill, self.map_gain, self.skill_sd, self.seconds)):
            raise InputError("--skill and --map-gain must be finite; --skill-sd ≥ 0; --seconds > 0")


@dataclass
class _CaseFacts:
    truth: int
    ai_logit: float
    ai_decision: int
    map_hits: dict[str, float | None]
    reference: Any  # a Volume of the reference mask, or None


def _case_facts(study: Study) -> dict[str, _CaseFacts]:
    from ..io import read_label_map

    facts = {}
    truth = study.truth()
    for key, t in truth.items():
        p = min(max(float(t["ai_probability"]), 1e-6), 1 - 1e-6)
        ref = read_label_map(study.folder / t["reference"]) if t.get("reference") else None
        facts[key] = _CaseFacts(int(t["truth"]), math.log(p / (1 - p)), int(t["ai_decision"]), t["map_hits"], ref)
    logits = np.array([f.ai_logit for f in facts.values()])
    mu, sd = float(logits.mean()), float(logits.std()) or 1.0
    for f in facts.values():
        f.ai_logit = (f.ai_logit - mu) / sd
    return facts


def _readers(study: Study, readers: str | Sequence[str] | int) -> list[str]:
    if isinstance(readers, int) or (isinstance(readers, str) and readers.strip().isdigit()):
        n = int(readers)
        if not 1 <= n <= len(study.readers):
            raise InputError(f"--readers {n}: the protocol has {len(study.readers)} reader(s)")
        return study.readers[:n]
    names = [r.strip() for r in (readers.split(",") if isinstance(readers, str) else readers) if r.strip()]
    for r in names:
        if r not in study.readers:
            raise InputError(f"unknown reader {r!r}; the protocol's readers are {', '.join(study.readers)}")
    return names


def _answer(model: ReaderModel, skill: float, facts: _CaseFacts, u: float, arm_name: str,
            rng: np.random.Generator) -> tuple[Answer, float]:
    arm = parse_arm(arm_name)
    rho = model.case_correlation
    z = skill * facts.truth + math.sqrt(rho) * u + math.sqrt(1 - rho) * rng.normal()
    hit = any((facts.map_hits.get(m) or 0) >= 0.5 for m in arm.methods if m != "counterfactual")
    if facts.truth and hit:
        z += model.map_gain
    evidence = z
    if arm.ai:
        evidence = (1 - model.ai_reliance) * z + model.ai_reliance * (skill / 2 + facts.ai_logit * skill / 2)
    rating = float(np.clip(round(100.0 / (1.0 + math.exp(-(evidence - skill / 2))), 1), 0.0, 100.0))
    decision = int(rating >= 50)
    confidence = int(np.clip(1 + round(abs(rating - 50) / 12.5), 1, 5))
    trust = None
    if arm.ai:
        agree = int(z > skill / 2) == facts.ai_decision
        trust = int(np.clip(round((4 if agree else 2) + rng.normal(0, 0.7)), 1, 5))
    click = None
    if decision and facts.reference is not None:
        ref = facts.reference
        inside = rng.random() < (0.95 if hit else model.localise)
        mask = ref.array[0] > 0
        pool = np.argwhere(mask) if inside else np.argwhere(np.ones_like(mask))
        k, j, i = pool[rng.integers(len(pool))]
        click = tuple(float(v) for v in (ref.ijk_to_ras @ np.array([i, j, k, 1.0]))[:3])
    seconds = model.seconds * math.exp(rng.normal(0, 0.3)) * (1 + 0.2 * arm.ai + 0.2 * len(arm.methods))
    return Answer(rating, decision, confidence, trust, click), seconds


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate_reads(study: Study, readers: str | Sequence[str] | int, model: ReaderModel, seed: int) -> dict[str, int]:
    """Write simulated reads for ``readers`` (a count: the protocol's first N; or names) through the reading loop.

    Readers who already have reads continue where they stopped. Returns reader → reads written.
    """
    model.check()
    names = _readers(study, readers)
    facts = _case_facts(study)
    case_rng = np.random.default_rng([seed, 0])
    difficulty = {k: float(v) for k, v in zip(sorted(facts), case_rng.normal(size=len(facts)))}
    where = {item["reading_id"]: item for r in names for s in study.protocol["reading_lists"][r] for item in s}
    sessions: list[tuple[str, ReaderSession, _Clock]] = []
    try:
        for r in names:  # every reader's lock and records first: a refusal leaves nothing written
            clock = _Clock()
            sessions.append((r, ReaderSession(study, r, clock=clock, client="simulate"), clock))
        written: dict[str, int] = {}
        for r, session, clock in sessions:
            rng = np.random.default_rng([seed, 1, study.readers.index(r)])
            skill = model.skill + model.skill_sd * rng.normal()
            count = 0
            while (reading := session.current()) is not None:
                key = where[reading.reading_id]["case"]
                answer, seconds = _answer(model, skill, facts[key], difficulty[key], reading.arm, rng)
                session.show()
                clock.now += seconds
                session.submit(answer)
                clock.now += 1.0
                count += 1
            written[r] = count
    finally:
        for _, session, _ in sessions:
            session.close()
    return written


def simulated_ratings(study: Study, model: ReaderModel, seed: int, facts: dict[str, _CaseFacts] | None = None
                      ) -> Ratings:
    """One whole simulated study in memory (every reader of the protocol, every read): a :class:`Ratings`."""
    facts = facts or _case_facts(study)
    keys = list(study.protocol["cases"])
    case_rng = np.random.default_rng([seed, 0])
    difficulty = {k: float(v) for k, v in zip(sorted(facts), case_rng.normal(size=len(facts)))}
    arms, readers = study.arms, study.readers
    shape = (len(arms), len(readers), len(keys))
    scores, decisions, seconds = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for j, r in enumerate(readers):
        rng = np.random.default_rng([seed, 1, j])
        skill = model.skill + model.skill_sd * rng.normal()
        for items in study.protocol["reading_lists"][r]:
            for item in items:
                t, c = arms.index(item["arm"]), keys.index(item["case"])
                answer, secs = _answer(model, skill, facts[item["case"]], difficulty[item["case"]], item["arm"], rng)
                scores[t, j, c], decisions[t, j, c], seconds[t, j, c] = answer.rating, answer.decision, secs
    truth = np.array([facts[k].truth for k in keys], dtype=np.int8)
    return Ratings(list(arms), list(readers), keys, truth, scores, decisions, seconds, "simulation")


def simulate_power(study: Study, model: ReaderModel, replicates: int, seed: int, alpha: float = 0.05
                   ) -> dict[str, Any]:
    """Run ``replicates`` simulated studies in memory; the fraction in which each RRRC test is significant."""
    from .analysis import analyse_ratings

    model.check()
    if not 1 <= replicates <= 100_000:
        raise InputError(f"--replicates {replicates}: from 1 to 100000")
    facts = _case_facts(study)
    hits: dict[str, int] = {}
    global_hits = 0
    mean_diff: dict[str, list[float]] = {}
    for i in range(replicates):
        res = analyse_ratings(simulated_ratings(study, model, seed + i, facts), alpha=alpha)
        rrrc = res["random_readers_random_cases"]
        if rrrc is None or rrrc["p"] is None:
            continue
        global_hits += rrrc["p"] < alpha
        for d in rrrc["differences"]:
            name = f"{d['a']} - {d['b']}"
            hits[name] = hits.get(name, 0) + int(d["p"] is not None and d["p"] < alpha)
            mean_diff.setdefault(name, []).append(d["difference"])
    return {"replicates": replicates, "alpha": alpha, "global_test_power": global_hits / replicates,
            "differences": {k: {"power": v / replicates, "mean_difference": float(np.mean(mean_diff[k]))}
                            for k, v in hits.items()},
            "reader_model": model.__dict__}
