"""Any Keras text classifier as the representation `h` that BKI scores deletions on.

BKI (Chen & Dai, Neurocomputing 452, 2021, Algorithm 1) needs one function of a
text: its hidden representation `h(x)`, a vector. `representation_model` cuts it
out of a functional or Sequential `keras.Model`:

    adapter = representation_model(model, "hidden")           # 2-D layer output
    adapter = representation_model(model, "lstm_seq", "mean")  # 3-D: pool over time

The adapter maps `int32 [B, l]` token ids, every row a whole text (no padding), to
`float32 [B, d]`. Because the texts it sees are never padded, it is exact for models
with or without masking (e.g. `Conv1D` or `GlobalAveragePooling1D` without
`mask_zero`).

A model whose first layer is a `keras.layers.TextVectorization` (raw strings in) is
cut after the vectorizer: the adapter runs the layers downstream of it on ids, and
the vocabulary is the vectorizer's (`model_vocabulary`; id = index, `""` = 0 is
padding, `"[UNK]"` = 1). For a model that takes ids, the vocabulary is the caller's
(one token per line of its vocabulary file, index = id).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from bki_tf import models

POOLS = ("last", "mean", "max")
DEFAULT_LAYER = models.HIDDEN


def representation_model(
    model: keras.Model, representation_layer: str = DEFAULT_LAYER, pool: str | None = None
) -> keras.Model:
    """The sub-model `token ids -> h` of `model`, for texts of any length.

    Args:
      model: A functional or Sequential `keras.Model` on token ids `[batch, time]`, or
        one whose first layer is a `TextVectorization` (strings in, ids out).
      representation_layer: Name of a top-level layer of `model` whose output is `h`
        (default `hidden`, the representation of `bki_tf.build_classifier`).
      pool: How a sequence output `[batch, time, d]` becomes `[batch, d]`: `"last"`
        (the last time step), `"mean"` or `"max"` over the time steps; `None` for a
        layer that already outputs `[batch, d]`.

    Returns:
      A `keras.Model` sharing `model`'s layers and weights, mapping `int32 [B, l]`
      ids of `B` unpadded texts of one length `l >= 1` to `float32 [B, d]`.

    Raises:
      ValueError: On a subclassed or unbuilt model (no functional graph), an unknown
        layer name, a nested sub-model as the layer, a layer with several outputs, a
        sequence output without `pool` (or `pool` on a `[batch, d]` output), or a
        model that cannot take texts of any length.
    """
    if pool is not None and pool not in POOLS:
        raise ValueError(f"Unknown pool {pool!r}; use one of {POOLS} or None.")
    source = _ids_tensor(model)
    layer = _top_level_layer(model, representation_layer)
    output = layer.output
    if isinstance(output, (list, tuple, dict)):
        raise ValueError(
            f"Layer {layer.name!r} of model {model.name!r} has {len(output)} outputs; "
            "pass a layer with a single output as representation_layer."
        )
    try:
        sub = keras.Model(source, output)
    except ValueError as e:
        raise ValueError(
            f"Layer {layer.name!r} of model {model.name!r} is not computed from the model's "
            f"token ids alone ({e}); pass a layer downstream of the ids as representation_layer."
        ) from e
    # Rebuilt on a length-free input: a vectorizer with output_sequence_length (or an
    # Input of fixed length) would otherwise refuse the shortened texts.
    tokens = keras.Input(shape=(None,), dtype=source.dtype, name="token_ids")
    try:
        free = keras.models.clone_model(sub, input_tensors=tokens, clone_function=lambda x: x)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"Model {model.name!r} cannot run on texts of any length up to layer "
            f"{layer.name!r} ({e}); BKI deletes words by shortening the text, so the layers "
            "before the representation must accept any number of tokens."
        ) from e
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    h = free(keras.ops.cast(ids, source.dtype) if source.dtype != "int32" else ids)
    rank = len(h.shape)
    if rank == 3:
        if pool is None:
            raise ValueError(
                f"Layer {layer.name!r} of model {model.name!r} outputs a sequence "
                f"{tuple(h.shape)}; say how to pool it over time: pool='last', 'mean' or "
                "'max' (--pool=last|mean|max)."
            )
        if pool == "last":
            h = h[:, -1, :]
        elif pool == "mean":
            h = keras.ops.mean(h, axis=1)
        else:
            h = keras.ops.max(h, axis=1)
    elif rank == 2:
        if pool is not None:
            raise ValueError(
                f"Layer {layer.name!r} of model {model.name!r} outputs {tuple(h.shape)}, one "
                f"vector per text already; drop pool={pool!r} (--pool)."
            )
    else:
        raise ValueError(
            f"Layer {layer.name!r} of model {model.name!r} outputs {tuple(h.shape)}; the "
            "representation must be [batch, d], or a sequence [batch, time, d] with pool=..."
        )
    h = keras.ops.cast(h, "float32")
    return keras.Model(ids, h, name=f"{model.name}_representation")


def classifier_model(model: keras.Model) -> keras.Model:
    """The sub-model `token ids -> class probabilities` of `model`, any text length.

    The probabilities are the model's first output (`bki_tf.build_classifier`:
    `probs`); as `representation_model` on the layer that computes it.

    Raises:
      ValueError: As `representation_model`, or when the first output is not
        `[batch, classes]`.
    """
    _ids_tensor(model)  # The actionable errors for subclassed or unbuilt models.
    outputs = model.outputs
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    history = getattr(outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None) if history is not None else None
    if layer is None or len(outputs[0].shape) != 2:
        raise ValueError(
            f"Model {model.name!r}'s first output {tuple(outputs[0].shape)} is not the class "
            "probabilities [batch, classes] of a top-level layer; BKI+ re-classifies texts "
            "with it (or pass min_flip=0 / --min_flip=0)."
        )
    return representation_model(model, layer.name)


def text_vectorizer(model: keras.Model) -> keras.layers.TextVectorization | None:
    """The model's `TextVectorization` layer (raw strings in), or None for an ids model.

    Raises:
      ValueError: On a model with several vectorizers or a non-`"int"` output mode.
    """
    found = [x for x in _layers(model) if isinstance(x, keras.layers.TextVectorization)]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(
            f"Model {model.name!r} has {len(found)} TextVectorization layers "
            f"({[x.name for x in found]}); BKI reads one vocabulary."
        )
    vectorizer = found[0]
    mode = vectorizer.get_config().get("output_mode", "int")
    if mode != "int":
        raise ValueError(
            f"TextVectorization {vectorizer.name!r} has output_mode={mode!r}; BKI deletes "
            "words from token sequences and needs output_mode='int'."
        )
    return vectorizer


def model_vocabulary(model: keras.Model, vocabulary: Sequence[str] | None = None) -> list[str]:
    """Id -> token of `model`: its vectorizer's vocabulary, else the given one.

    Args:
      model: The scanned model.
      vocabulary: For a model on ids, its vocabulary (e.g. its vocabulary file, one
        token per line, index = id). Ignored when the model has a vectorizer, except
        that it must then equal the vectorizer's.

    Returns:
      `vocabulary[i]` = the token of id `i`; `vocabulary[0] == ""` (padding) and
      `vocabulary[1] == "[UNK]"` for a `TextVectorization` vocabulary.

    Raises:
      ValueError: Without a vocabulary for an ids model, or on a given vocabulary
        that contradicts the model's vectorizer.
    """
    vectorizer = text_vectorizer(model)
    if vectorizer is None:
        if vocabulary is None:
            raise ValueError(
                f"Model {model.name!r} takes token ids and has no TextVectorization layer; "
                "pass its vocabulary (id -> token, e.g. the lines of its vocabulary file)."
            )
        return [str(t) for t in vocabulary]
    own = [t.decode() if isinstance(t, bytes) else str(t) for t in vectorizer.get_vocabulary()]
    if vocabulary is not None and [str(t) for t in vocabulary] != own:
        raise ValueError(
            f"The vocabulary given differs from that of model {model.name!r}'s vectorizer "
            f"{vectorizer.name!r} ({len(own)} tokens); omit it to use the model's."
        )
    return own


def vocabulary_size(model: keras.Model) -> int | None:
    """Number of token ids `model` takes: its vectorizer's vocabulary or first embedding.

    None when neither exists (the ids are then only checked to be >= 1).
    """
    vectorizer = text_vectorizer(model)
    if vectorizer is not None:
        return int(vectorizer.vocabulary_size())
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
    return None


def encode_strings(model: keras.Model, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Raw strings -> right-padded ids exactly as `model`'s own vectorizer makes them.

    Args:
      model: A model with a `TextVectorization` layer.
      texts: `N` raw strings.

    Returns:
      `ids int32 [N, L]` (0 after each text; a vectorizer's `output_sequence_length`
      truncates as in the model) and `lengths int64 [N]`.

    Raises:
      ValueError: For a model without a vectorizer.
    """
    vectorizer = text_vectorizer(model)
    if vectorizer is None:
        raise ValueError(
            f"Model {model.name!r} has no TextVectorization layer; encode its texts with "
            "its own vocabulary (bki_tf.bki.encode_texts)."
        )
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros([0, 1], np.int32), np.zeros([0], np.int64)
    ids = np.asarray(vectorizer(np.asarray(texts, dtype=object))).astype(np.int32)
    if ids.ndim != 2:
        raise ValueError(f"Vectorizer {vectorizer.name!r} gave ids of shape {ids.shape}.")
    # TextVectorization never emits 0 for a token, so the text is the non-zero run.
    lengths = (ids != 0).sum(axis=1).astype(np.int64)
    return ids, lengths


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    try:
        return list(model.layers)
    except AttributeError:
        return []


