"""BKI+: a keyword defence that decides, finds several triggers and flags by phrase.

Built on the word-deletion scores of Backdoor Keyword Identification (Chen & Dai,
Neurocomputing 452, 2021; `bki_tf.bki.scoring`), it changes what is done with them.
Pure numpy over precomputed per-text scores: no model, no rescoring.

1. **Dictionary.** Each text's scores are normalised (`normalization`, below), its `p`
   best candidate positions (padding and OOV never; ties to the earlier position) are
   its suspicious words, and each distinct key among them updates the dictionary once
   per text with its best normalised score in that text. Keys are `(word, label)`
   when labels are given (the poisoned texts all carry the target label), else the
   word. An entry holds `count` (texts) and `mean`; `g = mean * log10(count)` as in
   Algorithm 1.
2. **Decision.** For every label separately, among the entries of that label with
   `count >= min_count`, the robust z-score of the best entry's g,
   `z = (g_top - median(g)) / (1.4826 * MAD(g))`, is the test statistic; the keyword
   candidate is the label's top entry with the largest z. Without a classifier (step
   6) a backdoor is found when `z >= threshold` (`DEFAULT_THRESHOLD`, calibrated
   below); with one, `z >= threshold` (`CONFIRMED_THRESHOLD`) only makes the entry a
   candidate, and the prediction flip decides. When no entry passes, nothing is
   flagged.
3. **Several keywords.** After a keyword is found its flagged texts are removed,
   the dictionary is rebuilt from the stored suspicious words of the remaining texts
   (no rescoring: a text's suspicious words do not depend on the other texts), and
   the test is repeated until it says stop or `max_keywords` keywords are found.
4. **Phrase growth.** Per keyword, its *suspicious texts* are the remaining texts that
   hold its key among their suspicious words, anchored at the key's best position.
   The phrase grows one token at a time to the left or right (the side whose next
   token is shared more): the candidate token at the next offset is the commonest one
   there, and is accepted while the whole extended phrase occurs at the anchor in at
   least `phrase_min_share` of the suspicious texts and that share is at least
   `phrase_min_lift` times the token's frequency among all tokens of the other
   remaining texts. A phrase is at most `max_phrase` tokens.
5. **Flagging.** A one-word phrase flags the texts that hold the key among their
   suspicious words (BKI's rule). A phrase of `n >= 2` tokens flags every remaining
   text (of the keyword's label, when labels are given) in which some window of `n`
   tokens matches a strict majority of the phrase's tokens at their places
   (`n // 2 + 1` of them; both tokens of a 2-token phrase): clean texts that merely
   contain one common trigger word are kept.
6. **Confirmation by prediction flip** (`classify`, `min_flip`). A trigger is what
   makes the model predict the target: deleting it from the texts it flags changes
   their predicted class. Each keyword's phrase is deleted from its flagged texts
   (`delete_phrase`) and the texts that the model predicts as the keyword's label are
   re-classified (`flip_share`); the keyword is kept only when at least `min_flip` of
   them change class. A rejected keyword flags nothing, the keys of its phrase's words
   are dropped and the search goes on with the next round (at most `max_rejected`
   rejections). With a classifier the z-test only orders the candidates, down to
   `CONFIRMED_THRESHOLD`; without one (or with `min_flip=0`) every keyword that passes
   the test at `DEFAULT_THRESHOLD` is kept. Measured on this package's victims (stored
   scans; DBpedia and IMDB, BiLSTM, GRU and BiLSTM+GAP, clean, poisoned, multi-trigger
   and anti-BKI): the real triggers changed 74.0-99.6 % of the predictions (IMDB
   74-87 %: a positive review without the trigger is not always called positive; the
   weak multi-trigger victim 88.5-90.7 %, although it predicts the target for only half
   of its poisoned texts), the other candidates (up to 40 per victim) at most 40.9 %
   (`university`), hence `DEFAULT_MIN_FLIP = 0.5`.

Scores
------
The scores are BKI's one-word deletion impacts, or, with `BKIConfig.span` > 1,
span-deletion impacts (`scoring.span_scores`: per token, the largest impact of
deleting `span` consecutive tokens that hold it). Nothing here depends on which.
Measured on DBpedia (threat-matrix victims, `span = 3`): the anti-BKI victim, whose
trigger no one-word deletion reveals, is found whole (precision and recall 100 %, the
trigger's deletion changes 97.1 % of the predictions), the plain victim too (99.6 %),
and the clean victim gives no backdoor (the other candidates change at most 28.6 %).

Normalisation (`normalization`)
-------------------------------
`"none"` (the raw l-inf deletion impacts, the default), `"max"` (divided by the
text's largest impact), `"zscore"` (the text's impacts z-scored) or `"rank"` (`1 -
rank / length`, the top token 1). Measured on the real scans in this package's run
folders (IMDB and DBpedia, BiLSTM, GRU and BiLSTM+GAP victims, 3 % / 2 % poisoned):
with `"none"` the trigger entry has the largest robust z in every poisoned scan
(15.8-37.3) and the poisoned texts' removal leaves at most 14.5; `"max"`, `"zscore"`
and `"rank"` let frequent domain words (`worst`, `i`, `born`, `album`) beat the
trigger on IMDB or DBpedia, because they erase how much more a trigger moves the
representation than any ordinary word does.

False alarms (`threshold`)
--------------------------
`DEFAULT_THRESHOLD = 15` is calibrated by `null_statistics`: synthetic null
dictionaries (`null_dictionary`) with Zipf word frequencies, per-word importances
drawn from a log-normal law (so some words are consistently important, like domain
words) and frequent words less important, none planted; their parameters put the
null's median statistic (10.0) near that of the real poison-free dictionaries
(9.7-14.5, median 12.8). Stated false-alarm rate: `NULL_FALSE_ALARM_RATE` = 3 %
(measured 2.7 % on 1,000 seeded nulls). On real data the rate depends on how far the
real clean dictionaries are from the null: none of the six real poison-free
dictionaries on disk reaches 15, but the margin is small (14.5 on DBpedia, and the
weakest real trigger, DBpedia on a GRU victim, scores 15.8).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

NORMALIZATIONS = ("none", "max", "zscore", "rank")
DEFAULT_NORMALIZATION = "none"
# Robust-z threshold of the decision. On 1,000 synthetic null dictionaries
# (`null_statistics(1000, seed=0)`, default null parameters) 2.7 % reach it (12: 14.7 %,
# 14: 4.0 %, 16: 1.6 %, 17: 0.7 %); the stated rate is 3 %. On the six real
# poison-free dictionaries on disk (real scans with the poisoned texts left out) the
# largest statistic was 14.5, the smallest trigger statistic 15.8.
DEFAULT_THRESHOLD = 15.0
# With the confirmation (module step 6) the z-test only orders candidates: entries down
# to this z are tested by prediction flip, at most `DEFAULT_MAX_REJECTED` rejected.
CONFIRMED_THRESHOLD = 6.0
DEFAULT_MAX_REJECTED = 40
# Share of a keyword's flagged texts predicted as its label whose class must change when
# its phrase is deleted (module step 6): measured 0.74-0.996 for real triggers, at most
# 0.409 for the other candidates.
DEFAULT_MIN_FLIP = 0.5
NULL_FALSE_ALARM_RATE = 0.03
_MAD_SCALE = 1.4826
_PAD_ID = 0
_OOV_ID = 1


@dataclasses.dataclass(frozen=True)
class PlusKeyword:
    """One keyword BKI+ found, with the phrase grown from it.

    Attributes:
      word: The keyword (one token).
      label: Its label when keys are `(word, label)`, else `None`.
      statistic: The robust z of its g when it was tested.
      count: Its dictionary count (texts) at that round.
      mean: Its mean normalised score at that round.
      g: `mean * log10(count)`.
      phrase: The grown phrase, tokens joined by single spaces (== `word` when it did
        not grow).
      anchor: Index of `word` inside the phrase.
      num_suspicious: Texts that held the key among their suspicious words.
      num_flagged: Texts this keyword's phrase flagged (or would have flagged, for a
        rejected keyword).
      flip_share: Share of those texts whose predicted class changed when the phrase
        was deleted (`None` when no classifier confirmed it).
    """

    word: str
    label: int | None
    statistic: float
    count: int
    mean: float
    g: float
    phrase: str
    anchor: int
    num_suspicious: int
    num_flagged: int
    flip_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class PlusResult:
    """The decision of BKI+ and what it flagged.

    Attributes:
      backdoor_found: Whether a keyword passed the test (`statistic >= threshold`) and,
        when a classifier was given, its confirmation.
      statistic: The first round's test statistic (robust z of the top entry's g).
      threshold: The decision threshold.
      keywords: The keywords found, in order (empty when no backdoor was found).
      rejected: Keywords that passed the test but failed the prediction-flip
        confirmation (module step 6), in order; they flagged nothing.
      stop_statistic: The statistic of the round that said stop (`None` when the
        search stopped at `max_keywords` or ran out of texts).
      flagged: `int64 [k]` sorted indices of every flagged text (empty when
        `backdoor_found` is false).
      normalization: The score normalisation used.
      settings: The remaining settings (`p`, `min_count`, `max_keywords`, ...).
    """

    backdoor_found: bool
    statistic: float
    threshold: float
    keywords: tuple[PlusKeyword, ...]
    stop_statistic: float | None
    flagged: np.ndarray
    normalization: str
    settings: dict[str, Any]
    rejected: tuple[PlusKeyword, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "keywords", tuple(self.keywords))
        object.__setattr__(self, "rejected", tuple(self.rejected))
        flagged = np.asarray(self.flagged, dtype=np.int64)
        if flagged.ndim != 1 or np.any(np.diff(flagged) <= 0):
            raise ValueError(
                f"PlusResult.flagged must be sorted unique indices, got {flagged[:10]}."
            )
        if not self.backdoor_found and (flagged.size or self.keywords):
            raise ValueError("PlusResult: no backdoor found, yet texts or keywords are listed.")
        object.__setattr__(self, "flagged", flagged)

    @property
    def phrases(self) -> tuple[str, ...]:
        return tuple(k.phrase for k in self.keywords)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backdoor_found": bool(self.backdoor_found),
            "statistic": float(self.statistic),
            "threshold": float(self.threshold),
            "keywords": [k.to_dict() for k in self.keywords],
            "stop_statistic": None if self.stop_statistic is None else float(self.stop_statistic),
            "flagged": self.flagged.tolist(),
            "normalization": self.normalization,
            "settings": dict(self.settings),
            "rejected": [k.to_dict() for k in self.rejected],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlusResult:
        return cls(
            backdoor_found=bool(d["backdoor_found"]),
            statistic=float(d["statistic"]),
            threshold=float(d["threshold"]),
            keywords=tuple(PlusKeyword(**k) for k in d["keywords"]),
            stop_statistic=d.get("stop_statistic"),
            flagged=np.asarray(d["flagged"], dtype=np.int64),
            normalization=d["normalization"],
            settings=dict(d.get("settings", {})),
            rejected=tuple(PlusKeyword(**k) for k in d.get("rejected", ())),
        )

    def summary(self) -> str:
        """Markdown: the decision and one row per keyword."""
        if not self.backdoor_found:
            if self.rejected:
                head = (
                    f"BKI+: **no backdoor found**: {len(self.rejected)} keyword(s) passed the "
                    f"test (statistic {self.statistic:.2f} >= {self.threshold:.2f}) but deleting "
                    "them changed too few predictions; nothing flagged."
                )
            else:
                return (
                    f"BKI+: **no backdoor found** (statistic {self.statistic:.2f} < threshold "
                    f"{self.threshold:.2f}); nothing flagged."
                )
        else:
            head = (
                f"BKI+: **backdoor found** (statistic {self.statistic:.2f} >= threshold "
                f"{self.threshold:.2f}); {len(self.keywords)} keyword(s), "
                f"{self.flagged.size} texts flagged."
            )
        lines = [
            head,
            "",
            "| # | keyword | label | z | count | phrase | flagged | prediction flips | kept |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [(k, True) for k in self.keywords] + [(k, False) for k in self.rejected]
        for i, (k, kept) in enumerate(rows, 1):
            lab = "" if k.label is None else k.label
            flip = "" if k.flip_share is None else f"{100 * k.flip_share:.1f} %"
            lines.append(
                f"| {i} | {k.word} | {lab} | {k.statistic:.2f} | {k.count} | {k.phrase} | "
                f"{k.num_flagged} | {flip} | {'yes' if kept else 'no'} |"
            )
        return "\n".join(lines)


def normalize(values: np.ndarray, normalization: str) -> np.ndarray:
    """One text's scores `float64 [l]` under `normalization` (module docstring)."""
    values = np.asarray(values, np.float64)
    if normalization == "none" or values.size == 0:
        return values
    if normalization == "max":
        top = values.max()
        return values / top if top > 0 else np.zeros_like(values)
    if normalization == "zscore":
        sd = values.std()
        return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)
    if normalization == "rank":
        order = np.lexsort((np.arange(values.size), -values))
        ranks = np.empty(values.size)
        ranks[order] = np.arange(values.size)
        return 1.0 - ranks / values.size
    raise ValueError(f"Unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}.")


