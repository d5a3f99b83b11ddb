"""Tests for bki_tf.bki.keywords: hand-computed BKI dictionaries and independent references."""

import json
import math

import numpy as np
import pytest

from bki_tf.bki import keywords

# id:       0    1        2    3    4     5    6    7       8
VOCAB = ["", "[UNK]", "a", "b", "cf", "d", "e", "good", "movie"]
A, B, CF, D, E, GOOD, MOVIE = 2, 3, 4, 5, 6, 7, 8
UNK, PAD = 1, 0


def _f32(values):
    return np.asarray(values, dtype=np.float32)


def _v(x):
    """The float64 value of a float32 score, as the module sees it."""
    return float(np.float32(x))


def _ids(values):
    return np.asarray(values, dtype=np.int64)


def _entry_map(result):
    return {(e.word, e.label): e for e in result.entries}


# ---------------------------------------------------------------------------
# Paper variant (Algorithm 1).


def _paper_table():
    token_ids = [
        _ids([A, CF, B]),  # top-2: cf 0.9, b 0.2
        _ids([CF, D, UNK]),  # OOV skipped despite 5.0: cf 0.7, d 0.3
        _ids([A, B, D, E]),  # a 0.5, then b/d tie at 0.4 -> b (earlier)
        _ids([E, CF]),  # cf 0.8, e 0.2
        _ids([]),  # empty: nothing
        _ids([UNK, PAD, D]),  # only d is a candidate: d 0.6
    ]
    scores = [
        _f32([0.1, 0.9, 0.2]),
        _f32([0.7, 0.3, 5.0]),
        _f32([0.5, 0.4, 0.4, 0.1]),
        _f32([0.2, 0.8]),
        _f32([]),
        _f32([3.0, 9.0, 0.6]),
    ]
    return token_ids, scores


def test_paper_hand_computed_dictionary_keyword_and_flags():
    token_ids, scores = _paper_table()
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=2)

    cf_mean = (_v(0.9) + _v(0.7) + _v(0.8)) / 3
    d_mean = (_v(0.3) + _v(0.6)) / 2
    b_mean = (_v(0.2) + _v(0.4)) / 2
    expected = [  # word, count, mean, g, in ranking order
        ("cf", 3, cf_mean, cf_mean * math.log10(3)),
        ("d", 2, d_mean, d_mean * math.log10(2)),
        ("b", 2, b_mean, b_mean * math.log10(2)),
        ("a", 1, _v(0.5), 0.0),  # g ties at 0 with count 1: lexicographic order
        ("e", 1, _v(0.2), 0.0),
    ]
    assert [e.word for e in result.entries] == [w for w, *_ in expected]
    for entry, (word, count, mean, g) in zip(result.entries, expected):
        assert entry.count == count, word
        assert entry.mean == pytest.approx(mean, rel=1e-12), word
        assert entry.g == pytest.approx(g, rel=1e-12, abs=1e-15), word
        assert entry.label is None and entry.ngram == 1
    assert result.keyword == "cf"
    assert result.keyword_label is None
    assert result.keyword_g == pytest.approx(cf_mean * math.log10(3))
    assert not result.degenerate
    np.testing.assert_array_equal(result.flagged, [0, 1, 3])
    assert result.flagged.dtype == np.int64
    assert result.suspicious[0] == (("cf", _v(0.9)), ("b", _v(0.2)))
    assert result.suspicious[2] == (("a", _v(0.5)), ("b", _v(0.4)))
    assert result.suspicious[4] == ()
    assert result.suspicious[5] == (("d", _v(0.6)),)
    assert result.num_texts == 6


def test_paper_oov_and_padding_are_never_candidates():
    # OOV and padding carry by far the largest scores in every text.
    token_ids = [_ids([UNK, A, PAD, B]) for _ in range(6)] + [_ids([UNK, UNK])]
    scores = [_f32([10.0, 0.2, 10.0, 0.1]) for _ in range(6)] + [_f32([10.0, 10.0])]
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=1)
    words = {e.word for e in result.entries}
    assert words == {"a"}
    assert result.keyword == "a"
    assert all(w not in ("", "[UNK]") for text in result.suspicious for w, _ in text)
    assert result.suspicious[-1] == ()
    np.testing.assert_array_equal(result.flagged, np.arange(6))


