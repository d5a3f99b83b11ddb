"""Tests for bki_tf.baselines.art: ART's poison detectors beside ours (skipped without ART).

The synthetic cases feed known representations through a tiny Keras model whose layer
`features` outputs them, so that ART (which analyses that layer) and our detectors (given
the same matrix) see the same numbers; where ART and ours differ, the test shows the
documented difference on data and checks it against hand-computed values.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import tiny_attack_config, tiny_corpus

pytest.importorskip("art")
pytest.importorskip("sklearn")

from bki_tf import detection, models, tokenization, training  # noqa: E402
from bki_tf.baselines import activation_clustering, spectral_signatures  # noqa: E402
from bki_tf.baselines import art as art_baselines  # noqa: E402
from bki_tf.runs import attack, comparison  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _feature_model(features: np.ndarray, num_classes: int = 2) -> tuple[keras.Model, np.ndarray]:
    """Token id i + 1 -> features[i] (layer `features`) -> dense(4) -> softmax.

    Returns the two-output model (`[probabilities, features]`, like the victim) and the
    `int32 [N, 1]` token ids of the N samples.
    """
    n, d = features.shape
    table = np.concatenate([np.zeros((1, d), np.float32), features.astype(np.float32)])
    tokens = keras.Input(shape=(1,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(
        n + 1, d, embeddings_initializer=keras.initializers.Constant(table), name="embedding"
    )(tokens)
    feats = keras.layers.Flatten(name="features")(x)
    dense = keras.layers.Dense(4, activation="relu", name="dense")(feats)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(dense)
    model = keras.Model(tokens, [probs, feats])
    return model, np.arange(1, n + 1, dtype=np.int32)[:, None]


# PCA in both: ART's FastICA whitens and runs one unseeded k-means, which often misses even
# a far cluster (ours restarts k-means 10 times); with PCA the two should agree.
_PCA = activation_clustering.ActivationClusteringConfig(reduction="pca")


def _clustered_classes():
    """D = 16. Class 0: 48 clean + 12 poison (a far cluster); class 1: 60 samples, one slab
    (uniform along one axis, so that 2-means halves it)."""
    rng = np.random.default_rng(3)
    reps = np.concatenate(
        [
            rng.normal(size=(48, 16)),
            rng.normal(size=(12, 16)) + 6.0,
            np.c_[rng.uniform(-10, 10, size=(60, 1)), rng.normal(size=(60, 15))] + 3.0,
        ]
    ).astype(np.float32)
    classes = np.repeat([0, 1], 60)
    poison = np.zeros(120, bool)
    poison[48:60] = True
    order = rng.permutation(120)
    return reps[order], classes[order], poison[order]


def test_activation_clustering_agrees_with_ours_on_the_same_layer():
    reps, classes, poison = _clustered_classes()
    model, ids = _feature_model(reps)
    ours = activation_clustering.detect(reps, classes, _PCA)
    assert ours.flagged.tolist() == np.flatnonzero(poison).tolist()  # Sanity of the case.

    state = np.random.get_state()
    theirs = art_baselines.activation_clustering(model, ids, classes, _PCA)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1])  # Global RNG restored.

    assert theirs.method == "art_activation_clustering"
    assert theirs.flagged.tolist() == ours.flagged.tolist()
    report = theirs.report
    # ART means the last hidden layer ('dense') but indexes model.layers, which includes the
    # InputLayer: it analyses 'features', the layer our detector was given.
    assert report["layer"] == "features" and report["layer_meant"] == "dense"
    assert report["width"] == 16 and report["reduced"]
    assert report["config"]["reduce"] == "PCA" and report["classes"]["0"]["dims"] == 10
    assert report["config"]["cluster_analysis"] == "relative-size"
    assert report["classes"]["0"]["cluster_sizes"] == [12, 48]
    assert report["classes"]["1"]["poisoned"] is False
    # The flagged cluster's members score highest in their class (score ~ 1 - 12/60).
    assert np.all(theirs.scores[poison] > theirs.scores[(classes == 0) & ~poison].max())
    np.testing.assert_allclose(theirs.scores[poison], 1 - 12 / 60, atol=1 / 120)
    assert detection.evaluate(theirs, poison).f1 == 1.0


def test_art_smaller_analysis_flags_part_of_a_clean_class():
    reps, classes, poison = _clustered_classes()
    model, ids = _feature_model(reps)
    ours = activation_clustering.detect(reps, classes, _PCA)
    smaller = art_baselines.activation_clustering(
        model, ids, classes, _PCA, cluster_analysis="smaller"
    )
    extra = np.setdiff1d(smaller.flagged, ours.flagged)
    assert set(ours.flagged) <= set(smaller.flagged)
    # ART's default analysis flags the smaller 2-means cluster of the clean, one-blob class 1,
    # which ours (relative size 0.35) leaves alone.
    assert extra.size > 0 and np.all(classes[extra] == 1)
    sizes = smaller.report["classes"]["1"]["cluster_sizes"]
    assert extra.size == sizes[0] and sizes[0] / 60 > 0.35
    assert ours.report["classes"]["1"]["poisoned"] is False
    assert smaller.report["classes"]["1"]["poisoned"] is True


def test_art_rule_matches_arts_analyzer_where_that_works():
    from art.defences.detector.poison.clustering_analyzer import ClusteringAnalyzer

    rule = art_baselines._art_rule  # pylint: disable=protected-access
    analyzer = ClusteringAnalyzer()
    rng = np.random.default_rng(0)
    poisoned = np.array([0] * 32 + [1] * 8)
    reduced = np.r_[rng.normal(size=(32, 3)), rng.normal(size=(8, 3)) + 8.0]
    clean_art, _, _ = analyzer.analyze_by_relative_size([poisoned])
    flagged, report = rule("relative-size", poisoned, reduced)
    assert flagged.tolist() == (np.asarray(clean_art[0]) == 0).tolist()
    assert report["suspicious_clusters"] == [1] and flagged.sum() == 8
    # ART 1.20.1 under NumPy 2 raises on a class without a suspicious cluster (the reason for
    # the rule); if it does not (a fixed ART), it must agree with the rule.
    balanced = np.array([0] * 20 + [1] * 20)
    flagged, _ = rule("relative-size", balanced, rng.normal(size=(40, 3)))
    assert not flagged.any()
    try:
        clean_art, _, _ = analyzer.analyze_by_relative_size([balanced])
    except ValueError as e:
        assert "truth value of an empty array" in str(e)
    else:
        assert np.all(np.asarray(clean_art[0]) == 1)
    # Silhouette: ART sets the suspicious cluster's decisions (the others are uninitialised).
    sil_art, _, _ = analyzer.analyze_by_silhouette_score([poisoned], [reduced])
    flagged, report = rule("silhouette-scores", poisoned, reduced)
    assert report["avg_silhouette_score"] > 0.1
    assert flagged.tolist() == (poisoned == 1).tolist()
    assert np.all(np.asarray(sil_art[0])[poisoned == 1] == 0)


def _signature_classes():
    """Class 0: 37 clean + 3 poison along v = e_0, offset R_hat . v ~ 10; class 1: 6 samples."""
    rng = np.random.default_rng(1)
    d = 8
    t = np.r_[rng.normal(size=37), [-6.0, -6.2, -5.8]]
    class0 = 0.05 * rng.normal(size=(40, d))
    class0[:, 0] += 10.0 + t
    class0[:, 1] += 3.0
    class1 = rng.normal(size=(6, d))
    reps = np.concatenate([class0, class1]).astype(np.float32)
    classes = np.r_[np.zeros(40, int), np.ones(6, int)]
    poison = np.zeros(46, bool)
    poison[37:40] = True
    return reps, classes, poison


def _top_direction(x):
    x = np.asarray(x, np.float64)
    return np.linalg.svd(x - x.mean(axis=0), full_matrices=False)[2][0]


def test_spectral_signatures_uncentred_score_differs_and_centring_makes_them_agree():
    reps, classes, poison = _signature_classes()
    config = spectral_signatures.SpectralSignaturesConfig(poison_rate_bound=0.05)
    c0, c1 = np.flatnonzero(classes == 0), np.flatnonzero(classes == 1)

    ours = spectral_signatures.detect(reps, classes, config)
    assert ours.flagged.tolist() == np.flatnonzero(poison).tolist()  # round(1.5*.05*40) = 3.
    model, ids = _feature_model(reps)
    theirs = art_baselines.spectral_signatures(model, ids, classes, config)
    assert theirs.report["layer"] == "features"
    # ART scores |<R_i, v>| of the uncentred R_i: with R_hat . v ~ 10 the poison (t ~ -6) scores
    # *lowest*, and ART removes the three clean samples of largest t instead.
    by_hand = np.abs(reps[c0] @ _top_direction(reps[c0]))
    np.testing.assert_allclose(theirs.scores[c0], by_hand, rtol=1e-4)
    assert theirs.flagged[classes[theirs.flagged] == 0].tolist() == sorted(
        c0[np.argsort(-by_hand)[:3]].tolist()
    )
    assert not theirs.is_poison[poison].any()
    assert detection.evaluate(theirs, poison).recall == 0.0
    # Removal count: round(1.5 * 0.05 * 6) = 0 for ours; ART's quantile cut always removes
    # the top score of a non-empty class.
    assert not ours.is_poison[c1].any()
    assert theirs.flagged[classes[theirs.flagged] == 1].tolist() == [
        c1[np.argmax(theirs.scores[c1])]
    ]

    # Centre each class: R_hat . v = 0, so |<R_i, v>|^2 is our tau and the rankings agree.
    centred = reps.copy()
    for rows in (c0, c1):
        centred[rows] -= centred[rows].mean(axis=0)
    model, ids = _feature_model(centred)
    theirs_c = art_baselines.spectral_signatures(model, ids, classes, config)
    for rows in (c0, c1):
        np.testing.assert_allclose(
            theirs_c.scores[rows] ** 2,
            spectral_signatures.outlier_scores(centred[rows]),
            rtol=1e-3,
            atol=1e-8,
        )
    assert theirs_c.flagged[classes[theirs_c.flagged] == 0].tolist() == ours.flagged.tolist()
    assert theirs_c.is_poison[c1].sum() == 1  # The count rule still differs.


@pytest.fixture(scope="module")
def tiny_victim():
    texts, labels = tiny_corpus(2, 20, seed=4)
    vectorizer = tokenization.build_vectorizer(texts, vocab_size=30, max_len=12)
    ids, _ = tokenization.encode(vectorizer, texts)
    model = models.build_classifier(
        vocab_size=30, num_classes=2, embedding_dim=8, lstm_units=4, dense_units=4, seed=0
    )
    return model, ids, labels


def test_adapter_on_a_build_classifier_victim(tiny_victim):
    model, ids, labels = tiny_victim
    ac = art_baselines.activation_clustering(model, ids, labels)
    ss = art_baselines.spectral_signatures(model, ids, labels)
    for result, name in ((ac, "art_activation_clustering"), (ss, "art_spectral_signatures")):
        assert isinstance(result, detection.DetectionResult) and result.method == name
        assert result.scores.shape == (40,) and result.is_poison.dtype == bool
        assert np.all(np.isfinite(result.scores)) and 0 < result.is_poison.sum() < 40
        # ART analyses the BiLSTM state 'hidden' (it means 'dense', see the module docstring).
        assert result.report["layer"] == "hidden" and result.report["layer_meant"] == "dense"
        assert result.report["width"] == 8
        assert json.loads(json.dumps(result.to_dict()))["method"] == name
        assert result.report["differences"]
    assert sum(c["size"] for c in ac.report["classes"].values()) == 40
    assert not ac.report["reduced"]  # 8 units <= nb_dims = 10: ART does not reduce.
    # SS scores are |<h_i, v>| of the hidden states our own (length-bucketed) predict gives.
    _, hidden = training.predict(model, ids)
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        by_hand = np.abs(hidden[rows] @ _top_direction(hidden[rows]))
        np.testing.assert_allclose(ss.scores[rows], by_hand, rtol=1e-3, atol=1e-6)


def test_adapter_errors(tiny_victim):
    model, ids, labels = tiny_victim
    left = ids.copy()
    left[0] = np.r_[0, ids[0, :-1]]
    if left[0, 1] != 0:
        with pytest.raises(ValueError, match=r"token_ids\[0\].*right-padded"):
            art_baselines.spectral_signatures(model, left, labels)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 2\)"):
        art_baselines.spectral_signatures(model, ids, labels + 1)
    with pytest.raises(ValueError, match="non-negative integers"):
        art_baselines.activation_clustering(model, ids.astype(np.float32), labels)
    with pytest.raises(ValueError, match="Unknown ART cluster_analysis 'size'"):
        art_baselines.activation_clustering(model, ids, labels, cluster_analysis="size")


def test_core_does_not_import_art_and_missing_art_says_how_to_install():
    code = (
        "import sys\n"
        "import bki_tf, bki_tf.runs.comparison, bki_tf.baselines.art as a\n"
        "assert 'art' not in sys.modules, 'ART imported eagerly'\n"
        "sys.modules['art'] = None\n"
        "try:\n"
        "    a.require_art()\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "install the extra: pip install -e '.[art]'" in done.stdout


def test_compare_flag_sets_config():
    from absl.testing import flagsaver

    from experiments import compare

    with flagsaver.flagsaver(art=True):
        assert compare._config().art is True  # pylint: disable=protected-access
    assert compare._config().art is False  # pylint: disable=protected-access


def test_run_comparison_adds_the_art_rows(tiny_imdb_dir, tmp_path):
    workdir = str(tmp_path / "run")
    attack.run_attack(tiny_attack_config(tiny_imdb_dir), workdir, verbose=0)
    run = attack.load_run(workdir)
    config = comparison.CompareConfig(
        defences=("activation_clustering", "spectral_signatures"), retrain=False, art=True
    )
    assert comparison.CompareConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    result = comparison.run_comparison(run, config)
    names = [r.defence for r in result.rows]
    assert names == [
        "activation_clustering",
        "spectral_signatures",
        "art_activation_clustering",
        "art_spectral_signatures",
    ]
    truth = np.asarray(run.train.is_poisoned)
    for row in result.rows[2:]:
        det = result.detections[row.defence]
        assert det.num_samples == len(run.train)
        ev = detection.evaluate(det, truth)  # Measured like ours: the same metrics.
        assert row.kind == "sanitizer" and row.removed_share == pytest.approx(ev.removed_share)
        assert row.auroc == (None if np.isnan(ev.auroc) else pytest.approx(ev.auroc))
        assert row.asr_after is None and row.evaluated_on == "not retrained"
        assert row.asr_before == pytest.approx(run.metrics.asr)
        assert row.details["report"]["layer"] == "hidden"
        assert any(row.defence in n and "not retrained" in n for n in result.notes)
    paths = comparison.write_comparison(result, str(tmp_path / "compare"))
    md = open(paths["comparison.md"]).read()
    assert "| art_activation_clustering | sanitizer |" in md
    assert "art_spectral_signatures: ART 1.20" in md or "art_spectral_signatures: ART" in md
    assert os.path.isfile(str(tmp_path / "compare" / "art_spectral_signatures" / "detection.json"))
