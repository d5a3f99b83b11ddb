"""Tests of bki_tf.bki.representation and the generic scorer on user Keras models.

Every score is compared with a literal reference: each shortened text (or prefix) is
built in Python and run through the user's model one text at a time.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from bki_tf import bki
from bki_tf.bki import detector, representation, scoring

_VOCAB = 30
_TOLERANCE = 1e-5
_LENGTHS = (0, 1, 2, 2, 5, 12)
_WORDS = [f"w{k}" for k in range(2, _VOCAB)]  # Ids 2.. of the vectorizer; 1 is OOV.


def _seeded_embeddings(model: keras.Model, seed: int) -> keras.Model:
    """O(1) embeddings, so that h (and any error in it) is far above the tolerance."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            shape = layer.embeddings.shape
            layer.embeddings.assign(np.random.default_rng(seed).normal(size=shape).astype("f4"))
    return model


@functools.cache
def _conv_model() -> keras.Model:
    """No masking anywhere: padding would change the max over positions."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(_VOCAB, 8)(tokens)
    x = keras.layers.Conv1D(4, 3, padding="same", activation="tanh")(x)
    h = keras.layers.GlobalMaxPooling1D(name="pooled")(x)
    probs = keras.layers.Dense(2, activation="softmax")(h)
    return _seeded_embeddings(keras.Model(tokens, probs, name="conv"), 1)


@functools.cache
def _string_model() -> keras.Model:
    """Raw strings in; the vectorizer pads to 16, so the shortened texts need the cut."""
    keras.utils.set_random_seed(1)
    vectorizer = keras.layers.TextVectorization(vocabulary=_WORDS, output_sequence_length=16)
    texts = keras.Input(shape=(), dtype="string")
    x = keras.layers.Embedding(_VOCAB, 8, mask_zero=True)(vectorizer(texts))
    h = keras.layers.LSTM(4, name="encoder")(x)
    probs = keras.layers.Dense(2, activation="softmax")(h)
    return _seeded_embeddings(keras.Model(texts, probs, name="strings"), 2)


@functools.cache
def _sequential_model() -> keras.Model:
    """A user Sequential model whose representation layer returns sequences."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            keras.layers.Embedding(_VOCAB, 8, mask_zero=True),
            keras.layers.GRU(4, return_sequences=True, name="states"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, activation="softmax"),
        ],
        name="sequential_user",
    )
    return _seeded_embeddings(model, 3)


def _pooled(states: np.ndarray, pool: str) -> np.ndarray:
    """`[time, d] -> [d]` in numpy."""
    return {"last": states[-1], "mean": states.mean(axis=0), "max": states.max(axis=0)}[pool]


# name -> (model, representation_layer, pool)
_CASES = {
    "conv": (_conv_model, "pooled", None),
    "strings": (_string_model, "encoder", None),
    "sequential_last": (_sequential_model, "states", "last"),
    "sequential_mean": (_sequential_model, "states", "mean"),
    "sequential_max": (_sequential_model, "states", "max"),
}


@functools.cache
def _reference_h(case: str):
    """`tokens (tuple of ids) -> h float32 [d]`, one unpadded text per model call."""
    build, layer_name, pool = _CASES[case]
    model = build()
    memo = {}
    if case == "strings":
        vocabulary = model.layers[1].get_vocabulary()
        strings = keras.Model(model.inputs[0], model.get_layer(layer_name).output)

        def h(tokens):
            # The text as the user would type it; '[UNK]' standardises to OOV again.
            text = " ".join(vocabulary[t] for t in tokens)
            return np.asarray(strings(tf.constant([text])))[0]

    elif pool is None:
        sub = keras.Model(model.inputs[0], model.get_layer(layer_name).output)

        def h(tokens):
            return np.asarray(sub(np.asarray([tokens], np.int32)))[0]

    else:
        # The layers one by one up to the representation, then numpy pooling.
        layers = []
        for layer in model.layers:
            layers.append(layer)
            if layer.name == layer_name:
                break

        def h(tokens):
            x = np.asarray([tokens], np.int32)
            for layer in layers:
                x = layer(x)
            return _pooled(np.asarray(x)[0], pool)

    def memoised(tokens):
        if tokens not in memo:
            memo[tokens] = h(list(tokens)) if tokens else None
        return memo[tokens]

    return memoised


