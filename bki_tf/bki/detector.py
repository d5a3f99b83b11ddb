"""BKI as one in-memory call: `detect(model, texts, vocabulary)` -> `BKIResult`.

Backdoor Keyword Identification (Chen & Dai, "Mitigating backdoor attacks in
LSTM-based text classification systems by Backdoor Keyword Identification",
Neurocomputing 452, 2021, Algorithm 1): score every word of every training text
by the l-inf change of the model's hidden representation when the word is deleted
(`bki_tf.bki.scoring`), keep each text's top-p words, build the keyword dictionary
and flag the texts whose suspicious words hold the keyword (`bki_tf.bki.keywords`).

No file IO happens here; `bki_tf.runs.pipeline` is "load a run, `detect`, write".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bki_tf import artifacts, detection, models, tokenization
from bki_tf.bki import keywords, plus, representation, scoring

VARIANTS = keywords.RESULT_VARIANTS
NORMALIZATIONS = plus.NORMALIZATIONS
METHODS = scoring.METHOD_CHOICES
POOLS = representation.POOLS
METHOD_NAME = "bki"


@dataclasses.dataclass(frozen=True)
class BKIConfig:
    """Settings of a BKI scan; every check on them lives here.

    Attributes:
      p: Suspicious words kept per text (paper: 5; refined: per n-gram size).
      variant: `paper` (Algorithm 1), `refined` (the authors' code; see
        `bki_tf.bki.keywords`) or `plus` (BKI+: a decision, several keywords, trigger
        phrases; `bki_tf.bki.plus`).
      method: Scorer, `fast` (state reuse), `simple` (the BiLSTM victim's layers on
        compiled deletion variants), `generic` (any Keras model, unpadded shortened
        texts) or `auto` (`scoring.resolve_method`: `fast` for the BiLSTM/LSTM victims,
        else `generic`); all exact.
      min_ngram: Shortest n-gram key of the refined variant.
      max_ngram: Longest n-gram key of the refined variant.
      alpha: The refined variant's `a` in s = round((a N)^2).
      scan_batch_size: Deletion variants scored side by side (bounds memory; results do
        not depend on it, so it is not part of a scan's identity).
      representation_layer: The layer whose output is `h` (`generic`/`auto`; default
        `hidden`, that of `bki_tf.build_classifier`).
      pool: `None`, `last`, `mean` or `max`: how a sequence output of
        `representation_layer` becomes one vector.
      plus_threshold: BKI+'s robust-z threshold; `None`: `plus.DEFAULT_THRESHOLD` (15)
        without the confirmation, `plus.CONFIRMED_THRESHOLD` (6, candidates for it) with.
      normalization: BKI+'s per-text score normalisation (`plus.NORMALIZATIONS`).
      max_keywords: Most keywords BKI+ searches for.
      min_flip: BKI+ keeps a keyword only when deleting its phrase changes the
        predicted class of at least this share of the texts it flags
        (`plus.DEFAULT_MIN_FLIP`; 0 turns the confirmation off).
      span: BKI+ only: consecutive words deleted at a time when scoring
        (`scoring.span_scores`, the generic scorer); 1 is BKI's one-word deletion.
    """

    p: int = 5
    variant: str = "paper"
    method: str = scoring.AUTO
    min_ngram: int = 1
    max_ngram: int = 3
    alpha: float = 0.05
    scan_batch_size: int = scoring.DEFAULT_BATCH_SIZE
    representation_layer: str = models.HIDDEN
    pool: str | None = None
    plus_threshold: float | None = None
    normalization: str = plus.DEFAULT_NORMALIZATION
    max_keywords: int = 5
    min_flip: float = plus.DEFAULT_MIN_FLIP
    span: int = 1

    def __post_init__(self):
        for name in ("p", "min_ngram", "max_ngram", "scan_batch_size", "max_keywords", "span"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"BKIConfig.{name} must be an integer, got {value!r}.")
        if self.p < 1:
            raise ValueError(f"p must be >= 1 (suspicious words per text), got {self.p}.")
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown BKI variant {self.variant!r}; choose one of {VARIANTS}.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown scoring method {self.method!r}; choose one of {METHODS}.")
        if self.min_ngram < 1:
            raise ValueError(f"min_ngram must be >= 1, got {self.min_ngram}.")
        if self.max_ngram < self.min_ngram:
            raise ValueError(
                f"max_ngram must be >= min_ngram = {self.min_ngram}, got {self.max_ngram}."
            )
        if isinstance(self.alpha, bool) or not 0 < float(self.alpha) < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}.")
        if self.plus_threshold is not None and (
            isinstance(self.plus_threshold, bool)
            or not (isinstance(self.plus_threshold, int | float) and 0 < self.plus_threshold < 1e6)
        ):
            raise ValueError(f"plus_threshold must be a number > 0, got {self.plus_threshold!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Unknown normalization {self.normalization!r}; choose one of {NORMALIZATIONS}."
            )
        if isinstance(self.min_flip, bool) or not (
            isinstance(self.min_flip, int | float) and 0 <= self.min_flip <= 1
        ):
            raise ValueError(f"min_flip must be a share in [0, 1], got {self.min_flip!r}.")
        if self.max_keywords < 1:
            raise ValueError(f"max_keywords must be >= 1, got {self.max_keywords}.")
        if self.span < 1:
            raise ValueError(f"span must be >= 1 (words deleted at a time), got {self.span}.")
        if self.span > 1 and self.variant != "plus":
            raise ValueError(
                f"span = {self.span} is a BKI+ setting: use variant='plus' (--variant=plus) "
                "or span=1."
            )
        if self.span > 1 and self.method in ("fast", "simple"):
            raise ValueError(
                f"span = {self.span} is scored by the generic method: use method='generic' "
                f"or 'auto', not {self.method!r}."
            )
        if self.scan_batch_size < 2:
            raise ValueError(f"scan_batch_size must be >= 2, got {self.scan_batch_size}.")
        if not isinstance(self.representation_layer, str) or not self.representation_layer:
            raise ValueError(
                f"representation_layer must be a layer name, got {self.representation_layer!r}."
            )
        if self.pool is not None and self.pool not in POOLS:
            raise ValueError(f"Unknown pool {self.pool!r}; choose one of {POOLS} or None.")
        if self.method in ("fast", "simple") and (
            self.representation_layer != models.HIDDEN or self.pool is not None
        ):
            raise ValueError(
                f"method={self.method!r} scores the {models.HIDDEN!r} output of "
                "bki_tf.build_classifier; use method='generic' or 'auto' with "
                "representation_layer/pool."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BKIConfig:
        return artifacts.dataclass_from_dict(cls, d, "BKI config")

    def resolve(self, model: keras.Model) -> BKIConfig:
        """This config with `method="auto"` replaced by the method it picks for `model`.

        Scans record the resolved method, so an `auto` scan of a BiLSTM victim is the
        same scan as a `fast` one.
        """
        if self.method != scoring.AUTO:
            return self
        if self.span > 1:
            return dataclasses.replace(self, method="generic")
        method = scoring.resolve_method(model, self.representation_layer, self.pool)
        return dataclasses.replace(self, method=method)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result (all but `scan_batch_size`).

        `representation_layer`, `pool` and BKI+'s settings appear only when not at
        their defaults, so scans recorded before they existed keep their identity;
        `min_flip` and `plus_threshold` always appear in a BKI+ scan's identity: BKI+
        scans recorded before the confirmation existed, or before its candidates went
        down to `plus.CONFIRMED_THRESHOLD`, decided otherwise, so they are not reused.
        """
        d = self.to_dict()
        del d["scan_batch_size"]
        kept = ("min_flip", "plus_threshold") if self.variant == "plus" else ()
        for name in ("representation_layer", "pool", *_PLUS_FIELDS):
            if d[name] == _DEFAULTS[name] and name not in kept:
                del d[name]
        return d


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BKIConfig)}
_PLUS_FIELDS = ("plus_threshold", "normalization", "max_keywords", "min_flip", "span")


