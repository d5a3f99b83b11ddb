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

from bki_tf.runs import benchmarking
from experiments import common_flags as cf

_d = benchmarking.BenchmarkConfig
# max_len, data_dir, lstm_units, embedding_dim, vocab_size, seed and scan_batch_size are
# shared with the other binaries (one definition, one default: experiments.common_flags).
_USED = cf.use(
    "max_len",
    "data_dir",
    "lstm_units",
    "embedding_dim",
    "vocab_size",
    "seed",
    "scan_batch_size",
    "output",
)
_NUM_TEXTS = flags.DEFINE_integer("num_texts", _d.num_texts, "Texts scanned by simple/fast.")
_REPEATS = flags.DEFINE_integer("repeats", _d.repeats, "Timed repeats per method (median).")
_AUTHORS_TEXTS = flags.DEFINE_integer(
    "authors_texts", _d.authors_texts, "Most texts the (slow) authors' method is timed on."
)
_SCALING = flags.DEFINE_bool("scaling", False, "Also sweep max_len and the number of texts.")
_SCALING_TEXTS = flags.DEFINE_integer(
    "scaling_texts", _d.scaling_texts, "Texts per point of the max_len sweep."
)
_PEAK_MATMUL_SIZE = flags.DEFINE_integer(
    "peak_matmul_size", _d.peak_matmul_size, "Side of the square matmul measuring the peak."
)

_CONVERGENCE_TEXTS = flags.DEFINE_integer(
    "convergence_texts", _d.convergence_texts, "Texts of the state-convergence check (0: skip)."
)
_CONVERGENCE_RUN = flags.DEFINE_string(
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
        max_len=cf.value("max_len") or _d.max_len,  # The shared flag is unset by default.
        data_dir=cf.value("data_dir"),
        repeats=_REPEATS.value,
        lstm_units=cf.value("lstm_units"),
        embedding_dim=cf.value("embedding_dim"),
        vocab_size=cf.value("vocab_size") or _d.vocab_size,
        seed=cf.value("seed"),
        authors_texts=_AUTHORS_TEXTS.value,
        scan_batch_size=cf.value("scan_batch_size"),
        scaling=_SCALING.value,
        scaling_texts=_SCALING_TEXTS.value,
        peak_matmul_size=_PEAK_MATMUL_SIZE.value,
        convergence_texts=_CONVERGENCE_TEXTS.value,
        convergence_run=_CONVERGENCE_RUN.value,
    )
    result = benchmarking.run_benchmark(config, log=lambda line: logging.info("%s", line))
    output = os.path.abspath(cf.value("output"))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=2)
    if result.scaling is not None:
        benchmarking.plot_scaling(result.scaling, os.path.splitext(output)[0] + "_scaling.png")
    print(result.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
