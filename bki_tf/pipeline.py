"""BKI end to end in one workdir: attack -> scan -> filter -> retrain -> report.

Each step reads the previous step's files and writes its own folder, with its
result file written last; a step whose result file exists (for the same
config and the same victim) is skipped, so an interrupted pipeline resumes
where it stopped. The paper variant uses `scan/`, `filter/`, `retrain/` and
`report.{json,md}`; the refined variant the same names with a `_refined`
suffix, so both can live beside one victim. Word-deletion scores depend on the
victim alone: a scan reuses those of another variant's scan of the same model.

Reference: Chen & Dai, "Mitigating backdoor attacks in LSTM-based text
classification systems by Backdoor Keyword Identification", Neurocomputing 452
(2021), Algorithm 1 and Sec. 5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import time

import numpy as np

from bki_tf import artifacts, attack, filtering, keywords, scanning, tokenization, training

SCAN_DIR = "scan"
FILTER_DIR = "filter"
RETRAIN_DIR = "retrain"
SCAN_FILE = "scan.json"
SCAN_MD = "scan.md"
SCORES_FILE = "scores.npz"
VARIANTS = ("paper", "refined")
METHODS = ("fast", "simple")


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """BKI scan settings.

    Attributes:
      p: Suspicious words kept per text (paper default 5).
      variant: `paper` (Algorithm 1) or `refined` (the authors' code; see keywords).
      method: Scorer, `fast` (state reuse) or `simple` (compiled deletion variants).
      max_ngram: Longest n-gram key of the refined variant.
      alpha: The refined variant's `a` in s = round((a N)^2).
      batch_size: Deletion variants scored side by side (memory bound; results
        do not depend on it, so it is not part of a scan's identity).
    """

    p: int = 5
    variant: str = "paper"
    method: str = "fast"
    max_ngram: int = 3
    alpha: float = 0.05
    batch_size: int = scanning.DEFAULT_BATCH_SIZE

    def __post_init__(self):
        if self.p < 1:
            raise ValueError(f"p must be >= 1 (suspicious words per text), got {self.p}.")
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown BKI variant {self.variant!r}; choose one of {VARIANTS}.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown scoring method {self.method!r}; choose one of {METHODS}.")
        if self.max_ngram < 1:
            raise ValueError(f"max_ngram must be >= 1, got {self.max_ngram}.")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The settings that determine the scan's result (all but batch_size)."""
        d = self.to_dict()
        del d["batch_size"]
        return d


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
        scan=SCAN_DIR + suffix,
        filter=FILTER_DIR + suffix,
        retrain=RETRAIN_DIR + suffix,
        report_json=f"report{suffix}.json",
        report_md=f"report{suffix}.md",
    )


def model_fingerprint(workdir: str) -> str:
    """SHA-256 of the victim file, tying scan results to one model."""
    h = hashlib.sha256()
    with open(os.path.join(workdir, attack.MODEL_FILE), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Progress:
    """Texts done, texts/s and ETA on stderr (tqdm when available)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        self._done = 0
        if enabled:
            try:
                from tqdm import tqdm  # pylint: disable=import-outside-toplevel

                self._bar = tqdm(
                    total=total, desc=desc, unit="text", file=sys.stderr, smoothing=0.1
                )
            except ImportError:
                self._bar = None

    def __call__(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _step_done(folder: str, result_file: str, expected: dict) -> bool:
    path = os.path.join(folder, result_file)
    if not os.path.isfile(path):
        return False
    return artifacts.read_json(path).get("config") == artifacts.to_jsonable(expected)


def run_scan(
    workdir: str, config: ScanConfig, overwrite: bool = False, progress: bool = True
) -> dict:
    """Scores every training text and identifies the backdoor keyword.

    Writes `scan/scan.json` (config, keyword, flagged rows, the dictionary and
    per-text suspicious words), `scan/scan.md` (top-20 dictionary entries) and
    `scan/scores.npz` (every f_ij, and the local impacts of the refined variant);
    `scan_refined/` for the refined variant. Deletion scores already computed by
    the other variant's scan of the same victim with the same method are reused
    (`deletion_scores_from` in scan.json names their folder).

    Returns:
      The content of scan.json.
    """
    folder = os.path.join(workdir, layout(config.variant).scan)
    run = attack.load_run(workdir)
    fingerprint = model_fingerprint(workdir)
    expected = {**config.identity(), "model_sha256": fingerprint}
    path = os.path.join(folder, SCAN_FILE)
    if os.path.isfile(path) and not overwrite:
        existing = artifacts.read_json(path)
        if existing.get("config") == artifacts.to_jsonable(expected):
            return existing
        raise ValueError(
            f"{path!r} holds a scan of another model or with other settings "
            f"({existing.get('config')}); pass --overwrite to rescan."
        )
    if len(run.train) == 0:
        raise ValueError(f"The training set in {workdir!r} is empty; nothing to scan.")
    ids, lengths = tokenization.encode(run.vectorizer(), run.train.texts)
    start = time.time()
    scores, source = _stored_deletion_scores(workdir, config, fingerprint, lengths)
    if scores is None:
        bar = _Progress(len(ids), "BKI scan", progress)
        try:
            scores = scanning.deletion_scores(
                run.model,
                ids,
                lengths,
                method=config.method,
                batch_size=config.batch_size,
                progress=bar,
            )
        finally:
            bar.close()
    deletion_seconds = time.time() - start
    local = None
    if config.variant == "refined":
        bar = _Progress(len(ids), "local impacts", progress)
        try:
            local = scanning.prefix_scores(
                run.model, ids, lengths, batch_size=config.batch_size, progress=bar
            )
        finally:
            bar.close()
    scan_seconds = time.time() - start
    token_ids = [ids[i, : lengths[i]] for i in range(len(ids))]
    result = keywords.identify_keyword(
        token_ids,
        scores,
        run.vocabulary,
        p=config.p,
        variant=config.variant,
        labels=run.train.labels,
        local_scores=local,
        max_ngram=config.max_ngram,
        alpha=config.alpha,
    )
    detection = keywords.evaluate_detection(result.flagged, run.train.is_poisoned)
    os.makedirs(folder, exist_ok=True)
    arrays = {"scores": _flat(scores), "lengths": lengths}
    if local is not None:
        arrays["local_scores"] = _flat(local)
    np.savez_compressed(os.path.join(folder, SCORES_FILE), **arrays)
    out = {
        "config": expected,
        "keyword": result.keyword,
        "keyword_label": result.keyword_label,
        "num_texts": len(ids),
        "num_flagged": int(len(result.flagged)),
        "flagged": result.flagged,
        "detection": detection.to_dict(),
        "deletion_scores_from": source,
        "deletion_seconds": deletion_seconds,
        "scan_seconds": scan_seconds,
        "texts_per_second": len(ids) / max(scan_seconds, 1e-9),
        "batch_size": config.batch_size,
        "wall_seconds": time.time() - start,
        "result": result.to_dict(),
    }
    reused = "" if source is None else f" (deletion scores reused from {source}/)"
    artifacts.write_text(
        os.path.join(folder, SCAN_MD),
        f"# BKI scan of {workdir}\n\n{result.summary()}\n\n"
        f"Scan: {len(ids)} texts in {scan_seconds:.1f} s "
        f"({out['texts_per_second']:.1f} texts/s){reused}.\n\n"
        f"Detection against ground truth: {detection.summary()}\n",
    )
    artifacts.write_json(path, out)
    return out


def _flat(scores: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def _stored_deletion_scores(
    workdir: str, config: ScanConfig, fingerprint: str, lengths: np.ndarray
) -> tuple[list[np.ndarray] | None, str | None]:
    """Deletion scores of another variant's finished scan of the same victim, if any."""
    for variant in VARIANTS:
        if variant == config.variant:
            continue
        folder = layout(variant).scan
        scan_path = os.path.join(workdir, folder, SCAN_FILE)
        scores_path = os.path.join(workdir, folder, SCORES_FILE)
        if not (os.path.isfile(scan_path) and os.path.isfile(scores_path)):
            continue
        other = artifacts.read_json(scan_path).get("config", {})
        if other.get("model_sha256") != fingerprint or other.get("method") != config.method:
            continue
        with np.load(scores_path) as stored:
            if not np.array_equal(stored["lengths"], lengths):
                continue
            flat = stored["scores"]
        return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else [], folder
    return None, None


def run_filter(workdir: str, overwrite: bool = False, variant: str = "paper") -> dict:
    """Removes the scan's flagged rows; writes `filter/` (the input set is untouched)."""
    names = layout(variant)
    scan = artifacts.read_json(_require(workdir, names.scan, SCAN_FILE, "scan"))
    folder = os.path.join(workdir, names.filter)
    expected = {"scan_config": scan["config"], "keyword": scan["keyword"]}
    if _step_done(folder, filtering.FILTER_FILE, expected) and not overwrite:
        return artifacts.read_json(os.path.join(folder, filtering.FILTER_FILE))
    run = attack.load_run(workdir)
    keep, result = filtering.filter_rows(run, np.asarray(scan["flagged"], dtype=np.int64))
    return filtering.write_filter(folder, run, keep, result, config=expected)


def run_retrain(
    workdir: str,
    overwrite: bool = False,
    verbose: int | str = "auto",
    variant: str = "paper",
    validation_split: float | None = None,
) -> dict:
    """Retrains the victim's architecture on the purified set; writes `retrain/`.

    `validation_split` replaces the attack run's (None keeps it); a nonzero split is
    part of the step's config, so changing it redoes the step.
    """
    names = layout(variant)
    filt = artifacts.read_json(_require(workdir, names.filter, filtering.FILTER_FILE, "filter"))
    folder = os.path.join(workdir, names.retrain)
    expected = {"filter_config": filt["config"], "num_after": filt["num_after"]}
    if validation_split is None:
        config = artifacts.read_json(os.path.join(workdir, attack.CONFIG_FILE))
        split = attack.AttackConfig.from_dict(config).validation_split
    else:
        split = float(validation_split)
        training.TrainConfig(validation_split=split)  # Validates it before any work.
    if split:
        expected["validation_split"] = split
    if _step_done(folder, filtering.RETRAIN_METRICS_FILE, expected) and not overwrite:
        return artifacts.read_json(os.path.join(folder, filtering.RETRAIN_METRICS_FILE))
    run = attack.load_run(workdir)
    _, purified = filtering.read_purified(os.path.join(workdir, names.filter))
    start = time.time()
    model, result = filtering.retrain(
        run,
        purified.texts,
        purified.labels,
        purified.num_poisoned,
        verbose=verbose,
        validation_split=split,
    )
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, attack.MODEL_FILE))
    out = {"config": expected, **result.to_dict(), "wall_seconds": time.time() - start}
    artifacts.write_json(os.path.join(folder, filtering.RETRAIN_METRICS_FILE), out)
    return out


