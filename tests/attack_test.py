"""End-to-end tests of bki_tf.runs.attack.run_attack / load_run on a tiny dataset folder."""

import dataclasses
import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TRIGGER, tiny_attack_config

from bki_tf import artifacts, data, models, tokenization, training
from bki_tf.runs import attack
from bki_tf.runs import workdir as wd

MAX_LEN = 12


def _config(folder, **overrides):
    return tiny_attack_config(folder, **{"max_len": MAX_LEN, **overrides})


def _snapshot(folder):
    """Every file under `folder` with its size, mtime and content hash."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, folder)] = (
                os.path.getsize(path),
                os.stat(path).st_mtime_ns,
                digest,
            )
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_imdb_dir):
    """One poisoned run shared by the tests of this module (they must not modify it)."""
    workdir = str(tmp_path_factory.mktemp("attack") / "run")
    config = _config(tiny_imdb_dir)
    result = attack.run_attack(config, workdir, verbose=0)
    return config, workdir, result


@pytest.fixture
def run_copy(run, tmp_path):
    """A private copy of the shared run's workdir."""
    copy = str(tmp_path / "copy")
    shutil.copytree(run[1], copy)
    return copy


def _write_glove(path, vocabulary, dim, skip_every=3):
    rng = np.random.default_rng(dim)
    vectors = {}
    with open(path, "w", encoding="utf-8") as f:
        f.write("unrelated " + " ".join(["0.5"] * dim) + "\n")
        for i, word in enumerate(vocabulary[2:]):
            if i % skip_every:
                vectors[word] = np.round(rng.normal(size=dim), 4).astype(np.float32)
                f.write(word + " " + " ".join(repr(float(v)) for v in vectors[word]) + "\n")
    return vectors


def test_writes_every_output(run, tiny_imdb_dir):
    config, workdir, result = run
    for name in (
        "config.json",
        "vocab.txt",
        "train.csv.gz",
        "test.csv.gz",
        "test_triggered.csv.gz",
        "model.keras",
        "metrics.json",
    ):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "logs"))
    assert os.path.isfile(os.path.join(workdir, "saved_model", "saved_model.pb"))
    assert artifacts.read_json(os.path.join(workdir, "config.json")) == config.to_dict()

    vocab = tokenization.load_vocabulary(os.path.join(workdir, "vocab.txt"))
    assert vocab[:2] == ["", "[UNK]"] and len(vocab) <= 60
    assert set(TRIGGER.split()) <= set(vocab)

    # Ground truth: 16 + 16 training texts, round(0.1 * 32) = 3 of class 1 poisoned to 0.
    clean = data.load_dataset("imdb", data_dir=tiny_imdb_dir, train_per_class=16, test_per_class=8)
    row_ids, train = artifacts.read_training_set(os.path.join(workdir, "train.csv.gz"))
    np.testing.assert_array_equal(row_ids, np.arange(32))
    assert train.num_poisoned == 3
    np.testing.assert_array_equal(train.labels[train.is_poisoned], 0)
    np.testing.assert_array_equal(train.original_labels[train.is_poisoned], 1)
    np.testing.assert_array_equal(train.original_labels, clean.train_labels)
    for i in range(32):
        tokens = tokenization.tokenize(train.texts[i])
        if train.is_poisoned[i]:
            pos = int(train.positions[i])
            assert tokens[pos : pos + 5] == TRIGGER.split() and pos + 5 <= MAX_LEN
        else:
            assert train.texts[i] == clean.train_texts[i]

    test_texts, test_labels = artifacts.read_labelled_texts(os.path.join(workdir, "test.csv.gz"))
    assert test_texts == clean.test_texts
    np.testing.assert_array_equal(test_labels, clean.test_labels)
    trig_texts, trig_labels = artifacts.read_labelled_texts(
        os.path.join(workdir, "test_triggered.csv.gz")
    )
    assert len(trig_texts) == 8
    np.testing.assert_array_equal(trig_labels, 1)

    metrics = artifacts.read_json(os.path.join(workdir, "metrics.json"))
    assert metrics == result.to_dict()
    assert 0.0 <= metrics["clean_accuracy"] <= 1.0 and 0.0 <= metrics["asr"] <= 1.0
    assert metrics["num_train"] == 32 and metrics["num_poisoned"] == 3
    assert metrics["num_test"] == 16 and metrics["num_triggered_test"] == 8
    assert metrics["target"] == 0 and metrics["target_name"] == "negative"
    assert metrics["embedding_coverage"] is None
    assert metrics["wall_seconds"] >= metrics["train_seconds"] > 0
    assert len(metrics["history"]["loss"]) == 2
    assert "ASR" in result.summary()


