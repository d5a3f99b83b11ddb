"""Tests for bki_tf.baselines.spectral_signatures against Tran et al.'s Algorithm 1."""

import numpy as np
import pytest

from bki_tf import detection
from bki_tf.baselines import spectral_signatures as ss


def _reference_scores(r):
    """tau_i via the top eigenvector of the scatter matrix M^T M (= top right singular vector)."""
    m = r - r.mean(axis=0)
    _, vecs = np.linalg.eigh(m.T @ m)
    v = vecs[:, -1]
    return np.array([float(np.dot(row, v)) ** 2 for row in m])


def test_outlier_scores_match_the_definition():
    r = np.random.default_rng(0).normal(size=(30, 6)) * np.arange(1, 7)
    np.testing.assert_allclose(ss.outlier_scores(r), _reference_scores(r), rtol=1e-9)
    assert np.all(ss.outlier_scores(np.ones((5, 3))) == 0)
    assert ss.outlier_scores(np.ones((1, 3))).tolist() == [0.0]


def _data(seed=0, n=200, n_poison=10, dim=16, offset=0.0):
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(n, dim))
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    poison = rng.normal(size=(n_poison, dim)) + 5.0 * direction
    reps = np.concatenate([clean, poison]) + offset
    truth = np.r_[np.zeros(n, bool), np.ones(n_poison, bool)]
    return reps, truth


@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_removes_the_top_scores_and_finds_the_poison(offset):
    # A large common offset must not matter: the paper centres the representations.
    reps, truth = _data(offset=offset)
    classes = np.zeros(len(reps), int)
    result = ss.detect(reps, classes, ss.SpectralSignaturesConfig(poison_rate_bound=0.05))
    k = round(1.5 * 0.05 * len(reps))  # 16 of 210.
    assert result.is_poison.sum() == k == result.report["classes"]["0"]["removed"]
    assert result.is_poison[truth].all()  # Every poison is among the top 1.5 eps n.
    assert detection.evaluate(result, truth).auroc == 1.0
    tau = _reference_scores(reps)
    assert result.is_poison[np.argsort(-tau)[:k]].all()
    assert result.scores.mean() == pytest.approx(1.0)


def test_per_class_counts_and_scaling():
    reps_a, _ = _data(seed=1, n=100, n_poison=0)
    reps_b, _ = _data(seed=2, n=40, n_poison=0)
    reps = np.concatenate([reps_a, reps_b * 10.0])
    classes = np.r_[np.zeros(100, int), np.full(40, 3)]
    result = ss.detect(reps, classes, ss.SpectralSignaturesConfig(0.1, 1.5))
    assert result.is_poison[:100].sum() == 15 and result.is_poison[100:].sum() == 6
    # Scores are tau / mean(tau) per class, so both classes average 1.
    assert result.scores[:100].mean() == pytest.approx(1.0)
    assert result.scores[100:].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(
        result.scores[100:], _reference_scores(reps[100:]) / _reference_scores(reps[100:]).mean()
    )


def test_ties_go_to_earlier_samples():
    reps = np.array([[1.0], [-1.0], [1.0], [-1.0]])  # All tau equal.
    result = ss.detect(reps, np.zeros(4, int), ss.SpectralSignaturesConfig(0.34, 1.0))
    assert result.is_poison.tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"poison_rate_bound": 0.0}, "eps"),
        ({"poison_rate_bound": 1.5}, "eps"),
        ({"eps_multiplier": 0.0}, "eps_multiplier"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ss.SpectralSignaturesConfig(**kwargs)


def test_input_errors():
    with pytest.raises(ValueError, match="one per representation"):
        ss.detect(np.zeros((3, 2)), np.zeros(2, int))
