"""Tests for bki_tf.embeddings.load_glove on tiny GloVe files."""

import gzip

import numpy as np
import pytest

from bki_tf import embeddings

VOCAB = ["", "[UNK]", "the", "cat", "zzz", "dog", "café"]


def _vectors(dim):
    rng = np.random.default_rng(dim)
    words = ["dog", "other", "the", "[UNK]", "cat", "café", "more"]
    return {w: np.round(rng.normal(size=dim), 4) for w in words}


@pytest.mark.parametrize("dim", [3, 7])
@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_matrix_rows_dimension_and_coverage(tmp_path, glove_writer, dim, suffix):
    vectors = _vectors(dim)
    path = glove_writer(str(tmp_path / f"glove{suffix}"), vectors)
    matrix, coverage = embeddings.load_glove(path, VOCAB)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(VOCAB), dim)
    expected = np.zeros((len(VOCAB), dim), np.float32)
    for i, word in enumerate(VOCAB):
        if i >= 2 and word in vectors:
            expected[i] = vectors[word]
    np.testing.assert_array_equal(matrix, expected)
    # Padding, OOV (even though "[UNK]" has a line) and the missing "zzz" stay zero.
    for i in (0, 1, VOCAB.index("zzz")):
        assert not matrix[i].any()
    assert coverage.dim == dim
    assert coverage.vocab_size == len(VOCAB)
    assert coverage.found == 4  # the, cat, dog, café
    assert coverage.coverage == pytest.approx(4 / 5)
    assert coverage.to_dict() == {"vocab_size": 7, "found": 4, "dim": dim, "coverage": 0.8}


def test_first_occurrence_wins(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("cat 1 2\ncat 3 4\ndog 5 6\n", encoding="utf-8")
    matrix, coverage = embeddings.load_glove(str(path), ["", "[UNK]", "cat", "dog"])
    np.testing.assert_array_equal(matrix, [[0, 0], [0, 0], [1, 2], [5, 6]])
    assert coverage.found == 2


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="GloVe file .*nope.txt.* not found"):
        embeddings.load_glove(str(tmp_path / "nope.txt"), VOCAB)


@pytest.mark.parametrize("gz", [False, True])
def test_inconsistent_dimensions_names_the_line(tmp_path, gz):
    content = "the 1 2 3\ncat 4 5 6\ndog 7 8\nzzz 1 1 1\n"
    path = str(tmp_path / ("g.txt.gz" if gz else "g.txt"))
    with (gzip.open if gz else open)(path, "wt", encoding="utf-8") as f:
        f.write(content)
    with pytest.raises(ValueError, match="line 3 has 2 values but the first line has 3"):
        embeddings.load_glove(path, VOCAB)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("the 1 2\ncat 1 x\n", "line 2: non-numeric"),
        ("the 1 2\ncat\n", "line 2 holds no vector"),
        ("the 1 2\n\ndog 3 4\n", "line 2 holds no vector"),
    ],
)
def test_bad_content(tmp_path, content, message):
    path = tmp_path / "g.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        embeddings.load_glove(str(path), VOCAB)


def test_empty_gzip(tmp_path):
    path = str(tmp_path / "g.txt.gz")
    with gzip.open(path, "wb"):
        pass
    with pytest.raises(ValueError, match="empty"):
        embeddings.load_glove(path, VOCAB)


@pytest.mark.parametrize("kind", ["not_gzip", "bad_deflate", "not_utf8"])
def test_corrupt_file(tmp_path, kind):
    path = str(tmp_path / "g.txt.gz")
    body = "".join(f"w{i} {i} {i + 1}\n" for i in range(300)).encode()
    if kind == "not_gzip":
        raw = b"plain text, not gzip"
    elif kind == "bad_deflate":
        raw = bytearray(gzip.compress(body, mtime=0))
        for i in range(12, 60):
            raw[i] ^= 0xA5
        raw = bytes(raw)
    else:
        raw = gzip.compress(b"cat 1 2\n\xff\xfe 3 4\n")
    with open(path, "wb") as f:
        f.write(raw)
    with pytest.raises(ValueError, match="corrupt"):
        embeddings.load_glove(path, VOCAB)