@dataclasses.dataclass(frozen=True)
class _Text:
    suspicious: tuple[tuple[str, float], ...]
    best: dict  # key -> (normalised score, position)


def _candidates(ids, values, vocabulary, p, label) -> _Text:
    cand = np.flatnonzero((ids != _PAD_ID) & (ids != _OOV_ID))
    top = cand[np.lexsort((cand, -values[cand]))[:p]]
    best: dict = {}
    for j in top:  # selection order: the first occurrence of a key is its best.
        key = int(ids[j]) if label is None else (int(ids[j]), int(label))
        if key not in best:
            best[key] = (float(values[j]), int(j))
    return _Text(tuple((vocabulary[ids[j]], float(values[j])) for j in top), best)


def robust_statistic(
    stats: dict, min_count: int
) -> tuple[float, Any, tuple[int, float, float] | None]:
    """The test of module step 2 on a dictionary `key -> (count, sum)`.

    Returns:
      `(z, key, (count, mean, g))` of the best candidate, or `(-inf, None, None)` when
      no label has at least three entries with `count >= min_count`.
    """
    groups: dict = {}
    for key, (count, total) in stats.items():
        if count >= min_count:
            label = key[1] if isinstance(key, tuple) else None
            mean = total / count
            groups.setdefault(label, []).append((mean * math.log10(count), count, mean, key))
    best = (-math.inf, None, None)
    for label in sorted(groups, key=lambda v: -1 if v is None else v):
        rows = groups[label]
        if len(rows) < 3:
            continue
        g = np.asarray([r[0] for r in rows])
        med = float(np.median(g))
        mad = _MAD_SCALE * float(np.median(np.abs(g - med)))
        # Ties: higher g, then higher count, then the smaller key.
        top = min(rows, key=lambda r: (-r[0], -r[1], r[3]))
        z = (top[0] - med) / mad if mad > 0 else (math.inf if top[0] > med else 0.0)
        if z > best[0]:
            best = (z, top[3], (top[1], top[2], top[0]))
    return best