def test_paper_repeated_word_in_one_text_counts_per_position():
    token_ids = [_ids([A, B, A]), _ids([A])]
    scores = [_f32([0.9, 0.1, 0.5]), _f32([0.3])]
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=2)
    a = _entry_map(result)[("a", None)]
    assert a.count == 3
    assert a.mean == pytest.approx((_v(0.9) + _v(0.5) + _v(0.3)) / 3, rel=1e-12)
    assert result.suspicious[0] == (("a", _v(0.9)), ("a", _v(0.5)))


def _reference_paper(token_ids, scores, vocab, p):
    """Literal Algorithm 1 with a Python sort; means from np.mean, not a running mean."""
    selected_scores = {}
    selected = []
    for ids, f in zip(token_ids, scores):
        cands = sorted(
            ((-float(f[j]), j) for j in range(len(ids)) if ids[j] > 1),
        )[:p]
        chosen = [int(ids[j]) for _, j in cands]
        selected.append(chosen)
        for neg, j in cands:
            selected_scores.setdefault(vocab[ids[j]], []).append(-neg)
    table = {
        w: (len(v), float(np.mean(v)), float(np.mean(v)) * math.log10(len(v)))
        for w, v in selected_scores.items()
    }
    return table, selected


@pytest.mark.parametrize("p", [1, 3, 5])
def test_paper_running_mean_matches_reference_on_random_tables(p):
    rng = np.random.default_rng(p)
    vocab = ["", "[UNK]"] + [f"w{i:02d}" for i in range(20)]
    token_ids = [rng.integers(0, len(vocab), size=rng.integers(0, 12)) for _ in range(60)]
    scores = [rng.random(len(ids)).astype(np.float32) for ids in token_ids]
    result = keywords.identify_keyword(token_ids, scores, vocab, p=p)
    table, selected = _reference_paper(token_ids, scores, vocab, p)

    assert {e.word for e in result.entries} == set(table)
    for e in result.entries:
        count, mean, g = table[e.word]
        assert e.count == count
        assert e.mean == pytest.approx(mean, rel=1e-9)
        assert e.g == pytest.approx(g, rel=1e-9, abs=1e-12)
    best_word = min(table, key=lambda w: (-table[w][2], -table[w][0], w))
    assert result.keyword == best_word
    best_id = vocab.index(result.keyword)
    expected_flags = [i for i, chosen in enumerate(selected) if best_id in chosen]
    np.testing.assert_array_equal(result.flagged, expected_flags)
    for text, chosen in zip(result.suspicious, selected):
        assert [w for w, _ in text] == [vocab[t] for t in chosen]


def test_paper_fewer_tokens_than_p_keeps_all_and_large_p_is_fine():
    token_ids = [_ids([A, B]), _ids([A])]
    scores = [_f32([0.1, 0.2]), _f32([0.3])]
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=50)
    assert result.suspicious[0] == (("b", _v(0.2)), ("a", _v(0.1)))
    assert _entry_map(result)[("a", None)].count == 2
    assert result.keyword == "a"


def test_paper_ties_in_score_go_to_the_earlier_position():
    result = keywords.identify_keyword([_ids([B, A])], [_f32([0.5, 0.5])], VOCAB, p=1)
    assert result.suspicious[0] == (("b", 0.5),)


def test_paper_equal_g_prefers_higher_count():
    # g(a) = 1.0 * log10(10) = 1.0 and g(b) = 0.5 * log10(100) = 1.0, both exact.
    token_ids = [_ids([A])] * 10 + [_ids([B])] * 100
    scores = [_f32([1.0])] * 10 + [_f32([0.5])] * 100
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=1)
    assert result.entries[0].g == result.entries[1].g == 1.0
    assert result.keyword == "b"
    np.testing.assert_array_equal(result.flagged, np.arange(10, 110))


def test_paper_equal_g_and_count_is_lexicographic():
    token_ids = [_ids([E]), _ids([E]), _ids([A]), _ids([A])]
    scores = [_f32([0.5])] * 4
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=1)
    assert [e.word for e in result.entries] == ["a", "e"]
    np.testing.assert_array_equal(result.flagged, [2, 3])


def test_paper_all_counts_one_is_degenerate_but_deterministic():
    token_ids = [_ids([E]), _ids([B]), _ids([D])]
    scores = [_f32([0.9]), _f32([0.1]), _f32([0.5])]
    result = keywords.identify_keyword(token_ids, scores, VOCAB, p=1)
    assert result.keyword == "b"  # every g is 0 and every count 1: lexicographic
    assert result.keyword_g == 0.0
    assert result.degenerate
    assert "WARNING" in result.summary()
    assert result.to_dict()["degenerate"] is True


