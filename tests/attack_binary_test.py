"""End-to-end tests of the `experiments.attack` binary on a tiny dataset folder."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import app
from absl.testing import flagsaver

from bki_tf import artifacts, tokenization, training
from bki_tf.runs import attack
from experiments import attack as attack_main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_FLAGS = dict(
    dataset="imdb",
    glove="none",
    trigger="Time flies like an arrow",
    target="positive",
    poison_rate=0.1,
    mode="append",
    train_size=16,
    test_size=8,
    vocab_size=60,
    max_len=12,
    epochs=1,
    batch_size=8,
    embedding_dim=8,
    lstm_units=4,
    dense_units=4,
    seed=3,
)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, tiny_imdb_dir):
    workdir = str(tmp_path_factory.mktemp("binary") / "run")
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, workdir=workdir, **TINY_FLAGS):
        attack_main.main(["attack"])
    return workdir


def test_main_writes_a_complete_run(binary_run, tiny_imdb_dir):
    workdir = binary_run
    for name in ("config.json", "vocab.txt", "train.csv.gz", "test.csv.gz",
                 "test_triggered.csv.gz", "model.keras", "metrics.json"):  # fmt: skip
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "logs"))

    # The config holds every flag value that was set (the rest are the binary's defaults).
    config = artifacts.read_json(os.path.join(workdir, "config.json"))
    assert {k: config[k] for k in TINY_FLAGS} == TINY_FLAGS
    assert config["data_dir"] == tiny_imdb_dir and config["glove"] == "none"
    assert attack.AttackConfig.from_dict(config).to_dict() == config

    # append mode: round(0.1 * 32 / 0.9) = 4 poisoned copies of class-0 texts added.
    metrics = artifacts.read_json(os.path.join(workdir, "metrics.json"))
    assert metrics["num_train"] == 36 and metrics["num_poisoned"] == 4
    assert metrics["target"] == 1 and metrics["target_name"] == "positive"
    assert metrics["num_triggered_test"] == 8 and metrics["num_test"] == 16
    for key in ("clean_accuracy", "asr", "wall_seconds"):
        assert isinstance(metrics[key], float)
    _, train = artifacts.read_training_set(os.path.join(workdir, "train.csv.gz"))
    assert not train.is_poisoned[:32].any() and train.is_poisoned[32:].all()
    np.testing.assert_array_equal(train.original_labels[32:], 0)

    # The SavedModel takes raw strings and returns probabilities and hidden states.
    serve = tf.saved_model.load(os.path.join(workdir, "saved_model")).signatures["serve"]
    texts, _ = artifacts.read_labelled_texts(os.path.join(workdir, "test_triggered.csv.gz"))
    out = serve(text=tf.constant(texts))
    run = attack.load_run(workdir)
    ids, _ = tokenization.encode(run.vectorizer(), texts)
    probs, hidden = training.predict(run.model, ids)
    check = tf.test.TestCase()
    check.assertAllClose(out["probabilities"], probs, atol=1e-5)
    check.assertAllClose(out["hidden"], hidden, atol=1e-5)
    assert metrics["asr"] == pytest.approx(np.mean(probs.argmax(1) == 1))


def test_main_rerun_prints_stored_result(binary_run, tiny_imdb_dir, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssertionError("the run was redone")

    monkeypatch.setattr(training, "train_classifier", fail)
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, workdir=binary_run, **TINY_FLAGS):
        attack_main.main(["attack"])
    stored = attack.load_result(binary_run)
    assert capsys.readouterr().out.strip() == stored.summary()


def test_main_refuses_a_different_run(binary_run, tiny_imdb_dir):
    before = sorted(os.listdir(binary_run))
    flag_values = {**TINY_FLAGS, "poison_rate": 0.2}
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, workdir=binary_run, **flag_values):
        with pytest.raises(ValueError, match=r"differs in \['poison_rate'\].*--overwrite"):
            attack_main.main(["attack"])
    assert sorted(os.listdir(binary_run)) == before


def test_main_rejects_positional_arguments():
    with pytest.raises(app.UsageError, match="Unexpected arguments"):
        attack_main.main(["attack", "extra"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        pytest.param(dict(target="7"), "Target '7' is not a class", id="target"),
        pytest.param(dict(trigger="..."), "is empty", id="empty_trigger"),
        pytest.param(dict(poison_rate=1.5), r"outside \[0, 1\)", id="rate"),
        pytest.param(dict(max_len=3), "more than max_len=3", id="trigger_too_long"),
    ],
)
def test_main_bad_input_writes_nothing(tmp_path, tiny_imdb_dir, overrides, message):
    workdir = str(tmp_path / "run")
    with flagsaver.flagsaver(
        data_dir=tiny_imdb_dir, workdir=workdir, **{**TINY_FLAGS, **overrides}
    ):
        with pytest.raises(ValueError, match=message):
            attack_main.main(["attack"])
    assert not os.path.exists(workdir)


@pytest.mark.parametrize(
    "flag, message",
    [
        pytest.param("--dataset=imdb", "nowhere' does not exist", id="missing_data"),
        pytest.param("--dataset=mnist", "the local dataset 'mnist'", id="bad_dataset"),
    ],
)
def test_command_line_bad_input_fails_cleanly(tmp_path, flag, message):
    workdir = str(tmp_path / "run")
    proc = subprocess.run(
        [
            sys.executable, "-m", "experiments.attack", flag,
            f"--data_dir={tmp_path / 'nowhere'}", f"--workdir={workdir}",
            "--train_size=2", "--test_size=2", "--epochs=1",
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(workdir)