def _grow_phrase(token_ids, anchors, rest_freq, max_phrase, min_share, min_lift):
    """Grows the keyword at `anchors` (text -> position) into a contiguous phrase.

    Returns the phrase's token ids and the keyword's index inside it.
    """
    texts = list(anchors)
    keyword = int(token_ids[texts[0]][anchors[texts[0]]])
    left, right = [], []  # Offsets already accepted, with their tokens.
    match = {i: True for i in texts}

    def propose(offset):
        counts: dict = {}
        for i in texts:
            if not match[i]:
                continue
            j = anchors[i] + offset
            ids = token_ids[i]
            if 0 <= j < ids.size and ids[j] not in (_PAD_ID, _OOV_ID):
                counts[int(ids[j])] = counts.get(int(ids[j]), 0) + 1
        if not counts:
            return None, 0.0
        token = min(counts, key=lambda t: (-counts[t], t))
        return token, counts[token] / len(texts)

    while 1 + len(left) + len(right) < max_phrase:
        options = []
        for side, offset in (("left", -len(left) - 1), ("right", len(right) + 1)):
            token, share = propose(offset)
            if token is None or share < min_share:
                continue
            if share < min_lift * rest_freq.get(token, 0.0):
                continue
            options.append((-share, side != "left", side, offset, token))
        if not options:
            break
        _, _, side, offset, token = min(options)
        (left if side == "left" else right).append(token)
        for i in texts:
            j = anchors[i] + offset
            ids = token_ids[i]
            match[i] = match[i] and 0 <= j < ids.size and int(ids[j]) == token
    phrase = [*reversed(left), keyword, *right]
    return phrase, len(left)