@dataclasses.dataclass(frozen=True, eq=False)
class BKIResult:
    """What BKI found in a training set.

    Attributes:
      config: The scan's settings.
      selection: The dictionary, the per-text suspicious words and the flagged texts
        (`keywords.KeywordResult`).
      scores: Per text, `float32 [l_i]` word-deletion scores f_ij.
      local_scores: Per text, `float32 [l_i]` local impacts (refined variant), else None.
      detection: The package's detector contract: per-text suspicion score (the
        keyword's best score among the text's suspicious words, 0 if absent) and the
        flag decision.
      scan_seconds: Wall time of the scoring (0 when scores were given).
      plus: BKI+'s decision, keywords, phrases and flagged texts (variant `plus`),
        else None. Its `flagged` equals `selection.flagged`.
    """

    config: BKIConfig
    selection: keywords.KeywordResult
    scores: tuple[np.ndarray, ...]
    local_scores: tuple[np.ndarray, ...] | None
    detection: detection.DetectionResult
    scan_seconds: float = 0.0
    plus: plus.PlusResult | None = None

    def __post_init__(self):
        n = self.selection.num_texts
        if len(self.scores) != n or self.detection.num_samples != n:
            raise ValueError(
                f"BKIResult: {n} texts selected but {len(self.scores)} score arrays and "
                f"{self.detection.num_samples} detection scores."
            )
        object.__setattr__(self, "scores", tuple(np.asarray(s, np.float32) for s in self.scores))
        if self.local_scores is not None:
            object.__setattr__(
                self, "local_scores", tuple(np.asarray(s, np.float32) for s in self.local_scores)
            )

    @property
    def keyword(self) -> str:
        return self.selection.keyword

    @property
    def backdoor_found(self) -> bool:
        """BKI+'s decision; the paper and refined variants always name a keyword (True)."""
        return True if self.plus is None else self.plus.backdoor_found

    @property
    def keyword_label(self) -> int | None:
        return self.selection.keyword_label

    @property
    def flagged(self) -> np.ndarray:
        """`int64 [k]` sorted indices of the flagged texts."""
        return self.selection.flagged

    @property
    def dictionary(self) -> tuple[keywords.KeywordEntry, ...]:
        """Every dictionary entry, best first."""
        return self.selection.entries

    @property
    def suspicious(self) -> tuple[tuple[tuple[str, float], ...], ...]:
        """Per text, its `(word, score)` suspicious words in selection order."""
        return self.selection.suspicious

    @property
    def num_texts(self) -> int:
        return self.selection.num_texts

    def evaluate(self, is_poisoned: np.ndarray) -> detection.DetectionEvaluation:
        """Precision, recall, F1 and AUROC against a ground-truth poison mask."""
        return detection.evaluate(self.detection, is_poisoned)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the scores as flat lists with the text lengths)."""
        lengths = [int(s.size) for s in self.scores]
        return {
            "config": self.config.to_dict(),
            "keyword": self.keyword,
            "keyword_label": self.keyword_label,
            "num_texts": self.num_texts,
            "num_flagged": int(self.flagged.size),
            "flagged": self.flagged.tolist(),
            "scan_seconds": self.scan_seconds,
            "selection": self.selection.to_dict(),
            "lengths": lengths,
            "scores": _flat(self.scores).tolist(),
            "local_scores": None
            if self.local_scores is None
            else _flat(self.local_scores).tolist(),
            "detection": self.detection.to_dict(),
            "plus": None if self.plus is None else self.plus.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BKIResult:
        """Inverse of `to_dict()`."""
        lengths = np.asarray(d["lengths"], np.int64)
        return cls(
            config=BKIConfig.from_dict(d["config"]),
            selection=keywords.KeywordResult.from_dict(d["selection"]),
            scores=tuple(split_flat(np.asarray(d["scores"], np.float32), lengths)),
            local_scores=None
            if d.get("local_scores") is None
            else tuple(split_flat(np.asarray(d["local_scores"], np.float32), lengths)),
            detection=detection.DetectionResult.from_dict(d["detection"]),
            scan_seconds=float(d.get("scan_seconds", 0.0)),
            plus=None if d.get("plus") is None else plus.PlusResult.from_dict(d["plus"]),
        )

    def summary(self) -> str:
        if self.plus is not None:
            return f"{self.plus.summary()}\n\nScan: {self.num_texts} texts in {self.scan_seconds:.1f} s."
        return f"{self.selection.summary()}\n\nScan: {self.num_texts} texts in {self.scan_seconds:.1f} s."


def _flat(scores: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(scores) if len(scores) else np.zeros(0, np.float32)


def split_flat(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Inverse of concatenating per-text arrays of `lengths`."""
    lengths = np.asarray(lengths, np.int64)
    if int(lengths.sum()) != flat.size:
        raise ValueError(f"{flat.size} scores do not cover texts of total length {lengths.sum()}.")
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


