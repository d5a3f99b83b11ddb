"""The scan's plan of independent work and its checkpoint files.

A scan scores its texts in the scorer's own independent units (`bki.Scorer.units`:
the fast scanner's chunks, or length groups of the generic method), grouped into
checkpoint groups of about `CHECKPOINT_TEXTS` texts. The plan depends only on the
victim, the scan settings and the text lengths, so any process that scores group `g`
gets the same scores bit for bit: the in-process scan (`bki_tf.runs.pipeline`) runs
the groups in order, the Beam scan (`bki_tf.runs.beam_scan`) on many workers, and
both write and resume from the same `chunks/<kind>-<g>.npz` files.

A checkpoint holds the plan's digest, the group's text indices, its scores
(flattened) and the seconds it took; one whose digest or texts differ from the
plan is ignored and recomputed, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable, Sequence

import numpy as np

from bki_tf.bki import scoring
from bki_tf.bki.detector import BKIConfig

# Texts per checkpoint group (whole scorer units; the grouping does not change any score).
CHECKPOINT_TEXTS = 256


@dataclasses.dataclass(frozen=True)
class ScorePlan:
    """The groups of one scan kind, in plan order.

    Attributes:
      kind: `"deletion"` or `"prefix"` (local impacts).
      method: The scorer's method (`"fast"`, `"simple"` or `"generic"`).
      units: Per scorer unit, its text indices.
      groups: Per checkpoint group, its unit indices.
      digest: SHA-256 of everything the scores depend on (victim, kind, method, batch
        size, lengths, units); stored in every checkpoint.
    """

    kind: str
    method: str
    units: tuple[np.ndarray, ...]
    groups: tuple[tuple[int, ...], ...]
    digest: str

    def texts(self, group: int) -> np.ndarray:
        """`int64` text indices of `group`, in scoring order."""
        return np.concatenate([self.units[k] for k in self.groups[group]]).astype(np.int64)

    def chunk_name(self, group: int) -> str:
        return f"{self.kind}-{group:05d}.npz"


def prefix_method(kind: str, method: str) -> str:
    """The method a scan kind runs: the simple method has no local impacts (fast instead)."""
    return "fast" if kind == "prefix" and method == "simple" else method


def make_scorer(model, kind: str, config: BKIConfig) -> scoring.Scorer:
    """The scorer of one scan kind for a resolved `config`."""
    return scoring.Scorer(
        model,
        kind,
        prefix_method(kind, config.method),
        config.scan_batch_size,
        representation_layer=config.representation_layer,
        pool=config.pool,
        span=config.span if kind == "deletion" else 1,
    )


def _grouped(units: Sequence[np.ndarray], checkpoint_texts: int) -> list[tuple[int, ...]]:
    """Consecutive scorer units, about `checkpoint_texts` texts per group."""
    groups, current, size = [], [], 0
    for k, unit in enumerate(units):
        current.append(k)
        size += len(unit)
        if size >= checkpoint_texts:
            groups.append(tuple(current))
            current, size = [], 0
    if current:
        groups.append(tuple(current))
    return groups


def score_plan(
    scorer: scoring.Scorer,
    kind: str,
    config: BKIConfig,
    identity: dict,
    lengths: np.ndarray,
    checkpoint_texts: int = CHECKPOINT_TEXTS,
) -> ScorePlan:
    """The plan of one scan kind (`identity`: the scan's identity dict)."""
    lengths = np.asarray(lengths, np.int64)
    units = tuple(np.asarray(u, np.int64) for u in scorer.units(lengths))
    method = prefix_method(kind, config.method)
    digest = hashlib.sha256(
        repr(
            (
                sorted(identity.items()),
                kind,
                method,
                config.scan_batch_size,
                lengths.tolist(),
                [u.tolist() for u in units],
            )
        ).encode()
    ).hexdigest()
    return ScorePlan(
        kind=kind,
        method=method,
        units=units,
        groups=tuple(_grouped(units, checkpoint_texts)),
        digest=digest,
    )


def score_group(
    scorer: scoring.Scorer,
    ids: np.ndarray,
    lengths: np.ndarray,
    plan: ScorePlan,
    group: int,
    on_unit: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Scores one group: `(texts, per-text scores in that order, seconds)`."""
    start = time.perf_counter()
    values = []
    for k in plan.groups[group]:
        values.extend(scorer.score_unit(ids, lengths, k))
        if on_unit is not None:
            on_unit(len(plan.units[k]))
    return plan.texts(group), values, time.perf_counter() - start


def flat(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Per-text score arrays concatenated (`float32`)."""
    return np.concatenate(scores) if len(scores) else np.zeros(0, np.float32)


def chunk_bytes(plan: ScorePlan, texts: np.ndarray, scores, seconds: float) -> bytes:
    """The checkpoint file of one group, as bytes (`.npz`)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        plan=np.asarray(plan.digest),
        texts=np.asarray(texts, np.int64),
        scores=flat(scores),
        seconds=np.asarray(seconds, np.float64),
    )
    return buffer.getvalue()


def parse_chunk(
    data, plan: ScorePlan, group: int
) -> tuple[np.ndarray, np.ndarray, float | None] | None:
    """A checkpoint's `(texts, flat scores, seconds)` if it is group `group` of `plan`.

    Args:
      data: A path or a binary file object.

    Returns:
      None for a missing, damaged or foreign checkpoint (it is then recomputed).
    """
    try:
        with np.load(data) as stored:
            if str(stored["plan"]) != plan.digest:
                return None
            texts = stored["texts"].astype(np.int64)
            scores = stored["scores"].astype(np.float32)
            seconds = float(stored["seconds"]) if "seconds" in stored.files else None
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if not np.array_equal(texts, plan.texts(group)):
        return None
    return texts, scores, seconds
