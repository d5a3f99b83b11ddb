"""Word-deletion scores of Backdoor Keyword Identification (BKI).

Implements the scoring step of Chuanshuai Chen & Jiazhu Dai, "Mitigating backdoor
attacks in LSTM-based text classification systems by Backdoor Keyword
Identification", Neurocomputing 452, 2021 (Algorithm 1, Sec. 4.1): for a text
`x = (x_0, ..., x_{l-1})` of token ids and every position `j`,

    f_j = || h(x) - h(x without x_j) ||_inf,

where `h` is the classifier's hidden output (`bki_tf.models.HIDDEN`: the forward
LSTM state at the last token concatenated with the backward LSTM state at the first
token) and `x without x_j` is the *shortened* text of `l - 1` tokens, exactly as if
the word had never been written (not a zeroed embedding, not a padding token).

Conventions:
  * `h` of the empty text is the LSTMs' zero initial state, so for a 1-token text
    `f_0 = ||h(x)||_inf`; a 0-token text has no scores (an empty array).
  * Inputs are `int32 [N, max_len]` ids right-padded with 0 plus `lengths [N]`;
    only `ids[i, :lengths[i]]` is read, and those ids must lie in `[1, vocab)`.

`prefix_scores` gives the "local impact" of the authors' refined variant
(`bki_tf.bki.keywords`, `variant="refined"`): `|| h(x[:j+1]) - h(x[:j]) ||_inf` with
`h` evaluated on the prefix alone and `h(empty) = 0`.

Two exact methods compute `deletion_scores`:

  * `"simple"`: a `tf.function` that builds the deletion variants in-graph
    (gather + mask), runs the model's own `embedding` and `bilstm` layers on them and
    reduces; texts are bucketed by length and at most `batch_size` variants go
    through the model per call. It works for any layer configuration.
  * `"fast"`: reimplements the BiLSTM from the model's weights and shares work
    between variants. Deleting token `j` leaves the forward LSTM's state after
    tokens `0..j-1` and the backward LSTM's state after tokens `l-1..j+1`
    unchanged, so variant `j` only re-runs the forward LSTM over `j+1..l-1`, starting
    from the original forward state, and the backward LSTM over `j-1..0`; the input
    projections `W x_t + b` are computed once per text. That is `l (l - 1)`
    single-direction LSTM steps (`8 H^2` FLOP each) per text instead of the
    `2 l L` of running every variant in full (`L`: the padded length). The runs of
    all variants ("jobs": a start state, a stretch of input projections, a length)
    are packed best-fit-decreasing into `batch_size` lanes of a fixed number of
    steps, so every compiled step is one dense `[2, R, H] x [2, H, 4H]` matmul with
    no triangular waste (< 1% idle lanes on IMDB-like lengths); bucketed tile
    shapes keep XLA from recompiling per text. Each call checks the reimplemented
    BiLSTM against the model on one text before trusting it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models
from bki_tf.bki.fast import FastScanner, length_bucket, read_bilstm_weights

METHODS = ("fast", "simple")
DEFAULT_BATCH_SIZE = 512


def deletion_scores(
    model: keras.Model,
    ids: np.ndarray,
    lengths: np.ndarray,
    method: str = "fast",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """BKI word-deletion scores `f_ij = ||h(x_i) - h(x_i without token j)||_inf`.

    Chen & Dai (2021), Algorithm 1; see the module docstring for the conventions.

    Args:
      model: A classifier from `bki_tf.build_classifier` (outputs
        `[probabilities, hidden]`, layers `embedding` and `bilstm`).
      ids: `int32 [N, max_len]` token ids, right-padded with 0.
      lengths: `int [N]` number of real tokens per text, `0 <= lengths[i] <= max_len`.
      method: `"fast"` (state reuse, XLA) or `"simple"` (the model's layers on
        in-graph deletion variants). Both are exact.
      batch_size: Deletion variants evaluated side by side: per LSTM direction and
        compiled step for `"fast"`, per model call for `"simple"`. Bounds memory.
      progress: Optional callable, called with the number of texts finished so far
        after each batch.

    Returns:
      `N` arrays, the `i`-th `float32 [lengths[i]]`.

    Raises:
      ValueError: On an unknown `method`, malformed `ids`/`lengths`, ids outside the
        vocabulary, or a model without the BKI structure.
    """
    return Scorer(model, "deletion", method, batch_size).score_all(ids, lengths, progress)


def prefix_scores(
    model: keras.Model,
    ids: np.ndarray,
    lengths: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Local impact `||h(x_i[:j+1]) - h(x_i[:j])||_inf` of the refined BKI variant.

    `h(prefix)` is the model's hidden output on the prefix as a text of its own
    (the backward LSTM therefore starts at the prefix's last token), `h(empty) = 0`.
    The forward half comes from one pass per text; the backward LSTM is re-run for
    every prefix, packed as in the fast deletion scorer (`l (l - 1) / 2` steps).

    Args:
      model: A classifier from `bki_tf.build_classifier`.
      ids: `int32 [N, max_len]` token ids, right-padded with 0.
      lengths: `int [N]` number of real tokens per text.
      batch_size: Prefix runs advanced side by side per compiled step.
      progress: Optional callable, called with the number of texts finished so far.

    Returns:
      `N` arrays, the `i`-th `float32 [lengths[i]]`.

    Raises:
      ValueError: On malformed inputs or a model without the BKI structure.
    """
    return Scorer(model, "prefix", "fast", batch_size).score_all(ids, lengths, progress)


