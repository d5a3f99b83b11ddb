"""The victim: GloVe embeddings -> BiLSTM(128) -> Dense(128, relu) -> softmax.

The architecture of Dai, Chen & Li (IEEE Access 2019) and of the BKI paper
(Chen & Dai, Neurocomputing 2021, Sec. 5.1). The classifier has two outputs:
the class probabilities and the BiLSTM's final state h, the representation
that BKI scores word deletions on: concat(forward h at the last real token,
backward h at the first real token), `2 * lstm_units` wide.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

PROBABILITIES = "probabilities"
HIDDEN = "hidden"
EMBEDDING_LAYER = "embedding"
BILSTM_LAYER = "bilstm"


def build_classifier(
    vocab_size: int,
    num_classes: int,
    embedding_dim: int = 50,
    embedding_matrix: np.ndarray | None = None,
    trainable_embeddings: bool = False,
    lstm_units: int = 128,
    dense_units: int = 128,
    seed: int | None = None,
) -> keras.Model:
    """Builds the victim classifier.

    Args:
      vocab_size: Number of token ids; id 0 is padding (masked).
      num_classes: Number of classes C.
      embedding_dim: Embedding width; ignored when `embedding_matrix` is given.
      embedding_matrix: Optional `float32 [vocab_size, dim]` initial embeddings
        (e.g. GloVe). Without it, embeddings are randomly initialised and trained.
      trainable_embeddings: Fine-tune a given `embedding_matrix` (the authors
        keep GloVe frozen, the default).
      lstm_units: Units per LSTM direction (H).
      dense_units: Width of the ReLU layer.
      seed: Seed of the weight initialisers.

    Returns:
      A functional `keras.Model` mapping `int32 [batch, time]` token ids to
      `[probabilities float32 [batch, C], hidden float32 [batch, 2H]]`.
    """
    if vocab_size < 3 or num_classes < 2:
        raise ValueError(
            f"Need vocab_size >= 3 and num_classes >= 2; got {vocab_size} and {num_classes}."
        )
    if embedding_matrix is not None:
        embedding_matrix = np.asarray(embedding_matrix, dtype=np.float32)
        if embedding_matrix.ndim != 2 or embedding_matrix.shape[0] != vocab_size:
            raise ValueError(
                f"embedding_matrix has shape {embedding_matrix.shape}; it must be "
                f"[vocab_size={vocab_size}, dim]."
            )
        embedding_dim = embedding_matrix.shape[1]
        initializer = keras.initializers.Constant(embedding_matrix)
        trainable = trainable_embeddings
    else:
        initializer = keras.initializers.RandomUniform(-0.05, 0.05, seed=seed)
        trainable = True
    seeds = [None if seed is None else seed + k for k in range(8)]
    tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(
        vocab_size,
        embedding_dim,
        embeddings_initializer=initializer,
        mask_zero=True,
        trainable=trainable,
        name=EMBEDDING_LAYER,
    )(tokens)
    lstm_kwargs = dict(
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[0]),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seeds[1]),
    )
    forward = keras.layers.LSTM(lstm_units, name="forward_lstm", **lstm_kwargs)
    backward = keras.layers.LSTM(
        lstm_units,
        go_backwards=True,
        name="backward_lstm",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[2]),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seeds[3]),
    )
    hidden = keras.layers.Bidirectional(forward, backward_layer=backward, name=BILSTM_LAYER)(x)
    hidden = keras.layers.Identity(name=HIDDEN)(hidden)
    dense = keras.layers.Dense(
        dense_units,
        activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[4]),
        name="dense",
    )(hidden)
    probs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[5]),
        name=PROBABILITIES,
    )(dense)
    return keras.Model(tokens, [probs, hidden], name="bilstm_classifier")


def check_classifier(model: keras.Model) -> None:
    """Raises ValueError unless `model` has the probabilities and hidden outputs."""
    outputs = model.outputs if isinstance(model.outputs, list) else [model.outputs]
    if len(outputs) != 2 or len(outputs[1].shape) != 2:
        raise ValueError(
            f"Model {model.name!r} has outputs {[tuple(o.shape) for o in outputs]}; BKI needs "
            "two: class probabilities [batch, C] and the BiLSTM final state [batch, 2H] "
            "(build it with bki_tf.build_classifier)."
        )
    try:
        model.get_layer(BILSTM_LAYER)
        model.get_layer(EMBEDDING_LAYER)
    except ValueError as e:
        raise ValueError(
            f"Model {model.name!r} lacks the '{EMBEDDING_LAYER}'/'{BILSTM_LAYER}' layers of "
            "bki_tf.build_classifier."
        ) from e


def probabilities_model(model: keras.Model) -> keras.Model:
    """The single-output view (shared weights) used for training with `fit`."""
    return keras.Model(model.inputs, model.outputs[0], name=model.name + "_probs")


def build_string_model(
    classifier: keras.Model, vectorizer: keras.layers.TextVectorization
) -> keras.Model:
    """End-to-end model: raw strings `[batch]` -> `{probabilities, hidden}`.

    Note that the vectorizer applies TextVectorization's own standardisation,
    identical to `bki_tf.tokenization.tokenize` for ordinary text.
    """
    texts = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorizer(texts)
    probs, hidden = classifier(keras.ops.cast(ids, "int32"))
    return keras.Model(texts, {PROBABILITIES: probs, HIDDEN: hidden}, name="string_classifier")


def export_saved_model(
    classifier: keras.Model, vectorizer: keras.layers.TextVectorization, path: str
) -> None:
    """Exports a SavedModel whose `serve` signature takes raw strings.

    The signature maps `text: string [batch]` to `probabilities float32 [batch, C]`
    and `hidden float32 [batch, 2H]`. Load it with `tf.saved_model.load(path)`.
    """
    string_model = build_string_model(classifier, vectorizer)
    archive = keras.export.ExportArchive()
    archive.track(string_model)

    def serve(text):
        return string_model(text, training=False)

    archive.add_endpoint(
        name="serve",
        fn=serve,
        input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="text")],
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    archive.write_out(path, verbose=False)
