"""The threat matrix end to end on tiny data: rows, files, resume, bad names."""

import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import tiny_attack_config

from bki_tf import artifacts
from bki_tf.bki.detector import BKIConfig
from bki_tf.runs import attack, pipeline, threats


def test_cell_configs_apply_each_attack(tiny_imdb_dir):
    base = tiny_attack_config(tiny_imdb_dir)
    multi = threats.cell_config("imdb", "multi_trigger", base)
    assert multi.trigger.split("|") == [base.trigger, *threats.MULTI_TRIGGERS]
    gap = threats.cell_config("imdb", "gap_fixed_start", base)
    assert (gap.architecture, gap.trigger_position, gap.asr_by_position) == (
        "bilstm_gap",
        "start",
        True,
    )
    assert threats.cell_config("imdb", "rate_0.5pct", base).poison_rate == 0.005
    assert threats.cell_config("imdb", "rare_tokens", base).trigger == "cf|mn|bb|tq"
    assert threats.cell_config("imdb", "anti_bki", base).anti_bki_weight == 1.0
    assert base.anti_bki_weight == 0.0
    with pytest.raises(ValueError, match="Unknown attack 'badnets'"):
        threats.cell_config("imdb", "badnets", base)


def test_matrix_runs_resumes_and_writes_its_files(tmp_path, tiny_imdb_dir, monkeypatch):
    base = tiny_attack_config(tiny_imdb_dir, poison_rate=0.2, max_len=24)
    root, out = str(tmp_path / "cells"), str(tmp_path / "results")
    kwargs = dict(
        attacks=("rare_tokens",),
        defences=("bki_paper", "strip"),
        scan_config=BKIConfig(p=3, alpha=0.5),
        output_dir=out,
        verbose=0,
    )
    # An earlier matrix in the output folder: its other cell is kept, in matrix order.
    earlier = [
        {"attack": "dai", "dataset": "imdb", "defence": "strip", "seed": base.seed,
         **{k: 0.5 for k in threats.ROW_KEYS[3:]}, "details": {}}
    ]  # fmt: skip
    os.makedirs(out)
    with open(os.path.join(out, "threat_matrix.json"), "w") as f:
        json.dump(earlier, f)
    logged = []
    rows = threats.run_threats(root, {"imdb": base}, log=logged.append, **kwargs)
    assert [(r["attack"], r["defence"]) for r in rows] == [
        ("dai", "strip"),
        ("rare_tokens", "bki_paper"),
        ("rare_tokens", "strip"),
    ]
    assert rows[0] == earlier[0] and any("kept 1 rows" in line for line in logged)
    assert [r["seed"] for r in rows[1:]] == [base.seed] * 2  # Every row has its seed.
    rows = rows[1:]
    fresh = threats.run_threats(root, {"imdb": base}, keep_other_cells=False, **kwargs)
    assert fresh == rows  # Read back; the earlier cell dropped.
    for r in rows:
        assert set(threats.ROW_KEYS) <= set(r) and r["dataset"] == "imdb"
        assert 0 <= r["asr_before"] <= 1 and 0 <= r["accuracy_before"] <= 1
    bki = [r for r in rows if r["defence"].startswith("bki")]
    assert all(r["precision"] is not None and r["asr_after"] is not None for r in bki)
    assert all(r["details"]["keyword"] for r in bki)
    assert len(rows[0]["details"]["asr_per_trigger_before"]) == 4  # cf, mn, bb, tq.
    after = rows[0]["details"]["asr_per_trigger_after"]
    assert len(after) == 4 and all(0 <= a <= 1 for a in after)
    assert np.mean(after) == pytest.approx(rows[0]["asr_after"], abs=1e-9)  # Equal blocks.
    with open(os.path.join(out, "threat_matrix.json")) as f:
        assert json.load(f) == rows
    assert os.path.isfile(os.path.join(out, "threat_matrix.png"))
    table = open(os.path.join(out, "threat_matrix.md")).read()
    assert "| defence | `rare_tokens` |" in table  # The per-dataset table.
    keyword = rows[0]["details"]["keyword"]
    assert f"| BKI paper | {threats._pivot_entry(rows[0])} |" in table and f"(`{keyword}`)" in table

    def no_rerun(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(pipeline, "run_pipeline", no_rerun)
    assert threats.run_threats(root, {"imdb": base}, **kwargs) == rows
    with pytest.raises(ValueError, match="Unknown defence"):
        threats.run_cell(str(tmp_path / "x"), base, "dai", defences=("bki",))


def _row(attack_name, dataset, defence, seed, value=0.5):
    row = {"attack": attack_name, "dataset": dataset, "defence": defence,
           **{k: value for k in threats.ROW_KEYS[3:]}}  # fmt: skip
    return row if seed is None else {**row, "seed": seed}


def test_merge_rows_replaces_the_cells_run_now_and_keeps_the_rest_in_order():
    earlier = [
        _row("rate_1pct", "dbpedia", "strip", 0, 0.1),
        _row("dai", "dbpedia", "bki_plus", 0, 0.1),
        _row("dai", "dbpedia", "bki_paper", 0, 0.1),
        _row("dai", "dbpedia", "bki_paper", 1, 0.1),  # Another seed: kept.
        _row("anti_bki", "dbpedia", "strip", None, 0.1),  # No seed: replaced by any seed.
        _row("dai", "imdb", "strip", None, 0.1),  # Not run now: kept.
        _row("custom", "dbpedia", "mine", 0, 0.1),  # Names this module does not list: last.
    ]
    new = [_row("dai", "dbpedia", "bki_paper", 0), _row("anti_bki", "dbpedia", "strip", 0)]
    merged = threats.merge_rows(earlier, new)
    assert [(r["attack"], r["dataset"], r["defence"], r.get("seed"), r["recall"]) for r in merged] == [
        ("dai", "dbpedia", "bki_paper", 0, 0.5),
        ("dai", "dbpedia", "bki_paper", 1, 0.1),
        ("rate_1pct", "dbpedia", "strip", 0, 0.1),
        ("anti_bki", "dbpedia", "strip", 0, 0.5),
        ("custom", "dbpedia", "mine", 0, 0.1),
        ("dai", "imdb", "strip", None, 0.1),
    ]  # fmt: skip
    assert threats.merge_rows([], new) == new and threats.merge_rows(earlier, []) != []


def test_read_matrix_refuses_what_is_not_a_matrix(tmp_path):
    path = str(tmp_path / "threat_matrix.json")
    for content, message in (
        ({"rows": []}, "a dict, not a list of rows"),
        ([{"attack": "dai"}], "row 0 lacks dataset, defence, precision"),
        ([3], "row 0 lacks attack"),
    ):
        with open(path, "w") as f:
            json.dump(content, f)
        with pytest.raises(artifacts.CorruptFileError, match=message):
            threats.read_matrix(path)
    rows = [_row("dai", "imdb", "strip", 0)]
    with open(path, "w") as f:
        json.dump(rows, f)
    assert threats.read_matrix(path) == rows


def test_pivot_has_a_line_per_defence_and_a_column_per_attack():
    rows = [
        {**_row("dai", "dbpedia", "bki_paper", 0, 0.25), "details": {"keyword": "crown"}},
        {**_row("dai", "dbpedia", "bki_plus", 0, 1.0),
         "details": {"backdoor_found": True, "phrases": ["no cross no crown"], "rejected": [{}, {}]}},
        {**_row("anti_bki", "dbpedia", "bki_plus", 0, 0.0),
         "details": {"backdoor_found": False, "phrases": [], "rejected": [{}]}},
        {**_row("anti_bki", "dbpedia", "pruning", 0, 0.5), "precision": None, "recall": None},
        _row("dai", "imdb", "strip", 0),
    ]  # fmt: skip
    table = threats.format_pivot(rows, "dbpedia").splitlines()
    assert table[3] == "| defence | `dai` | `anti_bki` |"
    assert table[5:] == [
        "| BKI paper | 25.0 / 25.0, 25.0 → 25.0, 25.0 → 25.0 (`crown`) | not run |",
        "| BKI+ | 100.0 / 100.0, 100.0 → 100.0, 100.0 → 100.0 (found `no cross no crown`; 2 "
        "candidates rejected) | 0.0 / 0.0, 0.0 → 0.0, 0.0 → 0.0 (no backdoor; 1 candidates "
        "rejected) |",
        "| ℓ∞ pruning (oracle point) | not run | —, 50.0 → 50.0, 50.0 → 50.0 |",
    ]
    assert "imdb" not in "\n".join(table)
    both = threats.format_matrix(rows)
    assert "**dbpedia**" in both and "**imdb**" in both and "seeds |" not in both


def test_seed_rows_give_mean_and_population_std():
    rows = [
        {"attack": "dai", "dataset": "imdb", "defence": "bki_plus", "seed": s,
         **{k: None for k in threats.ROW_KEYS[3:]}, "precision": p, "recall": 1.0}
        for s, p in ((0, 0.9), (1, 1.0), (2, 0.8))
    ]  # fmt: skip
    (row,) = threats.seed_rows(rows)
    assert row["precision"] == pytest.approx(0.9)
    assert row["precision_std"] == pytest.approx(((0.0**2 + 0.1**2 + 0.1**2) / 3) ** 0.5)
    assert row["recall_std"] == 0.0 and row["asr_after"] is None and row["asr_after_std"] is None
    assert row["seeds"] == [0, 1, 2]
    table = threats.format_matrix(rows)
    assert "90.0 ± 8.2" in table and "| 0,1,2 |" in table
    first = table.split("\n\n")[0]  # The long table; the per-dataset one follows the notes.
    table_rows = [line for line in first.splitlines() if line.startswith("|")]
    assert len(table_rows) == 3 and "90.0 ± 8.2" in table_rows[2]  # One averaged row.
    assert threats.MATRIX_NOTES[0] in table
    assert "| BKI+ | 90.0 ± 8.2 / 100.0 ± 0.0, — → —, — → — |" in table  # No keywords.


def test_seeds_run_one_folder_per_seed_and_plus_is_a_defence(tmp_path, tiny_imdb_dir):
    base = tiny_attack_config(tiny_imdb_dir, poison_rate=0.2, max_len=24)
    root = str(tmp_path / "cells")
    rows = threats.run_threats(
        root,
        {"imdb": base},
        attacks=("dai",),
        defences=("bki_plus",),
        scan_config=BKIConfig(p=3),
        verbose=0,
        seeds=[3, 4],
    )
    assert sorted(os.listdir(root)) == ["imdb_dai_seed3", "imdb_dai_seed4", "threat_matrix.json",
                                        "threat_matrix.md", "threat_matrix.png"]  # fmt: skip
    assert [(r["defence"], r["seed"]) for r in rows] == [("bki_plus", 3), ("bki_plus", 4)]
    for r in rows:
        assert isinstance(r["details"]["backdoor_found"], bool)
        if not r["details"]["backdoor_found"]:
            assert r["details"]["removed"] == 0
    # The seed reaches the attack: the two cells poisoned different texts.
    a, b = (attack.load_run(os.path.join(root, f"imdb_dai_seed{s}")) for s in (3, 4))
    assert a.config.seed == 3 and b.config.seed == 4
    assert a.train.is_poisoned.tolist() != b.train.is_poisoned.tolist()
    with pytest.raises(ValueError, match="distinct integers"):
        threats.run_threats(root, {"imdb": base}, attacks=("dai",), seeds=[1, 1])


def test_span_applies_to_the_plus_rows_only_and_old_cells_keep_their_identity():
    config = BKIConfig(p=3, variant="plus", span=3)
    assert threats.row_config(config, "plus").span == 3
    assert threats.row_config(config, "paper") == BKIConfig(p=3)
    assert threats.row_config(config, "refined").span == 1
    # A cell stored before `span` existed recorded asdict(BKIConfig()) for the rows.
    old = dataclasses.asdict(BKIConfig(p=3))
    del old["span"]
    assert threats._scan_identity(BKIConfig(p=3)) == old
    assert threats._scan_identity(BKIConfig(p=3, variant="plus")) == old
    assert threats._scan_identity(config) == {**old, "span": 3}
