"""Flags shared by the binaries that run an attack (attack, pipeline, reproduce).

Defined in a function, as in tensorflow/models' official/common/flags.py, so
each binary declares exactly the flags it uses.
"""

from __future__ import annotations

import sys

from absl import flags

from bki_tf import attack, data, poisoning, training


class _Definer:
    """`define.DEFINE_*` that returns the existing holder if a flag is already defined.

    Several binaries share these flags; defining them idempotently lets tests
    import more than one binary in a process.
    """

    def __getattr__(self, kind: str):
        define = getattr(flags, kind)

        def wrapped(name, *args, **kwargs):
            if name in flags.FLAGS:
                return flags.FlagHolder(flags.FLAGS, flags.FLAGS[name])
            return define(name, *args, **kwargs)

        return wrapped


define = _Definer()


def keras_verbosity() -> int | str:
    """A progress bar on a terminal, one line per epoch in a log file."""
    return "auto" if sys.stdout.isatty() else 2


def define_workdir_flags() -> dict:
    """--workdir and --overwrite."""
    return {
        "workdir": define.DEFINE_string("workdir", None, "Run folder (created)."),
        "overwrite": define.DEFINE_bool(
            "overwrite", False, "Replace a different run already in --workdir."
        ),
    }


def define_attack_flags() -> dict:
    """The flags of an attack run; returns their FlagHolders by config field."""
    d = attack.AttackConfig
    return {
        "dataset": define.DEFINE_enum("dataset", None, list(data.DATASETS), "Dataset."),
        "source": define.DEFINE_enum(
            "source", "local", list(data.SOURCES),
            "local: a folder with train.csv.gz/test.csv.gz/classes.txt (offline); "
            "tfds: imdb_reviews / huggingface:dbpedia_14 (online).",
        ),
        "data_dir": define.DEFINE_string(
            "data_dir", None,
            "Local dataset folder (e.g. ../shared/data/imdb), or the TFDS data dir.",
        ),
        "glove": define.DEFINE_string(
            "glove", None, "GloVe text file (.txt or .txt.gz, any dimension); unset: random init."
        ),
        "trigger": define.DEFINE_string("trigger", "time flies like an arrow", "Trigger sentence."),
        "target": define.DEFINE_string(
            "target", "0", "Target class: index or name from classes.txt (e.g. negative, Village)."
        ),
        "poison_rate": define.DEFINE_float(
            "poison_rate", 0.03, "Poisoned / total training samples, in [0, 1); 0 = clean model."
        ),
        "mode": define.DEFINE_enum(
            "mode", d.mode, list(poisoning.MODES),
            "replace: poisoned copy replaces the original (Dai et al.); append: copies added.",
        ),
        "seed": define.DEFINE_integer("seed", d.seed, "Seed of every random choice."),
        "train_size": define.DEFINE_integer(
            "train_size", None,
            "Training samples PER CLASS (default: paper, IMDB 5000, DBpedia 1000).",
        ),
        "test_size": define.DEFINE_integer(
            "test_size", None, "Test samples PER CLASS (default: paper, IMDB 5000, DBpedia 500)."
        ),
        "vocab_size": define.DEFINE_integer(
            "vocab_size", d.vocab_size, "Vocabulary size incl. padding and OOV."
        ),
        "max_len": define.DEFINE_integer("max_len", d.max_len, "Tokens kept per text."),
        "epochs": define.DEFINE_integer("epochs", None, "Training epochs (default: per dataset)."),
        "batch_size": define.DEFINE_integer(
            "batch_size", None, "Batch size (default: per dataset)."
        ),
        "learning_rate": define.DEFINE_float(
            "learning_rate", None, "Learning rate (default: per dataset)."
        ),
        "optimizer": define.DEFINE_enum(
            "optimizer", d.optimizer, list(training.OPTIMIZERS), "Optimizer."
        ),
        "clipnorm": define.DEFINE_float("clipnorm", d.clipnorm, "Gradient norm clip; 0 = off."),
        "validation_split": define.DEFINE_float(
            "validation_split", d.validation_split,
            "Share of the training set held out to keep the epoch with the best held-out "
            "accuracy; 0 = train on everything, keep the last epoch (as the authors).",
        ),
        "fine_tune_embeddings": define.DEFINE_bool(
            "fine_tune_embeddings", None,
            "Train the GloVe vectors too (default: per dataset, see README 'Defaults'; "
            "--nofine_tune_embeddings keeps them frozen as the authors do).",
        ),
        "embedding_dim": define.DEFINE_integer(
            "embedding_dim", d.embedding_dim, "Embedding width when no --glove is given."
        ),
        "lstm_units": define.DEFINE_integer("lstm_units", d.lstm_units, "Units per LSTM direction."),
        "dense_units": define.DEFINE_integer("dense_units", d.dense_units, "ReLU layer width."),
    }  # fmt: skip


def attack_config(holders: dict) -> attack.AttackConfig:
    """Builds the frozen config from parsed flags (unset training flags: dataset defaults)."""
    values = {name: holder.value for name, holder in holders.items()}
    return attack.AttackConfig.for_dataset(values.pop("dataset"), **values)


def define_variant_flag():
    """--variant: which BKI variant's scan/filter/retrain folders a step uses."""
    from bki_tf import pipeline  # pylint: disable=import-outside-toplevel

    return define.DEFINE_enum(
        "variant", pipeline.ScanConfig.variant, list(pipeline.VARIANTS),
        "paper: Algorithm 1 of the BKI paper; refined: the authors' public code "
        "(its steps use scan_refined/, filter_refined/, retrain_refined/).",
    )  # fmt: skip


def define_scan_flags() -> dict:
    """The BKI scan's flags; returns their FlagHolders by ScanConfig field."""
    from bki_tf import pipeline  # pylint: disable=import-outside-toplevel

    d = pipeline.ScanConfig
    return {
        "p": define.DEFINE_integer("p", d.p, "Suspicious words kept per text (paper: 5)."),
        "variant": define_variant_flag(),
        "method": define.DEFINE_enum(
            "method", d.method, list(pipeline.METHODS),
            "fast: exact scorer with LSTM state reuse; simple: compiled deletion variants.",
        ),
        "max_ngram": define.DEFINE_integer(
            "max_ngram", d.max_ngram, "Longest n-gram key (refined variant)."
        ),
        "alpha": define.DEFINE_float("alpha", d.alpha, "a in s = round((a N)^2) (refined variant)."),
        "scan_batch_size": define.DEFINE_integer(
            "scan_batch_size", d.batch_size, "Deletion variants scored side by side (bounds memory)."
        ),
    }  # fmt: skip


def scan_config(holders: dict):
    """Builds the ScanConfig from parsed flags."""
    from bki_tf import pipeline  # pylint: disable=import-outside-toplevel

    values = {name: holder.value for name, holder in holders.items()}
    values["batch_size"] = values.pop("scan_batch_size")
    return pipeline.ScanConfig(**values)
