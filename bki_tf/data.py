"""Text classification datasets: the IMDB and DBpedia presets, local files, any TFDS dataset.

`load(DatasetSpec(...))` reads a dataset and draws its train/test subsets; every
path ends in the same `TextDataset`, whose `provenance` records what was read.
`DatasetSpec.dataset` is one of:

* **A preset**, `imdb` or `dbpedia` (`load_dataset` is the older entry point and
  reads the same way). A preset's local folder holds `train.csv.gz`, `test.csv.gz`
  (UTF-8 CSV with a `text,label` header, integer labels; plain `.csv` is accepted
  too) and `classes.txt` (one class name per line; label `i` is line `i`): the form
  of `shared/data/<name>/`. Online, `source="tfds"` reads `imdb_reviews` from
  TensorFlow Datasets and DBpedia from `huggingface:dbpedia_14` (TFDS' Hugging Face
  bridge; the content field only, as in the BKI paper), cached in the TFDS data
  dir. `source="auto"` reads a `data_dir` that holds the local files and goes to
  the catalogue otherwise; offline with no local folder it says both fixes in one
  line.
* **A local path** (anything else that is not a catalogue name; write `./imdb` for
  a folder named like a preset), in one of three layouts:

  1. a folder with `train.EXT`, optional `test.EXT` and optional `classes.txt`,
     EXT being `csv`, `tsv` or `jsonl`, each plain or `.gz` (`train.jsonl.gz`,
     `test.tsv`, ...). CSV and TSV (tab-separated, as Python's `csv` module and
     pandas write it) start with a header line; JSONL holds one JSON object per
     line. The preset layout is one case of it;
  2. a single such file (`reviews.jsonl`): the training split only;
  3. the `keras.utils.text_dataset_from_directory` layout: a folder whose
     sub-folders are the classes, each holding `*.txt` files (one text per file,
     sub-folders included), or a folder with `train/` and optionally `test/`, each
     with the same class sub-folders (the raw aclImdb layout, once its
     `train/unsup` is removed or `classes.txt` lists `neg` and `pos`). A
     `classes.txt` beside them chooses and orders the class folders; without it
     the classes are the sorted folder names. Read with plain file IO, sorted.

* **`tfds:NAME[/CONFIG][:VERSION]`** (`tfds:glue/sst2`, `tfds:ag_news_subset`) or
  **`huggingface:NAME`** (TFDS' Hugging Face bridge): read through
  `tfds.builder(...)`, `data_dir` naming the TFDS data dir.

Labels of local files (`_map_labels`):

* with `classes.txt`: if every label is a class name, that name's line; else if
  every label is an integer in `[0, k)`, that index (the preset layout); else an
  error naming the first label that is neither, its file and line;
* without it, integer labels (every label an integer, JSON int or decimal text):
  class `i` is the `i`-th smallest distinct integer of train and test, named by its
  decimal text, so labels `0..k-1` keep their values and `-1/1` become `0/1`;
* otherwise string labels: the sorted distinct labels of train and test. Labels
  are compared by their text, stripped of surrounding spaces (JSON `1` = `"1"`).

TFDS labels: a `ClassLabel` feature gives the class names and indices; its `-1`
("no label", e.g. GLUE's test splits) examples are dropped. Integer or string label
features follow the local rules. Columns: `text_column`/`label_column`, else the
builder's `supervised_keys`, else `text`/`label`, else the dataset's only `Text` /
only `ClassLabel` feature.

Test split: `test_split=None` reads `test` when it exists and has labelled examples
(a TFDS test split with only `-1` labels counts as absent, and the provenance says
so: pass `test_split="validation"` to evaluate on GLUE's validation split instead);
otherwise `test_fraction` of the training split is held out, stratified: each class
gives `round(n_c * test_fraction)` of its `n_c` texts (halves up), but keeps at
least one for training, chosen by a generator seeded with `seed`. A named
`test_split` must exist and be labelled.

Sizes (`train_size`, `test_size`), drawn after the split:

* `balance=True` (the presets' default): per class, the BKI paper's convention
  (Chen & Dai 2021, Sec. 5.1): a seeded, class-balanced draw. `None` is the
  paper's size for a preset (`DEFAULT_SIZES_PER_CLASS`) and the smallest class's
  count otherwise (the largest balanced subset);
* `balance=False` (the default for other data): totals, a seeded uniform sample
  without replacement; `None` keeps everything (shuffled).

A size above what is available is a `ValueError` naming the available count. The
training draw is seeded with `seed`, the test draw with `seed + 1`. HTML line
breaks (`<br />`) are replaced by spaces in every text.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from bki_tf import artifacts, tokenization

DATASETS = ("imdb", "dbpedia")
SOURCES = ("auto", "local", "tfds")
# The catalogue entry of each preset (TFDS; DBpedia through its Hugging Face bridge).
CATALOGUE = {"imdb": "imdb_reviews", "dbpedia": "huggingface:dbpedia_14"}
# An optional column of local CSV/TSV/JSONL files: which training rows are poisoned
# (0/1 or true/false), the ground truth of a user's own data
# (`TextDataset.train_is_poisoned`).
GROUND_TRUTH_COLUMN = "is_poisoned"
FORMATS = ("csv", "tsv", "jsonl")
TFDS_PREFIX = "tfds:"
HUGGINGFACE_PREFIX = "huggingface:"

# Paper sizes, per class: IMDB 10,000 train / 10,000 test at 1:1, DBpedia 1,000 / 500.
DEFAULT_SIZES_PER_CLASS = {"imdb": (5000, 5000), "dbpedia": (1000, 500)}

_BR_RE = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)
_TABLE_RE = re.compile(r"^(?P<stem>.+)\.(?P<format>csv|tsv|jsonl)(?P<gz>\.gz)?$", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?\d+")
# Spawn key of the held-out split's generator, apart from the subsampling seeds.
_HOLDOUT_STREAM = 7919
_LAYOUTS = (
    "train.csv|tsv|jsonl[.gz] (+ optional test.* and classes.txt), a single such file, "
    "or class sub-folders of .txt files"
)


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """A labelled train/test text classification dataset.

    Attributes:
      name: The dataset's name: the preset (`"imdb"`), a local folder's name or
        file's stem (`"my_reviews"`), or a TFDS catalogue name (`"glue/sst2"`).
      class_names: Class names; label `i` means `class_names[i]`.
      train_texts: Training texts, a list of `str`.
      train_labels: `int64` array of shape `[num_train]`.
      test_texts: Test texts.
      test_labels: `int64` array of shape `[num_test]`.
      provenance: What was read, JSON-ready: the spec, format, files (path and
        sha256) or TFDS builder, columns, label mapping (label text -> index),
        whether the test split was given or held out (fraction, seed), balance
        and sizes. Empty for a `TextDataset` built by hand.
      train_is_poisoned: `bool [num_train]` from a local file's `is_poisoned`
        column, or None when the data has none.
    """

    name: str
    class_names: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    provenance: dict = dataclasses.field(default_factory=dict)
    train_is_poisoned: np.ndarray | None = None

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


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What `load` reads and how it subsamples (see the module docstring).

    Attributes:
      dataset: A preset (`imdb`, `dbpedia`), a local folder or file, `tfds:NAME[/CONFIG][:VERSION]`
        or `huggingface:NAME`.
      source: Presets only: `auto`, `local` or `tfds` (as `load_dataset`). Other
        data takes `auto` (or the kind it is: `local` for a path, `tfds` for a
        catalogue name).
      data_dir: Presets: the local folder or the TFDS data dir. `tfds:`/`huggingface:`:
        the TFDS data dir (`None`: TFDS' default). Unused for a local path.
      text_column: Column or feature of the texts (`None`: `text` for local files;
        for TFDS the builder's `supervised_keys`, then `text`, then its only Text feature).
      label_column: Column or feature of the labels (`None`: as `text_column`, `label`).
      train_split: Training split: a file stem (`train.csv`), a sub-folder (`train/`)
        or a TFDS split (slices such as `train[:50%]` are accepted).
      test_split: Test split; `None`: `test` if it exists and is labelled, else held out.
      test_fraction: Share of each class held out for testing when there is no test
        split, in [0, 1); 0 holds nothing out (an empty test set: a scan of a user's
        model reads the training set only).
      balance: `True`: sizes per class, class-balanced; `False`: totals, uniform.
        `None`: `True` for presets, `False` otherwise.
      train_size: Training texts, per class (balanced) or in total; `None`: see the
        module docstring.
      test_size: Test texts, as `train_size`.
      seed: Seed of the held-out split and the subsampling.
    """

    dataset: str
    source: str = "auto"
    data_dir: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    train_split: str = "train"
    test_split: str | None = None
    test_fraction: float = 0.2
    balance: bool | None = None
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(
                f"dataset={self.dataset!r} is empty; pass a preset {DATASETS}, a local "
                "folder or file, tfds:NAME or huggingface:NAME."
            )
        if self.source not in SOURCES:
            raise ValueError(f"Unknown data source {self.source!r}; choose one of {SOURCES}.")
        kind = self.kind
        if kind == "preset":
            fixed = [
                f"{f}={getattr(self, f)!r}"
                for f, default in (
                    ("text_column", None),
                    ("label_column", None),
                    ("train_split", "train"),
                )
                if getattr(self, f) != default
            ]
            if self.test_split not in (None, "test"):
                fixed.append(f"test_split={self.test_split!r}")
            if fixed:
                entry = CATALOGUE[self.dataset]
                entry = entry if entry.startswith(HUGGINGFACE_PREFIX) else TFDS_PREFIX + entry
                raise ValueError(
                    f"Preset {self.dataset!r} has fixed columns and splits, so {', '.join(fixed)} "
                    f"cannot apply; drop it, or read the data as dataset={entry!r} or as a "
                    "local path."
                )
        else:
            if self.source not in ("auto", kind):
                raise ValueError(
                    f"source={self.source!r} does not fit {self.dataset!r} (a {kind} dataset); "
                    "source chooses between a preset's folder and the catalogue: leave it 'auto'."
                )
            if kind == "local" and self.data_dir:
                raise ValueError(
                    f"data_dir={self.data_dir!r} is for presets and TFDS data; the local "
                    f"dataset {self.dataset!r} is read from its own path: drop data_dir."
                )
            if kind == "tfds" and not _tfds_names(self.dataset)[1]:
                raise ValueError(
                    f"dataset={self.dataset!r} names no TFDS dataset; write e.g. tfds:glue/sst2."
                )
        for name in ("text_column", "label_column", "train_split", "test_split"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}={value!r} must be a non-empty string or None.")
        if (
            isinstance(self.test_fraction, bool)
            or not isinstance(self.test_fraction, (int, float))
            or not 0.0 <= self.test_fraction < 1.0
        ):
            raise ValueError(
                f"test_fraction={self.test_fraction!r} is outside [0, 1); use e.g. 0.2."
            )
        if self.balance not in (None, True, False):
            raise ValueError(f"balance={self.balance!r} must be True, False or None.")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(f"{name}={value!r} must be an integer >= 1 or None (see balance).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed={self.seed!r} must be an integer.")

    @property
    def kind(self) -> str:
        """`preset`, `tfds` (`tfds:`/`huggingface:` names) or `local` (a path)."""
        if is_preset(self.dataset):
            return "preset"
        if self.dataset.startswith((TFDS_PREFIX, HUGGINGFACE_PREFIX)):
            return "tfds"
        return "local"

    @property
    def balanced(self) -> bool:
        """`balance`, with `None` resolved (True for presets)."""
        return self.kind == "preset" if self.balance is None else bool(self.balance)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_preset(name: str) -> bool:
    """True for the preset names `imdb` and `dbpedia` (`DATASETS`)."""
    return name in DATASETS


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
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Class list {path!r} names {duplicates[0]!r} twice; each class goes on one line."
        )
    return names


