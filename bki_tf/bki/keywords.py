"""Backdoor keyword selection of BKI from precomputed per-token scores.

Implements the dictionary / keyword step of Backdoor Keyword Identification
(Chuanshuai Chen & Jiazhu Dai, "Mitigating backdoor attacks in LSTM-based text
classification systems by Backdoor Keyword Identification", Neurocomputing 452,
2021, Algorithm 1) and the refined variant found in the authors' public code.
Scoring the tokens needs the model and lives in `bki_tf.bki.scoring`; everything here
is pure numpy / Python over its outputs, so it runs in milliseconds and is tested
on hand-made score tables.

Inputs (shared by both variants): for text `i` of the (poisoned) training set,
`token_ids[i]` is an integer array `[l_i]` of vocabulary ids (id 0 = padding `''`,
id 1 = OOV `'[UNK]'`) and `scores[i]` a float array `[l_i]` with
`scores[i][j] = ||h(x) - h(x without token j)||_inf` (`scoring.deletion_scores`).

Paper variant (`variant="paper"`, Algorithm 1)
----------------------------------------------
1. Per text, the `p` highest-scoring tokens are its *suspicious words*. Padding and
   OOV positions are never candidates (they are skipped, not counted against `p`);
   ties in score go to the earlier position; a text with fewer than `p` candidate
   positions keeps all of them; an empty text has none.
2. A dictionary maps word -> (count, mean). Texts are visited in order and, inside a
   text, its suspicious positions in selection order (score descending, position
   ascending). Every selected *position* is one update, as in Algorithm 1:
   `count += 1; sum += f`, and `mean = sum / count`. A word selected at two positions
   of one text therefore counts twice. The sum is kept exactly (fixed-point
   integers, `fixed_point`) and the mean correctly rounded, so the dictionary does not
   depend on the order or grouping of the updates: a distributed scan that merges
   partial dictionaries gets the single-process one bit for bit.
3. `g(k) = mean(k) * log10(count(k))`; the backdoor keyword is `argmax_k g(k)`.
   Ties go to the higher count, then to the lexicographically smaller word.
4. Flagged texts are those whose suspicious words contain the keyword.

Refined variant (`variant="refined"`, authors' code)
----------------------------------------------------
The authors' repository `cirrrr/backdoor-keyword-identification` (`main.py`, the
version with `--p`, `--n` and `--a` options) refines the method; this is a
reimplementation of that logic over token scores, not a copy:

1. Token score `c_j = scores[j] + local_scores[j]`: the global deletion impact plus
   the local impact `||h(x[:j+1]) - h(x[:j])||_inf` (`scoring.prefix_scores`).
2. Keys are `(n-gram, label)` pairs, with `label` the text's training label as given
   in the (poisoned) training set. For each size `n` in `min_ngram..max_ngram`, every
   window `x[k:k+n]` free of padding/OOV is a candidate with score
   `mean(c[k:k+n])`; the `p` best windows *of that size* (ties to the earlier start)
   are kept, so a text holds at most `p` n-grams per size. For `n = 1` the score is
   exactly the authors' `delta1 + delta2`.
3. Each text counts a key once: scores of a key selected at several positions of one
   text are averaged first, then the per-text value updates the dictionary with the
   same exact mean as above.
4. `g(k) = mean(k) * log10(count(k)) * log10(s / count(k))` with
   `s = round((alpha * N) ** 2)` (Python's `round`, as in the authors' code) and `N`
   the number of training texts. The count factor peaks at `count = sqrt(s) ~ alpha*N`:
   keys seen in about an `alpha` share of the texts (the expected poison rate) win,
   keys common to most texts (`count > s`) get `g <= 0`. Ties as in the paper
   variant (then the smaller label).
5. Flagged texts are those whose suspicious n-grams contain the keyword n-gram *and*
   whose label is the keyword's label (the label is part of the key).

Differences from the paper
--------------------------
* Both variants: padding and OOV are never candidates. The authors' code keeps OOV:
  its loader maps out-of-vocabulary words to id 1 and `get_keywords` does not skip
  it, so `[UNK]` could become the keyword and flag texts that share only rare words.
* Both variants: ties are deterministic (earlier position inside a text; keyword by
  g, then count, then word, then label). The authors' code picks the top p with
  `np.argpartition` and sorts keys by g alone, so its tie order is unspecified.
* Refined vs paper variant: combined global + local score, label-aware keys,
  n-grams, one update per text, and the `log10(s / count)` frequency factor; the
  paper variant uses deletion scores of single words and `mean * log10(count)`.
* Refined variant vs the authors' code: the code handles one n-gram size per run
  (`--n`, default 1) and scores an n-gram by deleting the whole window and by the
  n-step prefix change `||h(x[:k+n]) - h(x[:k])||_inf`. Here sizes
  `min_ngram..max_ngram` (default 1..3) share one dictionary, and an n-gram's score is
  the mean of its tokens' combined scores, because `bki_tf.bki.scoring` provides
  per-token scores only (averaging keeps sizes comparable; a sum would let the largest
  size always win). `min_ngram = max_ngram = 1` reproduces the code's default run.
  N-grams containing padding/OOV are skipped.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

VARIANTS = ("paper", "refined")
# Variants whose selection a `KeywordResult` can hold: BKI+ (`bki_tf.bki.plus`) builds
# its own dictionary and decision, and reports its first round's dictionary here.
RESULT_VARIANTS = (*VARIANTS, "plus")

# Ids fixed by `tokenization` (PAD_ID, OOV_ID); repeated here so that this module stays
# free of TensorFlow.
_PAD_ID = 0
_OOV_ID = 1
_SUMMARY_ROWS = 20


@dataclasses.dataclass(frozen=True)
class KeywordEntry:
    """One dictionary entry of BKI.

    Attributes:
      word: The word (paper variant) or n-gram with tokens joined by single spaces
        (refined variant).
      count: Number of updates: selected positions (paper) or texts (refined).
      mean: Mean of the scores of those updates (exact sum, correctly rounded).
      g: Ranking value, `mean * log10(count)` (paper) or
        `mean * log10(count) * log10(s / count)` (refined).
      label: Training label of the key (refined variant); `None` for the paper variant.
      ngram: Number of tokens in `word`.
    """

    word: str
    count: int
    mean: float
    g: float
    label: int | None = None
    ngram: int = 1

    def __post_init__(self):
        if not isinstance(self.word, str) or not self.word:
            raise ValueError(f"KeywordEntry.word must be a non-empty string, got {self.word!r}.")
        if int(self.count) < 1:
            raise ValueError(f"KeywordEntry {self.word!r}: count must be >= 1, got {self.count}.")
        for name in ("mean", "g"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(
                    f"KeywordEntry {self.word!r}: {name} must be finite, got "
                    f"{getattr(self, name)}; check the scores for NaN/inf."
                )
        if self.label is not None and int(self.label) < 0:
            raise ValueError(f"KeywordEntry {self.word!r}: label must be >= 0, got {self.label}.")
        if int(self.ngram) < 1:
            raise ValueError(f"KeywordEntry {self.word!r}: ngram must be >= 1, got {self.ngram}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class KeywordResult:
    """Outcome of BKI keyword selection; compare results through `to_dict()`.

    Attributes:
      variant: `"paper"`, `"refined"` or `"plus"` (`bki_tf.bki.plus`: its first round).
      p: Suspicious words kept per text (per n-gram size for the refined variant).
      keyword: The backdoor keyword `entries[0].word`.
      keyword_label: The keyword's label (refined variant), else `None`.
      entries: All dictionary entries, best first (g descending, then count
        descending, then word and label ascending).
      suspicious: Per text, its selected `(word, score)` pairs in selection order
        (refined: sizes ascending, then score descending). Repeated words are listed
        once per selected position.
      flagged: `int64 [num_flagged]` sorted indices of the texts to remove.
      labels: Training labels used (refined variant), else `None`; `int64 [N]`.
      max_ngram: Largest n-gram size (refined variant), else `None`.
      min_ngram: Smallest n-gram size (refined variant), else `None`.
      alpha: Expected poison share `a` (refined variant), else `None`.
      s: `round((alpha * N) ** 2)` (refined variant), else `None`.
    """

    variant: str
    p: int
    keyword: str
    keyword_label: int | None
    entries: tuple[KeywordEntry, ...]
    suspicious: tuple[tuple[tuple[str, float], ...], ...]
    flagged: np.ndarray
    labels: np.ndarray | None = None
    max_ngram: int | None = None
    min_ngram: int | None = None
    alpha: float | None = None
    s: int | None = None

    def __post_init__(self):
        if self.variant not in RESULT_VARIANTS:
            raise ValueError(f"Unknown BKI variant {self.variant!r}; use one of {RESULT_VARIANTS}.")
        if int(self.p) < 1:
            raise ValueError(f"p must be >= 1, got {self.p}.")
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(
            self,
            "suspicious",
            tuple(tuple((str(w), float(v)) for w, v in text) for text in self.suspicious),
        )
        if not self.entries:
            raise ValueError("KeywordResult needs at least one dictionary entry.")
        best = self.entries[0]
        if best.word != self.keyword or best.label != self.keyword_label:
            raise ValueError(
                f"keyword {self.keyword!r} (label {self.keyword_label}) is not the best entry "
                f"{best.word!r} (label {best.label}); entries must be sorted best first."
            )
        if not self.suspicious:
            raise ValueError("KeywordResult needs the suspicious words of at least one text.")
        flagged = np.asarray(self.flagged)
        if flagged.ndim != 1 or (flagged.size and not np.issubdtype(flagged.dtype, np.integer)):
            raise ValueError(f"flagged must be a 1-D integer index array, got {flagged!r}.")
        flagged = flagged.astype(np.int64)
        if flagged.size and (
            np.any(np.diff(flagged) <= 0) or flagged[0] < 0 or flagged[-1] >= self.num_texts
        ):
            raise ValueError(
                f"flagged must hold sorted, unique indices in [0, {self.num_texts}); "
                f"got {flagged.tolist()[:10]}..."
            )
        object.__setattr__(self, "flagged", flagged)
        if self.variant == "refined":
            if self.labels is None or self.s is None:
                raise ValueError("A refined KeywordResult needs labels and s.")
            labels = np.asarray(self.labels, dtype=np.int64)
            if labels.shape != (self.num_texts,):
                raise ValueError(f"labels has shape {labels.shape}, expected ({self.num_texts},).")
            object.__setattr__(self, "labels", labels)

    @property
    def num_texts(self) -> int:
        return len(self.suspicious)

    @property
    def keyword_entry(self) -> KeywordEntry:
        return self.entries[0]

    @property
    def keyword_g(self) -> float:
        """The keyword's ranking value; `<= 0` means no word stands out (see `degenerate`)."""
        return self.entries[0].g

    @property
    def degenerate(self) -> bool:
        """True when the keyword's `g <= 0`.

        Then no candidate repeats across texts (paper: every count is 1) or every
        repeated key is too frequent (refined: `count >= s`), and the keyword is only a
        deterministic tie-break, not evidence of a backdoor.
        """
        return self.keyword_g <= 0.0

    @property
    def num_flagged(self) -> int:
        return int(self.flagged.size)

    def top(self, n: int = 10) -> tuple[KeywordEntry, ...]:
        """The `n` best dictionary entries."""
        if n < 0:
            raise ValueError(f"top(n) needs n >= 0, got {n}.")
        return self.entries[:n]

    def flagged_mask(self) -> np.ndarray:
        """`bool [N]`, True for the flagged texts."""
        mask = np.zeros(self.num_texts, dtype=bool)
        mask[self.flagged] = True
        return mask

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of everything (no truncation)."""
        return {
            "variant": self.variant,
            "p": int(self.p),
            "keyword": self.keyword,
            "keyword_label": self.keyword_label,
            "keyword_g": self.keyword_g,
            "degenerate": self.degenerate,
            "num_texts": self.num_texts,
            "num_flagged": self.num_flagged,
            "max_ngram": self.max_ngram,
            "min_ngram": self.min_ngram,
            "alpha": self.alpha,
            "s": self.s,
            "entries": [e.to_dict() for e in self.entries],
            "suspicious": [[[w, v] for w, v in text] for text in self.suspicious],
            "flagged": self.flagged.tolist(),
            "labels": None if self.labels is None else self.labels.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeywordResult:
        """Inverse of `to_dict()` (derived fields such as `keyword_g` are recomputed)."""
        return cls(
            variant=d["variant"],
            p=d["p"],
            keyword=d["keyword"],
            keyword_label=d["keyword_label"],
            entries=tuple(KeywordEntry(**e) for e in d["entries"]),
            suspicious=tuple(tuple((w, v) for w, v in text) for text in d["suspicious"]),
            flagged=np.asarray(d["flagged"], dtype=np.int64),
            labels=None if d.get("labels") is None else np.asarray(d["labels"], np.int64),
            max_ngram=d.get("max_ngram"),
            min_ngram=d.get("min_ngram"),
            alpha=d.get("alpha"),
            s=d.get("s"),
        )

    def summary(self) -> str:
        """Markdown: the keyword, flagged count and a table of the top-20 entries."""
        label = "" if self.keyword_label is None else f" (label {self.keyword_label})"
        lines = [
            f"BKI keyword ({self.variant}, p={self.p}): **{self.keyword}**{label}, "
            f"g={self.keyword_g:.4g}; flagged {self.num_flagged} of {self.num_texts} texts.",
        ]
        if self.variant == "refined":
            lines.append(
                f"n-grams {self.min_ngram}..{self.max_ngram}, alpha={self.alpha}, s={self.s}."
            )
        if self.degenerate:
            lines.append(
                "WARNING: the keyword's g <= 0, so no key stands out; the keyword is a "
                "tie-break, not evidence of a backdoor."
            )
        lines += [
            "",
            "| rank | word | label | count | mean | g |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for rank, e in enumerate(self.top(_SUMMARY_ROWS), start=1):
            lab = "" if e.label is None else str(e.label)
            word = e.word.replace("|", "\\|")
            lines.append(f"| {rank} | {word} | {lab} | {e.count} | {e.mean:.4g} | {e.g:.4g} |")
        return "\n".join(lines)


def identify_keyword(
    token_ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    vocabulary: Sequence[str],
    p: int = 5,
    variant: str = "paper",
    labels: Sequence[int] | np.ndarray | None = None,
    local_scores: Sequence[np.ndarray] | None = None,
    max_ngram: int = 3,
    alpha: float = 0.05,
    min_ngram: int = 1,
) -> KeywordResult:
    """Selects BKI's backdoor keyword and the texts it flags (Chen & Dai 2021, Alg. 1).

    See the module docstring for both variants and their differences from the paper.

    Args:
      token_ids: Per training text, an integer array `[l_i]` of vocabulary ids (0 =
        padding, 1 = OOV; neither is ever a candidate).
      scores: Per text, a float array `[l_i]` of deletion impacts
        `||h(x) - h(x without token j)||_inf` (`scoring.deletion_scores`).
      vocabulary: Id -> token string; `vocabulary[0] == ''`, `vocabulary[1] == '[UNK]'`.
      p: Suspicious words kept per text (refined: per n-gram size); `>= 1`.
      variant: `"paper"` (Algorithm 1) or `"refined"` (the authors' code).
      labels: `int [N]` training labels as given in the (poisoned) training set.
        Required by the refined variant; validated but unused by the paper variant.
      local_scores: Per text, a float array `[l_i]` of local impacts
        `||h(x[:j+1]) - h(x[:j])||_inf` (`scoring.prefix_scores`). Required by the
        refined variant; validated but unused by the paper variant.
      max_ngram: Largest n-gram size of the refined variant (`>= min_ngram`).
      alpha: Refined variant's expected poison share `a`; `s = round((a * N) ** 2)` must
        be >= 1.
      min_ngram: Smallest n-gram size of the refined variant (`>= 1`); set
        `min_ngram = max_ngram = n` to reproduce the authors' single-size runs.

    Returns:
      A `KeywordResult`; check `degenerate` before trusting the keyword.

    Raises:
      ValueError: Unknown variant, bad `p`/`max_ngram`/`min_ngram`/`alpha`, an empty
        training set, per-text length or id mismatches (naming the text index),
        missing refined inputs, or no candidate word at all.
    """
    if variant == "plus":
        raise ValueError(
            "identify_keyword runs the paper and refined variants; for variant='plus' "
            "call bki_tf.bki.plus.identify (or bki_tf.bki.detect with variant='plus')."
        )
    if variant not in VARIANTS:
        raise ValueError(f"Unknown BKI variant {variant!r}; use one of {VARIANTS}.")
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
        raise ValueError(f"p (suspicious words per text) must be an integer >= 1, got {p!r}.")
    p = int(p)
    num_texts = len(token_ids)
    if num_texts == 0:
        raise ValueError("empty training set: identify_keyword needs at least one text.")
    if len(scores) != num_texts:
        raise ValueError(f"{num_texts} token_ids arrays but {len(scores)} scores arrays.")
    vocabulary = list(vocabulary)
    ids_list = [_check_ids(ids, i, len(vocabulary)) for i, ids in enumerate(token_ids)]
    score_list = [
        _check_scores(s, ids, i, "scores") for i, (s, ids) in enumerate(zip(scores, ids_list))
    ]

    label_arr = None
    if labels is not None:
        label_arr = np.asarray(labels)
        if label_arr.shape != (num_texts,) or (
            label_arr.size and not np.issubdtype(label_arr.dtype, np.integer)
        ):
            raise ValueError(
                f"labels must be {num_texts} integers (one per text), got dtype "
                f"{label_arr.dtype} and shape {label_arr.shape}."
            )
        label_arr = label_arr.astype(np.int64)
        if np.any(label_arr < 0):
            raise ValueError(f"labels must be >= 0, got {int(label_arr.min())}.")
    local_list = None
    if local_scores is not None:
        if len(local_scores) != num_texts:
            raise ValueError(
                f"{num_texts} token_ids arrays but {len(local_scores)} local_scores arrays."
            )
        local_list = [
            _check_scores(s, ids, i, "local_scores")
            for i, (s, ids) in enumerate(zip(local_scores, ids_list))
        ]

    if variant == "paper":
        return _select("paper", ids_list, score_list, None, None, vocabulary, p, 1, 1, None, None)

    if label_arr is None or local_list is None:
        missing = [n for n, v in (("labels", label_arr), ("local_scores", local_list)) if v is None]
        raise ValueError(
            f"variant='refined' needs {' and '.join(missing)}: pass the training labels and "
            "scoring.prefix_scores(...) output, or use variant='paper'."
        )
    for name, v in (("max_ngram", max_ngram), ("min_ngram", min_ngram)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
    if min_ngram > max_ngram:
        raise ValueError(f"min_ngram={min_ngram} exceeds max_ngram={max_ngram}.")
    if isinstance(alpha, bool) or not (
        isinstance(alpha, numbers.Real) and math.isfinite(alpha) and alpha > 0
    ):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}.")
    s = round((alpha * num_texts) ** 2)
    if s < 1:
        raise ValueError(
            f"s = round((alpha * N)^2) = round(({alpha} * {num_texts})^2) = {s}; the refined "
            f"ranking needs s >= 1 (log10(s / count)). Raise alpha above "
            f"{math.sqrt(0.5) / num_texts:.3g}."
        )
    return _select(
        "refined",
        ids_list,
        score_list,
        local_list,
        label_arr,
        vocabulary,
        p,
        int(min_ngram),
        int(max_ngram),
        float(alpha),
        int(s),
    )


def _check_ids(ids, index: int, vocab_size: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"token_ids[{index}] must be 1-D, got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"token_ids[{index}] must hold integer ids, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = int(arr[(arr < 0) | (arr >= vocab_size)][0])
        raise ValueError(
            f"token_ids[{index}] holds id {bad}, outside the vocabulary of {vocab_size} "
            "tokens; pass the vocabulary the ids were encoded with."
        )
    return arr


def _check_scores(values, ids: np.ndarray, index: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != ids.shape:
        raise ValueError(
            f"{name}[{index}] has shape {arr.shape} but token_ids[{index}] has shape "
            f"{ids.shape}; there must be one score per token."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}[{index}] must be numeric, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}[{index}] holds NaN or inf; rescore text {index}.")
    return arr


def _top_positions(values: np.ndarray, candidates: np.ndarray, p: int) -> np.ndarray:
    """The `p` best candidate positions: value descending, position ascending."""
    order = np.lexsort((candidates, -values[candidates]))
    return candidates[order[:p]]


# ----------------------------------------------------------------------------------
# The pieces of both variants, shared by `identify_keyword` and the distributed scan
# (`bki_tf.runs.beam_scan`): per-text candidates, an exact mergeable dictionary
# accumulator, the ranking and the flagging rule.

# Every finite float64 is an integer multiple of 2**-1074, so `value * 2**1074` is an
# exact Python integer and a dictionary entry's sum is exact in any order or grouping.
_FIXED_POINT_BITS = 1074


def fixed_point(value: float) -> int:
    """`value * 2**1074` as an exact integer (any finite float64)."""
    numerator, denominator = float(value).as_integer_ratio()
    return numerator << (_FIXED_POINT_BITS + 1 - denominator.bit_length())


@dataclasses.dataclass(frozen=True)
class TextCandidates:
    """What one text contributes to the dictionary.

    Attributes:
      suspicious: Its selected `(word, score)` pairs (`KeywordResult.suspicious`).
      updates: `(key, value)` dictionary updates: paper, one per selected position with
        key the token id; refined, one per selected `(n-gram ids, label)` key with the
        key's scores averaged inside the text.
      keys: The distinct keys of `updates`: the text is flagged when it holds the
        keyword's key.
    """

    suspicious: tuple[tuple[str, float], ...]
    updates: tuple[tuple[Any, float], ...]
    keys: frozenset


def text_candidates(
    ids: np.ndarray,
    scores: np.ndarray,
    vocabulary: Sequence[str],
    p: int,
    variant: str = "paper",
    local_scores: np.ndarray | None = None,
    label: int | None = None,
    min_ngram: int = 1,
    max_ngram: int = 3,
) -> TextCandidates:
    """One text's suspicious words and dictionary updates (module docstring, step 1-3).

    Inputs are validated by `identify_keyword`; `ids` int64, scores float64.
    """
    if variant == "paper":
        candidates = np.flatnonzero((ids != _PAD_ID) & (ids != _OOV_ID))
        top = _top_positions(scores, candidates, p)
        # One update per selected position (Algorithm 1).
        updates = tuple((int(ids[j]), float(scores[j])) for j in top)
        return TextCandidates(
            suspicious=tuple((vocabulary[ids[j]], float(scores[j])) for j in top),
            updates=updates,
            keys=frozenset(k for k, _ in updates),
        )
    combined = scores + local_scores
    valid = (ids != _PAD_ID) & (ids != _OOV_ID)
    per_text: dict[tuple[int, ...], list[float]] = {}
    chosen = []
    for n in range(min_ngram, max_ngram + 1):
        if ids.size < n:
            break
        windows_ok = np.lib.stride_tricks.sliding_window_view(valid, n).all(axis=1)
        window_scores = np.lib.stride_tricks.sliding_window_view(combined, n).mean(axis=1)
        for k in _top_positions(window_scores, np.flatnonzero(windows_ok), p):
            gram = tuple(int(t) for t in ids[k : k + n])
            value = float(window_scores[k])
            per_text.setdefault(gram, []).append(value)
            chosen.append((" ".join(vocabulary[t] for t in gram), value))
    # Each text counts a key once, with its scores averaged inside the text.
    updates = tuple(((gram, int(label)), float(np.mean(v))) for gram, v in per_text.items())
    return TextCandidates(
        suspicious=tuple(chosen), updates=updates, keys=frozenset(k for k, _ in updates)
    )


def accumulate(stats: dict, updates) -> dict:
    """Adds `(key, value)` updates to `stats`: key -> `(count, fixed-point sum)`."""
    for key, value in updates:
        count, total = stats.get(key, (0, 0))
        stats[key] = (count + 1, total + fixed_point(value))
    return stats


def merge_stats(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Merges two `(count, fixed-point sum)` accumulators (exact, order-free)."""
    return a[0] + b[0], a[1] + b[1]


def exact_mean(count: int, total: int) -> float:
    """The correctly rounded mean of an accumulator's values."""
    return total / (count << _FIXED_POINT_BITS)


def ranking_g(variant: str, count: int, mean: float, s: int | None = None) -> float:
    """`g` of a dictionary entry (module docstring, step 3 / 4)."""
    if variant == "paper":
        return mean * math.log10(count)
    return mean * math.log10(count) * math.log10(s / count)


def make_entry(
    variant: str, key, count: int, total: int, vocabulary: Sequence[str], s: int | None = None
) -> KeywordEntry:
    """The dictionary entry of one key from its accumulator."""
    mean = exact_mean(count, total)
    g = ranking_g(variant, count, mean, s)
    if variant == "paper":
        return KeywordEntry(vocabulary[key], count, mean, g, None, 1)
    gram, label = key
    return KeywordEntry(" ".join(vocabulary[t] for t in gram), count, mean, g, label, len(gram))


def rank_key(entry: KeywordEntry) -> tuple:
    """Sort key of entries, best first: g, count descending; word, label ascending."""
    return (-entry.g, -entry.count, entry.word, -1 if entry.label is None else entry.label)


def ranked_entries(
    stats: dict, variant: str, vocabulary: Sequence[str], s: int | None = None
) -> list[tuple[KeywordEntry, Any]]:
    """Every dictionary entry with its key, best first (`rank_key`)."""
    ranked = [
        (make_entry(variant, key, count, total, vocabulary, s), key)
        for key, (count, total) in stats.items()
    ]
    ranked.sort(key=lambda item: rank_key(item[0]))
    return ranked


def assemble_result(
    variant: str,
    p: int,
    ranked: list[tuple[KeywordEntry, Any]],
    suspicious: Sequence[tuple[tuple[str, float], ...]],
    flagged: Sequence[int],
    labels: np.ndarray | None = None,
    min_ngram: int | None = None,
    max_ngram: int | None = None,
    alpha: float | None = None,
    s: int | None = None,
) -> KeywordResult:
    """The `KeywordResult` from the ranked dictionary, per-text words and flagged texts."""
    entries = [entry for entry, _ in ranked]
    best = entries[0]
    refined = variant == "refined"
    return KeywordResult(
        variant=variant,
        p=p,
        keyword=best.word,
        keyword_label=best.label,
        entries=tuple(entries),
        suspicious=tuple(suspicious),
        flagged=np.asarray(sorted(int(i) for i in flagged), dtype=np.int64),
        labels=labels if refined else None,
        max_ngram=max_ngram if refined else None,
        min_ngram=min_ngram if refined else None,
        alpha=alpha if refined else None,
        s=s if refined else None,
    )


def _select(
    variant, ids_list, score_list, local_list, labels, vocabulary, p, min_ngram, max_ngram, alpha, s
) -> KeywordResult:
    stats: dict = {}
    texts = []
    for i, (ids, f) in enumerate(zip(ids_list, score_list)):
        text = text_candidates(
            ids,
            f,
            vocabulary,
            p,
            variant,
            None if local_list is None else local_list[i],
            None if labels is None else int(labels[i]),
            min_ngram,
            max_ngram,
        )
        accumulate(stats, text.updates)
        texts.append(text)
    if not stats:
        what = "words" if variant == "paper" else "n-grams"
        raise ValueError(
            f"No candidate {what}: every text is empty or holds only padding/OOV tokens."
        )
    ranked = ranked_entries(stats, variant, vocabulary, s)
    best_key = ranked[0][1]
    flagged = [i for i, text in enumerate(texts) if best_key in text.keys]
    return assemble_result(
        variant,
        p,
        ranked,
        [t.suspicious for t in texts],
        flagged,
        labels=labels,
        min_ngram=min_ngram,
        max_ngram=max_ngram,
        alpha=alpha,
        s=s,
    )