def _require(workdir: str, folder: str, name: str, step: str) -> str:
    path = os.path.join(workdir, folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path!r} does not exist: run the {step} step (experiments.{step}) on {workdir!r} first."
        )
    return path


def make_report(workdir: str, variant: str = "paper") -> dict:
    """Collects the steps' figures into `report.json` and `report.md` (`_refined` suffix)."""
    names = layout(variant)
    config = artifacts.read_json(os.path.join(workdir, attack.CONFIG_FILE))
    metrics = artifacts.read_json(os.path.join(workdir, attack.METRICS_FILE))
    scan = artifacts.read_json(_require(workdir, names.scan, SCAN_FILE, "scan"))
    filt = artifacts.read_json(_require(workdir, names.filter, filtering.FILTER_FILE, "filter"))
    ret = artifacts.read_json(
        _require(workdir, names.retrain, filtering.RETRAIN_METRICS_FILE, "retrain")
    )
    det = scan["detection"]
    trigger_words = set(tokenization.tokenize(config["trigger"]))
    keyword_words = set(str(scan["keyword"]).split())
    report = {
        "dataset": config["dataset"],
        "trigger": config["trigger"],
        "target": metrics["target_name"],
        "poison_rate": config["poison_rate"],
        "variant": scan["config"]["variant"],
        "p": scan["config"]["p"],
        "keyword": scan["keyword"],
        "keyword_label": scan.get("keyword_label"),
        "keyword_label_name": _label_name(scan.get("keyword_label"), metrics),
        "keyword_in_trigger": bool(keyword_words) and keyword_words <= trigger_words,
        "precision": det["precision"],
        "recall": det["recall"],
        "f1": det["f1"],
        "removed": filt["num_before"] - filt["num_after"],
        "removed_share": (filt["num_before"] - filt["num_after"]) / max(filt["num_before"], 1),
        "num_train": filt["num_before"],
        "num_poisoned": metrics["num_poisoned"],
        "asr_before": metrics["asr"],
        "accuracy_before": metrics["clean_accuracy"],
        "asr_after": ret["asr"],
        "accuracy_after": ret["accuracy"],
        "attack_seconds": metrics["wall_seconds"],
        "scan_seconds": scan["scan_seconds"],
        "retrain_seconds": ret["wall_seconds"],
    }
    artifacts.write_json(os.path.join(workdir, names.report_json), report)
    artifacts.write_text(os.path.join(workdir, names.report_md), format_report(report))
    return report