def _read_text_file(path: str) -> tuple[str, str]:
    """`(content, sha256 of the file's bytes)` of a UTF-8 file, gunzipped if `.gz`."""
    try:
        with open(path, "rb") as f:
            stored = f.read()
        raw = gzip.decompress(stored) if path.lower().endswith(".gz") else stored
        # "utf-8-sig" drops a leading byte-order mark (spreadsheet exports write one).
        content = raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:  # zlib: bad deflate data
        raise ValueError(
            f"Data file {path!r} is corrupt or not UTF-8 ({e}); restore it from the source."
        ) from e
    return content, hashlib.sha256(stored).hexdigest()


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
    texts, labels, _ = _read_preset_csv(path, num_classes)
    return texts, labels


def _read_preset_csv(path: str, num_classes: int) -> tuple[list[str], np.ndarray, str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Data file {path!r} not found: a dataset folder needs train.csv.gz and "
            "test.csv.gz (columns text,label) and classes.txt."
        )
    content, sha = _read_text_file(path)
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
    return texts, labels, sha


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


def uniform_subsample(num: int, size: int | None, seed: int) -> np.ndarray:
    """Seeded uniform sample of `size` of `range(num)` without replacement.

    Args:
      num: Number of items.
      size: Items to draw; `None` keeps all of them (shuffled).
      seed: Random seed.

    Returns:
      `int64` index array of shape `[size]` in draw order; a larger `size` with
      the same seed extends a smaller one's draw.
    """
    if size is not None and size > num:
        raise ValueError(f"Only {num} texts are available but {size} were asked for.")
    return np.random.default_rng(seed).permutation(num)[:size].astype(np.int64)