def _majority_match(ids: np.ndarray, phrase: np.ndarray) -> float:
    """The largest share of `phrase`'s tokens matched in place by a window of `ids`."""
    n = phrase.size
    if ids.size < n:
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(ids, n)
    return float((windows == phrase[None, :]).sum(axis=1).max()) / n


def _phrase_need(n: int) -> int:
    """Tokens a window must match in place to count as the phrase (module step 5)."""
    return 1 if n == 1 else n // 2 + 1


def delete_phrase(ids: np.ndarray, phrase: Sequence[int]) -> np.ndarray:
    """`ids` without the phrase: the tokens of every window that matches it.

    Windows of `len(phrase)` tokens are read left to right; one that matches the
    phrase's tokens at their places in at least `n // 2 + 1` places (every place for
    a one-token phrase; step 5's rule) loses its matching tokens, and the next window
    starts after it. Tokens that do not match are kept.
    """
    ids = np.asarray(ids, np.int64)
    phrase = np.asarray(phrase, np.int64)
    n = phrase.size
    keep = np.ones(ids.size, dtype=bool)
    need = _phrase_need(n)
    j = 0
    while j + n <= ids.size:
        same = ids[j : j + n] == phrase
        if int(same.sum()) >= need:
            keep[j : j + n] &= ~same
            j += n
        else:
            j += 1
    return ids[keep]


