"""The BKI paper's experiment grid (Chen & Dai 2021, Tables 2 and 3).

Six trigger sentences on IMDB and DBpedia, plus clean runs, each run through
`bki_tf.runs.pipeline.run_pipeline` in its own sub-folder (so an interrupted grid
resumes), then tabulated beside the paper's published figures.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np

from bki_tf import artifacts
from bki_tf.bki.detector import BKIConfig
from bki_tf.runs import attack, pipeline

TRIGGERS = (
    "time flies like an arrow",
    "it caught a lot of people's attention",
    "it includes the following aspects",
    "no cross, no crown",
    "it's never too late to mend",
    "bind the sack before it be full",
)
# Target class and poisoning rate per dataset (paper Sec. 5: rates of 2-3 %).
SETTINGS = {"imdb": ("negative", 0.03), "dbpedia": ("Village", 0.02)}
# Figures the paper publishes that this package checks against (percent).
# Only the rows quoted in the project's acceptance criteria are exact; the
# others are given in the paper as the ranges in PAPER_RANGES.
PAPER_TABLE2 = {
    ("imdb", "time flies like an arrow"): {"asr": 99.70, "accuracy": 85.58},
    ("dbpedia", "no cross, no crown"): {"asr": 98.50, "accuracy": 97.36},
    ("imdb", None): {"asr": None, "accuracy": 84.74},
    ("dbpedia", None): {"asr": None, "accuracy": 97.3},
}
PAPER_RANGES = {
    "asr": "94-99.9 %",
    "precision": "88.8-100 %",
    "recall": "89.5-100 %",
    "asr_after": {"imdb": "12.6-22.7 %", "dbpedia": "0-1 %"},
}


@dataclasses.dataclass(frozen=True)
class GridCell:
    """One run of the grid."""

    dataset: str
    trigger: str | None  # None: the clean run.

    @property
    def name(self) -> str:
        if self.trigger is None:
            return f"{self.dataset}_clean"
        slug = re.sub(r"[^a-z0-9]+", "_", self.trigger.lower()).strip("_")
        return f"{self.dataset}_{slug}"


def grid(datasets=("imdb", "dbpedia"), trigger_indices=None, clean: bool = True) -> list[GridCell]:
    """The cells to run, clean ones first.

    Args:
      datasets: Dataset names (keys of `SETTINGS`).
      trigger_indices: Indices into `TRIGGERS`: `None` for all six, a sequence for
        every dataset, or a dict dataset -> sequence (a dataset left out gets all six).
      clean: Also run each dataset's unpoisoned model.
    """
    for d in datasets:
        if d not in SETTINGS:
            raise ValueError(f"Unknown dataset {d!r}; choose from {sorted(SETTINGS)}.")
    if isinstance(trigger_indices, dict):
        unknown = sorted(set(trigger_indices) - set(datasets))
        if unknown:
            raise ValueError(f"Trigger indices given for datasets {unknown} not in {datasets}.")

    def indices_of(dataset: str):
        chosen = (
            trigger_indices.get(dataset) if isinstance(trigger_indices, dict) else trigger_indices
        )
        chosen = range(len(TRIGGERS)) if chosen is None else chosen
        for i in chosen:
            if not 0 <= i < len(TRIGGERS):
                raise ValueError(f"Trigger index {i} outside 0..{len(TRIGGERS) - 1}.")
        return chosen

    per_dataset = {d: indices_of(d) for d in datasets}
    cells = [GridCell(d, None) for d in datasets] if clean else []
    cells += [GridCell(d, TRIGGERS[i]) for d in datasets for i in per_dataset[d]]
    return cells


def cell_config(cell: GridCell, base: attack.AttackConfig) -> attack.AttackConfig:
    """The attack config of a cell: `base` with the cell's dataset, trigger, target and rate."""
    target, rate = SETTINGS[cell.dataset]
    return dataclasses.replace(
        base,
        dataset=cell.dataset,
        trigger=cell.trigger or TRIGGERS[0],
        target=target,
        poison_rate=0.0 if cell.trigger is None else rate,
    )


def seed_folder(cell: GridCell, seed: int | None) -> str:
    """Sub-folder of a cell: `c.name`, or `c.name_seed<s>` in a multi-seed grid."""
    return cell.name if seed is None else f"{cell.name}_seed{seed}"


