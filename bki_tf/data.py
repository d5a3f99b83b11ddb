"""Text classification datasets: IMDB and DBpedia, from a local folder or TFDS.

A local dataset folder holds `train.csv.gz`, `test.csv.gz` (UTF-8 CSV with a
`text,label` header; plain `.csv` is accepted too) and `classes.txt` (one class
name per line; label `i` is line `i`). This is the form of `shared/data/<name>/`.

Online, `source="tfds"` reads `imdb_reviews` from TensorFlow Datasets and
DBpedia from `huggingface:dbpedia_14` (TFDS' Hugging Face bridge; the content
field only, as in the BKI paper), cached in the TFDS data dir. `source="auto"`
(the default) reads a `data_dir` that holds the local files offline and goes to
the catalogue otherwise; offline with no local folder it says both fixes in one
line. Every path ends in the same `TextDataset`.

Subsampling follows the BKI paper (Chen & Dai 2021, Sec. 5.1): a seeded,
class-balanced draw of `train_size` / `test_size` samples *per class*.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re
import zlib

import numpy as np

DATASETS = ("imdb", "dbpedia")
SOURCES = ("auto", "local", "tfds")
# The catalogue entry of each preset (TFDS; DBpedia through its Hugging Face bridge).
CATALOGUE = {"imdb": "imdb_reviews", "dbpedia": "huggingface:dbpedia_14"}

# Paper sizes, per class: IMDB 10,000 train / 10,000 test at 1:1, DBpedia 1,000 / 500.
DEFAULT_SIZES_PER_CLASS = {"imdb": (5000, 5000), "dbpedia": (1000, 500)}

_BR_RE = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """A labelled train/test text classification dataset.

    Attributes:
      name: Dataset name, e.g. `"imdb"`.
      class_names: Class names; label `i` means `class_names[i]`.
      train_texts: Training texts, a list of `str`.
      train_labels: `int64` array of shape `[num_train]`.
      test_texts: Test texts.
      test_labels: `int64` array of shape `[num_test]`.
    """

    name: str
    class_names: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray

    def __post_init__(self):
        for split, texts, labels in (
            ("train", self.train_texts, self.train_labels),
            ("test", self.test_texts, self.test_labels),
        ):
            if len(texts) != len(labels):
                raise ValueError(
                    f"{split}: {len(texts)} texts but {len(labels)} labels; they must match."
                )
            check_labels(labels, len(self.class_names), where=f"{self.name} {split}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_labels(labels: np.ndarray, num_classes: int, where: str = "labels") -> None:
    """Raises ValueError if any label lies outside `[0, num_classes)`."""
    labels = np.asarray(labels)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"{where}: label {int(bad[0])} is outside the {num_classes} classes "
            f"of classes.txt (valid labels are 0..{num_classes - 1}); fix the label "
            "column or classes.txt."
        )


def clean_text(text: str) -> str:
    """Replaces HTML line breaks (`<br />`, as in raw IMDB reviews) by spaces."""
    return _BR_RE.sub(" ", text)


def read_classes(path: str) -> tuple[str, ...]:
    """Reads `classes.txt`: one class name per line, blank lines ignored."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Class list {path!r} not found: a dataset folder needs classes.txt "
            "with one class name per line."
        )
    with open(path, encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if not names:
        raise ValueError(f"Class list {path!r} is empty; write one class name per line.")
    return names


def read_csv(path: str, num_classes: int) -> tuple[list[str], np.ndarray]:
    """Reads a `text,label` CSV file (optionally gzip-compressed).

    Args:
      path: Path of a `.csv` or `.csv.gz` file with at least the columns `text`
        and `label` (integer class index).
      num_classes: Number of classes; labels must be in `[0, num_classes)`.

    Returns:
      `(texts, labels)`: a list of `str` and an `int64` array of shape `[N]`.

    Raises:
      FileNotFoundError: If `path` does not exist.
      ValueError: On a corrupt file, missing columns, or a bad label.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Data file {path!r} not found: a dataset folder needs train.csv.gz and "
            "test.csv.gz (columns text,label) and classes.txt."
        )
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
        # "utf-8-sig" drops a leading byte-order mark (spreadsheet exports write one).
        content = raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:  # zlib: bad deflate data
        raise ValueError(
            f"Data file {path!r} is corrupt or not UTF-8 ({e}); restore it from the source."
        ) from e
    reader = csv.DictReader(io.StringIO(content, newline=""))
    fields = reader.fieldnames or []
    missing = [c for c in ("text", "label") if c not in fields]
    if missing:
        raise ValueError(
            f"Data file {path!r} lacks column(s) {missing} (header is {fields}); "
            "the first line must name the columns text,label."
        )
    texts, labels = [], []
    try:
        for lineno, row in enumerate(reader, start=2):
            if row["text"] is None or row["label"] is None:
                raise ValueError(f"Data file {path!r} line {lineno}: missing field.")
            try:
                label = int(row["label"])
            except ValueError as e:
                raise ValueError(
                    f"Data file {path!r} line {lineno}: label {row['label']!r} is not an "
                    "integer class index."
                ) from e
            texts.append(row["text"])
            labels.append(label)
    except csv.Error as e:
        raise ValueError(f"Data file {path!r} is not valid CSV ({e}).") from e
    labels = np.asarray(labels, dtype=np.int64)
    check_labels(labels, num_classes, where=f"Data file {path!r}")
    return texts, labels


def balanced_subsample(
    labels: np.ndarray, per_class: int | None, num_classes: int, seed: int
) -> np.ndarray:
    """Seeded, class-balanced sample of indices, `per_class` from each class.

    Args:
      labels: `int` array of shape `[N]`.
      per_class: Samples to draw from each class; `None` keeps everything.
      num_classes: Number of classes.
      seed: Random seed.

    Returns:
      Sorted-by-draw `int64` index array of shape `[per_class * num_classes]`,
      shuffled (classes interleaved).
    """
    rng = np.random.default_rng(seed)
    if per_class is None:
        return rng.permutation(len(labels)).astype(np.int64)
    if per_class < 1:
        raise ValueError(f"Sample size per class must be >= 1, got {per_class}.")
    picked = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise ValueError(
                f"Class {c} has only {len(pool)} samples but {per_class} per class were "
                "asked for; lower the train/test size."
            )
        picked.append(rng.choice(pool, size=per_class, replace=False))
    return rng.permutation(np.concatenate(picked)).astype(np.int64)


def _find_split(folder: str, split: str) -> str:
    for name in (f"{split}.csv.gz", f"{split}.csv"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"No {split}.csv.gz (or {split}.csv) in {folder!r}: a dataset folder needs "
        "train.csv.gz, test.csv.gz (columns text,label) and classes.txt."
    )


def _read_local(name: str, folder: str):
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Dataset folder {folder!r} not found; pass --data_dir pointing at a folder "
            f"with train.csv.gz, test.csv.gz and classes.txt (e.g. ../shared/data/{name})."
        )
    classes = read_classes(os.path.join(folder, "classes.txt"))
    train = read_csv(_find_split(folder, "train"), len(classes))
    test = read_csv(_find_split(folder, "test"), len(classes))
    return classes, train, test


def has_local_files(folder: str | None) -> bool:
    """True when `folder` holds a local dataset (classes.txt and a train split)."""
    if not folder or not os.path.isdir(folder):
        return False
    has_train = any(os.path.isfile(os.path.join(folder, f)) for f in ("train.csv.gz", "train.csv"))
    return has_train and os.path.isfile(os.path.join(folder, "classes.txt"))


def resolve_source(name: str, source: str, data_dir: str | None) -> str:
    """`local` or `tfds` for `source="auto"` (see the module docstring); else `source`."""
    if source != "auto":
        return source
    if has_local_files(data_dir):
        return "local"
    if data_dir and not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"--data_dir={data_dir!r} does not exist: pass a folder with train.csv.gz, "
            f"test.csv.gz and classes.txt (e.g. ../shared/data/{name}), or leave --data_dir "
            "out to download the dataset through TFDS."
        )
    return "tfds"


def _read_tfds(name: str, data_dir: str | None, explain_offline: bool = False):
    """Reads the preset from the catalogue; `explain_offline` turns a failed download
    into the one-line message that names both fixes."""
    try:
        return _load_tfds(name, data_dir)
    except Exception as e:  # pylint: disable=broad-except  # Any failure of the download.
        if not explain_offline:
            raise
        first = " ".join(str(e).split())[:160] or type(e).__name__
        raise ValueError(
            f"Cannot read {name} from the catalogue (TFDS {CATALOGUE[name]}: {first}). "
            f"Offline, pass --data_dir=<folder with train.csv.gz, test.csv.gz, classes.txt> "
            f"(e.g. ../shared/data/{name}); otherwise connect to the internet so TFDS can "
            "download it."
        ) from None


def _load_tfds(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds  # Deferred: heavy, and only needed online.

    if name == "imdb":
        builder, text_key, classes = "imdb_reviews", "text", ("negative", "positive")
    else:
        builder, text_key = "huggingface:dbpedia_14", "content"
        classes = (
            "Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
            "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal",
            "Plant", "Album", "Film", "WrittenWork",
        )  # fmt: skip
    splits = []
    for split in ("train", "test"):
        ds = tfds.load(builder, split=split, data_dir=data_dir)
        texts, labels = [], []
        for ex in tfds.as_numpy(ds):
            text = ex[text_key]
            texts.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
            labels.append(int(ex["label"]))
        splits.append((texts, np.asarray(labels, dtype=np.int64)))
    return classes, splits[0], splits[1]


def load_dataset(
    name: str,
    source: str = "local",
    data_dir: str | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
) -> TextDataset:
    """Loads IMDB or DBpedia and draws the paper's class-balanced subsets.

    Args:
      name: `"imdb"` or `"dbpedia"`.
      source: `"auto"` (the local folder when `data_dir` holds one, else the
        catalogue), `"local"` (a folder, see the module docstring) or `"tfds"`.
      data_dir: For `"local"`, the dataset folder (e.g. `../shared/data/imdb`);
        for `"tfds"`, the TFDS data directory (`None`: TFDS' default).
      train_per_class: Training samples per class (`None`: all).
      test_per_class: Test samples per class (`None`: all).
      seed: Seed of the subsampling.

    Returns:
      A `TextDataset` with HTML line breaks removed from the texts.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {DATASETS}.")
    if source not in SOURCES:
        raise ValueError(f"Unknown data source {source!r}; choose one of {SOURCES}.")
    resolved = resolve_source(name, source, data_dir)
    if resolved == "local":
        if not data_dir:
            raise ValueError(
                "A local dataset needs data_dir (e.g. ../shared/data/imdb); or use source='tfds'."
            )
        classes, train, test = _read_local(name, data_dir)
    else:
        classes, train, test = _read_tfds(name, data_dir, explain_offline=source == "auto")
    (train_texts, train_labels), (test_texts, test_labels) = train, test
    k = len(classes)
    train_idx = balanced_subsample(train_labels, train_per_class, k, seed)
    test_idx = balanced_subsample(test_labels, test_per_class, k, seed + 1)
    return TextDataset(
        name=name,
        class_names=tuple(classes),
        train_texts=[clean_text(train_texts[i]) for i in train_idx],
        train_labels=train_labels[train_idx],
        test_texts=[clean_text(test_texts[i]) for i in test_idx],
        test_labels=test_labels[test_idx],
    )
