"""Activation Clustering (Chen et al., 2018) on the victim's hidden representation.

Bryant Chen, Wilka Carvalho, Nathalie Baracaldo, Heiko Ludwig, Benjamin Edwards,
Taesung Lee, Ian Molloy & Biplav Srivastava, "Detecting Backdoor Attacks on Deep
Neural Networks by Activation Clustering", SafeAI@AAAI 2019 (arXiv:1811.03728),
Algorithm 1: the poisoned model is queried with its own training data, the
activations of the last hidden layer are split by class, each class is reduced to
10 dimensions with ICA and split into two clusters with k-means; poisoned samples
form a cluster of their own, which is recognised by its *relative size* (the smaller
cluster holds at most `size_threshold` of the class, 35 % by default) or, optionally,
also by the *silhouette score* of the 2-clustering (a high score means the two
clusters are a real split of the data).

Here the representation is the victim's 256-d BiLSTM state (`bki_tf.models.HIDDEN`,
the same vector BKI scores) and the caller chooses the class of each sample: the
victim's predicted class (what `bki_tf.runs.comparison` passes, as the issue asks) or the
training label (the paper's "segmented by label"). For trigger poisoning the two
coincide on the poisoned samples, which carry the target label and are predicted as
the target.

Beside the Adversarial Robustness Toolbox's `ActivationDefence`
-----------------------------------------------------------------
ART's detector runs beside this one through `bki_tf.baselines.art` (the `art` extra;
`experiments.compare --art`); its docstring and `tests/art_test.py` show the
differences on data. In short (ART 1.20.1): on this victim ART analyses the BiLSTM
state `hidden` too (it means the last hidden layer `dense`, but Keras 3's input layer
shifts its index by one); it runs one unseeded k-means (ours: 10 seeded restarts), fixed
thresholds, and its default `smaller` analysis flags the smaller cluster of every class;
two of its analyzers fail under NumPy 2. With the same layer and PCA, both flag the same
samples. This implementation is numpy only: PCA whitening + symmetric FastICA
(Hyvarinen 1999, `g = tanh`), 2-means with k-means++ seeding and restarts, and the
relative-size / silhouette analyses, tested against the published definitions.

Per-sample suspicion score (for AUROC)
--------------------------------------
AC decides per cluster, so the score is first of all the cluster's smallness: sample i
of class c (n_c samples) in cluster k scores `1 - |k| / n_c`, so that the relative-size
decision is a threshold on the score (`score >= 1 - size_threshold`). Inside a cluster,
samples are ordered by their margin `m = (d_l - d_s) / (d_l + d_s)` in [-1, 1] (`d_s`,
`d_l`: distances to the centres of the smaller and larger cluster in the reduced space),
added as `m / (2 n_c)`, less than half the gap between two cluster sizes of the class.
Samples of classes that cannot be clustered (fewer than `min_class_size` samples or no
variance) score 0.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bki_tf import detection

METHOD = "activation_clustering"
REDUCTIONS = ("ica", "pca")
ANALYSES = ("size", "silhouette")


@dataclasses.dataclass(frozen=True)
class ActivationClusteringConfig:
    """Hyper-parameters of Activation Clustering.

    Attributes:
      num_dims: Dimensions after reduction (the paper: 10).
      reduction: `ica` (the paper's choice, FastICA after PCA whitening) or `pca`.
      analysis: `size` (the smaller cluster is poison if its share of the class is
        at most `size_threshold`) or `silhouette` (additionally requires the
        2-clustering's mean silhouette to be at least `silhouette_threshold`).
      size_threshold: Largest relative size of a poison cluster (the paper: 0.35).
      silhouette_threshold: Smallest silhouette of a poisoned class (ART's default 0.1).
      num_init: k-means restarts (the best inertia wins).
      max_iter: Iteration limit of k-means and of FastICA.
      min_class_size: Classes with fewer samples are not analysed.
      seed: Seed of FastICA's initial unmixing matrix and of k-means++.
    """

    num_dims: int = 10
    reduction: str = "ica"
    analysis: str = "size"
    size_threshold: float = 0.35
    silhouette_threshold: float = 0.1
    num_init: int = 10
    max_iter: int = 300
    min_class_size: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.num_dims < 1:
            raise ValueError(f"num_dims must be >= 1 (the paper uses 10), got {self.num_dims}.")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"Unknown reduction {self.reduction!r}; choose one of {REDUCTIONS}.")
        if self.analysis not in ANALYSES:
            raise ValueError(f"Unknown analysis {self.analysis!r}; choose one of {ANALYSES}.")
        if not 0.0 < self.size_threshold < 0.5 + 1e-12:
            raise ValueError(
                f"size_threshold must lie in (0, 0.5] (the smaller of two clusters holds at "
                f"most half of the class), got {self.size_threshold}; the paper uses 0.35."
            )
        if not -1.0 <= self.silhouette_threshold <= 1.0:
            raise ValueError(
                f"silhouette_threshold must lie in [-1, 1], got {self.silhouette_threshold}."
            )
        if self.num_init < 1 or self.max_iter < 1:
            raise ValueError(
                f"num_init and max_iter must be >= 1, got {self.num_init} and {self.max_iter}."
            )
        if self.min_class_size < 2:
            raise ValueError(f"min_class_size must be >= 2, got {self.min_class_size}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def detect(
    representations: np.ndarray,
    classes: np.ndarray,
    config: ActivationClusteringConfig | None = None,
) -> detection.DetectionResult:
    """Runs Activation Clustering (Chen et al. 2019, Algorithm 1) per class.

    Args:
      representations: `float [N, D]` hidden representations of the training samples
        (e.g. the 256-d BiLSTM state).
      classes: `int [N]` class of each sample (predicted class or training label).
      config: Hyper-parameters; defaults to the paper's (ICA to 10 dims, 2-means,
        relative size <= 0.35).

    Returns:
      A `DetectionResult`; `report["classes"]` holds, per class, its size, the
      clusters' sizes, the smaller cluster's relative size, the silhouette and whether
      the class was judged poisoned.
    """
    config = config or ActivationClusteringConfig()

    def analyse(x: np.ndarray, c: int):
        rng = np.random.default_rng([config.seed, c])
        stats, class_scores, in_small = _analyse_class(x, config, rng)
        flagged = np.flatnonzero(in_small) if stats["poisoned"] else np.zeros(0, np.int64)
        return class_scores, flagged, stats

    return detection.detect_per_class(representations, classes, METHOD, analyse, config.to_dict())


def _analyse_class(x: np.ndarray, config: ActivationClusteringConfig, rng: np.random.Generator):
    n = len(x)
    stats = {
        "size": n,
        "dims": 0,
        "cluster_sizes": [n, 0],
        "relative_size": 0.0,
        "silhouette": None,
        "poisoned": False,
    }
    none = np.zeros(n, dtype=bool)
    if n < config.min_class_size:
        stats["skipped"] = f"fewer than min_class_size={config.min_class_size} samples"
        return stats, np.zeros(n), none
    reduced = reduce_dimensions(x, config.num_dims, config.reduction, rng, config.max_iter)
    stats["dims"] = int(reduced.shape[1])
    if reduced.shape[1] == 0:
        stats["skipped"] = "no variance"
        return stats, np.zeros(n), none
    assign, centers = kmeans(reduced, 2, rng, num_init=config.num_init, max_iter=config.max_iter)
    sizes = np.bincount(assign, minlength=2)
    small = int(np.argmin(sizes))  # Equal sizes: cluster 0 is "smaller".
    relative = float(sizes[small] / n)
    in_small = assign == small
    d_small = np.linalg.norm(reduced - centers[small], axis=1)
    d_large = np.linalg.norm(reduced - centers[1 - small], axis=1)
    denom = d_small + d_large
    margin = np.where(denom > 0, (d_large - d_small) / np.where(denom > 0, denom, 1.0), 0.0)
    scores = 1.0 - sizes[assign] / n + margin / (2.0 * n)
    poisoned = 0 < sizes[small] and relative <= config.size_threshold
    sil = None
    if config.analysis == "silhouette":
        sil = silhouette_score(reduced, assign)
        poisoned = poisoned and sil >= config.silhouette_threshold
    stats.update(
        cluster_sizes=[int(sizes[small]), int(sizes[1 - small])],
        relative_size=relative,
        silhouette=sil,
        poisoned=bool(poisoned),
    )
    return stats, scores, in_small


def reduce_dimensions(
    x: np.ndarray,
    num_dims: int,
    method: str = "ica",
    rng: np.random.Generator | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> np.ndarray:
    """Reduces `x` to at most `num_dims` dimensions with PCA or FastICA.

    PCA keeps the projections on the top principal axes. ICA whitens those to unit
    variance and unmixes them with symmetric FastICA (Hyvarinen, "Fast and robust
    fixed-point algorithms for independent component analysis", IEEE TNN 1999, with
    the `logcosh` contrast, `g = tanh`).

    Args:
      x: `float [n, D]`.
      num_dims: Target dimension; fewer are returned when the centred data have a
        lower rank (`min(num_dims, n - 1, rank)`; 0 for constant data).
      method: `pca` or `ica`.
      rng: Generator of FastICA's initial unmixing matrix.
      max_iter: FastICA iterations.
      tol: FastICA convergence tolerance on `max |diag(W_new W^T)| - 1`.

    Returns:
      `float64 [n, k]`, `k <= num_dims`.
    """
    if method not in REDUCTIONS:
        raise ValueError(f"Unknown reduction {method!r}; choose one of {REDUCTIONS}.")
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    centered = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-9)) if s.size and s[0] > 0 else 0
    k = min(num_dims, max(n - 1, 0), rank)
    components = centered @ vt[:k].T
    if method == "pca" or k == 0:
        return components
    white = components / (s[:k] / math.sqrt(max(n - 1, 1)))
    rng = rng or np.random.default_rng(0)
    w = _symmetric_decorrelation(rng.standard_normal((k, k)))
    for _ in range(max_iter):
        g = np.tanh(white @ w.T)
        w_new = (g.T @ white) / n - (1.0 - g**2).mean(axis=0)[:, None] * w
        w_new = _symmetric_decorrelation(w_new)
        converged = np.max(np.abs(np.abs(np.einsum("ij,ij->i", w_new, w)) - 1.0)) < tol
        w = w_new
        if converged:
            break
    return white @ w.T


def _symmetric_decorrelation(w: np.ndarray) -> np.ndarray:
    """`(W W^T)^(-1/2) W`: rows orthonormal, no row preferred."""
    s, u = np.linalg.eigh(w @ w.T)
    s = np.clip(s, np.finfo(np.float64).tiny, None)
    return (u * (1.0 / np.sqrt(s))) @ u.T @ w


def kmeans(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    num_init: int = 10,
    max_iter: int = 300,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii, SODA 2007).

    Args:
      x: `float [n, d]`, `n >= k`.
      k: Number of clusters.
      rng: Seeded generator (deterministic results).
      num_init: Restarts; the lowest within-cluster sum of squares wins.
      max_iter: Lloyd iterations per restart.

    Returns:
      `(assignments int64 [n], centers float64 [k, d])`.
    """
    x = np.asarray(x, dtype=np.float64)
    if k < 1 or len(x) < k:
        raise ValueError(f"k-means needs 1 <= k <= n; got k={k} for n={len(x)} samples.")
    best = None
    for _ in range(num_init):
        centers = _kmeans_plus_plus(x, k, rng)
        assign = None
        for _ in range(max_iter):
            d2 = ((x[:, None, :] - centers[None]) ** 2).sum(axis=2)
            new = d2.argmin(axis=1)
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = x[assign == j]
                if len(members):
                    centers[j] = members.mean(axis=0)
                else:  # Re-seed an empty cluster at the worst-fitted point.
                    far = int(d2[np.arange(len(x)), assign].argmax())
                    centers[j] = x[far]
        d2 = ((x[:, None, :] - centers[None]) ** 2).sum(axis=2)
        assign = d2.argmin(axis=1)
        inertia = float(d2[np.arange(len(x)), assign].sum())
        if best is None or inertia < best[0]:
            best = (inertia, assign.astype(np.int64), centers.copy())
    return best[1], best[2]


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(axis=2), axis=1)
        total = d2.sum()
        idx = rng.integers(len(x)) if total <= 0 else rng.choice(len(x), p=d2 / total)
        centers.append(x[idx])
    return np.asarray(centers, dtype=np.float64)


def silhouette_score(x: np.ndarray, assign: np.ndarray, chunk: int = 1024) -> float:
    """Mean silhouette coefficient (Rousseeuw, J. Comput. Appl. Math. 1987).

    `s(i) = (b(i) - a(i)) / max(a(i), b(i))`, with `a(i)` the mean Euclidean distance
    from i to the other members of its cluster and `b(i)` the smallest mean distance to
    another cluster; `s(i) = 0` in a singleton cluster.

    Args:
      x: `float [n, d]`.
      assign: `int [n]` cluster of each sample, at least two clusters non-empty.
      chunk: Rows of the distance matrix computed at once.

    Returns:
      The mean of `s(i)`, in [-1, 1]; NaN with fewer than two non-empty clusters.
    """
    x = np.asarray(x, dtype=np.float64)
    assign = np.asarray(assign)
    labels, assign = np.unique(assign, return_inverse=True)
    if len(labels) < 2:
        return float("nan")
    counts = np.bincount(assign)
    sq = (x**2).sum(axis=1)
    out = np.empty(len(x))
    onehot = np.eye(len(labels))[assign]
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        d2 = sq[rows, None] + sq[None, :] - 2.0 * x[rows] @ x.T
        d = np.sqrt(np.clip(d2, 0.0, None))
        d[np.arange(d.shape[0]), np.arange(start, start + d.shape[0])] = 0.0
        sums = d @ onehot  # [chunk, clusters]
        own = assign[rows]
        own_count = counts[own] - 1
        a = np.where(own_count > 0, sums[np.arange(len(own)), own] / np.maximum(own_count, 1), 0.0)
        means = sums / counts[None, :]
        means[np.arange(len(own)), own] = np.inf
        b = means.min(axis=1)
        s = np.where(
            own_count > 0, (b - a) / np.maximum(np.maximum(a, b), np.finfo(float).tiny), 0.0
        )
        out[rows] = s
    return float(out.mean())
