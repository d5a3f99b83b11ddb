"""Tests for bki_tf.baselines.activation_clustering on synthetic representations with known poison."""

import itertools

import numpy as np
import pytest

from bki_tf import detection
from bki_tf.baselines import activation_clustering as ac


def _poisoned_representations(seed=0, n_clean=120, n_poison=15, dim=32):
    """Class 0: clean blob + a shifted poison blob; class 1: one clean blob."""
    rng = np.random.default_rng(seed)
    shift = np.zeros(dim)
    shift[:4] = 6.0
    clean0 = rng.normal(size=(n_clean, dim))
    poison = rng.normal(size=(n_poison, dim)) + shift
    clean1 = rng.normal(size=(n_clean, dim)) + 3.0
    reps = np.concatenate([clean0, poison, clean1])
    classes = np.r_[np.zeros(n_clean + n_poison, int), np.ones(n_clean, int)]
    truth = np.r_[np.zeros(n_clean, bool), np.ones(n_poison, bool), np.zeros(n_clean, bool)]
    perm = rng.permutation(len(reps))
    return reps[perm], classes[perm], truth[perm]


@pytest.mark.parametrize("reduction", ["ica", "pca"])
@pytest.mark.parametrize("analysis", ["size", "silhouette"])
def test_finds_the_poison_cluster_exactly(reduction, analysis):
    reps, classes, truth = _poisoned_representations()
    config = ac.ActivationClusteringConfig(reduction=reduction, analysis=analysis)
    result = ac.detect(reps, classes, config)
    np.testing.assert_array_equal(result.is_poison, truth)
    ev = detection.evaluate(result, truth)
    assert ev.auroc == 1.0
    stats = result.report["classes"]
    assert stats["0"]["poisoned"] and stats["0"]["cluster_sizes"] == [15, 120]
    assert stats["0"]["relative_size"] == pytest.approx(15 / 135)
    # A single Gaussian blob splits roughly in half: not a poison cluster.
    assert not stats["1"]["poisoned"] and stats["1"]["relative_size"] > 0.35


def test_size_threshold_rejects_a_large_minority():
    rng = np.random.default_rng(1)
    reps = np.concatenate([rng.normal(size=(60, 8)), rng.normal(size=(40, 8)) + 8.0])
    classes = np.zeros(100, int)
    result = ac.detect(reps, classes, ac.ActivationClusteringConfig(reduction="pca"))
    assert result.report["classes"]["0"]["relative_size"] == pytest.approx(0.4)
    assert not result.is_poison.any()
    loose = ac.ActivationClusteringConfig(reduction="pca", size_threshold=0.45)
    assert ac.detect(reps, classes, loose).is_poison.sum() == 40


def test_silhouette_threshold_can_veto():
    reps, classes, truth = _poisoned_representations()
    strict = ac.ActivationClusteringConfig(analysis="silhouette", silhouette_threshold=0.99)
    result = ac.detect(reps, classes, strict)
    assert not result.is_poison.any()
    assert result.report["classes"]["0"]["silhouette"] < 0.99


def test_deterministic_given_seed_and_small_classes_skipped():
    reps, classes, _ = _poisoned_representations()
    classes = classes.copy()
    classes[:2] = 7  # A class with 2 samples is below min_class_size.
    a = ac.detect(reps, classes, ac.ActivationClusteringConfig(seed=3))
    b = ac.detect(reps, classes, ac.ActivationClusteringConfig(seed=3))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert "skipped" in a.report["classes"]["7"]
    assert not a.is_poison[:2].any() and np.all(a.scores[:2] == 0)


def test_constant_class_is_not_flagged():
    result = ac.detect(np.ones((10, 4)), np.zeros(10, int))
    assert not result.is_poison.any()
    assert result.report["classes"]["0"]["skipped"] == "no variance"


def _best_partition_inertia(x):
    best = np.inf
    for bits in itertools.product([0, 1], repeat=len(x) - 1):
        assign = np.r_[0, bits]
        if assign.min() == assign.max():
            continue
        inertia = sum(((x[assign == j] - x[assign == j].mean(0)) ** 2).sum() for j in (0, 1))
        best = min(best, inertia)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kmeans_reaches_the_exhaustive_optimum(seed):
    x = np.random.default_rng(seed).normal(size=(9, 2))
    assign, centers = ac.kmeans(x, 2, np.random.default_rng(0), num_init=10)
    inertia = sum(((x[assign == j] - centers[j]) ** 2).sum() for j in (0, 1))
    assert inertia == pytest.approx(_best_partition_inertia(x))
    for j in (0, 1):
        np.testing.assert_allclose(centers[j], x[assign == j].mean(axis=0))


def _silhouette_reference(x, assign):
    """Rousseeuw's definition, one sample at a time."""
    values = []
    for i in range(len(x)):
        d = np.sqrt(((x - x[i]) ** 2).sum(axis=1))
        same = (assign == assign[i]) & (np.arange(len(x)) != i)
        if not same.any():
            values.append(0.0)
            continue
        a = d[same].mean()
        b = min(d[assign == c].mean() for c in set(assign.tolist()) if c != assign[i])
        values.append((b - a) / max(a, b))
    return float(np.mean(values))


def test_silhouette_matches_the_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 3))
    assign = (rng.random(25) < 0.3).astype(int)
    assign[0] = 2  # A singleton third cluster scores 0.
    assert ac.silhouette_score(x, assign, chunk=7) == pytest.approx(
        _silhouette_reference(x, assign), abs=1e-9
    )


def test_fastica_recovers_independent_sources():
    rng = np.random.default_rng(0)
    sources = np.c_[rng.uniform(-1, 1, 2000), np.sign(rng.normal(size=2000)) * rng.random(2000)]
    mixed = sources @ np.array([[1.0, 0.6], [0.4, 1.0]]) + 5.0
    recovered = ac.reduce_dimensions(mixed, 2, "ica", np.random.default_rng(1))
    corr = np.abs(np.corrcoef(recovered.T, sources.T)[:2, 2:])
    # Each recovered component matches one source (up to order and sign).
    assert np.sort(corr.max(axis=1)).min() > 0.98
    assert set(corr.argmax(axis=1).tolist()) == {0, 1}
    np.testing.assert_allclose(np.cov(recovered.T), np.eye(2), atol=1e-6)


def test_pca_reduction_caps_dimensions_at_rank():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2)) @ rng.normal(size=(2, 6))  # Rank 2 in 6-d.
    assert ac.reduce_dimensions(x, 10, "pca").shape == (50, 2)
    assert ac.reduce_dimensions(x[:2], 10, "pca").shape == (2, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_dims": 0}, "num_dims"),
        ({"reduction": "tsne"}, "reduction"),
        ({"analysis": "exclusionary"}, "analysis"),
        ({"size_threshold": 0.7}, "size_threshold"),
        ({"silhouette_threshold": 2.0}, "silhouette_threshold"),
        ({"min_class_size": 1}, "min_class_size"),
    ],
)
def test_config_errors_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ac.ActivationClusteringConfig(**kwargs)
