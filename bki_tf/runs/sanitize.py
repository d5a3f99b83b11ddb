"""Purify a training set and retrain the victim on what remains.

The last two steps of BKI (Chen & Dai 2021, Sec. 4): every training sample a
detector flags is removed, and the same architecture is trained from scratch,
with the same vocabulary and hyper-parameters, on the purified set. Shared by
BKI and the baseline defences so that all are measured the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any

import keras
import numpy as np

from bki_tf import artifacts, detection, embeddings, poisoning, tokenization, training
from bki_tf.runs import attack
from bki_tf.runs import workdir as wd


@dataclasses.dataclass(frozen=True)
class FilterResult:
    """What was removed from the training set.

    Attributes:
      removed_ids: Row ids (the `id` column of train.csv.gz) removed, sorted.
      num_before: Training set size before filtering.
      num_after: Size after filtering.
      num_poison_removed: Removed rows that were poisoned (ground truth).
      num_poison_left: Poisoned rows left in the purified set.
      config: What the removal was computed from (the step's identity in a workdir).
    """

    removed_ids: list[int]
    num_before: int
    num_after: int
    num_poison_removed: int
    num_poison_left: int
    config: dict | None = None

    def __post_init__(self):
        if self.num_before - len(self.removed_ids) != self.num_after:
            raise ValueError(
                f"{self.num_before} rows minus {len(self.removed_ids)} removed is not {self.num_after}."
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FilterResult:
        return artifacts.dataclass_from_dict(cls, d, "filter result")

    def summary(self) -> str:
        return (
            f"removed {self.num_before - self.num_after} of {self.num_before} texts "
            f"({self.num_poison_removed} poisoned); {self.num_poison_left} poisoned left"
        )


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """The victim retrained on a purified set, measured like the original.

    Attributes:
      accuracy: Clean test accuracy after retraining.
      asr: Attack success rate after retraining.
      num_train: Purified training set size.
      num_poison_left: Poisoned samples in it.
      train_seconds: Training wall time.
      history: Per-epoch loss/accuracy.
      untriggered_target_share: Share of the *untriggered* non-target test texts the
        retrained model classifies as the target: what "ASR" would be without any
        trigger. Read ASR after against it.
      untriggered_error: The retrained model's error on those untriggered texts.
      config: The step's identity in a workdir.
      wall_seconds: Whole-step wall time.
      asr_per_trigger: With several `|`-separated triggers, each one's ASR after
        retraining (in trigger order; the triggered test set holds one block per
        trigger); None with one trigger.
    """

    accuracy: float
    asr: float
    num_train: int
    num_poison_left: int
    train_seconds: float
    history: dict
    untriggered_target_share: float | None = None
    untriggered_error: float | None = None
    config: dict | None = None
    wall_seconds: float | None = None
    asr_per_trigger: list | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RetrainResult:
        return artifacts.dataclass_from_dict(cls, d, "retrain result")

    def summary(self) -> str:
        return (
            f"retrained on {self.num_train} texts ({self.num_poison_left} poisoned): accuracy "
            f"{self.accuracy:.2%}, ASR {self.asr:.2%} (untriggered non-target texts classified "
            f"as target: {self.untriggered_target_share:.2%})"
        )


def untriggered_rates(
    model: keras.Model, ids: np.ndarray, labels: np.ndarray, target: int
) -> tuple[float, float]:
    """`(target share, error)` of a model on the clean test texts not of class `target`."""
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels != target)
    if rows.size == 0:
        return float("nan"), float("nan")
    probs, _ = training.predict(model, ids[rows])
    predicted = probs.argmax(axis=1)
    return float(np.mean(predicted == target)), float(np.mean(predicted != labels[rows]))


def filter_rows(run: attack.AttackRun, flagged: np.ndarray) -> tuple[np.ndarray, FilterResult]:
    """Keeps every training row not flagged.

    Args:
      run: The attack run (its training set is not modified).
      flagged: Indices (positions in `run.train`) or a boolean mask of rows to remove.

    Returns:
      `(keep, result)`: the kept positions (`int64`, input order) and the summary.
    """
    n = len(run.train)
    flagged = np.asarray(flagged)
    if flagged.dtype == bool:
        if flagged.shape != (n,):
            raise ValueError(f"Flag mask has shape {flagged.shape}; expected ({n},).")
        mask = flagged.copy()
    else:
        flagged = flagged.astype(np.int64)
        if flagged.size and (flagged.min() < 0 or flagged.max() >= n):
            raise ValueError(
                f"Flagged index out of range [0, {n}): {flagged.min()}..{flagged.max()}."
            )
        mask = np.zeros(n, dtype=bool)
        mask[flagged] = True
    keep = np.flatnonzero(~mask).astype(np.int64)
    poisoned = run.train.is_poisoned
    result = FilterResult(
        removed_ids=sorted(int(i) for i in run.row_ids[mask]),
        num_before=n,
        num_after=len(keep),
        num_poison_removed=int(np.sum(poisoned & mask)),
        num_poison_left=int(np.sum(poisoned & ~mask)),
    )
    return keep, result


def write_filter(
    folder: str,
    run: attack.AttackRun,
    keep: np.ndarray,
    result: FilterResult,
    config: dict | None = None,
) -> FilterResult:
    """Writes the purified set, the removed ids and the summary (summary last).

    Returns:
      The `FilterResult` written to `filter.json`, with the step's `config`.
    """
    os.makedirs(folder, exist_ok=True)
    artifacts.write_training_subset(
        os.path.join(folder, wd.PURIFIED_FILE), run.row_ids[keep], run.train.subset(keep)
    )
    artifacts.write_json(os.path.join(folder, wd.REMOVED_FILE), result.removed_ids)
    if config is not None:
        result = dataclasses.replace(result, config=config)
    artifacts.write_json(os.path.join(folder, wd.FILTER_FILE), result.to_dict())
    return result


def read_purified(folder: str) -> tuple[np.ndarray, object]:
    """Reads a purified training set written by `write_filter`."""
    return artifacts.read_training_set(os.path.join(folder, wd.PURIFIED_FILE))


def per_trigger_asr(model, triggered_ids: np.ndarray, target: int, trigger: str):
    """Each `|`-separated trigger's ASR: its block of the triggered test set.

    The triggered test set holds every non-target test text once per trigger, in
    trigger order (`attack.AttackConfig`). None with one trigger.
    """
    count = len(str(trigger).split(poisoning.TRIGGER_SEPARATOR))
    if count < 2:
        return None
    if len(triggered_ids) % count:
        raise ValueError(
            f"{len(triggered_ids)} triggered test texts do not split into {count} equal "
            "blocks, one per trigger; the run's test sets do not match its config."
        )
    return [
        training.attack_success_rate(model, block, target)
        for block in np.split(np.asarray(triggered_ids), count)
    ]


def retrain(
    run: attack.AttackRun,
    texts: list[str],
    labels: np.ndarray,
    num_poison_left: int,
    verbose: int | str = "auto",
    callbacks: list | None = None,
    validation_split: float | None = None,
) -> tuple[keras.Model, RetrainResult]:
    """Trains a fresh victim on `texts` with the run's vocabulary and hyper-parameters.

    Args:
      run: The attack run (vocabulary, hyper-parameters, test sets).
      texts: The purified training texts.
      labels: Their labels.
      num_poison_left: Poisoned texts among `texts` (reported).
      verbose: Keras `fit` verbosity.
      callbacks: Extra Keras callbacks.
      validation_split: Replaces the run's `validation_split` (None keeps it).

    Returns:
      `(model, result)`: the retrained classifier and its clean accuracy / ASR.
    """
    if len(texts) == 0:
        raise ValueError("The purified training set is empty; the detector removed everything.")
    config = run.config
    train_config = config.train_config()
    if validation_split is not None:
        train_config = dataclasses.replace(train_config, validation_split=validation_split)
    vectorizer = run.vectorizer()
    matrix = None
    glove_path = config.glove_file()
    if glove_path:
        matrix, _ = embeddings.load_glove(glove_path, run.vocabulary)
    model = config.build_classifier(len(run.vocabulary), _num_classes(run), matrix)
    ids, _ = tokenization.encode(vectorizer, texts)
    t0 = time.time()
    history = training.train_classifier(
        model, ids, np.asarray(labels), train_config, callbacks=callbacks, verbose=verbose
    )
    seconds = time.time() - t0
    test_ids, _ = tokenization.encode(vectorizer, run.test_texts)
    trig_ids, _ = tokenization.encode(vectorizer, run.triggered_texts)
    share, error = untriggered_rates(model, test_ids, run.test_labels, run.target)
    return model, RetrainResult(
        accuracy=training.accuracy(model, test_ids, run.test_labels),
        asr=training.attack_success_rate(model, trig_ids, run.target),
        asr_per_trigger=per_trigger_asr(model, trig_ids, run.target, run.config.trigger),
        num_train=len(texts),
        num_poison_left=num_poison_left,
        train_seconds=seconds,
        history=history,
        untriggered_target_share=share,
        untriggered_error=error,
    )


_retrain_victim = retrain  # `sanitize_and_retrain`'s flag of that name shadows it.


def _num_classes(run: attack.AttackRun) -> int:
    return int(run.model.outputs[0].shape[-1])


@dataclasses.dataclass(frozen=True)
class SanitizerOutcome:
    """A training-set sanitizer measured end to end, like BKI.

    Attributes:
      evaluation: Detection quality on the poisoned training set.
      asr_before: ASR of the poisoned victim.
      accuracy_before: Clean accuracy of the poisoned victim.
      asr_after: ASR of the victim retrained on the kept samples (None if not retrained).
      accuracy_after: Clean accuracy after retraining (None if not retrained).
      num_poison_left: Poisoned samples kept for retraining.
      retrain_seconds: Retraining wall time (None if not retrained).
      asr_per_trigger_after: With several triggers, each one's ASR after retraining.
    """

    evaluation: detection.DetectionEvaluation
    asr_before: float
    accuracy_before: float
    asr_after: float | None
    accuracy_after: float | None
    num_poison_left: int
    retrain_seconds: float | None
    asr_per_trigger_after: list | None = None

    def __post_init__(self):
        if (self.asr_after is None) != (self.accuracy_after is None):
            raise ValueError("asr_after and accuracy_after must both be set or both be None.")
        if self.num_poison_left < 0:
            raise ValueError(f"num_poison_left must be >= 0, got {self.num_poison_left}.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["evaluation"] = self.evaluation.to_dict()
        return artifacts.to_jsonable(d)

    def summary(self) -> str:
        after = (
            "not retrained"
            if self.asr_after is None
            else f"after: ASR {self.asr_after:.2%}, accuracy {self.accuracy_after:.2%}"
        )
        return (
            f"{self.evaluation.summary()} Before: ASR {self.asr_before:.2%}, accuracy "
            f"{self.accuracy_before:.2%}; {after}."
        )


def sanitize_and_retrain(
    run,
    result: detection.DetectionResult,
    retrain: bool = True,
    verbose: int | str = 0,
    cache_path: str | None = None,
) -> SanitizerOutcome:
    """Removes the flagged training samples, retrains the victim and measures it.

    Args:
      run: A `bki_tf.runs.attack.AttackRun`; `result` must score its `run.train`, in order.
      result: The sanitizer's decisions.
      retrain: Train a fresh victim on the kept samples (a full training run); False
        only evaluates the detection.
      verbose: Keras `fit` verbosity.
      cache_path: A JSON file for the retraining's measures: read back when it holds
        the same run config and kept rows (the retraining is a deterministic function
        of them), written after a retraining. None: always retrain.

    Returns:
      The detection quality, the victim's ASR / accuracy before, and after retraining.
    """
    evaluation = detection.evaluate(result, run.train.is_poisoned)
    keep, filt = filter_rows(run, result.is_poison)
    asr_after = accuracy_after = seconds = per_trigger = None
    if retrain:
        identity = artifacts.to_jsonable(
            {
                "attack": attack.config_identity(run.config),
                "kept_sha256": hashlib.sha256(np.asarray(keep, np.int64).tobytes()).hexdigest(),
                "num_train": len(run.train),
            }
        )
        stored = None
        if cache_path is not None and os.path.isfile(cache_path):
            try:  # A damaged or foreign cache entry is recomputed, never trusted.
                cached = artifacts.read_json(cache_path)
                if isinstance(cached, dict) and cached.get("identity") == identity:
                    stored = RetrainResult.from_dict(cached["result"])
            except (ValueError, KeyError, TypeError):
                stored = None
        if stored is None:
            kept = run.train.subset(keep)
            _, stored = _retrain_victim(
                run, kept.texts, kept.labels, filt.num_poison_left, verbose=verbose
            )
            if cache_path is not None:
                try:
                    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
                    artifacts.write_json(
                        cache_path, {"identity": identity, "result": stored.to_dict()}
                    )
                except OSError:
                    pass  # A read-only run folder: the next rerun retrains again.
        seconds = stored.train_seconds
        asr_after, accuracy_after = stored.asr, stored.accuracy
        per_trigger = stored.asr_per_trigger
    return SanitizerOutcome(
        evaluation=evaluation,
        asr_before=float(run.metrics.asr),
        accuracy_before=float(run.metrics.clean_accuracy),
        asr_after=asr_after,
        accuracy_after=accuracy_after,
        num_poison_left=filt.num_poison_left,
        retrain_seconds=seconds,
        asr_per_trigger_after=per_trigger,
    )
