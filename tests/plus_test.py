"""Tests of BKI+ (`bki_tf.bki.plus`) on hand-made texts and scores with known answers."""

import math

import numpy as np
import pytest

from bki_tf import bki, models
from bki_tf.bki import detector, plus, scoring

FILLERS = 200
# Vocabulary: padding, OOV, 200 filler words, then the trigger words.
VOCAB = (
    ["", "[UNK]"] + [f"w{i}" for i in range(FILLERS)] + ["alpha", "beta", "gamma", "delta", "eps"]
)
ALPHA, BETA, GAMMA, DELTA, EPS = range(2 + FILLERS, 2 + FILLERS + 5)
TRIGGER_SCORES = {ALPHA: 10.0, BETA: 12.0, GAMMA: 11.0, DELTA: 10.0, EPS: 9.0}


def make_corpus(seed=0, triggers=(), num_texts=400, length=20, lone_beta=10):
    """Texts of random fillers scored by per-word importance, with planted phrases.

    `triggers`: `(phrase ids, label, count)`; each planted text gets the phrase at a
    random position and the label. `lone_beta` clean texts hold `beta` alone with a
    filler's score (a common trigger word).
    """
    rng = np.random.default_rng(seed)
    importance = rng.lognormal(0.0, 0.3, len(VOCAB))
    ids, scores, labels, poisoned = [], [], [], []
    plan = [(None, None)] * num_texts
    k = 0
    for phrase, label, count in triggers:
        for _ in range(count):
            plan[k] = (phrase, label)
            k += 1
    for i, (phrase, label) in enumerate(plan):
        t = rng.integers(2, 2 + FILLERS, length)
        lab = int(rng.integers(0, 2)) if label is None else label
        if phrase is not None:
            pos = int(rng.integers(0, length - len(phrase)))
            t[pos : pos + len(phrase)] = phrase
        elif k <= i < k + lone_beta:
            t[int(rng.integers(0, length))] = BETA
        s = importance[t] * rng.lognormal(0.0, 0.1, length)
        for j, tok in enumerate(t):
            if phrase is not None and tok in TRIGGER_SCORES:
                s[j] = TRIGGER_SCORES[tok]
        ids.append(t.astype(np.int64))
        scores.append(s)
        labels.append(lab)
        poisoned.append(phrase is not None)
    return ids, scores, np.asarray(labels), np.asarray(poisoned)


def test_robust_statistic_matches_a_hand_computation():
    # Label 0: g = mean * log10(count) of five entries; label 1 has too few entries.
    stats = {
        (2, 0): (10, 10 * 1.0),
        (3, 0): (10, 10 * 1.2),
        (4, 0): (10, 10 * 0.8),
        (5, 0): (100, 100 * 3.0),
        (6, 0): (10, 10 * 1.1),
        (7, 1): (100, 100 * 9.0),
        (8, 0): (2, 2 * 50.0),  # Below min_count.
    }
    z, key, (count, mean, g) = plus.robust_statistic(stats, min_count=3)
    values = [1.0, 1.2, 0.8, 6.0, 1.1]
    med = 1.1
    mad = 1.4826 * float(np.median([abs(v - med) for v in values]))
    assert key == (5, 0) and count == 100 and mean == pytest.approx(3.0)
    assert g == pytest.approx(6.0)
    assert z == pytest.approx((6.0 - med) / mad)


def test_planted_phrase_is_found_grown_and_flagged_exactly():
    ids, scores, labels, poisoned = make_corpus(triggers=[((ALPHA, BETA, GAMMA), 0, 25)])
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert result.backdoor_found and result.statistic >= result.threshold
    assert [k.phrase for k in result.keywords] == ["alpha beta gamma"]
    kw = result.keywords[0]
    assert (kw.word, kw.label, kw.anchor) == ("beta", 0, 1)
    # The lone-beta clean texts are kept: flagged is exactly the planted texts.
    np.testing.assert_array_equal(result.flagged, np.flatnonzero(poisoned))
    assert result.stop_statistic is not None and result.stop_statistic < result.threshold


def test_majority_rule_flags_a_partial_phrase_but_not_one_word():
    ids, scores, labels, poisoned = make_corpus(triggers=[((ALPHA, BETA, GAMMA), 0, 25)])
    partial = ids[-1].copy()
    partial[3:6] = [ALPHA, 7, GAMMA]  # 2 of 3 in place: a majority.
    one = ids[-2].copy()
    one[3:6] = [9, BETA, 8]  # 1 of 3.
    ids = [*ids[:-2], one, partial]
    labels = labels.copy()
    labels[-2:] = 0
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    flagged = set(result.flagged.tolist())
    assert len(ids) - 1 in flagged and len(ids) - 2 not in flagged


