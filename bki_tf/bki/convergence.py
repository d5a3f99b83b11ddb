"""How much of the fast scorer's work an early exit on re-converged LSTM states could skip.

A diagnostic beside the hot path (`experiments.benchmark_scan --convergence_run`), not
part of a scan.
"""

from __future__ import annotations

import keras
import numpy as np

from bki_tf.bki import fast, scoring


def state_convergence(
    model: keras.Model,
    ids: np.ndarray,
    lengths: np.ndarray,
    tolerances: tuple[float, ...] = (0.0, 1e-7, 1e-6, 1e-5),
) -> dict[float, float]:
    """Share of the fast scorer's LSTM steps left if jobs stopped on converged states.

    A deletion job of the fast scorer (direction `d`, deleted position `q`) runs the
    LSTM over the positions after `q` from the original state before `q`. Once its
    state `(h, c)` equals the original pass' state at the same position, every later
    step repeats the original pass, so the job could stop there. This measures how
    much of the `l (l - 1)` floor such an early exit would skip: with `tolerance = 0`
    (bit-identical states) the shortcut is exact, with a positive one it is not.

    Args:
      model: A classifier from `bki_tf.build_classifier`.
      ids: `int32 [N, max_len]` token ids, right-padded with 0.
      lengths: `int [N]` number of real tokens per text.
      tolerances: Largest `max(|h - h_orig|, |c - c_orig|)` counted as converged.

    Returns:
      `{tolerance: steps until convergence (or the job's end) / floor steps}`; 1.0
      means no step could be skipped.

    Raises:
      ValueError: On malformed inputs, a negative tolerance or a model without the BKI
        structure.
    """
    ids, lengths = scoring.validate_inputs(model, ids, lengths, scoring.DEFAULT_BATCH_SIZE)
    if any(not t >= 0 for t in tolerances):
        raise ValueError(f"tolerances must be >= 0; got {tolerances}.")
    weights = fast.read_bilstm_weights(model)
    kernel = fast.halve_sigmoid_gates(weights.kernel)
    bias = fast.halve_sigmoid_gates(weights.bias)
    recurrent = fast.halve_sigmoid_gates(weights.recurrent)
    units = weights.units
    needed = np.zeros(len(tolerances), np.float64)
    floor = 0.0
    for i, length in enumerate(lengths.tolist()):
        if length < 2:
            continue
        for d in range(2):
            tokens = ids[i, :length] if d == 0 else ids[i, length - 1 :: -1]
            inputs = weights.embeddings[tokens] @ kernel[d] + bias[d]  # [l, 4H]
            # Row 0 is the original pass, row 1 + q the job deleting position q; they
            # run in one batch, so they share the arithmetic. Job q starts at position
            # q + 1 from the original state after position q - 1 (zero for q = 0).
            h = np.zeros([length, units], np.float32)
            c = np.zeros([length, units], np.float32)
            history = [(h[0].copy(), c[0].copy())]  # Original states before each position.
            stopped = np.full([len(tolerances), length - 1], -1, np.int64)
            for p in range(length):
                if p >= 1:
                    h[p], c[p] = history[p - 1]
                z = inputs[p] + h[: p + 1] @ recurrent[d]
                t = np.tanh(z)
                i_gate, f_gate, g_gate, o_gate = np.split(t, 4, axis=-1)
                c[: p + 1] = (0.5 + 0.5 * f_gate) * c[: p + 1] + (0.5 + 0.5 * i_gate) * g_gate
                h[: p + 1] = (0.5 + 0.5 * o_gate) * np.tanh(c[: p + 1])
                history.append((h[0].copy(), c[0].copy()))
                if p >= 1:
                    gap = np.maximum(
                        np.abs(h[1 : p + 1] - h[0]).max(axis=1),
                        np.abs(c[1 : p + 1] - c[0]).max(axis=1),
                    )
                    for k, tolerance in enumerate(tolerances):
                        newly = np.flatnonzero((stopped[k, :p] < 0) & (gap <= tolerance))
                        stopped[k, newly] = p
            q = np.arange(length - 1)
            sizes = length - 1 - q
            floor += float(sizes.sum())
            for k in range(len(tolerances)):
                steps = np.where(stopped[k] >= 0, stopped[k] - q, sizes)
                needed[k] += float(steps.sum())
    if floor == 0:
        return {float(t): 1.0 for t in tolerances}
    return {float(t): float(n / floor) for t, n in zip(tolerances, needed)}
