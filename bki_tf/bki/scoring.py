"""Word-deletion scores of Backdoor Keyword Identification (BKI).

Implements the scoring step of Chuanshuai Chen & Jiazhu Dai, "Mitigating backdoor
attacks in LSTM-based text classification systems by Backdoor Keyword
Identification", Neurocomputing 452, 2021 (Algorithm 1, Sec. 4.1): for a text
`x = (x_0, ..., x_{l-1})` of token ids and every position `j`,

    f_j = || h(x) - h(x without x_j) ||_inf,

where `h` is the classifier's hidden output (`bki_tf.models.HIDDEN`; for the paper's
BiLSTM victim the forward LSTM state at the last token concatenated with the
backward LSTM state at the first token, see `bki_tf.models` for the others) and
`x without x_j` is the *shortened* text of `l - 1` tokens, exactly as if the word had
never been written (not a zeroed embedding, not a padding token).

Conventions:
  * `h` of the empty text is the RNNs' zero initial state (zero as well for the
    mean-pooled `"bilstm_gap"`), so for a 1-token text `f_0 = ||h(x)||_inf`; a
    0-token text has no scores (an empty array).
  * Inputs are `int32 [N, max_len]` ids right-padded with 0 plus `lengths [N]`;
    only `ids[i, :lengths[i]]` is read, and those ids must lie in `[1, vocab)`.

`span_scores` deletes `span` consecutive tokens instead of one (BKI+'s `span`
setting, `bki_tf.bki.plus`): per position `j` the largest
`|| h(x) - h(x without x_s..x_{s+span-1}) ||_inf` over the spans that hold `j`
(spans start at `s = 0..l-span`; a text of at most `span` tokens has one span, the
whole text, whose deletion leaves `h(empty)`). `span = 1` is `deletion_scores`. A
trigger whose single words were trained not to stand out under one-word deletion
(the anti-BKI attack) still moves `h` when it is deleted a few words at a time.

`prefix_scores` gives the "local impact" of the authors' refined variant
(`bki_tf.bki.keywords`, `variant="refined"`): `|| h(x[:j+1]) - h(x[:j]) ||_inf` with
`h` evaluated on the prefix alone and `h(empty) = 0`.

Three exact methods compute `deletion_scores` (`METHODS`), and `"auto"` picks one
(`resolve_method`: `"fast"` for `bki_tf.build_classifier`'s `FAST_ARCHITECTURES`
victims scored on their `hidden` output, `"generic"` for every other model):

  * `"simple"`: a `tf.function` that builds the deletion variants in-graph
    (gather + mask), runs the model's own `embedding` and `bilstm` layers on them and
    reduces; texts are bucketed by length and at most `batch_size` variants go
    through the model per call. It works for any layer configuration.
  * `"fast"`: reimplements the recurrent encoder from the model's weights
    (`bki_tf.bki.fast`) and shares work between variants. Deleting token `j` leaves
    the forward RNN's state after tokens `0..j-1` and the backward RNN's state after
    tokens `l-1..j+1` unchanged, so variant `j` only re-runs the forward RNN over
    `j+1..l-1`, starting from the original forward state, and the backward RNN over
    `j-1..0`; the input projections `W x_t + b` are computed once per text. That is
    `l (l - 1)` single-direction RNN steps (`8 H^2` FLOP each for an LSTM, `6 H^2`
    for a GRU) per text instead of the `2 l L` of running every variant in full
    (`L`: the padded length). The runs of all variants ("jobs": a start state, a
    stretch of input projections, a length) are packed best-fit-decreasing into
    `batch_size` lanes of a fixed number of steps, so every compiled step is one
    dense `[2, R, H] x [2, H, G H]` matmul with no triangular waste (< 1% idle lanes
    on IMDB-like lengths); bucketed tile shapes keep XLA from recompiling per text.
    It covers the BiLSTM and BiGRU victims (`"bilstm"`, `"bigru"`), their
    unidirectional forms (`"lstm"`, `"gru"`: the forward direction only) and the
    mean-pooled BiLSTM (`"bilstm_gap"`: every job also sums its outputs, and a
    variant's mean is the first pass' outputs before the deleted token plus the
    job's sum, over `l - 1`). Each call checks the reimplemented encoder against the
    model on one text before trusting it. Stacked encoders (`"stacked_bilstm"`)
    have no fast path.
  * `"generic"`: any functional or Sequential Keras model, through
    `bki_tf.bki.representation.representation_model(model, representation_layer,
    pool)`. Deletion always shortens the text: the `l` variants of length `l - 1` and
    the original are run unpadded, batched only with texts of the same exact
    length, so the scores are exact whether or not the model masks padding (Conv1D,
    GlobalAveragePooling1D without `mask_zero`, ...). Local impacts run every prefix
    length `m` of a unit's texts as one unpadded batch. For a generic model `h` of
    the empty text is defined as the zero vector (for the victims of
    `build_classifier` with an RNN state as `h`, that is their initial state).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models
from bki_tf.bki import representation
from bki_tf.bki.fast import FastScanner, length_bucket, read_fast_weights

METHODS = ("fast", "simple", "generic")
AUTO = "auto"
# What a caller may pass as `method`: "auto" resolves to one of METHODS.
METHOD_CHOICES = (AUTO, *METHODS)
# `build_classifier` architectures that have the fast state-reusing scorer
# (`bki_tf.bki.fast.read_fast_weights`).
FAST_ARCHITECTURES = ("bilstm", "lstm", "gru", "bigru", "bilstm_gap")
KINDS = ("deletion", "prefix")
DEFAULT_BATCH_SIZE = 512


def resolve_method(
    model: keras.Model,
    representation_layer: str = models.HIDDEN,
    pool: str | None = None,
) -> str:
    """The method `"auto"` stands for.

    `"fast"` for a `bki_tf.build_classifier` victim of a `FAST_ARCHITECTURES`
    architecture (`models.architecture_of`, read from the model's name) scored on its
    `hidden` output without pooling: the paper's BiLSTM victims therefore get exactly
    the scores they got before `"auto"` existed. `"generic"` for everything else
    (`"stacked_bilstm"`, other layers, any other Keras model).
    """
    if (
        models.architecture_of(model) in FAST_ARCHITECTURES
        and representation_layer == models.HIDDEN
        and pool is None
    ):
        return "fast"
    return "generic"


def deletion_scores(
    model: keras.Model,
    ids: np.ndarray,
    lengths: np.ndarray,
    method: str = AUTO,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    representation_layer: str = models.HIDDEN,
    pool: str | None = None,
) -> list[np.ndarray]:
    """BKI word-deletion scores `f_ij = ||h(x_i) - h(x_i without token j)||_inf`.

    Chen & Dai (2021), Algorithm 1; see the module docstring for the conventions.

    Args:
      model: A classifier from `bki_tf.build_classifier` (outputs
        `[probabilities, hidden]`), or, with `method="generic"` (or `"auto"`), any
        functional or Sequential Keras model on token ids or on raw strings through a
        `TextVectorization` first layer (`bki_tf.bki.representation`).
      ids: `int32 [N, max_len]` token ids, right-padded with 0.
      lengths: `int [N]` number of real tokens per text, `0 <= lengths[i] <= max_len`.
      method: `"auto"` (`resolve_method`), `"fast"` (state reuse, XLA), `"simple"`
        (the BiLSTM victim's layers on in-graph deletion variants) or `"generic"`
        (any model, unpadded shortened texts). All are exact.
      batch_size: Deletion variants evaluated side by side: per RNN direction and
        compiled step for `"fast"`, per model call otherwise. Bounds memory.
      progress: Optional callable, called with the number of texts finished so far
        after each batch.
      representation_layer: The layer whose output is `h` (`"generic"` only for a
        layer other than `hidden`).
      pool: `None`, `"last"`, `"mean"` or `"max"`: how a sequence output of
        `representation_layer` becomes one vector (`representation.POOLS`).

    Returns:
      `N` arrays, the `i`-th `float32 [lengths[i]]`.

    Raises:
      ValueError: On an unknown `method`, malformed `ids`/`lengths`, ids outside the
        vocabulary, or a model the method cannot score.
    """
    scorer = Scorer(model, "deletion", method, batch_size, representation_layer, pool)
    return scorer.score_all(ids, lengths, progress)


def span_scores(
    model: keras.Model,
    ids: np.ndarray,
    lengths: np.ndarray,
    span: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    representation_layer: str = models.HIDDEN,
    pool: str | None = None,
) -> list[np.ndarray]:
    """Span-deletion scores: per token, the largest impact of deleting `span` tokens with it.

    See the module docstring. Computed by the generic method (any Keras model,
    every shortened text run unpadded); `span=1` equals `deletion_scores`.

    Args:
      model, ids, lengths, batch_size, progress, representation_layer, pool: As in
        `deletion_scores`.
      span: Consecutive tokens deleted at a time (`>= 1`).

    Returns:
      `N` arrays, the `i`-th `float32 [lengths[i]]`.

    Raises:
      ValueError: On a bad `span`, malformed inputs or a model the generic method
        cannot score.
    """
    scorer = Scorer(model, "deletion", "generic", batch_size, representation_layer, pool, span=span)
    return scorer.score_all(ids, lengths, progress)


def spans_to_tokens(span_impacts: np.ndarray, length: int, span: int) -> np.ndarray:
    """Per token, the largest of the impacts of the spans that hold it.

    `span_impacts[s]` is the impact of deleting tokens `s..s+span-1`
    (`max(length - span + 1, 1)` values; one, for the whole text, when
    `length <= span`). Returns `float32 [length]`.
    """
    span_impacts = np.asarray(span_impacts, np.float32)
    starts = max(length - span + 1, 1)
    if span_impacts.shape != (starts,):
        raise ValueError(
            f"{length} tokens and span {span} give {starts} span impacts, got shape "
            f"{span_impacts.shape}."
        )
    out = np.full([length], -np.inf, np.float32)
    for offset in range(min(span, length)):
        # Span s holds token s + offset.
        stop = min(starts, length - offset)
        np.maximum(
            out[offset : offset + stop], span_impacts[:stop], out=out[offset : offset + stop]
        )
    return out


def prefix_scores(
    model: keras.Model,
    ids: np.ndarray,
    lengths: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    method: str = AUTO,
    representation_layer: str = models.HIDDEN,
    pool: str | None = None,
) -> list[np.ndarray]:
    """Local impact `||h(x_i[:j+1]) - h(x_i[:j])||_inf` of the refined BKI variant.

    `h(prefix)` is the model's hidden output on the prefix as a text of its own
    (the backward RNN therefore starts at the prefix's last token), `h(empty) = 0`.
    `"fast"`: the forward half comes from one pass per text (for `"bilstm_gap"`, the
    running sums of its outputs); the backward RNN is re-run for every prefix,
    packed as in the fast deletion scorer (`l (l - 1) / 2` steps). `"generic"`: every prefix is run unpadded (see the module docstring).

    Args:
      model: As in `deletion_scores`.
      ids: `int32 [N, max_len]` token ids, right-padded with 0.
      lengths: `int [N]` number of real tokens per text.
      batch_size: Prefix runs advanced side by side per compiled step or model call.
      progress: Optional callable, called with the number of texts finished so far.
      method: `"auto"`, `"fast"` or `"generic"` (`"simple"` has no local impacts).
      representation_layer, pool: As in `deletion_scores`.

    Returns:
      `N` arrays, the `i`-th `float32 [lengths[i]]`.

    Raises:
      ValueError: On malformed inputs or a model the method cannot score.
    """
    scorer = Scorer(model, "prefix", method, batch_size, representation_layer, pool)
    return scorer.score_all(ids, lengths, progress)


class Scorer:
    """Exact BKI scores of one model, computed unit by unit.

    `units(lengths)` cuts the texts into independent units (the fast scanner's chunks,
    the simple method's model calls, the generic method's groups of same-length texts
    for deletions or of up to `batch_size` texts for local impacts); scoring the
    units one at a time, in any order or on different workers, gives scores
    bit-identical to `score_all`, because every unit runs exactly the computation it
    runs inside `score_all`. Checkpointed and distributed scans (`bki_tf.runs`) are
    built on this.

    Args:
      model: As in `deletion_scores`.
      kind: `"deletion"` (`deletion_scores`) or `"prefix"` (`prefix_scores`).
      method: One of `METHOD_CHOICES`; `"auto"` is resolved here (`resolve_method`).
      batch_size: As in `deletion_scores`.
      representation_layer, pool: As in `deletion_scores`.
      span: Deletion kind only: consecutive tokens deleted at a time (`span_scores`);
        above 1 only the generic method scores spans.
    """

    def __init__(
        self,
        model: keras.Model,
        kind: str = "deletion",
        method: str = AUTO,
        batch_size: int = DEFAULT_BATCH_SIZE,
        representation_layer: str = models.HIDDEN,
        pool: str | None = None,
        span: int = 1,
    ):
        if isinstance(span, bool) or not isinstance(span, int | np.integer) or span < 1:
            raise ValueError(
                f"span must be an integer >= 1 (tokens deleted at a time); got {span!r}."
            )
        if span > 1 and kind != "deletion":
            raise ValueError(f"span = {span} applies to deletion scores, not kind={kind!r}.")
        if span > 1 and method not in (AUTO, "generic"):
            raise ValueError(
                f"Span deletions (span = {span}) are scored by method='generic' (or 'auto'), "
                f"not {method!r}."
            )
        if span > 1:
            method = "generic"
        if kind not in KINDS:
            raise ValueError(f"Unknown score kind {kind!r}; use one of {KINDS}.")
        if method not in METHOD_CHOICES:
            raise ValueError(f"Unknown method {method!r}; use one of {METHOD_CHOICES}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size must be an integer; got {batch_size!r}.")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2; got {batch_size}.")
        if method == AUTO:
            method = resolve_method(model, representation_layer, pool)
        if method != "generic" and (representation_layer != models.HIDDEN or pool is not None):
            raise ValueError(
                f"method={method!r} scores the {models.HIDDEN!r} output of "
                "bki_tf.build_classifier; use method='generic' (or 'auto') for "
                f"representation_layer={representation_layer!r}, pool={pool!r}."
            )
        if kind == "prefix" and method == "simple":
            raise ValueError(
                "Local impacts (kind='prefix') have the methods 'fast' and 'generic' "
                "(or 'auto'), not 'simple'."
            )
        self._model = model
        self._kind = kind
        self._method = method
        self._batch_size = int(batch_size)
        self._span = int(span)
        self._fast = None
        self._represent = None
        if method == "generic":
            self._represent = _generic_function(model, representation_layer, pool)
            self._vocab_size = representation.vocabulary_size(model)
        else:
            _check_bki_structure(model)
            self._vocab_size = int(model.get_layer(models.EMBEDDING_LAYER).input_dim)
            if method == "fast":
                self._fast = FastScanner(model, read_fast_weights(model), self._batch_size)
            elif models.BILSTM_LAYER not in {x.name for x in model.layers}:
                raise ValueError(
                    f"method='simple' runs the {models.BILSTM_LAYER!r} layer of the BiLSTM "
                    f"victim; model {model.name!r} has none (architecture "
                    f"{models.architecture_of(model)!r}). Use method='generic' or 'auto'."
                )
        self._plan = None
        self._plan_lengths = None

    @property
    def method(self) -> str:
        """The method this scorer runs (`"auto"` resolved)."""
        return self._method

    def units(self, lengths: np.ndarray) -> list[np.ndarray]:
        """`int64` text indices of each unit, in processing order (empty texts in none)."""
        return [u for u, _ in self._units(np.asarray(lengths, np.int64))]

    def _units(self, lengths: np.ndarray) -> list[tuple[np.ndarray, object]]:
        if self._plan_lengths is not None and np.array_equal(self._plan_lengths, lengths):
            return self._plan
        if self._fast is not None:
            plan = self._fast.plan(lengths)
            units = [(chunk.texts, (plan, chunk)) for chunk in plan.chunks]
        elif self._represent is None:
            units = list(_simple_units(lengths, self._batch_size))
        elif self._kind == "deletion":
            units = _generic_deletion_units(lengths, self._batch_size)
        else:
            units = _generic_prefix_units(lengths, self._batch_size)
        self._plan, self._plan_lengths = units, lengths.copy()
        return units

    def score_unit(self, ids: np.ndarray, lengths: np.ndarray, unit: int) -> list[np.ndarray]:
        """Scores of the texts of unit `unit` of `units(lengths)`, in the unit's order.

        Only the unit's rows of `ids` are read (and checked).
        """
        ids, lengths = _check_arrays(ids, lengths)
        units = self._units(lengths)
        if isinstance(unit, bool) or not isinstance(unit, int | np.integer):
            raise ValueError(f"unit must be an integer; got {unit!r}.")
        if not 0 <= unit < len(units):
            raise ValueError(f"unit {unit} is outside [0, {len(units)}).")
        ids = _clean_ids(ids, lengths, self._vocab_size, units[unit][0])
        return self._score_unit(ids, lengths, units[unit])

    def _score_unit(self, ids, lengths, unit) -> list[np.ndarray]:
        members, spec = unit
        if self._fast is not None:
            plan, chunk = spec
            return self._fast.run_chunk(ids, lengths, plan, chunk, self._kind)
        if self._represent is None:
            return _simple_unit(
                _simple_function(self._model), ids, lengths, members, spec, self._batch_size
            )
        if self._kind == "deletion":
            return _generic_deletion_unit(
                self._represent, ids, lengths, members, self._batch_size, self._span
            )
        return _generic_prefix_unit(self._represent, ids, lengths, members)

    def score_all(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        progress: Callable[[int], None] | None = None,
    ) -> list[np.ndarray]:
        """Every text's scores (`float32 [lengths[i]]`; empty for an empty text)."""
        ids, lengths = _check_arrays(ids, lengths)
        ids = _clean_ids(ids, lengths, self._vocab_size)
        results = [np.zeros([int(n)], np.float32) for n in lengths]
        done = int(np.sum(lengths == 0))
        for unit in self._units(lengths):
            for i, values in zip(unit[0], self._score_unit(ids, lengths, unit)):
                results[int(i)] = values
            done += len(unit[0])
            if progress is not None:
                progress(done)
        return results


# ----------------------------------------------------------------------------------
# Validation.


def validate_inputs(
    model: keras.Model, ids: np.ndarray, lengths: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Checks a `build_classifier` model and its inputs; returns clean `int32` ids, `int64` lengths.

    Ids after each text's length are zeroed; every id inside a text must lie in
    `[1, vocab_size)` of the model's `embedding` layer.
    """
    _check_bki_structure(model)
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2; got {batch_size}.")
    ids, lengths = _check_arrays(ids, lengths)
    vocab_size = int(model.get_layer(models.EMBEDDING_LAYER).input_dim)
    return _clean_ids(ids, lengths, vocab_size), lengths


def _check_bki_structure(model: keras.Model) -> None:
    models.check_classifier(model)
    embedding = model.get_layer(models.EMBEDDING_LAYER)
    if not getattr(embedding, "mask_zero", False):
        raise ValueError(
            f"Layer {embedding.name!r} must mask padding (mask_zero=True): BKI deletes words "
            "by shortening the text, which needs the model to ignore padding (or use "
            "method='generic', which never pads)."
        )


def _check_arrays(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shapes, dtypes and lengths (O(N)); the ids themselves are checked by `_clean_ids`."""
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
    return ids, lengths.astype(np.int64)


def _clean_ids(
    ids: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int | None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """`int32` ids, 0 after each text; checks the ids inside the texts of `rows` (all if None).

    With `rows`, the other rows of the result are all 0 (they are not read).
    """
    if rows is None:
        rows = np.arange(ids.shape[0])
        whole = True
    else:
        rows = np.asarray(rows, np.int64)
        whole = False
    block = ids[rows]
    inside = np.arange(ids.shape[1])[None, :] < lengths[rows][:, None]
    bad = inside & (block < 1)
    if vocab_size is not None:
        bad |= inside & (block >= vocab_size)
    if bad.any():
        r, j = (int(v) for v in np.argwhere(bad)[0])
        i = int(rows[r])
        limit = f"[1, vocab_size = {vocab_size})" if vocab_size is not None else ">= 1"
        raise ValueError(
            f"ids[{i}, {j}] = {ids[i, j]} is not a token id in {limit} "
            f"although lengths[{i}] = {lengths[i]}; 0 is padding and only allowed after the "
            "text, and ids must come from the model's vocabulary."
        )
    block = np.where(inside, block, 0).astype(np.int32)
    if whole:
        return block
    clean = np.zeros(ids.shape, np.int32)
    clean[rows] = block
    return clean


# ----------------------------------------------------------------------------------
# The generic method: the representation of any Keras model on unpadded texts.

_GENERIC_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _generic_function(
    model: keras.Model, representation_layer: str, pool: str | None
) -> Callable[[np.ndarray], tf.Tensor]:
    """One compiled `ids [B, l] -> h [B, d]` per model, layer and pool."""
    per_model = _GENERIC_FUNCTIONS.setdefault(model, {})
    key = (representation_layer, pool)
    if key not in per_model:
        adapter = representation.representation_model(model, representation_layer, pool)

        # Compiled once with a dynamic [batch, length]: every length reuses one graph.
        @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None], tf.int32)])
        def represent(ids):
            return adapter(ids, training=False)

        per_model[key] = represent
    return per_model[key]


def _generic_deletion_units(lengths: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, None]]:
    """Texts of one exact length `l`, at most `batch_size // (l + 1)` (and >= 1) per unit."""
    order = [int(i) for i in np.argsort(lengths, kind="stable") if lengths[i] > 0]
    units = []
    start = 0
    while start < len(order):
        length = int(lengths[order[start]])
        end = start
        while end < len(order) and int(lengths[order[end]]) == length:
            end += 1
        per_unit = max(1, batch_size // (length + 1))
        for first in range(start, end, per_unit):
            units.append((np.asarray(order[first : min(first + per_unit, end)], np.int64), None))
        start = end
    return units


def _generic_prefix_units(lengths: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, None]]:
    """Up to `batch_size` texts per unit, longest first."""
    order = [int(i) for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
    return [
        (np.asarray(order[first : first + batch_size], np.int64), None)
        for first in range(0, len(order), batch_size)
    ]


def _generic_deletion_unit(represent, ids, lengths, members, batch_size: int, span: int = 1):
    """Deletion scores (`span_scores`; `span=1`: one word) of `k` texts of one length `l`."""
    members = [int(i) for i in members]
    length = int(lengths[members[0]])
    texts = ids[members, :length]  # [k, l]
    original = represent(texts).numpy()  # [k, d]
    if length <= span:
        # The only span is the whole text; its deletion leaves h(empty) = 0.
        top = np.max(np.abs(original), axis=-1)
        return [np.full([length], v, np.float32) for v in top]
    starts = length - span + 1
    # Variant s keeps positions t < s and t >= s + span.
    position = np.arange(length - span)[None, :]
    source = position + span * (position >= np.arange(starts)[:, None])  # [starts, l - span]
    variants = texts[:, source].reshape(-1, length - span)  # [k starts, l - span]
    hidden = np.concatenate(
        [
            represent(variants[first : first + batch_size]).numpy()
            for first in range(0, len(variants), batch_size)
        ]
    )
    hidden = hidden.reshape(len(members), starts, -1)
    diffs = np.max(np.abs(hidden - original[:, None, :]), axis=-1)
    if span == 1:
        return [row.astype(np.float32) for row in diffs]
    return [spans_to_tokens(row, length, span) for row in diffs]


def _generic_prefix_unit(represent, ids, lengths, members):
    """Local impacts of a unit's texts (longest first): one call per prefix length."""
    members = [int(i) for i in members]
    unit_lengths = lengths[members]
    results = [np.zeros([int(n)], np.float32) for n in unit_lengths]
    previous = None  # h of the (m - 1)-token prefixes; h(empty) = 0.
    for m in range(1, int(unit_lengths[0]) + 1):
        count = int(np.sum(unit_lengths >= m))  # The longest `count` texts.
        hidden = represent(ids[members[:count], :m]).numpy()
        before = 0.0 if previous is None else previous[:count]
        diffs = np.max(np.abs(hidden - before), axis=-1).astype(np.float32)
        for r in range(count):
            results[r][m - 1] = diffs[r]
        previous = hidden
    return results


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