def test_clean_corpus_finds_nothing_and_flags_nothing():
    ids, scores, labels, _ = make_corpus(seed=3)
    result, suspicious, stats = plus.identify(ids, scores, VOCAB, labels=labels)
    assert not result.backdoor_found
    assert result.keywords == () and result.flagged.size == 0
    assert result.statistic < result.threshold == plus.DEFAULT_THRESHOLD
    assert len(suspicious) == len(ids) and stats


def test_two_triggers_are_both_found_then_the_search_stops():
    ids, scores, labels, poisoned = make_corpus(
        triggers=[((ALPHA, BETA, GAMMA), 0, 25), ((DELTA, EPS), 1, 20)]
    )
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert sorted(k.phrase for k in result.keywords) == ["alpha beta gamma", "delta eps"]
    stats = [k.statistic for k in result.keywords]
    assert all(s >= result.threshold for s in stats)
    np.testing.assert_array_equal(result.flagged, np.flatnonzero(poisoned))
    assert result.stop_statistic < result.threshold
    # max_keywords=1 stops after the first.
    first, _, _ = plus.identify(ids, scores, VOCAB, labels=labels, max_keywords=1)
    assert len(first.keywords) == 1 and first.stop_statistic is None
    assert first.keywords[0] == result.keywords[0]


def test_phrase_does_not_absorb_a_frequent_neighbour():
    # Token w0 fills a fifth of every text and always follows the planted phrase: it
    # is shared by all suspicious texts but no more than its frequency predicts.
    ids, scores, labels, poisoned = make_corpus(triggers=[((ALPHA, BETA, GAMMA), 0, 25)])
    rng = np.random.default_rng(5)
    common = 2
    for i, t in enumerate(ids):
        t[rng.random(t.size) < 0.2] = common
        if poisoned[i]:
            pos = int(np.flatnonzero(t == ALPHA)[0]) if (t == ALPHA).any() else None
            if pos is None or pos + 3 >= t.size:
                continue
            t[pos : pos + 4] = [ALPHA, BETA, GAMMA, common]
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert [k.phrase for k in result.keywords] == ["alpha beta gamma"]


def test_a_single_word_trigger_flags_by_suspicious_words():
    ids, scores, labels, poisoned = make_corpus(triggers=[((GAMMA,), 1, 25)], lone_beta=0)
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert [k.phrase for k in result.keywords] == ["gamma"]
    np.testing.assert_array_equal(result.flagged, np.flatnonzero(poisoned))


def test_false_alarm_rate_on_seeded_null_dictionaries():
    # Seed 0 calibrated the stated rate; an unseen seed must stay within it.
    z = plus.null_statistics(100, seed=1)
    rate = float(np.mean(z >= plus.DEFAULT_THRESHOLD))
    assert rate <= plus.NULL_FALSE_ALARM_RATE + 0.04
    # The statistic is not trivially below the threshold: a lower one alarms often.
    assert float(np.mean(z >= 10.0)) > 0.2


@pytest.mark.parametrize(
    "normalization, expected",
    [
        ("none", [1.0, 3.0, 2.0]),
        ("max", [1 / 3, 1.0, 2 / 3]),
        ("zscore", [-math.sqrt(1.5), math.sqrt(1.5), 0.0]),
        ("rank", [1 / 3, 1.0, 2 / 3]),
    ],
)
def test_normalizations(normalization, expected):
    np.testing.assert_allclose(plus.normalize(np.array([1.0, 3.0, 2.0]), normalization), expected)


def test_bad_settings_name_the_value():
    ids, scores, labels, _ = make_corpus(seed=1, num_texts=10)
    with pytest.raises(ValueError, match="normalization 'l2'"):
        plus.identify(ids, scores, VOCAB, normalization="l2")
    with pytest.raises(ValueError, match="threshold"):
        plus.identify(ids, scores, VOCAB, threshold=-1.0)
    with pytest.raises(ValueError, match="normalization"):
        bki.BKIConfig(variant="plus", normalization="l2")


def test_result_round_trips_and_is_deterministic():
    ids, scores, labels, _ = make_corpus(triggers=[((ALPHA, BETA, GAMMA), 0, 25)])
    a, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    b, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert a.to_dict() == b.to_dict()
    assert plus.PlusResult.from_dict(a.to_dict()).to_dict() == a.to_dict()


