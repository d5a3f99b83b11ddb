"""Pre-trained word vectors (GloVe text format) for the victim's embedding layer."""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class EmbeddingCoverage:
    """How much of a vocabulary a vector file covers.

    Attributes:
      vocab_size: Vocabulary size, padding and OOV tokens included.
      found: Vocabulary words (padding/OOV excluded) that have a vector.
      dim: Vector dimension read from the file.
    """

    vocab_size: int
    found: int
    dim: int

    @property
    def coverage(self) -> float:
        words = max(self.vocab_size - 2, 1)
        return self.found / words

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "coverage": self.coverage}


def load_glove(path: str, vocabulary: Sequence[str]) -> tuple[np.ndarray, EmbeddingCoverage]:
    """Builds an embedding matrix from a GloVe text file of any dimension.

    Each line of the file is a word followed by its vector, space-separated;
    the dimension is read from the first line and every line must match it.
    Rows of words without a vector (and the padding/OOV rows 0 and 1) are zero,
    as in the keras-io pre-trained embedding example.

    Args:
      path: A `.txt` or `.txt.gz` GloVe file.
      vocabulary: Token list; token `i` gets row `i`.

    Returns:
      `(matrix, coverage)`: `float32 [len(vocabulary), dim]` and the coverage.

    Raises:
      FileNotFoundError: If the file does not exist.
      ValueError: If the file is empty, corrupt, or has inconsistent dimensions.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"GloVe file {path!r} not found; pass a GloVe text file (e.g. "
            "../shared/data/glove/glove.6B.50d.top100k.txt.gz) or no file for random init."
        )
    index = {w: i for i, w in enumerate(vocabulary) if i >= 2}
    opener = gzip.open if path.endswith(".gz") else open
    matrix = None
    dim = None
    found = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.rstrip().split(" ")
                if len(parts) < 2:
                    raise ValueError(
                        f"GloVe file {path!r} line {lineno} holds no vector; each line must "
                        "be a word followed by its floats."
                    )
                if dim is None:
                    dim = len(parts) - 1
                    matrix = np.zeros((len(vocabulary), dim), dtype=np.float32)
                elif len(parts) - 1 != dim:
                    raise ValueError(
                        f"GloVe file {path!r} line {lineno} has {len(parts) - 1} values but "
                        f"the first line has {dim}; all vectors must have one dimension."
                    )
                row = index.get(parts[0])
                if row is not None:
                    try:
                        matrix[row] = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError as e:
                        raise ValueError(
                            f"GloVe file {path!r} line {lineno}: non-numeric value ({e})."
                        ) from e
                    found += 1
                    del index[parts[0]]  # First occurrence wins.
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:  # zlib: bad deflate data
        raise ValueError(f"GloVe file {path!r} is corrupt ({e}).") from e
    if dim is None:
        raise ValueError(f"GloVe file {path!r} is empty.")
    return matrix, EmbeddingCoverage(vocab_size=len(vocabulary), found=found, dim=dim)
