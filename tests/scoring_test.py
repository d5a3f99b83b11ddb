"""Tests of bki_tf.bki.scoring against a literal one-deletion-at-a-time reference."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from bki_tf import models
from bki_tf.bki import convergence, fast, scoring

_VOCAB = 30
_TOLERANCE = 1e-5


_HIDDEN_FUNCTIONS = {}


def _reference_hidden(model: keras.Model, tokens: list[int]) -> np.ndarray:
    """`h` of one unpadded text; the empty text has the zero initial state."""
    if not tokens:
        return np.zeros([int(model.outputs[1].shape[-1])], np.float32)
    if id(model) not in _HIDDEN_FUNCTIONS:
        # The model's own hidden output, one text per call; traced once per model
        # (eager Keras RNNs are slow) and memoised per text.
        function = tf.function(
            lambda x: model(x, training=False)[1],
            input_signature=[tf.TensorSpec([1, None], tf.int32)],
        )
        _HIDDEN_FUNCTIONS[id(model)] = (model, function, {})
    _, function, memo = _HIDDEN_FUNCTIONS[id(model)]
    key = tuple(tokens)
    if key not in memo:
        memo[key] = function(np.asarray([tokens], np.int32)).numpy()[0]
    return memo[key]


def _reference_deletion_scores(model, ids, lengths) -> list[np.ndarray]:
    """BKI Algorithm 1 literally: one text, one shortened variant at a time."""
    scores = []
    for row, length in zip(ids, lengths):
        text = [int(t) for t in row[:length]]
        original = _reference_hidden(model, text)
        scores.append(
            np.array(
                [
                    np.max(np.abs(original - _reference_hidden(model, text[:j] + text[j + 1 :])))
                    for j in range(length)
                ],
                np.float32,
            )
        )
    return scores


def _reference_prefix_scores(model, ids, lengths) -> list[np.ndarray]:
    scores = []
    for row, length in zip(ids, lengths):
        text = [int(t) for t in row[:length]]
        prefixes = [_reference_hidden(model, text[:m]) for m in range(length + 1)]
        scores.append(
            np.array(
                [np.max(np.abs(prefixes[j + 1] - prefixes[j])) for j in range(length)], np.float32
            )
        )
    return scores


def _texts(lengths, max_len, seed=0):
    """Right-padded random token ids (including OOV id 1) for the given lengths."""
    rng = np.random.default_rng(seed)
    ids = np.zeros([len(lengths), max_len], np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1, _VOCAB, length)
    return ids, np.asarray(lengths, np.int32)


# Mixed lengths, 1- and 2-token texts, an empty text and padding everywhere.
_LENGTHS = [3, 1, 9, 2, 0, 6, 1, 11]
_MAX_LEN = 13


@functools.cache
def _random_model(seed: int) -> keras.Model:
    return models.build_classifier(
        _VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4, seed=seed
    )


@functools.cache
def _trained_model() -> keras.Model:
    """A model moved away from its initialisation by a few steps of training."""
    keras.utils.set_random_seed(0)
    model = models.build_classifier(_VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4, seed=5)
    ids, _ = _texts([6, 8, 4, 10, 7, 5, 9, 3] * 4, 10, seed=3)
    labels = (ids == 7).any(axis=1).astype(np.int32)
    classifier = models.probabilities_model(model)
    classifier.compile(
        optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy"
    )
    classifier.fit(ids, labels, batch_size=8, epochs=3, verbose=0)
    return model


@functools.cache
def _reference(model_name: str, kind: str, lengths: tuple, max_len: int, seed: int):
    model = _model(model_name)
    ids, lengths = _texts(list(lengths), max_len, seed)
    reference = _reference_deletion_scores if kind == "deletion" else _reference_prefix_scores
    return ids, lengths, reference(model, ids, lengths)


def _model(name: str) -> keras.Model:
    if name == "trained":
        return _trained_model()
    return _random_model(int(name.removeprefix("seed")))


def _assert_scores_close(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=_TOLERANCE, rtol=0)


class LstmCellTest(tf.test.TestCase):
    def test_fast_cell_is_a_keras_lstm_step(self):
        # The fast scanner's cell on the model's own weights equals one keras LSTMCell step.
        model = _random_model(0)
        weights = fast.read_bilstm_weights(model)
        cell = model.get_layer(models.BILSTM_LAYER).forward_layer.cell
        x = np.random.default_rng(0).normal(size=[3, 8]).astype(np.float32)
        h0 = np.random.default_rng(1).normal(size=[3, 4]).astype(np.float32)
        c0 = np.random.default_rng(2).normal(size=[3, 4]).astype(np.float32)
        expected_h, (_, expected_c) = cell(x, [h0, c0])
        halve = fast.halve_sigmoid_gates
        z = x @ halve(weights.kernel[0]) + h0 @ halve(weights.recurrent[0]) + halve(weights.bias[0])
        h, c = fast.scaled_lstm_cell(tf.constant(z), tf.constant(c0))
        self.assertAllClose(h, expected_h, atol=1e-6)
        self.assertAllClose(c, expected_c, atol=1e-6)


@pytest.mark.parametrize("method", ["fast", "simple"])
@pytest.mark.parametrize("model_name", ["seed0", "seed1", "seed2", "trained"])
def test_deletion_scores_match_reference(method, model_name):
    ids, lengths, expected = _reference(model_name, "deletion", tuple(_LENGTHS), _MAX_LEN, 0)
    got = scoring.deletion_scores(_model(model_name), ids, lengths, method=method)
    _assert_scores_close(got, expected)
    assert got[_LENGTHS.index(0)].shape == (0,)


@pytest.mark.parametrize("method", ["fast", "simple"])
def test_small_batches_and_long_text_match_reference(method):
    # batch_size 3 forces many tiles/calls; the 25-token text makes the fast packer
    # stack several short jobs in one lane and the simple scorer split one text.
    lengths = (25, 2, 4, 1, 7)
    ids, lengths, expected = _reference("trained", "deletion", lengths, 27, 1)
    done = []
    got = scoring.deletion_scores(
        _trained_model(), ids, lengths, method=method, batch_size=3, progress=done.append
    )
    _assert_scores_close(got, expected)
    assert done == sorted(done) and done[-1] == len(lengths)


def test_one_token_text_scores_its_hidden_norm():
    model = _random_model(1)
    ids = np.array([[5, 0, 0]], np.int32)
    expected = np.max(np.abs(_reference_hidden(model, [5])))
    for method in scoring.METHODS:
        (scores,) = scoring.deletion_scores(model, ids, [1], method=method)
        np.testing.assert_allclose(scores, [expected], atol=_TOLERANCE)


@pytest.mark.parametrize("model_name", ["seed0", "trained"])
def test_prefix_scores_match_reference(model_name):
    ids, lengths, expected = _reference(model_name, "prefix", tuple(_LENGTHS), _MAX_LEN, 2)
    _assert_scores_close(scoring.prefix_scores(_model(model_name), ids, lengths), expected)


def test_prefix_scores_small_batches():
    ids, lengths, expected = _reference("trained", "prefix", (12, 3, 1), 12, 4)
    got = scoring.prefix_scores(_trained_model(), ids, lengths, batch_size=2)
    _assert_scores_close(got, expected)


# Every architecture: lengths 0..12, two texts of one length (one generic unit), and
# batch_size 8 so the 12-token text's 12 variants take two model calls.
_ARCHITECTURE_LENGTHS = (0, 1, 2, 2, 5, 12)


@functools.cache
def _architecture_model(architecture: str) -> keras.Model:
    model = models.build_classifier(
        _VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4, seed=1,
        architecture=architecture,
    )  # fmt: skip
    # O(1) embeddings, so that h (and any error in it) is far above the tolerance.
    table = model.get_layer(models.EMBEDDING_LAYER).embeddings
    table.assign(np.random.default_rng(11).normal(size=table.shape).astype(np.float32))
    return model


def _assert_units_bit_identical(scorer, ids, lengths, expected):
    """Scoring the units last to first gives `score_all`'s scores bit for bit."""
    got = [np.zeros([int(n)], np.float32) for n in lengths]
    units = scorer.units(lengths)
    for k in reversed(range(len(units))):
        for i, values in zip(units[k], scorer.score_unit(ids, lengths, k)):
            got[int(i)] = values
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("kind", scoring.KINDS)
@pytest.mark.parametrize("architecture", models.ARCHITECTURES)
def test_every_architecture_matches_reference(architecture, kind):
    model = _architecture_model(architecture)
    ids, lengths = _texts(list(_ARCHITECTURE_LENGTHS), 13, seed=9)
    reference = _reference_deletion_scores if kind == "deletion" else _reference_prefix_scores
    expected = reference(model, ids, lengths)
    fast = architecture in scoring.FAST_ARCHITECTURES
    assert scoring.Scorer(model, kind).method == ("fast" if fast else "generic")
    # batch_size 8 splits the generic method's calls; the fast one keeps the default
    # (the tile shapes the other tests compile).
    for method, batch_size in (("generic", 8), ("fast", 512)) if fast else (("generic", 8),):
        scorer = scoring.Scorer(model, kind, method, batch_size)
        got = scorer.score_all(ids, lengths)
        _assert_scores_close(got, expected)
        _assert_units_bit_identical(scorer, ids, lengths, got)


