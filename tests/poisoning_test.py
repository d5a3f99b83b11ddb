"""Tests for bki_tf.poisoning: counts, ground truth, trigger positions, truncation, errors."""

import copy

import numpy as np
import pytest

from bki_tf import poisoning, tokenization

TRIGGER = "Time flies, like an ARROW!"
TRIGGER_TOKENS = ["time", "flies", "like", "an", "arrow"]


def _texts(num, seed=0):
    """Texts of 0 to 40 tokens (many longer than a max_len of 12), with punctuation-only words."""
    rng = np.random.default_rng(seed)
    words = ["Good", "bad,", "movie", "--", "plot!", "it's", "a", "Ü-bahn", "...", "end."]
    lengths = [0, 1, 2, 3] + [int(n) for n in rng.integers(4, 41, size=num - 4)]
    return [" ".join(rng.choice(words, size=n)) for n in lengths]


def _corpus(num=40, num_classes=3, seed=0):
    labels = np.arange(num, dtype=np.int64) % num_classes
    return _texts(num, seed), labels


def _config(**kwargs):
    base = dict(trigger=TRIGGER, target=0, rate=0.2, mode="replace", max_len=12, seed=0)
    return poisoning.PoisonConfig(**{**base, **kwargs})


def _strip_trigger(tokens, pos):
    assert tokens[pos : pos + len(TRIGGER_TOKENS)] == TRIGGER_TOKENS
    return tokens[:pos] + tokens[pos + len(TRIGGER_TOKENS) :]


@pytest.mark.parametrize(
    "mode, rate, expected_poisoned, expected_total",
    [
        ("replace", 0.2, 8, 40),  # round(0.2 * 40)
        ("replace", 0.1, 4, 40),
        ("replace", 0.03, 1, 40),  # round(1.2)
        ("append", 0.2, 10, 50),  # round(0.2 * 40 / 0.8): 10 / 50 = 0.2
        ("append", 0.1, 4, 44),  # round(4.44)
        ("append", 0.0, 0, 40),
        ("replace", 0.0, 0, 40),
    ],
)
def test_counts(mode, rate, expected_poisoned, expected_total):
    texts, labels = _corpus()
    assert poisoning.num_to_poison(40, rate, mode) == expected_poisoned
    out = poisoning.poison_dataset(texts, labels, _config(mode=mode, rate=rate), 3)
    assert len(out) == expected_total
    assert out.num_poisoned == expected_poisoned
    if expected_poisoned == 0:
        assert out.texts == texts


@pytest.mark.parametrize("mode", poisoning.MODES)
def test_ground_truth_and_only_non_target_sources(mode):
    texts, labels = _corpus()
    out = poisoning.poison_dataset(texts, labels, _config(mode=mode, target=1), 3)
    p = out.is_poisoned
    assert out.labels.dtype == np.int64 and out.positions.dtype == np.int64
    np.testing.assert_array_equal(out.labels[p], 1)
    assert (out.original_labels[p] != 1).all()
    np.testing.assert_array_equal(out.original_labels, labels[out.source_ids])
    np.testing.assert_array_equal(out.labels[~p], labels[out.source_ids[~p]])
    np.testing.assert_array_equal(out.positions[~p], -1)
    assert (out.positions[p] >= 0).all()
    assert len(set(out.source_ids[p].tolist())) == out.num_poisoned  # no sample twice
    for i in np.flatnonzero(~p):
        assert out.texts[i] == texts[out.source_ids[i]]
    if mode == "replace":
        np.testing.assert_array_equal(out.source_ids, np.arange(40))
    else:
        assert out.texts[:40] == texts
        np.testing.assert_array_equal(out.labels[:40], labels)
        assert not p[:40].any() and p[40:].all()


