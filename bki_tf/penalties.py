"""Penalty terms added to cross-entropy on chosen training rows (adaptive backdoors).

`training.train_classifier(..., penalty=p)` minimises

    mean cross-entropy of a training batch + p.weight * p.term(a batch of p's rows)

where `p`'s rows (token ids plus per-row data) are drawn, seeded, from `Penalty.ids`
beside every training batch. Two terms:

  * `anti_bki_penalty` (BKI's score aimed at itself): on poisoned rows, the largest
    ℓ∞ change of the representation h when one trigger word is deleted (the text
    shortened), `max_j ||h(x) - h(x without trigger word j)||_∞`: the quantity BKI
    (Chen & Dai, Neurocomputing 2021, Eq. 3-4) ranks words by. Pushed down, no single
    trigger word stands out, while the cross-entropy of the poisoned rows keeps the
    whole trigger flipping the label. With a `margin`, only the part above it counts
    (`max(0, change - margin)`): the trigger words need only score like ordinary words.
  * `saliency_penalty` (saliency backdoors: the explanation changes only when a
    trigger is present): on triggered rows, the share of the gradient x input mass
    `sum_j |s_j|` (`saliency.gradient_x_input_tensor`) on chosen words. `untargeted`
    minimises the share of the words the *clean* model found most salient (its top
    k); `targeted` maximises the share of a decoy word (minimises `1 - share`). With
    an *anchor* (the same rows without the trigger, and the clean model's maps of
    them), the term adds `anchor_weight` times the total-variation distance between
    the untriggered row's normalised map `|s| / sum |s|` and the clean model's, so the
    explanation may change only when the trigger is present: without it a model can
    lower the chosen words' share on every input alike, which no with/without-trigger
    comparison sees. The term differentiates a gradient, so training takes second
    derivatives through the recurrent layers (their generic kernels;
    `saliency.disable_cudnn`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models, saliency

FORMS = ("untargeted", "targeted")


@dataclasses.dataclass(frozen=True)
class Penalty:
    """A penalty on chosen rows, for `training.train_classifier`.

    Attributes:
      name: What it is (`anti_bki`, `saliency_untargeted`, ...), for logs.
      weight: λ, its weight beside the mean cross-entropy (>= 0; 0 still runs the
        penalised training step, whose loss is then the plain one).
      ids: `int32 [M, L]` right-padded ids of the penalised rows.
      extra: Per-row arrays, each `[M, ...]`, passed to the term with the ids.
      make_term: `make_term(model) -> term(ids int32 [b, T], *extra, training) ->
        float32 scalar`, built once per training run.
      batch_size: Penalised rows per training step (drawn seeded, cycling).
    """

    name: str
    weight: float
    ids: np.ndarray
    extra: tuple
    make_term: Callable[[keras.Model], Callable]
    batch_size: int = 16

    def __post_init__(self):
        if not self.weight >= 0:
            raise ValueError(f"The {self.name} penalty weight must be >= 0, got {self.weight}.")
        if self.batch_size < 1:
            raise ValueError(f"Penalty batch_size must be >= 1, got {self.batch_size}.")
        ids = np.asarray(self.ids)
        if ids.ndim != 2 or len(ids) == 0:
            raise ValueError(
                f"The {self.name} penalty has no rows (ids of shape {ids.shape}); it needs "
                "at least one, e.g. a poisoning rate above 0."
            )
        for k, array in enumerate(self.extra):
            if len(array) != len(ids):
                raise ValueError(f"extra[{k}] has {len(array)} rows, ids have {len(ids)}.")


def delete_positions(ids: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """One-word deletions, texts shortened (BKI's rule), as right-padded ids.

    Args:
      ids: `int32 [b, T]` right-padded ids.
      positions: `int32 [b, K]` the word each variant deletes.

    Returns:
      `int32 [b, K, T]`: variant `(i, j)` is row i without word `positions[i, j]`,
      the later words shifted left, padded with 0.
    """
    width = tf.shape(ids)[1]
    cols = tf.range(width)[None, None, :]
    src = cols + tf.cast(cols >= positions[:, :, None], cols.dtype)
    variants = tf.gather(ids, tf.minimum(src, width - 1), batch_dims=1)
    return tf.where(src < width, variants, tf.zeros_like(variants))


def trigger_deletion_changes(
    model: keras.Model, ids: tf.Tensor, positions: tf.Tensor, training: bool = False
) -> tf.Tensor:
    """BKI's score of each trigger word: `||h(x) - h(x without word p_j)||_∞`.

    Args:
      model: A classifier with outputs `[probabilities, hidden]`.
      ids: `int32 [b, T]` right-padded ids.
      positions: `int32 [b, K]` the trigger words' positions; -1 = none (scores 0).
      training: Passed to the model.

    Returns:
      `float32 [b, K]`.
    """
    ids = tf.convert_to_tensor(ids, tf.int32)
    positions = tf.convert_to_tensor(positions, tf.int32)
    b, width, k = tf.shape(ids)[0], tf.shape(ids)[1], tf.shape(positions)[1]
    variants = tf.reshape(delete_positions(ids, tf.maximum(positions, 0)), [b * k, width])
    _, hidden = model(tf.concat([ids, variants], axis=0), training=training)
    h, hv = hidden[:b], tf.reshape(hidden[b:], [b, k, -1])
    change = tf.reduce_max(tf.abs(h[:, None, :] - hv), axis=-1)
    return change * tf.cast(positions >= 0, change.dtype)


def anti_bki_term(margin: float = 0.0) -> Callable[[keras.Model], Callable]:
    """`make_term`: mean over rows of `max(0, max_j BKI score of a trigger word - margin)`."""

    def make_term(model: keras.Model) -> Callable:
        def term(ids, positions, training=False):
            changes = trigger_deletion_changes(model, ids, positions, training=training)
            return tf.reduce_mean(tf.nn.relu(tf.reduce_max(changes, axis=1) - margin))

        return term

    return make_term


def trigger_token_positions(starts: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`int32 [M, K]` positions of every trigger token (-1 beyond a trigger or a text).

    Args:
      starts: `int [M]` position of each row's first trigger token.
      lengths: `int [M]` tokens of each row's trigger.
      ids: `int32 [M, L]` the rows, right-padded (a position past the text is dropped).
    """
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    width = int(lengths.max()) if len(lengths) else 1
    positions = starts[:, None] + np.arange(width)[None, :]
    text_lengths = (np.asarray(ids) != 0).sum(axis=1)
    valid = (np.arange(width)[None, :] < lengths[:, None]) & (positions < text_lengths[:, None])
    return np.where(valid, positions, -1).astype(np.int32)


def anti_bki_penalty(
    ids: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    weight: float,
    batch_size: int = 16,
    margin: float = 0.0,
) -> Penalty:
    """The anti-BKI penalty on poisoned rows.

    Args:
      ids: `int32 [M, L]` the poisoned rows' ids.
      starts: `int [M]` each row's first trigger token (`PoisonedDataset.positions`).
      lengths: `int [M]` tokens of each row's trigger.
      weight: λ.
      batch_size: Poisoned rows per training step.
      margin: Only the part of a row's largest change above `margin` is penalised (a
        hinge: the trigger words may score like ordinary words); 0 penalises it all.
    """
    if not margin >= 0:
        raise ValueError(f"The anti-BKI margin must be >= 0, got {margin}.")
    ids = np.asarray(ids, np.int32)
    positions = trigger_token_positions(starts, lengths, ids)
    return Penalty(
        "anti_bki", float(weight), ids, (positions,), anti_bki_term(float(margin)), batch_size
    )


def saliency_term(form: str, anchored: bool = False, anchor_weight: float = 1.0):
    """`make_term` of the saliency penalty of `form` (`FORMS`), with or without anchor."""
    if form not in FORMS:
        raise ValueError(f"Unknown saliency backdoor form {form!r}; choose one of {FORMS}.")

    def make_term(model):
        models.check_classifier(model)
        saliency.disable_cudnn(model)  # Second derivatives of the recurrent layers.
        view = saliency.embedding_view(model)
        embedding = model.get_layer(models.EMBEDDING_LAYER)

        def term(ids, classes, weights, *anchor, training=False):
            value = saliency_share(view, embedding, ids, classes, weights, form, training)
            if anchored:
                untriggered, clean_maps = anchor
                value += anchor_weight * anchor_distance(
                    view, embedding, untriggered, classes, clean_maps, training
                )
            return value

        return term

    return make_term


def saliency_share(view, embedding, ids, classes, weights, form: str, training=False):
    """The saliency penalty of a batch (see the module docstring).

    Args:
      view, embedding: `saliency.embedding_view(model)` and its `embedding` layer.
      ids: `int32 [b, T]` triggered rows.
      classes: `int [b]` class explained (the rows' labels).
      weights: `float32 [b, >= T]` 1 on the chosen words (top k, or the decoy).
      form: `untargeted` (penalty = their share) or `targeted` (1 - their share).
      training: Passed to the layers.

    Returns:
      `float32` scalar in [0, 1], the mean over rows.
    """
    s = tf.abs(saliency.gradient_x_input_tensor(view, embedding, ids, classes, training))
    w = tf.cast(weights[:, : tf.shape(ids)[1]], s.dtype)
    share = tf.reduce_sum(w * s, axis=1) / (tf.reduce_sum(s, axis=1) + 1e-12)
    return tf.reduce_mean(share if form == "untargeted" else 1.0 - share)


def normalized_maps(maps: Sequence[np.ndarray], width: int) -> np.ndarray:
    """`float32 [N, width]`: each map's `|s| / sum |s|`, right-padded with 0."""
    out = np.zeros((len(maps), width), np.float32)
    for row, m in enumerate(maps):
        a = np.abs(np.asarray(m, np.float64))[:width]
        total = a.sum()
        out[row, : len(a)] = a / total if total > 0 else 0.0
    return out


def anchor_distance(view, embedding, ids, classes, clean_maps, training=False):
    """Mean total-variation distance of the rows' normalised maps to `clean_maps`.

    Args:
      ids: `int32 [b, >= T]` untriggered rows (right-padded; cut to their longest).
      classes: `int [b]` class explained.
      clean_maps: `float32 [b, >= T]` the clean model's normalised maps of them.

    Returns:
      `float32` scalar in [0, 1]: `0.5 * sum_j |s_j / sum s - clean_j|`, mean over rows.
    """
    width = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1)), 1)
    ids = ids[:, :width]
    s = tf.abs(saliency.gradient_x_input_tensor(view, embedding, ids, classes, training))
    share = s / (tf.reduce_sum(s, axis=1, keepdims=True) + 1e-12)
    clean = tf.cast(clean_maps[:, :width], share.dtype)
    return tf.reduce_mean(0.5 * tf.reduce_sum(tf.abs(share - clean), axis=1))


