"""Reading and writing the files a run leaves in its workdir.

A workdir is shared by the steps of one experiment:

    config.json            the attack config (AttackConfig.to_dict())
    vocab.txt              one token per line; line i is token id i
    train.csv.gz           poisoned training set + ground truth
    test.csv.gz            clean test set
    test_triggered.csv.gz  every non-target test text with the trigger
    model.keras            the victim
    metrics.json           clean accuracy, ASR, sizes, wall time (written last)
    saved_model/           string-input SavedModel
    logs/                  TensorBoard
    scan/ filter/ retrain/ the BKI steps; report.json / report.md

Every JSON file is written atomically (temp file + rename), and each step's
result file is written last, so a step is complete exactly when it exists.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np

from bki_tf import poisoning

TRAIN_COLUMNS = (
    "id",
    "text",
    "label",
    "is_poisoned",
    "trigger_position",
    "original_label",
    "source_id",
)


def to_jsonable(obj):
    """Plain-Python copy of `obj` (numpy scalars/arrays to lists, NaN/inf to None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj) -> None:
    """Writes `obj` as indented JSON, atomically (NaN/inf become null)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(to_jsonable(obj), f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes a text file atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_json(path: str):
    """Reads a JSON file, with a clear error when it is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found; run the step that writes it first.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_csv_gz(path: str, header: Sequence[str], rows) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".csv.gz")
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(buf.getvalue().encode("utf-8"))
    os.replace(tmp, path)


def _read_csv_gz(path: str, required: Sequence[str]) -> list[dict]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found; run the step that writes it first.")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path!r} lacks column(s) {missing}; it was not written by bki_tf.")
        return list(reader)


def write_training_set(path: str, data: poisoning.PoisonedDataset) -> None:
    """Writes a (poisoned) training set with its ground truth as CSV.gz; row ids 0..N-1."""
    write_training_subset(path, np.arange(len(data), dtype=np.int64), data)


def read_training_set(path: str) -> tuple[np.ndarray, poisoning.PoisonedDataset]:
    """Reads `write_training_set` output.

    Returns:
      `(ids, data)`: the row ids (`int64 [N]`, stable across filtering) and the set.
    """
    rows = _read_csv_gz(path, TRAIN_COLUMNS)
    col = lambda name: np.asarray([int(r[name]) for r in rows], dtype=np.int64)  # noqa: E731
    data = poisoning.PoisonedDataset(
        texts=[r["text"] for r in rows],
        labels=col("label"),
        is_poisoned=col("is_poisoned").astype(bool),
        positions=col("trigger_position"),
        original_labels=col("original_label"),
        source_ids=col("source_id"),
    )
    return col("id"), data


def write_training_subset(path: str, ids: np.ndarray, data: poisoning.PoisonedDataset) -> None:
    """Writes rows of a training set keeping their original row ids."""
    rows = (
        (
            int(ids[i]),
            data.texts[i],
            int(data.labels[i]),
            int(data.is_poisoned[i]),
            int(data.positions[i]),
            int(data.original_labels[i]),
            int(data.source_ids[i]),
        )
        for i in range(len(data))
    )
    _write_csv_gz(path, TRAIN_COLUMNS, rows)


def write_labelled_texts(path: str, texts: Sequence[str], labels: np.ndarray) -> None:
    """Writes `id,text,label` CSV.gz."""
    _write_csv_gz(
        path,
        ("id", "text", "label"),
        ((i, t, int(y)) for i, (t, y) in enumerate(zip(texts, labels))),
    )


def read_labelled_texts(path: str) -> tuple[list[str], np.ndarray]:
    """Reads `write_labelled_texts` output."""
    rows = _read_csv_gz(path, ("text", "label"))
    return [r["text"] for r in rows], np.asarray([int(r["label"]) for r in rows], np.int64)
