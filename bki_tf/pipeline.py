"""BKI end to end in one workdir: attack -> scan -> filter -> retrain -> report.

Each step reads the previous step's files and writes its own folder, with its
result file written last; a step whose result file exists (for the same
config and the same victim) is skipped, so an interrupted pipeline resumes
where it stopped. Reference: Chen & Dai, "Mitigating backdoor attacks in
LSTM-based text classification systems by Backdoor Keyword Identification",
Neurocomputing 452 (2021), Algorithm 1 and Sec. 5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import time

import numpy as np

from bki_tf import artifacts, attack, filtering, keywords, scanning, tokenization

SCAN_DIR = "scan"
FILTER_DIR = "filter"
RETRAIN_DIR = "retrain"
SCAN_FILE = "scan.json"
SCAN_MD = "scan.md"
SCORES_FILE = "scores.npz"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
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
    `scan/scores.npz` (every f_ij).

    Returns:
      The content of scan.json.
    """
    folder = os.path.join(workdir, SCAN_DIR)
    run = attack.load_run(workdir)
    expected = {**config.identity(), "model_sha256": model_fingerprint(workdir)}
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
    local = None
    if config.variant == "refined":
        local = scanning.prefix_scores(run.model, ids, lengths)
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
    flat = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    np.savez_compressed(os.path.join(folder, SCORES_FILE), scores=flat, lengths=lengths)
    out = {
        "config": expected,
        "keyword": result.keyword,
        "keyword_label": result.keyword_label,
        "num_texts": len(ids),
        "num_flagged": int(len(result.flagged)),
        "flagged": result.flagged,
        "detection": detection.to_dict(),
        "scan_seconds": scan_seconds,
        "texts_per_second": len(ids) / max(scan_seconds, 1e-9),
        "batch_size": config.batch_size,
        "wall_seconds": time.time() - start,
        "result": result.to_dict(),
    }
    artifacts.write_text(
        os.path.join(folder, SCAN_MD),
        f"# BKI scan of {workdir}\n\n{result.summary()}\n\n"
        f"Scan: {len(ids)} texts in {scan_seconds:.1f} s ({out['texts_per_second']:.1f} texts/s).\n\n"
        f"Detection against ground truth: {detection.summary()}\n",
    )
    artifacts.write_json(path, out)
    return out


def run_filter(workdir: str, overwrite: bool = False) -> dict:
    """Removes the scan's flagged rows; writes `filter/` (the input set is untouched)."""
    scan = artifacts.read_json(os.path.join(workdir, SCAN_DIR, SCAN_FILE))
    folder = os.path.join(workdir, FILTER_DIR)
    expected = {"scan_config": scan["config"], "keyword": scan["keyword"]}
    if _step_done(folder, filtering.FILTER_FILE, expected) and not overwrite:
        return artifacts.read_json(os.path.join(folder, filtering.FILTER_FILE))
    run = attack.load_run(workdir)
    keep, result = filtering.filter_rows(run, np.asarray(scan["flagged"], dtype=np.int64))
    return filtering.write_filter(folder, run, keep, result, config=expected)


def run_retrain(workdir: str, overwrite: bool = False, verbose: int | str = "auto") -> dict:
    """Retrains the victim's architecture on the purified set; writes `retrain/`."""
    filt = artifacts.read_json(os.path.join(workdir, FILTER_DIR, filtering.FILTER_FILE))
    folder = os.path.join(workdir, RETRAIN_DIR)
    expected = {"filter_config": filt["config"], "num_after": filt["num_after"]}
    if _step_done(folder, filtering.RETRAIN_METRICS_FILE, expected) and not overwrite:
        return artifacts.read_json(os.path.join(folder, filtering.RETRAIN_METRICS_FILE))
    run = attack.load_run(workdir)
    _, purified = filtering.read_purified(os.path.join(workdir, FILTER_DIR))
    start = time.time()
    model, result = filtering.retrain(
        run, purified.texts, purified.labels, purified.num_poisoned, verbose=verbose
    )
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, attack.MODEL_FILE))
    out = {"config": expected, **result.to_dict(), "wall_seconds": time.time() - start}
    artifacts.write_json(os.path.join(folder, filtering.RETRAIN_METRICS_FILE), out)
    return out


def make_report(workdir: str) -> dict:
    """Collects the steps' figures into `report.json` and `report.md`."""
    config = artifacts.read_json(os.path.join(workdir, attack.CONFIG_FILE))
    metrics = artifacts.read_json(os.path.join(workdir, attack.METRICS_FILE))
    scan = artifacts.read_json(os.path.join(workdir, SCAN_DIR, SCAN_FILE))
    filt = artifacts.read_json(os.path.join(workdir, FILTER_DIR, filtering.FILTER_FILE))
    ret = artifacts.read_json(os.path.join(workdir, RETRAIN_DIR, filtering.RETRAIN_METRICS_FILE))
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
    artifacts.write_json(os.path.join(workdir, REPORT_JSON), report)
    artifacts.write_text(os.path.join(workdir, REPORT_MD), format_report(report))
    return report


def _pct(x) -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.2f} %"
    )


def format_report(r: dict) -> str:
    """Markdown rendering of a report dict."""
    rows = [
        ("dataset", r["dataset"]),
        ("trigger", f'"{r["trigger"]}"'),
        ("target", r["target"]),
        ("poisoning rate", _pct(r["poison_rate"])),
        ("poisoned / train", f"{r['num_poisoned']} / {r['num_train']}"),
        ("BKI variant, p", f"{r['variant']}, {r['p']}"),
        ("keyword", f"`{r['keyword']}`" + (" (a trigger word)" if r["keyword_in_trigger"] else "")),
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

    Returns:
      The report dict (also written to `report.json` / `report.md`).
    """
    if overwrite:
        for name in (SCAN_DIR, FILTER_DIR, RETRAIN_DIR):
            if os.path.isdir(os.path.join(workdir, name)):
                shutil.rmtree(os.path.join(workdir, name))
    attack.run_attack(attack_config, workdir, overwrite=overwrite, verbose=verbose)
    run_scan(workdir, scan_config, overwrite=False, progress=bool(verbose))
    run_filter(workdir)
    run_retrain(workdir, verbose=verbose)
    return make_report(workdir)
