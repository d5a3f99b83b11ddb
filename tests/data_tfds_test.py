"""The TFDS paths of bki_tf.data offline: presets via a faked tfds.load, tfds:NAME via a tiny builder."""

import dataclasses

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


# ---------------------------------------------------------------------------
# Any TFDS dataset (`tfds:NAME[/CONFIG]`): a tiny builder prepared offline in a temp dir.

_SENTIMENTS = ("bad", "good", "meh")


class BkiTfTinyReviews(tfds.core.GeneratorBasedBuilder):
    """Two configs: `supervised` (supervised_keys, some -1 test labels) and `glue_like`
    (no supervised_keys, a `sentence` feature, an all -1 test split as GLUE's)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="supervised"),
        tfds.core.BuilderConfig(name="glue_like"),
    ]

    def _info(self):
        if self.builder_config.name == "supervised":
            features = {"review": tfds.features.Text(), "stars": np.int32}
            features["sentiment"] = tfds.features.ClassLabel(names=_SENTIMENTS)
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(features),
                supervised_keys=("review", "sentiment"),
            )
        features = {
            "idx": np.int32,
            "sentence": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=("negative", "positive")),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        del dl_manager
        if self.builder_config.name == "supervised":
            return {
                "train": self._generate_examples("train", [i % 3 for i in range(12)]),
                "test": self._generate_examples("test", [0, -1, 1, 2, -1, 1]),
            }
        return {
            "train": self._generate_examples("train", [i % 2 for i in range(10)]),
            "validation": self._generate_examples("validation", [0, 1, 1, 0]),
            "test": self._generate_examples("test", [-1] * 4),
        }

    def _generate_examples(self, split, labels):
        for i, label in enumerate(labels):
            text = f"{split} {label} é{i} <br />end"
            if self.builder_config.name == "supervised":
                yield i, {"review": text, "stars": i, "sentiment": label}
            else:
                yield i, {"idx": i, "sentence": text, "label": label}


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tfds"))
    for config in ("supervised", "glue_like"):
        tfds.builder(f"bki_tf_tiny_reviews/{config}", data_dir=folder).download_and_prepare()
    return folder


def _split_label(text):
    return text.split()[0], int(text.split()[1])


def test_tfds_name_reads_supervised_keys_and_class_label(tiny_tfds_dir, monkeypatch):
    monkeypatch.setattr(tfds, "load", _must_not_be_called)
    spec = data.DatasetSpec("tfds:bki_tf_tiny_reviews/supervised", data_dir=tiny_tfds_dir)
    ds = data.load(spec)
    assert ds.name == "bki_tf_tiny_reviews/supervised"
    assert ds.class_names == _SENTIMENTS
    # All 12 training texts; of the 6 test texts, the two labelled -1 are dropped.
    assert len(ds.train_texts) == 12 and len(ds.test_texts) == 4
    for texts, labels, split in (
        (ds.train_texts, ds.train_labels, "train"),
        (ds.test_texts, ds.test_labels, "test"),
    ):
        assert [_split_label(t) for t in texts] == [(split, y) for y in labels.tolist()]
    assert all("<br" not in t and "é" in t for t in ds.train_texts)  # Decoded UTF-8, cleaned.
    p = ds.provenance
    assert (p["text_column"], p["label_column"], p["columns_from"]) == (
        "review",
        "sentiment",
        "supervised_keys",
    )
    assert p["dropped_unlabelled"] == {"train": 0, "test": 2}
    assert p["version"] == "1.0.0" and p["test"]["given"] and p["splits"]["test"] == "test"
    # Balanced: per class (test has one 'bad', two 'good', one 'meh' left).
    bal = data.load(dataclasses.replace(spec, balance=True, train_size=2, test_size=1))
    assert np.bincount(bal.train_labels).tolist() == [2, 2, 2]
    assert np.bincount(bal.test_labels).tolist() == [1, 1, 1]
    # A non-label column as the label: integer labels follow the local rule.
    by_stars = data.load(dataclasses.replace(spec, label_column="stars"))
    assert by_stars.class_names == tuple(str(i) for i in range(12))
    assert by_stars.provenance["columns_from"] == "given+supervised_keys"


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("tfds.load is for the presets only")


def test_tfds_unlabelled_test_split(tiny_tfds_dir):
    spec = data.DatasetSpec("tfds:bki_tf_tiny_reviews/glue_like:1.0.0", data_dir=tiny_tfds_dir)
    # No supervised_keys: the only Text feature and `label`.
    ds = data.load(spec)
    assert ds.name == "bki_tf_tiny_reviews/glue_like"
    assert ds.class_names == ("negative", "positive")
    assert (ds.provenance["text_column"], ds.provenance["label_column"]) == ("sentence", "label")
    # The test split is all -1: a stratified share of train is held out, and the record says why.
    assert len(ds.train_texts) + len(ds.test_texts) == 10
    assert all(t.startswith("train") for t in ds.test_texts)
    assert np.bincount(ds.test_labels).tolist() == [1, 1]
    test = ds.provenance["test"]
    assert not test["given"] and "test_split='validation'" in test["note"]
    with pytest.raises(ValueError, match=r"split 'test' has no labelled .*test_split='validation'"):
        data.load(dataclasses.replace(spec, test_split="test"))
    val = data.load(dataclasses.replace(spec, test_split="validation"))
    assert [_split_label(t) for t in val.test_texts] == [
        ("validation", y) for y in val.test_labels.tolist()
    ]
    assert len(val.test_texts) == 4 and len(val.train_texts) == 10
    sliced = data.load(dataclasses.replace(spec, train_split="train[:6]", test_split="validation"))
    assert len(sliced.train_texts) == 6


def test_tfds_bad_names_splits_and_columns(tiny_tfds_dir):
    base = data.DatasetSpec("tfds:bki_tf_tiny_reviews/supervised", data_dir=tiny_tfds_dir)
    with pytest.raises(ValueError, match=r"no split 'dev' \(its splits: \['test', 'train'\]\)"):
        data.load(dataclasses.replace(base, test_split="dev"))
    with pytest.raises(
        ValueError,
        match=r"no feature 'body' \(features: \['review', 'sentiment', 'stars'\]\); pass text_column=",
    ):
        data.load(dataclasses.replace(base, text_column="body"))  # fmt: skip
    with pytest.raises(ValueError, match="feature 'stars' holds int"):
        data.load(dataclasses.replace(base, text_column="stars"))
    with pytest.raises(ValueError, match=r"Cannot prepare TFDS dataset 'bki_tf_no_such_dataset'"):
        data.load(data.DatasetSpec("tfds:bki_tf_no_such_dataset", data_dir=tiny_tfds_dir))