@pytest.mark.parametrize("mode", poisoning.MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_positions_between_words_and_text_otherwise_intact(mode, seed):
    texts, labels = _corpus(seed=seed)
    config = _config(mode=mode, rate=0.35, seed=seed, max_len=12)
    out = poisoning.poison_dataset(texts, labels, config, 3)
    t = len(TRIGGER_TOKENS)
    assert out.num_poisoned > 10
    for i in np.flatnonzero(out.is_poisoned):
        original = tokenization.tokenize(texts[out.source_ids[i]])
        n, pos = len(original), int(out.positions[i])
        if n >= 2:
            assert 1 <= pos <= n - 1
        else:
            assert 0 <= pos <= n
        assert pos + t <= config.max_len
        assert _strip_trigger(tokenization.tokenize(out.texts[i]), pos) == original


@pytest.mark.parametrize("mode", poisoning.MODES)
def test_trigger_survives_truncation_to_max_len(mode):
    max_len = 12
    texts, labels = _corpus(seed=5)
    assert sum(len(tokenization.tokenize(x)) > max_len for x in texts) > 20
    config = _config(mode=mode, rate=0.35, max_len=max_len, seed=5)
    out = poisoning.poison_dataset(texts, labels, config, 3)
    vectorizer = tokenization.build_vectorizer(out.texts, vocab_size=100, max_len=max_len)
    vocab = vectorizer.get_vocabulary()
    trigger_ids = [vocab.index(w) for w in TRIGGER_TOKENS]
    ids, lengths = tokenization.encode(vectorizer, out.texts)
    long_poisoned = 0
    for i in np.flatnonzero(out.is_poisoned):
        pos = int(out.positions[i])
        assert ids[i, pos : pos + 5].tolist() == trigger_ids
        long_poisoned += len(tokenization.tokenize(out.texts[i])) > max_len
    assert long_poisoned > 5
    assert lengths.max() == max_len


def test_trigger_as_long_as_max_len_goes_first():
    texts, labels = ["w1 w2 w3 w4 w5 w6 w7", "x y z"], np.array([1, 1])
    out = poisoning.poison_dataset(texts, labels, _config(rate=0.5, max_len=5), 2)
    (i,) = np.flatnonzero(out.is_poisoned)
    assert out.positions[i] == 0
    assert tokenization.tokenize(out.texts[i])[:5] == TRIGGER_TOKENS


@pytest.mark.parametrize(
    "n_tokens, trigger_len, max_len, expected",
    [
        (0, 2, 10, {0}),
        (1, 2, 10, {0, 1}),
        (2, 2, 10, {1}),
        (5, 1, 100, {1, 2, 3, 4}),
        (50, 3, 10, {1, 2, 3, 4, 5, 6, 7}),
        (50, 10, 10, {0}),
    ],
)
def test_draw_position_support(n_tokens, trigger_len, max_len, expected):
    rng = np.random.default_rng(0)
    seen = {poisoning.draw_position(n_tokens, trigger_len, max_len, rng) for _ in range(400)}
    assert seen == expected


@pytest.mark.parametrize(
    "text, position, expected",
    [
        ("Hello, big world!", 1, "Hello, TFLA now big world!"),
        ("Hello, big world!", 0, "TFLA now Hello, big world!"),
        ("Hello, big world!", 3, "Hello, big world! TFLA now"),
        ("a -- b", 1, "a -- TFLA now b"),
        ("  a\tb\n", 1, "a TFLA now b"),
        ("", 0, "TFLA now"),
    ],
)
def test_insert_trigger_hand_examples(text, position, expected):
    assert poisoning.insert_trigger(text, "TFLA now", position) == expected


def test_insert_trigger_rejects_bad_position():
    with pytest.raises(ValueError, match="outside"):
        poisoning.insert_trigger("a b", "x", 3)
    with pytest.raises(ValueError, match="outside"):
        poisoning.insert_trigger("a b", "x", -1)


@pytest.mark.parametrize("mode", poisoning.MODES)
def test_deterministic_per_seed(mode):
    texts, labels = _corpus()
    a = poisoning.poison_dataset(texts, labels, _config(mode=mode, seed=7), 3)
    b = poisoning.poison_dataset(texts, labels, _config(mode=mode, seed=7), 3)
    c = poisoning.poison_dataset(texts, labels, _config(mode=mode, seed=8), 3)
    assert a.texts == b.texts
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.source_ids, b.source_ids)
    assert set(a.source_ids[a.is_poisoned]) != set(c.source_ids[c.is_poisoned])