def check_seeds(seeds: Sequence) -> list[int]:
    """`seeds` as a list of distinct integers (at least one).

    Raises:
      ValueError: On an empty list, a repeated seed or a value that is not an integer.
    """
    try:
        out = [int(x) for x in seeds]
    except (TypeError, ValueError):
        out = None
    if (
        not out
        or len(set(out)) != len(out)
        or any(isinstance(x, float) and not float(x).is_integer() for x in seeds)
    ):
        raise ValueError(
            f"seeds must be distinct integers, at least one (e.g. 0,1,2); got {list(seeds)}."
        )
    return out


def run_grid(
    cells: list[GridCell],
    base_configs: dict[str, attack.AttackConfig],
    scan_config: BKIConfig,
    workdir: str,
    verbose: int | str = 2,
    seeds: Sequence[int] | None = None,
) -> list[dict]:
    """Runs (or resumes) every cell and writes the tables after each one.

    Args:
      cells: From `grid`.
      base_configs: Per dataset, the attack config to start from (data_dir,
        glove, training hyper-parameters); dataset/trigger/target/rate are set
        per cell.
      scan_config: BKI settings.
      workdir: Root folder; cell `c` runs in `workdir/c.name`, or, with `seeds`,
        once per seed `s` in `workdir/c.name_seed<s>` with the attack's `seed = s`
        (data draw, poisoning and training); the tables then add each metric's mean
        and standard deviation over the seeds (`seed_summary`).
      seeds: Seeds to run every cell with; `None`: once, with the base config's seed.

    Returns:
      The report of every finished cell (and seed: key `seed`).

    Raises:
      ValueError: On an empty or repeated seed list, or a dataset without a base config.
    """
    if seeds is not None:
        seeds = check_seeds(seeds)
    reports = []
    for cell in cells:
        if cell.dataset not in base_configs:
            raise ValueError(f"No base config for dataset {cell.dataset!r}.")
        for seed in [None] if seeds is None else seeds:
            config = cell_config(cell, base_configs[cell.dataset])
            if seed is not None:
                config = dataclasses.replace(config, seed=seed)
            clean = os.path.join(workdir, seed_folder(GridCell(cell.dataset, None), seed))
            clean_workdir = (
                clean if cell.trigger is not None and attack.is_complete(clean) else None
            )
            report = pipeline.run_pipeline(
                config,
                scan_config,
                os.path.join(workdir, seed_folder(cell, seed)),
                verbose=verbose,
                clean_workdir=clean_workdir,
                rescan_stale=True,
            )
            row = {"cell": cell.name, "clean_run": cell.trigger is None, **report.to_dict()}
            if seed is not None:
                row["seed"] = seed
            reports.append(row)
            write_tables(reports, workdir, variant=scan_config.variant)
    return reports


# Metrics averaged over seeds by `seed_summary`.
SEED_METRICS = (
    "precision",
    "recall",
    "removed_share",
    "asr_before",
    "accuracy_before",
    "asr_after",
    "accuracy_after",
    "untriggered_target_share_after",
    "asr_clean_model",
)


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and population standard deviation (ddof 0) of the finite numbers in `values`.

    `(None, None)` when there is none (a metric no seed measured).
    """
    kept = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(float(v))
    ]
    if not kept:
        return None, None
    return float(np.mean(kept)), float(np.std(kept))


def seed_summary(reports: list[dict]) -> list[dict]:
    """Per cell, each metric's mean and standard deviation (ddof 0) over its seeds.

    Args:
      reports: Rows of `run_grid` (with `seed` keys; rows without one count as one seed).

    Returns:
      One dict per cell, in first-seen order: `cell`, `dataset`, `trigger`,
      `clean_run`, `seeds` and, per metric `m` of `SEED_METRICS`, `m_mean` and `m_std`
      (None when no seed has a value), plus `backdoor_found` (the share of seeds).
    """
    cells: dict[str, list[dict]] = {}
    for r in reports:
        cells.setdefault(r["cell"], []).append(r)
    out = []
    for name, rows in cells.items():
        first = rows[0]
        row = {
            "cell": name,
            "dataset": first["dataset"],
            "trigger": first["trigger"],
            "clean_run": first["clean_run"],
            "seeds": [r.get("seed") for r in rows],
            "backdoor_found": float(np.mean([bool(r.get("backdoor_found", True)) for r in rows])),
        }
        for m in SEED_METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(r.get(m) for r in rows)
        out.append(row)
    return out


def _pm(row: dict, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    return "—" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _keyword(report: dict) -> str:
    label = report["keyword_label_name"]
    return f"`{report['keyword']}`" + ("" if label is None else f" ({label})")


def _paper(dataset: str, trigger: str | None, key: str) -> str:
    row = PAPER_TABLE2.get((dataset, trigger))
    if row is None or row.get(key) is None:
        return "—"
    return f"{row[key]:.2f}"


def tables_name(variant: str) -> str:
    """File stem of a variant's tables: `tables` (paper) or `tables_<variant>`."""
    return "tables" if variant == "paper" else f"tables_{variant}"


