"""The contract shared by every poison detector, and its evaluation.

Every training-set sanitizer (BKI, Activation Clustering, Spectral Signatures) and
the inference-time STRIP detector return a `DetectionResult`: one suspicion score
per sample (higher = more suspicious), the boolean decision `is_poison`, and a
JSON-able report of how the decision was made. `evaluate` scores a result (or a
bare set of flagged indices) against the ground truth: precision, recall, F1, the
share removed, and the AUROC of the scores. `DetectionEvaluation` is the package's one
detection-metrics type; BKI's scan, the baselines and every report use it.

Pure numpy: no TensorFlow, no file IO.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from bki_tf import artifacts


@dataclasses.dataclass(frozen=True, eq=False)
class DetectionResult:
    """What a detector decided about N samples.

    Attributes:
      method: Detector name, e.g. `"activation_clustering"`.
      scores: `float64 [N]` suspicion scores; higher means more likely poisoned. Only
        their order matters (AUROC); their scale is the detector's own.
      is_poison: `bool [N]`, the detector's decision (True = remove / reject).
      report: JSON-able details (thresholds, per-class statistics, ...).
    """

    method: str
    scores: np.ndarray
    is_poison: np.ndarray
    report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty detector name, got {self.method!r}.")
        scores = np.asarray(self.scores)
        if scores.ndim != 1 or (scores.size and not np.issubdtype(scores.dtype, np.number)):
            raise ValueError(
                f"{self.method}: scores must be a 1-D numeric array (one per sample), got dtype "
                f"{scores.dtype} and shape {scores.shape}."
            )
        scores = scores.astype(np.float64)
        if not np.all(np.isfinite(scores)):
            bad = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise ValueError(
                f"{self.method}: scores[{bad}] = {scores[bad]} is not finite; every sample needs "
                "a finite suspicion score."
            )
        is_poison = np.asarray(self.is_poison)
        if is_poison.shape != scores.shape or (is_poison.size and is_poison.dtype != bool):
            raise ValueError(
                f"{self.method}: is_poison must be a bool array of shape {scores.shape} (one "
                f"decision per score), got dtype {is_poison.dtype} and shape {is_poison.shape}."
            )
        if not isinstance(self.report, dict):
            raise ValueError(f"{self.method}: report must be a dict, got {type(self.report)}.")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "is_poison", is_poison.astype(bool))
        object.__setattr__(self, "report", artifacts.to_jsonable(self.report))

    @property
    def num_samples(self) -> int:
        return int(self.scores.size)

    @property
    def flagged(self) -> np.ndarray:
        """`int64 [k]` sorted positions of the samples decided poisoned."""
        return np.flatnonzero(self.is_poison).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of everything (scores and decisions per sample)."""
        return {
            "method": self.method,
            "num_samples": self.num_samples,
            "num_flagged": int(self.is_poison.sum()),
            "scores": self.scores.tolist(),
            "is_poison": self.is_poison.tolist(),
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectionResult:
        """Inverse of `to_dict()`."""
        return cls(
            method=d["method"],
            scores=np.asarray(d["scores"], dtype=np.float64),
            is_poison=np.asarray(d["is_poison"], dtype=bool),
            report=d.get("report") or {},
        )

    def summary(self) -> str:
        return (
            f"{self.method}: flagged {int(self.is_poison.sum())} of {self.num_samples} samples "
            f"({100 * self.is_poison.mean() if self.num_samples else 0.0:.2f}%)."
        )


def check_representations(
    representations: np.ndarray, classes: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validates the inputs of a representation-based detector (AC, SS).

    Args:
      representations: `float [N, D]` per-sample representations (e.g. the victim's
        BiLSTM state, `bki_tf.models.HIDDEN`).
      classes: `int [N]` class of each sample (predicted or training label); samples
        are analysed per class.
      method: Detector name, for the error messages.

    Returns:
      `(float64 [N, D], int64 [N])`.
    """
    reps = np.asarray(representations)
    if reps.ndim != 2 or reps.shape[0] == 0 or reps.shape[1] == 0:
        raise ValueError(
            f"{method}: representations must be a non-empty [N, D] matrix (one row per "
            f"sample), got shape {reps.shape}."
        )
    if not np.issubdtype(reps.dtype, np.number):
        raise ValueError(f"{method}: representations must be numeric, got {reps.dtype}.")
    reps = reps.astype(np.float64)
    if not np.all(np.isfinite(reps)):
        row = int(np.flatnonzero(~np.isfinite(reps).all(axis=1))[0])
        raise ValueError(f"{method}: representations[{row}] holds NaN or inf.")
    cls = np.asarray(classes)
    if cls.shape != (reps.shape[0],) or not np.issubdtype(cls.dtype, np.integer):
        raise ValueError(
            f"{method}: classes must be {reps.shape[0]} integers (one per representation), "
            f"got dtype {cls.dtype} and shape {cls.shape}."
        )
    if cls.min() < 0:
        raise ValueError(f"{method}: classes must be >= 0, got {int(cls.min())}.")
    return reps, cls.astype(np.int64)


def detect_per_class(
    representations: np.ndarray,
    classes: np.ndarray,
    method: str,
    analyse: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, dict]],
    config: dict,
) -> DetectionResult:
    """Runs a per-class detector (AC, SS) over every class present.

    Args:
      representations, classes: As `check_representations` (validated here).
      method: Detector name.
      analyse: `(class_representations [n, D], class) -> (scores [n], flagged rows
        (indices into the class's rows), stats dict)`.
      config: The detector's settings, stored in the report.

    Returns:
      A `DetectionResult` whose `report["classes"]` maps each class to its stats.
    """
    reps, cls = check_representations(representations, classes, method)
    scores = np.zeros(len(reps))
    is_poison = np.zeros(len(reps), dtype=bool)
    per_class = {}
    for c in np.unique(cls):
        rows = np.flatnonzero(cls == c)
        class_scores, flagged, stats = analyse(reps[rows], int(c))
        scores[rows] = class_scores
        is_poison[rows[flagged]] = True
        per_class[str(int(c))] = stats
    return DetectionResult(
        method=method,
        scores=scores,
        is_poison=is_poison,
        report={"config": config, "classes": per_class},
    )


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for separating `positives` from the rest.

    The Mann-Whitney form: the probability that a random positive scores higher than a
    random negative, ties counting one half (average ranks).

    Args:
      scores: `float [N]`, higher = more likely positive.
      positives: `bool [N]` ground truth.

    Returns:
      The AUROC in [0, 1]; NaN when there is no positive or no negative (undefined).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives)
    if scores.ndim != 1 or positives.shape != scores.shape:
        raise ValueError(
            f"scores {scores.shape} and positives {positives.shape} must be 1-D and match."
        )
    if positives.size and positives.dtype != bool:
        raise ValueError(f"positives must be a bool array, got dtype {positives.dtype}.")
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # Average rank (1-based) over each run of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + 1 + e)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclasses.dataclass(frozen=True)
class DetectionEvaluation:
    """A `DetectionResult` scored against the ground truth.

    Attributes:
      method: The detector.
      precision: Poisoned share of the flagged samples (0.0 when nothing is flagged).
      recall: Flagged share of the poisoned samples (NaN without poison).
      f1: Harmonic mean of precision and recall.
      auroc: AUROC of the suspicion scores (NaN without poison or without clean samples).
      removed_share: Flagged / all samples.
      num_flagged: Samples flagged.
      num_poison: Poisoned samples (ground truth).
      num_true_positive: Flagged samples that are poisoned.
      num_samples: All samples.

    Conventions for 0/0: precision is 0.0 when nothing is flagged (no removal
    identifies no poison; scikit-learn's `zero_division=0`); recall is NaN when there is
    no poison (1.0 would credit a defence that removed only clean samples); F1 is 0.0
    when precision and recall are both 0, NaN when recall is NaN. `to_dict()` writes NaN
    as `None`.
    """

    method: str
    precision: float
    recall: float
    f1: float
    auroc: float
    removed_share: float
    num_flagged: int
    num_poison: int
    num_true_positive: int
    num_samples: int

    def __post_init__(self):
        for name in ("precision", "recall", "f1", "auroc", "removed_share"):
            v = getattr(self, name)
            if not (math.isnan(v) or 0.0 <= v <= 1.0):
                raise ValueError(f"{self.method}: {name} must lie in [0, 1] or be NaN, got {v}.")
        if not 0 <= self.num_true_positive <= min(self.num_flagged, self.num_poison):
            raise ValueError(
                f"{self.method}: num_true_positive={self.num_true_positive} must lie in [0, "
                f"min(num_flagged={self.num_flagged}, num_poison={self.num_poison})]."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; NaN becomes `None`."""
        return artifacts.to_jsonable(dataclasses.asdict(self))

    def summary(self) -> str:
        def fmt(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.4f}"

        return (
            f"{self.method}: flagged {self.num_flagged} of {self.num_samples} "
            f"({100 * self.removed_share:.2f}%), {self.num_true_positive} of {self.num_poison} "
            f"poisoned; precision {fmt(self.precision)}, recall {fmt(self.recall)}, "
            f"F1 {fmt(self.f1)}, AUROC {fmt(self.auroc)}."
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectionEvaluation:
        """Inverse of `to_dict()` (`None` reads back as NaN)."""
        values = dict(d)
        for name in ("precision", "recall", "f1", "auroc", "removed_share"):
            if values.get(name) is None:
                values[name] = float("nan")
        return cls(**values)


def evaluate(
    result: DetectionResult | np.ndarray | list, is_poisoned: np.ndarray, method: str = "flagged"
) -> DetectionEvaluation:
    """Scores a detector's decisions (and scores) against the ground-truth poison mask.

    Chen & Dai (2021), Sec. 5: precision and recall of the removed texts.

    Args:
      result: A `DetectionResult` for N samples, or the flagged samples alone: unique
        `int [k]` indices (sorted or not) or a `bool [N]` mask. Bare flags carry no
        scores, so their AUROC is that of the 0/1 decision.
      is_poisoned: `bool [N]` ground truth (e.g. `run.train.is_poisoned`).
      method: Name reported for bare flags (a `DetectionResult` names itself).

    Returns:
      Precision, recall, F1, removed share and the AUROC of the scores.

    Raises:
      ValueError: On shape, dtype, range or duplicate problems, naming the value.
    """
    truth = np.asarray(is_poisoned)
    if truth.ndim != 1 or (truth.size and truth.dtype != bool):
        raise ValueError(
            f"is_poisoned must be a 1-D bool array, got dtype {truth.dtype} and shape "
            f"{truth.shape}."
        )
    truth = truth.astype(bool)
    if not isinstance(result, DetectionResult):
        result = _flags_as_result(result, truth.size, method)
    if truth.shape != (result.num_samples,):
        raise ValueError(
            f"{result.method} scored {result.num_samples} samples but is_poisoned has shape "
            f"{truth.shape}; pass the ground truth of the same samples."
        )
    removed = result.is_poison
    num_removed = int(removed.sum())
    num_poison = int(truth.sum())
    tp = int((removed & truth).sum())
    precision = tp / num_removed if num_removed else 0.0
    recall = tp / num_poison if num_poison else float("nan")
    if math.isnan(recall):
        f1 = float("nan")
    elif precision + recall == 0.0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    n = truth.size
    return DetectionEvaluation(
        method=result.method,
        precision=precision,
        recall=recall,
        f1=f1,
        auroc=auroc(result.scores, truth),
        removed_share=num_removed / n if n else 0.0,
        num_flagged=num_removed,
        num_poison=num_poison,
        num_true_positive=tp,
        num_samples=n,
    )


def _flags_as_result(flagged, num_samples: int, method: str) -> DetectionResult:
    """A `DetectionResult` whose scores are the 0/1 decisions of `flagged`."""
    flagged = np.asarray(flagged)
    if flagged.ndim != 1:
        raise ValueError(f"flagged must be 1-D, got shape {flagged.shape}.")
    if flagged.dtype == bool:
        if flagged.size != num_samples:
            raise ValueError(
                f"flagged is a bool mask of length {flagged.size} but is_poisoned has "
                f"{num_samples} samples; they must match."
            )
        mask = flagged
    else:
        if flagged.size and not np.issubdtype(flagged.dtype, np.integer):
            raise ValueError(f"flagged must hold integer indices or bools, got {flagged.dtype}.")
        idx = flagged.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= num_samples):
            raise ValueError(
                f"flagged holds indices outside [0, {num_samples}): {idx.tolist()[:10]}..."
            )
        if np.unique(idx).size != idx.size:
            raise ValueError("flagged holds duplicate indices; pass each removed sample once.")
        mask = np.zeros(num_samples, dtype=bool)
        mask[idx] = True
    return DetectionResult(method=method, scores=mask.astype(np.float64), is_poison=mask)
