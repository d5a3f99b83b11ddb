r"""Benchmarks the BKI deletion scorers (authors' loop, simple, fast) on this machine.

    python -m experiments.benchmark_scan --data_dir=../shared/data/imdb \
      --num_texts=200 --max_len=400 --output=runs/benchmark_scan.json --scaling \
      --convergence_run=runs/imdb_attack

Writes the result JSON (with the config under "config") to --output and, with
--scaling, a plot of texts/s vs max_len and vs number of texts next to it
(`<output stem>_scaling.png`). --convergence_run adds a trained model (an attack
run's workdir) to the state-convergence check, which otherwise uses the random model.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

from bki_tf import benchmarking
from experiments import common_flags

_d = benchmarking.BenchmarkConfig
_define = common_flags.define  # Idempotent: other binaries share some of these names.
_NUM_TEXTS = _define.DEFINE_integer("num_texts", _d.num_texts, "Texts scanned by simple/fast.")
_MAX_LEN = _define.DEFINE_integer("max_len", _d.max_len, "Tokens kept per text.")
_DATA_DIR = _define.DEFINE_string(
    "data_dir",
    None,
    "Folder with train.csv.gz (text,label) for real token counts; unset: IMDB-like lognormal.",
)
_REPEATS = _define.DEFINE_integer("repeats", _d.repeats, "Timed repeats per method (median).")
_OUTPUT = _define.DEFINE_string("output", None, "Result JSON path.")
_LSTM_UNITS = _define.DEFINE_integer("lstm_units", _d.lstm_units, "Units per LSTM direction.")
_EMBEDDING_DIM = _define.DEFINE_integer("embedding_dim", _d.embedding_dim, "Embedding width.")
_VOCAB_SIZE = _define.DEFINE_integer("vocab_size", _d.vocab_size, "Vocabulary size.")
_SEED = _define.DEFINE_integer("seed", _d.seed, "Seed of lengths, ids and weights.")
_AUTHORS_TEXTS = _define.DEFINE_integer(
    "authors_texts", _d.authors_texts, "Most texts the (slow) authors' method is timed on."
)
_BATCH_SIZE = _define.DEFINE_integer(
    "batch_size", _d.batch_size, "Variants side by side in the simple/fast scorers."
)
_SCALING = _define.DEFINE_bool("scaling", False, "Also sweep max_len and the number of texts.")
_SCALING_TEXTS = _define.DEFINE_integer(
    "scaling_texts", _d.scaling_texts, "Texts per point of the max_len sweep."
)
_PEAK_MATMUL_SIZE = _define.DEFINE_integer(
    "peak_matmul_size", _d.peak_matmul_size, "Side of the square matmul measuring the peak."
)

_CONVERGENCE_TEXTS = _define.DEFINE_integer(
    "convergence_texts", _d.convergence_texts, "Texts of the state-convergence check (0: skip)."
)
_CONVERGENCE_RUN = _define.DEFINE_string(
    "convergence_run",
    None,
    "Workdir of an experiments.attack run whose trained model is also checked for state "
    "convergence; unset: the random model only.",
)

flags.mark_flags_as_required(["output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = benchmarking.BenchmarkConfig(
        num_texts=_NUM_TEXTS.value,
        max_len=_MAX_LEN.value,
        data_dir=_DATA_DIR.value,
        repeats=_REPEATS.value,
        lstm_units=_LSTM_UNITS.value,
        embedding_dim=_EMBEDDING_DIM.value,
        vocab_size=_VOCAB_SIZE.value,
        seed=_SEED.value,
        authors_texts=_AUTHORS_TEXTS.value,
        batch_size=_BATCH_SIZE.value,
        scaling=_SCALING.value,
        scaling_texts=_SCALING_TEXTS.value,
        peak_matmul_size=_PEAK_MATMUL_SIZE.value,
        convergence_texts=_CONVERGENCE_TEXTS.value,
        convergence_run=_CONVERGENCE_RUN.value,
    )
    result = benchmarking.run_benchmark(config, log=lambda line: logging.info("%s", line))
    output = os.path.abspath(_OUTPUT.value)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=2)
    if result.scaling is not None:
        benchmarking.plot_scaling(result.scaling, os.path.splitext(output)[0] + "_scaling.png")
    print(result.summary())


if __name__ == "__main__":
    app.run(main)