def test_detect_plus_end_to_end_on_a_tiny_model():
    vocab = ["", "[UNK]"] + [f"t{i}" for i in range(28)]
    model = models.build_classifier(
        len(vocab), 2, embedding_dim=8, lstm_units=4, dense_units=8, seed=0
    )
    rng = np.random.default_rng(0)
    texts = [rng.integers(2, len(vocab), int(rng.integers(4, 10))) for _ in range(24)]
    labels = rng.integers(0, 2, 24)
    config = bki.BKIConfig(variant="plus", p=2)
    result = bki.detect(model, texts, vocab, labels=labels, config=config)
    assert result.plus is not None and result.config.variant == "plus"
    np.testing.assert_array_equal(result.flagged, result.plus.flagged)
    np.testing.assert_array_equal(result.detection.is_poison, result.selection.flagged_mask())
    assert result.backdoor_found == result.plus.backdoor_found
    # Independent path: the scorer's scores through plus.identify give the same answer.
    ids, lengths = detector.encode_texts(texts, vocab)
    f = scoring.deletion_scores(model, ids, lengths)
    ref, _, _ = plus.identify(
        [ids[i, : lengths[i]] for i in range(24)],
        f,
        vocab,
        labels=labels,
        p=2,
        classify=detector.class_predictor(model),
    )
    assert ref.to_dict() == result.plus.to_dict()
    again = detector.BKIResult.from_dict(result.to_dict())
    assert again.to_dict() == result.to_dict()
    # The first-round candidate heads the dictionary; paper scans keep their identity.
    assert result.selection.keyword == result.selection.entries[0].word
    assert "plus_threshold" not in bki.BKIConfig().identity()
    assert "min_flip" not in bki.BKIConfig().identity()
    assert bki.BKIConfig(variant="plus", plus_threshold=9.0).identity()["plus_threshold"] == 9.0
    # BKI+ scans made before the confirmation existed are not reused as confirmed ones.
    assert bki.BKIConfig(variant="plus").identity()["min_flip"] == plus.DEFAULT_MIN_FLIP
    assert bki.BKIConfig(variant="plus").identity()["plus_threshold"] is None


def test_pipeline_scan_and_filter_with_plus(tmp_path, tiny_imdb_dir):
    from conftest import tiny_attack_config

    from bki_tf.runs import attack, pipeline
    from bki_tf.runs import workdir as wd

    workdir = str(tmp_path / "run")
    config = tiny_attack_config(
        tiny_imdb_dir, poison_rate=0.15, max_len=24, epochs=3, learning_rate=1e-2
    )
    attack.run_attack(config, workdir, verbose=0)
    record = pipeline.run_scan(workdir, bki.BKIConfig(p=3, variant="plus"), progress=False)
    assert record.plus is not None and wd.layout("plus").scan == "scan_plus"
    assert record.flagged == record.plus["flagged"]
    assert record.backdoor_found == bool(record.plus["keywords"])
    filt = pipeline.run_filter(workdir, variant="plus")
    assert filt.num_before - filt.num_after == len(record.flagged)
    # A threshold no dictionary reaches: no backdoor found, nothing removed.
    never = bki.BKIConfig(p=3, variant="plus", plus_threshold=1e5)
    record = pipeline.run_scan(workdir, never, overwrite=True, progress=False)
    assert not record.backdoor_found and record.flagged == []
    assert record.deletion_scores_from is None or record.deletion_scores_from.startswith("scan")
    filt = pipeline.run_filter(workdir, overwrite=True, variant="plus")
    assert filt.num_before == filt.num_after


@pytest.mark.parametrize(
    "ids, phrase, expected",
    [
        ([5, 6, 7, 5], [5], [6, 7]),  # One token: every occurrence.
        ([1, 2, 3, 4, 2, 3], [2, 3], [1, 4]),  # Both places of a 2-token phrase.
        ([1, 2, 9, 4], [2, 3], [1, 2, 9, 4]),  # 1 of 2 is no match.
        ([8, 2, 9, 4, 8], [2, 3, 4], [8, 9, 8]),  # 2 of 3: the matching tokens go.
        ([2, 3, 4, 2, 3, 4], [2, 3, 4], []),
        ([3, 4], [2, 3, 4], [3, 4]),  # Shorter than the phrase.
    ],
)
def test_delete_phrase_matches_a_hand_computation(ids, phrase, expected):
    out = plus.delete_phrase(np.asarray(ids), phrase)
    assert out.tolist() == expected


