"""The fast exact BKI scorer: the BiLSTM reimplemented from its weights, with state reuse.

Deleting token `j` leaves the forward LSTM's state after tokens `0..j-1` and the
backward LSTM's state after tokens `l-1..j+1` unchanged, so variant `j` only re-runs the
forward LSTM over `j+1..l-1` from the original forward state, and the backward LSTM over
`j-1..0`; see `bki_tf.bki.scoring` for the contract and the packing of the jobs. A
unidirectional LSTM victim runs the forward direction alone (`D = 1`): the same jobs,
and its local impacts come straight from the first pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models

_MAX_POSITIONS = 16384
# Padded text lengths: one compiled first pass per value.
_LENGTH_BUCKETS = (8, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
_MIN_LANES = 16
# Agreement required between the fast reimplementation and the model itself.
_VERIFY_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class BiLstmWeights:
    """The (Bi)LSTM in the layout of the fast scorer: direction 0 forward, 1 backward.

    A unidirectional LSTM (`architecture="lstm"`) has direction 0 only (`D = 1`).
    Gate order i, f, g, o along the `4H` axis, as in `keras.layers.LSTMCell`.
    """

    embeddings: np.ndarray  # float32 [vocab, d]
    kernel: np.ndarray  # float32 [D, d, 4H]
    recurrent: np.ndarray  # float32 [D, H, 4H]
    bias: np.ndarray  # float32 [D, 4H]

    @property
    def units(self) -> int:
        return self.recurrent.shape[1]

    @property
    def directions(self) -> int:
        return self.kernel.shape[0]


_HINT = "; use method='simple' or 'generic', which run the model's own layers"


def read_fast_weights(model: keras.Model) -> BiLstmWeights:
    """The weights of the `bilstm` layer, or of the `lstm` layer of an LSTM victim.

    Raises:
      ValueError: For a model with neither layer, or with LSTM options the fast
        scorer does not reproduce.
    """
    names = {x.name for x in model.layers}
    if models.BILSTM_LAYER in names:
        return read_bilstm_weights(model)
    if models.LSTM_LAYER in names:
        return read_lstm_weights(model)
    raise ValueError(
        f"method='fast' reimplements the {models.BILSTM_LAYER!r} (or {models.LSTM_LAYER!r}) "
        f"layer of bki_tf.build_classifier; model {model.name!r} has neither (architecture "
        f"{models.architecture_of(model)!r}). Use method='generic' (or 'auto')."
    )


def read_bilstm_weights(model: keras.Model) -> BiLstmWeights:
    """Reads the weights, rejecting LSTM options the fast scorer does not reproduce."""
    bilstm = model.get_layer(models.BILSTM_LAYER)
    if not isinstance(bilstm, keras.layers.Bidirectional):
        raise ValueError(f"Layer {bilstm.name!r} is a {type(bilstm).__name__}, not Bidirectional.")
    if bilstm.merge_mode != "concat":
        raise ValueError(
            f"merge_mode={bilstm.merge_mode!r} is not supported (only 'concat'){_HINT}."
        )
    directions = [
        _lstm_direction(bilstm.forward_layer, False),
        _lstm_direction(bilstm.backward_layer, True),
    ]
    return _stack(model, directions)


def read_lstm_weights(model: keras.Model) -> BiLstmWeights:
    """The forward-only layout (`D = 1`) of the `lstm` layer of an LSTM victim."""
    return _stack(model, [_lstm_direction(model.get_layer(models.LSTM_LAYER), False)])


def _stack(model: keras.Model, directions: list[tuple]) -> BiLstmWeights:
    embedding = model.get_layer(models.EMBEDDING_LAYER)
    table = keras.ops.convert_to_numpy(embedding.embeddings).astype(np.float32)
    return BiLstmWeights(
        embeddings=table,
        kernel=np.stack([d[0] for d in directions]),
        recurrent=np.stack([d[1] for d in directions]),
        bias=np.stack([d[2] for d in directions]),
    )


def _lstm_direction(layer, backwards: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(kernel, recurrent, bias)` of a plain float32 LSTM running in one direction."""
    if type(layer) is not keras.layers.LSTM:
        raise ValueError(f"{layer.name!r} is a {type(layer).__name__}, not an LSTM{_HINT}.")
    config = layer.get_config()
    problems = []
    if config.get("activation") != "tanh":
        problems.append(f"activation={config.get('activation')!r}")
    if config.get("recurrent_activation") != "sigmoid":
        problems.append(f"recurrent_activation={config.get('recurrent_activation')!r}")
    if layer.go_backwards != backwards:
        problems.append(f"go_backwards={layer.go_backwards}")
    if layer.return_sequences or layer.return_state or layer.stateful:
        problems.append("return_sequences/return_state/stateful")
    if layer.compute_dtype != "float32":
        problems.append(f"compute dtype {layer.compute_dtype}")
    if problems:
        raise ValueError(
            f"The fast scorer reimplements a plain float32 LSTM (tanh/sigmoid, no state "
            f"carried between calls); {layer.name!r} has {', '.join(problems)}{_HINT}."
        )
    cell = layer.cell
    units = cell.units
    kernel = keras.ops.convert_to_numpy(cell.kernel).astype(np.float32)
    recurrent = keras.ops.convert_to_numpy(cell.recurrent_kernel).astype(np.float32)
    if cell.use_bias:
        bias = keras.ops.convert_to_numpy(cell.bias).astype(np.float32)
    else:
        bias = np.zeros([4 * units], np.float32)
    return kernel, recurrent, bias


