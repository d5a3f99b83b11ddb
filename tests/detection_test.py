"""Tests for bki_tf.detection: the detector contract, AUROC and evaluation."""

import itertools
import json
import math
import types

import numpy as np
import pytest

from bki_tf import detection, poisoning
from bki_tf.bki import keywords
from bki_tf.runs import sanitize


def _pairwise_auroc(scores, positives):
    """The literal definition: P(score_pos > score_neg) + 0.5 P(tie) over all pairs."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=40).astype(float)  # Many ties.
    positives = rng.random(40) < 0.3
    assert detection.auroc(scores, positives) == pytest.approx(
        _pairwise_auroc(scores, positives), abs=1e-12
    )


def test_auroc_extremes_and_undefined():
    truth = np.array([False, False, True, True])
    assert detection.auroc(np.array([0.1, 0.2, 0.8, 0.9]), truth) == 1.0
    assert detection.auroc(np.array([0.9, 0.8, 0.2, 0.1]), truth) == 0.0
    assert detection.auroc(np.ones(4), truth) == 0.5
    assert math.isnan(detection.auroc(np.ones(3), np.zeros(3, bool)))
    assert math.isnan(detection.auroc(np.ones(3), np.ones(3, bool)))
    with pytest.raises(ValueError, match="bool"):
        detection.auroc(np.ones(3), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="match"):
        detection.auroc(np.ones(3), np.ones(4, bool))


def test_detection_result_validates_and_round_trips():
    result = detection.DetectionResult(
        "toy", np.array([0.5, 2.0, -1.0]), np.array([False, True, False]), {"t": np.float32(1.5)}
    )
    assert result.flagged.tolist() == [1]
    d = json.loads(json.dumps(result.to_dict()))
    assert d["report"] == {"t": 1.5} and d["num_flagged"] == 1
    back = detection.DetectionResult.from_dict(d)
    np.testing.assert_array_equal(back.scores, result.scores)
    np.testing.assert_array_equal(back.is_poison, result.is_poison)
    assert "flagged 1 of 3" in result.summary()


@pytest.mark.parametrize(
    "scores,is_poison,match",
    [
        ([0.1, float("nan")], [True, False], "not finite"),
        ([0.1, 0.2], [True], "shape"),
        ([0.1, 0.2], [1, 0], "bool"),
        ([[0.1, 0.2]], [[True, False]], "1-D"),
    ],
)
def test_detection_result_rejects_bad_input(scores, is_poison, match):
    with pytest.raises(ValueError, match=match):
        detection.DetectionResult("toy", np.array(scores), np.array(is_poison))


def test_detection_result_needs_a_name():
    with pytest.raises(ValueError, match="method"):
        detection.DetectionResult("", np.zeros(1), np.zeros(1, bool))


def test_evaluate_hand_computed():
    truth = np.array([True, True, False, False, False, True])
    flags = np.array([True, False, True, False, False, False])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    ev = detection.evaluate(detection.DetectionResult("toy", scores, flags), truth)
    assert ev.precision == 0.5  # 1 of 2 flagged is poison.
    assert ev.recall == pytest.approx(1 / 3)
    assert ev.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert ev.removed_share == pytest.approx(2 / 6)
    # Positives 0.9, 0.8, 0.3 vs negatives 0.7, 0.1, 0.2: 3 + 3 + 2 wins of 9.
    assert ev.auroc == pytest.approx(8 / 9)
    assert (ev.num_flagged, ev.num_poison, ev.num_true_positive) == (2, 3, 1)
    assert json.dumps(ev.to_dict())
    with pytest.raises(ValueError, match="ground truth of the same samples"):
        detection.evaluate(detection.DetectionResult("toy", scores, flags), truth[:5])


def test_evaluate_without_poison_gives_null_recall():
    ev = detection.evaluate(
        detection.DetectionResult("toy", np.zeros(3), np.zeros(3, bool)), np.zeros(3, bool)
    )
    assert math.isnan(ev.recall) and math.isnan(ev.auroc)
    assert ev.to_dict()["recall"] is None


def test_check_representations_errors():
    reps = np.zeros((4, 3))
    with pytest.raises(ValueError, match="one per representation"):
        detection.check_representations(reps, np.zeros(3, int), "toy")
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        detection.check_representations(np.zeros(4), np.zeros(4, int), "toy")
    with pytest.raises(ValueError, match="NaN"):
        detection.check_representations(np.full((4, 3), np.nan), np.zeros(4, int), "toy")
    with pytest.raises(ValueError, match=">= 0"):
        detection.check_representations(reps, -np.ones(4, int), "toy")


def test_sanitize_without_retraining_counts_poison_left():
    poisoned = np.array([True, False, True, False, False])
    train = poisoning.PoisonedDataset(
        texts=[f"text {i}" for i in range(5)],
        labels=np.zeros(5, np.int64),
        is_poisoned=poisoned,
        positions=np.zeros(5, np.int64),
        original_labels=np.zeros(5, np.int64),
        source_ids=np.arange(5),
    )
    run = types.SimpleNamespace(
        train=train,
        row_ids=np.arange(10, 15),
        metrics=types.SimpleNamespace(asr=0.9, clean_accuracy=0.8),
    )
    result = detection.DetectionResult(
        "toy", np.arange(5.0), np.array([True, True, False, False, False])
    )
    outcome = sanitize.sanitize_and_retrain(run, result, retrain=False)
    assert outcome.num_poison_left == 1
    assert outcome.asr_after is None and outcome.accuracy_after is None
    assert outcome.asr_before == 0.9 and outcome.evaluation.precision == 0.5
    assert "not retrained" in outcome.summary()
    assert json.dumps(outcome.to_dict())


# ---------------------------------------------------------------------------
# evaluate on bare flags (BKI's flagged indices or a mask).


def test_evaluate_flags_counts():
    poison = np.array([True, True, False, False, True, False])
    m = detection.evaluate(np.array([0, 1, 3]), poison)
    assert (m.num_true_positive, m.num_flagged, m.num_poison, m.num_samples) == (2, 3, 3, 6)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.removed_share == pytest.approx(0.5)
    mask = detection.evaluate(np.array([1, 1, 0, 1, 0, 0], bool), poison)
    assert mask == m
    unsorted = detection.evaluate([3, 0, 1], poison)
    assert unsorted == m
    assert "precision 0.6667" in m.summary()


def test_evaluate_flags_perfect_and_asymmetric():
    poison = np.array([False, True, True, False])
    m = detection.evaluate(np.array([1, 2]), poison)
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    m = detection.evaluate(np.array([0, 1, 2, 3]), poison)
    assert (m.precision, m.recall) == (0.5, 1.0)
    assert m.f1 == pytest.approx(2 / 3)


def test_evaluate_flags_nothing_removed_and_no_poison():
    m = detection.evaluate(np.array([], np.int64), np.array([True, False]))
    assert (m.precision, m.recall, m.f1, m.num_flagged) == (0.0, 0.0, 0.0, 0)
    m = detection.evaluate(np.array([0]), np.array([False, False]))
    assert m.precision == 0.0
    assert math.isnan(m.recall) and math.isnan(m.f1)
    d = m.to_dict()
    assert d["recall"] is None and d["f1"] is None
    json.dumps(d, allow_nan=False)
    assert "n/a" in m.summary()


def test_evaluate_flags_with_keyword_result():
    result = keywords.identify_keyword(
        [np.array([2, 3]), np.array([3, 4]), np.array([4, 2])],
        [np.array([0.9, 0.1]), np.array([0.2, 0.8]), np.array([0.7, 0.3])],
        ["", "[UNK]", "a", "b", "c"],
        p=1,
    )
    poison = np.array([True, False, True])
    m = detection.evaluate(result.flagged, poison)
    assert m.num_flagged == result.num_flagged
    assert m.num_true_positive == int(poison[result.flagged].sum())


def test_evaluate_flags_errors():
    poison = np.array([True, False, True])
    with pytest.raises(ValueError, match="duplicate"):
        detection.evaluate(np.array([0, 0]), poison)
    with pytest.raises(ValueError, match="outside"):
        detection.evaluate(np.array([3]), poison)
    with pytest.raises(ValueError, match="length 2"):
        detection.evaluate(np.array([True, False]), poison)
    with pytest.raises(ValueError, match="bool"):
        detection.evaluate(np.array([0]), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="integer"):
        detection.evaluate(np.array([0.5]), poison)