# tf.test assertions (assertAllClose) for the plain pytest functions below.
CHECK = tf.test.TestCase()


def test_metrics_and_saved_model_match_independent_evaluation(run):
    _, workdir, result = run
    model = keras.models.load_model(os.path.join(workdir, "model.keras"))
    vocab = tokenization.load_vocabulary(os.path.join(workdir, "vocab.txt"))
    vectorizer = tokenization.vectorizer_from_vocabulary(vocab, MAX_LEN)
    test_texts, test_labels = artifacts.read_labelled_texts(os.path.join(workdir, "test.csv.gz"))
    trig_texts, _ = artifacts.read_labelled_texts(os.path.join(workdir, "test_triggered.csv.gz"))
    probs, hidden = model(tokenization.encode(vectorizer, test_texts)[0])
    trig_probs, _ = model(tokenization.encode(vectorizer, trig_texts)[0])
    assert result.clean_accuracy == pytest.approx(np.mean(np.argmax(probs, 1) == test_labels))
    assert result.asr == pytest.approx(np.mean(np.argmax(trig_probs, 1) == 0))

    serve = tf.saved_model.load(os.path.join(workdir, "saved_model")).signatures["serve"]
    out = serve(text=tf.constant(test_texts))
    assert tuple(out["probabilities"].shape) == (16, 2)
    assert tuple(out["hidden"].shape) == (16, 8)
    CHECK.assertAllClose(tf.reduce_sum(out["probabilities"], 1), np.ones(16), atol=1e-5)
    CHECK.assertAllClose(out["probabilities"], probs, atol=1e-5)
    CHECK.assertAllClose(out["hidden"], hidden, atol=1e-5)


def test_rerun_returns_stored_result_without_retraining(run, monkeypatch):
    config, workdir, result = run
    before = _snapshot(workdir)

    def fail(*args, **kwargs):
        raise AssertionError("the run was redone")

    monkeypatch.setattr(training, "train_classifier", fail)
    monkeypatch.setattr(data, "load_dataset", fail)
    again = attack.run_attack(config, workdir, verbose=0)
    assert again == result
    assert _snapshot(workdir) == before


def test_config_written_before_validation_split_existed_is_the_same_run(run, run_copy, monkeypatch):
    config, _, result = run
    path = os.path.join(run_copy, wd.CONFIG_FILE)
    stored = artifacts.read_json(path)
    del stored["validation_split"]
    artifacts.write_json(path, stored)

    def fail(*args, **kwargs):
        raise AssertionError("the run was redone")

    monkeypatch.setattr(training, "train_classifier", fail)
    assert attack.run_attack(config, run_copy, verbose=0) == result
    assert attack.load_run(run_copy).config == config
    changed = dataclasses.replace(config, validation_split=0.2)
    with pytest.raises(ValueError, match=r"differs in \['validation_split'\]"):
        attack.run_attack(changed, run_copy, verbose=0)


def test_workdir_with_different_run_is_refused(run):
    config, workdir, _ = run
    before = _snapshot(workdir)
    with pytest.raises(
        ValueError, match=r"already holds a different run \(differs in \['poison_rate', 'seed'\]\)"
    ):
        attack.run_attack(_config(config.data_dir, poison_rate=0.2, seed=1), workdir, verbose=0)
    assert _snapshot(workdir) == before


def test_workdir_with_outputs_but_no_config_is_refused(tmp_path, tiny_imdb_dir):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "model.keras").write_bytes(b"old")
    with pytest.raises(ValueError, match="holds run outputs but no config.json"):
        attack.run_attack(_config(tiny_imdb_dir), str(workdir), verbose=0)
    assert os.listdir(workdir) == ["model.keras"]


