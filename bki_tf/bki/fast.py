"""The fast exact BKI scorer: the recurrent encoder reimplemented from its weights, with state reuse.

Deleting token `j` leaves the forward RNN's state after tokens `0..j-1` and the
backward RNN's state after tokens `l-1..j+1` unchanged, so variant `j` only re-runs the
forward RNN over `j+1..l-1` from the original forward state, and the backward RNN over
`j-1..0`; see `bki_tf.bki.scoring` for the contract and the packing of the jobs.

The encoders of `bki_tf.build_classifier` it reproduces (`read_fast_weights`):

  * `"bilstm"`, `"lstm"`: (Bi)LSTM, `h` = the final state of each direction.
  * `"bigru"`, `"gru"`: (Bi)GRU (Keras' default `reset_after=True`), likewise. A GRU
    has no carry `c`: its state is `h` alone.
  * `"bilstm_gap"`: BiLSTM whose sequence outputs are averaged over the text's
    positions (`pooling="mean"`). The outputs of a deletion variant before the
    deleted position are the first pass' own, so `h_variant = (first-pass prefix
    sum + sum over the re-run job's steps) / (l - 1)`; every job accumulates that
    sum while it runs.

A unidirectional victim runs the forward direction alone (`D = 1`): the same jobs,
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
# Layer names `bki_tf.build_classifier` gives the encoders without a constant in
# `bki_tf.models` (see `models._ENCODERS`).
_GRU_LAYER = "gru"
_BIGRU_LAYER = "bigru"
_SEQUENCE_LAYER = "bilstm_sequence"
_POOLING_LAYER = "average_pooling"

CELLS = ("lstm", "gru")
POOLINGS = ("last", "mean")


@dataclasses.dataclass(frozen=True)
class RecurrentWeights:
    """The recurrent encoder in the layout of the fast scorer: direction 0 forward, 1 backward.

    A unidirectional encoder (`"lstm"`, `"gru"`) has direction 0 only (`D = 1`).
    `G` gate blocks of `H` units along the last axis: `G = 4`, gates i, f, g, o for
    an LSTM (`keras.layers.LSTMCell`); `G = 3`, gates z, r, h for a GRU
    (`keras.layers.GRUCell` with `reset_after=True`).

    Attributes:
      embeddings: `float32 [vocab, d]`.
      kernel: `float32 [D, d, G H]`.
      recurrent: `float32 [D, H, G H]`.
      bias: `float32 [D, G H]`, added to the input projection (a GRU's input bias).
      cell: `"lstm"` or `"gru"` (`CELLS`).
      recurrent_bias: `float32 [D, 3 H]`, a GRU's recurrent bias (added to `h U`
        before the reset gate acts); None for an LSTM.
      pooling: `"last"` (`h` = each direction's final state) or `"mean"` (`h` = the
        mean over positions of each direction's outputs) (`POOLINGS`).
    """

    embeddings: np.ndarray
    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray
    cell: str = "lstm"
    recurrent_bias: np.ndarray | None = None
    pooling: str = "last"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"Unknown cell {self.cell!r}; use one of {CELLS}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {self.pooling!r}; use one of {POOLINGS}.")
        if (self.cell == "gru") != (self.recurrent_bias is not None):
            raise ValueError("A GRU needs a recurrent_bias [D, 3H]; an LSTM has none.")
        gates = 4 if self.cell == "lstm" else 3
        if self.kernel.shape[-1] != gates * self.units:
            raise ValueError(
                f"A {self.cell} kernel needs {gates} * units = {gates * self.units} columns; "
                f"got shape {self.kernel.shape}."
            )

    @property
    def units(self) -> int:
        return self.recurrent.shape[1]

    @property
    def directions(self) -> int:
        return self.kernel.shape[0]

    def describe(self) -> str:
        """E.g. `"BiGRU"` or `"BiLSTM (mean of its outputs)"`."""
        name = ("Bi" if self.directions == 2 else "") + self.cell.upper()
        return name + (" (mean of its outputs)" if self.pooling == "mean" else "")


# LSTMs only (the BiLSTM victim's simple method runs the model's own layers).
_HINT = "; use method='simple' or 'generic', which run the model's own layers"
_GENERIC_HINT = "; use method='generic', which runs the model's own layers"


def read_fast_weights(model: keras.Model) -> RecurrentWeights:
    """The weights of the recurrent encoder of a `bki_tf.build_classifier` model.

    By layer name: `bilstm` (BiLSTM), `lstm`, `gru`, `bigru` (BiGRU) or
    `bilstm_sequence` (BiLSTM with sequence outputs, under the `average_pooling`
    layer of `"bilstm_gap"`).

    Raises:
      ValueError: For a model with none of these layers, or with options the fast
        scorer does not reproduce.
    """
    names = {x.name for x in model.layers}
    readers = (
        (models.BILSTM_LAYER, read_bilstm_weights),
        (models.LSTM_LAYER, read_lstm_weights),
        (_GRU_LAYER, read_gru_weights),
        (_BIGRU_LAYER, read_bigru_weights),
        (_SEQUENCE_LAYER, read_bilstm_gap_weights),
    )
    for name, reader in readers:
        if name in names:
            return reader(model)
    raise ValueError(
        f"method='fast' reimplements the {', '.join(repr(n) for n, _ in readers)} layer of "
        f"bki_tf.build_classifier; model {model.name!r} has none of them (architecture "
        f"{models.architecture_of(model)!r}). Use method='generic' (or 'auto')."
    )


def read_bilstm_weights(model: keras.Model) -> RecurrentWeights:
    """Reads the `bilstm` layer, rejecting LSTM options the fast scorer does not reproduce."""
    directions = _bidirectional(model, models.BILSTM_LAYER, _lstm_direction, _HINT)
    return _stack(model, directions, "lstm")


def read_lstm_weights(model: keras.Model) -> RecurrentWeights:
    """The forward-only layout (`D = 1`) of the `lstm` layer of an LSTM victim."""
    return _stack(model, [_lstm_direction(model.get_layer(models.LSTM_LAYER), False)], "lstm")


def read_gru_weights(model: keras.Model) -> RecurrentWeights:
    """The forward-only layout (`D = 1`) of the `gru` layer of a GRU victim."""
    return _stack(model, [_gru_direction(model.get_layer(_GRU_LAYER), False)], "gru")


def read_bigru_weights(model: keras.Model) -> RecurrentWeights:
    """The `bigru` layer of a BiGRU victim."""
    return _stack(model, _bidirectional(model, _BIGRU_LAYER, _gru_direction, _GENERIC_HINT), "gru")


def read_bilstm_gap_weights(model: keras.Model) -> RecurrentWeights:
    """The `bilstm_sequence` layer of a `"bilstm_gap"` victim (`pooling="mean"`)."""
    pooling = next((x for x in model.layers if x.name == _POOLING_LAYER), None)
    if not isinstance(pooling, keras.layers.GlobalAveragePooling1D) or (
        pooling.data_format != "channels_last" or pooling.keepdims
    ):
        raise ValueError(
            f"Model {model.name!r} has a {_SEQUENCE_LAYER!r} layer but no "
            f"{_POOLING_LAYER!r} GlobalAveragePooling1D (channels_last, keepdims=False) "
            f"layer to average its outputs{_GENERIC_HINT}."
        )

    def sequence_direction(layer, backwards):
        return _lstm_direction(layer, backwards, sequences=True, hint=_GENERIC_HINT)

    directions = _bidirectional(model, _SEQUENCE_LAYER, sequence_direction, _GENERIC_HINT)
    return _stack(model, directions, "lstm", pooling="mean")


def _bidirectional(model: keras.Model, name: str, read_direction, hint: str) -> list[tuple]:
    """`read_direction(layer, backwards)` of both directions of a concatenating Bidirectional."""
    layer = model.get_layer(name)
    if not isinstance(layer, keras.layers.Bidirectional):
        raise ValueError(f"Layer {layer.name!r} is a {type(layer).__name__}, not Bidirectional.")
    if layer.merge_mode != "concat":
        raise ValueError(f"merge_mode={layer.merge_mode!r} is not supported (only 'concat'){hint}.")
    return [read_direction(layer.forward_layer, False), read_direction(layer.backward_layer, True)]


def _stack(
    model: keras.Model, directions: list[tuple], cell: str, pooling: str = "last"
) -> RecurrentWeights:
    embedding = model.get_layer(models.EMBEDDING_LAYER)
    table = keras.ops.convert_to_numpy(embedding.embeddings).astype(np.float32)
    return RecurrentWeights(
        embeddings=table,
        kernel=np.stack([d[0] for d in directions]),
        recurrent=np.stack([d[1] for d in directions]),
        bias=np.stack([d[2] for d in directions]),
        cell=cell,
        recurrent_bias=np.stack([d[3] for d in directions]) if cell == "gru" else None,
        pooling=pooling,
    )


def _common_problems(layer, backwards: bool, sequences: bool) -> list[str]:
    """The options of a Keras RNN layer that the fast scorer does not reproduce."""
    config = layer.get_config()
    problems = []
    if config.get("activation") != "tanh":
        problems.append(f"activation={config.get('activation')!r}")
    if config.get("recurrent_activation") != "sigmoid":
        problems.append(f"recurrent_activation={config.get('recurrent_activation')!r}")
    if layer.go_backwards != backwards:
        problems.append(f"go_backwards={layer.go_backwards}")
    if layer.return_sequences != sequences:
        problems.append(f"return_sequences={layer.return_sequences}")
    if layer.return_state:
        problems.append("return_state=True")
    if layer.stateful:
        problems.append("stateful=True")
    if layer.compute_dtype != "float32":
        problems.append(f"compute dtype {layer.compute_dtype}")
    return problems


def _lstm_direction(
    layer, backwards: bool, sequences: bool = False, hint: str = _HINT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(kernel, recurrent, bias)` of a plain float32 LSTM running in one direction."""
    if type(layer) is not keras.layers.LSTM:
        raise ValueError(f"{layer.name!r} is a {type(layer).__name__}, not an LSTM{hint}.")
    problems = _common_problems(layer, backwards, sequences)
    if problems:
        raise ValueError(
            f"The fast scorer reimplements a plain float32 LSTM (tanh/sigmoid, "
            f"return_sequences={sequences}, no state carried between calls); {layer.name!r} "
            f"has {', '.join(problems)}{hint}."
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


def _gru_direction(layer, backwards: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(kernel, recurrent, input bias, recurrent bias)` of a plain float32 GRU."""
    if type(layer) is not keras.layers.GRU:
        raise ValueError(f"{layer.name!r} is a {type(layer).__name__}, not a GRU{_GENERIC_HINT}.")
    problems = _common_problems(layer, backwards, sequences=False)
    if not layer.cell.reset_after:
        problems.append("reset_after=False")
    if problems:
        raise ValueError(
            f"The fast scorer reimplements a plain float32 GRU (tanh/sigmoid, "
            f"reset_after=True, no state carried between calls); {layer.name!r} has "
            f"{', '.join(problems)}{_GENERIC_HINT}."
        )
    cell = layer.cell
    units = cell.units
    kernel = keras.ops.convert_to_numpy(cell.kernel).astype(np.float32)
    recurrent = keras.ops.convert_to_numpy(cell.recurrent_kernel).astype(np.float32)
    if cell.use_bias:
        bias = keras.ops.convert_to_numpy(cell.bias).astype(np.float32)  # [2, 3H]
        return kernel, recurrent, bias[0], bias[1]
    zeros = np.zeros([3 * units], np.float32)
    return kernel, recurrent, zeros, zeros


# ----------------------------------------------------------------------------------
# The fast method.


# sigmoid(x) = (1 + tanh(x / 2)) / 2: with the sigmoid gates' columns of W, U and the
# biases halved (exact in floating point), one tanh gives the gates, which XLA
# evaluates faster than separate sigmoids. LSTM gates i, f, g, o; GRU gates z, r, h.
_GATE_SCALES = {
    "lstm": np.array([0.5, 0.5, 1.0, 0.5], np.float32),
    "gru": np.array([0.5, 0.5, 1.0], np.float32),
}


def halve_sigmoid_gates(weights: np.ndarray, cell: str = "lstm") -> np.ndarray:
    """Multiplies the sigmoid gates' blocks of the last (`G H`) axis by 1/2.

    Args:
      weights: `float32 [..., G H]`, gate blocks in the cell's order.
      cell: `"lstm"` (halves i, f, o of `4H`) or `"gru"` (halves z, r of `3H`).
    """
    scale = _GATE_SCALES[cell]
    units = weights.shape[-1] // len(scale)
    return weights * np.repeat(scale, units)


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


def scaled_gru_cell(x: tf.Tensor, u: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    """One `keras.layers.GRUCell` step with `reset_after=True` (gates z, r, h).

    `z = sigmoid(x_z + u_z)`, `r = sigmoid(x_r + u_r)`, `hh = tanh(x_h + r * u_h)`,
    `h' = z * h + (1 - z) * hh`.

    Args:
      x: `float32 [..., 3H]` input projections `W x + b_input`.
      u: `float32 [..., 3H]` recurrent projections `U h + b_recurrent`, both computed
        with weights from `halve_sigmoid_gates(..., cell="gru")`.
      h: `float32 [..., H]` previous state.

    Returns:
      The new state `float32 [..., H]`.
    """
    x_z, x_r, x_h = tf.split(x, 3, axis=-1)
    u_z, u_r, u_h = tf.split(u, 3, axis=-1)
    z = 0.5 + 0.5 * tf.tanh(x_z + u_z)
    r = 0.5 + 0.5 * tf.tanh(x_r + u_r)
    hh = tf.tanh(x_h + r * u_h)
    return z * h + (1.0 - z) * hh


def _make_first_pass(cell: str):
    """The compiled first pass of a `cell` RNN (the cell is static: one function each)."""

    # XLA compiles once per (length bucket, chunk size): a few shapes per scan. The
    # trace itself is shape-generic (reduce_retracing), so new shapes only cost XLA
    # compilation.
    @tf.function(jit_compile=True, reduce_retracing=True)
    def first_pass(embeddings, kernel, bias, recurrent, recurrent_bias, tokens):
        """Original RNN passes of every direction, keeping every intermediate state.

        All tables are time-major: position `p` of text `i` in direction `d` is row
        `(p * D + d) * n + i`, so no step needs a transpose.

        Args:
          embeddings: `float32 [vocab, d]`.
          kernel: `float32 [D, d, G H]`; bias `float32 [D, G H]`; recurrent
            `float32 [D, H, G H]` (sigmoid gates halved, see `halve_sigmoid_gates`).
          recurrent_bias: `float32 [D, 3H]` (GRU) or None (LSTM).
          tokens: `int32 [L, D, n]` ids in each direction's processing order
            (direction 1 holds every text reversed), padded after the text.

        Returns:
          `inputs float32 [DnL, G H]`: the input projections `W x + b`;
          `states`: `(states_h, states_c)` for an LSTM, `(states_h,)` for a GRU,
          `float32 [DnL + 1, H]` each: the state after processing positions `0..p`,
          plus a last all-zero row (the initial state);
          `shifted_h float32 [DnL + 1, H]`: the state *before* position `p` (zero at
          `p = 0`), plus a last zero row.
        """
        length, directions, n = tf.unstack(tf.shape(tokens))
        units = tf.shape(recurrent)[1]
        inputs = tf.einsum("lknd,kdg->lkng", tf.gather(embeddings, tokens), kernel)
        inputs = inputs + bias[None, :, None, :]

        def step(p, state, arrays):
            if cell == "lstm":
                state = scaled_lstm_cell(inputs[p] + tf.matmul(state[0], recurrent), state[1])
            else:
                hidden = tf.matmul(state[0], recurrent) + recurrent_bias[:, None, :]
                state = (scaled_gru_cell(inputs[p], hidden, state[0]),)
            return p + 1, state, tuple(a.write(p, s) for a, s in zip(arrays, state))

        zeros = tf.zeros(tf.stack([directions, n, units]))
        carries, gates = (2, 4) if cell == "lstm" else (1, 3)
        _, _, arrays = tf.while_loop(
            lambda p, *_: p < length,
            step,
            (
                0,
                (zeros,) * carries,
                tuple(tf.TensorArray(tf.float32, size=length) for _ in range(carries)),
            ),
        )
        stacked = [a.stack() for a in arrays]  # [L, D, n, H] each
        shifted_h = tf.concat([zeros[None], stacked[0][:-1]], axis=0)
        rows = length * directions * n
        zero_row = tf.zeros(tf.stack([1, units]))

        def table(x):
            return tf.concat([tf.reshape(x, tf.stack([rows, units])), zero_row], axis=0)

        return (
            tf.reshape(inputs, tf.stack([rows, gates * units])),
            tuple(table(s) for s in stacked),
            table(shifted_h),
        )

    return first_pass


def _make_run_tile(cell: str, pooled: bool):
    """The compiled tile runner of a `cell` RNN (static options: one function each).

    Args:
      cell: `"lstm"` or `"gru"`.
      pooled: Jobs return the sum of their states instead of their final state.
    """
    # For the LSTM, XLA fuses the input gather with the gate arithmetic (measured
    # faster than gathering into a separate buffer). Fused into the GRU's gates, which
    # read three slices of it, the gather halves the speed on CPU: the GRU gathers
    # each step's inputs one step ahead, into a loop variable (a separate buffer).
    prefetch = cell == "gru"

    # The hot path: one XLA while-loop per tile of packed jobs. Tile shapes are
    # bucketed; the trace is shape-generic, XLA compiles each bucket once.
    @tf.function(jit_compile=True, reduce_retracing=True)
    def run_tile(
        recurrent,
        recurrent_bias,
        inputs,
        states,
        out,
        initial_rows,
        input_rows,
        reset_lanes,
        reset_rows,
        end_lanes,
        end_rows,
        final_rows,
    ):
        """Advances `D x R` lanes of packed RNN jobs for `T` steps.

        Lane `d R + r` runs direction `d`'s RNN. A job occupies a lane for consecutive
        steps: it starts from a state row of `states`, reads one input-projection row
        per step and, when done, writes its final `h` (with `pooled`, the sum of its
        `h` over its steps) into a row of `out`.

        Args:
          recurrent: `float32 [D, H, G H]` recurrent kernels.
          recurrent_bias: `float32 [D, 3H]` (GRU) or None (LSTM).
          inputs: `float32 [rows, G H]` input projections (bias included).
          states: `(states_h, states_c)` (LSTM) or `(states_h,)` (GRU),
            `float32 [srows, H]` start-state tables.
          out: `float32 [orows, H]` results so far; returned updated.
          initial_rows: `int32 [D R]` start-state row of each lane at step 0.
          input_rows: `int32 [T, D R]` input row per step and lane.
          reset_lanes, reset_rows: `int32 [T, E]` lanes that start a new job at step
            `k` (before computing it) and their start-state rows; padding targets an
            idle lane.
          end_lanes, end_rows: `int32 [T, E]` lanes whose job ends after step `k`
            and the `out` rows receiving their result; padding targets a scratch row.
          final_rows: `int32 [D R]` `out` row of each lane's result after the last step.

        Returns:
          `out` with the finished jobs written.
        """
        directions, units = tf.unstack(tf.shape(recurrent)[:2])
        steps = tf.shape(input_rows)[0]
        state = tuple(tf.gather(table, initial_rows) for table in states)
        # Running sum of h over the lane's current job; jobs at step 0 start from 0.
        sums = (tf.zeros_like(state[0]),) if pooled else ()

        def gather_inputs(k):
            return tf.gather(inputs, input_rows[tf.minimum(k, steps - 1)])

        ahead = (gather_inputs(0),) if prefetch else ()

        def step(k, state, ahead, sums, out):
            if prefetch:
                x, ahead = ahead[0], (gather_inputs(k + 1),)
            else:
                x = tf.gather(inputs, input_rows[k])
            lanes = reset_lanes[k][:, None]
            state = tuple(
                tf.tensor_scatter_nd_update(s, lanes, tf.gather(table, reset_rows[k]))
                for s, table in zip(state, states)
            )
            hidden = tf.matmul(tf.reshape(state[0], tf.stack([directions, -1, units])), recurrent)
            if cell == "lstm":
                state = scaled_lstm_cell(x + tf.reshape(hidden, tf.shape(x)), state[1])
            else:
                hidden = hidden + recurrent_bias[:, None, :]
                state = (scaled_gru_cell(x, tf.reshape(hidden, tf.shape(x)), state[0]),)
            result = state[0]
            if pooled:
                restart = tf.zeros(tf.stack([tf.shape(lanes)[0], units]))
                result = tf.tensor_scatter_nd_update(sums[0], lanes, restart) + state[0]
                sums = (result,)
            out = tf.tensor_scatter_nd_update(
                out, end_rows[k][:, None], tf.gather(result, end_lanes[k])
            )
            return k + 1, state, ahead, sums, out

        _, state, _, sums, out = tf.while_loop(
            lambda k, *_: k < steps, step, (0, state, ahead, sums, out)
        )
        result = sums[0] if pooled else state[0]
        return tf.tensor_scatter_nd_update(out, final_rows[:, None], result)

    return run_tile


# Built once at import; each traces (and XLA-compiles) on first use only.
_FIRST_PASS = {cell: _make_first_pass(cell) for cell in CELLS}
_RUN_TILE = {
    (cell, pooled): _make_run_tile(cell, pooled) for cell in CELLS for pooled in (False, True)
}


def _cumulative_sums(states_h: tf.Tensor, length_pad: int) -> tf.Tensor:
    """Running sums along each direction's processing order of a first-pass state table.

    Args:
      states_h: `float32 [DnL + 1, H]` from the first pass (last row zero).
      length_pad: `L`.

    Returns:
      `float32 [DnL + 1, H]`: row `(p D + d) n + i` holds the sum of the states after
      positions `0..p`; the last row is zero (the sum over no position).
    """
    rows = states_h.shape[0] - 1
    table = tf.reshape(states_h[:rows], [length_pad, rows // length_pad, -1])
    sums = tf.reshape(tf.cumsum(table, axis=0), [rows, -1])
    return tf.concat([sums, states_h[rows:]], axis=0)


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

    def __init__(self, model: keras.Model, weights: RecurrentWeights, batch_size: int):
        self._model = model
        self._weights = weights
        self._lanes = int(batch_size)
        # Local impacts re-run one direction (the backward one): twice the lanes give
        # its tiles the matmul width of the deletion scan's two directions.
        self._prefix_lanes = self._lanes * weights.directions
        cell = weights.cell
        self._embeddings = tf.constant(weights.embeddings)
        self._kernel = tf.constant(halve_sigmoid_gates(weights.kernel, cell))
        self._bias = tf.constant(halve_sigmoid_gates(weights.bias, cell))
        self._recurrent = tf.constant(halve_sigmoid_gates(weights.recurrent, cell))
        self._recurrent_backward = self._recurrent[1:]
        if weights.recurrent_bias is None:
            self._recurrent_bias = self._recurrent_bias_backward = None
        else:
            self._recurrent_bias = tf.constant(halve_sigmoid_gates(weights.recurrent_bias, cell))
            self._recurrent_bias_backward = self._recurrent_bias[1:]
        self._first_pass = _FIRST_PASS[cell]
        self._pooled = weights.pooling == "mean"
        self._run_tile = _RUN_TILE[cell, self._pooled]
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
        inputs, states, shifted_h = self._first_pass(
            self._embeddings,
            self._kernel,
            self._bias,
            self._recurrent,
            self._recurrent_bias,
            tokens,
        )
        states_h = states[0]
        # Processing position p of chunk text r in direction d is row base[d, r] + p * stride.
        stride = directions * capacity
        base = np.arange(directions)[:, None] * capacity + np.arange(n)[None, :]
        last_rows = base + (chunk_lengths[None, :] - 1) * stride  # [D, n]
        zero_row = directions * capacity * length_pad
        # Every token j of every chunk text, flattened.
        text = np.repeat(np.arange(n), chunk_lengths)
        j = np.arange(len(text)) - np.repeat(
            np.cumsum(chunk_lengths) - chunk_lengths, chunk_lengths
        )
        if self._pooled:
            sums = _cumulative_sums(states_h, length_pad)
            if not self._verified:
                self._verify(ids, lengths, chunk, sums, base, stride, mean=True)
            scores = self._mean_scores(
                kind, inputs, states, sums, base, stride, zero_row, steps, chunk_lengths, text, j
            )
            for r, values in enumerate(np.split(scores, np.cumsum(chunk_lengths)[:-1])):
                results[chunk[r]] = values
            return
        if not self._verified:
            self._verify(ids, lengths, chunk, states_h, base, stride, mean=False)
        if kind == "prefix" and directions == 1:
            # A forward RNN's prefix states are its first pass: nothing to re-run.
            rows = (base[0, text] + j * stride)[None, :]
            scores = _max_abs_diff(tf.gather(states_h, rows), tf.gather(shifted_h, rows))
            for r, values in enumerate(np.split(scores, np.cumsum(chunk_lengths)[:-1])):
                results[chunk[r]] = values
            return
        jobs = _make_jobs(kind, chunk_lengths, base, stride, zero_row)
        if kind == "deletion":
            out = shifted_h  # Zero-step jobs (deleting the last token) keep their start.
            recurrent, recurrent_bias = self._recurrent, self._recurrent_bias
        else:
            out = states_h  # Rows of un-run jobs (the full prefix) hold the first pass.
            recurrent, recurrent_bias = self._recurrent_backward, self._recurrent_bias_backward
        lanes = self._lanes if kind == "deletion" else self._prefix_lanes
        for tile in _pack_tiles(jobs, steps, lanes, scratch_row=zero_row):
            out = self._run_tile(recurrent, recurrent_bias, inputs, states, out, *tile)
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

    def _mean_scores(
        self, kind, inputs, states, sums, base, stride, zero_row, steps, chunk_lengths, text, j
    ) -> np.ndarray:
        """Scores of every `(text, j)` when `h` is the mean of each direction's outputs.

        `sums` (`_cumulative_sums`) gives the first pass' output sum over any prefix of
        a direction's processing order. Deletion of processing position `q`: the
        variant's outputs are the first pass' at `0..q-1` and its job's after, so its
        sum is `sums[q - 1]` plus the job's sum, over `l - 1` outputs (`h = 0` for the
        empty variant of a 1-token text). Local impacts: the forward mean of the
        `m`-token prefix is `sums[m - 1] / m`; the backward one is the sum of prefix
        job `m` (or of the first pass for `m = l`) over `m`.

        Returns:
          `float32 [sum of lengths]`, text by text.
        """
        directions = self._directions
        text_len = chunk_lengths[text]
        if kind == "deletion":
            out = tf.zeros_like(sums)  # Zero-step jobs (deleting the last token) add nothing.
            recurrent, recurrent_bias = self._recurrent, self._recurrent_bias
        else:
            out = sums  # Rows of un-run jobs (the full prefix) hold the first pass' sum.
            recurrent, recurrent_bias = self._recurrent_backward, self._recurrent_bias_backward
        if kind == "deletion" or directions == 2:
            jobs = _make_jobs(kind, chunk_lengths, base, stride, zero_row)
            lanes = self._lanes if kind == "deletion" else self._prefix_lanes
            for tile in _pack_tiles(jobs, steps, lanes, scratch_row=zero_row):
                out = self._run_tile(recurrent, recurrent_bias, inputs, states, out, *tile)

        def mean(table, rows, count):
            return tf.gather(table, rows) / np.maximum(count, 1).astype(np.float32)[None, :, None]

        if kind == "deletion":
            # Direction 0 deletes processing position q = j, direction 1 q = l - 1 - j.
            q = np.stack([j, text_len - 1 - j])[:directions]
            b = base[:, text]
            before = np.where(q > 0, b + (q - 1) * stride, zero_row)
            variant = tf.gather(sums, before) + tf.gather(out, b + q * stride)
            variant = variant / np.maximum(text_len - 1, 1).astype(np.float32)[None, :, None]
            original = mean(sums, base[:, text] + (text_len - 1) * stride, text_len)
            return _max_abs_diff(variant, original)
        # The scratch (zero) row of `out` received padded job ends: read it as zero.
        out = tf.concat([out[:-1], tf.zeros_like(out[-1:])], axis=0)
        rows = base[:, text] + j * stride
        previous = np.where(j > 0, rows - stride, zero_row)
        tables = [sums, out][:directions]
        current = tf.concat([mean(t, rows[d : d + 1], j + 1) for d, t in enumerate(tables)], 0)
        before = tf.concat([mean(t, previous[d : d + 1], j) for d, t in enumerate(tables)], 0)
        return _max_abs_diff(current, before)

    def _verify(self, ids, lengths, chunk, table, base, stride, mean: bool) -> None:
        """Checks the reimplemented encoder against the model itself.

        Uses the chunk's shortest text, cut to `k <= 16` tokens: the forward state
        after `k` tokens (with `mean`, the mean of the first `k` forward states) is
        the forward half of `h(x[:k])`, the backward state after (the mean of the
        backward states over) the last `k` tokens the backward half of `h(x[l-k:])`.

        Args:
          table: `states_h` of the first pass, or its `_cumulative_sums` with `mean`.
        """
        r = len(chunk) - 1
        i, length = chunk[r], int(lengths[chunk[r]])
        k = min(length, 16)
        texts = np.stack([ids[i, :k], ids[i, length - k : length]])
        expected = np.asarray(self._model(texts, training=False)[1])
        units = self._weights.units
        rows = base[:, r] + (k - 1) * stride
        got = tf.gather(table, rows).numpy()
        if mean:
            got = got / np.float32(k)
        if expected.shape[-1] != self._directions * units:
            error = float("inf")
        else:
            error = max(
                float(np.max(np.abs(got[d] - expected[d, d * units : (d + 1) * units])))
                for d in range(self._directions)
            )
        if not error <= _VERIFY_TOLERANCE:
            description = self._weights.describe()
            raise ValueError(
                f"The fast scorer's {description} differs from model {self._model.name!r} by "
                f"{error:.3g} on a text's hidden output: the hidden output is not the plain "
                f"{description} representation of bki_tf.build_classifier. Use "
                "method='generic'."
            )
        self._verified = True


def _make_jobs(
    kind: str, lengths: np.ndarray, base: np.ndarray, stride: int, zero_row: int
) -> _Jobs:
    """The RNN runs of one chunk, in processing-order positions of each direction.

    Position `p` of chunk text `r` in direction `d` is table row `base[d, r] + p * stride`.
    Deletion of the token at processing position `q` (of a text of length `l`):
    start from the state after positions `0..q-1` (position `q - 1`, or the zero row),
    read positions `q+1..l-1` (`l-1-q` steps), write to position `q`. `q = l - 1` needs
    no step (its result, the start state, is preloaded), so jobs are `q = 0..l-2`.
    Prefix (backward direction only): the `m`-token prefix reads processing
    positions `l-m..l-1` from the zero state and writes to position `m - 1`; `m = l`
    is the first pass itself, so jobs are `m = 1..l-1`. A job's result (written to
    `out_rows`) is its final state, or, for a mean-pooled encoder, the sum of its
    states over its steps.
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
