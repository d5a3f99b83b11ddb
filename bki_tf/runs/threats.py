"""The threat matrix: every attack against every defence, on every dataset.

A cell is one (attack, dataset): the attack's run folder `<root>/<dataset>_<attack>`
gets the pipeline of the three BKI variants (`pipeline.run_pipeline`: attack, scan,
purify, retrain, report; paper, refined and BKI+) and the baselines of `bki_tf.runs.comparison` (Activation
Clustering and Spectral Signatures retrained, STRIP, ℓ∞ pruning). Its rows are
cached in `<cell>/threats/rows.json` with the settings they came from, so an
interrupted matrix resumes cell by cell (and inside a cell, step by step), and the
matrix files are rewritten after every cell: `threat_matrix.json` (a list of rows),
`threat_matrix.md` and `threat_matrix.png` (a heatmap of recall and ASR after).
With several seeds every cell runs once per seed (`<dataset>_<attack>_seed<s>`, the
attack's `seed = s`), each row carries its `seed`, and the Markdown table and heatmap
give each metric's mean ± standard deviation over the seeds (`seed_rows`).

Attacks (`ATTACKS`; each an `AttackConfig` override of the dataset's base config):
  * `dai`: the paper's attack (Dai, Chen & Li 2019), trigger at random positions;
  * `fixed_start` / `gap_fixed_start`: the trigger always at the start of poisoned
    texts, on the BiLSTM and on the global-average-pooling victim (`bilstm_gap`),
    with the ASR at each position decile (seed 001's position-agnostic backdoor);
  * `dynamic_patterns`: 4 patterns of the trigger's words, ASR on unseen ones;
  * `multi_trigger`: three trigger sentences sharing the rate;
  * `rare_tokens`: `cf|mn|bb|tq`, BadNets-style, one per poisoned text;
  * `rate_1pct`, `rate_0.5pct`: low poisoning rates;
  * `anti_bki`: the paper's attack trained with a penalty on the l-inf change of h when
    one trigger word is deleted, above a margin (`AttackConfig.anti_bki_weight`,
    `anti_bki_margin`), BKI's own score.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bki_tf import artifacts
from bki_tf.bki.detector import BKIConfig
from bki_tf.runs import attack, comparison, pipeline, reproduction

# The second and third sentences of the multi-trigger attack (the first is the cell's).
MULTI_TRIGGERS = ("it includes the following aspects", "bind the sack before it be full")
RARE_TOKENS = "cf|mn|bb|tq"
# The anti-BKI penalty's weight in the matrix: the l-inf changes of h are of the order of
# the poisoned rows' cross-entropy, so 1 weighs the two about equally. Its margin: ordinary
# words score 0.35-0.6 in the top-5 dictionaries of this package's victims (a trigger word
# 1.1-1.2), so a trigger word held below 0.3 no longer stands out. Without a margin
# (pushed to 0) the DBpedia victim did not learn the backdoor at all: ASR 0.77 %.
ANTI_BKI_WEIGHT = 1.0
ANTI_BKI_MARGIN = 0.3
ATTACKS: dict[str, dict[str, Any]] = {
    "dai": {},
    "fixed_start": {"trigger_position": "start", "asr_by_position": True},
    "gap_fixed_start": {
        "architecture": "bilstm_gap",
        "trigger_position": "start",
        "asr_by_position": True,
    },
    "dynamic_patterns": {"trigger_variants": 4, "asr_by_position": True},
    "multi_trigger": {"trigger": None},  # Filled in by `cell_config`.
    "rare_tokens": {"trigger": RARE_TOKENS},
    "rate_1pct": {"poison_rate": 0.01},
    "rate_0.5pct": {"poison_rate": 0.005},
    "anti_bki": {"anti_bki_weight": ANTI_BKI_WEIGHT, "anti_bki_margin": ANTI_BKI_MARGIN},
}
DEFENCES = (
    "bki_paper",
    "bki_refined",
    "bki_plus",
    "activation_clustering",
    "spectral_signatures",
    "strip",
    "pruning",
)
_BASELINES = {
    "activation_clustering": "activation_clustering",
    "spectral_signatures": "spectral_signatures",
    "strip": "strip",
    "pruning": "linf_pruning",
}
ROW_KEYS = (
    "attack",
    "dataset",
    "defence",
    "precision",
    "recall",
    "asr_before",
    "asr_after",
    "accuracy_before",
    "accuracy_after",
)
ROWS_FILE = os.path.join("threats", "rows.json")
MATRIX_STEM = "threat_matrix"


def cell_config(dataset: str, attack_name: str, base: attack.AttackConfig) -> attack.AttackConfig:
    """The attack config of one cell: the dataset's base config with the attack's overrides."""
    if attack_name not in ATTACKS:
        raise ValueError(f"Unknown attack {attack_name!r}; choose from {sorted(ATTACKS)}.")
    overrides = dict(ATTACKS[attack_name])
    if attack_name == "multi_trigger":
        overrides["trigger"] = "|".join((base.trigger, *MULTI_TRIGGERS))
    if base.dataset != dataset:
        raise ValueError(f"Base config of {dataset!r} is for {base.dataset!r}.")
    return dataclasses.replace(base, **overrides)


def _row(attack_name: str, dataset: str, defence: str, **values) -> dict:
    row = {"attack": attack_name, "dataset": dataset, "defence": defence}
    # NaN (e.g. 0/0) is None, as in the baselines' rows.
    row.update({k: artifacts.to_jsonable(values.get(k)) for k in ROW_KEYS[3:]})
    row["details"] = values.get("details", {})
    return row


def row_config(scan_config: BKIConfig, variant: str) -> BKIConfig:
    """The BKI config of one variant's rows: `span` applies to BKI+ only."""
    return dataclasses.replace(
        scan_config, variant=variant, span=scan_config.span if variant == "plus" else 1
    )


