"""BKI end to end in one workdir: attack -> scan -> filter -> retrain -> report.

Each step reads the previous step's files and writes its own folder, with its
result file written last; a step whose result file exists (for the same config
and the same victim) is skipped, so an interrupted pipeline resumes where it
stopped. The scan is "load the run, `bki.detect`, write": it scores the texts in
the scorer's own independent units (`bki.Scorer`) and checkpoints them under
`scan/chunks/`, so a killed scan resumes from its last finished chunk with the
scores an uninterrupted scan gives, bit for bit. The paper variant uses `scan/`,
`filter/`, `retrain/` and `report.{json,md}`; the refined variant the same names
with a `_refined` suffix (`bki_tf.runs.workdir.layout`). Word-deletion scores
depend on the victim alone: a scan reuses those of another variant's scan of the
same model. Every writing step holds the workdir's lock.

Reference: Chen & Dai, "Mitigating backdoor attacks in LSTM-based text
classification systems by Backdoor Keyword Identification", Neurocomputing 452
(2021), Algorithm 1 and Sec. 5.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import numpy as np

from bki_tf import artifacts, detection, poisoning, tokenization, training
from bki_tf.bki import detector, keywords, representation, scoring
from bki_tf.bki.detector import BKIConfig
from bki_tf.runs import attack, chunks, external, sanitize
from bki_tf.runs import tensorboard as tb
from bki_tf.runs import workdir as wd

VARIANTS = wd.VARIANTS
METHODS = scoring.METHODS
# Texts per checkpoint file of a scan (whole scorer units; the grouping does not
# change any score).
CHECKPOINT_TEXTS = chunks.CHECKPOINT_TEXTS
# What a scan writes into its folder.
SCAN_OUTPUTS = (wd.SCAN_FILE, wd.SCAN_MD, wd.SCORES_FILE, wd.CHUNKS_DIR, wd.TENSORBOARD_DIR)


@dataclasses.dataclass(frozen=True)
class ScanRecord:
    """A finished scan of a run folder (the content of `scan/scan.json`).

    Attributes:
      config: The scan's identity: `BKIConfig.identity()` plus the victim's
        `weights_sha256` and `vocabulary_sha256`.
      keyword: The backdoor keyword.
      keyword_label: Its label (refined variant), else None.
      num_texts: Training texts scanned.
      flagged: Sorted positions of the flagged texts.
      detection: Against the run's ground truth (`DetectionEvaluation.to_dict()`); None
        for a model scan whose data has no `is_poisoned` column.
      deletion_scores_from: The other variant's scan folder whose deletion scores were
        reused, or None.
      deletion_seconds: Wall time of the deletion scores (this process' share when resumed).
      scan_seconds: Wall time of all scoring.
      texts_per_second: `num_texts / scan_seconds`.
      batch_size: Deletion variants side by side.
      wall_seconds: The whole step.
      result: `KeywordResult.to_dict()`: the dictionary and per-text suspicious words.
      resumed_units: Scorer units read back from checkpoints instead of computed.
      plus: `PlusResult.to_dict()` of the plus variant (its decision, keywords,
        phrases and flagged texts), else None.
    """

    config: dict
    keyword: str
    keyword_label: int | None
    num_texts: int
    flagged: list
    detection: dict | None
    deletion_scores_from: str | None
    deletion_seconds: float
    scan_seconds: float
    texts_per_second: float
    batch_size: int
    wall_seconds: float
    result: dict
    resumed_units: int = 0
    plus: dict | None = None

    @property
    def num_flagged(self) -> int:
        return len(self.flagged)

    @property
    def evaluation(self) -> detection.DetectionEvaluation | None:
        if self.detection is None:
            return None
        return detection.DetectionEvaluation.from_dict(self.detection)

    def selection(self) -> keywords.KeywordResult:
        return keywords.KeywordResult.from_dict(self.result)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "num_flagged": self.num_flagged}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanRecord:
        d = {k: v for k, v in d.items() if k != "num_flagged"}
        return artifacts.dataclass_from_dict(cls, d, "scan record")

    @property
    def backdoor_found(self) -> bool:
        """The plus variant's decision; True for the variants that always name a keyword."""
        return True if self.plus is None else bool(self.plus["backdoor_found"])

    def summary(self) -> str:
        truth = "no ground truth" if self.evaluation is None else self.evaluation.summary()
        if self.plus is not None and not self.backdoor_found:
            return (
                f"no backdoor found (statistic {self.plus['statistic']:.2f} < "
                f"{self.plus['threshold']:.2f}); nothing flagged of {self.num_texts} texts"
            )
        return (
            f"keyword {self.keyword!r}: {self.num_flagged} of {self.num_texts} texts flagged; "
            f"{truth}. {self.texts_per_second:.1f} texts/s"
        )


@dataclasses.dataclass(frozen=True)
class Report:
    """One variant's figures, collected from the steps (`report.json`).

    `asr_after` alone does not show whether a backdoor survived: a model that never
    saw a poisoned text also labels some triggered texts as the target. Read it
    against `untriggered_target_share_after` (the same measure without the trigger)
    and `asr_clean_model` (a clean model on the same triggered test set, when a clean
    reference run is given).
    """

    dataset: str
    trigger: str
    target: str
    poison_rate: float
    variant: str
    p: int
    keyword: str
    keyword_label: int | None
    keyword_label_name: str | None
    keyword_in_trigger: bool
    precision: float
    recall: float | None
    f1: float | None
    removed: int
    removed_share: float
    num_train: int
    num_poisoned: int
    asr_before: float
    accuracy_before: float
    asr_after: float
    accuracy_after: float
    untriggered_target_share_after: float | None
    untriggered_error_after: float | None
    asr_clean_model: float | None
    clean_workdir: str | None
    attack_seconds: float
    scan_seconds: float
    retrain_seconds: float
    backdoor_found: bool = True
    phrases: tuple[str, ...] | None = None
    rejected_phrases: tuple[dict[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return artifacts.dataclass_from_dict(cls, d, "report")

    def summary(self) -> str:
        return format_report(self.to_dict())


class _Progress:
    """Texts done, texts/s and ETA on stderr (tqdm when available)."""

    def __init__(self, total: int, desc: str, enabled: bool, initial: int = 0):
        self._bar = None
        self._done = initial
        if enabled:
            try:
                from tqdm import tqdm  # pylint: disable=import-outside-toplevel

                self._bar = tqdm(
                    total=total,
                    desc=desc,
                    unit="text",
                    file=sys.stderr,
                    smoothing=0.1,
                    initial=initial,
                )
            except ImportError:
                self._bar = None

    def add(self, count: int) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def read_scan(workdir: str, variant: str = "paper") -> ScanRecord:
    """The finished scan of `variant` in `workdir`."""
    path = _require(workdir, wd.layout(variant).scan, wd.SCAN_FILE, "scan")
    return artifacts.read_dataclass(
        path, ScanRecord, f"rerun python -m experiments.scan --variant={variant}"
    )


def read_filter(workdir: str, variant: str = "paper") -> sanitize.FilterResult:
    path = _require(workdir, wd.layout(variant).filter, wd.FILTER_FILE, "purify")
    return artifacts.read_dataclass(
        path, sanitize.FilterResult, f"rerun python -m experiments.purify --variant={variant}"
    )


def read_retrain(workdir: str, variant: str = "paper") -> sanitize.RetrainResult:
    path = _require(workdir, wd.layout(variant).retrain, wd.RETRAIN_METRICS_FILE, "retrain")
    return artifacts.read_dataclass(
        path, sanitize.RetrainResult, f"rerun python -m experiments.retrain --variant={variant}"
    )


def read_report(workdir: str, variant: str = "paper") -> Report:
    path = os.path.join(workdir, wd.layout(variant).report_json)
    return artifacts.read_dataclass(path, Report, "rerun python -m experiments.pipeline")


def load_subject(workdir: str) -> attack.AttackRun | external.ModelRun:
    """The run a scan or purify reads: an attack run, or a model scan's import."""
    if external.is_model_scan(workdir):
        return external.load_run(workdir)
    return attack.load_run(workdir)


def _has_ground_truth(run) -> bool:
    return getattr(run.metrics, "has_ground_truth", True)


def victim_identity(run: attack.AttackRun) -> dict[str, str]:
    """The victim's fingerprints (recorded by the attack, else computed)."""
    return {
        "weights_sha256": run.metrics.weights_sha256 or wd.weights_sha256(run.model),
        "vocabulary_sha256": run.metrics.vocabulary_sha256 or wd.vocabulary_sha256(run.vocabulary),
    }


def run_scan(
    workdir: str,
    config: BKIConfig,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: bool = False,
) -> ScanRecord:
    """Scores every training text and identifies the backdoor keyword.

    Writes `scan/scan.json` (`ScanRecord`), `scan/scan.md` (top-20 dictionary entries)
    and `scan/scores.npz` (every f_ij, and the local impacts of the refined variant);
    `scan_refined/` for the refined variant. Deletion scores already computed by
    the other variant's scan of the same victim with the same method are reused.
    Scores are checkpointed per unit group in `scan/chunks/` while the scan runs.
    With `tensorboard`, `scan/tensorboard/` shows the scan in TensorBoard
    (`bki_tf.runs.tensorboard`: dictionary, flagged texts, score histograms, metrics,
    and every training text's h in the embedding projector).

    The workdir holds an attack run or a model scan's import (`bki_tf.runs.external`).

    Returns:
      The scan record.
    """
    wd.check_writable(workdir)
    with wd.lock(workdir):
        return _run_scan(workdir, config, overwrite, progress, tensorboard)


def _write_tensorboard(logdir, run, result, ids, lengths, config: BKIConfig) -> None:
    """The scan's TensorBoard summaries, with h of every text computed unpadded."""
    encoder = representation.representation_model(
        run.model, config.representation_layer, config.pool
    )
    hidden = None
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        if length == 0:
            continue
        for start in range(0, len(rows), 256):
            part = rows[start : start + 256]
            h = np.asarray(encoder(ids[part, :length], training=False), np.float32)
            if hidden is None:
                hidden = np.zeros((len(lengths), h.shape[1]), np.float32)
            hidden[part] = h
    tb.write_scan_summaries(
        logdir,
        result,
        run.train.texts,
        run.train.labels,
        hidden,
        poisoned=run.train.is_poisoned if _has_ground_truth(run) else None,
        class_names=getattr(run.metrics, "class_names", None),
    )


class StaleScanError(ValueError):
    """A scan folder holds a scan of another model or with other settings."""


def prepare_scan(workdir: str, config: BKIConfig, overwrite: bool, folder: str | None = None):
    """Loads the subject and checks for a finished scan before scanning.

    Returns:
      The finished `ScanRecord` when `folder` (default: the variant's scan folder)
      already holds this scan, else `(run, resolved config, victim identity, scan
      identity, folder)` with the folder created (and cleared with `overwrite`).

    Raises:
      ValueError: When the folder holds a scan of another model or other settings
        (without `overwrite`), or the training set is empty.
    """
    names = wd.layout(config.variant)
    default_folder = os.path.join(workdir, names.scan)
    folder = folder or default_folder
    run = load_subject(workdir)
    config = config.resolve(run.model)
    identity = victim_identity(run)
    expected = artifacts.to_jsonable({**config.identity(), **identity})
    path = os.path.join(folder, wd.SCAN_FILE)
    if os.path.isfile(path) and not overwrite:
        existing = artifacts.read_json(path)
        if isinstance(existing, dict) and existing.get("config") == expected:
            return artifacts.read_dataclass(
                path, ScanRecord, f"rerun python -m experiments.scan --variant={config.variant}"
            )
        stored = existing.get("config") if isinstance(existing, dict) else existing
        raise StaleScanError(
            f"{path!r} holds a scan of another model or with other settings ({stored}); "
            "pass --overwrite to rescan."
        )
    if len(run.train) == 0:
        raise ValueError(f"The training set in {workdir!r} is empty; nothing to scan.")
    if overwrite:
        if folder == default_folder:
            wd.clear_variant(workdir, config.variant)
        else:
            wd.clear_outputs(folder, SCAN_OUTPUTS)
    os.makedirs(folder, exist_ok=True)
    return run, config, identity, expected, folder


def _run_scan(
    workdir: str, config: BKIConfig, overwrite: bool, progress: bool, tensorboard: bool
) -> ScanRecord:
    start = time.time()
    prepared = prepare_scan(workdir, config, overwrite)
    if isinstance(prepared, ScanRecord):
        return prepared
    run, config, identity, expected, folder = prepared
    ids, lengths = run.encode(run.train.texts)
    lengths = np.asarray(lengths, np.int64)
    resumed = 0
    scores, source = _stored_deletion_scores(workdir, config, identity, lengths)
    if scores is None:
        scores, resumed_here = _checkpointed_scores(
            run, ids, lengths, "deletion", config, expected, folder, progress
        )
        resumed += resumed_here
    deletion_seconds = time.time() - start
    local = None
    if config.variant == "refined":
        local, resumed_here = _checkpointed_scores(
            run, ids, lengths, "prefix", config, expected, folder, progress
        )
        resumed += resumed_here
    scan_seconds = time.time() - start
    result = detector.select(
        ids,
        lengths,
        scores,
        run.vocabulary,
        config,
        labels=run.train.labels,
        local_scores=local,
        scan_seconds=scan_seconds,
        model=run.model,
    )
    return write_scan(
        workdir,
        folder,
        run,
        config,
        expected,
        ids,
        lengths,
        result,
        source=source,
        deletion_seconds=deletion_seconds,
        resumed=resumed,
        tensorboard=tensorboard,
        start=start,
    )


def write_scan(
    workdir: str,
    folder: str,
    run,
    config: BKIConfig,
    expected: dict,
    ids: np.ndarray,
    lengths: np.ndarray,
    result: detector.BKIResult,
    source: str | None,
    deletion_seconds: float,
    resumed: int,
    tensorboard: bool,
    start: float,
) -> ScanRecord:
    """Writes a finished scan's `scores.npz`, `scan.md`, TensorBoard and `scan.json` (last).

    Shared by the in-process scan and the Beam scan (`bki_tf.runs.beam_scan`), so both
    write the same files; `scan.json` is written last and the checkpoints removed.
    """
    scores, local = result.scores, result.local_scores
    scan_seconds = result.scan_seconds
    path = os.path.join(folder, wd.SCAN_FILE)
    evaluation = result.evaluate(run.train.is_poisoned) if _has_ground_truth(run) else None
    arrays = {"scores": chunks.flat(scores), "lengths": lengths}
    if local is not None:
        arrays["local_scores"] = chunks.flat(local)
    with artifacts.atomic_path(os.path.join(folder, wd.SCORES_FILE), suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    record = ScanRecord(
        config=expected,
        keyword=result.keyword,
        keyword_label=result.keyword_label,
        num_texts=len(lengths),
        flagged=result.flagged.tolist(),
        detection=None if evaluation is None else evaluation.to_dict(),
        deletion_scores_from=source,
        deletion_seconds=deletion_seconds,
        scan_seconds=scan_seconds,
        texts_per_second=len(lengths) / max(scan_seconds, 1e-9),
        batch_size=config.scan_batch_size,
        wall_seconds=time.time() - start,
        result=result.selection.to_dict(),
        resumed_units=resumed,
        plus=None if result.plus is None else result.plus.to_dict(),
    )
    reused = "" if source is None else f" (deletion scores reused from {source}/)"
    found = (
        "" if result.plus is None else f"{result.plus.summary()}\n\nFirst round's dictionary:\n\n"
    )
    artifacts.write_text(
        os.path.join(folder, wd.SCAN_MD),
        f"# BKI scan of {workdir}\n\n{found}{result.selection.summary()}\n\n"
        f"Scan: {len(lengths)} texts in {scan_seconds:.1f} s "
        f"({record.texts_per_second:.1f} texts/s){reused}.\n\n"
        "Detection against ground truth: "
        + (
            "none (the data has no is_poisoned column)"
            if evaluation is None
            else evaluation.summary()
        )
        + "\n",
    )
    if tensorboard:
        _write_tensorboard(
            os.path.join(folder, wd.TENSORBOARD_DIR), run, result, ids, lengths, config
        )
    artifacts.write_json(path, record.to_dict())
    wd.clear_outputs(folder, [wd.CHUNKS_DIR])
    return record


def _checkpointed_scores(
    run: attack.AttackRun,
    ids: np.ndarray,
    lengths: np.ndarray,
    kind: str,
    config: BKIConfig,
    identity: dict,
    folder: str,
    progress: bool,
) -> tuple[list[np.ndarray], int]:
    """Scores of every text, resuming from and writing `chunks/<kind>-<group>.npz`.

    A checkpoint is used only when its plan (scan identity, method, batch size, text
    lengths; `bki_tf.runs.chunks`) equals this scan's, so a changed model or setting
    never mixes in.
    """
    scorer = chunks.make_scorer(run.model, kind, config)
    plan = chunks.score_plan(scorer, kind, config, identity, lengths, CHECKPOINT_TEXTS)
    chunk_dir = os.path.join(folder, wd.CHUNKS_DIR)
    os.makedirs(chunk_dir, exist_ok=True)
    results = [np.zeros([int(n)], np.float32) for n in lengths]
    resumed = 0
    todo = []  # Group indices still to score, in plan order.
    done = 0
    for g, members in enumerate(plan.groups):
        path = os.path.join(chunk_dir, plan.chunk_name(g))
        stored = chunks.parse_chunk(path, plan, g) if os.path.isfile(path) else None
        if stored is not None:
            texts, values, _ = stored
            for i, v in zip(texts, detector.split_flat(values, lengths[texts])):
                results[int(i)] = v
            resumed += len(members)
            done += len(texts)
        else:
            todo.append(g)
    label = "BKI scan" if kind == "deletion" else "local impacts"
    bar = _Progress(int(np.sum(lengths > 0)), label, progress, initial=done)
    try:
        for g in todo:
            texts, values, seconds = chunks.score_group(scorer, ids, lengths, plan, g, bar.add)
            for i, v in zip(texts, values):
                results[int(i)] = v
            path = os.path.join(chunk_dir, plan.chunk_name(g))
            with artifacts.atomic_path(path, suffix=".npz") as tmp:
                with open(tmp, "wb") as f:
                    f.write(chunks.chunk_bytes(plan, texts, values, seconds))
    finally:
        bar.close()
    return results, resumed


def _stored_deletion_scores(
    workdir: str, config: BKIConfig, identity: dict, lengths: np.ndarray
) -> tuple[list[np.ndarray] | None, str | None]:
    """Deletion scores of another variant's finished scan of the same victim, if any.

    Only one-word deletion scores are shared (`span` 1 on both sides).
    """
    if config.span != 1:
        return None, None
    for variant in VARIANTS:
        if variant == config.variant:
            continue
        folder = wd.layout(variant).scan
        scan_path = os.path.join(workdir, folder, wd.SCAN_FILE)
        scores_path = os.path.join(workdir, folder, wd.SCORES_FILE)
        if not (os.path.isfile(scan_path) and os.path.isfile(scores_path)):
            continue
        other = artifacts.read_json(scan_path)
        other = other.get("config", {}) if isinstance(other, dict) else {}
        if any(other.get(k) != v for k, v in identity.items()):
            continue
        if other.get("method") != config.method or other.get("span", 1) != 1:
            continue
        try:
            with np.load(scores_path) as stored:
                if not np.array_equal(stored["lengths"], lengths):
                    continue
                flat = stored["scores"]
        except (OSError, ValueError, KeyError, EOFError):
            continue
        return detector.split_flat(flat, lengths), folder
    return None, None


def run_filter(
    workdir: str, overwrite: bool = False, variant: str = "paper"
) -> sanitize.FilterResult:
    """Removes the scan's flagged rows; writes `filter/` (the input set is untouched)."""
    wd.check_writable(workdir)
    with wd.lock(workdir):
        names = wd.layout(variant)
        scan = read_scan(workdir, variant)
        folder = os.path.join(workdir, names.filter)
        expected = {"scan_config": scan.config, "keyword": scan.keyword}
        if _step_done(folder, wd.FILTER_FILE, expected) and not overwrite:
            return read_filter(workdir, variant)
        wd.clear_variant(workdir, variant, steps=("filter",))
        run = load_subject(workdir)
        keep, result = sanitize.filter_rows(run, np.asarray(scan.flagged, dtype=np.int64))
        return sanitize.write_filter(folder, run, keep, result, config=expected)


def _step_done(folder: str, result_file: str, expected: dict) -> bool:
    path = os.path.join(folder, result_file)
    if not os.path.isfile(path):
        return False
    stored = artifacts.read_json(path)
    return isinstance(stored, dict) and stored.get("config") == artifacts.to_jsonable(expected)


def run_retrain(
    workdir: str,
    overwrite: bool = False,
    verbose: int | str = "auto",
    variant: str = "paper",
    validation_split: float | None = None,
) -> sanitize.RetrainResult:
    """Retrains the victim's architecture on the purified set; writes `retrain/`.

    `validation_split` replaces the attack run's (None keeps it); a nonzero split is
    part of the step's config, so changing it redoes the step.
    """
    wd.check_writable(workdir)
    with wd.lock(workdir):
        names = wd.layout(variant)
        filt = read_filter(workdir, variant)
        folder = os.path.join(workdir, names.retrain)
        expected = {"filter_config": filt.config, "num_after": filt.num_after}
        run = attack.load_run(workdir)
        if validation_split is None:
            split = run.config.validation_split
        else:
            split = float(validation_split)
            training.TrainConfig(validation_split=split)  # Validates it before any work.
        if split:
            expected["validation_split"] = split
        if _step_done(folder, wd.RETRAIN_METRICS_FILE, expected) and not overwrite:
            return read_retrain(workdir, variant)
        wd.clear_variant(workdir, variant, steps=("retrain",))
        _, purified = sanitize.read_purified(os.path.join(workdir, names.filter))
        start = time.time()
        model, result = sanitize.retrain(
            run,
            purified.texts,
            purified.labels,
            purified.num_poisoned,
            verbose=verbose,
            validation_split=split,
        )
        os.makedirs(folder, exist_ok=True)
        artifacts.save_model(model, os.path.join(folder, wd.MODEL_FILE))
        result = dataclasses.replace(
            result, config=artifacts.to_jsonable(expected), wall_seconds=time.time() - start
        )
        artifacts.write_json(os.path.join(folder, wd.RETRAIN_METRICS_FILE), result.to_dict())
        return result


def _require(workdir: str, folder: str, name: str, step: str) -> str:
    path = os.path.join(workdir, folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path!r} does not exist: run the {step} step (experiments.{step}) on {workdir!r} first."
        )
    return path


def clean_model_asr(clean_workdir: str, run: attack.AttackRun) -> float:
    """ASR of a clean reference run's model on `run`'s triggered test set (the floor).

    Args:
      clean_workdir: A finished attack run with `poison_rate=0` on the same dataset.
      run: The poisoned run whose triggered test texts and target are used.
    """
    clean = attack.load_run(clean_workdir)
    if clean.config.poison_rate != 0:
        raise ValueError(
            f"--clean_workdir={clean_workdir!r} holds a poisoned run (rate "
            f"{clean.config.poison_rate}); pass a run made with --poison_rate=0."
        )
    if clean.config.dataset != run.config.dataset:
        raise ValueError(
            f"--clean_workdir={clean_workdir!r} is a {clean.config.dataset} run, not "
            f"{run.config.dataset}; pass a clean run of the same dataset."
        )
    ids, _ = tokenization.encode(clean.vectorizer(), run.triggered_texts)
    return training.attack_success_rate(clean.model, ids, run.target)


def make_report(workdir: str, variant: str = "paper", clean_workdir: str | None = None) -> Report:
    """Collects the steps' figures into `report.json` and `report.md` (`_refined` suffix).

    Args:
      workdir: The run.
      variant: The BKI variant whose steps are reported.
      clean_workdir: Optional clean reference run of the same dataset; its model's
        ASR on this run's triggered test set is reported as `asr_clean_model`.
    """
    names = wd.layout(variant)
    run_config = attack.AttackConfig.from_dict(
        {**attack._ADDED_KEYS, **artifacts.read_json(os.path.join(workdir, wd.CONFIG_FILE))}  # pylint: disable=protected-access
    )
    metrics = attack.load_result(workdir)
    scan = read_scan(workdir, variant)
    filt = read_filter(workdir, variant)
    ret = read_retrain(workdir, variant)
    evaluation = scan.evaluation
    trigger_words = set(poisoning.trigger_words(run_config.trigger))
    keyword_words = set(str(scan.keyword).split())
    asr_clean = None
    if clean_workdir:
        asr_clean = clean_model_asr(clean_workdir, attack.load_run(workdir))
    report = Report(
        dataset=metrics.dataset_name or run_config.dataset,
        trigger=run_config.trigger,
        target=metrics.target_name,
        poison_rate=run_config.poison_rate,
        variant=scan.config["variant"],
        p=scan.config["p"],
        keyword=scan.keyword,
        keyword_label=scan.keyword_label,
        keyword_label_name=_label_name(scan.keyword_label, metrics),
        keyword_in_trigger=bool(keyword_words) and keyword_words <= trigger_words,
        precision=evaluation.precision,
        recall=evaluation.recall,
        f1=evaluation.f1,
        removed=filt.num_before - filt.num_after,
        removed_share=(filt.num_before - filt.num_after) / max(filt.num_before, 1),
        num_train=filt.num_before,
        num_poisoned=metrics.num_poisoned,
        asr_before=metrics.asr,
        accuracy_before=metrics.clean_accuracy,
        asr_after=ret.asr,
        accuracy_after=ret.accuracy,
        untriggered_target_share_after=ret.untriggered_target_share,
        untriggered_error_after=ret.untriggered_error,
        asr_clean_model=asr_clean,
        clean_workdir=clean_workdir,
        attack_seconds=metrics.wall_seconds,
        scan_seconds=scan.scan_seconds,
        retrain_seconds=ret.wall_seconds or 0.0,
        backdoor_found=scan.backdoor_found,
        phrases=None if scan.plus is None else tuple(k["phrase"] for k in scan.plus["keywords"]),
        rejected_phrases=None
        if scan.plus is None
        else tuple(rejected_entry(k) for k in scan.plus.get("rejected", ())),
    )
    artifacts.write_json(os.path.join(workdir, names.report_json), report.to_dict())
    artifacts.write_text(os.path.join(workdir, names.report_md), format_report(report.to_dict()))
    return report


def rejected_entry(keyword: dict[str, Any]) -> dict[str, Any]:
    """A BKI+ candidate the prediction-flip confirmation rejected, for reports."""
    return {
        "phrase": keyword["phrase"],
        "label": keyword["label"],
        "statistic": keyword["statistic"],
        "flip_share": keyword["flip_share"],
    }


def _rejected_cell(entries) -> str:
    if not entries:
        return "none"
    return ", ".join(
        f"`{e['phrase']}` (z {e['statistic']:.2f}, {100 * e['flip_share']:.1f} % flips)"
        if isinstance(e, dict)
        else f"`{e}`"  # Reports written before the entries were structured.
        for e in entries
    )


def _label_name(label: int | None, metrics: attack.AttackResult) -> str | None:
    """The target's name for the target label (the usual case), else the label index."""
    if label is None:
        return None
    return metrics.target_name if label == metrics.target else str(label)


def _pct(x) -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.2f} %"
    )


def _keyword_cell(r: dict) -> str:
    label = r.get("keyword_label_name")
    cell = f"`{r['keyword']}`" + ("" if label is None else f" (label {label})")
    if not r.get("backdoor_found", True):
        cell += ": the test's top candidate, not removed"
    return cell + (", a trigger word" if r["keyword_in_trigger"] else "")


def format_report(r: dict) -> str:
    """Markdown rendering of a report dict (`Report.to_dict()`)."""
    rows = [
        ("dataset", r["dataset"]),
        ("trigger", f'"{r["trigger"]}"'),
        ("target", r["target"]),
        ("poisoning rate", _pct(r["poison_rate"])),
        ("poisoned / train", f"{r['num_poisoned']} / {r['num_train']}"),
        ("BKI variant, p", f"{r['variant']}, {r['p']}"),
        *(
            []
            if r.get("phrases") is None
            else [
                ("backdoor found", "yes" if r.get("backdoor_found", True) else "no"),
                ("trigger phrases found", ", ".join(f"`{x}`" for x in r["phrases"]) or "none"),
                (
                    "rejected (deleting them changed too few predictions)",
                    _rejected_cell(r.get("rejected_phrases")),
                ),
            ]
        ),
        ("keyword", _keyword_cell(r)),
        ("removed", f"{r['removed']} ({_pct(r['removed_share'])})"),
        ("precision", _pct(r["precision"])),
        ("recall", _pct(r["recall"])),
        ("ASR before -> after", f"{_pct(r['asr_before'])} -> {_pct(r['asr_after'])}"),
        (
            "after: untriggered non-target texts classified as target",
            _pct(r.get("untriggered_target_share_after")),
        ),
        ("after: error on untriggered non-target texts", _pct(r.get("untriggered_error_after"))),
        (
            "clean model's ASR on the same triggered texts (floor)",
            "n/a (pass --clean_workdir)"
            if r.get("asr_clean_model") is None
            else _pct(r["asr_clean_model"]),
        ),
        (
            "accuracy before -> after",
            f"{_pct(r['accuracy_before'])} -> {_pct(r['accuracy_after'])}",
        ),
        (
            "wall time attack / scan / retrain",
            f"{r['attack_seconds']:.0f} s / {r['scan_seconds']:.0f} s / {r['retrain_seconds']:.0f} s",
        ),
    ]
    lines = ["# BKI report", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def run_pipeline(
    attack_config: attack.AttackConfig,
    scan_config: BKIConfig,
    workdir: str,
    overwrite: bool = False,
    verbose: int | str = "auto",
    clean_workdir: str | None = None,
    tensorboard: bool = False,
    rescan_stale: bool = False,
) -> Report:
    """attack -> scan -> filter -> retrain -> report, resuming completed steps.

    `overwrite` redoes the attack, which clears every variant's steps; `tensorboard`
    as in `run_scan`. A scan folder that holds a scan with other settings is refused
    (`StaleScanError`), unless `rescan_stale`: then that variant's scan, filter and
    retraining are redone (the deletion scores come from another variant's scan of the
    same victim when there is one), as `reproduce` and `threats` do in the folders
    they own.

    Returns:
      The report (also written to `report.json` / `report.md`, with a `_refined`
      suffix for the refined variant).
    """
    variant = scan_config.variant
    # The attack validates everything before it creates the workdir, then locks it.
    attack.run_attack(attack_config, workdir, overwrite=overwrite, verbose=verbose)
    with wd.lock(workdir):
        try:
            run_scan(
                workdir,
                scan_config,
                overwrite=False,
                progress=bool(verbose),
                tensorboard=tensorboard,
            )
        except StaleScanError:
            if not rescan_stale:
                raise
            run_scan(
                workdir,
                scan_config,
                overwrite=True,
                progress=bool(verbose),
                tensorboard=tensorboard,
            )
        run_filter(workdir, variant=variant)
        run_retrain(workdir, verbose=verbose, variant=variant)
        return make_report(workdir, variant=variant, clean_workdir=clean_workdir)
