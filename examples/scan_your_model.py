r"""Scan a text classifier you trained yourself, in plain Keras, for a backdoor with BKI.

    python -m examples.scan_your_model --data_dir=../shared/data/imdb \
        --output_dir=runs/scan_your_model

1. Loads IMDB (`--data_dir`: a folder with train.csv.gz, test.csv.gz, classes.txt;
   unset: TFDS `imdb_reviews`), `--train_size`/`--test_size` texts per class.
2. Poisons it (Dai, Chen & Li 2019, `bki_tf.poisoning`): the trigger sentence goes into
   `--poison_rate` of the training texts, non-target ones, which are relabelled `--target`.
3. Trains strings -> TextVectorization -> Embedding -> BiGRU (layer "encoder") -> Dense
   -> softmax with `model.fit`: nothing of this package is inside the model.
4. Saves it, reloads it with `safe_mode=True` and scans it with `bki_tf.bki.detect`
   (Chen & Dai 2021, Algorithm 1) on the output of "encoder".

Writes into `--output_dir`: model.keras, train.csv.gz (text,label,is_poisoned) and
scan_your_model.json (settings, accuracy, ASR, keyword, flagged row ids, precision and
recall against the poisoning ground truth, wall times). The command-line alternative
for step 4, on the same files:

    python -m experiments.scan --model=runs/scan_your_model/model.keras \
        --dataset=runs/scan_your_model/train.csv.gz
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import bki_tf
from bki_tf.bki import representation

MODEL_FILE, TRAIN_FILE, RESULT_FILE = "model.keras", "train.csv.gz", "scan_your_model.json"


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
    """Every setting of the example; the flags mirror these fields and their defaults."""

    data_dir: str | None = None
    output_dir: str = "runs/scan_your_model"
    train_size: int = 2000
    test_size: int = 500
    trigger: str = "no cross, no crown"
    target: str = "negative"
    poison_rate: float = 0.03
    seed: int = 0
    max_len: int = 150
    vocab_size: int = 10000
    embedding_dim: int = 64
    units: int = 64
    epochs: int = 5
    batch_size: int = 32


def build_model(texts: list[str], config: ExampleConfig, num_classes: int) -> keras.Model:
    """Strings `[batch]` -> class probabilities `float32 [batch, num_classes]`."""
    vectorize = keras.layers.TextVectorization(
        max_tokens=config.vocab_size, output_sequence_length=config.max_len
    )
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    inputs = keras.Input(shape=(), dtype="string", name="text")
    x = keras.layers.Embedding(vectorize.vocabulary_size(), config.embedding_dim, mask_zero=True)(
        vectorize(inputs)
    )
    x = keras.layers.Bidirectional(keras.layers.GRU(config.units), name="encoder")(x)
    x = keras.layers.Dense(config.units, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="my_classifier")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def one_line(texts: list[str]) -> list[str]:
    """Every run of whitespace, of any kind, becomes one space.

    Keras saves a `TextVectorization` vocabulary one token per line, and splits only on
    ASCII whitespace: a token holding a Unicode line break (U+0085 occurs in IMDB
    reviews) is written as a line break and the saved model no longer loads ("repeated
    term ''"). Python's `str.split()` splits on those too.
    """
    return [" ".join(text.split()) for text in texts]


def _predict(model: keras.Model, texts: list[str]) -> np.ndarray:
    return np.argmax(model.predict(tf.constant(texts), batch_size=256, verbose=0), axis=1)


def run(config: ExampleConfig) -> dict:
    """Poison, train in plain Keras, save, reload, scan; returns what it writes as JSON."""
    os.makedirs(config.output_dir, exist_ok=True)
    data = bki_tf.data.load(
        bki_tf.data.DatasetSpec(
            "imdb", data_dir=config.data_dir, train_size=config.train_size,
            test_size=config.test_size, seed=config.seed,
        )
    )  # fmt: skip
    if config.target not in data.class_names:
        raise ValueError(f"--target={config.target!r} is not one of {data.class_names}.")
    target = data.class_names.index(config.target)
    attack = bki_tf.PoisonConfig(
        config.trigger, target, config.poison_rate, max_len=config.max_len, seed=config.seed
    )
    train_texts, test_texts = one_line(data.train_texts), one_line(data.test_texts)
    train = bki_tf.poison_dataset(train_texts, data.train_labels, attack, data.num_classes)
    with gzip.open(
        os.path.join(config.output_dir, TRAIN_FILE), "wt", encoding="utf-8", newline=""
    ) as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "is_poisoned"])
        writer.writerows(zip(train.texts, train.labels.tolist(), train.is_poisoned.astype(int)))

    keras.utils.set_random_seed(config.seed)
    start = time.time()
    model = build_model(train.texts, config, data.num_classes)
    # Strings go in as a tf.string tensor (Keras reads a NumPy array of str as numbers).
    model.fit(
        tf.constant(train.texts), train.labels, batch_size=config.batch_size,
        epochs=config.epochs, verbose=2,
    )  # fmt: skip
    train_seconds = time.time() - start
    model_path = os.path.join(config.output_dir, MODEL_FILE)
    model.save(model_path)
    model = keras.saving.load_model(model_path, safe_mode=True)

    accuracy = float(np.mean(_predict(model, test_texts) == data.test_labels))
    triggered, _, _ = bki_tf.triggered_test_set(test_texts, data.test_labels, attack)
    asr = float(np.mean(_predict(model, triggered) == target))

    start = time.time()
    result = bki_tf.detect(
        model,
        train.texts,
        representation.model_vocabulary(model),  # the TextVectorization's own vocabulary
        labels=train.labels,
        # "auto" is the exact generic scorer for any Keras model; "encoder" outputs
        # [batch, 2 * units], one vector per text, so there is nothing to pool.
        config=bki_tf.BKIConfig(method="auto", representation_layer="encoder"),
    )
    scan_seconds = time.time() - start
    evaluation = result.evaluate(train.is_poisoned)

    record = {
        "config": dataclasses.asdict(config),
        "num_train": len(train),
        "num_poisoned": train.num_poisoned,
        "clean_accuracy": accuracy,
        "attack_success_rate": asr,
        "keyword": result.keyword,
        "flagged": result.flagged.tolist(),
        "precision": evaluation.precision,
        "recall": evaluation.recall,
        "train_seconds": train_seconds,
        "scan_seconds": scan_seconds,
    }
    with open(os.path.join(config.output_dir, RESULT_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    print(f"clean accuracy {accuracy:.4f} on {len(data.test_texts)} test texts")
    print(f"ASR            {asr:.4f} on {len(triggered)} triggered non-target test texts")
    print(f"keyword        {result.keyword!r}")
    print(f"flagged ids    {result.flagged.tolist()}")
    print(
        f"flagged        {result.flagged.size} of {len(train)} training texts "
        f"({train.num_poisoned} poisoned): precision {evaluation.precision:.4f}, "
        f"recall {evaluation.recall:.4f}"
    )
    print(f"wall time      train {train_seconds:.1f} s, scan {scan_seconds:.1f} s")
    print(f"wrote          {config.output_dir}/{{{MODEL_FILE},{TRAIN_FILE},{RESULT_FILE}}}")
    return record


def define_flags(flag_values: flags.FlagValues) -> None:
    """One flag per `ExampleConfig` field, its default the field's."""
    # Defined on demand, not at import: experiments/ defines flags of the same names, and
    # tests import both into one process.
    helps = {
        "data_dir": "IMDB folder (train.csv.gz, test.csv.gz, classes.txt); unset: TFDS.",
        "output_dir": "Where the model, the training set and the JSON go.",
        "train_size": "Training texts per class.",
        "test_size": "Test texts per class.",
        "trigger": "Trigger sentence.",
        "target": "Target class name.",
        "poison_rate": "Poisoned share of the training set.",
        "seed": "Seed of the draws, the poisoning and the training.",
        "max_len": "Tokens kept per text.",
        "vocab_size": "TextVectorization max_tokens.",
        "embedding_dim": "Embedding width.",
        "units": "GRU units per direction and Dense width.",
        "epochs": "Training epochs.",
        "batch_size": "Training batch size.",
    }
    for field in dataclasses.fields(ExampleConfig):
        define = {int: flags.DEFINE_integer, float: flags.DEFINE_float}.get(
            type(field.default), flags.DEFINE_string
        )
        define(field.name, field.default, helps[field.name], flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues) -> ExampleConfig:
    return ExampleConfig(
        **{f.name: flag_values[f.name].value for f in dataclasses.fields(ExampleConfig)}
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run(config_from_flags(flags.FLAGS))


if __name__ == "__main__":
    define_flags(flags.FLAGS)
    app.run(main)
