"""Training and evaluation of the victim classifier.

Batches are formed from texts of similar length and padded only to their own
longest text (`tf.data.Dataset.bucket_by_sequence_length`): with masking the
result is the same as padding to `max_len`, at a fraction of the recurrent steps.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models

if TYPE_CHECKING:  # Only for annotations: penalties imports saliency, which imports this.
    from bki_tf import penalties

OPTIMIZERS = ("adam", "rmsprop", "sgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyper-parameters.

    Attributes:
      epochs: Passes over the training set.
      batch_size: Texts per batch.
      learning_rate: Optimizer step size.
      optimizer: `adam`, `rmsprop` or `sgd`.
      clipnorm: Gradient-norm clipping (0 disables).
      validation_split: Share of the training set held out (per class, seeded) to
        pick the epoch: the model ends with the weights of the epoch with the best
        held-out accuracy (the first such epoch). 0 trains on everything and keeps
        the last epoch.
      seed: Seed of the batch order and of the held-out rows.
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    optimizer: str = "adam"
    clipnorm: float = 1.0
    validation_split: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}.")
        if self.clipnorm < 0:
            raise ValueError(f"clipnorm must be >= 0, got {self.clipnorm}.")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(
                f"validation_split must be in [0, 1), got {self.validation_split}; "
                "use e.g. 0.1, or 0 to train on everything."
            )


def validation_rows(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits row indices into training and held-out rows, `share` of each class held out.

    Returns:
      `(train_rows, held_out_rows)`, each sorted `int64`.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        held_out.append(rng.permutation(rows)[: int(round(share * len(rows)))])
    held_out = np.sort(np.concatenate([np.zeros(0, np.int64), *held_out])).astype(np.int64)
    return np.setdiff1d(np.arange(len(labels)), held_out).astype(np.int64), held_out


def _bucket_boundaries(max_len: int) -> list[int]:
    step = max(8, max_len // 8)
    return list(range(step, max_len, step))


def make_dataset(
    ids: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Length-bucketed batches of token ids (and labels).

    Args:
      ids: `int32 [N, max_len]` right-padded token ids.
      labels: `int64 [N]` labels, or None for inference.
      batch_size: Texts per batch.
      shuffle: Reshuffle every epoch (seeded) before bucketing.
      seed: Shuffle seed.

    Returns:
      A dataset of `int32 [batch, time]` (and `int64 [batch]`) with `time` the
      batch's longest text. Without shuffling, the order differs from `ids`'
      (buckets); use `predict` for per-row outputs in input order.
    """
    ids = np.asarray(ids, dtype=np.int32)
    max_len = ids.shape[1]
    lengths = np.maximum((ids != 0).sum(axis=1), 1).astype(np.int32)
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices((ids, lengths))
    else:
        ds = tf.data.Dataset.from_tensor_slices((ids, lengths, np.asarray(labels, np.int64)))
    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda x, n, *rest: (x[:n], *rest), num_parallel_calls=tf.data.AUTOTUNE)
    boundaries = _bucket_boundaries(max_len)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda x, *_: tf.shape(x)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=False,
    )
    if labels is None:
        ds = ds.map(lambda x: x)
    return ds.prefetch(tf.data.AUTOTUNE)


def _optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    kwargs = {"learning_rate": config.learning_rate}
    if config.clipnorm:
        kwargs["clipnorm"] = config.clipnorm
    if config.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    return keras.optimizers.SGD(momentum=0.9, **kwargs)


