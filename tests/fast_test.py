"""Tests of bki_tf.bki.fast: the reimplemented cells, the weights it reads, what it rejects.

Scores of the fast scanner against the literal deletion reference are tested in
`scoring_test.py` (every architecture, small lane counts, no bias).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from bki_tf import models
from bki_tf.bki import fast, scoring

_VOCAB = 30


@functools.cache
def _classifier(architecture: str) -> keras.Model:
    model = models.build_classifier(
        _VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4, seed=2,
        architecture=architecture,
    )  # fmt: skip
    # Keras initialises the GRU biases to zero; random ones check their layout.
    for weight in model.weights:
        if "bias" in weight.path and "gru" in weight.path:
            weight.assign(np.random.default_rng(3).normal(size=weight.shape).astype(np.float32))
    return model


class GruCellTest(tf.test.TestCase):
    def test_fast_cell_is_a_keras_gru_step(self):
        # The fast scanner's cell on the model's own weights equals one keras GRUCell
        # step, in both directions of a BiGRU and in a GRU victim.
        rng = np.random.default_rng(0)
        x = rng.normal(size=[3, 8]).astype(np.float32)
        h0 = rng.normal(size=[3, 4]).astype(np.float32)
        bigru = _classifier("bigru").get_layer("bigru")
        cases = [
            (fast.read_bigru_weights(_classifier("bigru")), 0, bigru.forward_layer.cell),
            (fast.read_bigru_weights(_classifier("bigru")), 1, bigru.backward_layer.cell),
            (
                fast.read_gru_weights(_classifier("gru")),
                0,
                _classifier("gru").get_layer("gru").cell,
            ),
        ]
        for weights, d, cell in cases:
            self.assertEqual(weights.cell, "gru")
            self.assertEqual(weights.kernel.shape, (weights.directions, 8, 12))
            expected, _ = cell(x, [h0])

            def halve(w):
                return fast.halve_sigmoid_gates(w, "gru")

            u = h0 @ halve(weights.recurrent[d]) + halve(weights.recurrent_bias[d])
            projected = x @ halve(weights.kernel[d]) + halve(weights.bias[d])
            h = fast.scaled_gru_cell(tf.constant(projected), tf.constant(u), tf.constant(h0))
            self.assertAllClose(h, expected, atol=1e-6)


def test_read_fast_weights_picks_each_encoder():
    expected = {
        "bilstm": ("lstm", 2, "last"),
        "lstm": ("lstm", 1, "last"),
        "gru": ("gru", 1, "last"),
        "bigru": ("gru", 2, "last"),
        "bilstm_gap": ("lstm", 2, "mean"),
    }
    assert set(expected) == set(scoring.FAST_ARCHITECTURES)
    for architecture, (cell, directions, pooling) in expected.items():
        weights = fast.read_fast_weights(_classifier(architecture))
        assert (weights.cell, weights.directions, weights.pooling) == (cell, directions, pooling)
    with pytest.raises(ValueError, match=r"'bilstm_sequence' layer of .*has none of them"):
        fast.read_fast_weights(_classifier("stacked_bilstm"))


def test_weights_reject_an_inconsistent_layout():
    weights = fast.read_gru_weights(_classifier("gru"))
    with pytest.raises(ValueError, match="Unknown cell 'rnn'"):
        fast.RecurrentWeights(weights.embeddings, weights.kernel, weights.recurrent,
                              weights.bias, cell="rnn")  # fmt: skip
    with pytest.raises(ValueError, match="needs a recurrent_bias"):
        fast.RecurrentWeights(weights.embeddings, weights.kernel, weights.recurrent,
                              weights.bias, cell="gru")  # fmt: skip
    with pytest.raises(ValueError, match="needs 4 \\* units = 16 columns"):
        fast.RecurrentWeights(weights.embeddings, weights.kernel, weights.recurrent,
                              weights.bias, cell="lstm")  # fmt: skip


def _model(encoder, pooling=None, scale_hidden=False) -> keras.Model:
    """A classifier with the BKI layer names around `encoder` (and `pooling`)."""
    tokens = keras.Input(shape=(None,), dtype="int32")
    hidden = keras.layers.Embedding(_VOCAB, 8, mask_zero=True, name=models.EMBEDDING_LAYER)(tokens)
    hidden = encoder(hidden)
    if pooling is not None:
        hidden = pooling(hidden)
    if scale_hidden:
        hidden = keras.layers.Rescaling(2.0)(hidden)
    hidden = keras.layers.Identity(name=models.HIDDEN)(hidden)
    probs = keras.layers.Dense(2, activation="softmax", name=models.PROBABILITIES)(hidden)
    return keras.Model(tokens, [probs, hidden])


def _bilstm_sequence(**kwargs):
    return keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True, **kwargs),
        backward_layer=keras.layers.LSTM(4, return_sequences=True, go_backwards=True, **kwargs),
        name="bilstm_sequence",
    )


def _average():
    return keras.layers.GlobalAveragePooling1D(name="average_pooling")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: _model(keras.layers.GRU(4, activation="relu", name="gru")), "activation='relu'"),
        (
            lambda: _model(keras.layers.GRU(4, recurrent_activation="hard_sigmoid", name="gru")),
            "recurrent_activation='hard_sigmoid'",
        ),
        (lambda: _model(keras.layers.GRU(4, go_backwards=True, name="gru")), "go_backwards=True"),
        (lambda: _model(keras.layers.GRU(4, reset_after=False, name="gru")), "reset_after=False"),
        (lambda: _model(keras.layers.GRU(4, dtype="mixed_float16", name="gru")), "float16"),
        (
            lambda: _model(
                keras.layers.Bidirectional(keras.layers.GRU(4), name="bigru", merge_mode="sum")
            ),
            "merge_mode='sum'",
        ),
        (
            lambda: _model(keras.layers.Bidirectional(keras.layers.LSTM(4), name="bigru")),
            "is a LSTM, not a GRU",
        ),
        (lambda: _model(_bilstm_sequence(activation="relu"), _average()), "activation='relu'"),
        (
            lambda: _model(
                _bilstm_sequence(), keras.layers.GlobalMaxPooling1D(name="average_pooling")
            ),
            "no 'average_pooling' GlobalAveragePooling1D",
        ),
    ],
)
def test_fast_rejects_what_it_does_not_reproduce(build, message):
    keras.utils.set_random_seed(0)
    model = build()
    with pytest.raises(ValueError, match=f"{message}.*method='generic'"):
        scoring.Scorer(model, "deletion", "fast")


@pytest.mark.parametrize(
    "encoder, pooling",
    [
        (lambda: keras.layers.GRU(4, name="gru"), lambda: None),
        (lambda: keras.layers.Bidirectional(keras.layers.GRU(4), name="bigru"), lambda: None),
        (_bilstm_sequence, _average),
    ],
)
def test_fast_detects_hidden_output_that_is_not_the_encoder_state(encoder, pooling):
    keras.utils.set_random_seed(3)
    model = _model(encoder(), pooling(), scale_hidden=True)
    ids = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]], np.int32)
    for kind in scoring.KINDS:
        with pytest.raises(ValueError, match="differs from model.*method='generic'"):
            scoring.Scorer(model, kind, "fast").score_all(ids, [3, 5])