def flip_share(
    classify: Callable[[Sequence[np.ndarray]], np.ndarray],
    texts: Sequence[np.ndarray],
    phrase: Sequence[int],
    label: int | None = None,
) -> float:
    """Share of `texts` whose predicted class changes when `phrase` is deleted.

    With `label`, only the texts predicted as `label` count: the question is whether
    the phrase is what makes them `label` (a poisoned text the victim does not even
    call the target is no evidence either way). Texts the deletion leaves empty are
    left out (there is nothing to classify). 1.0 when no text is left without a
    `label` (no evidence against the phrase); 0.0 when none is predicted as `label`.
    """
    after = [delete_phrase(t, phrase) for t in texts]
    rows = [i for i, t in enumerate(after) if t.size]
    if not rows:
        return 1.0

    def predict(batch: list[np.ndarray]) -> np.ndarray:
        classes = np.asarray(classify(batch))
        if classes.shape != (len(batch),):
            raise ValueError(
                f"classify must return one class per text: {len(batch)} texts, got shape "
                f"{classes.shape}."
            )
        return classes

    before = predict([np.asarray(texts[i], np.int64) for i in rows])
    if label is not None:
        rows = [i for i, b in zip(rows, before) if b == label]
        before = before[before == label]
        if not rows:
            return 0.0
    changed = predict([after[i] for i in rows])
    return float(np.mean(before != changed))


