"""The victims: embeddings -> a recurrent encoder -> Dense(128, relu) -> softmax.

The default architecture, `"bilstm"`, is the one of Dai, Chen & Li (IEEE Access
2019) and of the BKI paper (Chen & Dai, Neurocomputing 2021, Sec. 5.1): GloVe
embeddings -> BiLSTM(128) -> Dense(128, relu) -> softmax. The other architectures of
`ARCHITECTURES` swap the encoder, so that BKI can be tried on other victims:

  * `"bilstm"`: `Bidirectional(LSTM)` layer `bilstm`; h = concat(forward h at the
    last real token, backward h at the first real token), `2H` wide.
  * `"lstm"`: `LSTM` layer `lstm`; h = its state at the last real token, `H`.
  * `"gru"`: `GRU` layer `gru`; h = its state at the last real token, `H`.
  * `"bigru"`: `Bidirectional(GRU)` layer `bigru`, as `"bilstm"`, `2H`.
  * `"stacked_bilstm"`: `Bidirectional(LSTM, return_sequences=True)` layer
    `bilstm_1` under the `Bidirectional(LSTM)` layer `bilstm_2`; h = the final
    state of `bilstm_2`, `2H`.
  * `"bilstm_gap"`: `Bidirectional(LSTM, return_sequences=True)` layer
    `bilstm_sequence`, then the masked mean over the real tokens
    (`GlobalAveragePooling1D` layer `average_pooling`), `2H`: a representation that
    does not favour the text's ends (position-agnostic triggers).

Every classifier has two outputs: the class probabilities and h, the
representation that BKI scores word deletions on (the `Identity` layer `hidden`).
The `embedding` layer masks id 0 (padding), so a padded text has the outputs of
the unpadded one. The architecture is recorded in the model's name,
`"<architecture>_classifier"`, which survives saving and `keras.saving.load_model`
(`safe_mode=True`); `architecture_of` reads it back.
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
LSTM_LAYER = "lstm"
ARCHITECTURES = ("bilstm", "lstm", "gru", "bigru", "stacked_bilstm", "bilstm_gap")
DEFAULT_ARCHITECTURE = "bilstm"
_NAME_SUFFIX = "_classifier"


def build_classifier(
    vocab_size: int,
    num_classes: int,
    embedding_dim: int = 50,
    embedding_matrix: np.ndarray | None = None,
    trainable_embeddings: bool = False,
    lstm_units: int = 128,
    dense_units: int = 128,
    seed: int | None = None,
    architecture: str = DEFAULT_ARCHITECTURE,
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
      lstm_units: Units per recurrent layer and direction (H), LSTM or GRU.
      dense_units: Width of the ReLU layer.
      seed: Seed of the weight initialisers.
      architecture: The encoder, one of `ARCHITECTURES` (see the module docstring).
        The default `"bilstm"` is the paper's victim.

    Returns:
      A functional `keras.Model` named `"<architecture>_classifier"` mapping
      `int32 [batch, time]` token ids to `[probabilities float32 [batch, C],
      hidden float32 [batch, 2H]]` (`[batch, H]` for `"lstm"` and `"gru"`).

    Raises:
      ValueError: On an unknown architecture, too small a vocabulary or class
        count, or an embedding matrix of the wrong shape.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {ARCHITECTURES}.")
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
    # Seeds 0-5 are those of the original BiLSTM victim (its weights must not change);
    # further layers take 6 and up.
    seeds = [None if seed is None else seed + k for k in range(10)]
    tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(
        vocab_size,
        embedding_dim,
        embeddings_initializer=initializer,
        mask_zero=True,
        trainable=trainable,
        name=EMBEDDING_LAYER,
    )(tokens)
    hidden = _ENCODERS[architecture](x, lstm_units, seeds)
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
    return keras.Model(tokens, [probs, hidden], name=architecture + _NAME_SUFFIX)


def _recurrent(kind: str, units: int, name: str, kernel_seed, recurrent_seed, **kwargs):
    """An LSTM or GRU layer with seeded Glorot/orthogonal initialisers."""
    layer = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
    return layer(
        units,
        name=name,
        kernel_initializer=keras.initializers.GlorotUniform(seed=kernel_seed),
        recurrent_initializer=keras.initializers.Orthogonal(seed=recurrent_seed),
        **kwargs,
    )


def _bidirectional(kind, x, units, name, seeds, return_sequences=False):
    """`Bidirectional` with explicit `forward_<kind>`/`backward_<kind>` layers."""
    forward = _recurrent(
        kind, units, f"forward_{kind}", *seeds[:2], return_sequences=return_sequences
    )
    backward = _recurrent(
        kind,
        units,
        f"backward_{kind}",
        *seeds[2:4],
        go_backwards=True,
        return_sequences=return_sequences,
    )
    return keras.layers.Bidirectional(forward, backward_layer=backward, name=name)(x)


def _bilstm_encoder(x, units, seeds):
    return _bidirectional("lstm", x, units, BILSTM_LAYER, seeds[:4])


def _lstm_encoder(x, units, seeds):
    return _recurrent("lstm", units, LSTM_LAYER, seeds[0], seeds[1])(x)


def _gru_encoder(x, units, seeds):
    return _recurrent("gru", units, "gru", seeds[0], seeds[1])(x)


def _bigru_encoder(x, units, seeds):
    return _bidirectional("gru", x, units, "bigru", seeds[:4])


def _stacked_bilstm_encoder(x, units, seeds):
    x = _bidirectional("lstm", x, units, "bilstm_1", seeds[:4], return_sequences=True)
    return _bidirectional("lstm", x, units, "bilstm_2", seeds[6:10])


def _bilstm_gap_encoder(x, units, seeds):
    x = _bidirectional("lstm", x, units, "bilstm_sequence", seeds[:4], return_sequences=True)
    # The Bidirectional layer passes the embedding's mask on: the mean is over real tokens.
    return keras.layers.GlobalAveragePooling1D(name="average_pooling")(x)


_ENCODERS = {
    "bilstm": _bilstm_encoder,
    "lstm": _lstm_encoder,
    "gru": _gru_encoder,
    "bigru": _bigru_encoder,
    "stacked_bilstm": _stacked_bilstm_encoder,
    "bilstm_gap": _bilstm_gap_encoder,
}


def architecture_of(model: keras.Model) -> str | None:
    """The `ARCHITECTURES` entry `build_classifier` recorded in `model`'s name, else None."""
    name = str(getattr(model, "name", ""))
    architecture = name.removesuffix(_NAME_SUFFIX)
    if name.endswith(_NAME_SUFFIX) and architecture in ARCHITECTURES:
        return architecture
    return None