def _held_out_split(
    labels: np.ndarray, num_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: `(train, test)` index arrays, each in the original order."""
    rng = np.random.default_rng([_HOLDOUT_STREAM, seed])
    train, test = [], []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        n_test = min(math.floor(len(pool) * fraction + 0.5), max(len(pool) - 1, 0))
        order = rng.permutation(pool)
        test.append(order[:n_test])
        train.append(order[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _find_split(folder: str, split: str) -> str:
    for name in (f"{split}.csv.gz", f"{split}.csv"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"No {split}.csv.gz (or {split}.csv) in {folder!r}: a dataset folder needs "
        "train.csv.gz, test.csv.gz (columns text,label) and classes.txt."
    )


def has_local_files(folder: str | None) -> bool:
    """True when `folder` holds a preset's local files (classes.txt and a train split)."""
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


# ---------------------------------------------------------------------------
# What a reader hands to the subsampling.


@dataclasses.dataclass
class _Raw:
    """A dataset as read: every labelled text, before splitting and subsampling."""

    name: str
    class_names: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str] | None  # None: no test split, hold one out.
    test_labels: np.ndarray | None
    provenance: dict
    train_is_poisoned: np.ndarray | None = None  # The `is_poisoned` column, if any.


def _file_record(path: str, sha: str | None = None) -> dict:
    return {"path": os.path.abspath(path), "sha256": sha or artifacts.file_sha256(path)}


# ---------------------------------------------------------------------------
# Presets.


def _read_preset(name: str, source: str, data_dir: str | None) -> _Raw:
    resolved = resolve_source(name, source, data_dir)
    if resolved == "local":
        if not data_dir:
            raise ValueError(
                "A local dataset needs data_dir (e.g. ../shared/data/imdb); or use source='tfds'."
            )
        classes, train, test, files = _read_preset_folder(name, data_dir)
        where = {"format": "csv", "files": files}
    else:
        classes, train, test = _read_tfds(name, data_dir, explain_offline=source == "auto")
        where = {"format": "tfds", "builder": CATALOGUE[name], "data_dir": data_dir}
    k = len(classes)
    provenance = {
        "name": name,
        "kind": "preset",
        "source": resolved,
        **where,
        "text_column": "text" if resolved == "local" or name == "imdb" else "content",
        "label_column": "label",
        "label_kind": "class_index",
        "class_names_from": "classes.txt" if resolved == "local" else "preset",
        "label_mapping": {str(i): i for i in range(k)},
        "splits": {"train": "train", "test": "test"},
    }
    return _Raw(name, tuple(classes), *train, *test, provenance)


def _read_preset_folder(name: str, folder: str):
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Dataset folder {folder!r} not found; pass --data_dir pointing at a folder "
            f"with train.csv.gz, test.csv.gz and classes.txt (e.g. ../shared/data/{name})."
        )
    classes_path = os.path.join(folder, "classes.txt")
    classes = read_classes(classes_path)
    train_path, test_path = _find_split(folder, "train"), _find_split(folder, "test")
    *train, train_sha = _read_preset_csv(train_path, len(classes))
    *test, test_sha = _read_preset_csv(test_path, len(classes))
    files = [
        _file_record(train_path, train_sha),
        _file_record(test_path, test_sha),
        _file_record(classes_path),
    ]
    return classes, train, test, files


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


# ---------------------------------------------------------------------------
# Labels.


def _label_text(raw) -> str:
    return str(raw) if isinstance(raw, int) else raw.strip()