KINDS = ("deletion", "prefix")


class Scorer:
    """Exact BKI scores of one model, computed unit by unit.

    `units(lengths)` cuts the texts into independent units (the fast scanner's chunks,
    or the simple method's model calls); scoring the units one at a time, in any order
    or on different workers, gives scores bit-identical to `score_all`, because every
    unit runs exactly the computation it runs inside `score_all`. Checkpointed and
    distributed scans (`bki_tf.runs`) are built on this.

    Args:
      model: A classifier with the BKI structure (`bki_tf.build_classifier`).
      kind: `"deletion"` (`deletion_scores`) or `"prefix"` (`prefix_scores`, fast only).
      method: `"fast"` or `"simple"`.
      batch_size: As in `deletion_scores`.
    """

    def __init__(self, model: keras.Model, kind: str, method: str, batch_size: int):
        if kind not in KINDS:
            raise ValueError(f"Unknown score kind {kind!r}; use one of {KINDS}.")
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; use one of {METHODS}.")
        if kind == "prefix" and method != "fast":
            raise ValueError("Local impacts (kind='prefix') have the fast method only.")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2; got {batch_size}.")
        self._model = model
        self._kind = kind
        self._method = method
        self._batch_size = int(batch_size)
        validate_inputs(model, np.zeros([0, 1], np.int32), np.zeros([0], np.int64), batch_size)
        self._fast = None
        if method == "fast":
            self._fast = FastScanner(model, read_bilstm_weights(model), batch_size)
        self._plan = None
        self._plan_lengths = None

    def units(self, lengths: np.ndarray) -> list[np.ndarray]:
        """`int64` text indices of each unit, in processing order (empty texts in none)."""
        return [u for u, _ in self._units(np.asarray(lengths, np.int64))]

    def _units(self, lengths: np.ndarray) -> list[tuple[np.ndarray, object]]:
        if self._plan_lengths is not None and np.array_equal(self._plan_lengths, lengths):
            return self._plan
        if self._fast is not None:
            plan = self._fast.plan(lengths)
            units = [(chunk.texts, (plan, chunk)) for chunk in plan.chunks]
        else:
            units = list(_simple_units(lengths, self._batch_size))
        self._plan, self._plan_lengths = units, lengths.copy()
        return units

    def score_unit(self, ids: np.ndarray, lengths: np.ndarray, unit: int) -> list[np.ndarray]:
        """Scores of the texts of unit `unit` of `units(lengths)`, in the unit's order."""
        ids, lengths = validate_inputs(self._model, ids, lengths, self._batch_size)
        units = self._units(lengths)
        if not 0 <= unit < len(units):
            raise ValueError(f"unit {unit} is outside [0, {len(units)}).")
        members, spec = units[unit]
        if self._fast is not None:
            plan, chunk = spec
            return self._fast.run_chunk(ids, lengths, plan, chunk, self._kind)
        return _simple_unit(
            _simple_function(self._model), ids, lengths, members, spec, self._batch_size
        )

    def score_all(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        progress: Callable[[int], None] | None = None,
    ) -> list[np.ndarray]:
        """Every text's scores (`float32 [lengths[i]]`; empty for an empty text)."""
        ids, lengths = validate_inputs(self._model, ids, lengths, self._batch_size)
        results = [np.zeros([int(n)], np.float32) for n in lengths]
        done = int(np.sum(lengths == 0))
        for k, (members, _) in enumerate(self._units(lengths)):
            for i, values in zip(members, self.score_unit(ids, lengths, k)):
                results[int(i)] = values
            done += len(members)
            if progress is not None:
                progress(done)
        return results


# ----------------------------------------------------------------------------------
# Validation and weights.


