"""BKI beside the baseline defences, on the same poisoned victim and data.

`run_comparison(run, config)` measures, on one attack run (`bki_tf.runs.attack.load_run`):

* `bki`: Backdoor Keyword Identification (Chen & Dai, Neurocomputing 2021), read from
  the pipeline's `scan/scan.json` and `report.json` (not rerun).
* `activation_clustering`: Chen et al. 2019 (`bki_tf.baselines.activation_clustering`).
* `spectral_signatures`: Tran et al. 2018 (`bki_tf.baselines.spectral_signatures`).
* `strip`: text STRIP (Gao et al. 2019, as adapted by OpenBackdoor; `bki_tf.baselines.strip`).
* `linf_pruning`: l_inf neuron pruning (Cheng et al. 2020; `bki_tf.baselines.pruning`).
* With `CompareConfig.art` (`--art`): `art_activation_clustering` and
  `art_spectral_signatures`, the Adversarial Robustness Toolbox's `ActivationDefence` and
  `SpectralSignatureDefense` run on the same victim, training texts and classes
  (`bki_tf.baselines.art`; the optional extra `pip install -e '.[art]'`), with our AC / SS
  settings translated to ART's. They are rows beside ours whatever `defences` holds.

The training-set sanitizers (ART's included) are measured the same way: precision / recall / F1
of their removals against the poison ground truth, AUROC of their per-sample scores,
the removed share, and ASR / clean accuracy of the victim retrained from scratch on what
they keep (`bki_tf.runs.sanitize.sanitize_and_retrain`, i.e. `sanitize.retrain`, the
step BKI uses). The AC and SS representation is the victim's 256-d BiLSTM state,
computed once for both (and for the pruning ranking).

Row conventions (also written into `comparison.md`):

* BKI's per-sample score is the score BKI gave the keyword among that text's
  suspicious words (`KeywordResult.suspicious`; the highest if it was selected at
  several positions), 0 if the keyword is not among them or, for the refined variant,
  if the text's label is not the keyword's label. Precision / recall / F1 are
  recomputed from `scan.json`'s `flagged` positions; ASR / accuracy before and after
  come from `report.json`. Wall time: `scan.json`'s `wall_seconds` (scoring and keyword
  identification) plus `report.json`'s `retrain_seconds` (the attack's time is not
  counted).
* AC / SS wall time: the shared forward pass over the training set, the detection,
  and the retraining. ART's rows: the same shared pass (it gives the predicted classes),
  ART's own forward pass and detection, and the retraining. Their per-sample scores are
  described in `bki_tf.baselines.art` (AC: our AC score on ART's clusters; SS: ART's
  uncentred outlier score), and each row's `details.report` records the layer ART
  analysed, its settings and what it does differently from ours.
* STRIP is an input filter, not a sanitizer. The clean test set is split (seeded) into
  a calibration part (sets the threshold at the target FRR; donates replacement words)
  and an evaluation part; triggered texts are those made from evaluation texts (each
  part capped at `strip_max_texts`). Precision / recall / F1 / AUROC and the removed
  (rejected) share are over the evaluation texts plus their triggered versions, triggered
  = positive; `details` holds FRR (clean rejected) and FAR (triggered accepted). ASR
  after = triggered texts accepted *and* classified as the target; accuracy after =
  clean evaluation texts accepted *and* classified correctly; "before" values are on the
  same texts without STRIP.
* `linf_pruning` repairs the model, so detection metrics are null; its ASR / accuracy
  after are the oracle point of `bki_tf.baselines.pruning` (fewest pruned units that bring the
  ASR below `pruning_asr_threshold`), on the full test sets.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bki_tf import artifacts, detection, poisoning, tokenization, training
from bki_tf.baselines import activation_clustering, pruning, spectral_signatures, strip
from bki_tf.baselines import art as art_baselines
from bki_tf.bki import detector, keywords
from bki_tf.runs import attack, sanitize
from bki_tf.runs import workdir as wd

BKI = "bki"
DEFENCES = (
    BKI,
    activation_clustering.METHOD,
    spectral_signatures.METHOD,
    strip.METHOD,
    pruning.METHOD,
)
# Rows added beside DEFENCES with CompareConfig.art (not choosable in `defences`).
ART_DEFENCES = (art_baselines.AC_METHOD, art_baselines.SS_METHOD)
SANITIZERS = (BKI, activation_clustering.METHOD, spectral_signatures.METHOD, *ART_DEFENCES)
# Every row name, in the order rows are produced.
ROW_NAMES = DEFENCES[:3] + ART_DEFENCES + DEFENCES[3:]
SEGMENTS = ("predicted", "label")

COMPARE_DIR = wd.COMPARE_DIR
# Each sanitizer's retraining measures, read back by a rerun on the same run and rows.
RETRAINED_DIR = wd.RETRAINED_DIR
CONFIG_FILE = wd.CONFIG_FILE


def _bki_files(variant: str) -> tuple[str, str]:
    """The scan and report files BKI's row of `variant` reads."""
    names = wd.layout(variant)
    return os.path.join(names.scan, wd.SCAN_FILE), names.report_json


COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
SCORES_PNG = "score_distributions.png"
RANKING_PNG = "bki_ranking.png"
BEFORE_AFTER_PNG = "before_after.png"
PRUNING_PNG = "pruning_curve.png"
_RANKING_ROWS = 20
_KINDS = {
    BKI: "sanitizer",
    activation_clustering.METHOD: "sanitizer",
    spectral_signatures.METHOD: "sanitizer",
    strip.METHOD: "input_filter",
    pruning.METHOD: "model_repair",
    art_baselines.AC_METHOD: "sanitizer",
    art_baselines.SS_METHOD: "sanitizer",
}


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What to compare and how.

    Attributes:
      defences: Subset of `DEFENCES`, run in the canonical order.
      retrain: Retrain the victim on what AC / SS keep (one full training each); False
        reports their detection metrics only.
      segment_by: Class used by AC / SS per sample: `predicted` (the victim's
        prediction) or `label` (the training label).
      ac: Activation Clustering settings.
      ss: Spectral Signatures settings.
      strip_config: STRIP settings.
      strip_max_texts: Cap on the calibration, clean evaluation and triggered texts
        STRIP scores (each).
      calibration_share: Share of the clean test set held out to calibrate STRIP.
      pruning_asr_threshold: ASR that the reported pruning point must get below.
      seed: Seed of the calibration / evaluation split.
      variant: Which BKI variant's scan and report give BKI's row (`paper`, `refined`, `plus`).
      art: Also run ART's Activation Clustering and Spectral Signatures (`ART_DEFENCES`,
        with the `ac` / `ss` settings; needs the extra `pip install -e '.[art]'`).
    """

    defences: tuple[str, ...] = DEFENCES
    retrain: bool = True
    segment_by: str = "predicted"
    ac: activation_clustering.ActivationClusteringConfig = dataclasses.field(
        default_factory=activation_clustering.ActivationClusteringConfig
    )
    ss: spectral_signatures.SpectralSignaturesConfig = dataclasses.field(
        default_factory=spectral_signatures.SpectralSignaturesConfig
    )
    strip_config: strip.StripConfig = dataclasses.field(default_factory=strip.StripConfig)
    strip_max_texts: int = 1000
    calibration_share: float = 0.5
    pruning_asr_threshold: float = 0.2
    seed: int = 0
    variant: str = "paper"
    art: bool = False

    def __post_init__(self):
        if self.variant not in wd.VARIANTS:
            raise ValueError(f"Unknown BKI variant {self.variant!r}; choose one of {wd.VARIANTS}.")
        defences = tuple(self.defences)
        unknown = [d for d in defences if d not in DEFENCES]
        if unknown or not defences:
            raise ValueError(
                f"Unknown defence(s) {unknown or 'none given'}; choose a non-empty subset of "
                f"{list(DEFENCES)}, e.g. --defences=activation_clustering,strip."
            )
        if len(set(defences)) != len(defences):
            raise ValueError(f"Defences {list(defences)} repeat a name; list each once.")
        object.__setattr__(self, "defences", tuple(d for d in DEFENCES if d in defences))
        if self.segment_by not in SEGMENTS:
            raise ValueError(f"Unknown segment_by {self.segment_by!r}; choose one of {SEGMENTS}.")
        if self.strip_max_texts < 1:
            raise ValueError(f"strip_max_texts must be >= 1, got {self.strip_max_texts}.")
        if not 0.0 < self.calibration_share < 1.0:
            raise ValueError(
                f"calibration_share must lie in (0, 1), got {self.calibration_share}; e.g. 0.5."
            )
        if not 0.0 < self.pruning_asr_threshold <= 1.0:
            raise ValueError(
                f"pruning_asr_threshold must lie in (0, 1], got {self.pruning_asr_threshold}."
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["defences"] = list(self.defences)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareConfig:
        d = dict(d)
        d["defences"] = tuple(d.get("defences", DEFENCES))
        d["ac"] = activation_clustering.ActivationClusteringConfig(**d.get("ac", {}))
        d["ss"] = spectral_signatures.SpectralSignaturesConfig(**d.get("ss", {}))
        d["strip_config"] = strip.StripConfig(**d.get("strip_config", {}))
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class ComparisonRow:
    """One defence's line of the comparison (None = not meaningful / not measured).

    Attributes:
      defence: One of `ROW_NAMES` (`DEFENCES` or `ART_DEFENCES`).
      kind: `sanitizer`, `input_filter` or `model_repair`.
      precision, recall, f1, auroc, removed_share: Detection quality (see the module
        docstring for what STRIP's are computed on).
      asr_before, accuracy_before: The poisoned victim.
      asr_after, accuracy_after: After the defence.
      wall_seconds: Wall time of the defence (see the module docstring).
      evaluated_on: The texts the after-metrics are measured on.
      details: Defence-specific extras (thresholds, FRR / FAR, pruned units, ...).
    """

    defence: str
    kind: str
    precision: float | None
    recall: float | None
    f1: float | None
    auroc: float | None
    removed_share: float | None
    asr_before: float | None
    accuracy_before: float | None
    asr_after: float | None
    accuracy_after: float | None
    wall_seconds: float | None
    evaluated_on: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.defence not in ROW_NAMES:
            raise ValueError(f"Unknown defence {self.defence!r}; rows are one of {ROW_NAMES}.")
        for name in (
            "precision",
            "recall",
            "f1",
            "auroc",
            "removed_share",
            "asr_before",
            "accuracy_before",
            "asr_after",
            "accuracy_after",
        ):
            v = getattr(self, name)
            if v is not None and not (math.isnan(v) or 0.0 <= v <= 1.0):
                raise ValueError(f"{self.defence}: {name} must lie in [0, 1] or be None, got {v}.")
            if v is not None:
                object.__setattr__(self, name, None if math.isnan(v) else float(v))
        if self.wall_seconds is not None and self.wall_seconds < 0:
            raise ValueError(f"{self.defence}: wall_seconds must be >= 0, got {self.wall_seconds}.")

    def to_dict(self) -> dict[str, Any]:
        return artifacts.to_jsonable(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """Every defence's row, plus what the plots need.

    Attributes:
      workdir: The attack run compared on.
      config: The comparison settings.
      rows: One `ComparisonRow` per defence, in `ROW_NAMES` order.
      notes: Skipped defences and other remarks.
      detections: Per detector, its `DetectionResult` (for the score plot).
      ground_truth: Per detector, `bool [N]` poisoned / triggered mask of its samples.
      bki_entries: BKI's dictionary, best first (dicts with word/count/mean/g/label).
      trigger_tokens: The trigger's tokens (to mark them in the ranking plot).
      pruning_result: The pruning curves, if pruning ran.
    """

    workdir: str
    config: CompareConfig
    rows: tuple[ComparisonRow, ...]
    notes: tuple[str, ...] = ()
    detections: dict[str, detection.DetectionResult] = dataclasses.field(default_factory=dict)
    ground_truth: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    bki_entries: tuple[dict, ...] = ()
    trigger_tokens: tuple[str, ...] = ()
    pruning_result: pruning.PruningResult | None = None

    def __post_init__(self):
        names = [r.defence for r in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"Comparison rows repeat a defence: {names}.")

    def to_dict(self) -> dict[str, Any]:
        """The rows (the content of `comparison.json`) with the config and notes."""
        return {
            "workdir": self.workdir,
            "config": self.config.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """Markdown: the table, the notes and the row conventions."""

        def pct(v):
            return "–" if v is None else f"{100 * v:.1f}%"

        def num(v):
            return "–" if v is None else f"{v:.3f}"

        def arrow(before, after):
            return f"{pct(before)} → {pct(after)}"

        lines = [
            f"# Defences compared on `{self.workdir}`",
            "",
            "| defence | kind | precision | recall | F1 | AUROC | removed | ASR before → after "
            "| accuracy before → after | wall s | measured on |",
            "|---|---|---:|---:|---:|---:|---:|---|---|---:|---|",
        ]
        for r in self.rows:
            wall = "–" if r.wall_seconds is None else f"{r.wall_seconds:.1f}"
            lines.append(
                f"| {r.defence} | {r.kind} | {num(r.precision)} | {num(r.recall)} | {num(r.f1)} "
                f"| {num(r.auroc)} | {pct(r.removed_share)} | {arrow(r.asr_before, r.asr_after)} "
                f"| {arrow(r.accuracy_before, r.accuracy_after)} | {wall} | {r.evaluated_on} |"
            )
        lines.append("")
        for r in self.rows:
            if r.defence == strip.METHOD:
                d = r.details
                lines.append(
                    f"STRIP: target FRR {pct(d.get('target_frr'))}, threshold "
                    f"{num(d.get('threshold'))} bits; FRR {pct(d.get('frr'))} on "
                    f"{d.get('num_clean')} clean texts, FAR {pct(d.get('far'))} on "
                    f"{d.get('num_triggered')} triggered texts."
                )
            if r.defence == pruning.METHOD:
                d = r.details
                lines.append(
                    f"l_inf pruning: {d.get('pruned_units')} '{d.get('layer')}' units pruned "
                    f"(ASR < {pct(d.get('asr_threshold'))} "
                    f"{'reached' if d.get('reached') else 'not reached; lowest-ASR point'})."
                )
            if r.defence == BKI:
                lines.append(f"BKI keyword: **{r.details.get('keyword')}**.")
            if r.defence in ART_DEFENCES:
                rep = r.details.get("report", {})
                lines.append(
                    f"{r.defence}: ART {rep.get('versions', {}).get('art')} analysed layer "
                    f"'{rep.get('layer')}' (it meant '{rep.get('layer_meant')}'), settings "
                    f"{rep.get('config')}."
                )
        if self.notes:
            lines += ["", "Notes:", *[f"- {n}" for n in self.notes]]
        lines += [
            "",
            "Conventions: see `bki_tf/comparison.py`. BKI's per-sample score is the keyword's "
            "score among the text's suspicious words (0 if absent); STRIP is measured on a "
            "held-out half of the test set, as an input filter; l_inf pruning reports the "
            "oracle point (fewest pruned units with ASR below the threshold, chosen with the "
            "triggered test texts).",
            "",
            f"![scores]({SCORES_PNG}) ![ranking]({RANKING_PNG}) "
            f"![before/after]({BEFORE_AFTER_PNG}) ![pruning]({PRUNING_PNG})",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# BKI, from the pipeline's files.


def bki_files_present(workdir: str, variant: str = "paper") -> bool:
    """True when the pipeline's BKI outputs (scan/scan.json, report.json) exist."""
    return all(os.path.isfile(os.path.join(workdir, f)) for f in _bki_files(variant))


def check_bki_files(workdir: str, config: CompareConfig) -> None:
    """Raises FileNotFoundError, saying what to run, if `bki` is asked for but not there."""
    if BKI not in config.defences or bki_files_present(workdir, config.variant):
        return
    missing = [
        f for f in _bki_files(config.variant) if not os.path.isfile(os.path.join(workdir, f))
    ]
    others = ",".join(d for d in config.defences if d != BKI) or ",".join(DEFENCES[1:])
    raise FileNotFoundError(
        f"BKI's row needs {missing} in {workdir!r}: run python -m experiments.pipeline "
        f"--workdir={workdir} --variant={config.variant} first, or leave bki out with --defences={others}."
    )


def bki_detection(scan: dict[str, Any], num_texts: int) -> detection.DetectionResult:
    """BKI's decisions and per-sample scores from the pipeline's `scan/scan.json`.

    Args:
      scan: The parsed `scan/scan.json` (`keyword`, `flagged`, `result` =
        `KeywordResult.to_dict()`).
      num_texts: Size of the training set it must cover.

    Returns:
      A `DetectionResult`: `is_poison` from `flagged`; score of text i = the highest
      score of the keyword among its suspicious words, 0 if absent (or, refined
      variant, if the text's label is not the keyword's label).
    """
    for key in ("flagged", "result"):
        if key not in scan:
            raise ValueError(
                f"scan/scan.json lacks {key!r}; rerun python -m experiments.pipeline to rewrite it."
            )
    result = keywords.KeywordResult.from_dict(scan["result"])
    if result.num_texts != num_texts:
        raise ValueError(
            f"scan/scan.json scores {result.num_texts} texts but the run's training set holds "
            f"{num_texts}; it belongs to another run; rerun python -m experiments.pipeline."
        )
    keyword = scan.get("keyword", result.keyword)
    if keyword != result.keyword:
        raise ValueError(
            f"scan/scan.json's keyword {keyword!r} differs from its result's {result.keyword!r}."
        )
    flagged = np.asarray(scan["flagged"], dtype=np.int64)
    if flagged.size and (flagged.min() < 0 or flagged.max() >= num_texts):
        raise ValueError(
            f"scan/scan.json flags positions outside [0, {num_texts}); rerun the pipeline."
        )
    if not np.array_equal(flagged, result.flagged):
        raise ValueError("scan/scan.json's flagged rows differ from its result's; rescan.")
    return detector.as_detection(result)


def _plus_details(plus: dict | None) -> dict:
    """BKI+'s decision for a comparison row's details (empty for the other variants)."""
    if not isinstance(plus, dict):
        return {}
    return {
        "backdoor_found": bool(plus.get("backdoor_found")),
        "statistic": plus.get("statistic"),
        "threshold": plus.get("threshold"),
        "phrases": [k.get("phrase") for k in plus.get("keywords", [])],
        "rejected": [k.get("phrase") for k in plus.get("rejected", [])],
    }


def _bki_wall_seconds(scan: dict, report: dict) -> float | None:
    """Scan + keyword identification (scan.json) plus retraining (report.json)."""
    total = scan.get("wall_seconds")
    if not isinstance(total, int | float):
        return None
    retrain = report.get("retrain_seconds")
    return float(total + (retrain if isinstance(retrain, int | float) else 0.0))


def _bki_row(
    run: attack.AttackRun, variant: str = "paper"
) -> tuple[ComparisonRow, detection.DetectionResult, tuple]:
    scan_file, report_file = _bki_files(variant)
    scan = artifacts.read_json(os.path.join(run.workdir, scan_file))
    report = artifacts.read_json(os.path.join(run.workdir, report_file))
    missing = [
        k
        for k in ("asr_before", "accuracy_before", "asr_after", "accuracy_after")
        if k not in report
    ]
    if missing:
        raise ValueError(
            f"{os.path.join(run.workdir, report_file)!r} lacks {missing}; rerun "
            "python -m experiments.pipeline."
        )
    result = bki_detection(scan, len(run.train))
    ev = detection.evaluate(result, run.train.is_poisoned)
    row = ComparisonRow(
        defence=BKI,
        kind=_KINDS[BKI],
        precision=ev.precision,
        recall=ev.recall,
        f1=ev.f1,
        auroc=ev.auroc,
        removed_share=ev.removed_share,
        asr_before=report["asr_before"],
        accuracy_before=report["accuracy_before"],
        asr_after=report["asr_after"],
        accuracy_after=report["accuracy_after"],
        wall_seconds=_bki_wall_seconds(scan, report),
        evaluated_on="full test sets (report.json)",
        details={
            **result.report,
            **_plus_details(scan.get("plus")),
            **ev.to_dict(),
            "scan_seconds": scan.get("wall_seconds"),
            "report": {k: v for k, v in report.items() if not isinstance(v, dict | list)},
        },
    )
    entries = tuple(scan["result"].get("entries", ()))
    return row, result, entries


# ---------------------------------------------------------------------------
# The comparison.


def _sanitizer_row(name, result, outcome, seconds) -> ComparisonRow:
    ev = outcome.evaluation
    return ComparisonRow(
        defence=name,
        kind=_KINDS[name],
        precision=ev.precision,
        recall=ev.recall,
        f1=ev.f1,
        auroc=ev.auroc,
        removed_share=ev.removed_share,
        asr_before=outcome.asr_before,
        accuracy_before=outcome.accuracy_before,
        asr_after=outcome.asr_after,
        accuracy_after=outcome.accuracy_after,
        wall_seconds=seconds,
        evaluated_on="full test sets" if outcome.asr_after is not None else "not retrained",
        details={
            **ev.to_dict(),
            "num_poison_left": outcome.num_poison_left,
            "retrain_seconds": outcome.retrain_seconds,
            "asr_per_trigger_after": outcome.asr_per_trigger_after,
            "report": result.report,
        },
    )


def _strip_split(run: attack.AttackRun, config: CompareConfig):
    """Calibration / evaluation test indices and the triggered rows of the evaluation part."""
    n = len(run.test_texts)
    if n < 2:
        raise ValueError(f"STRIP needs at least 2 clean test texts to split; the run has {n}.")
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(n)
    n_cal = min(n - 1, max(1, int(round(config.calibration_share * n))))
    cap = config.strip_max_texts
    cal, ev = np.sort(perm[:n_cal][:cap]), np.sort(perm[n_cal:][:cap])
    notes = []
    # Triggered row k comes from the k-th non-target test text (poisoning.triggered_test_set).
    # With several triggers the set holds one such block per trigger, in order.
    sources = np.flatnonzero(np.asarray(run.test_labels) != run.target)
    if len(sources) and len(run.triggered_texts) % len(sources) == 0:
        sources = np.tile(sources, len(run.triggered_texts) // len(sources))
    if len(sources) == len(run.triggered_texts):
        trig = np.flatnonzero(np.isin(sources, ev))
    else:
        trig = np.arange(len(run.triggered_texts))
        notes.append(
            "STRIP: the triggered test set does not map onto the non-target test texts; all "
            "triggered texts were used (they may share sources with the calibration texts)."
        )
    if len(trig) > cap:
        trig = np.sort(rng.choice(trig, size=cap, replace=False))
    return cal, ev, trig, notes


def run_comparison(
    run: attack.AttackRun,
    config: CompareConfig | None = None,
    verbose: int | str = 0,
    log=None,
) -> Comparison:
    """Runs every configured defence on `run`'s victim and data.

    Args:
      run: A loaded attack run; for `bki`, its workdir must hold the pipeline's
        `scan/scan.json` and `report.json`.
      config: What to run.
      verbose: Keras verbosity of the retraining.
      log: Optional `callable(str)` for progress messages.

    Returns:
      The `Comparison` (write it with `write_comparison`).

    Raises:
      FileNotFoundError: `bki` is requested but the pipeline has not run.
      ValueError: `config.art` but ART is not installed.
    """
    config = config or CompareConfig()
    log = log or (lambda _msg: None)
    check_bki_files(run.workdir, config)
    if config.art:
        art_baselines.require_art()
    vectorizer = run.vectorizer()
    rows, notes = [], []
    detections, truths = {}, {}
    bki_entries: tuple = ()
    pruning_result = None
    poisoned = np.asarray(run.train.is_poisoned, dtype=bool)

    if BKI in config.defences:
        row, result, bki_entries = _bki_row(run, config.variant)
        rows.append(row)
        detections[BKI], truths[BKI] = result, poisoned
        if result.report.get("degenerate"):
            notes.append("BKI: the keyword's g <= 0 (degenerate); no word stood out.")
    else:
        notes.append("BKI skipped (not in --defences).")

    train_ids = train_hidden = train_classes = None
    shared_seconds = 0.0
    if config.art or set(config.defences) & {
        activation_clustering.METHOD,
        spectral_signatures.METHOD,
        pruning.METHOD,
    }:
        t0 = time.time()
        train_ids, _ = tokenization.encode(vectorizer, run.train.texts)
        probs, train_hidden = training.predict(run.model, train_ids)
        shared_seconds = time.time() - t0
        if config.segment_by == "predicted":
            train_classes = probs.argmax(axis=1)
        else:
            train_classes = np.asarray(run.train.labels)
        log(f"hidden states of {len(train_ids)} training texts in {shared_seconds:.1f} s")

    sanitizers = [
        (name, detect)
        for name, detect in (
            (
                activation_clustering.METHOD,
                lambda: activation_clustering.detect(train_hidden, train_classes, config.ac),
            ),
            (
                spectral_signatures.METHOD,
                lambda: spectral_signatures.detect(train_hidden, train_classes, config.ss),
            ),
        )
        if name in config.defences
    ]
    if config.art:
        sanitizers += [
            (
                art_baselines.AC_METHOD,
                lambda: art_baselines.activation_clustering(
                    run.model, train_ids, train_classes, config.ac
                ),
            ),
            (
                art_baselines.SS_METHOD,
                lambda: art_baselines.spectral_signatures(
                    run.model, train_ids, train_classes, config.ss
                ),
            ),
        ]
    for name, detect in sanitizers:
        t0 = time.time()
        result = detect()
        outcome = sanitize.sanitize_and_retrain(
            run,
            result,
            retrain=config.retrain,
            verbose=verbose,
            cache_path=os.path.join(run.workdir, RETRAINED_DIR, f"{name}.json"),
        )
        seconds = shared_seconds + time.time() - t0
        rows.append(_sanitizer_row(name, result, outcome, seconds))
        detections[name], truths[name] = result, poisoned
        log(outcome.summary())
        if not config.retrain:
            notes.append(f"{name}: not retrained (--noretrain); ASR / accuracy after are null.")

    if strip.METHOD in config.defences:
        t0 = time.time()
        cal, ev, trig, split_notes = _strip_split(run, config)
        notes += split_notes
        cal_ids, _ = tokenization.encode(vectorizer, [run.test_texts[i] for i in cal])
        ev_ids, _ = tokenization.encode(vectorizer, [run.test_texts[i] for i in ev])
        trig_ids, _ = tokenization.encode(vectorizer, [run.triggered_texts[i] for i in trig])
        outcome = strip.run_strip(
            run.model,
            cal_ids,
            ev_ids,
            np.asarray(run.test_labels)[ev],
            trig_ids,
            run.target,
            config.strip_config,
        )
        seconds = time.time() - t0
        e = outcome.evaluation
        rows.append(
            ComparisonRow(
                defence=strip.METHOD,
                kind=_KINDS[strip.METHOD],
                precision=e.precision,
                recall=e.recall,
                f1=e.f1,
                auroc=e.auroc,
                removed_share=e.removed_share,
                asr_before=outcome.asr_before,
                accuracy_before=outcome.accuracy_before,
                asr_after=outcome.asr_after,
                accuracy_after=outcome.accuracy_after,
                wall_seconds=seconds,
                evaluated_on=f"held-out test texts ({len(ev)} clean + {len(trig)} triggered)",
                details={
                    "target_frr": config.strip_config.frr,
                    "threshold": outcome.threshold,
                    "frr": outcome.frr,
                    "far": outcome.far,
                    "num_calibration": len(cal),
                    "num_clean": len(ev),
                    "num_triggered": len(trig),
                    **e.to_dict(),
                },
            )
        )
        detections[strip.METHOD] = outcome.detection
        truths[strip.METHOD] = np.r_[np.zeros(len(ev), bool), np.ones(len(trig), bool)]
        log(outcome.summary())

    if pruning.METHOD in config.defences:
        t0 = time.time()
        test_ids, _ = tokenization.encode(vectorizer, run.test_texts)
        trig_ids, _ = tokenization.encode(vectorizer, run.triggered_texts)
        pruning_result = pruning.prune(
            run.model,
            train_hidden,
            test_ids,
            run.test_labels,
            trig_ids,
            run.target,
            asr_threshold=config.pruning_asr_threshold,
        )
        seconds = shared_seconds + time.time() - t0
        c = pruning_result.chosen
        units = len(pruning_result.orders[c.layer])
        rows.append(
            ComparisonRow(
                defence=pruning.METHOD,
                kind=_KINDS[pruning.METHOD],
                precision=None,
                recall=None,
                f1=None,
                auroc=None,
                removed_share=None,
                asr_before=pruning_result.asr_before,
                accuracy_before=pruning_result.accuracy_before,
                asr_after=c.asr,
                accuracy_after=c.accuracy,
                wall_seconds=seconds,
                evaluated_on="full test sets (oracle point)",
                details={
                    "layer": c.layer,
                    "pruned_units": c.num_pruned,
                    "layer_units": units,
                    "pruned_share_of_layer": c.num_pruned / units if units else 0.0,
                    "asr_threshold": pruning_result.asr_threshold,
                    "reached": pruning_result.reached,
                },
            )
        )
        log(pruning_result.summary())

    return Comparison(
        workdir=run.workdir,
        config=config,
        rows=tuple(rows),
        notes=tuple(notes),
        detections=detections,
        ground_truth=truths,
        bki_entries=bki_entries,
        trigger_tokens=tuple(poisoning.trigger_words(run.config.trigger)),
        pruning_result=pruning_result,
    )


# ---------------------------------------------------------------------------
# Plots (matplotlib's object-oriented API: no pyplot state, no display needed).


def plot_score_distributions(comparison: Comparison) -> Figure:
    """Per detector, histograms of its per-sample scores: clean vs poisoned (triggered)."""
    names = [n for n in ROW_NAMES if n in comparison.detections]
    fig = Figure(figsize=(4.2 * max(1, len(names)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    for ax, name in zip(axes, names):
        result = comparison.detections[name]
        truth = comparison.ground_truth[name]
        scores = result.scores
        xlabel = "suspicion score"
        if name == strip.METHOD:
            scores, xlabel = -scores, "mean prediction entropy (bits); low = trigger"
        lo, hi = float(scores.min()), float(scores.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        positive = "triggered" if name == strip.METHOD else "poisoned"
        for mask, label, color in ((~truth, "clean", "tab:blue"), (truth, positive, "tab:red")):
            if mask.any():
                ax.hist(
                    scores[mask],
                    bins=bins,
                    density=True,
                    alpha=0.55,
                    label=f"{label} ({int(mask.sum())})",
                    color=color,
                )
        if name == strip.METHOD and "threshold" in result.report:
            ax.axvline(result.report["threshold"], color="k", ls="--", lw=1, label="threshold")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    if not names:
        axes[0].text(0.5, 0.5, "no detector ran", ha="center", va="center")
        axes[0].set_axis_off()
    return fig


def _is_trigger_word(word: str, trigger_tokens) -> bool:
    return bool(set(word.split()) & set(trigger_tokens))


def plot_bki_ranking(entries, trigger_tokens, top: int = _RANKING_ROWS) -> Figure:
    """BKI's top dictionary entries by g(k), trigger words in red."""
    entries = list(entries)[:top]
    fig = Figure(figsize=(6.0, 0.28 * max(len(entries), 4) + 1.2), layout="constrained")
    ax = fig.subplots()
    if not entries:
        ax.text(0.5, 0.5, "BKI not run", ha="center", va="center")
        ax.set_axis_off()
        return fig
    labels = [
        e["word"] if e.get("label") is None else f"{e['word']} (label {e['label']})"
        for e in entries
    ]
    values = [e["g"] for e in entries]
    marked = [_is_trigger_word(e["word"], trigger_tokens) for e in entries]
    y = np.arange(len(entries))[::-1]
    ax.barh(y, values, color=["tab:red" if m else "tab:gray" for m in marked])
    ax.set_yticks(y, labels, fontsize=8)
    for tick, m in zip(ax.get_yticklabels(), marked):
        if m:
            tick.set_color("tab:red")
            tick.set_fontweight("bold")
    ax.set_xlabel("g(k)")
    ax.set_title(f"BKI top-{len(entries)} keywords (red: trigger words)")
    return fig


def plot_before_after(comparison: Comparison) -> Figure:
    """ASR and clean accuracy before and after each defence."""
    rows = comparison.rows
    fig = Figure(figsize=(max(6.0, 1.6 * len(rows) + 2.0), 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    x = np.arange(len(rows))
    for ax, metric in zip(axes, ("asr", "accuracy")):
        before = [getattr(r, f"{metric}_before") for r in rows]
        after = [getattr(r, f"{metric}_after") for r in rows]
        for offset, values, label, color in (
            (-0.2, before, "before", "tab:gray"),
            (0.2, after, "after", "tab:green" if metric == "accuracy" else "tab:red"),
        ):
            bars = ax.bar(
                x + offset,
                [float("nan") if v is None else v for v in values],
                0.4,
                label=label,
                color=color,
            )
            texts = ["n/a" if v is None else f"{100 * v:.0f}" for v in values]
            ax.bar_label(bars, labels=texts, fontsize=7)
        ax.set_xticks(x, [r.defence for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title("attack success rate" if metric == "asr" else "clean accuracy")
        ax.legend(fontsize=8)
    return fig


def plot_pruning_curve(result: pruning.PruningResult | None) -> Figure:
    """ASR and clean accuracy against the number of pruned units, per layer."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    if result is None:
        ax.text(0.5, 0.5, "l_inf pruning not run", ha="center", va="center")
        ax.set_axis_off()
        return fig
    styles = {"hidden": "-", "dense": "--"}
    for layer, curve in result.curves.items():
        ls = styles.get(layer, ":")
        ax.plot(curve["num_pruned"], curve["asr"], ls, color="tab:red", label=f"ASR ({layer})")
        ax.plot(
            curve["num_pruned"],
            curve["accuracy"],
            ls,
            color="tab:green",
            label=f"accuracy ({layer})",
        )
    ax.axhline(result.asr_threshold, color="k", lw=0.8, ls=":", label="ASR threshold")
    c = result.chosen
    ax.plot([c.num_pruned], [c.asr], "ko", ms=5, label=f"reported: {c.num_pruned} {c.layer}")
    ax.set_xlabel("units pruned (largest l_inf norm first)")
    ax.set_ylim(0, 1.05)
    ax.set_title("l_inf neuron pruning")
    ax.legend(fontsize=7)
    return fig


def write_comparison(comparison: Comparison, output_dir: str) -> dict[str, str]:
    """Writes comparison.json (the rows), comparison.md, the plots and per-defence details.

    Returns:
      Name -> path of every file written; `comparison.json` is written last.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for name, result in comparison.detections.items():
        path = os.path.join(output_dir, name, "detection.json")
        artifacts.write_json(path, result.to_dict())
        paths[f"{name}/detection.json"] = path
    if comparison.pruning_result is not None:
        path = os.path.join(output_dir, pruning.METHOD, "pruning.json")
        artifacts.write_json(path, comparison.pruning_result.to_dict())
        paths[f"{pruning.METHOD}/pruning.json"] = path
    figures = {
        SCORES_PNG: plot_score_distributions(comparison),
        RANKING_PNG: plot_bki_ranking(comparison.bki_entries, comparison.trigger_tokens),
        BEFORE_AFTER_PNG: plot_before_after(comparison),
        PRUNING_PNG: plot_pruning_curve(comparison.pruning_result),
    }
    for name, fig in figures.items():
        path = os.path.join(output_dir, name)
        fig.savefig(path, dpi=120)
        paths[name] = path
    path = os.path.join(output_dir, COMPARISON_MD)
    artifacts.write_text(path, comparison.summary() + "\n")
    paths[COMPARISON_MD] = path
    path = os.path.join(output_dir, COMPARISON_JSON)
    artifacts.write_json(path, [r.to_dict() for r in comparison.rows])
    paths[COMPARISON_JSON] = path
    return paths
