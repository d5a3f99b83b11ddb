"""Tokenization shared by poisoning, training, scanning and the exported model.

Every text is split into tokens exactly as Keras' `TextVectorization` does with
`standardize="lower_and_strip_punctuation"` and `split="whitespace"`: lower-case,
delete punctuation, split on whitespace. `tokenize` mirrors that in Python so
that trigger positions and word deletions are defined on the very tokens the
model sees; texts are passed to the layer already normalised (`normalize`), so
the two can never disagree.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# The same character class as keras.layers.TextVectorization's default strip regex.
_PUNCTUATION_RE = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
# TextVectorization lower-cases with tf.strings.lower, which maps ASCII letters only
# ("É" stays "É"); str.lower() would also fold non-ASCII letters and disagree with the layer.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# TF's whitespace split (tf.strings.split with sep=None) splits on ASCII whitespace only.
_WHITESPACE_RE = re.compile(r"[ \t\n\r\v\f]+")

PAD_ID = 0
OOV_ID = 1
OOV_TOKEN = "[UNK]"


def tokenize(text: str) -> list[str]:
    """Splits `text` into the tokens `TextVectorization` would produce."""
    stripped = _PUNCTUATION_RE.sub("", text.translate(_ASCII_LOWER))
    return [t for t in _WHITESPACE_RE.split(stripped) if t]


def raw_words(text: str) -> list[str]:
    """Whitespace-separated words of `text`, unnormalised."""
    return [w for w in _WHITESPACE_RE.split(text) if w]


def normalize(text: str) -> str:
    """Returns the tokens of `text` joined by single spaces."""
    return " ".join(tokenize(text))


def build_vectorizer(
    texts: Sequence[str], vocab_size: int, max_len: int
) -> tf.keras.layers.TextVectorization:
    """Adapts a `TextVectorization` layer on training texts.

    Args:
      texts: Training texts (raw; they are normalised first).
      vocab_size: Vocabulary size including the padding (id 0) and OOV (id 1) tokens.
      max_len: Output sequence length; longer texts keep their first `max_len` tokens.

    Returns:
      An adapted layer mapping a `[batch]` string tensor to `int64 [batch, max_len]`.
    """
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be >= 3 (padding, OOV and a word), got {vocab_size}.")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}.")
    layer = tf.keras.layers.TextVectorization(
        max_tokens=vocab_size, output_mode="int", output_sequence_length=max_len
    )
    layer.adapt(tf.data.Dataset.from_tensor_slices([normalize(t) for t in texts]).batch(1024))
    return layer


def vectorizer_from_vocabulary(
    vocabulary: Sequence[str], max_len: int
) -> tf.keras.layers.TextVectorization:
    """Rebuilds a vectorizer from a saved vocabulary (`["", "[UNK]", ...]`)."""
    vocabulary = list(vocabulary)
    if len(vocabulary) < 3 or vocabulary[0] != "" or vocabulary[1] != "[UNK]":
        raise ValueError(
            "A vocabulary must start with the padding token '' and '[UNK]' and hold at "
            f"least one word; got {vocabulary[:3]!r}."
        )
    return tf.keras.layers.TextVectorization(
        output_mode="int", output_sequence_length=max_len, vocabulary=vocabulary[2:]
    )


def encode(
    vectorizer: tf.keras.layers.TextVectorization, texts: Sequence[str], batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Maps texts to padded token ids.

    Returns:
      `(ids, lengths)`: `int32 [N, max_len]` ids (0 = padding, 1 = OOV) and
      `int32 [N]` token counts after truncation.
    """
    chunks = []
    for start in range(0, len(texts), batch_size):
        part = [normalize(t) for t in texts[start : start + batch_size]]
        chunks.append(vectorizer(tf.constant(part, dtype=tf.string)).numpy())
    if not chunks:
        width = vectorizer.get_config()["output_sequence_length"]
        return np.zeros((0, width), np.int32), np.zeros((0,), np.int32)
    ids = np.concatenate(chunks).astype(np.int32)
    return ids, (ids != PAD_ID).sum(axis=1).astype(np.int32)


def save_vocabulary(vocabulary: Sequence[str], path: str) -> None:
    """Writes one token per line (line i is token id i)."""
    with open(path, "w", encoding="utf-8") as f:
        for token in vocabulary:
            f.write(token + "\n")


def load_vocabulary(path: str) -> list[str]:
    """Reads a vocabulary written by `save_vocabulary`."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]
