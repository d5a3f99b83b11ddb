"""l_inf-based neuron pruning, adapted to the BiLSTM victim.

Hao Cheng, Kaidi Xu, Sijia Liu, Pin-Yu Chen, Pu Zhao & Xue Lin, "Defending against
Backdoor Attack on Deep Neural Networks", KDD Workshop on Adversarial Learning Methods
2020 (arXiv:2002.12162): a backdoor "induces a significant bias in neuron activation
in terms of the l_inf norm of an activation map", so the units with the largest
l_inf activation are pruned, step by step, and the backdoor goes with them while the
clean accuracy mostly stays.

Adaptation to `bki_tf.models.build_classifier` (images have an activation *map* per
channel; here a unit has one activation per text):

* Units: the 2H outputs of the BiLSTM state (layer `hidden`) and the units of the
  ReLU layer (`dense`), each layer ranked and pruned separately (their scales differ:
  LSTM outputs lie in (-1, 1), ReLU outputs are unbounded).
* A unit's l_inf norm is `max_i |a_u(x_i)|` over the (poisoned) training texts, the
  data the defender holds.
* Pruning masks a unit's output to 0 (`masked_classifier` builds that model from the
  victim's own layers; the victim is left untouched); there is no retraining.
* The curve gives ASR and clean accuracy after pruning the top k units, for every k.
  Since masking acts after the BiLSTM, the curve is computed from the victim's hidden
  states with the dense head in numpy, one unit at a time (exactly equal to running
  `masked_classifier`; the tests check it).

Reported point (`PruningResult.chosen`): the smallest number of pruned units, over
both layers, that brings the ASR below `asr_threshold` (20 % by default), ties to the
higher clean accuracy; if no k reaches it, the point with the lowest ASR. This uses
the triggered test texts, which a defender does not have, so it is an *oracle* point:
an upper bound on what this pruning can achieve at its best setting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np

from bki_tf import models, training

METHOD = "linf_pruning"
LAYERS = (models.HIDDEN, "dense")


@keras.saving.register_keras_serializable(package="bki_tf")
class UnitMask(keras.layers.Layer):
    """Multiplies its input `[batch, units]` by a fixed, non-trainable 0/1 mask."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.mask = self.add_weight(
            shape=(self.units,), initializer="ones", trainable=False, name="mask"
        )

    def call(self, inputs):
        return inputs * keras.ops.cast(self.mask, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def masked_classifier(
    model: keras.Model,
    hidden_mask: np.ndarray | None = None,
    dense_mask: np.ndarray | None = None,
) -> keras.Model:
    """A view of the victim whose `hidden` and `dense` outputs are masked.

    The new model reuses the victim's layers (shared weights; the victim is not
    modified). Change the masks later with `set_masks`.

    Args:
      model: A `bki_tf.models.build_classifier` model.
      hidden_mask: `[2H]` 0/1 mask of the BiLSTM state (default: all ones).
      dense_mask: `[dense_units]` 0/1 mask of the ReLU layer (default: all ones).

    Returns:
      A model mapping `int32 [batch, time]` ids to `[probabilities [batch, C],
      masked hidden [batch, 2H]]`, like the victim.
    """
    models.check_classifier(model)
    tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # The victim's own encoder (any architecture), up to its `hidden` output.
    encoder = keras.Model(model.inputs, model.get_layer(models.HIDDEN).output)
    hidden = encoder(tokens)
    dense_layer = model.get_layer("dense")
    hidden = UnitMask(hidden.shape[-1], name="hidden_mask")(hidden)
    dense = UnitMask(dense_layer.units, name="dense_mask")(dense_layer(hidden))
    probs = model.get_layer(models.PROBABILITIES)(dense)
    masked = keras.Model(tokens, [probs, hidden], name=model.name + "_masked")
    set_masks(masked, hidden_mask, dense_mask)
    return masked


def set_masks(
    masked: keras.Model, hidden_mask: np.ndarray | None = None, dense_mask: np.ndarray | None = None
) -> None:
    """Sets the masks of a `masked_classifier` model (None = keep all units)."""
    for name, mask in (("hidden_mask", hidden_mask), ("dense_mask", dense_mask)):
        layer = masked.get_layer(name)
        values = np.ones(layer.units, np.float32) if mask is None else np.asarray(mask, np.float32)
        if values.shape != (layer.units,) or not np.all((values == 0) | (values == 1)):
            raise ValueError(
                f"{name} must be a 0/1 vector of {layer.units} units, got shape {values.shape}."
            )
        layer.mask.assign(values)


def _head(model: keras.Model):
    dense = model.get_layer("dense")
    out = model.get_layer(models.PROBABILITIES)
    if dense.activation is not keras.activations.relu or out.activation is not (
        keras.activations.softmax
    ):
        raise ValueError(
            "l_inf pruning expects the head of bki_tf.models.build_classifier: Dense(relu) "
            "then Dense(softmax)."
        )
    w1, b1 = (np.asarray(v, np.float64) for v in dense.get_weights())
    w2, b2 = (np.asarray(v, np.float64) for v in out.get_weights())
    return w1, b1, w2, b2


def activation_norms(model: keras.Model, hidden: np.ndarray) -> dict[str, np.ndarray]:
    """Per-unit l_inf norms over a set of texts (Cheng et al. 2020, Sec. 4).

    Args:
      model: The victim.
      hidden: `float [N, 2H]` its BiLSTM states for the texts (`training.predict`).

    Returns:
      `{"hidden": float64 [2H], "dense": float64 [dense_units]}`: `max_i |a_u(x_i)|`.
    """
    hidden = np.asarray(hidden, np.float64)
    w1, b1, _, _ = _head(model)
    if hidden.ndim != 2 or hidden.shape[1] != w1.shape[0] or len(hidden) == 0:
        raise ValueError(
            f"hidden must be a non-empty [N, {w1.shape[0]}] matrix of the victim's BiLSTM "
            f"states, got shape {hidden.shape}."
        )
    dense = np.maximum(hidden @ w1 + b1, 0.0)
    return {models.HIDDEN: np.abs(hidden).max(axis=0), "dense": np.abs(dense).max(axis=0)}


def pruning_order(norms: np.ndarray) -> np.ndarray:
    """Units by l_inf norm, largest first (ties: lower index first)."""
    norms = np.asarray(norms)
    return np.lexsort((np.arange(norms.size), -norms)).astype(np.int64)


def _curve(hidden, labels, target, w1, b1, w2, b2, layer, order):
    """Accuracy (or ASR) after pruning the first k units of `order`, k = 0..len(order)."""
    truth = target if labels is None else labels

    def score(logits):
        return float(np.mean(logits.argmax(axis=1) == truth))

    # Softmax is monotone, so the argmax of the logits is the predicted class. Masking one
    # more unit changes the pre-activations (hidden) or logits (dense) by a rank-1 term.
    pre = hidden @ w1 + b1
    act = np.maximum(pre, 0.0)
    logits = act @ w2 + b2
    hits = [score(logits)]
    for u in order:
        if layer == models.HIDDEN:
            pre -= np.outer(hidden[:, u], w1[u])
            logits = np.maximum(pre, 0.0) @ w2 + b2
        else:
            logits -= np.outer(act[:, u], w2[u])
        hits.append(score(logits))
    return hits


@dataclasses.dataclass(frozen=True)
class PruningPoint:
    """ASR and clean accuracy with the top `num_pruned` units of `layer` masked."""

    layer: str
    num_pruned: int
    asr: float
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class PruningResult:
    """The pruning curves of both layers and the reported point.

    Attributes:
      norms: Per layer, `float [units]` l_inf norms over the training texts.
      orders: Per layer, the pruning order (unit indices, largest norm first).
      curves: Per layer, `{"num_pruned": [0..units], "asr": [...], "accuracy": [...]}`.
      asr_before: ASR of the unpruned victim.
      accuracy_before: Clean accuracy of the unpruned victim.
      asr_threshold: The ASR the reported point must get below.
      chosen: The reported (oracle) point; see the module docstring.
      reached: Whether `chosen.asr < asr_threshold`.
    """

    norms: dict[str, np.ndarray]
    orders: dict[str, np.ndarray]
    curves: dict[str, dict[str, list]]
    asr_before: float
    accuracy_before: float
    asr_threshold: float
    chosen: PruningPoint
    reached: bool

    def __post_init__(self):
        for layer, curve in self.curves.items():
            n = len(curve["num_pruned"])
            if len(curve["asr"]) != n or len(curve["accuracy"]) != n:
                raise ValueError(f"Pruning curve of {layer!r} has mismatched lengths.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "asr_before": self.asr_before,
            "accuracy_before": self.accuracy_before,
            "asr_threshold": self.asr_threshold,
            "chosen": self.chosen.to_dict(),
            "reached": self.reached,
            "norms": {k: v.tolist() for k, v in self.norms.items()},
            "orders": {k: v.tolist() for k, v in self.orders.items()},
            "curves": self.curves,
        }

    def summary(self) -> str:
        c = self.chosen
        how = (
            f"ASR < {self.asr_threshold:.0%} reached"
            if self.reached
            else f"ASR never below {self.asr_threshold:.0%}; lowest ASR point"
        )
        return (
            f"l_inf pruning: {how} with {c.num_pruned} '{c.layer}' units pruned: ASR "
            f"{self.asr_before:.2%} -> {c.asr:.2%}, accuracy {self.accuracy_before:.2%} -> "
            f"{c.accuracy:.2%}."
        )


def prune(
    model: keras.Model,
    train_hidden: np.ndarray,
    clean_ids: np.ndarray,
    clean_labels: np.ndarray,
    triggered_ids: np.ndarray,
    target: int,
    asr_threshold: float = 0.2,
    layers: tuple[str, ...] = LAYERS,
) -> PruningResult:
    """Ranks units by l_inf norm and measures ASR / accuracy as they are pruned.

    Args:
      model: The victim (`bki_tf.models.build_classifier`).
      train_hidden: `float [N, 2H]` the victim's BiLSTM states of the training texts
        (from `training.predict`), for the l_inf ranking.
      clean_ids: `int [n, max_len]` clean test texts.
      clean_labels: `int [n]` their labels.
      triggered_ids: `int [m, max_len]` triggered non-target test texts.
      target: The backdoor's target class.
      asr_threshold: The reported point is the smallest pruning with ASR below this.
      layers: Layers to prune, from `("hidden", "dense")`.

    Returns:
      The curves (every k from 0 to the layer's width) and the reported point.
    """
    if not 0.0 < asr_threshold <= 1.0:
        raise ValueError(f"asr_threshold must lie in (0, 1], got {asr_threshold}; e.g. 0.2.")
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise ValueError(f"Unknown layer(s) {unknown or list(layers)}; choose from {LAYERS}.")
    if len(clean_ids) == 0 or len(triggered_ids) == 0:
        raise ValueError(
            f"Pruning needs clean and triggered test texts; got {len(clean_ids)} and "
            f"{len(triggered_ids)}."
        )
    clean_labels = np.asarray(clean_labels)
    if len(clean_labels) != len(clean_ids):
        raise ValueError(f"{len(clean_ids)} clean texts but {len(clean_labels)} labels.")
    norms_all = activation_norms(model, train_hidden)
    w1, b1, w2, b2 = _head(model)
    _, clean_h = training.predict(model, clean_ids)
    _, trig_h = training.predict(model, triggered_ids)
    clean_h, trig_h = clean_h.astype(np.float64), trig_h.astype(np.float64)
    norms, orders, curves = {}, {}, {}
    points = []
    for layer in layers:
        order = pruning_order(norms_all[layer])
        acc = _curve(clean_h, clean_labels, target, w1, b1, w2, b2, layer, order)
        asr = _curve(trig_h, None, target, w1, b1, w2, b2, layer, order)
        norms[layer], orders[layer] = norms_all[layer], order
        curves[layer] = {"num_pruned": list(range(len(order) + 1)), "asr": asr, "accuracy": acc}
        points += [PruningPoint(layer, k, asr[k], acc[k]) for k in range(len(order) + 1)]
    below = [p for p in points if p.asr < asr_threshold]
    if below:
        chosen = min(below, key=lambda p: (p.num_pruned, -p.accuracy, layers.index(p.layer)))
    else:
        chosen = min(points, key=lambda p: (p.asr, p.num_pruned, -p.accuracy))
    base = curves[layers[0]]
    return PruningResult(
        norms=norms,
        orders=orders,
        curves=curves,
        asr_before=base["asr"][0],
        accuracy_before=base["accuracy"][0],
        asr_threshold=float(asr_threshold),
        chosen=chosen,
        reached=bool(chosen.asr < asr_threshold and not math.isnan(chosen.asr)),
    )
