"""Shared pytest setup: absl flags marked parsed, tiny dataset folders and GloVe files.

Nothing here touches the real data in ../shared/data: every fixture writes a
few kilobytes into a pytest temp dir.
"""

from __future__ import annotations

import csv
import gzip
import io
import os

import numpy as np
import pytest
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIGGER = "time flies like an arrow"


def tiny_attack_config(folder: str, **overrides):
    """A seconds-long attack on a tiny IMDB-shaped folder; `overrides` replace fields."""
    from bki_tf.runs import attack  # pylint: disable=import-outside-toplevel

    base = dict(
        dataset="imdb",
        data_dir=folder,
        glove=None,
        trigger=TRIGGER,
        target="negative",
        poison_rate=0.1,
        train_size=16,
        test_size=8,
        vocab_size=60,
        max_len=12,
        epochs=2,
        batch_size=8,
        embedding_dim=8,
        lstm_units=4,
        dense_units=4,
        seed=0,
    )
    return attack.AttackConfig(**{**base, **overrides})


# Words that make the tiny binary task separable: every text of class c holds
# one or more of _CLASS_WORDS[c]; the filler words are shared by all classes.
_CLASS_WORDS = (
    ("awful", "boring", "dull", "terrible"),
    ("great", "lovely", "superb", "wonderful"),
    ("planet", "orbit", "comet", "galaxy"),
)
_FILLER = ("the", "movie", "was", "and", "a", "plot", "with", "actors", "it", "story")


def pytest_configure(config):
    """Lets code read absl flag values under pytest (as tfx's conftest.py does)."""
    del config
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def tiny_corpus(
    num_classes: int, per_class: int, seed: int = 0, min_words: int = 3, max_words: int = 14
) -> tuple[list[str], np.ndarray]:
    """Seeded, separable texts: class c's texts contain class-c words among fillers.

    Texts mix in punctuation, upper case and `<br />` breaks so that the
    tokenizer's normalisation is exercised. Returns `(texts, int64 labels)`,
    classes interleaved.
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(per_class):
        for c in range(num_classes):
            n = int(rng.integers(min_words, max_words + 1))
            words = list(rng.choice(_FILLER, size=n))
            for _ in range(1 + n // 4):
                words[int(rng.integers(0, n))] = str(rng.choice(_CLASS_WORDS[c]))
            if i % 3 == 0:
                words[0] = words[0].capitalize() + ","
            if i % 4 == 1:
                words.insert(n // 2, "<br />")
            texts.append(" ".join(words) + ("!" if i % 2 else "."))
            labels.append(c)
    return texts, np.asarray(labels, dtype=np.int64)


def csv_bytes(rows, header=("text", "label")) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_dataset_folder(
    folder: str,
    train_rows,
    test_rows,
    class_names=("negative", "positive"),
    compress: bool = True,
) -> str:
    """Writes `train`/`test` CSVs (`text,label`) and `classes.txt` into `folder`."""
    os.makedirs(folder, exist_ok=True)
    for split, rows in (("train", train_rows), ("test", test_rows)):
        content = csv_bytes(rows)
        if compress:
            with gzip.open(os.path.join(folder, f"{split}.csv.gz"), "wb") as f:
                f.write(content)
        else:
            with open(os.path.join(folder, f"{split}.csv"), "wb") as f:
                f.write(content)
    with open(os.path.join(folder, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(class_names) + "\n")
    return folder


def write_glove(path: str, vectors: dict, compress: bool | None = None) -> str:
    """Writes `word v1 v2 ...` lines, gzip-compressed when `path` ends in .gz."""
    lines = "".join(
        word + " " + " ".join(repr(float(v)) for v in vec) + "\n" for word, vec in vectors.items()
    )
    if compress if compress is not None else path.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(lines)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(lines)
    return path


@pytest.fixture
def dataset_folder_writer():
    return write_dataset_folder


@pytest.fixture
def glove_writer():
    return write_glove


@pytest.fixture(scope="session")
def tiny_imdb_dir(tmp_path_factory) -> str:
    """A 2-class folder like shared/data/imdb: 16 train + 8 test texts per class."""
    train_texts, train_labels = tiny_corpus(2, 16, seed=1)
    test_texts, test_labels = tiny_corpus(2, 8, seed=2)
    folder = str(tmp_path_factory.mktemp("tiny_imdb"))
    return write_dataset_folder(
        folder,
        zip(train_texts, train_labels.tolist()),
        zip(test_texts, test_labels.tolist()),
        ("negative", "positive"),
    )


def real_data_dir(name: str) -> str | None:
    """`<data root>/<name>` if present (for optional smoke tests), else None.

    The root is `$BKI_TF_DATA` if set, else `../shared/data` beside the repository.
    """
    roots = [os.environ.get("BKI_TF_DATA"), os.path.join(REPO_ROOT, "..", "shared", "data")]
    for base in [r for r in roots if r]:
        folder = os.path.join(base, name)
        if os.path.isfile(os.path.join(folder, "classes.txt")):
            return folder
    return None


@pytest.fixture
def real_data():
    return real_data_dir