def _map_labels(
    raw_labels: dict[str, Sequence],
    where: Callable[[str, int], str],
    classes: tuple[str, ...] | None,
    classes_path: str | None,
) -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, int], str]:
    """Maps raw labels (str or int) of each split to class indices (module docstring).

    Args:
      raw_labels: Split name -> raw labels.
      where: `(split, i) -> "Data file 'x' line 7"`, to name a bad label's place.
      classes: The names of `classes.txt`, or None.
      classes_path: Its path, for messages.

    Returns:
      `(class_names, split -> int64 labels, label text -> index, label kind)`.
    """
    texts = {split: [_label_text(v) for v in values] for split, values in raw_labels.items()}
    everything = [(split, i, t) for split, ts in texts.items() for i, t in enumerate(ts)]
    for split, i, t in everything:
        if not t:
            raise ValueError(f"{where(split, i)}: the label is empty; give every text a label.")
    if classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        if all(t in index for _, _, t in everything):
            kind = "class_name"
        elif all(_INT_RE.fullmatch(t) and 0 <= int(t) < len(classes) for _, _, t in everything):
            kind = "class_index"
            index = {t: int(t) for _, _, t in everything}
        else:
            as_names = any(t in index for _, _, t in everything)
            split, i, t = next(
                (s, i, t)
                for s, i, t in everything
                if (t not in index if as_names else not _in_range(t, len(classes)))
            )
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise ValueError(
                f"{where(split, i)}: label {t!r} is neither a class of {classes_path!r} "
                f"({shown}) nor a class index 0..{len(classes) - 1}; fix the label or "
                f"add it to {os.path.basename(classes_path or 'classes.txt')}."
            )
        names = tuple(classes)
    else:
        distinct = sorted({t for _, _, t in everything})
        if distinct and all(_INT_RE.fullmatch(t) for t in distinct):
            kind = "integer"
            values = sorted({int(t) for t in distinct})
            names = tuple(str(v) for v in values)
            position = {v: i for i, v in enumerate(values)}
            index = {t: position[int(t)] for t in distinct}
        else:
            kind = "string"
            names = tuple(distinct)
            index = {t: i for i, t in enumerate(distinct)}
    labels = {
        split: np.asarray([index[t] for t in ts], dtype=np.int64) for split, ts in texts.items()
    }
    mapping = dict(sorted(index.items(), key=lambda item: (item[1], item[0])))
    return names, labels, mapping, kind


def _in_range(text: str, k: int) -> bool:
    return bool(_INT_RE.fullmatch(text)) and 0 <= int(text) < k


# ---------------------------------------------------------------------------
# Local files.


def _table_format(path: str) -> tuple[str, str] | None:
    """`(stem, format)` of `x.csv`, `x.tsv.gz`, ...; None for other names."""
    match = _TABLE_RE.match(os.path.basename(path))
    return (match["stem"], match["format"].lower()) if match else None


def _read_table(
    path: str, fmt: str, text_column: str, label_column: str
) -> tuple[list[str], list, list[int], str, np.ndarray | None]:
    """Reads one CSV/TSV/JSONL file.

    Returns:
      `(texts, raw labels, line numbers, sha256, ground truth)`; the ground truth is
      the `GROUND_TRUTH_COLUMN` as `bool [N]` when the file has that column, else None.
    """
    content, sha = _read_text_file(path)
    fix = "pass text_column/label_column (--text_column, --label_column) naming them"
    texts, labels, lines, truth = [], [], [], []
    if fmt == "jsonl":
        for lineno, line in enumerate(content.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"Data file {path!r} line {lineno}: not valid JSON ({e.msg}); write one "
                    "JSON object per line."
                ) from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"Data file {path!r} line {lineno}: a {type(row).__name__}, not a JSON "
                    f'object; write one object per line, e.g. {{"text": "...", "label": 0}}.'
                )
            missing = [c for c in (text_column, label_column) if c not in row]
            if missing:
                raise ValueError(
                    f"Data file {path!r} line {lineno}: no key(s) {missing} (keys are "
                    f"{sorted(row)}); {fix}."
                )
            text, label = row[text_column], row[label_column]
            if not isinstance(text, str):
                raise ValueError(
                    f"Data file {path!r} line {lineno}: text {text!r} is not a string."
                )
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                raise ValueError(
                    f"Data file {path!r} line {lineno}: label {label!r} is not an integer "
                    "or a string."
                )
            texts.append(text)
            labels.append(label)
            lines.append(lineno)
            truth.append(row.get(GROUND_TRUTH_COLUMN))
    else:
        dialect = csv.excel_tab if fmt == "tsv" else csv.excel
        reader = csv.DictReader(io.StringIO(content, newline=""), dialect=dialect)
        try:
            fields = reader.fieldnames or []
            missing = [c for c in (text_column, label_column) if c not in fields]
            if missing:
                raise ValueError(
                    f"Data file {path!r} lacks column(s) {missing} (header is {fields}); "
                    f"the first line names the columns: {fix}."
                )
            for row in reader:
                lineno = reader.line_num
                text, label = row[text_column], row[label_column]
                if text is None or label is None:
                    raise ValueError(
                        f"Data file {path!r} line {lineno}: missing field (expected "
                        f"{len(fields)} {'tab' if fmt == 'tsv' else 'comma'}-separated fields)."
                    )
                texts.append(text)
                labels.append(label)
                lines.append(lineno)
                truth.append(row.get(GROUND_TRUTH_COLUMN))
        except csv.Error as e:
            raise ValueError(
                f"Data file {path!r} line {reader.line_num}: not valid {fmt.upper()} ({e})."
            ) from None
    for text, lineno in zip(texts, lines):
        if not text.strip():
            raise ValueError(
                f"Data file {path!r} line {lineno}: the text is empty; remove the line or "
                "fill it in."
            )
    return texts, labels, lines, sha, _ground_truth(path, truth, lines)


def _ground_truth(path: str, values: list, lines: list[int]) -> np.ndarray | None:
    """The `is_poisoned` values as `bool [N]`: 0/1, true/false; None when absent."""
    if not values or all(v is None for v in values):
        return None
    out = np.zeros(len(values), bool)
    for i, value in enumerate(values):
        text = str(value).strip().lower() if value is not None else ""
        if text not in ("0", "1", "true", "false"):
            raise ValueError(
                f"Data file {path!r} line {lines[i]}: {GROUND_TRUTH_COLUMN} is {value!r}; "
                "write 0/1 or true/false on every row (or drop the column)."
            )
        out[i] = text in ("1", "true")
    return out


def _split_files(folder: str, split: str) -> list[tuple[str, str]]:
    """`(path, format)` of every `split.EXT[.gz]` in `folder`."""
    found = []
    for entry in sorted(os.listdir(folder)):
        parsed = _table_format(entry)
        path = os.path.join(folder, entry)
        if parsed and parsed[0] == split and os.path.isfile(path):
            found.append((path, parsed[1]))
    if len(found) > 1:
        raise ValueError(
            f"Folder {folder!r} holds {len(found)} files for the {split} split "
            f"({', '.join(os.path.basename(p) for p, _ in found)}); keep one."
        )
    return found


