"""Tests for bki_tf.data on tiny CSV dataset folders written into temp dirs."""

import gzip
import os
import time

import numpy as np
import pytest

from bki_tf import data

CLASSES = ("alpha", "beta", "gamma")
# Unbalanced on purpose: 12 / 10 / 15 training rows, 6 / 5 / 7 test rows.
TRAIN_COUNTS = (12, 10, 15)
TEST_COUNTS = (6, 5, 7)


def _rows(counts, split):
    """Rows whose text names its own label and index, so every row can be traced."""
    rows = []
    for c, n in enumerate(counts):
        rows += [(f"{split} class{c} item{i}", c) for i in range(n)]
    rng = np.random.default_rng(123)
    return [rows[i] for i in rng.permutation(len(rows))]


@pytest.fixture
def folder(tmp_path, dataset_folder_writer):
    return dataset_folder_writer(
        str(tmp_path / "ds"), _rows(TRAIN_COUNTS, "train"), _rows(TEST_COUNTS, "test"), CLASSES
    )


def _write_gz(path, content: bytes):
    with gzip.open(path, "wb") as f:
        f.write(content)


def _label_of(text):
    return int(text.split()[1].removeprefix("class"))


def test_balanced_seeded_subsample_per_class(folder):
    ds = data.load_dataset("dbpedia", data_dir=folder, train_per_class=4, test_per_class=3, seed=5)
    assert ds.class_names == CLASSES
    assert ds.num_classes == 3
    assert len(ds.train_texts) == 12 and len(ds.test_texts) == 9
    np.testing.assert_array_equal(np.bincount(ds.train_labels, minlength=3), [4, 4, 4])
    np.testing.assert_array_equal(np.bincount(ds.test_labels, minlength=3), [3, 3, 3])
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    # Each text keeps its own label, comes from its own split, and is drawn once.
    for texts, labels, split in (
        (ds.train_texts, ds.train_labels, "train"),
        (ds.test_texts, ds.test_labels, "test"),
    ):
        assert [_label_of(t) for t in texts] == labels.tolist()
        assert all(t.startswith(split + " ") for t in texts)
        assert len(set(texts)) == len(texts)
    # Classes are interleaved, not in blocks.
    assert ds.train_labels.tolist() != sorted(ds.train_labels.tolist())


def test_subsample_is_deterministic_and_depends_on_seed(folder):
    a = data.load_dataset("imdb", data_dir=folder, train_per_class=5, test_per_class=4, seed=0)
    b = data.load_dataset("imdb", data_dir=folder, train_per_class=5, test_per_class=4, seed=0)
    c = data.load_dataset("imdb", data_dir=folder, train_per_class=5, test_per_class=4, seed=1)
    assert a.train_texts == b.train_texts and a.test_texts == b.test_texts
    np.testing.assert_array_equal(a.train_labels, b.train_labels)
    assert set(a.train_texts) != set(c.train_texts)


def test_none_keeps_every_row(folder):
    ds = data.load_dataset("imdb", data_dir=folder, seed=0)
    assert sorted(ds.train_texts) == sorted(t for t, _ in _rows(TRAIN_COUNTS, "train"))
    assert sorted(ds.test_texts) == sorted(t for t, _ in _rows(TEST_COUNTS, "test"))
    assert [_label_of(t) for t in ds.train_texts] == ds.train_labels.tolist()


def test_html_breaks_are_replaced_by_spaces(tmp_path, dataset_folder_writer):
    rows = [("one<br />two<BR>three<br/>four", 0), ("plain text, kept", 1)]
    folder = dataset_folder_writer(str(tmp_path / "ds"), rows, rows)
    ds = data.load_dataset("imdb", data_dir=folder, train_per_class=1, test_per_class=1)
    assert sorted(ds.train_texts) == ["one two three four", "plain text, kept"]
    assert data.clean_text("a<br  />b") == "a b"


def test_plain_csv_accepted_and_equal_to_gzip(tmp_path, dataset_folder_writer):
    train, test = _rows(TRAIN_COUNTS, "train"), _rows(TEST_COUNTS, "test")
    gz = dataset_folder_writer(str(tmp_path / "gz"), train, test, CLASSES, compress=True)
    plain = dataset_folder_writer(str(tmp_path / "plain"), train, test, CLASSES, compress=False)
    assert not os.path.exists(os.path.join(plain, "train.csv.gz"))
    a = data.load_dataset("imdb", data_dir=gz, train_per_class=3, test_per_class=2, seed=3)
    b = data.load_dataset("imdb", data_dir=plain, train_per_class=3, test_per_class=2, seed=3)
    assert a.train_texts == b.train_texts and a.test_texts == b.test_texts


def test_quoted_fields_with_commas_and_newlines(tmp_path, dataset_folder_writer):
    rows = [('He said "no", then\nleft', 0), ("é ü 😀, ok", 1)]
    folder = dataset_folder_writer(str(tmp_path / "ds"), rows, rows)
    ds = data.load_dataset("imdb", data_dir=folder)
    assert sorted(ds.train_texts) == sorted(t for t, _ in rows)