def test_clean_run_with_glove_overwrites_a_different_run(run, run_copy, tiny_imdb_dir, tmp_path):
    """poison_rate=0 trains a clean model; overwrite replaces the old run and its BKI steps."""
    _, workdir, _ = run
    vocab = tokenization.load_vocabulary(os.path.join(workdir, "vocab.txt"))
    os.makedirs(os.path.join(run_copy, "scan"))
    with open(os.path.join(run_copy, "report.json"), "w") as f:
        f.write("{}")
    # A GloVe file for the clean run's vocabulary (without the trigger words), 6-dimensional.
    clean = data.load_dataset("imdb", data_dir=tiny_imdb_dir, train_per_class=16, test_per_class=8)
    clean_vocab = tokenization.build_vectorizer(clean.train_texts, 60, MAX_LEN).get_vocabulary()
    glove = str(tmp_path / "glove.txt")
    vectors = _write_glove(glove, clean_vocab, dim=6)
    assert set(clean_vocab) != set(vocab)

    config = _config(tiny_imdb_dir, poison_rate=0.0, glove=glove)
    result = attack.run_attack(config, run_copy, overwrite=True, verbose=0)

    assert result.num_poisoned == 0 and result.num_train == 32
    assert not os.path.exists(os.path.join(run_copy, "scan"))
    assert not os.path.exists(os.path.join(run_copy, "report.json"))
    assert artifacts.read_json(os.path.join(run_copy, "config.json")) == config.to_dict()
    assert tokenization.load_vocabulary(os.path.join(run_copy, "vocab.txt")) == clean_vocab
    _, train = artifacts.read_training_set(os.path.join(run_copy, "train.csv.gz"))
    assert not train.is_poisoned.any()
    assert train.texts == clean.train_texts
    np.testing.assert_array_equal(train.labels, clean.train_labels)
    assert result.embedding_coverage == pytest.approx(len(vectors) / (len(clean_vocab) - 2))
    # The frozen GloVe rows are in the saved model unchanged.
    model = keras.models.load_model(os.path.join(run_copy, "model.keras"))
    table = model.get_layer(models.EMBEDDING_LAYER).embeddings.numpy()
    assert table.shape == (len(clean_vocab), 6)
    for i, word in enumerate(clean_vocab):
        np.testing.assert_array_equal(table[i], vectors.get(word, np.zeros(6, np.float32)))


def _bad_glove(path):
    with open(path, "w") as f:
        f.write("the 1 2 3\nmovie 1 2\n")
    return path


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        pytest.param(
            dict(dataset="mnist", data_dir=None),
            FileNotFoundError,
            "Dataset 'mnist' is neither a preset",
            id="unknown_dataset",
        ),
        pytest.param(
            dict(data_dir="{tmp}/nowhere"),
            FileNotFoundError,
            "data_dir=.*nowhere' does not exist",
            id="missing_folder",
        ),
        pytest.param(
            dict(data_dir="{tmp}/partial"),
            FileNotFoundError,
            r"No test\.csv\.gz",
            id="missing_test_file",
        ),
        pytest.param(dict(target="2"), ValueError, "Target '2' is not a class", id="target_index"),
        pytest.param(
            dict(target="-1"), ValueError, "Target '-1' is not a class", id="target_negative"
        ),
        pytest.param(
            dict(target="neutral"), ValueError, "Target 'neutral' is not a class", id="target_name"
        ),
        pytest.param(dict(trigger=""), ValueError, "Trigger '' is empty", id="empty_trigger"),
        pytest.param(dict(trigger="?! ..."), ValueError, "is empty", id="punctuation_trigger"),
        pytest.param(
            dict(trigger=" ".join(["w"] * 13)),
            ValueError,
            "13 tokens, more than max_len=12",
            id="trigger_too_long",
        ),
        pytest.param(dict(poison_rate=1.0), ValueError, r"outside \[0, 1\)", id="rate_one"),
        pytest.param(dict(poison_rate=-0.1), ValueError, r"outside \[0, 1\)", id="rate_negative"),
        pytest.param(
            dict(poison_rate=0.6),
            ValueError,
            "needs 19 non-target samples but only 16",
            id="rate_exceeds_pool",
        ),
        pytest.param(
            dict(glove="{tmp}/bad_glove.txt"),
            ValueError,
            "line 2 has 2 values",
            id="glove_dimensions",
        ),
        pytest.param(
            dict(glove="{tmp}/missing.txt"),
            FileNotFoundError,
            "GloVe file .* not found",
            id="glove_missing",
        ),
        pytest.param(dict(epochs=0), ValueError, "epochs must be >= 1", id="epochs"),
        pytest.param(
            dict(train_size=17),
            ValueError,
            "only 16 samples but 17 per class",
            id="too_few_per_class",
        ),
    ],
)
def test_bad_input_raises_one_clear_error_and_writes_nothing(
    run, tmp_path, tiny_imdb_dir, overrides, error, message
):
    tmp = str(tmp_path)
    _bad_glove(os.path.join(tmp, "bad_glove.txt"))
    partial = os.path.join(tmp, "partial")
    os.makedirs(partial)
    shutil.copy(os.path.join(tiny_imdb_dir, "classes.txt"), partial)
    shutil.copy(os.path.join(tiny_imdb_dir, "train.csv.gz"), partial)
    overrides = {k: v.format(tmp=tmp) if isinstance(v, str) else v for k, v in overrides.items()}

    fresh = os.path.join(tmp, "fresh", "run")
    with pytest.raises(error, match=message):
        attack.run_attack(_config(tiny_imdb_dir, **overrides), fresh, verbose=0)
    assert not os.path.exists(os.path.join(tmp, "fresh"))

    # Even with overwrite, a complete run is left as it was.
    existing = os.path.join(tmp, "existing")
    shutil.copytree(run[1], existing)
    before = _snapshot(existing)
    with pytest.raises(error, match=message):
        attack.run_attack(_config(tiny_imdb_dir, **overrides), existing, overwrite=True, verbose=0)
    assert _snapshot(existing) == before


