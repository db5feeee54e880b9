"""Classification metrics: hand-made counts, undefined values, and agreement with scikit-learn (tests only)."""

from __future__ import annotations

import numpy as np
import pytest

from MedXAILib.errors import InputError
from MedXAILib.metrics.classification import auc_roc, classification_metrics, label_metrics


def test_counts_and_ratios_by_hand() -> None:
    t = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.5, 0.0])
    m = label_metrics(t, s)  # predicted positive: 0.9, 0.6, 0.7, 0.5 (>= 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 2, 3, 1)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7)
    assert "notes" not in m


def test_auc_perfect_inverse_and_ties() -> None:
    assert auc_roc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auc_roc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auc_roc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # one positive tied with one of two negatives, above the other: (1 + 0.5) / 2
    assert auc_roc([1, 0, 0], [0.7, 0.7, 0.1]) == pytest.approx(0.75)


def test_single_class_and_zero_divisions_are_none_with_reasons() -> None:
    m = label_metrics(np.zeros(5), np.full(5, 0.1))
    assert m["auc_roc"] is None and "all negative" in m["notes"]["auc_roc"]
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None
    assert m["accuracy"] == 1.0
    m = label_metrics(np.ones(3), np.array([0.9, 0.8, 0.2]))
    assert m["auc_roc"] is None and "all positive" in m["notes"]["auc_roc"]
    assert m["recall"] == pytest.approx(2 / 3)


def test_macro_skips_undefined_labels() -> None:
    t = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    s = np.array([[0.8, 0.1], [0.3, 0.2], [0.6, 0.4], [0.1, 0.3]])
    out = classification_metrics(t, s, label_names=["nodule", "effusion"])
    assert out["labels"]["effusion"]["auc_roc"] is None
    assert out["macro"]["auc_roc"] == 1.0 and out["macro"]["n_labels"]["auc_roc"] == 1
    assert out["macro"]["accuracy"] == 1.0 and out["macro"]["n_labels"]["accuracy"] == 2
    assert out["n_samples"] == 4 and out["threshold"] == 0.5


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="only 0 and 1"):
        classification_metrics(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="must match"):
        classification_metrics(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(InputError, match="NaN"):
        classification_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(InputError, match="label names"):
        classification_metrics(np.zeros((3, 2)), np.zeros((3, 2)), label_names=["a"])


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_agrees_with_scikit_learn(threshold: float) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, (300, 5))
    s = np.round(np.clip(0.35 * t + rng.random((300, 5)) * 0.7, 0, 1), 2)  # rounding makes many ties
    out = classification_metrics(t, s, threshold=threshold)
    for i in range(5):
        got = out["labels"][str(i)]
        pred = s[:, i] >= threshold
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(t[:, i], pred), abs=1e-12)
        assert got["precision"] == pytest.approx(skm.precision_score(t[:, i], pred), abs=1e-12)
        assert got["recall"] == pytest.approx(skm.recall_score(t[:, i], pred), abs=1e-12)
        assert got["f1"] == pytest.approx(skm.f1_score(t[:, i], pred), abs=1e-12)
        assert got["auc_roc"] == pytest.approx(skm.roc_auc_score(t[:, i], s[:, i]), abs=1e-12)
    assert out["macro"]["auc_roc"] == pytest.approx(skm.roc_auc_score(t, s, average="macro"), abs=1e-12)
    assert out["macro"]["f1"] == pytest.approx(skm.f1_score(t, s >= threshold, average="macro"), abs=1e-12)