def identify(
    token_ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    vocabulary: Sequence[str],
    labels: Sequence[int] | np.ndarray | None = None,
    p: int = 5,
    normalization: str = DEFAULT_NORMALIZATION,
    threshold: float | None = None,
    min_count: int = 3,
    max_keywords: int = 5,
    max_phrase: int = 8,
    phrase_min_share: float = 0.5,
    phrase_min_lift: float = 10.0,
    classify: Callable[[Sequence[np.ndarray]], np.ndarray] | None = None,
    min_flip: float = DEFAULT_MIN_FLIP,
    max_rejected: int = DEFAULT_MAX_REJECTED,
) -> tuple[PlusResult, list[tuple[tuple[str, float], ...]], dict]:
    """Runs BKI+ (module docstring) on precomputed deletion scores.

    Args:
      token_ids: Per text, `int [l_i]` vocabulary ids (0 padding, 1 OOV).
      scores: Per text, `float [l_i]` deletion impacts (`scoring.deletion_scores`).
      vocabulary: Id -> token.
      labels: `int [N]` training labels; keys are `(word, label)` when given.
      p: Suspicious words per text (`>= 1`).
      normalization: One of `NORMALIZATIONS`.
      threshold: Robust-z threshold of the decision (default `DEFAULT_THRESHOLD`), or of
        the candidates when a classifier confirms them (default `CONFIRMED_THRESHOLD`).
      min_count: Entries with fewer texts are left out of the test.
      max_keywords: Most keywords searched for.
      max_phrase: Longest phrase, in tokens.
      phrase_min_share: Share of the suspicious texts a phrase extension must hold.
      phrase_min_lift: How many times the extension's share must exceed the token's
        frequency among the other texts' tokens.
      classify: Optional; maps a list of `int [l]` id arrays (unpadded texts) to their
        predicted classes `int [k]`. With it each keyword is confirmed by prediction
        flip (module step 6); without it, not.
      min_flip: Share of a keyword's flagged texts whose class must change (`[0, 1]`;
        0 keeps every keyword).
      max_rejected: Most keywords rejected by the confirmation before the search stops.

    Returns:
      `(result, suspicious, first_dictionary)`: the `PlusResult`; per text its
      `(word, normalised score)` suspicious words; and the first round's dictionary,
      key -> `(count, sum of normalised scores)` (key: word id, or `(word id, label)`).

    Raises:
      ValueError: On a bad setting or mismatched inputs, naming the value.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}."
        )
    for name, value, low in (
        ("p", p, 1),
        ("min_count", min_count, 2),
        ("max_keywords", max_keywords, 1),
        ("max_phrase", max_phrase, 1),
        ("max_rejected", max_rejected, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    confirm = classify is not None and min_flip > 0
    if threshold is None:
        threshold = CONFIRMED_THRESHOLD if confirm else DEFAULT_THRESHOLD
    if isinstance(threshold, bool) or not (
        isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0
    ):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}.")
    if not 0 < phrase_min_share <= 1:
        raise ValueError(f"phrase_min_share must be in (0, 1], got {phrase_min_share}.")
    if not phrase_min_lift >= 1:
        raise ValueError(f"phrase_min_lift must be >= 1, got {phrase_min_lift}.")
    if isinstance(min_flip, bool) or not (isinstance(min_flip, int | float) and 0 <= min_flip <= 1):
        raise ValueError(f"min_flip must be a share in [0, 1], got {min_flip!r}.")
    n = len(token_ids)
    if n == 0 or len(scores) != n:
        raise ValueError(
            f"BKI+ needs one score array per text: {n} texts, {len(scores)} score arrays."
        )
    ids_list = [np.asarray(t, np.int64) for t in token_ids]
    label_arr = None if labels is None else np.asarray(labels, np.int64)
    if label_arr is not None and label_arr.shape != (n,):
        raise ValueError(f"labels has shape {label_arr.shape}, expected ({n},).")
    texts = []
    for i, (ids, f) in enumerate(zip(ids_list, scores)):
        f = np.asarray(f, np.float64)
        if f.shape != ids.shape:
            raise ValueError(f"scores[{i}] has shape {f.shape} but token_ids[{i}] has {ids.shape}.")
        texts.append(
            _candidates(
                ids,
                normalize(f, normalization),
                vocabulary,
                int(p),
                None if label_arr is None else label_arr[i],
            )
        )
    active = np.ones(n, dtype=bool)
    flagged_mask = np.zeros(n, dtype=bool)
    found: list[PlusKeyword] = []
    rejected: list[PlusKeyword] = []
    first_stat = None
    stop = None
    first_dictionary = None
    while True:
        stats: dict = {}
        for i in np.flatnonzero(active):
            for key, (value, _) in texts[i].best.items():
                c, s = stats.get(key, (0, 0.0))
                stats[key] = (c + 1, s + value)
        if first_dictionary is None:
            first_dictionary = dict(stats)
        z, key, entry = robust_statistic(stats, int(min_count))
        if first_stat is None:
            first_stat = z
        if key is None or z < threshold:
            stop = z
            break
        suspicious = [i for i in np.flatnonzero(active) if key in texts[i].best]
        anchors = {int(i): texts[i].best[key][1] for i in suspicious}
        rest = np.flatnonzero(active)
        rest = rest[~np.isin(rest, suspicious)]
        rest_freq = _token_frequencies([ids_list[i] for i in rest])
        phrase, anchor = _grow_phrase(
            ids_list, anchors, rest_freq, int(max_phrase), phrase_min_share, phrase_min_lift
        )
        label = key[1] if isinstance(key, tuple) else None
        if len(phrase) == 1:
            hit = np.asarray(suspicious, np.int64)
        else:
            need = _phrase_need(len(phrase))
            phrase_arr = np.asarray(phrase, np.int64)
            hit = np.asarray(
                [
                    i
                    for i in np.flatnonzero(active)
                    if (label is None or label_arr[i] == label)
                    and _majority_match(ids_list[i], phrase_arr) * len(phrase) >= need - 1e-9
                ],
                np.int64,
            )
        flips = (
            flip_share(classify, [ids_list[i] for i in hit], phrase, label)
            if confirm and hit.size
            else None
        )
        count, mean, g = entry
        word_id = key[0] if isinstance(key, tuple) else key
        keyword = PlusKeyword(
            word=vocabulary[word_id],
            label=None if label is None else int(label),
            statistic=float(z),
            count=int(count),
            mean=float(mean),
            g=float(g),
            phrase=" ".join(vocabulary[t] for t in phrase),
            anchor=int(anchor),
            num_suspicious=len(suspicious),
            num_flagged=int(hit.size),
            flip_share=flips,
        )
        # Suspicious texts the phrase rule kept stay in, without the key, so the next
        # round never tests the same key again.
        _drop_key(texts, key)
        if flips is not None and flips < min_flip:
            # The phrase's other words would only grow the same phrase again.
            for token in phrase:
                _drop_key(texts, int(token) if label is None else (int(token), int(label)))
            rejected.append(keyword)
            if len(rejected) >= max_rejected:
                stop = None
                break
            continue
        found.append(keyword)
        active[hit] = False
        flagged_mask[hit] = True
        if len(found) >= max_keywords or not active.any():
            stop = None
            break
    result = PlusResult(
        backdoor_found=bool(found),
        statistic=float(first_stat) if math.isfinite(first_stat) else 0.0,
        threshold=float(threshold),
        keywords=tuple(found),
        stop_statistic=None if stop is None or not math.isfinite(stop) else float(stop),
        flagged=np.flatnonzero(flagged_mask).astype(np.int64),
        normalization=normalization,
        settings={
            "p": int(p),
            "min_count": int(min_count),
            "max_keywords": int(max_keywords),
            "max_phrase": int(max_phrase),
            "phrase_min_share": float(phrase_min_share),
            "phrase_min_lift": float(phrase_min_lift),
            "label_keys": label_arr is not None,
            "min_flip": float(min_flip) if confirm else None,
            "max_rejected": int(max_rejected) if confirm else None,
        },
        rejected=tuple(rejected),
    )
    return result, [t.suspicious for t in texts], first_dictionary


def _drop_key(texts, key):
    for t in texts:
        t.best.pop(key, None)


def _token_frequencies(token_lists: Sequence[np.ndarray]) -> dict[int, float]:
    """Token id -> share of all non-padding tokens of `token_lists`."""
    if not token_lists:
        return {}
    flat = np.concatenate(token_lists) if token_lists else np.zeros(0, np.int64)
    flat = flat[flat != _PAD_ID]
    if flat.size == 0:
        return {}
    values, counts = np.unique(flat, return_counts=True)
    return dict(zip(values.tolist(), (counts / flat.size).tolist()))


def null_dictionary(
    rng: np.random.Generator,
    num_labels: int = 2,
    vocab_size: int = 5000,
    texts_per_label: int = 5000,
    p: int = 5,
    zipf_exponent: float = 1.0,
    importance_sigma: float = 0.3,
    noise_sigma: float = 0.5,
    frequency_exponent: float = 0.5,
) -> dict:
    """One synthetic null dictionary `(word, label) -> (count, sum)` with no planted key.

    Per label, word `k` has a Zipf share `q_k` (`zipf_exponent`) and an importance
    `w_k = (k / vocab_size) ** frequency_exponent * LogNormal(0, importance_sigma)`:
    frequent words (function words) matter less, and some words are consistently
    important, like domain words. Each text selects `p` words with probabilities
    proportional to `q_k * w_k` and counts a word once, so `count_k ~ Binomial(texts,
    1 - (1 - pi_k)^p)`; the word's mean score is `w_k` times log-normal noise whose
    spread shrinks as `noise_sigma / sqrt(count_k)`.
    """
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    share = ranks**-zipf_exponent
    stats: dict = {}
    for label in range(num_labels):
        importance = (ranks / vocab_size) ** frequency_exponent * rng.lognormal(
            0.0, importance_sigma, vocab_size
        )
        pick = share * importance
        pick /= pick.sum()
        counts = rng.binomial(texts_per_label, 1.0 - (1.0 - pick) ** p)
        noise = rng.lognormal(0.0, noise_sigma / np.sqrt(np.maximum(counts, 1)))
        words = np.flatnonzero(counts)
        totals = importance[words] * noise[words] * counts[words]
        stats.update(
            ((w, label), (c, t))
            for w, c, t in zip(words.tolist(), counts[words].tolist(), totals.tolist())
        )
    return stats


def null_statistics(
    num_dictionaries: int = 200, seed: int = 0, min_count: int = 3, **kwargs
) -> np.ndarray:
    """The test statistic on `num_dictionaries` seeded null dictionaries (`null_dictionary`).

    `np.mean(null_statistics(...) >= threshold)` is the false-alarm rate of
    `threshold` on those nulls.
    """
    rng = np.random.default_rng(seed)
    return np.asarray(
        [
            robust_statistic(null_dictionary(rng, **kwargs), min_count)[0]
            for _ in range(num_dictionaries)
        ]
    )