def _scan_identity(scan_config: BKIConfig) -> dict:
    """The BKI settings a cell's rows depend on (the variant is set per row).

    `span` appears only when not 1, so cells computed before it existed are read back.
    """
    d = dataclasses.asdict(row_config(scan_config, "paper"))
    del d["span"]
    if scan_config.span != 1:
        d["span"] = scan_config.span
    return d


def run_cell(
    workdir: str,
    config: attack.AttackConfig,
    attack_name: str,
    defences: Sequence[str] = DEFENCES,
    scan_config: BKIConfig | None = None,
    compare_config: comparison.CompareConfig | None = None,
    verbose: int | str = 2,
) -> list[dict]:
    """One cell's rows (read back when `<workdir>/threats/rows.json` matches)."""
    scan_config = scan_config or BKIConfig()
    unknown = [d for d in defences if d not in DEFENCES]
    if unknown:
        raise ValueError(f"Unknown defence(s) {unknown}; choose from {list(DEFENCES)}.")
    baselines = tuple(_BASELINES[d] for d in defences if d in _BASELINES)
    compare_config = compare_config or comparison.CompareConfig()
    identity = artifacts.to_jsonable(
        {
            "attack": attack.config_identity(config),
            "defences": list(defences),
            "scan": _scan_identity(scan_config),
            "compare": {**compare_config.to_dict(), "defences": list(baselines)},
        }
    )
    path = os.path.join(workdir, ROWS_FILE)
    if os.path.isfile(path):
        stored = artifacts.read_json(path)
        if isinstance(stored, dict) and stored.get("identity") == identity:
            return stored["rows"]
    dataset = config.dataset
    rows = []
    for variant in ("paper", "refined", "plus"):
        if f"bki_{variant}" not in defences:
            continue
        report = pipeline.run_pipeline(
            config,
            row_config(scan_config, variant),
            workdir,
            verbose=verbose,
            rescan_stale=True,
        )
        r = report.to_dict()
        rows.append(
            _row(
                attack_name,
                dataset,
                f"bki_{variant}",
                precision=r["precision"],
                recall=r["recall"],
                asr_before=r["asr_before"],
                asr_after=r["asr_after"],
                accuracy_before=r["accuracy_before"],
                accuracy_after=r["accuracy_after"],
                details={
                    "keyword": r["keyword"],
                    "removed": r["removed"],
                    "asr_per_trigger_after": pipeline.read_retrain(
                        workdir, variant
                    ).asr_per_trigger,
                    "untriggered_target_share_after": r["untriggered_target_share_after"],
                    **(
                        {
                            "backdoor_found": r["backdoor_found"],
                            "phrases": r["phrases"],
                            "rejected": r["rejected_phrases"],
                            **({"span": scan_config.span} if scan_config.span != 1 else {}),
                        }
                        if variant == "plus"
                        else {}
                    ),
                },
            )
        )
    if baselines:
        attack.run_attack(config, workdir, verbose=verbose)  # Done already: read back.
        run = attack.load_run(workdir)
        result = comparison.run_comparison(
            run, dataclasses.replace(compare_config, defences=baselines), verbose=verbose
        )
        comparison.write_comparison(result, os.path.join(workdir, "compare"))
        names = {v: k for k, v in _BASELINES.items()}
        for row in result.rows:
            d = row.to_dict()
            rows.append(
                _row(attack_name, dataset, names[d["defence"]],
                     **{k: d.get(k) for k in ROW_KEYS[3:]}, details=d.get("details", {}))
            )  # fmt: skip
    # The poisoned victim's own measures (before any defence), in every row.
    metrics = attack.load_result(workdir).to_dict()
    extras = {
        f"{k}_before": metrics.get(k)
        for k in ("asr_per_trigger", "asr_by_decile", "asr_unseen_variants")
    }
    for row in rows:
        row["details"] = {**row["details"], **{k: v for k, v in extras.items() if v is not None}}
    artifacts.write_json(path, {"identity": identity, "rows": rows})
    return rows