def _sub_folders(folder: str) -> list[str]:
    return sorted(
        d
        for d in os.listdir(folder)
        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _read_local_path(spec: DatasetSpec) -> _Raw:
    path = os.path.expanduser(spec.dataset)
    if os.path.isfile(path):
        return _read_single_file(spec, path)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Dataset {spec.dataset!r} is neither a preset {DATASETS}, a tfds:NAME or "
            "huggingface:NAME catalogue name, nor an existing file or folder; fix the "
            "path or the name."
        )
    name = os.path.basename(os.path.normpath(os.path.abspath(path)))
    train_files = _split_files(path, spec.train_split)
    if train_files:
        return _read_table_folder(spec, path, name, train_files[0])
    subs = _sub_folders(path)
    test_name = spec.test_split or "test"
    if spec.train_split in subs:
        return _read_class_folder_splits(spec, path, name)
    if test_name in subs:
        raise FileNotFoundError(
            f"Folder {path!r} has {test_name}/ but no {spec.train_split}/; add the training "
            "split (or pass train_split= naming it)."
        )
    if subs:
        if spec.test_split is not None:
            raise FileNotFoundError(
                f"test_split={spec.test_split!r}: {path!r} holds class folders without "
                f"{spec.train_split}/ and {spec.test_split}/ splits; drop test_split to hold "
                "out a test share."
            )
        return _read_flat_class_folders(spec, path, name)
    raise FileNotFoundError(
        f"No dataset found in folder {path!r}: it needs {_LAYOUTS} "
        f"(no {spec.train_split}.* file and no sub-folders)."
    )


def _read_single_file(spec: DatasetSpec, path: str) -> _Raw:
    parsed = _table_format(path)
    if parsed is None:
        raise ValueError(
            f"Data file {path!r} has an unknown extension; use .csv, .tsv or .jsonl "
            "(optionally .gz), or pass its folder."
        )
    if spec.test_split is not None:
        raise ValueError(
            f"test_split={spec.test_split!r}: the single file {path!r} holds the training "
            "split only; pass a folder with train.* and test.* files, or drop test_split."
        )
    stem, fmt = parsed
    text_column, label_column = spec.text_column or "text", spec.label_column or "label"
    texts, raw, lines, sha, truth = _read_table(path, fmt, text_column, label_column)
    names, labels, mapping, kind = _map_labels(
        {"train": raw}, lambda s, i: f"Data file {path!r} line {lines[i]}", None, None
    )
    provenance = {
        "name": stem,
        "kind": "local",
        "layout": "file",
        "format": fmt + (".gz" if path.lower().endswith(".gz") else ""),
        "files": [_file_record(path, sha)],
        "text_column": text_column,
        "label_column": label_column,
        "label_kind": kind,
        "class_names_from": "labels",
        "label_mapping": mapping,
        "splits": {"train": os.path.basename(path), "test": None},
    }
    return _Raw(stem, names, texts, labels["train"], None, None, provenance, truth)


def _read_table_folder(spec: DatasetSpec, folder: str, name: str, train_file) -> _Raw:
    text_column, label_column = spec.text_column or "text", spec.label_column or "label"
    test_files = _split_files(folder, spec.test_split or "test")
    if spec.test_split is not None and not test_files:
        raise FileNotFoundError(
            f"test_split={spec.test_split!r}: no {spec.test_split}.csv|tsv|jsonl[.gz] in "
            f"{folder!r}; fix the name, or drop test_split to hold out a test share."
        )
    classes_path = os.path.join(folder, "classes.txt")
    classes = read_classes(classes_path) if os.path.isfile(classes_path) else None
    files, texts, raw, lines, formats, truth = [], {}, {}, {}, [], {}
    for split, (path, fmt) in zip(("train", "test"), [train_file] + test_files):
        texts[split], raw[split], lines[split], sha, truth[split] = _read_table(
            path, fmt, text_column, label_column
        )
        files.append(_file_record(path, sha))
        formats.append(fmt + (".gz" if path.lower().endswith(".gz") else ""))
    if classes is not None:
        files.append(_file_record(classes_path))

    def where(split, i):
        return f"Data file {files[0 if split == 'train' else 1]['path']!r} line {lines[split][i]}"

    names, labels, mapping, kind = _map_labels(raw, where, classes, classes_path)
    provenance = {
        "name": name,
        "kind": "local",
        "layout": "folder",
        "format": "+".join(dict.fromkeys(formats)),
        "files": files,
        "text_column": text_column,
        "label_column": label_column,
        "label_kind": kind,
        "class_names_from": "classes.txt" if classes is not None else "labels",
        "label_mapping": mapping,
        "splits": {
            "train": os.path.basename(train_file[0]),
            "test": os.path.basename(test_files[0][0]) if test_files else None,
        },
    }
    has_test = bool(test_files)
    return _Raw(
        name,
        names,
        texts["train"],
        labels["train"],
        texts["test"] if has_test else None,
        labels["test"] if has_test else None,
        provenance,
        truth["train"],
    )


def _class_folders(root: str, classes: tuple[str, ...] | None, classes_path: str | None):
    """The class names of `root` and the folders that are ignored."""
    subs = _sub_folders(root)
    if classes is None:
        if not subs:
            raise FileNotFoundError(
                f"Folder {root!r} has no class sub-folders; put each class's .txt files in "
                "a sub-folder named after the class."
            )
        return tuple(subs), []
    missing = [c for c in classes if c not in subs]
    if missing:
        raise FileNotFoundError(
            f"{classes_path!r} lists class {missing[0]!r} but {root!r} has no folder "
            f"{missing[0]!r} (folders: {subs}); fix classes.txt or add the folder."
        )
    return tuple(classes), [s for s in subs if s not in classes]


