"""Speed benchmark of the BKI deletion scorers against the authors' method.

Times, on one random-weight classifier of the real architecture
(`bki_tf.build_classifier`) and one set of texts:

  * `authors`: the loop of the authors' code (`cirrrr/backdoor-keyword-identification`,
    `main.py`, `get_keywords`): per text, one `model.predict` on the original and all
    its deletion variants padded to `max_len` (Keras' default `batch_size=32`). It is
    slow, so it may be timed on an evenly spread subset of the texts (by length) and
    reported per text.
  * `simple`, `fast` and `generic`: `bki_tf.scoring.deletion_scores` with each method
    (`generic` is the path every model other than the package's BiLSTM/LSTM takes).

The floor is the work of the state-reusing algorithm, `sum_i l_i (l_i - 1)`
single-direction LSTM steps of `8 H^2` FLOP, at this machine's measured fp32 matmul
peak; `floor_fraction` is floor time / fast time. `speedup_bound_at_peak` is the
largest speed-up over the authors' method that any scorer doing the floor's work can
reach here: the authors' measured time over the floor time of the same texts at
peak (their method runs `2 (l + 1) max_len` steps per text, `authors_gflops` is the
rate it achieves on them). `state_convergence` measures the one way to do less than
the floor, an early exit of jobs whose state has met the original pass again
(`bki_tf.convergence.state_convergence`), on the random model and optionally on a
trained one. Token lengths come from a dataset's
`train.csv.gz` (tokenised with `bki_tf.tokenization.tokenize`) or, without one, from
a lognormal fitted to IMDB's train word counts; token ids are random (a random-weight
model's speed does not depend on which words it reads).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from bki_tf import models, tokenization
from bki_tf.bki import convergence, scoring
from bki_tf.runs import attack

METHODS = ("authors", "simple", "fast")
# Lognormal fit (mean and std of log word counts) of IMDB train texts tokenised with
# bki_tf.tokenization.tokenize: median 174, mean 233 words.
IMDB_LOG_MEAN = 5.235
IMDB_LOG_STD = 0.646
_SCALING_LENGTHS = (100, 200, 400, 800)
# State gaps of `convergence.state_convergence`: 0 is exact, the others are not.
CONVERGENCE_TOLERANCES = (0.0, 1e-7, 1e-6, 1e-5)
# Largest |score difference| between methods that counts as equal.
SCORE_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """What to benchmark.

    Attributes:
      num_texts: Texts scanned by `simple` and `fast`.
      max_len: Tokens kept per text (longer texts are cut).
      data_dir: Folder with `train.csv.gz` (`text,label`) giving real token counts;
        None: lognormal IMDB-like counts.
      repeats: Timed repeats per method after a warm-up run; the median is reported.
      lstm_units: Units per LSTM direction (H).
      embedding_dim: Embedding width (d).
      vocab_size: Vocabulary size of the random model.
      seed: Seed of the lengths, ids and weights.
      authors_texts: Most texts the authors' method is timed on.
      scan_batch_size: `batch_size` of `scoring.deletion_scores`.
      scaling: Also sweep `max_len` over (100, 200, 400, 800) and the number of texts.
      scaling_texts: Texts per point of the `max_len` sweep.
      peak_matmul_size: Side of the square `tf.matmul` that measures the peak.
      convergence_texts: Texts of the state-convergence measurement (0 skips it).
      convergence_run: Workdir of an attack run (`experiments.attack`) whose trained
        model is measured for state convergence too, on its first `convergence_texts`
        training texts; None: the random model only.
    """

    num_texts: int = 200
    max_len: int = 400
    data_dir: str | None = None
    repeats: int = 3
    lstm_units: int = 128
    embedding_dim: int = 50
    vocab_size: int = 10000
    seed: int = 0
    authors_texts: int = 16
    scan_batch_size: int = scoring.DEFAULT_BATCH_SIZE
    scaling: bool = False
    scaling_texts: int = 32
    peak_matmul_size: int = 4096
    convergence_texts: int = 16
    convergence_run: str | None = None

    def __post_init__(self):
        for name in ("num_texts", "max_len", "repeats", "lstm_units", "embedding_dim",
                     "authors_texts", "scaling_texts", "peak_matmul_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.vocab_size < 3:
            raise ValueError(
                f"vocab_size must be >= 3 (padding, OOV, a word); got {self.vocab_size}."
            )
        if self.data_dir is not None and not os.path.isfile(
            os.path.join(self.data_dir, "train.csv.gz")
        ):
            raise FileNotFoundError(
                f"No train.csv.gz in data_dir={self.data_dir!r}; pass a dataset folder like "
                "shared/data/imdb, or leave it unset for IMDB-like synthetic lengths."
            )
        if self.convergence_texts < 0:
            raise ValueError(f"convergence_texts must be >= 0; got {self.convergence_texts}.")
        if self.convergence_run is not None and not attack.is_complete(self.convergence_run):
            raise FileNotFoundError(
                f"convergence_run={self.convergence_run!r} holds no complete attack run; pass "
                "the --workdir of a finished `python -m experiments.attack`, or leave it unset."
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BenchmarkResult:
    """Timings of one benchmark run (see the module docstring)."""

    config: dict
    device: str
    length_source: str
    length_stats: dict
    texts_per_s: dict
    seconds: dict
    cores_used: dict
    speedup_vs_authors: float
    speedup_vs_authors_same_texts: float
    speedup_vs_simple: float
    matmul_peak_gflops: float
    matmul_peak_samples_gflops: list
    floor_gflop: float
    floor_fraction: float
    floor_fraction_cpu_time: float
    fast_gflops: float
    authors_gflops: float
    speedup_bound_at_peak: float
    max_abs_diff: dict
    scores_match: bool
    authors_timed_texts: int
    authors_extrapolated: bool
    projected_imdb_10k_minutes: float
    projected_10k_minutes_these_texts: float
    peak_memory_mb: float
    notes: list
    state_convergence: dict | None = None
    scaling: dict | None = None
    speedup_vs_generic: float | None = None  # Absent from results written before it.
    # The refined variant's local impacts (fast method), against their own floor.
    prefix_floor_gflop: float | None = None
    prefix_floor_fraction: float | None = None
    prefix_floor_fraction_cpu_time: float | None = None

    def __post_init__(self):
        missing = [m for m in METHODS if m not in self.texts_per_s]
        if missing:
            raise ValueError(f"texts_per_s lacks methods {missing}; it needs all of {METHODS}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        rates = ", ".join(f"{m} {v:.3g}" for m, v in self.texts_per_s.items())
        return " | ".join(
            [
                f"texts/s: {rates}",
                f"fast/authors {self.speedup_vs_authors:.1f}x "
                f"({self.speedup_vs_authors_same_texts:.1f}x on the same texts), "
                f"fast/simple {self.speedup_vs_simple:.1f}x"
                + (
                    ""
                    if self.speedup_vs_generic is None
                    else f", fast/generic {self.speedup_vs_generic:.1f}x"
                ),
                f"fast {self.fast_gflops:.0f} GFLOP/s = {100 * self.floor_fraction:.0f}% of the "
                f"floor at peak {self.matmul_peak_gflops:.0f} GFLOP/s "
                f"({100 * self.floor_fraction_cpu_time:.0f}% per CPU-second, "
                f"{self.cores_used['fast']:.1f} cores used)",
                *(
                    []
                    if self.prefix_floor_fraction is None
                    else [
                        f"local impacts {self.texts_per_s['prefix_fast']:.3g} texts/s = "
                        f"{100 * self.prefix_floor_fraction:.0f}% of their floor "
                        f"({100 * self.prefix_floor_fraction_cpu_time:.0f}% per CPU-second)"
                    ]
                ),
                f"authors {self.authors_gflops:.0f} GFLOP/s, so at most "
                f"{self.speedup_bound_at_peak:.1f}x over it at the floor and peak",
                f"max |diff| {max(self.max_abs_diff.values()):.2g}"
                + ("" if self.scores_match else f" > {SCORE_TOLERANCE}: SCORES DIFFER"),
                f"10k IMDB scan ~{self.projected_imdb_10k_minutes:.1f} min",
                *self._convergence_summary(),
                f"peak RSS {self.peak_memory_mb:.0f} MB",
                self.device,
            ]
        )

    def _convergence_summary(self) -> list[str]:
        if not self.state_convergence:
            return []
        lines = []
        for key in ("random_model", "trained_model"):
            if key in self.state_convergence:
                shares = ", ".join(
                    f"{p['tolerance']:g}: {100 * p['work_fraction']:.1f}%"
                    for p in self.state_convergence[key]
                )
                lines.append(f"{key} steps left by state tolerance {{{shares}}}")
        return lines


def measure_matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of a `[size, size] x [size, size]` `tf.matmul`."""
    a = tf.random.stateless_normal([size, size], seed=[0, 1])
    b = tf.random.stateless_normal([size, size], seed=[0, 2])
    matmul = tf.function(tf.matmul)  # One graph: only the kernel is timed.
    matmul(a, b).numpy()
    best = min(_timed(lambda: matmul(a, b).numpy()) for _ in range(repeats))
    return 2.0 * size**3 / best / 1e9