# ----------------------------------------------------------------------------------
# The fast method.


# sigmoid(x) = (1 + tanh(x / 2)) / 2: with the i, f, o columns of W, U, b halved
# (exact in floating point) one tanh over all 4H pre-activations gives every gate,
# which XLA evaluates faster than separate sigmoids.
_GATE_SCALE = np.array([0.5, 0.5, 1.0, 0.5], np.float32)


def halve_sigmoid_gates(weights: np.ndarray) -> np.ndarray:
    """Multiplies the i, f and o blocks of the last (`4H`) axis by 1/2."""
    units = weights.shape[-1] // 4
    return weights * np.repeat(_GATE_SCALE, units)


def scaled_lstm_cell(z: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One `keras.layers.LSTMCell` step (gates i, f, g, o; sigmoid and tanh).

    Args:
      z: `float32 [..., 4H]` pre-activations `W x + U h + b` computed with weights
        from `halve_sigmoid_gates`.
      c: `float32 [..., H]` previous carry.

    Returns:
      The new `(h, c)`, `float32 [..., H]` each.
    """
    t = tf.tanh(z)
    i, f, g, o = tf.split(t, 4, axis=-1)
    c = (0.5 + 0.5 * f) * c + (0.5 + 0.5 * i) * g
    return (0.5 + 0.5 * o) * tf.tanh(c), c


# XLA compiles once per (length bucket, chunk size): a few shapes per scan. The trace
# itself is shape-generic (reduce_retracing), so new shapes only cost XLA compilation.
@tf.function(jit_compile=True, reduce_retracing=True)
def _first_pass(embeddings, kernel, bias, recurrent, tokens):
    """Original LSTM passes of every direction, keeping every intermediate state.

    All tables are time-major: position `p` of text `i` in direction `d` is row
    `(p * D + d) * n + i`, so no step needs a transpose.

    Args:
      embeddings: `float32 [vocab, d]`.
      kernel: `float32 [D, d, 4H]`; bias `float32 [D, 4H]`; recurrent `float32 [D, H, 4H]`
        (i, f, o blocks halved, see `scaled_lstm_cell`).
      tokens: `int32 [L, D, n]` ids in each direction's processing order (direction 1
        holds every text reversed), padded after the text.

    Returns:
      `inputs float32 [DnL, 4H]`: the input projections `W x + b`;
      `states_h`, `states_c float32 [DnL + 1, H]`: the state after processing
      positions `0..p`, plus a last all-zero row (the initial state);
      `shifted_h float32 [DnL + 1, H]`: the state *before* position `p` (zero at
      `p = 0`), plus a last zero row.
    """
    length, directions, n = tf.unstack(tf.shape(tokens))
    units = tf.shape(recurrent)[1]
    inputs = tf.einsum("lknd,kdg->lkng", tf.gather(embeddings, tokens), kernel)
    inputs = inputs + bias[None, :, None, :]

    def step(p, h, c, hs, cs):
        h, c = scaled_lstm_cell(inputs[p] + tf.matmul(h, recurrent), c)
        return p + 1, h, c, hs.write(p, h), cs.write(p, c)

    zeros = tf.zeros(tf.stack([directions, n, units]))
    _, _, _, hs, cs = tf.while_loop(
        lambda p, *_: p < length,
        step,
        (
            0,
            zeros,
            zeros,
            tf.TensorArray(tf.float32, size=length),
            tf.TensorArray(tf.float32, size=length),
        ),
    )
    states_h = hs.stack()  # [L, 2, n, H]
    shifted_h = tf.concat([zeros[None], states_h[:-1]], axis=0)
    rows = length * directions * n
    zero_row = tf.zeros(tf.stack([1, units]))
    return (
        tf.reshape(inputs, tf.stack([rows, 4 * units])),
        tf.concat([tf.reshape(states_h, tf.stack([rows, units])), zero_row], axis=0),
        tf.concat([tf.reshape(cs.stack(), tf.stack([rows, units])), zero_row], axis=0),
        tf.concat([tf.reshape(shifted_h, tf.stack([rows, units])), zero_row], axis=0),
    )


# The hot path: one XLA while-loop per tile of packed jobs. Tile shapes are bucketed;
# the trace is shape-generic, XLA compiles each bucket once.
@tf.function(jit_compile=True, reduce_retracing=True)
def _run_tile(
    recurrent,
    inputs,
    states_h,
    states_c,
    out,
    initial_rows,
    input_rows,
    reset_lanes,
    reset_rows,
    end_lanes,
    end_rows,
    final_rows,
):
    """Advances `D x R` lanes of packed LSTM jobs for `T` steps.

    Lane `d R + r` runs direction `d`'s LSTM. A job occupies a lane for consecutive
    steps: it starts from a state row of `states_h/_c`, reads one input-projection row
    per step and, when done, writes its final `h` into a row of `out`.

    Args:
      recurrent: `float32 [D, H, 4H]` recurrent kernels.
      inputs: `float32 [rows, 4H]` input projections (bias included).
      states_h, states_c: `float32 [srows, H]` start-state tables.
      out: `float32 [orows, H]` results so far; returned updated.
      initial_rows: `int32 [D R]` start-state row of each lane at step 0.
      input_rows: `int32 [T, D R]` input row per step and lane.
      reset_lanes, reset_rows: `int32 [T, E]` lanes that start a new job at step `k`
        (before computing it) and their start-state rows; padding targets an idle lane.
      end_lanes, end_rows: `int32 [T, E]` lanes whose job ends after step `k` and
        the `out` rows receiving their `h`; padding targets a scratch row.
      final_rows: `int32 [D R]` `out` row of each lane's `h` after the last step.

    Returns:
      `out` with the finished jobs written.
    """
    directions, units = tf.unstack(tf.shape(recurrent)[:2])
    steps = tf.shape(input_rows)[0]
    h = tf.gather(states_h, initial_rows)
    c = tf.gather(states_c, initial_rows)

    # XLA fuses the input gather with the gate arithmetic (measured faster than
    # gathering into a separate buffer).
    def step(k, h, c, out):
        x = tf.gather(inputs, input_rows[k])
        lanes = reset_lanes[k][:, None]
        h = tf.tensor_scatter_nd_update(h, lanes, tf.gather(states_h, reset_rows[k]))
        c = tf.tensor_scatter_nd_update(c, lanes, tf.gather(states_c, reset_rows[k]))
        hidden = tf.matmul(tf.reshape(h, tf.stack([directions, -1, units])), recurrent)
        h, c = scaled_lstm_cell(x + tf.reshape(hidden, tf.shape(x)), c)
        out = tf.tensor_scatter_nd_update(out, end_rows[k][:, None], tf.gather(h, end_lanes[k]))
        return k + 1, h, c, out

    _, h, _, out = tf.while_loop(lambda k, *_: k < steps, step, (0, h, c, out))
    return tf.tensor_scatter_nd_update(out, final_rows[:, None], h)


def _max_abs_diff(a: tf.Tensor, b: tf.Tensor) -> np.ndarray:
    """`max |a - b|` over the first (direction) and last (unit) axes: `[D, rows, H] -> [rows]`."""
    return tf.reduce_max(tf.abs(a - b), axis=[0, 2]).numpy().astype(np.float32)


@dataclasses.dataclass
class _Jobs:
    """Variant runs sharing one packing; direction `d` of job `j` uses row `[d, j]`.

    Attributes:
      sizes: `int64 [J]` steps per job (>= 1).
      input_rows: `int64 [D, J]` input-projection row of the job's first step;
        step `s` of the job reads row `input_rows + s * input_stride`.
      start_rows: `int64 [D, J]` start-state row.
      out_rows: `int64 [D, J]` `out` row of the job's final `h`.
      input_stride: Rows between consecutive positions of one text.
    """

    sizes: np.ndarray
    input_rows: np.ndarray
    start_rows: np.ndarray
    out_rows: np.ndarray
    input_stride: int


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One independent unit of a fast scan.

    Attributes:
      texts: `int64 [n]` indices of the chunk's texts (longest first).
      capacity: Texts the chunk's tables hold (`n <= capacity`).
      length_pad: Padded text length of the chunk.
    """

    texts: np.ndarray
    capacity: int
    length_pad: int