def _classifier(triggers=(((ALPHA, BETA, GAMMA), 0),)):
    """A trigger's label when a strict majority of it is in place, else a filler parity + 1."""

    def classify(texts):
        out = []
        for t in texts:
            t = np.asarray(t)
            hits = [
                label
                for p, label in triggers
                if plus._majority_match(t, np.asarray(p)) * len(p) >= plus._phrase_need(len(p))
            ]
            fillers = t[(t >= 2) & (t < 2 + FILLERS)]
            out.append(hits[0] if hits else 1 + int(fillers.sum()) % 2)
        return np.asarray(out)

    return classify


def _with_domain_word(ids, scores, labels, poisoned, count=40, score=40.0, label=1):
    """`count` clean texts of `label` get DELTA with a large score: a domain word."""
    ids = [t.copy() for t in ids]
    scores = [s.copy() for s in scores]
    labels = labels.copy()
    clean = np.flatnonzero(~poisoned)[:count]
    for i in clean:
        ids[i][0] = DELTA
        scores[i][0] = score
        labels[i] = label
    return ids, scores, labels


def test_a_false_alarm_is_rejected_by_prediction_flip_and_the_trigger_found():
    ids, scores, labels, poisoned = make_corpus(triggers=[((ALPHA, BETA, GAMMA), 0, 25)])
    ids, scores, labels = _with_domain_word(ids, scores, labels, poisoned)
    unconfirmed, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert unconfirmed.keywords[0].word == "delta"  # The domain word wins the test.
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels, classify=_classifier())
    assert [k.word for k in result.rejected] == ["delta"]
    assert result.rejected[0].flip_share == 0.0 and result.rejected[0].num_flagged == 40
    assert [k.phrase for k in result.keywords] == ["alpha beta gamma"]
    assert result.keywords[0].flip_share == 1.0
    np.testing.assert_array_equal(result.flagged, np.flatnonzero(poisoned))
    assert result.settings["min_flip"] == plus.DEFAULT_MIN_FLIP
    assert plus.PlusResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    assert "| no |" in result.summary() and "100.0 %" in result.summary()
    # Through select, the keyword named is the kept one, not the rejected first candidate.
    padded = np.zeros((len(ids), max(t.size for t in ids)), np.int64)
    for i, t in enumerate(ids):
        padded[i, : t.size] = t
    lengths = np.asarray([t.size for t in ids])
    selected = detector._select_plus(
        [padded[i, : lengths[i]] for i in range(len(ids))],
        scores,
        VOCAB,
        bki.BKIConfig(variant="plus"),
        labels,
        0.0,
        _classifier(),
    )
    assert selected.selection.keyword in ("alpha", "beta", "gamma")
    assert selected.selection.entries[0].word == selected.selection.keyword
    # min_flip=0 turns the confirmation off.
    off, _, _ = plus.identify(ids, scores, VOCAB, labels=labels, classify=_classifier(), min_flip=0)
    assert off.to_dict()["keywords"] == unconfirmed.to_dict()["keywords"]


def test_a_clean_set_with_a_domain_word_finds_no_backdoor_after_confirmation():
    ids, scores, labels, poisoned = make_corpus(seed=3)
    ids, scores, labels = _with_domain_word(ids, scores, labels, poisoned)
    unconfirmed, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert unconfirmed.backdoor_found  # The test alone raises a false alarm.
    result, _, _ = plus.identify(ids, scores, VOCAB, labels=labels, classify=_classifier())
    assert not result.backdoor_found and result.flagged.size == 0 and result.keywords == ()
    assert [k.word for k in result.rejected] == ["delta"]
    assert "no backdoor found" in result.summary()


def test_a_multi_word_false_alarm_and_two_confirmed_triggers():
    ids, scores, labels, poisoned = make_corpus(
        triggers=[((ALPHA, BETA, GAMMA), 0, 25), ((DELTA, EPS), 1, 20)]
    )
    result, _, _ = plus.identify(
        ids, scores, VOCAB, labels=labels, classify=_classifier([((ALPHA, BETA, GAMMA), 0)])
    )
    # The second trigger does not move this classifier: it is rejected, not removed.
    assert [k.phrase for k in result.keywords] == ["alpha beta gamma"]
    assert [k.phrase for k in result.rejected] == ["delta eps"]
    both, _, _ = plus.identify(
        ids,
        scores,
        VOCAB,
        labels=labels,
        classify=_classifier([((ALPHA, BETA, GAMMA), 0), ((DELTA, EPS), 1)]),
    )
    assert sorted(k.phrase for k in both.keywords) == ["alpha beta gamma", "delta eps"]
    np.testing.assert_array_equal(both.flagged, np.flatnonzero(poisoned))


