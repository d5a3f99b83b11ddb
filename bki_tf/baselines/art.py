"""The Adversarial Robustness Toolbox's poison detectors, run on this package's victim.

ART (Nicolae et al., "Adversarial Robustness Toolbox v1.0.0", arXiv:1807.01069) ships
Activation Clustering (`art.defences.detector.poison.ActivationDefence`) and Spectral
Signatures (`SpectralSignatureDefense`). This module wraps the victim of
`bki_tf.models.build_classifier` as an ART `KerasClassifier` and runs both through it on
token ids (`int32 [N, max_len]`, right-padded with 0, as `bki_tf.tokenization.encode`
makes them), returning the package's `bki_tf.detection.DetectionResult`, so that they are
measured beside `bki_tf.baselines.activation_clustering` and `spectral_signatures`
(`python -m experiments.compare --art`). ART is an optional extra
(`pip install -e '.[art]'`) and is imported only inside the functions here.

Wrapping (checked with ART 1.20.1, scikit-learn 1.9.1, Keras 3.15, TF 2.21)
----------------------------------------------------------------------------
* `KerasClassifier(model=victim, output_layer=0)` accepts the two-output victim and its
  `get_activations` works, but `predict` fails (`AttributeError: 'list' object has no
  attribute 'numpy'`: its compiled forward pass returns both outputs). So the classifier
  wraps the single-output view `keras.Model(model.inputs, model.outputs[0])`
  (`bki_tf.models.probabilities_model`; shared weights), on which `predict` and
  `get_activations` both work. `use_logits=False` (the output is a softmax) and
  `preprocessing=None`: ART's default `(0, 1)` standardisation would cast the ids to
  float32.
* Which layer ART analyses: both defences call `get_activations(x, layer=len(layer_names)
  - 1)`, meaning the last hidden layer (`layer_names` excludes the input layer). But an
  integer layer is looked up in `model.layers`, which in Keras 3 *includes* the
  `InputLayer`, so the index lands one layer earlier: on `build_classifier`'s victim
  (`token_ids, embedding, bilstm, hidden, dense, probabilities`) ART intends `dense` and
  analyses `hidden`, the `2H`-wide BiLSTM state, which is the representation our
  AC / SS use too. The reports record the index ART asked for, the layer it meant and
  the layer it got (recorded from ART's own call, not assumed).
* Activations come from `Model.predict` on the whole `[N, max_len]` matrix (no length
  bucketing; exact under masking, slower than `bki_tf.training.predict`). Its progress bar
  is silenced here.

What ART does differently from our implementations
---------------------------------------------------
Activation Clustering (vs `bki_tf.baselines.activation_clustering`):

* Reduction: scikit-learn `FastICA(max_iter=1000, tol=0.005)` or `PCA`, and only when
  the layer is wider than `nb_dims` (ours always reduces, to at most `n - 1` and the rank).
* Clustering: scikit-learn `KMeans(n_clusters=2)` with `n_init="auto"` (one k-means++ run)
  and no seed; ours runs 10 seeded restarts. ART's FastICA is unseeded too. Both use
  numpy's global `RandomState`, which `activation_clustering` here seeds with
  `config.seed` for the call (and restores afterwards), so that ART's rows are repeatable.
  The single run matters after FastICA's whitening: on data like class 0 of
  `tests/art_test.py`, reduced to 2 or 3 dimensions (4 data seeds each), ART found the
  far 20 % cluster in 3 of 8 cases, ours in all 8 (with PCA, to 10 dimensions, both
  found it in all 6 seeds tried).
* Analysis: ART's `relative-size` (our `size`) flags a cluster whose share, rounded to 2
  decimals, is `< 0.35`; ours flags the smaller cluster if its share is `<= size_threshold`.
  ART's `silhouette-scores` (our `silhouette`) needs the silhouette, rounded to 4
  decimals, to be `> 0.1`. Both thresholds are fixed in ART (`ActivationDefence` does not
  pass any), so a different `size_threshold` / `silhouette_threshold` of ours is recorded
  as not applied. ART's default analysis, `smaller`, flags the smaller cluster of *every*
  class whatever its size (`tests/art_test.py` shows it flagging half of a clean class).
* Two of ART 1.20.1's analyzers are broken under NumPy 2: `analyze_by_relative_size`
  raises `ValueError: The truth value of an empty array is ambiguous` on every class
  without a suspicious cluster (`cluster_id in poison_clusters`, a tuple holding an empty
  array), i.e. on any clean class; `analyze_by_silhouette_score` marks the suspicious
  cluster as both clean and poison and leaves the larger cluster's decisions
  uninitialised (`np.empty`). So for `relative-size` and `silhouette-scores` ART clusters
  (`ActivationDefence.cluster_activations`) and this module applies ART's rule, as
  written in `ClusteringAnalyzer`, to ART's clusters (`_art_rule`; the tests check it
  against ART's analyzer where that works). `smaller` and `distance` run through
  `ActivationDefence.analyze_clusters` unchanged.
* Per-class handling: ART analyses classes `0 .. C-1` in one call and fails on an empty
  class or on one with fewer samples than `nb_dims`; here only the classes with at least
  `max(min_class_size, nb_dims)` samples (`min_class_size` if no reduction happens) are
  passed to ART (renumbered `0 .. k-1`), the others are reported as skipped.

Spectral Signatures (vs `bki_tf.baselines.spectral_signatures`):

* Score: ART projects the *uncentred* representations on the top right singular vector
  `v` of the centred ones and scores `|<R_i, v>|`; ours scores `((R_i - R_hat) . v)^2`. The
  two rank samples alike only when `R_hat . v = 0`, e.g. after centring each class
  (`tests/art_test.py` shows both on data).
* Removal: ART keeps `score < np.quantile(score, 1 - eps_multiplier * eps)` per class: ties
  at the cut-off are removed and at least one sample of every non-empty class is removed;
  ours removes exactly `round(eps_multiplier * eps * n_y)` (possibly 0).
* Pooling: ART's raw scores are the per-sample scores here (not rescaled per class; ours
  divide by the class's mean score).

Per-sample scores
-----------------
* `art_activation_clustering`: ART exposes its clusters and reduced activations, not a
  score, so the score is our AC's formula on ART's clustering: `1 - |cluster| / n_c` plus
  the margin `(d_l - d_s) / (d_l + d_s) / (2 n_c)` (distances, in ART's reduced space, to
  the means of the smaller and the larger cluster). Unanalysed classes score 0.
* `art_spectral_signatures`: ART's outlier score `|<R_i, v>|` of each sample (ART's
  `SpectralSignatureDefense.spectral_signature_scores`, on the activations ART computed).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import keras
import numpy as np

from bki_tf import detection
from bki_tf.baselines import activation_clustering as ours_ac
from bki_tf.baselines import spectral_signatures as ours_ss

AC_METHOD = "art_activation_clustering"
SS_METHOD = "art_spectral_signatures"
METHODS = (AC_METHOD, SS_METHOD)
# ART's names of the cluster analyses; ours map onto the first two.
ANALYSES = ("relative-size", "silhouette-scores", "smaller", "distance")
_ANALYSIS_OF_OURS = {"size": "relative-size", "silhouette": "silhouette-scores"}
_REDUCE_OF_OURS = {"ica": "FastICA", "pca": "PCA"}
# The thresholds ActivationDefence.analyze_clusters leaves at ClusteringAnalyzer's defaults.
ART_SIZE_THRESHOLD = 0.35
ART_SILHOUETTE_THRESHOLD = 0.1
# Analyses run by ART's ActivationDefence.analyze_clusters; the other two are applied
# here with ART's rule on ART's clusters (ART 1.20.1's analyzers of those are broken, _BUG).
_ART_ANALYSES = ("smaller", "distance")
_BUG = (
    "under NumPy 2, ART 1.20.1's analyze_by_relative_size raises ValueError on every class "
    "without a suspicious cluster, and analyze_by_silhouette_score leaves the decisions of "
    "a suspicious class's larger cluster uninitialised (np.empty)"
)
_INSTALL = "install the extra: pip install -e '.[art]'"

AC_DIFFERENCES = (
    "reduction: scikit-learn FastICA(max_iter=1000, tol=0.005) or PCA, applied only when the "
    "layer is wider than nb_dims (ours always reduces)",
    "clustering: KMeans(n_clusters=2, n_init='auto'), unseeded (numpy's global RandomState, "
    "seeded here with config.seed); ours: num_init seeded k-means++ restarts",
    "relative-size: share rounded to 2 decimals and < 0.35 (fixed); ours: <= size_threshold",
    "silhouette-scores: silhouette rounded to 4 decimals and > 0.1 (fixed); ours: >= threshold",
    "smaller (ART's default analysis): flags the smaller cluster of every class",
    "relative-size / silhouette-scores: ART 1.20.1's analyzers are broken under NumPy 2, so "
    "ART's rule is applied here to ART's clusters (see analysis_applied_by)",
    "per class: ART fails on an empty class or one with fewer than nb_dims samples; only the "
    "others are given to ART, renumbered, and these are skipped",
    "layer: get_activations(len(layer_names) - 1) indexes model.layers, which includes the "
    "InputLayer in Keras 3, so ART analyses the layer before the last hidden one",
)
SS_DIFFERENCES = (
    "score |<R_i, v>| of the uncentred representation (v: top right singular vector of the "
    "centred ones); ours ((R_i - R_hat) . v)^2, the same ranking only if R_hat . v = 0",
    "removal: score >= np.quantile(score, 1 - eps_multiplier * eps) per class (ties removed, "
    "at least one per non-empty class); ours exactly round(eps_multiplier * eps * n_y)",
    "scores not rescaled per class (ours divide by the class's mean score)",
    "layer: get_activations(len(layer_names) - 1) indexes model.layers, which includes the "
    "InputLayer in Keras 3, so ART analyses the layer before the last hidden one",
)


def require_art() -> dict[str, str]:
    """Imports ART and scikit-learn, or says how to install them.

    Returns:
      `{"art": version, "sklearn": version}`.

    Raises:
      ValueError: ART or scikit-learn is not installed.
    """
    try:
        with warnings.catch_warnings():  # "PyTorch not found" and the like, at import.
            warnings.simplefilter("ignore")
            import art  # pylint: disable=import-outside-toplevel
            import art.defences.detector.poison  # noqa: F401  pylint: disable=import-outside-toplevel
            import art.estimators.classification  # noqa: F401  pylint: disable=import-outside-toplevel
            import sklearn  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ValueError(
            f"The Adversarial Robustness Toolbox (ART) or scikit-learn is not importable "
            f"({e}); {_INSTALL}."
        ) from e
    return {"art": art.__version__, "sklearn": sklearn.__version__}


def keras_classifier(model: keras.Model):
    """Wraps the victim as an ART `KerasClassifier`.

    Args:
      model: A classifier from `bki_tf.models.build_classifier` (outputs `[probabilities
        [batch, C], hidden [batch, 2H]]`) or any Keras model whose first (or only) output
        is `[batch, C]` class probabilities.

    Returns:
      `art.estimators.classification.KerasClassifier` on the single-output view
      `keras.Model(model.inputs, model.outputs[0])` (shared weights), with
      `use_logits=False` and `preprocessing=None` (see the module docstring).

    Raises:
      ValueError: ART is missing, or the model's first output is not `[batch, C >= 2]`.
    """
    require_art()
    from art.estimators.classification import (  # pylint: disable=import-outside-toplevel
        KerasClassifier,
    )

    outputs = model.outputs if isinstance(model.outputs, list) else [model.outputs]
    if len(model.inputs) != 1 or len(outputs[0].shape) != 2 or (outputs[0].shape[-1] or 0) < 2:
        raise ValueError(
            f"Model {model.name!r} has inputs {[tuple(i.shape) for i in model.inputs]} and "
            f"outputs {[tuple(o.shape) for o in outputs]}; ART's classifier needs one token-id "
            "input and class probabilities [batch, C >= 2] as the first output (build it "
            "with bki_tf.build_classifier)."
        )
    view = model if len(outputs) == 1 else keras.Model(model.inputs, outputs[0], name="art_view")
    return KerasClassifier(model=view, use_logits=False, output_layer=0, preprocessing=None)


def _check_inputs(
    classifier, token_ids: np.ndarray, classes: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(token_ids)
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(
            f"{method}: token_ids must be a non-empty [N, max_len] matrix, got shape "
            f"{ids.shape}; encode the texts with bki_tf.tokenization.encode."
        )
    if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0:
        raise ValueError(
            f"{method}: token_ids must be non-negative integers (0 = padding), got dtype "
            f"{ids.dtype} and minimum {ids.min()}; encode with bki_tf.tokenization.encode."
        )
    gaps = (ids[:, :-1] == 0) & (ids[:, 1:] != 0)
    if gaps.any():
        row = int(np.flatnonzero(gaps.any(axis=1))[0])
        raise ValueError(
            f"{method}: token_ids[{row}] has a token after padding; rows must be right-padded "
            "with 0, as bki_tf.tokenization.encode pads them."
        )
    cls = np.asarray(classes)
    if cls.shape != (len(ids),) or not np.issubdtype(cls.dtype, np.integer):
        raise ValueError(
            f"{method}: classes must be {len(ids)} integers (one per row of token_ids), got "
            f"dtype {cls.dtype} and shape {cls.shape}."
        )
    if cls.min() < 0 or cls.max() >= classifier.nb_classes:
        raise ValueError(
            f"{method}: classes must lie in [0, {classifier.nb_classes}) (the model's classes), "
            f"got {int(cls.min())} .. {int(cls.max())}."
        )
    return ids.astype(np.int32), cls.astype(np.int64)


@contextlib.contextmanager
def _recorded_activations(classifier):
    """Records (and silences) ART's `get_activations` calls: yields the list of calls."""
    calls: list[tuple[Any, np.ndarray]] = []
    original = classifier.get_activations

    def recording(x, layer, batch_size=128, framework=False):
        with contextlib.redirect_stdout(io.StringIO()):  # Model.predict's progress bar.
            out = original(x, layer, batch_size=batch_size, framework=framework)
        calls.append((layer, out))
        return out

    classifier.get_activations = recording
    try:
        yield calls
    finally:
        del classifier.get_activations  # Back to the class's method.