def test_extra_columns_ignored(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "classes.txt").write_text("a\nb\n\n")
    for split in ("train", "test"):
        _write_gz(folder / f"{split}.csv.gz", b"id,label,text\n1,0,x y\n2,1,z w\n")
    ds = data.load_dataset("imdb", data_dir=str(folder))
    assert ds.class_names == ("a", "b")
    assert sorted(zip(ds.train_texts, ds.train_labels.tolist())) == [("x y", 0), ("z w", 1)]


# ---------------------------------------------------------------------------
# Errors.


def test_unknown_dataset_and_source(folder):
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        data.load_dataset("mnist", data_dir=folder)
    with pytest.raises(ValueError, match="Unknown data source 'web'"):
        data.load_dataset("imdb", source="web", data_dir=folder)
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load_dataset("imdb", data_dir=None)


def test_missing_folder(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="Dataset folder .*nowhere.* not found"):
        data.load_dataset("imdb", data_dir=missing)


@pytest.mark.parametrize(
    "name, message",
    [
        ("classes.txt", "classes.txt"),
        ("train.csv.gz", r"No train\.csv\.gz"),
        ("test.csv.gz", r"No test\.csv\.gz"),
    ],
)
def test_missing_files(folder, name, message):
    os.remove(os.path.join(folder, name))
    with pytest.raises(FileNotFoundError, match=message):
        data.load_dataset("imdb", data_dir=folder)


def test_empty_classes_file(folder):
    with open(os.path.join(folder, "classes.txt"), "w") as f:
        f.write("\n \n")
    with pytest.raises(ValueError, match="empty"):
        data.load_dataset("imdb", data_dir=folder)


def _corrupt_deflate(content: bytes) -> bytes:
    """A gzip file with a valid header whose compressed body is garbage."""
    raw = bytearray(gzip.compress(content, mtime=0))
    for i in range(12, min(len(raw) - 8, 60)):
        raw[i] ^= 0xA5
    return bytes(raw)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not gzip", id="not_gzip"),
        pytest.param(gzip.compress(b"text,label\n" + b"a b,0\n" * 50)[:25], id="truncated"),
        pytest.param(_corrupt_deflate(b"text,label\n" + b"a b c,1\n" * 200), id="bad_deflate"),
        pytest.param(gzip.compress(b"text,label\n\xff\xfe,0\n"), id="not_utf8"),
    ],
)
def test_corrupt_gzip(folder, content):
    with open(os.path.join(folder, "train.csv.gz"), "wb") as f:
        f.write(content)
    with pytest.raises(ValueError, match=r"train\.csv\.gz.*corrupt"):
        data.load_dataset("imdb", data_dir=folder)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"body,label\nx,0\n", r"lacks column\(s\) \['text'\]"),
        (b"text,class\nx,0\n", r"lacks column\(s\) \['label'\]"),
        (b"", r"lacks column\(s\) \['text', 'label'\]"),
        (b"text,label\nx,0\ny,one\n", "line 3: label 'one' is not an integer"),
        (b"text,label\nx,0\ny\n", "line 3: missing field"),
        (b"text,label\nx,0\ny,3\n", "label 3 is outside the 3 classes"),
        (b"text,label\nx,-1\n", "label -1 is outside the 3 classes"),
    ],
)
def test_bad_csv_content(folder, content, message):
    _write_gz(os.path.join(folder, "test.csv.gz"), content)
    with pytest.raises(ValueError, match=message):
        data.load_dataset("imdb", data_dir=folder)


def test_too_few_samples_per_class(folder):
    # Class 1 has 10 training rows.
    with pytest.raises(ValueError, match="Class 1 has only 10 samples but 11 per class"):
        data.load_dataset("imdb", data_dir=folder, train_per_class=11, test_per_class=1)
    with pytest.raises(ValueError, match="Class 1 has only 5 samples but 6 per class"):
        data.load_dataset("imdb", data_dir=folder, train_per_class=1, test_per_class=6)
    with pytest.raises(ValueError, match=">= 1"):
        data.load_dataset("imdb", data_dir=folder, train_per_class=0)


def test_text_dataset_validates():
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        data.TextDataset("x", ("a", "b"), ["p", "q"], np.array([0]), [], np.array([], np.int64))
    with pytest.raises(ValueError, match="label 2 is outside"):
        data.TextDataset("x", ("a", "b"), ["p"], np.array([2]), [], np.array([], np.int64))


def test_smoke_real_dbpedia(real_data):
    """Optional: the real DBpedia folder, 5 + 5 per class (skipped without shared data)."""
    folder = real_data("dbpedia")
    if folder is None:
        pytest.skip("shared/data/dbpedia is not available")
    start = time.time()
    ds = data.load_dataset("dbpedia", data_dir=folder, train_per_class=5, test_per_class=5)
    assert ds.num_classes == 14
    np.testing.assert_array_equal(np.bincount(ds.train_labels, minlength=14), [5] * 14)
    np.testing.assert_array_equal(np.bincount(ds.test_labels, minlength=14), [5] * 14)
    assert all(t.strip() and "<br" not in t.lower() for t in ds.train_texts + ds.test_texts)
    assert time.time() - start < 20