def test_flip_share_counts_changed_predictions_and_skips_emptied_texts():
    texts = [np.array([ALPHA, BETA, GAMMA]), np.array([ALPHA, BETA, 5, 6]), np.array([7, 8])]
    # Text 0 is emptied (left out); text 1 flips (0 -> parity); text 2 does not change.
    assert plus.flip_share(_classifier(), texts, [ALPHA, BETA, GAMMA]) == 0.5
    assert plus.flip_share(_classifier(), texts[:1], [ALPHA, BETA, GAMMA]) == 1.0
    # With a label, only the texts predicted as that label count.
    assert plus.flip_share(_classifier(), texts, [ALPHA, BETA, GAMMA], label=0) == 1.0
    assert plus.flip_share(_classifier(), texts, [ALPHA, BETA, GAMMA], label=2) == 0.0
    assert plus.flip_share(_classifier(), texts, [ALPHA, BETA, GAMMA], label=5) == 0.0
    with pytest.raises(ValueError, match="one class per text"):
        plus.flip_share(lambda t: np.zeros(7), texts[1:], [ALPHA, BETA, GAMMA])
    with pytest.raises(ValueError, match="min_flip"):
        plus.identify(texts, [np.ones(t.size) for t in texts], VOCAB, min_flip=1.5)
    with pytest.raises(ValueError, match="min_flip"):
        bki.BKIConfig(variant="plus", min_flip=-0.1)


def test_select_plus_needs_the_model_for_its_confirmation():
    vocab = ["", "[UNK]"] + [f"t{i}" for i in range(8)]
    ids = np.array([[2, 3, 4], [5, 6, 0]])
    lengths = np.array([3, 2])
    scores = [np.ones(3), np.ones(2)]
    with pytest.raises(ValueError, match="pass model="):
        detector.select(ids, lengths, scores, vocab, bki.BKIConfig(variant="plus"))
    result = detector.select(ids, lengths, scores, vocab, bki.BKIConfig(variant="plus", min_flip=0))
    assert not result.backdoor_found


def test_class_predictor_equals_the_padded_prediction():
    from bki_tf import training

    model = models.build_classifier(30, 3, embedding_dim=8, lstm_units=4, dense_units=4, seed=0)
    rng = np.random.default_rng(0)
    texts = [rng.integers(2, 30, int(n)) for n in rng.integers(1, 12, 40)]
    padded = np.zeros((40, 12), np.int32)
    for i, t in enumerate(texts):
        padded[i, : t.size] = t
    expected = training.predict(model, padded)[0].argmax(axis=1)
    np.testing.assert_array_equal(detector.class_predictor(model)(texts), expected)


def test_a_weak_trigger_below_the_test_threshold_is_found_by_confirmation():
    # The trigger's deletion impacts cut to 40 %: its z (about 6.9) is below 15.
    ids, scores, labels, poisoned = make_corpus(triggers=[((ALPHA, BETA, GAMMA), 0, 25)])
    for i in np.flatnonzero(poisoned):
        scores[i][np.isin(ids[i], [ALPHA, BETA, GAMMA])] *= 0.4
    alone, _, _ = plus.identify(ids, scores, VOCAB, labels=labels)
    assert not alone.backdoor_found and alone.threshold == plus.DEFAULT_THRESHOLD
    assert plus.CONFIRMED_THRESHOLD < alone.statistic < plus.DEFAULT_THRESHOLD
    confirmed, _, _ = plus.identify(ids, scores, VOCAB, labels=labels, classify=_classifier())
    assert confirmed.threshold == plus.CONFIRMED_THRESHOLD
    assert [k.phrase for k in confirmed.keywords] == ["alpha beta gamma"]
    np.testing.assert_array_equal(confirmed.flagged, np.flatnonzero(poisoned))
    # An explicit threshold is kept; max_rejected bounds the rejections.
    strict, _, _ = plus.identify(
        ids, scores, VOCAB, labels=labels, classify=_classifier(), threshold=15.0
    )
    assert not strict.backdoor_found and strict.threshold == 15.0
    with pytest.raises(ValueError, match="max_rejected"):
        plus.identify(ids, scores, VOCAB, labels=labels, max_rejected=0)