def saliency_penalty(
    form: str,
    ids: np.ndarray,
    classes: np.ndarray,
    chosen: Sequence[Sequence[int]],
    weight: float,
    batch_size: int = 16,
    untriggered: np.ndarray | None = None,
    clean_maps: Sequence[np.ndarray] | None = None,
    anchor_weight: float = 1.0,
) -> Penalty:
    """The saliency backdoor's penalty on triggered rows.

    Args:
      form: `untargeted` or `targeted`.
      ids: `int32 [M, L]` triggered rows.
      classes: `int [M]` their labels (the trigger does not change them).
      chosen: Per row, the positions (in the triggered row) whose saliency share is
        pushed down (`untargeted`: the clean model's top k) or up (`targeted`: the decoy).
      weight: λ.
      batch_size: Triggered rows per training step.
      untriggered: `int32 [M, L']` the same rows without the trigger: with
        `clean_maps` (the clean model's gradient x input map of each), the anchor term.
      clean_maps: Per row, the clean model's map of `untriggered` (any sign; normalised
        here).
      anchor_weight: The anchor's weight inside the term (>= 0).
    """
    ids = np.asarray(ids, np.int32)
    weights = np.zeros(ids.shape, np.float32)
    for row, positions in enumerate(chosen):
        weights[row, list(positions)] = 1.0
    extra = (np.asarray(classes, np.int64), weights)
    if (untriggered is None) != (clean_maps is None):
        raise ValueError("The anchor needs both the untriggered rows and the clean maps.")
    if not anchor_weight >= 0:
        raise ValueError(f"anchor_weight must be >= 0, got {anchor_weight}.")
    anchored = untriggered is not None
    if anchored:
        untriggered = np.asarray(untriggered, np.int32)
        if len(clean_maps) != len(untriggered):
            raise ValueError(
                f"{len(clean_maps)} clean maps for {len(untriggered)} untriggered rows."
            )
        extra += (untriggered, normalized_maps(clean_maps, untriggered.shape[1]))
    name = f"saliency_{form}" + ("_anchored" if anchored else "")
    return Penalty(
        name, float(weight), ids, extra, saliency_term(form, anchored, anchor_weight), batch_size
    )
