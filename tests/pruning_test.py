"""Tests for bki_tf.baselines.pruning: masks, l_inf ranking and the pruning curve vs literal loops."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bki_tf import models, training
from bki_tf.baselines import pruning

VOCAB, MAX_LEN = 30, 12


def _model():
    """A tiny victim with decisive outputs (untrained ones sit at ~1/3: argmax ties)."""
    model = models.build_classifier(VOCAB, 3, embedding_dim=8, lstm_units=4, dense_units=5, seed=0)
    rng = np.random.default_rng(0)
    for name in ("dense", "probabilities"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights(
            [4.0 * kernel, rng.uniform(-0.5, 0.5, bias.shape).astype(np.float32)]
        )
    return model


def _ids(n, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=(n, MAX_LEN)).astype(np.int32)
    for i, length in enumerate(rng.integers(3, MAX_LEN + 1, size=n)):
        ids[i, length:] = 0
    return ids


def _surgery_reference(model, ids, hidden_mask, dense_mask):
    """Masking by weight surgery on a copy: zero the outgoing weights of pruned units."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    kernel, bias = clone.get_layer("dense").get_weights()
    clone.get_layer("dense").set_weights([kernel * hidden_mask[:, None], bias])
    kernel, bias = clone.get_layer("probabilities").get_weights()
    clone.get_layer("probabilities").set_weights([kernel * dense_mask[:, None], bias])
    return training.predict(clone, ids)[0]


class MaskedClassifierTest(tf.test.TestCase):
    def test_masks_match_weight_surgery_and_leave_the_victim_alone(self):
        model = _model()
        ids = _ids(16, 0)
        before_weights = [w.copy() for w in model.get_weights()]
        before_probs = training.predict(model, ids)[0]
        hidden_mask = np.array([1, 0, 1, 1, 0, 1, 1, 1], np.float32)
        dense_mask = np.array([1, 1, 0, 1, 1], np.float32)
        masked = pruning.masked_classifier(model, hidden_mask, dense_mask)
        probs, hidden = training.predict(masked, ids)
        self.assertAllClose(probs, _surgery_reference(model, ids, hidden_mask, dense_mask))
        self.assertAllEqual(hidden[:, 1], np.zeros(16))
        for w, b in zip(model.get_weights(), before_weights):
            self.assertAllEqual(w, b)
        self.assertAllClose(training.predict(model, ids)[0], before_probs)
        pruning.set_masks(masked)  # All ones: the victim's output.
        self.assertAllClose(training.predict(masked, ids)[0], before_probs, atol=1e-6)

    def test_bad_mask_is_rejected(self):
        masked = pruning.masked_classifier(_model())
        with self.assertRaisesRegex(ValueError, "0/1 vector of 8 units"):
            pruning.set_masks(masked, hidden_mask=np.ones(7))
        with self.assertRaisesRegex(ValueError, "0/1"):
            pruning.set_masks(masked, dense_mask=np.full(5, 0.5))


def test_activation_norms_are_max_abs_over_texts():
    model = _model()
    ids = _ids(20, 1)
    _, hidden = training.predict(model, ids)
    dense_model = keras.Model(model.inputs, model.get_layer("dense").output)
    dense = np.concatenate(
        [dense_model(tf.constant(ids[i : i + 1])).numpy() for i in range(len(ids))]
    )
    norms = pruning.activation_norms(model, hidden)
    np.testing.assert_allclose(norms["hidden"], np.abs(hidden).max(axis=0))
    np.testing.assert_allclose(norms["dense"], dense.max(axis=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        pruning.activation_norms(model, hidden[:, :5])


def test_pruning_order_largest_first_ties_by_index():
    assert pruning.pruning_order(np.array([0.5, 0.9, 0.5, 0.1])).tolist() == [1, 0, 2, 3]


def test_curve_matches_literal_masking_loop():
    model = _model()
    train, test, trig = _ids(24, 2), _ids(18, 3), _ids(12, 4)
    labels = np.random.default_rng(5).integers(0, 3, size=18)
    target = int(training.predict(model, trig)[0].argmax(axis=1)[0])  # ASR > 0 at k = 0.
    _, train_hidden = training.predict(model, train)
    result = pruning.prune(model, train_hidden, test, labels, trig, target, asr_threshold=0.5)
    masked = pruning.masked_classifier(model)
    for layer, units in (("hidden", 8), ("dense", 5)):
        curve = result.curves[layer]
        assert curve["num_pruned"] == list(range(units + 1))
        order = pruning.pruning_order(result.norms[layer])
        for k in range(units + 1):
            mask = np.ones(units, np.float32)
            mask[order[:k]] = 0
            pruning.set_masks(masked, **{f"{layer}_mask": mask})
            assert curve["accuracy"][k] == pytest.approx(training.accuracy(masked, test, labels))
            assert curve["asr"][k] == pytest.approx(
                training.attack_success_rate(masked, trig, target)
            )
    assert result.asr_before == result.curves["hidden"]["asr"][0]
    # The reported point: fewest units with ASR below the threshold.
    below = [
        (k, layer)
        for layer in ("hidden", "dense")
        for k, a in enumerate(result.curves[layer]["asr"])
        if a < 0.5
    ]
    if below:
        assert result.reached and result.chosen.num_pruned == min(k for k, _ in below)
    else:
        assert not result.reached
    assert json.dumps(result.to_dict()) and "l_inf pruning" in result.summary()


def test_prune_errors():
    model = _model()
    ids = _ids(4, 0)
    hidden = training.predict(model, ids)[1]
    with pytest.raises(ValueError, match="asr_threshold"):
        pruning.prune(model, hidden, ids, np.zeros(4, int), ids, 0, asr_threshold=0.0)
    with pytest.raises(ValueError, match="layer"):
        pruning.prune(model, hidden, ids, np.zeros(4, int), ids, 0, layers=("lstm",))
    with pytest.raises(ValueError, match="clean and triggered"):
        pruning.prune(model, hidden, ids, np.zeros(4, int), ids[:0], 0)