def test_paper_is_deterministic_and_accepts_lists():
    token_ids, scores = _paper_table()
    first = keywords.identify_keyword(token_ids, scores, VOCAB, p=2).to_dict()
    second = keywords.identify_keyword(
        [t.tolist() for t in token_ids], [s.tolist() for s in scores], tuple(VOCAB), p=2
    ).to_dict()
    assert first["keyword"] == second["keyword"]
    assert first["flagged"] == second["flagged"]
    assert [e["word"] for e in first["entries"]] == [e["word"] for e in second["entries"]]
    again = keywords.identify_keyword(token_ids, scores, VOCAB, p=2).to_dict()
    assert again == first


def test_paper_ignores_labels_and_local_scores():
    token_ids, scores = _paper_table()
    plain = keywords.identify_keyword(token_ids, scores, VOCAB, p=2).to_dict()
    extra = keywords.identify_keyword(
        token_ids,
        scores,
        VOCAB,
        p=2,
        labels=np.zeros(6, np.int64),
        local_scores=[np.ones_like(s) * 9 for s in scores],
    ).to_dict()
    assert plain == extra


# ---------------------------------------------------------------------------
# Refined variant (authors' code).

# id:             0    1        2     3      4    5     6       7
REFINED_VOCAB = ["", "[UNK]", "tf", "la", "good", "bad", "movie", "x"]
TF, LA, RGOOD, BAD, RMOVIE, X = 2, 3, 4, 5, 6, 7


def _refined_table():
    # Dyadic scores, so that float32 storage and float64 sums are exact and ties are real.
    token_ids = [
        _ids([TF, LA, RGOOD]),
        _ids([RMOVIE, TF, LA]),
        _ids([TF, LA]),
        _ids([RGOOD, RMOVIE, UNK]),
        _ids([BAD, BAD, TF, LA]),
    ]
    scores = [
        _f32([0.5, 0.25, 0.125]),
        _f32([0.125, 0.5, 0.5]),
        _f32([0.25, 0.25]),
        _f32([0.375, 0.125, 2.0]),
        _f32([0.5, 0.5, 0.25, 0.375]),
    ]
    local = [
        _f32([0.125, 0.375, 0.0]),
        _f32([0.0, 0.25, 0.5]),
        _f32([0.125, 0.125]),
        _f32([0.125, 0.0, 2.0]),
        _f32([0.0, 0.25, 0.0, 0.375]),
    ]
    labels = np.array([0, 0, 1, 1, 0])
    return token_ids, scores, local, labels


def test_refined_hand_computed_keyword_label_and_flags():
    token_ids, scores, local, labels = _refined_table()
    result = keywords.identify_keyword(
        token_ids,
        scores,
        REFINED_VOCAB,
        p=1,
        variant="refined",
        labels=labels,
        local_scores=local,
        max_ngram=2,
        alpha=1.0,
    )
    s = 25  # round((1.0 * 5) ** 2)
    assert result.s == s
    # Combined scores c and the best window of each size (p = 1):
    # text 0 (label 0): c=[.625,.625,.125]; 1: "tf" (tie -> earlier); 2: "tf la" .625
    # text 1 (label 0): c=[.125,.75,1]; 1: "la" 1; 2: "tf la" .875
    # text 2 (label 1): c=[.375,.375]; 1: "tf" .375; 2: "tf la" .375
    # text 3 (label 1): c=[.5,.125,4]; 1: "good" .5 (OOV skipped); 2: "good movie" .3125
    # text 4 (label 0): c=[.5,.75,.25,.75]; 1: "bad" (tie with "la"); 2: "bad bad" .625
    tf_la_0 = (0.625 + 0.875) / 2
    expected_g = tf_la_0 * math.log10(2) * math.log10(s / 2)
    assert result.keyword == "tf la"
    assert result.keyword_label == 0
    assert result.keyword_entry.count == 2
    assert result.keyword_entry.ngram == 2
    assert result.keyword_entry.mean == tf_la_0
    assert result.keyword_g == pytest.approx(expected_g, rel=1e-12)
    # Text 2 selects "tf la" but under label 1; text 4 contains it but does not select it.
    np.testing.assert_array_equal(result.flagged, [0, 1])
    # All other keys have count 1, so g = 0; ties resolved by word, then label.
    rest = [(e.word, e.label) for e in result.entries[1:]]
    assert rest == [
        ("bad", 0),
        ("bad bad", 0),
        ("good", 1),
        ("good movie", 1),
        ("la", 0),
        ("tf", 0),
        ("tf", 1),
        ("tf la", 1),
    ]
    assert all(e.g == 0.0 for e in result.entries[1:])
    assert [w for w, _ in result.suspicious[3]] == ["good", "good movie"]
    assert result.suspicious[1] == (("la", 1.0), ("tf la", 0.875))
    assert result.suspicious[4] == (("bad", 0.75), ("bad bad", 0.625))


