"""Pre-trained word vectors (GloVe text format) for the victim's embedding layer.

`load_glove` reads any GloVe text file. `resolve_glove` turns the `--glove` setting
into a file: a path as given, `none` for random embeddings, or `auto`, which fetches
the GloVe 6B vectors (Pennington et al. 2014; the BKI paper used the 100-d ones) once
through `keras.utils.get_file` into the Keras cache, extracts the asked dimension,
checks every line (a word and `dim` floats) and renames it into place only then, so
a failed or interrupted download never leaves a file the next run would trust.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

GLOVE_ORIGIN = "https://nlp.stanford.edu/data/glove.6B.zip"
GLOVE_DIMS = (50, 100, 200, 300)
GLOVE_NONE = ("", "none")


def glove_cache_dir() -> str:
    """Where `auto` keeps GloVe: the Keras cache (`$KERAS_HOME` or ~/.keras), datasets/."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def resolve_glove(
    spec: str | None,
    dim: int = 100,
    origin: str = GLOVE_ORIGIN,
    cache_dir: str | None = None,
) -> str | None:
    """The GloVe file a `--glove` setting names (None: random embeddings).

    Args:
      spec: `None`, `""` or `"none"` (random), `"auto"` (GloVe 6B at `dim`,
        downloaded once), or a path to a `.txt` / `.txt.gz` GloVe file.
      dim: Dimension for `auto`, one of `GLOVE_DIMS`.
      origin: Where `auto` downloads the archive from (a `file://` URL in tests).
      cache_dir: Cache folder for `auto` (default `glove_cache_dir()`).

    Raises:
      ValueError: A failed download or a damaged archive (saying how to pass a local
        file instead), or an unknown `dim`.
    """
    if spec is None or spec.strip().lower() in GLOVE_NONE:
        return None
    if spec.strip().lower() != "auto":
        return spec
    if dim not in GLOVE_DIMS:
        raise ValueError(f"--glove_dim={dim} is not a GloVe 6B dimension; use one of {GLOVE_DIMS}.")
    cache = cache_dir or glove_cache_dir()
    target = os.path.join(cache, f"glove.6B.{dim}d.txt")
    if os.path.isfile(target):
        return target
    os.makedirs(cache, exist_ok=True)
    archive = os.path.join(cache, "glove.6B.zip")
    fix = (
        "pass a local GloVe text file with --glove=PATH (e.g. "
        f"glove.6B.{dim}d.txt[.gz]), or --glove=none for random embeddings"
    )
    if not zipfile.is_zipfile(archive):
        _download(origin, archive, fix)
    member = f"glove.6B.{dim}d.txt"
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".txt")
    os.close(fd)
    try:
        try:
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (KeyError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"The GloVe archive {archive!r} holds no readable {member} ({e}); delete it "
                f"to download it again, or {fix}."
            ) from None
        check_glove_file(tmp, dim)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def _download(origin: str, archive: str, fix: str) -> None:
    """Downloads to a temporary name; renames onto `archive` only when the zip is whole."""
    import keras  # pylint: disable=import-outside-toplevel  # Only when downloading.

    part = f".part-{os.getpid()}-{os.path.basename(archive)}"
    folder = os.path.dirname(archive)
    try:
        path = keras.utils.get_file(fname=part, origin=origin, cache_dir=folder, cache_subdir=".")
    except BaseException as e:  # pylint: disable=broad-except  # Incl. KeyboardInterrupt.
        partial = os.path.join(folder, part)
        if os.path.exists(partial):
            os.remove(partial)
        if not isinstance(e, Exception):
            raise
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise ValueError(f"Cannot download GloVe from {origin} ({first}); {fix}.") from None
    if not zipfile.is_zipfile(path):
        os.remove(path)
        raise ValueError(f"The download from {origin} is not a zip archive; {fix}.")
    os.replace(path, archive)


def check_glove_file(path: str, dim: int | None = None) -> int:
    """Checks that every line is a word and the same number of floats; returns it.

    Raises:
      ValueError: Naming the file and the first bad line.
    """
    opener = gzip.open if path.endswith(".gz") else open
    found = None
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            n = len(parts) - 1
            if found is None:
                found = n
            if n < 1 or n != found or (dim is not None and n != dim):
                raise ValueError(
                    f"GloVe file {path!r} line {lineno} has {n} values, expected "
                    f"{dim or found}; the file is damaged."
                )
            try:
                [float(v) for v in parts[1:]]
            except ValueError:
                raise ValueError(
                    f"GloVe file {path!r} line {lineno} holds a non-number; the file is damaged."
                ) from None
    if found is None:
        raise ValueError(f"GloVe file {path!r} is empty.")
    return found


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
