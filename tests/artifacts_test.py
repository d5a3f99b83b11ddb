"""Tests for bki_tf.artifacts: exact CSV round trips and atomic JSON."""

import gzip
import json
import math
import os

import numpy as np
import pytest

from bki_tf import artifacts, poisoning

TRICKY_TEXTS = [
    "plain words",
    "commas, everywhere, here",
    "He said \"hi\", then 'bye'",
    "line one\nline two",
    "windows\r\nbreak and lone\rcarriage",
    "unicode: café, naïve, Straße, 日本語, 😀",
    "",
    "  leading and trailing spaces  ",
    "tab\tseparated\tvalues",
    '"""',
    'a,b\n,c"d',
]


def _dataset():
    n = len(TRICKY_TEXTS)
    rng = np.random.default_rng(0)
    return poisoning.PoisonedDataset(
        texts=list(TRICKY_TEXTS),
        labels=rng.integers(0, 3, size=n).astype(np.int64),
        is_poisoned=np.arange(n) % 3 == 0,
        positions=np.where(np.arange(n) % 3 == 0, np.arange(n), -1).astype(np.int64),
        original_labels=rng.integers(0, 3, size=n).astype(np.int64),
        source_ids=rng.permutation(n).astype(np.int64),
    )


def _assert_same(a: poisoning.PoisonedDataset, b: poisoning.PoisonedDataset):
    assert a.texts == b.texts
    for name in ("labels", "is_poisoned", "positions", "original_labels", "source_ids"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_training_set_round_trip_is_exact(tmp_path):
    path = str(tmp_path / "sub" / "train.csv.gz")
    original = _dataset()
    artifacts.write_training_set(path, original)
    ids, loaded = artifacts.read_training_set(path)
    np.testing.assert_array_equal(ids, np.arange(len(original)))
    _assert_same(loaded, original)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        header = f.readline().strip()
    assert header == ",".join(artifacts.TRAIN_COLUMNS)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["train.csv.gz"]


def test_written_file_is_deterministic(tmp_path):
    a, b = str(tmp_path / "a.csv.gz"), str(tmp_path / "b.csv.gz")
    artifacts.write_training_set(a, _dataset())
    artifacts.write_training_set(b, _dataset())
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()


def test_training_subset_keeps_row_ids(tmp_path):
    path = str(tmp_path / "kept.csv.gz")
    full = _dataset()
    keep = np.array([1, 4, 5, 10])
    artifacts.write_training_subset(path, keep, full.subset(keep))
    ids, loaded = artifacts.read_training_set(path)
    np.testing.assert_array_equal(ids, keep)
    _assert_same(loaded, full.subset(keep))


def test_labelled_texts_round_trip(tmp_path):
    path = str(tmp_path / "test.csv.gz")
    labels = np.arange(len(TRICKY_TEXTS)) % 2
    artifacts.write_labelled_texts(path, TRICKY_TEXTS, labels)
    texts, loaded = artifacts.read_labelled_texts(path)
    assert texts == TRICKY_TEXTS
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, labels)


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        artifacts.read_training_set(str(tmp_path / "missing.csv.gz"))
    path = str(tmp_path / "test.csv.gz")
    artifacts.write_labelled_texts(path, ["a"], np.array([0]))
    with pytest.raises(ValueError, match="lacks column"):
        artifacts.read_training_set(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        artifacts.read_json(str(tmp_path / "missing.json"))


def test_write_json_nan_to_null_and_numpy_types(tmp_path):
    path = str(tmp_path / "deep" / "metrics.json")
    obj = {
        "nan": float("nan"),
        "inf": math.inf,
        "neg_inf": -math.inf,
        "np_nan": np.float32("nan"),
        "np_float": np.float32(0.5),
        "np_int": np.int64(3),
        "array": np.array([1.0, np.nan, 2.0]),
        "nested": {"list": [np.inf, 1, "x"], 7: (np.bool_(True), None)},
    }
    artifacts.write_json(path, obj)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text)  # strict JSON
    assert loaded == {
        "nan": None,
        "inf": None,
        "neg_inf": None,
        "np_nan": None,
        "np_float": 0.5,
        "np_int": 3,
        "array": [1.0, None, 2.0],
        "nested": {"list": [None, 1, "x"], "7": [True, None]},
    }
    assert artifacts.read_json(path) == loaded


def test_write_json_is_atomic(tmp_path):
    path = str(tmp_path / "config.json")
    artifacts.write_json(path, {"a": 1})
    with open(path, "rb") as f:
        before = f.read()
    with pytest.raises(TypeError):
        artifacts.write_json(path, {"a": object()})  # fails mid-serialisation
    with open(path, "rb") as f:
        assert f.read() == before  # the old file is intact
    assert os.listdir(tmp_path) == ["config.json"]  # no temp file left behind
    artifacts.write_json(path, {"a": 2})
    assert artifacts.read_json(path) == {"a": 2}
    assert os.listdir(tmp_path) == ["config.json"]


def test_write_text(tmp_path):
    path = str(tmp_path / "new" / "report.md")
    artifacts.write_text(path, "# Report\nünïcode\n")
    with open(path, encoding="utf-8") as f:
        assert f.read() == "# Report\nünïcode\n"
    assert os.listdir(tmp_path / "new") == ["report.md"]