def text_lengths(config: BenchmarkConfig) -> tuple[np.ndarray, str]:
    """Uncut token counts `int64 [num_texts]` and a description of their source."""
    rng = np.random.default_rng(config.seed)
    if config.data_dir is None:
        lengths = np.round(rng.lognormal(IMDB_LOG_MEAN, IMDB_LOG_STD, config.num_texts))
        return np.maximum(lengths, 1).astype(np.int64), (
            f"synthetic lognormal(log-mean {IMDB_LOG_MEAN}, log-std {IMDB_LOG_STD}) IMDB-like"
        )
    path = os.path.join(config.data_dir, "train.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    if not texts:
        raise ValueError(f"{path} holds no texts.")
    chosen = rng.choice(len(texts), size=config.num_texts, replace=config.num_texts > len(texts))
    lengths = np.array([len(tokenization.tokenize(texts[i])) for i in chosen], np.int64)
    return lengths, f"token counts of {config.num_texts} random texts of {path}"


def random_texts(
    lengths: np.ndarray, max_len: int, vocab_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random ids in `[2, vocab_size)` for texts cut to `max_len`: `(ids, lengths)`."""
    lengths = np.minimum(lengths, max_len).astype(np.int32)
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(2, vocab_size, size=[len(lengths), max_len]).astype(np.int32)
    ids[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def authors_deletion_scores(
    model: keras.Model, ids: np.ndarray, lengths: np.ndarray
) -> list[np.ndarray]:
    """The authors' scoring loop: one `model.predict` per text on all its variants.

    Args:
      model: A classifier from `bki_tf.build_classifier`.
      ids: `int32 [N, max_len]` right-padded ids; every variant is padded to `max_len`.
      lengths: `int [N]` token counts.

    Returns:
      `N` arrays `float32 [lengths[i]]`, as `scoring.deletion_scores`.
    """
    max_len = ids.shape[1]
    scores = []
    for row, length in zip(ids, lengths):
        length = int(length)
        if length == 0:
            scores.append(np.zeros([0], np.float32))
            continue
        variants = np.zeros([length + 1, max_len], np.int32)
        variants[0, :length] = row[:length]
        for j in range(length):
            variants[j + 1, : length - 1] = np.delete(row[:length], j)
        hidden = model.predict(variants, verbose=0)[1]
        scores.append(np.max(np.abs(hidden[1:] - hidden[:1]), axis=1).astype(np.float32))
    return scores


def run_benchmark(
    config: BenchmarkConfig, log: Callable[[str], None] = lambda message: None
) -> BenchmarkResult:
    """Runs the benchmark of the module docstring.

    Args:
      config: What to measure.
      log: Receives one line per finished measurement.

    Returns:
      The timings, speedups, floor fraction, score agreement and memory peak.
    """
    keras.utils.set_random_seed(config.seed)
    model = models.build_classifier(
        config.vocab_size,
        2,
        embedding_dim=config.embedding_dim,
        lstm_units=config.lstm_units,
        seed=config.seed,
    )
    raw_lengths, source = text_lengths(config)
    ids, lengths = random_texts(raw_lengths, config.max_len, config.vocab_size, config.seed)
    peak_samples = [measure_matmul_peak(config.peak_matmul_size)]
    log(f"fp32 matmul peak {peak_samples[0]:.1f} GFLOP/s")

    def fast(i, n):
        return scoring.deletion_scores(model, i, n, "fast", config.scan_batch_size)

    def simple(i, n):
        return scoring.deletion_scores(model, i, n, "simple", config.scan_batch_size)

    def generic(i, n):
        return scoring.deletion_scores(model, i, n, "generic", config.scan_batch_size)

    # Warm-ups: the fast run compiles every tile shape of these texts.
    fast_scores = fast(ids, lengths)
    simple(ids[:2], lengths[:2])
    cores_used = {}
    seconds = {}
    seconds["fast"], cores_used["fast"] = _median_seconds(
        lambda: fast(ids, lengths), config.repeats
    )
    seconds["simple"], cores_used["simple"] = _median_seconds(
        lambda: simple(ids, lengths), config.repeats
    )
    log(f"fast {seconds['fast']:.2f} s, simple {seconds['simple']:.2f} s for {len(ids)} texts")
    simple_scores = simple(ids, lengths)
    # The path any other Keras model takes: every shortened text run unpadded.
    generic_scores = generic(ids, lengths)  # Also the warm-up.
    seconds["generic"], cores_used["generic"] = _median_seconds(
        lambda: generic(ids, lengths), config.repeats
    )
    log(f"generic {seconds['generic']:.2f} s for {len(ids)} texts")

    def prefix(i, n):
        return scoring.prefix_scores(model, i, n, config.scan_batch_size, method="fast")

    prefix(ids, lengths)  # Warm-up: compiles the backward re-runs' tile shapes.
    seconds["prefix_fast"], cores_used["prefix_fast"] = _median_seconds(
        lambda: prefix(ids, lengths), config.repeats
    )
    log(f"local impacts (fast) {seconds['prefix_fast']:.2f} s for {len(ids)} texts")

    subset = _spread_subset(lengths, config.authors_texts)
    authors_deletion_scores(model, ids[subset[:1]], lengths[subset[:1]])  # Warm-up.
    authors_seconds, cores_used["authors"] = _median_seconds(
        lambda: authors_deletion_scores(model, ids[subset], lengths[subset]), config.repeats
    )
    authors_scores = authors_deletion_scores(model, ids[subset], lengths[subset])
    fast(ids[subset], lengths[subset])  # Warm-up: the subset has its own tile shapes.
    fast_subset_seconds, _ = _median_seconds(
        lambda: fast(ids[subset], lengths[subset]), config.repeats
    )
    log(
        f"authors {authors_seconds:.2f} s, fast {fast_subset_seconds:.2f} s for the same "
        f"{len(subset)} texts"
    )

    # Measured again at the end: on a shared machine the best sample is the closest to
    # the hardware's peak (a low one would flatter floor_fraction).
    peak_samples.append(measure_matmul_peak(config.peak_matmul_size))
    peak = max(peak_samples)
    log(f"fp32 matmul peak {peak_samples[1]:.1f} GFLOP/s (using the best, {peak:.1f})")
    texts_per_s = {
        "authors": len(subset) / authors_seconds,
        "simple": len(ids) / seconds["simple"],
        "fast": len(ids) / seconds["fast"],
        "generic": len(ids) / seconds["generic"],
        "prefix_fast": len(ids) / seconds["prefix_fast"],
    }
    seconds["authors_subset"] = authors_seconds
    seconds["fast_subset"] = fast_subset_seconds
    floor_gflop = _floor_gflop(lengths, config.lstm_units)
    floor_fraction = floor_gflop / peak / seconds["fast"]
    # The same against the CPU time the fast scorer got: robust to other processes
    # time-sharing the cores (not to their cache pollution).
    fast_cpu_seconds = seconds["fast"] * cores_used["fast"]
    floor_fraction_cpu_time = floor_gflop / (peak / (os.cpu_count() or 1)) / fast_cpu_seconds
    # Local impacts re-run the backward LSTM over every prefix: l (l - 1) / 2 steps.
    prefix_floor_gflop = floor_gflop / 2
    prefix_floor_fraction = prefix_floor_gflop / peak / seconds["prefix_fast"]
    prefix_cpu_seconds = seconds["prefix_fast"] * cores_used["prefix_fast"]
    prefix_floor_fraction_cpu_time = (
        prefix_floor_gflop / (peak / (os.cpu_count() or 1)) / prefix_cpu_seconds
    )
    imdb_mean_steps = _imdb_mean_steps(config)
    max_abs_diff = {
        "fast_vs_authors": _max_abs_diff([fast_scores[i] for i in subset], authors_scores),
        "simple_vs_authors": _max_abs_diff([simple_scores[i] for i in subset], authors_scores),
        "fast_vs_simple": _max_abs_diff(fast_scores, simple_scores),
        "fast_vs_generic": _max_abs_diff(fast_scores, generic_scores),
    }
    fast_gflops = floor_gflop / seconds["fast"]
    subset_lengths = lengths[subset].astype(np.float64)
    authors_gflop = (
        float(np.sum(2 * (subset_lengths + 1) * config.max_len)) * 8 * config.lstm_units**2 / 1e9
    )
    speedup_bound = authors_seconds * peak / _floor_gflop(lengths[subset], config.lstm_units)
    scores_match = max(max_abs_diff.values()) <= SCORE_TOLERANCE
    if not scores_match:
        log(f"SCORES DIFFER beyond {SCORE_TOLERANCE}: {max_abs_diff}")
    result = BenchmarkResult(
        config=config.to_dict(),
        device=_device_name(),
        length_source=source,
        length_stats=_length_stats(lengths),
        texts_per_s=texts_per_s,
        seconds=seconds,
        cores_used=cores_used,
        speedup_vs_authors=texts_per_s["fast"] / texts_per_s["authors"],
        speedup_vs_authors_same_texts=authors_seconds / fast_subset_seconds,
        speedup_vs_simple=texts_per_s["fast"] / texts_per_s["simple"],
        speedup_vs_generic=texts_per_s["fast"] / texts_per_s["generic"],
        prefix_floor_gflop=prefix_floor_gflop,
        prefix_floor_fraction=prefix_floor_fraction,
        prefix_floor_fraction_cpu_time=prefix_floor_fraction_cpu_time,
        matmul_peak_gflops=peak,
        matmul_peak_samples_gflops=peak_samples,
        floor_gflop=floor_gflop,
        floor_fraction=floor_fraction,
        floor_fraction_cpu_time=floor_fraction_cpu_time,
        fast_gflops=fast_gflops,
        authors_gflops=authors_gflop / authors_seconds,
        speedup_bound_at_peak=speedup_bound,
        max_abs_diff=max_abs_diff,
        scores_match=scores_match,
        authors_timed_texts=len(subset),
        authors_extrapolated=len(subset) < len(ids),
        # 10,000 IMDB texts cut to max_len at the fast scorer's measured GFLOP/s.
        projected_imdb_10k_minutes=1e4
        * imdb_mean_steps
        * 8
        * config.lstm_units**2
        / (fast_gflops * 1e9)
        / 60,
        projected_10k_minutes_these_texts=1e4 / texts_per_s["fast"] / 60,
        peak_memory_mb=0.0,
        notes=[
            "authors: per text one model.predict (Keras default batch_size=32) on the original "
            "and all deletion variants right-padded to max_len, as get_keywords in the "
            "authors' main.py; timed on an evenly spread (by length) subset of "
            f"{len(subset)} texts when fewer than num_texts, texts/s extrapolated; "
            "speedup_vs_authors_same_texts times fast on exactly that subset.",
            "simple/fast: bki_tf.scoring.deletion_scores; medians of repeats after warm-up "
            "(XLA compilation excluded).",
            "cores_used: process CPU seconds / wall seconds while timing; below os.cpu_count() "
            "when other processes shared the machine. floor_fraction_cpu_time: floor time "
            "over the fast scorer's CPU time at peak / os.cpu_count() per core.",
            "floor: sum l(l-1) * 8 H^2 FLOP at the measured matmul peak (best of a square "
            f"[{config.peak_matmul_size}]^2 tf.matmul timed before and after the scorers).",
            "speedup_bound_at_peak: the authors' time on their subset over that subset's floor "
            "time at peak, the most any scorer doing the floor's work could gain over them; "
            "authors_gflops: 2 (l+1) max_len recurrent steps of 8 H^2 FLOP per text over "
            "their time (input projections and the dense head not counted).",
            "state_convergence: share of the floor's steps a job would still run if it "
            "stopped once its (h, c) came within `tolerance` (max abs) of the original pass' "
            "state at the same position; tolerance 0 (bit-identical) is the only exact one; "
            "random_model on an evenly spread subset of the texts, trained_model on the "
            "first training texts of convergence_run.",
            "prefix_fast: the refined variant's local impacts (scoring.prefix_scores, fast); "
            "their floor is half the deletion floor (the backward LSTM re-run over every "
            "prefix, l (l-1) / 2 steps; the forward half comes from the first pass).",
            "projected_imdb_10k_minutes: 10,000 texts with the mean l(l-1) of IMDB-like "
            "lengths cut to max_len, at the fast scorer's measured GFLOP/s; "
            "projected_10k_minutes_these_texts: 10,000 / fast texts_per_s.",
        ],
    )
    if config.convergence_texts:
        result.state_convergence = _state_convergence(model, ids, lengths, config)
        log(f"state convergence: {result.state_convergence}")
    if config.scaling:
        result.scaling = _scaling(model, raw_lengths, config, log)
    result.peak_memory_mb = _peak_rss_mb()
    return result


def plot_scaling(scaling: dict, path: str) -> None:
    """Writes texts/s vs max_len and vs number of texts (log-log) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "by_max_len", "max_len (tokens)"),
        (axes[1], "by_num_texts", "number of texts"),
    ):
        points = scaling[key]
        x = [p["x"] for p in points]
        for method, marker in (("fast", "o"), ("simple", "s")):
            ax.plot(x, [p["texts_per_s"][method] for p in points], marker=marker, label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(x, [str(v) for v in x])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_xlabel(label)
        ax.set_ylabel("texts / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title(f"{scaling['texts_per_point']} texts per point")
    axes[1].set_title(f"max_len {scaling['max_len']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _scaling(model, raw_lengths, config, log) -> dict:
    def rates(ids, lengths):
        out = {}
        for method in ("fast", "simple"):

            def run(method=method):
                return scoring.deletion_scores(model, ids, lengths, method, config.scan_batch_size)

            run()  # Warm-up (compilation).
            out[method] = len(ids) / _median_seconds(run, 1)[0]
        return out

    def point(x, ids, lengths):
        texts_per_s = rates(ids, lengths)
        floor = _floor_gflop(lengths, config.lstm_units)
        return {
            "x": x,
            "texts_per_s": texts_per_s,
            # Rates in floor GFLOP/s do not depend on the texts' length mix.
            "floor_gflops": {m: floor * r / len(ids) for m, r in texts_per_s.items()},
            "mean_length": float(np.mean(lengths)),
        }

    by_max_len = []
    count = min(config.scaling_texts, len(raw_lengths))
    for max_len in _SCALING_LENGTHS:
        ids, lengths = random_texts(raw_lengths[:count], max_len, config.vocab_size, config.seed)
        by_max_len.append(point(max_len, ids, lengths))
        log(f"scaling max_len={max_len}: {by_max_len[-1]['texts_per_s']}")
    by_num_texts = []
    for count in sorted({max(1, len(raw_lengths) // k) for k in (8, 4, 2, 1)}):
        ids, lengths = random_texts(
            raw_lengths[:count], config.max_len, config.vocab_size, config.seed
        )
        by_num_texts.append(point(count, ids, lengths))
        log(f"scaling num_texts={count}: {by_num_texts[-1]['texts_per_s']}")
    return {
        "by_max_len": by_max_len,
        "by_num_texts": by_num_texts,
        "texts_per_point": min(config.scaling_texts, len(raw_lengths)),
        "max_len": config.max_len,
    }


def _state_convergence(model, ids, lengths, config: BenchmarkConfig) -> dict:
    """`convergence.state_convergence` on the benchmark's texts and, if set, a trained run."""

    def fractions(model, ids, lengths):
        shares = convergence.state_convergence(model, ids, lengths, CONVERGENCE_TOLERANCES)
        return [{"tolerance": t, "work_fraction": f} for t, f in shares.items()]

    subset = _spread_subset(lengths, config.convergence_texts)
    out = {"random_model": fractions(model, ids[subset], lengths[subset])}
    if config.convergence_run is not None:
        run = attack.load_run(config.convergence_run)
        texts = run.train.texts[: config.convergence_texts]
        trained_ids, trained_lengths = tokenization.encode(run.vectorizer(), texts)
        out["trained_run"] = config.convergence_run
        out["trained_model"] = fractions(run.model, trained_ids, trained_lengths)
        out["trained_mean_length"] = float(np.mean(trained_lengths))
    return out


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall seconds of `repeats` calls, and the CPU cores they kept busy."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu = _cpu_seconds()
        walls.append(_timed(fn))
        cpus.append(_cpu_seconds() - cpu)
    return statistics.median(walls), sum(cpus) / sum(walls)


def _spread_subset(lengths: np.ndarray, count: int) -> np.ndarray:
    """`count` indices evenly spread over the texts sorted by length."""
    order = np.argsort(lengths, kind="stable")
    if count >= len(order):
        return np.sort(order)
    return np.sort(order[np.round(np.linspace(0, len(order) - 1, count)).astype(int)])


def _floor_gflop(lengths: np.ndarray, units: int) -> float:
    lengths = lengths.astype(np.float64)
    return float(np.sum(lengths * (lengths - 1)) * 8 * units**2 / 1e9)


def _imdb_mean_steps(config: BenchmarkConfig) -> float:
    """Mean `l (l - 1)` of IMDB-like texts cut to `max_len`."""
    rng = np.random.default_rng(12345)
    lengths = np.round(rng.lognormal(IMDB_LOG_MEAN, IMDB_LOG_STD, 200_000))
    lengths = np.clip(lengths, 1, config.max_len)
    return float(np.mean(lengths * (lengths - 1)))


def _max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    diffs = [float(np.max(np.abs(x - y))) for x, y in zip(a, b) if len(x)]
    return max(diffs, default=0.0)


def _length_stats(lengths: np.ndarray) -> dict:
    return {
        "mean": float(np.mean(lengths)),
        "median": float(np.median(lengths)),
        "max": int(np.max(lengths)),
        "min": int(np.min(lengths)),
        "mean_l_times_l_minus_1": float(np.mean(lengths.astype(np.float64) * (lengths - 1))),
    }


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores"