@dataclasses.dataclass(frozen=True)
class ScanPlan:
    """How a fast scan cuts its texts: the tile step count and the chunks, in order."""

    steps: int
    chunks: tuple[Chunk, ...]


class FastScanner:
    """Runs the two-phase fast scan over one model's weights."""

    def __init__(self, model: keras.Model, weights: BiLstmWeights, batch_size: int):
        self._model = model
        self._weights = weights
        self._lanes = int(batch_size)
        self._embeddings = tf.constant(weights.embeddings)
        self._kernel = tf.constant(halve_sigmoid_gates(weights.kernel))
        self._bias = tf.constant(halve_sigmoid_gates(weights.bias))
        self._recurrent = tf.constant(halve_sigmoid_gates(weights.recurrent))
        self._recurrent_backward = self._recurrent[1:]
        self._directions = weights.directions
        self._verified = False

    def plan(self, lengths: np.ndarray) -> ScanPlan:
        """Cuts the texts into the chunks this scanner runs, longest first.

        The plan depends only on `lengths` and the lane count, and every chunk is an
        independent computation, so running the chunks one by one (or on several
        machines) gives scores bit-identical to one `run` over all texts.
        """
        lengths = np.asarray(lengths, np.int64)
        order = [int(i) for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
        if not order:
            return ScanPlan(steps=8, chunks=())
        max_len = int(lengths[order[0]])
        # Every tile runs `steps` steps: the longest job of this call (l - 1), rounded up.
        steps = max(8, -(-(max_len - 1) // 8) * 8)
        positions = min(
            _MAX_POSITIONS,
            _next_power_of_two(sum(length_bucket(int(lengths[i])) for i in order)),
        )
        positions = max(positions, length_bucket(max_len))
        chunks = []
        start = 0
        while start < len(order):
            length_pad = length_bucket(int(lengths[order[start]]))
            capacity = positions // length_pad
            members = np.asarray(order[start : start + capacity], np.int64)
            chunks.append(Chunk(texts=members, capacity=capacity, length_pad=length_pad))
            start += len(members)
        return ScanPlan(steps=steps, chunks=tuple(chunks))

    def run(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        kind: str,
        progress: Callable[[int], None] | None,
    ) -> list[np.ndarray]:
        results = [np.zeros([int(n)], np.float32) for n in lengths]
        plan = self.plan(lengths)
        done = int(np.sum(np.asarray(lengths) == 0))
        for chunk in plan.chunks:
            for i, values in zip(chunk.texts, self.run_chunk(ids, lengths, plan, chunk, kind)):
                results[int(i)] = values
            done += len(chunk.texts)
            if progress is not None:
                progress(done)
        return results

    def run_chunk(
        self, ids: np.ndarray, lengths: np.ndarray, plan: ScanPlan, chunk: Chunk, kind: str
    ) -> list[np.ndarray]:
        """Scores of `chunk.texts`, in that order (`float32 [lengths[i]]` each)."""
        results: dict[int, np.ndarray] = {}
        members = [int(i) for i in chunk.texts]
        self._run_chunk(
            ids, lengths, members, chunk.capacity, chunk.length_pad, plan.steps, kind, results
        )
        return [results[i] for i in members]

    def _run_chunk(self, ids, lengths, chunk, capacity, length_pad, steps, kind, results):
        n = len(chunk)
        chunk_lengths = lengths[chunk]
        directions = self._directions
        tokens = np.zeros([length_pad, directions, capacity], np.int32)
        for row, (i, length) in enumerate(zip(chunk, chunk_lengths.tolist())):
            tokens[:length, 0, row] = ids[i, :length]
            if directions == 2:
                tokens[:length, 1, row] = ids[i, length - 1 :: -1]
        inputs, states_h, states_c, shifted_h = _first_pass(
            self._embeddings, self._kernel, self._bias, self._recurrent, tokens
        )
        # Processing position p of chunk text r in direction d is row base[d, r] + p * stride.
        stride = directions * capacity
        base = np.arange(directions)[:, None] * capacity + np.arange(n)[None, :]
        last_rows = base + (chunk_lengths[None, :] - 1) * stride  # [D, n]
        if not self._verified:
            self._verify(ids, lengths, chunk, states_h, base, stride)
        zero_row = directions * capacity * length_pad
        if kind == "prefix" and directions == 1:
            # A forward LSTM's prefix states are its first pass: nothing to re-run.
            text = np.repeat(np.arange(n), chunk_lengths)
            j = np.arange(len(text)) - np.repeat(
                np.cumsum(chunk_lengths) - chunk_lengths, chunk_lengths
            )
            rows = (base[0, text] + j * stride)[None, :]
            scores = _max_abs_diff(tf.gather(states_h, rows), tf.gather(shifted_h, rows))
            for r, values in enumerate(np.split(scores, np.cumsum(chunk_lengths)[:-1])):
                results[chunk[r]] = values
            return
        jobs = _make_jobs(kind, chunk_lengths, base, stride, zero_row)
        if kind == "deletion":
            out = shifted_h  # Zero-step jobs (deleting the last token) keep their start.
            recurrent = self._recurrent
        else:
            out = states_h  # Rows of un-run jobs (the full prefix) hold the first pass.
            recurrent = self._recurrent_backward
        for tile in _pack_tiles(jobs, steps, self._lanes, scratch_row=zero_row):
            out = _run_tile(recurrent, inputs, states_h, states_c, out, *tile)
        # Every token j of every chunk text, flattened.
        text = np.repeat(np.arange(n), chunk_lengths)
        j = np.arange(len(text)) - np.repeat(
            np.cumsum(chunk_lengths) - chunk_lengths, chunk_lengths
        )
        if kind == "deletion":
            # f_j = max(|h_fwd - h_fwd(variant j)|, |h_bwd - h_bwd(variant j)|); the
            # backward variant deleting token j is job q = l - 1 - j of direction 1.
            variant_rows = np.stack(
                [base[0, text] + j * stride, base[1, text] + (chunk_lengths[text] - 1 - j) * stride]
                if directions == 2
                else [base[0, text] + j * stride]
            )
            original_rows = last_rows[:, text]
            scores = _max_abs_diff(tf.gather(out, variant_rows), tf.gather(states_h, original_rows))
        else:
            # Forward: h(x[:j+1]) and h(x[:j]) are consecutive first-pass states. Backward:
            # position m - 1 of `out` holds h_bwd of the m-token prefix, m = j + 1.
            forward_rows = base[0, text] + j * stride
            backward_rows = base[1, text] + j * stride
            backward_previous = np.where(j > 0, backward_rows - stride, zero_row)
            shifted_out = tf.concat([out[:-1], tf.zeros_like(out[-1:])], axis=0)
            scores = _max_abs_diff(
                tf.stack([tf.gather(states_h, forward_rows), tf.gather(out, backward_rows)]),
                tf.stack(
                    [tf.gather(shifted_h, forward_rows), tf.gather(shifted_out, backward_previous)]
                ),
            )
        for r, values in enumerate(np.split(scores, np.cumsum(chunk_lengths)[:-1])):
            results[chunk[r]] = values

    def _verify(self, ids, lengths, chunk, states_h, base, stride) -> None:
        """Checks the reimplemented (Bi)LSTM against the model itself.

        Uses the chunk's shortest text, cut to `k <= 16` tokens: the forward state
        after `k` tokens is the forward half of `h(x[:k])`, the backward state after
        the last `k` tokens the backward half of `h(x[l-k:])`.
        """
        r = len(chunk) - 1
        i, length = chunk[r], int(lengths[chunk[r]])
        k = min(length, 16)
        texts = np.stack([ids[i, :k], ids[i, length - k : length]])
        expected = np.asarray(self._model(texts, training=False)[1])
        units = self._weights.units
        rows = base[:, r] + (k - 1) * stride
        got = tf.gather(states_h, rows).numpy()
        if expected.shape[-1] != self._directions * units:
            error = float("inf")
        else:
            error = max(
                float(np.max(np.abs(got[d] - expected[d, d * units : (d + 1) * units])))
                for d in range(self._directions)
            )
        if not error <= _VERIFY_TOLERANCE:
            raise ValueError(
                f"The fast scorer's LSTM differs from model {self._model.name!r} by {error:.3g} "
                "on a text's hidden state: the hidden output is not the plain (Bi)LSTM state "
                "of bki_tf.build_classifier. Use method='generic' (or 'simple')."
            )
        self._verified = True


def _make_jobs(
    kind: str, lengths: np.ndarray, base: np.ndarray, stride: int, zero_row: int
) -> _Jobs:
    """The LSTM runs of one chunk, in processing-order positions of each direction.

    Position `p` of chunk text `r` in direction `d` is table row `base[d, r] + p * stride`.
    Deletion of the token at processing position `q` (of a text of length `l`):
    start from the state after positions `0..q-1` (position `q - 1`, or the zero row),
    read positions `q+1..l-1` (`l-1-q` steps), write to position `q`. `q = l - 1` needs
    no step (its result, the start state, is preloaded), so jobs are `q = 0..l-2`.
    Prefix (backward direction only): the `m`-token prefix reads processing
    positions `l-m..l-1` from the zero state and writes to position `m - 1`; `m = l`
    is the first pass itself, so jobs are `m = 1..l-1`.
    """
    per_text = np.maximum(lengths - 1, 0)
    text = np.repeat(np.arange(len(lengths)), per_text)
    index = np.arange(len(text)) - np.repeat(np.cumsum(per_text) - per_text, per_text)
    text_len = lengths[text]
    if kind == "deletion":
        q = index
        b = base[:, text]
        return _Jobs(
            sizes=text_len - 1 - q,
            input_rows=b + (q + 1) * stride,
            start_rows=np.where(q > 0, b + (q - 1) * stride, zero_row),
            out_rows=b + q * stride,
            input_stride=stride,
        )
    m = index + 1
    b = base[1:, text]
    return _Jobs(
        sizes=m,
        input_rows=b + (text_len - m) * stride,
        start_rows=np.full_like(b, zero_row),
        out_rows=b + (m - 1) * stride,
        input_stride=stride,
    )


def _pack_tiles(jobs: _Jobs, steps: int, lanes: int, scratch_row: int) -> list[tuple]:
    """Packs jobs into tiles of `lanes` lanes x `steps` steps per direction.

    Best-fit decreasing: every job goes into the fullest lane that still has room,
    so short jobs fill the gaps behind long ones. The last lane of each tile stays
    idle: padded resets target it. A tile's lanes are padded to a power of two
    when it is not full (few compiled shapes).

    Returns:
      Per tile, the schedule arguments of `_run_tile` (`initial_rows` ... `final_rows`).
    """
    if len(jobs.sizes) == 0:
        return []
    lane, offset, num_lanes = _best_fit_decreasing(jobs.sizes, steps)
    usable = lanes - 1
    directions = jobs.input_rows.shape[0]
    tiles = []
    for t in range(-(-num_lanes // usable)):
        in_tile = np.flatnonzero(lane // usable == t)
        tile_lanes = min(usable, num_lanes - t * usable) + 1
        if tile_lanes < lanes:
            tile_lanes = min(lanes, max(_MIN_LANES, _next_power_of_two(tile_lanes)))
        local = lane[in_tile] % usable
        sizes = jobs.sizes[in_tile]
        starts = offset[in_tile]
        last = starts + sizes - 1
        first_step = starts == 0
        at_end = last == steps - 1
        within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        step_of = np.repeat(starts, sizes) + within
        width = directions * tile_lanes
        initial = np.full(width, scratch_row, np.int64)
        input_rows = np.zeros([steps, width], np.int64)
        final = np.full(width, scratch_row, np.int64)
        resets, ends = [], []
        for d in range(directions):
            column = local + d * tile_lanes
            start_rows = jobs.start_rows[d, in_tile]
            out_rows = jobs.out_rows[d, in_tile]
            input_rows[step_of, np.repeat(column, sizes)] = (
                np.repeat(jobs.input_rows[d, in_tile], sizes) + within * jobs.input_stride
            )
            initial[column[first_step]] = start_rows[first_step]
            final[column[at_end]] = out_rows[at_end]
            resets.append((starts[~first_step], column[~first_step], start_rows[~first_step]))
            ends.append((last[~at_end], column[~at_end], out_rows[~at_end]))
        resets = [np.concatenate(x) for x in zip(*resets)]
        ends = [np.concatenate(x) for x in zip(*ends)]
        busiest = max(
            np.bincount(resets[0], minlength=1).max(), np.bincount(ends[0], minlength=1).max()
        )
        events = max(4, _next_power_of_two(int(busiest)))
        reset_lanes, reset_rows = _by_step(*resets, steps, events, tile_lanes - 1, scratch_row)
        end_lanes, end_rows = _by_step(*ends, steps, events, 0, scratch_row)
        arrays = (initial, input_rows, reset_lanes, reset_rows, end_lanes, end_rows, final)
        tiles.append(tuple(a.astype(np.int32) for a in arrays))
    return tiles


def _by_step(step, a, b, steps, width, fill_a, fill_b):
    """Scatters events `(step, a, b)` into `[steps, width]` tables, padded with fills."""
    table_a = np.full([steps, width], fill_a, np.int64)
    table_b = np.full([steps, width], fill_b, np.int64)
    if len(step):
        order = np.argsort(step, kind="stable")
        step = step[order]
        counts = np.bincount(step, minlength=steps)
        rank = np.arange(len(step)) - (np.cumsum(counts) - counts)[step]
        table_a[step, rank] = a[order]
        table_b[step, rank] = b[order]
    return table_a, table_b


def _best_fit_decreasing(sizes: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin packing of integer job sizes into lanes of `capacity` steps.

    Returns:
      `(lane [J], offset [J], num_lanes)`: each job's lane and first step.
    """
    lane = np.empty(len(sizes), np.int64)
    offset = np.empty(len(sizes), np.int64)
    free_lanes: list[list[int]] = [[] for _ in range(capacity + 1)]
    nonempty = 0  # Bit c set <=> some lane has exactly c free steps.
    num_lanes = 0
    size_list = sizes.tolist()
    for job in np.argsort(-sizes, kind="stable").tolist():
        size = size_list[job]
        fits = nonempty >> size
        if fits:
            free = size + (fits & -fits).bit_length() - 1
            bucket = free_lanes[free]
            chosen = bucket.pop()
            if not bucket:
                nonempty &= ~(1 << free)
        else:
            chosen, free = num_lanes, capacity
            num_lanes += 1
        lane[job] = chosen
        offset[job] = capacity - free
        left = free - size
        if left:
            free_lanes[left].append(chosen)
            nonempty |= 1 << left
    return lane, offset, num_lanes


def length_bucket(length: int) -> int:
    """Padded length for a text of `length` tokens (few distinct compiled shapes)."""
    for b in _LENGTH_BUCKETS:
        if length <= b:
            return b
    return -(-length // 256) * 256


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
