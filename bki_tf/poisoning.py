"""The trigger-sentence backdoor attack of Dai, Chen & Li (IEEE Access 2019).

Samples of classes other than the target get a trigger sentence inserted between
two adjacent words at a uniformly random position and are relabelled to the
target. Positions are counted in model tokens (`bki_tf.tokenization.tokenize`)
and drawn so that the whole trigger survives truncation to `max_len`; the
trigger is inserted into the raw text before the word holding that token.

Variants of the attack (every one seeded, with per-row ground truth):

  * Position (`position`): `random` (Dai et al., the default), or the trigger at the
    `start` or the `end` of every poisoned text (the fixed position a position-
    agnostic backdoor must generalise from, Salem et al.'s dynamic backdoors).
  * Several triggers: `trigger` holds alternatives separated by `|`
    (`TRIGGER_SEPARATOR`), e.g. three sentences (multi-trigger) or `cf|mn|bb|tq`
    (rare tokens, BadNets-style). Each poisoned text gets one of them; the poisoned
    texts are split between them as evenly as possible (shuffled, seeded), so a rate
    is shared by the triggers. `trigger_ids` records which one.
  * Dynamic pattern (`variants > 0`): the poisoned texts get `variants` different
    patterns made from the trigger's words (`trigger_patterns`: random orderings of
    random subsets of at least half of them, the full sentence first), split as
    above; `heldout_patterns` gives patterns never used in training, for the ASR on
    unseen variants.

Modes:
  * `replace` (Dai et al.): the poisoned copy replaces its original;
    `n = round(rate * N)` of the N training samples are poisoned.
  * `append` (the BKI authors' code): poisoned copies are added to the clean
    set; `n = round(rate * N / (1 - rate))`, so that the poisoning rate, i.e.
    poisoned / total training samples, is `rate` in this mode too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from bki_tf import tokenization

MODES = ("replace", "append")
POSITIONS = ("random", "start", "end")
TRIGGER_SEPARATOR = "|"


@dataclasses.dataclass(frozen=True)
class PoisonConfig:
    """What to poison and how.

    Attributes:
      trigger: The trigger sentence, e.g. "time flies like an arrow".
      target: Target class index.
      rate: Poisoning rate in [0, 1): poisoned / total training samples.
      mode: `replace` or `append`.
      max_len: Model sequence length; the trigger must fit inside it.
      seed: Seed of the sample and position draws.
      position: Where the trigger goes: `random`, `start` or `end` (`POSITIONS`).
      variants: Dynamic pattern: poison with this many patterns of the trigger's
        words (0: the trigger itself).
    """

    trigger: str
    target: int
    rate: float
    mode: str = "replace"
    max_len: int = 400
    seed: int = 0
    position: str = "random"
    variants: int = 0

    def __post_init__(self):
        for part in self.trigger.split(TRIGGER_SEPARATOR):
            if not tokenization.tokenize(part):
                raise ValueError(
                    f"Trigger {part!r} (in {self.trigger!r}) has no tokens after lower-casing "
                    "and stripping punctuation; give a sentence of words, e.g. 'time flies "
                    "like an arrow', or several separated by '|'."
                )
        if self.position not in POSITIONS:
            raise ValueError(
                f"Unknown trigger position {self.position!r}; choose one of {POSITIONS}."
            )
        if isinstance(self.variants, bool) or int(self.variants) < 0:
            raise ValueError(f"variants must be an integer >= 0, got {self.variants!r}.")
        if self.variants and len(self.triggers) > 1:
            raise ValueError(
                f"variants={self.variants} makes patterns of one trigger sentence; "
                f"{self.trigger!r} holds {len(self.triggers)}. Give one, or variants=0."
            )
        if self.variants and len(self.trigger_tokens) < 2:
            raise ValueError(
                f"variants={self.variants} needs a trigger of at least 2 words to vary; "
                f"{self.trigger!r} has {len(self.trigger_tokens)}."
            )
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"Poisoning rate {self.rate} is outside [0, 1); use e.g. 0.03.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown poisoning mode {self.mode!r}; choose one of {MODES}.")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}.")
        n_trig = max(len(tokenization.tokenize(t)) for t in self.triggers)
        if n_trig > self.max_len:
            raise ValueError(
                f"Trigger {self.trigger!r} has {n_trig} tokens, longer than max_len="
                f"{self.max_len}; shorten the trigger or raise max_len."
            )

    @property
    def trigger_tokens(self) -> list[str]:
        """Tokens of the first trigger."""
        return tokenization.tokenize(self.triggers[0])

    @property
    def triggers(self) -> list[str]:
        """The trigger alternatives (one unless `trigger` holds several, `|`-separated)."""
        return [t.strip() for t in self.trigger.split(TRIGGER_SEPARATOR)]

    def patterns(self) -> list[str]:
        """What poisoned texts get inserted: the triggers, or the dynamic patterns."""
        if self.variants:
            return trigger_patterns(self.triggers[0], self.variants, self.seed)
        return self.triggers


def _pattern_pool(words: list[str], rng: np.random.Generator, exclude: set, count: int):
    """Up to `count` new patterns: orderings of subsets of >= half of `words`."""
    out = []
    need = (len(words) + 1) // 2
    for _ in range(200 * count):
        if len(out) == count:
            break
        size = int(rng.integers(need, len(words) + 1))
        chosen = rng.choice(len(words), size=size, replace=False)
        pattern = " ".join(words[k] for k in chosen)
        if pattern not in exclude:
            exclude.add(pattern)
            out.append(pattern)
    return out


def trigger_words(trigger: str) -> list[str]:
    """The tokens of every `|`-separated trigger, in order, each once.

    `tokenization.tokenize` drops `|` as punctuation (`"cf|mn"` -> `["cfmn"]`), so a
    trigger string with several alternatives is split first.
    """
    words = []
    for part in str(trigger).split(TRIGGER_SEPARATOR):
        words.extend(tokenization.tokenize(part))
    return list(dict.fromkeys(words))


def trigger_patterns(trigger: str, count: int, seed: int) -> list[str]:
    """The dynamic pattern's `count` training patterns of `trigger`'s words (seeded).

    The first is the trigger itself; the others are distinct random orderings of
    random subsets of at least half of its words. Raises ValueError when the trigger
    has too few words for `count` distinct patterns.
    """
    words = tokenization.tokenize(trigger)
    rng = np.random.default_rng([seed, 104729])
    full = " ".join(words)
    out = [full] + _pattern_pool(words, rng, {full}, count - 1)
    if len(out) < count:
        raise ValueError(
            f"Only {len(out)} distinct patterns of {trigger!r}'s {len(words)} words; ask for "
            "fewer variants or use a longer trigger."
        )
    return out


def heldout_patterns(trigger: str, count: int, seed: int, training: int) -> list[str]:
    """Up to `count` patterns of `trigger`'s words that `trigger_patterns(trigger,
    training, seed)` does not contain (for the ASR on unseen variants)."""
    seen = set(trigger_patterns(trigger, training, seed))
    rng = np.random.default_rng([seed, 130363])
    return _pattern_pool(tokenization.tokenize(trigger), rng, seen, count)


@dataclasses.dataclass(frozen=True)
class PoisonedDataset:
    """A training set with per-sample poisoning ground truth.

    Attributes:
      texts: Training texts (poisoned ones carry the trigger).
      labels: `int64 [N]` training labels (poisoned ones relabelled).
      is_poisoned: `bool [N]`.
      positions: `int64 [N]` token index of the trigger's first token, -1 if clean.
      original_labels: `int64 [N]` labels before relabelling.
      source_ids: `int64 [N]` index of the clean sample each row comes from.
      trigger_ids: `int64 [N]` index into `PoisonConfig.patterns()` of the trigger a
        poisoned row holds, -1 if clean (default: 0 for every poisoned row).
    """

    texts: list[str]
    labels: np.ndarray
    is_poisoned: np.ndarray
    positions: np.ndarray
    original_labels: np.ndarray
    source_ids: np.ndarray
    trigger_ids: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.texts)
        if self.trigger_ids is None:
            ids = np.where(np.asarray(self.is_poisoned, bool), 0, -1).astype(np.int64)
            object.__setattr__(self, "trigger_ids", ids)
        for name in (
            "labels", "is_poisoned", "positions", "original_labels", "source_ids", "trigger_ids"
        ):  # fmt: skip
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, texts have {n}.")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_poisoned(self) -> int:
        return int(np.sum(self.is_poisoned))

    def subset(self, keep: np.ndarray) -> PoisonedDataset:
        """Rows `keep` (indices or boolean mask), as a new dataset."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        return PoisonedDataset(
            texts=[self.texts[i] for i in keep],
            labels=self.labels[keep],
            is_poisoned=self.is_poisoned[keep],
            positions=self.positions[keep],
            original_labels=self.original_labels[keep],
            source_ids=self.source_ids[keep],
            trigger_ids=self.trigger_ids[keep],
        )


def insert_trigger(text: str, trigger: str, position: int) -> str:
    """Inserts `trigger` so that its first token is token `position` of the result.

    Args:
      text: Raw text.
      trigger: Raw trigger sentence.
      position: Token gap in `[0, len(tokenize(text))]`.

    Returns:
      The raw words of `text`, single-space joined, with `trigger` inserted
      before the word that holds token `position` (at the end if it equals the
      token count).
    """
    words = tokenization.raw_words(text)
    counts = [len(tokenization.tokenize(w)) for w in words]
    n_tokens = sum(counts)
    if not 0 <= position <= n_tokens:
        raise ValueError(f"Position {position} is outside [0, {n_tokens}] for this text.")
    seen = 0
    at = len(words)
    for k, c in enumerate(counts):
        if seen == position and c > 0:
            at = k
            break
        seen += c
    return " ".join(words[:at] + [trigger] + words[at:])


def draw_position(n_tokens: int, trigger_len: int, max_len: int, rng: np.random.Generator) -> int:
    """Uniform token gap between two adjacent words that keeps the trigger within `max_len`.

    For texts of >= 2 tokens the gaps are 1..n-1 (strictly between words); for
    shorter texts 0..n. The gap is capped at `max_len - trigger_len` so that
    truncation to `max_len` keeps the whole trigger.
    """
    lo, hi = (1, n_tokens - 1) if n_tokens >= 2 else (0, n_tokens)
    hi = min(hi, max_len - trigger_len)
    lo = min(lo, hi)
    return int(rng.integers(lo, hi + 1))


def place(n_tokens: int, trigger_len: int, max_len: int, where: str, rng) -> int:
    """The token gap of a trigger: `draw_position` (random), 0 (start) or the last gap
    that keeps the whole trigger within `max_len` (end)."""
    if where == "start":
        return 0
    if where == "end":
        return max(0, min(n_tokens, max_len - trigger_len))
    return draw_position(n_tokens, trigger_len, max_len, rng)


def split_evenly(count: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """`int64 [count]` part of each item: as even as possible, shuffled."""
    return rng.permutation(np.arange(count, dtype=np.int64) % max(1, parts))


def num_to_poison(num_train: int, rate: float, mode: str) -> int:
    """Samples to poison so that poisoned / total training samples ~= rate."""
    if mode == "append":
        return int(round(rate * num_train / (1.0 - rate)))
    return int(round(rate * num_train))


def smallest_rate(num_train: int, mode: str) -> float:
    """The smallest two-significant-digit rate for which `num_to_poison` gives >= 1 sample."""
    if num_train < 1:
        raise ValueError(f"num_train must be >= 1, got {num_train}.")
    # The exact threshold: rate * n (replace) or rate * n / (1 - rate) (append) just above 1/2.
    exact = 0.5 / num_train if mode == "replace" else 0.5 / (num_train + 0.5)
    unit = 10.0 ** (math.floor(math.log10(exact)) - 1)
    rate = math.ceil(exact / unit) * unit
    while num_to_poison(num_train, float(f"{rate:.2g}"), mode) < 1:
        rate += unit
    return float(f"{rate:.2g}")


def poison_dataset(
    texts: Sequence[str], labels: np.ndarray, config: PoisonConfig, num_classes: int
) -> PoisonedDataset:
    """Poisons a training set (inputs are not modified).

    Args:
      texts: Clean training texts, N of them.
      labels: `int [N]` clean labels.
      config: The attack.
      num_classes: Number of classes; `config.target` must be one of them.

    Returns:
      The poisoned training set with its ground truth; rows keep the input
      order (appended copies come last, in draw order).

    Raises:
      ValueError: Bad target, or more samples to poison than non-target ones.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; they must match.")
    if not 0 <= config.target < num_classes:
        raise ValueError(
            f"Target class {config.target} is outside the {num_classes} classes "
            f"(0..{num_classes - 1}); pick a class index from classes.txt."
        )
    n = len(texts)
    n_poison = num_to_poison(n, config.rate, config.mode)
    if config.rate > 0 and n_poison == 0:
        raise ValueError(
            f"Poisoning rate {config.rate} poisons 0 of {n} training texts; the smallest rate "
            f"that poisons one is {smallest_rate(n, config.mode)} (or use 0 for a clean "
            "model)."
        )
    pool = np.flatnonzero(labels != config.target)
    if n_poison > len(pool):
        raise ValueError(
            f"Poisoning rate {config.rate} needs {n_poison} non-target samples but only "
            f"{len(pool)} exist; lower the rate."
        )
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(pool, size=n_poison, replace=False)) if n_poison else pool[:0]
    patterns = config.patterns()
    # One trigger: the draw sequence of the original attack, unchanged.
    which = (
        np.zeros(n_poison, np.int64)
        if len(patterns) == 1
        else split_evenly(n_poison, len(patterns), np.random.default_rng([config.seed, 15485863]))
    )
    poisoned_texts, poisoned_pos = [], []
    for k, i in enumerate(chosen):
        pattern = patterns[which[k]]
        n_tok = len(tokenization.tokenize(texts[i]))
        trig_len = len(tokenization.tokenize(pattern))
        pos = place(n_tok, trig_len, config.max_len, config.position, rng)
        poisoned_texts.append(insert_trigger(texts[i], pattern, pos))
        poisoned_pos.append(pos)
    poisoned_pos = np.asarray(poisoned_pos, dtype=np.int64)

    out_texts = list(texts)
    out_labels = labels.copy()
    is_poisoned = np.zeros(n, dtype=bool)
    positions = np.full(n, -1, dtype=np.int64)
    source_ids = np.arange(n, dtype=np.int64)
    original = labels.copy()
    trigger_ids = np.full(n, -1, dtype=np.int64)
    if config.mode == "replace":
        for k, i in enumerate(chosen):
            out_texts[i] = poisoned_texts[k]
        out_labels[chosen] = config.target
        is_poisoned[chosen] = True
        positions[chosen] = poisoned_pos
        trigger_ids[chosen] = which
    else:
        out_texts += poisoned_texts
        out_labels = np.concatenate([out_labels, np.full(n_poison, config.target, np.int64)])
        is_poisoned = np.concatenate([is_poisoned, np.ones(n_poison, bool)])
        positions = np.concatenate([positions, poisoned_pos])
        original = np.concatenate([original, labels[chosen]])
        source_ids = np.concatenate([source_ids, chosen.astype(np.int64)])
        trigger_ids = np.concatenate([trigger_ids, which])
    return PoisonedDataset(
        texts=out_texts,
        labels=out_labels,
        is_poisoned=is_poisoned,
        positions=positions,
        original_labels=original,
        source_ids=source_ids,
        trigger_ids=trigger_ids,
    )


def triggered_test_set(
    texts: Sequence[str],
    labels: np.ndarray,
    config: PoisonConfig,
    trigger: str | None = None,
    decile: int | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All non-target test samples with the trigger inserted, for the ASR.

    The trigger goes at a uniformly random position (whatever `config.position` says:
    the ASR asks whether the backdoor fires anywhere), or with `decile` `d` in 0..9 at
    the gap `floor((d + 0.5) / 10 * n)` of the part of the text the victim reads with
    the whole trigger, `n = min(tokens, max_len - trigger tokens)` (so a long text's
    deciles spread over its first `max_len` tokens, not all pile up at the cut).

    Args:
      texts, labels: The clean test set.
      config: The attack.
      trigger: The sentence to insert (default `config.triggers[0]`).
      decile: Position decile, or None for uniformly random positions.

    Returns:
      `(texts, original_labels, source_ids)` of the triggered samples.
    """
    if decile is not None and not 0 <= int(decile) <= 9:
        raise ValueError(f"decile must be in 0..9, got {decile}.")
    trigger = config.triggers[0] if trigger is None else trigger
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(config.seed + 7919)
    idx = np.flatnonzero(labels != config.target)
    trig_len = len(tokenization.tokenize(trigger))
    out = []
    for i in idx:
        n_tok = len(tokenization.tokenize(texts[i]))
        if decile is None:
            pos = draw_position(n_tok, trig_len, config.max_len, rng)
        else:
            visible = max(0, min(n_tok, config.max_len - trig_len))
            pos = int((int(decile) + 0.5) / 10 * visible)
        out.append(insert_trigger(texts[i], trigger, pos))
    return out, labels[idx], idx.astype(np.int64)