def write_tables(reports: list[dict], workdir: str, variant: str = "paper") -> None:
    """Writes `tables.md` and `tables.json` (Tables 2 and 3 with the paper's figures).

    The refined variant's tables go to `tables_refined.{md,json}`.
    """
    t2 = [
        "## Table 2: the attack",
        "",
        "| dataset | trigger | target | poisoning rate | ASR % (paper) | test accuracy % (paper) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    t3 = [
        f"## Table 3: BKI ({variant} variant)",
        "",
        "| dataset | trigger | keyword | precision % | recall % | removed | ASR after % | "
        "untriggered → target after % | clean model's ASR % | accuracy after % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        trig = None if r["clean_run"] else r["trigger"]
        shown = "(clean)" if trig is None else f'"{trig}"'
        t2.append(
            f"| {r['dataset']} | {shown} | {r['target']} | {_pct(r['poison_rate'])} % | "
            f"{_pct(None if trig is None else r['asr_before'])} ({_paper(r['dataset'], trig, 'asr')}) | "
            f"{_pct(r['accuracy_before'])} ({_paper(r['dataset'], trig, 'accuracy')}) |"
        )
        t3.append(
            f"| {r['dataset']} | {shown} | {_keyword(r)} | "
            f"{_pct(r['precision']) if trig else '—'} | {_pct(r['recall']) if trig else '—'} | "
            f"{r['removed']} ({_pct(r['removed_share'])} %) | "
            f"{_pct(r['asr_after']) if trig else '—'} | "
            f"{_pct(r.get('untriggered_target_share_after')) if trig else '—'} | "
            f"{_pct(r.get('asr_clean_model')) if trig else '—'} | {_pct(r['accuracy_after'])} |"
        )
    notes = [
        "",
        "Paper figures in parentheses where the paper's exact value is on record here; "
        f"the paper reports ASR {PAPER_RANGES['asr']}, BKI precision {PAPER_RANGES['precision']}, "
        f"recall {PAPER_RANGES['recall']}, ASR after retraining {PAPER_RANGES['asr_after']['imdb']} "
        f"(IMDB) and {PAPER_RANGES['asr_after']['dbpedia']} (DBpedia). Clean runs: the share of "
        "texts BKI removes from an unpoisoned training set and the accuracy after retraining. "
        "Read ASR after against the floor beside it: 'untriggered → target' is the share of "
        "non-target test texts *without* the trigger the retrained model gives the target, "
        "and 'clean model's ASR' the clean run's model on the same triggered texts.",
    ]
    seeded = any("seed" in r for r in reports)
    summary = seed_summary(reports) if seeded else None
    t4 = []
    if summary:
        t4 = [
            "",
            "## Mean ± std over seeds (%)",
            "",
            "| dataset | trigger | seeds | backdoor found | precision | recall | removed | "
            "ASR before | accuracy before | ASR after | accuracy after | clean model's ASR |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in summary:
            shown = "(clean)" if row["clean_run"] else f'"{row["trigger"]}"'
            t4.append(
                f"| {row['dataset']} | {shown} | {','.join(str(x) for x in row['seeds'])} | "
                f"{100 * row['backdoor_found']:.0f} % | {_pm(row, 'precision')} | "
                f"{_pm(row, 'recall')} | {_pm(row, 'removed_share')} | {_pm(row, 'asr_before')} | "
                f"{_pm(row, 'accuracy_before')} | {_pm(row, 'asr_after')} | "
                f"{_pm(row, 'accuracy_after')} | {_pm(row, 'asr_clean_model')} |"
            )
    artifacts.write_text(
        os.path.join(workdir, tables_name(variant) + ".md"),
        "\n".join(t2 + [""] + t3 + notes + t4) + "\n",
    )
    artifacts.write_json(
        os.path.join(workdir, tables_name(variant) + ".json"),
        {
            "variant": variant,
            "rows": reports,
            "paper_table2": [
                {"dataset": k[0], "trigger": k[1], **v} for k, v in PAPER_TABLE2.items()
            ],
            "paper_ranges": PAPER_RANGES,
            "seed_summary": summary,
        },
    )