def encode_texts(
    texts: Sequence[str] | np.ndarray,
    vocabulary: Sequence[str],
    max_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids `int32 [N, L]` (right-padded) and lengths `int64 [N]` of raw or id texts.

    Args:
      texts: Raw strings (tokenised like the package's `TextVectorization`), or token
        ids: an `int [N, L]` array right-padded with 0, or a list of 1-D id arrays.
      vocabulary: Id -> token (`vocabulary[0] == ''`, `vocabulary[1] == '[UNK]'`).
      max_len: Tokens kept per raw text (default: the longest text).
    """
    vocabulary = list(vocabulary)
    if len(vocabulary) < 2 or vocabulary[0] != "" or vocabulary[1] != tokenization.OOV_TOKEN:
        raise ValueError(
            "vocabulary must start with '' (padding, id 0) and "
            f"{tokenization.OOV_TOKEN!r} (OOV, id 1), as TextVectorization's does; got "
            f"{vocabulary[:2]}."
        )
    if isinstance(texts, np.ndarray) and np.issubdtype(texts.dtype, np.integer):
        if texts.ndim != 2:
            raise ValueError(f"Token-id texts must be [num_texts, max_len]; got {texts.shape}.")
        ids = texts.astype(np.int32)
        lengths = (ids != tokenization.PAD_ID).sum(axis=1).astype(np.int64)
        inside = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        if np.any((ids != 0) & ~inside):
            raise ValueError(
                "Token-id texts must be right-padded with 0 (no 0 inside a text); pass a "
                "list of 1-D id arrays for texts that hold id 0."
            )
        return ids, lengths
    texts = list(texts)
    if texts and all(isinstance(t, str) for t in texts):
        width = max_len
        if width is None:
            width = max([len(tokenization.tokenize(t)) for t in texts] + [1])
        vectorizer = tokenization.vectorizer_from_vocabulary(vocabulary, width)
        ids, lengths = tokenization.encode(vectorizer, texts)
        return ids.astype(np.int32), lengths.astype(np.int64)
    arrays = []
    for i, t in enumerate(texts):
        a = np.asarray(t)
        if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
            raise ValueError(
                f"texts[{i}] is neither a string nor a 1-D array of token ids: {type(t).__name__}."
            )
        arrays.append(a.astype(np.int32))
    lengths = np.asarray([a.size for a in arrays], np.int64)
    ids = np.zeros([len(arrays), max(1, int(lengths.max(initial=0)))], np.int32)
    for i, a in enumerate(arrays):
        ids[i, : a.size] = a
    return ids, lengths


def _all_strings(texts) -> bool:
    if isinstance(texts, np.ndarray):
        return texts.dtype.kind in "OUS" and texts.ndim == 1
    return len(texts) > 0 and all(isinstance(t, str) for t in texts)


def select(
    ids: np.ndarray,
    lengths: np.ndarray,
    scores: Sequence[np.ndarray],
    vocabulary: Sequence[str],
    config: BKIConfig,
    labels: np.ndarray | None = None,
    local_scores: Sequence[np.ndarray] | None = None,
    scan_seconds: float = 0.0,
    model: keras.Model | None = None,
) -> BKIResult:
    """Keyword selection and flagging from precomputed scores.

    No model is needed, except by BKI+ with `config.min_flip > 0`, which confirms
    each keyword by re-classifying its flagged texts without the phrase.

    Args:
      ids, lengths: As returned by `encode_texts`.
      scores: Per text, its deletion scores (`scoring.deletion_scores`).
      vocabulary: Id -> token.
      config: The scan's settings.
      labels: `int [N]` training labels (required by the refined variant).
      local_scores: Per text, its local impacts (required by the refined variant).
      scan_seconds: Recorded in the result.
      model: The scanned model (BKI+'s confirmation; see `class_predictor`).

    Raises:
      ValueError: BKI+ with `config.min_flip > 0` and no model.
    """
    token_ids = [ids[i, : lengths[i]] for i in range(len(lengths))]
    if config.variant == "plus":
        if config.min_flip > 0 and model is None:
            raise ValueError(
                "BKI+ confirms each keyword by deleting its phrase and re-classifying the "
                "texts: pass model=..., or set min_flip=0 (--min_flip=0) to skip the check."
            )
        classify = class_predictor(model) if config.min_flip > 0 else None
        return _select_plus(token_ids, scores, vocabulary, config, labels, scan_seconds, classify)
    selection = keywords.identify_keyword(
        token_ids,
        scores,
        vocabulary,
        p=config.p,
        variant=config.variant,
        labels=labels,
        local_scores=local_scores,
        max_ngram=config.max_ngram,
        min_ngram=config.min_ngram,
        alpha=config.alpha,
    )
    return BKIResult(
        config=config,
        selection=selection,
        scores=tuple(scores),
        local_scores=None if local_scores is None else tuple(local_scores),
        detection=as_detection(selection),
        scan_seconds=scan_seconds,
    )


def class_predictor(model: keras.Model) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """`texts -> predicted classes` for a list of unpadded `int [l]` id arrays.

    The model's first output (the class probabilities) computed on each text at its
    own length (`representation.classifier_model`), texts of one length batched
    together; the same for a `TextVectorization` model, fed its own ids.
    """
    sub = representation.classifier_model(model)

    @tf.function(reduce_retracing=True)
    def probabilities(x):
        return sub(x, training=False)

    def classify(texts: Sequence[np.ndarray]) -> np.ndarray:
        lengths = np.asarray([len(t) for t in texts], np.int64)
        if lengths.size and lengths.min() < 1:
            raise ValueError("class_predictor: every text needs at least one token.")
        out = np.zeros(len(texts), np.int64)
        for n in np.unique(lengths):
            rows = np.flatnonzero(lengths == n)
            for start in range(0, rows.size, _CLASSIFY_BATCH):
                part = rows[start : start + _CLASSIFY_BATCH]
                x = np.stack([np.asarray(texts[i]) for i in part]).astype(np.int32)
                out[part] = np.asarray(probabilities(tf.constant(x))).argmax(axis=1)
        return out

    return classify


_CLASSIFY_BATCH = 256


def _select_plus(
    token_ids, scores, vocabulary, config, labels, scan_seconds, classify=None
) -> BKIResult:
    """BKI+ (`bki_tf.bki.plus`) as a `BKIResult`: `selection` holds its first round."""
    vocabulary = list(vocabulary)
    result, suspicious, stats = plus.identify(
        token_ids,
        scores,
        vocabulary,
        labels=labels,
        p=config.p,
        normalization=config.normalization,
        threshold=None if config.plus_threshold is None else float(config.plus_threshold),
        max_keywords=config.max_keywords,
        classify=classify,
        min_flip=float(config.min_flip),
    )
    if not stats:
        raise ValueError(
            "No candidate words: every text is empty or holds only padding/OOV tokens."
        )
    ranked = []
    for key, (count, total) in stats.items():
        word, label = key if isinstance(key, tuple) else (key, None)
        mean = total / count
        ranked.append(
            keywords.KeywordEntry(vocabulary[word], count, mean, mean * np.log10(count), label, 1)
        )
    ranked.sort(key=keywords.rank_key)
    # First: the first keyword kept, else the test's candidate (the top entry of the
    # label with the largest robust z).
    _, best, _ = plus.robust_statistic(stats, 3)
    head = None
    if result.keywords:
        head = (result.keywords[0].word, result.keywords[0].label)
    elif best is not None:
        word, label = best if isinstance(best, tuple) else (best, None)
        head = (vocabulary[word], label)
    first = next((e for e in ranked if (e.word, e.label) == head), None)
    if first is not None:
        ranked.remove(first)
        ranked.insert(0, first)
    label_arr = None if labels is None else np.asarray(labels, np.int64)
    selection = keywords.KeywordResult(
        variant="plus",
        p=config.p,
        keyword=ranked[0].word,
        keyword_label=ranked[0].label,
        entries=tuple(ranked),
        suspicious=tuple(suspicious),
        flagged=result.flagged,
        labels=label_arr,
    )
    words = {k.word for k in result.keywords}
    det_scores = np.zeros(len(token_ids))
    for i, text in enumerate(suspicious):
        values = [v for w, v in text if w in words]
        if values:
            det_scores[i] = max(values)
    mask = np.zeros(len(token_ids), dtype=bool)
    mask[result.flagged] = True
    return BKIResult(
        config=config,
        selection=selection,
        scores=tuple(scores),
        local_scores=None,
        detection=detection.DetectionResult(
            method=METHOD_NAME,
            scores=det_scores,
            is_poison=mask,
            report={
                "variant": "plus",
                "backdoor_found": result.backdoor_found,
                "statistic": result.statistic,
                "threshold": result.threshold,
                "keywords": [k.word for k in result.keywords],
                "phrases": list(result.phrases),
                "rejected": [k.phrase for k in result.rejected],
            },
        ),
        scan_seconds=scan_seconds,
        plus=result,
    )


def as_detection(selection: keywords.KeywordResult) -> detection.DetectionResult:
    """The detector contract for a keyword selection.

    Score of text i = the keyword's highest score among its suspicious words, 0 if it
    has none (refined variant: also 0 when the text's label is not the keyword's).
    """
    keyword = selection.keyword
    scores = np.zeros(selection.num_texts)
    for i, words in enumerate(selection.suspicious):
        if selection.keyword_label is not None and int(selection.labels[i]) != (
            selection.keyword_label
        ):
            continue
        values = [v for w, v in words if w == keyword]
        if values:
            scores[i] = max(values)
    return detection.DetectionResult(
        method=METHOD_NAME,
        scores=scores,
        is_poison=selection.flagged_mask(),
        report={
            "keyword": keyword,
            "keyword_label": selection.keyword_label,
            "variant": selection.variant,
            "degenerate": selection.degenerate,
        },
    )


def detect(
    model: keras.Model,
    texts: Sequence[str] | np.ndarray,
    vocabulary: Sequence[str],
    labels: Sequence[int] | np.ndarray | None = None,
    config: BKIConfig = BKIConfig(),
    max_len: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> BKIResult:
    """Runs BKI on a model and its training texts, in memory.

    Chen & Dai (2021), Algorithm 1 (`variant="paper"`), the authors' refined code
    (`variant="refined"`) or BKI+ (`variant="plus"`, `bki_tf.bki.plus`: a decision
    with `result.backdoor_found`, several keywords grown into trigger phrases, each
    confirmed by re-classifying its flagged texts without it, `config.min_flip`).

    Args:
      model: A classifier from `bki_tf.build_classifier`, or with
        `config.method='generic'`/`'auto'` any functional or Sequential Keras model
        (`bki_tf.bki.representation`; `config.representation_layer`, `config.pool`).
      texts: The training texts: raw strings, or token ids (see `encode_texts`). For
        a model whose first layer is a `TextVectorization`, raw strings are encoded
        by that layer itself.
      vocabulary: Id -> token, `vocabulary[0] == ''`, `vocabulary[1] == '[UNK]'`
        (for a `TextVectorization` model: `representation.model_vocabulary(model)`).
      labels: `int [N]` training labels; the refined variant needs them, BKI+ uses
        them when given (keys `(word, label)`).
      config: The scan's settings.
      max_len: Tokens kept per raw text (default: all).
      progress: Optional callable, called with the number of texts scored so far.

    Returns:
      A `BKIResult`: the keyword, the flagged texts, the dictionary, the per-text
      suspicious words and scores, and a `DetectionResult`.

    Raises:
      ValueError: On an empty text list, a bad vocabulary, labels of the wrong
        shape, or a model without the BKI structure.
    """
    if _all_strings(texts) and representation.text_vectorizer(model) is not None:
        ids, lengths = representation.encode_strings(model, texts)
        if max_len is not None:
            ids, lengths = ids[:, : max(1, max_len)], np.minimum(lengths, max_len)
    else:
        ids, lengths = encode_texts(texts, vocabulary, max_len)
    if len(lengths) == 0:
        raise ValueError("texts is empty; BKI needs the training texts to scan.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(lengths),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be {len(lengths)} integers (one per text), got dtype "
                f"{labels.dtype} and shape {labels.shape}."
            )
    if config.variant == "refined" and labels is None:
        raise ValueError("variant='refined' needs the training labels: pass labels=...")
    config = config.resolve(model)
    start = time.time()
    scores = scoring.Scorer(
        model,
        "deletion",
        config.method,
        config.scan_batch_size,
        representation_layer=config.representation_layer,
        pool=config.pool,
        span=config.span,
    ).score_all(ids, lengths, progress)
    local = None
    if config.variant == "refined":
        local = scoring.prefix_scores(
            model,
            ids,
            lengths,
            batch_size=config.scan_batch_size,
            # "simple" has no local impacts; today's behaviour there is the fast path.
            method="fast" if config.method == "simple" else config.method,
            representation_layer=config.representation_layer,
            pool=config.pool,
        )
    return select(
        ids,
        lengths,
        scores,
        vocabulary,
        config,
        labels=labels,
        local_scores=local,
        scan_seconds=time.time() - start,
        model=model,
    )