def _label_name(label: int | None, metrics: dict) -> str | None:
    """The target's name for the target label (the usual case), else the label index."""
    if label is None:
        return None
    return metrics["target_name"] if label == metrics["target"] else str(label)


def _pct(x) -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.2f} %"
    )


def _keyword_cell(r: dict) -> str:
    label = r.get("keyword_label_name")
    cell = f"`{r['keyword']}`" + ("" if label is None else f" (label {label})")
    return cell + (", a trigger word" if r["keyword_in_trigger"] else "")


def format_report(r: dict) -> str:
    """Markdown rendering of a report dict."""
    rows = [
        ("dataset", r["dataset"]),
        ("trigger", f'"{r["trigger"]}"'),
        ("target", r["target"]),
        ("poisoning rate", _pct(r["poison_rate"])),
        ("poisoned / train", f"{r['num_poisoned']} / {r['num_train']}"),
        ("BKI variant, p", f"{r['variant']}, {r['p']}"),
        ("keyword", _keyword_cell(r)),
        ("removed", f"{r['removed']} ({_pct(r['removed_share'])})"),
        ("precision", _pct(r["precision"])),
        ("recall", _pct(r["recall"])),
        ("ASR before -> after", f"{_pct(r['asr_before'])} -> {_pct(r['asr_after'])}"),
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
    scan_config: ScanConfig,
    workdir: str,
    overwrite: bool = False,
    verbose: int | str = "auto",
) -> dict:
    """attack -> scan -> filter -> retrain -> report, resuming completed steps.

    `overwrite` redoes the attack and every variant's steps.

    Returns:
      The report dict (also written to `report.json` / `report.md`, with a
      `_refined` suffix for the refined variant).
    """
    if overwrite:
        for variant in VARIANTS:
            names = layout(variant)
            for name in (names.scan, names.filter, names.retrain):
                if os.path.isdir(os.path.join(workdir, name)):
                    shutil.rmtree(os.path.join(workdir, name))
    variant = scan_config.variant
    attack.run_attack(attack_config, workdir, overwrite=overwrite, verbose=verbose)
    run_scan(workdir, scan_config, overwrite=False, progress=bool(verbose))
    run_filter(workdir, variant=variant)
    run_retrain(workdir, verbose=verbose, variant=variant)
    return make_report(workdir, variant=variant)