def train_classifier(
    model: keras.Model,
    ids: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
    penalty: penalties.Penalty | None = None,
) -> dict[str, list[float]]:
    """Trains the classifier's probability output with cross-entropy (and a penalty).

    Args:
      model: A `models.build_classifier` model (trained in place).
      ids: `int32 [N, max_len]` token ids.
      labels: `int64 [N]` labels.
      config: Hyper-parameters.
      callbacks: Extra Keras callbacks (e.g. TensorBoard).
      verbose: Keras `fit` verbosity (progress bar per epoch by default).
      penalty: Optional `penalties.Penalty`: every step then minimises the batch's
        mean cross-entropy plus `penalty.weight` times its term on `penalty.batch_size`
        of its rows (drawn seeded, cycling), in a custom training step. None (the
        default) trains with plain cross-entropy.

    Returns:
      The Keras history dict (`loss`, `accuracy` per epoch; with a validation split
      also `val_loss`, `val_accuracy`, and `best_epoch`, the 1-based epoch kept).
      With a penalty, `loss` is the penalised loss, and `cross_entropy` and
      `penalty` (the term, unweighted) are recorded beside it.
    """
    if len(ids) == 0:
        raise ValueError("The training set is empty; nothing to train on.")
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} texts but {len(labels)} labels; they must match.")
    keras.utils.set_random_seed(config.seed)
    if penalty is None:
        trainer = models.probabilities_model(model)
        trainer.compile(
            optimizer=_optimizer(config),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    else:
        trainer = _PenalisedTrainer(model, penalty)
        trainer.compile(optimizer=_optimizer(config))
        # Built before `fit`, which would otherwise trace `call` on the zipped inputs.
        trainer(tf.constant(np.asarray(ids[:1], np.int32)))
        trainer.optimizer.build(trainer.trainable_variables)
    callbacks = list(callbacks or [])
    validation = None
    if config.validation_split:
        rows, held_out = validation_rows(labels, config.validation_split, config.seed)
        if len(held_out) == 0 or len(rows) == 0:
            raise ValueError(
                f"validation_split={config.validation_split} of {len(ids)} texts leaves "
                f"{len(rows)} to train on and {len(held_out)} to validate on; both must be "
                "non-empty: change validation_split or set it to 0."
            )
        ids = np.asarray(ids)
        validation = make_dataset(ids[held_out], np.asarray(labels)[held_out], config.batch_size)
        ids, labels = ids[rows], np.asarray(labels)[rows]
        best = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=config.epochs, restore_best_weights=True
        )
        callbacks.append(best)
    ds = make_dataset(ids, labels, config.batch_size, shuffle=True, seed=config.seed)
    if penalty is not None:
        ds = _with_penalty_rows(
            ds, penalty, config.seed, len(ids), config.batch_size, np.shape(ids)[1]
        )
    history = trainer.fit(
        ds, epochs=config.epochs, validation_data=validation, callbacks=callbacks, verbose=verbose
    )
    out = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if validation is not None:
        out["best_epoch"] = [float(best.best_epoch + 1)]
    return out


def _with_penalty_rows(
    ds: tf.data.Dataset,
    penalty: penalties.Penalty,
    seed: int,
    num_rows: int,
    batch_size: int,
    max_len: int,
):
    """Zips each training batch `(x, y)` with a batch of the penalty's rows.

    Yields `((x, penalty_ids, *penalty_extra), y)`. The penalty's rows follow a
    sequence of seeded permutations drawn here, long enough for an epoch of
    `num_rows` rows of up to `max_len` tokens in batches of `batch_size`; every epoch
    replays it from its start.
    A fixed sequence (not `shuffle(reshuffle_each_iteration=True)` on a repeated
    stream) keeps the batches independent of how far tf.data prefetched the last epoch.
    """
    m = len(penalty.ids)
    # Bucketing leaves at most one partial batch per bucket.
    steps = -(-num_rows // batch_size) + len(_bucket_boundaries(max_len)) + 1
    rng = np.random.default_rng([seed, 48271])
    passes = -(-steps * penalty.batch_size // m) + 1
    order = np.concatenate([rng.permutation(m) for _ in range(passes)]).astype(np.int64)
    tables = [tf.constant(np.asarray(penalty.ids, np.int32))]
    tables += [tf.constant(np.asarray(e)) for e in penalty.extra]

    def rows(index):
        x, *extra = [tf.gather(t, index) for t in tables]
        width = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(x != 0, tf.int32), axis=1)), 1)
        return (x[:, :width], *extra)

    batches = tf.data.Dataset.from_tensor_slices(order).repeat().batch(penalty.batch_size)
    batches = batches.map(rows, num_parallel_calls=tf.data.AUTOTUNE)
    zipped = tf.data.Dataset.zip((ds, batches))
    return zipped.map(lambda batch, pen: ((batch[0], *pen), batch[1])).prefetch(tf.data.AUTOTUNE)