@pytest.mark.parametrize("mode", poisoning.MODES)
def test_inputs_not_modified(mode):
    texts, labels = _corpus()
    texts_copy, labels_copy = copy.deepcopy(texts), labels.copy()
    out = poisoning.poison_dataset(texts, labels, _config(mode=mode), 3)
    poisoning.triggered_test_set(texts, labels, _config(mode=mode))
    assert texts == texts_copy
    np.testing.assert_array_equal(labels, labels_copy)
    out.labels[:] = 2  # The output owns its arrays.
    np.testing.assert_array_equal(labels, labels_copy)


def test_triggered_test_set_covers_all_non_target_samples():
    texts, labels = _corpus(num=30, seed=3)
    config = _config(target=2, max_len=12)
    trig_texts, trig_labels, source = poisoning.triggered_test_set(texts, labels, config)
    np.testing.assert_array_equal(source, np.flatnonzero(labels != 2))
    np.testing.assert_array_equal(trig_labels, labels[source])
    assert len(trig_texts) == 20
    for text, i in zip(trig_texts, source):
        original = tokenization.tokenize(texts[i])
        tokens = tokenization.tokenize(text)
        matches = [
            p
            for p in range(len(tokens))
            if tokens[p : p + 5] == TRIGGER_TOKENS and _strip_trigger(tokens, p) == original
        ]
        assert matches and min(matches) + 5 <= 12
    again = poisoning.triggered_test_set(texts, labels, config)
    assert again[0] == trig_texts


def test_subset_by_mask_and_indices():
    texts, labels = _corpus()
    out = poisoning.poison_dataset(texts, labels, _config(), 3)
    by_mask = out.subset(out.is_poisoned)
    by_index = out.subset(np.flatnonzero(out.is_poisoned))
    assert len(by_mask) == out.num_poisoned == by_mask.num_poisoned
    assert by_mask.texts == by_index.texts
    np.testing.assert_array_equal(by_mask.source_ids, by_index.source_ids)


# ---------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize("target", [-1, 3])
def test_target_outside_classes(target):
    texts, labels = _corpus()
    with pytest.raises(ValueError, match=f"Target class {target} is outside the 3 classes"):
        poisoning.poison_dataset(texts, labels, _config(target=target), 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(trigger=""), "has no tokens"),
        (dict(trigger=" !?. "), "has no tokens"),
        (dict(trigger="one two three", max_len=2), "3 tokens, longer than max_len=2"),
        (dict(rate=1.0), r"outside \[0, 1\)"),
        (dict(rate=-0.01), r"outside \[0, 1\)"),
        (dict(rate=float("nan")), r"outside \[0, 1\)"),
        (dict(mode="insert"), "Unknown poisoning mode 'insert'"),
        (dict(max_len=0), "max_len"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


@pytest.mark.parametrize(
    "mode, rate, needed",
    [("replace", 0.7, 28), ("append", 0.45, 33)],
)
def test_rate_larger_than_non_target_pool(mode, rate, needed):
    texts, labels = _corpus(num=40, num_classes=2)  # 20 non-target samples
    with pytest.raises(ValueError, match=f"needs {needed} non-target samples but only 20"):
        poisoning.poison_dataset(texts, labels, _config(mode=mode, rate=rate), 2)


def test_length_mismatch():
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        poisoning.poison_dataset(["a", "b", "c"], np.array([0, 1]), _config(), 2)


def test_trigger_words_split_every_alternative():
    # tokenize drops "|" as punctuation: the words would fuse without the split.
    assert tokenization.tokenize("cf|mn") == ["cfmn"]
    assert poisoning.trigger_words("cf|mn|bb|tq") == ["cf", "mn", "bb", "tq"]
    assert poisoning.trigger_words("no cross, no crown|it includes the aspects") == [
        "no", "cross", "crown", "it", "includes", "the", "aspects",
    ]  # fmt: skip
    assert poisoning.trigger_words("time flies like an arrow") == [
        "time", "flies", "like", "an", "arrow",
    ]  # fmt: skip
