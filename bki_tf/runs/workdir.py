"""The run folder: every file and folder name, its lock, and what derives from what.

A workdir holds one attack run and the defence steps run on it:

    config.json            the attack config (AttackConfig.to_dict())
    vocab.txt              one token per line; line i is token id i
    train.csv.gz           poisoned training set + ground truth
    test.csv.gz            clean test set
    test_triggered.csv.gz  every non-target test text with the trigger
    model.keras            the victim
    dataset.json           what was read: the real dataset's name, files and sha256,
                           columns, label mapping, test split given or held out
    metrics.json           clean accuracy, ASR, sizes, fingerprints (written last)
    saved_model/           string-input SavedModel
    logs/                  TensorBoard
    scan/ filter/ retrain/ report.{json,md}              BKI, paper variant
    scan_refined/ filter_refined/ retrain_refined/ report_refined.{json,md}
    scan_plus/ filter_plus/ retrain_plus/ report_plus.{json,md}          BKI+
    compare/               the comparison with the baselines (compare/retrained/: each
                           sanitizer's retraining, read back by a rerun)

Every output is derived from the attack run, so replacing the run (`--overwrite`)
clears all of them through `clear_outputs`. A writer takes `lock(workdir)` (an
`flock` on the folder) first, so two processes never mix their files in one workdir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence

import numpy as np

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
VOCAB_FILE = "vocab.txt"
TRAIN_FILE = "train.csv.gz"
TEST_FILE = "test.csv.gz"
TRIGGERED_FILE = "test_triggered.csv.gz"
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
LOG_DIR = "logs"
COMPARE_DIR = "compare"
# The sanitizers' retrained models' measures (`comparison.run_comparison`), one JSON each.
RETRAINED_DIR = os.path.join(COMPARE_DIR, "retrained")
DATASET_FILE = "dataset.json"
TENSORBOARD_DIR = "tensorboard"  # Inside each scan folder: the scan in TensorBoard.

# A finished attack run holds all of these.
ATTACK_OUTPUTS = (METRICS_FILE, VOCAB_FILE, TRAIN_FILE, TEST_FILE, TRIGGERED_FILE, MODEL_FILE)

SCAN_FILE = "scan.json"
SCAN_MD = "scan.md"
SCORES_FILE = "scores.npz"
CHUNKS_DIR = "chunks"
PURIFIED_FILE = "train_purified.csv.gz"
REMOVED_FILE = "removed_ids.json"
FILTER_FILE = "filter.json"
RETRAIN_METRICS_FILE = "metrics.json"

VARIANTS = ("paper", "refined", "plus")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Folder and file names of one BKI variant's steps inside a workdir."""

    scan: str
    filter: str
    retrain: str
    report_json: str
    report_md: str


def layout(variant: str) -> Layout:
    """The step names of `variant`: plain for `paper`, suffixed `_<variant>` otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown BKI variant {variant!r}; choose one of {VARIANTS}.")
    suffix = "" if variant == "paper" else f"_{variant}"
    return Layout(
        scan="scan" + suffix,
        filter="filter" + suffix,
        retrain="retrain" + suffix,
        report_json=f"report{suffix}.json",
        report_md=f"report{suffix}.md",
    )


def derived_outputs() -> tuple[str, ...]:
    """Every name in a workdir that derives from the attack run (all but config.json)."""
    names = [*ATTACK_OUTPUTS, DATASET_FILE, SAVED_MODEL_DIR, LOG_DIR, COMPARE_DIR]
    for variant in VARIANTS:
        names.extend(dataclasses.astuple(layout(variant)))
    return tuple(names)


def clear_outputs(workdir: str, names: Sequence[str] | None = None) -> list[str]:
    """Removes the derived outputs (default: all of them) from `workdir`.

    Returns:
      The names that were removed.
    """
    removed = []
    for name in derived_outputs() if names is None else names:
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            removed.append(name)
        elif os.path.lexists(path):
            os.remove(path)
            removed.append(name)
    return removed


def clear_variant(workdir: str, variant: str, steps: Sequence[str] = ("scan", "filter", "retrain")):
    """Removes one variant's step folders (and its report) from `step` onwards."""
    names = layout(variant)
    order = ("scan", "filter", "retrain")
    first = min(order.index(s) for s in steps)
    targets = [getattr(names, s) for s in order[first:]] + [names.report_json, names.report_md]
    return clear_outputs(workdir, targets)


class WorkdirBusyError(RuntimeError):
    """Another process holds the workdir's lock."""


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Holds an exclusive lock on `workdir` (created) for the duration of a write.

    The lock is an `flock` on the folder itself (no lock file is written): the kernel
    drops it when the process dies, so a killed run never leaves a stale lock behind.
    Re-entrant within one process (a pipeline takes it once for all its steps).

    Raises:
      WorkdirBusyError: Another process is writing the workdir.
      PermissionError: The workdir cannot be written.
    """
    check_writable(workdir)
    os.makedirs(workdir, exist_ok=True)
    key = os.path.realpath(workdir)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise WorkdirBusyError(
                    f"Workdir {workdir!r} is being written by another process; wait for it "
                    "to finish or choose another --workdir."
                ) from None
            raise
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_HELD: dict[str, int] = {}


def check_writable(workdir: str) -> None:
    """Checks, before any work and without writing, that `workdir` can be written.

    An existing workdir must be a writable folder; a new one needs a writable
    nearest existing parent folder.
    """
    path = os.path.abspath(workdir)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise NotADirectoryError(
                f"Workdir {workdir!r} is not a folder; choose another --workdir."
            )
        target = path
    else:
        target = os.path.dirname(path)
        while not os.path.exists(target):
            target = os.path.dirname(target)
        if not os.path.isdir(target):
            raise NotADirectoryError(
                f"Workdir {workdir!r} lies under {target!r}, which is not a folder; choose "
                "another --workdir."
            )
    if not os.access(target, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Workdir {workdir!r} is not writable ({target!r} denies writing); fix its "
            "permissions or choose another --workdir."
        )


def vocabulary_sha256(vocabulary: Sequence[str]) -> str:
    """SHA-256 of a vocabulary, one token per line as in vocab.txt."""
    h = hashlib.sha256()
    for token in vocabulary:
        h.update(token.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def weights_sha256(model) -> str:
    """SHA-256 of a model's weights (shapes, dtypes and values, in order).

    Unlike the `.keras` file's hash it does not change with the save date, so two runs
    with byte-identical weights get one fingerprint.
    """
    h = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        h.update(f"{value.dtype.str}|{value.shape}\n".encode())
        h.update(value.tobytes())
    return h.hexdigest()