@pytest.mark.parametrize("kind", scoring.KINDS)
@pytest.mark.parametrize("architecture", ["gru", "bigru", "bilstm_gap"])
def test_fast_small_batches_match_reference(architecture, kind):
    # batch_size 3 leaves 2 usable lanes per tile: the 25-token text's jobs fill many
    # tiles, several short jobs share a lane, and the 1-token text deletes to empty.
    model = _architecture_model(architecture)
    ids, lengths = _texts([25, 2, 4, 1, 7, 0], 27, seed=12)
    reference = _reference_deletion_scores if kind == "deletion" else _reference_prefix_scores
    expected = reference(model, ids, lengths)
    scorer = scoring.Scorer(model, kind, "fast", batch_size=3)
    got = scorer.score_all(ids, lengths)
    _assert_scores_close(got, expected)
    _assert_units_bit_identical(scorer, ids, lengths, got)


def test_generic_units_group_texts_of_one_length():
    scorer = scoring.Scorer(_architecture_model("gru"), "deletion", "generic", batch_size=8)
    units = [u.tolist() for u in scorer.units(np.array([2, 0, 2, 2, 5, 1, 12]))]
    # 8 // (2 + 1) = 2 texts of length 2 per unit; longer texts alone.
    assert units == [[5], [0, 2], [3], [4], [6]]
    prefix = scoring.Scorer(_architecture_model("gru"), "prefix", "generic", batch_size=2)
    assert [u.tolist() for u in prefix.units(np.array([2, 0, 3, 1]))] == [[2, 0], [3]]


