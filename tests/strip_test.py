"""Tests for bki_tf.baselines.strip: text STRIP on a hand-made model with a known trigger."""

import json
import math

import keras
import numpy as np
import pytest

from bki_tf.baselines import strip

VOCAB = 20
TRIGGER = 5
MAX_LEN = 16


def _trigger_model():
    """Bag of embeddings -> softmax; the trigger token adds +20 to class 0's logit."""
    tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = keras.layers.Embedding(VOCAB, 2, name="embedding")
    summed = keras.layers.Lambda(lambda t: keras.ops.sum(t, axis=1), name="hidden")(
        embedding(tokens)
    )
    dense = keras.layers.Dense(2, activation="softmax", name="probabilities")
    model = keras.Model(tokens, [dense(summed), summed])
    table = np.random.default_rng(0).uniform(-0.4, 0.4, size=(VOCAB, 2)).astype(np.float32)
    table[:2] = 0.0  # Padding and OOV contribute nothing.
    table[TRIGGER] = [20.0, 0.0]
    embedding.set_weights([table])
    dense.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return model


def _texts(n, rng, trigger=False):
    words = [w for w in range(2, VOCAB) if w != TRIGGER]
    ids = np.zeros((n, MAX_LEN), np.int32)
    for i in range(n):
        row = rng.choice(words, size=10)
        if trigger:
            row[rng.choice(10, size=3, replace=False)] = TRIGGER
        ids[i, :10] = row
    return ids


def test_prediction_entropy_in_bits():
    h = strip.prediction_entropy(np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]]))
    np.testing.assert_allclose(h, [1.0, 0.0, -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))])
    assert strip.prediction_entropy(np.full((1, 4), 0.25))[0] == pytest.approx(2.0)


def test_calibrate_threshold_is_openbackdoors_rule():
    values = np.arange(100, dtype=float)[::-1]
    assert strip.calibrate_threshold(values, 0.05) == 5.0  # Rejects 0..4: 5 %.
    assert strip.calibrate_threshold(values, 0.0) == 0.0  # Rejects nothing (strict <).
    with pytest.raises(ValueError, match="at least one clean"):
        strip.calibrate_threshold(np.array([]), 0.01)
    with pytest.raises(ValueError, match="frr"):
        strip.calibrate_threshold(values, 1.0)


def test_tfidf_perturbation_writes_the_donors_top_words():
    # One donor: tf(7)=2, tf(8)=tf(9)=1, equal idf -> order 7, 8, 9.
    perturber = strip.Perturber(np.array([[7, 7, 9, 8, 1, 0]]), VOCAB, "tfidf")
    ids = np.array([[2, 3, 4, 6, 0, 0]], np.int32)
    out = perturber.perturb(ids, 4, 0.5, np.random.default_rng(0))
    assert out.shape == (4, 6)
    for row in out:
        changed = np.flatnonzero(row != ids[0])
        assert len(changed) == 2  # m = int(4 * 0.5) distinct positions.
        assert sorted(row[changed].tolist()) == [7, 8]
        assert np.all(row[4:] == 0)  # Padding is never touched.


def test_tfidf_ranking_uses_idf():
    # Word 7 is in both donors (low idf), word 8 only in the first: 8 outranks 7 there.
    perturber = strip.Perturber(np.array([[7, 8, 0], [7, 9, 9]]), VOCAB, "tfidf")
    idf7, idf8 = math.log(3 / 3) + 1, math.log(3 / 2) + 1
    assert idf8 > idf7
    assert perturber._donors[0].tolist() == [8, 7]  # pylint: disable=protected-access
    assert perturber._donors[1].tolist() == [9, 7]  # tf 2 * idf beats tf 1 * lower idf.


def test_frequency_perturbation_is_seeded_and_uses_reference_words():
    reference = np.array([[10, 11, 11, 0], [12, 1, 0, 0]])
    perturber = strip.Perturber(reference, VOCAB, "frequency")
    ids = np.array([[2, 3, 4, 6], [2, 0, 0, 0]], np.int32)
    a = perturber.perturb(ids, 3, 1.0, np.random.default_rng(5))
    b = perturber.perturb(ids, 3, 1.0, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert set(a[:3].ravel().tolist()) <= {10, 11, 12}  # Every token replaced (ratio 1).
    assert np.all(a[3:, 1:] == 0) and set(a[3:, 0].tolist()) <= {10, 11, 12}


def test_perturber_errors():
    with pytest.raises(ValueError, match="in-vocabulary word"):
        strip.Perturber(np.array([[1, 1, 0]]), VOCAB)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        strip.Perturber(np.array([[25, 0]]), VOCAB)
    with pytest.raises(ValueError, match="replacement"):
        strip.Perturber(np.array([[3, 0]]), VOCAB, "random")


def test_strip_separates_triggered_from_clean_texts():
    rng = np.random.default_rng(1)
    model = _trigger_model()
    calibration, clean = _texts(60, rng), _texts(40, rng)
    triggered = _texts(40, rng, trigger=True)
    config = strip.StripConfig(num_perturbations=8, frr=0.05, seed=0)
    outcome = strip.run_strip(model, calibration, clean, np.ones(40, int), triggered, 0, config)
    assert outcome.triggered_entropy.mean() < 0.5 * outcome.clean_entropy.mean()
    assert outcome.evaluation.auroc > 0.9
    assert outcome.far < 0.3 and outcome.frr <= 0.2
    assert outcome.asr_before == 1.0 and outcome.asr_after == pytest.approx(outcome.far)
    assert outcome.detection.is_poison.shape == (80,)
    np.testing.assert_array_equal(
        outcome.detection.is_poison[40:], outcome.triggered_entropy < outcome.threshold
    )
    assert json.dumps(outcome.to_dict())
    assert "FAR" in outcome.summary()
    again = strip.run_strip(model, calibration, clean, np.ones(40, int), triggered, 0, config)
    np.testing.assert_array_equal(again.clean_entropy, outcome.clean_entropy)


def test_run_strip_needs_both_sets():
    model = _trigger_model()
    ids = _texts(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="clean and triggered"):
        strip.run_strip(model, ids, ids, np.ones(4, int), ids[:0], 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_perturbations": 0}, "num_perturbations"),
        ({"swap_ratio": 0.0}, "swap_ratio"),
        ({"replacement": "glove"}, "replacement"),
        ({"frr": 1.0}, "frr"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        strip.StripConfig(**kwargs)