def _ids_tensor(model: keras.Model):
    """The symbolic `[batch, time]` token ids of `model`: its input or its vectorizer's output."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model, got {type(model).__name__}.")
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is subclassed or unbuilt: it has "
            "no functional graph to read a representation layer from. Re-export it "
            "functionally (keras.Model(inputs, outputs) on keras.Input tensors) or build "
            "the Sequential model on a keras.Input."
        )
    vectorizer = text_vectorizer(model)
    if vectorizer is not None:
        return vectorizer.output
    if len(inputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(inputs)} inputs; BKI scans models with one "
            "input of token ids [batch, time] (or raw strings through a TextVectorization)."
        )
    source = inputs[0]
    if len(source.shape) != 2 or not _is_numeric(source.dtype):
        raise ValueError(
            f"Model {model.name!r} takes {source.dtype} {tuple(source.shape)}; BKI needs "
            "token ids [batch, time] or raw strings through a TextVectorization layer."
        )
    return source


def _is_numeric(dtype) -> bool:
    return str(dtype).startswith(("int", "uint", "float"))


def _top_level_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """Layer `name` of `model` itself, with an actionable error for nested ones."""
    for layer in _layers(model):
        if layer.name == name:
            if isinstance(layer, keras.Model):
                raise ValueError(
                    f"Layer {name!r} of model {model.name!r} is a nested model; pass a "
                    "layer of the top-level model as representation_layer (e.g. the layer "
                    f"that consumes {name!r}'s output), scan the nested model itself if it "
                    "takes the ids, or re-export the model functionally without nesting."
                )
            return layer
    for outer in _layers(model):
        if isinstance(outer, keras.Model) and name in {x.name for x in _layers(outer)}:
            raise ValueError(
                f"Layer {name!r} is inside the nested model {outer.name!r} of model "
                f"{model.name!r}; pass a top-level layer as representation_layer, scan "
                f"{outer.name!r} itself (model.get_layer({outer.name!r})) if it takes the "
                "token ids, or re-export the model functionally without nesting."
            )
    raise ValueError(
        f"Model {model.name!r} has no layer {name!r}; pass one of its layers as "
        f"representation_layer: {[x.name for x in _layers(model)]}."
    )