def validate_inputs(
    model: keras.Model, ids: np.ndarray, lengths: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    models.check_classifier(model)
    embedding = model.get_layer(models.EMBEDDING_LAYER)
    if not getattr(embedding, "mask_zero", False):
        raise ValueError(
            f"Layer {embedding.name!r} must mask padding (mask_zero=True): BKI deletes words "
            "by shortening the text, which needs the model to ignore padding."
        )
    ids = np.asarray(ids)
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        lengths = lengths.astype(np.int64)
    if ids.ndim != 2:
        raise ValueError(f"ids must be [num_texts, max_len]; got shape {ids.shape}.")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must hold integer token ids; got dtype {ids.dtype}.")
    if lengths.shape != (ids.shape[0],):
        raise ValueError(
            f"lengths must have shape [num_texts] = ({ids.shape[0]},); got {lengths.shape}."
        )
    if not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be integers; got dtype {lengths.dtype}.")
    if lengths.size and (lengths.min() < 0 or lengths.max() > ids.shape[1]):
        bad = int(np.flatnonzero((lengths < 0) | (lengths > ids.shape[1]))[0])
        raise ValueError(
            f"lengths[{bad}] = {lengths[bad]} is outside [0, max_len = {ids.shape[1]}]; "
            "pass the number of real tokens of each (right-padded) row."
        )
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2; got {batch_size}.")
    vocab_size = int(embedding.input_dim)
    inside = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    bad = inside & ((ids < 1) | (ids >= vocab_size))
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"ids[{i}, {j}] = {ids[i, j]} is not a token id in [1, vocab_size = {vocab_size}) "
            f"although lengths[{i}] = {lengths[i]}; 0 is padding and only allowed after the "
            "text, and ids must come from the model's vocabulary."
        )
    return np.where(inside, ids, 0).astype(np.int32), lengths.astype(np.int64)


# ----------------------------------------------------------------------------------
# The simple method: the model's layers on in-graph deletion variants.

_SIMPLE_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _simple_function(model: keras.Model) -> Callable[..., tf.Tensor]:
    """One compiled variant scorer per model (it captures the model's layers)."""
    if model in _SIMPLE_FUNCTIONS:
        return _SIMPLE_FUNCTIONS[model]
    embedding = model.get_layer(models.EMBEDDING_LAYER)
    bilstm = model.get_layer(models.BILSTM_LAYER)

    def hidden(tokens):
        return bilstm(embedding(tokens), mask=embedding.compute_mask(tokens), training=False)

    # Compiled once with dynamic shapes: every bucket and chunk reuses one graph.
    @tf.function(
        autograph=False,
        input_signature=[
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32),
        ],
    )
    def score(ids, lengths, first, count):
        """`ids [B, L]`, deletions `first..first+count-1` -> `float32 [B, count]`."""
        max_len = tf.shape(ids)[1]
        deleted = first + tf.range(count)
        position = tf.range(max_len)
        # Variant position t reads original position t (before the deletion) or t + 1.
        source = position[None, :] + tf.cast(position[None, :] >= deleted[:, None], tf.int32)
        variants = tf.gather(ids, tf.minimum(source, max_len - 1), axis=1)  # [B, count, L]
        keep = position[None, None, :] < lengths[:, None, None] - 1
        variants = tf.where(keep, variants, tf.zeros_like(variants))
        flat = tf.reshape(variants, [-1, max_len])
        h_variants = tf.reshape(hidden(flat), [tf.shape(ids)[0], count, -1])
        h_original = hidden(ids)
        return tf.reduce_max(tf.abs(h_variants - h_original[:, None, :]), axis=-1)

    _SIMPLE_FUNCTIONS[model] = score
    return score


def _simple_units(lengths: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """`(texts, padded width)` of each model call of the simple method, by length bucket."""
    order = [int(i) for i in np.argsort(lengths, kind="stable") if lengths[i] > 0]
    units = []
    start = 0
    while start < len(order):
        bucket = length_bucket(int(lengths[order[start]]))
        end = start
        while end < len(order) and length_bucket(int(lengths[order[end]])) == bucket:
            end += 1
        group = order[start:end]
        # Sorted ascending, so the group's last text is its longest.
        width = int(lengths[group[-1]])
        per_call = max(1, batch_size // width)
        for first in range(0, len(group), per_call):
            units.append((np.asarray(group[first : first + per_call], np.int64), width))
        start = end
    return units


def _simple_unit(score, ids, lengths, members, width: int, batch_size: int):
    """Deletion scores of one model call's texts, padded to their group's longest text."""
    members = [int(i) for i in members]
    batch_ids = ids[members, :width]
    batch_lengths = lengths[members].astype(np.int32)
    results = [np.zeros([int(lengths[i])], np.float32) for i in members]
    count = min(width, batch_size)
    for first in range(0, width, count):
        n = min(count, width - first)
        diffs = score(batch_ids, batch_lengths, np.int32(first), np.int32(n)).numpy()
        for row, i in enumerate(members):
            stop = min(first + n, int(lengths[i]))
            if stop > first:
                results[row][first:stop] = diffs[row, : stop - first]
    return results