def test_refined_counts_a_key_once_per_text_with_averaged_scores():
    token_ids = [_ids([X, TF, X]), _ids([X])]
    scores = [_f32([0.9, 0.1, 0.5]), _f32([0.3])]
    local = [np.zeros(3, np.float32), np.zeros(1, np.float32)]
    result = keywords.identify_keyword(
        token_ids,
        scores,
        REFINED_VOCAB,
        p=2,
        variant="refined",
        labels=[1, 1],
        local_scores=local,
        max_ngram=1,
        alpha=5.0,
    )
    x = _entry_map(result)[("x", 1)]
    assert x.count == 2
    assert x.mean == pytest.approx(((_v(0.9) + _v(0.5)) / 2 + _v(0.3)) / 2, rel=1e-12)
    assert result.s == 100
    assert x.g == pytest.approx(x.mean * math.log10(2) * math.log10(50), rel=1e-12)


def test_refined_penalises_keys_more_frequent_than_sqrt_s():
    # "x" is the top word in all 20 texts; "tf" in 2 of them. s = round((0.2*20)^2) = 16,
    # so log10(16/20) < 0 for "x" while "tf" gets log10(2) * log10(8) > 0.
    token_ids = [_ids([X, TF])] * 2 + [_ids([X, RGOOD])] * 18
    scores = [_f32([0.9, 0.5])] * 20
    local = [np.zeros(2, np.float32)] * 20
    result = keywords.identify_keyword(
        token_ids,
        scores,
        REFINED_VOCAB,
        p=2,
        variant="refined",
        labels=np.zeros(20, np.int64),
        local_scores=local,
        max_ngram=1,
        alpha=0.2,
    )
    assert result.s == 16
    x = _entry_map(result)[("x", 0)]
    assert x.g < 0
    assert result.keyword == "tf"
    np.testing.assert_array_equal(result.flagged, [0, 1])
    paper = keywords.identify_keyword(token_ids, scores, REFINED_VOCAB, p=2)
    assert paper.keyword == "x"  # the paper's ranking has no frequency penalty


def _reference_refined(token_ids, scores, local, labels, vocab, p, sizes, s):
    """Dictionary built the way the authors' code does, with Python sorts and loops."""
    dic = {}
    text_keys = []
    for ids, f, lo, label in zip(token_ids, scores, local, labels):
        c = [float(a) + float(b) for a, b in zip(f, lo)]
        picks = []
        for n in sizes:
            windows = [
                (-sum(c[k : k + n]) / n, k)
                for k in range(len(ids) - n + 1)
                if all(t > 1 for t in ids[k : k + n])
            ]
            picks += [
                (tuple(int(t) for t in ids[k : k + n]), -neg) for neg, k in sorted(windows)[:p]
            ]
        w_d = {}
        for gram, v in picks:
            w_d.setdefault(gram, []).append(v)
        text_keys.append((set(w_d), int(label)))
        for gram, vs in w_d.items():
            key = (gram, int(label))
            count, total = dic.get(key, (0, 0.0))
            dic[key] = (count + 1, total + sum(vs) / len(vs))
    table = {}
    for (gram, label), (count, total) in dic.items():
        mean = total / count
        word = " ".join(vocab[t] for t in gram)
        table[(word, label)] = (count, mean, mean * math.log10(count) * math.log10(s / count))
    return table, text_keys