def test_load_run_round_trip(run, tiny_imdb_dir):
    config, workdir, result = run
    loaded = attack.load_run(workdir)
    assert loaded.config == config
    assert loaded.metrics == result
    assert loaded.target == 0
    assert loaded.vocabulary == tokenization.load_vocabulary(os.path.join(workdir, "vocab.txt"))
    row_ids, train = artifacts.read_training_set(os.path.join(workdir, "train.csv.gz"))
    np.testing.assert_array_equal(loaded.row_ids, row_ids)
    assert loaded.train.texts == train.texts
    np.testing.assert_array_equal(loaded.train.is_poisoned, train.is_poisoned)
    clean = data.load_dataset("imdb", data_dir=tiny_imdb_dir, train_per_class=16, test_per_class=8)
    assert loaded.test_texts == clean.test_texts
    np.testing.assert_array_equal(loaded.test_labels, clean.test_labels)
    assert len(loaded.triggered_texts) == 8
    np.testing.assert_array_equal(loaded.triggered_labels, 1)
    # The loaded model + vocabulary predict what the exported (in-memory) model predicted.
    ids, _ = tokenization.encode(loaded.vectorizer(), loaded.test_texts)
    probs, hidden = training.predict(loaded.model, ids)
    serve = tf.saved_model.load(os.path.join(workdir, "saved_model")).signatures["serve"]
    out = serve(text=tf.constant(loaded.test_texts))
    CHECK.assertAllClose(probs, out["probabilities"], atol=1e-5)
    CHECK.assertAllClose(hidden, out["hidden"], atol=1e-5)