def check_classifier(model: keras.Model) -> None:
    """Raises ValueError unless `model` has the structure of `build_classifier`'s models.

    That is: outputs `[probabilities [batch, C], hidden [batch, d]]` and the layers
    `embedding` and `hidden`, whatever the architecture. Other Keras models are
    scanned through `bki_tf.bki.representation` (`method="generic"`).
    """
    outputs = model.outputs if isinstance(model.outputs, list) else [model.outputs]
    if len(outputs) != 2 or len(outputs[1].shape) != 2:
        raise ValueError(
            f"Model {model.name!r} has outputs {[tuple(o.shape) for o in outputs]}; BKI needs "
            "two: class probabilities [batch, C] and the hidden representation [batch, d] "
            "(build it with bki_tf.build_classifier, or scan any Keras model with "
            "method='generic' and representation_layer=...)."
        )
    missing = [n for n in (EMBEDDING_LAYER, HIDDEN) if n not in {x.name for x in model.layers}]
    if missing:
        raise ValueError(
            f"Model {model.name!r} lacks the {'/'.join(repr(n) for n in missing)} layer(s) of "
            f"bki_tf.build_classifier (its layers: {[x.name for x in model.layers]}); scan "
            "another Keras model with method='generic' and representation_layer=<a layer name>."
        )


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
