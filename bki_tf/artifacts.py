"""Atomic reading and writing of the files a run leaves behind.

Every writer creates a temporary file beside its target and renames it into place,
so a kill or a full disk leaves the old file or none, never a truncated one; files
get the umask's normal mode (not `mkstemp`'s 0600). Every reader names the file and
the fix when the file is missing or corrupt, instead of a bare `JSONDecodeError`,
`EOFError` or `int()` error. The run folder's layout lives in `bki_tf.runs.workdir`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
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

# Which of several triggers a poisoned row holds (`PoisonedDataset.trigger_ids`).
TRIGGER_ID_COLUMN = "trigger_id"


class CorruptFileError(ValueError):
    """A run file exists but cannot be read back."""


def corrupt(path: str, what: str, fix: str = "rerun the step that writes it") -> CorruptFileError:
    """The one error for an unreadable run file: which file, what is wrong, the fix."""
    return CorruptFileError(f"{path!r} is corrupt ({what}); {fix}, or delete it and rerun.")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _temp_beside(path: str, suffix: str = "") -> tuple[int, str]:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.fchmod(fd, _FILE_MODE)
    return fd, tmp


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path beside `path`; renames it onto `path` on success."""
    fd, tmp = _temp_beside(path, suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def dataclass_from_dict(cls, d, what: str):
    """`cls(**d)` for a dataclass read from JSON, refusing a non-object or unknown keys."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(d).__name__}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"Unknown {what} key(s) {unknown}; known: {sorted(known)}.")
    return cls(**d)


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
    fd, tmp = _temp_beside(path, ".json")
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
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_dataclass(path: str, cls, fix: str, prepare=None):
    """`cls.from_dict` of the JSON file `path`; a file that does not fit `cls` is corrupt.

    Args:
      path: The JSON file.
      cls: A result dataclass with `from_dict`.
      fix: What the user should do when the file does not fit (the error's fix).
      prepare: Optional `dict -> dict` applied first (e.g. defaults of keys added later).

    Raises:
      FileNotFoundError: If `path` is missing.
      CorruptFileError: If it is not JSON or does not describe a `cls`.
    """
    stored = read_json(path)
    try:
        return cls.from_dict(prepare(stored) if prepare is not None else stored)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        if isinstance(e, CorruptFileError):
            raise
        raise corrupt(path, str(e), fix) from None


def read_json(path: str):
    """Reads a JSON file, with a clear error when it is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found; run the step that writes it first.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise corrupt(path, f"not valid JSON: {e}") from None


def _write_csv_gz(path: str, header: Sequence[str], rows) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    fd, tmp = _temp_beside(path, ".csv.gz")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(buf.getvalue().encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_csv_gz(path: str, required: Sequence[str]) -> list[dict]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found; run the step that writes it first.")
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise corrupt(path, f"it lacks column(s) {missing}")
            return list(reader)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as e:
        raise corrupt(path, f"not a readable gzip CSV: {e}") from None


def _int_column(rows: list[dict], name: str, path: str) -> np.ndarray:
    try:
        return np.asarray([int(r[name]) for r in rows], dtype=np.int64)
    except (TypeError, ValueError):
        bad = next(i for i, r in enumerate(rows) if not _is_int(r[name]))
        raise corrupt(path, f"row {bad} has {name}={rows[bad][name]!r}, not an integer") from None


def _is_int(value) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def write_training_set(path: str, data: poisoning.PoisonedDataset) -> None:
    """Writes a (poisoned) training set with its ground truth as CSV.gz; row ids 0..N-1."""
    write_training_subset(path, np.arange(len(data), dtype=np.int64), data)


def read_training_set(path: str) -> tuple[np.ndarray, poisoning.PoisonedDataset]:
    """Reads `write_training_set` output.

    Returns:
      `(ids, data)`: the row ids (`int64 [N]`, stable across filtering) and the set.
    """
    rows = _read_csv_gz(path, TRAIN_COLUMNS)
    col = lambda name: _int_column(rows, name, path)  # noqa: E731
    data = poisoning.PoisonedDataset(
        texts=[r["text"] for r in rows],
        labels=col("label"),
        is_poisoned=col("is_poisoned").astype(bool),
        positions=col("trigger_position"),
        original_labels=col("original_label"),
        source_ids=col("source_id"),
        # Written only for several triggers (absent: trigger 0 in every poisoned row).
        trigger_ids=col(TRIGGER_ID_COLUMN) if rows and TRIGGER_ID_COLUMN in rows[0] else None,
    )
    return col("id"), data


def write_training_subset(path: str, ids: np.ndarray, data: poisoning.PoisonedDataset) -> None:
    """Writes rows of a training set keeping their original row ids."""
    several = bool(np.any(data.trigger_ids > 0))
    rows = (
        (
            int(ids[i]),
            data.texts[i],
            int(data.labels[i]),
            int(data.is_poisoned[i]),
            int(data.positions[i]),
            int(data.original_labels[i]),
            int(data.source_ids[i]),
            *((int(data.trigger_ids[i]),) if several else ()),
        )
        for i in range(len(data))
    )
    _write_csv_gz(path, TRAIN_COLUMNS + ((TRIGGER_ID_COLUMN,) if several else ()), rows)


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
    return [r["text"] for r in rows], _int_column(rows, "label", path)


def write_lines(path: str, lines: Sequence[str]) -> None:
    """Writes one item per line, atomically (e.g. a vocabulary: line i is token id i)."""
    write_text(path, "".join(f"{line}\n" for line in lines))


def read_lines(path: str) -> list[str]:
    """Reads `write_lines` output, naming the file when it is missing or not UTF-8."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found; run the step that writes it first.")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as e:
        raise corrupt(path, f"not UTF-8 text: {e}") from None


def save_model(model, path: str) -> None:
    """`model.save(path)` atomically: a kill or a full disk never leaves half a file."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_model(path: str, custom_objects: dict | None = None):
    """Loads a `.keras` model with `safe_mode=True`, naming the file when it is corrupt."""
    import keras  # pylint: disable=import-outside-toplevel  # Keeps this module TF-free.

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found; run the step that writes it first.")
    if not zipfile.is_zipfile(path):
        raise corrupt(path, "not a .keras zip archive (truncated or overwritten?)")
    try:
        return keras.models.load_model(path, custom_objects=custom_objects, safe_mode=True)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise corrupt(path, f"Keras cannot load it: {first[:200]}") from None