@pytest.mark.parametrize("min_ngram,max_ngram", [(1, 1), (1, 3), (2, 2)])
def test_refined_matches_reference_on_random_tables(min_ngram, max_ngram):
    rng = np.random.default_rng(10 * min_ngram + max_ngram)
    vocab = ["", "[UNK]"] + [f"w{i}" for i in range(6)]
    n_texts = 80
    token_ids = [rng.integers(1, len(vocab), size=rng.integers(0, 9)) for _ in range(n_texts)]
    scores = [rng.random(len(ids)).astype(np.float32) for ids in token_ids]
    local = [rng.random(len(ids)).astype(np.float32) for ids in token_ids]
    labels = rng.integers(0, 3, size=n_texts)
    result = keywords.identify_keyword(
        token_ids,
        scores,
        vocab,
        p=2,
        variant="refined",
        labels=labels,
        local_scores=local,
        max_ngram=max_ngram,
        min_ngram=min_ngram,
        alpha=0.1,
    )
    s = round((0.1 * n_texts) ** 2)
    table, text_keys = _reference_refined(
        token_ids, scores, local, labels, vocab, 2, range(min_ngram, max_ngram + 1), s
    )
    assert result.s == s
    assert set(_entry_map(result)) == set(table)
    for e in result.entries:
        count, mean, g = table[(e.word, e.label)]
        assert e.count == count
        assert e.mean == pytest.approx(mean, rel=1e-9)
        assert e.g == pytest.approx(g, rel=1e-9, abs=1e-12)
    gs = [e.g for e in result.entries]
    assert gs == sorted(gs, reverse=True)
    gram = tuple(vocab.index(w) for w in result.keyword.split(" "))
    expected = [
        i for i, (keys, lab) in enumerate(text_keys) if lab == result.keyword_label and gram in keys
    ]
    np.testing.assert_array_equal(result.flagged, expected)


def test_refined_ngrams_skip_oov_and_short_texts():
    token_ids = [_ids([TF, UNK, LA]), _ids([TF])]
    scores = [_f32([0.1, 5.0, 0.2]), _f32([0.4])]
    local = [_f32([0.0, 5.0, 0.0]), _f32([0.0])]
    result = keywords.identify_keyword(
        token_ids,
        scores,
        REFINED_VOCAB,
        p=5,
        variant="refined",
        labels=[0, 0],
        local_scores=local,
        max_ngram=3,
        alpha=2.0,
    )
    # No window of size 2 or 3 is OOV-free in text 0; text 1 is too short for them.
    assert [w for w, _ in result.suspicious[0]] == ["la", "tf"]
    assert [w for w, _ in result.suspicious[1]] == ["tf"]
    assert result.keyword == "tf"


# ---------------------------------------------------------------------------
# Result dataclasses.


def test_to_dict_is_json_and_round_trips():
    token_ids, scores, local, labels = _refined_table()
    for result in (
        keywords.identify_keyword(*_paper_table(), VOCAB, p=2),
        keywords.identify_keyword(
            token_ids,
            scores,
            REFINED_VOCAB,
            p=1,
            variant="refined",
            labels=labels,
            local_scores=local,
            max_ngram=2,
            alpha=1.0,
        ),
    ):
        d = result.to_dict()
        text = json.dumps(d, allow_nan=False)
        again = keywords.KeywordResult.from_dict(json.loads(text))
        assert again.to_dict() == d
        assert len(d["entries"]) == len(result.entries)
        assert len(d["suspicious"]) == result.num_texts


def test_summary_and_top():
    vocab = ["", "[UNK]"] + [f"w{i:02d}" for i in range(30)]
    token_ids = [_ids([i]) for i in range(2, 32)] * 2
    scores = [_f32([0.01 * i]) for i in range(2, 32)] * 2
    result = keywords.identify_keyword(token_ids, scores, vocab, p=1)
    assert result.keyword == "w29"
    assert [e.word for e in result.top(3)] == ["w29", "w28", "w27"]
    assert result.top(0) == ()
    table = result.summary()
    assert "**w29**" in table
    assert "| rank | word | label | count | mean | g |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(rows) == 20
    assert "WARNING" not in table
    np.testing.assert_array_equal(result.flagged_mask().nonzero()[0], result.flagged)