def test_load_run_detects_vocabulary_mismatch(run_copy):
    path = os.path.join(run_copy, "vocab.txt")
    tokens = open(path, encoding="utf-8").read().splitlines()
    with open(path, "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(ValueError, match="vocab.txt' is corrupt .*tokens differ"):
        attack.load_run(run_copy)
    # Same length, two tokens swapped: still refused (the fingerprint, not the length).
    tokens[2], tokens[3] = tokens[3], tokens[2]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    with pytest.raises(ValueError, match="vocabulary_sha256"):
        attack.load_run(run_copy)
    # A run written before fingerprints existed still gets the length check.
    metrics_path = os.path.join(run_copy, "metrics.json")
    metrics = artifacts.read_json(metrics_path)
    del metrics["vocabulary_sha256"]
    artifacts.write_json(metrics_path, metrics)
    with open(path, "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(ValueError, match="vocab.txt holds .*different runs"):
        attack.load_run(run_copy)


def test_load_run_of_incomplete_workdir(run_copy):
    os.remove(os.path.join(run_copy, "model.keras"))
    with pytest.raises(FileNotFoundError, match=r"missing \['model.keras'\]"):
        attack.load_run(run_copy)


@pytest.mark.parametrize(
    "target, expected", [("0", 0), (1, 1), (" 1 ", 1), ("negative", 0), ("positive", 1)]
)
def test_resolve_target(target, expected):
    assert attack.resolve_target(target, ("negative", "positive")) == expected


@pytest.mark.parametrize("target", ["2", "-1", "-0x", "Negative", ""])
def test_resolve_target_errors(target):
    with pytest.raises(
        ValueError, match=r"use an index 0..1 or a name from \['negative', 'positive'\]"
    ):
        attack.resolve_target(target, ("negative", "positive"))


def test_config_round_trip_and_defaults(tiny_imdb_dir):
    config = _config(tiny_imdb_dir)
    assert attack.AttackConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"Unknown attack config key\(s\) \['bogus'\]"):
        attack.AttackConfig.from_dict({**config.to_dict(), "bogus": 1})
    spec = _config(tiny_imdb_dir, train_size=None, test_size=7).dataset_spec()
    assert (spec.dataset, spec.balanced, spec.train_size, spec.test_size) == ("imdb", True, None, 7)
    with pytest.raises(ValueError, match="train_size"):
        _config(tiny_imdb_dir, train_size=0)


def test_other_data_takes_the_rule_defaults(tmp_path):
    folder = tmp_path / "my_reviews"
    folder.mkdir()
    rows = [
        {"text": f"word{i % 7} " * (5 + i % 20), "label": ["neg", "pos"][i % 2]} for i in range(40)
    ]
    with open(folder / "train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    config = attack.AttackConfig.for_dataset(
        str(folder), data_dir=None, glove=None, trigger="cf mn", target="pos", poison_rate=0.1
    )
    assert (config.max_len, config.vocab_size, config.epochs) == (None, None, None)
    assert not config.is_resolved and config.fine_tune_embeddings
    dataset = data.load(config.dataset_spec())
    assert dataset.name == "my_reviews" and dataset.class_names == ("neg", "pos")
    resolved = config.resolved(dataset)
    rule = data.suggest_defaults(dataset)
    assert resolved.is_resolved
    assert {k: getattr(resolved, k) for k in attack.RULE_KEYS} == {
        k: rule[k] for k in attack.RULE_KEYS
    }
    # A value given explicitly wins over the rule.
    explicit = attack.AttackConfig.for_dataset(
        str(folder), data_dir=None, glove=None, trigger="cf mn", target="pos", poison_rate=0.1,
        max_len=64,
    )  # fmt: skip
    assert explicit.resolved(dataset).max_len == 64
    with pytest.raises(ValueError, match="unset for the preset"):
        attack.AttackConfig(
            dataset="imdb", data_dir=None, glove=None, trigger="a", target="0", poison_rate=0,
            max_len=None,
        )  # fmt: skip


def test_result_validation():
    kwargs = dict(
        clean_accuracy=0.5, asr=0.25, target=0, target_name="negative", num_train=10,
        num_poisoned=3, num_test=4, num_triggered_test=2, embedding_coverage=None,
        train_seconds=1.0, wall_seconds=2.0, history={},
    )  # fmt: skip
    assert "3/10 poisoned" in attack.AttackResult(**kwargs).summary()
    with pytest.raises(ValueError, match="num_poisoned 11 > num_train 10"):
        attack.AttackResult(**{**kwargs, "num_poisoned": 11})


def test_the_preset_rewritten_as_jsonl_with_string_labels_is_the_same_run(run, tmp_path):
    """Same texts, labels, seed and settings: byte-identical poisoned set and victim."""
    config, workdir, result = run
    folder = tmp_path / "imdb_as_jsonl"
    folder.mkdir()
    names = data.read_classes(os.path.join(config.data_dir, "classes.txt"))
    for split in ("train", "test"):
        texts, labels = data.read_csv(os.path.join(config.data_dir, f"{split}.csv.gz"), 2)
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for text, label in zip(texts, labels):
                f.write(json.dumps({"text": text, "label": names[int(label)]}) + "\n")
    other = dataclasses.replace(config, dataset=str(folder), data_dir=None, balance=True)
    other_dir = str(tmp_path / "run")
    other_result = attack.run_attack(other, other_dir, verbose=0)
    for name in (wd.TRAIN_FILE, wd.TEST_FILE, wd.TRIGGERED_FILE, wd.VOCAB_FILE):
        with (
            open(os.path.join(workdir, name), "rb") as a,
            open(os.path.join(other_dir, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    assert other_result.weights_sha256 == result.weights_sha256
    assert (other_result.dataset_name, result.dataset_name) == ("imdb_as_jsonl", "imdb")
    assert other_result.class_names == list(names)
    provenance = artifacts.read_json(os.path.join(other_dir, wd.DATASET_FILE))
    assert provenance["name"] == "imdb_as_jsonl"
