"""Word saliency maps of the package's victims, and how much a trigger changes them.

Three interpretation methods, each giving one score per real token of a text for
a class `c` (by default the class the model predicts on that text):

  * `gradient_x_input` (gradient-based): `s_j = sum_d (d p_c / d e_jd) e_jd`, the
    gradient of the class probability with respect to the word's embedding times the
    embedding, summed over the embedding dimensions. The score is **signed**; the
    comparisons below (`top_k_overlap`, `rank_correlation`) rank words by `|s_j|`.
  * `integrated_gradients` (gradient-based; Sundararajan et al., ICML 2017, Eq. 1):
    `s_j = sum_d e_jd * mean_k (d p_c / d e_jd)(a_k e)` with the all-zero embedding
    as the baseline (the text's length and mask kept) and the midpoint rule
    `a_k = (k + 1/2) / m`, `k = 0..m-1`: deterministic, no sampling. Completeness:
    `sum_j s_j -> p_c(e) - p_c(0)` as `m` grows.
  * `deletion` (gradient-free): `s_j = p_c(x) - p_c(x without word j)`, the word
    deleted and the text shortened, the same deletion rule as BKI's.

The gradients are taken through `embedding_view(model)`, which replays the layers
after the `embedding` layer on given embeddings with the padding mask, so a padded
batch has the saliency of its unpadded texts. Ids are right-padded `int32 [N, L]`
rows (id 0 = padding), as everywhere in the package.

The backdoor of Fang & Choromanska-style saliency attacks ("backdoors that change the
explanation only when a trigger is present") is measured by comparing a text's map
with the map of the same text with the trigger inserted, the trigger's positions
dropped (`drop_span`), so both maps score the same words.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models, training

METHODS = ("gradient_x_input", "integrated_gradients", "deletion")


def embedding_view(model: keras.Model) -> Callable:
    """The classifier as a function of its embeddings.

    Args:
      model: A `models.build_classifier` model: a chain `embedding -> encoder layers ->
        hidden -> dense -> probabilities`.

    Returns:
      `fn(embeddings float32 [B, T, d], mask bool [B, T], training=False) ->
      (probabilities float32 [B, C], hidden float32 [B, h])`, equal to `model(ids)`
      for `embeddings = embedding(ids)`, `mask = ids != 0`, and differentiable in the
      embeddings (twice: the recurrent layers run TF's while-loop kernels; see
      `disable_cudnn`).

    Raises:
      ValueError: If `model` is not a chain of single-input layers after `embedding`.
    """
    models.check_classifier(model)
    layers = list(model.layers)
    names = [layer.name for layer in layers]
    after = layers[names.index(models.EMBEDDING_LAYER) + 1 :]
    previous = model.get_layer(models.EMBEDDING_LAYER)
    for layer in after:
        # A chain: each layer's first argument is the previous layer's output.
        first = layer._inbound_nodes[0].arguments.args[0] if layer._inbound_nodes else None  # pylint: disable=protected-access
        source = getattr(getattr(first, "_keras_history", None), "operation", None)
        if len(layer._inbound_nodes) != 1 or source is not previous:  # pylint: disable=protected-access
            raise ValueError(
                f"Layer {layer.name!r} of {model.name!r} does not follow {previous.name!r} in a "
                "chain; saliency maps need a bki_tf.build_classifier victim (a chain of "
                "layers after 'embedding')."
            )
        previous = layer
    calls = []
    for layer in after:
        params = inspect.signature(layer.call).parameters
        calls.append((layer, "mask" in params, "training" in params))

    def fn(embeddings, mask, training=False):
        x, hidden = embeddings, None
        for layer, takes_mask, takes_training in calls:
            kwargs = {}
            if takes_mask:
                kwargs["mask"] = mask
            if takes_training:
                kwargs["training"] = training
            x = layer(x, **kwargs)
            if layer.name == models.HIDDEN:
                hidden = x
        return x, hidden

    return fn


def disable_cudnn(model: keras.Model) -> None:
    """Makes the model's recurrent layers use the generic kernels (in place).

    The cuDNN kernels have no second derivative, which a penalty on a gradient
    saliency needs; on CPU this changes nothing.
    """
    for layer in model._flatten_layers():  # pylint: disable=protected-access
        if hasattr(layer, "use_cudnn"):
            layer.use_cudnn = False


def _class_probability(probs: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    return tf.gather(probs, tf.cast(classes, tf.int32), batch_dims=1)


def gradient_x_input_tensor(
    view: Callable, embedding: keras.layers.Layer, ids: tf.Tensor, classes: tf.Tensor,
    training: bool = False,
) -> tf.Tensor:  # fmt: skip
    """Gradient x input per token, differentiable (for penalties).

    Args:
      view: `embedding_view(model)`.
      embedding: The model's `embedding` layer.
      ids: `int32 [B, T]` right-padded ids.
      classes: `int [B]` class whose probability is explained.
      training: Passed to the layers.

    Returns:
      `float32 [B, T]`, zero at padding.
    """
    mask = tf.not_equal(ids, 0)
    with tf.GradientTape() as tape:
        e = embedding(ids)
        tape.watch(e)
        probs, _ = view(e, mask, training=training)
        f = tf.reduce_sum(_class_probability(probs, classes))
    grads = tape.gradient(f, e)
    return tf.reduce_sum(grads * e, axis=-1) * tf.cast(mask, e.dtype)


def _rows_by_length(ids: np.ndarray, batch_size: int):
    lengths = (ids != 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        yield rows, max(int(lengths[rows].max()), 1)


def _check(ids, classes, model):
    ids = np.asarray(ids, dtype=np.int32)
    if ids.ndim != 2:
        raise ValueError(f"ids must be int32 [N, L]; got shape {ids.shape}.")
    if classes is None:
        probs, _ = training.predict(model, ids)
        classes = probs.argmax(axis=1) if len(ids) else np.zeros(0, np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    if classes.shape != (len(ids),):
        raise ValueError(f"classes has shape {classes.shape}; it must be [{len(ids)}].")
    return ids, classes


def _per_row(values: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    lengths = (ids != 0).sum(axis=1)
    return [values[i, : lengths[i]].astype(np.float32) for i in range(len(ids))]


# Compiled once per model (cached on it): the saliency functions run many batches.
def _compiled(model: keras.Model, name: str, build):
    cache = model.__dict__.setdefault("_bki_saliency_fns", {})
    if name not in cache:
        cache[name] = build()
    return cache[name]


def gradient_x_input(
    model: keras.Model,
    ids: np.ndarray,
    classes: np.ndarray | None = None,
    batch_size: int = 128,
) -> list[np.ndarray]:
    """Gradient x input saliency (signed) of each text.

    Args:
      model: A `models.build_classifier` model.
      ids: `int32 [N, L]` right-padded ids.
      classes: `int [N]` class explained per text (default: the predicted one).
      batch_size: Texts per batch.

    Returns:
      N arrays, `float32 [n_i]` for a text of `n_i` tokens.
    """
    ids, classes = _check(ids, classes, model)

    def build():
        view, embedding = embedding_view(model), model.get_layer(models.EMBEDDING_LAYER)
        return tf.function(
            lambda x, c: gradient_x_input_tensor(view, embedding, x, c), reduce_retracing=True
        )

    fn = _compiled(model, "gxi", build)
    out = np.zeros(ids.shape, np.float32)
    for rows, width in _rows_by_length(ids, batch_size):
        out[rows, :width] = fn(tf.constant(ids[rows, :width]), tf.constant(classes[rows])).numpy()
    return _per_row(out, ids)


def integrated_gradients(
    model: keras.Model,
    ids: np.ndarray,
    classes: np.ndarray | None = None,
    steps: int = 32,
    batch_size: int = 256,
) -> list[np.ndarray]:
    """Integrated gradients (zero-embedding baseline, midpoint rule) of each text.

    Args:
      model: A `models.build_classifier` model.
      ids: `int32 [N, L]` right-padded ids.
      classes: `int [N]` class explained per text (default: the predicted one).
      steps: m, the points of the path integral.
      batch_size: Interpolated texts per batch (texts per batch: `batch_size // steps`).

    Returns:
      N arrays, `float32 [n_i]`; each sums to about `p_c(x) - p_c(baseline)`.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    ids, classes = _check(ids, classes, model)

    def build():
        view, embedding = embedding_view(model), model.get_layer(models.EMBEDDING_LAYER)

        def ig(x, c, alphas):
            b, t = tf.shape(x)[0], tf.shape(x)[1]
            m = tf.shape(alphas)[0]
            mask = tf.not_equal(x, 0)
            e = embedding(x)  # [b, t, d]
            path = alphas[None, :, None, None] * e[:, None]  # [b, m, t, d]
            path = tf.reshape(path, [b * m, t, -1])
            with tf.GradientTape() as tape:
                tape.watch(path)
                probs, _ = view(path, tf.repeat(mask, m, axis=0))
                f = tf.reduce_sum(_class_probability(probs, tf.repeat(c, m)))
            grads = tf.reshape(tape.gradient(f, path), [b, m, t, -1])
            attributions = tf.reduce_sum(e * tf.reduce_mean(grads, axis=1), axis=-1)
            return attributions * tf.cast(mask, e.dtype)

        return tf.function(ig, reduce_retracing=True)

    fn = _compiled(model, "ig", build)
    alphas = tf.constant((np.arange(steps) + 0.5) / steps, tf.float32)
    out = np.zeros(ids.shape, np.float32)
    for rows, width in _rows_by_length(ids, max(1, batch_size // steps)):
        out[rows, :width] = fn(
            tf.constant(ids[rows, :width]), tf.constant(classes[rows]), alphas
        ).numpy()
    return _per_row(out, ids)


def delete_token(row: np.ndarray, position: int) -> np.ndarray:
    """`row` (right-padded) with token `position` deleted and the text shortened."""
    row = np.asarray(row)
    return np.concatenate([row[:position], row[position + 1 :], np.zeros(1, row.dtype)])


def deletion_variants(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every one-word deletion of every text.

    Returns:
      `(variants int32 [sum n_i, L], owner int64 [sum n_i])`: variant `k` is text
      `owner[k]` without one word, in word order.
    """
    ids = np.asarray(ids, np.int32)
    lengths = (ids != 0).sum(axis=1)
    owner = np.repeat(np.arange(len(ids)), lengths)
    position = np.concatenate([np.arange(n) for n in lengths]) if len(ids) else np.zeros(0, int)
    width = ids.shape[1]
    cols = np.arange(width)[None, :]
    # Column c of a variant reads column c (before the deleted word) or c + 1 (after).
    src = cols + (cols >= position[:, None])
    rows = ids[owner]
    variants = np.where(src < width, np.take_along_axis(rows, np.minimum(src, width - 1), 1), 0)
    return variants.astype(np.int32), owner.astype(np.int64)


def deletion(
    model: keras.Model,
    ids: np.ndarray,
    classes: np.ndarray | None = None,
    batch_size: int = 256,
) -> list[np.ndarray]:
    """Word-deletion saliency: the drop of the class probability when a word is deleted.

    Args:
      model: Any classifier with outputs `[probabilities, ...]` (`training.predict`).
      ids: `int32 [N, L]` right-padded ids.
      classes: `int [N]` class explained per text (default: the predicted one).
      batch_size: Variants per batch.

    Returns:
      N arrays, `float32 [n_i]`: `p_c(x) - p_c(x without word j)`.
    """
    ids, classes = _check(ids, classes, model)
    probs, _ = training.predict(model, ids, batch_size)
    variants, owner = deletion_variants(ids)
    if not len(variants):
        return [np.zeros(0, np.float32) for _ in ids]
    var_probs, _ = training.predict(model, variants, batch_size)
    drop = probs[owner, classes[owner]] - var_probs[np.arange(len(owner)), classes[owner]]
    return np.split(drop.astype(np.float32), np.cumsum((ids != 0).sum(axis=1))[:-1])


def saliency_maps(
    model: keras.Model,
    ids: np.ndarray,
    method: str,
    classes: np.ndarray | None = None,
    ig_steps: int = 32,
) -> list[np.ndarray]:
    """The maps of `method` (one of `METHODS`); see the module docstring."""
    if method == "gradient_x_input":
        return gradient_x_input(model, ids, classes)
    if method == "integrated_gradients":
        return integrated_gradients(model, ids, classes, steps=ig_steps)
    if method == "deletion":
        return deletion(model, ids, classes)
    raise ValueError(f"Unknown saliency method {method!r}; choose one of {METHODS}.")


def insert_tokens(row: np.ndarray, tokens: Sequence[int], position: int) -> np.ndarray:
    """`row` (right-padded, width L) with `tokens` inserted before token `position`.

    The text is first cut to `L - len(tokens)` tokens so the whole insertion fits.
    """
    row = np.asarray(row, np.int32)
    width, t = len(row), len(tokens)
    text = row[row != 0][: width - t]
    if not 0 <= position <= len(text):
        raise ValueError(f"Position {position} is outside [0, {len(text)}] for this text.")
    out = np.zeros(width, np.int32)
    merged = np.concatenate([text[:position], np.asarray(tokens, np.int32), text[position:]])
    out[: len(merged)] = merged
    return out


def drop_span(scores: np.ndarray, start: int, length: int) -> np.ndarray:
    """`scores` without the entries `start .. start + length - 1` (the trigger's)."""
    scores = np.asarray(scores)
    return np.concatenate([scores[:start], scores[start + length :]])


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the `k` words of largest `|a|` that are among the `k` of largest `|b|`.

    Ties are broken by position (stable sort); `k` is capped at the text's length.
    """
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.shape != b.shape or not len(a):
        raise ValueError(f"Need two maps of one non-empty text; got {a.shape} and {b.shape}.")
    k = min(int(k), len(a))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of `|a|` and `|b|` (ties: average ranks).

    NaN when a map is constant (or the text has one word).
    """
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.shape != b.shape:
        raise ValueError(f"Maps of different lengths: {a.shape} and {b.shape}.")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def mass_share(scores: np.ndarray, positions: Sequence[int]) -> float:
    """Share of `sum_j |s_j|` held by `positions` (NaN for an all-zero map)."""
    scores = np.abs(np.asarray(scores, np.float64))
    total = scores.sum()
    return float(scores[list(positions)].sum() / total) if total > 0 else float("nan")