def _read_txt_files(root: str, class_names: tuple[str, ...]):
    """Texts of `root/<class>/**/*.txt`, class by class, files sorted by path."""
    texts, labels, entries = [], [], []
    for c, class_name in enumerate(class_names):
        class_dir = os.path.join(root, class_name)
        paths = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames.sort()  # os.walk descends in this order: keeps the reading deterministic.
            paths += [
                os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(".txt")
            ]
        if not paths:
            raise ValueError(
                f"Class folder {class_dir!r} holds no .txt files; add texts or remove the "
                "folder (or leave it out of classes.txt)."
            )
        for path in sorted(paths):
            try:
                with open(path, "rb") as f:
                    stored = f.read()
                text = stored.decode("utf-8-sig")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"Text file {path!r} is unreadable or not UTF-8 ({e}).") from e
            if not text.strip():
                raise ValueError(f"Text file {path!r} is empty; remove it or fill it in.")
            texts.append(text)
            labels.append(c)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            entries.append(f"{rel}\0{hashlib.sha256(stored).hexdigest()}\n")
    digest = hashlib.sha256("".join(entries).encode("utf-8")).hexdigest()
    record = {"path": os.path.abspath(root), "num_files": len(entries), "sha256": digest}
    return texts, np.asarray(labels, dtype=np.int64), record


def _class_folder_provenance(name, names, records, classes_path, ignored, splits) -> dict:
    files = list(records)
    if classes_path:
        files.append(_file_record(classes_path))
    return {
        "name": name,
        "kind": "local",
        "layout": "class_folders",
        "format": "txt",
        # sha256 of a folder: of the lines "relative/path\0<file sha256>\n", sorted by path.
        "files": files,
        "text_column": None,
        "label_column": None,
        "label_kind": "folder",
        "class_names_from": "classes.txt" if classes_path else "folders",
        "label_mapping": {n: i for i, n in enumerate(names)},
        "ignored_folders": ignored,
        "splits": splits,
    }


def _read_flat_class_folders(spec: DatasetSpec, folder: str, name: str) -> _Raw:
    classes_path = os.path.join(folder, "classes.txt")
    classes = read_classes(classes_path) if os.path.isfile(classes_path) else None
    names, ignored = _class_folders(folder, classes, classes_path)
    texts, labels, record = _read_txt_files(folder, names)
    provenance = _class_folder_provenance(
        name, names, [record], classes_path if classes else None, ignored,
        {"train": ".", "test": None},
    )  # fmt: skip
    return _Raw(name, names, texts, labels, None, None, provenance)


def _read_class_folder_splits(spec: DatasetSpec, folder: str, name: str) -> _Raw:
    classes_path = os.path.join(folder, "classes.txt")
    classes = read_classes(classes_path) if os.path.isfile(classes_path) else None
    train_root = os.path.join(folder, spec.train_split)
    test_name = spec.test_split or "test"
    test_root = os.path.join(folder, test_name)
    if not os.path.isdir(test_root):
        if spec.test_split is not None:
            raise FileNotFoundError(
                f"test_split={spec.test_split!r}: {folder!r} has no folder {spec.test_split}/; "
                "fix the name, or drop test_split to hold out a test share."
            )
        test_root = None
    names, ignored = _class_folders(train_root, classes, classes_path)
    if test_root is not None:
        test_names, test_ignored = _class_folders(test_root, classes, classes_path)
        if set(test_names) != set(names):
            only_train = sorted(set(names) - set(test_names))
            only_test = sorted(set(test_names) - set(names))
            raise ValueError(
                f"The class folders of {train_root!r} and {test_root!r} differ "
                f"(only in {spec.train_split}/: {only_train}, only in {test_name}/: "
                f"{only_test}); remove the extra folders (e.g. aclImdb's train/unsup) or "
                f"list the classes to read in {classes_path!r}."
            )
        ignored = sorted(set(ignored) | set(test_ignored))
    train_texts, train_labels, train_record = _read_txt_files(train_root, names)
    records = [train_record]
    test_texts = test_labels = None
    if test_root is not None:
        test_texts, test_labels, test_record = _read_txt_files(test_root, names)
        records.append(test_record)
    provenance = _class_folder_provenance(
        name, names, records, classes_path if classes else None, ignored,
        {"train": spec.train_split, "test": test_name if test_root else None},
    )  # fmt: skip
    return _Raw(name, names, train_texts, train_labels, test_texts, test_labels, provenance)


# ---------------------------------------------------------------------------
# TFDS, any dataset.


def _tfds_names(dataset: str) -> tuple[str, str]:
    """`(builder name for tfds.builder, display name)` of `tfds:...` / `huggingface:...`."""
    if dataset.startswith(TFDS_PREFIX):
        builder = dataset[len(TFDS_PREFIX) :].strip()
    else:
        builder = dataset.strip()
    bare = builder.removeprefix(HUGGINGFACE_PREFIX)
    return builder, bare.split(":")[0].strip("/")