def run_threats(
    root: str,
    base_configs: dict[str, attack.AttackConfig],
    attacks: Sequence[str] = tuple(ATTACKS),
    defences: Sequence[str] = DEFENCES,
    scan_config: BKIConfig | None = None,
    compare_config: comparison.CompareConfig | None = None,
    output_dir: str | None = None,
    verbose: int | str = 2,
    log: Callable[[str], None] = lambda line: None,
    seeds: Sequence[int] | None = None,
    keep_other_cells: bool = True,
) -> list[dict]:
    """Runs (or resumes) every cell; rewrites the matrix files after each one.

    Args:
      root: Folder of the cells' run folders.
      base_configs: Dataset -> its base attack config (data, sizes, training; the
        paper's trigger, target and rate).
      attacks: Names from `ATTACKS`.
      defences: Names from `DEFENCES`.
      scan_config: BKI settings (the variant is set per row; `span` applies to the BKI+
        rows only).
      compare_config: Baseline settings.
      output_dir: Where the matrix files go (default `root`).
      verbose: Keras verbosity.
      log: Receives a line per finished cell.
      seeds: Seeds to run every cell with (the attack's `seed`, so the poisoned set,
        the victim and the retraining); `None`: once, with the base config's seed.
      keep_other_cells: Keep the rows of an existing `threat_matrix.json` in the
        output folder whose cell (attack, dataset, seed) this call does not run, so
        a matrix can be filled a few cells at a time (`merge_rows`); False: the
        matrix files hold this call's cells only.

    Returns:
      Every row of the matrix files: this call's cells and the kept ones, each row
      with the `seed` it ran with.

    Raises:
      CorruptFileError: When the existing `threat_matrix.json` is not a matrix.
    """
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"Unknown attack(s) {unknown}; choose from {sorted(ATTACKS)}.")
    if seeds is not None:
        seeds = reproduction.check_seeds(seeds)
    output_dir = output_dir or root
    earlier = []
    path = os.path.join(output_dir, MATRIX_STEM + ".json")
    if keep_other_cells and os.path.exists(path):
        earlier = read_matrix(path)
    rows = []
    merged = merge_rows(earlier, rows)
    for dataset, base in base_configs.items():
        for name in attacks:
            for seed in [None] if seeds is None else seeds:
                config = cell_config(dataset, name, base)
                folder = f"{dataset}_{name}"
                if seed is not None:
                    config = dataclasses.replace(config, seed=seed)
                    folder += f"_seed{seed}"
                cell_rows = run_cell(
                    os.path.join(root, folder),
                    config,
                    name,
                    defences,
                    scan_config,
                    compare_config,
                    verbose,
                )
                rows.extend({**r, "seed": config.seed} for r in cell_rows)
                merged = merge_rows(earlier, rows)
                write_matrix(merged, output_dir)
                log(f"cell {folder} done")
    kept = len(merged) - len(rows)
    if kept:
        log(f"kept {kept} rows of cells not run now from {path}")
    return merged


def read_matrix(path: str) -> list[dict]:
    """The rows of a `threat_matrix.json`, checked to be a list of matrix rows."""
    rows = artifacts.read_json(path)
    fix = "pass another output folder or keep_other_cells=False (--nokeep_other_cells)"
    if not isinstance(rows, list):
        raise artifacts.corrupt(path, f"a {type(rows).__name__}, not a list of rows", fix)
    for i, row in enumerate(rows):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise artifacts.corrupt(path, f"row {i} lacks {', '.join(missing)}", fix)
    return rows


def _cell_key(row: dict) -> tuple:
    return row["attack"], row["dataset"], row.get("seed")


