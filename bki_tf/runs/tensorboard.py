"""A BKI scan in TensorBoard: dictionary, flagged texts, score histograms, projector.

`write_scan_summaries(logdir, result, texts, labels, representations)` writes one
scan (`bki_tf.bki.BKIResult`, Chen & Dai 2021, Algorithm 1) into a TensorBoard log
folder, to be viewed with `tensorboard --logdir <logdir>`:

    <logdir>/
      events.out.tfevents.*     text, histogram and scalar summaries (one file per call)
      projector_config.pbtxt    the embedding projector's config
      checkpoint                checkpoint state: points at projector/embedding (relative)
      projector/
        embedding.index         tf.train.Checkpoint holding the [N, d] representations
        embedding.data-00000-of-00001
        metadata.tsv            header row, then one row per text: label (class name; with
                                labels), flagged, poisoned (with ground truth),
                                holds_keyword (the keyword occurs among its scanned
                                tokens), index, text (its first 32 scanned tokens)

Summaries (all at `step`):
  text       `bki/dictionary`       the top dictionary entries as a Markdown table;
             `bki/flagged_texts`    flagged texts with the keyword in bold.
  histogram  `scores/all_words`     every word-deletion score f_ij;
             `scores/clean_texts`, `scores/poisoned_texts`  with ground truth;
             `scores/label_<c>[_<name>]`  per training label, with labels.
  scalar     `detection/num_flagged`, `detection/removed_share`, `bki/keyword_g`;
             with ground truth also `detection/{precision,recall,f1,auroc,num_poison,
             num_true_positive}` (`bki_tf.detection.evaluate`; NaN values are skipped).

The projector files are replaced as a whole: the new `projector/` folder is written
beside the old one and swapped in by renames, and the config and checkpoint state
(the same bytes on every call) are written atomically after it, so an interrupted
call leaves either the previous projector or none, never a mix. Event files
accumulate; clear the folder to drop earlier calls' summaries.

The checkpoint is found through the relative `checkpoint` state file rather than an
absolute path in the config, so the folder can be moved or copied.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from bki_tf import detection, tokenization
from bki_tf.bki.detector import BKIResult

# Names inside the log folder. TensorBoard fixes `projector_config.pbtxt` and
# `checkpoint`; the rest are this module's own.
PROJECTOR_CONFIG_FILE = "projector_config.pbtxt"
CHECKPOINT_STATE_FILE = "checkpoint"
PROJECTOR_DIR = "projector"
METADATA_FILE = "metadata.tsv"
CHECKPOINT_PREFIX = "embedding"
# The tf.train.Checkpoint attribute holding the matrix, and its key in the checkpoint.
_ATTRIBUTE = "embedding"
TENSOR_NAME = f"{_ATTRIBUTE}/.ATTRIBUTES/VARIABLE_VALUE"
_STAGING_PREFIX = ".tmp-projector-"
_RETIRED_PREFIX = ".old-projector-"
_CHECKPOINT_STATE = (
    f'model_checkpoint_path: "{PROJECTOR_DIR}/{CHECKPOINT_PREFIX}"\n'
    f'all_model_checkpoint_paths: "{PROJECTOR_DIR}/{CHECKPOINT_PREFIX}"\n'
)
# Scanned tokens of a text shown in the projector's `text` column.
_METADATA_TEXT_TOKENS = 32

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#~])")
_WHITESPACE = re.compile(r"\s+")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def write_scan_summaries(
    logdir: str,
    result: BKIResult,
    texts: Sequence[str] | Sequence[Sequence[str]],
    labels: np.ndarray | None = None,
    representations: np.ndarray | None = None,
    *,
    poisoned: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    top_k: int = 20,
    max_flagged_texts: int = 50,
    step: int = 0,
) -> dict[str, str]:
    """Writes a BKI scan into `logdir` for TensorBoard (layout: module docstring).

    Args:
      logdir: The log folder (created). Give each scan its own: the `checkpoint`
        state file is TensorBoard's, and one that is not this module's is refused.
      result: The scan (`bki_tf.bki.detect` or `detector.select`).
      texts: The N scanned texts, in the scan's order: raw strings (tokenised as the
        model saw them, `tokenization.tokenize`) or token lists (`list[str]`, e.g.
        ids decoded with the vocabulary). Text i must hold at least
        `result.scores[i].size` tokens; only those, the scanned ones, are shown.
      labels: `int [N]` training labels, or None.
      representations: `float [N, d]` representation h of every text (e.g. the
        victim's `hidden` output), shown in the embedding projector; None writes no
        projector.
      poisoned: `bool [N]` ground truth, or None.
      class_names: Label -> class name, for tables, tags and metadata.
      top_k: Dictionary entries in the table.
      max_flagged_texts: Flagged texts shown (highest suspicion score first, then
        by position).
      step: Summary step.

    Returns:
      What was written: each summary tag -> `"text"`, `"histogram"` or `"scalar"`,
      and, with representations, `"projector_config"`, `"projector_metadata"` and
      `"projector_checkpoint"` -> their paths.

    Raises:
      ValueError: On inputs that do not match the scan (naming the value), or a
        `logdir` holding another checkpoint state.
    """
    n = result.num_texts
    for name, value, low in (("top_k", top_k, 1), ("max_flagged_texts", max_flagged_texts, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}.")
    _check_texts(texts, n)
    labels = _optional_vector(labels, n, "labels", np.integer)
    poisoned = _optional_vector(poisoned, n, "poisoned", np.bool_)
    if labels is not None and labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels.min())}.")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if labels is not None and labels.size and labels.max() >= len(class_names):
            raise ValueError(
                f"label {int(labels.max())} has no name among the {len(class_names)} "
                "class_names; pass one name per class."
            )
    if representations is not None:
        representations = _checked_representations(representations, n)
    state_path = os.path.join(logdir, CHECKPOINT_STATE_FILE)
    if representations is not None and os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            if f.read() != _CHECKPOINT_STATE:
                raise ValueError(
                    f"{state_path!r} is another checkpoint's state; write the scan into a "
                    "folder of its own."
                )

    keyword = _keyword_tokens(result)
    # One pass over the texts keeps only what later steps need, not every token of N
    # texts: whether each holds the keyword, and the projector's text snippet.
    holds_keyword = np.zeros(n, dtype=bool)
    snippets = []
    for i in range(n):
        words = _scanned_tokens(texts, result.scores, i)
        holds_keyword[i] = _keyword_marks(words, keyword).any()
        more = " ..." if len(words) > _METADATA_TEXT_TOKENS else ""
        snippets.append(" ".join(words[:_METADATA_TEXT_TOKENS]) + more)
    flagged_rows = []
    for i in _flagged_order(result)[:max_flagged_texts].tolist():
        words = _scanned_tokens(texts, result.scores, i)
        flagged_rows.append((i, _highlighted(words, _keyword_marks(words, keyword))))

    written: dict[str, str] = {}
    os.makedirs(logdir, exist_ok=True)
    writer = tf.summary.create_file_writer(logdir)
    try:
        with writer.as_default(step=int(step)):
            tf.summary.text(
                "bki/dictionary",
                _dictionary_markdown(result, class_names, top_k),
                description="BKI's keyword dictionary, best entry first.",
            )
            tf.summary.text(
                "bki/flagged_texts",
                _flagged_markdown(result, flagged_rows, labels, poisoned, class_names),
                description="The texts BKI flags, with the keyword highlighted.",
            )
            written["bki/dictionary"] = written["bki/flagged_texts"] = "text"
            _write_histograms(written, result, labels, poisoned, class_names)
            _write_scalars(written, result, poisoned)
        writer.flush()
    finally:
        writer.close()
    if representations is not None:
        rows = _metadata_rows(result, snippets, labels, poisoned, class_names, holds_keyword)
        written.update(_write_projector(logdir, representations, rows))
    return written


def _check_texts(texts, num_texts: int) -> None:
    if isinstance(texts, str | bytes) or len(texts) != num_texts:
        count = "a single string" if isinstance(texts, str | bytes) else f"{len(texts)} texts"
        raise ValueError(f"texts must be the {num_texts} scanned texts, got {count}.")


def _scanned_tokens(texts, scores: Sequence[np.ndarray], i: int) -> list[str]:
    """The first `scores[i].size` tokens of text i (the ones the scan scored)."""
    text, size = texts[i], scores[i].size
    if isinstance(text, str):
        words = tokenization.tokenize(text)
    else:
        words = list(text)
        if not all(isinstance(w, str) for w in words):
            raise ValueError(
                f"texts[{i}] must be a string or a list of token strings; decode token ids "
                "with the vocabulary first."
            )
    if len(words) < size:
        raise ValueError(
            f"texts[{i}] has {len(words)} tokens but the scan scored {size}; pass the texts "
            "that were scanned, in the scan's order."
        )
    return words[:size]


def _optional_vector(values, n: int, name: str, kind) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.shape != (n,) or (arr.size and not np.issubdtype(arr.dtype, kind)):
        what = "bools" if kind is np.bool_ else "integers"
        raise ValueError(
            f"{name} must be {n} {what} (one per scanned text), got dtype {arr.dtype} and "
            f"shape {arr.shape}."
        )
    return arr.astype(bool if kind is np.bool_ else np.int64)


def _checked_representations(representations, n: int) -> np.ndarray:
    reps = np.asarray(representations)
    if reps.ndim != 2 or reps.shape[0] != n or reps.shape[1] == 0:
        raise ValueError(
            f"representations must be [{n}, d] (one row per scanned text), got shape {reps.shape}."
        )
    if not np.issubdtype(reps.dtype, np.number):
        raise ValueError(f"representations must be numeric, got dtype {reps.dtype}.")
    reps = reps.astype(np.float32, copy=False)
    if not np.all(np.isfinite(reps)):
        row = int(np.flatnonzero(~np.isfinite(reps).all(axis=1))[0])
        raise ValueError(f"representations[{row}] holds NaN or inf.")
    return reps


def _keyword_tokens(result: BKIResult) -> list[str]:
    """The keyword as tokens (the refined variant joins an n-gram's tokens by spaces)."""
    entry = result.selection.keyword_entry
    return [entry.word] if entry.ngram == 1 else entry.word.split(" ")


def _keyword_marks(tokens: list[str], keyword: list[str]) -> np.ndarray:
    """`bool [len(tokens)]`: True for tokens inside an occurrence of `keyword`."""
    marks = np.zeros(len(tokens), dtype=bool)
    n = len(keyword)
    for k in range(len(tokens) - n + 1):
        if tokens[k : k + n] == keyword:
            marks[k : k + n] = True
    return marks


def _markdown(value: str) -> str:
    """`value` as literal Markdown inside a table cell (one line, specials escaped)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _WHITESPACE.sub(" ", value))


def _highlighted(tokens: list[str], marks: np.ndarray) -> str:
    """The tokens joined by spaces, each run of keyword tokens in **bold**."""
    parts, run = [], []
    for token, marked in zip(tokens, marks):
        if marked:
            run.append(_markdown(token))
            continue
        if run:
            parts.append("**" + " ".join(run) + "**")
            run = []
        parts.append(_markdown(token))
    if run:
        parts.append("**" + " ".join(run) + "**")
    return " ".join(parts)


def _class_name(label: int | None, class_names: Sequence[str] | None) -> str:
    if label is None:
        return ""
    if class_names is None:
        return str(label)
    return f"{class_names[label]} ({label})"


def _dictionary_markdown(result: BKIResult, class_names, top_k: int) -> str:
    sel = result.selection
    refined = sel.variant == "refined"
    label = (
        ""
        if sel.keyword_label is None
        else f", label {_class_name(sel.keyword_label, class_names)}"
    )
    lines = [
        f"BKI keyword ({sel.variant} variant, p={sel.p}): **{_markdown(sel.keyword)}**{label}, "
        f"g={sel.keyword_g:.4g}; flagged {sel.num_flagged} of {sel.num_texts} texts. "
        f"Top {min(top_k, len(sel.entries))} of {len(sel.entries)} dictionary entries.",
        "",
    ]
    if sel.degenerate:
        lines += [
            "WARNING: the keyword's g <= 0, so no key stands out; it is a tie-break, not "
            "evidence of a backdoor.",
            "",
        ]
    if refined:
        lines += [
            "| rank | n-gram | label | count | mean score | g |",
            "|---:|---|---|---:|---:|---:|",
        ]
    else:
        lines += ["| rank | word | count | mean score | g |", "|---:|---|---:|---:|---:|"]
    for rank, e in enumerate(sel.top(top_k), start=1):
        cells = [str(rank), _markdown(e.word)]
        if refined:
            cells.append(_markdown(_class_name(e.label, class_names)))
        cells += [str(e.count), f"{e.mean:.4g}", f"{e.g:.4g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _flagged_order(result: BKIResult) -> np.ndarray:
    """Flagged positions, highest suspicion score first, ties by position."""
    flagged = result.flagged
    return flagged[np.lexsort((flagged, -result.detection.scores[flagged]))]


def _flagged_markdown(result, rows, labels, poisoned, class_names) -> str:
    """`rows`: `(position, highlighted tokens)` of the flagged texts shown, in order."""
    if not result.flagged.size:
        return f"No text flagged (keyword **{_markdown(result.keyword)}**)."
    lines = [
        f"{len(rows)} of {result.flagged.size} flagged texts, highest suspicion score first; "
        f"the keyword **{_markdown(result.keyword)}** in bold (scanned tokens only).",
        "",
    ]
    header = ["rank", "text"]
    header += ["label"] if labels is not None else []
    header += ["poisoned"] if poisoned is not None else []
    header += ["score", "tokens"]
    align = ["---:" if h in ("rank", "text", "score") else "---" for h in header]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for rank, (i, highlighted) in enumerate(rows, start=1):
        cells = [str(rank), str(i)]
        if labels is not None:
            cells.append(_markdown(_class_name(int(labels[i]), class_names)))
        if poisoned is not None:
            cells.append("yes" if poisoned[i] else "no")
        cells += [f"{result.detection.scores[i]:.4g}", highlighted]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tag_part(name: str) -> str:
    return _TAG_UNSAFE.sub("_", name).strip("_")


def _write_histograms(written, result, labels, poisoned, class_names) -> None:
    lengths = np.asarray([s.size for s in result.scores], np.int64)
    flat = np.concatenate(result.scores) if lengths.size else np.zeros(0, np.float32)
    groups = [("scores/all_words", None, "Word-deletion scores f_ij of every word.")]
    if poisoned is not None:
        groups += [
            ("scores/clean_texts", ~poisoned, "Word scores of the clean texts (ground truth)."),
            (
                "scores/poisoned_texts",
                poisoned,
                "Word scores of the poisoned texts (ground truth).",
            ),
        ]
    if labels is not None:
        for c in np.unique(labels).tolist():
            tag = f"scores/label_{c}"
            if class_names is not None and _tag_part(class_names[c]):
                tag += "_" + _tag_part(class_names[c])
            name = _class_name(c, class_names)
            groups.append((tag, labels == c, f"Word scores of the texts labelled {name}."))
    for tag, text_mask, description in groups:
        values = flat if text_mask is None else flat[np.repeat(text_mask, lengths)]
        tf.summary.histogram(tag, values, description=description)
        written[tag] = "histogram"


def _write_scalars(written, result: BKIResult, poisoned) -> None:
    n = result.num_texts
    values = {
        "detection/num_flagged": float(result.flagged.size),
        "detection/removed_share": result.flagged.size / n,
        "bki/keyword_g": result.selection.keyword_g,
    }
    if poisoned is not None:
        ev = detection.evaluate(result.detection, poisoned)
        for name in ("precision", "recall", "f1", "auroc", "num_poison", "num_true_positive"):
            values[f"detection/{name}"] = float(getattr(ev, name))
    for tag, value in values.items():
        if math.isfinite(value):
            tf.summary.scalar(tag, value)
            written[tag] = "scalar"


def _tsv(value: str) -> str:
    """One TSV cell: backslash, tab and line breaks escaped (TensorBoard splits on them)."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _metadata_rows(result, snippets, labels, poisoned, class_names, holds_keyword) -> Iterator[str]:
    """The metadata TSV's lines (header first), one per text, without building them all."""
    header = [
        *(["label"] if labels is not None else []),
        "flagged",
        *(["poisoned"] if poisoned is not None else []),
        "holds_keyword",
        "index",
        "text",
    ]
    yield "\t".join(header) + "\n"
    flagged = result.selection.flagged_mask()
    for i, snippet in enumerate(snippets):
        cells = []
        if labels is not None:
            label = int(labels[i])
            cells.append(str(label) if class_names is None else class_names[label])
        cells.append("true" if flagged[i] else "false")
        if poisoned is not None:
            cells.append("true" if poisoned[i] else "false")
        cells.append("true" if holds_keyword[i] else "false")
        cells.append(str(i))
        cells.append(snippet)
        yield "\t".join(_tsv(c) for c in cells) + "\n"


def _new_folder(parent: str, prefix: str) -> str:
    """A fresh empty folder in `parent` (os.mkdir honours the umask; mkdtemp makes it 0700)."""
    path = os.path.join(parent, prefix + uuid.uuid4().hex)
    os.mkdir(path)
    return path


def _write_projector(logdir: str, representations: np.ndarray, rows: Iterator[str]) -> dict:
    """Stages the projector folder beside the old one, swaps it in, then the config."""
    for entry in os.listdir(logdir):  # Leftovers of an interrupted call.
        if entry.startswith((_STAGING_PREFIX, _RETIRED_PREFIX)):
            shutil.rmtree(os.path.join(logdir, entry), ignore_errors=True)
    staging = _new_folder(logdir, _STAGING_PREFIX)
    target = os.path.join(logdir, PROJECTOR_DIR)
    retired = None
    try:
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8", newline="") as f:
            f.writelines(rows)
        with tf.device("/CPU:0"):
            matrix = tf.Variable(representations, trainable=False, dtype=tf.float32)
        tf.train.Checkpoint(**{_ATTRIBUTE: matrix}).write(os.path.join(staging, CHECKPOINT_PREFIX))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = TENSOR_NAME
        # Relative paths resolve against the config's folder (TensorBoard's rule).
        embedding.metadata_path = f"{PROJECTOR_DIR}/{METADATA_FILE}"
        projector.visualize_embeddings(staging, config)
        with open(os.path.join(staging, CHECKPOINT_STATE_FILE), "w", encoding="utf-8") as f:
            f.write(_CHECKPOINT_STATE)
        if os.path.lexists(target):
            # os.replace moves a folder onto an empty folder only, hence two renames.
            retired = _new_folder(logdir, _RETIRED_PREFIX)
            os.replace(target, retired)
        os.replace(staging, target)
    except BaseException:
        if retired is not None and not os.path.lexists(target):
            os.replace(retired, target)  # Put the previous projector back.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for name in (PROJECTOR_CONFIG_FILE, CHECKPOINT_STATE_FILE):
        os.replace(os.path.join(target, name), os.path.join(logdir, name))
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return {
        "projector_config": os.path.join(logdir, PROJECTOR_CONFIG_FILE),
        "projector_metadata": os.path.join(target, METADATA_FILE),
        "projector_checkpoint": os.path.join(target, CHECKPOINT_PREFIX),
    }
