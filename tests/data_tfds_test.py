"""The TFDS source of bki_tf.data, with tfds.load replaced by in-memory datasets (no network)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bki_tf import data


def _fake_load(calls):
    def load(name, split, data_dir=None):
        calls.append((name, split, data_dir))
        key = "text" if name == "imdb_reviews" else "content"
        k = 2 if name == "imdb_reviews" else 14
        texts = [f"{split} text {i} <br />end" for i in range(6 * k)]
        labels = [i % k for i in range(6 * k)]
        return tf.data.Dataset.from_tensor_slices(
            {key: texts, "label": np.asarray(labels, np.int64)}
        )

    return load


@pytest.mark.parametrize(
    "name, builder, num_classes",
    [("imdb", "imdb_reviews", 2), ("dbpedia", "huggingface:dbpedia_14", 14)],
)
def test_tfds_source(monkeypatch, name, builder, num_classes):
    calls = []
    monkeypatch.setattr(tfds, "load", _fake_load(calls))
    ds = data.load_dataset(
        name, "tfds", "/some/tfds_dir", train_per_class=3, test_per_class=2, seed=1
    )
    assert {c[0] for c in calls} == {builder}
    assert {c[2] for c in calls} == {"/some/tfds_dir"}
    assert ds.num_classes == num_classes
    assert np.bincount(ds.train_labels, minlength=num_classes).tolist() == [3] * num_classes
    assert np.bincount(ds.test_labels, minlength=num_classes).tolist() == [2] * num_classes
    assert all("<br" not in t for t in ds.train_texts)
    assert all(t.startswith("train") for t in ds.train_texts)
    assert all(t.startswith("test") for t in ds.test_texts)
    if name == "dbpedia":
        assert ds.class_names[8] == "Village"


def test_unknown_source():
    with pytest.raises(ValueError, match="Unknown data source 'web'"):
        data.load_dataset("imdb", "web", None)
