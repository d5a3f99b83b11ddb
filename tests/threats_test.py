"""The threat matrix end to end on tiny data: rows, files, resume, bad names."""

import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import tiny_attack_config

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
    rows = threats.run_threats(root, {"imdb": base}, **kwargs)
    assert [(r["attack"], r["defence"]) for r in rows] == [
        ("rare_tokens", "bki_paper"),
        ("rare_tokens", "strip"),
    ]
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
    assert "rare_tokens" in open(os.path.join(out, "threat_matrix.md")).read()

    def no_rerun(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(pipeline, "run_pipeline", no_rerun)
    assert threats.run_threats(root, {"imdb": base}, **kwargs) == rows
    with pytest.raises(ValueError, match="Unknown defence"):
        threats.run_cell(str(tmp_path / "x"), base, "dai", defences=("bki",))


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
    table_rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(table_rows) == 3 and "90.0 ± 8.2" in table_rows[2]  # One averaged row.
    assert threats.MATRIX_NOTES[0] in table


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