def _read_tfds_spec(spec: DatasetSpec) -> _Raw:
    import tensorflow_datasets as tfds  # Deferred: heavy, and only needed for TFDS data.

    builder_name, name = _tfds_names(spec.dataset)
    try:
        builder = tfds.builder(builder_name, data_dir=spec.data_dir)
        builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except  # Unknown name, offline, ...
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise ValueError(
            f"Cannot prepare TFDS dataset {builder_name!r} ({type(e).__name__}: {first}); check "
            "the name and config (tfds.list_builders()), connect to the internet so TFDS can "
            "download it, or pass data_dir= the TFDS data dir that already holds it."
        ) from None
    info = builder.info
    available = sorted(info.splits.keys())

    def check_split(split: str, arg: str) -> None:
        if split.split("[")[0] not in info.splits:
            raise ValueError(
                f"TFDS {name} has no split {split!r} (its splits: {available}); pass "
                f"{arg}= one of them."
            )

    check_split(spec.train_split, "train_split")
    if spec.test_split is not None:
        check_split(spec.test_split, "test_split")
    features = dict(info.features.items())
    text_key, label_key, columns_from = _tfds_keys(spec, name, info.supervised_keys, features)
    label_feature = features[label_key]
    is_class_label = isinstance(label_feature, tfds.features.ClassLabel)

    test_split = spec.test_split
    if test_split is None and "test" in info.splits:
        test_split = "test"
    splits = {"train": spec.train_split}
    if test_split is not None:
        splits["test"] = test_split
    texts, raw, dropped = {}, {}, {}
    for part, split in splits.items():
        texts[part], raw[part] = _tfds_read_split(builder, split, text_key, label_key, name)
        if is_class_label:
            keep = np.asarray(raw[part], dtype=np.int64) >= 0
            dropped[split] = int((~keep).sum())
            texts[part] = [t for t, k in zip(texts[part], keep) if k]
            raw[part] = np.asarray(raw[part], dtype=np.int64)[keep]
    note = None
    if not texts["train"]:
        raise ValueError(
            f"TFDS {name} split {spec.train_split!r} has no labelled examples; pass "
            "train_split= a labelled split."
        )
    if "test" in texts and not texts["test"]:
        if spec.test_split is not None:
            raise ValueError(
                f"TFDS {name} split {test_split!r} has no labelled examples (all labels -1, "
                "as in GLUE's test splits); pass test_split='validation' (or another "
                f"labelled split of {available}), or drop test_split to hold out a share of "
                "the training split."
            )
        note = (
            f"split {test_split!r} has no labels (all -1); held out a share of "
            f"{spec.train_split!r} instead (test_split='validation' evaluates on that split)"
        )
        del texts["test"], raw["test"]
        splits["test"] = None

    if is_class_label:
        names = tuple(label_feature.names)
        labels = dict(raw)
        mapping = {str(i): i for i in range(len(names))}
        kind, names_from = "class_label", "label feature"
    else:
        if any(isinstance(v, bytes) for part in raw.values() for v in part):
            raw = {
                p: [v.decode("utf-8") if isinstance(v, bytes) else v for v in r]
                for p, r in raw.items()
            }
        names, labels, mapping, kind = _map_labels(
            raw, lambda s, i: f"TFDS {name} {splits[s]} example {i}", None, None
        )
        names_from = "labels"
    provenance = {
        "name": name,
        "kind": "tfds",
        "format": "tfds",
        "builder": builder_name,
        "version": str(info.version),
        "data_dir": spec.data_dir,
        "text_column": text_key,
        "label_column": label_key,
        "columns_from": columns_from,
        "label_kind": kind,
        "class_names_from": names_from,
        "label_mapping": mapping,
        "dropped_unlabelled": dropped,
        "splits": splits,
        "test_note": note,
    }
    has_test = "test" in texts
    return _Raw(
        name,
        names,
        texts["train"],
        np.asarray(labels["train"], dtype=np.int64),
        texts["test"] if has_test else None,
        np.asarray(labels["test"], dtype=np.int64) if has_test else None,
        provenance,
    )