def _reference(case: str, kind: str, ids: np.ndarray, lengths: np.ndarray):
    h = _reference_h(case)

    def vector(tokens, like):
        value = h(tuple(tokens))
        return np.zeros_like(like) if value is None else value  # h(empty) = 0.

    scores = []
    for row, length in zip(ids, lengths):
        text = [int(t) for t in row[:length]]
        if not text:
            scores.append(np.zeros([0], np.float32))
            continue
        full = h(tuple(text))
        if kind == "deletion":
            values = [
                np.max(np.abs(full - vector(text[:j] + text[j + 1 :], full))) for j in range(length)
            ]
        else:
            values = [
                np.max(np.abs(vector(text[: j + 1], full) - vector(text[:j], full)))
                for j in range(length)
            ]
        scores.append(np.asarray(values, np.float32))
    return scores


def _texts(seed: int):
    rng = np.random.default_rng(seed)
    ids = np.zeros([len(_LENGTHS), 13], np.int32)
    for i, n in enumerate(_LENGTHS):
        ids[i, :n] = rng.integers(1, _VOCAB, n)
    return ids, np.asarray(_LENGTHS, np.int64)


@pytest.mark.parametrize("kind", scoring.KINDS)
@pytest.mark.parametrize("case", sorted(_CASES))
def test_generic_scores_match_reference_and_units_are_bit_identical(case, kind):
    build, layer_name, pool = _CASES[case]
    ids, lengths = _texts(seed=len(case))
    scorer = scoring.Scorer(build(), kind, "auto", 8, representation_layer=layer_name, pool=pool)
    assert scorer.method == "generic"
    got = scorer.score_all(ids, lengths)
    expected = _reference(case, kind, ids, lengths)
    for g, e in zip(got, expected):
        assert g.dtype == np.float32 and g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=_TOLERANCE, rtol=0)
    units = scorer.units(lengths)
    again = [np.zeros([int(n)], np.float32) for n in lengths]
    for k in reversed(range(len(units))):
        for i, values in zip(units[k], scorer.score_unit(ids, lengths, k)):
            again[int(i)] = values
    for a, g in zip(again, got):
        np.testing.assert_array_equal(a, g)


def test_padding_would_be_wrong_for_the_conv_model():
    # Why the generic method never pads: this model has no mask, so a padded text is
    # another text (and the reference above would catch a padding scorer).
    sub = keras.Model(_conv_model().inputs[0], _conv_model().get_layer("pooled").output)
    ids, _ = _texts(seed=0)
    padded = np.asarray(sub(np.pad(ids[4:5, :5], ((0, 0), (0, 3)))))[0]
    unpadded = _reference_h("conv")(tuple(int(t) for t in ids[4, :5]))
    assert np.max(np.abs(padded - unpadded)) > 1e-3


def test_adapter_shapes_dtypes_and_shared_weights():
    adapter = representation.representation_model(_sequential_model(), "states", "mean")
    out = adapter(np.ones([3, 7], np.int32))
    assert tuple(out.shape) == (3, 4) and out.dtype == "float32"
    strings = representation.representation_model(_string_model(), "encoder")
    assert tuple(strings(np.ones([2, 20], np.int32)).shape) == (2, 4)  # Longer than 16.
    model_weights = {id(w) for w in _string_model().weights}
    assert all(id(w) in model_weights for w in strings.weights)