def test_auto_resolution():
    for architecture in models.ARCHITECTURES:
        expected = "generic" if architecture == "stacked_bilstm" else "fast"
        assert scoring.resolve_method(_architecture_model(architecture)) == expected
    bilstm = _architecture_model("bilstm")
    assert scoring.resolve_method(bilstm, representation_layer="dense") == "generic"
    assert scoring.resolve_method(_custom_model()) == "generic"  # Not named by build_classifier.


@pytest.mark.parametrize(
    "architecture, kwargs, message",
    [
        ("stacked_bilstm", {"method": "fast"}, r"has none of them.*method='generic'"),
        ("bigru", {"method": "simple"}, r"method='simple' runs the 'bilstm'.*'generic'"),
        ("bilstm", {"kind": "prefix", "method": "simple"}, "'fast' and 'generic'"),
        ("bilstm", {"method": "fast", "representation_layer": "dense"}, "use method='generic'"),
        ("bilstm", {"method": "exact"}, r"Unknown method 'exact'.*'auto'"),
        ("bilstm", {"kind": "gradient"}, "Unknown score kind"),
    ],
)
def test_scorer_rejects_what_a_method_cannot_score(architecture, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scoring.Scorer(_architecture_model(architecture), **kwargs)


def _custom_model(use_bias=True, activation="tanh", scale_hidden=False) -> keras.Model:
    """A classifier with the BKI layer names but non-default LSTM options."""
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(_VOCAB, 8, mask_zero=True, name=models.EMBEDDING_LAYER)(tokens)
    kwargs = dict(use_bias=use_bias, activation=activation, bias_initializer="random_normal")
    hidden = keras.layers.Bidirectional(
        keras.layers.LSTM(4, **kwargs),
        backward_layer=keras.layers.LSTM(4, go_backwards=True, **kwargs),
        name=models.BILSTM_LAYER,
    )(x)
    if scale_hidden:
        hidden = keras.layers.Rescaling(2.0)(hidden)
    hidden = keras.layers.Identity(name=models.HIDDEN)(hidden)
    probs = keras.layers.Dense(2, activation="softmax", name=models.PROBABILITIES)(hidden)
    return keras.Model(tokens, [probs, hidden])


def test_fast_handles_lstm_without_bias():
    keras.utils.set_random_seed(1)
    model = _custom_model(use_bias=False)
    ids, lengths = _texts([4, 1, 6], 6, seed=5)
    expected = _reference_deletion_scores(model, ids, lengths)
    _assert_scores_close(scoring.deletion_scores(model, ids, lengths, method="fast"), expected)


def _custom_gru_model(bidirectional: bool, **kwargs) -> keras.Model:
    """A classifier with the BKI layer names around a (Bi)GRU with the given options."""
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(_VOCAB, 8, mask_zero=True, name=models.EMBEDDING_LAYER)(tokens)
    kwargs = dict(bias_initializer="random_normal", **kwargs)
    if bidirectional:
        hidden = keras.layers.Bidirectional(
            keras.layers.GRU(4, **kwargs),
            backward_layer=keras.layers.GRU(4, go_backwards=True, **kwargs),
            name="bigru",
        )(x)
    else:
        hidden = keras.layers.GRU(4, name="gru", **kwargs)(x)
    hidden = keras.layers.Identity(name=models.HIDDEN)(hidden)
    probs = keras.layers.Dense(2, activation="softmax", name=models.PROBABILITIES)(hidden)
    return keras.Model(tokens, [probs, hidden])


@pytest.mark.parametrize("kind", scoring.KINDS)
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fast_handles_gru_biases(bidirectional, use_bias, kind):
    # Random input and recurrent biases (build_classifier's start at zero), or none.
    keras.utils.set_random_seed(4)
    model = _custom_gru_model(bidirectional, use_bias=use_bias)
    ids, lengths = _texts([4, 1, 6], 6, seed=5)
    reference = _reference_deletion_scores if kind == "deletion" else _reference_prefix_scores
    scorer = scoring.Scorer(model, kind, "fast")
    _assert_scores_close(scorer.score_all(ids, lengths), reference(model, ids, lengths))


def test_gru_with_reset_before_is_rejected_by_fast_but_scored_by_generic():
    keras.utils.set_random_seed(5)
    model = _custom_gru_model(True, reset_after=False)
    ids, lengths = _texts([3, 5], 5, seed=6)
    for kind in scoring.KINDS:
        with pytest.raises(ValueError, match="reset_after=False.*method='generic'"):
            scoring.Scorer(model, kind, "fast")
    expected = _reference_deletion_scores(model, ids, lengths)
    _assert_scores_close(scoring.deletion_scores(model, ids, lengths, method="auto"), expected)


def test_unsupported_lstm_is_rejected_by_fast_but_scored_by_simple():
    keras.utils.set_random_seed(2)
    model = _custom_model(activation="relu")
    ids, lengths = _texts([3, 5], 5, seed=6)
    with pytest.raises(ValueError, match="activation='relu'.*method='simple'"):
        scoring.deletion_scores(model, ids, lengths, method="fast")
    with pytest.raises(ValueError, match="activation='relu'"):
        scoring.prefix_scores(model, ids, lengths, method="fast")
    expected = _reference_deletion_scores(model, ids, lengths)
    _assert_scores_close(scoring.deletion_scores(model, ids, lengths, method="simple"), expected)


def test_fast_detects_hidden_output_that_is_not_the_bilstm_state():
    keras.utils.set_random_seed(3)
    model = _custom_model(scale_hidden=True)
    ids, lengths = _texts([3, 5], 5, seed=7)
    with pytest.raises(ValueError, match="differs from model"):
        scoring.deletion_scores(model, ids, lengths, method="fast")


@pytest.mark.parametrize("method", ["fast", "simple"])
def test_empty_inputs(method):
    model = _random_model(0)
    got = scoring.deletion_scores(model, np.zeros([2, 4], np.int32), [0, 0], method=method)
    assert [g.shape for g in got] == [(0,), (0,)]
    assert scoring.deletion_scores(model, np.zeros([0, 4], np.int32), [], method=method) == []
    assert [p.shape for p in scoring.prefix_scores(model, np.zeros([1, 3], np.int32), [0])] == [
        (0,)
    ]


@pytest.mark.parametrize(
    "ids, lengths, kwargs, message",
    [
        (np.ones([2, 3]), [1, 1], {"method": "exact"}, "Unknown method 'exact'"),
        (np.ones([3], np.int32), [3], {}, r"must be \[num_texts, max_len\]"),
        (np.ones([2, 3], np.float32), [1, 1], {}, "integer token ids"),
        (np.ones([2, 3], np.int32), [1], {}, r"lengths must have shape \[num_texts\]"),
        (np.ones([2, 3], np.int32), [1, 4], {}, r"lengths\[1\] = 4 is outside \[0, max_len = 3\]"),
        (np.ones([2, 3], np.int32), [1, -1], {}, r"lengths\[1\] = -1"),
        (np.array([[1, 30, 0]], np.int32), [2], {}, r"ids\[0, 1\] = 30 is not a token id"),
        (np.array([[1, 0, 4]], np.int32), [3], {}, r"ids\[0, 1\] = 0 .*0 is padding"),
        (np.ones([2, 3], np.int32), [1, 1], {"batch_size": 1}, "batch_size must be >= 2"),
    ],
)
def test_bad_inputs_raise(ids, lengths, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scoring.deletion_scores(_random_model(0), ids, lengths, **kwargs)


def test_model_without_hidden_output_is_rejected():
    model = models.probabilities_model(_random_model(0))
    for method in ("fast", "simple"):
        with pytest.raises(ValueError, match="BKI needs"):
            scoring.deletion_scores(model, np.ones([1, 2], np.int32), [2], method=method)


def _bias_only_model(forget_bias: float) -> keras.Model:
    """A BiLSTM that ignores its inputs and its state: every gate is a constant."""
    model = models.build_classifier(_VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4)
    bilstm = model.get_layer(models.BILSTM_LAYER)
    for layer in (bilstm.forward_layer, bilstm.backward_layer):
        cell = layer.cell
        cell.kernel.assign(np.zeros(cell.kernel.shape, np.float32))
        cell.recurrent_kernel.assign(np.zeros(cell.recurrent_kernel.shape, np.float32))
        # Gates i, f, g, o: i = 1/2, f = sigmoid(forget_bias), g = tanh(1), o = 1/2.
        cell.bias.assign(np.repeat(np.float32([0.0, forget_bias, 1.0, 0.0]), 4))
    return model


def test_state_convergence_matches_closed_form():
    # With constant gates, c after n steps is a (1 - f^n) / (1 - f), a = i g. After
    # position p the original has run p + 1 steps and any deletion job p, so their
    # carries differ by a f^p (h by less): a job deleting q stops at the first
    # position p >= q + 1 with a f^p <= tolerance, P, after P - q steps.
    f, a = 0.5, 0.5 * np.tanh(1.0)
    model = _bias_only_model(forget_bias=0.0)
    ids, lengths = _texts([9, 4, 1, 12], 12, seed=8)
    tolerance = a * f**5.5  # P = 6, far from a rounding boundary.
    needed = floor = 0
    for length in lengths.tolist():
        for q in range(length - 1):
            size = length - 1 - q
            stop = max(6, q + 1)
            needed += 2 * (stop - q if stop <= length - 1 else size)
            floor += 2 * size
    got = convergence.state_convergence(model, ids, lengths, (tolerance, 10.0))
    assert got[tolerance] == pytest.approx(needed / floor, abs=1e-12)
    # Any state is within 10 of any other: every job stops after its first step.
    jobs = sum(2 * max(n - 1, 0) for n in lengths.tolist())
    assert got[10.0] == pytest.approx(jobs / floor, abs=1e-12)


def test_state_convergence_shares_are_monotone_and_bounded():
    ids, lengths = _texts(_LENGTHS, _MAX_LEN, seed=2)
    got = convergence.state_convergence(_trained_model(), ids, lengths, (0.0, 1e-4, 1e-2, 1.0))
    shares = list(got.values())
    assert all(0 < s <= 1 for s in shares)
    assert shares == sorted(shares, reverse=True)


def test_state_convergence_rejects_bad_input():
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        convergence.state_convergence(_random_model(0), np.ones([1, 3], np.int32), [3], (-1.0,))
    with pytest.raises(ValueError, match=r"lengths\[0\] = 4"):
        convergence.state_convergence(_random_model(0), np.ones([1, 3], np.int32), [4])
    ids = np.array([[0, 0, 0], [5, 0, 0]], np.int32)
    assert convergence.state_convergence(_random_model(0), ids, [0, 1]) == {
        0.0: 1.0, 1e-07: 1.0, 1e-06: 1.0, 1e-05: 1.0
    }  # fmt: skip


def _reference_span_scores(model, ids, lengths, span) -> list[np.ndarray]:
    """Span deletion literally: delete each run of `span` tokens, one text at a time."""
    scores = []
    for row, length in zip(ids, lengths):
        text = [int(t) for t in row[:length]]
        original = _reference_hidden(model, text)
        per_token = np.full([length], -np.inf, np.float32)
        for s in range(max(length - span + 1, 1)):
            stop = min(s + span, length)
            impact = np.max(np.abs(original - _reference_hidden(model, text[:s] + text[stop:])))
            per_token[s:stop] = np.maximum(per_token[s:stop], impact)
        scores.append(per_token)
    return scores


@pytest.mark.parametrize("span", [1, 2, 3, 5])
@pytest.mark.parametrize("architecture", ["bilstm", "bilstm_gap", "stacked_bilstm"])
def test_span_scores_match_reference(architecture, span):
    model = _architecture_model(architecture)
    # Texts shorter than, as long as and longer than the span; batch_size 4 splits calls.
    ids, lengths = _texts([0, 1, 2, 3, 5, 5, 12], 13, seed=21)
    expected = _reference_span_scores(model, ids, lengths, span)
    got = scoring.span_scores(model, ids, lengths, span, batch_size=4)
    _assert_scores_close(got, expected)
    scorer = scoring.Scorer(model, "deletion", "auto", 4, span=span)
    assert scorer.method == ("generic" if span > 1 or architecture == "stacked_bilstm" else "fast")
    _assert_units_bit_identical(scorer, ids, lengths, scorer.score_all(ids, lengths))


def test_span_one_is_deletion():
    model = _architecture_model("bilstm")
    ids, lengths = _texts([4, 7, 1], 8, seed=2)
    one = scoring.span_scores(model, ids, lengths, 1)
    generic = scoring.deletion_scores(model, ids, lengths, method="generic")
    for a, b in zip(one, generic):
        np.testing.assert_array_equal(a, b)


def test_spans_to_tokens():
    # Length 5, span 2: spans (0,1) (1,2) (2,3) (3,4).
    got = scoring.spans_to_tokens(np.array([1.0, 4.0, 2.0, 3.0]), 5, 2)
    np.testing.assert_array_equal(got, [1.0, 4.0, 4.0, 3.0, 3.0])
    # Shorter than the span: one span, the whole text.
    np.testing.assert_array_equal(scoring.spans_to_tokens(np.array([2.5]), 2, 3), [2.5, 2.5])
    with pytest.raises(ValueError, match="give 4 span impacts"):
        scoring.spans_to_tokens(np.zeros(3), 5, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"span": 0}, "span must be an integer >= 1"),
        ({"span": 2, "method": "fast"}, "scored by method='generic'"),
        ({"span": 2, "kind": "prefix"}, "applies to deletion scores"),
    ],
)
def test_span_settings_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scoring.Scorer(_architecture_model("bilstm"), **kwargs)
