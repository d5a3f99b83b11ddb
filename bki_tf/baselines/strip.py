"""STRIP for text: an inference-time trigger detector from prediction entropy.

Yansong Gao, Chang Xu, Derui Wang, Shiping Chen, Damith C. Ranasinghe & Surya
Nepal, "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks", ACSAC 2019
(arXiv:1902.06531), Sec. 4: an input is perturbed N times by superimposing other,
clean inputs; a trojaned input keeps its (target) prediction whatever is mixed in, so
the entropy of its predictions is low. With `p_n` the class distribution predicted for
the n-th perturbed copy, the input's score is the mean per-copy entropy

    H = (1/N) * sum_n  -sum_c p_n[c] * log2 p_n[c]           (Gao et al., Eqs. 4-5),

and inputs with `H` below a threshold are rejected. The threshold is set on clean
held-out inputs for a chosen false rejection rate (FRR).

Adapted to text as in OpenBackdoor (Cui et al., NeurIPS 2022 Datasets & Benchmarks;
`openbackdoor/defenders/strip_defender.py`): a copy replaces `swap_ratio` of the
input's words. Differences from that implementation, all deliberate:

* Words are model tokens (token ids after `bki_tf.tokenization`), not whitespace
  words, and exactly `m = max(1, int(len * swap_ratio))` distinct positions are
  replaced (OpenBackdoor draws `int(len * swap_ratio)` positions with replacement, so
  fewer words may change, and none for a one-word text).
* `replacement="tfidf"` (default) follows OpenBackdoor: each copy takes a random clean
  reference text (the "superimposed" input) and writes its highest-TF-IDF words, in
  order, into the chosen positions (cycling if the donor has fewer distinct words).
  TF-IDF is scikit-learn's smoothed form, `tf * (ln((1 + n) / (1 + df)) + 1)`, computed
  over the reference texts without OpenBackdoor's English stop-word list (the IDF
  already discounts frequent words). `replacement="frequency"` instead draws each
  replacement word from the reference texts' unigram distribution.
* Entropies are averaged over the copies of each input. (OpenBackdoor reshapes the
  text-major list of per-copy entropies with `np.reshape(entropy, (repeat, -1))` and
  averages axis 0, which mixes the copies of different texts; this is the intended
  per-input mean.)
* The threshold is OpenBackdoor's: the clean calibration entropies sorted ascending,
  `threshold = sorted[int(n * frr)]`; an input is rejected if `H < threshold`.

Suspicion score of the `DetectionResult`: `-H` (higher = more suspicious).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np

from bki_tf import artifacts, detection, tokenization, training

METHOD = "strip"
REPLACEMENTS = ("tfidf", "frequency")
# Copies predicted per call of `training.predict`, bounding memory for long texts.
_MAX_COPIES_PER_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class StripConfig:
    """Hyper-parameters of text STRIP (defaults: OpenBackdoor's).

    Attributes:
      num_perturbations: Perturbed copies per input (N; OpenBackdoor's `repeat`).
      swap_ratio: Share of an input's tokens replaced in each copy.
      replacement: `tfidf` (a donor text's top TF-IDF words) or `frequency`.
      frr: Target false rejection rate on clean inputs, in [0, 1).
      seed: Seed of positions, donors and words.
      batch_size: Texts per forward pass.
    """

    num_perturbations: int = 5
    swap_ratio: float = 0.5
    replacement: str = "tfidf"
    frr: float = 0.01
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        if self.num_perturbations < 1:
            raise ValueError(
                f"num_perturbations must be >= 1, got {self.num_perturbations}; "
                "OpenBackdoor uses 5, Gao et al. 100."
            )
        if not 0.0 < self.swap_ratio <= 1.0:
            raise ValueError(f"swap_ratio must lie in (0, 1], got {self.swap_ratio}; e.g. 0.5.")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(
                f"Unknown replacement {self.replacement!r}; choose one of {REPLACEMENTS}."
            )
        if not 0.0 <= self.frr < 1.0:
            raise ValueError(f"frr must lie in [0, 1), got {self.frr}; e.g. 0.01 or 0.05.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Perturber:
    """Makes STRIP copies of token-id sequences from clean reference texts.

    Args:
      reference_ids: `int [R, max_len]` right-padded ids of clean held-out texts (the
        donors); padding (0) and OOV (1) are never used as replacement words.
      vocab_size: Size of the vocabulary the ids come from.
      replacement: `tfidf` or `frequency` (see the module docstring).
    """

    def __init__(self, reference_ids: np.ndarray, vocab_size: int, replacement: str = "tfidf"):
        if replacement not in REPLACEMENTS:
            raise ValueError(f"Unknown replacement {replacement!r}; choose one of {REPLACEMENTS}.")
        ref = np.asarray(reference_ids)
        if ref.ndim != 2 or not np.issubdtype(ref.dtype, np.integer):
            raise ValueError(
                f"reference_ids must be an int [R, max_len] matrix, got dtype {ref.dtype} "
                f"and shape {ref.shape}."
            )
        if ref.size and (ref.min() < 0 or ref.max() >= vocab_size):
            raise ValueError(
                f"reference_ids hold ids outside the vocabulary of {vocab_size} tokens; encode "
                "them with the victim's vectorizer."
            )
        self.replacement = replacement
        docs = [row[row > tokenization.OOV_ID] for row in ref]
        docs = [d for d in docs if d.size]
        if not docs:
            raise ValueError(
                "No reference text holds an in-vocabulary word; STRIP needs clean held-out "
                "texts to take replacement words from."
            )
        if replacement == "frequency":
            counts = np.bincount(np.concatenate(docs), minlength=vocab_size).astype(np.float64)
            self._words = np.flatnonzero(counts)
            self._probs = counts[self._words] / counts[self._words].sum()
        else:
            df = np.zeros(vocab_size, dtype=np.float64)
            for d in docs:
                df[np.unique(d)] += 1
            idf = np.log((1.0 + len(docs)) / (1.0 + df)) + 1.0
            self._donors = []
            for d in docs:
                words, tf = np.unique(d, return_counts=True)
                score = tf * idf[words]
                self._donors.append(words[np.lexsort((words, -score))])

    def perturb(self, ids: np.ndarray, copies: int, swap_ratio: float, rng: np.random.Generator):
        """`copies` perturbed versions of each row of `ids`.

        Args:
          ids: `int [n, max_len]` right-padded token ids.
          copies: Copies per row.
          swap_ratio: Share of each row's tokens replaced.
          rng: Seeded generator.

        Returns:
          `int32 [n * copies, max_len]`, row-major: the copies of row 0 first.
        """
        ids = np.asarray(ids, dtype=np.int32)
        out = np.repeat(ids, copies, axis=0)
        lengths = (ids != tokenization.PAD_ID).sum(axis=1)
        for i, length in enumerate(lengths):
            if length == 0:
                continue
            m = max(1, int(length * swap_ratio))
            for c in range(copies):
                row = i * copies + c
                positions = rng.choice(length, size=m, replace=False)
                if self.replacement == "frequency":
                    words = rng.choice(self._words, size=m, p=self._probs)
                else:
                    donor = self._donors[rng.integers(len(self._donors))]
                    words = donor[np.arange(m) % donor.size]
                out[row, positions] = words
        return out


def prediction_entropy(probabilities: np.ndarray) -> np.ndarray:
    """`-sum_c p[c] log2 p[c]` per row of `float [n, C]` probabilities, in bits."""
    p = np.asarray(probabilities, dtype=np.float64)
    logs = np.log2(np.clip(p, np.finfo(np.float64).tiny, None))
    return -(p * logs).sum(axis=1)


def entropies(
    model: keras.Model,
    ids: np.ndarray,
    perturber: Perturber,
    config: StripConfig,
    seed_offset: int = 0,
) -> np.ndarray:
    """Mean prediction entropy of each input over its STRIP copies (Gao et al., Eq. 5).

    Args:
      model: The victim (`bki_tf.models.build_classifier`).
      ids: `int [n, max_len]` token ids of the inputs to score.
      perturber: Built from clean reference texts.
      config: Copies, swap ratio and seed.
      seed_offset: Added to `config.seed`, so that different input sets get
        different, reproducible perturbations.

    Returns:
      `float64 [n]` mean entropies in bits; low means a trigger is likely present.
    """
    ids = np.asarray(ids, dtype=np.int32)
    rng = np.random.default_rng([config.seed, seed_offset])
    copies = config.num_perturbations
    rows_per_chunk = max(1, _MAX_COPIES_PER_CHUNK // copies)
    out = np.zeros(len(ids))
    for start in range(0, len(ids), rows_per_chunk):
        chunk = ids[start : start + rows_per_chunk]
        perturbed = perturber.perturb(chunk, copies, config.swap_ratio, rng)
        probs, _ = training.predict(model, perturbed, batch_size=config.batch_size)
        out[start : start + len(chunk)] = prediction_entropy(probs).reshape(-1, copies).mean(1)
    return out


def calibrate_threshold(clean_entropies: np.ndarray, frr: float) -> float:
    """The entropy threshold that rejects about `frr` of clean inputs (OpenBackdoor's rule).

    Args:
      clean_entropies: `float [n]` STRIP entropies of clean held-out inputs.
      frr: Target false rejection rate in [0, 1).

    Returns:
      `sorted(clean_entropies)[int(n * frr)]`; inputs with a lower entropy are rejected.
    """
    values = np.sort(np.asarray(clean_entropies, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            "STRIP needs the entropies of at least one clean calibration text to set its "
            "threshold; pass a non-empty clean held-out set."
        )
    if not 0.0 <= frr < 1.0:
        raise ValueError(f"frr must lie in [0, 1), got {frr}.")
    return float(values[int(values.size * frr)])


def detect(entropy: np.ndarray, threshold: float, report: dict | None = None):
    """The STRIP decision: reject inputs whose mean entropy is below `threshold`.

    Returns:
      A `DetectionResult` with scores `-entropy` and `is_poison = entropy < threshold`.
    """
    entropy = np.asarray(entropy, dtype=np.float64)
    if not math.isfinite(threshold):
        raise ValueError(f"STRIP threshold must be finite, got {threshold}.")
    return detection.DetectionResult(
        method=METHOD,
        scores=-entropy,
        is_poison=entropy < threshold,
        report={"threshold": float(threshold), **(report or {})},
    )


@dataclasses.dataclass(frozen=True, eq=False)
class StripOutcome:
    """STRIP calibrated on clean texts and measured on clean and triggered texts.

    Attributes:
      config: The settings.
      threshold: Entropy threshold set on the calibration texts.
      frr: Rejected share of the clean evaluation texts (false rejection rate).
      far: Accepted share of the triggered texts (false acceptance rate).
      detection: The decision over `[clean evaluation texts, triggered texts]`, in
        that order (ground truth: the triggered ones are poisoned).
      evaluation: Precision / recall / F1 / AUROC of that decision.
      asr_before: Triggered texts classified as the target, without STRIP.
      accuracy_before: Clean evaluation accuracy without STRIP.
      asr_after: Triggered texts accepted *and* classified as the target.
      accuracy_after: Clean evaluation texts accepted *and* classified correctly.
      clean_entropy: `float [n_clean]` entropies of the clean evaluation texts.
      triggered_entropy: `float [n_triggered]` entropies of the triggered texts.
      calibration_entropy: `float [n_calibration]` entropies of the calibration texts.
    """

    config: StripConfig
    threshold: float
    frr: float
    far: float
    detection: detection.DetectionResult
    evaluation: detection.DetectionEvaluation
    asr_before: float
    accuracy_before: float
    asr_after: float
    accuracy_after: float
    clean_entropy: np.ndarray
    triggered_entropy: np.ndarray
    calibration_entropy: np.ndarray

    def __post_init__(self):
        for name in ("frr", "far", "asr_before", "accuracy_before", "asr_after", "accuracy_after"):
            v = getattr(self, name)
            if not (math.isnan(v) or 0.0 <= v <= 1.0):
                raise ValueError(f"STRIP {name} must lie in [0, 1], got {v}.")

    def to_dict(self) -> dict[str, Any]:
        return artifacts.to_jsonable(
            {
                "config": self.config.to_dict(),
                "threshold": self.threshold,
                "frr": self.frr,
                "far": self.far,
                "evaluation": self.evaluation.to_dict(),
                "asr_before": self.asr_before,
                "accuracy_before": self.accuracy_before,
                "asr_after": self.asr_after,
                "accuracy_after": self.accuracy_after,
                "num_calibration": int(self.calibration_entropy.size),
                "num_clean": int(self.clean_entropy.size),
                "num_triggered": int(self.triggered_entropy.size),
                "clean_entropy": self.clean_entropy,
                "triggered_entropy": self.triggered_entropy,
                "calibration_entropy": self.calibration_entropy,
            }
        )

    def summary(self) -> str:
        return (
            f"STRIP (N={self.config.num_perturbations}, swap {self.config.swap_ratio}, "
            f"target FRR {self.config.frr:.2%}): threshold {self.threshold:.4f} bits, "
            f"FRR {self.frr:.2%} on {self.clean_entropy.size} clean texts, FAR {self.far:.2%} "
            f"on {self.triggered_entropy.size} triggered texts; ASR {self.asr_before:.2%} -> "
            f"{self.asr_after:.2%}, accuracy {self.accuracy_before:.2%} -> "
            f"{self.accuracy_after:.2%}."
        )


def run_strip(
    model: keras.Model,
    calibration_ids: np.ndarray,
    clean_ids: np.ndarray,
    clean_labels: np.ndarray,
    triggered_ids: np.ndarray,
    target: int,
    config: StripConfig | None = None,
    reference_ids: np.ndarray | None = None,
) -> StripOutcome:
    """Calibrates STRIP on clean texts and measures it on clean and triggered texts.

    Args:
      model: The (poisoned) victim.
      calibration_ids: `int [n_cal, max_len]` clean held-out texts: they set the
        threshold and, unless `reference_ids` is given, are the replacement donors.
      clean_ids: `int [n_clean, max_len]` clean evaluation texts (disjoint from the
        calibration texts).
      clean_labels: `int [n_clean]` their labels.
      triggered_ids: `int [n_trig, max_len]` triggered (non-target) texts.
      target: The backdoor's target class (for the ASR).
      config: STRIP settings.
      reference_ids: Optional other clean texts to take replacement words from.

    Returns:
      The threshold, FRR / FAR, detection metrics and ASR / accuracy with STRIP as an
      input filter (a rejected input counts as neither a success nor a correct answer).
    """
    config = config or StripConfig()
    clean_labels = np.asarray(clean_labels)
    if len(clean_ids) == 0 or len(triggered_ids) == 0:
        raise ValueError(
            f"STRIP needs clean and triggered evaluation texts; got {len(clean_ids)} clean "
            f"and {len(triggered_ids)} triggered."
        )
    if len(clean_labels) != len(clean_ids):
        raise ValueError(f"{len(clean_ids)} clean texts but {len(clean_labels)} labels.")
    vocab_size = int(model.get_layer("embedding").input_dim)
    donors = calibration_ids if reference_ids is None else reference_ids
    perturber = Perturber(donors, vocab_size, config.replacement)
    cal_h = entropies(model, calibration_ids, perturber, config, seed_offset=0)
    threshold = calibrate_threshold(cal_h, config.frr)
    clean_h = entropies(model, clean_ids, perturber, config, seed_offset=1)
    trig_h = entropies(model, triggered_ids, perturber, config, seed_offset=2)
    result = detect(
        np.concatenate([clean_h, trig_h]),
        threshold,
        report={
            "config": config.to_dict(),
            "num_clean": len(clean_h),
            "num_triggered": len(trig_h),
        },
    )
    truth = np.r_[np.zeros(len(clean_h), bool), np.ones(len(trig_h), bool)]
    rejected_clean = result.is_poison[: len(clean_h)]
    rejected_trig = result.is_poison[len(clean_h) :]
    clean_pred = training.predict(model, clean_ids)[0].argmax(axis=1)
    trig_pred = training.predict(model, triggered_ids)[0].argmax(axis=1)
    return StripOutcome(
        config=config,
        threshold=threshold,
        frr=float(rejected_clean.mean()),
        far=float(1.0 - rejected_trig.mean()),
        detection=result,
        evaluation=detection.evaluate(result, truth),
        asr_before=float(np.mean(trig_pred == target)),
        accuracy_before=float(np.mean(clean_pred == clean_labels)),
        asr_after=float(np.mean(~rejected_trig & (trig_pred == target))),
        accuracy_after=float(np.mean(~rejected_clean & (clean_pred == clean_labels))),
        clean_entropy=clean_h,
        triggered_entropy=trig_h,
        calibration_entropy=cal_h,
    )