def test_vocabulary_and_encoding_helpers():
    model = _string_model()
    vocabulary = representation.model_vocabulary(model)
    assert vocabulary[:3] == ["", "[UNK]", "w2"] and len(vocabulary) == _VOCAB
    assert representation.model_vocabulary(model, vocabulary) == vocabulary
    assert representation.vocabulary_size(model) == _VOCAB
    assert representation.vocabulary_size(_conv_model()) == _VOCAB
    ids, lengths = representation.encode_strings(model, ["w3 w5 zebra", "", "W2!"])
    assert lengths.tolist() == [3, 0, 1] and ids.dtype == np.int32
    assert ids[0, :3].tolist() == [3, 5, 1] and ids[2, 0] == 2 and ids.shape[1] == 16
    assert representation.text_vectorizer(_conv_model()) is None
    ids_vocabulary = ["", "[UNK]", *_WORDS]
    assert representation.model_vocabulary(_conv_model(), ids_vocabulary) == ids_vocabulary
    with pytest.raises(ValueError, match="pass its vocabulary"):
        representation.model_vocabulary(_conv_model())
    with pytest.raises(ValueError, match="differs from that of model"):
        representation.model_vocabulary(model, ids_vocabulary[:-1])
    with pytest.raises(ValueError, match="has no TextVectorization"):
        representation.encode_strings(_conv_model(), ["w2"])


def _nested_model() -> keras.Model:
    inner_tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(_VOCAB, 4, name="inner_embedding")(inner_tokens)
    encoder = keras.Model(inner_tokens, keras.layers.LSTM(2, name="inner_lstm")(x), name="enc")
    tokens = keras.Input(shape=(None,), dtype="int32")
    return keras.Model(tokens, keras.layers.Dense(2, name="head")(encoder(tokens)), name="outer")


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.embedding = keras.layers.Embedding(_VOCAB, 4)
        self.rnn = keras.layers.LSTM(2)

    def call(self, tokens):
        return self.rnn(self.embedding(tokens))


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        (_sequential_model, {"representation_layer": "states"}, r"--pool=last\|mean\|max"),
        (_conv_model, {"representation_layer": "pooled", "pool": "mean"}, "drop pool='mean'"),
        (_conv_model, {"representation_layer": "pooled", "pool": "median"}, "Unknown pool"),
        (_conv_model, {"representation_layer": "nope"}, r"no layer 'nope'.*'pooled'"),
        (_nested_model, {"representation_layer": "enc"}, "'enc' of model 'outer' is a nested"),
        (_nested_model, {"representation_layer": "inner_lstm"}, "inside the nested model 'enc'"),
        (_Subclassed, {"representation_layer": "lstm"}, "subclassed or unbuilt.*functionally"),
    ],
)
def test_adapter_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        representation.representation_model(model(), **kwargs)


def test_generic_scorer_checks_ids_against_the_vocabulary():
    scorer = scoring.Scorer(_conv_model(), "deletion", "generic", representation_layer="pooled")
    with pytest.raises(ValueError, match=r"ids\[0, 1\] = 30 is not a token id in \[1, vocab"):
        scorer.score_all(np.array([[3, 30]], np.int32), [2])
    with pytest.raises(ValueError, match=r"ids\[1, 0\] = 0"):
        scorer.score_unit(np.array([[3, 0], [0, 4]], np.int32), [1, 2], 1)


def test_detect_scans_a_string_model_with_its_own_vectorizer():
    model = _string_model()
    texts = ["w3 w4 w5", "w4 w4", "", "w9 w3 w2 w7 zebra"]
    config = bki.BKIConfig(p=1, method="generic", representation_layer="encoder")
    result = bki.detect(model, texts, representation.model_vocabulary(model), config=config)
    ids, lengths = representation.encode_strings(model, texts)
    expected = scoring.deletion_scores(
        model, ids, lengths, "generic", config.scan_batch_size, representation_layer="encoder"
    )
    for got, want in zip(result.scores, expected):
        np.testing.assert_array_equal(got, want)


def test_config_threads_layer_and_pool_without_changing_old_identities():
    default = detector.BKIConfig()
    assert "representation_layer" not in default.identity() and "pool" not in default.identity()
    assert detector.BKIConfig.from_dict(
        {k: v for k, v in default.to_dict().items() if k not in ("representation_layer", "pool")}
    ) == default  # fmt: skip
    custom = detector.BKIConfig(method="auto", representation_layer="states", pool="max")
    assert custom.identity()["representation_layer"] == "states"
    assert custom.identity()["pool"] == "max"
    with pytest.raises(ValueError, match="use method='generic' or 'auto'"):
        detector.BKIConfig(method="fast", pool="mean")
    with pytest.raises(ValueError, match="Unknown pool"):
        detector.BKIConfig(method="generic", pool="sum")