def _tfds_keys(spec: DatasetSpec, name: str, supervised, features: dict):
    """`(text key, label key, where they came from)` of a TFDS dataset."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    if (
        isinstance(supervised, (tuple, list))
        and len(supervised) == 2
        and all(isinstance(k, str) for k in supervised)
    ):
        defaults, columns_from = tuple(supervised), "supervised_keys"
    else:
        defaults, columns_from = (None, None), "default"
    keys = []
    for given, default, fallback, kind, arg in (
        (spec.text_column, defaults[0], "text", tfds.features.Text, "text_column"),
        (spec.label_column, defaults[1], "label", tfds.features.ClassLabel, "label_column"),
    ):
        key = given or default
        if key is None:
            only = [k for k, f in features.items() if isinstance(f, kind)]
            key = fallback if fallback in features or len(only) != 1 else only[0]
        if key not in features:
            raise ValueError(
                f"TFDS {name} has no feature {key!r} (features: {sorted(features)}); pass "
                f"{arg}= the feature to read."
            )
        keys.append(key)
    if spec.text_column or spec.label_column:
        columns_from = (
            "given" if spec.text_column and spec.label_column else "given+" + columns_from
        )
    return keys[0], keys[1], columns_from


def _tfds_read_split(builder, split: str, text_key: str, label_key: str, name: str):
    """Texts (decoded UTF-8) and raw labels of one TFDS split, in the stored order."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    ds = builder.as_dataset(split=split, shuffle_files=False)
    ds = ds.map(lambda ex: (ex[text_key], ex[label_key]), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(1024).prefetch(tf.data.AUTOTUNE)
    texts, labels = [], []
    for batch_texts, batch_labels in tfds.as_numpy(ds):
        if batch_texts.ndim != 1 or batch_labels.ndim != 1:
            raise ValueError(
                f"TFDS {name}: features {text_key!r} and {label_key!r} must be one value per "
                "example; pass text_column/label_column naming scalar features."
            )
        for value in batch_texts:
            if not isinstance(value, bytes):
                raise ValueError(
                    f"TFDS {name}: feature {text_key!r} holds {type(value).__name__}, not "
                    "text; pass text_column= a text feature."
                )
            texts.append(value.decode("utf-8"))
        labels += [v if isinstance(v, bytes) else int(v) for v in batch_labels.tolist()]
    return texts, labels


# ---------------------------------------------------------------------------
# Splitting and subsampling.


def _assemble(
    raw: _Raw,
    balance: bool,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    spec: DatasetSpec | None = None,
    preset_sizes: tuple[int, int] | None = None,
) -> TextDataset:
    """Holds out a test split if there is none, then draws the subsets.

    `train_size`/`test_size` `None`: with `preset_sizes`, those; else with
    `spec` (`load`), the smallest class's count when balanced; without `spec`
    (`load_dataset`), everything.
    """
    k = len(raw.class_names)
    if not raw.train_texts:
        raise ValueError(
            f"{raw.name}: the training split {raw.provenance['splits']['train']!r} holds no "
            "texts; add labelled texts to it."
        )
    test_record = {"given": True, "split": raw.provenance["splits"].get("test")}
    train_texts, train_labels = raw.train_texts, raw.train_labels
    truth = raw.train_is_poisoned
    if raw.test_texts is None:
        fraction = spec.test_fraction if spec else 0.2
        keep, held = _held_out_split(train_labels, k, fraction, seed)
        test_texts, test_labels = [train_texts[i] for i in held], train_labels[held]
        train_texts, train_labels = [train_texts[i] for i in keep], train_labels[keep]
        truth = None if truth is None else truth[keep]
        test_record = {
            "given": False,
            "split": None,
            "held_out_from": raw.provenance["splits"]["train"],
            "held_out_fraction": fraction,
            "held_out_seed": seed,
            "num_held_out": int(len(held)),
        }
    else:
        test_texts, test_labels = raw.test_texts, raw.test_labels
    if raw.provenance.get("test_note"):
        test_record["note"] = raw.provenance.pop("test_note")
    parts = {"train": (train_labels, train_size, seed), "test": (test_labels, test_size, seed + 1)}
    indices, sizes = {}, {}
    for split, (labels, size, split_seed) in parts.items():
        if balance:
            counts = np.bincount(labels, minlength=k)
            if size is None and preset_sizes is not None:
                size = preset_sizes[0 if split == "train" else 1]
            if size is None and spec is not None:
                size = int(counts.min()) if k else 0
                if size < 1:
                    empty = raw.class_names[int(np.argmin(counts))]
                    raise ValueError(
                        f"{raw.name} {split}: class {empty!r} has no texts, so no balanced "
                        "subset exists; pass balance=False, or add texts of that class."
                    )
            if size is not None:
                if size < 1:
                    raise ValueError(f"Sample size per class must be >= 1, got {size}.")
                short = [c for c in range(k) if counts[c] < size]
                if short:
                    c = short[0]
                    raise ValueError(
                        f"Class {c} has only {counts[c]} samples but {size} per class were "
                        f"asked for in the {split} split of {raw.name} (class "
                        f"{raw.class_names[c]!r}); lower the {split} size to at most "
                        f"{int(counts.min())} per class."
                    )
            indices[split] = balanced_subsample(labels, size, k, split_seed)
        else:
            if size is not None and size > len(labels):
                raise ValueError(
                    f"{raw.name} {split}: only {len(labels)} texts are available but "
                    f"{split}_size={size} were asked for (a total, as balance=False); lower it "
                    f"to at most {len(labels)}."
                )
            indices[split] = uniform_subsample(len(labels), size, split_seed)
        sizes[split] = size
    provenance = {
        **({"spec": spec.to_dict()} if spec is not None else {}),
        **raw.provenance,
        "test": test_record,
        "balance": balance,
        "sizes_are": "per_class" if balance else "total",
        "train_size": sizes["train"],
        "test_size": sizes["test"],
        "seed": seed,
        "available": {"train": len(train_labels), "test": len(test_labels)},
        "num_train": len(indices["train"]),
        "num_test": len(indices["test"]),
    }
    return TextDataset(
        name=raw.name,
        class_names=tuple(raw.class_names),
        train_texts=[clean_text(train_texts[i]) for i in indices["train"]],
        train_labels=train_labels[indices["train"]],
        test_texts=[clean_text(test_texts[i]) for i in indices["test"]],
        test_labels=test_labels[indices["test"]],
        provenance=provenance,
        train_is_poisoned=None if truth is None else truth[indices["train"]],
    )


# ---------------------------------------------------------------------------
# Entry points.


def load(spec: DatasetSpec) -> TextDataset:
    """Loads the dataset `spec` describes and draws its train/test subsets.

    Args:
      spec: What to read and how to subsample (the module docstring gives the
        layouts, label rules, held-out split and size semantics).

    Returns:
      A `TextDataset` with HTML line breaks removed from the texts and its
      `provenance` filled in. For a preset and the same sizes and seed, the texts
      and labels of `load_dataset`.

    Raises:
      FileNotFoundError: A path, file or split that does not exist.
      ValueError: Unreadable data, bad labels or columns, or sizes above what exists.
    """
    if spec.kind == "preset":
        raw = _read_preset(spec.dataset, spec.source, spec.data_dir)
        preset_sizes = DEFAULT_SIZES_PER_CLASS[spec.dataset] if spec.balanced else None
        return _assemble(
            raw, spec.balanced, spec.train_size, spec.test_size, spec.seed, spec, preset_sizes
        )
    raw = _read_local_path(spec) if spec.kind == "local" else _read_tfds_spec(spec)
    return _assemble(raw, spec.balanced, spec.train_size, spec.test_size, spec.seed, spec)


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
    raw = _read_preset(name, source, data_dir)
    return _assemble(raw, True, train_per_class, test_per_class, seed)


def suggest_defaults(dataset: TextDataset) -> dict:
    """Training settings for a dataset without tuned defaults, from its training texts.

    Tokens are those the model sees (`tokenization.tokenize`: lower-cased,
    punctuation stripped, split on whitespace). The rule:

    * `max_len`: the 95th percentile of the tokens per training text, rounded up
      to a multiple of 8 and clipped to [16, 400] (400 is the paper's IMDB length);
    * `vocab_size`: the distinct training tokens plus padding and OOV, at most 20,000;
    * `epochs`: 10 below 1,000 training texts, 6 below 10,000, else 4 (smaller sets
      need more passes for the same number of updates).

    Args:
      dataset: A loaded dataset (its training split is used).

    Returns:
      `{"max_len": int, "vocab_size": int, "epochs": int}`; every value is a
      default that a flag overrides.
    """
    if not dataset.train_texts:
        raise ValueError(f"{dataset.name} has no training texts; nothing to size defaults on.")
    tokens = [tokenization.tokenize(t) for t in dataset.train_texts]
    p95 = float(np.percentile([len(t) for t in tokens], 95))
    max_len = int(min(400, max(16, 8 * math.ceil(p95 / 8))))
    vocab_size = min(20000, len({w for ts in tokens for w in ts}) + 2)
    n = len(dataset.train_texts)
    epochs = 10 if n < 1000 else 6 if n < 10000 else 4
    return {"max_len": max_len, "vocab_size": vocab_size, "epochs": epochs}