def test_keyword_result_validation():
    entry = keywords.KeywordEntry("a", 2, 0.5, 0.5 * math.log10(2))
    base = dict(
        variant="paper",
        p=1,
        keyword="a",
        keyword_label=None,
        entries=(entry,),
        suspicious=((("a", 0.5),), (("a", 0.5),)),
        flagged=np.array([0, 1]),
    )
    keywords.KeywordResult(**base)
    with pytest.raises(ValueError, match="sorted"):
        keywords.KeywordResult(**{**base, "flagged": np.array([1, 0])})
    with pytest.raises(ValueError, match="sorted"):
        keywords.KeywordResult(**{**base, "flagged": np.array([0, 2])})
    with pytest.raises(ValueError, match="best entry"):
        keywords.KeywordResult(**{**base, "keyword": "b"})
    with pytest.raises(ValueError, match="variant"):
        keywords.KeywordResult(**{**base, "variant": "magic"})
    with pytest.raises(ValueError, match="labels"):
        keywords.KeywordResult(**{**base, "variant": "refined"})
    with pytest.raises(ValueError, match="count"):
        keywords.KeywordEntry("a", 0, 0.5, 0.0)
    with pytest.raises(ValueError, match="finite"):
        keywords.KeywordEntry("a", 1, float("nan"), 0.0)


# ---------------------------------------------------------------------------
# Errors of identify_keyword.


def _refined_kwargs():
    token_ids, scores, local, labels = _refined_table()
    return dict(
        token_ids=token_ids,
        scores=scores,
        vocabulary=REFINED_VOCAB,
        variant="refined",
        labels=labels,
        local_scores=local,
        alpha=1.0,
    )


@pytest.mark.parametrize("p", [0, -1, 1.5, True])
def test_bad_p_raises(p):
    with pytest.raises(ValueError, match="p "):
        keywords.identify_keyword(*_paper_table(), VOCAB, p=p)


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="'bki2'"):
        keywords.identify_keyword(*_paper_table(), VOCAB, variant="bki2")


def test_empty_training_set_raises():
    with pytest.raises(ValueError, match="empty training set"):
        keywords.identify_keyword([], [], VOCAB)


def test_mismatched_lengths_name_the_text():
    token_ids, scores = _paper_table()
    bad = list(scores)
    bad[3] = _f32([0.1])
    with pytest.raises(ValueError, match=r"scores\[3\]"):
        keywords.identify_keyword(token_ids, bad, VOCAB)
    with pytest.raises(ValueError, match="scores arrays"):
        keywords.identify_keyword(token_ids, scores[:-1], VOCAB)
    kwargs = _refined_kwargs()
    kwargs["local_scores"] = list(kwargs["local_scores"])
    kwargs["local_scores"][2] = _f32([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"local_scores\[2\]"):
        keywords.identify_keyword(**kwargs)


def test_bad_ids_and_scores_name_the_text():
    token_ids, scores = _paper_table()
    ids = list(token_ids)
    ids[1] = _ids([A, 99, B])
    with pytest.raises(ValueError, match=r"token_ids\[1\].*99"):
        keywords.identify_keyword(ids, scores, VOCAB)
    ids[1] = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"token_ids\[1\]"):
        keywords.identify_keyword(ids, scores, VOCAB)
    nan_scores = list(scores)
    nan_scores[2] = _f32([0.1, np.nan, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"scores\[2\].*NaN"):
        keywords.identify_keyword(token_ids, nan_scores, VOCAB)


@pytest.mark.parametrize("missing", ["labels", "local_scores"])
def test_refined_requires_labels_and_local_scores(missing):
    kwargs = _refined_kwargs()
    kwargs[missing] = None
    with pytest.raises(ValueError, match=missing):
        keywords.identify_keyword(**kwargs)


def test_refined_parameter_errors():
    with pytest.raises(ValueError, match="labels must be 5 integers"):
        keywords.identify_keyword(**{**_refined_kwargs(), "labels": [0, 1]})
    with pytest.raises(ValueError, match="labels must be 5 integers"):
        keywords.identify_keyword(**{**_refined_kwargs(), "labels": [0.0, 1.0, 0.0, 1.0, 0.0]})
    with pytest.raises(ValueError, match="alpha"):
        keywords.identify_keyword(**{**_refined_kwargs(), "alpha": 0.05})  # s = round(0.0625) = 0
    with pytest.raises(ValueError, match="alpha"):
        keywords.identify_keyword(**{**_refined_kwargs(), "alpha": -1.0})
    with pytest.raises(ValueError, match="max_ngram"):
        keywords.identify_keyword(**{**_refined_kwargs(), "max_ngram": 0})
    with pytest.raises(ValueError, match="min_ngram"):
        keywords.identify_keyword(**{**_refined_kwargs(), "min_ngram": 3, "max_ngram": 2})


def test_no_candidates_raises():
    with pytest.raises(ValueError, match="No candidate"):
        keywords.identify_keyword([_ids([UNK, PAD]), _ids([])], [_f32([1, 2]), _f32([])], VOCAB)
