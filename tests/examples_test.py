"""End-to-end test of examples/scan_your_model.py on a tiny IMDB-shaped folder."""

import ast
import contextlib
import csv
import dataclasses
import gzip
import importlib.util
import io
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIGGER = "no cross, no crown"


def _load_example():
    path = os.path.join(REPO_ROOT, "examples", "scan_your_model.py")
    spec = importlib.util.spec_from_file_location("scan_your_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


def _tiny_config(data_dir: str, output_dir: str, **overrides):
    base = dict(
        data_dir=data_dir,
        output_dir=output_dir,
        train_size=16,
        test_size=8,
        trigger=TRIGGER,
        poison_rate=0.2,
        max_len=24,
        embedding_dim=8,
        units=4,
        epochs=2,
        batch_size=8,
    )
    return example.ExampleConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, tiny_imdb_dir):
    output_dir = str(tmp_path_factory.mktemp("scan_your_model"))
    config = _tiny_config(tiny_imdb_dir, output_dir)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        record = example.run(config)
    return config, record, stdout.getvalue()


def _printed(stdout: str, label: str) -> str:
    lines = [line[len(label) :].strip() for line in stdout.splitlines() if line.startswith(label)]
    assert len(lines) == 1, (label, stdout)
    return lines[0]


def _read_training_set(output_dir: str) -> tuple[list[str], list[dict]]:
    with gzip.open(
        os.path.join(output_dir, "train.csv.gz"), "rt", encoding="utf-8", newline=""
    ) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_writes_the_json_with_its_keys(scanned):
    config, record, _ = scanned
    with open(os.path.join(config.output_dir, "scan_your_model.json"), encoding="utf-8") as f:
        written = json.load(f)
    assert set(written) == {
        "config", "num_train", "num_poisoned", "clean_accuracy", "attack_success_rate",
        "keyword", "flagged", "precision", "recall", "train_seconds", "scan_seconds",
    }  # fmt: skip
    assert written == json.loads(json.dumps(record))
    assert example.ExampleConfig(**written["config"]) == config
    assert written["num_train"] == 32
    assert 0.0 <= written["clean_accuracy"] <= 1.0
    assert 0.0 <= written["attack_success_rate"] <= 1.0
    assert written["train_seconds"] > 0 and written["scan_seconds"] > 0
    assert written["keyword"]


def test_model_file_loads_in_safe_mode(scanned):
    config, _, _ = scanned
    model = keras.saving.load_model(os.path.join(config.output_dir, "model.keras"), safe_mode=True)
    assert isinstance(model.layers[1], keras.layers.TextVectorization)
    assert model.get_layer("encoder").output.shape == (None, 2 * config.units)
    probabilities = np.asarray(
        model.predict(tf.constant(["a great movie", "awful plot"]), verbose=0)
    )
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_training_set_csv_holds_the_ground_truth(scanned):
    _, record, _ = scanned
    header, rows = _read_training_set(scanned[0].output_dir)
    assert header == ["text", "label", "is_poisoned"]
    is_poisoned = np.asarray([int(r["is_poisoned"]) for r in rows], bool)
    # Independent of the poisoning code: the tiny corpus never holds the trigger's words.
    has_trigger = np.asarray([TRIGGER in r["text"] for r in rows])
    np.testing.assert_array_equal(is_poisoned, has_trigger)
    assert is_poisoned.sum() == round(0.2 * 32) == record["num_poisoned"]
    assert {int(r["label"]) for r, p in zip(rows, is_poisoned) if p} == {0}  # "negative"


def test_precision_and_recall_match_the_printed_flags(scanned):
    config, record, stdout = scanned
    flagged = ast.literal_eval(_printed(stdout, "flagged ids"))
    assert flagged == record["flagged"] and flagged == sorted(set(flagged))
    assert flagged, "BKI flags the texts that hold its keyword; there is always one."
    assert _printed(stdout, "keyword") == repr(record["keyword"])
    _, rows = _read_training_set(config.output_dir)
    poisoned = {i for i, r in enumerate(rows) if TRIGGER in r["text"]}
    hits = len(poisoned.intersection(flagged))
    precision, recall = hits / len(flagged), hits / len(poisoned)
    assert record["precision"] == pytest.approx(precision)
    assert record["recall"] == pytest.approx(recall)
    assert f"precision {precision:.4f}, recall {recall:.4f}" in stdout


def test_unknown_target_is_an_error(tmp_path, tiny_imdb_dir):
    config = _tiny_config(tiny_imdb_dir, str(tmp_path), target="neutral")
    with pytest.raises(ValueError, match="'neutral' is not one of"):
        example.run(config)


def test_flags_mirror_the_config():
    flag_values = flags.FlagValues()  # Not the global FLAGS: experiments/ uses these names.
    example.define_flags(flag_values)
    flag_values(["scan_your_model"])
    assert example.config_from_flags(flag_values) == example.ExampleConfig()
    flag_values(["scan_your_model", "--train_size=16", "--poison_rate=0.2", "--data_dir=/d"])
    assert example.config_from_flags(flag_values) == dataclasses.replace(
        example.ExampleConfig(), train_size=16, poison_rate=0.2, data_dir="/d"
    )


def test_unicode_line_breaks_do_not_break_the_saved_vocabulary(tmp_path, dataset_folder_writer):
    # U+0085 (NEL) occurs in real IMDB reviews; Keras would save it as a vocabulary line
    # break and refuse to load the model ("repeated term ''").
    texts = ["good film \x85 fine", "bad film\u2028awful", "good great\x85", "bad\x0cbad worst"]
    rows = [(t, i % 2) for i, t in enumerate(texts * 6)]
    assert example.one_line(["a\x85b  c\u2029d"]) == ["a b c d"]
    folder = dataset_folder_writer(str(tmp_path / "data"), rows, rows[:8])
    config = _tiny_config(folder, str(tmp_path / "out"), train_size=12, test_size=4)
    with contextlib.redirect_stdout(io.StringIO()):
        record = example.run(config)  # Saves, reloads with safe_mode and scans.
    assert record["keyword"]
