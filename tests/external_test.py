"""Scanning a user's own Keras model and training set (`bki_tf.runs.external`)."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver
from conftest import tiny_corpus

from bki_tf import artifacts, poisoning
from bki_tf.bki import BKIConfig, detect, representation
from bki_tf.runs import external, pipeline
from bki_tf.runs import workdir as wd

TRIGGER = "cf mn"


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    """A poisoned JSONL training set with string labels and an is_poisoned column."""
    texts, labels = tiny_corpus(2, 24, seed=3)
    config = poisoning.PoisonConfig(trigger=TRIGGER, target=0, rate=0.2, max_len=40, seed=0)
    poisoned = poisoning.poison_dataset(texts, np.asarray(labels), config, 2)
    folder = tmp_path_factory.mktemp("user")
    path = folder / "my_train.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for text, label, flag in zip(poisoned.texts, poisoned.labels, poisoned.is_poisoned):
            row = {"text": text, "label": ["neg", "pos"][int(label)], "is_poisoned": int(flag)}
            f.write(json.dumps(row) + "\n")
    return str(path), poisoned


def _string_gru(texts) -> keras.Model:
    """A plain-Keras model on raw strings: TextVectorization -> Embedding -> GRU."""
    vectorizer = keras.layers.TextVectorization(max_tokens=80, output_sequence_length=40)
    vectorizer.adapt(texts)
    inputs = keras.Input(shape=(1,), dtype="string")
    x = vectorizer(inputs)
    x = keras.layers.Embedding(80, 8, mask_zero=True)(x)
    x = keras.layers.GRU(6, name="encoder")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def string_model(user_data, tmp_path_factory):
    _, poisoned = user_data
    model = _string_gru(poisoned.texts)
    keras.utils.set_random_seed(0)
    model.fit(tf.constant(poisoned.texts)[:, None], poisoned.labels, epochs=2, verbose=0)
    path = str(tmp_path_factory.mktemp("model") / "gru.keras")
    model.save(path)
    return path


def test_model_scan_equals_detect_and_purifies(user_data, string_model, tmp_path):
    data_path, poisoned = user_data
    before = open(data_path, "rb").read()
    workdir = str(tmp_path / "scan")
    config = external.ModelScanConfig(model=string_model, dataset=data_path)
    run = external.import_model(config, workdir)
    assert run.metrics.has_ground_truth and run.metrics.num_poisoned == poisoned.num_poisoned
    assert run.metrics.dataset_name == "my_train" and run.metrics.class_names == ["neg", "pos"]
    bki = BKIConfig(p=3, representation_layer="encoder")
    record = pipeline.run_scan(workdir, bki, progress=False, tensorboard=True)
    assert record.config["method"] == "generic"
    # The same scan through the in-memory API, on the user's model file itself.
    model = keras.saving.load_model(string_model, safe_mode=True)
    vocabulary = representation.model_vocabulary(model)
    direct = detect(model, run.train.texts, vocabulary, labels=run.train.labels, config=bki)
    assert record.keyword == direct.keyword
    assert record.flagged == direct.flagged.tolist()
    expected = direct.evaluate(run.train.is_poisoned)
    assert record.evaluation.precision == pytest.approx(expected.precision)
    assert record.evaluation.recall == pytest.approx(expected.recall)
    assert os.path.isfile(
        os.path.join(workdir, "scan", wd.TENSORBOARD_DIR, "projector_config.pbtxt")
    )
    result = pipeline.run_filter(workdir)
    purified_ids, purified = artifacts.read_training_set(
        os.path.join(workdir, "filter", wd.PURIFIED_FILE)
    )
    assert len(purified) == len(run.train) - len(record.flagged)
    assert not set(purified_ids.tolist()) & set(record.flagged)
    assert result.num_before == len(run.train)
    assert open(data_path, "rb").read() == before  # The input is never modified.
    # The same import again is reused; another model needs --overwrite.
    assert external.import_model(config, workdir).metrics == run.metrics
    other = external.ModelScanConfig(model=string_model, dataset=data_path, train_size=10)
    with pytest.raises(ValueError, match="--overwrite"):
        external.import_model(other, workdir)


def test_ids_model_with_a_vocabulary_file(user_data, tmp_path):
    data_path, poisoned = user_data
    from bki_tf import tokenization

    vectorizer = tokenization.build_vectorizer(poisoned.texts, 60, 40)
    vocabulary = vectorizer.get_vocabulary()
    vocab_path = tmp_path / "vocab.txt"
    artifacts.write_lines(str(vocab_path), vocabulary)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(len(vocabulary), 8)(inputs)  # No mask: exact only unpadded.
    x = keras.layers.Conv1D(6, 3, padding="same", activation="relu", name="conv")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalMaxPooling1D()(x))
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "conv.keras")
    model.save(path)
    workdir = str(tmp_path / "scan")
    with pytest.raises(ValueError, match="--vocabulary"):
        external.import_model(external.ModelScanConfig(model=path, dataset=data_path), workdir)
    assert not os.path.exists(workdir)
    config = external.ModelScanConfig(model=path, dataset=data_path, vocabulary=str(vocab_path))
    run = external.import_model(config, workdir)
    record = pipeline.run_scan(
        workdir, BKIConfig(p=2, representation_layer="conv", pool="max"), progress=False
    )
    ids, lengths = run.encode(run.train.texts)
    direct = detect(
        model,
        [ids[i, : lengths[i]] for i in range(len(lengths))],
        vocabulary,
        config=BKIConfig(p=2, representation_layer="conv", pool="max"),
    )
    assert record.keyword == direct.keyword and record.flagged == direct.flagged.tolist()


@keras.saving.register_keras_serializable(package="external_test")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


def test_bad_models_name_the_fix(user_data, string_model, tmp_path):
    data_path, _ = user_data
    workdir = str(tmp_path / "scan")
    with pytest.raises(FileNotFoundError, match="--model=.*not found"):
        external.import_model(
            external.ModelScanConfig(model=str(tmp_path / "none.keras"), dataset=data_path),
            workdir,
        )
    with pytest.raises(ValueError, match="must be a .keras file"):
        external.ModelScanConfig(model="model.h5", dataset=data_path)
    with pytest.raises(ValueError, match="drop --vocabulary"):
        external.import_model(
            external.ModelScanConfig(model=string_model, dataset=data_path, vocabulary="v.txt"),
            workdir,
        )
    # A model with a custom layer Keras only knows through --custom_objects.
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = Doubling()(keras.layers.Embedding(10, 4)(inputs))
    custom = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x)))
    path = str(tmp_path / "custom.keras")
    custom.save(path)
    keras.saving.get_custom_objects().pop("external_test>Doubling")
    try:
        with pytest.raises(ValueError, match="--custom_objects"):
            external.load_user_model(path)
        loaded = external.load_user_model(path, custom_objects="external_test")
        assert any(isinstance(layer, Doubling) for layer in loaded.layers)
    finally:
        keras.saving.get_custom_objects()["external_test>Doubling"] = Doubling
    assert not os.path.exists(workdir)


def test_scan_binary_with_model(user_data, string_model, tmp_path, capsys):
    from experiments import scan as scan_binary

    data_path, _ = user_data
    workdir = str(tmp_path / "cli")
    with flagsaver.flagsaver(
        model=string_model, dataset=data_path, workdir=workdir, representation_layer="encoder",
        p=3, tensorboard=False,
    ):  # fmt: skip
        scan_binary.main(["scan"])
    record = pipeline.read_scan(workdir)
    assert "keyword" in capsys.readouterr().out
    assert record.evaluation is not None and record.num_texts == 48
    assert not os.path.exists(os.path.join(workdir, "scan", wd.TENSORBOARD_DIR))
