"""Flags shared by the binaries that run an attack (attack, pipeline, reproduce).

Defined in a function, as in tensorflow/models' official/common/flags.py, so
each binary declares exactly the flags it uses.
"""

from __future__ import annotations

from absl import flags

from bki_tf import attack, data, poisoning, training


def define_workdir_flags() -> dict:
    """--workdir and --overwrite."""
    return {
        "workdir": flags.DEFINE_string("workdir", None, "Run folder (created)."),
        "overwrite": flags.DEFINE_bool(
            "overwrite", False, "Replace a different run already in --workdir."
        ),
    }


def define_attack_flags() -> dict:
    """The flags of an attack run; returns their FlagHolders by config field."""
    d = attack.AttackConfig
    return {
        "dataset": flags.DEFINE_enum("dataset", None, list(data.DATASETS), "Dataset."),
        "source": flags.DEFINE_enum(
            "source", "local", list(data.SOURCES),
            "local: a folder with train.csv.gz/test.csv.gz/classes.txt (offline); "
            "tfds: imdb_reviews / huggingface:dbpedia_14 (online).",
        ),
        "data_dir": flags.DEFINE_string(
            "data_dir", None,
            "Local dataset folder (e.g. ../shared/data/imdb), or the TFDS data dir.",
        ),
        "glove": flags.DEFINE_string(
            "glove", None, "GloVe text file (.txt or .txt.gz, any dimension); unset: random init."
        ),
        "trigger": flags.DEFINE_string("trigger", "time flies like an arrow", "Trigger sentence."),
        "target": flags.DEFINE_string(
            "target", "0", "Target class: index or name from classes.txt (e.g. negative, Village)."
        ),
        "poison_rate": flags.DEFINE_float(
            "poison_rate", 0.03, "Poisoned / total training samples, in [0, 1); 0 = clean model."
        ),
        "mode": flags.DEFINE_enum(
            "mode", d.mode, list(poisoning.MODES),
            "replace: poisoned copy replaces the original (Dai et al.); append: copies added.",
        ),
        "seed": flags.DEFINE_integer("seed", d.seed, "Seed of every random choice."),
        "train_size": flags.DEFINE_integer(
            "train_size", None,
            "Training samples PER CLASS (default: paper, IMDB 5000, DBpedia 1000).",
        ),
        "test_size": flags.DEFINE_integer(
            "test_size", None, "Test samples PER CLASS (default: paper, IMDB 5000, DBpedia 500)."
        ),
        "vocab_size": flags.DEFINE_integer(
            "vocab_size", d.vocab_size, "Vocabulary size incl. padding and OOV."
        ),
        "max_len": flags.DEFINE_integer("max_len", d.max_len, "Tokens kept per text."),
        "epochs": flags.DEFINE_integer("epochs", d.epochs, "Training epochs."),
        "batch_size": flags.DEFINE_integer("batch_size", d.batch_size, "Batch size."),
        "learning_rate": flags.DEFINE_float("learning_rate", d.learning_rate, "Learning rate."),
        "optimizer": flags.DEFINE_enum(
            "optimizer", d.optimizer, list(training.OPTIMIZERS), "Optimizer."
        ),
        "clipnorm": flags.DEFINE_float("clipnorm", d.clipnorm, "Gradient norm clip; 0 = off."),
        "fine_tune_embeddings": flags.DEFINE_bool(
            "fine_tune_embeddings", d.fine_tune_embeddings,
            "Train the GloVe vectors (frozen by default, as the authors do).",
        ),
        "embedding_dim": flags.DEFINE_integer(
            "embedding_dim", d.embedding_dim, "Embedding width when no --glove is given."
        ),
        "lstm_units": flags.DEFINE_integer("lstm_units", d.lstm_units, "Units per LSTM direction."),
        "dense_units": flags.DEFINE_integer("dense_units", d.dense_units, "ReLU layer width."),
    }  # fmt: skip


def attack_config(holders: dict) -> attack.AttackConfig:
    """Builds the frozen config from parsed flags."""
    return attack.AttackConfig(**{name: holder.value for name, holder in holders.items()})