def merge_rows(earlier: Sequence[dict], rows: Sequence[dict]) -> list[dict]:
    """`rows` with the `earlier` rows of the cells `rows` does not hold, in matrix order.

    A cell is (attack, dataset, seed). An earlier row without a `seed` (a matrix
    written before rows carried one) is replaced by any new row of its attack and
    dataset. Order: datasets as first seen (earlier rows first), then attacks in
    `ATTACKS` order, seeds, and defences in `DEFENCES` order; names this module does
    not list go last, by name.
    """
    new_cells = {_cell_key(r) for r in rows}
    new_pairs = {key[:2] for key in new_cells}
    kept = [
        r
        for r in earlier
        if _cell_key(r) not in new_cells
        and not (r.get("seed") is None and _cell_key(r)[:2] in new_pairs)
    ]
    merged = [*kept, *rows]
    datasets = list(dict.fromkeys(r["dataset"] for r in merged))
    attacks, defences = list(ATTACKS), list(DEFENCES)

    def order(row: dict) -> tuple:
        a, d = row["attack"], row["defence"]
        seed = row.get("seed")
        return (
            datasets.index(row["dataset"]),
            (attacks.index(a), "") if a in attacks else (len(attacks), a),
            (0, 0) if seed is None else (1, seed),
            (defences.index(d), "") if d in defences else (len(defences), d),
        )

    return sorted(merged, key=order)


