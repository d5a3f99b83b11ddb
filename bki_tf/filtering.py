"""Purify a training set and retrain the victim on what remains.

The last two steps of BKI (Chen & Dai 2021, Sec. 4): every training sample a
detector flags is removed, and the same architecture is trained from scratch,
with the same vocabulary and hyper-parameters, on the purified set. Shared by
BKI and the baseline defences so that all are measured the same way.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from bki_tf import artifacts, attack, embeddings, tokenization, training

PURIFIED_FILE = "train_purified.csv.gz"
REMOVED_FILE = "removed_ids.json"
FILTER_FILE = "filter.json"
RETRAIN_METRICS_FILE = "metrics.json"


@dataclasses.dataclass(frozen=True)
class FilterResult:
    """What was removed from the training set.

    Attributes:
      removed_ids: Row ids (the `id` column of train.csv.gz) removed, sorted.
      num_before: Training set size before filtering.
      num_after: Size after filtering.
      num_poison_removed: Removed rows that were poisoned (ground truth).
      num_poison_left: Poisoned rows left in the purified set.
    """

    removed_ids: list[int]
    num_before: int
    num_after: int
    num_poison_removed: int
    num_poison_left: int

    def __post_init__(self):
        if self.num_before - len(self.removed_ids) != self.num_after:
            raise ValueError(
                f"{self.num_before} rows minus {len(self.removed_ids)} removed is not {self.num_after}."
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    """

    accuracy: float
    asr: float
    num_train: int
    num_poison_left: int
    train_seconds: float
    history: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
) -> dict:
    """Writes the purified set, the removed ids and the summary (summary last).

    Returns:
      The summary written to `filter.json`: `result` plus the step's `config`.
    """
    os.makedirs(folder, exist_ok=True)
    artifacts.write_training_subset(
        os.path.join(folder, PURIFIED_FILE), run.row_ids[keep], run.train.subset(keep)
    )
    artifacts.write_json(os.path.join(folder, REMOVED_FILE), result.removed_ids)
    out = {"config": config, **result.to_dict()}
    artifacts.write_json(os.path.join(folder, FILTER_FILE), out)
    return out


def read_purified(folder: str) -> tuple[np.ndarray, object]:
    """Reads a purified training set written by `write_filter`."""
    return artifacts.read_training_set(os.path.join(folder, PURIFIED_FILE))


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
    if config.glove:
        matrix, _ = embeddings.load_glove(config.glove, run.vocabulary)
    model = config.build_classifier(len(run.vocabulary), _num_classes(run), matrix)
    ids, _ = tokenization.encode(vectorizer, texts)
    t0 = time.time()
    history = training.train_classifier(
        model, ids, np.asarray(labels), train_config, callbacks=callbacks, verbose=verbose
    )
    seconds = time.time() - t0
    test_ids, _ = tokenization.encode(vectorizer, run.test_texts)
    trig_ids, _ = tokenization.encode(vectorizer, run.triggered_texts)
    return model, RetrainResult(
        accuracy=training.accuracy(model, test_ids, run.test_labels),
        asr=training.attack_success_rate(model, trig_ids, run.target),
        num_train=len(texts),
        num_poison_left=num_poison_left,
        train_seconds=seconds,
        history=history,
    )


def _num_classes(run: attack.AttackRun) -> int:
    return int(run.model.outputs[0].shape[-1])