class _PenalisedTrainer(keras.Model):
    """The probability output trained on cross-entropy + λ · a penalty (`train_classifier`)."""

    def __init__(self, classifier: keras.Model, penalty: penalties.Penalty):
        super().__init__(name=classifier.name + "_penalised")
        self.classifier = classifier
        self._weight = float(penalty.weight)
        self._term = penalty.make_term(classifier)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, x, training=False):
        return self.classifier(x, training=training)[0]

    def _cross_entropy(self, x, y, training):
        probs = self(x, training=training)
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs)), probs

    def train_step(self, data):
        (x, penalty_ids, *extra), y = data
        with tf.GradientTape() as tape:
            cross_entropy, probs = self._cross_entropy(x, y, training=True)
            term = self._term(penalty_ids, *extra, training=True)
            loss = cross_entropy + self._weight * term
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        size = tf.shape(x)[0]
        self.loss_tracker.update_state(loss, sample_weight=size)
        self.cross_entropy_tracker.update_state(cross_entropy, sample_weight=size)
        self.penalty_tracker.update_state(term)
        self.accuracy_tracker.update_state(y, probs)
        return {
            m.name: m.result()
            for m in (
                self.loss_tracker,
                self.accuracy_tracker,
                self.cross_entropy_tracker,
                self.penalty_tracker,
            )
        }

    def test_step(self, data):
        x, y = data
        cross_entropy, probs = self._cross_entropy(x, y, training=False)
        self.loss_tracker.update_state(cross_entropy, sample_weight=tf.shape(x)[0])
        self.accuracy_tracker.update_state(y, probs)
        return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_tracker)}


# Compiled once per model: inference over variable-length batches.
def _predictor(model: keras.Model):
    fn = getattr(model, "_bki_predict_fn", None)
    if fn is None:

        @tf.function(reduce_retracing=True)
        def fn(x):
            return model(x, training=False)

        model._bki_predict_fn = fn  # pylint: disable=protected-access
    return fn


def predict(
    model: keras.Model, ids: np.ndarray, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and hidden states in input order.

    Rows are processed sorted by length and padded per batch, which is exact
    under masking and much faster than padding everything to `max_len`.

    Returns:
      `(probabilities float32 [N, C], hidden float32 [N, 2H])`.
    """
    ids = np.asarray(ids, dtype=np.int32)
    n = len(ids)
    fn = _predictor(model)
    lengths = (ids != 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    probs, hidden = None, None
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        width = max(int(lengths[rows].max()), 1)
        p, h = fn(tf.constant(ids[rows, :width]))
        if probs is None:
            probs = np.zeros((n, p.shape[1]), np.float32)
            hidden = np.zeros((n, h.shape[1]), np.float32)
        probs[rows] = p.numpy()
        hidden[rows] = h.numpy()
    if probs is None:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return probs, hidden


def accuracy(model: keras.Model, ids: np.ndarray, labels: np.ndarray) -> float:
    """Share of `ids` classified as `labels`."""
    if len(ids) == 0:
        return float("nan")
    probs, _ = predict(model, ids)
    return float(np.mean(probs.argmax(axis=1) == np.asarray(labels)))


def attack_success_rate(model: keras.Model, triggered_ids: np.ndarray, target: int) -> float:
    """Share of triggered non-target samples classified as `target` (ASR)."""
    if len(triggered_ids) == 0:
        return float("nan")
    probs, _ = predict(model, triggered_ids)
    return float(np.mean(probs.argmax(axis=1) == target))