def seed_rows(rows: Sequence[dict]) -> list[dict]:
    """One row per (attack, dataset, defence): each metric's mean and std over its seeds.

    Rows without a `seed` count as one seed each. The result has the `ROW_KEYS`
    (the means; None when no seed has a value), `<metric>_std` (population standard
    deviation, ddof 0; None likewise) and `seeds`.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["dataset"], r["defence"]), []).append(r)
    out = []
    for (attack_name, dataset, defence), members in groups.items():
        row = {"attack": attack_name, "dataset": dataset, "defence": defence}
        for key in ROW_KEYS[3:]:
            row[key], row[f"{key}_std"] = reproduction.mean_std(m.get(key) for m in members)
        row["seeds"] = [m.get("seed") for m in members]
        out.append(row)
    return out


MATRIX_NOTES = (
    "- BKI, Activation Clustering, Spectral Signatures: precision and recall over the "
    "training texts (precision 0 when nothing is removed); ASR and accuracy after: the "
    "victim retrained on the kept texts, on the full test sets.",
    "- STRIP filters inputs at run time: precision and recall over held-out test inputs "
    "(clean and triggered, at most 1,000 each; `details.frr`, `details.far`); its before "
    "values are on that subset; ASR after: triggered inputs accepted *and* classified as the "
    "target; accuracy after: clean inputs accepted and classified correctly.",
    "- BKI+: `details.backdoor_found`; `details.phrases`, the trigger phrases it kept and "
    "removed; `details.rejected`, phrases that passed its z-test but whose deletion changed "
    "too few predictions (not removed).",
    "- l-inf pruning flags no text and retrains nothing; its pruning point is chosen on the "
    "triggered test set its ASR after is measured on (an oracle: optimistic).",
    "- Several triggers (`multi_trigger`, `rare_tokens`): ASR is the mean over one block of "
    "the test set per trigger, each trigger's in `details.asr_per_trigger_before` / "
    "`_after`. `dynamic_patterns`: ASR with the whole trigger; the unseen patterns' ASR "
    "before is `details.asr_unseen_variants_before`. `*_fixed_start`: ASR by decile "
    "before is `details.asr_by_decile_before`.",
)


def _pct(row: dict, key: str) -> str:
    value, std = row.get(key), row.get(f"{key}_std")
    if value is None:
        return "—"
    return f"{100 * value:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def _several_seeds(rows: Sequence[dict]) -> bool:
    """Whether some (attack, dataset, defence) has rows of more than one seed."""
    keys = [(r["attack"], r["dataset"], r["defence"]) for r in rows]
    return len(set(keys)) < len(keys)


def format_matrix(rows: Sequence[dict]) -> str:
    """Markdown: one line per (attack, dataset, defence); mean ± std over seeds if several.

    Then, per dataset, the same figures as a defence x attack table (`format_pivot`).
    """
    seeded = _several_seeds(rows)
    if seeded:
        rows = seed_rows(rows)
    lines = [
        "| attack | dataset | defence | precision % | recall % | ASR before → after % | "
        "accuracy before → after % |" + (" seeds |" if seeded else ""),
        "|---|---|---|---:|---:|---:|---:|" + ("---|" if seeded else ""),
    ]
    for r in rows:
        lines.append(
            f"| {r['attack']} | {r['dataset']} | {r['defence']} | {_pct(r, 'precision')} | "
            f"{_pct(r, 'recall')} | {_pct(r, 'asr_before')} → {_pct(r, 'asr_after')} | "
            f"{_pct(r, 'accuracy_before')} → {_pct(r, 'accuracy_after')} |"
            + (f" {','.join(str(x) for x in r['seeds'])} |" if seeded else "")
        )
    pivots = [format_pivot(rows, d) for d in dict.fromkeys(r["dataset"] for r in rows)]
    return "\n".join(lines + ["", *MATRIX_NOTES, *pivots]) + "\n"


DEFENCE_NAMES = {
    "bki_paper": "BKI paper",
    "bki_refined": "BKI refined",
    "bki_plus": "BKI+",
    "activation_clustering": "Activation Clustering",
    "spectral_signatures": "Spectral Signatures",
    "strip": "STRIP (held-out inputs)",
    "pruning": "ℓ∞ pruning (oracle point)",
}


def _pivot_entry(row: dict) -> str:
    """`P / R, ASR before → after, accuracy before → after (what BKI kept)`."""
    detection = (
        "—"
        if row.get("precision") is None and row.get("recall") is None
        else f"{_pct(row, 'precision')} / {_pct(row, 'recall')}"
    )
    text = (
        f"{detection}, {_pct(row, 'asr_before')} → {_pct(row, 'asr_after')}, "
        f"{_pct(row, 'accuracy_before')} → {_pct(row, 'accuracy_after')}"
    )
    details = row.get("details") or {}
    if row["defence"] == "bki_plus" and "backdoor_found" in details:
        found = details.get("phrases") or []
        rejected = len(details.get("rejected") or [])
        what = (
            f"found {', '.join(f'`{p}`' for p in found)}"
            if details["backdoor_found"]
            else "no backdoor"
        )
        text += f" ({what}; {rejected} candidates rejected)"
    elif row["defence"].startswith("bki") and details.get("keyword"):
        text += f" (`{details['keyword']}`)"
    return text


def format_pivot(rows: Sequence[dict], dataset: str) -> str:
    """Markdown: one dataset's matrix, a line per defence and a column per attack.

    Each entry: precision / recall %, ASR before → after %, accuracy before → after %,
    and what BKI kept. With several seeds, means ± std (`seed_rows`; no keywords).
    """
    if _several_seeds(rows):
        rows = seed_rows(rows)
    rows = [r for r in rows if r["dataset"] == dataset]
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    defences = list(dict.fromkeys(r["defence"] for r in rows))
    entries = {(r["defence"], r["attack"]): _pivot_entry(r) for r in rows}
    lines = [
        "",
        f"**{dataset}**: precision / recall %, ASR before → after %, accuracy before → after %.",
        "",
        "| defence | " + " | ".join(f"`{a}`" for a in attacks) + " |",
        "| --- |" + " --- |" * len(attacks),
    ]
    for d in defences:
        cells = [entries.get((d, a), "not run") for a in attacks]
        lines.append(f"| {DEFENCE_NAMES.get(d, d)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_matrix(rows: Sequence[dict], path: str) -> None:
    """Heatmaps of recall and ASR after: (attack, dataset) x defence."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    if _several_seeds(rows):
        rows = seed_rows(rows)
    cells = list(dict.fromkeys((r["attack"], r["dataset"]) for r in rows))
    defences = list(dict.fromkeys(r["defence"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(defences) * 2, 1 + 0.45 * len(cells)))
    for ax, key, title in ((axes[0], "recall", "recall"), (axes[1], "asr_after", "ASR after")):
        grid = np.full((len(cells), len(defences)), np.nan)
        for r in rows:
            value = r.get(key)
            if value is not None:
                grid[cells.index((r["attack"], r["dataset"])), defences.index(r["defence"])] = value
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(defences)), defences, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(cells)), [f"{a} / {d}" for a, d in cells], fontsize=8)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "—" if np.isnan(v) else f"{100 * v:.0f}", ha="center", va="center",
                    fontsize=7, color="white" if not np.isnan(v) and v < 0.5 else "black")  # fmt: skip
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_matrix(rows: Sequence[dict], output_dir: str) -> dict[str, str]:
    """`threat_matrix.json` (the rows), `.md` and `.png` in `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.join(output_dir, MATRIX_STEM)
    artifacts.write_json(stem + ".json", list(rows))
    artifacts.write_text(stem + ".md", format_matrix(rows))
    if rows:
        plot_matrix(rows, stem + ".png")
    return {"json": stem + ".json", "md": stem + ".md", "png": stem + ".png"}