def _layer_report(classifier, calls) -> dict[str, Any]:
    """Which layer ART asked for and which it analysed (ART's own name lookup)."""
    if len(calls) != 1:
        raise RuntimeError(f"ART computed activations {len(calls)} times; expected once.")
    layer = calls[0][0]
    names = list(classifier.layer_names)
    if isinstance(layer, int | np.integer):
        analysed = classifier.model.layers[int(layer)].name
        meant = names[int(layer)] if 0 <= int(layer) < len(names) else None
    else:
        analysed = meant = str(layer)
    return {
        "layer": analysed,
        "layer_requested": layer,
        "layer_meant": meant,
        "art_layer_names": names,
        "width": int(np.prod(calls[0][1].shape[1:])),
    }


@contextlib.contextmanager
def _global_numpy_seed(seed: int):
    """Seeds numpy's global RandomState (ART's and scikit-learn's default), then restores it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _cluster_scores(clusters: np.ndarray, reduced: np.ndarray) -> np.ndarray:
    """Our AC's score on ART's clustering: cluster smallness plus the margin / (2 n)."""
    n = len(clusters)
    sizes = np.bincount(clusters, minlength=2)[:2]
    small = int(np.argmin(sizes))
    if sizes.min() == 0:
        return np.zeros(n)
    c_small = reduced[clusters == small].mean(axis=0)
    c_large = reduced[clusters == 1 - small].mean(axis=0)
    d_small = np.linalg.norm(reduced - c_small, axis=1)
    d_large = np.linalg.norm(reduced - c_large, axis=1)
    denom = d_small + d_large
    margin = np.where(denom > 0, (d_large - d_small) / np.where(denom > 0, denom, 1.0), 0.0)
    return 1.0 - sizes[clusters] / n + margin / (2.0 * n)


def _art_rule(
    analysis: str, clusters: np.ndarray, reduced: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """ART 1.20.1's `relative-size` / `silhouette-scores` decision for one class (see `_BUG`).

    `ClusteringAnalyzer`'s rule: a cluster is suspicious when its share of the class,
    rounded to 2 decimals, is `< 0.35`; with `silhouette-scores`, only if also the mean
    silhouette of the clustering (scikit-learn, on ART's reduced activations), rounded to
    4 decimals, is `> 0.1`.

    Returns:
      `(bool [n] flagged, report)`.
    """
    from sklearn.metrics import silhouette_score  # pylint: disable=import-outside-toplevel

    sizes = np.bincount(clusters)  # As ART: no entry for an empty cluster 1.
    shares = np.round(sizes / float(sizes.sum()), 2)
    suspicious = np.flatnonzero(shares < ART_SIZE_THRESHOLD)
    report: dict[str, Any] = {"ptc_clusters": shares.tolist()}
    if analysis == "silhouette-scores":
        sil = None
        if np.count_nonzero(sizes) > 1:
            sil = round(float(silhouette_score(reduced, clusters)), 4)
        report["avg_silhouette_score"] = sil
        if sil is None or not sil > ART_SILHOUETTE_THRESHOLD:
            suspicious = suspicious[:0]
    report["suspicious_clusters"] = suspicious.tolist()
    return np.isin(clusters, suspicious), report


def activation_clustering(
    model: keras.Model,
    token_ids: np.ndarray,
    classes: np.ndarray,
    config: ours_ac.ActivationClusteringConfig | None = None,
    cluster_analysis: str | None = None,
    batch_size: int = 128,
) -> detection.DetectionResult:
    """Runs ART's `ActivationDefence` on the victim.

    Args:
      model: The victim (see `keras_classifier`).
      token_ids: `int32 [N, max_len]` training texts, right-padded with 0.
      classes: `int [N]` class of each sample (predicted class or training label), in
        `[0, C)`; ART segments by it (its `y_train`).
      config: Our AC settings, translated to ART's: `num_dims` -> `nb_dims`, `reduction`
        `ica` / `pca` -> `FastICA` / `PCA`, `analysis` `size` / `silhouette` ->
        `relative-size` / `silhouette-scores`, `seed` -> numpy's global seed for the call,
        `min_class_size` -> classes skipped. `size_threshold`, `silhouette_threshold`,
        `num_init` and `max_iter` have no ART counterpart (recorded as not applied).
      cluster_analysis: One of `ANALYSES` to override the translated analysis, e.g.
        `smaller`, ART's default.
      batch_size: ART's batch size for the activations.

    Returns:
      A `DetectionResult` named `art_activation_clustering`: `is_poison` is ART's
      decision, the scores are as the module docstring says; `report` holds ART's settings,
      the layer it analysed, per class the cluster sizes and ART's own report, and
      `differences` (what ART does differently from ours).

    Raises:
      ValueError: ART is missing, or bad inputs / settings.
    """
    versions = require_art()
    from art.defences.detector.poison import (  # pylint: disable=import-outside-toplevel
        ActivationDefence,
    )

    config = config or ours_ac.ActivationClusteringConfig()
    analysis = cluster_analysis or _ANALYSIS_OF_OURS[config.analysis]
    if analysis not in ANALYSES:
        raise ValueError(
            f"Unknown ART cluster_analysis {analysis!r}; choose one of {ANALYSES} (or None to "
            "translate config.analysis)."
        )
    classifier = keras_classifier(model)
    ids, cls = _check_inputs(classifier, token_ids, classes, AC_METHOD)
    settings = {
        "nb_clusters": 2,
        "nb_dims": config.num_dims,
        "reduce": _REDUCE_OF_OURS[config.reduction],
        "cluster_analysis": analysis,
    }
    not_applied = {}
    if analysis in ("relative-size", "silhouette-scores"):
        if config.size_threshold != ART_SIZE_THRESHOLD:
            not_applied["size_threshold"] = config.size_threshold
        if analysis == "silhouette-scores" and config.silhouette_threshold != (
            ART_SILHOUETTE_THRESHOLD
        ):
            not_applied["silhouette_threshold"] = config.silhouette_threshold
    not_applied.update(num_init=config.num_init, max_iter=config.max_iter)

    with _recorded_activations(classifier) as calls, warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        # ART's own activations (its layer choice), once for all samples.
        acts = ActivationDefence(classifier, ids, cls)._get_activations()  # pylint: disable=protected-access
        layer = _layer_report(classifier, calls)
        wide = acts.shape[1] > config.num_dims
        min_size = max(config.min_class_size, config.num_dims if wide else 2)
        present = np.unique(cls)
        analysed = [int(c) for c in present if np.sum(cls == c) >= min_size]
        scores = np.zeros(len(ids))
        is_poison = np.zeros(len(ids), dtype=bool)
        per_class: dict[str, dict] = {}
        art_report: dict[str, Any] = {}
        if analysed:
            rows = np.flatnonzero(np.isin(cls, analysed))
            renumbered = np.searchsorted(analysed, cls[rows])
            defence = ActivationDefence(classifier, ids[rows], renumbered)
            # Only the analysed classes are given (ART fails on empty or tiny ones); ART
            # skips its own activation pass when activations_by_class is set.
            defence.activations_by_class = [
                acts[rows[renumbered == j]] for j in range(len(analysed))
            ]
            with _global_numpy_seed(config.seed):
                clusters_by_class, reduced_by_class = defence.cluster_activations(
                    nb_clusters=2, nb_dims=config.num_dims, reduce=settings["reduce"]
                )
            if analysis in _ART_ANALYSES:
                art_report, assigned_clean = defence.analyze_clusters(cluster_analysis=analysis)
            for j, c in enumerate(analysed):
                class_rows = rows[renumbered == j]
                clusters = np.asarray(clusters_by_class[j], dtype=np.int64)
                reduced = np.asarray(reduced_by_class[j], dtype=np.float64)
                if analysis in _ART_ANALYSES:
                    flagged = np.asarray(assigned_clean[j], dtype=np.float64) != 1
                    art_class = art_report.get(f"Class_{j}")
                else:
                    flagged, art_class = _art_rule(analysis, clusters, reduced)
                is_poison[class_rows] = flagged
                scores[class_rows] = _cluster_scores(clusters, reduced)
                sizes = np.bincount(clusters, minlength=2)
                per_class[str(c)] = {
                    "size": len(class_rows),
                    "dims": int(reduced.shape[1]),
                    "cluster_sizes": sorted(sizes.tolist()),
                    "relative_size": float(sizes.min() / sizes.sum()),
                    "flagged": int(flagged.sum()),
                    "poisoned": bool(flagged.any()),
                    "art": art_class,
                }
        for c in present:
            if int(c) not in analysed:
                per_class[str(int(c))] = {
                    "size": int(np.sum(cls == c)),
                    "poisoned": False,
                    "skipped": f"fewer than {min_size} samples (ART needs >= nb_dims)",
                }
    return detection.DetectionResult(
        method=AC_METHOD,
        scores=scores,
        is_poison=is_poison,
        report={
            "versions": versions,
            "config": {**settings, "clustering_method": "KMeans", "seed": config.seed},
            "ours_config": config.to_dict(),
            "not_applied": not_applied,
            **layer,
            "reduced": bool(wide),
            "min_class_size": min_size,
            "analysis_applied_by": (
                "ART (ActivationDefence.analyze_clusters)"
                if analysis in _ART_ANALYSES
                else f"this adapter: ART 1.20.1's {analysis} rule on ART's clusters ({_BUG})"
            ),
            "classes": dict(sorted(per_class.items(), key=lambda kv: int(kv[0]))),
            "warnings": sorted({f"{x.category.__name__}: {x.message}" for x in w}),
            "score": "our AC score (cluster smallness + margin) on ART's clusters",
            "differences": list(AC_DIFFERENCES),
        },
    )


def spectral_signatures(
    model: keras.Model,
    token_ids: np.ndarray,
    classes: np.ndarray,
    config: ours_ss.SpectralSignaturesConfig | None = None,
    batch_size: int = 128,
) -> detection.DetectionResult:
    """Runs ART's `SpectralSignatureDefense` on the victim.

    Args:
      model: The victim (see `keras_classifier`).
      token_ids: `int32 [N, max_len]` training texts, right-padded with 0.
      classes: `int [N]` class of each sample, in `[0, C)` (ART's `y_train`).
      config: Our SS settings: `poison_rate_bound` -> `expected_pp_poison`,
        `eps_multiplier` -> `eps_multiplier`.
      batch_size: ART's batch size for the activations.

    Returns:
      A `DetectionResult` named `art_spectral_signatures`: `is_poison` is ART's decision,
      the scores ART's outlier scores `|<R_i, v>|`; `report` holds ART's settings, the
      layer it analysed, per class the size, the number removed and ART's cut-off, and
      `differences`.

    Raises:
      ValueError: ART is missing, or bad inputs.
    """
    versions = require_art()
    from art.defences.detector.poison import (  # pylint: disable=import-outside-toplevel
        SpectralSignatureDefense,
    )

    config = config or ours_ss.SpectralSignaturesConfig()
    classifier = keras_classifier(model)
    ids, cls = _check_inputs(classifier, token_ids, classes, SS_METHOD)
    settings = {
        "expected_pp_poison": config.poison_rate_bound,
        "eps_multiplier": config.eps_multiplier,
        "batch_size": batch_size,
    }
    with _recorded_activations(classifier) as calls:
        defence = SpectralSignatureDefense(classifier, ids, cls, **settings)
        _, is_clean = defence.detect_poison()
    layer = _layer_report(classifier, calls)
    acts = np.reshape(calls[0][1], (len(ids), -1))
    is_poison = np.asarray(is_clean) == 0
    scores = np.zeros(len(ids))
    per_class = {}
    quantile = max(1.0 - config.eps_multiplier * config.poison_rate_bound, 0.0)
    for c in np.unique(cls):
        rows = np.flatnonzero(cls == c)
        s = SpectralSignatureDefense.spectral_signature_scores(acts[rows])[:, 0]
        scores[rows] = s
        per_class[str(int(c))] = {
            "size": len(rows),
            "removed": int(is_poison[rows].sum()),
            "cutoff_score": float(np.quantile(s, quantile)),
            "top_score": float(s.max()),
        }
    return detection.DetectionResult(
        method=SS_METHOD,
        scores=scores,
        is_poison=is_poison,
        report={
            "versions": versions,
            "config": {**settings, "quantile": quantile},
            "ours_config": config.to_dict(),
            **layer,
            "classes": per_class,
            "score": "ART's outlier score |<R_i, v>| (uncentred R_i), not rescaled per class",
            "differences": list(SS_DIFFERENCES),
        },
    )
